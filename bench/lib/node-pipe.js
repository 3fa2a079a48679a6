// The orientation row: two bare Node.js relays (relay.js) in the places of
// the gateway and the agent, doing no work, so the cost of the hops alone
// sits next to Warden's in the same run.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { query } from './db.js';
import { childEnv, freePort, onCleanup, waitForPort } from './util.js';

const RELAY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'relay.js');

/**
 * @param {import('./pgbench.js').Conn} upstream
 * @param {(msg: string) => void} log
 * @returns {Promise<import('./paths.js').BenchPath>}
 */
export async function startNodePipe(upstream, log) {
  const inner = await freePort();
  const outer = await freePort();
  const relay = (listen, host, port) => {
    const child = spawn(process.execPath, [RELAY, String(listen), host, String(port)], { env: childEnv(), stdio: 'ignore' });
    const remove = onCleanup(`stop relay ${listen}`, () => child.kill('SIGKILL'));
    return { child, stop: () => { remove(); child.kill('SIGTERM'); } };
  };
  const second = relay(inner, upstream.host, upstream.port);
  const first = relay(outer, '127.0.0.1', inner);
  await waitForPort('127.0.0.1', inner, 10_000, () => second.child.exitCode === null);
  await waitForPort('127.0.0.1', outer, 10_000, () => first.child.exitCode === null);
  const conn = { ...upstream, host: '127.0.0.1', port: outer };
  await query(conn, 'SELECT 1');
  log(`two relays on 127.0.0.1:${outer} -> :${inner} -> ${upstream.host}:${upstream.port}`);
  return {
    id: 'node-pipe',
    label: 'node-pipe',
    kind: 'pipe',
    note: 'two bare Node.js relays where the gateway and the agent stand, doing no work (orientation)',
    conn: async () => conn,
    // In the gateway's and the agent's columns.
    pids: { gateway: /** @type {number} */ (first.child.pid), agent: /** @type {number} */ (second.child.pid) },
    stop: async () => { first.stop(); second.stop(); },
  };
}
