// The deployment the design promises, built in network namespaces on this
// machine and shown to hold:
//   vpc  — a Postgres of its own and the agent; inbound connections dropped
//          (nftables), the agent only dials out;
//   edge — two gateways;
//   ci   — the clients (node-postgres, in the namespace);
//   this namespace (on the bridge) — the control plane in two replicas over
//          one Postgres database, and a three-node NATS JetStream cluster
//          whose audit stream keeps three copies.
// Needs root and `ip netns` (fails, saying so, without them) and nftables.
import { chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type KeyLike } from 'jose';
import { connect as natsConnect } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeInbound, droppedInbound, Network, PgDriver, Proc, waitUntil, type DriverAnswer, type Host } from './support/netns.js';
import { createDatabase, makeCertificates, ROOT, sh, WARDEN, type TestDatabase } from './support/stack.js';

const GATEWAY = join(ROOT, 'gateway/bin/warden-gateway.js');
const AGENT = join(ROOT, 'agent/bin/warden-agent.js');
const DRIVER = join(ROOT, 'test/support/pg-driver.mjs');
const ISSUER = 'urn:warden:scale-out';
const VPC_PG_PORT = 5432;
const GW = { a: { port: 15432, tunnel: 7443 }, b: { port: 15433, tunnel: 7444 } } as const;

const work = mkdtempSync(join(tmpdir(), 'warden-scaleout-'));
const adminToken = `wdn_admin_${randomBytes(16).toString('hex')}`;
const gatewayToken = `wdn_gw_${randomBytes(16).toString('hex')}`;
let net: Network;
let vpc: Host;
let edge: Host;
let ci: Host;
let cpDb: TestDatabase;
let signingKey: KeyLike;
let ca: string;
let clients: PgDriver;
/** Run in reverse order by afterAll: processes of this namespace, files outside `work`. */
const cleanups: Array<() => Promise<unknown>> = [];
let vpcPostgres: Proc | undefined;
const nats: Array<{ name: string; proc: Proc; url: string }> = [];
const cps: Array<{ proc: Proc; address: string; dataDir: string }> = [];
const gateways: Record<'a' | 'b', Proc | undefined> = { a: undefined, b: undefined };
let agent: Proc;
/** Statements the clients saw answered, with the gateway they went through. */
const acknowledged: Array<{ sql: string; gateway: 'a' | 'b' }> = [];
let marks = 0;

function pgBin(): string {
  const versions = readdirSync('/usr/lib/postgresql').sort((x, y) => Number(y) - Number(x));
  if (!versions.length) throw new Error('no Postgres server in /usr/lib/postgresql (Debian: apt-get install postgresql)');
  return `/usr/lib/postgresql/${versions[0]}/bin`;
}

