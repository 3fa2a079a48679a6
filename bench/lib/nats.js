// A private NATS server with JetStream for one Warden chain's audit events.
// The audit stream (WARDEN_AUDIT) and the control plane's durable consumer
// (warden-control-plane) have fixed names, so two control planes on one NATS
// server take each other's events: the bench gives every chain its own
// server rather than share the machine's.
import { execFileSync, spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { childEnv, freePort, onCleanup, sleep, tempDir, waitForPort, which } from './util.js';

export const NATS_INSTALL_HINT = 'install it with: apt-get update && apt-get install -y nats-server (or pass --nats URL)';

/** The nats-server binary (WARDEN_BENCH_NATS_SERVER overrides), or null. */
export async function natsServerBin() {
  const given = process.env.WARDEN_BENCH_NATS_SERVER;
  if (given) return access(given, constants.X_OK).then(() => given, () => null);
  return which('nats-server');
}

/**
 * Start `nats-server -js` on a free loopback port with its store in a temp
 * dir; stopped at stop() or at the bench's cleanup.
 * @param {string} bin
 * @param {string} label  for log lines and cleanup
 * @returns {Promise<{ url: string, pid: number, version: string, stop: () => Promise<void> }>}
 */
export async function startNatsServer(bin, label) {
  const version = execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
  const store = await tempDir('warden-bench-nats-');
  const port = await freePort();
  // Own process group: Ctrl+C reaches only the bench, which stops the chain
  // (whose gateway still flushes audit events) before this server.
  const child = spawn(bin, ['-js', '-sd', store, '-a', '127.0.0.1', '-p', String(port)], {
    env: childEnv(), stdio: ['ignore', 'ignore', 'pipe'], detached: true,
  });
  let output = '';
  child.stderr.setEncoding('utf8').on('data', (d) => { output = (output + d).slice(-4000); });
  let exited = false;
  child.on('exit', () => { exited = true; });
  const stop = async () => {
    if (exited) return;
    child.kill('SIGTERM');
    for (let i = 0; i < 50 && !exited; i++) await sleep(100);
    if (!exited) child.kill('SIGKILL');
  };
  // Registered after tempDir(), so it runs before the store is removed.
  const removeCleanup = onCleanup(`stop nats-server for ${label}`, stop);
  try {
    await waitForPort('127.0.0.1', port, 15_000, () => !exited);
  } catch (err) {
    removeCleanup();
    await stop();
    throw new Error(`nats-server did not start: ${err instanceof Error ? err.message : err}\n${output.trim().split('\n').slice(-10).join('\n')}`);
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    pid: /** @type {number} */ (child.pid),
    version,
    stop: async () => { removeCleanup(); await stop(); },
  };
}
