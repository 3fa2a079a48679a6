// Keeps the gateway's copy of the control plane's configuration. The gateway
// serves from the last snapshot it received, so a control plane outage stops
// changes from arriving but never stops traffic; the snapshot is also kept on
// disk, so a gateway restarted during the outage serves from it too.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { status, type ClientReadableStream } from '@grpc/grpc-js';
import { bearer, RetryTimer, Snapshot, type ControlPlaneServiceClient, type WatchConfigRequest } from '@warden/proto';
import type { Logger } from 'pino';

export class ConfigWatch {
  private current: Snapshot | null = null;
  private call: ClientReadableStream<Snapshot> | null = null;
  private readonly retries = new RetryTimer(() => this.start());
  private stopped = false;
  private readonly listeners: Array<(s: Snapshot) => void> = [];

  /** `cacheFile`: where the last snapshot is kept (it holds the mask key: mode 0600). */
  constructor(
    private readonly client: ControlPlaneServiceClient,
    private readonly token: string,
    private readonly request: WatchConfigRequest,
    private readonly log: Logger,
    private readonly cacheFile?: string,
  ) {}

  get snapshot(): Snapshot | null {
    return this.current;
  }

  onUpdate(listener: (s: Snapshot) => void): void {
    this.listeners.push(listener);
  }

  start(): void {
    if (this.stopped) return;
    if (!this.current) this.loadCached();
    const call = this.client.watchConfig(this.request, bearer(this.token));
    this.call = call;
    call.on('data', (snapshot: Snapshot) => {
      this.retries.reset();
      this.log.info({ version: snapshot.version }, 'configuration received');
      this.apply(snapshot);
      this.saveCached(snapshot);
    });
    call.on('error', (err: Error & { code?: number }) => {
      if (this.stopped && err.code === status.CANCELLED) return;
      this.retry(err.message);
    });
    call.on('end', () => this.retry('watch stream ended'));
  }

  private apply(snapshot: Snapshot): void {
    this.current = snapshot;
    for (const l of this.listeners) l(snapshot);
  }

  private loadCached(): void {
    if (!this.cacheFile) return;
    let bytes: Buffer;
    try {
      bytes = readFileSync(this.cacheFile);
    } catch {
      return; // first start: nothing kept yet
    }
    try {
      const snapshot = Snapshot.decode(bytes);
      this.log.info({ version: snapshot.version, file: this.cacheFile }, 'serving the configuration kept from the last run until the control plane answers');
      this.apply(snapshot);
    } catch (err) {
      this.log.warn({ err, file: this.cacheFile }, 'the kept configuration does not decode; waiting for the control plane');
    }
  }

  private saveCached(snapshot: Snapshot): void {
    if (!this.cacheFile) return;
    const tmp = `${this.cacheFile}.tmp`;
    try {
      mkdirSync(dirname(this.cacheFile), { recursive: true, mode: 0o700 });
      writeFileSync(tmp, Snapshot.encode(snapshot).finish(), { mode: 0o600 });
      renameSync(tmp, this.cacheFile);
    } catch (err) {
      this.log.warn({ err, file: this.cacheFile }, 'could not keep the configuration on disk; a restart during a control plane outage would serve nothing');
    }
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
