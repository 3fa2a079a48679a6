// What the gateway would do with a SQL script, and which rule decides,
// without running anything: `warden policy check` and the console's "check a
// statement" box both call checkScript, which runs the gateway's own decision
// code (Postgres' parser, masks, approval rules) on one imagined session.
import type { ApprovalRule, Grant, Identity, Mask, Resource } from '@warden/proto';

/** A request the check cannot answer (unknown identity or resource, nothing to check). */
export class CheckError extends Error {}

export interface CheckConfig {
  identities: Identity[];
  resources: Resource[];
  grants: Grant[];
  masks: Mask[];
  approvals: ApprovalRule[];
  /** Where the rules come from, for messages ("policy version 3", a file name). */
  source: string;
}

export interface CheckRequest {
  as: string;
  resource: string;
  /** Groups to count the identity in besides its own (as if the token carried them). */
  groups: string[];
  /** Startup parameters (search_path…). */
  parameters: Record<string, string>;
  sql: string;
}

export interface CheckResult {
  identity: string;
  groups: string[];
  statements: CheckLine[];
}

/** "public.orders, customers" */
const objectsOf = (objects: readonly { type: string; schema?: string; name: string }[]) =>
  objects.filter((o) => o.type !== 'function').map((o) => (o.schema ? `${o.schema}.${o.name}` : o.name));

export interface CheckLine {
  statement: string;
  kind?: string;
  access?: string;
  objects: string[];
  decision: 'allowed' | 'refused';
  rule?: string;
  ruleAccess?: string;
  sqlstate?: string;
  message: string;
  /** Output columns whose values would be masked, by position (1-based). */
  masked?: Array<{ position: number; column: string; mask: string; rule: string }>;
  /** Tables whose masked columns `*` returns, which cannot be listed without the database. */
  maskingUnknown?: string[];
  /** The approval the statement would wait for; with `estimate`, only if Postgres estimates more rows. */
  held?: { rule: string; why: string; approvers: string[]; quorum: number; mode: string; estimate?: { rowsOver: number } };
}

export async function checkScript(config: CheckConfig, req: CheckRequest): Promise<CheckResult> {
  const { identities, resources, grants, masks, approvals, source } = config;
  const { as, sql, parameters } = req;
  const resourceName = req.resource;
  const identity = identities.find((i) => i.name === as);
  if (!identity) {
    const known = identities.map((i) => i.name).join(', ') || 'none';
    throw new CheckError(`identity '${as}' is not defined in ${source} (identities: ${known})`);
  }
  if (!resources.some((r) => r.name === resourceName)) {
    const known = resources.map((r) => r.name).join(', ') || 'none';
    throw new CheckError(`resource '${resourceName}' is not defined in ${source} (resources: ${known})`);
  }
  const groups = [...new Set([...identity.groups, ...req.groups])];

  // The gateway's own decision code (loads Postgres' parser), on one
  // session: what a statement changes (search_path, a transaction, a
  // prepared statement) counts for the ones after it.
  const { ClassificationCache, StatementGate, classify, rulesFor } = await import('@warden/gateway/policy');
  const { ColumnMasks, masksFor } = await import('@warden/gateway/masking');
  const { ApprovalMatcher, approvalRulesFor } = await import('@warden/gateway/approvals');
  const rules = rulesFor(grants, resourceName, identity.name, groups);
  // Without the database, masking is judged from the statement's text and the masks' column names alone.
  const maskSet = masksFor(masks, new Uint8Array(32), resourceName, identity.name, groups);
  const columnMasks = maskSet ? new ColumnMasks(maskSet, () => undefined) : undefined;
  const matcher = new ApprovalMatcher(approvalRulesFor(approvals, resourceName, identity.name, groups));
  const gate = new StatementGate(
    { identity: identity.name, resource: resourceName, rules, assumeNoUserSchema: true, masks: columnMasks, approvals: matcher },
    new ClassificationCache(),
  );
  const accessOf = (rule?: string) => rules.find((r) => r.name === rule)?.access;
  const refusedAtStart = gate.startup(parameters);
  if (refusedAtStart) throw new CheckError(`the connection would be refused: ${refusedAtStart.message}`);

  const whole = classify(sql);
  const lines: CheckLine[] = [];
  if (!whole.ok) {
    const d = gate.check(sql);
    lines.push(
      d.refusal
        ? { statement: sql, objects: [], decision: 'refused', rule: d.refusal.rule, sqlstate: d.refusal.sqlstate, message: d.refusal.message }
        : { statement: sql, objects: [], decision: 'allowed', rule: d.rule, ruleAccess: accessOf(d.rule), message: `statement Warden cannot parse (${whole.error})` },
    );
  } else {
    if (whole.statements.length === 0) throw new CheckError('there is no statement to check (only whitespace or comments)');
    // The script as one query string, as the gateway decides it; after a
    // refusal (which the server would answer with an error, undoing the
    // string's implicit transaction), the rest as the next query string.
    let from = 0;
    while (from < whole.statements.length) {
      const rest = whole.statements.slice(from);
      const d = gate.check(rest.map((s) => s.text).join(';\n'));
      gate.assumeRan(d);
      const upTo = d.refusal ? d.refusal.index : rest.length - 1;
      for (let i = 0; i <= upTo; i++) {
        const s = rest[i]!;
        const objects = objectsOf(s.objects);
        const base = { statement: s.text, kind: s.kind, access: s.access, objects };
        if (d.refusal && i === d.refusal.index) {
          lines.push({ ...base, decision: 'refused', rule: d.refusal.rule, sqlstate: d.refusal.sqlstate, message: d.refusal.message });
        } else {
          const on = objects.length ? ` on ${objects.join(', ')}` : '';
          const plan = d.masks?.[i];
          const masked = plan?.columns.flatMap((c, p) => (c ? [{ position: p + 1, column: c.column, mask: maskName(c.mask), rule: c.rule }] : []));
          const hold = d.holds?.[i];
          lines.push({
            ...base,
            decision: 'allowed',
            rule: d.rule,
            ruleAccess: accessOf(d.rule),
            message: `${s.kind} (${s.access})${on}`,
            ...(masked?.length ? { masked } : {}),
            ...(plan?.unknown ? { maskingUnknown: plan.unknown } : {}),
            ...(hold
              ? {
                  held: {
                    rule: hold.rule.name,
                    why: hold.why,
                    approvers: hold.rule.approvers,
                    quorum: Math.max(1, hold.rule.quorum),
                    mode: hold.rule.mode || 'wait',
                    ...(hold.estimate ? { estimate: hold.estimate } : {}),
                  },
                }
              : {}),
          });
        }
      }
      from += upTo + 1;
    }
  }
  return { identity: identity.name, groups, statements: lines };
}

/** "partial (keep 4)", "email", "redact" */
function maskName(m: { fn: string; keep?: number }): string {
  return m.fn === 'partial' ? `partial (keep ${m.keep})` : m.fn;
}
