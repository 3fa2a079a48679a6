// Issue 17, "nothing the database ran goes unrecorded, even when a process
// dies": a deployment built from the real programs (control plane over
// Postgres, gateway, agent, and a NATS server of the test's own where the
// audit goes through NATS), 8 sessions inserting rows with distinct markers,
// one process killed with SIGKILL mid-run and started again, then the
// database, the clients' acknowledgements and the audit store compared:
// every row in the database has exactly one statement record, and every
// acknowledged insert is in the database.
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, importJWK } from 'jose';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, WARDEN, createDatabase, freePort, sh, type TestDatabase } from './support/stack.js';

const WORKERS = 8;
const PER_WORKER = 60;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A process of the deployment, which can be killed and started again the same way. */
class Proc {
  child!: ChildProcess;
  output = '';
  constructor(
    readonly name: string,
    private readonly args: string[],
    private readonly env: Record<string, string> = {},
  ) {
    this.start();
  }

  start(): void {
    this.child = spawn(this.args[0]!, this.args.slice(1), { env: { ...process.env, ...this.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (d: Buffer) => (this.output = (this.output + d.toString()).slice(-20_000));
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise((r) => this.child.once('exit', r));
    this.child.kill(signal);
    await gone;
  }
}

interface Deployment {
  gateway: Proc;
  agent: Proc;
  controlPlane: Proc;
  nats?: Proc;
  gatewayPort: number;
  token: string;
  upstream: TestDatabase;
  store: TestDatabase;
  cli(...args: string[]): ReturnType<typeof sh>;
  logs(): string;
  stop(): Promise<void>;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, d?: Deployment, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${d?.logs() ?? ''}`);
    await sleep(200);
  }
}

/** Control plane, agent and gateway as an operator runs them, with the audit through NATS when `nats`. */
async function deploy(nats: boolean): Promise<Deployment> {
  const dir = mkdtempSync(join(tmpdir(), 'warden-crash-'));
  const store = await createDatabase('warden_crash_store');
  const upstream = await createDatabase('warden_crash_up');
  // Each insert takes 30 ms in the database, so a kill finds statements running there, forwarded and not yet answered.
  await upstream.query(`CREATE TABLE public.marks (m text PRIMARY KEY);
    CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.03); RETURN NEW; END $$;
    CREATE TRIGGER slow BEFORE INSERT ON public.marks FOR EACH ROW EXECUTE FUNCTION public.slow()`);

  let natsProc: Proc | undefined;
  let natsUrl: string | undefined;
  if (nats) {
    const port = await freePort();
    natsUrl = `nats://127.0.0.1:${port}`;
    natsProc = new Proc('nats', ['/usr/sbin/nats-server', '-a', '127.0.0.1', '-p', String(port), '-js', '-sd', join(dir, 'nats')]);
  }
  const natsArgs = natsUrl ? ['--nats', natsUrl] : [];
  const cpAddress = `127.0.0.1:${await freePort()}`;
  const cpDir = join(dir, 'cp');
  const controlPlane = new Proc('control plane', [process.execPath, WARDEN, 'control-plane', '--listen', cpAddress, '--data-dir', cpDir, '--database-url', store.url, ...natsArgs]);
  const cli = (...args: string[]) => sh(process.execPath, [WARDEN, ...args], { WARDEN_DATA_DIR: cpDir, WARDEN_CONTROL_PLANE: cpAddress });

  const procs: Proc[] = [...(natsProc ? [natsProc] : []), controlPlane];
  const d = {
    controlPlane,
    nats: natsProc,
    upstream,
    store,
    cli,
    logs: () => procs.map((p) => `--- ${p.name}\n${p.output.slice(-4000)}`).join('\n'),
    async stop() {
      for (const p of procs.reverse()) await p.kill('SIGTERM');
      await upstream.drop();
      await store.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  } as Deployment;
  await waitFor('the control plane', async () => (await cli('gateways', 'list')).code === 0, d);

  // An issuer of the test's own: its keys inline, tokens signed here.
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'crash', alg: 'ES256', use: 'sig' };
  const policy = join(dir, 'policy.yaml');
  writeFileSync(
    policy,
    [
      'version: 1',
      'issuers:',
      '  - name: crash',
      '    issuer_url: urn:warden:crash',
      '    audiences: [warden]',
      '    algorithms: [ES256]',
      `    jwks_json: '${JSON.stringify({ keys: [jwk] })}'`,
      'identities:',
      '  - { name: loader, issuer: crash, match: { sub: loader } }',
      'resources:',
      '  - { name: marks, agent: a1 }',
      'rules:',
      '  - { name: loader-writes, resource: marks, identities: [loader], access: write }',
      '',
    ].join('\n'),
  );
  const applied = await cli('policy', 'apply', '-f', policy, '--author', 'crash-test');
  expect(applied.code, applied.stderr).toBe(0);
  const signing = await importJWK({ ...(await exportJWK(privateKey)), alg: 'ES256' }, 'ES256');
  d.token = await new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: 'crash' })
    .setIssuer('urn:warden:crash')
    .setAudience('warden')
    .setSubject('loader')
    .setIssuedAt()
    .setExpirationTime('2h')
    .sign(signing);

  const enrolled = await cli('agents', 'enroll', 'a1');
  expect(enrolled.code, enrolled.stderr).toBe(0);
  const url = new URL(upstream.url);
  const agentConfig = join(dir, 'agent.json');
  writeFileSync(
    agentConfig,
    JSON.stringify({
      name: 'a1',
      controlPlane: { address: cpAddress },
      enrollmentToken: enrolled.stdout.trim(),
      resources: { marks: { host: url.hostname, port: Number(url.port || 5432), database: upstream.name, user: url.username || 'postgres', sslmode: 'disable' } },
    }),
  );
  d.agent = new Proc('agent', [process.execPath, join(ROOT, 'agent/bin/warden-agent.js'), '--config', agentConfig, '--state-dir', join(dir, 'agent')]);
  d.gatewayPort = await freePort();
  const tunnel = await freePort();
  d.gateway = new Proc(
    'gateway',
    [
      process.execPath, join(ROOT, 'gateway/bin/warden-gateway.js'),
      '--id', 'g1', '--local',
      '--listen', `127.0.0.1:${d.gatewayPort}`,
      '--tunnel-listen', `127.0.0.1:${tunnel}`,
      '--control-plane', cpAddress,
      '--data-dir', join(dir, 'g1'),
      ...natsArgs,
    ],
    { WARDEN_GATEWAY_TOKEN: readFileSync(join(cpDir, 'gateway-token'), 'utf8').trim() },
  );
  procs.push(d.agent, d.gateway);
  await waitFor('a first statement through the gateway', async () => {
    const c = connect(d);
    try {
      await c.connect();
      return (await c.query('SELECT 1 AS one')).rows[0]?.one === 1;
    } finally {
      await c.end().catch(() => {});
    }
  }, d);
  return d;
}