/** A free port on `host` (bind to 0, read it, close). */
function freePortOn(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** A process in this namespace, killed in afterAll. */
function startHere(name: string, args: string[], env: Record<string, string> = {}): Proc {
  const proc = new Proc(name, spawn(args[0]!, args.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
  cleanups.push(() => proc.kill('SIGKILL'));
  return proc;
}

async function warden(...args: string[]): Promise<string> {
  const r = await sh(process.execPath, [WARDEN, ...args, '--control-plane', cps.map((c) => c.address).join(',')], { WARDEN_ADMIN_TOKEN: adminToken });
  if (r.code !== 0) throw new Error(`warden ${args.join(' ')} failed (${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

function policy(jwks: string, identities: string[]): string {
  return `version: 1
issuers:
  - name: ci
    issuer_url: ${ISSUER}
    audiences: [warden]
    jwks_json: '${jwks}'
identities:
${identities.map((i) => `  - name: ${i}\n    issuer: ci\n    match: { sub: ${i} }\n`).join('')}resources:
  - name: shop
    agent: vpc
rules:
  - name: ci
    resource: shop
    identities: [${identities.join(', ')}]
    access: write
`;
}

async function token(sub: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setIssuer(ISSUER).setAudience('warden').setSubject(sub).setIssuedAt(now).setExpirationTime(now + 3600).sign(signingKey);
}

/** A client session in the ci namespace through gateway `gw`. */
async function session(name: string, gw: 'a' | 'b', sub = 'ci-job'): Promise<DriverAnswer> {
  return clients.request({
    op: 'connect',
    name,
    config: { host: edge.address, port: GW[gw].port, user: sub, database: 'shop', password: await token(sub), ca, application_name: name },
  });
}

/** Runs a marked statement in session `name` (through `gw`), recording it when answered. */
async function marked(name: string, gw: 'a' | 'b'): Promise<DriverAnswer> {
  const sql = `SELECT 'scaleout-${++marks}' AS mark, inet_server_addr()::text AS server`;
  const r = await clients.request({ op: 'query', name, sql });
  if (r.ok) acknowledged.push({ sql, gateway: gw });
  return r;
}

async function startControlPlane(i: number): Promise<void> {
  const cp = cps[i]!;
  cp.proc = startHere(
    `control plane ${i}`,
    [process.execPath, WARDEN, 'control-plane', '--listen', cp.address, '--data-dir', cp.dataDir, '--database-url', cpDb.url, '--nats', nats.map((n) => n.url).join(','), '--audit-stream-replicas', '3'],
    { WARDEN_ADMIN_TOKEN: adminToken, WARDEN_GATEWAY_TOKEN: gatewayToken },
  );
  await cp.proc.logged(/control plane listening/);
}

function startGateway(gw: 'a' | 'b'): Proc {
  const proc = new Proc(
    `gateway ${gw}`,
    edge.spawn(process.execPath, [
      GATEWAY,
      '--id', `gw-${gw}`,
      '--listen', `0.0.0.0:${GW[gw].port}`,
      '--tunnel-listen', `0.0.0.0:${GW[gw].tunnel}`,
      '--tunnel-advertise', `${edge.address}:${GW[gw].tunnel}`,
      '--control-plane', cps.map((c) => c.address).join(','),
      '--nats', nats.map((n) => n.url).join(','),
      '--tls-cert', join(work, 'certs/server.pem'),
      '--tls-key', join(work, 'certs/server.key'),
      '--data-dir', join(work, `gw-${gw}`),
    ], { env: { ...process.env, WARDEN_GATEWAY_TOKEN: gatewayToken } }),
  );
  gateways[gw] = proc;
  return proc;
}

/** TCP connect from `from` to host:port: 'open', 'refused', or 'no answer' (the SYN was dropped). */
async function tryConnect(from: Host, host: string, port: number): Promise<'open' | 'refused' | 'no answer'> {
  const r = await from.exec('timeout', ['3', 'bash', '-c', `exec 3<>/dev/tcp/${host}/${port}`]);
  return r.code === 0 ? 'open' : r.code === 124 ? 'no answer' : 'refused';
}

/** The processes in `host` with an established TCP connection to address:port. */
async function connectedTo(host: Host, address: string): Promise<Set<number>> {
  const r = await host.exec('ss', ['-Htnp', 'state', 'established', 'dst', address]);
  return new Set([...r.stdout.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1])));
}

/** True when gateways a and b (in edge) and the agent (in vpc) are all connected to the control plane at `address`. */
async function allOn(address: string): Promise<boolean> {
  const [inEdge, inVpc] = await Promise.all([connectedTo(edge, address), connectedTo(vpc, address)]);
  return inEdge.has(gateways.a!.pid) && inEdge.has(gateways.b!.pid) && inVpc.has(agent.pid);
}

async function auditedStatements(): Promise<Map<string, string>> {
  const r = await cpDb.query(`SELECT sql, gateway FROM audit_events WHERE type = 'statement' AND sql LIKE '%scaleout-%'`);
  return new Map(r.rows.map((row: { sql: string; gateway: string }) => [row.sql, row.gateway]));
}

/** Waits until every acknowledged statement is in the audit store, recorded by the gateway it went through. */
async function allAudited(): Promise<Map<string, string>> {
  let missing: string[] = [];
  return waitUntil(
    `all ${acknowledged.length} acknowledged statements in the audit store`,
    async () => {
      const stored = await auditedStatements();
      missing = acknowledged.filter((a) => stored.get(a.sql) !== `gw-${a.gateway}`).map((a) => a.sql);
      return missing.length === 0 && stored;
    },
    90_000,
    () => `missing: ${missing.join(' | ')}\n${cps.map((c) => c.proc.output().slice(-1500)).join('\n')}`,
  );
}

beforeAll(async () => {
  net = await Network.create(['vpc', 'edge', 'ci']);
  ({ vpc, edge, ci } = net.hosts as Record<'vpc' | 'edge' | 'ci', Host>);
  await closeInbound(vpc);

  // The private database: a Postgres server of the vpc's own, listening on every address there.
  // initdb refuses root: the data directory is the postgres user's, outside `work` (which only root may enter).
  const pgData = mkdtempSync(join(tmpdir(), 'warden-scaleout-pg-'));
  cleanups.push(async () => rmSync(pgData, { recursive: true, force: true }));
  const owner = await account('postgres');
  chownSync(pgData, owner.uid, owner.gid);
  const asPostgres = ['--reuid=postgres', '--regid=postgres', '--init-groups'];
  const init = await sh('setpriv', [...asPostgres, `${pgBin()}/initdb`, '-D', pgData, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C']);
  if (init.code !== 0) throw new Error(`initdb failed: ${init.stderr}`);
  vpcPostgres = new Proc(
    'vpc postgres',
    vpc.spawn('setpriv', [...asPostgres, `${pgBin()}/postgres`, '-D', pgData, '-p', String(VPC_PG_PORT), '-k', pgData, '-c', 'listen_addresses=*', '-c', 'fsync=off']),
  );
  await waitUntil('the vpc Postgres', async () => (await vpc.exec('pg_isready', ['-h', '127.0.0.1', '-p', String(VPC_PG_PORT)])).code === 0, 60_000, () => vpcPostgres!.output());
  const created = await vpc.exec('psql', ['-h', '127.0.0.1', '-p', String(VPC_PG_PORT), '-U', 'postgres', '-c', 'CREATE DATABASE shop']);
  if (created.code !== 0) throw new Error(`CREATE DATABASE shop: ${created.stderr}`);

  // Three NATS servers in one JetStream cluster, on the bridge address.
  const here = net.address;
  const ports = await Promise.all([0, 1, 2].map(async () => ({ client: await freePortOn(here), route: await freePortOn(here) })));
  for (const [i, p] of ports.entries()) {
    const dir = join(work, `nats-${i}`);
    const conf = join(work, `nats-${i}.conf`);
    writeFileSync(
      conf,
      `server_name: n${i}\nlisten: "${here}:${p.client}"\njetstream { store_dir: "${dir}", max_memory_store: 64MB, max_file_store: 1GB }\n` +
        `cluster { name: warden-${net.id}, listen: "${here}:${p.route}", routes: [${ports.map((o) => `"nats-route://${here}:${o.route}"`).join(', ')}] }\n`,
    );
    nats.push({ name: `n${i}`, proc: startHere(`nats ${i}`, ['/usr/sbin/nats-server', '-c', conf]), url: `nats://${here}:${p.client}` });
  }
  await waitUntil('the NATS cluster to elect a JetStream leader', async () => {
    const nc = await natsConnect({ servers: nats.map((n) => n.url), timeout: 2_000 }).catch(() => undefined);
    if (!nc) return false;
    try {
      return (await (await nc.jetstreamManager()).getAccountInfo()) !== undefined;
    } catch {
      return false; // no JetStream leader yet
    } finally {
      await nc.close();
    }
  }, 60_000, () => nats.map((n) => n.proc.output().slice(-1000)).join('\n'));

  // The control plane: two replicas over one database on the shared Postgres.
  // Everyone is given both addresses; the second replica starts once all are
  // connected to the first, so that killing the first makes every one of them fail over.
  cpDb = await createDatabase('warden_scaleout');
  for (const i of [0, 1]) cps.push({ address: `${here}:${await freePortOn(here)}`, dataDir: join(work, `cp-${i}`), proc: undefined as unknown as Proc });
  await startControlPlane(0);

  const { publicKey, privateKey } = await generateKeyPair('ES256');
  signingKey = privateKey;
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), alg: 'ES256', use: 'sig' }] });
  writeFileSync(join(work, 'policy.yaml'), policy(jwks, ['ci-job']));
  writeFileSync(join(work, 'policy-2.yaml'), policy(jwks, ['ci-job', 'ci-late']));
  await warden('policy', 'apply', '-f', join(work, 'policy.yaml'));
  const enrollment = (await warden('agents', 'enroll', 'vpc')).trim();

  // Gateways in edge, with TLS for the clients (tokens never travel in the clear).
  mkdirSync(join(work, 'certs'));
  const certs = await makeCertificates(join(work, 'certs'), [`IP:${edge.address}`]);
  ca = certs.ca;
  await Promise.all([startGateway('a').logged(/gateway listening/), startGateway('b').logged(/gateway listening/)]);

  // The agent in vpc: it knows both control-plane replicas and dials out to the gateways they name.
  const agentDir = join(work, 'agent');
  mkdirSync(agentDir);
  const agentConfig = join(agentDir, 'agent.json');
  writeFileSync(
    agentConfig,
    JSON.stringify({
      name: 'vpc',
      controlPlane: { address: cps.map((c) => c.address).join(',') },
      enrollmentToken: enrollment,
      resources: { shop: { host: '127.0.0.1', port: VPC_PG_PORT, database: 'shop', user: 'postgres' } },
    }),
  );
  agent = new Proc('agent', vpc.spawn(process.execPath, [AGENT, '--config', agentConfig]));
  await Promise.all([gateways.a!.logged(/agent connected/), gateways.b!.logged(/agent connected/)]);
  await startControlPlane(1);

  clients = new PgDriver(ci, DRIVER);
}, 240_000);

