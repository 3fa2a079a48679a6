// Keeps every audit event below a size every transport accepts (NATS' default
// max_payload is 1 MiB, gRPC's message limit 4 MiB). An oversized event would
// block the outbox forever; a shortened one keeps identity, decision and
// outcome intact and says what was cut.
import type { AuditEvent } from './events.js';

export const MAX_EVENT_BYTES = 256 << 10;

const size = (e: AuditEvent) => Buffer.byteLength(JSON.stringify(e), 'utf8');

/** The event as one JSON line's text, shortened first if it is too large. */
export function serializeEvent(event: AuditEvent, maxBytes = MAX_EVENT_BYTES): string {
  const text = JSON.stringify(event);
  // Most events are far below the limit; count bytes only when characters alone could exceed it.
  if (text.length * 3 <= maxBytes || Buffer.byteLength(text, 'utf8') <= maxBytes) return text;
  return JSON.stringify(fitEvent(event, maxBytes));
}

export function fitEvent(event: AuditEvent, maxBytes = MAX_EVENT_BYTES): AuditEvent {
  if (event.type !== 'statement' || size(event) <= maxBytes) return event;
  // Cheapest losses first: the sample rows, then the parameters, then the tail of the SQL.
  let e = { ...event, sample: undefined };
  if (size(e) <= maxBytes) return e;
  e = { ...e, parameters: e.parameters?.map((p) => (p !== null && p.length > 64 ? `${p.slice(0, 64)}…` : p)) };
  if (size(e) <= maxBytes) return e;
  e = { ...e, parameters: undefined };
  const over = size(e) - maxBytes;
  const keep = Math.max(0, e.sql.length - over - 64);
  return { ...e, sql: `${e.sql.slice(0, keep)}… [${e.sql.length - keep} characters not recorded]` };
}
