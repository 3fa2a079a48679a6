#!/usr/bin/env node
// Warden benchmark: direct Postgres vs PgBouncer vs the Warden full chain
// (client → gateway → agent → Postgres), on one machine, in one run.
// See bench/README.md. Usage: npm run bench -- [--quick] [--json FILE]
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, USAGE } from './lib/cli.js';
import { createBenchDatabase, serverInfo } from './lib/db.js';
import { directPath } from './lib/paths.js';
import { percentile, runPgbench } from './lib/pgbench.js';
import { PGBOUNCER_INSTALL_HINT, PGBOUNCER_POOL_MODE, startPgbouncer } from './lib/pgbouncer.js';
import { cpuSnapshot } from './lib/procstat.js';
import { computeTargets, formatReport } from './lib/report.js';
import { idleSessionMemory, sessionSetupRate } from './lib/sessions.js';
import { streamCopy } from './lib/stream.js';
import { cleanupAll, killRunning, tempDir, which } from './lib/util.js';
import { REPO_ROOT, startWarden, wardenMissing } from './lib/warden.js';

/** @typedef {import('./lib/paths.js').BenchPath} BenchPath */

const SERVER = { host: '127.0.0.1', port: 5432, user: 'postgres' };
const CONFIGS = [
  { mode: 'simple', clients: 1, threads: 1 },
  { mode: 'simple', clients: 8, threads: 2 },
  { mode: 'prepared', clients: 1, threads: 1 },
  { mode: 'prepared', clients: 8, threads: 2 },
];
const SESSION_BATCH = 50;
const SETUP_PARALLEL = 4;
const CONNECTION_MARGIN = 10;

const log = (/** @type {string} */ msg) => process.stderr.write(`[bench] ${msg}\n`);

let interrupted = false;
for (const sig of /** @type {NodeJS.Signals[]} */ (['SIGINT', 'SIGTERM', 'SIGHUP'])) {
  process.on(sig, () => {
    if (interrupted) {
      log(`${sig} again: exiting without finishing cleanup`);
      process.exit(130);
    }
    interrupted = true;
    log(`${sig}: stopping and cleaning up ...`);
    killRunning();
    cleanupAll().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  });
}

for (const ev of /** @type {const} */ (['uncaughtException', 'unhandledRejection'])) {
  process.on(ev, (err) => {
    process.stderr.write(`\nbench failed (${ev}): ${err instanceof Error ? err.stack ?? err.message : err}\n`);
    killRunning();
    cleanupAll().finally(() => process.exit(1));
  });
}

function gitInfo() {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim() !== '';
    return { commit, dirty };
  } catch {
    return { commit: null, dirty: null };
  }
}

