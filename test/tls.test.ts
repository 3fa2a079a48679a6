// TLS on every leg: client ↔ gateway (require, verify-full), agent ↔ upstream
// (disable, require, verify-full against a Postgres of the test's own with
// ssl=on and pg_hba rules per role), and the gateway ↔ agent link. Extra
// gateways and agents are separate processes that find each other through the
// control plane of one `warden start`.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { startPostgres, type TestPostgres } from './support/postgres.js';
import { makeCertificates, ROOT, sh, startExtraGateway, startStack, type Stack } from './support/stack.js';

type Certs = { ca: string; cert: string; key: string };
type Gateway = Awaited<ReturnType<typeof startExtraGateway>>;

const TLS_ROLE = { name: 'warden_tls', password: 'tls-only-secret', tlsOnly: true };
const PLAIN_ROLE = { name: 'warden_plain', password: 'plain-ok-secret' };

let server: TestPostgres;
let stack: Stack;
let tmp: string;
let certs: Certs; // the gateways' certificates (a CA of their own)
let otherCerts: Certs; // a CA nobody uses: the wrong CA
let gateway: Gateway;
const agents: TestAgent[] = [];
const gateways: Gateway[] = [];

beforeAll(async () => {
  server = await startPostgres({ ssl: true, listen: ['127.0.0.1', '127.0.0.2'], roles: [TLS_ROLE, PLAIN_ROLE] });
  await server.query('CREATE DATABASE shop');
  await server.query(`CREATE TABLE t (v text); INSERT INTO t VALUES ('over tls'); GRANT SELECT ON t TO ${TLS_ROLE.name}, ${PLAIN_ROLE.name}`, [], 'shop');
  // `warden start` itself with a verify-full upstream: sslmode and sslrootcert travel in the URL.
  const upstream = `postgres://${TLS_ROLE.name}:${TLS_ROLE.password}@127.0.0.1:${server.port}/shop?sslmode=verify-full&sslrootcert=${encodeURIComponent(server.ca!)}`;
  stack = await startStack({ upstream, resource: 'shop' });
  tmp = mkdtempSync(join(tmpdir(), 'warden-tls-'));
  const dir = (name: string) => mkdtempSync(join(tmp, `${name}-`));
  certs = await makeCertificates(dir('gateway'));
  otherCerts = await makeCertificates(dir('other'));
  // Not --local: this gateway accepts tokens over TLS only.
  gateway = await startExtraGateway(stack, 'gw-tls', ['--tls-cert', certs.cert, '--tls-key', certs.key]);
  gateways.push(gateway);
  // Ready once the agent has found and dialed it.
  await until(async () => {
    const r = await sh('psql', [conninfo(gateway, 'verify-full'), '-Atc', 'SELECT 1'], { PGPASSWORD: await stack.token() });
    return r.code === 0 || `${r.stderr}\n${gateway.output()}`;
  }, 'the second gateway never became usable');
});

