import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import {
  ClassificationCache,
  DecisionCache,
  HANDLED_NODE_TYPES,
  classify,
  classifySetting,
  lookupFunction,
  overallAccess,
  parseStatements,
  parserStats,
  statementShape,
  type Access,
  type Classification,
  type ObjectRef,
  type StatementInfo,
} from '../src/policy/index.js';
import type { WriteKind } from '../src/policy/types.js';

/** Classifies text expected to hold exactly one statement. */
function one(sql: string): StatementInfo {
  const c = classify(sql);
  if (!c.ok) throw new Error(`did not parse: ${sql}: ${c.error}`);
  expect(c.statements, sql).toHaveLength(1);
  return c.statements[0]!;
}

const T = (name: string, schema?: string): ObjectRef => (schema ? { type: 'table', schema, name } : { type: 'table', name });
/** A table the statement writes. */
const TW = (writes: WriteKind[], name: string, schema?: string): ObjectRef => ({ ...T(name, schema), writes });
const F = (name: string, schema?: string): ObjectRef => (schema ? { type: 'function', schema, name } : { type: 'function', name });
/** A function DDL names rather than calls. */
const NF = (name: string, schema?: string): ObjectRef => ({ ...F(name, schema), named: true });
const R = (name: string): ObjectRef => ({ type: 'role', name });
const S = (name: string): ObjectRef => ({ type: 'schema', name });
const D = (name: string): ObjectRef => ({ type: 'database', name });

interface Case {
  sql: string;
  access: Access;
  kind: string;
  /** Objects that must be among the statement's objects. */
  objects?: ObjectRef[];
  /** Objects that must NOT be among them. */
  notObjects?: ObjectRef[];
  escalation?: boolean;
  /** A substring of the reason. */
  reason?: string;
}

// ---------------------------------------------------------------------------
// The corpus: one statement per case.
// ---------------------------------------------------------------------------

const READ: Case[] = [
  { sql: 'SELECT 1', access: 'read', kind: 'SELECT' },
  { sql: 'SELECT a, b FROM s.t WHERE a = $1', access: 'read', kind: 'SELECT', objects: [T('t', 's')] },
  { sql: 'sElEcT * FrOm MyTable', access: 'read', kind: 'SELECT', objects: [T('mytable')] },
  { sql: 'SELECT * FROM "MyTable"', access: 'read', kind: 'SELECT', objects: [T('MyTable')] },
  { sql: 'SELECT * FROM "DROP TABLE t"', access: 'read', kind: 'SELECT', objects: [T('DROP TABLE t')] },
  { sql: 'VALUES (1), (2)', access: 'read', kind: 'VALUES' },
  { sql: 'TABLE t', access: 'read', kind: 'SELECT', objects: [T('t')] },
  { sql: "SELECT 'DROP TABLE t; DELETE FROM u'", access: 'read', kind: 'SELECT', notObjects: [T('t'), T('u')] },
  { sql: 'SELECT currval(\'s\'), lastval()', access: 'read', kind: 'SELECT', objects: [F('currval'), F('lastval')] },
  { sql: 'SELECT count(*), lower(name) FROM users GROUP BY 2', access: 'read', kind: 'SELECT', objects: [T('users'), F('count'), F('lower')] },
  {
    sql: 'WITH x AS (SELECT * FROM t) SELECT * FROM x JOIN u ON true',
    access: 'read',
    kind: 'SELECT',
    objects: [T('t'), T('u')],
    notObjects: [T('x')],
  },
  // A non-recursive CTE body cannot see its own name: this t is the table.
  { sql: 'WITH t AS (SELECT * FROM t) SELECT * FROM t', access: 'read', kind: 'SELECT', objects: [T('t')] },
  { sql: 'SELECT * FROM t WHERE id IN (SELECT id FROM s2.u)', access: 'read', kind: 'SELECT', objects: [T('t'), T('u', 's2')] },
  { sql: 'SHOW search_path', access: 'read', kind: 'SHOW' },
  { sql: 'SHOW ALL', access: 'read', kind: 'SHOW' },
  { sql: 'EXPLAIN SELECT * FROM t', access: 'read', kind: 'EXPLAIN', objects: [T('t')] },
  { sql: 'EXPLAIN DELETE FROM t', access: 'read', kind: 'EXPLAIN', objects: [T('t')] },
  { sql: 'EXPLAIN (ANALYZE false, VERBOSE) DELETE FROM t', access: 'read', kind: 'EXPLAIN' },
  { sql: "EXPLAIN SELECT nextval('s')", access: 'read', kind: 'EXPLAIN' },
  { sql: 'EXPLAIN ANALYZE SELECT * FROM t', access: 'read', kind: 'EXPLAIN ANALYZE', objects: [T('t')] },
  { sql: 'BEGIN', access: 'read', kind: 'BEGIN' },
  { sql: 'BEGIN READ ONLY', access: 'read', kind: 'BEGIN' },
  { sql: 'START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE', access: 'read', kind: 'START TRANSACTION' },
  { sql: 'COMMIT', access: 'read', kind: 'COMMIT' },
  { sql: 'ROLLBACK', access: 'read', kind: 'ROLLBACK' },
  { sql: 'SAVEPOINT a', access: 'read', kind: 'SAVEPOINT' },
  { sql: 'RELEASE SAVEPOINT a', access: 'read', kind: 'RELEASE' },
  { sql: 'ROLLBACK TO SAVEPOINT a', access: 'read', kind: 'ROLLBACK TO SAVEPOINT' },
  { sql: 'SET TRANSACTION READ ONLY', access: 'read', kind: 'SET TRANSACTION' },
  { sql: 'SET TRANSACTION ISOLATION LEVEL REPEATABLE READ', access: 'read', kind: 'SET TRANSACTION' },
  { sql: "SET search_path = app, public", access: 'read', kind: 'SET' },
  { sql: 'SET statement_timeout TO 5000', access: 'read', kind: 'SET' },
  { sql: "SET application_name = 'ci'", access: 'read', kind: 'SET' },
  { sql: "SET DateStyle = 'ISO, MDY'", access: 'read', kind: 'SET' },
  { sql: "SET TIME ZONE 'UTC'", access: 'read', kind: 'SET' },
  { sql: "SET client_encoding = 'UTF8'", access: 'read', kind: 'SET' },
  { sql: "SET NAMES 'utf-8'", access: 'read', kind: 'SET' },
  { sql: 'SET extra_float_digits = 3', access: 'read', kind: 'SET' },
  { sql: 'SET LOCAL enable_seqscan = off', access: 'read', kind: 'SET' },
  { sql: 'SET default_transaction_read_only = on', access: 'read', kind: 'SET' },
  { sql: 'SET transaction_read_only = true', access: 'read', kind: 'SET' },
  { sql: 'SET standard_conforming_strings = on', access: 'read', kind: 'SET' },
  { sql: 'RESET search_path', access: 'read', kind: 'RESET' },
  { sql: 'DISCARD PLANS', access: 'read', kind: 'DISCARD PLANS' },
  { sql: 'DISCARD TEMP', access: 'read', kind: 'DISCARD TEMP' },
  { sql: 'DECLARE c CURSOR FOR SELECT 1', access: 'read', kind: 'DECLARE CURSOR' },
  { sql: 'FETCH 10 FROM c', access: 'read', kind: 'FETCH' },
  { sql: 'MOVE NEXT IN c', access: 'read', kind: 'MOVE' },
  { sql: 'CLOSE c', access: 'read', kind: 'CLOSE' },
  { sql: 'PREPARE q AS SELECT 1', access: 'read', kind: 'PREPARE' },
  { sql: 'DEALLOCATE q', access: 'read', kind: 'DEALLOCATE' },
  { sql: 'DEALLOCATE ALL', access: 'read', kind: 'DEALLOCATE' },
  { sql: 'LISTEN c', access: 'read', kind: 'LISTEN' },
  { sql: 'UNLISTEN *', access: 'read', kind: 'UNLISTEN' },
  { sql: 'COPY t TO STDOUT', access: 'read', kind: 'COPY TO STDOUT', objects: [T('t')] },
  { sql: 'COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT csv)', access: 'read', kind: 'COPY TO STDOUT', objects: [T('t')] },
  { sql: 'SET CONSTRAINTS ALL DEFERRED', access: 'read', kind: 'SET CONSTRAINTS' },
  { sql: 'SELECT lo_open(42, 262144)', access: 'read', kind: 'SELECT' }, // INV_READ
  { sql: "SELECT set_config('search_path', 'app', false)", access: 'read', kind: 'SELECT' },
  { sql: "SELECT query_to_xml('SELECT * FROM t', true, false, '')", access: 'read', kind: 'SELECT', objects: [T('t')] },
];

