// The hash chains' arithmetic, shared by ingest, sealing and verify.
//   session chain: hash(seq n) = sha256(hash(seq n-1) || canonical JSON of event n)
//   daily chain:   hash(day)   = sha256(hash(previous day) || lines of what the day sealed)
// An event's canonical JSON is its JSON form (@warden/proto/audit, eventRecord)
// with object keys sorted at every level, absent fields left out and no
// whitespace: the stored `body`, hashed as UTF-8 after the previous hash's 64
// hex digits. It is the same text versions before the protobuf events
// stored, so their chains verify unchanged.
import * as crypto from 'node:crypto';
import type { AuditEvent } from '@warden/proto';
import { decisionName, durationMs, eventRecord, isoOf, protocolName } from '@warden/proto/audit';

/** Where every chain starts. */
export const GENESIS = '0'.repeat(64);

const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** JSON with object keys sorted at every level: the same event always gives the same text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => byCodeUnits(a, b));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/** A value canonicalJson would not write as JSON.stringify does, even with sorted keys. */
const UNSAFE = Symbol('unsafe');
// Keys JSON.stringify would not write in insertion order (array indexes), or that cannot be set as own properties.
const SPECIAL_KEY = /^(?:0|[1-9]\d*|__proto__)$/;

/** A copy with object keys sorted at every level and absent fields left out, or UNSAFE. */
function sortedCopy(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) {
    const out = new Array<unknown>(v.length);
    for (let i = 0; i < v.length; i++) {
      const c = sortedCopy(v[i]);
      if (c === UNSAFE) return UNSAFE;
      out[i] = c;
    }
    return out;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return UNSAFE;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v).sort(byCodeUnits)) {
    const x = (v as Record<string, unknown>)[k];
    if (x === undefined) continue;
    const c = sortedCopy(x);
    if (c === UNSAFE || SPECIAL_KEY.test(k)) return UNSAFE;
    out[k] = c;
  }
  return out;
}

const some = <T>(list: T[]) => (list.length > 0 ? list : undefined);

/**
 * What is stored of an event and hashed: canonicalJson(eventRecord(e)). The
 * three kinds every session is made of are written by JSON.stringify from
 * object literals whose keys are in canonical order, with the values
 * eventRecord gives (JSON.stringify leaves out undefined ones, as
 * canonicalJson does): the same text at a fraction of the cost, on the
 * control plane's hot path. Tests hold the two to the same text. `time` is
 * the event's time as ISO text, when the caller has it already.
 */
export function eventBody(e: AuditEvent, time = isoOf(e.time)): string {
  const { id, gateway, sessionId, seq, identity, resource, agent } = e;
  const ev = e.event;
  if (ev?.$case === 'statement') {
    const s = ev.value;
    return JSON.stringify({
      access: s.access,
      agent,
      approvalId: s.approvalId,
      command: s.command,
      decision: decisionName(s.decision) ?? 'refused',
      durationMs: durationMs(s.duration),
      error: s.error ? { message: s.error.message, sqlstate: s.error.sqlstate } : undefined,
      gateway,
      id,
      identity,
      kind: s.kind,
      maskedColumns: some(s.maskedColumns),
      objects: some(s.objects),
      parameters: s.parameters.length > 0 ? s.parameters.map((p) => p.value ?? null) : undefined,
      protocol: protocolName(s.protocol) ?? 'simple',
      resource,
      rows: s.rows,
      rule: s.rule,
      seq,
      sessionId,
      skipped: s.skipped || undefined,
      sql: s.sql,
      time,
      type: 'statement',
    });
  }
  if (ev?.$case === 'sessionEnd') {
    const s = ev.value;
    return JSON.stringify({
      agent,
      bytesIn: s.bytesIn,
      bytesOut: s.bytesOut,
      durationMs: durationMs(s.duration),
      gateway,
      id,
      identity,
      reason: s.reason,
      resource,
      seq,
      sessionId,
      statements: s.statements,
      time,
      type: 'session.end',
    });
  }
  if (ev?.$case === 'sessionStart') {
    const s = ev.value;
    const claims = sortedCopy(s.claims ?? {});
    if (claims !== UNSAFE) {
      return JSON.stringify({
        access: s.access,
        agent,
        applicationName: s.applicationName,
        claims,
        clientAddress: s.clientAddress,
        gateway,
        groups: s.groups,
        id,
        identity,
        readOnly: s.readOnly,
        resource,
        seq,
        sessionId,
        time,
        type: 'session.start',
        user: s.user,
      });
    }
  }
  return canonicalJson(eventRecord(e));
}

// One call instead of a Hash object per event (crypto.hash: Node 20.12 and later).
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'hex') => string }).hash;

export const sha256 = (text: string) => (oneShot ? oneShot('sha256', text, 'hex') : crypto.createHash('sha256').update(text, 'utf8').digest('hex'));

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
