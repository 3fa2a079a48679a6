// Protocol fidelity, end to end: real clients (a raw v3 client, node-postgres
// with pg-cursor and pg-query-stream, postgres.js, psql, pgbench) through
// gateway and agent to the machine's Postgres. Where it can, a test runs the
// same exchange against Postgres directly and through Warden and requires the
// same answer: byte for byte for the raw client, the same output for psql.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import Cursor from 'pg-cursor';
import QueryStream from 'pg-query-stream';
import postgres from 'postgres';
import { RawClient, dataRowValues, describeMessage, serialize, type Message } from './support/raw-client.js';
import { createDatabase, sh, startStack, type Stack, type TestDatabase } from './support/stack.js';

let db: TestDatabase;
let stack: Stack;
const RESOURCE = 'proto';

beforeAll(async () => {
  db = await createDatabase('warden_proto');
  await db.query(`CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL)`);
  await db.query(`INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g`);
  await db.query(`CREATE TABLE ledger (id int PRIMARY KEY, note text)`);
  stack = await startStack({ upstream: db.url, resource: RESOURCE });
});

afterAll(async () => {
  await stack?.stop();
  await db?.drop();
});

/** node-postgres through Warden; 'demo' may only read, 'demo-admin' may write. */
async function viaWarden(sub = 'demo', extra: Partial<pg.ClientConfig> = {}) {
  const c = new pg.Client({ host: stack.host, port: stack.port, user: sub, database: RESOURCE, password: await stack.token(sub), ...extra });
  c.on('error', () => {}); // a failed test can leave it open when the stack stops; queries still reject
  await c.connect();
  return c;
}

async function directly(extra: Partial<pg.ClientConfig> = {}) {
  const c = new pg.Client({ connectionString: db.url, ...extra });
  await c.connect();
  return c;
}

async function rawViaWarden(sub = 'demo') {
  return RawClient.connect({ host: stack.host, port: stack.port, user: sub, database: RESOURCE, password: await stack.token(sub) });
}

async function rawDirect() {
  const u = new URL(db.url);
  return RawClient.connect({ host: u.hostname, port: Number(u.port || 5432), user: decodeURIComponent(u.username), database: db.name });
}

/**
 * Runs one exchange against Postgres directly, then through Warden: the
 * server's answers must be the same messages, byte for byte.
 */
async function sameAsPostgres(exchange: (c: RawClient) => Promise<Message[]>, sub = 'demo'): Promise<Message[]> {
  const d = await rawDirect();
  const expected = await exchange(d);
  await d.end();
  const w = await rawViaWarden(sub);
  const got = await exchange(w);
  await w.end();
  expect(got.map(describeMessage)).toEqual(expected.map(describeMessage));
  expect(got.map((m) => m.raw.toString('hex'))).toEqual(expected.map((m) => m.raw.toString('hex')));
  return got;
}