const WRITE: Case[] = [
  { sql: 'INSERT INTO t (a) VALUES (1)', access: 'write', kind: 'INSERT', objects: [TW(['insert'], 't')] },
  { sql: 'INSERT INTO s.t SELECT * FROM u ON CONFLICT DO NOTHING', access: 'write', kind: 'INSERT', objects: [TW(['insert'], 't', 's'), T('u')] },
  { sql: 'UPDATE t SET a = 1 WHERE b = 2', access: 'write', kind: 'UPDATE', objects: [TW(['update'], 't')] },
  { sql: 'DELETE FROM t USING u WHERE t.id = u.id', access: 'write', kind: 'DELETE', objects: [TW(['delete'], 't'), T('u')] },
  {
    sql: 'MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN UPDATE SET a = u.a WHEN NOT MATCHED THEN INSERT VALUES (u.id, u.a)',
    access: 'write',
    kind: 'MERGE',
    objects: [TW(['insert', 'update'], 't'), T('u')],
  },
  {
    sql: 'WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x',
    access: 'write',
    kind: 'SELECT',
    objects: [TW(['delete'], 't')],
    notObjects: [T('x')],
    reason: 'DELETE',
  },
  {
    sql: 'WITH a AS (SELECT 1), b AS (INSERT INTO log SELECT * FROM a RETURNING 1) SELECT * FROM b',
    access: 'write',
    kind: 'SELECT',
    objects: [TW(['insert'], 'log')],
  },
  { sql: 'SELECT * FROM (WITH d AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM d) s', access: 'write', kind: 'SELECT' },
  // The target of a DML statement is always a table, even when a CTE has its name.
  { sql: 'WITH t AS (SELECT 1) DELETE FROM t', access: 'write', kind: 'DELETE', objects: [TW(['delete'], 't')] },
  { sql: "SELECT nextval('s')", access: 'write', kind: 'SELECT', objects: [F('nextval'), T('s')], reason: 'calls nextval, which changes a sequence' },
  { sql: "SELECT pg_catalog.nextval('app.s')", access: 'write', kind: 'SELECT', objects: [F('nextval', 'pg_catalog'), T('s', 'app')] },
  { sql: "SELECT \"NEXTVAL\"('s')", access: 'write', kind: 'SELECT' },
  { sql: "SELECT PG_CATALOG.NEXTVAL('s')", access: 'write', kind: 'SELECT' },
  { sql: "SELECT setval('s', 42)", access: 'write', kind: 'SELECT', reason: 'setval' },
  { sql: "SELECT * FROM t WHERE id = (SELECT nextval('s'))", access: 'write', kind: 'SELECT' },
  { sql: "SELECT coalesce(a, nextval('s')) FROM t", access: 'write', kind: 'SELECT' },
  { sql: "SELECT CASE WHEN a > 0 THEN 1 ELSE setval('s', 1) END FROM t", access: 'write', kind: 'SELECT' },
  { sql: "SELECT * FROM t ORDER BY nextval('s')", access: 'write', kind: 'SELECT' },
  { sql: "SELECT * FROM nextval('s')", access: 'write', kind: 'SELECT' },
  { sql: "SELECT ARRAY[nextval('s')]", access: 'write', kind: 'SELECT' },
  { sql: "VALUES (nextval('s'))", access: 'write', kind: 'VALUES' },
  { sql: "SELECT * FROM t LIMIT nextval('s')", access: 'write', kind: 'SELECT' },
  { sql: "SELECT count(*) FILTER (WHERE nextval('s') > 0) FROM t", access: 'write', kind: 'SELECT' },
  { sql: 'SELECT pg_advisory_lock(1)', access: 'write', kind: 'SELECT', reason: 'advisory lock' },
  { sql: 'SELECT pg_try_advisory_xact_lock(1)', access: 'write', kind: 'SELECT' },
  { sql: "SELECT pg_notify('c', 'x')", access: 'write', kind: 'SELECT', reason: 'notification' },
  { sql: 'SELECT lo_unlink(42)', access: 'write', kind: 'SELECT' },
  { sql: "SELECT lo_from_bytea(0, '\\x00')", access: 'write', kind: 'SELECT' },
  { sql: 'SELECT lo_open(42, 131072)', access: 'write', kind: 'SELECT' }, // INV_WRITE
  { sql: "SELECT lo_open(42, x'20000'::int)", access: 'write', kind: 'SELECT' }, // not a plain constant
  { sql: 'SELECT lo_open(42, $1)', access: 'write', kind: 'SELECT' },
  { sql: 'SELECT * FROM t FOR UPDATE', access: 'write', kind: 'SELECT FOR UPDATE', objects: [T('t')], reason: 'row locks' },
  { sql: 'SELECT * FROM t FOR SHARE SKIP LOCKED', access: 'write', kind: 'SELECT FOR SHARE' },
  { sql: 'SELECT * FROM t FOR KEY SHARE', access: 'write', kind: 'SELECT FOR KEY SHARE' },
  { sql: 'SELECT * FROM (SELECT * FROM t FOR NO KEY UPDATE) s', access: 'write', kind: 'SELECT' },
  { sql: 'LOCK t', access: 'write', kind: 'LOCK TABLE', objects: [T('t')] },
  { sql: 'LOCK TABLE s.t IN ACCESS EXCLUSIVE MODE NOWAIT', access: 'write', kind: 'LOCK TABLE', objects: [T('t', 's')] },
  { sql: 'TRUNCATE t, u RESTART IDENTITY', access: 'write', kind: 'TRUNCATE', objects: [TW(['truncate'], 't'), TW(['truncate'], 'u')], reason: 'TRUNCATE' },
  { sql: 'COPY t FROM STDIN', access: 'write', kind: 'COPY FROM STDIN', objects: [TW(['insert'], 't')] },
  { sql: "COPY t (a, b) FROM STDIN WITH (FORMAT csv) WHERE a > 0", access: 'write', kind: 'COPY FROM STDIN' },
  { sql: 'COPY (DELETE FROM t RETURNING *) TO STDOUT', access: 'write', kind: 'COPY TO STDOUT', objects: [TW(['delete'], 't')] },
  { sql: "COPY (SELECT nextval('s')) TO STDOUT", access: 'write', kind: 'COPY TO STDOUT' },
  { sql: 'NOTIFY c', access: 'write', kind: 'NOTIFY' },
  { sql: "NOTIFY c, 'payload'", access: 'write', kind: 'NOTIFY' },
  { sql: 'REFRESH MATERIALIZED VIEW CONCURRENTLY mv', access: 'write', kind: 'REFRESH MATERIALIZED VIEW', objects: [T('mv')] },
  { sql: 'PREPARE p AS DELETE FROM t', access: 'write', kind: 'PREPARE', objects: [TW(['delete'], 't')] },
  { sql: 'PREPARE p (int) AS INSERT INTO t VALUES ($1)', access: 'write', kind: 'PREPARE' },
  { sql: 'EXECUTE p', access: 'write', kind: 'EXECUTE', reason: 'prepared statement' },
  { sql: 'EXECUTE q(1, 2)', access: 'write', kind: 'EXECUTE' },
  { sql: "DECLARE c CURSOR FOR SELECT nextval('s')", access: 'write', kind: 'DECLARE CURSOR' },
  { sql: 'DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t FOR UPDATE', access: 'write', kind: 'DECLARE CURSOR' },
  { sql: 'EXPLAIN ANALYZE DELETE FROM t', access: 'write', kind: 'EXPLAIN ANALYZE', objects: [TW(['delete'], 't')], reason: 'EXPLAIN ANALYZE executes' },
  { sql: 'EXPLAIN (ANALYZE, BUFFERS) INSERT INTO t VALUES (1)', access: 'write', kind: 'EXPLAIN ANALYZE' },
  { sql: 'EXPLAIN (ANALYZE true) UPDATE t SET a = 1', access: 'write', kind: 'EXPLAIN ANALYZE' },
  { sql: "EXPLAIN ANALYZE SELECT nextval('s')", access: 'write', kind: 'EXPLAIN ANALYZE' },
  // EXPLAIN EXECUTE evaluates its parameters even without ANALYZE.
  { sql: "EXPLAIN EXECUTE p(nextval('s'))", access: 'write', kind: 'EXPLAIN' },
  { sql: 'BEGIN READ WRITE', access: 'write', kind: 'BEGIN', reason: 'lifts read-only mode' },
  { sql: 'BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE', access: 'write', kind: 'BEGIN' },
  { sql: 'START TRANSACTION READ WRITE', access: 'write', kind: 'START TRANSACTION' },
  { sql: 'SET TRANSACTION READ WRITE', access: 'write', kind: 'SET TRANSACTION' },
  { sql: 'SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE', access: 'write', kind: 'SET SESSION CHARACTERISTICS' },
  { sql: 'SET default_transaction_read_only = off', access: 'write', kind: 'SET', reason: 'lifts read-only mode' },
  { sql: 'SET default_transaction_read_only TO DEFAULT', access: 'write', kind: 'SET' },
  { sql: 'SET SESSION default_transaction_read_only = 0', access: 'write', kind: 'SET' },
  { sql: 'SET "Default_Transaction_Read_Only" = false', access: 'write', kind: 'SET' },
  { sql: 'SET transaction_read_only = off', access: 'write', kind: 'SET' },
  { sql: 'RESET default_transaction_read_only', access: 'write', kind: 'RESET' },
  { sql: 'RESET ALL', access: 'write', kind: 'RESET ALL', reason: 'default_transaction_read_only' },
  {
    sql: "SELECT set_config('default_transaction_read_only', 'off', false)",
    access: 'write',
    kind: 'SELECT',
    reason: 'lifts read-only mode',
  },
  { sql: "SELECT set_config('transaction_read_only', 'off', true)", access: 'write', kind: 'SELECT' },
  { sql: "SELECT set_config('default_transaction_read_only', $1, false)", access: 'write', kind: 'SELECT' },
  { sql: 'PREPARE TRANSACTION \'tx1\'', access: 'write', kind: 'PREPARE TRANSACTION' },
  { sql: "COMMIT PREPARED 'tx1'", access: 'write', kind: 'COMMIT PREPARED' },
  { sql: "SELECT query_to_xml('SELECT nextval(''s'')', true, false, '')", access: 'write', kind: 'SELECT', reason: 'query_to_xml' },
];

