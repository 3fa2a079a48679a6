// `warden audit verify`: recomputes every session chain and the daily chain
// from the stored rows and reports each record that was edited, reordered or
// deleted. Events still in transit (a gap not yet linked) are warnings.
import type { AuditEvent } from '@warden/proto';
import { eventFromRecord } from '@warden/proto/audit';
import { GENESIS, dayHash, linkHash } from './chain.js';
import { columnDrift } from './columns.js';
import { isoOf, type AuditContext, type AuditDb } from './context.js';
import type { AuditSessionsTable } from './schema.js';
import { dayContents, retentionMark } from './seal.js';
import type { Selectable } from 'kysely';

export type ProblemKind = 'edited' | 'reordered' | 'deleted' | 'day_chain';

export interface Problem {
  kind: ProblemKind;
  sessionId: string;
  /** -1 when not about one event. */
  seq: number;
  day: string;
  detail: string;
}

export interface VerifyResult {
  ok: boolean;
  sessions: number;
  events: number;
  days: number;
  problems: Problem[];
  warnings: string[];
  headDay: string;
  headHash: string;
}

interface Row {
  id: string;
  seq: number | null;
  body: string;
  prev_hash: string | null;
  hash: string | null;
  [column: string]: unknown;
}

export async function verifyAudit(ctx: AuditContext): Promise<VerifyResult> {
  const out: VerifyResult = { ok: true, sessions: 0, events: 0, days: 0, problems: [], warnings: [], headDay: '', headHash: '' };
  const sessions = await ctx.db.selectFrom('audit_sessions').selectAll().orderBy('started_at').orderBy('session_id').execute();
  for (const s of sessions) {
    const rows = (await ctx.db.selectFrom('audit_events').selectAll().where('session_id', '=', s.session_id).orderBy('seq').execute()) as Row[];
    checkSession(s, rows, out);
    out.sessions++;
    out.events += rows.length;
  }
  const failures = (await ctx.db.selectFrom('audit_events').selectAll().where('type', '=', 'auth.failure').execute()) as Row[];
  for (const r of failures) checkColumns(r, '', out);
  out.events += failures.length;
  await checkDays(ctx.db, out);
  out.ok = out.problems.length === 0;
  return out;
}

function problem(out: VerifyResult, kind: ProblemKind, sessionId: string, seq: number, detail: string, day = ''): void {
  out.problems.push({ kind, sessionId, seq, day, detail });
}

/** The event in a row, or undefined (reported) when the body is not one. */
function checkColumns(row: Row, sessionId: string, out: VerifyResult): AuditEvent | undefined {
  let value: unknown;
  try {
    value = JSON.parse(row.body);
  } catch {
    problem(out, 'edited', sessionId, row.seq ?? -1, `event ${row.id}: the stored body is not valid JSON`);
    return undefined;
  }
  const event = eventFromRecord(value);
  if (!event) {
    problem(out, 'edited', sessionId, row.seq ?? -1, `event ${row.id}: the stored body is not an audit event`);
    return undefined;
  }
  const drift = columnDrift(row, event).filter((c) => c !== 'seq');
  if (drift.length > 0) problem(out, 'edited', sessionId, row.seq ?? -1, `event ${row.id}: column ${drift.join(', ')} differs from the recorded event`);
  return event;
}

