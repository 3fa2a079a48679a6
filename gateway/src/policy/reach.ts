// What a classified statement really reaches once names are resolved the way
// the server will resolve them: unqualified names through the session's
// search_path, views through the tables they read, user functions through
// their bodies, writes through foreign-key actions, triggers, rules,
// inheritance children and partitions, and the functions a statement runs
// without naming them: user operators, aggregates' support functions, and
// what a table runs when written or read (defaults, checks, indexes,
// policies). The catalog (read through the agent) says what exists; without
// it, only what the text says is known.
import { classify } from './classify.js';
import { definedCode } from './code.js';
import type { CatalogFunction, ResourceCatalog } from '../catalog/types.js';
import { dataCatalog, isSystemSchema } from './catalogs.js';
import { lookupFunction } from './functions.js';
import { extractPlpgsql } from './plpgsql.js';
import { parseSearchPath } from './search-path.js';
import { accessRank, type Access, type ObjectRef, type StatementInfo, type WriteKind } from './types.js';

/** A relation the statement reaches, resolved to its schema. */
export interface ReachedTable {
  schema: string;
  name: string;
  writes: boolean;
  /** The view, function, trigger, rule or key it is reached through, for messages. */
  via?: string;
}

export interface Reach {
  /** The statement's level, raised by the functions it calls. */
  level: Access;
  /** Why the level is above the statement's own. */
  reason?: string;
  tables: ReachedTable[];
  /** Schemas read as a whole (schema_to_xml), or named by DDL. */
  schemas: string[];
  /** User functions called, directly or through views, triggers and other functions. */
  functions: Array<{ schema: string; name: string; via?: string }>;
  /** User operators used (name: the symbol), directly or in code that runs; their schema is in scope like a function's. */
  operators: Array<{ schema: string; name: string; via?: string }>;
  /** Unqualified names whose schema cannot be known, with why. */
  unplaced: string[];
  /** Data that belongs to no schema, or cannot be told: refused by scoped rules. */
  unscoped: string[];
  /** Catalogs read that carry data or statistics, with why. */
  dataCatalogs: string[];
  /** SECURITY DEFINER functions called: each needs the rule's explicit trust. */
  definers: string[];
  /** The statement (through a function body) leaves search_path unknown. */
  losesPath: boolean;
  /** A relation or function was not in the catalog: it is judged as a plain table (or unreadable code), and the catalog is stale. */
  unknown: boolean;
  /** Statements that code the statement runs would run (function bodies, triggers, a DO block), each with what runs it. */
  code: Array<{ info: StatementInfo; via: string }>;
  /** Code that runs statements Warden cannot read, with why: what it would do is unknown. */
  opaque: string[];
}

export interface ReachContext {
  catalog: ResourceCatalog | undefined;
  /** search_path values the server may be using (null: cannot be known). */
  paths: ReadonlyArray<string | null>;
  /** Views and functions ("schema.name") a rule trusts: counted as themselves, not what they reach. */
  trusted?: ReadonlySet<string>;
  /**
   * Whether "$user" in search_path can be ignored because no schema is named
   * after the login role: known from the catalog; `policy check` without one
   * assumes it.
   */
  assumeNoUserSchema?: boolean;
}

const MAX_DEPTH = 8;

/** All of `info`'s objects, resolved and expanded. */
export function reach(info: StatementInfo, ctx: ReachContext): Reach {
  const r: Reach = {
    level: info.access,
    tables: [],
    schemas: [],
    functions: [],
    operators: [],
    unplaced: [],
    unscoped: [],
    dataCatalogs: [],
    definers: [],
    losesPath: false,
    unknown: false,
    code: [],
    opaque: [],
  };
  new Walker(ctx, r).statement(info, ctx.paths, undefined, 0);
  return r;
}

class Walker {
  private readonly seenTables = new Map<string, ReachedTable>();
  private readonly seenFunctions = new Set<string>();
  private readonly seenSchemas = new Set<string>();
  private readonly seenOperators = new Set<string>();
  private readonly followed = new Set<CatalogFunction>();
  /** Inside a function DDL names: its code is followed for scopes, but does not run now. */
  private naming = 0;

  constructor(
    private readonly ctx: ReachContext,
    private readonly r: Reach,
  ) {}

