// Classifies SQL statements into access levels from Postgres' own parse tree.
//
// The tree is walked generically: every object and array under a statement
// is visited, whatever its type, so that a statement or function call nested
// anywhere (CTEs, subqueries, function arguments, CASE arms, DEFAULT
// expressions, EXPLAIN's statement, COPY's query, CREATE SCHEMA's elements…)
// is seen. Node types that matter have a handler; statement types without one
// are 'admin' ("unrecognised statement": fail closed); other node types are
// simply walked through.
//
// Decisions where the spec was open (each also noted at its handler):
// - SELECT INTO / CREATE TABLE AS are 'ddl': they create a table, like CREATE TABLE.
// - TRUNCATE is 'write' (with a reason); LOCK is 'write'; row locks
//   (SELECT … FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE) are 'write'.
// - CALL is 'admin': a procedure can run any statement, including COMMIT, and
//   its body is invisible here. DO is 'admin'.
// - EXECUTE (SQL level) is 'write': the prepared body is not visible here.
//   Callers that track PREPARE per session can use `preparedName` to do better.
//   PREPARE takes the level of its statement, so a write is refused up front.
// - EXPLAIN without ANALYZE is 'read' whatever it explains (the statement is
//   only planned) — except EXPLAIN EXECUTE, whose parameter expressions are
//   evaluated; EXPLAIN ANALYZE takes the level of its statement.
// - RESET ALL is 'write': it resets default_transaction_read_only (checked on
//   PG 15). DISCARD ALL is 'admin' + escalation: it runs SET SESSION
//   AUTHORIZATION DEFAULT, which undoes SET ROLE. Other DISCARDs are 'read'.
// - SET of a setting not on the harmless list is 'admin' (fail closed), and so
//   is SET client_encoding to anything but UTF8 and standard_conforming_strings
//   = off: both would make the server read different SQL than was classified.
// - Changing ownership (ALTER … OWNER TO, ALTER TABLE … OWNER TO, REASSIGN
//   OWNED) is 'admin': ownership carries every privilege on the object.
// - CREATE EXTENSION is 'ddl' (as in the spec). CREATE FUNCTION in an
//   untrusted language (C, internal, pl*u) is 'admin'. Foreign servers, user
//   mappings, FDWs, tablespaces, event triggers, languages, access methods,
//   publications and subscriptions are 'admin' (server-wide or credentials).
// - Writes to pg_settings are 'admin' (an UPDATE there is set_config); DML or
//   COPY FROM on a system catalog (pg_catalog.* or an unqualified pg_* name)
//   is 'admin'.
// - Functions that run SQL given as text (query_to_xml, ts_stat, crosstab…)
//   take the level of that text when it is a constant, else 'admin'.
import { lookupFunction, type FunctionRule } from './functions.js';
import { parseStatements, SqlParseError, type ParsedStatement, type PgNode } from './parser.js';
import { classifySetting, type SettingChange } from './settings.js';
import { accessRank, maxAccess, type Access, type Classification, type ObjectRef, type StatementInfo } from './types.js';

type Obj = PgNode;

interface HandlerResult {
  /** Kind of the statement (used when the node is the top-level statement). */
  kind?: string;
  /** The handler walked the node's children itself. */
  skip?: boolean;
  setting?: string;
  preparedName?: string;
}

type Handler = (n: Obj, w: Walk, top: boolean) => HandlerResult | void;

/** Nested SQL text (query_to_xml('…')) is followed this many levels deep. */
const MAX_SQL_TEXT_DEPTH = 4;

// ---------------------------------------------------------------------------
// Walk state
// ---------------------------------------------------------------------------

class Walk {
  level: Access = 'read';
  escalation = false;
  private readonly reasons: Array<[Access, string]> = [];
  /** Names of CTEs in scope, innermost last. */
  readonly cteScopes: Array<Set<string>> = [];

  constructor(
    readonly objects: Map<string, ObjectRef> = new Map(),
    readonly sqlDepth = 0,
  ) {}

  raise(level: Access, reason?: string): void {
    if (accessRank(level) > accessRank(this.level)) this.level = level;
    if (reason && level !== 'read') this.reasons.push([level, reason]);
  }

  escalate(): void {
    this.escalation = true;
    this.raise('admin');
  }

  addObject(ref: ObjectRef): void {
    const key = `${ref.type}\u0000${ref.schema ?? ''}\u0000${ref.name}`;
    if (!this.objects.has(key)) {
      const clean: ObjectRef = { type: ref.type, name: ref.name };
      if (ref.schema !== undefined) clean.schema = ref.schema;
      this.objects.set(key, clean);
    }
  }

  isCte(name: string): boolean {
    for (let i = this.cteScopes.length - 1; i >= 0; i--) if (this.cteScopes[i]!.has(name)) return true;
    return false;
  }

  /** Reasons given for the statement's final level, deduplicated. */
  reasonText(): string | undefined {
    const seen = new Set<string>();
    for (const [level, r] of this.reasons) if (level === this.level) seen.add(r);
    return seen.size > 0 ? [...seen].join('; ') : undefined;
  }
}

// ---------------------------------------------------------------------------
// Tree helpers
// ---------------------------------------------------------------------------

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/**
 * Fields holding a node *without* the {Type: …} wrapper whose type matters to
 * a handler, keyed 'ParentType.field'. (RangeVar and RoleSpec are recognised
 * by shape wherever they appear.)
 */
const FIELD_TYPES: Record<string, string> = {
  'SelectStmt.larg': 'SelectStmt',
  'SelectStmt.rarg': 'SelectStmt',
  'PLAssignStmt.val': 'SelectStmt',
  'AlterRoleSetStmt.setstmt': 'VariableSetStmt',
  'AlterDatabaseSetStmt.setstmt': 'VariableSetStmt',
  'AlterSystemStmt.setstmt': 'VariableSetStmt',
  'CallStmt.funccall': 'FuncCall',
  'AlterDefaultPrivilegesStmt.action': 'GrantStmt',
  'CreateForeignTableStmt.base': 'CreateStmt',
};

/** Splits a node into [type, fields]: wrapped nodes are {Type: {fields}}. */
function unwrap(v: Obj, hint?: string): [string | undefined, Obj] {
  const keys = Object.keys(v);
  if (keys.length === 1) {
    const k = keys[0]!;
    const c = k.charCodeAt(0);
    const body = v[k];
    // Node type names start with an upper-case letter; fields never do.
    if (c >= 65 && c <= 90 && isObj(body)) return [k, body];
  }
  if (hint) return [hint, v];
  if (typeof v.relname === 'string') return ['RangeVar', v];
  if (typeof v.roletype === 'string') return ['RoleSpec', v];
  return [undefined, v];
}

