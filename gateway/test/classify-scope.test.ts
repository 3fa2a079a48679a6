// What the classifier reports for scopes (issue #10): how each table is used
// (writes, ONLY), every search_path change a statement makes, the relations
// and schemas that functions reach through their arguments, reach that no
// scope can place, and which system relations carry data.
import { describe, expect, it } from 'vitest';
import {
  classify,
  lookupFunction,
  SIDE_EFFECT_FUNCTION_PREFIXES,
  SIDE_EFFECT_FUNCTIONS,
  type Access,
  type ObjectRef,
  type StatementInfo,
} from '../src/policy/index.js';
import { DATA_CATALOG_PREFIXES, DATA_CATALOGS, DATA_INFORMATION_SCHEMA, dataCatalog, isSystemSchema } from '../src/policy/catalogs.js';
import type { PathChange, WriteKind } from '../src/policy/types.js';

function one(sql: string): StatementInfo {
  const c = classify(sql);
  if (!c.ok) throw new Error(`did not parse: ${sql}: ${c.error}`);
  expect(c.statements, sql).toHaveLength(1);
  return c.statements[0]!;
}

const key = (o: ObjectRef) => `${o.type} ${o.schema ?? ''}.${o.name}`;
const sorted = (objs: ObjectRef[]) => [...objs].sort((a, b) => key(a).localeCompare(key(b)));
/** The statement's tables and schemas (not functions or roles), in a fixed order. */
const reached = (s: StatementInfo) => sorted(s.objects.filter((o) => o.type === 'table' || o.type === 'schema'));

/** A table; `writes` and `only` as the classifier reports them. */
function T(name: string, schema?: string, extra: { writes?: WriteKind[]; only?: true } = {}): ObjectRef {
  const ref: ObjectRef = { type: 'table', name };
  if (schema !== undefined) ref.schema = schema;
  if (extra.writes) ref.writes = extra.writes;
  if (extra.only) ref.only = true;
  return ref;
}
const S = (name: string): ObjectRef => ({ type: 'schema', name });
const SCOPES = "which cannot be checked against the rule's scopes";

// ---------------------------------------------------------------------------
// writes and ONLY
// ---------------------------------------------------------------------------

const USAGE: Array<{ sql: string; tables: ObjectRef[] }> = [
  // reads
  { sql: 'SELECT * FROM t', tables: [T('t')] },
  { sql: 'SELECT * FROM ONLY s.t', tables: [T('t', 's', { only: true })] },
  { sql: 'SELECT * FROM ONLY t JOIN ONLY t t2 ON true', tables: [T('t', undefined, { only: true })] },
  // Once without ONLY, the children are read too.
  { sql: 'SELECT * FROM ONLY t JOIN t t2 ON true', tables: [T('t')] },
  { sql: 'SELECT * FROM t WHERE a IN (SELECT a FROM ONLY u)', tables: [T('t'), T('u', undefined, { only: true })] },
  { sql: 'SELECT * FROM t FOR UPDATE', tables: [T('t')] },
  { sql: 'TABLE ONLY t', tables: [T('t', undefined, { only: true })] },
  { sql: 'COPY t TO STDOUT', tables: [T('t')] },
  { sql: 'COPY (SELECT * FROM ONLY t) TO STDOUT', tables: [T('t', undefined, { only: true })] },
  { sql: 'DECLARE c CURSOR FOR SELECT * FROM ONLY t', tables: [T('t', undefined, { only: true })] },
  // INSERT
  { sql: 'INSERT INTO t VALUES (1)', tables: [T('t', undefined, { writes: ['insert'] })] },
  { sql: 'INSERT INTO s.t SELECT * FROM ONLY u', tables: [T('t', 's', { writes: ['insert'] }), T('u', undefined, { only: true })] },
  { sql: 'INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING', tables: [T('t', undefined, { writes: ['insert'] })] },
  { sql: 'INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2', tables: [T('t', undefined, { writes: ['insert', 'update'] })] },
  // Read and written: one object, with its writes.
  { sql: 'INSERT INTO t SELECT * FROM t', tables: [T('t', undefined, { writes: ['insert'] })] },
  // UPDATE
  { sql: 'UPDATE t SET a = 1', tables: [T('t', undefined, { writes: ['update'] })] },
  { sql: 'UPDATE ONLY s.t SET a = 1', tables: [T('t', 's', { writes: ['update'], only: true })] },
  { sql: 'UPDATE ONLY t SET a = 1 FROM t AS t2', tables: [T('t', undefined, { writes: ['update'] })] },
  { sql: 'UPDATE t SET a = (SELECT max(a) FROM u)', tables: [T('t', undefined, { writes: ['update'] }), T('u')] },
  // DELETE
  { sql: 'DELETE FROM t USING u WHERE t.a = u.a', tables: [T('t', undefined, { writes: ['delete'] }), T('u')] },
  { sql: 'DELETE FROM ONLY s.t', tables: [T('t', 's', { writes: ['delete'], only: true })] },
  // MERGE: the kinds its WHEN clauses do.
  {
    sql: 'MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN UPDATE SET b = u.b WHEN NOT MATCHED THEN INSERT VALUES (u.a, u.b)',
    tables: [T('t', undefined, { writes: ['insert', 'update'] }), T('u')],
  },
  {
    sql: 'MERGE INTO ONLY t USING u ON t.a = u.a WHEN MATCHED AND u.b IS NULL THEN DELETE WHEN MATCHED THEN UPDATE SET b = u.b',
    tables: [T('t', undefined, { writes: ['update', 'delete'], only: true }), T('u')],
  },
  {
    sql: 'MERGE INTO t USING u ON t.a = u.a WHEN NOT MATCHED BY SOURCE THEN DELETE WHEN NOT MATCHED THEN DO NOTHING',
    tables: [T('t', undefined, { writes: ['delete'] }), T('u')],
  },
  { sql: 'MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN DO NOTHING', tables: [T('t'), T('u')] },
  // TRUNCATE
  { sql: 'TRUNCATE t, ONLY s.u', tables: [T('t', undefined, { writes: ['truncate'] }), T('u', 's', { writes: ['truncate'], only: true })] },
  { sql: 'TRUNCATE t RESTRICT', tables: [T('t', undefined, { writes: ['truncate'] })] },
  { sql: 'TRUNCATE TABLE t, u CASCADE', tables: [T('t', undefined, { writes: ['truncate cascade'] }), T('u', undefined, { writes: ['truncate cascade'] })] },
  // COPY FROM
  { sql: 'COPY t FROM STDIN', tables: [T('t', undefined, { writes: ['insert'] })] },
  { sql: 'COPY s.t (a, b) FROM STDIN WITH (FORMAT csv)', tables: [T('t', 's', { writes: ['insert'] })] },
  // Data-modifying CTEs count the same.
  { sql: 'WITH d AS (DELETE FROM t RETURNING *) INSERT INTO u SELECT * FROM d', tables: [T('t', undefined, { writes: ['delete'] }), T('u', undefined, { writes: ['insert'] })] },
  { sql: 'WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM t', tables: [T('t', undefined, { writes: ['update'] })] },
  { sql: 'WITH x AS (INSERT INTO t VALUES (1) RETURNING *) DELETE FROM t', tables: [T('t', undefined, { writes: ['insert', 'delete'] })] },
  { sql: 'SELECT * FROM (WITH d AS (DELETE FROM ONLY t RETURNING a) SELECT * FROM d) s', tables: [T('t', undefined, { writes: ['delete'], only: true })] },
  // Run now: writes count; only planned or stored: they do not.
  { sql: 'EXPLAIN ANALYZE INSERT INTO t VALUES (1)', tables: [T('t', undefined, { writes: ['insert'] })] },
  { sql: 'EXPLAIN INSERT INTO t VALUES (1)', tables: [T('t')] },
  { sql: 'EXPLAIN (ANALYZE false) DELETE FROM ONLY t', tables: [T('t', undefined, { only: true })] },
  { sql: 'PREPARE p AS UPDATE t SET a = $1', tables: [T('t', undefined, { writes: ['update'] })] },
  { sql: 'CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM u', tables: [T('t'), T('u')] },
  { sql: 'CREATE FUNCTION f() RETURNS void BEGIN ATOMIC DELETE FROM u; END', tables: [T('u')] },
  // SQL text that a function runs: its tables are the statement's.
  { sql: "SELECT query_to_xml('DELETE FROM s.t RETURNING 1', true, false, '')", tables: [T('t', 's', { writes: ['delete'] })] },
  // DDL names tables without writes.
  { sql: 'DROP TABLE t, s.u', tables: [T('t'), T('u', 's')] },
  { sql: 'ALTER TABLE t ADD COLUMN c int', tables: [T('t')] },
  { sql: 'ALTER TABLE ONLY t ADD CONSTRAINT c CHECK (a > 0)', tables: [T('t', undefined, { only: true })] },
  { sql: 'CREATE TABLE x AS SELECT * FROM t', tables: [T('t'), T('x')] },
  { sql: 'SELECT * INTO x FROM t', tables: [T('t'), T('x')] },
  { sql: 'CREATE INDEX ON ONLY t (a)', tables: [T('t', undefined, { only: true })] },
  { sql: 'LOCK TABLE ONLY t', tables: [T('t', undefined, { only: true })] },
  { sql: 'REFRESH MATERIALIZED VIEW m', tables: [T('m')] },
  // A write to pg_settings is set_config: admin, and its target is written.
  { sql: "UPDATE pg_settings SET setting = 'p' WHERE name = 'search_path'", tables: [T('pg_settings', undefined, { writes: ['update'] })] },
];

