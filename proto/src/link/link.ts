// One agent link: a socket, the frame codec, the batching writer, the
// channels and the keepalive. Frames that belong to a channel (DATA, WINDOW,
// CLOSE, READY, FAILED, CANCEL) go to that channel; the rest (HELLO,
// WELCOME, OPEN, GOAWAY, CANCEL_KEY) to the link's owner, which gives them
// their role.
import type { Socket } from 'node:net';
import { Channel, type ChannelHandler, type ChannelHost } from './channel.js';
import { FrameDecoder, type FrameSink } from './codec.js';
import { DEFAULT_WINDOW, FrameType, LinkProtocolError, MAX_PAYLOAD } from './frames.js';
import { FrameWriter } from './writer.js';

/** Where a link's bytes come from when not from the socket's 'data' events (see reader.ts). */
export interface LinkInput {
  attach(sink: (chunk: Buffer) => void): void;
}

export interface LinkOptions {
  /** This side's receive window per channel (announced to the peer in HELLO or WELCOME). */
  window?: number;
  /** Keepalive period: a PING goes out after this long without hearing from the peer. */
  pingIntervalMs?: number;
  /** The link is declared dead after this many silent periods in a row. */
  deadAfterIntervals?: number;
  maxPayload?: number;
}

export const DEFAULT_PING_INTERVAL_MS = 5_000;
export const DEFAULT_DEAD_AFTER_INTERVALS = 3;

export interface LinkOwner {
  /** A new link, before any frame (the owner may set `link.data`). */
  opened?(link: Link): void;
  /** HELLO, WELCOME, OPEN, GOAWAY, CANCEL_KEY, and READY/FAILED/CANCEL for unknown channels. Throw LinkProtocolError to drop the link. */
  frame(link: Link, type: number, channel: number, payload: Buffer): void;
  /** The link is closed; `error` says why unless this side closed it without a reason. */
  closed(link: Link, error?: Error): void;
  /** A channel handler threw; the channel has been closed. For logs. */
  handlerError?(link: Link, channel: number, error: unknown): void;
  /** A peer's TLS handshake failed before a link existed (listener side). For logs. */
  handshakeFailed?(error: Error, remote: string): void;
}

/** Why a link ended, as seen from this side. */
export class LinkClosedError extends Error {
  constructor(
    message: string,
    /** The reason the peer gave in an ERROR frame, if it gave one. */
    readonly peerReason?: string,
  ) {
    super(message);
    this.name = 'LinkClosedError';
  }
}

export class Link implements FrameSink, ChannelHost {
  readonly writer: FrameWriter;
  readonly remoteAddress: string;
  readonly window: number;
  /** The peer's receive window, once it has announced it (HELLO, WELCOME). */
  peerWindow: number;
  /** Free for the owner (agent name, state...). */
  data: unknown;
  private readonly decoder: FrameDecoder;

  /** The largest frame payload accepted from now on (a listener raises it once the peer has said HELLO). */
  set maxPayload(bytes: number) {
    this.decoder.maxPayload = bytes;
  }
  private readonly channels = new Map<number, Channel>();
  private closedFlag = false;
  private closedByUs = false;
  private closeError: Error | undefined;
  private heard = true;
  private silent = 0;
  private readonly deadAfter: number;
  private readonly keepalive: NodeJS.Timeout;
  private readonly pingPayload = Buffer.alloc(8);
  private reads = 0;
  /** Channels that got DATA from the socket chunk being decoded (see Channel.endData). */
  private touched: Channel[] = [];

  constructor(
    private readonly socket: Socket,
    private readonly owner: LinkOwner,
    opts: LinkOptions = {},
    input?: LinkInput,
  ) {
    this.window = opts.window ?? DEFAULT_WINDOW;
    this.peerWindow = this.window;
    this.deadAfter = opts.deadAfterIntervals ?? DEFAULT_DEAD_AFTER_INTERVALS;
    this.writer = new FrameWriter(socket);
    this.decoder = new FrameDecoder(this, opts.maxPayload ?? MAX_PAYLOAD);
    this.remoteAddress = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.setNoDelay(true);
    const onData = (chunk: Buffer): void => this.onSocketData(chunk);
    if (input) input.attach(onData);
    else socket.on('data', onData);
    socket.on('error', (err) => {
      this.closeError ??= new LinkClosedError(`link to ${this.remoteAddress} failed: ${err.message}`);
    });
    socket.on('close', () => this.teardown());
    const interval = opts.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS;
    this.keepalive = setInterval(() => this.tick(), interval);
    this.keepalive.unref();
    owner.opened?.(this);
  }

