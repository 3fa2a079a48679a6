// Which statements need a human's approval before they run: the approval
// rules of the policy file (from the control plane's snapshot) that apply to
// a session, and the matcher the gate asks for every allowed statement.
//
// A rule matches a statement that touches one of its objects (any, when it
// names none) and that has one of its kinds, or changes rows without WHERE,
// or may change more rows than it allows (which only EXPLAIN can tell: the
// hold then carries `estimate`, and the session asks the database). What code
// runs for the statement counts as the statement's own: the bodies of the
// functions it calls, triggers, a DO block. Code Warden cannot read (dynamic
// SQL, other languages, functions the catalog does not know yet) may do
// anything, so every rule that applies holds it.
import type { ApprovalRule } from '@warden/proto';
import { classifyStatement } from '../policy/classify.js';
import { parseStatements, type PgNode } from '../policy/parser.js';
import type { Reach } from '../policy/reach.js';
import type { StatementInfo } from '../policy/types.js';

export interface Hold {
  rule: ApprovalRule;
  /** "DELETE without WHERE on public.orders", "ALTER TABLE public.orders", "UPDATE public.orders estimated over 1000 rows". */
  why: string;
  /** Held only if EXPLAIN estimates more rows than this (or cannot tell). */
  estimate?: { rowsOver: number };
}

/** Whether a rule names the session: by identity or group, or everyone when it names nobody. */
function applies(r: ApprovalRule, identity: string, groups: readonly string[]): boolean {
  if (r.identities.length === 0 && r.groups.length === 0) return true;
  return r.identities.includes(identity) || r.groups.some((g) => groups.includes(g));
}

/** The rules on `resource` that apply to `identity` (with `groups`), in the policy file's order. */
export function approvalRulesFor(rules: readonly ApprovalRule[], resource: string, identity: string, groups: readonly string[]): ApprovalRule[] {
  return rules.filter((r) => r.resource === resource && applies(r, identity, groups));
}

type Dml = 'INSERT' | 'UPDATE' | 'DELETE' | 'MERGE';

/** A row change inside a statement: the statement itself, a data-modifying WITH query, EXPLAIN ANALYZE's statement. */
interface Change {
  kind: Dml;
  schema?: string;
  table: string;
  /** UPDATE or DELETE with a WHERE clause (WHERE CURRENT OF included). */
  where: boolean;
  /** INSERT whose rows come from a query rather than VALUES. */
  fromQuery: boolean;
  /** MERGE's actions, which change rows as these kinds do. */
  actions: Dml[];
}

/** What the text says that the classification does not: its row changes, and what an EXECUTE runs. */
interface Shape {
  changes: Change[];
  /** For EXECUTE of a SQL prepared statement: the prepared statement's kind. */
  kind?: string;
}

const DML_NODES: Record<string, Dml> = { InsertStmt: 'INSERT', UpdateStmt: 'UPDATE', DeleteStmt: 'DELETE', MergeStmt: 'MERGE' };
const MERGE_ACTIONS: Record<string, Dml> = { CMD_INSERT: 'INSERT', CMD_UPDATE: 'UPDATE', CMD_DELETE: 'DELETE' };

/** Nodes that store a statement to run later (or only plan it): their row changes are not this statement's. */
const STORED = new Set(['RuleStmt', 'ViewStmt', 'CreateFunctionStmt', 'PrepareStmt', 'ExplainStmt', 'CreateTrigStmt']);

const isObj = (v: unknown): v is PgNode => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function collect(v: unknown, out: Change[]): void {
  if (Array.isArray(v)) {
    for (const x of v) collect(x, out);
    return;
  }
  if (!isObj(v)) return;
  for (const [key, body] of Object.entries(v)) {
    if (STORED.has(key)) continue;
    const kind = DML_NODES[key];
    if (kind && isObj(body)) {
      const rel = isObj(body.relation) ? body.relation : {};
      const select = isObj(body.selectStmt) && isObj(body.selectStmt.SelectStmt) ? body.selectStmt.SelectStmt : undefined;
      const actions: Dml[] = [];
      for (const c of Array.isArray(body.mergeWhenClauses) ? body.mergeWhenClauses : []) {
        const a = isObj(c) && isObj(c.MergeWhenClause) ? MERGE_ACTIONS[str(c.MergeWhenClause.commandType) ?? ''] : undefined;
        if (a && !actions.includes(a)) actions.push(a);
      }
      out.push({
        kind,
        schema: str(rel.schemaname),
        table: str(rel.relname) ?? '?',
        where: body.whereClause !== undefined,
        fromQuery: select !== undefined && select.valuesLists === undefined,
        actions,
      });
    }
    collect(body, out);
  }
}

