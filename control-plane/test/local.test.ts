// Local mode: its building blocks, then `warden start` as a real process with
// stand-ins for the gateway and agent (test/fixtures), which follow the same
// contract: gateway token + WatchConfig, enrollment token + WatchGateways.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseUpstreamUrl } from '../src/local/agent-config.js';
import { startDemoDatabase } from '../src/local/demo-db.js';
import { agentSetRole } from '../src/local/demo-roles.js';
import { demoRows } from '../src/local/demo-seed.js';
import { nativeRolesSql } from '../src/policy/native-roles.js';
import { ensureDevKey, publicJwks } from '../src/local/dev-issuer.js';
import { ensureLocalAgent, seedLocalConfig } from '../src/local/seed-config.js';
import { sha256Hex } from '../src/server/secrets.js';
import { openStorage, type Storage } from '../src/storage/open.js';
import { FIXTURES, WARDEN_BIN, cleanEnv, createTestDatabase, runWarden, tempDir } from './helpers.js';

describe('parseUpstreamUrl', () => {
  it('reads host, port, database, credentials and TLS settings', () => {
    expect(parseUpstreamUrl('postgres://app:s%40cret@db.internal:6432/shop?sslmode=verify-full&sslrootcert=/etc/ca.pem')).toEqual({
      host: 'db.internal',
      port: 6432,
      database: 'shop',
      user: 'app',
      password: 's@cret',
      sslmode: 'verify-full',
      sslrootcert: '/etc/ca.pem',
    });
  });

  it('defaults the port and database, and sslmode by how local the host is', () => {
    expect(parseUpstreamUrl('postgresql://postgres@127.0.0.1/test')).toEqual({
      host: '127.0.0.1', port: 5432, database: 'test', user: 'postgres', sslmode: 'disable',
    });
    expect(parseUpstreamUrl('postgres://app@db.example.com')).toMatchObject({ database: 'app', sslmode: 'require' });
    expect(parseUpstreamUrl('postgres://app@[::1]:5433/x')).toMatchObject({ host: '::1', port: 5433, sslmode: 'disable' });
  });

  it('rejects what the agent cannot do', () => {
    expect(() => parseUpstreamUrl('mysql://a@b/c')).toThrow('--upstream must start with postgres://');
    expect(() => parseUpstreamUrl('postgres://db/x')).toThrow('--upstream needs a user');
    expect(() => parseUpstreamUrl('postgres://a@b/c?sslmode=prefer')).toThrow("sslmode 'prefer' is not supported");
    expect(() => parseUpstreamUrl('postgres://a@b/c?options=-c%20x')).toThrow("parameter 'options' is not supported");
    expect(() => parseUpstreamUrl('not a url')).toThrow('--upstream must be a URL');
  });
});

describe('demo data', () => {
  it('is a deterministic shop of 20 customers and 60 orders', () => {
    const { customers, orders } = demoRows();
    expect(customers).toHaveLength(20);
    expect(orders).toHaveLength(60);
    expect(demoRows()).toEqual({ customers, orders });
    expect(new Set(customers.map((c) => c.email)).size).toBe(20);
    for (const c of customers) {
      expect(c.email).toMatch(/^[a-z]+\.[a-z]+@example\.(com|org|net)$/);
      expect(c.card_number).toMatch(/^4000\d{12}$/);
      // Luhn check: every generated number is well-formed.
      const sum = [...c.card_number].reverse().reduce((acc, ch, i) => {
        const d = Number(ch) * (i % 2 ? 2 : 1);
        return acc + (d > 9 ? d - 9 : d);
      }, 0);
      expect(sum % 10).toBe(0);
    }
    for (const o of orders) {
      expect(o.customer_id).toBeGreaterThanOrEqual(1);
      expect(o.customer_id).toBeLessThanOrEqual(20);
      expect(Number(o.amount)).toBeGreaterThan(0);
    }
  });
});

