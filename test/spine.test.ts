// The spine, end to end: real processes (control plane, gateway, agent), real
// clients (psql, node-postgres, pgbench), the machine's Postgres upstream.
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createDatabase, sh, startStack, type Stack, type TestDatabase } from './support/stack.js';

let db: TestDatabase;
let stack: Stack;

beforeAll(async () => {
  db = await createDatabase();
  await db.query(`CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL)`);
  await db.query(`INSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Edsger')`);
  stack = await startStack({ upstream: db.url, resource: 'shop' });
});

afterAll(async () => {
  await stack?.stop();
  await db?.drop();
});

async function pgConnect(password: string, extra: Partial<pg.ClientConfig> = {}) {
  const client = new pg.Client({ host: stack.host, port: stack.port, user: 'demo', database: 'shop', password, ...extra });
  await client.connect();
  return client;
}

async function connectError(password: string, extra: Partial<pg.ClientConfig> = {}) {
  try {
    const c = await pgConnect(password, extra);
    await c.end();
  } catch (err) {
    return err as Error & { code?: string; severity?: string };
  }
  throw new Error('connection unexpectedly succeeded');
}

describe('through gateway and agent', () => {
  it('psql returns rows with a token as the password', async () => {
    const r = await sh('psql', [stack.conninfo(), '-Atc', 'SELECT name FROM customers ORDER BY id'], {
      PGPASSWORD: await stack.token(),
    });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toEqual(['Ada', 'Grace', 'Edsger']);
  });

  it('node-postgres runs parameterized queries and sees the gateway key, not the upstream one', async () => {
    const client = await pgConnect(await stack.token(), { application_name: 'e2e-app' });
    const r = await client.query('SELECT name, current_setting($1) AS app FROM customers WHERE id = $2', ['application_name', 2]);
    expect(r.rows).toEqual([{ name: 'Grace', app: 'e2e-app' }]);
    const backend = await client.query('SELECT pg_backend_pid() AS pid');
    const key = (client as unknown as { processID: number }).processID;
    expect(key).not.toBe(backend.rows[0].pid);
    await client.end();
  });

  it('the upstream connection is opened by the agent process, and the gateway knows no database address', async () => {
    const client = await pgConnect(await stack.token(), { application_name: 'who-opened-me' });
    const r = await db.query(`SELECT client_port FROM pg_stat_activity WHERE application_name = 'who-opened-me'`);
    expect(r.rows).toHaveLength(1);
    const ss = await sh('ss', ['-tnpH', 'state', 'established', `( sport = :${r.rows[0].client_port} )`]);
    expect(ss.stdout).toContain(`pid=${stack.agentPid},`);
    const gatewayArgs = readFileSync(`/proc/${stack.gatewayPid}/cmdline`, 'utf8');
    expect(gatewayArgs).not.toContain(db.name);
    expect(gatewayArgs).not.toContain(':5432');
    await client.end();
  });

  it('pgbench -S runs through the gateway without errors', async () => {
    const init = await sh('pgbench', ['-i', '-s', '1', '-q', db.url]);
    expect(init.code).toBe(0);
    const r = await sh('pgbench', ['-S', '-c', '4', '-j', '2', '-T', '3', '-n', stack.conninfo()], { PGPASSWORD: await stack.token() });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/number of failed transactions: 0/);
    expect(Number(/number of transactions actually processed: (\d+)/.exec(r.stdout)?.[1])).toBeGreaterThan(100);
  });
});

describe('refusals a client sees', () => {
  it('expired token: FATAL 28P01 saying it expired, without echoing the token', async () => {
    const token = await stack.token('demo', { expiresIn: -120 });
    const err = await connectError(token);
    expect(err.code).toBe('28P01');
    expect(err.severity).toBe('FATAL');
    expect(err.message).toMatch(/expired/);
    expect(err.message).not.toContain(token);
    const r = await sh('psql', [stack.conninfo(), '-c', 'SELECT 1'], { PGPASSWORD: token });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/FATAL: .*expired/);
  });

  it.each([
    ['malformed token', async () => 'not-a-jwt', /malformed|not a JWT/i],
    ['wrong audience', async () => stack.token('demo', { audience: 'someone-else' }), /audience/i],
    ['untrusted issuer', async () => stack.token('demo', { issuer: 'https://evil.example' }), /issuer/i],
    ['not yet valid', async () => stack.token('demo', { notBefore: 600 }), /not (yet )?valid|nbf/i],
  ])('%s: 28P01', async (_name, make, pattern) => {
    const err = await connectError(await make());
    expect(err.code).toBe('28P01');
    expect(err.message).toMatch(pattern);
  });

  it('unknown resource: 3D000', async () => {
    const err = await connectError(await stack.token(), { database: 'no-such-resource' });
    expect(err.code).toBe('3D000');
    expect(err.message).toContain('no-such-resource');
  });

  it('identity without a grant: 42501', async () => {
    const add = await stack.cli('identities', 'add', 'ungranted', '--issuer', 'local-dev', '--match', 'sub=ungranted');
    expect(add.code).toBe(0);
    const err = await connectError(await stack.token('ungranted'));
    expect(err.code).toBe('42501');
    expect(err.message).toContain('ungranted');
  });

  it('agent offline: 08006 naming the agent', async () => {
    expect((await stack.cli('resources', 'add', 'orphan', '--agent', 'far-away')).code).toBe(0);
    expect((await stack.cli('grants', 'add', '--resource', 'orphan', '--identity', 'demo')).code).toBe(0);
    await new Promise((r) => setTimeout(r, 500)); // the change reaches the gateway by its watch stream
    const err = await connectError(await stack.token(), { database: 'orphan' });
    expect(err.code).toBe('08006');
    expect(err.message).toContain('far-away');
  });

  it('garbage bytes close that connection only, with a protocol error', async () => {
    const client = await pgConnect(await stack.token());
    const reply = await new Promise<Buffer>((resolve) => {
      const s = connect(stack.port, stack.host, () => s.write(Buffer.from([0, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef])));
      const chunks: Buffer[] = [];
      s.on('data', (d) => chunks.push(d));
      s.on('close', () => resolve(Buffer.concat(chunks)));
    });
    expect(reply[0]).toBe(0x45); // ErrorResponse
    expect(reply.toString('latin1')).toContain('C08P01');
    const huge = await new Promise<Buffer>((resolve) => {
      const s = connect(stack.port, stack.host, () => s.write(Buffer.from([0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0])));
      const chunks: Buffer[] = [];
      s.on('data', (d) => chunks.push(d));
      s.on('close', () => resolve(Buffer.concat(chunks)));
    });
    expect(huge.toString('latin1')).toContain('C08P01');
    const r = await client.query('SELECT count(*)::int AS n FROM customers');
    expect(r.rows[0].n).toBe(3);
    await client.end();
  });

  it('refuses a replication connection clearly', async () => {
    const r = await sh('psql', [stack.conninfo({ replication: 'database' }), '-c', 'IDENTIFY_SYSTEM'], { PGPASSWORD: await stack.token() });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/replication connections are not supported/);
  });
});