/** [{String: {sval}}…] → strings. */
function nameList(v: unknown): string[] {
  const out: string[] = [];
  for (const item of list(v)) {
    if (isObj(item) && isObj(item.String)) out.push(str(item.String.sval) ?? '');
  }
  return out;
}

/**
 * Counts reads of numeric constants' values during one classify() call
 * (classification is synchronous), for Classification.readsNumbers.
 */
let numbersRead = 0;

/** The value of a constant expression, as text; undefined when not a constant. */
function constValue(v: unknown): string | undefined {
  if (!isObj(v)) return undefined;
  const [type, n] = unwrap(v);
  if (type === 'TypeCast') return constValue(n.arg);
  if (type === 'String') return str(n.sval) ?? '';
  if (type === 'Integer') return (numbersRead++, String(typeof n.ival === 'number' ? n.ival : 0));
  if (type === 'Float') return (numbersRead++, str(n.fval));
  if (type === 'Boolean') return n.boolval === true ? 'true' : 'false';
  if (type !== 'A_Const' || n.isnull === true) return undefined;
  if (isObj(n.sval)) return str(n.sval.sval) ?? '';
  if (isObj(n.ival)) return (numbersRead++, String(typeof n.ival.ival === 'number' ? n.ival.ival : 0));
  if (isObj(n.fval)) return (numbersRead++, str(n.fval.fval));
  if (isObj(n.boolval)) return n.boolval.boolval === true ? 'true' : 'false';
  if (isObj(n.bsval)) return str(n.bsval.bsval);
  return undefined;
}

function constInt(v: unknown): number | undefined {
  const s = constValue(v);
  if (s === undefined || !/^-?\d+$/.test(s.trim())) return undefined;
  return Number(s);
}