afterAll(async () => {
  await clients?.close().catch(() => {});
  await vpcPostgres?.kill('SIGINT');
  await net?.destroy();
  for (const clean of cleanups.reverse()) await clean();
  await cpDb?.drop();
  rmSync(work, { recursive: true, force: true });
}, 60_000);

async function account(user: string): Promise<{ uid: number; gid: number }> {
  const [u, g] = await Promise.all([sh('id', ['-u', user]), sh('id', ['-g', user])]);
  if (u.code !== 0) throw new Error(`no ${user} user to run the vpc's Postgres as: ${u.stderr}`);
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
}

describe('scale-out in network namespaces', () => {
  it('the agent reaches both gateways by dialling out, and nothing connects into vpc', async () => {
    // The agent's links are connections it opened to the gateways' tunnel ports.
    expect(await connectedTo(vpc, `${edge.address}:${GW.a.tunnel}`)).toEqual(new Set([agent.pid]));
    expect(await connectedTo(vpc, `${edge.address}:${GW.b.tunnel}`)).toEqual(new Set([agent.pid]));
    // Every connection vpc has with the outside was opened from inside: none ends at a port vpc listens on.
    const listening = await vpc.exec('ss', ['-Htln']);
    const listenPorts = new Set([...listening.stdout.matchAll(/:(\d+)\s+\S+:\*/g)].map((m) => m[1]));
    const outside = (await vpc.exec('ss', ['-Htn', 'state', 'established'])).stdout
      .split('\n')
      .map((line) => line.trim().split(/\s+/))
      .filter((cols) => cols.length >= 4 && !cols[2]!.startsWith('127.'));
    expect(outside.length).toBeGreaterThanOrEqual(3); // two tunnel links and the control plane
    for (const [, , local] of outside) expect(listenPorts.has(local!.split(':').pop()!), local).toBe(false);
    // vpc's Postgres listens on every address there: only the firewall keeps others out.
    expect(await tryConnect(vpc, vpc.address, VPC_PG_PORT)).toBe('open');
    expect(listening.stdout).toMatch(new RegExp(`0\\.0\\.0\\.0:${VPC_PG_PORT}`));
    const before = await droppedInbound(vpc);
    expect(await tryConnect(edge, vpc.address, VPC_PG_PORT)).toBe('no answer');
    expect(await tryConnect(ci, vpc.address, VPC_PG_PORT)).toBe('no answer');
    // Not even to a port nobody listens on: the SYN is dropped, not refused.
    expect(await tryConnect(edge, vpc.address, 1)).toBe('no answer');
    expect(await droppedInbound(vpc)).toBeGreaterThan(before);
  });

  it('clients reach the database through either gateway', async () => {
    for (const gw of ['a', 'b'] as const) {
      expect(await session(`s-${gw}`, gw)).toMatchObject({ ok: true });
      const r = await marked(`s-${gw}`, gw);
      expect(r).toMatchObject({ ok: true });
      // The answer comes from vpc's own Postgres (the agent logs in over its loopback).
      expect(r.rows?.[0]?.server).toBe('127.0.0.1/32');
    }
  });

  it('a CancelRequest sent to the other gateway cancels the query', async () => {
    const key = await session('sleeper', 'a');
    expect(key).toMatchObject({ ok: true });
    const sleeping = clients.request({ op: 'query', name: 'sleeper', sql: 'SELECT pg_sleep(120)' });
    await waitUntil('pg_sleep to run in vpc', async () => {
      const r = await vpc.exec('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-Atc', "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(120)%' AND state = 'active'"]);
      return r.stdout.trim() === '1';
    });
    expect(await clients.request({ op: 'cancel', host: edge.address, port: GW.b.port, pid: key.pid, secret: key.secret })).toMatchObject({ ok: true });
    expect(await sleeping).toMatchObject({ ok: false, code: '57014' });
    expect(await marked('sleeper', 'a')).toMatchObject({ ok: true });
  });

  it('killing a control-plane replica: gateways and the agent fail over to the other', async () => {
    const [first, second] = cps as [(typeof cps)[0], (typeof cps)[0]];
    // Both gateways and the agent are on the first replica (the second started after they connected).
    await waitUntil('gateways and agent on the first replica', () => allOn(first.address));
    expect((await connectedTo(edge, second.address)).size + (await connectedTo(vpc, second.address)).size).toBe(0);
    await first.proc.kill('SIGKILL');
    await waitUntil('gateways and agent on the second replica', () => allOn(second.address));
    // Sessions go on, new ones open through both gateways.
    expect(await marked('s-a', 'a')).toMatchObject({ ok: true });
    for (const gw of ['a', 'b'] as const) {
      expect(await session(`after-cp-${gw}`, gw)).toMatchObject({ ok: true });
      expect(await marked(`after-cp-${gw}`, gw)).toMatchObject({ ok: true });
    }
    // A policy change made now reaches both gateways through the surviving replica.
    await warden('policy', 'apply', '-f', join(work, 'policy-2.yaml'));
    for (const gw of ['a', 'b'] as const) {
      await waitUntil(`ci-late admitted by gateway ${gw}`, async () => (await session(`late-${gw}`, gw, 'ci-late')).ok);
      expect(await marked(`late-${gw}`, gw)).toMatchObject({ ok: true });
    }
    expect(agent.running).toBe(true);
  });

  it("killing the audit stream's leader node loses no audit event; the stream keeps three copies", async () => {
    const stream = async () => {
      const nc = await natsConnect({ servers: nats.filter((n) => n.proc.running).map((n) => n.url) });
      try {
        return await (await nc.jetstreamManager()).streams.info('WARDEN_AUDIT');
      } finally {
        await nc.close();
      }
    };
    const info = await stream();
    // Set by the control plane; the gateways, which ensure the stream without a count, left it alone.
    expect(info.config.num_replicas).toBe(3);
    expect(info.cluster?.replicas?.length).toBe(2);
    const leader = nats.find((n) => n.name === info.cluster?.leader);
    expect(leader).toBeDefined();
    await allAudited();
    await leader!.proc.kill('SIGKILL');
    for (let i = 0; i < 5; i++) {
      expect(await marked('s-a', 'a')).toMatchObject({ ok: true });
      expect(await marked('s-b', 'b')).toMatchObject({ ok: true });
    }
    await allAudited();
    const after = await waitUntil('a new leader for the audit stream', async () => {
      const i = await stream().catch(() => undefined);
      return i?.cluster?.leader && i.cluster.leader !== leader!.name ? i : undefined;
    });
    expect(after.config.num_replicas).toBe(3);
  });

  it('killing a gateway: its clients lose the connection, the other goes on, and no audit event is lost', async () => {
    // Statements answered just before the kill: their events may still be in gateway a's outbox.
    const before = acknowledged.length;
    await Promise.all(['s-a', 'after-cp-a', 'late-a'].map(async (name) => {
      for (let i = 0; i < 10; i++) expect(await marked(name, 'a')).toMatchObject({ ok: true });
    }));
    expect(acknowledged.length - before).toBe(30);
    const inFlight = clients.request({ op: 'query', name: 's-a', sql: 'SELECT pg_sleep(120)' });
    await waitUntil('pg_sleep to run in vpc', async () => {
      const r = await vpc.exec('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-Atc', "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(120)%' AND state = 'active'"]);
      return r.stdout.trim() === '1';
    });
    await gateways.a!.kill('SIGKILL');
    const lost = await inFlight;
    expect(lost.ok).toBe(false);
    // A clean end: the kernel closes the dead gateway's sockets, so the client sees its connection end
    // (node-postgres: "Connection terminated unexpectedly"; libpq: 08006), never a hang.
    expect(lost.code === '08006' || /^Connection terminated unexpectedly$|ECONNRESET/.test(lost.message ?? '')).toBe(true);
    // The other gateway's sessions go on, and new sessions go through it.
    expect(await marked('s-b', 'b')).toMatchObject({ ok: true });
    expect(await session('after-gw', 'b')).toMatchObject({ ok: true });
    expect(await marked('after-gw', 'b')).toMatchObject({ ok: true });
    expect((await session('to-dead', 'a')).ok).toBe(false);
    // What the killed gateway acknowledged waits in its outbox: restarted on its data directory, it delivers it.
    await startGateway('a').logged(/gateway listening/);
    const stored = await allAudited();
    expect(acknowledged.filter((a) => a.gateway === 'a').length).toBeGreaterThan(0);
    expect(acknowledged.filter((a) => a.gateway === 'b').length).toBeGreaterThan(0);
    expect([...stored.keys()].filter((sql) => acknowledged.some((a) => a.sql === sql)).length).toBe(acknowledged.length);
  });
});