const connect = (d: Deployment) =>
  new pg.Client({ host: '127.0.0.1', port: d.gatewayPort, database: 'marks', user: 'loader', password: d.token, ssl: false, connectionTimeoutMillis: 5_000 });

interface LoadResult {
  acknowledged: Set<string>;
  attempts: number;
  failures: number;
}

/**
 * WORKERS sessions insert PER_WORKER acknowledged rows each (half with the
 * simple protocol, half extended), each attempt a new marker; a session that
 * fails reconnects. `fault` runs once a third of the rows are in.
 */
async function load(d: Deployment, fault: () => Promise<void>): Promise<LoadResult> {
  const result: LoadResult = { acknowledged: new Set(), attempts: 0, failures: 0 };
  let faulted: Promise<void> | undefined;
  const worker = async (w: number) => {
    let done = 0;
    let n = 0;
    let client: pg.Client | undefined;
    const deadline = Date.now() + 180_000;
    while (done < PER_WORKER) {
      if (Date.now() > deadline) throw new Error(`worker ${w} made no progress\n${d.logs()}`);
      if (!client) {
        const c = connect(d);
        c.on('error', () => {}); // a connection lost between queries surfaces at the next one
        try {
          await c.connect();
          client = c;
        } catch {
          await c.end().catch(() => {});
          await sleep(100);
          continue;
        }
      }
      const marker = `w${w}-${n++}`;
      result.attempts++;
      try {
        if (w % 2 === 0) await client.query(`INSERT INTO public.marks (m) VALUES ('${marker}')`);
        else await client.query('INSERT INTO public.marks (m) VALUES ($1)', [marker]);
        result.acknowledged.add(marker);
        done++;
      } catch {
        result.failures++;
        await client.end().catch(() => {});
        client = undefined;
      }
      if (!faulted && result.acknowledged.size >= (WORKERS * PER_WORKER) / 3) faulted = fault();
    }
    await client?.end();
  };
  await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
  await faulted;
  return result;
}

/** The marker of each statement record on `marks` in the store, as many times as it is recorded. */
async function auditedMarkers(d: Deployment): Promise<string[]> {
  const rows = await d.store.query(`SELECT sql, body FROM audit_events WHERE type = 'statement' AND resource = 'marks' AND sql LIKE 'INSERT INTO public.marks%'`);
  return rows.rows.map((r: { sql: string; body: string }) => {
    const literal = /VALUES \('([^']+)'\)/.exec(r.sql)?.[1];
    return literal ?? (JSON.parse(r.body) as { parameters?: string[] }).parameters?.[0] ?? '?';
  });
}

