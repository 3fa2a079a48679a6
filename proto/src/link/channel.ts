// One session on a link, with credit-based flow control in both directions
// (like HTTP/2 stream windows). Sending: each side may send as many DATA
// bytes as the peer has granted; past that, send() queues and returns false,
// and the caller stops reading its source until writable(). Receiving: the
// peer's credit comes back (WINDOW) only as the caller reports bytes
// consumed, i.e. handed to the destination and drained there, so a slow
// destination stops its sender after about one window without holding up
// the other channels of the link.
import { FrameType, LinkProtocolError, MAX_DATA } from './frames.js';
import type { FrameWriter } from './writer.js';

export interface ChannelHandler {
  /** DATA for this channel. Report the bytes with consumed() once passed on and drained. */
  data(payload: Buffer): void;
  /** Credit is back after send() returned false. */
  writable(): void;
  /**
   * The channel is over: the peer sent CLOSE (`error` set when it gave a
   * reason, i.e. an abnormal end) or the link went down (`error` set).
   * Not called for close() on this side.
   */
  closed(error?: Error): void;
  /** READY, FAILED or CANCEL for this channel; their meaning belongs to the caller. */
  signal(type: number, payload: Buffer): void;
  /**
   * Optional: the DATA of one socket chunk has all been handed to data(), so
   * what was gathered can leave in one write. Also called before closed()
   * and signal() when DATA came before them.
   */
  dataEnd?(): void;
}

/** Internal to the link: what a channel needs from it. */
export interface ChannelHost {
  readonly writer: FrameWriter;
  release(channel: Channel): void;
  /** The channel got DATA and wants endData() once the socket chunk is decoded. */
  dataArrived(channel: Channel): void;
}

/** Counts over every channel of the process, for metrics: a plain number costs the hot path nothing. */
export const linkCounters = {
  /** Times a channel ran out of the peer's credit (send() started returning false): the reader paused. */
  windowStalls: 0,
};

export class Channel {
  /** False once closed by either side or by the link. */
  open = true;
  /** Closed by this side, CLOSE not sent yet: queued DATA still waits for credit. */
  private draining = false;
  private closeReason: string | undefined;
  /** Bytes this side may still send. */
  private credit: number;
  /** Bytes the peer may still send before its credit runs out. */
  private allowed: number;
  /** Bytes consumed but not yet given back with WINDOW. */
  private unreturned = 0;
  private readonly threshold: number;
  private queue: Buffer[] = [];
  private queued = 0;
  private blocked = false;
  /** DATA delivered since the last dataEnd(). */
  private gathering = false;

  constructor(
    readonly id: number,
    public handler: ChannelHandler,
    private readonly host: ChannelHost,
    /** This side's receive window. */
    readonly window: number,
    /** The peer's receive window: this side's initial credit. */
    sendWindow = window,
  ) {
    this.credit = sendWindow;
    this.allowed = window;
    this.threshold = Math.max(1, window >>> 2);
  }

  /** Bytes queued here for lack of credit. */
  get pending(): number {
    return this.queued;
  }

  /** Bytes the peer has granted and this side has not used yet. */
  get sendCredit(): number {
    return this.credit;
  }

  /**
   * Queues DATA. Returns false when the credit is used up: stop reading the
   * source until writable(). Bytes sent meanwhile are queued, not lost.
   * The payload must not be modified afterwards.
   */
  send(data: Buffer): boolean {
    if (!this.open) return true;
    if (this.queued === 0) {
      const n = data.length;
      if (n <= this.credit) {
        this.emit(data);
        this.credit -= n;
        if (this.credit > 0) return true;
        return this.stall();
      }
      if (this.credit > 0) {
        this.emit(data.subarray(0, this.credit));
        data = data.subarray(this.credit);
        this.credit = 0;
      }
    }
    this.queue.push(data);
    this.queued += data.length;
    return this.stall();
  }

  private stall(): false {
    if (!this.blocked) {
      this.blocked = true;
      linkCounters.windowStalls++;
    }
    return false;
  }

