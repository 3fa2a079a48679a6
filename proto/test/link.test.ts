// The agent link on its own: frame codec, batching writer, per-channel flow
// control and keepalive, over real loopback sockets where it matters.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type Channel,
  type ChannelHandler,
  decodeCancelKey,
  decodeHello,
  decodeWelcome,
  dialLink,
  encodeCancelKey,
  encodeFrame,
  encodeHello,
  encodeWelcome,
  FrameDecoder,
  FrameType,
  FrameWriter,
  HEADER_SIZE,
  type Link,
  LinkClosedError,
  type LinkOptions,
  type LinkOwner,
  LinkProtocolError,
  listenLinks,
  type LinkServer,
} from '../src/link/index.js';

interface Got {
  type: number;
  channel: number;
  payload: Buffer;
}

/** Decoded frames, with the parts of a cut DATA frame joined again. */
function collect(maxPayload?: number): { decoder: FrameDecoder; got: Got[]; parts: number } {
  const out = { decoder: undefined as unknown as FrameDecoder, got: [] as Got[], parts: 0 };
  let joining = false;
  out.decoder = new FrameDecoder(
    {
      frame: (type, channel, payload, more) => {
        if (more) out.parts++;
        const last = out.got[out.got.length - 1];
        if (joining && last) last.payload = Buffer.concat([last.payload, payload]);
        else out.got.push({ type, channel, payload: Buffer.from(payload) });
        joining = more === true;
      },
    },
    maxPayload,
  );
  return out;
}

const SAMPLE: Got[] = [
  { type: FrameType.PING, channel: 0, payload: Buffer.alloc(0) },
  { type: FrameType.DATA, channel: 1, payload: Buffer.from('a') },
  { type: FrameType.DATA, channel: 7, payload: Buffer.from('select 1;'.repeat(30)) },
  { type: FrameType.WINDOW, channel: 0xfffffffe, payload: Buffer.from([0, 1, 0, 0]) },
  { type: FrameType.CLOSE, channel: 3, payload: Buffer.alloc(0) },
  { type: FrameType.DATA, channel: 2, payload: Buffer.alloc(70_000, 0x61) },
  { type: FrameType.GOAWAY, channel: 0, payload: Buffer.alloc(0) },
  { type: FrameType.CANCEL_KEY, channel: 0, payload: Buffer.from([0, 0, 0, 7, 1, 2, 3, 4]) },
];
const WIRE = Buffer.concat(SAMPLE.map((f) => encodeFrame(f.type, f.channel, f.payload)));

/** A compact form of frames for comparisons (deep-comparing 70 KB buffers hundreds of times is slow). */
function digest(frames: Got[]): string[] {
  return frames.map((f) => `${f.type}/${f.channel}/${f.payload.length}/${createHash('sha1').update(f.payload).digest('hex')}`);
}
const SAMPLE_DIGEST = digest(SAMPLE);