const DDL: Case[] = [
  { sql: 'CREATE TABLE t (id int PRIMARY KEY, a text)', access: 'ddl', kind: 'CREATE TABLE', objects: [T('t')] },
  { sql: 'CREATE TEMP TABLE tmp (a int)', access: 'ddl', kind: 'CREATE TABLE' },
  { sql: "CREATE TABLE t (id bigint DEFAULT nextval('s'))", access: 'ddl', kind: 'CREATE TABLE' },
  { sql: 'CREATE TABLE x AS SELECT * FROM t', access: 'ddl', kind: 'CREATE TABLE AS', objects: [T('x'), T('t')] },
  { sql: 'SELECT * INTO new_t FROM t', access: 'ddl', kind: 'SELECT INTO', objects: [T('new_t'), T('t')], reason: 'creates a table' },
  { sql: 'SELECT * INTO TEMP new_t FROM t UNION SELECT * FROM u', access: 'ddl', kind: 'SELECT INTO' },
  { sql: 'CREATE MATERIALIZED VIEW mv AS SELECT 1', access: 'ddl', kind: 'CREATE MATERIALIZED VIEW' },
  { sql: 'CREATE VIEW v AS SELECT * FROM t', access: 'ddl', kind: 'CREATE VIEW', objects: [T('v'), T('t')] },
  { sql: 'CREATE OR REPLACE VIEW s.v AS SELECT 1', access: 'ddl', kind: 'CREATE VIEW', objects: [T('v', 's')] },
  { sql: 'CREATE INDEX CONCURRENTLY i ON t (a)', access: 'ddl', kind: 'CREATE INDEX', objects: [T('t')] },
  { sql: 'CREATE SEQUENCE s', access: 'ddl', kind: 'CREATE SEQUENCE', objects: [T('s')] },
  { sql: 'ALTER SEQUENCE s RESTART', access: 'ddl', kind: 'ALTER SEQUENCE' },
  { sql: 'CREATE SCHEMA app', access: 'ddl', kind: 'CREATE SCHEMA', objects: [S('app')] },
  { sql: 'CREATE TYPE mood AS ENUM (\'a\', \'b\')', access: 'ddl', kind: 'CREATE TYPE' },
  { sql: 'CREATE TYPE pair AS (a int, b int)', access: 'ddl', kind: 'CREATE TYPE' },
  { sql: 'CREATE DOMAIN posint AS int CHECK (VALUE > 0)', access: 'ddl', kind: 'CREATE DOMAIN' },
  {
    sql: 'CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql AS $$ SELECT a $$',
    access: 'ddl',
    kind: 'CREATE FUNCTION',
    objects: [NF('f')],
    reason: 'runs later',
  },
  { sql: 'CREATE OR REPLACE FUNCTION s.f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$', access: 'ddl', kind: 'CREATE FUNCTION', objects: [NF('f', 's')] },
  { sql: 'CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END', access: 'ddl', kind: 'CREATE PROCEDURE' },
  { sql: 'CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER RETURN 1', access: 'ddl', kind: 'CREATE FUNCTION', reason: 'SECURITY DEFINER' },
  { sql: 'CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()', access: 'ddl', kind: 'CREATE TRIGGER', objects: [T('t')] },
  { sql: 'CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM u', access: 'ddl', kind: 'CREATE RULE' },
  { sql: 'CREATE EXTENSION IF NOT EXISTS pgcrypto', access: 'ddl', kind: 'CREATE EXTENSION', objects: [{ type: 'other', name: 'pgcrypto' }] },
  // Without HANDLER, CREATE LANGUAGE is CREATE EXTENSION in the grammar.
  { sql: 'CREATE LANGUAGE plperlu', access: 'ddl', kind: 'CREATE EXTENSION' },
  { sql: 'CREATE POLICY p ON t USING (owner = current_user)', access: 'ddl', kind: 'CREATE POLICY' },
  { sql: 'ALTER TABLE t ADD COLUMN c int', access: 'ddl', kind: 'ALTER TABLE', objects: [T('t')] },
  { sql: 'ALTER TABLE t ENABLE ROW LEVEL SECURITY', access: 'ddl', kind: 'ALTER TABLE' },
  { sql: 'ALTER TABLE t RENAME COLUMN a TO b', access: 'ddl', kind: 'ALTER TABLE' },
  { sql: 'ALTER TABLE t RENAME TO u', access: 'ddl', kind: 'ALTER TABLE' },
  { sql: 'ALTER INDEX i RENAME TO j', access: 'ddl', kind: 'ALTER INDEX' },
  { sql: 'ALTER VIEW v SET SCHEMA other', access: 'ddl', kind: 'ALTER VIEW', objects: [S('other')] },
  { sql: 'DROP TABLE t', access: 'ddl', kind: 'DROP TABLE', objects: [T('t')] },
  { sql: 'DROP TABLE IF EXISTS a.b, c CASCADE', access: 'ddl', kind: 'DROP TABLE', objects: [T('b', 'a'), T('c')] },
  { sql: 'DROP VIEW v', access: 'ddl', kind: 'DROP VIEW', objects: [T('v')] },
  { sql: 'DROP MATERIALIZED VIEW mv', access: 'ddl', kind: 'DROP MATERIALIZED VIEW' },
  { sql: 'DROP INDEX i', access: 'ddl', kind: 'DROP INDEX' },
  { sql: 'DROP SEQUENCE s', access: 'ddl', kind: 'DROP SEQUENCE' },
  { sql: 'DROP SCHEMA app CASCADE', access: 'ddl', kind: 'DROP SCHEMA', objects: [S('app')] },
  { sql: 'DROP FUNCTION f(int), s.g', access: 'ddl', kind: 'DROP FUNCTION', objects: [NF('f'), NF('g', 's')] },
  { sql: 'DROP TYPE mood', access: 'ddl', kind: 'DROP TYPE' },
  { sql: 'DROP EXTENSION pgcrypto', access: 'ddl', kind: 'DROP EXTENSION' },
  { sql: 'DROP TRIGGER tr ON t', access: 'ddl', kind: 'DROP TRIGGER', objects: [T('t'), { type: 'other', name: 'tr' }] },
  { sql: 'DROP POLICY p ON s.t', access: 'ddl', kind: 'DROP POLICY', objects: [T('t', 's')] },
  { sql: 'COMMENT ON COLUMN s.t.c IS NULL', access: 'ddl', kind: 'COMMENT ON', objects: [T('t', 's')] },
  { sql: "COMMENT ON TABLE t IS 'x'", access: 'ddl', kind: 'COMMENT ON', objects: [T('t')] },
  { sql: "COMMENT ON FUNCTION f(int) IS 'x'", access: 'ddl', kind: 'COMMENT ON', objects: [NF('f')] },
  // Quoting and Unicode escapes do not change what the parser sees.
  { sql: 'DROP TABLE U&"\\0074"', access: 'ddl', kind: 'DROP TABLE', objects: [T('t')] },
];

