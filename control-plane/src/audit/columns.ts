// The searchable columns of an event row, derived from the event itself.
// Verify derives them again: a column edited without its body is tampering too.
import type { AuditEvent } from '@warden/proto';
import { decisionName, eventType, isoOf } from '@warden/proto/audit';

export interface EventColumns {
  id: string;
  session_id: string | null;
  seq: number | null;
  type: string;
  time: string;
  gateway: string;
  identity: string | null;
  resource: string | null;
  kind: string | null;
  decision: string | null;
  rule: string | null;
  sql: string | null;
}

/** For an event that passed checkEvent. */
export function eventColumns(e: AuditEvent): EventColumns {
  const scoped = e.event?.$case !== 'authFailure';
  const st = e.event?.$case === 'statement' ? e.event.value : undefined;
  return {
    id: e.id,
    session_id: scoped ? e.sessionId : null,
    seq: scoped ? e.seq : null,
    type: eventType(e) ?? '',
    time: isoOf(e.time),
    gateway: e.gateway,
    identity: scoped ? e.identity : null,
    resource: scoped ? e.resource : e.resource || null,
    kind: st ? (st.kind ?? st.command ?? null) : null,
    decision: st ? (decisionName(st.decision) ?? null) : null,
    rule: st?.rule ?? null,
    sql: st ? st.sql : null,
  };
}

/** Names of the columns whose stored value differs from the event's. */
export function columnDrift(stored: Record<string, unknown>, e: AuditEvent): string[] {
  const want = eventColumns(e);
  return (Object.keys(want) as (keyof EventColumns)[]).filter((k) => {
    const have = stored[k] instanceof Date ? (stored[k] as Date).toISOString() : (stored[k] ?? null);
    const expected = k === 'time' ? new Date(want.time).toISOString() : want[k];
    if (k === 'time' && typeof have === 'string') return new Date(have).toISOString() !== expected;
    return have !== expected;
  });
}