/** Best-effort split of a regclass literal such as 'sch."My Seq"'. */
function regclassRef(text: string): ObjectRef | undefined {
  const parts: string[] = [];
  let i = 0;
  const s = text.trim();
  while (i < s.length) {
    let part = '';
    if (s[i] === '"') {
      i++;
      for (;;) {
        if (i >= s.length) return undefined;
        if (s[i] === '"') {
          if (s[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += s[i++];
      }
    } else {
      const m = /^[^."]+/.exec(s.slice(i));
      if (!m) return undefined;
      part = m[0].trim().toLowerCase();
      i += m[0].length;
    }
    parts.push(part);
    if (i < s.length) {
      if (s[i] !== '.') return undefined;
      i++;
    }
  }
  if (parts.length === 0 || parts.length > 3 || parts.some((p) => p === '')) return undefined;
  const ref: ObjectRef = { type: 'table', name: parts[parts.length - 1]! };
  if (parts.length >= 2) ref.schema = parts[parts.length - 2]!;
  return ref;
}

// ---------------------------------------------------------------------------
// Object types (for kinds and object references)
// ---------------------------------------------------------------------------

const OBJECT_LABELS: Record<string, string> = {
  OBJECT_ACCESS_METHOD: 'ACCESS METHOD',
  OBJECT_AMOP: 'OPERATOR FAMILY',
  OBJECT_AMPROC: 'OPERATOR FAMILY',
  OBJECT_DEFACL: 'DEFAULT PRIVILEGES',
  OBJECT_DOMCONSTRAINT: 'DOMAIN',
  OBJECT_TABCONSTRAINT: 'TABLE',
  OBJECT_EVENT_TRIGGER: 'EVENT TRIGGER',
  OBJECT_FDW: 'FOREIGN DATA WRAPPER',
  OBJECT_FOREIGN_SERVER: 'SERVER',
  OBJECT_FOREIGN_TABLE: 'FOREIGN TABLE',
  OBJECT_LARGEOBJECT: 'LARGE OBJECT',
  OBJECT_MATVIEW: 'MATERIALIZED VIEW',
  OBJECT_OPCLASS: 'OPERATOR CLASS',
  OBJECT_OPFAMILY: 'OPERATOR FAMILY',
  OBJECT_PARAMETER_ACL: 'PARAMETER',
  OBJECT_PUBLICATION_NAMESPACE: 'PUBLICATION',
  OBJECT_PUBLICATION_REL: 'PUBLICATION',
  OBJECT_STATISTIC_EXT: 'STATISTICS',
  OBJECT_TSCONFIGURATION: 'TEXT SEARCH CONFIGURATION',
  OBJECT_TSDICTIONARY: 'TEXT SEARCH DICTIONARY',
  OBJECT_TSPARSER: 'TEXT SEARCH PARSER',
  OBJECT_TSTEMPLATE: 'TEXT SEARCH TEMPLATE',
  OBJECT_USER_MAPPING: 'USER MAPPING',
};

function objectLabel(t: string | undefined): string {
  if (!t) return 'OBJECT';
  return OBJECT_LABELS[t] ?? t.replace(/^OBJECT_/, '').replace(/_/g, ' ');
}

/** Object types whose creation, change or removal is server administration. */
const ADMIN_OBJECT_TYPES = new Set([
  'OBJECT_ROLE',
  'OBJECT_DATABASE',
  'OBJECT_TABLESPACE',
  'OBJECT_SUBSCRIPTION',
  'OBJECT_PUBLICATION',
  'OBJECT_PUBLICATION_NAMESPACE',
  'OBJECT_PUBLICATION_REL',
  'OBJECT_FDW',
  'OBJECT_FOREIGN_SERVER',
  'OBJECT_USER_MAPPING',
  'OBJECT_EVENT_TRIGGER',
  'OBJECT_LANGUAGE',
  'OBJECT_ACCESS_METHOD',
  'OBJECT_PARAMETER_ACL',
]);

const RELATION_TYPES = new Set([
  'OBJECT_TABLE',
  'OBJECT_VIEW',
  'OBJECT_MATVIEW',
  'OBJECT_SEQUENCE',
  'OBJECT_INDEX',
  'OBJECT_FOREIGN_TABLE',
]);

const FUNCTION_TYPES = new Set(['OBJECT_FUNCTION', 'OBJECT_PROCEDURE', 'OBJECT_ROUTINE', 'OBJECT_AGGREGATE']);

function qualified(parts: string[], type: ObjectRef['type']): ObjectRef | undefined {
  if (parts.length === 0) return undefined;
  const ref: ObjectRef = { type, name: parts[parts.length - 1]! };
  if (parts.length >= 2) ref.schema = parts[parts.length - 2]!;
  return ref;
}

const ON_TABLE_TYPES = new Set(['OBJECT_POLICY', 'OBJECT_TRIGGER', 'OBJECT_RULE', 'OBJECT_TABCONSTRAINT', 'OBJECT_COLUMN']);

/** ObjectRefs for an object named in DDL (DROP, COMMENT, GRANT, ALTER … OWNER…). */
function objectRefFor(objtype: string | undefined, v: unknown): ObjectRef | ObjectRef[] | undefined {
  if (!isObj(v)) return undefined;
  const [type, n] = unwrap(v);
  switch (type) {
    case 'RangeVar': {
      const name = str(n.relname);
      return name ? qualified([...(str(n.schemaname) ? [str(n.schemaname)!] : []), name], 'table') : undefined;
    }
    case 'ObjectWithArgs': {
      const parts = nameList(n.objname);
      if (objtype && FUNCTION_TYPES.has(objtype)) return qualified(parts, 'function');
      return parts.length ? { type: 'other', name: parts.join('.') } : undefined;
    }
    case 'TypeName':
      return qualified(nameList(n.names), 'other');
    case 'String': {
      const s = str(n.sval);
      if (s === undefined) return undefined;
      if (objtype === 'OBJECT_SCHEMA') return { type: 'schema', name: s };
      if (objtype === 'OBJECT_DATABASE') return { type: 'database', name: s };
      if (objtype === 'OBJECT_ROLE') return { type: 'role', name: s };
      return { type: 'other', name: s };
    }
    case 'List': {
      const parts = nameList(n.items);
      if (objtype && RELATION_TYPES.has(objtype)) return qualified(parts, 'table');
      if (objtype && FUNCTION_TYPES.has(objtype)) return qualified(parts, 'function');
      // Objects that live on a table (DROP POLICY p ON s.t → [s, t, p]): the
      // table, then the object itself.
      if (objtype && ON_TABLE_TYPES.has(objtype) && parts.length >= 2) {
        return [qualified(parts.slice(0, -1), 'table')!, { type: 'other', name: parts[parts.length - 1]! }];
      }
      return parts.length ? { type: 'other', name: parts.join('.') } : undefined;
    }
    case 'Integer':
      numbersRead++;
      return { type: 'other', name: `large object ${typeof n.ival === 'number' ? n.ival : 0}` };
    default:
      return undefined;
  }
}

function addObjects(w: Walk, objtype: string | undefined, items: unknown): void {
  for (const item of list(items)) {
    const ref = objectRefFor(objtype, item);
    if (Array.isArray(ref)) for (const r of ref) w.addObject(r);
    else if (ref) w.addObject(ref);
  }
}

// ---------------------------------------------------------------------------
// The walk
// ---------------------------------------------------------------------------

function visit(v: unknown, w: Walk, hint?: string): void {
  if (Array.isArray(v)) {
    for (const item of v) visit(item, w);
    return;
  }
  if (!isObj(v)) return;
  const [type, body] = unwrap(v, hint);
  visitNode(type, body, w, false);
}

function visitChildren(type: string | undefined, n: Obj, w: Walk, skip?: readonly string[]): void {
  for (const key of Object.keys(n)) {
    if (skip && skip.includes(key)) continue;
    const child = n[key];
    if (typeof child === 'object' && child !== null) visit(child, w, type ? FIELD_TYPES[`${type}.${key}`] : undefined);
  }
}

function visitNode(type: string | undefined, n: Obj, w: Walk, top: boolean): HandlerResult {
  let res: HandlerResult | void = undefined;
  const handler = type !== undefined && Object.prototype.hasOwnProperty.call(HANDLERS, type) ? HANDLERS[type] : undefined;
  if (handler) {
    res = handler(n, w, top);
  } else if (type !== undefined && (top || type.endsWith('Stmt'))) {
    // Fail closed on anything this classifier does not know.
    w.raise('admin', `unrecognised statement (${type})`);
    res = { kind: type };
  }
  if (!res?.skip) visitChildren(type, n, w);
  return res ?? {};
}

/** Walks a statement's fields with its WITH clause's CTE names in scope. */
function walkWithCtes(type: string, n: Obj, w: Walk, skip: readonly string[] = []): void {
  const wc = n.withClause;
  if (!isObj(wc)) {
    visitChildren(type, n, w, skip);
    return;
  }
  const ctes = list(wc.ctes);
  const names = ctes.map((c) => (isObj(c) && isObj(c.CommonTableExpr) ? str(c.CommonTableExpr.ctename) : undefined));
  const scope = new Set<string>();
  w.cteScopes.push(scope);
  try {
    // A non-recursive CTE sees only the CTEs before it; WITH RECURSIVE, all.
    if (wc.recursive === true) for (const name of names) if (name) scope.add(name);
    ctes.forEach((c, i) => {
      visit(c, w);
      const name = names[i];
      if (name) scope.add(name);
    });
    visitChildren(type, n, w, [...skip, 'withClause']);
  } finally {
    w.cteScopes.pop();
  }
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

/** Checks on a relation that a statement writes into. */
function writeTarget(w: Walk, rel: unknown, what: string): void {
  if (!isObj(rel)) return;
  const name = str(rel.relname);
  if (!name) return;
  const schema = str(rel.schemaname);
  w.addObject(qualified(schema ? [schema, name] : [name], 'table')!);
  const catalogSchema = schema === undefined || schema.toLowerCase() === 'pg_catalog';
  if (catalogSchema && name.toLowerCase() === 'pg_settings') {
    w.raise('admin', `${what} on pg_settings changes server settings (it is set_config in disguise)`);
  } else if (schema?.toLowerCase() === 'pg_catalog' || (schema === undefined && name.toLowerCase().startsWith('pg_'))) {
    w.raise('admin', `${what} on system catalog ${name}`);
  }
}

function dmlHandler(kind: 'INSERT' | 'UPDATE' | 'DELETE' | 'MERGE', type: string): Handler {
  return (n, w, top) => {
    w.raise('write', top ? undefined : `contains a data-modifying ${kind}`);
    writeTarget(w, n.relation, kind);
    // The target is always a real table (never a CTE), so it is added above
    // rather than through the CTE-aware RangeVar handler.
    walkWithCtes(type, n, w, ['relation']);
    return { kind, skip: true };
  };
}

const LOCK_NAMES: Record<string, string> = {
  LCS_FORKEYSHARE: 'FOR KEY SHARE',
  LCS_FORSHARE: 'FOR SHARE',
  LCS_FORNOKEYUPDATE: 'FOR NO KEY UPDATE',
  LCS_FORUPDATE: 'FOR UPDATE',
};

function lockName(n: Obj): string | undefined {
  const clauses = list(n.lockingClause);
  if (clauses.length === 0) return undefined;
  const first = clauses[0];
  const strength = isObj(first) && isObj(first.LockingClause) ? str(first.LockingClause.strength) : undefined;
  return (strength && LOCK_NAMES[strength]) ?? 'FOR UPDATE';
}

function hasInto(n: Obj): boolean {
  if (n.intoClause) return true;
  return isObj(n.larg) ? hasInto(n.larg) : false;
}

const selectHandler: Handler = (n, w, top) => {
  // SELECT INTO creates a table, exactly like CREATE TABLE AS: ddl.
  if (n.intoClause) w.raise('ddl', 'SELECT INTO creates a table');
  const lock = lockName(n);
  // Row locks write the rows' lock markers and block other writers.
  if (lock) w.raise('write', `SELECT ${lock} takes row locks`);
  walkWithCtes('SelectStmt', n, w);
  if (!top) return { skip: true };
  let kind = 'SELECT';
  if (hasInto(n)) kind = 'SELECT INTO';
  else if (lock) kind = `SELECT ${lock}`;
  else if (n.valuesLists) kind = 'VALUES';
  return { kind, skip: true };
};

const rangeVarHandler: Handler = (n, w) => {
  const name = str(n.relname);
  if (!name) return { skip: true };
  const schema = str(n.schemaname);
  // An unqualified name that matches a CTE in scope is the CTE, not a table.
  if (schema === undefined && n.catalogname === undefined && w.isCte(name)) return { skip: true };
  w.addObject(qualified(schema ? [schema, name] : [name], 'table')!);
  return { skip: true };
};

const roleSpecHandler: Handler = (n, w) => {
  switch (str(n.roletype)) {
    case 'ROLESPEC_CSTRING': {
      const name = str(n.rolename);
      if (name) w.addObject({ type: 'role', name });
      break;
    }
    case 'ROLESPEC_PUBLIC':
      w.addObject({ type: 'role', name: 'PUBLIC' });
      break;
    case 'ROLESPEC_CURRENT_USER':
      w.addObject({ type: 'role', name: 'CURRENT_USER' });
      break;
    case 'ROLESPEC_CURRENT_ROLE':
      w.addObject({ type: 'role', name: 'CURRENT_ROLE' });
      break;
    case 'ROLESPEC_SESSION_USER':
      w.addObject({ type: 'role', name: 'SESSION_USER' });
      break;
  }
  return { skip: true };
};

/** Classifies SQL text that a function will run (query_to_xml('…') …). */
function classifySqlText(text: string, fname: string, w: Walk): void {
  if (w.sqlDepth >= MAX_SQL_TEXT_DEPTH) {
    w.raise('admin', `calls ${fname} with SQL text nested too deeply to classify`);
    return;
  }
  let stmts: ParsedStatement[];
  try {
    stmts = parseStatements(text);
  } catch {
    w.raise('admin', `calls ${fname} with SQL text that does not parse`);
    return;
  }
  for (const s of stmts) {
    const sub = new Walk(w.objects, w.sqlDepth + 1);
    const res = visitNode(s.type, s.node, sub, true);
    if (sub.level !== 'read') {
      const why = sub.reasonText();
      w.raise(sub.level, `calls ${fname}, which runs ${res.kind ?? s.type}${why ? ` (${why})` : ''}`);
    }
    if (sub.escalation) w.escalate();
  }
}

function applyFunctionRule(rule: FunctionRule, name: string, n: Obj, w: Walk): void {
  const args = list(n.args);
  switch (rule.special) {
    case 'set_config': {
      const setting = constValue(args[0]);
      if (setting === undefined) {
        // Could be 'role': treat as a possible identity change.
        w.raise('admin', 'calls set_config with a setting name that is not a constant');
        w.escalate();
        return;
      }
      const value = constValue(args[1]);
      const verdict = classifySetting(setting, { op: 'set', value });
      w.raise(verdict.level, verdict.reason ? `set_config: ${verdict.reason}` : undefined);
      if (verdict.escalation) {
        w.escalate();
        if (value !== undefined && value.toLowerCase() !== 'none') w.addObject({ type: 'role', name: value });
      }
      return;
    }
    case 'lo_open': {
      const INV_WRITE = 0x20000;
      const mode = constInt(args[1]);
      if (mode === undefined || (mode & INV_WRITE) !== 0) w.raise(rule.level, `calls ${name}, which ${rule.reason}`);
      return;
    }
    case 'sql_text': {
      if (rule.argCount !== undefined && args.length !== rule.argCount) return;
      for (const i of rule.sqlArgs ?? []) {
        if (i >= args.length) continue;
        const text = constValue(args[i]);
        if (text === undefined) w.raise(rule.level, `calls ${name}, which ${rule.reason}`);
        else classifySqlText(text, name, w);
      }
      return;
    }
    default: {
      w.raise(rule.level, `calls ${name}, which ${rule.reason}`);
      if (rule.sequenceArg !== undefined) {
        const text = constValue(args[rule.sequenceArg]);
        const ref = text !== undefined ? regclassRef(text) : undefined;
        if (ref) w.addObject(ref);
      }
    }
  }
}

const funcCallHandler: Handler = (n, w) => {
  const parts = nameList(n.funcname);
  if (parts.length === 0) return;
  const name = parts[parts.length - 1]!;
  const schema = parts.length >= 2 ? parts[parts.length - 2] : undefined;
  w.addObject(qualified(parts, 'function')!);
  const rule = lookupFunction(name, schema);
  if (rule) applyFunctionRule(rule, name.toLowerCase(), n, w);
  // Arguments, FILTER, ORDER BY and OVER are walked by the caller.
};

/** BEGIN / START TRANSACTION / SET TRANSACTION / SET SESSION CHARACTERISTICS modes. */
function transactionModes(options: unknown, w: Walk, what: string): void {
  for (const opt of list(options)) {
    const d = isObj(opt) && isObj(opt.DefElem) ? opt.DefElem : undefined;
    const name = d ? str(d.defname) : undefined;
    if (name === 'transaction_read_only') {
      if (constInt(d!.arg) !== 1) w.raise('write', `${what} READ WRITE lifts read-only mode`);
    } else if (name !== 'transaction_isolation' && name !== 'transaction_deferrable') {
      w.raise('admin', `unrecognised transaction option (${name ?? 'unknown'})`);
    }
  }
}

const TRANSACTION_KINDS: Record<string, string> = {
  TRANS_STMT_BEGIN: 'BEGIN',
  TRANS_STMT_START: 'START TRANSACTION',
  TRANS_STMT_COMMIT: 'COMMIT',
  TRANS_STMT_ROLLBACK: 'ROLLBACK',
  TRANS_STMT_SAVEPOINT: 'SAVEPOINT',
  TRANS_STMT_RELEASE: 'RELEASE',
  TRANS_STMT_ROLLBACK_TO: 'ROLLBACK TO SAVEPOINT',
  TRANS_STMT_PREPARE: 'PREPARE TRANSACTION',
  TRANS_STMT_COMMIT_PREPARED: 'COMMIT PREPARED',
  TRANS_STMT_ROLLBACK_PREPARED: 'ROLLBACK PREPARED',
};

const transactionHandler: Handler = (n, w) => {
  const k = str(n.kind);
  const kind = k ? TRANSACTION_KINDS[k] : undefined;
  if (!kind) {
    w.raise('admin', `unrecognised transaction statement (${k ?? 'unknown'})`);
    return { kind: 'TRANSACTION', skip: true };
  }
  transactionModes(n.options, w, kind);
  if (k === 'TRANS_STMT_PREPARE' || k === 'TRANS_STMT_COMMIT_PREPARED' || k === 'TRANS_STMT_ROLLBACK_PREPARED') {
    // Two-phase commit keeps (or finishes) a transaction beyond this session.
    w.raise('write', `${kind} is two-phase commit, which outlives the session`);
  }
  return { kind, skip: true };
};

/** The value(s) of SET x = …, as text; undefined when any is not a constant. */
function settingValue(args: unknown): string | undefined {
  const values = list(args).map(constValue);
  if (values.length === 0 || values.some((v) => v === undefined)) return undefined;
  return values.join(',');
}

const variableSetHandler: Handler = (n, w, top) => {
  const k = str(n.kind);
  const name = (str(n.name) ?? '').toLowerCase();
  if (k === 'VAR_RESET_ALL') {
    // Verified on PG 15: RESET ALL keeps the role but resets
    // default_transaction_read_only.
    w.raise('write', 'RESET ALL resets default_transaction_read_only, which lifts read-only mode');
    return { kind: 'RESET ALL', skip: true };
  }
  if (k === 'VAR_SET_MULTI') {
    if (name === 'transaction') {
      transactionModes(n.args, w, 'SET TRANSACTION');
      return { kind: 'SET TRANSACTION', skip: true };
    }
    if (name === 'session characteristics') {
      transactionModes(n.args, w, 'SET SESSION CHARACTERISTICS AS TRANSACTION');
      return { kind: 'SET SESSION CHARACTERISTICS', skip: true };
    }
    if (name === 'transaction snapshot') return { kind: 'SET TRANSACTION SNAPSHOT', skip: true };
    w.raise('admin', `unrecognised SET form (${name})`);
    return { kind: 'SET', skip: true };
  }
  let change: SettingChange;
  switch (k) {
    case 'VAR_SET_VALUE':
      change = { op: 'set', value: settingValue(n.args) };
      break;
    case 'VAR_SET_DEFAULT':
    case 'VAR_RESET':
      change = { op: 'default' };
      break;
    case 'VAR_SET_CURRENT':
      change = { op: 'from-current' };
      break;
    default:
      w.raise('admin', `unrecognised SET form (${k ?? 'unknown'})`);
      return { kind: 'SET', skip: true };
  }
  const verdict = classifySetting(name, change);
  w.raise(verdict.level, verdict.reason);
  // Only a SET that runs now changes this session's identity; the same SET
  // inside ALTER ROLE … SET or CREATE FUNCTION … SET is still admin.
  if (verdict.escalation && top) w.escalate();
  const reset = k === 'VAR_RESET';
  let kind = reset ? 'RESET' : 'SET';
  if (name === 'role') kind += ' ROLE';
  else if (name === 'session_authorization') kind += ' SESSION AUTHORIZATION';
  if ((name === 'role' || name === 'session_authorization') && change.op === 'set' && change.value !== undefined) {
    const role = change.value;
    if (role.toLowerCase() !== 'none') w.addObject({ type: 'role', name: role });
  }
  return { kind, skip: true, setting: name };
};

function explainAnalyzes(options: unknown): boolean {
  for (const opt of list(options)) {
    const d = isObj(opt) && isObj(opt.DefElem) ? opt.DefElem : undefined;
    if (!d || str(d.defname)?.toLowerCase() !== 'analyze') continue;
    if (d.arg === undefined) return true;
    const v = constValue(d.arg)?.trim().toLowerCase();
    // Postgres accepts only true/false/on/off/1/0 here; anything not
    // clearly false counts as ANALYZE (fail closed).
    if (v !== 'false' && v !== 'off' && v !== '0') return true;
  }
  return false;
}

const explainHandler: Handler = (n, w) => {
  const q = n.query;
  if (explainAnalyzes(n.options)) {
    // EXPLAIN ANALYZE executes the statement: it takes the statement's level.
    visit(q, w);
    if (w.level !== 'read') w.raise(w.level, 'EXPLAIN ANALYZE executes the statement');
    return { kind: 'EXPLAIN ANALYZE', skip: true };
  }
  // Plain EXPLAIN only plans: collect the objects, ignore the level …
  visit(q, new Walk(w.objects, w.sqlDepth));
  // … except that EXPLAIN EXECUTE evaluates the parameter expressions.
  if (isObj(q) && isObj(q.ExecuteStmt)) visit(q.ExecuteStmt.params, w);
  return { kind: 'EXPLAIN', skip: true };
};

const copyHandler: Handler = (n, w) => {
  const from = n.is_from === true;
  const dir = from ? 'FROM' : 'TO';
  let kind: string;
  if (n.is_program === true) {
    kind = `COPY ${dir} PROGRAM`;
    w.raise('admin', `COPY ${dir} PROGRAM runs a shell command on the database server`);
  } else if (str(n.filename) !== undefined) {
    kind = `COPY ${dir} FILE`;
    w.raise('admin', `COPY ${dir} FILE ${from ? 'reads' : 'writes'} a file on the database server`);
  } else if (from) {
    kind = 'COPY FROM STDIN';
    w.raise('write');
  } else {
    kind = 'COPY TO STDOUT';
  }
  if (from) writeTarget(w, n.relation, 'COPY FROM');
  visitChildren('CopyStmt', n, w);
  return { kind, skip: true };
};

const discardHandler: Handler = (n, w, top) => {
  const target = str(n.target);
  if (target === 'DISCARD_ALL') {
    // DISCARD ALL includes SET SESSION AUTHORIZATION DEFAULT (undoing SET
    // ROLE, verified on PG 15) and RESET ALL.
    w.raise('admin', 'DISCARD ALL resets the session user and role (and default_transaction_read_only)');
    if (top) w.escalate();
    return { kind: 'DISCARD ALL', skip: true };
  }
  if (target === 'DISCARD_PLANS' || target === 'DISCARD_SEQUENCES' || target === 'DISCARD_TEMP') {
    return { kind: `DISCARD ${target.slice('DISCARD_'.length)}`, skip: true };
  }
  w.raise('admin', `unrecognised DISCARD (${target ?? 'unknown'})`);
  return { kind: 'DISCARD', skip: true };
};

const UNTRUSTED_LANGUAGES = /^(c|internal|pl.*u)$/;

const createFunctionHandler: Handler = (n, w) => {
  const proc = n.is_procedure === true;
  const what = proc ? 'PROCEDURE' : 'FUNCTION';
  const ref = qualified(nameList(n.funcname), 'function');
  if (ref) w.addObject(ref);
  let language: string | undefined;
  let definer = false;
  for (const opt of list(n.options)) {
    const d = isObj(opt) && isObj(opt.DefElem) ? opt.DefElem : undefined;
    if (!d) continue;
    if (d.defname === 'language') language = constValue(d.arg)?.toLowerCase();
    if (d.defname === 'security' && constValue(d.arg) === 'true') definer = true;
  }
  if (language !== undefined && UNTRUSTED_LANGUAGES.test(language)) {
    w.raise('admin', `language ${language} is untrusted: its code runs with the server's own access to the machine`);
  }
  w.raise('ddl', `defines code that runs later, whenever the ${what.toLowerCase()} is called`);
  if (definer) w.raise('ddl', "SECURITY DEFINER: it will run with its owner's privileges");
  return { kind: `CREATE ${what}` };
};

/** A handler for statements whose level and kind are fixed. */
function fixed(level: Access, kind: string | ((n: Obj) => string), reason?: string, objects?: (n: Obj, w: Walk) => void): Handler {
  return (n, w) => {
    w.raise(level, reason);
    objects?.(n, w);
    return { kind: typeof kind === 'string' ? kind : kind(n) };
  };
}

const dbObject = (n: Obj, w: Walk): void => {
  const db = str(n.dbname);
  if (db) w.addObject({ type: 'database', name: db });
};

const otherObject =
  (field: string) =>
  (n: Obj, w: Walk): void => {
    const name = str(n[field]);
    if (name) w.addObject({ type: 'other', name });
  };

const SERVER_ADMIN = 'server administration';

const HANDLERS: Record<string, Handler> = {
  // --- queries and DML
  SelectStmt: selectHandler,
  InsertStmt: dmlHandler('INSERT', 'InsertStmt'),
  UpdateStmt: dmlHandler('UPDATE', 'UpdateStmt'),
  DeleteStmt: dmlHandler('DELETE', 'DeleteStmt'),
  MergeStmt: dmlHandler('MERGE', 'MergeStmt'),
  ReturnStmt: () => ({ kind: 'RETURN' }), // inside SQL-standard function bodies
  RangeVar: rangeVarHandler,
  RoleSpec: roleSpecHandler,
  FuncCall: funcCallHandler,

  // --- transactions, session, cursors, prepared statements
  TransactionStmt: transactionHandler,
  VariableSetStmt: variableSetHandler,
  VariableShowStmt: (n) => ({ kind: 'SHOW', setting: (str(n.name) ?? '').toLowerCase(), skip: true }),
  ConstraintsSetStmt: () => ({ kind: 'SET CONSTRAINTS' }),
  DiscardStmt: discardHandler,
  ListenStmt: () => ({ kind: 'LISTEN', skip: true }),
  UnlistenStmt: () => ({ kind: 'UNLISTEN', skip: true }),
  NotifyStmt: fixed('write', 'NOTIFY', 'NOTIFY sends a notification to other sessions'),
  DeclareCursorStmt: () => ({ kind: 'DECLARE CURSOR' }), // level of its query, walked
  FetchStmt: (n) => ({ kind: n.ismove === true ? 'MOVE' : 'FETCH', skip: true }),
  ClosePortalStmt: () => ({ kind: 'CLOSE', skip: true }),
  // PREPARE takes the level of its statement (walked as a child), so a write
  // is refused when prepared rather than when executed.
  PrepareStmt: (n) => ({ kind: 'PREPARE', preparedName: str(n.name) }),
  ExecuteStmt: (n, w) => {
    w.raise('write', 'EXECUTE runs a prepared statement whose text is not visible here (unless the caller tracks PREPARE)');
    return { kind: 'EXECUTE', preparedName: str(n.name) };
  },
  DeallocateStmt: (n) => ({ kind: 'DEALLOCATE', preparedName: str(n.name), skip: true }),
  ExplainStmt: explainHandler,

  // --- data movement and locks
  CopyStmt: copyHandler,
  TruncateStmt: (n, w) => {
    w.raise('write', 'TRUNCATE removes every row of the table at once (no WHERE, no DELETE triggers)');
    for (const rel of list(n.relations)) if (isObj(rel)) writeTarget(w, unwrap(rel)[1], 'TRUNCATE');
    return { kind: 'TRUNCATE' };
  },
  LockStmt: fixed('write', 'LOCK TABLE', 'LOCK takes table locks that block other sessions'),
  RefreshMatViewStmt: fixed('write', 'REFRESH MATERIALIZED VIEW', 'REFRESH MATERIALIZED VIEW rewrites the view’s stored rows'),

  // --- code execution
  DoStmt: fixed('admin', 'DO', 'DO runs an anonymous code block, which can do anything the role can'),
  CallStmt: fixed('admin', 'CALL', 'CALL runs a procedure, which can run any statement (including COMMIT)'),

  // --- schema (ddl)
  CreateStmt: fixed('ddl', 'CREATE TABLE'),
  CreateForeignTableStmt: fixed('ddl', 'CREATE FOREIGN TABLE'),
  CreateTableAsStmt: fixed('ddl', (n) => (n.objtype === 'OBJECT_MATVIEW' ? 'CREATE MATERIALIZED VIEW' : 'CREATE TABLE AS')),
  ViewStmt: fixed('ddl', 'CREATE VIEW'),
  IndexStmt: fixed('ddl', 'CREATE INDEX'),
  CreateSeqStmt: fixed('ddl', 'CREATE SEQUENCE'),
  AlterSeqStmt: fixed('ddl', 'ALTER SEQUENCE'),
  CreateSchemaStmt: fixed('ddl', 'CREATE SCHEMA', undefined, (n, w) => {
    const s = str(n.schemaname);
    if (s) w.addObject({ type: 'schema', name: s });
  }),
  AlterTableStmt: fixed('ddl', (n) => `ALTER ${objectLabel(str(n.objtype))}`),
  AlterTableCmd: (n, w) => {
    if (n.subtype === 'AT_ChangeOwner') w.raise('admin', 'changes the owner, who holds every privilege on it');
  },
  ReplicaIdentityStmt: fixed('ddl', 'ALTER TABLE'),
  AlterDomainStmt: fixed('ddl', 'ALTER DOMAIN'),
  AlterCollationStmt: fixed('ddl', 'ALTER COLLATION'),
  CreateDomainStmt: fixed('ddl', 'CREATE DOMAIN'),
  CreateEnumStmt: fixed('ddl', 'CREATE TYPE'),
  CreateRangeStmt: fixed('ddl', 'CREATE TYPE'),
  CompositeTypeStmt: fixed('ddl', 'CREATE TYPE'),
  AlterEnumStmt: fixed('ddl', 'ALTER TYPE'),
  AlterTypeStmt: fixed('ddl', 'ALTER TYPE'),
  DefineStmt: fixed('ddl', (n) => `CREATE ${objectLabel(str(n.kind))}`),
  CreateFunctionStmt: createFunctionHandler,
  AlterFunctionStmt: fixed('ddl', (n) => `ALTER ${objectLabel(str(n.objtype) ?? 'OBJECT_FUNCTION')}`, undefined, (n, w) =>
    addObjects(w, str(n.objtype) ?? 'OBJECT_FUNCTION', [n.func !== undefined ? { ObjectWithArgs: n.func } : undefined]),
  ),
  CreateTrigStmt: fixed('ddl', (n) => (n.isconstraint === true ? 'CREATE CONSTRAINT TRIGGER' : 'CREATE TRIGGER')),
  RuleStmt: fixed('ddl', 'CREATE RULE'),
  CreatePolicyStmt: fixed('ddl', 'CREATE POLICY'),
  AlterPolicyStmt: fixed('ddl', 'ALTER POLICY'),
  CreateOpClassStmt: fixed('ddl', 'CREATE OPERATOR CLASS'),
  CreateOpFamilyStmt: fixed('ddl', 'CREATE OPERATOR FAMILY'),
  AlterOpFamilyStmt: fixed('ddl', 'ALTER OPERATOR FAMILY'),
  AlterOperatorStmt: fixed('ddl', 'ALTER OPERATOR'),
  CreateStatsStmt: fixed('ddl', 'CREATE STATISTICS'),
  AlterStatsStmt: fixed('ddl', 'ALTER STATISTICS'),
  CreateConversionStmt: fixed('ddl', 'CREATE CONVERSION'),
  CreateCastStmt: fixed('ddl', 'CREATE CAST'),
  CreateTransformStmt: fixed('ddl', 'CREATE TRANSFORM'),
  AlterTSDictionaryStmt: fixed('ddl', 'ALTER TEXT SEARCH DICTIONARY'),
  AlterTSConfigurationStmt: fixed('ddl', 'ALTER TEXT SEARCH CONFIGURATION'),
  CreateExtensionStmt: fixed('ddl', 'CREATE EXTENSION', 'installs an extension (its script runs now)', otherObject('extname')),
  AlterExtensionStmt: fixed('ddl', 'ALTER EXTENSION', undefined, otherObject('extname')),
  AlterExtensionContentsStmt: fixed('ddl', 'ALTER EXTENSION', undefined, otherObject('extname')),
  ImportForeignSchemaStmt: fixed('ddl', 'IMPORT FOREIGN SCHEMA'),
  AlterObjectDependsStmt: fixed('ddl', (n) => `ALTER ${objectLabel(str(n.objectType))}`, undefined, (n, w) =>
    addObjects(w, str(n.objectType), [n.object]),
  ),
  AlterObjectSchemaStmt: fixed('ddl', (n) => `ALTER ${objectLabel(str(n.objectType))}`, undefined, (n, w) => {
    addObjects(w, str(n.objectType), [n.object]);
    const s = str(n.newschema);
    if (s) w.addObject({ type: 'schema', name: s });
  }),
  CommentStmt: fixed('ddl', 'COMMENT ON', undefined, (n, w) => addObjects(w, str(n.objtype), [n.object])),
  DropStmt: (n, w) => {
    const t = str(n.removeType);
    w.raise(t && ADMIN_OBJECT_TYPES.has(t) ? 'admin' : 'ddl');
    addObjects(w, t, n.objects);
    return { kind: `DROP ${objectLabel(t)}`, skip: true };
  },
  RenameStmt: (n, w) => {
    const t = str(n.renameType);
    const shown = t === 'OBJECT_COLUMN' || t === 'OBJECT_ATTRIBUTE' || t === 'OBJECT_TABCONSTRAINT' ? str(n.relationType) : t;
    w.raise(t && ADMIN_OBJECT_TYPES.has(t) ? 'admin' : 'ddl');
    addObjects(w, t, [n.object]);
    const sub = str(n.subname);
    if (sub && (t === 'OBJECT_ROLE' || t === 'OBJECT_DATABASE' || t === 'OBJECT_SCHEMA')) {
      addObjects(w, t, [{ String: { sval: sub } }]);
    }
    return { kind: `ALTER ${objectLabel(shown)}` };
  },

  // --- privileges, roles, ownership (admin)
  GrantStmt: (n, w) => {
    w.raise('admin');
    const t = str(n.objtype);
    addObjects(w, n.targtype === 'ACL_TARGET_ALL_IN_SCHEMA' ? 'OBJECT_SCHEMA' : t, n.objects);
    visitChildren('GrantStmt', n, w, ['objects']);
    return { kind: n.is_grant === true ? 'GRANT' : 'REVOKE', skip: true };
  },
  GrantRoleStmt: (n, w) => {
    w.raise('admin');
    for (const p of list(n.granted_roles)) {
      const name = isObj(p) && isObj(p.AccessPriv) ? str(p.AccessPriv.priv_name) : undefined;
      if (name) w.addObject({ type: 'role', name });
    }
    return { kind: n.is_grant === true ? 'GRANT ROLE' : 'REVOKE ROLE' };
  },
  AlterDefaultPrivilegesStmt: fixed('admin', 'ALTER DEFAULT PRIVILEGES'),
  CreateRoleStmt: fixed(
    'admin',
    (n) => `CREATE ${n.stmt_type === 'ROLESTMT_USER' ? 'USER' : n.stmt_type === 'ROLESTMT_GROUP' ? 'GROUP' : 'ROLE'}`,
    undefined,
    (n, w) => {
      const r = str(n.role);
      if (r) w.addObject({ type: 'role', name: r });
    },
  ),
  AlterRoleStmt: fixed('admin', 'ALTER ROLE'),
  AlterRoleSetStmt: fixed('admin', 'ALTER ROLE'),
  DropRoleStmt: fixed('admin', 'DROP ROLE'),
  AlterOwnerStmt: fixed('admin', (n) => `ALTER ${objectLabel(str(n.objectType))}`, 'changes the owner, who holds every privilege on it', (n, w) =>
    addObjects(w, str(n.objectType), [n.object]),
  ),
  DropOwnedStmt: fixed('admin', 'DROP OWNED'),
  ReassignOwnedStmt: fixed('admin', 'REASSIGN OWNED'),
  SecLabelStmt: fixed('admin', 'SECURITY LABEL', undefined, (n, w) => addObjects(w, str(n.objtype), [n.object])),

  // --- server administration (admin)
  AlterSystemStmt: fixed('admin', 'ALTER SYSTEM'),
  CreatedbStmt: fixed('admin', 'CREATE DATABASE', undefined, dbObject),
  AlterDatabaseStmt: fixed('admin', 'ALTER DATABASE', undefined, dbObject),
  AlterDatabaseSetStmt: fixed('admin', 'ALTER DATABASE', undefined, dbObject),
  AlterDatabaseRefreshCollStmt: fixed('admin', 'ALTER DATABASE', undefined, dbObject),
  DropdbStmt: fixed('admin', 'DROP DATABASE', undefined, dbObject),
  VacuumStmt: fixed('admin', (n) => (n.is_vacuumcmd === true ? 'VACUUM' : 'ANALYZE'), SERVER_ADMIN),
  ClusterStmt: fixed('admin', 'CLUSTER', SERVER_ADMIN),
  ReindexStmt: fixed('admin', 'REINDEX', SERVER_ADMIN),
  CheckPointStmt: fixed('admin', 'CHECKPOINT', SERVER_ADMIN),
  LoadStmt: fixed('admin', 'LOAD', 'LOAD loads a shared library into the server process'),
  CreateTableSpaceStmt: fixed('admin', 'CREATE TABLESPACE', undefined, otherObject('tablespacename')),
  DropTableSpaceStmt: fixed('admin', 'DROP TABLESPACE', undefined, otherObject('tablespacename')),
  AlterTableSpaceOptionsStmt: fixed('admin', 'ALTER TABLESPACE', undefined, otherObject('tablespacename')),
  AlterTableMoveAllStmt: fixed('admin', 'ALTER TABLE ALL IN TABLESPACE'),
  CreateFdwStmt: fixed('admin', 'CREATE FOREIGN DATA WRAPPER'),
  AlterFdwStmt: fixed('admin', 'ALTER FOREIGN DATA WRAPPER'),
  CreateForeignServerStmt: fixed('admin', 'CREATE SERVER', 'a foreign server lets the database connect to other servers', otherObject('servername')),
  AlterForeignServerStmt: fixed('admin', 'ALTER SERVER', undefined, otherObject('servername')),
  CreateUserMappingStmt: fixed('admin', 'CREATE USER MAPPING', 'user mappings hold credentials for foreign servers'),
  AlterUserMappingStmt: fixed('admin', 'ALTER USER MAPPING', 'user mappings hold credentials for foreign servers'),
  DropUserMappingStmt: fixed('admin', 'DROP USER MAPPING'),
  CreateAmStmt: fixed('admin', 'CREATE ACCESS METHOD'),
  CreateEventTrigStmt: fixed('admin', 'CREATE EVENT TRIGGER', 'event triggers run on every DDL statement, database-wide'),
  AlterEventTrigStmt: fixed('admin', 'ALTER EVENT TRIGGER'),
  CreatePLangStmt: fixed('admin', 'CREATE LANGUAGE'),
  CreatePublicationStmt: fixed('admin', 'CREATE PUBLICATION', 'publications stream table changes out of the server', otherObject('pubname')),
  AlterPublicationStmt: fixed('admin', 'ALTER PUBLICATION', undefined, otherObject('pubname')),
  CreateSubscriptionStmt: fixed('admin', 'CREATE SUBSCRIPTION', 'subscriptions connect to other servers', otherObject('subname')),
  AlterSubscriptionStmt: fixed('admin', 'ALTER SUBSCRIPTION', undefined, otherObject('subname')),
  DropSubscriptionStmt: fixed('admin', 'DROP SUBSCRIPTION', undefined, otherObject('subname')),
};

/** Node types with a handler (statement types and the few others that matter). */
export const HANDLED_NODE_TYPES: readonly string[] = Object.keys(HANDLERS);

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/** Classifies one parsed statement. */
export function classifyStatement(p: ParsedStatement): StatementInfo {
  const w = new Walk();
  const res = visitNode(p.type, p.node, w, true);
  const info: StatementInfo = {
    access: w.level,
    kind: res.kind ?? p.type,
    objects: [...w.objects.values()],
    text: p.text,
  };
  const reason = w.reasonText();
  if (reason) info.reason = reason;
  if (w.escalation) {
    info.escalation = true;
    info.access = 'admin';
  }
  if (res.setting !== undefined) info.setting = res.setting;
  if (res.preparedName !== undefined) info.preparedName = res.preparedName;
  return info;
}

/**
 * The highest level among a classification's statements ('read' for none);
 * undefined when the text did not parse or classify, which must be refused.
 */
export function overallAccess(c: Classification): Access | undefined {
  if (!c.ok) return undefined;
  let level: Access = 'read';
  for (const s of c.statements) level = maxAccess(level, s.access);
  return level;
}

function parseErrorText(err: unknown): string {
  if (err instanceof SqlParseError) {
    return err.position !== undefined ? `${err.message} (at character ${err.position + 1})` : err.message;
  }
  return err instanceof Error ? err.message : String(err);
}

/**
 * Classifies every statement of `sql` (a simple-protocol Query string, or
 * the text of an extended-protocol Parse). Never throws: text that does not
 * parse, or that cannot be classified, gives { ok: false } so the caller can
 * refuse it (fail closed).
 */
export function classify(sql: string): Classification {
  let parsed: ParsedStatement[];
  try {
    parsed = parseStatements(sql);
  } catch (err) {
    return { ok: false, error: parseErrorText(err) };
  }
  try {
    numbersRead = 0;
    const statements = parsed.map(classifyStatement);
    return numbersRead ? { ok: true, statements, readsNumbers: true } : { ok: true, statements };
  } catch (err) {
    // e.g. a tree too deep for the walk's recursion.
    return { ok: false, error: `statement could not be classified: ${err instanceof Error ? err.message : String(err)}` };
  }
}
