// The audit ingest row: what storing and hash-chaining audit events costs the
// control plane. `warden control-plane` runs as deployed, once on its embedded
// store (PGlite; events over IngestAudit, as gateways in local mode send them)
// and once on Postgres (events through NATS JetStream, as production gateways
// publish them). The events are synthetic but shaped like a gateway's: many
// sessions open at once, each a session.start, statements, a session.end,
// sent in the gateway's batches of 512. CPU is the control plane's
// utime + stime from /proc/PID/stat over the ingest; afterwards the store's
// verify must find every event and every chain intact.
//
//   node bench/lib/ingest.js [--events N] [--sessions N] [--only embedded|postgres]
//                            [--nats URL] [--cpu-prof DIR (profiles of the control plane)]
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AuditBatch,
  ControlPlaneServiceClient,
  StatementDecision,
  StatementProtocol,
  bearer,
  channelCredentials,
} from '@warden/proto';
import { auditSubject, durationOf, ensureAuditStream, timestampOf } from '@warden/proto/audit';
import { connect } from 'nats';
import { createScratchDatabase, query } from './db.js';
import { natsServerBin, startNatsServer } from './nats.js';
import { cpuSeconds, startRssSampler } from './procstat.js';
import { childEnv, cleanupAll, freePort, onCleanup, randomSuffix, sleep, tempDir, waitForPort } from './util.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const WARDEN_CLI = path.join(REPO_ROOT, 'control-plane', 'bin', 'warden.js');
/** What a gateway's pump sends at once (gateway/src/audit/pump.ts). */
const GATEWAY_BATCH = 512;
const IDENTITIES = ['ci-deploy', 'reporting', 'billing-job', 'support-tool'];

/**
 * @typedef {object} IngestRow
 * @property {'embedded' | 'postgres'} store
 * @property {number} events
 * @property {number} seconds        first event sent → last event stored
 * @property {number} eventsPerSecond
 * @property {number} cpuMicrosPerEvent  control plane's CPU over the ingest / events
 * @property {number} peakRssMB      control plane's peak VmRSS during the ingest
 * @property {number} resends        embedded: IngestAudit calls sent again after a failure
 * @property {boolean} verified      verify: ok, every event counted, nothing waiting
 * @property {string} [detail]       why it did not verify
 */

/**
 * Synthetic events in the order a gateway records them: `sessions` sessions
 * open at once, their statements interleaved, each ending with session.end.
 * @param {number} total
 * @param {number} sessions
 */
export function syntheticEvents(total, sessions) {
  const run = randomSuffix(6);
  const perSession = Math.max(3, Math.floor(total / sessions));
  const n = Math.max(1, Math.floor(total / perSession));
  const start = Date.now() - 3_600_000;
  /** @type {any[]} */
  const out = [];
  let clock = start;
  const base = (i, seq) => {
    const sessionId = `bench-${run}-${String(i).padStart(4, '0')}`;
    return {
      id: `${sessionId}:${seq}`,
      time: timestampOf(clock++),
      gateway: 'gw-bench',
      sessionId,
      seq,
      identity: IDENTITIES[i % IDENTITIES.length],
      resource: 'shop',
      agent: 'agent-1',
    };
  };
  // The last session takes what the division left over, so the total is exact.
  const lengths = Array.from({ length: n }, (_, i) => (i === n - 1 ? total - perSession * (n - 1) : perSession));
  const longest = Math.max(...lengths);
  for (let seq = 0; seq < longest; seq++) {
    for (let i = 0; i < n; i++) {
      const len = lengths[i];
      if (seq >= len) continue;
      const e = base(i, seq);
      if (seq === 0) e.event = { $case: 'sessionStart', value: sessionStart(i) };
      else if (seq === len - 1) e.event = { $case: 'sessionEnd', value: { duration: durationOf(60_000 + i), bytesIn: 1200 * len, bytesOut: 9000 * len, statements: len - 2, reason: 'client disconnected' } };
      else e.event = { $case: 'statement', value: statement(seq) };
      out.push(e);
    }
  }
  return out;
}

function sessionStart(i) {
  return {
    claims: { sub: IDENTITIES[i % IDENTITIES.length], iss: 'https://issuer.example', aud: 'warden', groups: ['ops'] },
    groups: ['ops'],
    clientAddress: `127.0.0.1:${40000 + i}`,
    applicationName: 'bench',
    user: 'app',
    access: 'write',
    readOnly: false,
  };
}

