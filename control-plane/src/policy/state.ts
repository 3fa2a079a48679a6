// What a policy file stands for in the store, and the difference between two
// configurations as the change lines `warden policy diff` prints:
//   + identity ci-deploy
//   - resource old
//   ~ rule ci-read-only: access read -> write
//   ~ mask pii: columns [public.customers.email: email] -> [...]
//   ~ approval prod-ddl: quorum 1 -> 2
import { createHash } from 'node:crypto';
import type { ApprovalRule, Grant, Identity, Issuer, Mask, MaskFunction, Resource } from '@warden/proto';
import { showDuration } from '../storage/validate-approval.js';
import type { AccessLevel } from '../storage/validate.js';
import type { Policy, PolicyRule } from './model.js';

/** The parts of the configuration a policy file owns. */
export interface ConfigState {
  issuers: Issuer[];
  identities: Identity[];
  resources: Resource[];
  rules: PolicyRule[];
  /** In the file's order, which is the order the gateway merges them in. */
  masks: Mask[];
  /** In the file's order: the first rule that holds a statement is the one its request names. */
  approvals: ApprovalRule[];
  /** Grants not made by a rule (`warden grants add`); a policy file has none. */
  loose: Grant[];
}

export const stateFromPolicy = (p: Policy): ConfigState => ({
  issuers: p.issuers,
  identities: p.identities,
  resources: p.resources,
  rules: p.rules,
  masks: p.masks,
  approvals: p.approvals,
  loose: [],
});

/**
 * The store's configuration seen as a policy: grants that share a rule name
 * are that rule again. Issuers named in `keep` are left out: they are not the
 * file's to change.
 */
export function stateFromStore(
  s: { issuers: Issuer[]; identities: Identity[]; resources: Resource[]; grants: Grant[]; masks: Mask[]; approvals: ApprovalRule[] },
  keep: readonly string[] = [],
): ConfigState {
  const rules = new Map<string, PolicyRule>();
  const loose: Grant[] = [];
  for (const g of s.grants) {
    if (!g.rule) {
      loose.push(g);
      continue;
    }
    let r = rules.get(g.rule);
    if (!r) {
      r = {
        name: g.rule,
        resource: g.resource,
        identities: [],
        groups: [],
        access: (g.access || 'read') as AccessLevel,
        allowSchemas: g.allowSchemas,
        denySchemas: g.denySchemas,
        allowTables: g.allowTables,
        denyTables: g.denyTables,
        trust: g.trust,
      };
      rules.set(g.rule, r);
    }
    if (g.identity) r.identities.push(g.identity);
    else r.groups.push(g.group);
  }
  return {
    issuers: s.issuers.filter((i) => !keep.includes(i.name)),
    identities: s.identities,
    resources: s.resources,
    rules: [...rules.values()],
    masks: s.masks,
    approvals: s.approvals,
    loose,
  };
}

/** Stable ids, so applying the same rule again keeps its grants' ids. */
function grantId(rule: string, kind: 'identity' | 'group', subject: string): string {
  return `g_${createHash('sha256').update(`${rule}\0${kind}\0${subject}`).digest('hex').slice(0, 12)}`;
}

/** One grant per identity and group of the rule, each carrying the rule's name. */
export function grantsOfRule(r: PolicyRule): Grant[] {
  const base = {
    resource: r.resource,
    access: r.access,
    rule: r.name,
    allowSchemas: r.allowSchemas,
    denySchemas: r.denySchemas,
    allowTables: r.allowTables,
    denyTables: r.denyTables,
    trust: r.trust,
  };
  return [
    ...r.identities.map((identity) => ({ ...base, id: grantId(r.name, 'identity', identity), identity, group: '' })),
    ...r.groups.map((group) => ({ ...base, id: grantId(r.name, 'group', group), identity: '', group })),
  ];
}

// ---- differences ----------------------------------------------------------