  statement(info: StatementInfo, paths: ReadonlyArray<string | null>, via: string | undefined, depth: number): void {
    this.raise(info.access, via ? `${via} ${info.kind}` : undefined);
    if (info.unscoped) this.r.unscoped.push(via ? `${via}: ${info.unscoped}` : info.unscoped);
    if (via !== undefined && this.naming === 0) this.r.code.push({ info, via });
    for (const o of info.objects) this.object(o, paths, via, depth);
    if (info.operators) for (const op of info.operators) this.operator(op, paths, via, depth);
    if (info.kind === 'DO') this.block(info.text, paths, via, depth);
  }

  /** A DO block's statements, as if they were the statement's own. */
  private block(text: string, paths: ReadonlyArray<string | null>, via: string | undefined, depth: number): void {
    const what = via ? `a DO block in ${via}` : 'the DO block';
    const code = definedCode(text);
    if (!code || 'unreadable' in code) {
      this.opaque(`${what}: ${code ? code.unreadable : 'its body cannot be read'}`);
      return;
    }
    this.texts(code.texts, paths, what, depth);
  }

  /** Statements of code (a body, a DO block) run through `what`. */
  private texts(texts: readonly string[], paths: ReadonlyArray<string | null>, what: string, depth: number, onPath?: (s: StatementInfo) => void): void {
    for (const text of texts) {
      const c = classify(text);
      if (!c.ok) {
        this.unseen(`${what} has SQL Warden cannot parse`);
        continue;
      }
      for (const s of c.statements) {
        onPath?.(s);
        this.statement(s, paths, what, depth + 1);
      }
    }
  }

  private raise(level: Access, reason?: string): void {
    if (accessRank(level) > accessRank(this.r.level)) {
      this.r.level = level;
      this.r.reason = reason;
    }
  }

  private object(o: ObjectRef, paths: ReadonlyArray<string | null>, via: string | undefined, depth: number): void {
    switch (o.type) {
      case 'table':
        for (const schema of this.placeRelation(o, paths, via)) this.table(schema, o.name, o.writes, !o.only, via, depth);
        return;
      case 'schema':
        if (!this.seenSchemas.has(o.name)) {
          this.seenSchemas.add(o.name);
          this.r.schemas.push(o.name);
        }
        return;
      case 'function': {
        if (o.named) this.naming++;
        if (lookupFunction(o.name, o.schema)?.runsSql) this.opaque(`${via ? `${via} calls` : 'calls'} ${o.name}, which runs SQL Warden cannot see`);
        for (const fn of this.placeFunction(o, paths, via)) this.callFunction(fn, paths, via, depth);
        if (o.named) this.naming--;
        return;
      }
      default:
        return;
    }
  }

  /** The schemas an (unqualified) relation name may resolve to. */
  private placeRelation(o: ObjectRef, paths: ReadonlyArray<string | null>, via: string | undefined): string[] {
    if (o.schema !== undefined) return o.schema === 'pg_temp' ? [] : [o.schema];
    const catalog = this.ctx.catalog;
    const out = new Set<string>();
    for (const path of paths) {
      const schemas = path === null ? null : this.searchList(path);
      if (schemas === null) {
        this.r.unplaced.push(`${o.name}${via ? ` (in ${via})` : ''}, whose schema cannot be told: the session's search_path cannot be known`);
        continue;
      }
      let found: string | undefined;
      for (const s of schemas) {
        if (s === 'pg_catalog' ? this.isCatalogRelation(o.name) : catalog?.relations[`${s}.${o.name}`]) {
          found = s;
          break;
        }
      }
      if (found !== undefined) out.add(found);
      else {
        // Not in the catalog (yet): it may be in any schema of the path.
        if (catalog) this.r.unknown = true;
        for (const s of schemas) if (s !== 'pg_catalog' || !catalog) out.add(s);
      }
    }
    return [...out];
  }

  /** A search_path value as the list of schemas the server searches, in order. */
  private searchList(path: string): string[] | null {
    return searchSchemas(path, this.ctx.catalog, this.ctx.assumeNoUserSchema);
  }

  private isCatalogRelation(name: string): boolean {
    const catalog = this.ctx.catalog;
    // Without a catalog, a pg_ name may be the system's or a user table of that name: both are considered.
    return catalog ? catalog.catalogRelations.includes(name) : name.startsWith('pg_');
  }