describe('local config seeding', () => {
  let dir: ReturnType<typeof tempDir>;
  let storage: Storage;
  beforeAll(async () => {
    dir = tempDir();
    storage = await openStorage({ dataDir: dir.path });
  }, 60_000);
  afterAll(async () => {
    await storage?.close();
    dir?.remove();
  });

  it('creates issuer, identity, resource and grant once, and keeps user edits', async () => {
    const key = await ensureDevKey(dir.path);
    expect(statSync(join(dir.path, 'dev-issuer.jwk')).mode & 0o777).toBe(0o600);
    expect(await ensureDevKey(dir.path)).toEqual(key);
    const cfg = { resource: 'shop', jwksJson: publicJwks(key), description: 'demo', demo: true };
    await seedLocalConfig(storage.repo, cfg);
    const first = await storage.repo.snapshot();
    expect(first.issuers).toEqual([
      { name: 'local-dev', issuerUrl: 'urn:warden:local-dev', audiences: ['warden'], jwksUri: '', jwksJson: cfg.jwksJson, algorithms: ['ES256'] },
    ]);
    expect(JSON.parse(cfg.jwksJson).keys[0]).not.toHaveProperty('d');
    expect(first.identities).toEqual([
      { name: 'demo', issuer: 'local-dev', match: [{ claim: 'sub', value: 'demo' }], groups: [] },
      { name: 'demo-admin', issuer: 'local-dev', match: [{ claim: 'sub', value: 'demo-admin' }], groups: [] },
    ]);
    expect(first.resources).toEqual([{ name: 'shop', agent: 'local', description: 'demo' }]);
    const none = { allowSchemas: [], denySchemas: [], allowTables: [], denyTables: [], trust: [] };
    expect(first.grants).toEqual([
      { id: expect.any(String), resource: 'shop', identity: 'demo', group: '', access: 'read', rule: 'demo-read-only', ...none },
      { id: expect.any(String), resource: 'shop', identity: 'demo-admin', group: '', access: 'admin', rule: 'demo-admin', ...none },
    ]);

    await storage.repo.putIdentity({ name: 'demo', issuer: 'local-dev', match: [{ claim: 'sub', value: 'demo' }], groups: ['analysts'] });
    const edited = await storage.repo.version();
    await seedLocalConfig(storage.repo, cfg);
    const second = await storage.repo.snapshot();
    expect(second.version).toBe(edited);
    expect(second.identities[0]!.groups).toEqual(['analysts']);
    expect(second.grants).toEqual(first.grants);
    // The demo mask is made once too: demo is under it, demo-admin exempt.
    expect(first.masks.map((m) => [m.name, m.identities, m.exemptIdentities])).toEqual([['demo-pii', ['demo'], ['demo-admin']]]);
    expect(second.masks).toEqual(first.masks);
  });

  it('keeps a matching agent token and replaces a lost one', async () => {
    const file = join(dir.path, 'agent-token');
    expect(await ensureLocalAgent(storage.repo, file)).toBe('enrolled');
    const token = readFileSync(file, 'utf8').trim();
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect((await storage.repo.getAgent('local'))?.tokenHash).toBe(sha256Hex(token));

    expect(await ensureLocalAgent(storage.repo, file)).toBe('kept');
    expect(readFileSync(file, 'utf8').trim()).toBe(token);

    const { rmSync } = await import('node:fs');
    rmSync(file);
    expect(await ensureLocalAgent(storage.repo, file)).toBe('enrolled');
    const fresh = readFileSync(file, 'utf8').trim();
    expect(fresh).not.toBe(token);
    expect(await storage.repo.getAgent('local')).toMatchObject({ revoked: false, tokenHash: sha256Hex(fresh) });
  });
});