/** Waits until every row in the database has its record, then compares exactly. */
async function compare(d: Deployment, loaded: LoadResult) {
  const executed = (await d.upstream.query('SELECT m FROM public.marks')).rows.map((r: { m: string }) => r.m);
  let audited: string[] = [];
  await waitFor(
    'the audit store to hold every executed statement',
    async () => {
      audited = await auditedMarkers(d);
      const seen = new Set(audited);
      return executed.every((m) => seen.has(m));
    },
    d,
    90_000,
  ).catch(() => undefined); // the exact comparison below says what is missing
  const seen = new Set(audited);
  const counts = new Map<string, number>();
  for (const m of audited) counts.set(m, (counts.get(m) ?? 0) + 1);
  const inDb = new Set(executed);
  return {
    executed: executed.length,
    executedNotAudited: executed.filter((m) => !seen.has(m)),
    duplicates: [...counts].filter(([, n]) => n > 1).map(([m]) => m),
    acknowledgedNotExecuted: [...loaded.acknowledged].filter((m) => !inDb.has(m)),
  };
}

/** Sessions of `marks` with no end record, once the clients are gone and the gateway had time to record them. */
async function sessionsWithoutEnd(d: Deployment): Promise<number> {
  let open = -1;
  await waitFor('every session to have its end recorded', async () => {
    const r = await d.store.query(`SELECT count(*)::int AS n FROM audit_sessions WHERE resource = 'marks' AND end_seq IS NULL`);
    open = r.rows[0].n;
    return open === 0;
  }, d, 30_000).catch(() => undefined);
  return open;
}

let current: Deployment | undefined;
afterEach(async () => {
  await current?.stop();
  current = undefined;
});

/** One run: deploy, load with `victim` killed and started again mid-run, compare. */
async function crashRun(nats: boolean, victim: (d: Deployment) => Proc) {
  const d = (current = await deploy(nats));
  const loaded = await load(d, async () => {
    const p = victim(d);
    await p.kill('SIGKILL');
    await sleep(500);
    p.start();
  });
  const r = await compare(d, loaded);
  expect(r.executed).toBeGreaterThanOrEqual(WORKERS * PER_WORKER);
  expect(r.executedNotAudited, `executed but not audited\n${d.logs()}`).toEqual([]);
  expect(r.duplicates, 'recorded more than once').toEqual([]);
  expect(r.acknowledgedNotExecuted, 'acknowledged but not executed').toEqual([]);
  return { d, loaded };
}

describe('a process killed mid-run loses no audit record', { timeout: 300_000 }, () => {
  it('the gateway (audit straight to the control plane): statements in flight are recorded at its next start, sessions ended', async () => {
    const { d, loaded } = await crashRun(false, (d) => d.gateway);
    // The kill cut sessions mid-statement.
    expect(loaded.failures).toBeGreaterThan(0);
    expect(await sessionsWithoutEnd(d)).toBe(0);
    // The statements it had forwarded when it died are recorded, by its next start, as of unknown outcome.
    const unknown = await d.store.query(`SELECT body FROM audit_events WHERE type = 'statement' AND body LIKE '%the gateway stopped after the statement was forwarded%'`);
    expect(unknown.rows.length).toBeGreaterThan(0);
    for (const r of unknown.rows) expect(JSON.parse(r.body).error.sqlstate).toBe('08006');
    const ended = await d.store.query(`SELECT count(*)::int AS n FROM audit_sessions WHERE end_reason LIKE 'the gateway stopped with the session open%'`);
    expect(ended.rows[0].n).toBeGreaterThan(0);
    const verify = await d.cli('audit', 'verify');
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });

  it('the gateway (audit through NATS)', async () => {
    const { d } = await crashRun(true, (d) => d.gateway);
    expect(await sessionsWithoutEnd(d)).toBe(0);
  });

  it('the agent', async () => {
    const { d, loaded } = await crashRun(false, (d) => d.agent);
    expect(loaded.failures).toBeGreaterThan(0);
    expect(await sessionsWithoutEnd(d)).toBe(0);
  });

  it('the control plane', async () => {
    const { d } = await crashRun(false, (d) => d.controlPlane);
    expect(await sessionsWithoutEnd(d)).toBe(0);
  });

  it('the NATS server', async () => {
    const { d } = await crashRun(true, (d) => d.nats!);
    expect(await sessionsWithoutEnd(d)).toBe(0);
  });
});
