// Issue 17, "restarts need the control plane": a gateway keeps the last
// configuration it received on disk (config.snapshot in its data dir) and,
// restarted while it cannot reach the control plane, serves clients from it.
// The control plane is cut off for the restarted gateway by pointing it at a
// port nothing listens on; the agent, still told about the gateway, redials
// it on the same tunnel port. A gateway that never received a configuration
// refuses clients with 08006.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, freePort, logs, sh, startExtraGateway, startStack, type Stack, type TestDatabase } from './support/stack.js';

let db: TestDatabase;
let stack: Stack;
let nowhere: string;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function psqlAt(port: number, sql: string) {
  return sh('psql', [stack.conninfo({ port: String(port) }), '-X', '-Atc', sql], { PGPASSWORD: await stack.token() });
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${logs(stack.dataDir)}`);
    await sleep(200);
  }
}

beforeAll(async () => {
  db = await createDatabase('warden_restart');
  await db.query('CREATE TABLE public.kept (id int PRIMARY KEY); INSERT INTO public.kept VALUES (1), (2), (3)');
  stack = await startStack({ upstream: db.url, resource: 'shop' });
  nowhere = `127.0.0.1:${await freePort()}`;
});

afterAll(async () => {
  await stack?.stop();
  await db?.drop();
});

describe('a gateway restarted while the control plane is away', () => {
  it('serves clients from the configuration it kept on disk', async () => {
    const first = await startExtraGateway(stack, 'gw-kept', ['--local']);
    try {
      await waitFor('the agent to reach the new gateway', async () => (await psqlAt(first.port, 'SELECT 1')).code === 0);
    } finally {
      await first.stop();
    }
    const kept = join(stack.dataDir, 'gw-kept', 'config.snapshot');
    expect(existsSync(kept)).toBe(true);
    // It holds the mask key: only its owner may read it.
    expect(statSync(kept).mode & 0o777).toBe(0o600);

    const again = await startExtraGateway(stack, 'gw-kept', ['--local'], { port: first.port, tunnel: first.tunnel, controlPlane: nowhere });
    try {
      const r = await waitFor('a query through the restarted gateway', async () => {
        const out = await psqlAt(again.port, 'SELECT count(*) FROM public.kept');
        return out.code === 0 ? out : undefined;
      });
      expect(r.stdout.trim()).toBe('3');
      // The log is flushed once a second.
      await waitFor('the log line', async () => /serving the configuration kept from the last run/.test(again.output()));
      // Its scopes come from the kept policy too: demo reads only.
      const write = await psqlAt(again.port, 'DELETE FROM public.kept');
      expect(write.code).not.toBe(0);
      expect(write.stderr).toMatch(/ERROR: {2}warden: demo \(read\) may not DELETE/);
    } finally {
      await again.stop();
    }
  });

  it('refuses clients with 08006 when it never received a configuration', async () => {
    const fresh = await startExtraGateway(stack, 'gw-fresh', ['--local'], { controlPlane: nowhere });
    try {
      const r = await waitFor('the fresh gateway to answer', async () => {
        const out = await psqlAt(fresh.port, 'SELECT 1');
        return /configuration/.test(out.stderr) ? out : undefined;
      });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/the gateway has not received its configuration from the control plane yet; retry shortly/);
      const client = new pg.Client({ host: '127.0.0.1', port: fresh.port, user: 'demo', database: 'shop', password: await stack.token() });
      const err = await client.connect().then(() => undefined, (e: { code?: string }) => e);
      expect(err?.code).toBe('08006');
    } finally {
      await fresh.stop();
    }
  });
});

describe('a gateway stopped with SIGTERM', () => {
  it('tells each of its clients 57P01, as Postgres does at a shutdown, and records their sessions as ended', async () => {
    const gw = await startExtraGateway(stack, 'gw-stopping', ['--local']);
    const client = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'demo', database: 'shop', password: await stack.token(), application_name: 'told-to-go' });
    try {
      await waitFor('the agent to reach the gateway', async () => (await psqlAt(gw.port, 'SELECT 1')).code === 0);
      const told = new Promise<{ code?: string; message: string }>((resolve) => client.on('error', resolve));
      await client.connect();
      expect((await client.query('SELECT count(*)::int AS n FROM public.kept')).rows).toEqual([{ n: 3 }]);
      await gw.stop();
      const err = await told;
      expect(err.code).toBe('57P01');
      expect(err.message).toBe('warden: the gateway is shutting down; reconnect');
      const ended = await waitFor('the session end in the audit trail', async () => {
        const list = JSON.parse((await stack.cli('sessions', 'list', '--json')).stdout) as Array<{ applicationName?: string; endReason?: string }>;
        return list.find((s) => s.applicationName === 'told-to-go' && s.endReason);
      });
      expect(ended.endReason).toBe('warden: the gateway is shutting down; reconnect');
    } finally {
      await client.end().catch(() => {});
      await gw.stop();
    }
  });
});