const ADMIN: Case[] = [
  { sql: 'GRANT SELECT ON t TO bob', access: 'admin', kind: 'GRANT', objects: [T('t'), R('bob')] },
  { sql: 'GRANT ALL ON ALL TABLES IN SCHEMA app TO PUBLIC', access: 'admin', kind: 'GRANT', objects: [S('app'), R('PUBLIC')] },
  { sql: 'REVOKE ALL ON SCHEMA app FROM bob', access: 'admin', kind: 'REVOKE', objects: [S('app'), R('bob')] },
  { sql: 'GRANT EXECUTE ON FUNCTION f(int) TO bob', access: 'admin', kind: 'GRANT', objects: [NF('f')] },
  { sql: 'GRANT CONNECT ON DATABASE app TO bob', access: 'admin', kind: 'GRANT', objects: [D('app')] },
  { sql: 'GRANT admin TO bob', access: 'admin', kind: 'GRANT ROLE', objects: [R('admin'), R('bob')] },
  { sql: 'REVOKE admin FROM bob', access: 'admin', kind: 'REVOKE ROLE' },
  { sql: 'ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO bob', access: 'admin', kind: 'ALTER DEFAULT PRIVILEGES' },
  { sql: "CREATE ROLE r LOGIN PASSWORD 'x'", access: 'admin', kind: 'CREATE ROLE', objects: [R('r')] },
  { sql: 'CREATE USER u', access: 'admin', kind: 'CREATE USER', objects: [R('u')] },
  { sql: 'CREATE GROUP g', access: 'admin', kind: 'CREATE GROUP' },
  { sql: 'ALTER ROLE r SUPERUSER', access: 'admin', kind: 'ALTER ROLE', objects: [R('r')] },
  { sql: "ALTER USER current_user PASSWORD 'x'", access: 'admin', kind: 'ALTER ROLE' },
  { sql: 'ALTER ROLE r SET search_path = app', access: 'admin', kind: 'ALTER ROLE' },
  // A SET ROLE that is stored, not run now: admin, but not an escalation of this session.
  { sql: "ALTER ROLE r SET role = 'postgres'", access: 'admin', kind: 'ALTER ROLE' },
  { sql: 'ALTER FUNCTION f() SET role = postgres', access: 'admin', kind: 'ALTER FUNCTION', objects: [NF('f')] },
  { sql: 'ALTER ROLE a RENAME TO b', access: 'admin', kind: 'ALTER ROLE', objects: [R('a')] },
  { sql: 'DROP ROLE a, b', access: 'admin', kind: 'DROP ROLE', objects: [R('a'), R('b')] },
  { sql: 'DROP USER IF EXISTS u', access: 'admin', kind: 'DROP ROLE' },
  { sql: 'ALTER TABLE t OWNER TO bob', access: 'admin', kind: 'ALTER TABLE', objects: [T('t'), R('bob')], reason: 'owner' },
  { sql: 'ALTER FUNCTION f() OWNER TO bob', access: 'admin', kind: 'ALTER FUNCTION', objects: [NF('f'), R('bob')] },
  { sql: 'REASSIGN OWNED BY a TO b', access: 'admin', kind: 'REASSIGN OWNED' },
  { sql: 'DROP OWNED BY a', access: 'admin', kind: 'DROP OWNED' },
  { sql: 'ALTER SYSTEM SET work_mem = 1', access: 'admin', kind: 'ALTER SYSTEM' },
  { sql: 'ALTER SYSTEM RESET ALL', access: 'admin', kind: 'ALTER SYSTEM' },
  { sql: 'CREATE DATABASE d', access: 'admin', kind: 'CREATE DATABASE', objects: [D('d')] },
  { sql: 'DROP DATABASE d', access: 'admin', kind: 'DROP DATABASE', objects: [D('d')] },
  { sql: 'ALTER DATABASE d SET work_mem = 1', access: 'admin', kind: 'ALTER DATABASE', objects: [D('d')] },
  { sql: 'ALTER DATABASE d RENAME TO e', access: 'admin', kind: 'ALTER DATABASE' },
  { sql: 'VACUUM', access: 'admin', kind: 'VACUUM' },
  { sql: 'VACUUM (FULL, ANALYZE) t', access: 'admin', kind: 'VACUUM', objects: [T('t')] },
  { sql: 'ANALYZE', access: 'admin', kind: 'ANALYZE' },
  { sql: 'ANALYZE t', access: 'admin', kind: 'ANALYZE', objects: [T('t')] },
  { sql: 'CLUSTER', access: 'admin', kind: 'CLUSTER' },
  { sql: 'CLUSTER t USING i', access: 'admin', kind: 'CLUSTER' },
  { sql: 'REINDEX TABLE t', access: 'admin', kind: 'REINDEX' },
  { sql: 'REINDEX DATABASE d', access: 'admin', kind: 'REINDEX' },
  { sql: 'CHECKPOINT', access: 'admin', kind: 'CHECKPOINT' },
  { sql: "LOAD 'auto_explain'", access: 'admin', kind: 'LOAD' },
  { sql: 'DO $$ BEGIN DELETE FROM t; END $$', access: 'admin', kind: 'DO', reason: 'anonymous code block' },
  { sql: "DO LANGUAGE plpgsql 'BEGIN NULL; END'", access: 'admin', kind: 'DO' },
  { sql: 'CALL p()', access: 'admin', kind: 'CALL', objects: [F('p')] },
  { sql: 'CALL s.p(1, 2)', access: 'admin', kind: 'CALL', objects: [F('p', 's')] },
  { sql: "COPY t TO PROGRAM 'curl http://x'", access: 'admin', kind: 'COPY TO PROGRAM', reason: 'shell command' },
  { sql: "COPY t FROM PROGRAM 'id'", access: 'admin', kind: 'COPY FROM PROGRAM' },
  { sql: "COPY t FROM '/etc/passwd'", access: 'admin', kind: 'COPY FROM FILE', objects: [TW(['insert'], 't')], reason: 'reads a file' },
  { sql: "COPY (SELECT 1) TO '/tmp/x'", access: 'admin', kind: 'COPY TO FILE', reason: 'writes a file' },
  { sql: "SECURITY LABEL FOR selinux ON TABLE t IS 'x'", access: 'admin', kind: 'SECURITY LABEL' },
  { sql: "CREATE PUBLICATION pub FOR ALL TABLES", access: 'admin', kind: 'CREATE PUBLICATION' },
  { sql: "CREATE SUBSCRIPTION sub CONNECTION 'host=x' PUBLICATION pub", access: 'admin', kind: 'CREATE SUBSCRIPTION' },
  { sql: 'ALTER SUBSCRIPTION sub DISABLE', access: 'admin', kind: 'ALTER SUBSCRIPTION' },
  { sql: 'DROP SUBSCRIPTION sub', access: 'admin', kind: 'DROP SUBSCRIPTION' },
  { sql: 'DROP PUBLICATION pub', access: 'admin', kind: 'DROP PUBLICATION' },
  { sql: "CREATE SERVER srv FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'x')", access: 'admin', kind: 'CREATE SERVER' },
  { sql: "CREATE USER MAPPING FOR bob SERVER srv OPTIONS (password 'x')", access: 'admin', kind: 'CREATE USER MAPPING' },
  { sql: "CREATE TABLESPACE ts LOCATION '/tmp/ts'", access: 'admin', kind: 'CREATE TABLESPACE' },
  { sql: 'CREATE EVENT TRIGGER et ON ddl_command_start EXECUTE FUNCTION f()', access: 'admin', kind: 'CREATE EVENT TRIGGER' },
  { sql: 'CREATE LANGUAGE plsample HANDLER plsample_call_handler', access: 'admin', kind: 'CREATE LANGUAGE' },
  { sql: "CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'lib', 'sym'", access: 'admin', kind: 'CREATE FUNCTION', reason: 'untrusted' },
  { sql: 'CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS $$ return 1 $$', access: 'admin', kind: 'CREATE FUNCTION' },
  // A schema element can be a GRANT.
  { sql: 'CREATE SCHEMA s CREATE TABLE t (a int) GRANT SELECT ON t TO PUBLIC', access: 'admin', kind: 'CREATE SCHEMA', objects: [S('s'), T('t'), R('PUBLIC')] },
  // ADD COLUMN … DEFAULT evaluates the default for every existing row.
  { sql: 'ALTER TABLE t ADD COLUMN c bool DEFAULT pg_terminate_backend(1)', access: 'admin', kind: 'ALTER TABLE' },
  // Side-effect functions, wherever they hide.
  { sql: 'SELECT pg_catalog.pg_terminate_backend(1)', access: 'admin', kind: 'SELECT', objects: [F('pg_terminate_backend', 'pg_catalog')], reason: 'pg_terminate_backend' },
  { sql: 'SELECT pg_cancel_backend(pid) FROM pg_stat_activity', access: 'admin', kind: 'SELECT' },
  { sql: 'SELECT * FROM t WHERE EXISTS (SELECT pg_terminate_backend(1))', access: 'admin', kind: 'SELECT' },
  { sql: 'SELECT abs(pg_catalog.pg_terminate_backend(1)::int)', access: 'admin', kind: 'SELECT' },
  { sql: 'SELECT CASE WHEN x THEN pg_terminate_backend(1) END FROM t', access: 'admin', kind: 'SELECT' },
  { sql: 'WITH k AS (SELECT pg_terminate_backend(1)) SELECT * FROM k', access: 'admin', kind: 'SELECT' },
  { sql: 'SELECT pg_reload_conf()', access: 'admin', kind: 'SELECT' },
  { sql: 'SELECT pg_rotate_logfile()', access: 'admin', kind: 'SELECT' },
  { sql: "SELECT lo_import('/etc/passwd')", access: 'admin', kind: 'SELECT', reason: 'lo_import' },
  { sql: "SELECT lo_export(42, '/tmp/x')", access: 'admin', kind: 'SELECT' },
  { sql: "SELECT pg_read_file('x')", access: 'admin', kind: 'SELECT', reason: 'pg_read_file' },
  { sql: "SELECT pg_read_binary_file('/etc/passwd')", access: 'admin', kind: 'SELECT' },
  { sql: "SELECT * FROM pg_ls_dir('.')", access: 'admin', kind: 'SELECT' },
  { sql: 'SELECT * FROM pg_ls_waldir()', access: 'admin', kind: 'SELECT' },
  { sql: "SELECT pg_stat_file('postgresql.conf')", access: 'admin', kind: 'SELECT' },
  { sql: "SELECT dblink_exec('host=x', 'DROP TABLE t')", access: 'admin', kind: 'SELECT', reason: 'dblink_exec' },
  { sql: "SELECT * FROM public.dblink('host=x', 'SELECT 1') AS r(a int)", access: 'admin', kind: 'SELECT' },
  { sql: "SELECT dblink_connect('c', 'host=x')", access: 'admin', kind: 'SELECT' },
  { sql: 'SELECT pg_switch_wal()', access: 'admin', kind: 'SELECT' },
  { sql: "SELECT pg_create_physical_replication_slot('s')", access: 'admin', kind: 'SELECT' },
  { sql: "SELECT pg_create_logical_replication_slot('s', 'pgoutput')", access: 'admin', kind: 'SELECT' },
  { sql: "SELECT pg_drop_replication_slot('s')", access: 'admin', kind: 'SELECT' },
  { sql: 'SELECT pg_promote()', access: 'admin', kind: 'SELECT' },
  { sql: "SELECT pg_file_write('x', 'y', false)", access: 'admin', kind: 'SELECT' },
  { sql: 'SELECT pg_stat_reset()', access: 'admin', kind: 'SELECT' },
  { sql: "SELECT cron.schedule('* * * * *', 'DELETE FROM t')", access: 'admin', kind: 'SELECT' },
  // SQL text run by a function is classified too.
  { sql: "SELECT query_to_xml('SELECT pg_terminate_backend(1)', true, false, '')", access: 'admin', kind: 'SELECT' },
  { sql: 'SELECT query_to_xml($1, true, false, \'\')', access: 'admin', kind: 'SELECT', reason: 'cannot see' },
  { sql: "SELECT * FROM ts_stat('SELECT pg_read_file(''x'')::tsvector')", access: 'admin', kind: 'SELECT' },
  { sql: "SELECT query_to_xml('not sql', true, false, '')", access: 'admin', kind: 'SELECT', reason: 'does not parse' },
  // set_config that changes the identity, or a setting not known to be harmless.
  { sql: "SELECT set_config('role', 'postgres', false)", access: 'admin', kind: 'SELECT', escalation: true, objects: [R('postgres')] },
  { sql: "SELECT set_config('ROLE', 'postgres', false)", access: 'admin', kind: 'SELECT', escalation: true },
  { sql: "SELECT set_config('session_authorization', 'postgres', false)", access: 'admin', kind: 'SELECT', escalation: true },
  { sql: 'SELECT set_config($1, $2, false)', access: 'admin', kind: 'SELECT', escalation: true },
  { sql: "SELECT set_config('session_replication_role', 'replica', false)", access: 'admin', kind: 'SELECT' },
  // Writing to pg_settings is set_config; writing to catalogs is admin.
  { sql: "UPDATE pg_settings SET setting = 'off' WHERE name = 'default_transaction_read_only'", access: 'admin', kind: 'UPDATE', reason: 'pg_settings' },
  { sql: "UPDATE pg_catalog.pg_authid SET rolsuper = true", access: 'admin', kind: 'UPDATE', reason: 'system catalog' },
  { sql: 'COPY pg_authid FROM STDIN', access: 'admin', kind: 'COPY FROM STDIN' },
  // Settings that would make the server read different SQL than the gateway.
  { sql: "SET client_encoding = 'SJIS'", access: 'admin', kind: 'SET', reason: 'client_encoding' },
  { sql: "SET NAMES 'GBK'", access: 'admin', kind: 'SET' },
  { sql: 'SET standard_conforming_strings = off', access: 'admin', kind: 'SET', reason: 'standard_conforming_strings' },
  { sql: "SET session_replication_role = 'replica'", access: 'admin', kind: 'SET' },
  { sql: "SET app.tenant_id = '42'", access: 'admin', kind: 'SET', reason: 'custom setting' },
  { sql: "SET local_preload_libraries = 'x'", access: 'admin', kind: 'SET' },
];

