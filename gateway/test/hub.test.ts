// The gateway's link hub against hand-driven agents (raw links): HELLO
// checks, OPEN/READY/FAILED, DATA both ways with flow control, CANCEL,
// CLOSE, round-robin, open timeout, lost links and revocation.
import { connect as tcpConnect, type Socket } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type Channel,
  type ChannelHandler,
  decodeCancelKey,
  decodeWelcome,
  dialLink,
  encodeHello,
  FrameType,
  type Link,
  LINK_FEATURE_CANCEL_KEY,
  type LinkOwner,
  OpenSession,
  SessionFailed,
} from '@warden/proto';
import { secretBytes } from '../src/tunnel/cancel-keys.js';
import { AgentHub, TunnelError, type Upstream } from '../src/tunnel/index.js';

const log = pino({ level: process.env.WARDEN_TEST_LOG ?? 'silent' });
const TOKEN = 'enroll-secret';

async function waitFor<T>(fn: () => T | undefined | false | null, ms = 5_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

class AgentChannel implements ChannelHandler {
  chunks: Buffer[] = [];
  signals: number[] = [];
  closedWith: Error | undefined | null = null;
  consume = true;
  writableCalls = 0;
  constructor(
    readonly open: OpenSession,
    public channel: Channel,
  ) {}
  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
  data(payload: Buffer): void {
    this.chunks.push(Buffer.from(payload));
    if (this.consume) this.channel.consumed(payload.length);
  }
  writable(): void {
    this.writableCalls++;
  }
  closed(error?: Error): void {
    this.closedWith = error;
  }
  signal(type: number): void {
    this.signals.push(type);
  }
}

/** A hand-driven agent: says HELLO, records OPENs as channels. */
class FakeAgent implements LinkOwner {
  link!: Link;
  welcomed = false;
  closedWith: Error | undefined | null = null;
  channels: AgentChannel[] = [];
  cancelKeys: Array<{ pid: number; secret: Buffer }> = [];
  frame(link: Link, type: number, channel: number, payload: Buffer): void {
    if (type === FrameType.CANCEL_KEY) this.cancelKeys.push(decodeCancelKey(payload));
    if (type === FrameType.WELCOME) {
      link.peerWindow = decodeWelcome(payload).window;
      this.welcomed = true;
    }
    if (type === FrameType.OPEN) {
      const ch = new AgentChannel(OpenSession.decode(payload), undefined as unknown as Channel);
      ch.channel = link.openChannel(channel, ch);
      this.channels.push(ch);
    }
  }
  closed(_link: Link, error?: Error): void {
    this.closedWith = error;
  }
  static async connect(port: number, name = 'local', token = TOKEN, version?: number, features?: string[]): Promise<FakeAgent> {
    const a = new FakeAgent();
    a.link = await dialLink({ address: `127.0.0.1:${port}` }, a);
    a.link.send(FrameType.HELLO, 0, encodeHello(token, { agentName: name, version: 't', resources: ['shop'], features }, undefined, version));
    return a;
  }
  ready(ch: AgentChannel, bytes?: Buffer): void {
    ch.channel.signal(FrameType.READY);
    if (bytes) ch.channel.send(bytes);
  }
}

function collectUpstream(u: Upstream): { chunks: Buffer[]; ended: { error?: Error } | null; drains: number } {
  const out = { chunks: [] as Buffer[], ended: null as { error?: Error } | null, drains: 0 };
  u.start({
    data: (c) => out.chunks.push(Buffer.from(c)),
    drain: () => out.drains++,
    end: (error) => (out.ended = { error }),
  });
  return out;
}

describe('agent hub', () => {
  const cleanup: Array<() => unknown> = [];
  afterEach(async () => {
    for (const c of cleanup.reverse()) await c();
    cleanup.length = 0;
  });

  async function hub(opts: ConstructorParameters<typeof AgentHub>[2] = {}, names = ['local', 'other']) {
    const enrolled = new Set(names);
    const h = new AgentHub((name, token) => enrolled.has(name) && token === TOKEN, log, opts);
    const port = await h.listen('127.0.0.1:0');
    cleanup.push(() => h.close());
    return { h, port, enrolled };
  }

  /** A raw TCP connection to the tunnel port that writes `bytes`; `said()` is what the gateway sent back (its ERROR frames' text). */
  function raw(port: number, bytes: Buffer): { socket: Socket; said: () => string } {
    let got = Buffer.alloc(0);
    const socket = tcpConnect(port, '127.0.0.1', () => socket.write(bytes));
    socket.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
    socket.on('error', () => {});
    return { socket, said: () => got.toString('latin1') };
  }

  it('before HELLO, a frame over 64 KiB ends the link at its header, and at most maxWaitingLinks may wait; an agent still gets in', async () => {
    const { h, port } = await hub({ maxWaitingLinks: 20, helloTimeoutMs: 60_000 });
    const state = h as unknown as { waiting: { count: number }; all: Set<unknown> };
    // A HELLO header that promises 1 MiB, and half of it: refused at the header, nothing buffered for it.
    const header = Buffer.alloc(9);
    header.writeUInt32BE(1 << 20, 0);
    header[4] = FrameType.HELLO;
    const big = Array.from({ length: 50 }, () => raw(port, Buffer.concat([header, Buffer.alloc(512 << 10)])));
    await waitFor(() => big.every((r) => /HELLO frame of 1048576 bytes exceeds the limit of 65536|are waiting to say HELLO/.test(r.said())), 5_000, 'every big HELLO refused');
    for (const r of big) r.socket.destroy();
    await waitFor(() => state.waiting.count === 0, 5_000, 'the refused links to be gone');
    // Links that say nothing: 20 may wait, the rest are closed at once.
    const silent = Array.from({ length: 30 }, () => raw(port, Buffer.alloc(0)));
    await waitFor(() => silent.filter((r) => /too many connections to this gateway are waiting to say HELLO \(limit 20\)/.test(r.said())).length === 10, 5_000, 'ten silent links refused');
    expect(state.waiting.count).toBe(20);
    for (const r of silent) r.socket.destroy();
    await waitFor(() => state.waiting.count === 0, 5_000, 'the silent links to be gone');
    const a = await FakeAgent.connect(port);
    cleanup.push(() => a.link.close());
    await waitFor(() => a.welcomed, 5_000, 'the agent to be welcomed');
  });

  it('at most maxWaitingLinksPerAddress links from one address may wait for HELLO', async () => {
    const { h, port } = await hub({ maxWaitingLinksPerAddress: 5, helloTimeoutMs: 60_000 });
    const state = h as unknown as { waiting: { count: number } };
    const silent = Array.from({ length: 8 }, () => raw(port, Buffer.alloc(0)));
    await waitFor(() => silent.filter((r) => /too many connections from 127\.0\.0\.1 are waiting to say HELLO \(limit 5\)/.test(r.said())).length === 3, 5_000, 'three silent links refused');
    expect(state.waiting.count).toBe(5);
    for (const r of silent) r.socket.destroy();
    await waitFor(() => state.waiting.count === 0, 5_000, 'the silent links to be gone');
  });

  it('refuses a wrong token, an unknown name and another link version, with a reason', async () => {
    const { h, port } = await hub();
    for (const [name, token, version] of [
      ['local', 'wrong', undefined],
      ['stranger', TOKEN, undefined],
      ['local', TOKEN, 9],
    ] as const) {
      const a = await FakeAgent.connect(port, name, token, version);
      cleanup.push(() => a.link.destroy());
      await waitFor(() => a.closedWith !== null, 2_000, 'the refusal');
      expect(a.welcomed).toBe(false);
      expect((a.closedWith as { peerReason?: string }).peerReason).toMatch(
        version ? /link version 9 is not supported/ : /unknown agent or invalid enrollment token/,
      );
    }
    expect(h.isOnline('local')).toBe(false);
    expect(h.isOnline('stranger')).toBe(false);
  });

  it('opens a session: OPEN with the request, READY, DATA both ways, CANCEL, CLOSE', async () => {
    const { h, port } = await hub();
    const a = await FakeAgent.connect(port);
    cleanup.push(() => a.link.destroy());
    await waitFor(() => a.welcomed, 2_000, 'WELCOME');
    expect(h.isOnline('local')).toBe(true);
    expect(h.connections('local')[0]!.hello).toEqual({ agentName: 'local', version: 't', resources: ['shop'], features: [] });

    const opening = h.open('local', { resource: 'shop', parameters: { application_name: 'x' }, readOnly: true });
    const ch = await waitFor(() => a.channels[0], 2_000, 'OPEN');
    expect(ch.open).toMatchObject({ resource: 'shop', parameters: { application_name: 'x' }, readOnly: true });
    expect(ch.open.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    // Bytes right behind READY are kept until the session starts reading.
    a.ready(ch, Buffer.from('startup-bytes'));
    const u = await opening;
    expect(u.agent).toBe('local');
    expect(u.sessionId).toBe(ch.open.sessionId);
    const got = collectUpstream(u);
    expect(Buffer.concat(got.chunks).toString()).toBe('startup-bytes');

    expect(u.write(Buffer.from('query'))).toBe(true);
    await waitFor(() => ch.bytes.toString() === 'query', 2_000, 'DATA to the agent');
    ch.channel.send(Buffer.from('-result'));
    await waitFor(() => Buffer.concat(got.chunks).toString() === 'startup-bytes-result', 2_000, 'DATA to the session');
    u.cancel();
    await waitFor(() => ch.signals.includes(FrameType.CANCEL), 2_000, 'CANCEL');
    u.close();
    await waitFor(() => ch.closedWith !== null, 2_000, 'CLOSE at the agent');
    expect(ch.closedWith).toBeUndefined();
    expect(got.ended).toBeNull(); // close() from the session side does not call back
  });

  it("OPEN carries the client's cancel key; cancelByKey sends CANCEL_KEY only to agents that understand it", async () => {
    const { h, port } = await hub();
    const modern = await FakeAgent.connect(port, 'local', TOKEN, undefined, [LINK_FEATURE_CANCEL_KEY]);
    const older = await FakeAgent.connect(port, 'other');
    cleanup.push(() => modern.link.destroy(), () => older.link.destroy());
    await waitFor(() => modern.welcomed && older.welcomed, 2_000, 'WELCOME');

    const opening = h.open('local', { resource: 'shop', parameters: {}, readOnly: false });
    const ch = await waitFor(() => modern.channels[0], 2_000, 'OPEN');
    modern.ready(ch);
    const u = await opening;
    const key = h.keys.issue(u);
    expect(ch.open.cancelProcessId).toBe(key.pid);
    expect(ch.open.cancelSecret).toEqual(secretBytes(key.secret));

    // The key is the session's: a local cancel becomes CANCEL on its channel, nothing is relayed.
    expect(h.keys.cancel(key.pid, key.secret, '10.0.0.1')).toBe(true);
    await waitFor(() => ch.signals.includes(FrameType.CANCEL), 2_000, 'CANCEL');
    expect(h.cancelByKey(7, Buffer.from([0, 0, 0, 9]))).toBe(1);
    await waitFor(() => modern.cancelKeys.length === 1, 2_000, 'CANCEL_KEY');
    expect(modern.cancelKeys[0]).toEqual({ pid: 7, secret: Buffer.from([0, 0, 0, 9]) });
    // The agent without the feature gets nothing (its link would not survive an unknown frame type).
    await new Promise((r) => setTimeout(r, 50));
    expect(older.closedWith).toBeNull();

    // Once the session is over its key is gone.
    u.close();
    expect(h.keys.size).toBe(0);
  });

  it('FAILED rejects the open with its SQLSTATE and message', async () => {
    const { h, port } = await hub();
    const a = await FakeAgent.connect(port);
    cleanup.push(() => a.link.destroy());
    await waitFor(() => a.welcomed, 2_000, 'WELCOME');
    const opening = h.open('local', { resource: 'shop', parameters: {}, readOnly: false });
    const ch = await waitFor(() => a.channels[0], 2_000, 'OPEN');
    ch.channel.signal(
      FrameType.FAILED,
      Buffer.from(SessionFailed.encode({ sessionId: ch.open.sessionId, sqlstate: '28P01', message: 'agent local could not log in' }).finish()),
    );
    ch.channel.forget();
    const err = await opening.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TunnelError);
    expect(err).toMatchObject({ sqlstate: '28P01', message: 'agent local could not log in' });
  });

  it('an agent that is not connected, or does not answer in time, gives 08006 naming it', async () => {
    const { h, port } = await hub({ openTimeoutMs: 200 });
    await expect(h.open('local', { resource: 'shop', parameters: {}, readOnly: false })).rejects.toMatchObject({
      sqlstate: '08006',
      message: expect.stringContaining('agent local'),
    });
    const a = await FakeAgent.connect(port);
    cleanup.push(() => a.link.destroy());
    await waitFor(() => a.welcomed, 2_000, 'WELCOME');
    const err = await h.open('local', { resource: 'shop', parameters: {}, readOnly: false }).catch((e: unknown) => e);
    expect(err).toMatchObject({ sqlstate: '08006', message: 'agent local did not open resource shop within 0.2 s' });
    // The agent is told to give the channel up.
    await waitFor(() => a.channels[0] && a.channels[0].closedWith === undefined, 2_000, 'CLOSE after the timeout');
  });

  it('round-robins over several links of one agent', async () => {
    const { h, port } = await hub();
    const a = await FakeAgent.connect(port);
    const b = await FakeAgent.connect(port);
    cleanup.push(() => a.link.destroy(), () => b.link.destroy());
    await waitFor(() => a.welcomed && b.welcomed, 2_000, 'WELCOMEs');
    for (let i = 0; i < 4; i++) void h.open('local', { resource: 'shop', parameters: {}, readOnly: false }).catch(() => undefined);
    await waitFor(() => a.channels.length + b.channels.length === 4, 2_000, 'four OPENs');
    expect(a.channels).toHaveLength(2);
    expect(b.channels).toHaveLength(2);
  });

  it('a lost link fails opens in flight and ends live sessions with an error', async () => {
    const { h, port } = await hub();
    const a = await FakeAgent.connect(port);
    await waitFor(() => a.welcomed, 2_000, 'WELCOME');
    const first = h.open('local', { resource: 'shop', parameters: {}, readOnly: false });
    const ch = await waitFor(() => a.channels[0], 2_000, 'OPEN');
    a.ready(ch);
    const got = collectUpstream(await first);
    const second = h.open('local', { resource: 'shop', parameters: {}, readOnly: false }).catch((e: unknown) => e);
    await waitFor(() => a.channels[1], 2_000, 'second OPEN');
    a.link.destroy();
    expect(await second).toMatchObject({ sqlstate: '08006', message: expect.stringContaining('agent local') });
    await waitFor(() => got.ended, 2_000, 'the live session to end');
    expect(got.ended!.error).toBeDefined();
    await waitFor(() => !h.isOnline('local'), 2_000, 'offline');
  });

  it('revocation drops the agent with a reason', async () => {
    const { h, port } = await hub();
    const a = await FakeAgent.connect(port);
    await waitFor(() => a.welcomed, 2_000, 'WELCOME');
    h.revokeUnless((name) => name !== 'local');
    await waitFor(() => a.closedWith !== null, 2_000, 'the link to close');
    expect((a.closedWith as { peerReason?: string }).peerReason).toBe('agent local is no longer enrolled');
    expect(h.isOnline('local')).toBe(false);
  });

  it('a session that stops reading holds the agent to one window; write() reports lack of credit', async () => {
    const window = 64 * 1024;
    const { h, port } = await hub({ window });
    const a = new FakeAgent();
    a.link = await dialLink({ address: `127.0.0.1:${port}`, window }, a);
    cleanup.push(() => a.link.destroy());
    a.link.send(FrameType.HELLO, 0, encodeHello(TOKEN, { agentName: 'local', version: 't', resources: [] }, window));
    await waitFor(() => a.welcomed, 2_000, 'WELCOME');
    const opening = h.open('local', { resource: 'shop', parameters: {}, readOnly: false });
    const ch = await waitFor(() => a.channels[0], 2_000, 'OPEN');
    a.ready(ch);
    const u = await opening;
    let paused = false;
    let received = 0;
    u.start({
      data: (c) => {
        received += c.length;
        if (!paused) {
          paused = true;
          u.pause(); // the client socket is full from now on
        }
      },
      drain: () => undefined,
      end: () => undefined,
    });
    const chunk = Buffer.alloc(8192, 1);
    let offered = 0;
    while (ch.channel.send(chunk)) offered += chunk.length;
    await waitFor(() => received >= window, 2_000, 'one window');
    await new Promise((r) => setTimeout(r, 100));
    expect(received).toBe(window);
    u.resume();
    await waitFor(() => ch.writableCalls > 0, 2_000, 'credit back at the agent');

    // Towards the agent: write() turns false once a window is in flight and unconsumed.
    ch.consume = false;
    let n = 0;
    while (u.write(chunk)) n += chunk.length;
    expect(n + chunk.length).toBeGreaterThanOrEqual(window);
    expect(n).toBeLessThan(window);
  });

  it('each side sends within the window the other announced', async () => {
    const { h, port } = await hub({ window: 128 * 1024 });
    const a = new FakeAgent();
    a.link = await dialLink({ address: `127.0.0.1:${port}`, window: 16 * 1024 }, a);
    cleanup.push(() => a.link.destroy());
    a.link.send(FrameType.HELLO, 0, encodeHello(TOKEN, { agentName: 'local', version: 't', resources: [] }, a.link.window));
    await waitFor(() => a.welcomed, 2_000, 'WELCOME');
    expect(a.link.peerWindow).toBe(128 * 1024);
    const opening = h.open('local', { resource: 'shop', parameters: {}, readOnly: false });
    const ch = await waitFor(() => a.channels[0], 2_000, 'OPEN');
    a.ready(ch);
    const u = await opening;
    u.start({ data: () => u.pause(), drain: () => undefined, end: () => undefined });
    ch.consume = false;
    const chunk = Buffer.alloc(1024, 1);
    let toAgent = 0;
    while (u.write(chunk)) toAgent += chunk.length;
    expect(toAgent + chunk.length).toBe(16 * 1024);
    let toGateway = 0;
    while (ch.channel.send(chunk)) toGateway += chunk.length;
    expect(toGateway + chunk.length).toBe(128 * 1024);
    await new Promise((r) => setTimeout(r, 100));
    expect(a.closedWith).toBeNull(); // nobody broke the other's window
  });
});

