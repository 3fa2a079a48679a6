#!/usr/bin/env node
// Warden benchmark: direct Postgres vs PgBouncer vs the Warden full chain
// (client → gateway → agent → Postgres), on one machine, in one run.
// See bench/README.md. Usage: npm run bench -- [--quick] [--json FILE]
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { EMBEDDED_VARIANT, parseArgs, USAGE } from './lib/cli.js';
import { createBenchDatabase, createScratchDatabase, serverInfo } from './lib/db.js';
import { descriptorsNeeded, openFilesLimit, sessionsAllowed } from './lib/limits.js';
import { NATS_INSTALL_HINT, natsServerBin } from './lib/nats.js';
import { startOwnPostgres } from './lib/own-postgres.js';
import { createMaskingTable, measureMasking, MASK_TABLE } from './lib/masking.js';
import { measureStartMemory } from './lib/memory.js';
import { cpuPids, directPath } from './lib/paths.js';
import { startNodePipe } from './lib/node-pipe.js';
import { percentile, runPgbench } from './lib/pgbench.js';
import { PGBOUNCER_INSTALL_HINT, PGBOUNCER_POOL_MODE, startPgbouncer } from './lib/pgbouncer.js';
import { cpuSnapshot } from './lib/procstat.js';
import { computeTargets, formatReport } from './lib/report.js';
import { measureSoak } from './lib/soak.js';
import { idleSessionMemory, sessionSetupRate } from './lib/sessions.js';
import { streamCopy } from './lib/stream.js';
import { cleanupAll, killRunning, tempDir, which } from './lib/util.js';
import { REPO_ROOT, startWardenChain, wardenMissing } from './lib/warden.js';

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
// The bench's own cluster: room beyond the sessions for the control plane's
// pool, the warm-up sessions and the bench's own queries.
const OWN_CONNECTION_MARGIN = 50;
/** The soak reads the processes' VmRSS this often. */
const SOAK_SAMPLE_SECONDS = 5;

const log = (/** @type {string} */ msg) => process.stderr.write(`[bench] ${msg}\n`);