const ESCALATION: Case[] = [
  { sql: 'SET ROLE postgres', access: 'admin', kind: 'SET ROLE', objects: [R('postgres')], escalation: true },
  { sql: 'SET LOCAL ROLE x', access: 'admin', kind: 'SET ROLE', objects: [R('x')], escalation: true },
  { sql: 'SET SESSION ROLE x', access: 'admin', kind: 'SET ROLE', escalation: true },
  { sql: 'SET ROLE NONE', access: 'admin', kind: 'SET ROLE', escalation: true },
  { sql: "SET role = 'postgres'", access: 'admin', kind: 'SET ROLE', escalation: true },
  { sql: "SET \"ROLE\" = 'postgres'", access: 'admin', kind: 'SET ROLE', escalation: true },
  { sql: 'SeT rOlE postgres', access: 'admin', kind: 'SET ROLE', escalation: true },
  { sql: 'SET role TO DEFAULT', access: 'admin', kind: 'SET ROLE', escalation: true },
  { sql: 'RESET ROLE', access: 'admin', kind: 'RESET ROLE', escalation: true },
  { sql: 'SET SESSION AUTHORIZATION postgres', access: 'admin', kind: 'SET SESSION AUTHORIZATION', objects: [R('postgres')], escalation: true },
  { sql: 'SET SESSION AUTHORIZATION DEFAULT', access: 'admin', kind: 'SET SESSION AUTHORIZATION', escalation: true },
  { sql: "SET session_authorization = 'postgres'", access: 'admin', kind: 'SET SESSION AUTHORIZATION', escalation: true },
  { sql: 'RESET SESSION AUTHORIZATION', access: 'admin', kind: 'RESET SESSION AUTHORIZATION', escalation: true },
  { sql: 'DISCARD ALL', access: 'admin', kind: 'DISCARD ALL', escalation: true },
  { sql: "EXPLAIN ANALYZE SELECT set_config('role', 'x', false)", access: 'admin', kind: 'EXPLAIN ANALYZE', escalation: true },
];

