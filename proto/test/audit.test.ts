// @warden/proto/audit: the JSON form of events, one-line summaries, subject names.
import { describe, expect, it } from 'vitest';
import { AuditEvent } from '../src/index.js';
import {
  type AuditRecord,
  type StatementRecord,
  auditSubject,
  durationMs,
  durationOf,
  eventFromRecord,
  eventRecord,
  subjectToken,
  summarize,
} from '../src/audit/index.js';

const base = { id: 'x:1', time: '2024-05-01T12:00:00.000Z', gateway: 'gw', sessionId: 'x', seq: 1, identity: 'ci-deploy', resource: 'shop-prod', agent: 'a' };

const stmt = (over: Partial<StatementRecord>): StatementRecord => ({
  ...base,
  type: 'statement',
  sql: 'SELECT * FROM public.orders',
  protocol: 'simple',
  decision: 'allowed',
  kind: 'SELECT',
  objects: ['public.orders'],
  command: 'SELECT',
  rows: 42,
  durationMs: 3,
  ...over,
});

const line = (r: AuditRecord) => summarize(eventFromRecord(r)!);

describe('summarize', () => {
  it('gives the statement line of the issue', () => {
    expect(line(stmt({}))).toBe('ci-deploy SELECT FROM public.orders on shop-prod: 42 rows, 3 ms');
  });

  it('names the rule of a refusal and the error of a failure', () => {
    const refused = stmt({ kind: 'DROP TABLE', rows: undefined, decision: 'refused', rule: 'ci-read-only', durationMs: 0.2, error: { sqlstate: '42501', message: 'not allowed' } });
    expect(line(refused)).toBe('ci-deploy DROP TABLE public.orders on shop-prod: refused by rule ci-read-only, 0.2 ms');
    expect(line({ ...refused, rule: undefined })).toBe('ci-deploy DROP TABLE public.orders on shop-prod: refused (not allowed), 0.2 ms');
    const failed = stmt({ rows: undefined, error: { sqlstate: '42P01', message: 'relation "x" does not exist' }, durationMs: 1500 });
    expect(line(failed)).toBe('ci-deploy SELECT FROM public.orders on shop-prod: error 42P01 relation "x" does not exist, 1.5 s');
  });

  it('falls back to the first words of the SQL when the statement was not classified', () => {
    expect(line(stmt({ kind: undefined, command: undefined, objects: undefined, sql: 'vacuum analyze', rows: undefined }))).toBe(
      'ci-deploy VACUUM ANALYZE on shop-prod: done, 3 ms',
    );
  });

  it('summarizes session and authentication events', () => {
    const start: AuditRecord = { ...base, type: 'session.start', claims: {}, groups: [], clientAddress: '10.0.0.1:5000', applicationName: 'psql', readOnly: true };
    expect(line(start)).toBe('ci-deploy connected to shop-prod from 10.0.0.1:5000 (psql), read-only');
    const end: AuditRecord = { ...base, type: 'session.end', durationMs: 2500, bytesIn: 1, bytesOut: 2, statements: 1, reason: 'client disconnected' };
    expect(line(end)).toBe('ci-deploy left shop-prod after 1 statement, 2.5 s (client disconnected)');
    const fail: AuditRecord = { id: 'f', time: base.time, gateway: 'gw', type: 'auth.failure', clientAddress: '1.2.3.4:1', resource: 'shop', sqlstate: '28000', message: 'token expired' };
    expect(line(fail)).toBe('authentication failed from 1.2.3.4:1 for shop: 28000 token expired');
  });
});

describe('subjects', () => {
  it('keeps safe names and escapes what would split or widen a subject', () => {
    expect(subjectToken('ci-deploy')).toBe('ci-deploy');
    expect(subjectToken('a.b*c>d e')).toBe('a=2Eb=2Ac=3Ed=20e');
    expect(subjectToken('')).toBe('=');
    expect(subjectToken('a=b')).toBe('a=3Db');
    expect(auditSubject(eventFromRecord(stmt({}))!)).toBe('warden.audit.shop-prod.ci-deploy');
    const fail = eventFromRecord({ id: 'f', time: base.time, gateway: 'gw', type: 'auth.failure', clientAddress: '1.2.3.4:1', sqlstate: '28000', message: 'no' })!;
    expect(auditSubject(fail)).toBe('warden.audit.=.=');
  });
});

describe('the JSON form', () => {
  const records: AuditRecord[] = [
    {
      ...base,
      seq: 0,
      type: 'session.start',
      claims: { sub: 'repo:acme/shop', groups: ['a', 'b'], exp: 1714564800, nested: { ok: true, none: null } },
      groups: ['deployers'],
      clientAddress: '10.0.0.1:5000',
      applicationName: 'psql',
      user: 'ci',
      access: 'read',
      readOnly: true,
    },
    stmt({ parameters: ['42', null, ''], protocol: 'extended', rule: 'ci-read-only', access: 'read', durationMs: 1.234 }),
    stmt({ decision: 'refused', kind: 'DROP TABLE', command: undefined, rows: undefined, objects: undefined, error: { sqlstate: '42501', message: 'no' }, durationMs: 0.001 }),
    stmt({ rows: 0, durationMs: 61_234.567 }),
    { ...base, type: 'session.end', durationMs: 2500, bytesIn: 10, bytesOut: 2 ** 40, statements: 3, reason: 'client disconnected' },
    { id: 'f', time: base.time, gateway: 'gw', type: 'auth.failure', clientAddress: '1.2.3.4:1', resource: 'shop', sqlstate: '28000', message: 'token expired' },
    { id: 'g', time: base.time, gateway: 'gw', type: 'auth.failure', clientAddress: '1.2.3.4:1', sqlstate: '08P01', message: 'no database' },
  ];

  it('maps each type to the message and back, through the binary encoding, unchanged', () => {
    for (const r of records) {
      const wire = AuditEvent.decode(AuditEvent.encode(eventFromRecord(r)!).finish());
      // JSON, since absent and undefined are the same there (and in the hash).
      expect(JSON.stringify(eventRecord(wire), Object.keys(r).sort())).toBe(JSON.stringify(r, Object.keys(r).sort()));
      expect(eventRecord(wire)).toEqual(r);
    }
  });

  it('reads what is no event as nothing, and wrong fields as missing', () => {
    expect(eventFromRecord(undefined)).toBeUndefined();
    expect(eventFromRecord([1])).toBeUndefined();
    expect(eventFromRecord({ ...base, type: 'nope' })).toBeUndefined();
    const e = eventFromRecord({ type: 'statement', id: 7, seq: -1, time: 'yesterday' })!;
    expect(e).toMatchObject({ id: '', seq: -1, time: undefined });
  });

  it('keeps durations to the microsecond and times to the millisecond', () => {
    for (const ms of [0, 0.001, 1.5, 999.999, 1000, 86_400_000.001]) expect(durationMs(durationOf(ms))).toBe(ms);
    expect(eventRecord(eventFromRecord(stmt({ time: '2024-05-01T12:00:00.123Z' }))!).time).toBe('2024-05-01T12:00:00.123Z');
  });
});