  /** Reports `n` received bytes as passed on: their credit goes back to the peer. */
  consumed(n: number): void {
    if (!this.open) return;
    this.unreturned += n;
    if (this.unreturned >= this.threshold) {
      this.host.writer.frameU32(FrameType.WINDOW, this.id, this.unreturned);
      this.allowed += this.unreturned;
      this.unreturned = 0;
    }
  }

  /** Sends READY, FAILED or CANCEL on this channel. */
  signal(type: number, payload?: Buffer): void {
    if (this.open) this.host.writer.frame(type, this.id, payload);
  }

  /**
   * Ends the channel from this side. DATA already queued still goes first
   * (as credit allows); then CLOSE. With a reason, the peer sees an abnormal
   * end. No handler calls follow.
   */
  close(reason?: string): void {
    if (!this.open) return;
    this.open = false;
    this.closeReason = reason;
    if (this.queued > 0) this.draining = true;
    else this.finishClose();
  }

  /** Drops the channel here without telling the peer (it already ended it, e.g. with FAILED). */
  forget(): void {
    if (!this.open && !this.draining) return;
    this.open = false;
    this.draining = false;
    this.queue = [];
    this.queued = 0;
    this.host.release(this);
  }

  // --- called by the link -------------------------------------------------

  /** @internal */
  onData(payload: Buffer): void {
    this.allowed -= payload.length;
    if (this.allowed < 0) throw new LinkProtocolError(`channel ${this.id} received more DATA than its window allows`);
    if (!this.open) return;
    this.handler.data(payload);
    if (!this.gathering && this.handler.dataEnd) {
      this.gathering = true;
      this.host.dataArrived(this);
    }
  }

  /** @internal The socket chunk is decoded, or another frame follows the DATA. */
  endData(): void {
    if (!this.gathering) return;
    this.gathering = false;
    if (this.open) this.handler.dataEnd!();
  }

  /** @internal READY, FAILED or CANCEL, after the DATA that came before it. */
  onSignal(type: number, payload: Buffer): void {
    this.endData();
    this.handler.signal(type, payload);
  }

  /** @internal */
  onWindow(increment: number): void {
    this.credit += increment;
    if (this.credit > 0xffffffff) throw new LinkProtocolError(`channel ${this.id} window overflow`);
    while (this.queued > 0 && this.credit > 0) {
      const head = this.queue[0]!;
      if (head.length <= this.credit) {
        this.queue.shift();
        this.queued -= head.length;
        this.credit -= head.length;
        this.emit(head);
      } else {
        this.emit(head.subarray(0, this.credit));
        this.queue[0] = head.subarray(this.credit);
        this.queued -= this.credit;
        this.credit = 0;
      }
    }
    if (this.queued > 0) return;
    if (this.draining) this.finishClose();
    else if (this.blocked && this.open && this.credit > 0) {
      this.blocked = false;
      this.handler.writable();
    }
  }

  /** @internal The peer closed the channel, or the link is gone. */
  onClosed(error?: Error): void {
    this.endData();
    const wasOpen = this.open;
    if (!wasOpen && !this.draining) return;
    this.open = false;
    this.draining = false;
    this.queue = [];
    this.queued = 0;
    this.host.release(this);
    if (wasOpen) this.handler.closed(error);
  }

  /** @internal A handler threw: CLOSE with a reason, and the handler hears of it (once). */
  abort(error: Error): void {
    const wasOpen = this.open;
    this.open = false;
    this.draining = false;
    this.queue = [];
    this.queued = 0;
    this.closeReason = 'internal error';
    this.finishClose();
    if (wasOpen) {
      try {
        this.handler.closed(error);
      } catch {
        // nothing more to do for a handler that keeps throwing
      }
    }
  }

  private finishClose(): void {
    this.draining = false;
    const reason = this.closeReason;
    this.host.writer.frame(FrameType.CLOSE, this.id, reason ? Buffer.from(reason, 'utf8') : undefined);
    this.host.release(this);
  }

  private emit(data: Buffer): void {
    const n = data.length;
    if (n <= MAX_DATA) {
      this.host.writer.frame(FrameType.DATA, this.id, data);
      return;
    }
    for (let i = 0; i < n; i += MAX_DATA) this.host.writer.frame(FrameType.DATA, this.id, data.subarray(i, i + MAX_DATA));
  }
}