  /** Counters for logs and tests: frames sent, socket writes, socket reads. */
  get stats(): { framesOut: number; writes: number; reads: number } {
    return { framesOut: this.writer.frames, writes: this.writer.writes, reads: this.reads };
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  get channelCount(): number {
    return this.channels.size;
  }

  /** Starts a channel under `id` (the gateway picks ids; the agent takes them from OPEN). */
  openChannel(id: number, handler: ChannelHandler): Channel {
    if (this.channels.has(id)) throw new LinkProtocolError(`channel ${id} is already open`);
    const ch = new Channel(id, handler, this, this.window, this.peerWindow);
    if (!this.closedFlag) this.channels.set(id, ch);
    else ch.open = false;
    return ch;
  }

  hasChannel(id: number): boolean {
    return this.channels.has(id);
  }

  /** Sends a frame outside any channel's flow control (HELLO, OPEN, GOAWAY...). */
  send(type: number, channel: number, payload?: Buffer): void {
    if (!this.closedFlag) this.writer.frame(type, channel, payload);
  }

  /**
   * Closes the link: an ERROR frame first when there is a reason, then the
   * socket ends after what is queued. Channels see the link as lost.
   */
  close(reason?: string): void {
    if (this.closedFlag) return;
    this.closedByUs = true;
    if (reason) {
      this.closeError ??= new LinkClosedError(reason);
      this.writer.frame(FrameType.ERROR, 0, Buffer.from(reason, 'utf8'));
    }
    this.writer.flush();
    this.socket.end();
    // A peer that does not read must not keep the socket forever.
    setTimeout(() => this.socket.destroy(), 5_000).unref();
    this.teardown();
  }

  /** Drops the link at once. */
  destroy(error?: Error): void {
    if (this.closedFlag) return;
    this.closedByUs = true;
    if (error) this.closeError ??= error;
    this.socket.destroy();
    this.teardown();
  }

  // --- ChannelHost --------------------------------------------------------

  /** @internal */
  release(channel: Channel): void {
    if (this.channels.get(channel.id) === channel) this.channels.delete(channel.id);
  }

  /** @internal */
  dataArrived(channel: Channel): void {
    this.touched.push(channel);
  }

  // --- FrameSink ----------------------------------------------------------

  /** @internal */
  frame(type: number, channel: number, payload: Buffer): void {
    if (this.closedFlag) return;
    try {
      this.dispatch(type, channel, payload);
    } catch (err) {
      if (err instanceof LinkProtocolError) throw err;
      // A handler's bug: that channel ends, the link and the others go on.
      const ch = channel === 0 ? undefined : this.channels.get(channel);
      ch?.abort(err instanceof Error ? err : new Error(String(err)));
      this.owner.handlerError?.(this, channel, err);
    }
  }

  private dispatch(type: number, channel: number, payload: Buffer): void {
    switch (type) {
      case FrameType.DATA:
        this.channels.get(channel)?.onData(payload);
        return;
      case FrameType.WINDOW:
        if (payload.length !== 4) throw new LinkProtocolError('WINDOW frame without a 4-byte increment');
        this.channels.get(channel)?.onWindow(payload.readUInt32BE(0));
        return;
      case FrameType.CLOSE:
        this.channels
          .get(channel)
          ?.onClosed(payload.length ? new LinkClosedError(payload.toString('utf8'), payload.toString('utf8')) : undefined);
        return;
      case FrameType.READY:
      case FrameType.FAILED:
      case FrameType.CANCEL: {
        const ch = this.channels.get(channel);
        if (ch) ch.onSignal(type, payload);
        else this.owner.frame(this, type, channel, payload);
        return;
      }
      case FrameType.PING:
        this.writer.frame(FrameType.PONG, 0, payload.length <= 64 ? payload : undefined);
        return;
      case FrameType.PONG:
        return;
      case FrameType.ERROR: {
        const reason = payload.toString('utf8');
        this.closeError = new LinkClosedError(`the peer closed the link: ${reason}`, reason);
        this.socket.destroy();
        this.teardown();
        return;
      }
      default:
        this.owner.frame(this, type, channel, payload);
    }
  }

  private onSocketData(chunk: Buffer): void {
    this.heard = true;
    this.reads++;
    try {
      this.decoder.push(chunk);
    } catch (err) {
      this.endData();
      if (this.closedFlag) return;
      const reason =
        err instanceof LinkProtocolError ? `protocol error: ${err.message}` : `internal error: ${(err as Error).message}`;
      this.close(reason);
      return;
    }
    this.endData();
  }

  /** The chunk is decoded: channels that got DATA from it pass it on now, together. */
  private endData(): void {
    const touched = this.touched;
    if (touched.length === 0) return;
    for (let i = 0; i < touched.length; i++) {
      const ch = touched[i]!;
      try {
        ch.endData();
      } catch (err) {
        ch.abort(err instanceof Error ? err : new Error(String(err)));
        this.owner.handlerError?.(this, ch.id, err);
      }
    }
    touched.length = 0;
  }

  private tick(): void {
    if (this.closedFlag) return;
    if (this.heard) {
      this.heard = false;
      this.silent = 0;
      return;
    }
    this.silent++;
    if (this.silent >= this.deadAfter) {
      this.destroy(new LinkClosedError(`the peer at ${this.remoteAddress} stopped answering keepalives`));
      return;
    }
    this.pingPayload.writeDoubleBE(Date.now(), 0);
    this.writer.frame(FrameType.PING, 0, this.pingPayload);
  }

  private teardown(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    clearInterval(this.keepalive);
    // Closed by this side without a reason: no error for the owner.
    const ownerError = this.closeError ?? (this.closedByUs ? undefined : new LinkClosedError(`the peer at ${this.remoteAddress} closed the link`));
    const channelError = ownerError ?? new LinkClosedError('the link was closed');
    const channels = [...this.channels.values()];
    this.channels.clear();
    for (const ch of channels) {
      try {
        ch.onClosed(channelError);
      } catch {
        // one channel's handler must not stop the others from hearing
      }
    }
    this.owner.closed(this, ownerError);
  }
}


