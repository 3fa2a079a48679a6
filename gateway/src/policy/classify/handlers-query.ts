// Handlers for queries, DML, COPY, TRUNCATE and EXPLAIN.
import type { ObjectRef, WriteKind } from '../types.js';
import { constValue } from './constants.js';
import { isObj, list, qualified, str, unwrap, type Obj } from './tree.js';
import { visit, visitChildren, Walk, walkWithCtes, type Handler } from './walk.js';

/** A RangeVar as a table reference; `only` when written with ONLY (the parser then leaves out `inh`). */
function relationRef(rel: Obj, name: string): ObjectRef {
  const schema = str(rel.schemaname);
  const ref = qualified(schema ? [schema, name] : [name], 'table')!;
  if (rel.inh !== true) ref.only = true;
  return ref;
}

/** Adds a relation that a statement writes into, and checks it. */
export function writeTarget(w: Walk, rel: unknown, what: string, writes: WriteKind[]): void {
  if (!isObj(rel)) return;
  const name = str(rel.relname);
  if (!name) return;
  const schema = str(rel.schemaname);
  const ref = relationRef(rel, name);
  if (writes.length) ref.writes = writes;
  w.addObject(ref);
  const catalogSchema = schema === undefined || schema.toLowerCase() === 'pg_catalog';
  if (catalogSchema && name.toLowerCase() === 'pg_settings') {
    w.raise('admin', `${what} on pg_settings changes server settings (it is set_config in disguise)`);
    // An UPDATE there may set search_path to whatever its rows say.
    w.changePath({ op: 'set', value: undefined, local: false });
  } else if (schema?.toLowerCase() === 'pg_catalog' || (schema === undefined && name.toLowerCase().startsWith('pg_'))) {
    w.raise('admin', `${what} on system catalog ${name}`);
  }
}

const MERGE_COMMANDS: Record<string, WriteKind> = { CMD_INSERT: 'insert', CMD_UPDATE: 'update', CMD_DELETE: 'delete' };

/** How a DML statement changes its target's rows. */
function writeKinds(kind: 'INSERT' | 'UPDATE' | 'DELETE' | 'MERGE', n: Obj): WriteKind[] {
  switch (kind) {
    case 'INSERT':
      return isObj(n.onConflictClause) && n.onConflictClause.action === 'ONCONFLICT_UPDATE' ? ['insert', 'update'] : ['insert'];
    case 'UPDATE':
      return ['update'];
    case 'DELETE':
      return ['delete'];
    case 'MERGE': {
      const out: WriteKind[] = [];
      for (const c of list(n.mergeWhenClauses)) {
        const cmd = isObj(c) && isObj(c.MergeWhenClause) ? str(c.MergeWhenClause.commandType) : undefined;
        const k = cmd !== undefined ? MERGE_COMMANDS[cmd] : undefined;
        if (k && !out.includes(k)) out.push(k);
      }
      return out;
    }
  }
}

export function dmlHandler(kind: 'INSERT' | 'UPDATE' | 'DELETE' | 'MERGE', type: string): Handler {
  return (n, w, top) => {
    w.raise('write', top ? undefined : `contains a data-modifying ${kind}`);
    writeTarget(w, n.relation, kind, writeKinds(kind, n));
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

/** ORDER BY 2, GROUP BY 2 and DISTINCT ON (2) name an output column by position. */
function hasPositionalReference(n: Obj): boolean {
  const position = (e: unknown) => isObj(e) && isObj(e.A_Const) && isObj(e.A_Const.ival);
  for (const s of list(n.sortClause)) if (isObj(s) && isObj(s.SortBy) && position(s.SortBy.node)) return true;
  return [...list(n.groupClause), ...list(n.distinctClause)].some(position);
}

export const selectHandler: Handler = (n, w, top) => {
  // Which column a position names decides what masking allows: texts that differ there must not share a decision.
  if (hasPositionalReference(n)) w.shared.numbersRead++;
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

export const rangeVarHandler: Handler = (n, w) => {
  const name = str(n.relname);
  if (!name) return { skip: true };
  const schema = str(n.schemaname);
  // An unqualified name that matches a CTE in scope is the CTE, not a table.
  if (schema === undefined && n.catalogname === undefined && w.isCte(name)) return { skip: true };
  w.addObject(relationRef(n, name));
  return { skip: true };
};

export const roleSpecHandler: Handler = (n, w) => {
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

export const truncateHandler: Handler = (n, w) => {
  w.raise('write', 'TRUNCATE removes every row of the table at once (no WHERE, no DELETE triggers)');
  // CASCADE also empties every table that references these through a foreign key.
  const writes: WriteKind[] = [n.behavior === 'DROP_CASCADE' ? 'truncate cascade' : 'truncate'];
  for (const rel of list(n.relations)) if (isObj(rel)) writeTarget(w, unwrap(rel)[1], 'TRUNCATE', writes);
  return { kind: 'TRUNCATE' };
};

function explainAnalyzes(options: unknown, w: Walk): boolean {
  for (const opt of list(options)) {
    const d = isObj(opt) && isObj(opt.DefElem) ? opt.DefElem : undefined;
    if (!d || str(d.defname)?.toLowerCase() !== 'analyze') continue;
    if (d.arg === undefined) return true;
    const v = constValue(d.arg, w.shared)?.trim().toLowerCase();
    // Postgres accepts only true/false/on/off/1/0 here; anything not
    // clearly false counts as ANALYZE (fail closed).
    if (v !== 'false' && v !== 'off' && v !== '0') return true;
  }
  return false;
}

export const explainHandler: Handler = (n, w) => {
  const q = n.query;
  if (explainAnalyzes(n.options, w)) {
    // EXPLAIN ANALYZE executes the statement: it takes the statement's level.
    visit(q, w);
    if (w.level !== 'read') w.raise(w.level, 'EXPLAIN ANALYZE executes the statement');
    return { kind: 'EXPLAIN ANALYZE', skip: true };
  }
  // Plain EXPLAIN only plans: collect the objects, ignore the level, the
  // writes and setting changes …
  visit(q, new Walk(w.shared, w.sqlDepth, true));
  // … except that EXPLAIN EXECUTE evaluates the parameter expressions.
  if (isObj(q) && isObj(q.ExecuteStmt)) visit(q.ExecuteStmt.params, w);
  return { kind: 'EXPLAIN', skip: true };
};

export const copyHandler: Handler = (n, w) => {
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
  if (from) writeTarget(w, n.relation, 'COPY FROM', ['insert']);
  visitChildren('CopyStmt', n, w);
  return { kind, skip: true };
};
