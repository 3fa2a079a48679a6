// One client session's path to its upstream database: a gRPC Session stream
// that an agent opened. The session module sees only this small interface.
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { SessionFrame } from '@warden/proto';

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
}

type SessionCall = ServerDuplexStream<SessionFrame, SessionFrame>;

export class GrpcUpstream implements Upstream {
  private handlers: UpstreamHandlers | null = null;
  private early: Buffer[] = [];
  private ended = false;

  constructor(
    readonly agent: string,
    readonly sessionId: string,
    private readonly call: SessionCall,
    private readonly sendCancel: () => void,
  ) {
    call.on('data', (frame: SessionFrame) => {
      if (frame.msg?.$case !== 'data') return;
      if (this.handlers) this.handlers.data(frame.msg.value);
      else this.early.push(frame.msg.value);
    });
    call.on('drain', () => this.handlers?.drain());
    call.on('end', () => this.finish());
    call.on('error', (err) => this.finish(err));
    call.on('cancelled', () => this.finish(new Error('the agent cancelled the session stream')));
    call.pause();
  }

  start(handlers: UpstreamHandlers): void {
    this.handlers = handlers;
    for (const chunk of this.early) handlers.data(chunk);
    this.early = [];
    this.call.resume();
  }

  write(chunk: Buffer): boolean {
    if (this.ended) return true;
    return this.call.write({ msg: { $case: 'data', value: chunk } });
  }

  pause(): void {
    this.call.pause();
  }

  resume(): void {
    this.call.resume();
  }

  close(): void {
    if (this.ended) return;
    this.ended = true;
    this.call.end();
  }

  cancel(): void {
    this.sendCancel();
  }

  private finish(error?: Error): void {
    const wasEnded = this.ended;
    this.ended = true;
    if (!wasEnded) this.call.end();
    const h = this.handlers;
    this.handlers = null;
    h?.end(error);
  }
}
