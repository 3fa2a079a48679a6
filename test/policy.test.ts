// Least privilege end to end: the policy file applied with the CLI, then every
// statement of the corpus sent by real clients (psql, node-postgres over the
// extended protocol, postgres.js) through gateway and agent.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import { join } from 'node:path';
import { ROOT, createDatabase, sh, startStack, type Stack, type TestDatabase } from './support/stack.js';

let db: TestDatabase;
let stack: Stack;

/** Statements a read-only identity must never get through, each with the SQLSTATE it gets. */
const REFUSED_FOR_READ: Array<[string, string]> = [
  ['DELETE FROM orders', '42501'],
  ['/* harmless */ DELETE FROM orders -- really', '42501'],
  ['SELECT 1; DROP TABLE orders', '42501'],
  ['sElEcT 1; dRoP tAbLe "orders"', '42501'],
  ['WITH gone AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM gone', '42501'],
  ['SELECT * INTO stolen FROM orders', '42501'],
  ['CREATE TABLE stolen AS SELECT * FROM orders', '42501'],
  ['EXPLAIN ANALYZE DELETE FROM orders', '42501'],
  ["SELECT nextval('orders_id_seq')", '42501'],
  ["SELECT (SELECT setval('orders_id_seq', 1000))", '42501'],
  ["SELECT set_config('default_transaction_read_only', 'off', false)", '42501'],
  ['SELECT pg_terminate_backend(pg_backend_pid())', '42501'],
  ['SELECT pg_catalog.pg_cancel_backend(1)', '42501'],
  ["SELECT pg_read_file('/etc/passwd')", '42501'],
  ["SELECT lo_import('/etc/passwd')", '42501'],
  ['SET ROLE postgres', '42501'],
  ['SET SESSION AUTHORIZATION postgres', '42501'],
  ['RESET ROLE', '42501'],
  ['BEGIN READ WRITE', '42501'],
  ['START TRANSACTION READ WRITE', '42501'],
  ['SET default_transaction_read_only = off', '42501'],
  ['SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE', '42501'],
  ["DO $$ BEGIN DELETE FROM orders; END $$", '42501'],
  ["DO $x$ BEGIN EXECUTE 'DROP TABLE orders'; END $x$", '42501'],
  ["COPY orders TO PROGRAM 'cat > /tmp/x'", '42501'],
  ["COPY orders FROM '/etc/passwd'", '42501'],
  ['LOCK TABLE orders', '42501'],
  ['VACUUM orders', '42501'],
  ['ANALYZE orders', '42501'],
  ['REINDEX TABLE orders', '42501'],
  ['NOTIFY events', '42501'],
  ["SELECT pg_notify('events', 'x')", '42501'],
  ['PREPARE zap AS DELETE FROM orders', '42501'],
  ['DECLARE c CURSOR FOR SELECT nextval(\'orders_id_seq\')', '42501'],
  ['GRANT ALL ON orders TO PUBLIC', '42501'],
  ['REVOKE SELECT ON orders FROM PUBLIC', '42501'],
  ['CREATE ROLE intruder SUPERUSER', '42501'],
  ["ALTER SYSTEM SET work_mem = '1GB'", '42501'],
  ['CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$', '42501'],
  ['SELECT * FROM orders FOR UPDATE', '42501'],
  ['TRUNCATE orders', '42501'],
  ['UPDATE orders SET amount = 0', '42501'],
  ['INSERT INTO orders (amount) VALUES (1)', '42501'],
  ["SELECT U&\"\\0064rop\" FROM orders", '42703'], // an identifier, not a statement: Postgres' own error
  ['SELEC oops', '42601'],
];

const ALLOWED_FOR_READ = [
  'SELECT count(*) FROM orders',
  "SELECT 'DROP TABLE orders' AS text",
  'SELECT $$; DROP TABLE orders; $$ AS text',
  'SHOW default_transaction_read_only',
  'EXPLAIN DELETE FROM orders',
  'BEGIN READ ONLY; SELECT 1; COMMIT',
  "SET application_name = 'x'",
  'LISTEN events',
];