  private table(schema: string, name: string, writes: WriteKind[] | undefined, inherit: boolean, via: string | undefined, depth: number): void {
    if (isSystemSchema(schema)) {
      const why = dataCatalog(name, schema);
      if (why) this.r.dataCatalogs.push(`${schema}.${name} (${why})`);
      return;
    }
    const key = `${schema}.${name}`;
    const seen = this.seenTables.get(key);
    const writing = !!writes?.length;
    if (seen && (seen.writes || !writing)) return;
    if (seen) seen.writes = true;
    else {
      const t: ReachedTable = { schema, name, writes: writing };
      if (via) t.via = via;
      this.seenTables.set(key, t);
      this.r.tables.push(t);
    }
    const catalog = this.ctx.catalog;
    if (!catalog || depth >= MAX_DEPTH) return;
    const relation = catalog.relations[key];
    if (!relation) this.r.unknown = true;
    if ((relation?.kind === 'v' || relation?.kind === 'm') && !this.ctx.trusted?.has(key)) {
      const how = relation.kind === 'v' ? 'view' : 'materialized view';
      // A write through an updatable view writes its base table.
      for (const base of catalog.viewReads[key] ?? []) this.qualifiedTable(base, writes, true, `${how} ${key}`, depth + 1);
      for (const fn of catalog.viewCalls[key] ?? []) this.callHidden(fn, this.ctx.paths, `${how} ${key}`, depth + 1);
    }
    // Catalogs built before these fields existed lack them.
    const runs = writing ? catalog.tableCalls?.[key] : catalog.tableReadCalls?.[key];
    if (runs) {
      const how = writing ? `a default, check, index, policy, trigger or rule of ${key}` : `a policy of ${key}`;
      for (const fn of runs) this.callHidden(fn, this.ctx.paths, how, depth + 1);
    }
    if (inherit) for (const child of catalog.children[key] ?? []) this.qualifiedTable(child, writes, true, via ?? `a child or partition of ${key}`, depth + 1);
    if (!writing) return;
    const kinds = new Set(writes);
    for (const fk of catalog.foreignKeys) {
      if (fk.references !== key) continue;
      let changes: WriteKind[] | undefined;
      if (kinds.has('truncate cascade')) changes = ['truncate cascade'];
      else {
        const del = kinds.has('delete') ? ACTION_WRITE[fk.onDelete] : undefined;
        const upd = kinds.has('update') ? ACTION_WRITE[fk.onUpdate] : undefined;
        if (del || upd) changes = [...new Set([...(del ?? []), ...(upd ?? [])])];
      }
      if (changes) this.qualifiedTable(fk.table, changes, true, `a foreign key of ${fk.table} on ${key}`, depth + 1);
    }
    for (const trig of catalog.triggers) {
      if (trig.table !== key || !trig.events.some((e) => kinds.has(e) || (e === 'truncate' && kinds.has('truncate cascade')))) continue;
      this.callHidden(trig.function, this.ctx.paths, `a trigger on ${key}`, depth + 1);
    }
    for (const rule of catalog.rules) {
      if (rule.table !== key || rule.event === 'select' || !kinds.has(rule.event)) continue;
      this.opaque(`a rule on ${key} turns the ${rule.event} into statements of its own`);
      for (const rel of rule.relations) this.qualifiedTable(rel, ['insert', 'update', 'delete'], true, `a rule on ${key}`, depth + 1);
    }
  }

  private qualifiedTable(key: string, writes: WriteKind[] | undefined, inherit: boolean, via: string, depth: number): void {
    const dot = key.indexOf('.');
    this.table(key.slice(0, dot), key.slice(dot + 1), writes, inherit, via, depth);
  }

  /** The user functions a call may reach: qualified, or through every schema of the path. */
  private placeFunction(o: ObjectRef, paths: ReadonlyArray<string | null>, via: string | undefined): CatalogFunction[] {
    const catalog = this.ctx.catalog;
    if (!catalog) {
      // Without a catalog, only the schema of a qualified call can be checked.
      if (o.schema !== undefined && !isSystemSchema(o.schema)) this.pushFunction(o.schema, o.name);
      return [];
    }
    const out: CatalogFunction[] = [];
    if (o.schema !== undefined) {
      if (isSystemSchema(o.schema)) return out;
      out.push(...(catalog.functions[`${o.schema}.${o.name}`] ?? []));
    } else {
      for (const path of paths) {
        const schemas = path === null ? catalog.schemas : this.searchList(path);
        // An unknown path: a function of that name in any schema may be the one.
        for (const s of schemas ?? catalog.schemas) for (const f of catalog.functions[`${s}.${o.name}`] ?? []) if (!out.includes(f)) out.push(f);
      }
    }
    // Made after the catalog was read (in this session, or another one): its body is not known yet.
    const builtins = builtinFunctions(catalog);
    if (out.length === 0 && !o.named && (o.schema !== undefined || (builtins && !builtins.has(o.name)))) {
      const name = o.schema !== undefined ? `${o.schema}.${o.name}` : o.name;
      this.opaque(`${via ? `${via} calls` : 'calls'} ${name}, which is not in the catalog Warden holds`);
      this.r.unknown = true;
    }
    return out;
  }