/** Rotate an array by n places (the path order changes every run group). */
function rotate(arr, n) {
  const k = ((n % arr.length) + arr.length) % arr.length;
  return arr.slice(k).concat(arr.slice(0, k));
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.help) {
    process.stdout.write(USAGE);
    return;
  }
  for (const tool of ['pgbench', 'psql']) {
    if (!(await which(tool))) throw new Error(`${tool} not found on PATH (install postgresql-client)`);
  }
  const pgbenchVersion = execFileSync('pgbench', ['--version'], { encoding: 'utf8' }).trim();

  /** @type {any} */
  const results = {
    benchmark: 'warden',
    schema: 1,
    timestamp: new Date().toISOString(),
    node: process.version,
    machine: { cores: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? null, memoryBytes: os.totalmem(), kernel: os.release(), loadavgStart: os.loadavg(), loadavgEnd: null },
    git: gitInfo(),
    options: { ...opts, help: undefined },
    pgbench: pgbenchVersion,
    pgbouncerPoolMode: PGBOUNCER_POOL_MODE,
    postgres: null,
    database: null,
    paths: [],
    runs: [],
    rows: [],
    sessionSetup: [],
    streaming: [],
    idleMemory: [],
    idleMemoryNote: null,
    targets: [],
  };

  const info = await serverInfo({ ...SERVER, database: 'postgres' });
  results.postgres = { version: info.version, maxConnections: info.max_connections, superuserReserved: info.reserved };
  log(`PostgreSQL ${info.version}, max_connections=${info.max_connections}; ${os.cpus().length} cores`);

  const dbConn = await createBenchDatabase(SERVER, opts.scale, log);
  results.database = dbConn.database;
  const logDir = await tempDir('warden-bench-logs-');

  /** Paths that failed a step, left out of the later ones. */
  const failedPaths = new Map();

  // ------------------------------------------------------------ paths
  /** @type {BenchPath[]} */
  const paths = [directPath(dbConn)];
  results.paths.push({ id: 'direct', kind: 'direct', note: paths[0].note });

  if (!opts.pgbouncer) {
    results.paths.push({ id: 'pgbouncer', kind: 'pgbouncer', skipped: 'left out (--no-pgbouncer)' });
  } else {
    try {
      const pgb = await startPgbouncer(dbConn, (m) => log(`pgbouncer: ${m}`));
      if ('skipped' in pgb) {
        log(`PgBouncer skipped: ${pgb.skipped}`);
        results.paths.push({ id: 'pgbouncer', kind: 'pgbouncer', skipped: pgb.skipped });
      } else {
        paths.push(pgb);
        results.paths.push({ id: pgb.id, kind: pgb.kind, note: pgb.note, version: pgb.version });
      }
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      log(`PgBouncer failed, its rows are left out: ${msg}`);
      results.paths.push({ id: 'pgbouncer', kind: 'pgbouncer', error: msg });
    }
  }

  const wardenSpecs = [{ id: 'warden', args: opts.wardenArgs }, ...opts.wardenVariants.map((v) => ({ id: `warden+${v.name}`, args: v.args }))];
  const missing = wardenMissing();
  for (const spec of wardenSpecs) {
    if (!opts.warden) {
      results.paths.push({ id: spec.id, kind: 'warden', skipped: 'left out (--no-warden)' });
      continue;
    }
    if (missing) {
      log(`${spec.id} skipped: ${missing}`);
      results.paths.push({ id: spec.id, kind: 'warden', skipped: missing });
      continue;
    }
    try {
      log(`starting ${spec.id} ...`);
      const w = await startWarden({ upstream: dbConn, id: spec.id, extraArgs: spec.args, log });
      paths.push(w);
      results.paths.push({ id: w.id, kind: w.kind, note: w.note, extraArgs: spec.args });
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      log(`${spec.id} failed, its rows are left out:\n${msg}`);
      results.paths.push({ id: spec.id, kind: 'warden', error: msg, notStarted: true });
    }
  }
  // ------------------------------------------------------------ idle memory
  // First, while the Warden processes are fresh: garbage from the pgbench
  // and streaming runs would make their RSS drift by more than the sessions
  // add.
  const wardens = paths.filter((p) => p.kind === 'warden');
  for (const p of wardens) {
    const now = await serverInfo({ ...SERVER, database: 'postgres' });
    const fit = Math.max(1, now.max_connections - now.in_use - CONNECTION_MARGIN);
    const count = Math.min(opts.sessions, fit);
    if (count < opts.sessions) {
      results.idleMemoryNote = `Postgres max_connections=${now.max_connections} (${now.in_use} in use) allows ` +
        `${count} sessions, not ${opts.sessions}; the per-session figure is over ${count} sessions ` +
        `(the server config is left alone; raise max_connections to ~${opts.sessions + 100} for the full count)`;
      log(results.idleMemoryNote);
    }
    log(`idle sessions: opening ${count} through ${p.id}, ${SESSION_BATCH} at a time ...`);
    try {
      const m = await idleSessionMemory(p, count, SESSION_BATCH, log);
      results.idleMemory.push(m);
      log(`  ${m.opened} sessions: ` + Object.entries(m.perSessionKiB).map(([k, v]) => `${k} ${v?.toFixed(1)} KiB`).join(', ') +
        (m.rssSettled ? '' : ' (RSS had not settled: figure is noisy)'));
    } catch (err) {
      if (interrupted) throw err;
      log(`idle-session memory through ${p.id} failed: ${err instanceof Error ? err.message : err}`);
    }
  }

  // ------------------------------------------------------------ pgbench
  if (opts.warmup > 0) {
    for (const p of paths) {
      log(`warm-up ${p.id}: pgbench -S -c 8 -j 2 -T ${opts.warmup}`);
      try {
        await runPgbench({ conn: await p.conn(), mode: 'simple', clients: 8, threads: 2, duration: opts.warmup, logDir: null });
      } catch (err) {
        if (interrupted) throw err;
        failedPaths.set(p.id, err instanceof Error ? err.message : String(err));
        log(`warm-up of ${p.id} failed: ${failedPaths.get(p.id)}`);
      }
    }
  }
  if (failedPaths.has('direct')) throw new Error(`pgbench against Postgres itself failed: ${failedPaths.get('direct')}`);

  const total = opts.rounds * CONFIGS.length * paths.length;
  let n = 0;
  for (let round = 0; round < opts.rounds; round++) {
    for (const [ci, cfg] of CONFIGS.entries()) {
      for (const p of rotate(paths, round * CONFIGS.length + ci)) {
        n++;
        if (failedPaths.has(p.id)) continue;
        const conn = await p.conn();
        const before = cpuSnapshot(p.pids);
        let res;
        try {
          res = await runPgbench({ conn, mode: /** @type {'simple'|'prepared'} */ (cfg.mode), clients: cfg.clients, threads: cfg.threads, duration: opts.duration, logDir: cfg.clients === 1 ? logDir : null });
        } catch (err) {
          if (interrupted) throw err;
          const msg = err instanceof Error ? err.message : String(err);
          if (p.id === 'direct') throw new Error(`pgbench against Postgres itself failed: ${msg}`);
          failedPaths.set(p.id, msg);
          log(`${p.id} ${cfg.mode} c${cfg.clients} failed; leaving ${p.id} out from here: ${msg}`);
          continue;
        }
        const after = cpuSnapshot(p.pids);
        /** @type {Record<string, number | null>} */
        const cpu = {};
        for (const name of Object.keys(p.pids)) {
          const a = after[name];
          const b = before[name];
          cpu[name] = a !== null && b !== null ? a - b : null;
        }
        const sorted = res.latenciesUs ? Float64Array.from(res.latenciesUs).sort() : null;
        results.runs.push({
          round: round + 1, path: p.id, ...cfg, duration: opts.duration,
          tps: res.tps, transactions: res.transactions, failed: res.failed,
          initialConnectionMs: res.initialConnectionMs, latencyAvgMs: res.latencyAvgMs,
          p50Us: sorted ? percentile(sorted, 50) : null, p99Us: sorted ? percentile(sorted, 99) : null,
          cpuSeconds: cpu,
          _latencies: sorted,
        });
        const cpuText = Object.entries(cpu).map(([k, v]) => `${k} ${v?.toFixed(2)} s`).join(', ');
        log(`[${n}/${total}] ${p.id.padEnd(10)} ${cfg.mode.padEnd(8)} c${cfg.clients}: ${res.tps.toFixed(1)} tps` +
          (sorted ? `, p50 ${percentile(sorted, 50)} µs, p99 ${percentile(sorted, 99)} µs` : '') + (cpuText ? `, cpu ${cpuText}` : ''));
      }
    }
  }
  results.rows = aggregate(results.runs, paths, failedPaths);
  for (const r of results.runs) delete r._latencies;

  const live = paths.filter((p) => !failedPaths.has(p.id));

  // ------------------------------------------------------------ session setup
  for (const p of live) {
    log(`session setup: ${opts.setupConns} connections through ${p.id} ...`);
    try {
      results.sessionSetup.push(await sessionSetupRate(p, opts.setupConns, SETUP_PARALLEL));
    } catch (err) {
      if (interrupted) throw err;
      results.sessionSetup.push({ path: p.id, error: err instanceof Error ? err.message : String(err), parallel: SETUP_PARALLEL, failures: opts.setupConns });
    }
  }

  // Streaming: Warden last, after PgBouncer has been stopped (nothing else
  // competes for the CPU).
  const stream = async (/** @type {BenchPath} */ p) => {
    log(`streaming ${((opts.streamRows * 1001) / 1e9).toFixed(2)} GB through ${p.id} ...`);
    try {
      const s = await streamCopy(p, opts.streamRows);
      results.streaming.push(s);
      log(`  ${s.seconds.toFixed(2)} s, ${s.mbPerSecond.toFixed(1)} MB/s` +
        Object.entries(s.peakRssBytes).map(([k, v]) => `, peak ${k} ${(v / 1e6).toFixed(1)} MB`).join(''));
    } catch (err) {
      if (interrupted) throw err;
      results.streaming.push({ path: p.id, error: err instanceof Error ? err.message : String(err), peakRssBytes: {} });
    }
  };
  for (const p of live) if (p.kind !== 'warden') await stream(p);
  for (const p of paths) if (p.kind === 'pgbouncer') await p.stop();

  for (const p of live) if (p.kind === 'warden') await stream(p);

  for (const [id, msg] of failedPaths) {
    const entry = results.paths.find((x) => x.id === id);
    if (entry) entry.error = msg;
  }
  results.targets = computeTargets(results);
  results.machine.loadavgEnd = os.loadavg();

  process.stdout.write(formatReport(results) + '\n');
  const skippedPgb = results.paths.find((x) => x.id === 'pgbouncer' && x.skipped && /not found/.test(x.skipped));
  if (skippedPgb) process.stdout.write(`\nPgBouncer was skipped (not installed); ${PGBOUNCER_INSTALL_HINT}\n`);

  if (opts.json) {
    const file = path.resolve(opts.json);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, JSON.stringify(results, null, 2) + '\n');
    log(`wrote ${file}`);
  }
}

