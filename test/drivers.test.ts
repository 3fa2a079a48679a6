// Mainstream drivers other than the node ones, through gateway and agent:
// pgjdbc (Java), psycopg2 (Python, libpq underneath) and libpq's own tools.
// Each runs a parameterized query, a multi-row result, a refused statement
// with its SQLSTATE and transactions. A driver that is not installed fails
// its test (see .ci/run, which installs them): a missing driver is a failed
// requirement, not something to skip.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, ROOT, sh, startStack, type Stack, type TestDatabase } from './support/stack.js';

const JDBC_JAR = process.env.WARDEN_TEST_JDBC_JAR ?? '/usr/share/java/postgresql.jar';
// Debian's interpreter, where python3-psycopg2 lives (a pyenv python may come first in PATH).
const PYTHON = process.env.WARDEN_TEST_PYTHON ?? '/usr/bin/python3';
const DRIVERS = join(ROOT, 'test/drivers');

let db: TestDatabase;
let stack: Stack;
let env: Record<string, string>;

const NAMES = Array.from({ length: 20 }, (_, i) => `item-${i + 1}`);
// Rows 1..10 with their id doubled, as both drivers print them.
const PARAM_RESULT = NAMES.slice(0, 10).map((n, i) => `${n}:${(i + 1) * 2}`).join(',');
const REFUSAL = /^warden: demo \(read\) may not DELETE items on drivers \(rule: demo-read-only\)$/;

beforeAll(async () => {
  db = await createDatabase('warden_drivers');
  await db.query(`CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)`);
  await db.query(`INSERT INTO items SELECT i, 'item-' || i FROM generate_series(1, 20) i`);
  await db.query(`CREATE TABLE notes (id serial PRIMARY KEY, note text NOT NULL)`);
  stack = await startStack({ upstream: db.url, resource: 'drivers' });
  env = { WARDEN_TOKEN_READ: await stack.token('demo'), WARDEN_TOKEN_ADMIN: await stack.token('demo-admin') };
});

afterAll(async () => {
  await stack?.stop();
  await db?.drop();
});

/** key=value lines into an object. */
function lines(stdout: string): Record<string, string> {
  return Object.fromEntries(
    stdout
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

describe('JDBC (pgjdbc)', () => {
  it('parameterized, server-prepared, multi-row, refused and transactional statements', async () => {
    expect(existsSync(JDBC_JAR), `the PostgreSQL JDBC driver is not installed: ${JDBC_JAR} is missing (apt-get install libpostgresql-jdbc-java)`).toBe(true);
    // Running a source file needs a JDK (11 or later), not just a JRE.
    const jdk = await sh('javac', ['-version']);
    expect(jdk.code, `no JDK in PATH to run ${join(DRIVERS, 'JdbcCheck.java')} (apt-get install default-jdk-headless)`).toBe(0);
    const url = `jdbc:postgresql://${stack.host}:${stack.port}/${stack.resource}`;
    const r = await sh('java', ['-cp', JDBC_JAR, join(DRIVERS, 'JdbcCheck.java')], { ...env, WARDEN_JDBC_URL: url });
    expect(r.code, r.stderr).toBe(0);
    const out = lines(r.stdout);
    expect(out.param).toBe(PARAM_RESULT);
    // pgjdbc switched to a named statement after prepareThreshold executions: Parse once, then Bind/Execute.
    expect(out.server_prepared).toBe('1');
    expect(out.rows).toBe(`20,210,item-20`);
    expect(out.fetched_in_batches).toBe('20');
    expect(out.delete).toBeUndefined();
    expect(out.delete_sqlstate).toBe('42501');
    expect(out.delete_message).toMatch(/^ERROR: warden: demo \(read\) may not DELETE items on drivers \(rule: demo-read-only\)$/);
    expect(out.after_error).toBe('20');
    expect(out.tx_error).toBe('22012');
    expect(out.tx_aborted).toBe('25P02');
    expect(out.tx_notes).toBe('jdbc committed');
    expect(out.done).toBe('yes');
  });
});

describe('Python (psycopg2)', () => {
  it('parameterized, multi-row, server-side cursor, refused and transactional statements', async () => {
    const probe = await sh(PYTHON, ['-c', 'import psycopg2; print(psycopg2.__version__)']);
    expect(probe.code, `psycopg2 is not importable by ${PYTHON} (apt-get install python3-psycopg2): ${probe.stderr}`).toBe(0);
    const dsn = `host=${stack.host} port=${stack.port} dbname=${stack.resource}`;
    const r = await sh(PYTHON, [join(DRIVERS, 'psycopg2_check.py')], { ...env, WARDEN_DSN: dsn });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toEqual({
      param: PARAM_RESULT,
      rows: [20, 210, 'item-20'],
      delete_sqlstate: '42501',
      delete_message: expect.stringMatching(REFUSAL),
      after_error: 20,
      cursor_rows: 20,
      tx_error: '22012',
      tx_aborted: '25P02',
      tx_notes: 'psycopg2 committed',
    });
  });
});

describe('libpq tools', () => {
  it('pg_isready sees the gateway accepting connections', async () => {
    const r = await sh('pg_isready', ['-h', stack.host, '-p', String(stack.port), '-d', stack.resource, '-U', 'demo']);
    expect(r.stdout).toMatch(/accepting connections/);
    expect(r.code).toBe(0);
  });
});
