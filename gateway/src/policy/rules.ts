// Decides, per session, whether each statement is within the identity's rules.
// Classification is shared and cached by text; the decision for a cached
// classification is cached per session, so a repeated statement costs two
// map lookups.
import type { Grant } from '@warden/proto';
import type { ClassificationCache } from './cache.js';
import { accessAllows, accessRank, type Access, type Classification, type ObjectRef, type StatementInfo } from './types.js';

/** What one grant lets an identity do on a resource. */
export interface Rule {
  name: string;
  access: Access;
  /** Schema and table scopes; empty lists mean "no restriction". */
  allowSchemas: string[];
  denySchemas: string[];
  /** Tables as "schema.table" or "table" (any schema). */
  allowTables: string[];
  denyTables: string[];
}

const LEVELS = new Set<string>(['read', 'write', 'ddl', 'admin']);

/** The rules the grants give an identity (with its groups) on a resource. */
export function rulesFor(grants: readonly Grant[], resource: string, identity: string, groups: readonly string[]): Rule[] {
  const rules: Rule[] = [];
  for (const g of grants) {
    if (g.resource !== resource) continue;
    if (g.identity ? g.identity !== identity : !groups.includes(g.group)) continue;
    rules.push({
      name: g.rule || `grant ${g.id}`,
      // An unknown level cannot come from the control plane's validation; read is the safe reading.
      access: (LEVELS.has(g.access) ? g.access : 'read') as Access,
      allowSchemas: g.allowSchemas,
      denySchemas: g.denySchemas,
      allowTables: g.allowTables,
      denyTables: g.denyTables,
    });
  }
  return rules;
}

export interface Refusal {
  sqlstate: string;
  message: string;
  /** Index of the first refused statement of a multi-statement string. */
  index: number;
  statement?: StatementInfo;
  rule?: string;
}

export interface Decision {
  refusal: Refusal | null;
  classification: Classification;
  /** The rule that allowed the statement(s), when allowed. */
  rule?: string;
}

export interface GateContext {
  identity: string;
  resource: string;
  rules: Rule[];
}

export class StatementGate {
  private decisions = new WeakMap<Classification, Decision>();
  /** Highest rule, named in refusals: the rule that set the ceiling. */
  private top: Rule | undefined;
  /** After SET search_path, unqualified names can no longer be placed in a schema. */
  private searchPathChanged = false;

  constructor(
    private readonly ctx: GateContext,
    private readonly cache: ClassificationCache,
  ) {
    this.setRules(ctx.rules);
  }

  /** A new policy version takes effect on the next statement of open sessions. */
  setRules(rules: Rule[]): void {
    this.ctx.rules = rules;
    this.top = [...rules].sort((a, b) => accessRank(b.access) - accessRank(a.access))[0];
    this.decisions = new WeakMap();
  }

  get ceiling(): Access | undefined {
    return this.top?.access;
  }

  /** The name of the rule that sets the ceiling: the agent maps it to a native role. */
  get ceilingRule(): string | undefined {
    return this.top?.name;
  }

  check(sql: string): Decision {
    const classification = this.cache.get(sql);
    let decision = this.decisions.get(classification);
    if (!decision) {
      decision = this.decide(classification);
      // Decisions that depend on session state are not remembered.
      if (!this.searchPathChanged) this.decisions.set(classification, decision);
    }
    if (!decision.refusal && classification.ok && classification.statements.some((s) => s.setting === 'search_path' && s.kind.startsWith('SET'))) {
      this.searchPathChanged = true;
    }
    return decision;
  }

  /** The FunctionCall message calls a function by oid, outside SQL: admin only. */
  checkFunctionCall(): Refusal | null {
    if (this.top?.access === 'admin') return null;
    return this.refusal(0, 'call functions through the FunctionCall protocol message');
  }

  private decide(c: Classification): Decision {
    if (!c.ok) {
      if (this.top?.access === 'admin') return { refusal: null, classification: c, rule: this.top.name };
      return {
        classification: c,
        refusal: {
          sqlstate: '42601',
          index: 0,
          rule: this.top?.name,
          message: `warden: could not parse the statement, and statements Warden cannot parse are refused below admin access: ${c.error}`,
        },
      };
    }
    let decidingRule: string | undefined;
    for (let i = 0; i < c.statements.length; i++) {
      const s = c.statements[i]!;
      if (s.escalation) {
        const r = this.refusal(i, s.kind, s);
        return { classification: c, refusal: { ...r, message: `${r.message}; changing the session's role is never allowed through Warden` } };
      }
      const rule = this.ctx.rules.find((r) => accessAllows(r.access, s.access) && s.objects.every((o) => this.inScope(r, o)));
      if (!rule) return { classification: c, refusal: this.refusal(i, describe(s), s) };
      decidingRule ??= rule.name;
    }
    return { refusal: null, classification: c, rule: decidingRule };
  }

  private refusal(index: number, what: string, s?: StatementInfo): Refusal {
    const { identity, resource } = this.ctx;
    const access = this.top?.access ?? 'no access';
    const rule = this.top?.name;
    const why = s?.reason ? ` (${s.reason})` : '';
    return {
      sqlstate: '42501',
      index,
      statement: s,
      rule,
      message: `warden: ${identity} (${access}) may not ${what} on ${resource}${why}${rule ? ` (rule: ${rule})` : ''}`,
    };
  }

  private inScope(rule: Rule, o: ObjectRef): boolean {
    if (o.type !== 'table' && o.type !== 'schema') return true;
    const schema = o.type === 'schema' ? o.name : o.schema;
    const table = o.type === 'table' ? o.name : undefined;
    // Unqualified names resolve through search_path: public unless the session changed it.
    const resolved = schema ?? (this.searchPathChanged ? undefined : 'public');
    if (rule.denySchemas.length && (resolved === undefined || rule.denySchemas.includes(resolved))) return false;
    if (rule.allowSchemas.length && (resolved === undefined || !rule.allowSchemas.includes(resolved))) return false;
    if (table !== undefined) {
      const matches = (entry: string) => {
        const dot = entry.indexOf('.');
        if (dot < 0) return entry === table;
        return entry.slice(dot + 1) === table && (resolved === undefined || entry.slice(0, dot) === resolved);
      };
      if (rule.denyTables.some(matches)) return false;
      if (rule.allowTables.length && (resolved === undefined || !rule.allowTables.some(matches))) return false;
    }
    return true;
  }
}

/** "DROP TABLE public.orders", "SELECT FROM public.orders" */
function describe(s: StatementInfo): string {
  const objects = s.objects.filter((o) => o.type !== 'function').map((o) => (o.schema ? `${o.schema}.${o.name}` : o.name));
  return objects.length ? `${s.kind} ${objects.join(', ')}` : s.kind;
}
