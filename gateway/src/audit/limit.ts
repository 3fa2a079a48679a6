// Keeps every audit event below a size every transport accepts (NATS' default
// max_payload is 1 MiB, gRPC's message limit 4 MiB). An oversized event would
// block the outbox forever; a shortened one keeps identity, decision and
// outcome intact and says what was cut.
import { AuditEvent, type Statement } from '@warden/proto';

export const MAX_EVENT_BYTES = 256 << 10;

const encode = (e: AuditEvent) => AuditEvent.encode(e).finish();

/** The event in the protobuf binary encoding, shortened first if it is too large. */
export function encodeEvent(event: AuditEvent, maxBytes = MAX_EVENT_BYTES): Uint8Array {
  const bytes = encode(event);
  return bytes.length <= maxBytes ? bytes : encode(fitEvent(event, maxBytes));
}

export function fitEvent(event: AuditEvent, maxBytes = MAX_EVENT_BYTES): AuditEvent {
  if (event.event?.$case !== 'statement' || encode(event).length <= maxBytes) return event;
  const withStatement = (s: Statement): AuditEvent => ({ ...event, event: { $case: 'statement', value: s } });
  // Cheapest losses first: the parameters' long values, then the parameters, then the tail of the SQL.
  let s = event.event.value;
  s = { ...s, parameters: s.parameters.map((p) => (p.value !== undefined && p.value.length > 64 ? { value: `${p.value.slice(0, 64)}…` } : p)) };
  if (encode(withStatement(s)).length <= maxBytes) return withStatement(s);
  s = { ...s, parameters: [] };
  const over = encode(withStatement(s)).length - maxBytes;
  // Bytes over the limit, cut as characters: never too few, since a character is at least one byte.
  const keep = Math.max(0, s.sql.length - over - 64);
  return withStatement({ ...s, sql: `${s.sql.slice(0, keep)}… [${s.sql.length - keep} characters not recorded]` });
}
