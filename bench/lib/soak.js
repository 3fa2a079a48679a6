// The soak (issue #17): many sessions held open through the Warden chain for
// minutes while statements flow, with the VmRSS of the gateway, the agent
// and the control plane sampled throughout. Memory is flat when it grows by
// at most SOAK_GROWTH_PCT from minute 1 to the end.
import { fork } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createScratchDatabase, query, serverInfo } from './db.js';
import { descriptorsNeeded, openFilesLimit, sessionsAllowed } from './limits.js';
import { benchPolicyLines, chainDataDir, wardenCli } from './masking.js';
import { startOwnPostgres } from './own-postgres.js';
import { rssBytes } from './procstat.js';
import { childEnv, onCleanup, sleep, tempDir } from './util.js';
import { startWardenChain } from './warden.js';

const CLIENT_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'soak-client.js');
export const SOAK_TABLE = 'bench_soak';
const SOAK_SUBJECT = 'bench-soak';
/** Client processes the sessions are spread over. */
const CLIENT_PROCESSES = 2;
/** Sessions opened at once by all clients together (the gateway lets 64 per address log in at once). */
const OPEN_BATCH = 50;
/** Connections beyond the sessions on the server: control plane pool, the bench's own queries. */
const SERVER_MARGIN = 50;
/** The figures at minute 1 and at the end are means over a window this wide, not one sample. */
const WINDOW_SECONDS = 30;
const POLICY_WAIT_MS = 30_000;

/**
 * @param {object} o
 * @param {number} o.sessions
 * @param {number} o.minutes
 * @param {number} o.periodSeconds   one read and one write per session per period
 * @param {number} o.sampleSeconds
 * @param {{ host: string, port: number, user: string }} o.server  the machine's Postgres
 * @param {import('./warden.js').Topology['nats']} o.nats
 * @param {(msg: string) => void} o.log
 * @param {() => void} o.stopIfInterrupted
 */
export async function measureSoak({ sessions, minutes, periodSeconds, sampleSeconds, server, nats, log, stopIfInterrupted }) {
  const durationMs = Math.round(minutes * 60_000);
  // Node raises its soft open-file limit to the hard one, so the clients,
  // the gateway and the agent each get the hard limit the bench has.
  const limit = openFilesLimit('self');
  const need = descriptorsNeeded(sessions, 'warden');
  if (limit && limit.hard < need) {
    throw new Error(`soak: ${sessions} sessions need ${need} open files in the gateway and the agent, but the hard limit is ${limit.hard}; ` +
      `run \`ulimit -n ${need}\` (as root, or raise the hard limit) before the bench`);
  }

  // Every session holds a Postgres backend.
  const machine = await serverInfo({ ...server, database: 'postgres' });
  const room = machine.max_connections - machine.in_use - SERVER_MARGIN;
  /** @type {{ host: string, port: number, user: string, throwaway?: boolean }} */
  let target = server;
  let serverNote = `the machine's PostgreSQL ${machine.version} on ${server.host}:${server.port}`;
  /** @type {import('./own-postgres.js').OwnPostgres | null} */
  let own = null;
  if (room < sessions) {
    log(`the machine's Postgres has room for ${Math.max(0, room)} sessions (max_connections=${machine.max_connections}); starting a Postgres of the bench's own ...`);
    own = await startOwnPostgres({ maxConnections: sessions + SERVER_MARGIN, log });
    target = { host: own.host, port: own.port, user: own.user, throwaway: true };
    serverNote = `PostgreSQL ${own.version} of the bench's own on ${own.host}:${own.port} (max_connections=${own.maxConnections}), ` +
      `because the machine's (max_connections=${machine.max_connections}) has no room for ${sessions} sessions`;
  }
  try {
    const db = await createScratchDatabase(target, 'warden_bench_soak_', { drop: !own });
    await query(db, `CREATE TABLE ${SOAK_TABLE} (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
      INSERT INTO ${SOAK_TABLE} (id) SELECT g FROM generate_series(1, ${sessions}) g;`);
    stopIfInterrupted();
    const chain = await startWardenChain({
      upstream: db, id: 'warden', extraArgs: [], log,
      topology: { kind: 'production', controlPlaneServer: target, nats },
    });
    try {
      return await soakChain({ chain, db, sessions, durationMs, periodSeconds, sampleSeconds, serverNote, log, stopIfInterrupted });
    } finally {
      await chain.stop();
    }
  } finally {
    await own?.stop();
  }
}

/**
 * Connection parameters for `bench-soak` once the gateway lets it write.
 * @param {import('./paths.js').BenchPath} chain
 */