describe('demo database roles', () => {
  it('keeps each client in its own role although PGlite serves them all on one session', async () => {
    const dir = tempDir('warden-demo-roles-');
    const demo = await startDemoDatabase(join(dir.path, 'demo'), '127.0.0.1', 0);
    const clients: pg.Client[] = [];
    try {
      expect(demo.rolePerClient).toBe(true);
      const rule = (name: string, access: string) => ({ name, access, allowSchemas: [], denySchemas: [], allowTables: [], denyTables: ['customers'] });
      const { sql } = nativeRolesSql({ resource: 'shop', source: 'test', agentUser: 'postgres', rules: [rule('demo-read-only', 'read'), rule('demo-admin', 'admin')] });
      await demo.exec(sql);
      await demo.exec(sql); // idempotent on PGlite too
      const connect = async () => {
        const c = new pg.Client({ host: demo.host, port: demo.port, user: 'postgres', database: 'postgres' });
        await c.connect();
        clients.push(c);
        return c;
      };
      const who = async (c: pg.Client) => (await c.query('SELECT current_user AS u')).rows[0].u;
      const admin = await connect();
      await admin.query('SET ROLE "warden_demo_admin"');
      const reader = await connect();
      await reader.query('SET ROLE "warden_demo_read_only"');
      const plain = await connect();
      expect(await who(admin)).toBe('warden_demo_admin');
      expect(await who(plain)).toBe('postgres');
      expect(await who(reader)).toBe('warden_demo_read_only');
      expect((await admin.query("DELETE FROM orders WHERE status = 'no such status'")).rowCount).toBe(0);
      await expect(reader.query("DELETE FROM orders WHERE status = 'no such status'")).rejects.toMatchObject({ code: '42501' });
      await expect(admin.query('SELECT count(*) FROM customers')).rejects.toMatchObject({ code: '42501' });
      // A failed SET ROLE changes nothing.
      await expect(reader.query('SET ROLE "nope"')).rejects.toMatchObject({ code: '22023' });
      expect(await who(reader)).toBe('warden_demo_read_only');
      // A client that goes takes its role along; the next one starts without.
      await admin.end();
      clients.shift();
      expect(await who(await connect())).toBe('postgres');
    } finally {
      for (const c of clients) await c.end().catch(() => {});
      await demo.close();
      dir.remove();
    }
  }, 60_000);

  it('recognises only the agent\'s exact SET ROLE', () => {
    const q = (sql: string) => {
      const body = Buffer.from(`${sql}\0`);
      const m = Buffer.alloc(5 + body.length);
      m[0] = 0x51;
      m.writeInt32BE(4 + body.length, 1);
      body.copy(m, 5);
      return new Uint8Array(m);
    };
    expect(agentSetRole(q('SET ROLE "warden_demo_admin"'))).toBe('warden_demo_admin');
    expect(agentSetRole(q('SET ROLE "a""b"'))).toBe('a"b');
    expect(agentSetRole(q('set role x'))).toBeUndefined();
    expect(agentSetRole(q('SET ROLE "x"; SELECT 1'))).toBeUndefined();
  });
});

// ---- `warden start` end to end ---------------------------------------------

interface Started {
  proc: ChildProcess;
  exit: Promise<number | null>;
  stdout: () => string;
  stderr: () => string;
}

function start(dataDir: string, extraArgs: string[] = [], extraEnv: Record<string, string> = {}): Started {
  const env = cleanEnv({
    WARDEN_GATEWAY_BIN: join(FIXTURES, 'fake-gateway.mjs'),
    WARDEN_AGENT_BIN: join(FIXTURES, 'fake-agent.mjs'),
    FAKE_AGENT_CONFIG: join(dataDir, 'agent.json'),
    ...extraEnv,
  });
  const args = ['start', '--data-dir', dataDir, '--gateway-port', '0', '--control-plane-port', '0', '--console-port', '0', '--tunnel-port', '0', '--demo-port', '0', ...extraArgs];
  const proc = spawn(process.execPath, [WARDEN_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (err += d));
  const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, exit, stdout: () => out, stderr: () => err };
}

