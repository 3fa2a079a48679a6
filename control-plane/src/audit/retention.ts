// Retention: sessions (and auth failures) are kept for a configured number of
// days, counted by the day they were sealed into the daily chain. Whole closed
// days are removed at once, and a marker records the last removed day's hash
// so verify starts the daily chain there instead of calling it tampering.
import { dayOf } from './chain.js';
import type { AuditContext } from './context.js';

const KEY = 'retention_days';
export const MAX_RETENTION_DAYS = 36_500;

export async function getRetentionDays(ctx: AuditContext): Promise<number> {
  const row = await ctx.db.selectFrom('audit_settings').select('value').where('key', '=', KEY).executeTakeFirst();
  return row ? Number(row.value) : 0;
}

/** 0 keeps everything. */
export async function setRetentionDays(ctx: AuditContext, days: number): Promise<number> {
  if (!Number.isInteger(days) || days < 0 || days > MAX_RETENTION_DAYS) {
    throw new RangeError(`retention must be a whole number of days between 0 (keep forever) and ${MAX_RETENTION_DAYS}`);
  }
  await ctx.db
    .insertInto('audit_settings')
    .values({ key: KEY, value: String(days) })
    .onConflict((oc) => oc.column('key').doUpdateSet({ value: String(days) }))
    .execute();
  return days;
}

export interface RetentionRun {
  throughDay: string;
  sessions: number;
  events: number;
}

/** Deletes closed days older than the retention period; undefined when there was nothing to delete. */
export async function applyRetention(ctx: AuditContext): Promise<RetentionRun | undefined> {
  const days = await getRetentionDays(ctx);
  if (days <= 0) return undefined;
  const cutoff = dayOf(new Date(ctx.now().getTime() - days * 86_400_000));
  return ctx.db.transaction().execute(async (trx) => {
    const last = await trx.selectFrom('audit_days').select(['day', 'hash']).where('day', '<', cutoff).orderBy('day', 'desc').limit(1).executeTakeFirst();
    if (!last) return undefined;
    const sessions = trx.selectFrom('audit_sessions').select('session_id').where('sealed_day', '<=', last.day);
    const ev1 = await trx.deleteFrom('audit_events').where('session_id', 'in', sessions).executeTakeFirst();
    const ev2 = await trx.deleteFrom('audit_events').where('day', '<=', last.day).executeTakeFirst();
    const ss = await trx.deleteFrom('audit_sessions').where('sealed_day', '<=', last.day).executeTakeFirst();
    await trx.deleteFrom('audit_days').where('day', '<=', last.day).execute();
    const run = { throughDay: last.day, sessions: Number(ss.numDeletedRows), events: Number(ev1.numDeletedRows) + Number(ev2.numDeletedRows) };
    await trx
      .insertInto('audit_retention')
      .values({ through_day: last.day, last_hash: last.hash, sessions: run.sessions, events: run.events, at: ctx.now() })
      .execute();
    ctx.log.info({ ...run, retentionDays: days }, 'audit retention removed old sessions');
    return run;
  });
}
