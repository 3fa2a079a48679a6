// Keeps the gateway's copy of the control plane's configuration. The gateway
// serves from the last snapshot it received, so a control plane outage stops
// changes from arriving but never stops traffic.
import { status, type ClientReadableStream } from '@grpc/grpc-js';
import { backoffDelay, bearer, type ControlPlaneServiceClient, type Snapshot, type WatchConfigRequest } from '@warden/proto';
import type { Logger } from 'pino';

export class ConfigWatch {
  private current: Snapshot | null = null;
  private call: ClientReadableStream<Snapshot> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private attempt = 0;
  private readonly listeners: Array<(s: Snapshot) => void> = [];
  private firstResolve!: () => void;
  /** Resolves when the first snapshot has arrived. */
  readonly ready = new Promise<void>((resolve) => (this.firstResolve = resolve));

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
    this.timer = null;
    if (this.stopped) return;
    const call = this.client.watchConfig(this.request, bearer(this.token));
    this.call = call;
    call.on('data', (snapshot: Snapshot) => {
      this.attempt = 0;
      this.current = snapshot;
      this.log.info({ version: snapshot.version }, 'configuration received');
      for (const l of this.listeners) l(snapshot);
      this.firstResolve();
    });
    call.on('error', (err: Error & { code?: number }) => {
      if (this.stopped && err.code === status.CANCELLED) return;
      this.retry(err.message);
    });
    call.on('end', () => this.retry('watch stream ended'));
  }

  private retry(reason: string): void {
    if (this.stopped || this.timer) return;
    const delay = backoffDelay(this.attempt++);
    this.log.warn({ reason, retryInMs: delay }, 'control plane unreachable; serving the last configuration');
    this.timer = setTimeout(() => this.start(), delay);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.call?.cancel();
  }
}
