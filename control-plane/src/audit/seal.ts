// Sealing: a session joins the daily chain of the day it is sealed, either
// when its chain reaches session.end (ingest.ts) or, for sessions that never
// end (the gateway was killed), after it has been idle a while. A day is
// closed, and chained to the previous closed day, once it is over plus a
// grace period, so no transaction still running can add to it.
import { GENESIS, dayHash, dayOf, type SealedAuthFailure, type SealedSession } from './chain.js';
import { isoOf, type AuditContext, type AuditDb, type AuditTrx } from './context.js';

export interface SealOptions {
  /** A session without events for this long is sealed where its chain stands. Default 1 h. */
  idleSealMs?: number;
  /** A day closes this long after it ended. Default 5 min. */
  dayGraceMs?: number;
}

export async function sealIdleSessions(ctx: AuditContext, idleSealMs = 3_600_000): Promise<number> {
  const now = ctx.now();
  const cutoff = new Date(now.getTime() - idleSealMs);
  return ctx.db.transaction().execute(async (trx) => {
    const idle = await trx
      .selectFrom('audit_sessions')
      .select(['session_id', 'linked_seq', 'head_hash'])
      .where('sealed_day', 'is', null)
      .where('last_event_at', '<', cutoff)
      .forUpdate()
      .execute();
    for (const s of idle) {
      await trx
        .updateTable('audit_sessions')
        .set({ sealed_day: dayOf(now), sealed_seq: s.linked_seq, sealed_hash: s.head_hash })
        .where('session_id', '=', s.session_id)
        .execute();
    }
    if (idle.length > 0) ctx.log.info({ sessions: idle.length }, 'sealed idle audit sessions into the daily chain');
    return idle.length;
  });
}

/** Closes every finished day that sealed something; returns the days closed. */
export async function closeDays(ctx: AuditContext, dayGraceMs = 5 * 60_000): Promise<string[]> {
  const lastOpen = dayOf(new Date(ctx.now().getTime() - dayGraceMs - 86_400_000));
  return ctx.db.transaction().execute(async (trx) => {
    const { day: lastClosed, hash } = await chainHead(trx);
    const pending = await pendingDays(trx, lastClosed, lastOpen);
    let prev = hash;
    for (const day of pending) {
      const { sessions, failures } = await dayContents(trx, day);
      const h = dayHash(prev, sessions, failures);
      await trx
        .insertInto('audit_days')
        .values({ day, prev_hash: prev, hash: h, sessions: sessions.length, auth_failures: failures.length, closed_at: ctx.now() })
        .execute();
      prev = h;
    }
    if (pending.length > 0) ctx.log.info({ days: pending }, 'closed audit days into the daily chain');
    return pending;
  });
}

/** The newest closed day and its hash; after retention, where retention left off. */
export async function chainHead(db: AuditDb | AuditTrx): Promise<{ day: string; hash: string }> {
  const day = await db.selectFrom('audit_days').select(['day', 'hash']).orderBy('day', 'desc').limit(1).executeTakeFirst();
  if (day) return { day: day.day, hash: day.hash };
  const mark = await retentionMark(db);
  return mark ? { day: mark.through_day, hash: mark.last_hash } : { day: '', hash: GENESIS };
}

export function retentionMark(db: AuditDb | AuditTrx) {
  return db.selectFrom('audit_retention').selectAll().orderBy('through_day', 'desc').limit(1).executeTakeFirst();
}

/** Days after `after` and up to `through` that sealed a session or an auth failure. */
export async function pendingDays(db: AuditDb | AuditTrx, after: string, through: string): Promise<string[]> {
  const s = await db
    .selectFrom('audit_sessions')
    .select('sealed_day as day')
    .distinct()
    .where('sealed_day', '>', after)
    .where('sealed_day', '<=', through)
    .execute();
  const f = await db.selectFrom('audit_events').select('day').distinct().where('day', '>', after).where('day', '<=', through).execute();
  return [...new Set([...s, ...f].map((r) => r.day!))].sort();
}

export async function dayContents(
  db: AuditDb | AuditTrx,
  day: string,
): Promise<{ sessions: SealedSession[]; failures: SealedAuthFailure[] }> {
  const rows = await db
    .selectFrom('audit_sessions')
    .select(['session_id', 'started_at', 'sealed_seq', 'sealed_hash'])
    .where('sealed_day', '=', day)
    .execute();
  const fails = await db.selectFrom('audit_events').select(['id', 'time', 'body']).where('day', '=', day).execute();
  return {
    sessions: rows.map((r) => ({ sessionId: r.session_id, startedAt: isoOf(r.started_at), sealedSeq: r.sealed_seq!, sealedHash: r.sealed_hash! })),
    failures: fails.map((r) => ({ id: r.id, time: isoOf(r.time), body: r.body })),
  };
}