const sorted = (xs: readonly string[]) => [...xs].sort();
const showList = (xs: readonly string[]) => `[${xs.join(', ')}]`;
const showText = (s: string) => (s === '' ? '""' : /[\s"]/.test(s) ? JSON.stringify(s) : s);

type Fields = Record<string, string>;

const issuerFields = (i: Issuer): Fields => ({
  issuer_url: showText(i.issuerUrl),
  audiences: showList(sorted(i.audiences)),
  jwks_uri: showText(i.jwksUri),
  // Key material is long; say that it changed, not what it is.
  jwks_json: i.jwksJson ? `sha256:${createHash('sha256').update(i.jwksJson).digest('hex').slice(0, 12)}` : '""',
  algorithms: showList(sorted(i.algorithms)),
});
const identityFields = (i: Identity): Fields => ({
  issuer: i.issuer,
  match: `{${sorted(i.match.map((m) => `${m.claim}: ${showText(m.value)}`)).join(', ')}}`,
  groups: showList(sorted(i.groups)),
});
const resourceFields = (r: Resource): Fields => ({ agent: r.agent, description: showText(r.description) });
const ruleFields = (r: PolicyRule): Fields => ({
  resource: r.resource,
  identities: showList(sorted(r.identities)),
  groups: showList(sorted(r.groups)),
  access: r.access,
  'schemas.allow': showList(sorted(r.allowSchemas)),
  'schemas.deny': showList(sorted(r.denySchemas)),
  'tables.allow': showList(sorted(r.allowTables)),
  'tables.deny': showList(sorted(r.denyTables)),
  trust: showList(sorted(r.trust)),
});

/** "partial(4)", "partial(4, '#')", "redact(\"XXX\")", "hash". */
function showFunction(f: MaskFunction | undefined): string {
  if (!f) return '?';
  if (f.fn === 'partial') return `partial(${f.keep}${f.char ? `, ${JSON.stringify(f.char)}` : ''})`;
  if (f.fn === 'redact' && f.text) return `redact(${JSON.stringify(f.text)})`;
  return f.fn;
}
// Entries stay in the file's order: it is the order they apply in.
const maskFields = (m: Mask): Fields => ({
  resource: m.resource,
  identities: showList(sorted(m.identities)),
  groups: showList(sorted(m.groups)),
  'exempt.identities': showList(sorted(m.exemptIdentities)),
  'exempt.groups': showList(sorted(m.exemptGroups)),
  columns: showList(m.columns.map((c) => `${c.pattern}: ${showFunction(c.mask)}`)),
  detectors: showList(m.detectors.map((d) => `${d.detector}${d.pattern ? ` ${JSON.stringify(d.pattern)}` : ''}: ${showFunction(d.mask)}`)),
  predicates: m.predicates,
  on_invalid: m.onInvalid,
});

const approvalFields = (r: ApprovalRule): Fields => ({
  resource: r.resource,
  identities: showList(sorted(r.identities)),
  groups: showList(sorted(r.groups)),
  kinds: showList(sorted(r.kinds)),
  objects: showList(sorted(r.objects)),
  without_where: String(r.withoutWhere),
  rows_over: r.rowsOver ? String(r.rowsOver) : '-',
  approvers: showList(sorted(r.approvers)),
  quorum: String(r.quorum),
  request_ttl: showDuration(r.requestTtlSeconds),
  approval_ttl: showDuration(r.approvalTtlSeconds),
  mode: r.mode,
  wait_timeout: showDuration(r.waitTimeoutSeconds),
});

/** A line when the entries both sides have come in another order (masks merge, approval rules match, in order). */
function order(kind: string, from: { name: string }[], to: { name: string }[]): string[] {
  const both = (xs: { name: string }[], ys: { name: string }[]) => xs.map((m) => m.name).filter((n) => ys.some((y) => y.name === n));
  const a = both(from, to);
  const b = both(to, from);
  return a.join('\0') === b.join('\0') ? [] : [`~ ${kind}: order ${showList(a)} -> ${showList(b)}`];
}

function diffKind<T extends { name: string }>(kind: string, from: T[], to: T[], fields: (x: T) => Fields): string[] {
  const before = new Map(from.map((x) => [x.name, x]));
  const after = new Map(to.map((x) => [x.name, x]));
  const names = sorted([...new Set([...before.keys(), ...after.keys()])]);
  const lines: string[] = [];
  for (const name of names) {
    const a = before.get(name);
    const b = after.get(name);
    if (!a) lines.push(`+ ${kind} ${name}`);
    else if (!b) lines.push(`- ${kind} ${name}`);
    else {
      const fa = fields(a);
      const fb = fields(b);
      for (const key of Object.keys(fb)) {
        if (fa[key] !== fb[key]) lines.push(`~ ${kind} ${name}: ${key} ${fa[key]} -> ${fb[key]}`);
      }
    }
  }
  return lines;
}

const describeLoose = (g: Grant) =>
  `- grant ${g.id}: ${g.identity ? `identity ${g.identity}` : `group ${g.group}`} on ${g.resource} (${g.access || 'read'}, made outside a policy file)`;

/** The change lines that turn `from` into `to`, by kind, then by name. */
export function diffStates(from: ConfigState, to: ConfigState): string[] {
  return [
    ...diffKind('issuer', from.issuers, to.issuers, issuerFields),
    ...diffKind('identity', from.identities, to.identities, identityFields),
    ...diffKind('resource', from.resources, to.resources, resourceFields),
    ...diffKind('rule', from.rules, to.rules, ruleFields),
    ...diffKind('mask', from.masks, to.masks, maskFields),
    ...order('masks', from.masks, to.masks),
    ...diffKind('approval', from.approvals, to.approvals, approvalFields),
    ...order('approvals', from.approvals, to.approvals),
    // A policy file has no loose grants: applying it removes them.
    ...from.loose.filter((g) => !to.loose.some((x) => x.id === g.id)).map(describeLoose),
  ];
}

/** One line for the history table, e.g. "added identity ci, rule r; changed rule x; removed resource old". */
export function summarize(lines: string[], max = 200): string {
  if (lines.length === 0) return 'no changes';
  const groups: [string, string][] = [['+', 'added'], ['~', 'changed'], ['-', 'removed']];
  const parts: string[] = [];
  for (const [sign, verb] of groups) {
    const objects = [
      ...new Set(lines.filter((l) => l.startsWith(`${sign} `)).map((l) => l.slice(2).split(':')[0]!)),
    ];
    if (objects.length) parts.push(`${verb} ${objects.join(', ')}`);
  }
  const text = parts.join('; ');
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
