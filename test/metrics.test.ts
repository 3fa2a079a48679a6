// Metrics and health, end to end: `warden start` against the machine's
// Postgres (control plane, gateway and agent as real processes), statements
// from node-postgres, and each process's /metrics, /healthz and /readyz read
// over HTTP. Counters must move by exactly what the clients did.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { ROOT, createDatabase, freePort, startExtraGateway, startStack, type Stack, type TestDatabase } from './support/stack.js';
import { sampleNames, scrape, valueOf, type Samples } from './support/metrics.js';

let db: TestDatabase;
let stack: Stack;

beforeAll(async () => {
  db = await createDatabase('warden_metrics');
  await db.query(`CREATE TABLE orders (id int PRIMARY KEY, amount int NOT NULL)`);
  await db.query(`INSERT INTO orders VALUES (1, 10), (2, 20)`);
  stack = await startStack({ upstream: db.url, resource: 'shop' });
});

afterAll(async () => {
  await stack?.stop();
  await db?.drop();
});

const get = async (url: string) => {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
};

/** Scrapes until `done` holds for the samples (events reach counters asynchronously); the last scrape when it never does. */
async function scrapeUntil(base: string, done: (s: Samples) => boolean, ms = 20_000): Promise<Samples> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await scrape(base);
    if (done(s) || Date.now() > deadline) return s;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const ALLOWED = 'warden_statements_total{decision="allowed",kind="SELECT"}';
const REFUSED = 'warden_statements_total{decision="refused",kind="DELETE"}';
const STORED = 'warden_audit_events_ingested_total{result="stored"}';
const BAD_LOGIN = 'warden_auth_failures_total{reason="invalid_password"}';