function check(c: Case): void {
  const s = one(c.sql);
  expect({ sql: c.sql, access: s.access, kind: s.kind }).toEqual({ sql: c.sql, access: c.access, kind: c.kind });
  for (const o of c.objects ?? []) expect(s.objects, `${c.sql}: objects`).toContainEqual(o);
  for (const o of c.notObjects ?? []) expect(s.objects, `${c.sql}: objects`).not.toContainEqual(o);
  if (c.escalation) expect(s.escalation, `${c.sql}: escalation`).toBe(true);
  else expect(s.escalation, `${c.sql}: escalation`).toBeUndefined();
  if (c.reason) expect(s.reason ?? '', `${c.sql}: reason`).toContain(c.reason);
  expect(s.text).toBe(c.sql);
}

describe('policy: statement classification corpus', () => {
  for (const [name, cases] of [
    ['read', READ],
    ['write', WRITE],
    ['ddl', DDL],
    ['admin', ADMIN],
    ['identity escalation', ESCALATION],
  ] as const) {
    describe(name, () => {
      for (const c of cases) it(c.sql, () => check(c));
    });
  }
});

describe('policy: statements that share a shape classify alike', () => {
  // The shape cache is sound only if changing integer literals never changes
  // a classification that read no numbers: check that on the whole corpus.
  const withOtherIntegers = (sql: string) => {
    const shape = statementShape(sql)!;
    let n = 0;
    return shape.replace(/\u0000/g, () => String(98_765 + n++));
  };
  const shaped = [...READ, ...WRITE, ...DDL, ...ADMIN, ...ESCALATION].filter((c) => statementShape(c.sql) !== null);

  it('the corpus has statements with integers to vary', () => {
    expect(shaped.length).toBeGreaterThan(20);
  });

  for (const c of shaped) {
    it(c.sql, () => {
      const original = classify(c.sql);
      const variant = classify(withOtherIntegers(c.sql));
      if (!original.ok || original.statements.length !== 1 || original.readsNumbers) return;
      expect(variant.ok).toBe(true);
      if (!variant.ok) return;
      expect({ ...variant.statements[0], text: '' }).toEqual({ ...original.statements[0], text: '' });
    });
  }
});