async function soakIdentity(chain) {
  const dataDir = chainDataDir(chain);
  const ready = JSON.parse(await readFile(path.join(dataDir, 'ready.json'), 'utf8'));
  const cli = { dataDir, controlPlane: String(ready.controlPlane) };
  const base = await chain.conn();
  const file = path.join(await tempDir('warden-bench-soak-'), 'policy.yaml');
  const policy = benchPolicyLines(base.database, { name: 'bench-soak-write', subjects: [SOAK_SUBJECT], access: 'write' }, 'bench/lib/soak.js');
  await writeFile(file, policy.join('\n') + '\n');
  await wardenCli(cli, ['policy', 'apply', '-f', file, '--author', 'warden-bench']);
  const out = await wardenCli(cli, ['token', '--sub', SOAK_SUBJECT, '--ttl', '2h']);
  const token = out.split(/\s+/).find((w) => /^[\w-]+\.[\w-]+\.[\w-]+$/.test(w));
  if (!token) throw new Error(`warden token printed no JWT: ${out.slice(0, 200)}`);
  const conn = { ...base, user: SOAK_SUBJECT, password: token };
  // The new policy reaches the gateway shortly after the apply.
  const deadline = Date.now() + POLICY_WAIT_MS;
  for (;;) {
    try {
      await query(conn, `UPDATE ${SOAK_TABLE} SET n = n WHERE id = 0`);
      return conn;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`soak: ${SOAK_SUBJECT} cannot write ${SOAK_TABLE} ${POLICY_WAIT_MS / 1000} s after the policy apply: ${err instanceof Error ? err.message : err}`);
      await sleep(250);
    }
  }
}

/**
 * A client process of the soak, with request/answer over IPC.
 * @param {any} config
 */