  /**
   * An operator name as the statement wrote it: a qualified one counts for
   * scope by its schema; an unqualified one may be any user operator of that
   * symbol in a schema of the path (which one depends on the operand types,
   * known only to the server), so all of them are followed.
   */
  private operator(name: string, paths: ReadonlyArray<string | null>, via: string | undefined, depth: number): void {
    const catalog = this.ctx.catalog;
    // Symbols have no dots: what comes before the last one is the schema.
    const dot = name.lastIndexOf('.');
    if (dot >= 0) {
      const schema = name.slice(0, dot);
      if (!isSystemSchema(schema)) this.userOperator(schema, name.slice(dot + 1), paths, via, depth);
      return;
    }
    if (!catalog) return;
    const schemas = operatorSchemas(catalog).get(name);
    if (!schemas) return;
    for (const path of paths) {
      const searched = path === null ? null : this.searchList(path);
      // An unknown path: an operator of that symbol in any schema may be the one.
      for (const s of schemas) if (searched === null || searched.includes(s)) this.userOperator(s, name, paths, via, depth);
    }
  }

  private userOperator(schema: string, symbol: string, paths: ReadonlyArray<string | null>, via: string | undefined, depth: number): void {
    const key = `${schema}.${symbol}`;
    if (this.seenOperators.has(key)) return;
    this.seenOperators.add(key);
    const op: Reach['operators'][number] = { schema, name: symbol };
    if (via) op.via = via;
    this.r.operators.push(op);
    for (const fn of this.ctx.catalog?.operators?.[key] ?? []) this.callHidden(fn, paths, `operator ${key}`, depth);
  }

  /**
   * A function run by stored code (a view, trigger, operator, aggregate,
   * default, check, index or policy) rather than called by name in the
   * statement. A function of the maintained list is judged without its
   * arguments, which cannot be seen: fail closed.
   */
  private callHidden(key: string, paths: ReadonlyArray<string | null>, via: string, depth: number): void {
    const catalog = this.ctx.catalog;
    if (!catalog) return;
    const dot = key.indexOf('.');
    const name = key.slice(dot + 1);
    const rule = lookupFunction(name, key.slice(0, dot));
    if (rule && !this.ctx.trusted?.has(key) && !this.seenFunctions.has(key)) {
      this.raise(rule.level, `${via} calls ${key}, which ${rule.reason}`);
      if (rule.runsSql) this.opaque(`${via} calls ${key}, which runs SQL Warden cannot see`);
      if (rule.special === 'set_config') this.r.losesPath = true;
      if (rule.special === 'sql_text' || rule.relationArg !== undefined || rule.schemaArg !== undefined || rule.unscoped !== undefined) {
        this.r.unscoped.push(`${via} calls ${key}, whose reach depends on arguments Warden cannot see`);
      }
    }
    for (const f of catalog.functions[key] ?? []) this.callFunction(f, paths, via, depth);
  }

  /** Code whose statements cannot be read: unscoped for the rules, opaque for the approval rules. */
  private unseen(why: string): void {
    this.r.unscoped.push(why);
    this.opaque(why);
  }

  /** Code that would run now and whose statements cannot be read. */
  private opaque(why: string): void {
    if (this.naming === 0) this.r.opaque.push(why);
  }

  private pushFunction(schema: string, name: string, via?: string): void {
    const f: Reach['functions'][number] = { schema, name };
    if (via) f.via = via;
    this.r.functions.push(f);
  }