describe('classify: how each table is used (writes, ONLY)', () => {
  for (const c of USAGE) {
    it(c.sql, () => {
      expect(reached(one(c.sql))).toEqual(sorted(c.tables));
    });
  }
});

// ---------------------------------------------------------------------------
// search_path changes
// ---------------------------------------------------------------------------

const set = (value: string | undefined, local = false): PathChange => ({ op: 'set', value, local });
const RESET: PathChange = { op: 'reset' };

const PATHS: Array<{ sql: string; changes: PathChange[] | undefined }> = [
  // SET and RESET
  { sql: 'SET search_path = a, b', changes: [set('a, b')] },
  { sql: `SET search_path TO a, "My S", 'q'`, changes: [set('a, "My S", q')] },
  // A list setting: each element is an identifier, so one string is one schema.
  { sql: `SET search_path = 'a, b'`, changes: [set('"a, b"')] },
  { sql: `SET search_path = ''`, changes: [set('""')] },
  { sql: 'SET search_path = "$user", public', changes: [set('"$user", public')] },
  { sql: 'SET search_path = MySchema, "MySchema", "a$b", "x""y"', changes: [set('myschema, "MySchema", "a$b", "x""y"')] },
  { sql: 'SET "SEARCH_PATH" = p', changes: [set('p')] },
  { sql: 'SET LOCAL search_path = p', changes: [set('p', true)] },
  { sql: 'SET SESSION search_path = p', changes: [set('p')] },
  { sql: 'RESET search_path', changes: [RESET] },
  { sql: 'SET search_path TO DEFAULT', changes: [RESET] },
  { sql: 'SET SESSION search_path = DEFAULT', changes: [RESET] },
  // Back to the default until the transaction ends: not a reset for good.
  { sql: 'SET LOCAL search_path TO DEFAULT', changes: [set(undefined, true)] },
  // Sets it to the value it already has.
  { sql: 'SET search_path FROM CURRENT', changes: undefined },
  { sql: 'RESET ALL', changes: [RESET] },
  { sql: 'DISCARD ALL', changes: [RESET] },
  { sql: 'DISCARD PLANS', changes: undefined },
  { sql: "SET application_name = 'x'", changes: undefined },
  { sql: 'RESET statement_timeout', changes: undefined },
  // set_config in every form and position
  { sql: "SELECT set_config('search_path', 'p', false)", changes: [set('p')] },
  { sql: "SELECT set_config('search_path', 'a, \"My S\"', true)", changes: [set('a, "My S"', true)] },
  { sql: "SELECT pg_catalog.set_config('search_path', '', false)", changes: [set('')] },
  { sql: "SELECT PG_CATALOG.SET_CONFIG('SEARCH_PATH', 'p', false)", changes: [set('p')] },
  // Another function to Postgres, but matched like the built-in one: fail closed.
  { sql: `SELECT "SET_CONFIG"('search_path', 'p', false)`, changes: [set('p')] },
  { sql: "SELECT myschema.set_config('search_path', 'p', false)", changes: [set('p')] },
  { sql: "SELECT set_config('search_path', 'p', 'on')", changes: [set('p', true)] },
  { sql: "SELECT set_config('search_path', 'p', 't'::boolean)", changes: [set('p', true)] },
  { sql: "SELECT set_config('search_path', 'p', 'off')", changes: [set('p')] },
  { sql: "SELECT * FROM t WHERE set_config('search_path', 'p', false) IS NOT NULL", changes: [set('p')] },
  { sql: "WITH x AS (SELECT set_config('search_path', 'p', false)) SELECT * FROM x", changes: [set('p')] },
  { sql: "SELECT upper(set_config('search_path', 'p', false))", changes: [set('p')] },
  { sql: "SELECT length(lower(set_config('search_path', 'p', true))) FROM t", changes: [set('p', true)] },
  { sql: "SELECT (SELECT set_config('search_path', 'p', false))", changes: [set('p')] },
  { sql: "SELECT * FROM t WHERE a IN (SELECT 1 FROM u WHERE set_config('search_path', 'p', false) = '')", changes: [set('p')] },
  { sql: "SELECT * FROM set_config('search_path', 'p', false)", changes: [set('p')] },
  { sql: "SELECT CASE WHEN a > 0 THEN set_config('search_path', 'p', false) END FROM t", changes: [set('p')] },
  { sql: "INSERT INTO t VALUES (set_config('search_path', 'p', false))", changes: [set('p')] },
  { sql: "UPDATE t SET a = set_config('search_path', 'p', false)", changes: [set('p')] },
  { sql: "WITH d AS (DELETE FROM t WHERE b = set_config('search_path', 'p', false) RETURNING *) SELECT * FROM d", changes: [set('p')] },
  { sql: "COPY (SELECT set_config('search_path', 'p', false)) TO STDOUT", changes: [set('p')] },
  { sql: "CREATE TABLE x AS SELECT set_config('search_path', 'p', false)", changes: [set('p')] },
  // Partition bounds are evaluated when the table is created.
  { sql: "CREATE TABLE x PARTITION OF t FOR VALUES IN (length(set_config('search_path', 'p', false)))", changes: [set('p')] },
  { sql: "SELECT query_to_xml('SELECT set_config(''search_path'', ''p'', false)', true, false, '')", changes: [set('p')] },
  // Carried by PREPARE for the EXECUTE that runs it.
  { sql: "PREPARE q AS SELECT set_config('search_path', 'p', false)", changes: [set('p')] },
  // In order of appearance.
  { sql: "SELECT set_config('search_path', 'a', false), set_config('search_path', 'b', true)", changes: [set('a'), set('b', true)] },
  // Not constants
  { sql: "SELECT set_config('search_path', $1, false)", changes: [set(undefined)] },
  { sql: "SELECT set_config('search_path', 'a' || 'b', false)", changes: [set(undefined)] },
  { sql: "SELECT set_config('search_path', current_setting('search_path'), true)", changes: [set(undefined, true)] },
  { sql: "SELECT set_config('search_path', 'p', $1)", changes: [set('p')] },
  // Could be search_path (and could be role: escalation, elsewhere).
  { sql: "SELECT set_config(name, 'p', false) FROM t", changes: [set(undefined)] },
  { sql: "SELECT set_config($1, $2, $3)", changes: [set(undefined)] },
  { sql: "SELECT set_config('application_name', 'x', false)", changes: undefined },
  // EXPLAIN ANALYZE runs the statement; plain EXPLAIN does not.
  { sql: "EXPLAIN ANALYZE SELECT set_config('search_path', 'p', false)", changes: [set('p')] },
  { sql: "EXPLAIN (ANALYZE, VERBOSE) SELECT * FROM t WHERE set_config('search_path', 'p', true) = ''", changes: [set('p', true)] },
  { sql: "EXPLAIN SELECT set_config('search_path', 'p', false)", changes: undefined },
  { sql: "EXPLAIN (ANALYZE false) SELECT set_config('search_path', 'p', false)", changes: undefined },
  { sql: "EXPLAIN SELECT query_to_xml('SELECT set_config(''search_path'', ''p'', false)', true, false, '')", changes: undefined },
  // … but EXPLAIN EXECUTE evaluates its parameters.
  { sql: "EXPLAIN EXECUTE q(set_config('search_path', 'p', false))", changes: [set('p')] },
  // Other routes whose value cannot be known here.
  { sql: "UPDATE pg_settings SET setting = 'p' WHERE name = 'search_path'", changes: [set(undefined)] },
  { sql: "DO $$ BEGIN PERFORM set_config('search_path', 'p', false); END $$", changes: [set(undefined)] },
  // SET clauses that do not run now, and code stored to run later.
  { sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = p AS 'SELECT 1'", changes: undefined },
  { sql: "CREATE PROCEDURE pr() LANGUAGE sql SET search_path TO DEFAULT AS 'SELECT 1'", changes: undefined },
  { sql: 'ALTER FUNCTION f() SET search_path = p', changes: undefined },
  { sql: 'ALTER FUNCTION f() RESET search_path', changes: undefined },
  { sql: 'ALTER ROLE r SET search_path = p', changes: undefined },
  { sql: 'ALTER ROLE r IN DATABASE d SET search_path = p', changes: undefined },
  { sql: 'ALTER DATABASE d SET search_path = p', changes: undefined },
  { sql: 'ALTER DATABASE d RESET search_path', changes: undefined },
  { sql: 'ALTER SYSTEM SET search_path = p', changes: undefined },
  { sql: "CREATE FUNCTION f() RETURNS text BEGIN ATOMIC SELECT set_config('search_path', 'p', false); END", changes: undefined },
  { sql: "CREATE FUNCTION f(a text DEFAULT set_config('search_path', 'p', false)) RETURNS text LANGUAGE sql AS 'SELECT 1'", changes: undefined },
  { sql: "CREATE VIEW v AS SELECT set_config('search_path', 'p', false)", changes: undefined },
  { sql: "CREATE VIEW v AS SELECT query_to_xml('SELECT set_config(''search_path'', ''p'', false)', true, false, '')", changes: undefined },
  { sql: "CREATE RULE r AS ON INSERT TO t DO ALSO SELECT set_config('search_path', 'p', false)", changes: undefined },
  { sql: "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW WHEN (set_config('search_path', 'p', false) = '') EXECUTE FUNCTION f()", changes: undefined },
  { sql: "CREATE POLICY pol ON t USING (set_config('search_path', 'p', false) = '')", changes: undefined },
  { sql: "CREATE DOMAIN dm AS text DEFAULT set_config('search_path', 'p', false)", changes: undefined },
];

describe('classify: search_path changes', () => {
  for (const c of PATHS) {
    it(c.sql, () => {
      expect(one(c.sql).pathChanges).toEqual(c.changes);
    });
  }

  it('each statement of a query string carries its own changes', () => {
    const c = classify("SET search_path = a; SELECT * FROM t; SELECT set_config('search_path', 'b', true); RESET search_path");
    expect(c.ok && c.statements.map((s) => s.pathChanges)).toEqual([[set('a')], undefined, [set('b', true)], [RESET]]);
  });

  it('a set_config whose name is not a constant is still treated as a possible identity change', () => {
    const s = one("SELECT set_config(name, 'p', false) FROM t");
    expect({ access: s.access, escalation: s.escalation }).toEqual({ access: 'admin', escalation: true });
  });
});

// ---------------------------------------------------------------------------
// The function table: relations and schemas named in arguments, unscoped reach
// ---------------------------------------------------------------------------

interface FnCase {
  sql: string;
  access: Access;
  /** Tables and schemas the statement reaches (functions left out). */
  reached?: ObjectRef[];
  unscoped?: string;
  /** The exact reason, when the call raises the level. */
  reason?: string;
}

const byExpr = (fn: string, what = 'reads a table') => `${fn} ${what} named by an expression, ${SCOPES}`;
const byOid = (fn: string, what = 'reads a table') => `${fn} ${what} named by its oid, ${SCOPES}`;

/** Entries with relationArg: a constant argument becomes the table; anything else is unscoped. */
const RELATION_ARG: FnCase[] = [
  { sql: "SELECT table_to_xml('p.secret', true, false, '')", access: 'read', reached: [T('secret', 'p')] },
  { sql: "SELECT table_to_xml('secret'::regclass, true, false, '')", access: 'read', reached: [T('secret')] },
  { sql: `SELECT table_to_xml('P."My T"', true, false, '')`, access: 'read', reached: [T('My T', 'p')] },
  { sql: `SELECT table_to_xml(' "P" . "My T" ', true, false, '')`, access: 'read', reached: [T('My T', 'P')] },
  { sql: "SELECT table_to_xml('db.p.secret', true, false, '')", access: 'read', reached: [T('secret', 'p')] },
  { sql: "SELECT table_to_xml(tbl => 'p.secret', nulls => true, tableforest => false, targetns => '')", access: 'read', reached: [T('secret', 'p')] },
  { sql: "SELECT table_to_xml('p.secret', targetns => '', nulls => true, tableforest => false)", access: 'read', reached: [T('secret', 'p')] },
  { sql: "SELECT table_to_xml(nulls => true, tbl => $1, tableforest => false, targetns => '')", access: 'read', unscoped: byExpr('table_to_xml') },
  { sql: "SELECT table_to_xml($1, true, false, '')", access: 'read', unscoped: byExpr('table_to_xml') },
  { sql: "SELECT table_to_xml(c.oid::regclass, true, false, '') FROM pg_class c", access: 'read', reached: [T('pg_class')], unscoped: byExpr('table_to_xml') },
  { sql: "SELECT table_to_xml((SELECT 'p.secret'), true, false, '')", access: 'read', unscoped: byExpr('table_to_xml') },
  { sql: "SELECT table_to_xml('p' || '.secret', true, false, '')", access: 'read', unscoped: byExpr('table_to_xml') },
  { sql: "SELECT table_to_xml(16384, true, false, '')", access: 'read', unscoped: byOid('table_to_xml') },
  { sql: "SELECT table_to_xml('16384', true, false, '')", access: 'read', unscoped: byOid('table_to_xml') },
  { sql: "SELECT table_to_xml('16384'::oid::regclass, true, false, '')", access: 'read', unscoped: byOid('table_to_xml') },
  {
    sql: "SELECT table_to_xml('a.b.c.d', true, false, '')",
    access: 'read',
    unscoped: `table_to_xml reads a table named by text that is not a valid name, ${SCOPES}`,
  },
  { sql: "SELECT table_to_xmlschema('p.secret', true, false, '')", access: 'read', reached: [T('secret', 'p')] },
  { sql: "SELECT table_to_xmlschema(t.r, true, false, '') FROM t", access: 'read', reached: [T('t')], unscoped: byExpr('table_to_xmlschema') },
  { sql: "SELECT table_to_xml_and_xmlschema('p.secret', true, false, '')", access: 'read', reached: [T('secret', 'p')] },
  { sql: "SELECT table_to_xml_and_xmlschema($1, true, false, '')", access: 'read', unscoped: byExpr('table_to_xml_and_xmlschema') },
  { sql: "SELECT pg_sequence_last_value('p.seq')", access: 'read', reached: [T('seq', 'p')] },
  { sql: 'SELECT pg_sequence_last_value(c.oid) FROM pg_class c', access: 'read', reached: [T('pg_class')], unscoped: byExpr('pg_sequence_last_value', 'reads a sequence') },
  { sql: "SELECT pg_get_sequence_data('p.seq')", access: 'read', reached: [T('seq', 'p')] },
  { sql: 'SELECT pg_get_sequence_data(16390)', access: 'read', unscoped: byOid('pg_get_sequence_data', 'reads a sequence') },
  { sql: "SELECT nextval('p.seq')", access: 'write', reached: [T('seq', 'p')], reason: 'calls nextval, which changes a sequence' },
  { sql: 'SELECT nextval($1)', access: 'write', unscoped: byExpr('nextval', 'changes a sequence'), reason: 'calls nextval, which changes a sequence' },
  { sql: "SELECT setval('seq', 42)", access: 'write', reached: [T('seq')], reason: 'calls setval, which changes a sequence' },
  { sql: 'SELECT setval(16390, 42)', access: 'write', unscoped: byOid('setval', 'changes a sequence'), reason: 'calls setval, which changes a sequence' },
];

const SCHEMA_ARG: FnCase[] = [
  { sql: "SELECT schema_to_xml('p', true, false, '')", access: 'read', reached: [S('p')] },
  // Type name: the text is the schema's name as is, neither folded nor unquoted.
  { sql: "SELECT schema_to_xml('My S', true, false, '')", access: 'read', reached: [S('My S')] },
  { sql: `SELECT schema_to_xml('"P"', true, false, '')`, access: 'read', reached: [S('"P"')] },
  { sql: "SELECT schema_to_xml(schema => 'p', nulls => true, tableforest => false, targetns => '')", access: 'read', reached: [S('p')] },
  { sql: "SELECT schema_to_xml(nspname, true, false, '') FROM pg_namespace", access: 'read', reached: [T('pg_namespace')], unscoped: byExpr('schema_to_xml', 'reads a schema') },
  { sql: "SELECT schema_to_xmlschema('p', true, false, '')", access: 'read', reached: [S('p')] },
  { sql: "SELECT schema_to_xmlschema($1, true, false, '')", access: 'read', unscoped: byExpr('schema_to_xmlschema', 'reads a schema') },
  { sql: "SELECT schema_to_xml_and_xmlschema('p', true, false, '')", access: 'read', reached: [S('p')] },
  { sql: "SELECT schema_to_xml_and_xmlschema(current_schema(), true, false, '')", access: 'read', unscoped: byExpr('schema_to_xml_and_xmlschema', 'reads a schema') },
];

const LO_READ = 'reads large objects, which belong to no schema';
const LO_WRITE = 'changes large objects, which belong to no schema';
const FILE_DATA = `reads files on the database server, where every schema's data is stored, ${SCOPES}`;

const UNSCOPED: FnCase[] = [
  { sql: "SELECT database_to_xml(true, false, '')", access: 'read', unscoped: `database_to_xml reads every schema of the database, ${SCOPES}` },
  { sql: "SELECT database_to_xmlschema(true, false, '')", access: 'read', unscoped: `database_to_xmlschema reads every schema of the database, ${SCOPES}` },
  {
    sql: "SELECT database_to_xml_and_xmlschema(true, false, '')",
    access: 'read',
    unscoped: `database_to_xml_and_xmlschema reads every schema of the database, ${SCOPES}`,
  },
  { sql: 'SELECT lo_get(42)', access: 'read', unscoped: `lo_get ${LO_READ}` },
  { sql: 'SELECT lo_get(42, 0, 10)', access: 'read', unscoped: `lo_get ${LO_READ}` },
  { sql: 'SELECT loread(0, 100)', access: 'read', unscoped: `loread ${LO_READ}` },
  { sql: 'SELECT lo_open(42, 262144)', access: 'read', unscoped: `lo_open ${LO_READ}` }, // INV_READ
  { sql: 'SELECT lo_open(42, 131072)', access: 'write', unscoped: `lo_open ${LO_READ}`, reason: 'calls lo_open, which opens a large object for writing' },
  { sql: "SELECT lo_put(42, 0, '\\x00')", access: 'write', unscoped: `lo_put ${LO_WRITE}`, reason: 'calls lo_put, which writes a large object' },
  { sql: "SELECT lowrite(0, '\\x00')", access: 'write', unscoped: `lowrite ${LO_WRITE}`, reason: 'calls lowrite, which writes a large object' },
  { sql: 'SELECT lo_truncate(0, 10)', access: 'write', unscoped: `lo_truncate ${LO_WRITE}`, reason: 'calls lo_truncate, which truncates a large object' },
  { sql: 'SELECT lo_truncate64(0, 10)', access: 'write', unscoped: `lo_truncate64 ${LO_WRITE}`, reason: 'calls lo_truncate64, which truncates a large object' },
  { sql: 'SELECT lo_unlink(42)', access: 'write', unscoped: `lo_unlink ${LO_WRITE}`, reason: 'calls lo_unlink, which deletes a large object' },
  { sql: "SELECT lo_export(42, '/tmp/x')", access: 'admin', unscoped: `lo_export ${LO_READ}`, reason: 'calls lo_export, which writes a file on the database server' },
  { sql: "SELECT lo_import('/etc/passwd')", access: 'admin', unscoped: `lo_import ${FILE_DATA}`, reason: 'calls lo_import, which reads a file on the database server' },
  // Creating a large object reaches none that exists.
  { sql: 'SELECT lo_create(0)', access: 'write', reason: 'calls lo_create, which creates a large object' },
  { sql: "SELECT pg_read_file('base/1/1259')", access: 'admin', unscoped: `pg_read_file ${FILE_DATA}`, reason: 'calls pg_read_file, which reads or lists files on the database server' },
  { sql: "SELECT pg_read_file_old('x', 0, 1)", access: 'admin', unscoped: `pg_read_file_old ${FILE_DATA}`, reason: 'calls pg_read_file_old, which reads or lists files on the database server' },
  {
    sql: "SELECT pg_read_binary_file('base/1/1259')",
    access: 'admin',
    unscoped: `pg_read_binary_file ${FILE_DATA}`,
    reason: 'calls pg_read_binary_file, which reads or lists files on the database server',
  },
  {
    sql: 'SELECT * FROM pg_stat_statements(true)',
    access: 'read',
    unscoped: `pg_stat_statements reads other sessions' statements, which name any schema's objects and carry their constants, ${SCOPES}`,
  },
  {
    sql: 'SELECT pg_stat_get_numscans(16384)',
    access: 'read',
    unscoped: `pg_stat_get_numscans reads statistics of relations and sessions named by oid or number, ${SCOPES}`,
  },
  {
    sql: 'SELECT pg_stat_get_live_tuples(c.oid) FROM pg_class c',
    access: 'read',
    reached: [T('pg_class')],
    unscoped: `pg_stat_get_live_tuples reads statistics of relations and sessions named by oid or number, ${SCOPES}`,
  },
  {
    sql: 'SELECT * FROM pg_stat_get_activity(NULL)',
    access: 'read',
    unscoped: `pg_stat_get_activity reads statistics of relations and sessions named by oid or number, ${SCOPES}`,
  },
  {
    sql: "SELECT * FROM dblink('dbname=shop', 'SELECT * FROM p.secret') AS x(a int)",
    access: 'admin',
    unscoped: `dblink runs SQL on other servers and databases, ${SCOPES}`,
    reason: 'calls dblink, which opens connections to, and runs SQL on, other servers',
  },
  {
    sql: "SELECT * FROM xpath_table('id', 'doc', 'p.docs', '/a', 'true') AS x(id int, a text)",
    access: 'admin',
    unscoped: `xpath_table reads a table named in its text arguments, ${SCOPES}`,
    reason: 'calls xpath_table, which builds and runs SQL from its text arguments',
  },
  // The cursor's query was checked when it was declared.
  { sql: "SELECT cursor_to_xml('c', 10, true, false, '')", access: 'read' },
  { sql: "SELECT cursor_to_xmlschema('c', true, false, '')", access: 'read' },
];

/** Functions that run SQL text: constant text is read for its objects (with writes), anything else is unscoped. */
const SQL_TEXT: FnCase[] = [
  { sql: "SELECT query_to_xml('SELECT * FROM p.secret', true, false, '')", access: 'read', reached: [T('secret', 'p')] },
  { sql: "SELECT query_to_xml(query => 'SELECT * FROM p.secret', nulls => true, tableforest => false, targetns => '')", access: 'read', reached: [T('secret', 'p')] },
  {
    sql: "SELECT query_to_xml('WITH d AS (DELETE FROM p.t RETURNING 1) SELECT * FROM d', true, false, '')",
    access: 'write',
    reached: [T('t', 'p', { writes: ['delete'] })],
  },
  {
    sql: "SELECT query_to_xml($1, true, false, '')",
    access: 'admin',
    unscoped: `query_to_xml runs SQL text given by an expression, ${SCOPES}`,
    reason: 'calls query_to_xml, which runs SQL text that the gateway cannot see',
  },
  { sql: "SELECT query_to_xmlschema('SELECT a FROM p.secret', true, false, '')", access: 'read', reached: [T('secret', 'p')] },
  { sql: "SELECT query_to_xmlschema(q, true, false, '') FROM t", access: 'admin', reached: [T('t')], unscoped: `query_to_xmlschema runs SQL text given by an expression, ${SCOPES}` },
  { sql: "SELECT query_to_xml_and_xmlschema('TABLE p.secret', true, false, '')", access: 'read', reached: [T('secret', 'p')] },
  { sql: "SELECT query_to_xml_and_xmlschema($1, true, false, '')", access: 'admin', unscoped: `query_to_xml_and_xmlschema runs SQL text given by an expression, ${SCOPES}` },
  // Nested: the inner text's objects count too.
  { sql: "SELECT query_to_xml('SELECT table_to_xml(''p.secret'', true, false, '''')', true, false, '')", access: 'read', reached: [T('secret', 'p')] },
  { sql: "SELECT * FROM ts_stat('SELECT v FROM p.docs')", access: 'read', reached: [T('docs', 'p')] },
  { sql: "SELECT * FROM ts_stat('SELECT v FROM p.docs', 'ab')", access: 'read', reached: [T('docs', 'p')] },
  { sql: 'SELECT * FROM ts_stat($1)', access: 'admin', unscoped: `ts_stat runs SQL text given by an expression, ${SCOPES}` },
  { sql: "SELECT ts_rewrite('a & b'::tsquery, 'SELECT t, s FROM p.aliases')", access: 'read', reached: [T('aliases', 'p')] },
  { sql: "SELECT ts_rewrite('a & b'::tsquery, $1)", access: 'admin', unscoped: `ts_rewrite runs SQL text given by an expression, ${SCOPES}` },
  // The three-argument form runs no SQL.
  { sql: "SELECT ts_rewrite('a & b'::tsquery, 'a'::tsquery, 'c'::tsquery)", access: 'read' },
  { sql: "SELECT * FROM crosstab('SELECT r, c, v FROM p.t') AS x(r text, a int)", access: 'read', reached: [T('t', 'p')] },
  {
    sql: "SELECT * FROM crosstab('SELECT r, c, v FROM p.t', 'SELECT c FROM p.cats') AS x(r text, a int)",
    access: 'read',
    reached: [T('cats', 'p'), T('t', 'p')],
  },
  {
    sql: "SELECT * FROM crosstab('SELECT r, c, v FROM p.t', $1) AS x(r text, a int)",
    access: 'admin',
    reached: [T('t', 'p')],
    unscoped: `crosstab runs SQL text given by an expression, ${SCOPES}`,
  },
  { sql: "SELECT * FROM crosstab2('SELECT r, c, v FROM p.t')", access: 'read', reached: [T('t', 'p')] },
  { sql: "SELECT * FROM crosstab3('SELECT r, c, v FROM p.t')", access: 'read', reached: [T('t', 'p')] },
  { sql: 'SELECT * FROM crosstab4($1)', access: 'admin', unscoped: `crosstab4 runs SQL text given by an expression, ${SCOPES}` },
];

/** Extension functions that read or change relations by name or oid, or need superuser: admin, naming the extension. */
const EXTENSIONS: Array<[name: string, call: string, extension: string, reason: string, unscoped?: string]> = [];
{
  const pi = (name: string, call: string, what: string) =>
    EXTENSIONS.push([
      name,
      call,
      'pageinspect',
      `decodes ${what} of tables and indexes, bypassing privileges`,
      'reads raw pages of relations named by text or oid',
    ]);
  pi('get_raw_page', "get_raw_page('p.secret', 0)", 'raw pages');
  pi('page_header', "page_header('\\x00'::bytea)", 'page headers');
  pi('heap_page_items', "heap_page_items('\\x00'::bytea)", 'heap pages');
  pi('heap_page_item_attrs', "heap_page_item_attrs('\\x00'::bytea, 'p.secret'::regclass)", 'heap pages');
  pi('tuple_data_split', "tuple_data_split('p.secret'::regclass, t_data, t_infomask, t_infomask2, t_bits)", 'heap tuples');
  pi('bt_metap', "bt_metap('p.secret_pkey')", 'B-tree index pages');
  pi('bt_page_stats', "bt_page_stats('p.secret_pkey', 1)", 'B-tree index pages');
  pi('bt_page_items', "bt_page_items('p.secret_pkey', 1)", 'B-tree index pages');
  pi('bt_multi_page_stats', "bt_multi_page_stats('p.secret_pkey', 1, 2)", 'B-tree index pages');
  pi('brin_page_type', "brin_page_type('\\x00'::bytea)", 'BRIN index pages');
  pi('brin_metapage_info', "brin_metapage_info('\\x00'::bytea)", 'BRIN index pages');
  pi('brin_revmap_data', "brin_revmap_data('\\x00'::bytea)", 'BRIN index pages');
  pi('brin_page_items', "brin_page_items('\\x00'::bytea, 'p.i')", 'BRIN index pages');
  pi('gin_metapage_info', "gin_metapage_info('\\x00'::bytea)", 'GIN index pages');
  pi('gin_page_opaque_info', "gin_page_opaque_info('\\x00'::bytea)", 'GIN index pages');
  pi('gin_leafpage_items', "gin_leafpage_items('\\x00'::bytea)", 'GIN index pages');
  pi('gist_page_opaque_info', "gist_page_opaque_info('\\x00'::bytea)", 'GiST index pages');
  pi('gist_page_items', "gist_page_items('\\x00'::bytea, 'p.i')", 'GiST index pages');
  pi('gist_page_items_bytea', "gist_page_items_bytea('\\x00'::bytea)", 'GiST index pages');
  pi('hash_page_type', "hash_page_type('\\x00'::bytea)", 'hash index pages');
  pi('hash_page_stats', "hash_page_stats('\\x00'::bytea)", 'hash index pages');
  pi('hash_page_items', "hash_page_items('\\x00'::bytea)", 'hash index pages');
  pi('hash_bitmap_info', "hash_bitmap_info('p.i', 2)", 'hash index pages');
  pi('hash_metapage_info', "hash_metapage_info('\\x00'::bytea)", 'hash index pages');
  pi('fsm_page_contents', "fsm_page_contents('\\x00'::bytea)", 'free space map pages');
  pi('page_checksum', "page_checksum('\\x00'::bytea, 0)", 'page checksums');
  const surgery = 'changes table rows in place, bypassing privileges, triggers and checks';
  EXTENSIONS.push(['heap_force_kill', "heap_force_kill('p.secret'::regclass, ARRAY['(0, 1)']::tid[])", 'pg_surgery', surgery, 'changes rows of a table named by oid']);
  EXTENSIONS.push(['heap_force_freeze', "heap_force_freeze('p.secret'::regclass, ARRAY['(0, 1)']::tid[])", 'pg_surgery', surgery, 'changes rows of a table named by oid']);
  EXTENSIONS.push([
    'connectby',
    "connectby('p.secret', 'id', 'parent', '1', 0) AS t(id text, parent text, level int)",
    'tablefunc',
    'reads a table named in its text arguments',
    'reads a table named in its text arguments',
  ]);
  for (const f of ['pgstattuple', 'pgstattuple_approx', 'pgstatindex', 'pgstatginindex', 'pgstathashindex', 'pg_relpages']) {
    EXTENSIONS.push([f, `${f}('p.secret')`, 'pgstattuple', 'reads every page of a relation named by text or oid', 'reads statistics of relations named by text or oid']);
  }
  for (const f of ['pg_visibility_map', 'pg_visibility', 'pg_visibility_map_summary', 'pg_check_frozen', 'pg_check_visible']) {
    EXTENSIONS.push([f, `${f}('p.secret')`, 'pg_visibility', "reads a relation's visibility map", 'reads visibility data of relations named by oid']);
  }
  EXTENSIONS.push(['pg_prewarm', "pg_prewarm('p.secret')", 'pg_prewarm', 'loads relations into the buffer cache, server-wide']);
  EXTENSIONS.push(['autoprewarm_start_worker', 'autoprewarm_start_worker()', 'pg_prewarm', 'starts or runs the autoprewarm worker, server-wide']);
  EXTENSIONS.push(['autoprewarm_dump_now', 'autoprewarm_dump_now()', 'pg_prewarm', 'starts or runs the autoprewarm worker, server-wide']);
  for (const f of ['bt_index_check', 'bt_index_parent_check', 'verify_heapam', 'gin_index_check']) {
    EXTENSIONS.push([f, `${f}('p.secret_pkey')`, 'amcheck', 'reads every page of a relation to check it, which needs superuser or a grant of it']);
  }
  EXTENSIONS.push(['pgrowlocks', "pgrowlocks('p.secret')", 'pgrowlocks', "reads a table's row locks and who holds them", 'reads row locks of a table named by text']);
  EXTENSIONS.push(['pg_freespace', "pg_freespace('p.secret')", 'pg_freespace', "reads a relation's free space map", 'reads free space of relations named by oid']);
  for (const f of ['pg_buffercache_pages', 'pg_buffercache_summary', 'pg_buffercache_usage_counts', 'pg_buffercache_evict']) {
    EXTENSIONS.push([f, `${f}(${f === 'pg_buffercache_evict' ? '1' : ''})`, 'pg_buffercache', 'reads or evicts the shared buffer cache of every database', 'reads buffer counts of every relation']);
  }
  for (const f of [
    'pg_get_wal_record_info',
    'pg_get_wal_records_info',
    'pg_get_wal_records_info_till_end_of_wal',
    'pg_get_wal_stats',
    'pg_get_wal_stats_till_end_of_wal',
    'pg_get_wal_block_info',
  ]) {
    EXTENSIONS.push([f, `${f}('0/0')`, 'pg_walinspect', 'reads the write-ahead log', "reads the write-ahead log, which holds every table's changes"]);
  }
}

function checkFn(c: FnCase): void {
  const s = one(c.sql);
  expect({ access: s.access, reached: reached(s), unscoped: s.unscoped }).toEqual({
    access: c.access,
    reached: sorted(c.reached ?? []),
    unscoped: c.unscoped,
  });
  if (c.reason !== undefined) expect(s.reason).toBe(c.reason);
}

describe('classify: functions that reach relations and schemas named in their arguments', () => {
  describe('relationArg', () => {
    for (const c of RELATION_ARG) it(c.sql, () => checkFn(c));
  });
  describe('schemaArg', () => {
    for (const c of SCHEMA_ARG) it(c.sql, () => checkFn(c));
  });
  describe('unscoped', () => {
    for (const c of UNSCOPED) it(c.sql, () => checkFn(c));
  });
  describe('SQL text', () => {
    for (const c of SQL_TEXT) it(c.sql, () => checkFn(c));
  });
  describe('extensions', () => {
    for (const [name, call, extension, reason, unscoped] of EXTENSIONS) {
      it(`${name} (${extension})`, () => {
        const s = one(`SELECT * FROM ${call}`);
        expect({ access: s.access, reason: s.reason, unscoped: s.unscoped }).toEqual({
          access: 'admin',
          reason: `calls ${name}, which ${reason} (${extension})`,
          unscoped: unscoped === undefined ? undefined : `${name} ${unscoped} (${extension}), ${SCOPES}`,
        });
      });
    }
    it('core pg_get_wal_* functions are not pg_walinspect', () => {
      expect(lookupFunction('pg_get_wal_replay_pause_state')).toBeUndefined();
      expect(lookupFunction('pg_get_wal_resource_managers')).toBeUndefined();
    });
  });

  it('every table entry with reach has a case here', () => {
    const statements = [...RELATION_ARG, ...SCHEMA_ARG, ...UNSCOPED, ...SQL_TEXT].map((c) => c.sql.toLowerCase());
    const extensions = new Set(EXTENSIONS.map(([name]) => name));
    const missing: string[] = [];
    for (const [name, rule] of Object.entries(SIDE_EFFECT_FUNCTIONS)) {
      const reaches = rule.relationArg !== undefined || rule.schemaArg !== undefined || rule.unscoped !== undefined || rule.special === 'sql_text';
      const ext = / \([a-z_]+\)$/.test(rule.reason);
      if ((reaches || ext) && !extensions.has(name) && !statements.some((sql) => sql.includes(`${name}(`))) missing.push(name);
    }
    for (const [prefix, rule] of SIDE_EFFECT_FUNCTION_PREFIXES) {
      if (rule.unscoped !== undefined && !statements.some((sql) => sql.includes(prefix)) && ![...extensions].some((n) => n.startsWith(prefix))) missing.push(`${prefix}*`);
    }
    expect(missing).toEqual([]);
  });

  it('relationArg and schemaArg point at existing arguments', () => {
    for (const rule of Object.values(SIDE_EFFECT_FUNCTIONS)) {
      for (const i of [rule.relationArg, rule.schemaArg]) {
        if (i === undefined) continue;
        expect(i).toBeGreaterThanOrEqual(0);
        if (rule.argNames) expect(rule.argNames[i]).toBeDefined();
      }
    }
  });

  it('an oid read from a number marks the classification as reading numbers', () => {
    const c = classify("SELECT table_to_xml(16384, true, false, '')");
    expect(c.ok && c.readsNumbers).toBe(true);
  });

  it('reasons from several calls are all given', () => {
    expect(one("SELECT lo_get(1), database_to_xml(true, false, '')").unscoped).toBe(
      `lo_get ${LO_READ}; database_to_xml reads every schema of the database, ${SCOPES}`,
    );
  });

  it('plain EXPLAIN keeps the objects and the unscoped reach', () => {
    const s = one("EXPLAIN SELECT table_to_xml($1, true, false, ''), schema_to_xml('p', true, false, '')");
    expect({ reached: reached(s), unscoped: s.unscoped }).toEqual({ reached: [S('p')], unscoped: byExpr('table_to_xml') });
  });

  it('DO runs code whose reach cannot be checked', () => {
    expect(one('DO $$ BEGIN PERFORM 1; END $$').unscoped).toBe(`DO runs code whose reach cannot be checked against the rule's scopes`);
  });
});

// ---------------------------------------------------------------------------
// catalogs.ts
// ---------------------------------------------------------------------------

const DATA: Record<string, string> = {
  pg_statistic: "planner statistics: every column's most common values and histogram bounds",
  pg_statistic_ext_data: "extended statistics' values: most common combinations of column values",
  pg_stats: "every column's most common values and histogram bounds",
  pg_stats_ext: "extended statistics' most common combinations of column values",
  pg_stats_ext_exprs: "most common values of extended statistics' expressions",
  pg_sequences: "every sequence's last value",
  pg_largeobject: 'the contents of large objects',
  pg_authid: "roles' password hashes",
  pg_shadow: "roles' password hashes",
  pg_user_mapping: "user mappings' options, passwords included",
  pg_user_mappings: "user mappings' options, passwords included",
  pg_subscription: "subscriptions' connection strings, which may hold passwords",
  pg_file_settings: "the server's configuration files, whose settings may hold passwords (primary_conninfo)",
  pg_prepared_xacts: "other sessions' prepared transactions",
  pg_replication_slots: "replication slots, through which every table's changes can be decoded",
  pg_stat_statements: "every session's statements, with the objects they name and their constants",
  pg_stat_statements_info: "statistics of every session's statements",
};
const STAT = 'statistics and activity of every session: query texts, row, scan and tuple counts of every relation';
const STATIO = 'block reads and hits of every relation';

describe('catalogs: system relations that carry data', () => {
  for (const [name, reason] of Object.entries(DATA)) {
    it(`pg_catalog.${name}`, () => expect(dataCatalog(name)).toBe(reason));
  }
  for (const name of ['pg_stat_activity', 'pg_stat_user_tables', 'pg_stat_all_indexes', 'pg_stat_replication', 'pg_stat_wal_receiver', 'pg_stat_xact_user_functions']) {
    it(`pg_catalog.${name} (pg_stat_*)`, () => expect(dataCatalog(name)).toBe(STAT));
  }
  for (const name of ['pg_statio_user_tables', 'pg_statio_all_sequences']) {
    it(`pg_catalog.${name} (pg_statio_*)`, () => expect(dataCatalog(name)).toBe(STATIO));
  }
  it('information_schema.user_mapping_options and _pg_user_mappings', () => {
    expect(dataCatalog('user_mapping_options', 'information_schema')).toBe("user mappings' options, passwords included");
    expect(dataCatalog('_pg_user_mappings', 'information_schema')).toBe("user mappings' options, passwords included");
  });

  it('the lists here and in catalogs.ts are the same', () => {
    expect({ ...DATA_CATALOGS }).toEqual(DATA);
    expect(DATA_CATALOG_PREFIXES.map(([p]) => p)).toEqual(['pg_stat_', 'pg_statio_']);
    expect(Object.keys(DATA_INFORMATION_SCHEMA).sort()).toEqual(['_pg_user_mappings', 'user_mapping_options']);
  });

  // What psql's \d, JDBC metadata and ORMs read must stay open.
  const STRUCTURE = [
    'pg_class',
    'pg_namespace',
    'pg_attribute',
    'pg_attrdef',
    'pg_index',
    'pg_constraint',
    'pg_proc',
    'pg_type',
    'pg_description',
    'pg_depend',
    'pg_inherits',
    'pg_trigger',
    'pg_policy',
    'pg_roles',
    'pg_user',
    'pg_settings',
    'pg_tables',
    'pg_views',
    'pg_indexes',
    'pg_sequence',
    'pg_statistic_ext',
    'pg_largeobject_metadata',
    'pg_database',
    'pg_extension',
  ];
  for (const name of STRUCTURE) {
    it(`pg_catalog.${name} describes structure`, () => expect(dataCatalog(name)).toBeUndefined());
  }
  for (const name of ['tables', 'columns', 'routines', 'views', 'sequences', 'user_mappings', 'foreign_server_options', 'table_privileges']) {
    it(`information_schema.${name} describes structure`, () => expect(dataCatalog(name, 'information_schema')).toBeUndefined());
  }

  it('names are compared as stored, and only in the system schemas', () => {
    expect(dataCatalog('PG_STATS')).toBeUndefined();
    expect(dataCatalog('pg_stats', 'public')).toBeUndefined();
    expect(dataCatalog('pg_stats', 'pg_catalog')).toBe(DATA.pg_stats);
    expect(dataCatalog('user_mapping_options')).toBeUndefined();
  });

  it('isSystemSchema: pg_catalog and information_schema, not pg_toast', () => {
    expect(['pg_catalog', 'information_schema', 'pg_toast', 'pg_temp_3', 'public', 'PG_CATALOG', 'p'].map(isSystemSchema)).toEqual([
      true,
      true,
      false,
      false,
      false,
      false,
      false,
    ]);
  });
});

describe('operators a statement uses', () => {
  const ops = (sql: string) => one(sql).operators;

  it('records each distinct operator name as written, qualified ones with their schema', () => {
    expect(ops('select a <<< b, a <<< c, a operator(public.<<<) b, -a from public.t')).toEqual(['<<<', 'public.<<<', '-']);
    expect(ops('select a operator(mydb.s.@@) b from t')).toEqual(['s.@@']);
    expect(ops('select a operator(pg_catalog.+) 1 from t')).toEqual(['pg_catalog.+']);
  });

  it('is absent when there are none', () => {
    const s = one('select a, f(b) from t');
    expect(s.operators).toBeUndefined();
    expect('operators' in s).toBe(false);
  });

  it('covers every expression that names or implies an operator', () => {
    expect(ops('select 1 from t where a = any(array[1]) and b <<< all(array[2])')).toEqual(['=', '<<<']);
    expect(ops('select 1 from t where a is distinct from b and nullif(a, b) is null')).toEqual(['=']);
    expect(ops("select 1 from t where a not in (1, 2) and b like 'x' and c not ilike 'y' and d similar to 'z'")).toEqual(['<>', '~~', '!~~*', '~']);
    expect(ops('select 1 from t where a between 1 and 2')).toEqual(['>=', '<=']);
    expect(ops('select 1 from t where a not between symmetric 1 and 2')).toEqual(['<', '>']);
    expect(ops('select 1 from t where a in (select 1)')).toEqual(['=']);
    expect(ops('select 1 from t where a <<< any (select 1) and (a, b) >>> (select 1, 2)')).toEqual(['<<<', '>>>']);
    expect(ops('select a from t order by a using <<<, b using operator(s.<<<)')).toEqual(['<<<', 's.<<<']);
    expect(ops('select array_agg(a order by a using ~<~) from t')).toEqual(['~<~']);
    expect(ops('select case a when 1 then 2 end from t')).toEqual(['=']);
    expect(ops('select 1 from t join u using (id)')).toEqual(['=']);
    expect(ops('select 1 from t natural join u')).toEqual(['=']);
  });

  it('in every part of a statement: DML, CTEs, SQL text run by functions', () => {
    expect(ops('insert into t select a <<< 1 from u')).toEqual(['<<<']);
    expect(ops('update t set a = b ### 1 where c @@@ 2 returning a !!! 3')).toEqual(['###', '@@@', '!!!']);
    expect(ops('with x as (select a %%% 1 from u) delete from t using x')).toEqual(['%%%']);
    expect(ops("select query_to_xml('select a <<< 1 from p.t', true, false, '')")).toEqual(['<<<']);
  });
});