function startClient(config) {
  const child = fork(CLIENT_SCRIPT, [], { env: childEnv({ WARDEN_SOAK_CLIENT: JSON.stringify(config) }), stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let exited = false;
  /** @type {((msg: any) => void)[]} */
  const waiting = [];
  /** @type {string | null} */
  let failure = null;
  child.on('message', (/** @type {any} */ msg) => {
    if (msg.type === 'failed') failure = msg.error;
    for (const w of waiting.splice(0)) w(msg);
  });
  child.on('exit', (code, signal) => {
    exited = true;
    failure ??= `soak client exited (${signal ?? `exit ${code}`})`;
    for (const w of waiting.splice(0)) w({ type: 'failed', error: failure });
  });
  const removeCleanup = onCleanup(`stop soak client ${child.pid}`, () => { if (!exited) child.kill('SIGKILL'); });
  /** Send `request` (if any) and wait for a message of type `type`. */
  const ask = (/** @type {string} */ type, /** @type {any} */ request, timeoutMs = 600_000) => new Promise((resolve, reject) => {
    if (failure) return reject(new Error(failure));
    const timer = setTimeout(() => reject(new Error(`soak client ${child.pid}: no ${type} within ${timeoutMs / 1000} s`)), timeoutMs);
    const handler = (/** @type {any} */ msg) => {
      if (msg.type === 'failed') { clearTimeout(timer); reject(new Error(msg.error)); }
      else if (msg.type === type) { clearTimeout(timer); resolve(msg); }
      else waiting.push(handler);
    };
    waiting.push(handler);
    if (request) child.send(request);
  });
  const send = (/** @type {any} */ msg) => { if (!exited) child.send(msg); };
  return { pid: /** @type {number} */ (child.pid), ask, send, stop: () => { removeCleanup(); if (!exited) child.kill('SIGKILL'); } };
}

/**
 * Open the sessions, run the statements, sample, and sum up.
 * @param {object} o
 * @param {import('./paths.js').BenchPath} o.chain
 * @param {import('./pgbench.js').Conn} o.db
 * @param {number} o.sessions
 * @param {number} o.durationMs
 * @param {number} o.periodSeconds
 * @param {number} o.sampleSeconds
 * @param {string} o.serverNote
 * @param {(msg: string) => void} o.log
 * @param {() => void} o.stopIfInterrupted
 */
async function soakChain({ chain, db, sessions, durationMs, periodSeconds, sampleSeconds, serverNote, log, stopIfInterrupted }) {
  const pids = { gateway: chain.pids.gateway, agent: chain.pids.agent, controlPlane: /** @type {number} */ (chain.controlPlanePid) };
  for (const name of ['gateway', 'agent']) {
    const lim = openFilesLimit(pids[name]);
    if (sessionsAllowed(lim, 'warden') < sessions) {
      throw new Error(`soak: the ${name}'s open-file limit (${lim?.soft}) allows ${sessionsAllowed(lim, 'warden')} sessions, not ${sessions}; ` +
        `run \`ulimit -n ${descriptorsNeeded(sessions, 'warden')}\` before the bench`);
    }
  }
  const conn = await soakIdentity(chain);
  const ids = Array.from({ length: sessions }, (_, i) => i + 1);
  const count = Math.min(CLIENT_PROCESSES, sessions);
  const clients = Array.from({ length: count }, (_, k) => startClient({
    conn, table: SOAK_TABLE, periodMs: periodSeconds * 1000, batch: Math.max(1, Math.floor(OPEN_BATCH / count)),
    ids: ids.filter((_, i) => i % count === k),
  }));
  try {
    log(`soak: opening ${sessions} sessions through the gateway from ${count} client processes ...`);
    const openStarted = Date.now();
    await Promise.all(clients.map((c) => c.ask('opened', null)));
    const openSeconds = (Date.now() - openStarted) / 1000;
    log(`soak: ${sessions} sessions open after ${openSeconds.toFixed(1)} s; running for ${(durationMs / 60_000).toFixed(1)} min, ` +
      `a read and a write per session every ${periodSeconds} s (${((2 * sessions) / periodSeconds).toFixed(0)} statements/s planned) ...`);

    /** @type {any[]} */
    const samples = [];
    const t0 = Date.now();
    const sample = async () => {
      const t = (Date.now() - t0) / 1000;
      /** @type {Record<string, number | null>} */
      const rss = {};
      for (const [name, pid] of Object.entries(pids)) rss[name] = rssBytes(pid);
      const answers = await Promise.all(clients.map((c) => c.ask('stats', { type: 'stats' }, 30_000)));
      const sum = (/** @type {string} */ k) => answers.reduce((a, m) => a + m.stats[k], 0);
      samples.push({
        t, rss, statements: sum('statements'), errors: sum('errors'), open: answers.reduce((a, m) => a + m.open, 0),
        clientRss: answers.map((m) => m.rssBytes),
      });
    };
    for (const c of clients) c.send({ type: 'run' });
    await sample();
    let lastLog = 0;
    while (Date.now() - t0 < durationMs) {
      stopIfInterrupted();
      await sleep(Math.min(sampleSeconds * 1000, Math.max(0, durationMs - (Date.now() - t0))));
      await sample();
      const s = samples.at(-1);
      if (s.t - lastLog >= 60 || Date.now() - t0 >= durationMs) {
        lastLog = s.t;
        const prev = samples.find((x) => x.t >= s.t - 60) ?? samples[0];
        const rate = s.t > prev.t ? (s.statements - prev.statements) / (s.t - prev.t) : 0;
        log(`soak: ${(s.t / 60).toFixed(1)} min: ` + Object.entries(s.rss).map(([k, v]) => `${k} ${mb(v)} MB`).join(', ') +
          `; ${s.open} sessions open, ${s.statements} statements (${rate.toFixed(0)}/s), ${s.errors} errors`);
      }
    }
    const runSeconds = (Date.now() - t0) / 1000;
    const stopped = await Promise.all(clients.map((c) => c.ask('stopped', { type: 'stop' }, 120_000)));
    const total = (/** @type {string} */ k) => stopped.reduce((a, m) => a + m.stats[k], 0);
    const writes = total('writes');
    const [row] = await query(db, `SELECT sum(n)::bigint AS n FROM ${SOAK_TABLE}`);
    const stored = Number(row.n);
    const stats = {
      statements: total('statements'), reads: total('reads'), writes, errors: total('errors'), late: total('late'), lost: total('lost'),
      openAtEnd: stopped.reduce((a, m) => a + m.open, 0),
      firstErrors: stopped.flatMap((m) => m.stats.firstErrors).slice(0, 5),
    };
    const auditEventsStored = await chain.storedAuditEvents?.().catch(() => null) ?? null;
    return {
      sessions, minutes: durationMs / 60_000, periodSeconds, sampleSeconds, clientProcesses: count, server: serverNote,
      openSeconds, runSeconds, ...stats,
      statementsPerSecond: stats.statements / runSeconds,
      writesStored: stored, writesChecked: stored === writes,
      auditEventsStored,
      processes: Object.keys(pids).map((name) => processFigures(name, samples, runSeconds)),
      samples,
    };
  } finally {
    for (const c of clients) c.stop();
  }
}

const mb = (/** @type {number | null} */ b) => (b === null ? '-' : (b / 1e6).toFixed(1));

/**
 * RSS of one process: around minute 1 (the mean of the samples within
 * ±WINDOW/2 of it; of the middle of the run when that is under 2 minutes),
 * at the end (the mean of the last WINDOW seconds), the peak, and the growth
 * between the two.
 * @param {string} name
 * @param {any[]} samples
 * @param {number} runSeconds
 */
export function processFigures(name, samples, runSeconds) {
  const at = Math.min(60, runSeconds / 2);
  const values = (/** @type {any[]} */ list) => list.map((s) => s.rss[name]).filter((v) => v !== null);
  const mean = (/** @type {number[]} */ v) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : null);
  const half = WINDOW_SECONDS / 2;
  const minute1 = mean(values(samples.filter((s) => s.t >= at - half && s.t <= at + half)));
  const end = mean(values(samples.filter((s) => s.t >= runSeconds - WINDOW_SECONDS)));
  const all = values(samples);
  const peak = all.length ? Math.max(...all) : null;
  const growth = minute1 !== null && end !== null ? end - minute1 : null;
  return {
    name, baselineSeconds: at,
    minute1Bytes: minute1, endBytes: end, peakBytes: peak,
    growthBytes: growth, growthPct: growth !== null && minute1 ? (100 * growth) / minute1 : null,
  };
}
