// A session's cancel key is given back exactly once, whichever way the
// session ends: a key left behind would cancel a stranger's statement later,
// and the registry counts on one release per issue. Real Sessions over real
// sockets, their upstream a LinkUpstream on a stand-in link.
import { connect, createServer, type Server, type Socket } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { FrameType, type Link, SessionFailed } from '@warden/proto';
import { passwordMessage, startupMessage } from '@warden/proto/pgwire';
import type { Admission } from '../src/session/index.js';
import { Session } from '../src/session/index.js';
import { CancelKeys, type Cancellable, LinkUpstream, TunnelError } from '../src/tunnel/index.js';

const log = pino({ level: process.env.WARDEN_TEST_LOG ?? 'silent' });

/** Counts every call to release: one per session, never a second for a key already gone. */
class CountingKeys extends CancelKeys {
  releases = 0;
  override release(session: Cancellable): void {
    this.releases++;
    super.release(session);
  }
}

/** The agent's side as LinkUpstream sees it: one channel, driven by the test. */
function standInLink() {
  const channel = { open: true, closes: 0, send: () => true, consumed() {}, close() { this.closes++; }, signal() {}, forget() {} };
  const link = { openChannel: () => channel } as unknown as Link;
  return { link, channel };
}

const gate = { startup: () => null, ceiling: 'read', ceilingRule: '', settled() {}, ready() {}, setRules() {}, closed() {} };

async function waitFor<T>(fn: () => T | undefined | false | null, what: string, ms = 3_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Harness {
  keys: CountingKeys;
  client: Socket;
  received: () => Buffer;
  /** The upstream the session is opening, once it asked for one. */
  opening: () => Promise<{ upstream: LinkUpstream; channel: ReturnType<typeof standInLink>['channel']; ready(): void; fail(err: Error): void }>;
  session: () => Promise<Session>;
}

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

async function harness(authTimeoutMs = 60_000): Promise<Harness> {
  const keys = new CountingKeys();
  let session: Session | undefined;
  let open: Awaited<ReturnType<Harness['opening']>> | undefined;
  const server = createServer((socket) => {
    sockets.push(socket);
    session = new Session(socket, {
      log,
      keys,
      allowPlaintext: () => true,
      admit: async (_token, resource): Promise<Admission> => ({
        identity: 'ci',
        groups: [],
        resource,
        agent: 'local',
        readOnly: true,
        gate: gate as unknown as Admission['gate'],
        claims: {},
      }),
      openUpstream: () =>
        new Promise((resolve, reject) => {
          const { link, channel } = standInLink();
          const upstream: LinkUpstream = new LinkUpstream('local', 'session-1', link, 1, keys, {
            ready: () => resolve(upstream),
            failed: (sqlstate, message) => reject(new TunnelError(sqlstate, message)),
          });
          open = { upstream, channel, ready: () => upstream.signal(FrameType.READY, Buffer.alloc(0)), fail: reject };
        }),
      authTimeoutMs,
      audit: { publish() {} },
      gatewayId: 'gw',
      parameterRecording: 'full',
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const client = connect((server.address() as { port: number }).port, '127.0.0.1');
  sockets.push(client);
  const chunks: Buffer[] = [];
  client.on('data', (c: Buffer) => chunks.push(c));
  client.on('error', () => {});
  client.write(startupMessage([['user', 'ci'], ['database', 'shop']]));
  client.write(passwordMessage('token'));
  return {
    keys,
    client,
    received: () => Buffer.concat(chunks),
    opening: () => waitFor(() => open, 'the upstream open'),
    session: () => waitFor(() => session, 'the session'),
  };
}

/** AuthenticationOk: 'R', length 8, code 0. */
const AUTH_OK = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);

async function relaying(h: Harness) {
  const o = await h.opening();
  expect(h.keys.size).toBe(1);
  o.ready();
  await waitFor(() => h.received().includes(AUTH_OK), 'AuthenticationOk');
  return o;
}

describe('cancel key lifetime', () => {
  it('normal end: the client says Terminate and hangs up', async () => {
    const h = await harness();
    const o = await relaying(h);
    h.client.end(Buffer.from([0x58, 0, 0, 0, 4]));
    await waitFor(() => o.channel.closes > 0, 'the channel closed');
    // The agent's CLOSE coming back does not release again.
    o.upstream.closed();
    expect(h.keys.releases).toBe(1);
    expect(h.keys.size).toBe(0);
  });

  it('the client vanishes mid-session', async () => {
    const h = await harness();
    const o = await relaying(h);
    h.client.destroy();
    await waitFor(() => o.channel.closes > 0, 'the channel closed');
    o.upstream.closed();
    expect(h.keys.releases).toBe(1);
    expect(h.keys.size).toBe(0);
  });

  it('the upstream is lost: the client gets 08006, the key goes once', async () => {
    const h = await harness();
    const o = await relaying(h);
    o.upstream.closed(new Error('link lost'));
    await waitFor(() => h.received().includes('08006'), 'the FATAL 08006');
    await waitFor(() => (h.client.readableEnded ? true : null), 'the client connection ended');
    expect(h.keys.releases).toBe(1);
    expect(h.keys.size).toBe(0);
  });

  it('the agent fails the open', async () => {
    const h = await harness();
    const o = await h.opening();
    o.upstream.signal(FrameType.FAILED, Buffer.from(SessionFailed.encode({ sessionId: 'session-1', sqlstate: '28P01', message: 'no login' }).finish()));
    await waitFor(() => h.received().includes('28P01'), 'the refusal');
    o.upstream.closed();
    expect(h.keys.releases).toBe(1);
    expect(h.keys.size).toBe(0);
  });

  it('the open times out: the hub abandons it, the late answer changes nothing', async () => {
    const h = await harness();
    const o = await h.opening();
    // What AgentHub.open does when the agent does not answer in time.
    o.upstream.abandon();
    o.fail(new TunnelError('08006', 'agent local did not open resource shop within 15 s'));
    await waitFor(() => h.received().includes('08006'), 'the refusal');
    o.upstream.signal(FrameType.READY, Buffer.alloc(0));
    o.upstream.closed();
    expect(h.keys.releases).toBe(1);
    expect(h.keys.size).toBe(0);
  });

  it('the auth timeout ends the session while the open is under way', async () => {
    const h = await harness(200);
    const o = await h.opening();
    await waitFor(() => h.received().includes('28000'), 'the auth timeout refusal');
    // The agent answers after all: the session is gone, so the upstream is closed at once.
    o.ready();
    await waitFor(() => o.channel.closes > 0, 'the channel closed');
    o.upstream.closed();
    expect(h.keys.releases).toBe(1);
    expect(h.keys.size).toBe(0);
  });
});
