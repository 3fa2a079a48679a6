// Keeps the latest Snapshot and fans it out to the watch streams. Changes made
// through this process arrive via Repository.onChange; a slow poll of
// config_version catches changes made by other control-plane replicas sharing
// the same Postgres.
import type { Snapshot } from '@warden/proto';
import type { Logger } from 'pino';
import type { Repository } from '../storage/repository.js';

type Subscriber = (snapshot: Snapshot) => void;

interface Waiter {
  generation: number;
  resolve: (s: Snapshot) => void;
  reject: (e: unknown) => void;
}

export class SnapshotHub {
  private current?: Snapshot;
  // A change bumps `requested`; a finished load sets `loaded` to the request
  // it started for. Loads never overlap, and one load serves every request
  // made before it started.
  private requested = 1;
  private loaded = 0;
  private loading = false;
  private waiters: Waiter[] = [];
  private readonly subscribers = new Set<Subscriber>();
  private readonly stopListening: () => void;
  private readonly timer?: NodeJS.Timeout;
  private pollFailing = false;

  constructor(
    private readonly repo: Repository,
    private readonly log: Logger,
    pollIntervalMs: number,
  ) {
    this.stopListening = repo.onChange(() => this.invalidate());
    if (pollIntervalMs > 0) {
      this.timer = setInterval(() => void this.poll(), pollIntervalMs);
      this.timer.unref();
    }
  }

  /** A snapshot that includes every change committed before this call. */
  latest(): Promise<Snapshot> {
    if (this.current && this.loaded >= this.requested) return Promise.resolve(this.current);
    return new Promise((resolve, reject) => {
      this.waiters.push({ generation: this.requested, resolve, reject });
      void this.load();
    });
  }

  subscribe(fn: Subscriber): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  close(): void {
    this.stopListening();
    if (this.timer) clearInterval(this.timer);
    this.subscribers.clear();
  }

  private invalidate(): void {
    this.requested++;
    void this.load();
  }

  private async load(): Promise<void> {
    if (this.loading) return;
    this.loading = true;
    try {
      while (this.loaded < this.requested) {
        const target = this.requested;
        let snapshot: Snapshot;
        try {
          snapshot = await this.repo.snapshot();
        } catch (err) {
          this.log.error({ err }, 'reading the configuration failed');
          const failed = this.waiters;
          this.waiters = [];
          failed.forEach((w) => w.reject(err));
          return;
        }
        this.loaded = target;
        this.publish(snapshot);
      }
    } finally {
      this.loading = false;
    }
  }

  private publish(snapshot: Snapshot): void {
    const previous = this.current;
    this.current = snapshot;
    const ready = this.waiters.filter((w) => w.generation <= this.loaded);
    this.waiters = this.waiters.filter((w) => w.generation > this.loaded);
    ready.forEach((w) => w.resolve(snapshot));
    if (!previous || snapshot.version > previous.version) {
      for (const fn of this.subscribers) fn(snapshot);
    }
  }

  private async poll(): Promise<void> {
    try {
      const version = await this.repo.version();
      if (this.pollFailing) this.log.info('configuration database reachable again');
      this.pollFailing = false;
      if (this.current && version !== this.current.version) this.invalidate();
    } catch (err) {
      if (!this.pollFailing) this.log.warn({ err }, 'cannot read the configuration version');
      this.pollFailing = true;
    }
  }
}