/** Mostly parameterised reads, some writes, a few refusals, as an application sends them. */
function statement(seq) {
  const k = seq % 20;
  const common = { parameters: [], objects: [], maskedColumns: [], duration: durationOf(0.2 + (seq % 7) * 0.031) };
  if (k === 19) {
    return {
      ...common, sql: 'DROP TABLE pgbench_history', protocol: StatementProtocol.STATEMENT_PROTOCOL_SIMPLE,
      decision: StatementDecision.STATEMENT_DECISION_REFUSED, rule: 'no-ddl', access: 'admin', kind: 'DROP TABLE',
      objects: ['public.pgbench_history'], error: { sqlstate: '42501', message: 'warden: DROP TABLE refused by rule no-ddl' },
    };
  }
  if (k >= 15) {
    return {
      ...common, sql: 'UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2',
      parameters: [{ value: String(seq % 5000) }, { value: String(seq * 7) }], protocol: StatementProtocol.STATEMENT_PROTOCOL_EXTENDED,
      decision: StatementDecision.STATEMENT_DECISION_ALLOWED, rule: 'app-write', access: 'write', kind: 'UPDATE',
      objects: ['public.pgbench_accounts'], command: 'UPDATE', rows: 1,
    };
  }
  return {
    ...common, sql: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1', parameters: [{ value: String(seq * 13) }],
    protocol: StatementProtocol.STATEMENT_PROTOCOL_EXTENDED, decision: StatementDecision.STATEMENT_DECISION_ALLOWED,
    rule: 'app-read', access: 'read', kind: 'SELECT', objects: ['public.pgbench_accounts'], command: 'SELECT', rows: 1,
  };
}

/** `warden control-plane` on a free port with its own data dir; resolves once it listens. */
async function startControlPlane(args, log, nodeArgs = []) {
  const dataDir = await tempDir('warden-bench-ingest-');
  const port = await freePort();
  const tokens = { admin: `wdn_admin_${randomSuffix(24)}`, gateway: `wdn_gw_${randomSuffix(24)}` };
  const logFile = path.join(dataDir, 'control-plane.log');
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [...nodeArgs, WARDEN_CLI, 'control-plane', '--listen', `127.0.0.1:${port}`, '--metrics-listen', '127.0.0.1:0', '--data-dir', dataDir, ...args], {
    cwd: REPO_ROOT,
    env: childEnv({ WARDEN_ADMIN_TOKEN: tokens.admin, WARDEN_GATEWAY_TOKEN: tokens.gateway }),
    stdio: ['ignore', fd, fd],
    detached: true,
  });
  closeSync(fd);
  let exited = false;
  child.on('exit', () => { exited = true; });
  const stop = async () => {
    if (exited) return;
    child.kill('SIGTERM');
    for (let i = 0; i < 100 && !exited; i++) await sleep(100);
    if (!exited) child.kill('SIGKILL');
  };
  const removeCleanup = onCleanup('stop the ingest bench control plane', stop);
  try {
    await waitForPort('127.0.0.1', port, 60_000, () => !exited);
  } catch (err) {
    const tail = (await readFile(logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-15).join('\n');
    removeCleanup();
    await stop();
    throw new Error(`the control plane did not start: ${err instanceof Error ? err.message : err}\n${tail}`);
  }
  // No keepalive pings: a control plane busy for seconds in one PGlite query (verify reads every event)
  // would miss their answers and the connection would be dropped.
  const client = new ControlPlaneServiceClient(`127.0.0.1:${port}`, channelCredentials({}));
  log(`control plane pid ${child.pid} on 127.0.0.1:${port} (${args.length ? args.join(' ') : 'embedded PGlite'})`);
  return {
    pid: /** @type {number} */ (child.pid),
    client,
    tokens,
    logFile,
    stop: async () => { client.close(); removeCleanup(); await stop(); },
  };
}

const unary = (fn) => new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res))));

/** A gateway's batches: `size` events at a time, in recorded order. */
function batches(events, size = GATEWAY_BATCH) {
  const out = [];
  for (let i = 0; i < events.length; i += size) out.push(events.slice(i, i + size));
  return out;
}