/** Fails instead of hanging when something that must arrive never does. */
function within<T>(p: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let t: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what} did not arrive within ${ms} ms`)), ms)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

const { parse, bind, describe: describeMsg, execute, close, flush, sync, query } = serialize;

describe('extended query protocol, message by message', () => {
  it('Parse, Describe, Bind, Execute and Close of a named statement and portal answer as Postgres does', async () => {
    const got = await sameAsPostgres(async (c) => {
      c.send(
        parse({ name: 'by_id', text: 'SELECT id, label FROM items WHERE id = $1', types: [23] }),
        describeMsg({ type: 'S', name: 'by_id' }),
        bind({ statement: 'by_id', portal: 'p1', values: ['7'] }),
        describeMsg({ type: 'P', name: 'p1' }),
        execute({ portal: 'p1' }),
        close({ type: 'P', name: 'p1' }),
        sync(),
      );
      const first = await c.until('readyForQuery');
      // The named statement outlives Sync; bound again into the unnamed portal, then closed.
      c.send(bind({ statement: 'by_id', values: ['8'] }), execute(), close({ type: 'S', name: 'by_id' }), sync());
      const second = await c.until('readyForQuery');
      c.send(bind({ statement: 'by_id', values: ['9'] }), execute(), sync());
      const third = await c.until('readyForQuery');
      return [...first, ...second, ...third];
    });
    expect(got.map(describeMessage)).toEqual([
      ...['parseComplete', 'parameterDescription 23', 'rowDescription id:text,label:text', 'bindComplete', 'rowDescription id:text,label:text'],
      ...['dataRow 7|item 7', 'commandComplete SELECT 1', 'closeComplete', 'readyForQuery I'],
      ...['bindComplete', 'dataRow 8|item 8', 'commandComplete SELECT 1', 'closeComplete', 'readyForQuery I'],
      ...['error 26000', 'readyForQuery I'], // the statement was closed
    ]);
  });

  it('the unnamed statement and portal are replaced by the next Parse and Bind, and survive Sync', async () => {
    const got = await sameAsPostgres(async (c) => {
      c.send(
        parse({ text: 'SELECT $1::int + 1 AS n' }),
        bind({ values: ['41'] }),
        execute(),
        parse({ text: "SELECT 'second' AS s" }),
        bind(),
        describeMsg({ type: 'P' }),
        execute(),
        sync(),
      );
      const first = await c.until('readyForQuery');
      c.send(bind(), execute(), sync());
      return [...first, ...(await c.until('readyForQuery'))];
    });
    expect(got.map(describeMessage)).toEqual([
      ...['parseComplete', 'bindComplete', 'dataRow 42', 'commandComplete SELECT 1'],
      ...['parseComplete', 'bindComplete', 'rowDescription s:text', 'dataRow second', 'commandComplete SELECT 1', 'readyForQuery I'],
      ...['bindComplete', 'dataRow second', 'commandComplete SELECT 1', 'readyForQuery I'],
    ]);
  });

  it('Execute with a row limit suspends the portal, and the next Execute goes on where it stopped', async () => {
    const got = await sameAsPostgres(async (c) => {
      c.send(parse({ name: 'five', text: 'SELECT g FROM generate_series(1, 5) g' }), bind({ statement: 'five', portal: 'cur' }), execute({ portal: 'cur', rows: 2 }), flush());
      const a = await c.until('portalSuspended');
      c.send(execute({ portal: 'cur', rows: 2 }), flush());
      const b = await c.until('portalSuspended');
      c.send(execute({ portal: 'cur' }), sync());
      return [...a, ...b, ...(await c.until('readyForQuery'))];
    });
    expect(got.map(describeMessage)).toEqual([
      ...['parseComplete', 'bindComplete', 'dataRow 1', 'dataRow 2', 'portalSuspended'],
      ...['dataRow 3', 'dataRow 4', 'portalSuspended'],
      ...['dataRow 5', 'commandComplete SELECT 1', 'readyForQuery I'],
    ]);
  });

  it('Flush brings the answers so far without waiting for Sync', async () => {
    await sameAsPostgres(async (c) => {
      c.send(parse({ name: 'one', text: 'SELECT 1 AS one' }), flush());
      const parsed = await c.next();
      expect(parsed.name).toBe('parseComplete');
      c.send(bind({ statement: 'one' }), execute(), flush());
      const ran = [await c.next(), await c.next(), await c.next()];
      expect(ran.map(describeMessage)).toEqual(['bindComplete', 'dataRow 1', 'commandComplete SELECT 1']);
      c.send(sync());
      const ready = await c.next(); // the very next message: nothing else came before Sync
      expect(describeMessage(ready)).toBe('readyForQuery I');
      return [parsed, ...ran, ready];
    });
  });

  it('a thousand queries pipelined before one Sync come back in order', async () => {
    const n = 1000;
    const pad = 'x'.repeat(200); // about 250 KB of requests in one write: many link frames and TCP segments
    const got = await sameAsPostgres(async (c) => {
      const batch: Buffer[] = [];
      for (let i = 1; i <= n; i++) batch.push(parse({ text: `SELECT ${i} * 2 AS n, '${pad}' AS pad` }), bind(), execute());
      c.send(...batch, sync());
      return c.until('readyForQuery');
    });
    const rows = got.filter((m) => m.name === 'dataRow').map((m) => Number((m.fields as string[])[0]));
    expect(rows).toEqual(Array.from({ length: n }, (_, i) => (i + 1) * 2));
    expect(got.filter((m) => m.name === 'readyForQuery')).toHaveLength(1);
  });

  it('an error inside a pipeline discards everything up to Sync, including earlier writes, and the session goes on', async () => {
    const got = await sameAsPostgres(async (c) => {
      c.send(query('CREATE TEMP TABLE t (n int)'));
      await c.until('readyForQuery');
      c.send(
        parse({ name: 'ins', text: 'INSERT INTO t VALUES ($1)' }),
        bind({ statement: 'ins', values: ['1'] }),
        execute(),
        parse({ text: 'SELECT 10 / $1::int AS q' }),
        bind({ values: ['0'] }),
        execute(),
        bind({ statement: 'ins', values: ['2'] }),
        execute(),
        sync(),
        query('SELECT count(*) AS rows FROM t'),
      );
      const failed = await c.until('readyForQuery');
      const after = await c.until('readyForQuery');
      c.send(bind({ statement: 'ins', values: ['3'] }), execute(), sync(), query('SELECT count(*) AS rows FROM t'));
      return [...failed, ...after, ...(await c.until('readyForQuery')), ...(await c.until('readyForQuery'))];
    }, 'demo-admin');
    expect(got.map(describeMessage)).toEqual([
      ...['parseComplete', 'bindComplete', 'commandComplete INSERT 0 1', 'parseComplete'],
      'error 22012', // at Bind, where the unnamed statement is planned with its parameter
      'readyForQuery I', // one ReadyForQuery: the second INSERT was skipped
      ...['rowDescription rows:text', 'dataRow 0', 'commandComplete SELECT 1', 'readyForQuery I'], // the first INSERT was rolled back too
      ...['bindComplete', 'commandComplete INSERT 0 1', 'readyForQuery I'], // the named statement survived the error
      ...['rowDescription rows:text', 'dataRow 1', 'commandComplete SELECT 1', 'readyForQuery I'],
    ]);
  });
});

describe('node-postgres', () => {
  it('prepares a named statement once and reuses it', async () => {
    const c = await viaWarden();
    for (let i = 1; i <= 20; i++) {
      const r = await c.query({ name: 'label_of', text: 'SELECT label FROM items WHERE id = $1', values: [i * 7] });
      expect(r.rows).toEqual([{ label: `item ${i * 7}` }]);
    }
    const prepared = await c.query(`SELECT name FROM pg_prepared_statements`);
    expect(prepared.rows).toEqual([{ name: 'label_of' }]);
    await c.end();
  });

  it('reads through pg-cursor in batches (Execute with a row limit), then goes on', async () => {
    const c = await viaWarden();
    const cursor = c.query(new Cursor('SELECT id, label FROM items WHERE id > $1 ORDER BY id', [0]));
    const sizes: number[] = [];
    const ids: number[] = [];
    for (;;) {
      const rows: Array<{ id: number; label: string }> = await cursor.read(300);
      sizes.push(rows.length);
      ids.push(...rows.map((r) => r.id));
      if (rows.length === 0) break;
    }
    expect(sizes).toEqual([300, 300, 300, 100, 0]);
    expect(ids).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    await cursor.close();
    // A cursor closed half way leaves the session usable too.
    const half = c.query(new Cursor('SELECT g FROM generate_series(1, 100000) g'));
    expect(await half.read(10)).toHaveLength(10);
    await half.close();
    expect((await c.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(1000);
    await c.end();
  });

  it('streams 100k rows through pg-query-stream with the right count and sum', async () => {
    const c = await viaWarden();
    const stream = c.query(new QueryStream('SELECT g, md5(g::text) AS h FROM generate_series(1, $1::int) g', [100_000], { batchSize: 1000 }));
    let count = 0;
    let sum = 0;
    let badHashes = 0;
    for await (const row of stream as AsyncIterable<{ g: number; h: string }>) {
      count++;
      sum += row.g;
      if (!/^[0-9a-f]{32}$/.test(row.h)) badHashes++;
    }
    expect({ count, sum, badHashes }).toEqual({ count: 100_000, sum: 5_000_050_000, badHashes: 0 });
    expect((await c.query('SELECT 1 AS ok')).rows[0].ok).toBe(1);
    await c.end();
  });
});

describe('postgres.js pipelining', () => {
  function sqlClient(sub: string, token: string) {
    return postgres({ host: stack.host, port: stack.port, user: sub, database: RESOURCE, password: token, max: 1, onnotice: () => {} });
  }

  it('sends 500 queries at once on one connection and gets each its own answer', async () => {
    const sql = sqlClient('demo', await stack.token('demo'));
    const ids = Array.from({ length: 500 }, (_, i) => (i * 37) % 1000 + 1);
    const results = await Promise.all(ids.map((id, i) => sql`SELECT ${i}::int AS i, label FROM items WHERE id = ${id}`));
    expect(results.map((r) => r[0])).toEqual(ids.map((id, i) => ({ i, label: `item ${id}` })));
    const backends = await Promise.all([sql`SELECT pg_backend_pid() AS pid`, sql`SELECT pg_backend_pid() AS pid`]);
    expect(backends[0][0].pid).toBe(backends[1][0].pid); // one connection carried them all
    await sql.end();
  });

  it('a failing statement in a pipelined transaction rolls it back whole; the connection goes on', async () => {
    const sql = sqlClient('demo-admin', await stack.token('demo-admin'));
    const failed = await sql
      .begin((tx) => [tx`INSERT INTO ledger VALUES (100, 'first')`, tx`INSERT INTO ledger VALUES (100, 'duplicate')`, tx`INSERT INTO ledger VALUES (101, 'after')`])
      .catch((e: { code?: string }) => e);
    expect(failed).toMatchObject({ code: '23505' });
    expect((await db.query('SELECT count(*)::int AS n FROM ledger WHERE id IN (100, 101)')).rows[0].n).toBe(0);
    const done = await sql.begin((tx) => [tx`INSERT INTO ledger VALUES (100, 'first')`, tx`INSERT INTO ledger VALUES (101, 'after')`]);
    expect(done).toHaveLength(2);
    const rows = await sql`SELECT id, note FROM ledger WHERE id IN (100, 101) ORDER BY id`;
    expect(rows.map((r) => ({ ...r }))).toEqual([{ id: 100, note: 'first' }, { id: 101, note: 'after' }]);
    await sql.end();
  });
});

describe('a simple Query carrying several statements', () => {
  /** psql output against Postgres directly and through Warden (as demo-admin), with the same arguments. */
  async function psqlBoth(args: string[]) {
    const direct = await sh('psql', [db.url, '-X', ...args]);
    const warden = await sh('psql', [stack.conninfo({ user: 'demo-admin' }), '-X', ...args], { PGPASSWORD: await stack.token('demo-admin') });
    return { direct, warden };
  }

  it('psql -c: statements before the error take effect, none after, exactly as against Postgres', async () => {
    const sql = "BEGIN; INSERT INTO ledger VALUES (10, 'committed'); COMMIT; INSERT INTO ledger VALUES (11, 'rolled back'); SELECT 1/0; INSERT INTO ledger VALUES (12, 'skipped')";
    const direct = await sh('psql', [db.url, '-X', '-c', sql]);
    const directRows = (await db.query('SELECT id FROM ledger WHERE id BETWEEN 10 AND 12 ORDER BY id')).rows;
    await db.query('DELETE FROM ledger WHERE id BETWEEN 10 AND 12');
    const warden = await sh('psql', [stack.conninfo({ user: 'demo-admin' }), '-X', '-c', sql], { PGPASSWORD: await stack.token('demo-admin') });
    const wardenRows = (await db.query('SELECT id FROM ledger WHERE id BETWEEN 10 AND 12 ORDER BY id')).rows;
    expect(warden).toEqual(direct);
    expect(warden.code).toBe(1);
    expect(warden.stderr).toContain('ERROR:  division by zero');
    expect(wardenRows).toEqual([{ id: 10 }]);
    expect(directRows).toEqual(wardenRows);
  });

  it.each(['demo', 'demo-admin'])('empty statements and a runtime error answer as from Postgres (%s)', async (sub) => {
    const got = await sameAsPostgres(async (c) => {
      const out: Message[] = [];
      for (const sql of ['', ';', 'SELECT 1 AS a; ; SELECT 2 AS b', "SELECT 'before' AS x; SELECT 1/0; SELECT 'after' AS y"]) {
        c.send(query(sql));
        out.push(...(await c.until('readyForQuery')));
      }
      return out;
    }, sub);
    expect(got.map(describeMessage)).toEqual([
      ...['emptyQuery', 'readyForQuery I', 'emptyQuery', 'readyForQuery I'],
      ...['rowDescription a:text', 'dataRow 1', 'commandComplete SELECT 1', 'rowDescription b:text', 'dataRow 2', 'commandComplete SELECT 1', 'readyForQuery I'],
      ...['rowDescription x:text', 'dataRow before', 'commandComplete SELECT 1', 'error 22012', 'readyForQuery I'],
    ]);
  });

  it('a syntax error anywhere in the string runs nothing, with the error from Postgres itself (admin)', async () => {
    // Below admin, Warden refuses what it cannot parse with its own 42601 (the policy's choice).
    const got = await sameAsPostgres(async (c) => {
      c.send(query("SELECT 'ran' AS a; SELEC 2; SELECT 3"));
      return c.until('readyForQuery');
    }, 'demo-admin');
    expect(got.map(describeMessage)).toEqual(['error 42601', 'readyForQuery I']);
  });

  it('node-postgres: a multi-statement query fails at the error, keeps what was committed, and the session is not left in a transaction', async () => {
    const c = await viaWarden('demo-admin');
    const results = await c.query("SELECT 'a' AS first; SELECT 'b' AS second");
    expect((results as unknown as pg.QueryResult[]).map((r) => r.rows[0])).toEqual([{ first: 'a' }, { second: 'b' }]);
    const err = await c.query("BEGIN; INSERT INTO ledger VALUES (20, 'kept'); COMMIT; INSERT INTO ledger VALUES (21, 'lost'); SELECT 1/0; INSERT INTO ledger VALUES (22, 'never')").catch((e) => e);
    expect(err).toMatchObject({ code: '22012' });
    expect((await c.query('SELECT id FROM ledger WHERE id BETWEEN 20 AND 22 ORDER BY id')).rows).toEqual([{ id: 20 }]);
    expect((await c.query('SELECT now() = statement_timestamp() AS fresh')).rows[0].fresh).toBe(true); // its own transaction: none left open
    await c.end();
  });

  it('psql -f: a script with transactions, savepoints, errors and ON_ERROR_STOP runs as against Postgres', async () => {
    const script = join(stack.dataDir, 'transactions.sql');
    writeFileSync(
      script,
      [
        'CREATE TEMP TABLE accounts (id int PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0));',
        'INSERT INTO accounts VALUES (1, 100), (2, 50);',
        'BEGIN;',
        'UPDATE accounts SET balance = balance - 30 WHERE id = 1;',
        'UPDATE accounts SET balance = balance + 30 WHERE id = 2;',
        'COMMIT;',
        'BEGIN;',
        'UPDATE accounts SET balance = balance - 500 WHERE id = 1;',
        'UPDATE accounts SET balance = balance + 500 WHERE id = 2;',
        'COMMIT;',
        'BEGIN;',
        'INSERT INTO accounts VALUES (3, 0);',
        'SAVEPOINT s;',
        'INSERT INTO accounts VALUES (3, 1);',
        'ROLLBACK TO SAVEPOINT s;',
        'INSERT INTO accounts VALUES (4, 1);',
        'COMMIT;',
        'BEGIN;',
        'DELETE FROM accounts;',
        'ROLLBACK;',
        'SELECT id, balance FROM accounts ORDER BY id;',
        "SELECT 'one' AS a \\; SELECT 'query' AS b;",
        '\\echo psql went on after the errors',
        '\\set ON_ERROR_STOP on',
        'BEGIN;',
        'INSERT INTO accounts VALUES (5, 5);',
        'SELECT 1/0;',
        '\\echo never printed',
        '',
      ].join('\n'),
    );
    const { direct, warden } = await psqlBoth(['-f', script]);
    expect(warden).toEqual(direct);
    expect(warden.code).toBe(3); // ON_ERROR_STOP
    expect(warden.stderr).toContain('violates check constraint');
    expect(warden.stderr).toContain('current transaction is aborted');
    expect(warden.stderr).toContain('duplicate key value');
    expect(warden.stdout).toMatch(/ 1 \|\s+70\n\s+2 \|\s+80\n\s+3 \|\s+0\n\s+4 \|\s+1\n/);
    expect(warden.stdout).toContain('psql went on after the errors');
    expect(warden.stdout).not.toContain('never printed');
  });

  it('psql -1 -f: a single-transaction script that fails commits nothing', async () => {
    const script = join(stack.dataDir, 'single.sql');
    writeFileSync(script, "INSERT INTO ledger VALUES (30, 'one');\nINSERT INTO ledger VALUES (31, 'two');\nINSERT INTO ledger VALUES (30, 'again');\n");
    const { direct, warden } = await psqlBoth(['-1', '-v', 'ON_ERROR_STOP=1', '-f', script]);
    expect(warden).toEqual(direct);
    expect(warden.code).toBe(3);
    expect((await db.query('SELECT count(*)::int AS n FROM ledger WHERE id IN (30, 31)')).rows[0].n).toBe(0);
  });
});

describe('asynchronous messages', () => {
  it('LISTEN/NOTIFY: an idle client gets notifications from other connections, and can tell its own', async () => {
    const listener = await viaWarden();
    await listener.query('LISTEN warden_events');
    const received: pg.Notification[] = [];
    let check = () => {};
    listener.on('notification', (msg) => (received.push(msg), check()));
    const arrived = (n: number) =>
      within(
        new Promise<void>((resolve) => {
          check = () => received.length >= n && resolve();
          check();
        }),
        `${n} notifications`,
      );
    const notifier = await viaWarden('demo-admin');
    await notifier.query("NOTIFY warden_events, 'through warden'");
    await notifier.end();
    await db.query(`SELECT pg_notify('warden_events', 'from postgres directly')`);
    await arrived(2); // the listener sent nothing meanwhile
    // Postgres' NOTIFY docs: compare the notifying pid with your own backend PID to spot your own.
    const self = await viaWarden('demo-admin');
    await self.query('LISTEN warden_events');
    const own = new Promise<pg.Notification>((resolve) => self.once('notification', resolve));
    await self.query("NOTIFY warden_events, 'to myself'");
    const mine = await within(own, 'the own notification');
    await arrived(3);
    const pidOf = (c: pg.Client) => (c as unknown as { processID: number }).processID;
    expect(mine.processId).toBe(pidOf(self));
    expect(received.map((n) => [n.channel, n.payload, n.processId === pidOf(listener)])).toEqual([
      ['warden_events', 'through warden', false],
      ['warden_events', 'from postgres directly', false],
      ['warden_events', 'to myself', false],
    ]);
    await self.end();
    await listener.end();
  });

  it('NoticeResponse from RAISE NOTICE reaches node-postgres and psql', async () => {
    const c = await viaWarden('demo-admin');
    const notices: Array<{ severity?: string; code?: string; message?: string }> = [];
    c.on('notice', (n) => notices.push(n));
    const r = await c.query("DO $$ BEGIN RAISE NOTICE 'careful: %', 42; RAISE WARNING 'and warned'; END $$");
    expect(r.command).toBe('DO');
    expect(notices.map((n) => [n.severity, n.code, n.message])).toEqual([
      ['NOTICE', '00000', 'careful: 42'],
      ['WARNING', '01000', 'and warned'],
    ]);
    await c.end();
    const psql = await sh('psql', [stack.conninfo({ user: 'demo-admin' }), '-X', '-c', "DO $$ BEGIN RAISE NOTICE 'careful: %', 42; END $$"], { PGPASSWORD: await stack.token('demo-admin') });
    expect(psql).toMatchObject({ code: 0, stdout: 'DO\n', stderr: 'NOTICE:  careful: 42\n' });
  });

  it('ParameterStatus after SET reaches the client, as from Postgres', async () => {
    const got = await sameAsPostgres(async (c) => {
      c.send(query("SET application_name = 'renamed by SET'; SET TimeZone = 'Asia/Tokyo'"));
      return c.until('readyForQuery');
    });
    // Postgres reports the changed settings when the whole Query is done.
    expect(got.map((m) => (m.name === 'parameterStatus' ? `${m.parameterName}=${m.parameterValue}` : describeMessage(m)))).toEqual(
      ['commandComplete SET', 'commandComplete SET', 'application_name=renamed by SET', 'TimeZone=Asia/Tokyo', 'readyForQuery I'],
    );
    const c = await viaWarden();
    const statuses: string[] = [];
    (c as unknown as { connection: { on(e: string, f: (m: { parameterName: string; parameterValue: string }) => void): void } }).connection.on(
      'parameterStatus',
      (m) => statuses.push(`${m.parameterName}=${m.parameterValue}`),
    );
    await c.query("SET TimeZone = 'America/Lima'");
    expect(statuses).toEqual(['TimeZone=America/Lima']);
    await c.end();
  });
});

describe('text and binary result formats', () => {
  const VALUES_SQL = `SELECT NULL::int AS nothing, '\\x00ff10'::bytea AS bytes, 12345.6789::numeric AS num, -0.5::numeric(10,3) AS small,
    '2024-02-29 12:34:56.789+00'::timestamptz AS ts, '1999-12-31 23:59:59'::timestamp AS local_ts, '2024-02-29'::date AS day,
    ARRAY[1, NULL, 3]::int[] AS ints, ARRAY['a', 'b c', NULL]::text[] AS texts, true AS yes, 3.5::float8 AS f, 'grüße'::text AS t,
    9007199254740993::int8 AS big, '{"k": [1, 2]}'::jsonb AS doc, $1::int AS param`;

  it('the raw client gets the same bytes in text and in binary, with binary parameters', async () => {
    const got = await sameAsPostgres(async (c) => {
      const param = Buffer.alloc(4);
      param.writeInt32BE(42);
      c.send(parse({ name: 'vals', text: VALUES_SQL, types: [23] }), bind({ statement: 'vals', values: ['42'] }), execute());
      c.send(bind({ statement: 'vals', values: [param], binary: true }), describeMsg({ type: 'P' }), execute(), sync());
      return c.until('readyForQuery');
    });
    const rows = got.filter((m) => m.name === 'dataRow');
    expect(rows).toHaveLength(2);
    const [text, binary] = rows.map(dataRowValues) as [Array<Buffer | null>, Array<Buffer | null>];
    const description = got.find((m) => m.name === 'rowDescription')!;
    expect((description.fields as Array<{ format: string }>).every((f) => f.format === 'binary')).toBe(true);
    expect(text[0]).toBeNull();
    expect(binary[0]).toBeNull();
    expect(text[1]!.toString()).toBe('\\x00ff10');
    expect(binary[1]!.toString('hex')).toBe('00ff10');
    expect(text[2]!.toString()).toBe('12345.6789');
    expect(text[11]!.toString()).toBe('grüße');
    expect(binary[11]!.toString()).toBe('grüße');
    expect(binary[12]!.readBigInt64BE()).toBe(9007199254740993n);
    expect(text[4]!.toString()).toMatch(/^2024-02-29 \d\d:34:56\.789/);
    // timestamptz in binary: microseconds since 2000-01-01 UTC
    expect(binary[4]!.readBigInt64BE()).toBe(BigInt(Date.UTC(2024, 1, 29, 12, 34, 56, 789) - Date.UTC(2000, 0, 1)) * 1000n);
    expect(text[7]!.toString()).toBe('{1,NULL,3}');
    expect(binary[7]!.readInt32BE(0)).toBe(1); // one dimension
    expect(binary[7]!.readInt32BE(4)).toBe(1); // has NULLs
    expect(text[14]!.toString()).toBe('42');
    expect(binary[14]!.readInt32BE()).toBe(42);
  });

  const BINARY = { binary: true } as Partial<pg.ClientConfig>; // a pg option its types lack

  it('node-postgres with binary results gets the same values as against Postgres', async () => {
    // Only types node-postgres decodes from binary correctly: its parser reads binary fields as UTF-8
    // text, which garbles bytea, numeric, timestamps and arrays with NULLs (exact bytes: the test above).
    const sql = `SELECT NULL::int AS nothing, true AS yes, 3.5::float8 AS f, 'grüße'::text AS t,
      9007199254740993::int8 AS big, ARRAY[1, 2, 3]::int[] AS ints, $1::int AS param`;
    const d = await directly(BINARY);
    const expected = await d.query(sql, [42]);
    await d.end();
    const w = await viaWarden('demo', BINARY);
    const got = await w.query(sql, [42]);
    await w.end();
    expect(got.fields.every((f) => f.format === 'binary')).toBe(true);
    expect(got.fields).toEqual(expected.fields);
    expect(got.rows).toEqual(expected.rows);
    expect(got.rows).toEqual([{ nothing: null, yes: true, f: 3.5, t: 'grüße', big: '9007199254740993', ints: [1, 2, 3], param: 42 }]);
  });
});

describe('pgbench', () => {
  beforeAll(async () => {
    const init = await sh('pgbench', ['-i', '-s', '1', '-q', db.url]);
    expect(init.code, init.stderr).toBe(0);
  });

  it.each(['simple', 'extended', 'prepared'])('-M %s: read-write transactions and select-only, none failed', async (mode) => {
    const history = async () => (await db.query('SELECT count(*)::int AS n FROM pgbench_history')).rows[0].n as number;
    const before = await history();
    const writes = await sh('pgbench', ['-M', mode, '-c', '2', '-j', '1', '-t', '100', '-n', stack.conninfo({ user: 'demo-admin' })], {
      PGPASSWORD: await stack.token('demo-admin'),
    });
    expect(writes.stderr).not.toMatch(/error/i);
    expect(writes.code).toBe(0);
    expect(writes.stdout).toMatch(/number of failed transactions: 0/);
    expect(writes.stdout).toMatch(/number of transactions actually processed: 200\/200/);
    expect(await history()).toBe(before + 200); // each TPC-B-like transaction inserts one history row
    const reads = await sh('pgbench', ['-M', mode, '-S', '-c', '2', '-j', '1', '-t', '500', '-n', stack.conninfo()], { PGPASSWORD: await stack.token() });
    expect(reads.stderr).not.toMatch(/error/i);
    expect(reads.code).toBe(0);
    expect(reads.stdout).toMatch(/number of failed transactions: 0/);
    expect(reads.stdout).toMatch(/number of transactions actually processed: 1000\/1000/);
  });
});

describe('session end', () => {
  async function backends(application: string): Promise<number> {
    const r = await db.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = $2', [db.name, application]);
    return r.rows[0].n;
  }

  async function gone(application: string): Promise<number> {
    for (let i = 0; i < 50 && (await backends(application)) > 0; i++) await new Promise((r) => setTimeout(r, 100));
    return backends(application);
  }

  it('after client.end() the upstream backend is gone', async () => {
    const c = await viaWarden('demo', { application_name: 'warden-proto-end' });
    await c.query('SELECT 1');
    expect(await backends('warden-proto-end')).toBe(1);
    await c.end();
    expect(await gone('warden-proto-end')).toBe(0);
  });

  it('Terminate alone, with the socket left open, makes the server side close the connection', async () => {
    const c = await RawClient.connect({
      host: stack.host,
      port: stack.port,
      user: 'demo',
      database: RESOURCE,
      password: await stack.token(),
      parameters: { application_name: 'warden-proto-terminate' },
    });
    expect(await backends('warden-proto-terminate')).toBe(1);
    c.send(serialize.end()); // no FIN from this side: only the Terminate message says goodbye
    await within(c.closed, 'the close of the connection');
    expect(await gone('warden-proto-terminate')).toBe(0);
  });
});

describe('startup', () => {
  it('a client asking for protocol 3.2 with a _pq_ option is told 3.0, as Postgres tells it, and goes on', async () => {
    const ask = { protocolMinor: 2, parameters: { '_pq_.warden_test': 'on' } };
    const u = new URL(db.url);
    const direct = await RawClient.connect({ host: u.hostname, port: Number(u.port || 5432), user: decodeURIComponent(u.username), database: db.name, ...ask });
    const warden = await RawClient.connect({ host: stack.host, port: stack.port, user: 'demo', database: RESOURCE, password: await stack.token(), ...ask });
    const negotiation = (c: RawClient) => c.startup.find((m) => m.name === 'negotiateProtocolVersion');
    expect(negotiation(direct)).toMatchObject({ version: 3 << 16, unknown: ['_pq_.warden_test'] });
    expect(negotiation(warden)!.raw).toEqual(negotiation(direct)!.raw);
    warden.send(serialize.query('SELECT 41 + 1 AS answer'));
    const rows = (await warden.until('readyForQuery')).filter((m) => m.name === 'dataRow');
    expect(rows.map((m) => dataRowValues(m).map((v) => v?.toString()))).toEqual([['42']]);
    await Promise.all([direct.end(), warden.end()]);
  });
});