describe('frame codec', () => {
  it('decodes several frames from one chunk', () => {
    const { decoder, got } = collect();
    decoder.push(WIRE);
    expect(got).toEqual(SAMPLE);
  });

  it('decodes the same frames whatever byte the stream is split at', () => {
    // Every split point of the small frames, and a spread of them through the big one.
    const points = new Set<number>();
    for (let i = 1; i < WIRE.length; i++) if (i < 400 || i > WIRE.length - 40 || i % 997 === 0) points.add(i);
    for (const i of points) {
      const { decoder, got } = collect();
      decoder.push(WIRE.subarray(0, i));
      decoder.push(WIRE.subarray(i));
      expect(digest(got), `split at ${i}`).toEqual(SAMPLE_DIGEST);
    }
  });

  it('decodes a stream fed one byte at a time, and in three pieces', () => {
    const small = Buffer.concat(SAMPLE.slice(0, 5).map((f) => encodeFrame(f.type, f.channel, f.payload)));
    const one = collect();
    for (let i = 0; i < small.length; i++) one.decoder.push(small.subarray(i, i + 1));
    expect(one.got).toEqual(SAMPLE.slice(0, 5));
    for (let a = 1; a < small.length - 1; a += 7) {
      for (let b = a + 1; b < small.length; b += 5) {
        const three = collect();
        three.decoder.push(small.subarray(0, a));
        three.decoder.push(small.subarray(a, b));
        three.decoder.push(small.subarray(b));
        expect(three.got, `pieces ${a}/${b}`).toEqual(SAMPLE.slice(0, 5));
      }
    }
  });

  it('hands out a DATA frame cut across chunks in parts, as views of the chunks', () => {
    const views: Array<{ payload: Buffer; more?: boolean }> = [];
    const decoder = new FrameDecoder({ frame: (_t, _c, payload, more) => views.push({ payload, more }) });
    const wire = encodeFrame(FrameType.DATA, 5, Buffer.alloc(100, 0x62));
    // Each chunk in memory of its own, as socket reads are.
    const own = (bytes: Buffer) => {
      const out = Buffer.from(new ArrayBuffer(bytes.length));
      bytes.copy(out);
      return out;
    };
    const a = own(wire.subarray(0, 40));
    const b = own(wire.subarray(40, 70));
    const c = own(Buffer.concat([wire.subarray(70), encodeFrame(FrameType.PING, 0, Buffer.alloc(8))]));
    decoder.push(a);
    decoder.push(b);
    decoder.push(c);
    expect(views.map((v) => [v.payload.length, v.more])).toEqual([[31, true], [30, true], [39, false], [8, undefined]]);
    expect(views[0]!.payload.buffer).toBe(a.buffer);
    expect(views[1]!.payload.buffer).toBe(b.buffer);
    expect(views[2]!.payload.buffer).toBe(c.buffer);
  });

  it('hands out payloads without copying when a frame lies inside one chunk', () => {
    const views: Buffer[] = [];
    const decoder = new FrameDecoder({ frame: (_t, _c, p) => views.push(p) });
    const chunk = Buffer.concat([encodeFrame(FrameType.DATA, 1, Buffer.from('hello')), encodeFrame(FrameType.DATA, 2, Buffer.from('world'))]);
    decoder.push(chunk);
    expect(views.map((v) => v.toString())).toEqual(['hello', 'world']);
    for (const v of views) expect(v.buffer).toBe(chunk.buffer);
  });

  it('refuses oversized and unknown frames', () => {
    const big = collect(1024);
    expect(() => big.decoder.push(encodeFrame(FrameType.DATA, 1, Buffer.alloc(1025)))).toThrow(LinkProtocolError);
    const header = Buffer.alloc(HEADER_SIZE);
    header.writeUInt32BE(2 ** 31, 0);
    header[4] = FrameType.DATA;
    expect(() => collect().decoder.push(header)).toThrow(/exceeds the limit/);
    const unknown = encodeFrame(99, 1, Buffer.from('x'));
    expect(() => collect().decoder.push(unknown)).toThrow(/unknown frame type 99/);
    expect(() => collect().decoder.push(encodeFrame(0, 0))).toThrow(LinkProtocolError);
  });
});

describe('handshake payloads', () => {
  it('HELLO and WELCOME carry version, window, token and AgentHello', () => {
    const hello = { agentName: 'local', version: '1.2.3', resources: ['a', 'b'], features: ['cancel-key'] };
    expect(decodeHello(encodeHello('tök€n', hello, 65536))).toEqual({ version: 1, window: 65536, token: 'tök€n', hello });
    expect(decodeWelcome(encodeWelcome(4096))).toEqual({ version: 1, window: 4096 });
    // Another version is reported as such, whatever follows.
    expect(decodeHello(Buffer.from([7, 1, 2])).version).toBe(7);
    expect(() => decodeHello(encodeHello('t', hello, 10))).toThrow(/below the minimum/);
    expect(() => decodeHello(encodeHello('token', hello).subarray(0, 9))).toThrow(LinkProtocolError);
    expect(() => decodeWelcome(Buffer.from([1]))).toThrow(LinkProtocolError);
  });

  it('CANCEL_KEY carries a process id and a secret of 4 to 256 bytes', () => {
    const secret = Buffer.from([0xde, 0xad, 0xbe, 0xef]);
    expect(decodeCancelKey(encodeCancelKey(0x7fffffff, secret))).toEqual({ pid: 0x7fffffff, secret });
    const long = Buffer.alloc(256, 1);
    expect(decodeCancelKey(encodeCancelKey(1, long)).secret).toEqual(long);
    expect(() => decodeCancelKey(Buffer.from([0, 0, 0, 1, 2, 3, 4]))).toThrow(LinkProtocolError);
    expect(() => decodeCancelKey(Buffer.alloc(4 + 257))).toThrow(LinkProtocolError);
    expect(() => encodeCancelKey(1, Buffer.alloc(3))).toThrow();
  });
});

