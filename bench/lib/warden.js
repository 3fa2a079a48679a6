// The Warden full chain (control plane + gateway + agent) started through
// `warden start`, as in docs/processes.md: in the production topology
// (control plane storing in Postgres, audit events through NATS JetStream)
// or with local mode's embedded defaults (PGlite, audit over IngestAudit).
import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createScratchDatabase, query } from './db.js';
import { NATS_INSTALL_HINT, startNatsServer } from './nats.js';
import { childEnv, onCleanup, pidAlive, runOk, sleep, tempDir } from './util.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
// WARDEN_BENCH_CLI points the bench at another `warden` entry script (for
// testing the bench itself against a stand-in chain).
const WARDEN_CLI = process.env.WARDEN_BENCH_CLI
  ? path.resolve(process.env.WARDEN_BENCH_CLI)
  : path.join(REPO_ROOT, 'control-plane', 'bin', 'warden.js');
const GATEWAY_MAIN = path.join(REPO_ROOT, 'gateway', 'dist', 'main.js');
const RESOURCE = 'shop';
const SUBJECT = 'demo';
const TOKEN_TTL = '2h';
const TOKEN_REFRESH_MS = 30 * 60 * 1000;

/** Why the chain cannot be started here, or null when it looks runnable. */
export function wardenMissing() {
  if (!existsSync(WARDEN_CLI)) return `${path.relative(REPO_ROOT, WARDEN_CLI)} not found (Warden not written/built yet)`;
  if (!process.env.WARDEN_BENCH_CLI && !existsSync(GATEWAY_MAIN)) return `${path.relative(REPO_ROOT, GATEWAY_MAIN)} not found (run npm run build)`;
  return null;
}

/**
 * @typedef {object} Topology
 * @property {'production' | 'embedded'} kind
 * @property {{ host: string, port: number, user: string, throwaway?: boolean }} [controlPlaneServer]
 *   production: Postgres server that gets the control plane's database (on a
 *   throwaway cluster it is not dropped on its own)
 * @property {{ url: string } | { bin: string }} [nats]
 *   production: an existing NATS server (--nats), or the nats-server binary
 *   to start a private one for this chain
 */

/** Does an option list already set `--name` (as `--name V` or `--name=V`)? */
const hasOption = (/** @type {string[]} */ args, /** @type {string} */ name) =>
  args.some((a) => a === name || a.startsWith(`${name}=`));

/**
 * A Warden chain in the given topology. Production: a fresh control-plane
 * database on `controlPlaneServer` and (without an existing NATS URL) a
 * private nats-server, both removed at the bench's cleanup; options that
 * `extraArgs` sets itself are left to it.
 * @param {object} o
 * @param {import('./pgbench.js').Conn} o.upstream
 * @param {string} o.id
 * @param {string[]} o.extraArgs
 * @param {Topology} o.topology
 * @param {(msg: string) => void} o.log
 * @returns {Promise<import('./paths.js').BenchPath>}
 */
export async function startWardenChain({ upstream, id, extraArgs, topology, log }) {
  if (topology.kind === 'embedded') {
    return startWarden({ upstream, id, extraArgs, log, description: 'control plane on embedded PGlite, audit over IngestAudit' });
  }
  const args = [];
  const described = [];
  /** @type {import('./pgbench.js').Conn | null} */
  let controlPlaneDb = null;
  /** @type {(() => Promise<void>)[]} */
  const stops = [];
  if (!hasOption(extraArgs, '--database-url')) {
    if (!topology.controlPlaneServer) throw new Error('production topology needs a server for the control plane database');
    const db = await createScratchDatabase(topology.controlPlaneServer, 'warden_bench_cp_', { drop: !topology.controlPlaneServer.throwaway });
    controlPlaneDb = db;
    const url = `postgres://${db.user}@${db.host}:${db.port}/${db.database}`;
    args.push('--database-url', url);
    described.push(`control plane on Postgres ${db.host}:${db.port}/${db.database}`);
  }
  if (!hasOption(extraArgs, '--nats')) {
    if (!topology.nats) throw new Error(`no NATS server for the audit events; ${NATS_INSTALL_HINT}`);
    if ('url' in topology.nats) {
      args.push('--nats', topology.nats.url);
      described.push(`audit through NATS JetStream ${topology.nats.url}`);
    } else {
      const nats = await startNatsServer(topology.nats.bin, id);
      stops.push(nats.stop);
      args.push('--nats', nats.url);
      described.push(`audit through NATS JetStream ${nats.url} (nats-server of its own, pid ${nats.pid})`);
    }
  }
  try {
    const p = await startWarden({ upstream, id, extraArgs, topologyArgs: args, log, description: described.join(', ') });
    const stopChain = p.stop;
    const cpDb = controlPlaneDb;
    return {
      ...p,
      // Audit events the control plane has stored by now: shows that they
      // arrive through NATS (some may still be in transit).
      storedAuditEvents: cpDb ? async () => (await query(cpDb, 'SELECT count(*)::int AS n FROM audit_events'))[0].n : undefined,
      stop: async () => { await stopChain(); for (const s of stops) await s(); },
    };
  } catch (err) {
    for (const s of stops) await s();
    throw err;
  }
}

