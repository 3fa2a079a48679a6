// The rules an identity has on a resource, from the control plane's grants,
// and the shape of a decision (made by StatementGate in gate.ts).
import type { Grant } from '@warden/proto';
import type { Hold } from '../approvals/rules.js';
import type { MaskPlan } from '../masking/types.js';
import type { Reach } from './reach.js';
import type { PathEffect } from './search-path.js';
import type { Access, Classification, StatementInfo } from './types.js';

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
  /** Views and functions ("schema.name") counted as themselves rather than what they reach; SECURITY DEFINER functions need this. */
  trust?: string[];
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
      trust: g.trust,
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
  /** What the refused statement reaches, for `policy check`. */
  reach?: Reach;
}

export interface Decision {
  refusal: Refusal | null;
  classification: Classification;
  /** The rule that allowed the statements (those before the refused one, when refused). */
  rule?: string;
  /** Per allowed statement: what it does to search_path and the transaction once it has run. */
  effects: PathEffect[][];
  /** Per allowed statement, in a session under masks: how its results are masked. */
  masks?: Array<MaskPlan | undefined>;
  /** Per allowed statement, when the session has approval rules: the approval it needs before it runs. */
  holds?: Array<Hold | undefined>;
  /** The decision depends only on the session state the gate keys its cache by. */
  cacheable: boolean;
}

