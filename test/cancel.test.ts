// CancelRequest and the end of a session, end to end (client → gateway →
// agent → Postgres): psql's Ctrl+C, node-postgres and postgres.js cancels,
// stale and forged keys, a cancel that reaches another gateway than the
// session's, clients that vanish mid-query, and an agent that dies.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import { createDatabase, logs, ROOT, sh, startExtraGateway, startStack, type Stack, type TestDatabase } from './support/stack.js';

let db: TestDatabase;
let stack: Stack;

beforeAll(async () => {
  db = await createDatabase('warden_cancel');
  stack = await startStack({ upstream: db.url, resource: 'shop' });
});

afterAll(async () => {
  await stack?.stop();
  await db?.drop();
});

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | null | false>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${logs(stack.dataDir)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The upstream backends of this test's database opened for `app` (application_name), seen by Postgres itself. */
async function backends(app: string): Promise<Array<{ pid: number; state: string; query: string }>> {
  const r = await db.query('SELECT pid, state, query FROM pg_stat_activity WHERE datname = $1 AND application_name = $2', [db.name, app]);
  return r.rows;
}

/** Waits until the backend of `app` is running pg_sleep. */
function sleeping(app: string): Promise<number> {
  return waitFor(`${app} to be in pg_sleep`, async () => {
    const b = (await backends(app)).find((x) => x.state === 'active' && /pg_sleep/.test(x.query));
    return b?.pid;
  });
}

function gone(app: string): Promise<boolean> {
  return waitFor(`the backend of ${app} to be gone`, async () => (await backends(app)).length === 0);
}

async function pgClient(app: string, port = stack.port, sub = 'demo'): Promise<pg.Client> {
  const c = new pg.Client({ host: stack.host, port, user: sub, database: 'shop', password: await stack.token(sub), application_name: app });
  await c.connect();
  return c;
}

/** The key the gateway gave the client in BackendKeyData. */
function keyOf(c: pg.Client): { pid: number; secret: number } {
  const k = c as unknown as { processID: number; secretKey: number };
  return { pid: k.processID, secret: k.secretKey };
}

/** A raw 16-byte CancelRequest; resolves once the gateway closes the connection (it never answers). */
function sendCancel(port: number, pid: number, secret: number): Promise<void> {
  const msg = Buffer.alloc(16);
  msg.writeInt32BE(16, 0);
  msg.writeInt32BE(80877102, 4);
  msg.writeInt32BE(pid | 0, 8);
  msg.writeInt32BE(secret | 0, 12);
  return new Promise((resolve, reject) => {
    const s = connect(port, stack.host, () => s.end(msg));
    s.on('error', reject);
    s.on('data', () => reject(new Error('the gateway answered a CancelRequest')));
    s.on('close', () => resolve());
  });
}

/** SQLSTATE and message of a failed query, or 'ok' with its result. */
async function outcome<T>(p: Promise<T>): Promise<{ code: string; message: string } | { ok: T }> {
  try {
    return { ok: await p };
  } catch (err) {
    const e = err as { code?: string; message: string };
    return { code: e.code ?? '', message: e.message };
  }
}

/** psql running `sql` in the background, as application `app`. */
async function psql(app: string, sql: string) {
  const env = { ...process.env, PGPASSWORD: await stack.token() };
  const conninfo = stack.conninfo({ application_name: app });
  const child = spawn('psql', [conninfo, '-X', '-v', 'VERBOSITY=verbose', '-Atc', sql], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((r) => child.once('exit', (code) => r({ code, stdout, stderr })));
  return { child, done };
}

describe('CancelRequest', () => {
  it("psql's Ctrl+C cancels its own query and no other", async () => {
    const a = await psql('psql-ctrl-c', 'SELECT pg_sleep(60)');
    const b = await psql('psql-bystander', 'SELECT pg_sleep(60)');
    try {
      await sleeping('psql-ctrl-c');
      const bystander = await sleeping('psql-bystander');
      a.child.kill('SIGINT');
      const r = await a.done;
      expect(r.stderr).toMatch(/ERROR:\s+57014: canceling statement due to user request/);
      expect(r.code).not.toBe(0);
      await gone('psql-ctrl-c');
      // The other session's query is still running on the same backend.
      const still = await backends('psql-bystander');
      expect(still).toEqual([expect.objectContaining({ pid: bystander, state: 'active' })]);
      b.child.kill('SIGINT');
      expect((await b.done).stderr).toMatch(/57014: canceling statement due to user request/);
    } finally {
      a.child.kill('SIGKILL');
      b.child.kill('SIGKILL');
    }
  });

  it("node-postgres' key, sent by pg's own Connection.cancel, stops the right backend", async () => {
    const target = await pgClient('pg-cancelled');
    const other = await pgClient('pg-bystander');
    try {
      const running = outcome(target.query('SELECT pg_sleep(60)'));
      const otherRunning = outcome(other.query('SELECT pg_sleep(60)'));
      await sleeping('pg-cancelled');
      const otherPid = await sleeping('pg-bystander');

      const { pid, secret } = keyOf(target);
      const con = new pg.Connection() as pg.Connection & { connect(port: number, host: string): void; cancel(pid: number, secret: number): void };
      const closed = new Promise<void>((resolve) => {
        con.on('end', () => resolve());
        con.on('error', () => resolve());
      });
      con.on('connect', () => con.cancel(pid, secret));
      con.connect(stack.port, stack.host);
      await closed;

      expect(await running).toEqual({ code: '57014', message: 'canceling statement due to user request' });
      // The bystander is untouched, and the cancelled session goes on.
      expect(await backends('pg-bystander')).toEqual([expect.objectContaining({ pid: otherPid, state: 'active' })]);
      expect((await target.query('SELECT 41 + 1 AS n')).rows).toEqual([{ n: 42 }]);

      await sendCancel(stack.port, keyOf(other).pid, keyOf(other).secret);
      expect(await otherRunning).toEqual({ code: '57014', message: 'canceling statement due to user request' });
    } finally {
      await target.end();
      await other.end();
    }
  });

  it("postgres.js' query.cancel() stops the query", async () => {
    const sql = postgres({
      host: stack.host,
      port: stack.port,
      database: 'shop',
      username: 'demo',
      password: await stack.token(),
      max: 1,
      connection: { application_name: 'postgresjs-cancelled' },
      onnotice: () => undefined,
    });
    try {
      const q = sql`SELECT pg_sleep(60)`;
      const running = outcome(q.execute());
      await sleeping('postgresjs-cancelled');
      q.cancel();
      expect(await running).toEqual({ code: '57014', message: 'canceling statement due to user request' });
      expect(await sql`SELECT 'still usable' AS v`).toEqual([{ v: 'still usable' }]);
    } finally {
      await sql.end({ timeout: 5 });
    }
  });

  it('a stale key or a forged one cancels nothing; the right key still does', async () => {
    const ended = await pgClient('pg-stale');
    const stale = keyOf(ended);
    await ended.end();

    const c = await pgClient('pg-victim');
    try {
      const key = keyOf(c);
      const running = outcome(c.query("SELECT pg_sleep(3), 'completed' AS v"));
      await sleeping('pg-victim');
      await sendCancel(stack.port, stale.pid, stale.secret);
      await sendCancel(stack.port, key.pid, key.secret ^ 1); // right pid, wrong secret
      await sendCancel(stack.port, key.pid ^ 0x10000, key.secret); // another pid, right secret
      await sendCancel(stack.port, 12345, 67890);
      const r = await running;
      expect(r).toMatchObject({ ok: { rows: [{ pg_sleep: '', v: 'completed' }] } });

      const second = outcome(c.query('SELECT pg_sleep(60)'));
      await sleeping('pg-victim');
      await sendCancel(stack.port, key.pid, key.secret);
      expect(await second).toMatchObject({ code: '57014' });
    } finally {
      await c.end();
    }
  });
});

describe('a cancel that reaches another gateway', () => {
  let other: Awaited<ReturnType<typeof startExtraGateway>>;

  beforeAll(async () => {
    other = await startExtraGateway(stack, 'gw-b', ['--local']);
    // Usable once the agent has found it through the control plane and dialled it.
    await waitFor('the second gateway to reach the agent', async () => {
      const r = await sh('psql', [stack.conninfo({ port: String(other.port) }), '-Atc', 'SELECT 1'], { PGPASSWORD: await stack.token() });
      return r.code === 0;
    }, 30_000);
  });

  afterAll(async () => {
    await other?.stop();
  });

  it('a CancelRequest sent to gateway B cancels the query of a session on gateway A, and a forged one there does nothing', async () => {
    const c = await pgClient('pg-on-a', stack.port);
    try {
      const key = keyOf(c);
      const first = outcome(c.query("SELECT pg_sleep(3), 'completed' AS v"));
      await sleeping('pg-on-a');
      await sendCancel(other.port, key.pid, key.secret ^ 0x40);
      await sendCancel(other.port, key.pid + 1, key.secret);
      expect(await first).toMatchObject({ ok: { rows: [{ v: 'completed' }] } });

      const second = outcome(c.query('SELECT pg_sleep(60)'));
      await sleeping('pg-on-a');
      await sendCancel(other.port, key.pid, key.secret);
      expect(await second).toEqual({ code: '57014', message: 'canceling statement due to user request' });
    } finally {
      await c.end();
    }
  });

  it('the other way round: a key issued by gateway B, sent to gateway A', async () => {
    const c = await pgClient('pg-on-b', other.port);
    try {
      const running = outcome(c.query('SELECT pg_sleep(60)'));
      await sleeping('pg-on-b');
      await sendCancel(stack.port, keyOf(c).pid, keyOf(c).secret);
      expect(await running).toMatchObject({ code: '57014' });
    } finally {
      await c.end();
    }
  });
});

describe('the end of a session', () => {
  it('psql killed mid-query: its upstream query is cancelled and the backend closed', async () => {
    const p = await psql('psql-killed', 'SELECT pg_sleep(60)');
    try {
      await sleeping('psql-killed');
      p.child.kill('SIGKILL');
      await p.done;
      expect(await gone('psql-killed')).toBe(true);
    } finally {
      p.child.kill('SIGKILL');
    }
  });

  it('a node-postgres socket destroyed mid-query leaves no backend behind', async () => {
    const c = await pgClient('pg-destroyed');
    c.on('error', () => undefined);
    const running = outcome(c.query('SELECT pg_sleep(60)'));
    await sleeping('pg-destroyed');
    (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    expect(await running).not.toHaveProperty('ok');
    expect(await gone('pg-destroyed')).toBe(true);
  });

  it('Terminate while a query runs ends the backend instead of waiting for the query', async () => {
    const c = await pgClient('pg-terminated');
    c.on('error', () => undefined);
    const running = outcome(c.query('SELECT pg_sleep(60)'));
    await sleeping('pg-terminated');
    await c.end();
    expect(await running).not.toHaveProperty('ok');
    expect(await gone('pg-terminated')).toBe(true);
  });
});

describe('losing the agent', () => {
  let agent: ChildProcess | undefined;
  let agentOutput = '';

  beforeAll(async () => {
    // An agent of the test's own, serving a second resource, so killing it leaves the stack's agent alive.
    const enrolled = await stack.cli('agents', 'enroll', 'doomed');
    expect(enrolled.code).toBe(0);
    const token = enrolled.stdout.trim();
    expect((await stack.cli('resources', 'add', 'doomed-db', '--agent', 'doomed')).code).toBe(0);
    expect((await stack.cli('grants', 'add', '--resource', 'doomed-db', '--identity', 'demo')).code).toBe(0);
    const url = new URL(db.url);
    const config = join(stack.dataDir, 'doomed-agent.json');
    writeFileSync(
      config,
      JSON.stringify({
        name: 'doomed',
        controlPlane: { address: stack.controlPlane },
        enrollmentToken: token,
        resources: { 'doomed-db': { host: url.hostname, port: Number(url.port || 5432), database: db.name, user: url.username || 'postgres', sslmode: 'disable' } },
      }),
    );
    agent = spawn(process.execPath, [join(ROOT, 'agent/bin/warden-agent.js'), '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    agent.stdout!.on('data', (d) => (agentOutput += d));
    agent.stderr!.on('data', (d) => (agentOutput += d));
    await waitFor('the second agent to serve doomed-db', async () => {
      const r = await sh('psql', [stack.conninfo({ dbname: 'doomed-db' }), '-Atc', 'SELECT 1'], { PGPASSWORD: await stack.token() });
      if (agent!.exitCode !== null) throw new Error(`the agent exited: ${agentOutput}`);
      return r.code === 0;
    }, 30_000);
  });

  afterAll(() => {
    agent?.kill('SIGKILL');
  });

  it('clients of a killed agent get 08006 (mid-query and idle); clients of other agents go on', async () => {
    const connectTo = async (app: string) => {
      const c = new pg.Client({ host: stack.host, port: stack.port, user: 'demo', database: 'doomed-db', password: await stack.token(), application_name: app });
      await c.connect();
      return c;
    };
    const busy = await connectTo('doomed-busy');
    const idle = await connectTo('doomed-idle');
    const bystander = await pgClient('other-agent');
    // The first error is the gateway's ErrorResponse; pg reports the closed socket after it.
    const idleError = new Promise<Error & { code?: string }>((resolve) => idle.on('error', resolve));
    busy.on('error', () => undefined);
    try {
      const running = outcome(busy.query('SELECT pg_sleep(60)'));
      const unaffected = outcome(bystander.query("SELECT pg_sleep(1), 'fine' AS v"));
      await sleeping('doomed-busy');
      await sleeping('other-agent');
      agent!.kill('SIGKILL');

      expect(await running).toEqual({ code: '08006', message: 'lost the connection to resource doomed-db through agent doomed' });
      const e = await idleError;
      expect(e.code).toBe('08006');
      expect(e.message).toBe('lost the connection to resource doomed-db through agent doomed');

      expect(await unaffected).toMatchObject({ ok: { rows: [{ v: 'fine' }] } });
      expect((await bystander.query('SELECT 1 AS n')).rows).toEqual([{ n: 1 }]);
      // A new session for the dead agent's resource is refused with a reason, not left hanging.
      const again = await outcome(connectTo('doomed-again'));
      expect(again).toMatchObject({ code: '08006', message: expect.stringMatching(/agent doomed.*not connected to this gateway/) });

      // The statement in flight may have run: the audit trail says its outcome is unknown, and the session has its end.
      const events = await waitFor('the busy session to be recorded up to its end', async () => {
        const listed = await stack.cli('sessions', 'list', '--identity', 'demo', '--since', '1h', '--json');
        const found = (JSON.parse(listed.stdout) as Array<{ sessionId: string; applicationName?: string }>).find((x) => x.applicationName === 'doomed-busy');
        if (!found) return undefined;
        const shown = await stack.cli('sessions', 'show', found.sessionId, '--json');
        const all = (JSON.parse(shown.stdout) as { events: Array<Record<string, unknown>> }).events;
        return all.some((e) => e.type === 'session.end') ? all : undefined;
      }, 30_000);
      const sleeper = events.find((e) => e.type === 'statement' && e.sql === 'SELECT pg_sleep(60)');
      expect(sleeper).toMatchObject({
        decision: 'allowed',
        error: { sqlstate: '08006', message: expect.stringMatching(/^outcome unknown: the session ended \(.*\) after the statement was forwarded$/) },
      });
    } finally {
      await busy.end().catch(() => undefined);
      await idle.end().catch(() => undefined);
      await bystander.end();
      // The dead agent could not cancel its pg_sleep: the test ends it (drop would, too).
      await db.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'doomed-%'", [db.name]);
    }
  });
});
