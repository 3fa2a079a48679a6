// The per-resource catalog cache the policy reads on the hot path. get() never
// waits: a stale or invalidated catalog keeps being served while one load per
// resource (single flight) runs in the background. Failed loads are retried
// no more than once per RETRY_MS, so an agent that is away is not hammered.
import type { Logger } from 'pino';
import type { ResourceCatalog } from './types.js';

export interface CatalogStoreOptions {
  /** A catalog older than this is refreshed in the background on use (default 60 s). */
  maxAgeMs?: number;
  log?: Logger;
  /** Clock, for tests (default Date.now). */
  now?: () => number;
}

/** Least time between the start of a failed load and the next attempt. */
export const CATALOG_RETRY_MS = 2_000;

interface Entry {
  catalog?: ResourceCatalog;
  /** Clock when the load that produced `catalog` started: changes after it may be missing. */
  loadedAt: number;
  /** The load in flight. */
  loading?: Promise<void>;
  /** Invalidated after the load in flight (or the last one) started: another load is owed. */
  dirty: boolean;
  /** Clock when the last load started, and whether it failed. */
  attemptedAt: number;
  failed: boolean;
  /** The owed load, waiting out the retry delay after a failure. */
  retry?: NodeJS.Timeout;
  /** refreshed() callers, released once no load is owed or running. */
  waiters: Array<() => void>;
}

export class CatalogStore {
  private readonly entries = new Map<string, Entry>();
  private readonly maxAgeMs: number;
  private readonly now: () => number;
  private readonly log: Logger | undefined;
  private closed = false;

  constructor(
    private readonly load: (resource: string) => Promise<ResourceCatalog>,
    opts: CatalogStoreOptions = {},
  ) {
    this.maxAgeMs = opts.maxAgeMs ?? 60_000;
    this.now = opts.now ?? Date.now;
    this.log = opts.log;
  }

  /**
   * The cached catalog, or undefined when none has been read yet (a load is
   * then started). Never waits; an old catalog starts a background refresh
   * and is still returned.
   */
  get(resource: string): ResourceCatalog | undefined {
    const e = this.entry(resource);
    if (!e.catalog || this.now() - e.loadedAt >= this.maxAgeMs) this.start(resource, e);
    return e.catalog;
  }

  /**
   * The cached catalog, or the first one once loaded (concurrent callers
   * share the load). Undefined when the load failed, or when the last one
   * failed less than CATALOG_RETRY_MS ago.
   */
  async ensure(resource: string): Promise<ResourceCatalog | undefined> {
    const cached = this.get(resource);
    if (cached) return cached;
    const e = this.entry(resource);
    if (e.loading) await e.loading;
    return e.catalog;
  }

  /**
   * As ensure(), but when there is no catalog because a load failed, waits
   * out the retry delay once and tries again: for a session that must not
   * start without one (a load can fail for a moment, as an agent reconnects).
   */
  async ensureOrRetry(resource: string): Promise<ResourceCatalog | undefined> {
    const first = await this.ensure(resource);
    const e = this.entry(resource);
    if (first || !e.failed || this.closed) return first;
    const wait = e.attemptedAt + CATALOG_RETRY_MS - this.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    return this.ensure(resource);
  }

  /**
   * The database changed (a session ran DDL): read the catalog again. get()
   * serves the previous one until the new one arrives; see refreshed().
   */
  invalidate(resource: string): void {
    if (this.closed) return;
    const e = this.entry(resource);
    e.dirty = true;
    this.start(resource, e);
  }

  /**
   * Settles once no refresh is running or owed for the resource: the load
   * that started after the last invalidate() has succeeded or failed (on
   * failure get() still serves the previous catalog).
   */
  refreshed(resource: string): Promise<void> {
    const e = this.entries.get(resource);
    if (this.closed || !e || (!e.loading && !e.dirty)) return Promise.resolve();
    return new Promise((resolve) => e.waiters.push(resolve));
  }

  /** Stops retry timers and releases refreshed() callers; loads in flight are ignored when they end. */
  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) {
      clearTimeout(e.retry);
      e.retry = undefined;
      this.release(e);
    }
  }

  private entry(resource: string): Entry {
    let e = this.entries.get(resource);
    if (!e) {
      e = { loadedAt: 0, dirty: false, attemptedAt: 0, failed: false, waiters: [] };
      this.entries.set(resource, e);
    }
    return e;
  }

  /** Starts a load unless one is running, or waits out the retry delay after a failure. */
  private start(resource: string, e: Entry): void {
    if (this.closed || e.loading || e.retry) return;
    const since = this.now() - e.attemptedAt;
    if (e.failed && since >= 0 && since < CATALOG_RETRY_MS) {
      // Only an invalidation is worth a timer; get() and ensure() retry on their next call.
      if (e.dirty) {
        e.retry = setTimeout(() => {
          e.retry = undefined;
          this.start(resource, e);
          if (!e.loading) this.release(e);
        }, CATALOG_RETRY_MS - since);
        e.retry.unref?.();
      }
      return;
    }
    const startedAt = this.now();
    e.dirty = false;
    e.attemptedAt = startedAt;
    let pending: Promise<ResourceCatalog>;
    try {
      pending = Promise.resolve(this.load(resource));
    } catch (err) {
      pending = Promise.reject(err);
    }
    e.loading = this.settle(resource, e, pending, startedAt);
  }

  /** Takes in a load's outcome, then starts the load still owed, if any. Always settles after e.loading is set. */
  private async settle(resource: string, e: Entry, pending: Promise<ResourceCatalog>, startedAt: number): Promise<void> {
    try {
      const catalog = await pending;
      if (this.closed) return;
      e.catalog = catalog;
      e.loadedAt = startedAt;
      e.failed = false;
      this.log?.debug(
        { resource, relations: Object.keys(catalog.relations).length, ms: this.now() - startedAt },
        'resource catalog loaded',
      );
    } catch (err) {
      e.failed = true;
      if (this.closed) return;
      this.log?.warn(
        { resource, err: err instanceof Error ? err.message : String(err), serving: e.catalog ? 'the previous catalog' : 'none' },
        'could not read the resource catalog',
      );
    } finally {
      e.loading = undefined;
      if (e.dirty) this.start(resource, e);
      if (!e.loading && !e.retry) this.release(e);
    }
  }

  private release(e: Entry): void {
    if (!this.closed && (e.loading || (e.dirty && e.retry))) return;
    const waiters = e.waiters;
    e.waiters = [];
    for (const w of waiters) w();
  }
}
