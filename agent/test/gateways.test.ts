// WatchGateways: the agent dials the gateways the control plane lists, follows
// changes, and keeps its gateways while the control plane is away.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, type AgentConfig } from '../src/index.js';
import { FakeControlPlane, FakeGateway, waitFor } from './helpers/fake-gateway.js';
import { MAIN, rand } from './helpers/pg.js';

const log = pino({ level: process.env.WARDEN_TEST_LOG ?? 'silent' });

describe('gateway list from the control plane', () => {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it('dials listed gateways, follows changes and survives a control plane outage', async () => {
    const token = `enroll-${rand()}`;
    const cp = await new FakeControlPlane().start();
    cleanups.push(() => cp.stop());
    const a = await new FakeGateway().start();
    const b = await new FakeGateway().start();
    cleanups.push(() => a.stop(), () => b.stop());
    cp.gateways = [{ id: 'gw-a', tunnelAddress: a.address, lastSeen: '' }];

    const config: AgentConfig = {
      name: 'local',
      controlPlane: { address: cp.address },
      enrollmentToken: token,
      gatewayTls: {},
      resources: { shop: { ...MAIN, sslmode: 'disable' } },
    };
    const agent = new Agent(config, { log, backoff: { baseMs: 50, capMs: 500 } });
    cleanups.push(() => agent.stop());
    agent.start();

    const ca = await a.control();
    expect(cp.watchers[0]!.request).toEqual({ agentName: 'local' });
    expect(cp.watchers[0]!.metadata.get('authorization')).toEqual([`Bearer ${token}`]);
    expect(ca.hello?.resources).toEqual(['shop']);

    // Replace A by B.
    cp.setGateways([{ id: 'gw-b', tunnelAddress: b.address, lastSeen: '' }]);
    await b.control();
    await waitFor(() => ca.ended, 5_000, 'the link to A to end');
    expect([...agent.watcher.gateways.keys()]).toEqual([b.address]);

    // Control plane away: B stays.
    const port = cp.port;
    const cb = await b.control();
    cp.stop();
    await new Promise((r) => setTimeout(r, 1_000));
    expect(cb.ended).toBe(false);
    expect(agent.watcher.gateways.get(b.address)?.connected).toBe(true);

    // Back, now listing both (B twice: deduplicated by address).
    const cp2 = new FakeControlPlane();
    cp2.gateways = [
      { id: 'gw-a', tunnelAddress: a.address, lastSeen: '' },
      { id: 'gw-b', tunnelAddress: b.address, lastSeen: '' },
      { id: 'gw-b2', tunnelAddress: b.address, lastSeen: '' },
    ];
    await cp2.start(port);
    cleanups.push(() => cp2.stop());
    await waitFor(() => cp2.watchers.length > 0, 15_000, 'the watch to come back');
    const ca2 = await a.control();
    expect(ca2).not.toBe(ca);
    expect(b.controls.filter((c) => !c.ended)).toHaveLength(1);
    expect(agent.watcher.gateways.size).toBe(2);

    await agent.stop();
    await waitFor(() => ca2.ended && b.controls.every((c) => c.ended), 5_000, 'links to end');
  }, 60_000);

  it('keeps the list on disk, and started while the control plane is away, dials the gateways it kept', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-agent-state-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const listFile = join(dir, 'local.gateways.json');
    const cp = await new FakeControlPlane().start();
    const a = await new FakeGateway().start();
    cleanups.push(() => a.stop());
    cp.gateways = [{ id: 'gw-a', tunnelAddress: a.address, lastSeen: '' }];
    const config: AgentConfig = {
      name: 'local',
      controlPlane: { address: cp.address },
      enrollmentToken: `enroll-${rand()}`,
      gatewayTls: {},
      resources: { shop: { ...MAIN, sslmode: 'disable' } },
    };
    const first = new Agent(config, { log, backoff: { baseMs: 50, capMs: 500 }, gatewayListFile: listFile });
    first.start();
    const c1 = await a.control();
    await waitFor(() => existsSync(listFile), 5_000, 'the list to be kept');
    expect(JSON.parse(readFileSync(listFile, 'utf8'))).toEqual([{ id: 'gw-a', tunnelAddress: a.address }]);
    expect(statSync(listFile).mode & 0o777).toBe(0o600);
    await first.stop();
    await waitFor(() => c1.ended, 5_000, 'the first link to end');

    // The control plane is gone; a new agent on the same state dials A from the kept list.
    await cp.stop();
    const again = new Agent(config, { log, backoff: { baseMs: 50, capMs: 500 }, gatewayListFile: listFile });
    cleanups.push(() => again.stop());
    again.start();
    const c2 = await a.control();
    expect(c2).not.toBe(c1);
    expect(c2.hello?.resources).toEqual(['shop']);
    expect([...again.watcher.gateways.keys()]).toEqual([a.address]);
  }, 60_000);
});