/**
 * One row per path × mode × clients, over all rounds, compared with direct.
 * @param {any[]} runs
 * @param {BenchPath[]} paths
 * @param {Map<string, string>} failedPaths
 */
function aggregate(runs, paths, failedPaths) {
  const rows = [];
  for (const cfg of CONFIGS) {
    for (const p of paths) {
      const mine = runs.filter((r) => r.path === p.id && r.mode === cfg.mode && r.clients === cfg.clients);
      if (!mine.length) {
        rows.push({ path: p.id, mode: cfg.mode, clients: cfg.clients, tps: null, tpsRatio: null, p50Us: null, p99Us: null, addedP50Us: null, addedP99Us: null, cpuPer10k: null, error: failedPaths.get(p.id) ?? 'no run' });
        continue;
      }
      const tps = mine.reduce((s, r) => s + r.tps, 0) / mine.length;
      const transactions = mine.reduce((s, r) => s + r.transactions, 0);
      let p50 = null;
      let p99 = null;
      if (mine.every((r) => r._latencies)) {
        const all = new Float64Array(mine.reduce((s, r) => s + r._latencies.length, 0));
        let off = 0;
        for (const r of mine) { all.set(r._latencies, off); off += r._latencies.length; }
        all.sort();
        p50 = percentile(all, 50);
        p99 = percentile(all, 99);
      }
      /** @type {Record<string, number> | null} */
      let cpuPer10k = null;
      for (const name of Object.keys(p.pids)) {
        const secs = mine.map((r) => r.cpuSeconds[name]);
        if (secs.some((s) => s === null || s === undefined)) continue;
        cpuPer10k ??= {};
        cpuPer10k[name] = (secs.reduce((a, b) => a + b, 0) / transactions) * 10_000;
      }
      rows.push({ path: p.id, mode: cfg.mode, clients: cfg.clients, runs: mine.length, transactions, tps, p50Us: p50, p99Us: p99, cpuPer10k });
    }
  }
  for (const r of rows) {
    const d = rows.find((x) => x.path === 'direct' && x.mode === r.mode && x.clients === r.clients);
    r.tpsRatio = d?.tps && r.tps !== null ? r.tps / d.tps : null;
    r.addedP50Us = d?.p50Us != null && r.p50Us != null ? r.p50Us - d.p50Us : null;
    r.addedP99Us = d?.p99Us != null && r.p99Us != null ? r.p99Us - d.p99Us : null;
  }
  return rows;
}

let exitCode = 0;
try {
  await main();
} catch (err) {
  if (!interrupted) {
    process.stderr.write(`\nbench failed: ${err instanceof Error ? err.stack ?? err.message : err}\n`);
    exitCode = 1;
  }
} finally {
  if (!interrupted) {
    log('cleaning up ...');
    await cleanupAll();
  }
}
if (!interrupted) process.exit(exitCode);
