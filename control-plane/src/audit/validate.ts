// Checks that what a gateway sent is an audit event before it is stored: the
// fields the trail is searched by and chained on must be there and sane.
import { StatementDecision, StatementProtocol, type AuditEvent } from '@warden/proto';

const MAX_ID = 200;

const text = (v: string, max = 1000) => v.length > 0 && v.length <= max;

/** The event, or a reason it is not one. */
export function checkEvent(e: AuditEvent | undefined): { event: AuditEvent } | { error: string } {
  if (!e) return { error: 'not an audit event' };
  if (!text(e.id, MAX_ID)) return { error: 'id missing or too long' };
  if (!e.event) return { error: 'no event type' };
  if (!e.time || Number.isNaN(new Date(e.time.seconds * 1000).getTime())) return { error: 'time missing or out of range' };
  if (!text(e.gateway)) return { error: 'gateway missing' };
  if (e.event.$case === 'authFailure') return { event: e };
  if (!text(e.sessionId, MAX_ID)) return { error: 'sessionId missing' };
  if (!Number.isSafeInteger(e.seq) || e.seq < 0) return { error: 'seq is not a non-negative integer' };
  if (e.event.$case === 'statement') {
    const s = e.event.value;
    if (s.decision !== StatementDecision.STATEMENT_DECISION_ALLOWED && s.decision !== StatementDecision.STATEMENT_DECISION_REFUSED) return { error: 'decision missing' };
    if (s.protocol !== StatementProtocol.STATEMENT_PROTOCOL_SIMPLE && s.protocol !== StatementProtocol.STATEMENT_PROTOCOL_EXTENDED) return { error: 'protocol missing' };
  }
  return { event: e };
}