/**
 * Embedded: each batch an IngestAudit call, one at a time, as one gateway's
 * pump sends them; a call that fails is sent again, as the pump does (the
 * control plane drops what it stored already by event id). Returns the resends.
 */
async function feedIngestAudit(cp, events) {
  let resends = 0;
  for (const batch of batches(events)) {
    for (let attempt = 1; ; attempt++) {
      try {
        const ack = await unary((cb) => cp.client.ingestAudit({ gatewayId: 'gw-bench', events: batch }, bearer(cp.tokens.gateway), { deadline: Date.now() + 60_000 }, cb));
        const answered = ack.stored + ack.duplicates + ack.invalid;
        if (answered !== batch.length) throw new Error(`IngestAudit accounted for ${answered} of ${batch.length} events`);
        break;
      } catch (err) {
        if (attempt >= 30 || !/UNAVAILABLE|DEADLINE/.test(String(err))) throw err;
        resends++;
        await sleep(500);
      }
    }
  }
  return resends;
}

/**
 * Postgres: each batch becomes one AuditBatch message per subject, published
 * to JetStream with a message id, as gateway/src/audit/nats.ts does; a
 * bounded number of publishes in flight.
 */
async function publishToJetStream(natsUrl, events) {
  const nc = await connect({ servers: natsUrl });
  try {
    await ensureAuditStream(await nc.jetstreamManager());
    const js = nc.jetstream();
    /** @type {Promise<unknown>[]} */
    let inFlight = [];
    for (const batch of batches(events)) {
      const bySubject = new Map();
      for (const e of batch) {
        const s = auditSubject(e);
        if (!bySubject.has(s)) bySubject.set(s, []);
        bySubject.get(s).push(e);
      }
      for (const [subject, list] of bySubject) {
        const data = AuditBatch.encode({ gatewayId: '', events: list }).finish();
        inFlight.push(js.publish(subject, data, { msgID: `${list[0].id}..${list.at(-1).id}`, timeout: 30_000 }));
      }
      if (inFlight.length >= 64) {
        await Promise.all(inFlight);
        inFlight = [];
      }
    }
    await Promise.all(inFlight);
  } finally {
    await nc.drain().catch(() => nc.close());
  }
}

/** Waits until `count()` reaches `n` (or stops growing for `stallMs`). */
async function untilStored(count, n, stallMs = 60_000) {
  let last = -1;
  let since = Date.now();
  for (;;) {
    const c = await count();
    if (c >= n) return c;
    if (c !== last) {
      last = c;
      since = Date.now();
    } else if (Date.now() - since > stallMs) {
      throw new Error(`ingest stalled at ${c} of ${n} events`);
    }
    await sleep(100);
  }
}

async function verify(cp, n) {
  const v = await unary((cb) => cp.client.verifyAudit({}, bearer(cp.tokens.admin), cb)).catch((err) => {
    throw new Error(`VerifyAudit failed: ${err instanceof Error ? err.message : err}`);
  });
  const problems = [];
  if (!v.ok) problems.push(`${v.problems.length} problem(s), e.g. ${v.problems[0]?.detail}`);
  if (Number(v.events) !== n) problems.push(`verify counted ${v.events} events, ${n} were sent`);
  if (v.warnings.length > 0) problems.push(`${v.warnings.length} warning(s), e.g. ${v.warnings[0]}`);
  return { verified: problems.length === 0, detail: problems.join('; ') || undefined };
}