describe('batching writer', () => {
  it('sends every frame queued in one turn with one write, in order, without copying large payloads', async () => {
    const writes: Buffer[][] = [];
    let corked: Buffer[] | null = null;
    const out = {
      destroyed: false,
      writableEnded: false,
      write(chunk: Buffer) {
        if (corked) corked.push(chunk);
        else writes.push([chunk]);
        return true;
      },
      cork() {
        corked = [];
      },
      uncork() {
        writes.push(corked!);
        corked = null;
      },
    };
    const w = new FrameWriter(out);
    const big = Buffer.alloc(10_000, 0x62);
    for (let ch = 1; ch <= 8; ch++) w.frame(FrameType.DATA, ch, Buffer.from(`q${ch}`));
    w.frameU32(FrameType.WINDOW, 3, 65536);
    w.frame(FrameType.DATA, 9, big);
    w.frame(FrameType.CLOSE, 9);
    expect(writes).toHaveLength(0); // nothing before the end of the turn
    await new Promise((r) => setImmediate(r));
    expect(writes).toHaveLength(1);
    expect(writes[0]!.some((piece) => piece === big)).toBe(true);
    const { decoder, got } = collect();
    decoder.push(Buffer.concat(writes[0]!));
    expect(got.map((f) => [f.type, f.channel])).toEqual([
      ...[1, 2, 3, 4, 5, 6, 7, 8].map((ch) => [FrameType.DATA, ch]),
      [FrameType.WINDOW, 3],
      [FrameType.DATA, 9],
      [FrameType.CLOSE, 9],
    ]);
    expect(got[8]!.payload.readUInt32BE(0)).toBe(65536);
    expect(w.frames).toBe(11);
    expect(w.writes).toBe(1);

    // Small frames only: a single plain write of one buffer.
    w.frame(FrameType.PING, 0, Buffer.alloc(8));
    w.frame(FrameType.DATA, 1, Buffer.from('x'));
    await new Promise((r) => setImmediate(r));
    expect(writes).toHaveLength(2);
    expect(writes[1]).toHaveLength(1);
  });
});

// --- real links over loopback ----------------------------------------------

class Recorder implements ChannelHandler {
  received = 0;
  chunks: Buffer[] = [];
  writableCalls = 0;
  closedWith: Error | undefined | null = null;
  signals: number[] = [];
  /** When false, bytes are kept, not reported consumed (a destination that does not drain). */
  draining = true;
  channel!: Channel;

