// Differential check of the classifier against a real Postgres: every
// statement is run inside BEGIN READ ONLY in a scratch schema. Whenever
// Postgres refuses a statement because the transaction is read-only
// (SQLSTATE 25006), the classifier must not have called it 'read'. The
// classifier is stricter than Postgres' read-only mode (advisory locks, LOCK,
// NOTIFY, EXECUTE … are 'write' here), so the reverse is not asserted, except
// for the statements listed as plain reads, which Postgres must accept.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classify } from '../src/policy/index.js';

const PG_URL = process.env.WARDEN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const SCHEMA = `warden_policy_${process.pid}_${Date.now()}`;

/** Statements Postgres must accept in a read-only transaction, and that are read here. */
const READS = [
  'SELECT * FROM t',
  'SELECT count(*), max(t.a) FROM t JOIN u USING (id)',
  'WITH x AS (SELECT * FROM t) SELECT * FROM x',
  'VALUES (1)',
  'TABLE t',
  "SELECT 'DROP TABLE t; DELETE FROM u'",
  'SELECT $$; DELETE FROM t; $$',
  "SELECT U&'\\0027; DELETE FROM t; --'",
  'SELECT 1 /* outer /* inner */ ; DELETE FROM t; */',
  'EXPLAIN DELETE FROM t',
  'EXPLAIN SELECT * FROM t',
  'SHOW search_path',
  'SET LOCAL statement_timeout = 1000',
  "SET LOCAL application_name = 'x'",
  "SELECT set_config('search_path', current_setting('search_path'), true)",
  'SAVEPOINT a',
  'DECLARE c CURSOR FOR SELECT * FROM t',
  'SELECT pg_sleep(0)',
  "SELECT query_to_xml('SELECT * FROM t', true, false, '')",
  'SET TRANSACTION ISOLATION LEVEL REPEATABLE READ',
  'SET TRANSACTION READ ONLY',
];

/** Statements to run; Postgres refusing one for read-only mode means it must not be 'read'. */
const PROBES = [
  ...READS,
  'INSERT INTO t VALUES (1, 1)',
  'UPDATE t SET a = 2',
  'DELETE FROM t',
  'MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE',
  'WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x',
  'SELECT * FROM (WITH d AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM d) s',
  'SELECT * INTO new_t FROM t',
  'CREATE TABLE x AS SELECT * FROM t',
  'CREATE TABLE y (a int)',
  'CREATE VIEW v AS SELECT 1',
  'DROP TABLE u',
  "SELECT nextval('s')",
  "SELECT setval('s', 5)",
  "SELECT CASE WHEN true THEN nextval('s') END",
  "SELECT * FROM t WHERE a = (SELECT nextval('s'))",
  "SELECT abs(nextval('s'))",
  "SELECT \"nextval\"('s')",
  "SELECT pg_catalog.nextval('s')",
  "SELECT query_to_xml('SELECT nextval(''s'')', true, false, '')",
  'SELECT * FROM t FOR UPDATE',
  'SELECT * FROM t FOR SHARE',
  'EXPLAIN ANALYZE DELETE FROM t',
  'EXPLAIN ANALYZE INSERT INTO t VALUES (2, 2)',
  'TRUNCATE t',
  'LOCK t IN EXCLUSIVE MODE',
  'LOCK t IN ACCESS SHARE MODE',
  'REFRESH MATERIALIZED VIEW mv',
  "COMMENT ON TABLE t IS 'x'",
  'GRANT SELECT ON t TO PUBLIC',
  'ALTER TABLE t ADD COLUMN c int',
  'CREATE INDEX ON t (a)',
  'CREATE SEQUENCE s2',
  "SELECT set_config('transaction_read_only', 'off', true)",
  'SET transaction_read_only = off',
  'SET TRANSACTION READ WRITE',
  'NOTIFY c',
  "SELECT pg_notify('c', 'x')",
  'SELECT pg_advisory_xact_lock(1)',
  'LISTEN c',
  'SELECT lo_create(0)',
  "SELECT lo_from_bytea(0, '\\x00')",
  'PREPARE p AS DELETE FROM t',
  'DO $$ BEGIN NULL; END $$',
];

describe('policy: classifier vs Postgres read-only mode', () => {
  let client: pg.Client;
  const outcomes = new Map<string, string | undefined>(); // statement → SQLSTATE (undefined: accepted)

  beforeAll(async () => {
    client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    await client.query(`CREATE SCHEMA ${SCHEMA}`);
    await client.query(`SET search_path = ${SCHEMA}`);
    await client.query(
      `CREATE TABLE t (id int, a int); CREATE TABLE u (id int, a int); CREATE SEQUENCE s;
       INSERT INTO t VALUES (1, 1); INSERT INTO u VALUES (1, 1);
       CREATE MATERIALIZED VIEW mv AS SELECT * FROM t`,
    );
    for (const sql of PROBES) {
      await client.query('BEGIN READ ONLY');
      try {
        await client.query(sql);
        outcomes.set(sql, undefined);
      } catch (err) {
        outcomes.set(sql, (err as { code?: string }).code ?? 'unknown');
      } finally {
        await client.query('ROLLBACK');
      }
    }
  });

  afterAll(async () => {
    if (!client) return;
    await client.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`).catch(() => undefined);
    await client.end();
  });

  it('never calls read what Postgres refuses in a read-only transaction', () => {
    const refused = PROBES.filter((sql) => outcomes.get(sql) === '25006');
    expect(refused.length).toBeGreaterThan(25);
    const misclassified = refused.filter((sql) => {
      const c = classify(sql);
      return !c.ok || c.statements.some((s) => s.access === 'read');
    });
    expect(misclassified).toEqual([]);
  });

  it('the plain reads are read here and accepted by Postgres in read-only mode', () => {
    for (const sql of READS) {
      const c = classify(sql);
      expect(c.ok && c.statements.every((s) => s.access === 'read'), sql).toBe(true);
      expect(outcomes.get(sql), sql).toBeUndefined();
    }
  });

  it('shows which probes Postgres refuses and how they are classified (printed)', () => {
    const rows = PROBES.filter((sql) => !READS.includes(sql)).map((sql) => {
      const c = classify(sql);
      const level = c.ok ? c.statements.map((s) => s.access).join(',') : 'parse error';
      return `${(outcomes.get(sql) ?? 'ok').padEnd(7)} ${level.padEnd(6)} ${sql}`;
    });
    console.log(`SQLSTATE in READ ONLY / classifier level / statement\n${rows.join('\n')}`);
    expect(rows.length).toBe(PROBES.length - READS.length);
  });
});