/** measureRow, with the control plane's last log lines when it fails. */
async function measureOne(store, events, cp, feed) {
  try {
    return await measureRow(store, events, cp, feed);
  } catch (err) {
    const tail = (await readFile(cp.logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-10).join('\n');
    throw new Error(`${store}: ${err instanceof Error ? err.message : err}${tail ? `\n--- control plane log (tail) ---\n${tail}` : ''}`);
  }
}

async function measureRow(store, events, cp, feed) {
  const rss = startRssSampler({ cp: cp.pid }, 100);
  const cpu0 = cpuSeconds(cp.pid);
  const t0 = process.hrtime.bigint();
  const resends = (await feed()) ?? 0;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = /** @type {number} */ (cpuSeconds(cp.pid)) - /** @type {number} */ (cpu0);
  const peak = rss.stop().cp.peak;
  const v = await verify(cp, events.length);
  return {
    store,
    events: events.length,
    seconds,
    eventsPerSecond: events.length / seconds,
    cpuMicrosPerEvent: (cpu * 1e6) / events.length,
    peakRssMB: peak / 1e6,
    resends,
    ...v,
  };
}

/**
 * Measures ingest into the embedded store and into Postgres.
 * @param {object} [opts]
 * @param {number} [opts.events]    events per store (100,000)
 * @param {number} [opts.sessions]  sessions open at once (200)
 * @param {('embedded' | 'postgres')[]} [opts.stores]
 * @param {{ host: string, port: number, user: string }} [opts.server]  Postgres for the control plane's database
 * @param {string} [opts.natsUrl]   an existing NATS with JetStream (nothing else may consume WARDEN_AUDIT there); default a private nats-server
 * @param {(msg: string) => void} [opts.log]
 * @param {string[]} [opts.nodeArgs]  node options for the control plane, e.g. --cpu-prof
 * @returns {Promise<IngestRow[]>}
 */
export async function measureIngest(opts = {}) {
  const n = opts.events ?? 100_000;
  const log = opts.log ?? (() => {});
  const stores = opts.stores ?? ['embedded', 'postgres'];
  const server = opts.server ?? { host: '127.0.0.1', port: 5432, user: 'postgres' };
  const rows = [];
  for (const store of stores) {
    const events = syntheticEvents(n, opts.sessions ?? 200);
    log(`audit ingest, ${store}: ${events.length} events ...`);
    if (store === 'embedded') {
      const cp = await startControlPlane([], log, opts.nodeArgs);
      try {
        rows.push(await measureOne(store, events, cp, () => feedIngestAudit(cp, events)));
      } finally {
        await cp.stop();
      }
      continue;
    }
    let natsUrl = opts.natsUrl;
    let stopNats = async () => {};
    if (!natsUrl) {
      const bin = await natsServerBin();
      if (!bin) throw new Error('no nats-server for the Postgres ingest row (apt-get install -y nats-server, or pass a NATS URL)');
      const nats = await startNatsServer(bin, 'audit ingest');
      natsUrl = nats.url;
      stopNats = nats.stop;
    }
    const db = await createScratchDatabase(server, 'warden_bench_ingest_');
    const url = `postgres://${db.user}@${db.host}:${db.port}/${db.database}`;
    const cp = await startControlPlane(['--database-url', url, '--nats', natsUrl], log, opts.nodeArgs);
    try {
      const count = async () => (await query(db, 'SELECT count(*)::int AS n FROM audit_events'))[0].n;
      rows.push(await measureOne(store, events, cp, async () => {
        await publishToJetStream(/** @type {string} */ (natsUrl), events);
        await untilStored(count, events.length);
      }));
    } finally {
      await cp.stop();
      await stopNats();
    }
  }
  return rows;
}

/** @param {IngestRow[]} rows */
export function formatIngest(rows) {
  const lines = ['store      events   seconds   events/s   CPU µs/event   peak RSS   resends   verified'];
  for (const r of rows) {
    lines.push(
      `${r.store.padEnd(9)} ${String(r.events).padStart(7)} ${r.seconds.toFixed(1).padStart(9)} ${Math.round(r.eventsPerSecond).toString().padStart(10)} ` +
      `${r.cpuMicrosPerEvent.toFixed(1).padStart(14)} ${`${r.peakRssMB.toFixed(0)} MB`.padStart(10)} ${String(r.resends).padStart(9)}   ${r.verified ? 'yes' : `NO: ${r.detail}`}`,
    );
  }
  return lines.join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const only = arg('--only');
  const stop = () => cleanupAll().then(() => process.exit(130));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    const rows = await measureIngest({
      events: arg('--events') ? Number(arg('--events')) : undefined,
      sessions: arg('--sessions') ? Number(arg('--sessions')) : undefined,
      stores: only ? [/** @type {'embedded' | 'postgres'} */ (only)] : undefined,
      natsUrl: arg('--nats'),
      nodeArgs: arg('--cpu-prof') ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(/** @type {string} */ (arg('--cpu-prof')))] : [],
      log: (m) => process.stderr.write(`${m}\n`),
    });
    console.log(formatIngest(rows));
    process.exitCode = rows.every((r) => r.verified) ? 0 : 1;
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  } finally {
    await cleanupAll();
  }
}