function checkSession(s: Selectable<AuditSessionsTable>, rows: Row[], out: VerifyResult): void {
  const id = s.session_id;
  let expectedSeq = 0;
  let prevHash = GENESIS;
  const hashes = new Map<number, string | null>();
  let unknown = 0;
  for (const row of rows) {
    const seq = row.seq!;
    hashes.set(seq, row.hash);
    const event = checkColumns(row, id, out);
    if (event?.event?.$case === 'statement' && event.event.value.error?.message.startsWith('outcome unknown')) unknown++;
    if (event && event.event?.$case !== 'authFailure' && event.seq !== seq) {
      problem(out, 'reordered', id, seq, `the event stored at seq ${seq} was recorded as seq ${event.seq}`);
    }
    if (seq > s.linked_seq) continue; // not linked yet: checked below
    if (seq !== expectedSeq) {
      problem(out, 'deleted', id, expectedSeq, seq - expectedSeq === 1 ? `event seq ${expectedSeq} is missing` : `events seq ${expectedSeq}..${seq - 1} are missing`);
    } else if (row.prev_hash !== prevHash) {
      problem(out, 'edited', id, seq, `the chain is broken before seq ${seq}: the previous record was changed or replaced`);
    }
    if (!row.hash || linkHash(row.prev_hash ?? '', row.body) !== row.hash) {
      problem(out, 'edited', id, seq, `event seq ${seq} does not match its hash: its content was changed`);
    }
    expectedSeq = seq + 1;
    prevHash = row.hash ?? '';
  }
  if (expectedSeq <= s.linked_seq) {
    problem(out, 'deleted', id, expectedSeq, `events seq ${expectedSeq}..${s.linked_seq} are missing (the chain had reached seq ${s.linked_seq})`);
  } else if (s.linked_seq >= 0 && hashes.get(s.linked_seq) !== s.head_hash) {
    problem(out, 'edited', id, s.linked_seq, `the chain head at seq ${s.linked_seq} differs from the session's recorded head`);
  }
  if (s.sealed_seq !== null && s.sealed_seq >= 0 && hashes.has(s.sealed_seq) && hashes.get(s.sealed_seq) !== s.sealed_hash) {
    problem(out, 'edited', id, s.sealed_seq, `seq ${s.sealed_seq} no longer matches the hash sealed into day ${s.sealed_day}`);
  }
  if (rows.length < s.events) problem(out, 'deleted', id, -1, `${s.events} events were stored, ${rows.length} remain`);
  // Not tampering, but what an investigator needs to know: where the record may be incomplete.
  if (unknown > 0) out.warnings.push(`session ${id}: ${unknown} statement(s) whose outcome is unknown (the session ended before the server answered; they may have run)`);
  if (s.end_seq === null) {
    out.warnings.push(`session ${id} (${s.identity} on ${s.resource}, started ${isoOf(s.started_at)}): no end recorded (still open, or its gateway was lost)`);
  }
  const waiting = rows.filter((r) => r.seq! > s.linked_seq);
  if (waiting.length > 0) {
    out.warnings.push(`session ${id}: ${waiting.length} event(s) from seq ${waiting[0]!.seq} wait for seq ${s.linked_seq + 1}, not received yet`);
  }
}

async function checkDays(db: AuditDb, out: VerifyResult): Promise<void> {
  const mark = await retentionMark(db);
  let prev = mark?.last_hash ?? GENESIS;
  const days = await db.selectFrom('audit_days').selectAll().orderBy('day').execute();
  for (const d of days) {
    if (d.prev_hash !== prev) {
      problem(out, 'day_chain', '', -1, `day ${d.day} does not follow the previous day in the chain: a day record was deleted or changed`, d.day);
    }
    const { sessions, failures } = await dayContents(db, d.day);
    if (dayHash(d.prev_hash, sessions, failures) !== d.hash) {
      const lost = d.sessions - sessions.length;
      const lostFailures = d.auth_failures - failures.length;
      const detail =
        lost > 0 || lostFailures > 0
          ? `day ${d.day} sealed ${d.sessions} session(s) and ${d.auth_failures} auth failure(s); ${sessions.length} and ${failures.length} remain`
          : `day ${d.day} no longer matches its hash: a session or auth failure sealed that day was changed`;
      problem(out, lost > 0 || lostFailures > 0 ? 'deleted' : 'day_chain', '', -1, detail, d.day);
    }
    prev = d.hash;
    out.days++;
  }
  const last = days.at(-1)?.day ?? mark?.through_day ?? '';
  const closed = new Set(days.map((d) => d.day));
  const orphans = await db
    .selectFrom('audit_sessions')
    .select('sealed_day as day')
    .distinct()
    .where('sealed_day', '<=', last)
    .where('sealed_day', '>', mark?.through_day ?? '')
    .execute();
  for (const o of orphans) {
    if (!closed.has(o.day!)) problem(out, 'day_chain', '', -1, `day ${o.day} sealed sessions but its record is missing from the daily chain`, o.day!);
  }
  out.headDay = days.at(-1)?.day ?? '';
  out.headHash = days.at(-1)?.hash ?? '';
}