/** The parse of one statement's text; EXECUTE's text is its PREPARE's. */
function shapeOf(info: StatementInfo, text: string): Shape {
  let parsed;
  try {
    parsed = parseStatements(text);
  } catch {
    return { changes: [] };
  }
  const p = parsed[0];
  if (!p) return { changes: [] };
  const changes: Change[] = [];
  let node: PgNode = { [p.type]: p.node };
  let kind: string | undefined;
  if (p.type === 'PrepareStmt' && info.kind === 'EXECUTE' && isObj(p.node.query)) {
    const [type, body] = Object.entries(p.node.query)[0] ?? [];
    if (type && isObj(body)) {
      node = p.node.query;
      try {
        kind = classifyStatement({ type, node: body, text, location: 0 }).kind;
      } catch {
        // The gate classified the PREPARE already; its kind is only for matching.
      }
    }
  } else if (p.type === 'ExplainStmt') {
    // Plain EXPLAIN only plans the statement; EXPLAIN ANALYZE runs it.
    node = info.kind.startsWith('EXPLAIN ANALYZE') && isObj(p.node.query) ? p.node.query : {};
  }
  collect(node, changes);
  return { changes, kind };
}

/** "ALTER" matches "ALTER TABLE" and "ALTER", not "ALTERX". */
function kindMatches(wanted: string, kind: string): boolean {
  const w = wanted.trim().toUpperCase();
  return w !== '' && (kind === w || kind.startsWith(`${w} `));
}

interface Table {
  schema?: string;
  name: string;
}

const named = (t: Table) => (t.schema ? `${t.schema}.${t.name}` : t.name);

/** A rule's "schema.table" or "table" against a table the statement touches (unplaced: any schema). */
function objectMatches(entry: string, t: Table): boolean {
  const dot = entry.indexOf('.');
  if (dot < 0) return entry === t.name;
  return entry.slice(dot + 1) === t.name && (t.schema === undefined || entry.slice(0, dot) === t.schema);
}

/** A change's target as the server will place it: from the reach when it tells, else as written. */
function placed(c: { schema?: string; table: string }, tables: readonly Table[]): string {
  if (c.schema) return `${c.schema}.${c.table}`;
  const found = tables.filter((t) => t.name === c.table && t.schema);
  return found.length === 1 ? named(found[0]!) : c.table;
}

/** Kinds that change rows in numbers EXPLAIN can estimate. */
function estimable(c: Change): boolean {
  return c.kind !== 'INSERT' || c.fromQuery;
}

export class ApprovalMatcher {
  /** Statement texts seen lately: the gate caches decisions, but EXECUTE is decided each time. */
  private readonly shapes = new Map<string, Shape>();

  constructor(readonly rules: ApprovalRule[]) {}

  /** No rule: the gate need not ask. */
  get empty(): boolean {
    return this.rules.length === 0;
  }