  private callFunction(fn: CatalogFunction, paths: ReadonlyArray<string | null>, via: string | undefined, depth: number): void {
    const key = `${fn.schema}.${fn.name}`;
    // Overloads share a key, and each may reach something else: every one is followed.
    if (this.followed.has(fn)) return;
    this.followed.add(fn);
    if (!this.seenFunctions.has(key)) {
      this.seenFunctions.add(key);
      this.pushFunction(fn.schema, fn.name, via);
    }
    if (this.ctx.trusted?.has(key)) return;
    if (fn.securityDefiner && !this.r.definers.includes(key)) this.r.definers.push(key);
    const what = `${fn.kind === 'p' ? 'procedure' : fn.kind === 'a' ? 'aggregate' : 'function'} ${key}`;
    if (fn.volatility === 'v') this.raise('write', `calls volatile ${what}, which may change data (trust it in the rule if it does not)`);
    if (depth >= MAX_DEPTH) {
      this.unseen(`${what} calls functions nested too deeply to follow`);
      return;
    }
    // The body resolves names through the function's own SET search_path, else the caller's.
    const bodyPaths = fn.searchPath !== undefined ? [fn.searchPath] : paths;
    // An aggregate runs its support functions (resolved when it was made).
    for (const c of fn.calls ?? []) this.callHidden(c, paths, what, depth + 1);
    const lang = fn.language;
    if (lang === 'c' || lang === 'internal') return;
    if (fn.body === undefined || (lang !== 'sql' && lang !== 'plpgsql')) {
      this.unseen(`${what} is written in ${lang}, whose body Warden cannot read`);
      return;
    }
    const texts = lang === 'sql' ? { statements: [fn.body], dynamic: false } : extractPlpgsql(fn.body);
    if (!texts) {
      this.unseen(`the body of ${what} could not be read`);
      return;
    }
    if (texts.dynamic) {
      this.unseen(`${what} runs SQL built at run time, which Warden cannot see`);
      this.raise('write', `${what} runs SQL built at run time`);
    }
    this.texts(texts.statements, bodyPaths, what, depth, (s) => {
      if (s.pathChanges?.length && fn.searchPath === undefined) this.r.losesPath = true;
    });
  }
}

/**
 * A search_path value as the list of schemas the server searches, in order;
 * null when it cannot be told ("$user" without a catalog, unless assumed absent).
 */
export function searchSchemas(path: string, catalog: ResourceCatalog | undefined, assumeNoUserSchema?: boolean): string[] | null {
  const listed = parseSearchPath(path);
  if (listed === null) return null;
  const out: string[] = [];
  // pg_catalog is searched first unless the path places it; pg_temp holds only this session's own tables.
  if (!listed.includes('pg_catalog')) out.push('pg_catalog');
  for (const s of listed) {
    if (s === 'pg_temp' || s.startsWith('pg_temp_')) continue;
    if (s === '$user') {
      if (catalog) {
        if (catalog.schemas.includes(catalog.sessionUser)) out.push(catalog.sessionUser);
      } else if (!assumeNoUserSchema) {
        return null;
      }
      continue;
    }
    if (catalog && !catalog.schemas.includes(s)) continue;
    out.push(s);
  }
  return out;
}

/** The change a foreign-key action makes to the referencing table. */
const ACTION_WRITE: Record<string, WriteKind[] | undefined> = { c: ['delete', 'update'], n: ['update'], d: ['update'] };

/** Per catalog: the names of its built-in functions, as a set (built once, on first use); undefined for catalogs without them. */
const BUILTIN_FUNCTIONS = new WeakMap<ResourceCatalog, Set<string>>();

function builtinFunctions(catalog: ResourceCatalog): Set<string> | undefined {
  if (!catalog.catalogFunctions) return undefined;
  let names = BUILTIN_FUNCTIONS.get(catalog);
  if (!names) BUILTIN_FUNCTIONS.set(catalog, (names = new Set(catalog.catalogFunctions)));
  return names;
}

/** Per catalog: operator symbol → the schemas that have a user operator of it (built once, on first use). */
const OPERATOR_SCHEMAS = new WeakMap<ResourceCatalog, Map<string, string[]>>();

function operatorSchemas(catalog: ResourceCatalog): Map<string, string[]> {
  let index = OPERATOR_SCHEMAS.get(catalog);
  if (!index) {
    index = new Map();
    for (const key of Object.keys(catalog.operators ?? {})) {
      const dot = key.lastIndexOf('.');
      const symbol = key.slice(dot + 1);
      const schemas = index.get(symbol);
      if (schemas) schemas.push(key.slice(0, dot));
      else index.set(symbol, [key.slice(0, dot)]);
    }
    OPERATOR_SCHEMAS.set(catalog, index);
  }
  return index;
}