/**
 * Start `warden start` against the bench database and wait for its ready file.
 * @param {object} o
 * @param {import('./pgbench.js').Conn | null} o.upstream  null: the demo database
 * @param {string} o.id          row name: 'warden' or 'warden+<variant>'
 * @param {string[]} o.extraArgs extra `warden start` options (hook for policy/masking rows)
 * @param {(msg: string) => void} o.log
 * @param {string[]} [o.topologyArgs] options that set up storage and audit transport
 * @param {string} [o.description]  what the chain stores and sends where, for the report
 * @param {number} [o.readyTimeoutMs]
 * @returns {Promise<import('./paths.js').BenchPath>}
 */
export async function startWarden({ upstream, id, extraArgs, topologyArgs = [], log, description, readyTimeoutMs = 120_000 }) {
  const dataDir = await tempDir(`warden-bench-${id.replace(/[^a-z0-9]+/gi, '-')}-`);
  const readyFile = path.join(dataDir, 'ready.json');
  const logFile = path.join(dataDir, 'warden.log');
  // Without an upstream, `warden start` makes and serves its demo database.
  const target = upstream
    ? ['--upstream', `postgres://${upstream.user}@${upstream.host}:${upstream.port}/${upstream.database}`]
    : ['--demo-port', '0'];
  const args = [
    WARDEN_CLI, 'start',
    '--data-dir', dataDir,
    ...target,
    '--resource', RESOURCE,
    '--gateway-port', '0', '--control-plane-port', '0', '--console-port', '0', '--tunnel-port', '0',
    '--ready-file', readyFile,
    ...topologyArgs,
    ...extraArgs,
  ];
  const fd = openSync(logFile, 'a');
  // Own process group: Ctrl+C reaches only the bench, which then stops the
  // chain in order.
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT, env: childEnv(), stdio: ['ignore', fd, fd], detached: true,
  });
  closeSync(fd);
  let exited = false;
  /** @type {string} */
  let exitInfo = '';
  child.on('exit', (code, signal) => { exited = true; exitInfo = signal ?? `exit ${code}`; });

  /** @type {any} */
  let ready = null;
  const stop = async () => {
    if (!exited && child.pid) {
      child.kill('SIGTERM');
      for (let i = 0; i < 150 && !exited; i++) await sleep(100);
      if (!exited) {
        try { process.kill(-(/** @type {number} */ (child.pid)), 'SIGKILL'); } catch { /* gone */ }
      }
    }
    // The gateway and agent should go with their parent; make sure.
    for (let i = 0; i < 50; i++) {
      const left = [ready?.gateway?.pid, ready?.agent?.pid].filter((p) => p && pidAlive(p));
      if (!left.length) break;
      if (i === 30) for (const p of left) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
      await sleep(100);
    }
  };
  const removeCleanup = onCleanup(`stop ${id}`, stop);

  const logTail = async () =>
    (await readFile(logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-20).join('\n');

  try {
    const deadline = Date.now() + readyTimeoutMs;
    while (!ready) {
      if (exited) throw new Error(`warden start exited (${exitInfo}) before becoming ready`);
      if (Date.now() > deadline) throw new Error(`no ready file after ${readyTimeoutMs / 1000} s`);
      const text = await readFile(readyFile, 'utf8').catch(() => null);
      if (text) {
        try { ready = JSON.parse(text); } catch { /* partly written; retry */ }
      }
      if (!ready) await sleep(100);
    }
    const gatewayPid = Number(ready.gateway?.pid);
    const agentPid = Number(ready.agent?.pid);
    if (!gatewayPid || !agentPid) throw new Error(`ready file lacks gateway/agent pids: ${JSON.stringify(ready)}`);
    // Traffic stays on loopback whatever the gateway listens on.
    const host = /^127\.|^localhost$|^::1$/.test(String(ready.gateway.host)) ? ready.gateway.host : '127.0.0.1';
    const port = Number(ready.gateway.port);
    const resource = ready.resource ?? RESOURCE;

    let token = '';
    let tokenAt = 0;
    const conn = async () => {
      if (!token || Date.now() - tokenAt > TOKEN_REFRESH_MS) {
        const res = await runOk(process.execPath, [WARDEN_CLI, 'token', '--sub', SUBJECT, '--data-dir', dataDir, '--ttl', TOKEN_TTL], {
          cwd: REPO_ROOT, env: childEnv(),
        });
        const jwt = res.stdout.split(/\s+/).find((w) => /^[\w-]+\.[\w-]+\.[\w-]+$/.test(w));
        if (!jwt) throw new Error(`warden token printed no JWT: ${res.stdout.slice(0, 200)}`);
        token = jwt;
        tokenAt = Date.now();
      }
      return { host, port, user: SUBJECT, database: resource, password: token };
    };
    await query(await conn(), 'SELECT 1');
    log(`${id}: gateway 127.0.0.1:${port} (pid ${gatewayPid}), agent pid ${agentPid}` +
      (description ? `; ${description}` : '') + (extraArgs.length ? `; extra options: ${extraArgs.join(' ')}` : ''));
    return {
      id,
      label: id,
      kind: 'warden',
      note: [description ?? 'warden start (local mode)', extraArgs.length ? `extra options: ${extraArgs.join(' ')}` : ''].filter(Boolean).join('; '),
      extraArgs,
      topologyArgs,
      conn,
      pids: { gateway: gatewayPid, agent: agentPid },
      // `warden start` runs the control plane in its own process.
      controlPlanePid: /** @type {number} */ (child.pid),
      stop: async () => { removeCleanup(); await stop(); },
    };
  } catch (err) {
    const tail = await logTail();
    removeCleanup();
    await stop();
    throw new Error(`${id} did not start: ${err instanceof Error ? err.message : err}${tail ? `\n--- warden log (tail) ---\n${tail}` : ''}`);
  }
}
