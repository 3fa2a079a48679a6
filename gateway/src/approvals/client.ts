// The gateway's side of the approval RPCs: open, withdraw and consume
// requests over the control-plane client it already has, and one
// WatchApprovals stream for the whole gateway whose updates are handed to the
// sessions waiting on them, by request id. Sessions see only the small
// ApprovalClient interface (hold.ts), so tests hand them a fake.
import { status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { ApprovalRequest, RetryTimer, bearer, type ConsumeApprovalRequest, type ControlPlaneServiceClient } from '@warden/proto';
import type { Logger } from 'pino';
import type { ApprovalClient } from './hold.js';

/** The control plane could not be asked: the session refuses rather than wait. */
export class ApprovalsUnreachable extends Error {}

export interface ControlPlaneApprovalsOptions {
  /** Bound on each unary call, so a control plane that does not answer cannot hang a session (default 5 s). */
  callTimeoutMs?: number;
}

type Listener = (r: ApprovalRequest) => void;

export class ControlPlaneApprovals implements ApprovalClient {
  private readonly waiting = new Map<string, Listener>();
  private call: ClientReadableStream<ApprovalRequest> | null = null;
  private readonly retries = new RetryTimer(() => this.openStream());
  private stopped = false;
  private readonly callTimeoutMs: number;

  constructor(
    private readonly client: ControlPlaneServiceClient,
    private readonly token: string,
    private readonly gatewayId: string,
    private readonly log: Logger,
    opts: ControlPlaneApprovalsOptions = {},
  ) {
    this.callTimeoutMs = opts.callTimeoutMs ?? 5_000;
  }

  /** Opens the gateway's decision stream; it reconnects by itself until stop(). */
  start(): void {
    this.openStream();
  }

  stop(): void {
    this.stopped = true;
    this.retries.cancel();
    this.call?.cancel();
    this.waiting.clear();
  }

  request(r: ApprovalRequest): Promise<ApprovalRequest> {
    return this.unary((md, opts, cb) => this.client.requestApproval(r, md, opts, cb));
  }

  withdraw(id: string): Promise<ApprovalRequest> {
    return this.unary((md, opts, cb) => this.client.withdrawApproval({ id }, md, opts, cb));
  }

  async consume(q: ConsumeApprovalRequest): Promise<ApprovalRequest | undefined> {
    try {
      const found = await this.unary((md, opts, cb) => this.client.consumeApproval(q, md, opts, cb));
      return found.id ? found : undefined;
    } catch (err) {
      if ((err as ServiceError).code === status.NOT_FOUND) return undefined;
      throw err;
    }
  }

  watch(id: string, listener: Listener): () => void {
    this.waiting.set(id, listener);
    return () => {
      if (this.waiting.get(id) === listener) this.waiting.delete(id);
    };
  }

  private openStream(): void {
    if (this.stopped) return;
    const call = this.client.watchApprovals({ gatewayId: this.gatewayId }, bearer(this.token));
    this.call = call;
    call.on('data', (r: ApprovalRequest) => {
      this.retries.reset();
      this.waiting.get(r.id)?.(r);
    });
    call.on('error', (err: ServiceError) => {
      if (this.stopped && err.code === status.CANCELLED) return;
      this.retry(err.message);
    });
    call.on('end', () => this.retry('approvals stream ended'));
  }

  private retry(reason: string): void {
    if (this.stopped) return;
    // A decision missed while the stream was down is learnt at the wait timeout, when the session withdraws the request.
    const delay = this.retries.schedule();
    if (delay !== undefined) this.log.warn({ reason, retryInMs: delay }, 'approvals stream lost; reconnecting');
  }

  private unary(
    send: (md: ReturnType<typeof bearer>, opts: { deadline: number }, cb: (err: ServiceError | null, r: ApprovalRequest) => void) => void,
  ): Promise<ApprovalRequest> {
    return new Promise((resolve, reject) => {
      send(bearer(this.token), { deadline: Date.now() + this.callTimeoutMs }, (err, r) => {
        if (!err) return resolve(ApprovalRequest.fromPartial(r));
        if (err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED) reject(new ApprovalsUnreachable(err.message));
        else reject(err);
      });
    });
  }
}