/** Waits for the ready file, or fails with the output when the process ends first. */
async function ready(s: Started, file: string): Promise<Record<string, any>> {
  let exited = false;
  void s.exit.then(() => (exited = true));
  while (!existsSync(file)) {
    if (exited) throw new Error(`warden start exited before it was ready:\n${s.stderr()}`);
    await sleep(200);
  }
  return JSON.parse(readFileSync(file, 'utf8'));
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('warden start', () => {
  let dir: ReturnType<typeof tempDir>;
  const running: Started[] = [];
  beforeAll(() => {
    dir = tempDir('warden-local-test-');
  });
  afterAll(async () => {
    for (const s of running) if (s.proc.exitCode === null) s.proc.kill('SIGKILL');
    dir?.remove();
  });

  it('starts everything, answers SELECT through the gateway, and stops cleanly on SIGTERM', async () => {
    const readyFile = join(dir.path, 'ready.json');
    // Gateway settings in the caller's environment are for a deployed gateway, not this one.
    const s = start(dir.path, ['--ready-file', readyFile], { WARDEN_CONTROL_PLANE_CA: join(dir.path, 'no-ca.pem'), WARDEN_GATEWAY_TOKEN_FILE: join(dir.path, 'no-token') });
    running.push(s);
    const info = await ready(s, readyFile);

    expect(info).toEqual({
      dataDir: dir.path,
      resource: 'shop',
      controlPlane: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      console: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/),
      gateway: { host: '127.0.0.1', port: expect.any(Number), pid: expect.any(Number) },
      tunnel: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      agent: { pid: expect.any(Number) },
      demoDatabase: { host: '127.0.0.1', port: expect.any(Number) },
      metrics: {
        controlPlane: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/),
        gateway: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/),
        agent: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/),
      },
    });
    // The control plane runs in this process: its metrics and health are served from here.
    expect((await fetch(`${info.metrics.controlPlane}/readyz`)).status).toBe(200);
    expect(s.stdout()).toContain(`metrics         control plane ${info.metrics.controlPlane}/metrics`);
    // The banner names the console, which answers with its pages.
    expect(s.stdout()).toContain(`web console     ${info.console}`);
    expect((await fetch(info.console)).status).toBe(200);
    // The banner's command names the real port and resource; stdout is no terminal here, so it carries no token.
    expect(s.stdout()).toContain(`psql "host=127.0.0.1 port=${info.gateway.port} dbname=shop user=demo sslmode=disable"`);
    expect(s.stdout()).not.toMatch(/password=|eyJ/);
    expect(s.stdout()).toContain(`PGPASSWORD=$(npx warden token --sub demo --data-dir ${dir.path}) psql`);

    const client = new pg.Client({ host: '127.0.0.1', port: info.gateway.port, user: 'demo', database: 'shop', password: 'x' });
    await client.connect();
    const counts = await client.query('select (select count(*) from customers)::int as c, (select count(*) from orders)::int as o');
    await client.end();
    expect(counts.rows[0]).toEqual({ c: 20, o: 60 });

    // Files of the contract, with secrets owner-only.
    const agentJson = JSON.parse(readFileSync(join(dir.path, 'agent.json'), 'utf8'));
    expect(agentJson).toEqual({
      name: 'local',
      controlPlane: { address: info.controlPlane },
      enrollmentTokenFile: join(dir.path, 'agent-token'),
      resources: {
        shop: {
          host: '127.0.0.1',
          port: info.demoDatabase.port,
          database: 'postgres',
          user: 'postgres',
          sslmode: 'disable',
          // The demo database got a native role per seeded rule.
          ruleRoles: { 'demo-admin': 'warden_demo_admin', 'demo-read-only': 'warden_demo_read_only' },
        },
      },
    });
    expect(s.stdout()).toContain('native roles    rule demo-admin -> warden_demo_admin, rule demo-read-only -> warden_demo_read_only');
    for (const f of ['agent.json', 'agent-token', 'admin-token', 'gateway-token', 'dev-issuer.jwk']) {
      expect(statSync(join(dir.path, f)).mode & 0o777).toBe(0o600);
    }

    // The fake gateway and agent got in with their tokens: the control plane knows both.
    const agents = JSON.parse((await runWarden(['agents', 'list', '--json', '--control-plane', info.controlPlane, '--data-dir', dir.path])).stdout);
    expect(agents).toEqual([expect.objectContaining({ name: 'local', revoked: false })]);
    const gateways = JSON.parse((await runWarden(['gateways', 'list', '--json', '--control-plane', info.controlPlane, '--data-dir', dir.path])).stdout);
    expect(gateways).toEqual([expect.objectContaining({ id: 'local', tunnelAddress: info.tunnel })]);
    expect(readFileSync(join(dir.path, 'logs', 'agent.log'), 'utf8')).toContain(info.tunnel);

    s.proc.kill('SIGTERM');
    expect(await s.exit).toBe(0);
    expect(alive(info.gateway.pid)).toBe(false);
    expect(alive(info.agent.pid)).toBe(false);
    for (const lock of ['db.lock', 'demo.lock', 'local.lock']) expect(existsSync(join(dir.path, lock))).toBe(false);
  }, 120_000);

  it('restarts on the same data directory with the same agent token', async () => {
    const token = readFileSync(join(dir.path, 'agent-token'), 'utf8');
    const readyFile = join(dir.path, 'ready2.json');
    const s = start(dir.path, ['--ready-file', readyFile]);
    running.push(s);
    await ready(s, readyFile);
    expect(readFileSync(join(dir.path, 'agent-token'), 'utf8')).toBe(token);
    s.proc.kill('SIGINT');
    expect(await s.exit).toBe(0);
  }, 120_000);

  it('shuts down with exit 1 when a child dies', async () => {
    const s = start(dir.path, [], { FAKE_AGENT_EXIT_AFTER_MS: '300' });
    running.push(s);
    expect(await s.exit).toBe(1);
    expect(s.stderr()).toContain(`error: the agent exited with code 3 unexpectedly; see ${join(dir.path, 'logs', 'agent.log')}`);
    expect(existsSync(join(dir.path, 'local.lock'))).toBe(false);
  }, 120_000);

  it('fails with a clear message when the gateway is not built', async () => {
    const s = start(dir.path, [], { WARDEN_GATEWAY_BIN: join(dir.path, 'missing.js') });
    running.push(s);
    expect(await s.exit).toBe(1);
    expect(s.stderr()).toContain(`error: the gateway is not available: ${join(dir.path, 'missing.js')} is missing (run \`npm run build\`)`);
    expect(s.stderr()).toContain(`Logs are in ${join(dir.path, 'logs')}/`);
  }, 120_000);

  it('serves a real Postgres given with --upstream instead of the demo database', async () => {
    const db = await createTestDatabase();
    const upstreamDir = tempDir('warden-local-upstream-');
    try {
      const seed = new pg.Client({ connectionString: db.url });
      await seed.connect();
      await seed.query(`create table things (name text); insert into things values ('from upstream')`);
      await seed.end();
      const readyFile = join(upstreamDir.path, 'ready.json');
      // Trust auth ignores the password; it must still reach agent.json intact.
      const url = `postgres://postgres:p%40ss@127.0.0.1:5432/${db.name}?sslmode=disable`;
      const s = start(upstreamDir.path, ['--ready-file', readyFile, '--upstream', url, '--resource', 'things-db']);
      running.push(s);
      const info = await ready(s, readyFile);
      expect(info.resource).toBe('things-db');
      expect(info).not.toHaveProperty('demoDatabase');
      expect(existsSync(join(upstreamDir.path, 'demo'))).toBe(false);
      expect(JSON.parse(readFileSync(join(upstreamDir.path, 'agent.json'), 'utf8')).resources).toEqual({
        'things-db': { host: '127.0.0.1', port: 5432, database: db.name, user: 'postgres', password: 'p@ss', sslmode: 'disable' },
      });
      expect(s.stdout()).toContain(`upstream        127.0.0.1:5432/${db.name} as postgres (sslmode disable)`);
      expect(s.stdout()).not.toContain('p@ss');

      const client = new pg.Client({ host: '127.0.0.1', port: info.gateway.port, user: 'demo', database: 'things-db', password: 'x' });
      await client.connect();
      expect((await client.query('select name from things')).rows).toEqual([{ name: 'from upstream' }]);
      await client.end();
      s.proc.kill('SIGTERM');
      expect(await s.exit).toBe(0);
    } finally {
      upstreamDir.remove();
      await db.drop();
    }
  }, 120_000);
});
