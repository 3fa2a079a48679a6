// Checks that what a gateway sent is an audit event before it is stored: the
// columns the trail is searched by and chained on must be there and sane.
import type { AuditEvent } from '@warden/gateway/audit/events';

const TYPES = new Set(['session.start', 'statement', 'session.end', 'auth.failure']);
const MAX_ID = 200;

const text = (v: unknown, max = 1000) => typeof v === 'string' && v.length > 0 && v.length <= max;

/** The event, or a reason it is not one. */
export function checkEvent(value: unknown): { event: AuditEvent } | { error: string } {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return { error: 'not a JSON object' };
  const e = value as Record<string, unknown>;
  if (!text(e.id, MAX_ID)) return { error: 'id missing or too long' };
  if (!TYPES.has(e.type as string)) return { error: `unknown type ${JSON.stringify(e.type)}` };
  if (typeof e.time !== 'string' || Number.isNaN(Date.parse(e.time))) return { error: 'time is not a timestamp' };
  if (!text(e.gateway)) return { error: 'gateway missing' };
  if (e.type === 'auth.failure') return { event: value as AuditEvent };
  if (!text(e.sessionId, MAX_ID)) return { error: 'sessionId missing' };
  if (!Number.isSafeInteger(e.seq) || (e.seq as number) < 0) return { error: 'seq is not a non-negative integer' };
  for (const k of ['identity', 'resource', 'agent']) if (typeof e[k] !== 'string') return { error: `${k} missing` };
  if (e.type === 'statement' && typeof e.sql !== 'string') return { error: 'sql missing' };
  return { event: value as AuditEvent };
}
