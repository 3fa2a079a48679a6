// The hash chains' arithmetic, shared by ingest, sealing and verify.
//   session chain: hash(seq n) = sha256(hash(seq n-1) || canonical JSON of event n)
//   daily chain:   hash(day)   = sha256(hash(previous day) || lines of what the day sealed)
// An event's canonical JSON is its JSON form (@warden/proto/audit, eventRecord)
// with object keys sorted at every level, absent fields left out and no
// whitespace: the stored `body`, hashed as UTF-8 after the previous hash's 64
// hex digits. It is the same text versions before the protobuf events
// stored, so their chains verify unchanged.
import { createHash } from 'node:crypto';
import type { AuditEvent } from '@warden/proto';
import { eventRecord } from '@warden/proto/audit';

/** Where every chain starts. */
export const GENESIS = '0'.repeat(64);

/** JSON with object keys sorted at every level: the same event always gives the same text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/** What is stored of an event and hashed: its JSON form as canonical JSON. */
export const eventBody = (e: AuditEvent): string => canonicalJson(eventRecord(e));

export const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

export const linkHash = (prevHash: string, body: string) => sha256(prevHash + body);

export interface SealedSession {
  sessionId: string;
  startedAt: string;
  sealedSeq: number;
  sealedHash: string;
}

export interface SealedAuthFailure {
  id: string;
  time: string;
  body: string;
}

const byKey = <T>(key: (x: T) => string) => (a: T, b: T) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);

/**
 * A day's link: sessions ordered by (start time, session id), then auth
 * failures by (time, id). Each session contributes the chain head it was
 * sealed with, so the day vouches for every event up to there.
 */
export function dayHash(prevHash: string, sessions: SealedSession[], failures: SealedAuthFailure[]): string {
  const s = [...sessions].sort(byKey((x) => `${x.startedAt}\u0000${x.sessionId}`));
  const f = [...failures].sort(byKey((x) => `${x.time}\u0000${x.id}`));
  const lines = [
    ...s.map((x) => `session ${x.sessionId} ${x.sealedSeq} ${x.sealedHash}`),
    ...f.map((x) => `auth ${x.id} ${sha256(x.body)}`),
  ];
  return sha256(`${prevHash}\n${lines.join('\n')}`);
}

/** UTC calendar day of a time, YYYY-MM-DD. */
export const dayOf = (t: Date) => t.toISOString().slice(0, 10);