  data(payload: Buffer): void {
    this.received += payload.length;
    this.chunks.push(Buffer.from(payload));
    if (this.draining) this.channel.consumed(payload.length);
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

/** Accepts links; opens a Recorder channel for every OPEN. */
class Side implements LinkOwner {
  links: Link[] = [];
  closedLinks: Array<{ link: Link; error?: Error }> = [];
  channels = new Map<number, Recorder>();
  opened(link: Link): void {
    this.links.push(link);
  }
  frame(link: Link, type: number, channel: number): void {
    if (type === FrameType.OPEN) {
      const r = new Recorder();
      r.channel = link.openChannel(channel, r);
      this.channels.set(channel, r);
    }
  }
  closed(link: Link, error?: Error): void {
    this.closedLinks.push({ link, error });
  }
}

async function waitFor<T>(fn: () => T | undefined | false | null, ms = 5_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('links over loopback', () => {
  const cleanup: Array<() => unknown> = [];
  afterEach(async () => {
    for (const c of cleanup.reverse()) await c();
    cleanup.length = 0;
  });

  async function pair(opts: LinkOptions = {}): Promise<{ server: LinkServer; near: Side; far: Side; link: Link }> {
    const far = new Side();
    const server = await listenLinks({ ...opts, listen: '127.0.0.1:0' }, far);
    cleanup.push(() => server.close());
    const near = new Side();
    const link = await dialLink({ ...opts, address: `127.0.0.1:${server.port}` }, near);
    cleanup.push(() => link.destroy());
    await waitFor(() => far.links.length > 0, 2_000, 'accept');
    return { server, near, far, link };
  }

  /** A link dialled to a raw socket that stands for the gateway and writes frames as the test makes them. */
  async function dialRawPeer(): Promise<{ link: Link; peer: Socket }> {
    let peer: Socket | undefined;
    const server = createServer((s) => {
      peer = s;
      s.resume(); // what the link sends (WINDOW) is dropped; the socket ends when the link does
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => server.close(r)));
    const link = await dialLink({ address: `127.0.0.1:${(server.address() as { port: number }).port}` }, new Side());
    cleanup.push(() => link.destroy());
    return { link, peer: await waitFor(() => peer, 2_000, 'accept') };
  }

  it('a paused destination stops its sender after about one window; other channels keep flowing', async () => {
    const window = 64 * 1024;
    const { near, far, link } = await pair({ window });

    const slow = new Recorder();
    slow.channel = link.openChannel(1, slow);
    const fast = new Recorder();
    fast.channel = link.openChannel(2, fast);
    link.send(FrameType.OPEN, 1);
    link.send(FrameType.OPEN, 2);
    const farSlow = await waitFor(() => far.channels.get(1), 2_000, 'channel 1');
    const farFast = await waitFor(() => far.channels.get(2), 2_000, 'channel 2');
    farSlow.draining = false; // its destination does not drain

    // The source keeps offering 4 KiB chunks while send() says yes.
    const chunk = Buffer.alloc(4096, 0x73);
    let sent = 0;
    while (slow.channel.send(chunk)) sent += chunk.length;
    sent += chunk.length;
    expect(sent).toBeGreaterThanOrEqual(window);
    expect(sent).toBeLessThanOrEqual(window + chunk.length);
    await waitFor(() => farSlow.received >= window, 2_000, 'one window to arrive');
    await new Promise((r) => setTimeout(r, 100));
    expect(farSlow.received).toBe(window); // never more than the window
    expect(slow.channel.pending).toBe(sent - window);

    // Meanwhile the other channel moves many windows' worth, both ways.
    const total = 10 * window;
    let pushed = 0;
    const pump = (): void => {
      while (pushed < total && fast.channel.send(chunk)) pushed += chunk.length;
    };
    fast.writable = () => pump();
    pump();
    await waitFor(() => farFast.received >= total, 5_000, 'the fast channel to deliver 10 windows');
    expect(farSlow.received).toBe(window);

    // The destination drains: credit returns, the rest goes, writable() fires.
    farSlow.channel.consumed(farSlow.received);
    await waitFor(() => farSlow.received === sent, 2_000, 'the queued bytes');
    await waitFor(() => slow.writableCalls === 1, 2_000, 'writable()');
    expect(Buffer.concat(farSlow.chunks).equals(Buffer.alloc(sent, 0x73))).toBe(true);
    expect(near.closedLinks).toHaveLength(0);
  });

  it('a peer exceeding the window loses the link with a protocol error', async () => {
    const far = new Side();
    const server = await listenLinks({ window: 1024, listen: '127.0.0.1:0' }, far);
    cleanup.push(() => server.close());
    const raw = connect(server.port, '127.0.0.1');
    cleanup.push(() => raw.destroy());
    const got = collect();
    raw.on('data', (d) => got.decoder.push(d));
    await new Promise((r) => raw.once('connect', r));
    raw.write(encodeFrame(FrameType.OPEN, 5));
    const ch = await waitFor(() => far.channels.get(5), 2_000, 'channel 5');
    ch.draining = false; // no credit comes back
    raw.write(encodeFrame(FrameType.DATA, 5, Buffer.alloc(1000)));
    raw.write(encodeFrame(FrameType.DATA, 5, Buffer.alloc(1000)));
    await waitFor(() => far.closedLinks.length === 1, 2_000, 'the link to close');
    expect(far.channels.get(5)!.closedWith).toBeInstanceOf(LinkClosedError);
    const err = got.got.find((f) => f.type === FrameType.ERROR);
    expect(err?.payload.toString()).toMatch(/more DATA than its window/);
  });

  it('garbage closes only that link, with an ERROR frame saying why', async () => {
    const far = new Side();
    const server = await listenLinks({ listen: '127.0.0.1:0' }, far);
    cleanup.push(() => server.close());
    const good = await dialLink({ address: `127.0.0.1:${server.port}` }, new Side());
    cleanup.push(() => good.destroy());
    await waitFor(() => far.links.length === 1, 2_000, 'the good link');

    for (const garbage of [
      Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), // a stray HTTP client: huge length
      Buffer.from([0, 0, 0, 1, 200, 0, 0, 0, 1, 0]), // unknown type
    ]) {
      const raw: Socket = connect(server.port, '127.0.0.1');
      cleanup.push(() => raw.destroy());
      const got = collect();
      raw.on('data', (d) => got.decoder.push(d));
      const closed = new Promise((r) => raw.once('close', r));
      await new Promise((r) => raw.once('connect', r));
      raw.write(garbage);
      await closed;
      const err = got.got.find((f) => f.type === FrameType.ERROR);
      expect(err?.payload.toString()).toMatch(/^protocol error: /);
    }
    await waitFor(() => far.closedLinks.length === 2, 2_000, 'both bad links closed');
    // The good link still carries a channel.
    const r = new Recorder();
    r.channel = good.openChannel(9, r);
    good.send(FrameType.OPEN, 9);
    const farCh = await waitFor(() => far.channels.get(9), 2_000, 'channel 9 on the good link');
    r.channel.send(Buffer.from('still here'));
    await waitFor(() => farCh.received === 10, 2_000, 'data on the good link');
    expect(good.closed).toBe(false);
  });

  it('CLOSE with and without a reason, and CANCEL, reach the other side', async () => {
    const { far, link } = await pair();
    const a = new Recorder();
    a.channel = link.openChannel(1, a);
    const b = new Recorder();
    b.channel = link.openChannel(2, b);
    link.send(FrameType.OPEN, 1);
    link.send(FrameType.OPEN, 2);
    const fa = await waitFor(() => far.channels.get(1), 2_000, 'channel 1');
    const fb = await waitFor(() => far.channels.get(2), 2_000, 'channel 2');
    a.channel.signal(FrameType.CANCEL);
    a.channel.send(Buffer.from('last words'));
    a.channel.close();
    b.channel.close('client vanished');
    await waitFor(() => fa.closedWith !== null && fb.closedWith !== null, 2_000, 'both closes');
    expect(fa.signals).toEqual([FrameType.CANCEL]);
    expect(Buffer.concat(fa.chunks).toString()).toBe('last words');
    expect(fa.closedWith).toBeUndefined();
    expect(fb.closedWith?.message).toBe('client vanished');
    expect(link.channelCount).toBe(0);
    expect(far.links[0]!.channelCount).toBe(0);
  });

  it('a dialled link reads into shared slabs that are never rewritten: payload views kept stay intact', async () => {
    // A raw peer stands for the gateway and sends 1 MiB of DATA in 4 KiB frames, each filled with its own byte.
    const { link, peer } = await dialRawPeer();
    const kept: Buffer[] = [];
    const handler: ChannelHandler = {
      data: (payload) => {
        kept.push(payload); // a view, not a copy
        ch.consumed(payload.length);
      },
      writable: () => undefined,
      closed: () => undefined,
      signal: () => undefined,
    };
    const ch = link.openChannel(1, handler);
    const frames = 256;
    const wire = Buffer.concat(Array.from({ length: frames }, (_, i) => encodeFrame(FrameType.DATA, 1, Buffer.alloc(4096, i % 251))));
    // In pieces, so that reads and frames do not line up and the window (256 KiB) is never exceeded in flight.
    for (let i = 0; i < wire.length; i += 100_000) {
      peer.write(wire.subarray(i, i + 100_000));
      await waitFor(() => kept.reduce((n, b) => n + b.length, 0) >= Math.min(wire.length, i + 100_000) - frames * HEADER_SIZE, 2_000, 'a piece');
    }
    await waitFor(() => kept.reduce((n, b) => n + b.length, 0) === frames * 4096, 2_000, 'all data');
    const joined = Buffer.concat(kept);
    for (let i = 0; i < frames; i++) expect(joined.subarray(i * 4096, (i + 1) * 4096).equals(Buffer.alloc(4096, i % 251))).toBe(true);
    const slabs = new Set(kept.map((b) => b.buffer));
    expect(link.stats.reads).toBeGreaterThan(slabs.size); // many reads share a slab
    expect(slabs.size).toBeGreaterThanOrEqual(4); // 1 MiB does not fit in one
  });

  it('DATA of one socket read reaches a gathering handler together: dataEnd once per read, and before a signal or CLOSE', async () => {
    const { link, peer } = await dialRawPeer();
    const events: string[] = [];
    const gatherer = (name: string): ChannelHandler => ({
      data: (payload) => events.push(`${name}:${payload.toString()}`),
      dataEnd: () => events.push(`${name}:end`),
      writable: () => undefined,
      closed: () => events.push(`${name}:closed`),
      signal: (type) => events.push(`${name}:signal ${type}`),
    });
    link.openChannel(1, gatherer('a'));
    link.openChannel(2, gatherer('b'));
    const frame = (type: number, channel: number, text?: string) => encodeFrame(type, channel, text ? Buffer.from(text) : undefined);
    peer.write(
      Buffer.concat([
        frame(FrameType.DATA, 1, 'x'),
        frame(FrameType.DATA, 2, 'y'),
        frame(FrameType.DATA, 1, 'z'),
        frame(FrameType.CANCEL, 1),
        frame(FrameType.DATA, 1, 'w'),
      ]),
    );
    await waitFor(() => events.length === 8, 2_000, 'the first read');
    expect(events).toEqual(['a:x', 'b:y', 'a:z', 'a:end', `a:signal ${FrameType.CANCEL}`, 'a:w', 'a:end', 'b:end']);
    events.length = 0;
    peer.write(Buffer.concat([frame(FrameType.DATA, 2, 'v'), frame(FrameType.CLOSE, 2)]));
    await waitFor(() => events.length === 3, 2_000, 'the second read');
    expect(events).toEqual(['b:v', 'b:end', 'b:closed']);
  });

  it('keepalive: an idle link with a live peer stays up', async () => {
    const { near, far, link } = await pair({ pingIntervalMs: 30, deadAfterIntervals: 3 });
    await new Promise((r) => setTimeout(r, 400));
    expect(link.closed).toBe(false);
    expect(near.closedLinks).toHaveLength(0);
    expect(far.closedLinks).toHaveLength(0);
  });

  it('keepalive: a peer that stops answering is dropped, and its channels hear of it', async () => {
    // A server that accepts and then never sends a byte (a frozen process or a dead route).
    const sockets: Socket[] = [];
    const mute: Server = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
    cleanup.push(() => {
      for (const s of sockets) s.destroy();
      mute.close();
    });
    const near = new Side();
    const t0 = Date.now();
    const link = await dialLink(
      { address: `127.0.0.1:${(mute.address() as { port: number }).port}`, pingIntervalMs: 50, deadAfterIntervals: 3 },
      near,
    );
    const r = new Recorder();
    r.channel = link.openChannel(1, r);
    await waitFor(() => near.closedLinks.length === 1, 2_000, 'the link to be declared dead');
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(100);
    expect(elapsed).toBeLessThan(1_000);
    expect(near.closedLinks[0]!.error?.message).toMatch(/stopped answering/);
    expect(r.closedWith).toBeInstanceOf(LinkClosedError);
  });

  it('runs over TLS when configured, and refuses a gateway certificate from another CA', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-link-tls-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const ssl = (args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    for (const ca of ['ca', 'other']) {
      ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${ca}`, '-keyout', `${ca}.key`, '-out', `${ca}.crt`]);
    }
    ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=gateway', '-keyout', 'gw.key', '-out', 'gw.csr']);
    writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    ssl(['x509', '-req', '-in', 'gw.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'san.ext', '-out', 'gw.crt']);

    const far = new Side();
    const server = await listenLinks({ listen: '127.0.0.1:0', tls: { cert: join(dir, 'gw.crt'), key: join(dir, 'gw.key') } }, far);
    cleanup.push(() => server.close());
    const link = await dialLink({ address: `127.0.0.1:${server.port}`, tls: { ca: join(dir, 'ca.crt') } }, new Side());
    cleanup.push(() => link.destroy());
    const r = new Recorder();
    r.channel = link.openChannel(1, r);
    link.send(FrameType.OPEN, 1);
    const farCh = await waitFor(() => far.channels.get(1), 2_000, 'channel over TLS');
    r.channel.send(Buffer.from('over tls'));
    await waitFor(() => farCh.received === 8, 2_000, 'data over TLS');

    await expect(dialLink({ address: `127.0.0.1:${server.port}`, tls: { ca: join(dir, 'other.crt') } }, new Side())).rejects.toThrow(
      /self.signed|unable to verify|certificate/i,
    );
  });
});