describe('metrics of a running Warden', () => {
  const scrapes: Samples[] = [];

  it('each process answers /healthz and /readyz with 200 once up', async () => {
    for (const base of Object.values(stack.metrics)) {
      expect(await get(`${base}/healthz`)).toEqual({ status: 200, body: 'ok\n' });
      expect(await get(`${base}/readyz`)).toEqual({ status: 200, body: 'ready\n' });
      expect((await get(`${base}/nothing`)).status).toBe(404);
    }
  });

  it('counts sessions, statements by decision and kind, refused logins, latencies and ingested events exactly', async () => {
    // Once the gateway's outbox is empty, the control plane has stored every earlier event (warden start's readiness check).
    const gateway = await scrapeUntil(stack.metrics.gateway, (s) => valueOf(s, 'warden_audit_outbox_bytes') === 0);
    const before = { gateway, agent: await scrape(stack.metrics.agent), controlPlane: await scrape(stack.metrics.controlPlane) };

    // Two sessions: three SELECTs (the same text: the second and third are decision-cache hits) and a refused DELETE.
    const clients = [];
    for (let i = 0; i < 2; i++) {
      const c = new pg.Client({ host: stack.host, port: stack.port, user: 'demo', database: 'shop', password: await stack.token() });
      await c.connect();
      clients.push(c);
    }
    for (let i = 0; i < 3; i++) expect((await clients[i % 2]!.query('SELECT count(*)::int AS n FROM orders')).rows).toEqual([{ n: 2 }]);
    const open = await scrape(stack.metrics.gateway);
    expect(valueOf(open, 'warden_sessions_open') - valueOf(before.gateway, 'warden_sessions_open')).toBe(2);
    await expect(clients[1]!.query('DELETE FROM orders')).rejects.toMatchObject({ code: '42501' });
    for (const c of clients) await c.end();
    // A login with a password that is no token.
    const bad = new pg.Client({ host: stack.host, port: stack.port, user: 'demo', database: 'shop', password: 'not-a-token' });
    await expect(bad.connect()).rejects.toMatchObject({ code: '28P01' });

    const delta = (a: Samples, b: Samples, series: string) => valueOf(b, series) - valueOf(a, series);
    const gw = await scrapeUntil(stack.metrics.gateway, (s) => delta(before.gateway, s, 'warden_sessions_open') === 0 && delta(before.gateway, s, BAD_LOGIN) === 1);
    expect(delta(before.gateway, gw, 'warden_sessions_total')).toBe(2);
    expect(delta(before.gateway, gw, 'warden_sessions_open')).toBe(0);
    expect(delta(before.gateway, gw, ALLOWED)).toBe(3);
    expect(delta(before.gateway, gw, REFUSED)).toBe(1);
    expect(delta(before.gateway, gw, 'warden_statement_duration_seconds_count')).toBe(4);
    expect(delta(before.gateway, gw, BAD_LOGIN)).toBe(1);
    expect(delta(before.gateway, gw, 'warden_decision_cache_hits_total')).toBeGreaterThanOrEqual(2);
    expect(delta(before.gateway, gw, 'warden_decision_cache_misses_total') + delta(before.gateway, gw, 'warden_decision_cache_hits_total')).toBeGreaterThanOrEqual(4);
    expect(valueOf(gw, 'warden_agent_links{agent="local"}')).toBe(1);
    expect(valueOf(gw, 'warden_config_version')).toBeGreaterThan(0);
    expect(valueOf(gw, 'warden_config_age_seconds')).toBeGreaterThanOrEqual(0);

    // Every event reaches the control plane: 2 sessions x (start + end) + 4 statements + 1 refused login.
    const cp = await scrapeUntil(stack.metrics.controlPlane, (s) => delta(before.controlPlane, s, STORED) >= 9);
    expect(delta(before.controlPlane, cp, STORED)).toBe(9);
    expect(delta(before.controlPlane, cp, 'warden_audit_ingest_lag_seconds_count')).toBe(9);
    // Delivered, so the gateway's outbox is empty again.
    const drained = await scrapeUntil(stack.metrics.gateway, (s) => valueOf(s, 'warden_audit_outbox_bytes') === 0);
    expect(valueOf(drained, 'warden_audit_outbox_bytes')).toBe(0);
    expect(valueOf(drained, 'warden_audit_outbox_age_seconds')).toBe(0);

    // The three SELECTs went upstream through the agent (the refused DELETE did not).
    const agent = await scrape(stack.metrics.agent);
    expect(delta(before.agent, agent, 'warden_upstream_latency_seconds_count')).toBeGreaterThanOrEqual(3);
    expect([...agent.keys()].filter((k) => k.startsWith('warden_gateway_links{')).map((k) => agent.get(k))).toEqual([1]);
    expect(agent.has('warden_link_window_stalls_total')).toBe(true);
    // prom-client's default process metrics come along.
    expect(agent.has('process_cpu_seconds_total')).toBe(true);
    scrapes.push(gw, cp, agent);
  });

  it('every metric the Grafana dashboard queries is in a real scrape', () => {
    expect(scrapes).toHaveLength(3);
    const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy/grafana/warden-dashboard.json'), 'utf8')) as { panels: { targets?: { expr: string }[] }[] };
    const queried = new Set(
      dashboard.panels.flatMap((p) => (p.targets ?? []).flatMap((t) => t.expr.match(/\b(?:warden|process|nodejs)_[a-z0-9_]+\b/g) ?? [])),
    );
    const scraped = new Set(scrapes.flatMap((s) => [...sampleNames(s)]));
    expect(queried.size).toBeGreaterThan(15);
    expect([...queried].filter((name) => !scraped.has(name))).toEqual([]);
  });

  it('a gateway without its configuration is alive (/healthz 200) but not ready (/readyz 503)', async () => {
    const metricsPort = await freePort();
    // Pointed at a control plane that is not there: no configuration ever arrives.
    const gateway = await startExtraGateway(stack, 'unready', ['--metrics-listen', `127.0.0.1:${metricsPort}`], { controlPlane: `127.0.0.1:${await freePort()}` });
    try {
      const base = `http://127.0.0.1:${metricsPort}`;
      const deadline = Date.now() + 20_000;
      let health = { status: 0, body: '' };
      while (Date.now() < deadline) {
        health = await get(`${base}/healthz`).catch(() => ({ status: 0, body: '' }));
        if (health.status === 200) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(health, gateway.output()).toEqual({ status: 200, body: 'ok\n' });
      expect(await get(`${base}/readyz`)).toEqual({ status: 503, body: 'not ready: no configuration from the control plane yet\n' });
      expect(valueOf(await scrape(base), 'warden_config_version')).toBe(0);
    } finally {
      await gateway.stop();
    }
  });

  it('an agent the control plane does not know is alive but not ready', async () => {
    const metricsPort = await freePort();
    const config = join(stack.dataDir, 'stranger.json');
    writeFileSync(config, JSON.stringify({ name: 'stranger', controlPlane: { address: stack.controlPlane }, enrollmentToken: 'wdn_agent_not-enrolled', resources: {} }));
    const agent = spawn(process.execPath, [join(ROOT, 'agent/bin/warden-agent.js'), '--config', config, '--metrics-listen', `127.0.0.1:${metricsPort}`], { stdio: 'ignore' });
    const exited = new Promise((r) => agent.once('exit', r));
    try {
      const base = `http://127.0.0.1:${metricsPort}`;
      const deadline = Date.now() + 20_000;
      let health = { status: 0, body: '' };
      while (health.status !== 200 && Date.now() < deadline) {
        health = await get(`${base}/healthz`).catch(() => ({ status: 0, body: '' }));
        if (health.status !== 200) await new Promise((r) => setTimeout(r, 100));
      }
      expect(health).toEqual({ status: 200, body: 'ok\n' });
      expect(await get(`${base}/readyz`)).toEqual({ status: 503, body: 'not ready: no gateway known yet (is the control plane reachable?)\n' });
      const samples = await scrape(base);
      expect(samples.get('warden_link_channels')).toBe(0);
      expect([...samples.keys()].filter((k) => k.startsWith('warden_gateway_links'))).toEqual([]);
    } finally {
      agent.kill('SIGTERM');
      await exited;
    }
  });

  // Last: it leaves this machine's address limited on the stack's gateway for the rest of the minute.
  it('counts logins refused by the login limits by their number, though they are recorded in sums', async () => {
    const limited = 'warden_auth_failures_total{reason="rejected_connection"}';
    const before = await scrape(stack.metrics.gateway);
    const attempt = async () => {
      const c = new pg.Client({ host: stack.host, port: stack.port, user: 'demo', database: 'shop', password: 'not-a-token' });
      return c.connect().then(() => (c.end(), 'connected'), (e: { code?: string }) => e.code);
    };
    let refused = 0;
    let failed = 0;
    // Failed logins until the limit (30 a minute from one address) trips, then three more: all refused by the limit.
    for (let i = 0; i < 40 && refused === 0; i++) {
      const code = await attempt();
      if (code === '08004') refused++;
      else if (code === '28P01') failed++;
      else throw new Error(`unexpected outcome ${code}`);
    }
    for (let i = 0; i < 3; i++) if ((await attempt()) === '08004') refused++;
    expect(refused).toBe(4);
    // The limiter reports its refusals every 10 s.
    const after = await scrapeUntil(stack.metrics.gateway, (s) => valueOf(s, limited) - valueOf(before, limited) >= refused, 30_000);
    expect(valueOf(after, limited) - valueOf(before, limited)).toBe(refused);
    expect(valueOf(after, BAD_LOGIN) - valueOf(before, BAD_LOGIN)).toBe(failed);
  });
});

it('the stack helper reads the metrics addresses warden start writes', () => {
  const ready = JSON.parse(readFileSync(join(stack.dataDir, 'ready.json'), 'utf8')) as { metrics: Record<string, string> };
  expect(Object.keys(ready.metrics).sort()).toEqual(['agent', 'controlPlane', 'gateway']);
  for (const url of Object.values(ready.metrics)) expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
});
