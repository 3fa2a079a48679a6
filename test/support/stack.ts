// Starts a whole Warden (control plane, gateway and agent as real processes,
// through `warden start`) against a database of the test's own, and cleans up.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { SignJWT, importJWK, type JWK } from 'jose';
import pg from 'pg';

export const ROOT = resolve(import.meta.dirname, '../..');
export const WARDEN = join(ROOT, 'control-plane/bin/warden.js');
const run = promisify(execFile);

export const pgUrl = () => process.env.WARDEN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  name: string;
  url: string;
  query(sql: string, params?: unknown[]): Promise<pg.QueryResult>;
  drop(): Promise<void>;
}

/** A fresh database on the test Postgres, so test runs never collide. */
export async function createDatabase(prefix = 'warden_e2e'): Promise<TestDatabase> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: pgUrl() });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(pgUrl());
  url.pathname = `/${name}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  return {
    name,
    url: url.toString(),
    query: (sql, params) => client.query(sql, params),
    async drop() {
      await client.end();
      const a = new pg.Client({ connectionString: pgUrl() });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}

export interface Stack {
  dataDir: string;
  resource: string;
  host: string;
  port: number;
  gatewayPid: number;
  agentPid: number;
  controlPlane: string;
  /** Each process's metrics address (http://127.0.0.1:PORT): /metrics, /healthz, /readyz. */
  metrics: { controlPlane: string; gateway: string; agent: string };
  /** The web console's URL. */
  console: string;
  /** A token from the local development issuer. */
  token(sub?: string, opts?: TokenOptions): Promise<string>;
  /** Runs the `warden` CLI against this stack. */
  cli(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }>;
  /** libpq-style connection string for psql/pgbench. */
  conninfo(extra?: Record<string, string>): string;
  stop(): Promise<void>;
}

export interface TokenOptions {
  groups?: string[];
  audience?: string;
  issuer?: string;
  /** Seconds from now; negative for an expired token. */
  expiresIn?: number;
  notBefore?: number;
  claims?: Record<string, unknown>;
}

export async function startStack(opts: { upstream?: string; resource?: string; args?: string[] } = {}): Promise<Stack> {
  const dataDir = mkdtempSync(join(tmpdir(), 'warden-e2e-'));
  const readyFile = join(dataDir, 'ready.json');
  const args = [WARDEN, 'start', '--data-dir', dataDir, '--ready-file', readyFile];
  args.push('--gateway-port', '0', '--control-plane-port', '0', '--console-port', '0', '--tunnel-port', '0', '--demo-port', '0');
  if (opts.upstream) args.push('--upstream', opts.upstream);
  if (opts.resource) args.push('--resource', opts.resource);
  args.push(...(opts.args ?? []));
  // A process group of its own: a start that fails is killed with its gateway and agent, not orphaning them.
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));

  const deadline = Date.now() + 60_000;
  while (!existsSync(readyFile)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      killGroup(child);
      throw new Error(`warden start did not become ready:\n${output}\n${logs(dataDir)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const ready = JSON.parse(readFileSync(readyFile, 'utf8'));
  const key = JSON.parse(readFileSync(join(dataDir, 'dev-issuer.jwk'), 'utf8')) as JWK;
  const privateKey = await importJWK(key, 'ES256');

  const stack: Stack = {
    dataDir,
    resource: ready.resource,
    host: ready.gateway.host,
    port: ready.gateway.port,
    gatewayPid: ready.gateway.pid,
    agentPid: ready.agent.pid,
    controlPlane: ready.controlPlane,
    metrics: ready.metrics,
    console: ready.console,
    async token(sub = 'demo', t: TokenOptions = {}) {
      const now = Math.floor(Date.now() / 1000);
      const jwt = new SignJWT({ ...(t.groups ? { groups: t.groups } : {}), ...t.claims })
        .setProtectedHeader({ alg: 'ES256', ...(key.kid ? { kid: key.kid } : {}) })
        .setIssuer(t.issuer ?? 'urn:warden:local-dev')
        .setAudience(t.audience ?? 'warden')
        .setSubject(sub)
        .setIssuedAt(now - 5)
        .setExpirationTime(now + (t.expiresIn ?? 600));
      if (t.notBefore !== undefined) jwt.setNotBefore(now + t.notBefore);
      return jwt.sign(privateKey);
    },
    async cli(...cliArgs) {
      try {
        const r = await run(process.execPath, [WARDEN, ...cliArgs], {
          env: { ...process.env, WARDEN_DATA_DIR: dataDir, WARDEN_CONTROL_PLANE: ready.controlPlane },
        });
        return { stdout: r.stdout, stderr: r.stderr, code: 0 };
      } catch (e) {
        const err = e as { stdout: string; stderr: string; code: number };
        return { stdout: err.stdout, stderr: err.stderr, code: err.code };
      }
    },
    conninfo(extra = {}) {
      const kv = { host: ready.gateway.host, port: String(ready.gateway.port), dbname: ready.resource, user: 'demo', sslmode: 'disable', ...extra };
      return Object.entries(kv).map(([k, v]) => `${k}=${v}`).join(' ');
    },
    async stop() {
      child.kill('SIGTERM');
      const t = setTimeout(() => killGroup(child), 10_000);
      await exited;
      clearTimeout(t);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return stack;
}

/** SIGKILL to a child spawned detached and everything it started. */
function killGroup(child: ChildProcess): void {
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    // already gone
  }
}

export function logs(dataDir: string): string {
  return ['gateway', 'agent']
    .map((n) => join(dataDir, 'logs', `${n}.log`))
    .filter(existsSync)
    .map((f) => `--- ${f}\n${readFileSync(f, 'utf8').slice(-4000)}`)
    .join('\n');
}

/** Runs a command, never throwing: exit code and output for assertions. */
export async function sh(cmd: string, args: string[], env: Record<string, string> = {}, timeoutMs = 120_000) {
  try {
    const r = await run(cmd, args, { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 64 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; code?: number };
    return { code: typeof err.code === 'number' ? err.code : 1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

/** A port nobody listens on right now (bind to 0, read it, close). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** A CA and a server certificate for 127.0.0.1 / localhost (and `moreNames`, e.g. 'IP:10.1.2.3'), made with openssl. */
export async function makeCertificates(dir: string, moreNames: string[] = []): Promise<{ ca: string; cert: string; key: string }> {
  const p = (f: string) => join(dir, f);
  const ext = p('san.ext');
  (await import('node:fs')).writeFileSync(ext, `subjectAltName=${['IP:127.0.0.1', 'DNS:localhost', ...moreNames].join(',')}\n`);
  const steps: string[][] = [
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '2', '-subj', '/CN=Warden test CA'],
    ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('server.key'), '-out', p('server.csr'), '-subj', '/CN=localhost'],
    ['x509', '-req', '-in', p('server.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('server.pem'), '-days', '2', '-extfile', ext],
  ];
  for (const args of steps) {
    const r = await sh('openssl', args);
    if (r.code !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
  }
  return { ca: p('ca.pem'), cert: p('server.pem'), key: p('server.key') };
}

/** Starts one more gateway process against a running stack's control plane. */
/** Another gateway on the stack's control plane; `at` gives its ports and the control plane it dials (to restart it in place, or cut off). */
export async function startExtraGateway(stack: Stack, id: string, args: string[] = [], at: { port?: number; tunnel?: number; controlPlane?: string } = {}) {
  const port = at.port ?? (await freePort());
  const tunnel = at.tunnel ?? (await freePort());
  const child = spawn(
    process.execPath,
    [
      join(ROOT, 'gateway/bin/warden-gateway.js'),
      '--id', id,
      '--listen', `127.0.0.1:${port}`,
      '--tunnel-listen', `127.0.0.1:${tunnel}`,
      '--control-plane', at.controlPlane ?? stack.controlPlane,
      '--data-dir', join(stack.dataDir, id),
      ...args,
    ],
    { env: { ...process.env, WARDEN_GATEWAY_TOKEN: readFileSync(join(stack.dataDir, 'gateway-token'), 'utf8').trim() }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise((r) => child.once('exit', r));
  return {
    port,
    tunnel,
    pid: child.pid!,
    output: () => output,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