// ---------------------------------------------------------------------------
// Evasions: the parse tree, not the text, decides.
// ---------------------------------------------------------------------------

describe('policy: evasions', () => {
  const levels = (sql: string): Array<[Access, string]> => {
    const c = classify(sql);
    if (!c.ok) throw new Error(c.error);
    return c.statements.map((s) => [s.access, s.kind]);
  };

  it('a second statement after a comment is its own statement', () => {
    expect(levels('SELECT 1; DROP TABLE t')).toEqual([
      ['read', 'SELECT'],
      ['ddl', 'DROP TABLE'],
    ]);
    expect(levels('SELECT 1 /* hi */; /* there */ DROP TABLE t -- bye')).toEqual([
      ['read', 'SELECT'],
      ['ddl', 'DROP TABLE'],
    ]);
    expect(levels('SELECT 1 --\n; DROP TABLE t')).toEqual([
      ['read', 'SELECT'],
      ['ddl', 'DROP TABLE'],
    ]);
  });

  it('text inside comments is not a statement', () => {
    expect(levels('SELECT 1 -- ; DROP TABLE t')).toEqual([['read', 'SELECT']]);
    expect(levels('SELECT 1 /* ; DROP TABLE t; */')).toEqual([['read', 'SELECT']]);
    // Postgres' block comments nest: the first */ does not close the outer one.
    expect(levels('SELECT 1 /* outer /* inner */ still a comment; DROP TABLE t; */')).toEqual([['read', 'SELECT']]);
    expect(levels('/* only */ -- comments\n')).toEqual([]);
  });

  it('dollar quoting keeps one read statement', () => {
    expect(levels('SELECT $$; DROP TABLE t; $$')).toEqual([['read', 'SELECT']]);
    expect(levels('SELECT $tag$ $$; DROP TABLE t; $$ $tag$')).toEqual([['read', 'SELECT']]);
    expect(one('SELECT $$; DROP TABLE t; $$').text).toBe('SELECT $$; DROP TABLE t; $$');
  });

  it('string literals, E-strings and Unicode escapes are data', () => {
    expect(levels("SELECT 'DROP TABLE t'")).toEqual([['read', 'SELECT']]);
    expect(levels("SELECT 'a'';DROP TABLE t;--'")).toEqual([['read', 'SELECT']]);
    expect(levels("SELECT E'\\'; DROP TABLE t; --'")).toEqual([['read', 'SELECT']]);
    expect(levels("SELECT U&'\\0027; DROP TABLE t; --'")).toEqual([['read', 'SELECT']]);
    expect(levels("SELECT U&'d!0061t!+000061' UESCAPE '!'")).toEqual([['read', 'SELECT']]);
  });

  it('a Unicode-escaped or quoted identifier is never a keyword', () => {
    // U&"\0064rop" is the identifier "drop", not the DROP keyword.
    expect(classify('U&"\\0064rop" TABLE t').ok).toBe(false);
    expect(classify('"DROP" TABLE t').ok).toBe(false);
    expect(one('SELECT U&"\\0064rop" FROM t')).toMatchObject({ access: 'read', kind: 'SELECT' });
    expect(one('SELECT * FROM U&"\\0074"').objects).toContainEqual(T('t'));
  });

  it('casing does not matter', () => {
    expect(levels('sElEcT 1; dRoP tAbLe T')).toEqual([
      ['read', 'SELECT'],
      ['ddl', 'DROP TABLE'],
    ]);
    expect(one("SeLeCt NeXtVaL('s')").access).toBe('write');
  });

  it('statement texts are cut correctly, also after multibyte characters', () => {
    const c = classify("SELECT 'é ü 🙂';   INSERT INTO t VALUES ('ß');\n  DELETE FROM t  ");
    expect(c.ok).toBe(true);
    if (!c.ok) return;
    expect(c.statements.map((s) => s.text)).toEqual(["SELECT 'é ü 🙂'", "INSERT INTO t VALUES ('ß')", 'DELETE FROM t']);
    expect(c.statements.map((s) => s.access)).toEqual(['read', 'write', 'write']);
    const sql = "SELECT 'é'; SELECT '🙂'; SELECT 3";
    expect(parseStatements(sql).map((p) => sql.slice(p.location, p.location + p.text.length))).toEqual([
      "SELECT 'é'",
      "SELECT '🙂'",
      'SELECT 3',
    ]);
  });

  it('a NUL character is refused (the parser would stop reading there)', () => {
    const c = classify('SELECT 1\u0000; DROP TABLE t');
    expect(c.ok).toBe(false);
  });
});

// ---------------------------------------------------------------------------
// Multi-statement strings, parse errors, empty input.
// ---------------------------------------------------------------------------

describe('policy: multi-statement strings and failures', () => {
  it('returns every statement with its own level and text', () => {
    const c = classify('BEGIN; SELECT * FROM t; UPDATE t SET a = 1; GRANT SELECT ON t TO x; COMMIT');
    expect(c.ok).toBe(true);
    if (!c.ok) return;
    expect(c.statements.map((s) => [s.access, s.kind, s.text])).toEqual([
      ['read', 'BEGIN', 'BEGIN'],
      ['read', 'SELECT', 'SELECT * FROM t'],
      ['write', 'UPDATE', 'UPDATE t SET a = 1'],
      ['admin', 'GRANT', 'GRANT SELECT ON t TO x'],
      ['read', 'COMMIT', 'COMMIT'],
    ]);
    expect(overallAccess(c)).toBe('admin');
  });

  it('unparseable text is ok:false with the parser message', () => {
    for (const sql of ['selec 1', 'SELECT * FROM', 'DROP TABLE', 'SELECT 1; DROP TABL t', "SELECT 'unterminated", 'SELECT $$ open']) {
      const c = classify(sql);
      expect(c.ok, sql).toBe(false);
      if (!c.ok) expect(c.error, sql).toMatch(/syntax error|unterminated/);
      expect(overallAccess(c)).toBeUndefined();
    }
  });

  it('empty input has no statements', () => {
    expect(classify('')).toEqual({ ok: true, statements: [] });
    expect(classify('  ;  ; ')).toEqual({ ok: true, statements: [] });
    expect(overallAccess(classify(''))).toBe('read');
  });

  it('a pathologically deep tree fails closed', () => {
    const c = classify('SELECT ' + '('.repeat(20_000) + '1' + ')'.repeat(20_000));
    expect(c.ok).toBe(false);
  });

  it('parseStatements splits and locates statements', () => {
    const p = parseStatements('SELECT 1;\n  SELECT 2');
    expect(p.map((s) => [s.type, s.text, s.location])).toEqual([
      ['SelectStmt', 'SELECT 1', 0],
      ['SelectStmt', 'SELECT 2', 12],
    ]);
  });
});

// ---------------------------------------------------------------------------
// Coverage of the tables.
// ---------------------------------------------------------------------------