afterAll(async () => {
  for (const a of agents) await a.stop();
  for (const g of gateways) await g.stop();
  await stack?.stop();
  await server?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function conninfo(gw: { port: number }, sslmode: string, dbname = 'shop') {
  return `host=localhost port=${gw.port} dbname=${dbname} user=demo sslmode=${sslmode} sslrootcert=${certs.ca}`;
}

async function until(check: () => Promise<true | string>, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await check();
    if (r === true) return;
    if (Date.now() > deadline) throw new Error(`${what}: ${r}`);
    await new Promise((res) => setTimeout(res, 250));
  }
}

interface TestAgent {
  name: string;
  log(): string;
  stop(): Promise<void>;
}

/**
 * Enrolls one more agent, puts its resources into the control plane with a
 * read grant for `demo`, and runs it as its own process (JSON log on stdout).
 */
async function startAgent(
  name: string,
  resources: Record<string, Record<string, unknown>>,
  gatewayTls: { ca?: string } = {},
): Promise<TestAgent> {
  const enrolled = await stack.cli('agents', 'enroll', name);
  if (enrolled.code !== 0) throw new Error(`enroll ${name}: ${enrolled.stderr}`);
  for (const resource of Object.keys(resources)) {
    for (const args of [
      ['resources', 'add', resource, '--agent', name],
      ['grants', 'add', '--resource', resource, '--identity', 'demo'],
    ]) {
      const r = await stack.cli(...args);
      if (r.code !== 0) throw new Error(`warden ${args.join(' ')}: ${r.stderr}`);
    }
  }
  const config = join(tmp, `${name}.json`);
  writeFileSync(
    config,
    JSON.stringify({ name, controlPlane: { address: stack.controlPlane }, enrollmentToken: enrolled.stdout.trim(), gatewayTls, resources }),
    { mode: 0o600 },
  );
  const child = spawn(process.execPath, [join(ROOT, 'agent/bin/warden-agent.js'), '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise((r) => child.once('exit', r));
  const agent = {
    name,
    log: () => output,
    async stop() {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
  agents.push(agent);
  return agent;
}

/** Waits for the agent's JSON log to have an entry with these fields (strings equal, RegExps match), and returns it. */
async function agentSaid(agent: TestAgent, fields: Record<string, string | RegExp>): Promise<Record<string, unknown>> {
  const find = () =>
    agent
      .log()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((e) => Object.entries(fields).every(([k, v]) => (typeof v === 'string' ? e[k] === v : typeof e[k] === 'string' && v.test(e[k] as string))));
  await until(async () => find() !== undefined || `no entry like ${JSON.stringify(fields, (_, v) => (v instanceof RegExp ? String(v) : v))} in:\n${agent.log()}`, `agent ${agent.name} did not log it`, 10_000);
  return find()!;
}

/** A resource on the test server, for an agent's config. */
function upstream(role: { name: string; password: string }, sslmode: string, extra: Record<string, unknown> = {}) {
  return { host: '127.0.0.1', port: server.port, database: 'shop', user: role.name, password: role.password, sslmode, ...extra };
}

/** Opens a session through a gateway and asks the server whether that session's backend uses TLS. */
async function upstreamTls(resource: string, client: Partial<pg.ClientConfig> = {}) {
  const c = new pg.Client({ host: stack.host, port: stack.port, user: 'demo', database: resource, password: await stack.token(), ssl: false, ...client });
  await c.connect();
  try {
    const { rows } = await c.query('SELECT pg_backend_pid() AS pid, current_user AS role, (SELECT v FROM t) AS v');
    const ssl = await server.query('SELECT ssl, version FROM pg_stat_ssl WHERE pid = $1', [rows[0].pid]);
    expect(ssl.rows).toHaveLength(1);
    return { role: rows[0].role as string, v: rows[0].v as string, ssl: ssl.rows[0].ssl as boolean, version: ssl.rows[0].version as string | null };
  } finally {
    await c.end();
  }
}

/** The error a client gets when the session cannot open. */
async function openError(resource: string, client: Partial<pg.ClientConfig> = {}) {
  const c = new pg.Client({ host: stack.host, port: stack.port, user: 'demo', database: resource, password: await stack.token(), ssl: false, ...client });
  c.on('error', () => undefined);
  try {
    await c.connect();
    await c.end();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error(`a session to ${resource} opened although it should not have`);
}

describe('client ↔ gateway TLS', () => {
  it('psql with sslmode=verify-full gets rows through the second gateway', async () => {
    const r = await sh('psql', [conninfo(gateway, 'verify-full'), '-Atc', 'SELECT v FROM t'], { PGPASSWORD: await stack.token() });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('over tls');
  });

  it('psql with sslmode=require gets rows, and the session is encrypted', async () => {
    // require does not check the certificate: no sslrootcert, and a host name the certificate does not name.
    const info = `host=127.0.0.1 port=${gateway.port} dbname=shop user=demo sslmode=require`;
    const r = await sh('psql', [info, '-Atc', 'SELECT v FROM t', '-c', '\\conninfo'], { PGPASSWORD: await stack.token() });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')[0]).toBe('over tls');
    expect(r.stdout).toMatch(/SSL connection \(protocol: TLSv1\.[23]/);
  });

  it('psql with sslmode=verify-full refuses a gateway certificate from another CA', async () => {
    const info = `host=localhost port=${gateway.port} dbname=shop user=demo sslmode=verify-full sslrootcert=${otherCerts.ca}`;
    const r = await sh('psql', [info, '-c', 'SELECT 1'], { PGPASSWORD: await stack.token() });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/certificate verify failed/);
  });

  it('node-postgres verifies the certificate too', async () => {
    const c = new pg.Client({ host: 'localhost', port: gateway.port, user: 'demo', database: 'shop', password: await stack.token(), ssl: { ca: readFileSync(certs.ca, 'utf8') } });
    await c.connect();
    expect((await c.query('SELECT v FROM t')).rows).toEqual([{ v: 'over tls' }]);
    expect((await c.query('SHOW ssl')).rows.length).toBe(1);
    await c.end();
  });

  it('refuses a token sent without TLS when not in local mode', async () => {
    const r = await sh('psql', [conninfo(gateway, 'disable'), '-c', 'SELECT 1'], { PGPASSWORD: await stack.token() });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/accepts tokens only over TLS/);
  });

  it('a gateway without a certificate answers SSLRequest with N', async () => {
    const r = await sh('psql', [stack.conninfo({ sslmode: 'require' }), '-c', 'SELECT 1'], { PGPASSWORD: await stack.token() });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/server does not support SSL/);
  });
});

describe('agent ↔ upstream TLS', () => {
  let agent: TestAgent;

  beforeAll(async () => {
    agent = await startAgent('upstreams', {
      'up-disable': upstream(PLAIN_ROLE, 'disable'),
      'up-require': upstream(TLS_ROLE, 'require'),
      'up-verify': upstream(TLS_ROLE, 'verify-full', { sslrootcert: server.ca }),
      // pg_hba.conf lets this role in over TLS only.
      'up-refused': upstream(TLS_ROLE, 'disable'),
      'up-wrong-ca': upstream(TLS_ROLE, 'verify-full', { sslrootcert: otherCerts.ca }),
      // The server's certificate names 127.0.0.1 and localhost, not 127.0.0.2.
      'up-wrong-name': upstream(TLS_ROLE, 'verify-full', { sslrootcert: server.ca, host: '127.0.0.2' }),
    });
    await until(async () => {
      const r = await sh('psql', [stack.conninfo({ dbname: 'up-require' }), '-Atc', 'SELECT 1'], { PGPASSWORD: await stack.token() });
      return r.code === 0 || `${r.stderr}\n${agent.log()}`;
    }, 'agent "upstreams" never served a session');
  });

  it('verify-full from `warden start --upstream …?sslmode=verify-full&sslrootcert=…`: the backend is on TLS', async () => {
    const s = await upstreamTls('shop');
    expect(s).toMatchObject({ role: TLS_ROLE.name, v: 'over tls', ssl: true });
    expect(s.version).toMatch(/^TLSv1\.[23]$/);
  });

  it.each([
    ['up-disable', PLAIN_ROLE.name, false],
    ['up-require', TLS_ROLE.name, true],
    ['up-verify', TLS_ROLE.name, true],
  ])('%s: pg_stat_ssl shows the agent backend of %s with ssl=%s', async (resource, role, ssl) => {
    const s = await upstreamTls(resource);
    expect(s).toMatchObject({ role, v: 'over tls', ssl });
  });

  it('sslmode=disable for a role pg_hba.conf admits over TLS only: the client hears why', async () => {
    const err = await openError('up-refused');
    expect(err.code).toBe('08006');
    expect(err.message).toMatch(/agent upstreams could not log in to resource up-refused upstream as role warden_tls: .*no pg_hba\.conf entry .*no encryption/);
    expect(err.message).not.toContain(TLS_ROLE.password);
    await agentSaid(agent, { msg: 'upstream login failed', resource: 'up-refused', phase: 'login', reason: /^no pg_hba\.conf entry for host "127\.0\.0\.1", user "warden_tls", database "shop", no encryption$/ });
  });

  it('verify-full against a certificate from another CA fails clearly', async () => {
    const err = await openError('up-wrong-ca');
    expect(err.code).toBe('08006');
    expect(err.message).toMatch(/agent upstreams could not connect to resource up-wrong-ca upstream 127\.0\.0\.1:\d+: TLS certificate verification failed \(sslmode=verify-full, sslrootcert given\)/);
    await agentSaid(agent, { msg: 'upstream login failed', resource: 'up-wrong-ca', phase: 'connect', reason: /^TLS certificate verification failed .*(self[- ]signed certificate in certificate chain|unable to (get local issuer|verify))/ });
  });

  it('verify-full against a certificate for another name fails clearly', async () => {
    const err = await openError('up-wrong-name');
    expect(err.code).toBe('08006');
    expect(err.message).toMatch(/agent upstreams could not connect to resource up-wrong-name upstream 127\.0\.0\.2:\d+: TLS certificate verification failed.*127\.0\.0\.2.*(not in the cert|altnames)/);
    await agentSaid(agent, { msg: 'upstream login failed', resource: 'up-wrong-name', phase: 'connect', reason: /^TLS certificate verification failed .*127\.0\.0\.2/ });
  });

  it('require against a server without TLS fails instead of falling back to plain TCP', async () => {
    const plain = await startPostgres({ ssl: false, roles: [PLAIN_ROLE] });
    try {
      const a = await startAgent('no-tls', { 'up-no-tls': { ...upstream(PLAIN_ROLE, 'require'), port: plain.port, database: 'postgres' } });
      let err: Error & { code?: string } | undefined;
      await until(async () => {
        err = await openError('up-no-tls');
        return !/is not connected/.test(err.message) || err.message;
      }, 'agent "no-tls" never connected');
      expect(err!.code).toBe('08006');
      expect(err!.message).toMatch(/agent no-tls could not connect to resource up-no-tls upstream 127\.0\.0\.1:\d+: the server does not accept TLS connections \(sslmode=require\)/);
      await a.stop();
    } finally {
      await plain.stop();
    }
  });
});

describe('gateway ↔ agent link over TLS', () => {
  let linkCerts: Certs;
  let gw: Gateway;
  let good: TestAgent;
  let wrongCa: TestAgent;

  beforeAll(async () => {
    linkCerts = await makeCertificates(mkdtempSync(join(tmp, 'link-')));
    // TLS to clients and to agents, each with its own CA.
    gw = await startExtraGateway(stack, 'gw-link', [
      '--tls-cert', certs.cert, '--tls-key', certs.key,
      '--tunnel-tls-cert', linkCerts.cert, '--tunnel-tls-key', linkCerts.key,
    ]);
    gateways.push(gw);
    const verified = upstream(TLS_ROLE, 'verify-full', { sslrootcert: server.ca });
    good = await startAgent('link-good', { linked: verified }, { ca: linkCerts.ca });
    wrongCa = await startAgent('link-wrong-ca', { 'linked-wrong-ca': verified }, { ca: otherCerts.ca });
    await until(async () => {
      const r = await sh('psql', [conninfo(gw, 'verify-full', 'linked'), '-Atc', 'SELECT 1'], { PGPASSWORD: await stack.token() });
      return r.code === 0 || `${r.stderr}\n${gw.output()}\n${good.log()}`;
    }, 'agent "link-good" never served a session through gw-link');
  });

  it('the tunnel listener speaks TLS with its own certificate', async () => {
    const list = JSON.parse((await stack.cli('gateways', 'list', '--json')).stdout) as { id: string; tunnelAddress: string }[];
    const port = Number(list.find((g) => g.id === 'gw-link')!.tunnelAddress.split(':').pop());
    const subject = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca: readFileSync(linkCerts.ca) }, () => {
        resolve(String(s.getPeerCertificate().subjectaltname));
        s.destroy();
      });
      s.once('error', reject);
    });
    expect(subject).toContain('IP Address:127.0.0.1');
  });

  it('sessions work with TLS on every leg: client, link and upstream', async () => {
    const c = new pg.Client({ host: 'localhost', port: gw.port, user: 'demo', database: 'linked', password: await stack.token(), ssl: { ca: readFileSync(certs.ca, 'utf8') } });
    await c.connect();
    try {
      const { rows } = await c.query('SELECT pg_backend_pid() AS pid, (SELECT v FROM t) AS v, $1::text AS echo', ['through the link']);
      expect(rows[0]).toMatchObject({ v: 'over tls', echo: 'through the link' });
      const ssl = await server.query('SELECT ssl FROM pg_stat_ssl WHERE pid = $1', [rows[0].pid]);
      expect(ssl.rows).toEqual([{ ssl: true }]);
    } finally {
      await c.end();
    }
    await agentSaid(good, { msg: 'connected to gateway', gatewayId: 'gw-link' });
  });

  it('an agent that dials plain TCP does not link to a TLS tunnel', async () => {
    // Agent `local` of `warden start` has no gatewayTls.
    const err = await openError('shop', { host: 'localhost', port: gw.port, ssl: { ca: readFileSync(certs.ca, 'utf8') } });
    expect(err.code).toBe('08006');
    expect(err.message).toBe('agent local, which serves resource shop, is not connected to this gateway');
  });

  it('an agent that does not trust the gateway certificate never links: the client gets 08006 naming it', async () => {
    const err = await openError('linked-wrong-ca', { host: 'localhost', port: gw.port, ssl: { ca: readFileSync(certs.ca, 'utf8') } });
    expect(err.code).toBe('08006');
    expect(err.message).toBe('agent link-wrong-ca, which serves resource linked-wrong-ca, is not connected to this gateway');
    // The agent says why: the gateway's certificate is not signed by the CA it was given.
    const entry = await agentSaid(wrongCa, { msg: 'could not reach the gateway', gatewayId: 'gw-link' });
    expect((entry.err as { message: string }).message).toMatch(/self[- ]signed certificate in certificate chain|unable to (get local issuer|verify)/);
    // And the gateway says that an agent failed the handshake, rather than nothing.
    await until(async () => /could not complete the TLS handshake with the tunnel listener/.test(gw.output()) || gw.output().slice(-2000), 'the gateway did not log the failed handshake', 10_000);
  });
});
