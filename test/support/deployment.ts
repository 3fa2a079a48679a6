// A deployment built from the real programs, as an operator runs them:
// control plane over Postgres, agent, gateway, and a NATS server of the
// test's own when the audit goes through NATS; each process can be killed
// and started again the same way. Used by the crash and fail-closed tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, importJWK } from 'jose';
import pg from 'pg';
import { expect } from 'vitest';
import { ROOT, WARDEN, createDatabase, freePort, sh, type TestDatabase } from './stack.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A process of the deployment, which can be killed and started again the same
 * way. With `logFile`, its output goes straight to that file (appended), so
 * a test reading it sees every line the process has written by then.
 */
export class Proc {
  child!: ChildProcess;
  private piped = '';
  constructor(
    readonly name: string,
    private readonly args: string[],
    private readonly env: Record<string, string> = {},
    readonly logFile?: string,
  ) {
    this.start();
  }

  /** The output so far (the last 20,000 characters when piped; all of it with a log file). */
  get output(): string {
    return this.logFile ? readFileSync(this.logFile, 'utf8') : this.piped;
  }

  start(): void {
    const fd = this.logFile ? openSync(this.logFile, 'a') : undefined;
    const stdio = fd === undefined ? (['ignore', 'pipe', 'pipe'] as const) : (['ignore', fd, fd] as const);
    this.child = spawn(this.args[0]!, this.args.slice(1), { env: { ...process.env, ...this.env }, stdio: [...stdio] });
    if (fd !== undefined) return closeSync(fd);
    const keep = (d: Buffer) => (this.piped = (this.piped + d.toString()).slice(-20_000));
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

export interface DeployOptions {
  /** The audit through a NATS server of the deployment's own (else straight to the control plane). */
  nats?: boolean;
  /** Each insert into `marks` takes 30 ms, so a kill finds statements forwarded and not yet answered. */
  slowInserts?: boolean;
  /** More gateway flags. */
  gatewayArgs?: string[];
  /** The gateway's --data-dir (default: one in the deployment's temporary directory). */
  gatewayDataDir?: string;
}

export interface Deployment {
  /** The deployment's temporary directory (the gateway's log is gateway.log there). */
  dir: string;
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

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, d?: Deployment, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${d?.logs() ?? ''}`);
    await sleep(200);
  }
}

/** Control plane, agent and gateway as an operator runs them, each a process; the loader identity may write `marks` (table public.marks, column m). */
export async function deploy(opts: DeployOptions = {}): Promise<Deployment> {
  const nats = opts.nats ?? false;
  const dir = mkdtempSync(join(tmpdir(), 'warden-deploy-'));
  const store = await createDatabase('warden_deploy_store');
  const upstream = await createDatabase('warden_deploy_up');
  await upstream.query('CREATE TABLE public.marks (m text PRIMARY KEY)');
  if (opts.slowInserts) {
    await upstream.query(`CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.03); RETURN NEW; END $$;
      CREATE TRIGGER slow BEFORE INSERT ON public.marks FOR EACH ROW EXECUTE FUNCTION public.slow()`);
  }

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
    dir,
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
      '--data-dir', opts.gatewayDataDir ?? join(dir, 'g1'),
      ...natsArgs,
      ...(opts.gatewayArgs ?? []),
    ],
    { WARDEN_GATEWAY_TOKEN: readFileSync(join(cpDir, 'gateway-token'), 'utf8').trim() },
    join(dir, 'gateway.log'),
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

export const connect = (d: Deployment) =>
  new pg.Client({ host: '127.0.0.1', port: d.gatewayPort, database: 'marks', user: 'loader', password: d.token, ssl: false, connectionTimeoutMillis: 5_000 });

/** The marker of each statement record on `marks` in the store, as many times as it is recorded. */
export async function auditedMarkers(d: Deployment): Promise<string[]> {
  const rows = await d.store.query(`SELECT sql, body FROM audit_events WHERE type = 'statement' AND resource = 'marks' AND sql LIKE 'INSERT INTO public.marks%'`);
  return rows.rows.map((r: { sql: string; body: string }) => {
    const literal = /VALUES \('([^']+)'\)/.exec(r.sql)?.[1];
    return literal ?? (JSON.parse(r.body) as { parameters?: string[] }).parameters?.[0] ?? '?';
  });
}

