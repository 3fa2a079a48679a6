// Connection-level measurements with node-postgres: memory per idle session
// and session setup rate.
import pg from 'pg';
import { percentile } from './pgbench.js';
import { rssBytes } from './procstat.js';
import { sleep } from './util.js';

/** @typedef {import('./paths.js').BenchPath} BenchPath */

const WARMUP_SESSIONS = 5;

/**
 * VmRSS per named process once it has settled: sampled every 200 ms until
 * the sum over all processes moves less than `tolBytes` within `windowMs`
 * (garbage collection and freed buffers make Node's RSS drift for a while),
 * then the mean over that window. Gives up after `timeoutMs`.
 * @param {Record<string, number>} pids
 */
async function settledRss(pids, { windowMs = 2000, tolBytes = 256 * 1024, timeoutMs = 20_000 } = {}) {
  const gap = 200;
  const need = Math.ceil(windowMs / gap) + 1;
  /** @type {Record<string, number>[]} */
  const window = [];
  const deadline = Date.now() + timeoutMs;
  let settled = false;
  for (;;) {
    /** @type {Record<string, number>} */
    const s = {};
    for (const [name, pid] of Object.entries(pids)) s[name] = rssBytes(pid) ?? NaN;
    window.push(s);
    if (window.length > need) window.shift();
    if (window.length === need) {
      const totals = window.map((w) => Object.values(w).reduce((a, b) => a + b, 0));
      if (Math.max(...totals) - Math.min(...totals) < tolBytes) { settled = true; break; }
    }
    if (Date.now() > deadline) break;
    await sleep(gap);
  }
  /** @type {Record<string, number>} */
  const mean = {};
  for (const name of Object.keys(pids)) mean[name] = window.reduce((a, w) => a + w[name], 0) / window.length;
  return { mean, settled };
}

/**
 * Open `count` idle sessions through a path (in batches), and report how
 * much the path's processes grew per session.
 * @param {BenchPath} path
 * @param {number} count
 * @param {number} batch
 * @param {(msg: string) => void} log
 */
export async function idleSessionMemory(path, count, batch, log) {
  const conn = await path.conn();
  // Warm-up: a few sessions opened and closed, so first-use allocations
  // (code, buffers, pools) are not counted per session; only a few, so the
  // heap they free does not hide what the measured sessions take.
  const warm = Array.from({ length: Math.min(WARMUP_SESSIONS, count) }, () => new pg.Client({ ...conn, ssl: false, connectionTimeoutMillis: 30_000 }));
  await Promise.allSettled(warm.map(async (c) => {
    c.on('error', () => {});
    await c.connect();
    await c.query('SELECT 1');
  }));
  await Promise.all(warm.map((c) => c.end().catch(() => {})));
  const { mean: before, settled: settledBefore } = await settledRss(path.pids);
  /** @type {pg.Client[]} */
  const clients = [];
  let error = null;
  const started = Date.now();
  try {
    while (clients.length < count) {
      const n = Math.min(batch, count - clients.length);
      const batchClients = Array.from({ length: n }, () => new pg.Client({ ...conn, ssl: false, connectionTimeoutMillis: 30_000 }));
      const results = await Promise.allSettled(batchClients.map(async (c) => {
        c.on('error', () => {});
        await c.connect();
        await c.query('SELECT 1');
      }));
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') clients.push(batchClients[i]);
        else {
          error ??= r.reason instanceof Error ? r.reason.message : String(r.reason);
          batchClients[i].end().catch(() => {});
        }
      });
      if (error) break;
    }
    const openSeconds = (Date.now() - started) / 1000;
    const { mean: after, settled: settledAfter } = await settledRss(path.pids);
    const opened = clients.length;
    /** @type {Record<string, number | null>} */
    const perSessionKiB = {};
    let total = 0;
    for (const name of Object.keys(path.pids)) {
      const kib = opened ? (after[name] - before[name]) / 1024 / opened : null;
      perSessionKiB[name] = kib;
      total += kib ?? NaN;
    }
    if (error) log(`  ${path.id}: stopped at ${opened} sessions: ${error}`);
    return {
      path: path.id,
      requested: count,
      opened,
      batch,
      warmupSessions: Math.min(WARMUP_SESSIONS, count),
      openSeconds,
      error,
      rssSettled: settledBefore && settledAfter,
      rssBeforeBytes: before,
      rssAfterBytes: after,
      perSessionKiB,
      perSessionKiBTotal: opened ? total : null,
    };
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }
}

/** Connections opened and closed before the timed ones (first-use costs). */
const SETUP_WARMUP = 10;

/**
 * Open and close `count` connections, `parallel` at a time, each with a
 * full login: the client's connect() resolves on ReadyForQuery, which
 * Warden's gateway relays only once the agent has logged in upstream, so
 * each one includes the token check (one token shared by all, as a client
 * pool would) and the upstream login. The rate counts connections that
 * succeeded, over the wall time of the whole timed part.
 * @param {BenchPath} path
 * @param {number} count
 * @param {number} parallel
 */
export async function sessionSetupRate(path, count, parallel) {
  const conn = await path.conn();
  /** @type {number[]} */
  const connectMs = [];
  let failures = 0;
  let firstError = null;
  /** Opens and closes `n` connections, `parallel` at a time. */
  const openClose = async (/** @type {number} */ n, /** @type {boolean} */ timed) => {
    let next = 0;
    await Promise.all(Array.from({ length: parallel }, async () => {
      while (next < n) {
        next++;
        const c = new pg.Client({ ...conn, ssl: false, connectionTimeoutMillis: 30_000 });
        c.on('error', () => {});
        const t0 = process.hrtime.bigint();
        try {
          await c.connect();
          if (timed) connectMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
        } catch (err) {
          if (timed) failures++;
          firstError ??= err instanceof Error ? err.message : String(err);
        } finally {
          await c.end().catch(() => {});
        }
      }
    }));
  };
  await openClose(SETUP_WARMUP, false);
  const started = process.hrtime.bigint();
  await openClose(count, true);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  connectMs.sort((a, b) => a - b);
  return {
    path: path.id,
    connections: connectMs.length,
    warmup: SETUP_WARMUP,
    failures,
    error: firstError,
    parallel,
    seconds,
    perSecond: connectMs.length / seconds,
    connectP50Ms: percentile(connectMs, 50),
    connectP99Ms: percentile(connectMs, 99),
  };
}
