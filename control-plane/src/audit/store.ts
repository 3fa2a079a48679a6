// The audit trail's storage API, bound to one database and clock: what the
// gRPC service, the NATS consumer and the maintenance timer call.
import type { AuditEvent } from '@warden/proto';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { silentLogger } from '../logger.js';
import type { AuditContext } from './context.js';
import { ingestEvents, type IngestResult } from './ingest.js';
import { getSession, listSessions, searchEvents, type EventQuery, type SessionFilter } from './query.js';
import { applyRetention, getRetentionDays, setRetentionDays } from './retention.js';
import type { AuditTables } from './schema.js';
import { closeDays, sealIdleSessions, type SealOptions } from './seal.js';
import { verifyAudit } from './verify.js';

export interface AuditStoreOptions extends SealOptions {
  now?: () => Date;
  log?: Logger;
  /** Told of every ingested batch and its result (metrics). */
  onIngest?: (events: ReadonlyArray<AuditEvent | undefined>, result: IngestResult) => void;
}

export class AuditStore {
  readonly ctx: AuditContext;

  constructor(
    db: Kysely<any>,
    private readonly opts: AuditStoreOptions = {},
  ) {
    this.ctx = { db: (db as Kysely<object>).withTables<AuditTables>(), now: opts.now ?? (() => new Date()), log: opts.log ?? silentLogger() };
  }

  async ingest(raw: ReadonlyArray<AuditEvent | undefined>): Promise<IngestResult> {
    const result = await ingestEvents(this.ctx, raw);
    this.opts.onIngest?.(raw, result);
    return result;
  }

  listSessions(f: SessionFilter) {
    return listSessions(this.ctx, f);
  }

  getSession(id: string) {
    return getSession(this.ctx, id);
  }

  search(q: EventQuery) {
    return searchEvents(this.ctx, q);
  }

  verify() {
    return verifyAudit(this.ctx);
  }

  getRetention() {
    return getRetentionDays(this.ctx);
  }

  setRetention(days: number) {
    return setRetentionDays(this.ctx, days);
  }

  /** Seals idle sessions, closes finished days, applies retention. Safe to run from several control planes at once. */
  async maintain(): Promise<void> {
    await sealIdleSessions(this.ctx, this.opts.idleSealMs);
    await closeDays(this.ctx, this.opts.dayGraceMs);
    await applyRetention(this.ctx);
  }
}

/** Runs maintain() every `intervalMs` (and once now); the returned function stops it and waits for a run in progress. */
export function startMaintenance(store: AuditStore, intervalMs: number): () => Promise<void> {
  let current: Promise<void> | undefined;
  const tick = () => {
    current ??= store
      .maintain()
      .catch((err) => store.ctx.log.warn({ err }, 'audit maintenance failed; retrying at the next interval'))
      .finally(() => (current = undefined));
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await current;
  };
}
