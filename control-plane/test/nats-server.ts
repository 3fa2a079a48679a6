// A NATS server with JetStream of the test's own, on a free port with its
// own store directory, so a test can kill it and start it again with its data.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect as tcpConnect, createServer } from 'node:net';
import { tempDir } from './helpers.js';

export const NATS_SERVER = process.env.WARDEN_NATS_SERVER_BIN ?? (existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

export interface TestNats {
  url: string;
  start(): Promise<void>;
  /** SIGKILL: no goodbye to clients, JetStream recovers from its store on the next start. */
  kill(): Promise<void>;
  remove(): Promise<void>;
}

export async function startNats(): Promise<TestNats> {
  const port = await freePort();
  const store = tempDir('warden-nats-');
  let proc: ChildProcess | undefined;
  let output = '';
  const nats: TestNats = {
    url: `nats://127.0.0.1:${port}`,
    async start() {
      proc = spawn(NATS_SERVER, ['-js', '-sd', store.path, '-a', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
      proc.stdout!.on('data', (d) => (output += d));
      proc.stderr!.on('data', (d) => (output += d));
      const deadline = Date.now() + 10_000;
      while (!(await reachable(port))) {
        if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`nats-server did not start:\n${output}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async kill() {
      const p = proc;
      if (!p || p.exitCode !== null) return;
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await gone;
    },
    async remove() {
      await nats.kill();
      store.remove();
    },
  };
  await nats.start();
  return nats;
}