describe('policy: tables', () => {
  it('every statement type of the parser has a handler (or is refused as unrecognised)', () => {
    const req = createRequire(createRequire(import.meta.url).resolve('libpg-query'));
    const dts = readFileSync(req.resolve('@pgsql/types/types.d.ts'), 'utf8');
    const union = dts.slice(dts.indexOf('export type Node ='), dts.indexOf('export interface'));
    const stmtTypes = [...union.matchAll(/^\s+(\w+Stmt): \1;/gm)].map((m) => m[1]!);
    expect(stmtTypes.length).toBeGreaterThan(100);
    // Not produced by the raw parser: SetOperationStmt (analysis), PLAssignStmt
    // (PL/pgSQL mode), RawStmt (the wrapper around every statement).
    const notRaw = new Set(['SetOperationStmt', 'PLAssignStmt', 'RawStmt']);
    const missing = stmtTypes.filter((t) => !notRaw.has(t) && !HANDLED_NODE_TYPES.includes(t));
    expect(missing).toEqual([]);
  });

  it('looks functions up by unqualified name, any case, any schema', () => {
    expect(lookupFunction('nextval')?.level).toBe('write');
    expect(lookupFunction('NEXTVAL')?.level).toBe('write');
    expect(lookupFunction('nextval', 'pg_catalog')?.level).toBe('write');
    expect(lookupFunction('currval')).toBeUndefined();
    expect(lookupFunction('pg_advisory_xact_lock_shared')?.level).toBe('write');
    expect(lookupFunction('dblink_get_result')?.level).toBe('admin');
    expect(lookupFunction('pg_ls_tmpdir')?.level).toBe('admin');
    expect(lookupFunction('schedule')).toBeUndefined();
    expect(lookupFunction('schedule', 'cron')?.level).toBe('admin');
    expect(lookupFunction('lower')).toBeUndefined();
  });

  it('classifies settings case-insensitively', () => {
    expect(classifySetting('ROLE', { op: 'set', value: 'x' })).toMatchObject({ level: 'admin', escalation: true });
    expect(classifySetting('Search_Path', { op: 'set', value: 'x' }).level).toBe('read');
    expect(classifySetting('default_transaction_read_only', { op: 'set', value: 'yes' }).level).toBe('read');
    expect(classifySetting('default_transaction_read_only', { op: 'set', value: 'no' }).level).toBe('write');
    expect(classifySetting('work_mem', { op: 'default' }).level).toBe('read');
  });

  it('an unrecognised statement node is admin (fail closed)', async () => {
    // Simulate a statement type this classifier does not know.
    const { classifyStatement } = await import('../src/policy/classify.js');
    const s = classifyStatement({ type: 'FutureStmt', node: { x: 1 }, text: 'FUTURE', location: 0 });
    expect(s).toMatchObject({ access: 'admin', kind: 'FutureStmt' });
    expect(s.reason).toContain('unrecognised statement');
  });
});

// ---------------------------------------------------------------------------
// The cache.
// ---------------------------------------------------------------------------

describe('policy: classification cache', () => {
  it('a hit does not parse again', () => {
    const cache = new ClassificationCache();
    const sql = 'SELECT * FROM cache_test WHERE id = $1';
    const before = parserStats.calls;
    const first = cache.get(sql);
    expect(parserStats.calls).toBe(before + 1);
    const second = cache.get(sql);
    expect(parserStats.calls).toBe(before + 1);
    expect(second).toBe(first);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 1, size: 1 });
    expect(Object.isFrozen(first)).toBe(true);
  });

  it('calls its classifier once per distinct text', () => {
    let calls = 0;
    const cache = new DecisionCache({
      classifier: (sql): Classification => {
        calls++;
        return classify(sql);
      },
    });
    for (let i = 0; i < 5; i++) cache.get('SELECT 1');
    expect(calls).toBe(1);
    expect(cache.hits).toBe(4);
    expect(cache.misses).toBe(1);
  });

  it('evicts the least recently used entry', () => {
    const cache = new ClassificationCache({ maxEntries: 2 });
    cache.get("SELECT 'a'");
    cache.get("SELECT 'b'");
    cache.get("SELECT 'a'"); // refreshes 'a': 'b' is now the oldest
    cache.get("SELECT 'c'");
    expect(cache.size).toBe(2);
    expect(cache.has("SELECT 'a'")).toBe(true);
    expect(cache.has("SELECT 'b'")).toBe(false);
    expect(cache.has("SELECT 'c'")).toBe(true);
    expect(cache.evictions).toBe(1);
    cache.get("SELECT 'd'"); // evicts 'a' (oldest now)
    expect(cache.has("SELECT 'a'")).toBe(false);
  });

  it('one entry serves statements that differ only in integers', () => {
    const cache = new ClassificationCache();
    const before = parserStats.calls;
    const first = cache.get('SELECT abalance FROM pgbench_accounts WHERE aid = 17;');
    const second = cache.get('SELECT abalance FROM pgbench_accounts WHERE aid = 90210;');
    expect(second).toBe(first);
    expect(parserStats.calls).toBe(before + 1);
    expect(cache.stats()).toMatchObject({ hits: 1, shapeHits: 1, misses: 1, size: 1 });
    // A different table is a different shape.
    expect(cache.get('SELECT abalance FROM pgbench_branches WHERE aid = 17')).not.toBe(first);
  });

  it('statements whose decision reads a number are cached by exact text only', () => {
    const cache = new ClassificationCache();
    const on = cache.get('SET default_transaction_read_only = 1');
    expect(on.ok && on.readsNumbers).toBe(true);
    const off = cache.get('SET default_transaction_read_only = 0');
    expect(off).not.toBe(on);
    expect(cache.stats()).toMatchObject({ hits: 0, shapeHits: 0, misses: 2, size: 2 });
    // Several statements in one string keep their own texts, so they are not shared either.
    const pair = cache.get('SELECT 1; SELECT 2');
    expect(cache.get('SELECT 3; SELECT 4')).not.toBe(pair);
  });

  it('caches failures too, and skips very long texts', () => {
    const cache = new ClassificationCache({ maxEntryChars: 20 });
    expect(cache.get('selec 1').ok).toBe(false);
    expect(cache.has('selec 1')).toBe(true);
    const long = `SELECT ${'1 + '.repeat(10)}1`;
    expect(cache.get(long).ok).toBe(true);
    expect(cache.has(long)).toBe(false);
  });

  it('defaults to 10,000 entries and rejects a bad size', () => {
    expect(new ClassificationCache().maxEntries).toBe(10_000);
    expect(() => new ClassificationCache({ maxEntries: 0 })).toThrow(RangeError);
  });

  it('measures classification time on miss vs hit (printed, not asserted)', () => {
    const sql = (i: number) =>
      `SELECT o.id, o.total, c.name FROM app.orders o JOIN app.customers c ON c.id = o.customer_id WHERE o.created_at > now() - interval '1 day' AND o.status = $1 ORDER BY o.created_at DESC LIMIT ${i + 10}`;
    const n = 2000;
    for (let i = 0; i < 200; i++) classify(sql(i)); // warm up
    let t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) classify(sql(i));
    const missNs = Number(process.hrtime.bigint() - t0) / n;
    const cache = new ClassificationCache();
    cache.get(sql(0));
    t0 = process.hrtime.bigint();
    for (let i = 0; i < n * 10; i++) cache.get(sql(0));
    const hitNs = Number(process.hrtime.bigint() - t0) / (n * 10);
    console.log(
      `classification of a typical SELECT: miss ${(missNs / 1000).toFixed(1)} µs (parse + walk), hit ${(hitNs / 1000).toFixed(2)} µs (cache lookup)`,
    );
    expect(missNs).toBeGreaterThan(0);
  });
});
