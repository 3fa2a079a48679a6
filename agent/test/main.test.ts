// The warden-agent binary end to end: config file, fake control plane and
// gateway, one relayed query, JSON logs without secrets, SIGTERM exits 0.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dataRow, FakeControlPlane, FakeGateway, messages, queryMessage, waitFor } from './helpers/fake-gateway.js';
import { MAIN, query, rand } from './helpers/pg.js';

const BIN = resolve(import.meta.dirname, '../bin/warden-agent.js');

function run(args: string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcess; out: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, out: () => out, exited };
}

describe('warden-agent binary', () => {
  const dir = mkdtempSync(join(tmpdir(), 'warden-agent-main-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('exits non-zero with a clear message on a bad config', async () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ name: 'local', controlPlane: { address: 'x' }, enrollmentToken: 't', resources: {} }));
    const p = run(['--config', file]);
    expect(await p.exited).toBe(1);
    const line = JSON.parse(p.out().trim().split('\n').pop()!);
    expect(line.level).toBe(60);
    expect(line.msg).toMatch(/config field "controlPlane.address" must be host:port/);
  });

  it('relays through a gateway from the control plane, logs JSON without secrets, exits 0 on SIGTERM', async () => {
    const cp = await new FakeControlPlane().start();
    const gw = await new FakeGateway().start();
    const token = `enroll-${rand()}-secret`;
    const password = `pw-${rand()}-secret`;
    writeFileSync(join(dir, 'token'), `${token}\n`);
    const file = join(dir, 'agent.json');
    writeFileSync(
      file,
      JSON.stringify({
        name: 'local',
        controlPlane: { address: cp.address },
        enrollmentTokenFile: 'token',
        resources: { shop: { ...MAIN, password } },
      }),
    );
    cp.gateways = [{ id: 'gw', tunnelAddress: gw.address, lastSeen: '' }];
    const p = run([], { WARDEN_AGENT_CONFIG: file, WARDEN_LOG_LEVEL: 'debug' });
    try {
      const c = await gw.control(15_000);
      expect(c.token).toBe(token);
      const id = `s-${rand()}`;
      const app = `warden-main-${id}`;
      c.open({ sessionId: id, parameters: { application_name: app } });
      const s = await gw.session(id);
      await waitFor(() => messages(s.data).some((m) => m.type === 'Z'), 10_000, 'startup');
      s.send(queryMessage('SELECT 42'));
      await waitFor(() => messages(s.data).filter((m) => m.type === 'Z').length === 2, 10_000, 'result');
      expect(messages(s.data).filter((m) => m.type === 'D').map((m) => dataRow(m.body))).toEqual([['42']]);

      p.child.kill('SIGTERM');
      expect(await p.exited).toBe(0);
      await waitFor(() => s.agentEnded, 5_000, 'the session channel to end');
      const deadline = Date.now() + 10_000;
      while ((await query(MAIN, 'SELECT 1 FROM pg_stat_activity WHERE application_name = $1', [app])).length > 0) {
        if (Date.now() > deadline) throw new Error('backend still present after the agent exited');
        await new Promise((r) => setTimeout(r, 100));
      }

      const lines = p.out().trim().split('\n');
      for (const l of lines) expect(() => JSON.parse(l), l).not.toThrow();
      const msgs = lines.map((l) => JSON.parse(l).msg as string);
      expect(msgs).toContain('agent starting');
      expect(msgs).toContain('session ready');
      expect(msgs).toContain('stopped');
      expect(p.out()).not.toContain(token);
      expect(p.out()).not.toContain(password);
    } finally {
      p.child.kill('SIGKILL');
      cp.stop();
      await gw.stop();
    }
  }, 40_000);
});
