// Where masked columns' values flow in one statement: which result columns
// carry them (unchanged or computed), which clauses filter or order by them,
// which writes copy them elsewhere. Read from Postgres' own parse tree, with
// names placed the way the server places them (search_path and the catalog)
// and views followed through their definitions.
import type { ResourceCatalog } from '../catalog/types.js';
import { parseStatements, type PgNode, type ParsedStatement } from '../policy/parser.js';
import { searchSchemas } from '../policy/reach.js';
import type { ColumnRef, CopyFormat, Lineage } from './types.js';

export interface LineageContext {
  catalog: ResourceCatalog | undefined;
  /** search_path values the server may be using; null = unknown. A name is masked if it is masked under any of them. */
  paths: ReadonlyArray<string | null>;
  /** The mask applying to a stored column, with inheritance considered by the caller; undefined when not masked. Called with stored (lower-case unless quoted) names. */
  isMasked(ref: ColumnRef): boolean;
  /** Tables that have any masked column, to skip work: "schema.table" → true. */
  maskedTable(schema: string, table: string): boolean;
  /** `policy check` without a database: no schema is named after the login role (as the gate assumes). */
  assumeNoUserSchema?: boolean;
}

/** How deep views over views are followed. */
const MAX_VIEW_DEPTH = 8;
/** CURSOR_OPT_BINARY in DeclareCursorStmt.options. */
const CURSOR_OPT_BINARY = 0x1;
const TEXT_TYPES = new Set(['text', 'varchar', 'bpchar', 'name', 'citext']);

// ---------------------------------------------------------------------------
// Flows

/** The masked columns one value carries: unchanged (direct) or computed from (derived). */
class Flow {
  readonly direct = new Map<string, ColumnRef>();
  readonly derived = new Map<string, ColumnRef>();

  get empty(): boolean {
    return this.direct.size === 0 && this.derived.size === 0;
  }

  add(other: Flow): this {
    for (const [k, v] of other.direct) this.direct.set(k, v);
    for (const [k, v] of other.derived) this.derived.set(k, v);
    return this;
  }

  /** Every column, whichever way it flows. */
  all(): ColumnRef[] {
    const m = new Map(this.direct);
    for (const [k, v] of this.derived) m.set(k, v);
    return [...m.values()];
  }

  /** The same columns, all computed from. */
  asDerived(): Flow {
    const f = new Flow();
    for (const c of this.all()) f.derived.set(keyOf(c), c);
    return f;
  }

  static of(ref: ColumnRef): Flow {
    const f = new Flow();
    f.direct.set(keyOf(ref), ref);
    return f;
  }
}

const keyOf = (c: ColumnRef): string => `${c.schema}.${c.table}.${c.column}`;
const NOTHING = new Flow();

function union(flows: Iterable<Flow>): Flow {
  const f = new Flow();
  for (const x of flows) f.add(x);
  return f;
}

// ---------------------------------------------------------------------------
// Relations in scope

interface Col {
  name: string;
  flow: Flow;
}

/** A relation visible in a query level: a table, view, subquery, CTE, function or aliased join. */
interface Rel {
  /** Alias or relation name, for qualified references. */
  name: string;
  /** The schema, for schema-qualified references to an unaliased table. */
  schema?: string;
  /** Columns in order; undefined when not known. */
  cols?: Col[];
  /** When the columns are not known: the flow of a named column (base tables: asked by name). */
  byName?: (name: string) => Flow | undefined;
  /** What a reference to the whole row or `*` carries, when the columns are not known. */
  unknownWhole?: { flow: Flow; why: string; refs: ColumnRef[] };
}

/** One item of a FROM list: its columns in `*` order, with relations whose columns are unknown in place. */
type Item = Array<Col | { unknown: Rel }>;

interface Cte {
  name: string;
  cols: Col[];
}

class Scope {
  rels: Rel[] = [];
  items: Item[] = [];
  ctes = new Map<string, Cte>();
  constructor(readonly parent?: Scope) {}

  findCte(name: string): Cte | undefined {
    for (let s: Scope | undefined = this; s; s = s.parent) {
      const c = s.ctes.get(name);
      if (c) return c;
    }
    return undefined;
  }
}

/** Predicates, writes and opaque uses found so far, deduplicated. */
class Sink {
  readonly predicates = new Map<string, { column: ColumnRef; where: string }>();
  readonly written = new Map<string, { column: ColumnRef; into: string }>();
  readonly opaque = new Map<string, { column: ColumnRef; why: string }>();

  predicate(flow: Flow, where: string): void {
    for (const column of flow.all()) this.predicates.set(`${keyOf(column)}|${where}`, { column, where });
  }
  write(flow: Flow, into: string): void {
    for (const column of flow.all()) this.written.set(`${keyOf(column)}|${into}`, { column, into });
  }
  opaqueUse(column: ColumnRef, why: string): void {
    this.opaque.set(`${keyOf(column)}|${why}`, { column, why });
  }
}

// ---------------------------------------------------------------------------
// Tree helpers

type Json = unknown;