  /**
   * The hold for an allowed statement, or undefined when it may run at once.
   * `info` is the statement as the gate decided it (EXECUTE resolved to its
   * PREPARE), `text` the statement's text (the PREPARE's, for EXECUTE),
   * `reach` where its names resolve.
   */
  match(info: StatementInfo, text: string, reach?: Reach): Hold | undefined {
    // Preparing runs nothing: the EXECUTE is what is held.
    if (this.rules.length === 0 || info.kind === 'PREPARE') return undefined;
    const shape = this.shape(info, text);
    const kind = shape.kind ?? info.kind;
    const own = info.objects.filter((o) => o.type === 'table').map((o): Table => ({ schema: o.schema, name: o.name }));
    // Names the reach could not place (an unknown search_path) count as written: they may be anywhere.
    const unplaced = reach ? own.filter((o) => !o.schema && !reach.tables.some((t) => t.name === o.name)) : [];
    const touched: Table[] = reach ? [...reach.tables, ...unplaced] : own;
    const direct: Table[] = reach ? [...reach.tables.filter((t) => !t.via), ...unplaced] : own;
    const targets = shape.changes.map((c) => placed(c, direct));
    const head = info.kind === 'EXECUTE' && shape.kind ? `EXECUTE of ${shape.kind}` : kind;
    const kinds = [kind, ...shape.changes.flatMap((c) => [c.kind, ...c.actions])];
    const code = (reach?.code ?? []).map((c) => this.codeStatement(c.info, c.via, reach!.tables));
    let byEstimate: Hold | undefined;
    for (const rule of this.rules) {
      if (reach?.opaque.length) return { rule, why: `${head} runs code Warden cannot read: ${reach.opaque[0]}` };
      const hit = rule.objects.length ? touched.filter((t) => rule.objects.some((e) => objectMatches(e, t))) : direct;
      if (rule.objects.length && hit.length === 0) continue;
      // What the statement does, for `why`: its kind on the rule's objects, else on what it changes or names.
      const names = [...new Set(rule.objects.length || !targets.length ? hit.map(named) : targets)];
      const what = names.length ? `${head} ${names.join(', ')}` : head;
      // A rule that says only which objects: any statement on them.
      const unconditional = rule.kinds.length === 0 && !rule.withoutWhere && !(rule.rowsOver > 0);
      if (unconditional || rule.kinds.some((k) => kinds.some((x) => kindMatches(k, x)))) return { rule, why: what };
      const inCode = code.find((c) => rule.kinds.some((k) => c.kinds.some((x) => kindMatches(k, x))));
      if (inCode) return { rule, why: `${what}, which runs ${inCode.does} in ${inCode.via}` };
      if (rule.withoutWhere) {
        const bare = shape.changes.flatMap((c, i) => ((c.kind === 'UPDATE' || c.kind === 'DELETE') && !c.where ? [i] : []));
        if (bare.length) {
          const verbs = [...new Set(bare.map((i) => shape.changes[i]!.kind))].join(' and ');
          return { rule, why: `${verbs} without WHERE on ${[...new Set(bare.map((i) => targets[i]!))].join(', ')}` };
        }
        for (const c of code) {
          const change = c.changes.find((x) => (x.kind === 'UPDATE' || x.kind === 'DELETE') && !x.where);
          if (change) return { rule, why: `${what}, which runs ${change.kind} without WHERE on ${placed(change, reach!.tables)} in ${c.via}` };
        }
      }
      if (rule.rowsOver > 0) {
        // EXPLAIN estimates the statement's own rows, not those its code changes.
        const changing = code.find((c) => c.changes.some(estimable));
        if (changing) return { rule, why: `${what}, which changes rows in ${changing.via}, more than EXPLAIN can estimate (the rule holds over ${rule.rowsOver})` };
        if (!byEstimate && shape.changes.some(estimable)) {
          byEstimate = { rule, why: `${what} estimated over ${rule.rowsOver} rows`, estimate: { rowsOver: rule.rowsOver } };
        }
      }
    }
    return byEstimate;
  }

  /** A statement code runs, for matching: its kinds, row changes, and what it does in words ("DELETE on public.t"). */
  private codeStatement(info: StatementInfo, via: string, tables: readonly Table[]) {
    const { changes } = this.shape(info, info.text);
    const on = changes.length
      ? changes.map((c) => placed(c, tables))
      : info.objects.filter((o) => o.type === 'table').map((o) => placed({ schema: o.schema, table: o.name }, tables));
    const names = [...new Set(on)];
    return { via, changes, kinds: [info.kind, ...changes.flatMap((c) => [c.kind, ...c.actions])], does: names.length ? `${info.kind} on ${names.join(', ')}` : info.kind };
  }

  private shape(info: StatementInfo, text: string): Shape {
    const key = `${info.kind === 'EXECUTE' ? 'E' : ''}${text}`;
    let s = this.shapes.get(key);
    if (!s) {
      s = shapeOf(info, text);
      // A small bound: decisions are cached by the gate, so this mostly serves EXECUTE.
      if (this.shapes.size >= 256) this.shapes.delete(this.shapes.keys().next().value!);
      this.shapes.set(key, s);
    }
    return s;
  }
}

/**
 * What a hold that waited for an estimate becomes once EXPLAIN answered:
 * undefined when Postgres estimates at most the rule's rows, else the hold
 * with the estimate in its `why` (an unknown estimate holds, saying so).
 */
export function afterEstimate(hold: Hold, rows: number | null): Hold | undefined {
  if (!hold.estimate) return hold;
  const over = hold.estimate.rowsOver;
  if (rows !== null && rows <= over) return undefined;
  const head = hold.why.replace(/ estimated over \d+ rows$/, '');
  const why = rows === null ? `${head}: Postgres could not estimate its rows (the rule holds over ${over})` : `${head} estimated at ${Math.round(rows)} rows (over ${over})`;
  return { ...hold, why };
}