let interrupted = false;
/** After Ctrl+C, start nothing new: cleanup may already have run past it. */
const stopIfInterrupted = () => {
  if (interrupted) throw new Error('interrupted');
};
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
  // --only memory / ingest / soak run neither pgbench nor psql.
  const pathsRun = opts.only === null || opts.only === 'masking';
  if (pathsRun) {
    for (const tool of ['pgbench', 'psql']) {
      if (!(await which(tool))) throw new Error(`${tool} not found on PATH (install postgresql-client)`);
    }
  }
  const pgbenchVersion = pathsRun ? execFileSync('pgbench', ['--version'], { encoding: 'utf8' }).trim() : null;

  /** @type {any} */
  const results = {
    benchmark: 'warden',
    schema: 3,
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
    sessionServer: null,
    sessionPaths: [],
    fileLimits: {},
    runs: [],
    rows: [],
    sessionSetup: [],
    streaming: [],
    idleMemory: [],
    idleMemoryNote: null,
    masking: null,
    memory: null,
    ingest: null,
    soak: null,
    targets: [],
  };

  const missing = wardenMissing();
  const info = await serverInfo({ ...SERVER, database: 'postgres' });
  results.postgres = { version: info.version, maxConnections: info.max_connections, superuserReserved: info.reserved };
  log(`PostgreSQL ${info.version}, max_connections=${info.max_connections}; ${os.cpus().length} cores`);

  // ------------------------------------------------------------ memory, audit ingest
  // First, while nothing else of the bench runs: each starts processes of its own.
  if (opts.memory && (opts.only === null || opts.only === 'memory')) {
    if (missing) {
      results.memory = { error: missing };
    } else {
      stopIfInterrupted();
      log('memory: warden start with its demo database, fresh data dir ...');
      try {
        results.memory = await measureStartMemory({ log: (m) => log(`memory: ${m}`) });
      } catch (err) {
        if (interrupted) throw err;
        const msg = err instanceof Error ? err.message : String(err);
        log(`memory measurement failed: ${msg}`);
        results.memory = { error: msg };
      }
    }
  }
  if (opts.ingest && (opts.only === null || opts.only === 'ingest')) {
    results.ingest = { events: opts.ingestEvents, rows: [] };
    // Loaded here: the rest of the bench runs without it.
    const { measureIngest } = await import('./lib/ingest.js');
    for (const store of /** @type {const} */ (['embedded', 'postgres'])) {
      stopIfInterrupted();
      if (missing) {
        results.ingest.rows.push({ store, error: missing });
        continue;
      }
      try {
        results.ingest.rows.push(...await measureIngest({
          events: opts.ingestEvents, stores: [store], server: SERVER, natsUrl: opts.nats ?? undefined, log: (m) => log(`ingest: ${m}`),
        }));
        const r = results.ingest.rows.at(-1);
        log(`ingest: ${store}: ${Math.round(r.eventsPerSecond)} events/s, ${r.cpuMicrosPerEvent.toFixed(1)} µs CPU/event${r.verified ? '' : `, NOT VERIFIED: ${r.detail}`}`);
      } catch (err) {
        if (interrupted) throw err;
        const msg = err instanceof Error ? err.message : String(err);
        log(`ingest into ${store} failed: ${msg}`);
        results.ingest.rows.push({ store, error: msg });
      }
    }
  }
  // The soak runs only on its own (--only soak): it takes ten minutes. A
  // soak that cannot open its sessions fails the bench.
  if (opts.only === 'soak') {
    if (missing) throw new Error(`soak: ${missing}`);
    const natsBin = opts.nats ? null : await natsServerBin();
    if (!opts.nats && !natsBin) throw new Error(`soak: no nats-server for the audit events; ${NATS_INSTALL_HINT}`);
    results.soak = await measureSoak({
      sessions: opts.soakSessions, minutes: opts.soakMinutes, periodSeconds: opts.soakInterval, sampleSeconds: SOAK_SAMPLE_SECONDS,
      server: SERVER, nats: opts.nats ? { url: opts.nats } : { bin: /** @type {string} */ (natsBin) },
      log, stopIfInterrupted,
    });
  }
  if (!pathsRun) {
    await finish(results, opts);
    return;
  }

  // --only masking: no pgbench runs, so no pgbench tables either.
  const maskingOnly = opts.only === 'masking';
  const dbConn = maskingOnly ? await createScratchDatabase(SERVER, 'warden_bench_') : await createBenchDatabase(SERVER, opts.scale, log);
  results.database = dbConn.database;
  // Before the Warden chains start, so their gateways' catalogs have it.
  if (opts.masking && opts.warden) {
    log(`creating ${MASK_TABLE} (${opts.maskingRows} rows) for the masking measurement ...`);
    await createMaskingTable(dbConn, opts.maskingRows);
  }
  const logDir = await tempDir('warden-bench-logs-');

  /** Paths that failed a step, left out of the later ones. */
  const failedPaths = new Map();

  // ------------------------------------------------------------ paths
  // 'warden' is the production topology (control plane on Postgres, audit
  // through NATS JetStream); 'warden+embedded' keeps local mode's defaults.
  const wardenSpecs = [
    { id: 'warden', args: opts.wardenArgs, topology: 'production' },
    ...(opts.embedded ? [{ id: `warden+${EMBEDDED_VARIANT}`, args: [], topology: 'embedded' }] : []),
    ...opts.wardenVariants.map((v) => ({ id: `warden+${v.name}`, args: v.args, topology: 'production' })),
  ];
  const natsBin = opts.nats ? null : await natsServerBin();

  /**
   * Start every path against `target`: direct, PgBouncer, the Warden chains.
   * A path that cannot start is recorded in `entries` and left out.
   * @param {import('./lib/pgbench.js').Conn} target
   * @param {{ host: string, port: number, user: string, throwaway?: boolean }} controlPlaneServer
   * @param {number} pgbouncerSessions  idle sessions PgBouncer must hold at once
   * @param {string} tag  log prefix
   */
  const startPaths = async (target, controlPlaneServer, pgbouncerSessions, tag) => {
    /** @type {BenchPath[]} */
    const started = [directPath(target)];
    /** @type {any[]} */
    const entries = [{ id: 'direct', kind: 'direct', note: started[0].note }];
    if (!opts.pgbouncer || maskingOnly) {
      entries.push({ id: 'pgbouncer', kind: 'pgbouncer', skipped: maskingOnly ? 'left out (--only masking)' : 'left out (--no-pgbouncer)' });
    } else {
      stopIfInterrupted();
      try {
        const pgb = await startPgbouncer(target, (m) => log(`${tag}pgbouncer: ${m}`), { sessions: pgbouncerSessions });
        if ('skipped' in pgb) {
          log(`PgBouncer skipped: ${pgb.skipped}`);
          entries.push({ id: 'pgbouncer', kind: 'pgbouncer', skipped: pgb.skipped });
        } else {
          started.push(pgb);
          entries.push({ id: pgb.id, kind: pgb.kind, note: pgb.note, version: pgb.version });
        }
      } catch (err) {
        if (interrupted) throw err;
        const msg = err instanceof Error ? err.message : String(err);
        log(`${tag}PgBouncer failed, its rows are left out: ${msg}`);
        entries.push({ id: 'pgbouncer', kind: 'pgbouncer', error: msg });
      }
    }
    if (opts.pipe && !maskingOnly) {
      stopIfInterrupted();
      try {
        const np = await startNodePipe(target, (m) => log(`${tag}node-pipe: ${m}`));
        started.push(np);
        entries.push({ id: np.id, kind: np.kind, note: np.note });
      } catch (err) {
        if (interrupted) throw err;
        const msg = err instanceof Error ? err.message : String(err);
        log(`${tag}node-pipe failed, its rows are left out: ${msg}`);
        entries.push({ id: 'node-pipe', kind: 'pipe', error: msg });
      }
    }
    for (const spec of wardenSpecs) {
      const base = { id: spec.id, kind: 'warden', topology: spec.topology };
      if (!opts.warden) {
        entries.push({ ...base, skipped: 'left out (--no-warden)' });
        continue;
      }
      if (missing) {
        log(`${spec.id} skipped: ${missing}`);
        entries.push({ ...base, skipped: missing });
        continue;
      }
      /** @type {import('./lib/warden.js').Topology} */
      const topology = spec.topology === 'embedded'
        ? { kind: 'embedded' }
        : { kind: 'production', controlPlaneServer, nats: opts.nats ? { url: opts.nats } : natsBin ? { bin: natsBin } : undefined };
      stopIfInterrupted();
      try {
        log(`${tag}starting ${spec.id} ...`);
        const w = await startWardenChain({ upstream: target, id: spec.id, extraArgs: spec.args, topology, log: (m) => log(`${tag}${m}`) });
        started.push(w);
        entries.push({ ...base, note: w.note, extraArgs: spec.args, topologyArgs: w.topologyArgs });
      } catch (err) {
        if (interrupted) throw err;
        const msg = err instanceof Error ? err.message : String(err);
        log(`${tag}${spec.id} failed, its rows are left out:\n${msg}`);
        entries.push({ ...base, error: msg, notStarted: true });
      }
    }
    return { paths: started, entries };
  };

  // ------------------------------------------------------------ session measurements
  // Idle-session memory first, while the Warden processes are fresh: garbage
  // from the pgbench and streaming runs would make their RSS drift by more
  // than the sessions add. Every session holds a Postgres backend, so when
  // the machine's Postgres cannot take them all, these measurements run on a
  // cluster of the bench's own, with every path started against it.
  /** Why fewer sessions were measured than asked for (idleMemoryNote). */
  const sessionNotes = new Set();
  const benchLimit = openFilesLimit('self');
  results.fileLimits.bench = benchLimit;
  let sessions = opts.sessions;
  const benchCap = sessionsAllowed(benchLimit, 'warden');
  if (benchCap < sessions) {
    const note = `the bench's open-file limit (${benchLimit?.soft}) allows ${benchCap} sessions, not ${sessions}; ` +
      `raise it (ulimit -n ${descriptorsNeeded(sessions, 'pgbouncer')}) before the bench for the full count`;
    log(note);
    sessionNotes.add(note);
    sessions = benchCap;
  }
  const machine = await serverInfo({ ...SERVER, database: 'postgres' });
  const machineFit = Math.max(1, machine.max_connections - machine.in_use - CONNECTION_MARGIN);
  /** @type {import('./lib/own-postgres.js').OwnPostgres | null} */
  let own = null;
  if (machineFit < sessions && (opts.warden || opts.pgbouncer) && !maskingOnly) {
    log(`the machine's Postgres has room for ${machineFit} sessions (max_connections=${machine.max_connections}, ` +
      `${machine.in_use} in use); starting a Postgres of the bench's own for ${sessions} ...`);
    stopIfInterrupted();
    try {
      own = await startOwnPostgres({ maxConnections: sessions + OWN_CONNECTION_MARGIN, log });
    } catch (err) {
      if (interrupted) throw err;
      const msg = err instanceof Error ? err.message : String(err);
      log(`${msg}\nfalling back to the machine's Postgres, with fewer sessions`);
      sessionNotes.add(`no Postgres of the bench's own (${msg.replace(/\s*\n\s*/g, ' ').slice(0, 300)})`);
    }
  }

  /** @type {BenchPath[]} */
  let paths;
  if (own) {
    results.sessionServer = { kind: 'own', version: own.version, host: own.host, port: own.port, maxConnections: own.maxConnections,
      reason: `the machine's Postgres had room for ${machineFit} sessions (max_connections=${machine.max_connections}, ${machine.in_use} in use)` };
    const target = await createScratchDatabase(own, 'warden_bench_', { drop: false });
    const set = await startPaths(target, { host: own.host, port: own.port, user: own.user, throwaway: true }, sessions, 'sessions: ');
    results.sessionPaths = set.entries;
    await sessionMeasurements(set.paths, sessions, null);
    await recordAuditEvents(set.paths, set.entries);
    log('sessions: stopping the session paths and the Postgres of the bench\'s own ...');
    for (const p of set.paths) await p.stop();
    await own.stop();
    const main = await startPaths(dbConn, SERVER, 0, '');
    results.paths = main.entries;
    paths = main.paths;
  } else if (maskingOnly) {
    const main = await startPaths(dbConn, SERVER, 0, '');
    results.paths = main.entries;
    paths = main.paths;
  } else {
    results.sessionServer = { kind: 'machine', version: info.version, host: SERVER.host, port: SERVER.port, maxConnections: machine.max_connections };
    const main = await startPaths(dbConn, SERVER, Math.min(sessions, machineFit), '');
    results.paths = main.entries;
    results.sessionPaths = main.entries;
    paths = main.paths;
    await sessionMeasurements(paths, sessions, { ...SERVER, database: 'postgres' });
  }
  results.idleMemoryNote = sessionNotes.size ? [...sessionNotes].join('; ') : null;

  /**
   * Audit events stored by each Warden chain on Postgres so far (a check
   * that audit is on and arriving).
   * @param {BenchPath[]} started
   * @param {any[]} entries
   */
  async function recordAuditEvents(started, entries) {
    for (const p of started) {
      if (!p.storedAuditEvents) continue;
      const entry = entries.find((e) => e.id === p.id);
      try {
        entry.auditEventsStored = await p.storedAuditEvents();
      } catch (err) {
        log(`${p.id}: could not count its stored audit events: ${err instanceof Error ? err.message : err}`);
      }
    }
  }

  /**
   * Idle-session memory through every proxy (Warden chains first, while
   * fresh; PgBouncer releases its server connections after its turn), then
   * the session setup rate on every path.
   * @param {BenchPath[]} sessionPaths
   * @param {number} wanted
   * @param {import('./lib/pgbench.js').Conn | null} shared  the machine's Postgres, whose free
   *   connections cap the count before each measurement; null on the bench's own
   */
  async function sessionMeasurements(sessionPaths, wanted, shared) {
    const proxies = [...sessionPaths.filter((p) => p.kind === 'warden'), ...sessionPaths.filter((p) => p.kind === 'pgbouncer')];
    for (const p of proxies) {
      stopIfInterrupted();
      let count = wanted;
      if (shared) {
        const now = await serverInfo(shared);
        const fit = Math.max(1, now.max_connections - now.in_use - CONNECTION_MARGIN);
        if (fit < count) {
          count = fit;
          sessionNotes.add(`the machine's Postgres (max_connections=${now.max_connections}) had room for ${count} sessions through ${p.id}, not ${wanted}`);
          log(`Postgres allows ${count} sessions through ${p.id}, not ${wanted}`);
        }
      }
      for (const [name, pid] of Object.entries(p.pids)) {
        const limit = openFilesLimit(pid);
        results.fileLimits[`${p.id}/${name}`] = limit;
        const cap = sessionsAllowed(limit, p.kind);
        if (cap < count) {
          const who = p.id === name ? name : `${p.id} ${name}`;
          sessionNotes.add(`${who}'s open-file limit (${limit?.soft}) allows ${cap} sessions`);
          log(`${who}'s open-file limit (${limit?.soft}) allows ${cap} sessions, not ${count}`);
          count = cap;
        }
      }
      log(`idle sessions: opening ${count} through ${p.id}, ${SESSION_BATCH} at a time ...`);
      try {
        const m = await idleSessionMemory(p, count, SESSION_BATCH, log);
        m.server = results.sessionServer.kind;
        results.idleMemory.push(m);
        log(`  ${m.opened} sessions: ` + Object.entries(m.perSessionKiB).map(([k, v]) => `${k} ${v?.toFixed(1)} KiB`).join(', ') +
          (m.rssSettled ? '' : ' (RSS had not settled: figure is noisy)'));
      } catch (err) {
        if (interrupted) throw err;
        log(`idle-session memory through ${p.id} failed: ${err instanceof Error ? err.message : err}`);
      }
      await p.releaseServers?.().catch((err) => log(`${p.id}: could not release its server connections: ${err.message}`));
    }
    for (const p of sessionPaths) {
      stopIfInterrupted();
      log(`session setup: ${opts.setupConns} connections through ${p.id} ...`);
      try {
        results.sessionSetup.push(await sessionSetupRate(p, opts.setupConns, SETUP_PARALLEL));
      } catch (err) {
        if (interrupted) throw err;
        results.sessionSetup.push({ path: p.id, error: err instanceof Error ? err.message : String(err), parallel: SETUP_PARALLEL, failures: opts.setupConns });
      }
    }
  }

  // ------------------------------------------------------------ pgbench
  if (opts.warmup > 0 && !maskingOnly) {
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
  for (let round = 0; round < (maskingOnly ? 0 : opts.rounds); round++) {
    for (const [ci, cfg] of CONFIGS.entries()) {
      for (const p of rotate(paths, round * CONFIGS.length + ci)) {
        n++;
        if (failedPaths.has(p.id)) continue;
        const conn = await p.conn();
        const measured = cpuPids(p);
        const before = cpuSnapshot(measured);
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
        const after = cpuSnapshot(measured);
        /** @type {Record<string, number | null>} */
        const cpu = {};
        for (const name of Object.keys(measured)) {
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
  results.rows = maskingOnly ? [] : aggregate(results.runs, paths, failedPaths);
  for (const r of results.runs) delete r._latencies;

  const live = paths.filter((p) => !failedPaths.has(p.id));

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
  if (!maskingOnly) for (const p of live) if (p.kind !== 'warden') await stream(p);
  for (const p of paths) if (p.kind === 'pgbouncer' || p.kind === 'pipe') await p.stop();

  if (!maskingOnly) for (const p of live) if (p.kind === 'warden') await stream(p);
  await recordAuditEvents(paths, results.paths);

  // ------------------------------------------------------------ masking
  // Last: it replaces the Warden chains' policy (demo keeps its rule).
  const maskChains = live.filter((p) => p.kind === 'warden');
  if (opts.masking && maskChains.length) {
    stopIfInterrupted();
    try {
      results.masking = await measureMasking({
        direct: /** @type {BenchPath} */ (paths.find((p) => p.id === 'direct')), chains: maskChains,
        rows: opts.maskingRows, reps: opts.maskingReps, log, stopIfInterrupted,
      });
    } catch (err) {
      if (interrupted) throw err;
      const msg = err instanceof Error ? err.message : String(err);
      log(`masking measurement failed: ${msg}`);
      results.masking = { error: msg, rows: opts.maskingRows, reps: opts.maskingReps, chains: maskChains.map((p) => ({ path: p.id, error: msg })), figures: [], overhead: [] };
    }
  } else if (opts.masking) {
    results.masking = { error: 'no Warden row ran', rows: opts.maskingRows, reps: opts.maskingReps, chains: [], figures: [], overhead: [] };
  }

  for (const [id, msg] of failedPaths) {
    const entry = results.paths.find((x) => x.id === id);
    if (entry) entry.error = msg;
  }
  await finish(results, opts);
}

/**
 * Targets, the printed report and the JSON file.
 * @param {any} results
 * @param {import('./lib/cli.js').Options} opts
 */
async function finish(results, opts) {
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
        rows.push({ path: p.id, mode: cfg.mode, clients: cfg.clients, tps: null, tpsRatio: null, p50Us: null, p99Us: null, addedP50Us: null, addedP99Us: null, cpuPer10k: null, cpuMicrosPerStatement: null, error: failedPaths.get(p.id) ?? 'no run' });
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
      /** @type {Record<string, number> | null} */
      let cpuMicrosPerStatement = null;
      for (const name of Object.keys(cpuPids(p))) {
        const secs = mine.map((r) => r.cpuSeconds[name]);
        if (secs.some((s) => s === null || s === undefined)) continue;
        const perStatement = secs.reduce((a, b) => a + b, 0) / transactions;
        cpuPer10k ??= {};
        cpuPer10k[name] = perStatement * 10_000;
        cpuMicrosPerStatement ??= {};
        cpuMicrosPerStatement[name] = perStatement * 1e6;
      }
      rows.push({ path: p.id, mode: cfg.mode, clients: cfg.clients, runs: mine.length, transactions, tps, p50Us: p50, p99Us: p99, cpuPer10k, cpuMicrosPerStatement });
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