function isObj(x: Json): x is PgNode {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** The single key and fields of a wrapped node ({"ColumnRef": {...}}). */
function unwrap(n: Json): [string, PgNode] | undefined {
  if (!isObj(n)) return undefined;
  const keys = Object.keys(n);
  if (keys.length !== 1) return undefined;
  const inner = n[keys[0]!];
  return isObj(inner) ? [keys[0]!, inner] : undefined;
}

function list(x: Json): Json[] {
  return Array.isArray(x) ? x : [];
}

function str(n: Json): string | undefined {
  const u = unwrap(n);
  return u && u[0] === 'String' ? (u[1].sval as string) : undefined;
}

function names(x: Json): string[] {
  return list(x).map((n) => str(n) ?? '');
}

function intConst(n: Json): number | undefined {
  const u = unwrap(n);
  if (!u || u[0] !== 'A_Const') return undefined;
  const iv = u[1].ival;
  if (!isObj(iv)) return undefined;
  return typeof iv.ival === 'number' ? iv.ival : 0;
}

// ---------------------------------------------------------------------------

/** Where masked columns flow in the statement `text`. */
export function lineage(text: string, ctx: LineageContext): Lineage {
  const stmts = parseStatements(text);
  const a = new Analyzer(ctx);
  const sink = new Sink();
  const found: Found = { outputs: null };
  const stmt = stmts[0];
  if (stmt) a.top(stmt, sink, found);
  const out: Lineage = {
    outputs: found.outputs?.map((f) => ({ direct: [...f.direct.values()], derived: [...f.derived.values()] })) ?? null,
    predicates: [...sink.predicates.values()],
    written: [...sink.written.values()],
    opaque: [...sink.opaque.values()],
  };
  if (found.copy) out.copy = found.copy;
  if (found.cursor) out.cursor = found.cursor;
  if (found.fetch) out.fetch = found.fetch;
  return out;
}

/** What a statement returns, before its flows are listed. */
interface Found extends Pick<Lineage, 'copy' | 'cursor' | 'fetch'> {
  outputs: Flow[] | null;
}

class Analyzer {
  private readonly catalog: ResourceCatalog | undefined;
  /** Per call: views already analysed, and whether a relation reaches a masked table. */
  private readonly views = new Map<string, { rel: Rel; opaque: Sink['opaque'] }>();
  private readonly reaches = new Map<string, boolean>();
  /** Views being followed, one inside the other. */
  private viewDepth = 0;

  constructor(private readonly ctx: LineageContext) {
    this.catalog = ctx.catalog;
  }

  top(stmt: ParsedStatement, sink: Sink, out: Found): void {
    const n = stmt.node;
    switch (stmt.type) {
      case 'PrepareStmt':
        out.outputs = this.statement(n.query, new Scope(), sink);
        return;
      case 'ExplainStmt': {
        // Plain EXPLAIN runs nothing; EXPLAIN ANALYZE runs the statement, writes included.
        const analyze = list(n.options).some((o) => unwrap(o)?.[1].defname === 'analyze');
        const inner = new Sink();
        this.statement(n.query, new Scope(), inner);
        for (const [k, v] of inner.predicates) sink.predicates.set(k, v);
        for (const [k, v] of inner.opaque) sink.opaque.set(k, v);
        if (analyze) for (const [k, v] of inner.written) sink.written.set(k, v);
        return;
      }
      case 'DeclareCursorStmt':
        out.outputs = this.statement(n.query, new Scope(), sink);
        out.cursor = { name: n.portalname as string, binary: ((n.options as number) & CURSOR_OPT_BINARY) !== 0 };
        return;
      case 'FetchStmt':
        out.fetch = { name: n.portalname as string, returnsRows: !n.ismove };
        return;
      case 'CopyStmt':
        this.copy(n, sink, out);
        return;
      case 'CallStmt':
        this.call(n.funccall, new Scope(), sink);
        return;
      case 'SelectStmt':
      case 'InsertStmt':
      case 'UpdateStmt':
      case 'DeleteStmt':
      case 'MergeStmt':
        out.outputs = this.statement({ [stmt.type]: n }, new Scope(), sink);
        return;
      case 'CreateTableAsStmt': {
        const outputs = this.statement(n.query, new Scope(), sink);
        const into = isObj(n.into) ? relName(n.into.rel) : '?';
        if (outputs) for (const o of outputs) sink.write(o, into);
        return;
      }
      default:
        return;
    }
  }

  /** A statement node (wrapped): its result columns' flows, or null when it returns no rows. */
  private statement(node: Json, outer: Scope, sink: Sink): Flow[] | null {
    return this.statementCols(node, outer, sink)?.map((c) => c.flow) ?? null;
  }

  private statementCols(node: Json, outer: Scope, sink: Sink): Col[] | null {
    const u = unwrap(node);
    if (!u) return null;
    const [type, n] = u;
    switch (type) {
      case 'SelectStmt': {
        const cols = this.select(n, outer, sink);
        if (isObj(n.intoClause)) {
          const into = relName(n.intoClause.rel);
          for (const c of cols) sink.write(c.flow, into);
          return null;
        }
        return cols;
      }
      case 'InsertStmt':
      case 'UpdateStmt':
      case 'DeleteStmt':
      case 'MergeStmt':
        return this.modify(type, n, outer, sink);
      default:
        return null;
    }
  }

  // -------------------------------------------------------------------------
  // SELECT

  /** A SelectStmt's fields: its output columns. */
  private select(n: PgNode, outer: Scope, sink: Sink): Col[] {
    const scope = new Scope(outer);
    if (isObj(n.withClause)) this.withClause(n.withClause, scope, sink);

    let outputs: Col[];
    if (n.op && n.op !== 'SETOP_NONE') {
      outputs = this.setOperation(n, scope, sink);
    } else if (n.valuesLists) {
      outputs = [];
      for (const row of list(n.valuesLists)) {
        const items = list(unwrap(row)?.[1].items);
        items.forEach((e, i) => {
          const f = this.expr(e, scope, sink);
          if (outputs[i]) outputs[i]!.flow.add(f);
          else outputs[i] = { name: `column${i + 1}`, flow: new Flow().add(f) };
        });
      }
    } else {
      for (const item of list(n.fromClause)) this.fromItem(item, scope, sink);
      if (n.whereClause) sink.predicate(this.expr(n.whereClause, scope, sink), 'WHERE');
      outputs = this.targetList(list(n.targetList), scope, sink);
      for (const g of list(n.groupClause)) this.groupItem(g, scope, outputs, sink);
      if (n.havingClause) sink.predicate(this.expr(n.havingClause, scope, sink), 'HAVING');
      for (const w of list(n.windowClause)) {
        const def = unwrap(w)?.[1];
        if (def) this.window(def, scope, sink);
      }
      const distinct = list(n.distinctClause);
      // DISTINCT is a list with one empty node; DISTINCT ON lists its expressions.
      if (distinct.length === 1 && !unwrap(distinct[0])) for (const o of outputs) sink.predicate(o.flow, 'DISTINCT');
      else for (const d of distinct) sink.predicate(this.byOutput(d, scope, outputs, sink, false), 'DISTINCT ON');
    }
    for (const s of list(n.sortClause)) {
      const by = unwrap(s)?.[1];
      if (by) sink.predicate(this.byOutput(by.node, scope, outputs, sink, false), 'ORDER BY');
    }
    if (n.limitCount) sink.predicate(this.expr(n.limitCount, scope, sink), 'LIMIT');
    if (n.limitOffset) sink.predicate(this.expr(n.limitOffset, scope, sink), 'OFFSET');
    return outputs;
  }

  private setOperation(n: PgNode, scope: Scope, sink: Sink): Col[] {
    const left = this.select(n.larg as PgNode, scope, sink);
    const right = this.select(n.rarg as PgNode, scope, sink);
    const out = left.map((c, i) => ({ name: c.name, flow: new Flow().add(c.flow).add(right[i]?.flow ?? NOTHING) }));
    // All but UNION ALL compare rows by value.
    if (!(n.op === 'SETOP_UNION' && n.all)) {
      const where = n.op === 'SETOP_UNION' ? 'UNION' : n.op === 'SETOP_INTERSECT' ? 'INTERSECT' : 'EXCEPT';
      for (const c of out) sink.predicate(c.flow, where);
    }
    return out;
  }

  private withClause(w: PgNode, scope: Scope, sink: Sink): void {
    for (const c of list(w.ctes)) {
      const cte = unwrap(c)?.[1];
      if (!cte) continue;
      const name = cte.ctename as string;
      const aliases = names(cte.aliascolnames);
      const q = unwrap(cte.ctequery);
      const run = (): Col[] => (this.statementCols(cte.ctequery, scope, sink) ?? []).map((col, i) => ({ name: aliases[i] ?? col.name, flow: col.flow }));
      if (w.recursive && q?.[0] === 'SelectStmt' && q[1].op && q[1].op !== 'SETOP_NONE') {
        // The recursive term reads the CTE itself: start from the first branch, then run until nothing new flows.
        const seed = this.select(q[1].larg as PgNode, scope, new Sink());
        let cols = seed.map((col, i) => ({ name: aliases[i] ?? col.name, flow: col.flow }));
        for (let round = 0; round < 4; round++) {
          scope.ctes.set(name, { name, cols });
          const next = run();
          const grew = next.some((col, i) => col.flow.all().length > (cols[i]?.flow.all().length ?? 0));
          cols = next;
          if (!grew) break;
        }
        scope.ctes.set(name, { name, cols });
      } else {
        scope.ctes.set(name, { name, cols: run() });
      }
    }
  }

  private targetList(targets: Json[], scope: Scope, sink: Sink): Col[] {
    const out: Col[] = [];
    for (const t of targets) {
      const rt = unwrap(t)?.[1];
      if (!rt) continue;
      const star = this.starOf(rt.val);
      if (star !== undefined) {
        out.push(...this.expandStar(star, scope, sink));
        continue;
      }
      out.push({ name: outputName(rt), flow: this.expr(rt.val, scope, sink) });
    }
    return out;
  }

  /** For `*` / `t.*` / `s.t.*`: the qualifier (empty for a bare `*`); undefined otherwise. */
  private starOf(val: Json): string[] | undefined {
    const u = unwrap(val);
    if (!u || u[0] !== 'ColumnRef') return undefined;
    const fields = list(u[1].fields);
    if (!fields.length || unwrap(fields[fields.length - 1])?.[0] !== 'A_Star') return undefined;
    return fields.slice(0, -1).map((f) => str(f) ?? '');
  }

  private expandStar(qualifier: string[], scope: Scope, sink: Sink): Col[] {
    if (qualifier.length === 0) {
      const out: Col[] = [];
      for (const item of scope.items) for (const c of item) out.push(...this.itemCols(c, sink));
      return out;
    }
    const rel = this.findRel(qualifier, scope);
    return rel ? this.itemCols({ unknown: rel }, sink) : [];
  }

  /** The columns an item entry stands for in `*`. */
  private itemCols(c: Col | { unknown: Rel }, sink: Sink): Col[] {
    if (!('unknown' in c)) return [c];
    const rel = c.unknown;
    if (rel.cols) return rel.cols;
    if (rel.unknownWhole) for (const ref of rel.unknownWhole.refs) sink.opaqueUse(ref, `cannot expand * on ${rel.unknownWhole.why}`);
    return [];
  }

  private groupItem(g: Json, scope: Scope, outputs: Col[], sink: Sink): void {
    const u = unwrap(g);
    if (u?.[0] === 'GroupingSet') {
      for (const x of list(u[1].content)) this.groupItem(x, scope, outputs, sink);
      return;
    }
    sink.predicate(this.byOutput(g, scope, outputs, sink, true), 'GROUP BY');
  }

  /** ORDER BY / GROUP BY / DISTINCT ON item: an output position, an output name, or an expression. */
  private byOutput(node: Json, scope: Scope, outputs: Col[], sink: Sink, inputFirst: boolean): Flow {
    const pos = intConst(node);
    if (pos !== undefined && pos >= 1) return outputs[pos - 1]?.flow ?? NOTHING;
    const u = unwrap(node);
    if (u?.[0] === 'ColumnRef') {
      const fields = list(u[1].fields);
      if (fields.length === 1) {
        const name = str(fields[0]);
        const out = outputs.filter((o) => o.name === name);
        // ORDER BY prefers an output name, GROUP BY an input column: a name that may be either counts as both.
        if (out.length) {
          const f = union(out.map((o) => o.flow));
          return inputFirst ? f.add(this.expr(node, scope, sink)) : f;
        }
      }
    }
    return this.expr(node, scope, sink);
  }

  private window(def: PgNode, scope: Scope, sink: Sink): void {
    for (const p of list(def.partitionClause)) sink.predicate(this.expr(p, scope, sink), 'PARTITION BY');
    for (const o of list(def.orderClause)) {
      const by = unwrap(o)?.[1];
      if (by) sink.predicate(this.expr(by.node, scope, sink), 'window ORDER BY');
    }
  }

  // -------------------------------------------------------------------------
  // FROM

  private fromItem(node: Json, scope: Scope, sink: Sink): void {
    const item = this.rangeItem(node, scope, sink);
    if (item) scope.items.push(item);
  }

  /** A FROM entry: registers its relations in `scope`, returns its columns in `*` order. */
  private rangeItem(node: Json, scope: Scope, sink: Sink): Item | undefined {
    const u = unwrap(node);
    if (!u) return undefined;
    const [type, n] = u;
    switch (type) {
      case 'RangeVar': {
        const rel = this.rangeVar(n, scope, sink);
        scope.rels.push(rel);
        return rel.cols ? [...rel.cols] : [{ unknown: rel }];
      }
      case 'RangeSubselect': {
        // Only a LATERAL subquery sees the FROM items before it.
        const cols = this.select(unwrap(n.subquery)![1], n.lateral ? scope : this.siblingFree(scope), sink);
        return this.addRel(scope, aliased(cols, n.alias), n.alias);
      }
      case 'RangeFunction':
        return this.addRel(scope, this.rangeFunction(n, scope, sink), n.alias);
      case 'RangeTableSample':
        return this.rangeItem(n.relation, scope, sink);
      case 'JoinExpr':
        return this.join(n, scope, sink);
      default: {
        // XMLTABLE, JSON_TABLE…: every column may carry whatever their arguments carry.
        const flow = this.exprChildren(n, scope, sink).asDerived();
        const alias = isObj(n.alias) ? (n.alias.aliasname as string) : '';
        const rel: Rel = { name: alias, byName: () => flow, cols: flow.empty ? undefined : [{ name: '?column?', flow }] };
        scope.rels.push(rel);
        return rel.cols ? [...rel.cols] : [];
      }
    }
  }

  /** The query level without its FROM items: what a non-LATERAL subquery in FROM sees. */
  private siblingFree(scope: Scope): Scope {
    const s = new Scope(scope.parent);
    s.ctes = scope.ctes;
    return s;
  }

  private addRel(scope: Scope, cols: Col[], alias: Json): Item {
    const name = isObj(alias) ? (alias.aliasname as string) : '';
    scope.rels.push({ name, cols });
    return [...cols];
  }

  private rangeFunction(n: PgNode, scope: Scope, sink: Sink): Col[] {
    const out: Col[] = [];
    for (const f of list(n.functions)) {
      const [call, coldefs] = list(unwrap(f)?.[1].items);
      const flow = this.expr(call, scope, sink).asDerived();
      const defs = list(coldefs).map((d) => (unwrap(d)?.[1].colname as string) ?? '?column?');
      const fname = figureName(call);
      for (const name of defs.length ? defs : [fname]) out.push({ name, flow });
    }
    if (n.ordinality) out.push({ name: 'ordinality', flow: new Flow() });
    const aliases = isObj(n.alias) ? names(n.alias.colnames) : [];
    // A single function's result without column aliases is named after the alias.
    if (!aliases.length && out.length === 1 && isObj(n.alias)) out[0] = { name: n.alias.aliasname as string, flow: out[0]!.flow };
    // The function's result columns may be more than the names written: each carries what the arguments carry.
    return aliases.length ? aliases.map((name, i) => ({ name, flow: out[i]?.flow ?? union(out.map((o) => o.flow)) })) : out;
  }

  private join(n: PgNode, scope: Scope, sink: Sink): Item | undefined {
    // An aliased join hides the relations inside it: they are collected apart.
    const inner = isObj(n.alias) ? this.siblingFree(scope) : scope;
    const left = this.rangeItem(n.larg, inner, sink) ?? [];
    const right = this.rangeItem(n.rarg, inner, sink) ?? [];
    const named = (item: Item, name: string): Flow | undefined => {
      const found = item.filter((c): c is Col => !('unknown' in c) && c.name === name);
      if (found.length) return union(found.map((c) => c.flow));
      const flows = item.flatMap((c) => ('unknown' in c && c.unknown.byName ? [c.unknown.byName(name)] : [])).filter((f): f is Flow => !!f);
      return flows.length ? union(flows) : undefined;
    };
    let using = names(n.usingClause);
    let where = 'JOIN USING';
    if (n.isNatural) {
      const rightNames = new Set(right.flatMap((c) => ('unknown' in c ? [] : [c.name])));
      using = left.flatMap((c) => ('unknown' in c || !rightNames.has(c.name) ? [] : [c.name]));
      where = 'NATURAL JOIN';
    }
    const merged: Col[] = using.map((name) => ({ name, flow: new Flow().add(named(left, name) ?? NOTHING).add(named(right, name) ?? NOTHING) }));
    for (const m of merged) sink.predicate(m.flow, where);
    if (n.quals) {
      // ON sees both sides' columns unqualified.
      inner.items.push(left, right);
      sink.predicate(this.expr(n.quals, inner, sink), 'JOIN ON');
      inner.items.length -= 2;
    }
    // USING / NATURAL columns come first, once; the rest of each side follows.
    const drop = (c: Col | { unknown: Rel }): boolean => 'unknown' in c || !using.includes(c.name);
    const item: Item = [...merged, ...left.filter(drop), ...right.filter(drop)];
    if (inner === scope) return item;
    return this.addRel(scope, aliased(item.flatMap((c) => this.itemCols(c, sink)), n.alias), n.alias);
  }

  /** A relation named in FROM: a CTE, or tables and views placed through the path. */
  private rangeVar(n: PgNode, scope: Scope, sink: Sink): Rel {
    const relname = n.relname as string;
    const schema = n.schemaname as string | undefined;
    const alias = isObj(n.alias) ? n.alias : undefined;
    const name = (alias?.aliasname as string | undefined) ?? relname;
    const cte = schema === undefined ? scope.findCte(relname) : undefined;
    let rel: Rel;
    if (cte) rel = { name, cols: cte.cols };
    else {
      const rels = this.place(schema, relname).map((s) => this.relation(s, relname, sink));
      rel = unionRels(rels, relname);
      rel.name = name;
      if (!alias) rel.schema = schema ?? (rels.length === 1 ? rels[0]!.schema : undefined);
    }
    const colnames = alias ? names(alias.colnames) : [];
    if (colnames.length) {
      if (rel.cols) rel = { name, cols: rel.cols.map((c, i) => ({ name: colnames[i] ?? c.name, flow: c.flow })) };
      else if (rel.unknownWhole) {
        for (const ref of rel.unknownWhole.refs) sink.opaqueUse(ref, `cannot map column aliases on ${rel.unknownWhole.why}`);
        rel = { name, byName: () => rel.unknownWhole!.flow, unknownWhole: rel.unknownWhole };
      }
    }
    return rel;
  }

  /** "schema.table" of an existing relation, as the server would place it (the first path's placement). */
  private placedName(rv: PgNode): string {
    const schema = this.place(rv.schemaname as string | undefined, rv.relname as string)[0];
    return schema === undefined ? relName(rv) : `${schema}.${rv.relname as string}`;
  }

  /** The schemas an unqualified relation name may be in, as reach places it. */
  private place(schema: string | undefined, name: string): string[] {
    if (schema !== undefined) return schema === 'pg_temp' || isSystem(schema) ? [] : [schema];
    const catalog = this.catalog;
    const out = new Set<string>();
    for (const path of this.ctx.paths) {
      const schemas = path === null ? null : searchSchemas(path, catalog, this.ctx.assumeNoUserSchema);
      if (schemas === null) {
        // The path cannot be known: any schema holding a relation of that name may be the one.
        for (const s of catalog?.schemas ?? []) if (catalog?.relations[`${s}.${name}`]) out.add(s);
        continue;
      }
      let found: string | undefined;
      for (const s of schemas) {
        if (s === 'pg_catalog' ? catalog?.catalogRelations.includes(name) : catalog?.relations[`${s}.${name}`]) {
          found = s;
          break;
        }
      }
      if (found !== undefined) out.add(found);
      else for (const s of schemas) if (s !== 'pg_catalog' || !catalog) out.add(s);
    }
    return [...out].filter((s) => !isSystem(s));
  }

  /** A stored relation: a table (by its columns), or a view followed through its definition. */
  private relation(schema: string, name: string, sink: Sink): Rel {
    const key = `${schema}.${name}`;
    const catalog = this.catalog;
    // Catalogs cached before columns and view definitions were read lack them (`?.`).
    const known = catalog?.columns?.[key];
    const kind = catalog?.relations[key]?.kind;
    if (!this.reachesMasked(key, 0)) {
      // Nothing masked behind it: its columns carry nothing.
      return known ? { name, schema, cols: known.map((c) => ({ name: c.name, flow: new Flow() })) } : { name, schema, byName: () => undefined };
    }
    if (kind === 'v' || kind === 'm') return this.view(key, schema, name, sink);
    if (known) return { name, schema, cols: known.map((c) => ({ name: c.name, flow: this.stored(schema, name, c.name) })) };
    const why = `${key} without the resource's catalog`;
    return {
      name,
      schema,
      byName: (col) => this.stored(schema, name, col),
      unknownWhole: { flow: new Flow(), why, refs: [{ schema, table: name, column: '*' }] },
    };
  }

  private stored(schema: string, table: string, column: string): Flow {
    const ref = { schema, table, column };
    return this.ctx.isMasked(ref) ? Flow.of(ref) : new Flow();
  }

  private view(key: string, schema: string, name: string, sink: Sink): Rel {
    const cached = this.views.get(key);
    if (cached) {
      // Each use reports what the view's definition cannot follow.
      for (const [k, o] of cached.opaque) sink.opaque.set(k, o);
      return cached.rel;
    }
    const own = new Sink();
    const definition = this.catalog?.viewDefinitions?.[key];
    const ref = { schema, table: name, column: '*' };
    let rel: Rel;
    if (definition === undefined || this.viewDepth >= MAX_VIEW_DEPTH) {
      const why = definition === undefined ? `view ${key} whose definition is not known` : `view ${key}, nested too deeply to follow`;
      own.opaqueUse(ref, `cannot follow ${why}`);
      rel = { name, schema, byName: () => undefined, unknownWhole: { flow: new Flow(), why, refs: [ref] } };
    } else {
      // The view's own filters are not the client's: only its outputs and opaque uses count.
      let cols: Col[] = [];
      try {
        const query = parsedView(this.catalog!, key, definition);
        if (query) {
          this.viewDepth++;
          try {
            cols = this.select(query, new Scope(), own);
          } finally {
            this.viewDepth--;
          }
        }
      } catch {
        own.opaqueUse(ref, `cannot parse the definition of view ${key}`);
      }
      const stored = this.catalog?.columns?.[key];
      rel = { name, schema, cols: cols.map((c, i) => ({ name: stored?.[i]?.name ?? c.name, flow: c.flow })) };
    }
    this.views.set(key, { rel, opaque: own.opaque });
    for (const [k, o] of own.opaque) sink.opaque.set(k, o);
    return rel;
  }

  /** Whether reading `key` may return a masked column: itself, its parents and children, the relations a view reads. */
  private reachesMasked(key: string, depth: number): boolean {
    const seen = this.reaches.get(key);
    if (seen !== undefined) return seen;
    this.reaches.set(key, false);
    const catalog = this.catalog;
    const [schema, table] = splitKey(key);
    let masked = this.ctx.maskedTable(schema, table);
    const related = [...(catalog?.children[key] ?? []), ...(catalog?.parents?.[key] ?? []), ...(catalog?.viewReads[key] ?? [])];
    // Beyond the depth limit, say yes: the view code reports what it cannot follow.
    if (!masked && depth >= MAX_VIEW_DEPTH) masked = related.length > 0;
    for (const r of related) if (!masked && this.reachesMasked(r, depth + 1)) masked = true;
    this.reaches.set(key, masked);
    return masked;
  }

  private findRel(qualifier: string[], scope: Scope): Rel | undefined {
    const relname = qualifier[qualifier.length - 1];
    const schema = qualifier.length >= 2 ? qualifier[qualifier.length - 2] : undefined;
    for (let s: Scope | undefined = scope; s; s = s.parent) {
      for (let i = s.rels.length - 1; i >= 0; i--) {
        const r = s.rels[i]!;
        if (r.name === relname && (schema === undefined || r.schema === schema)) return r;
      }
    }
    return undefined;
  }

  // -------------------------------------------------------------------------
  // Expressions

  /** What a value expression carries. */
  private expr(node: Json, scope: Scope, sink: Sink): Flow {
    const u = unwrap(node);
    if (!u) {
      // A bare list (IN (…), BETWEEN bounds).
      return Array.isArray(node) ? union(node.map((x) => this.expr(x, scope, sink))).asDerived() : NOTHING;
    }
    const [type, n] = u;
    switch (type) {
      case 'A_Const':
      case 'ParamRef':
      case 'SQLValueFunction':
        return NOTHING;
      case 'ColumnRef':
        return this.columnRef(n, scope, sink);
      case 'TypeCast':
        return this.cast(n, scope, sink);
      case 'CollateClause':
        // A collation changes comparisons, not the value.
        return this.expr(n.arg, scope, sink);
      case 'SubLink':
        return this.subLink(n, scope, sink);
      case 'FuncCall':
        return this.funcCall(n, scope, sink);
      case 'CaseExpr': {
        const f = new Flow();
        if (n.arg) {
          const arg = this.expr(n.arg, scope, sink);
          sink.predicate(arg, 'CASE');
          f.add(arg);
        }
        for (const w of list(n.args)) {
          const when = unwrap(w)?.[1];
          if (!when) continue;
          const cond = this.expr(when.expr, scope, sink);
          sink.predicate(cond, 'CASE');
          f.add(cond).add(this.expr(when.result, scope, sink));
        }
        if (n.defresult) f.add(this.expr(n.defresult, scope, sink));
        return f.asDerived();
      }
      case 'List':
        return union(list(n.items).map((x) => this.expr(x, scope, sink))).asDerived();
      default:
        return this.exprChildren(n, scope, sink).asDerived();
    }
  }

  /** Everything the child nodes of an expression carry (RowExpr, A_Expr, CoalesceExpr, JSON…). */
  private exprChildren(n: PgNode, scope: Scope, sink: Sink): Flow {
    const f = new Flow();
    for (const [k, v] of Object.entries(n)) {
      if (k === 'typeName' || k === 'location') continue;
      if (Array.isArray(v)) for (const x of v) f.add(this.expr(x, scope, sink));
      else if (isObj(v) && unwrap(v)) f.add(this.expr(v, scope, sink));
      else if (isObj(v)) f.add(this.exprChildren(v, scope, sink));
    }
    return f;
  }

  private columnRef(n: PgNode, scope: Scope, sink: Sink): Flow {
    const fields = list(n.fields);
    const last = fields[fields.length - 1];
    if (unwrap(last)?.[0] === 'A_Star') {
      // t.* inside an expression (a function argument, ROW(t.*)): the whole row.
      const qualifier = fields.slice(0, -1).map((f) => str(f) ?? '');
      return this.wholeRow(qualifier.length ? this.findRel(qualifier, scope) : undefined, qualifier.length ? undefined : scope, sink);
    }
    const parts = fields.map((f) => str(f) ?? '');
    if (parts.length === 1) {
      const col = this.unqualified(parts[0]!, scope);
      if (col) return col;
      const rel = this.findRel(parts, scope);
      return rel ? this.wholeRow(rel, undefined, sink) : NOTHING;
    }
    const rel = this.findRel(parts.slice(0, -1), scope);
    if (rel) return this.relColumn(rel, parts[parts.length - 1]!) ?? NOTHING;
    // (rel.col) not found as a relation: a whole-row reference to `rel` with a field.
    const whole = this.findRel([parts[0]!], scope);
    return whole ? this.wholeRow(whole, undefined, sink) : NOTHING;
  }

  private relColumn(rel: Rel, name: string): Flow | undefined {
    if (rel.cols) {
      const found = rel.cols.filter((c) => c.name === name);
      return found.length ? union(found.map((c) => c.flow)) : undefined;
    }
    return rel.byName?.(name);
  }

  /** An unqualified column name, innermost query level first. */
  private unqualified(name: string, scope: Scope): Flow | undefined {
    for (let s: Scope | undefined = scope; s; s = s.parent) {
      const found: Flow[] = [];
      for (const item of s.items) {
        for (const c of item) if (!('unknown' in c) && c.name === name) found.push(c.flow);
      }
      if (found.length) return union(found);
      // Relations whose columns are unknown: a masked column of that name may be theirs.
      for (const item of s.items) {
        for (const c of item) {
          if (!('unknown' in c)) continue;
          const f = c.unknown.byName?.(name);
          if (f && !f.empty) found.push(f);
        }
      }
      if (found.length) return union(found);
    }
    return undefined;
  }

  /** A whole-row value: every masked column of the relation (or of every FROM item), computed from. */
  private wholeRow(rel: Rel | undefined, all: Scope | undefined, sink: Sink): Flow {
    const rels = rel ? [rel] : (all?.rels ?? []);
    const f = new Flow();
    for (const r of rels) {
      if (r.cols) for (const c of r.cols) f.add(c.flow);
      else if (r.unknownWhole) {
        for (const ref of r.unknownWhole.refs) sink.opaqueUse(ref, `cannot expand the whole row of ${r.unknownWhole.why}`);
      }
    }
    return f.asDerived();
  }

  private cast(n: PgNode, scope: Scope, sink: Sink): Flow {
    const arg = this.expr(n.arg, scope, sink);
    if (arg.empty) return arg;
    const tn = isObj(n.typeName) ? n.typeName : {};
    const tnames = names(tn.names);
    const target = tnames[tnames.length - 1] ?? '';
    const plain = TEXT_TYPES.has(target) && !list(tn.typmods).length && !list(tn.arrayBounds).length;
    // A cast between text types without a length keeps the value; any other changes it.
    if (plain && arg.derived.size === 0 && [...arg.direct.values()].every((c) => this.textLike(c))) return arg;
    return arg.asDerived();
  }

  private textLike(c: ColumnRef): boolean {
    const col = this.catalog?.columns?.[`${c.schema}.${c.table}`]?.find((x) => x.name === c.column);
    return col ? col.textLike : true;
  }

  private funcCall(n: PgNode, scope: Scope, sink: Sink): Flow {
    const f = new Flow();
    for (const a of list(n.args)) f.add(this.expr(a, scope, sink));
    for (const o of list(n.agg_order)) {
      const by = unwrap(o)?.[1];
      if (!by) continue;
      const flow = this.expr(by.node, scope, sink);
      sink.predicate(flow, n.agg_within_group ? 'WITHIN GROUP' : 'aggregate ORDER BY');
      // An ordered-set aggregate returns values of its ORDER BY column.
      if (n.agg_within_group) f.add(flow);
    }
    if (n.agg_filter) sink.predicate(this.expr(n.agg_filter, scope, sink), 'FILTER');
    if (isObj(n.over)) this.window(n.over, scope, sink);
    return f.asDerived();
  }

  private subLink(n: PgNode, scope: Scope, sink: Sink): Flow {
    const outputs = this.statement(n.subselect, scope, sink) ?? [];
    switch (n.subLinkType) {
      case 'EXISTS_SUBLINK':
        // Its value says only whether rows came back: the subquery's own clauses are already predicates.
        return NOTHING;
      case 'EXPR_SUBLINK':
        // A scalar subquery returns its one column's value.
        return outputs.length === 1 ? outputs[0]! : union(outputs).asDerived();
      default: {
        const f = union(outputs);
        if (n.testexpr) f.add(this.expr(n.testexpr, scope, sink));
        return f.asDerived();
      }
    }
  }

  // -------------------------------------------------------------------------
  // INSERT / UPDATE / DELETE / MERGE

  /** A data-modifying statement: its RETURNING columns, or null without RETURNING. */
  private modify(type: string, n: PgNode, outer: Scope, sink: Sink): Col[] | null {
    const scope = new Scope(outer);
    if (isObj(n.withClause)) this.withClause(n.withClause, scope, sink);
    const target = this.rangeVar(n.relation as PgNode, new Scope(), sink);
    const into = this.placedName(n.relation as PgNode);
    if (type === 'InsertStmt') {
      if (n.selectStmt) for (const f of this.statement(n.selectStmt, scope, sink) ?? []) sink.write(f, into);
      const conflict = isObj(n.onConflictClause) ? n.onConflictClause : undefined;
      if (conflict) {
        // EXCLUDED holds the row being inserted, judged like the target's own columns.
        const cs = new Scope(scope);
        cs.rels.push(target, { ...target, name: 'excluded', schema: undefined });
        cs.items.push(target.cols ? [...target.cols] : [{ unknown: target }]);
        this.assignments(list(conflict.targetList), cs, sink, into);
        if (conflict.whereClause) sink.predicate(this.expr(conflict.whereClause, cs, sink), 'ON CONFLICT WHERE');
      }
    } else {
      scope.rels.push(target);
      scope.items.push(target.cols ? [...target.cols] : [{ unknown: target }]);
      if (type === 'MergeStmt') {
        this.fromItem(n.sourceRelation, scope, sink);
        sink.predicate(this.expr(n.joinCondition, scope, sink), 'MERGE ON');
        for (const w of list(n.mergeWhenClauses)) {
          const when = unwrap(w)?.[1];
          if (!when) continue;
          if (when.condition) sink.predicate(this.expr(when.condition, scope, sink), 'MERGE WHEN');
          if (when.commandType === 'CMD_UPDATE') this.assignments(list(when.targetList), scope, sink, into);
          for (const v of list(when.values)) sink.write(this.expr(v, scope, sink), into);
        }
      } else {
        for (const item of list(type === 'UpdateStmt' ? n.fromClause : n.usingClause)) this.fromItem(item, scope, sink);
        if (type === 'UpdateStmt') this.assignments(list(n.targetList), scope, sink, into);
        if (n.whereClause) sink.predicate(this.expr(n.whereClause, scope, sink), 'WHERE');
      }
    }
    const returning = isObj(n.returningClause) ? list(n.returningClause.exprs) : list(n.returningList);
    if (!returning.length) return null;
    if (type === 'InsertStmt') {
      scope.rels.push(target);
      scope.items.push(target.cols ? [...target.cols] : [{ unknown: target }]);
    }
    return this.targetList(returning, scope, sink);
  }

  /** SET col = value: the values are written into the target. */
  private assignments(targets: Json[], scope: Scope, sink: Sink, into: string): void {
    for (const t of targets) {
      const rt = unwrap(t)?.[1];
      if (!rt?.val) continue;
      const multi = unwrap(rt.val);
      const val = multi?.[0] === 'MultiAssignRef' ? multi[1].source : rt.val;
      sink.write(this.expr(val, scope, sink), into);
    }
  }

  // -------------------------------------------------------------------------
  // COPY, CALL

  private copy(n: PgNode, sink: Sink, out: Found): void {
    if (n.is_from) return;
    if (n.query) out.outputs = this.statement(n.query, new Scope(), sink);
    else {
      const scope = new Scope();
      const rel = this.rangeVar(n.relation as PgNode, scope, sink);
      const attlist = names(n.attlist);
      if (attlist.length) out.outputs = attlist.map((c) => this.relColumn(rel, c) ?? new Flow());
      else out.outputs = this.itemCols({ unknown: rel }, sink).map((c) => c.flow);
    }
    out.copy = copyFormat(list(n.options));
  }

  private call(funccall: Json, scope: Scope, sink: Sink): void {
    const fc = isObj(funccall) ? funccall : {};
    const proc = names(fc.funcname).join('.');
    for (const a of list(fc.args)) {
      for (const column of this.expr(a, scope, sink).all()) sink.opaqueUse(column, `passed to procedure ${proc}`);
    }
  }
}

// ---------------------------------------------------------------------------

/** Output name of a select-list entry, as Postgres figures it. */
function outputName(rt: PgNode): string {
  return typeof rt.name === 'string' ? rt.name : figureName(rt.val);
}

function figureName(node: Json): string {
  const u = unwrap(node);
  if (!u) return '?column?';
  const [type, n] = u;
  switch (type) {
    case 'ColumnRef': {
      const fields = list(n.fields);
      return str(fields[fields.length - 1]) ?? '?column?';
    }
    case 'FuncCall': {
      const f = names(n.funcname);
      return f[f.length - 1] ?? '?column?';
    }
    case 'TypeCast': {
      const inner = figureName(n.arg);
      if (inner !== '?column?') return inner;
      const t = isObj(n.typeName) ? names(n.typeName.names) : [];
      return t[t.length - 1] ?? '?column?';
    }
    case 'CollateClause':
      return figureName(n.arg);
    case 'CaseExpr':
      return 'case';
    case 'CoalesceExpr':
      return 'coalesce';
    case 'SubLink':
      return n.subLinkType === 'EXISTS_SUBLINK' ? 'exists' : n.subLinkType === 'ARRAY_SUBLINK' ? 'array' : '?column?';
    default:
      return '?column?';
  }
}

/** Columns renamed by an alias's column list. */
function aliased(cols: Col[], alias: Json): Col[] {
  const colnames = isObj(alias) ? names(alias.colnames) : [];
  return colnames.length ? cols.map((c, i) => ({ name: colnames[i] ?? c.name, flow: c.flow })) : cols;
}

/** A relation placed in several schemas (paths that differ): a column carries what it carries in any of them. */
function unionRels(rels: Rel[], name: string): Rel {
  if (rels.length === 1) return { ...rels[0]! };
  const withCols = rels.find((r) => r.cols);
  const byName = (col: string): Flow | undefined => {
    const flows = rels.map((r) => (r.cols ? r.cols.find((c) => c.name === col)?.flow : r.byName?.(col))).filter((f): f is Flow => !!f);
    return flows.length ? union(flows) : undefined;
  };
  const unknown = rels.filter((r) => r.unknownWhole);
  const rel: Rel = { name };
  if (withCols) rel.cols = withCols.cols!.map((c) => ({ name: c.name, flow: byName(c.name) ?? c.flow }));
  else rel.byName = byName;
  if (unknown.length) {
    rel.unknownWhole = { flow: new Flow(), why: unknown.map((r) => r.unknownWhole!.why).join(', '), refs: unknown.flatMap((r) => r.unknownWhole!.refs) };
    if (rel.cols) rel.byName = byName;
  }
  return rel;
}

/** View definitions parsed once per catalog: lineage runs again for every new statement over the same views. */
const VIEW_TREES = new WeakMap<object, Map<string, PgNode | null>>();

function parsedView(catalog: object, key: string, definition: string): PgNode | null {
  let trees = VIEW_TREES.get(catalog);
  if (!trees) VIEW_TREES.set(catalog, (trees = new Map()));
  let tree = trees.get(key);
  if (tree === undefined) {
    const stmt = parseStatements(definition)[0];
    tree = stmt?.type === 'SelectStmt' ? stmt.node : null;
    trees.set(key, tree);
  }
  return tree;
}

function relName(rv: Json): string {
  if (!isObj(rv)) return '?';
  return rv.schemaname ? `${rv.schemaname as string}.${rv.relname as string}` : (rv.relname as string);
}

function splitKey(key: string): [string, string] {
  const dot = key.indexOf('.');
  return [key.slice(0, dot), key.slice(dot + 1)];
}

function isSystem(schema: string): boolean {
  return schema === 'pg_catalog' || schema === 'information_schema' || schema === 'pg_toast';
}

function copyFormat(options: Json[]): CopyFormat {
  const opts = new Map<string, Json>();
  for (const o of options) {
    const d = unwrap(o)?.[1];
    if (d) opts.set(d.defname as string, d.arg);
  }
  const text = (k: string): string | undefined => {
    const u = unwrap(opts.get(k));
    return u && u[0] === 'String' ? (u[1].sval as string) : undefined;
  };
  const f = text('format')?.toLowerCase();
  const format: CopyFormat['format'] = f === 'csv' ? 'csv' : f === 'binary' ? 'binary' : 'text';
  const csv = format === 'csv';
  const quote = text('quote') ?? '"';
  let header = false;
  if (opts.has('header')) {
    const u = unwrap(opts.get('header'));
    if (!u) header = true;
    else if (u[0] === 'Boolean') header = !!u[1].boolval;
    else if (u[0] === 'Integer') header = u[1].ival !== 0 && u[1].ival !== undefined;
    else if (u[0] === 'String') header = ['true', 'on', '1', 'yes', 'match'].includes(String(u[1].sval).toLowerCase());
  }
  return {
    format,
    delimiter: text('delimiter') ?? (csv ? ',' : '\t'),
    null: text('null') ?? (csv ? '' : '\\N'),
    quote: csv ? quote : '"',
    escape: csv ? (text('escape') ?? quote) : '"',
    header,
  };
}