beforeAll(async () => {
  db = await createDatabase('warden_policy');
  await db.query(`CREATE TABLE orders (id serial PRIMARY KEY, amount int NOT NULL)`);
  await db.query(`CREATE TABLE customers (id int PRIMARY KEY, name text)`);
  await db.query(`INSERT INTO orders (amount) SELECT g FROM generate_series(1, 10) g`);
  await db.query(`INSERT INTO customers VALUES (1, 'Ada')`);
  stack = await startStack({ upstream: db.url, resource: 'shop' });
  const applied = await stack.cli('policy', 'apply', '-f', join(ROOT, 'test/fixtures/policy.yaml'));
  expect(applied.stderr).toBe('');
  expect(applied.code).toBe(0);
  await new Promise((r) => setTimeout(r, 500)); // the new snapshot reaches the gateway
});

afterAll(async () => {
  await stack?.stop();
  await db?.drop();
});

async function client(sub: string) {
  const c = new pg.Client({ host: stack.host, port: stack.port, user: sub, database: 'shop', password: await stack.token(sub) });
  await c.connect();
  return c;
}

async function unchanged() {
  const orders = await db.query('SELECT count(*)::int AS n, sum(amount)::int AS s FROM orders');
  expect(orders.rows[0]).toEqual({ n: 10, s: 55 });
  const tables = await db.query(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`);
  expect(tables.rows[0].n).toBe(2);
  const roles = await db.query(`SELECT count(*)::int AS n FROM pg_roles WHERE rolname = 'intruder'`);
  expect(roles.rows[0].n).toBe(0);
  const seq = await db.query(`SELECT last_value::int AS v FROM orders_id_seq`);
  expect(seq.rows[0].v).toBe(10);
}

describe('a read-only identity', () => {
  it('is refused every statement of the corpus over the simple protocol (psql), and nothing changes', async () => {
    const token = await stack.token('ci-reader');
    for (const [sql, code] of REFUSED_FOR_READ) {
      const r = await sh('psql', [stack.conninfo({ user: 'ci-reader' }), '-X', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose', '-c', sql], { PGPASSWORD: token });
      expect(r.code, sql).not.toBe(0);
      expect(r.stderr, sql).toContain(`ERROR:  ${code}`);
      if (code === '42501') expect(r.stderr, sql).toMatch(/warden: ci-reader \(read\) may not .* on shop/);
    }
    await unchanged();
  });

  it('is refused the same over the extended protocol (node-postgres), and the session stays usable', async () => {
    const c = await client('ci-reader');
    let n = 0;
    for (const [sql, code] of REFUSED_FOR_READ) {
      if (sql.includes(';')) continue; // one statement per Parse
      // A named statement makes node-postgres use Parse/Bind/Execute.
      const err = await c.query({ name: `s${n++}`, text: sql }).then(() => null, (e) => e);
      expect(err?.code, sql).toBe(code);
      const ok = await c.query('SELECT $1::int AS n', [1]);
      expect(ok.rows[0].n).toBe(1);
    }
    await c.end();
    await unchanged();
  });

  it('names identity, access, statement, object, resource and rule in the refusal', async () => {
    const c = await client('ci-reader');
    const err = await c.query('DROP TABLE public.orders').catch((e) => e);
    expect(err.code).toBe('42501');
    expect(err.message).toBe('warden: ci-reader (read) may not DROP TABLE public.orders on shop (rule: ci-read-only)');
    await c.end();
  });

  it('sees a failed transaction after a refusal inside one, exactly as after a server error', async () => {
    const c = await client('ci-reader');
    await c.query('BEGIN');
    await c.query('SELECT 1');
    await expect(c.query('DELETE FROM orders')).rejects.toMatchObject({ code: '42501' });
    await expect(c.query('SELECT 1')).rejects.toMatchObject({ code: '25P02' });
    await c.query('ROLLBACK');
    expect((await c.query('SELECT count(*)::int AS n FROM orders')).rows[0].n).toBe(10);
    await c.end();
  });

  it('runs statements before a refused one in a multi-statement query, and none after', async () => {
    const token = await stack.token('ci-reader');
    const r = await sh('psql', [stack.conninfo({ user: 'ci-reader' }), '-X', '-At', '-c', "SELECT 'before'; DROP TABLE orders; SELECT 'after'"], { PGPASSWORD: token });
    expect(r.stdout).toContain('before');
    expect(r.stdout).not.toContain('after');
    expect(r.stderr).toContain('may not DROP TABLE orders');
  });

  it('gets its allowed statements through, on an upstream session opened read-only', async () => {
    const c = await client('ci-reader');
    for (const sql of ALLOWED_FOR_READ) await expect(c.query(sql), sql).resolves.toBeDefined();
    const ro = await c.query('SHOW default_transaction_read_only');
    expect(ro.rows[0].default_transaction_read_only).toBe('on');
    await c.end();
  });

  it('is refused through postgres.js too, with pipelined queries', async () => {
    const sql = postgres({ host: stack.host, port: stack.port, user: 'ci-reader', database: 'shop', password: await stack.token('ci-reader'), max: 1, onnotice: () => {} });
    const results = await Promise.allSettled([sql`SELECT 1 AS a`, sql`DELETE FROM orders`, sql`SELECT 2 AS b`]);
    expect(results[0]).toMatchObject({ status: 'fulfilled' });
    expect(results[1]).toMatchObject({ status: 'rejected', reason: { code: '42501' } });
    expect(results[2]).toMatchObject({ status: 'fulfilled' });
    await sql.end();
    await unchanged();
  });
});

describe('write and ddl identities do their jobs', () => {
  it('a write identity changes data but not schema', async () => {
    const c = await client('ci-writer');
    await c.query('BEGIN');
    await c.query('INSERT INTO orders (id, amount) VALUES (1000, $1)', [5]); // an explicit id leaves the sequence as unchanged() expects
    await c.query('UPDATE orders SET amount = amount WHERE id = 1');
    await c.query('DELETE FROM orders WHERE amount = 5 AND id > 10');
    await c.query('ROLLBACK');
    await expect(c.query('DROP TABLE orders')).rejects.toMatchObject({ code: '42501', message: expect.stringContaining('ci-writer (write) may not DROP TABLE orders') });
    await expect(c.query('SET ROLE postgres')).rejects.toMatchObject({ code: '42501' });
    await c.end();
  });

  it('a ddl identity creates and drops tables but cannot grant', async () => {
    const c = await client('ci-ddl');
    await c.query('CREATE TABLE scratch (id int)');
    await c.query('ALTER TABLE scratch ADD COLUMN note text');
    await c.query('DROP TABLE scratch');
    await expect(c.query('GRANT ALL ON orders TO PUBLIC')).rejects.toMatchObject({ code: '42501' });
    await c.end();
  });

  it('a table-scoped identity reads its table only', async () => {
    const c = await client('ci-scoped');
    await expect(c.query('SELECT count(*) FROM orders')).resolves.toBeDefined();
    await expect(c.query('SELECT * FROM customers')).rejects.toMatchObject({ code: '42501' });
    await c.end();
  });
});

describe('warden policy check', () => {
  it('explains decisions without running anything', async () => {
    const allowed = await stack.cli('policy', 'check', '--as', 'ci-reader', '--resource', 'shop', 'SELECT * FROM orders');
    expect(allowed.code).toBe(0);
    expect(allowed.stdout).toMatch(/allowed.*ci-read-only/);
    const refused = await stack.cli('policy', 'check', '--as', 'ci-reader', '--resource', 'shop', 'DROP TABLE orders');
    expect(refused.code).toBe(0);
    expect(refused.stdout).toMatch(/refused: warden: ci-reader \(read\) may not DROP TABLE orders on shop \(rule: ci-read-only\)/);
    await unchanged();
  });

  it('a new policy version reaches open sessions', async () => {
    const c = await client('ci-writer');
    const tightened = (await import('node:fs')).readFileSync(join(ROOT, 'test/fixtures/policy.yaml'), 'utf8').replace(/access: write/, 'access: read');
    const file = join(stack.dataDir, 'tight.yaml');
    (await import('node:fs')).writeFileSync(file, tightened);
    expect((await stack.cli('policy', 'apply', '-f', file)).code).toBe(0);
    await new Promise((r) => setTimeout(r, 1000));
    await expect(c.query('INSERT INTO orders (amount) VALUES (1)')).rejects.toMatchObject({ code: '42501' });
    await c.end();
    expect((await stack.cli('policy', 'apply', '-f', join(ROOT, 'test/fixtures/policy.yaml'))).code).toBe(0);
  });
});
