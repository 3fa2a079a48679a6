// One client session's path to its upstream database: a channel on an
// agent's link. The session module sees only the small Upstream interface.
import { type Channel, type ChannelHandler, FrameType, type Link, SessionFailed } from '@warden/proto';
import type { CancelKey, CancelKeys } from './cancel-keys.js';

export interface UpstreamHandlers {
  data(chunk: Buffer): void;
  /** Write buffer has room again after write() returned false. */
  drain(): void;
  /** The stream is over; `error` is set when it did not end cleanly. */
  end(error?: Error): void;
}

export interface Upstream {
  readonly agent: string;
  readonly sessionId: string;
  /** Starts delivering; bytes that arrived before are delivered first. */
  start(handlers: UpstreamHandlers): void;
  /** Returns false when the caller should wait for drain(). */
  write(chunk: Buffer): boolean;
  pause(): void;
  resume(): void;
  /** Ends the session; the agent then cancels and terminates the backend. */
  close(): void;
  /** Asks the agent to send a CancelRequest for this session's backend. */
  cancel(): void;
  /** The key the client sees in BackendKeyData; valid until the upstream ends. */
  readonly cancelKey: CancelKey;
}

/** How the hub hears about the agent's answer to OPEN. */
export interface OpenOutcome {
  ready(): void;
  failed(sqlstate: string, message: string): void;
}

/**
 * Flow control towards the client: bytes from the agent are handed to the
 * session at once; their credit goes back to the agent only while the
 * session has not paused us (its client socket has room). So a client that
 * reads slowly holds at most one window of its result in the gateway.
 */
export class LinkUpstream implements Upstream, ChannelHandler {
  private readonly channel: Channel;
  private handlers: UpstreamHandlers | null = null;
  private early: Buffer[] | null = null;
  private opening: OpenOutcome | null;
  private paused = false;
  /** Bytes delivered while paused, credited back on resume(). */
  private held = 0;
  private ended = false;
  private endError: Error | undefined;
  readonly cancelKey: CancelKey;
  private keyHeld = true;

  constructor(
    readonly agent: string,
    readonly sessionId: string,
    link: Link,
    channelId: number,
    /** Where this session's client key lives: taken here, given back when the channel ends. */
    private readonly keys: CancelKeys,
    outcome: OpenOutcome,
  ) {
    this.cancelKey = keys.issue(this);
    this.opening = outcome;
    this.channel = link.openChannel(channelId, this);
    if (!this.channel.open) this.closed(new Error(`the link to agent ${agent} is closed`));
  }

  start(handlers: UpstreamHandlers): void {
    this.handlers = handlers;
    const early = this.early;
    this.early = null;
    if (early) {
      for (const chunk of early) {
        if (this.handlers) this.deliver(chunk);
      }
    }
    if (this.ended && this.handlers) {
      this.handlers = null;
      handlers.end(this.endError);
    }
  }

  write(chunk: Buffer): boolean {
    if (this.ended) return true;
    return this.channel.send(chunk);
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const n = this.held;
    this.held = 0;
    if (n > 0) this.channel.consumed(n);
  }

  close(): void {
    this.releaseKey();
    if (this.ended) return;
    this.ended = true;
    this.handlers = null;
    this.channel.close();
  }

  cancel(): void {
    if (!this.ended) this.channel.signal(FrameType.CANCEL);
  }

  /** True once the agent answered OPEN (or the channel is gone). */
  get settled(): boolean {
    return this.opening === null;
  }

  /** The open was given up (timeout): end the channel so the agent closes its upstream. */
  abandon(): void {
    this.opening = null;
    this.close();
  }

  // --- ChannelHandler -----------------------------------------------------

  /** @internal */
  data(payload: Buffer): void {
    if (this.handlers) this.deliver(payload);
    else if (!this.ended) (this.early ??= []).push(payload);
  }

  /** @internal */
  writable(): void {
    this.handlers?.drain();
  }

  /** @internal */
  closed(error?: Error): void {
    this.releaseKey();
    if (this.opening) {
      const outcome = this.opening;
      this.opening = null;
      this.ended = true;
      outcome.failed('08006', `agent ${this.agent} failed to open the session: ${error?.message ?? 'the channel closed'}`);
      return;
    }
    if (this.ended) return;
    this.ended = true;
    this.endError = error;
    const h = this.handlers;
    if (!h) return; // start() reports it
    this.handlers = null;
    h.end(error);
  }

  /** @internal */
  signal(type: number, payload: Buffer): void {
    // The client's CancelRequest reached another gateway, which sent it to the agent: a statement held here hears of it too.
    if (type === FrameType.CANCEL) return this.keys.cancelDiverted(this);
    const outcome = this.opening;
    if (!outcome || (type !== FrameType.READY && type !== FrameType.FAILED)) return;
    this.opening = null;
    if (type === FrameType.READY) {
      outcome.ready();
    } else {
      this.ended = true;
      this.releaseKey();
      let failed: SessionFailed | undefined;
      try {
        failed = SessionFailed.decode(payload);
      } catch {
        failed = undefined;
      }
      // FAILED ends the channel on both sides.
      this.channel.forget();
      outcome.failed(failed?.sqlstate ?? '', failed?.message ?? '');
    }
  }

  /** Every way the channel ends comes here; the key goes back once. */
  private releaseKey(): void {
    if (!this.keyHeld) return;
    this.keyHeld = false;
    this.keys.release(this);
  }

  private deliver(chunk: Buffer): void {
    this.handlers!.data(chunk);
    // The session pauses us from inside data() when its client socket is full.
    if (this.paused) this.held += chunk.length;
    else this.channel.consumed(chunk.length);
  }
}
