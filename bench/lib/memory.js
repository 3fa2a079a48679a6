// Memory of `warden start` as a new user runs it: local mode, a fresh data
// dir, no upstream (so it creates and serves its demo database), every port
// 0. Once it is ready and its memory has settled, the VmRSS of the whole
// process tree (control plane with its embedded stores, gateway, agent and
// anything else it started) is added up.
import { commandLine, processTree, pssBytes, rssBytes } from './procstat.js';
import { sleep } from './util.js';
import { startWarden } from './warden.js';

/** Memory only moves by less than this much ... */
const SETTLE_TOLERANCE_BYTES = 2 * 1024 * 1024;
/** ... over this long, once ready (garbage collection and lazy starts). */
const SETTLE_WINDOW_MS = 3000;
const SETTLE_MIN_MS = 5000;
const SETTLE_TIMEOUT_MS = 30_000;
const SAMPLE_MS = 500;

/**
 * What a process of the tree is, from its command line.
 * @param {string} cmd
 */
function processName(cmd) {
  if (/warden-gateway/.test(cmd)) return 'gateway';
  if (/warden-agent/.test(cmd)) return 'agent';
  if (/warden\.js start\b/.test(cmd)) return 'control plane (warden start)';
  return cmd.slice(0, 60) || 'unknown';
}

/**
 * One reading of the tree: VmRSS and PSS per process.
 * @param {number} root
 */
function readTree(root) {
  return processTree(root).map((pid) => ({ pid, name: processName(commandLine(pid)), rssBytes: rssBytes(pid) ?? 0, pssBytes: pssBytes(pid) }));
}

/**
 * Starts `warden start` with the demo database, waits for it to settle,
 * reads its process tree's memory and stops it.
 * @param {{ log: (msg: string) => void }} o
 */
export async function measureStartMemory({ log }) {
  const started = Date.now();
  const w = await startWarden({ upstream: null, id: 'warden-demo', extraArgs: [], log, description: 'warden start with its demo database' });
  const readySeconds = (Date.now() - started) / 1000;
  try {
    const root = /** @type {number} */ (w.controlPlanePid);
    const settleStart = Date.now();
    /** @type {{ at: number, total: number }[]} */
    const history = [];
    let tree = readTree(root);
    let settled = false;
    for (;;) {
      await sleep(SAMPLE_MS);
      tree = readTree(root);
      const now = Date.now();
      history.push({ at: now, total: tree.reduce((s, p) => s + p.rssBytes, 0) });
      const recent = history.filter((h) => h.at >= now - SETTLE_WINDOW_MS);
      const span = Math.max(...recent.map((h) => h.total)) - Math.min(...recent.map((h) => h.total));
      if (now - settleStart >= SETTLE_MIN_MS && recent.length >= SETTLE_WINDOW_MS / SAMPLE_MS && span < SETTLE_TOLERANCE_BYTES) {
        settled = true;
        break;
      }
      if (now - settleStart > SETTLE_TIMEOUT_MS) break;
    }
    const totalRssBytes = tree.reduce((s, p) => s + p.rssBytes, 0);
    const totalPssBytes = tree.every((p) => p.pssBytes !== null) ? tree.reduce((s, p) => s + /** @type {number} */ (p.pssBytes), 0) : null;
    log(`warden start with the demo database: ${(totalRssBytes / 1e6).toFixed(1)} MB VmRSS over ${tree.length} processes` +
      ` (${tree.map((p) => `${p.name} ${(p.rssBytes / 1e6).toFixed(1)}`).join(', ')})${settled ? '' : ' (had not settled)'}`);
    return {
      command: 'warden start (local mode, fresh data dir, demo database, ports 0)',
      readySeconds,
      settleSeconds: (Date.now() - settleStart) / 1000,
      settled,
      processes: tree,
      totalRssBytes,
      totalPssBytes,
    };
  } finally {
    await w.stop();
  }
}
