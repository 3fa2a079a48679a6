// Keeps the gateway's copy of the control plane's configuration. The gateway
// serves from the last snapshot it received, so a control plane outage stops
// changes from arriving but never stops traffic.
import { status, type ClientReadableStream } from '@grpc/grpc-js';
import { bearer, RetryTimer, type ControlPlaneServiceClient, type Snapshot, type WatchConfigRequest } from '@warden/proto';
import type { Logger } from 'pino';

export class ConfigWatch {
  private current: Snapshot | null = null;
  private call: ClientReadableStream<Snapshot> | null = null;
  private readonly retries = new RetryTimer(() => this.start());
  private stopped = false;
  private readonly listeners: Array<(s: Snapshot) => void> = [];

  constructor(
    private readonly client: ControlPlaneServiceClient,
    private readonly token: string,
    private readonly request: WatchConfigRequest,
    private readonly log: Logger,
  ) {}

  get snapshot(): Snapshot | null {
    return this.current;
  }

  onUpdate(listener: (s: Snapshot) => void): void {
    this.listeners.push(listener);
  }

  start(): void {
    if (this.stopped) return;
    const call = this.client.watchConfig(this.request, bearer(this.token));
    this.call = call;
    call.on('data', (snapshot: Snapshot) => {
      this.retries.reset();
      this.current = snapshot;
      this.log.info({ version: snapshot.version }, 'configuration received');
      for (const l of this.listeners) l(snapshot);
    });
    call.on('error', (err: Error & { code?: number }) => {
      if (this.stopped && err.code === status.CANCELLED) return;
      this.retry(err.message);
    });
    call.on('end', () => this.retry('watch stream ended'));
  }

  private retry(reason: string): void {
    if (this.stopped) return;
    const delay = this.retries.schedule();
    if (delay !== undefined) this.log.warn({ reason, retryInMs: delay }, 'control plane unreachable; serving the last configuration');
  }

  stop(): void {
    this.stopped = true;
    this.retries.cancel();
    this.call?.cancel();
  }
}
