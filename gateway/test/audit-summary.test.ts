// One-line summaries, subject names and the event size limit.
import { describe, expect, it } from 'vitest';
import type { AuditEvent, StatementEvent } from '../src/audit/events.js';
import { MAX_EVENT_BYTES, fitEvent } from '../src/audit/limit.js';
import { auditSubject, subjectToken } from '../src/audit/stream.js';
import { summarize } from '../src/audit/summary.js';

const base = { id: 'x:1', time: '2024-05-01T12:00:00.000Z', gateway: 'gw', sessionId: 'x', seq: 1, identity: 'ci-deploy', resource: 'shop-prod', agent: 'a' };

const stmt = (over: Partial<StatementEvent>): StatementEvent => ({
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

describe('summarize', () => {
  it('gives the statement line of the issue', () => {
    expect(summarize(stmt({}))).toBe('ci-deploy SELECT FROM public.orders on shop-prod: 42 rows, 3 ms');
  });

  it('names the rule of a refusal and the error of a failure', () => {
    const refused = stmt({ kind: 'DROP TABLE', rows: undefined, decision: 'refused', rule: 'ci-read-only', durationMs: 0.2, error: { sqlstate: '42501', message: 'not allowed' } });
    expect(summarize(refused)).toBe('ci-deploy DROP TABLE public.orders on shop-prod: refused by rule ci-read-only, 0.2 ms');
    expect(summarize({ ...refused, rule: undefined })).toBe('ci-deploy DROP TABLE public.orders on shop-prod: refused (not allowed), 0.2 ms');
    const failed = stmt({ rows: undefined, error: { sqlstate: '42P01', message: 'relation "x" does not exist' }, durationMs: 1500 });
    expect(summarize(failed)).toBe('ci-deploy SELECT FROM public.orders on shop-prod: error 42P01 relation "x" does not exist, 1.5 s');
  });

  it('falls back to the first words of the SQL when the statement was not classified', () => {
    expect(summarize(stmt({ kind: undefined, command: undefined, objects: undefined, sql: 'vacuum analyze', rows: undefined }))).toBe(
      'ci-deploy VACUUM ANALYZE on shop-prod: done, 3 ms',
    );
  });

  it('summarizes session and authentication events', () => {
    const start: AuditEvent = { ...base, type: 'session.start', claims: {}, groups: [], clientAddress: '10.0.0.1:5000', applicationName: 'psql', readOnly: true };
    expect(summarize(start)).toBe('ci-deploy connected to shop-prod from 10.0.0.1:5000 (psql), read-only');
    const end: AuditEvent = { ...base, type: 'session.end', durationMs: 2500, bytesIn: 1, bytesOut: 2, statements: 1, reason: 'client disconnected' };
    expect(summarize(end)).toBe('ci-deploy left shop-prod after 1 statement, 2.5 s (client disconnected)');
    const fail: AuditEvent = { id: 'f', time: base.time, gateway: 'gw', type: 'auth.failure', clientAddress: '1.2.3.4:1', resource: 'shop', sqlstate: '28000', message: 'token expired' };
    expect(summarize(fail)).toBe('authentication failed from 1.2.3.4:1 for shop: 28000 token expired');
  });
});

describe('subjects', () => {
  it('keeps safe names and escapes what would split or widen a subject', () => {
    expect(subjectToken('ci-deploy')).toBe('ci-deploy');
    expect(subjectToken('a.b*c>d e')).toBe('a=2Eb=2Ac=3Ed=20e');
    expect(subjectToken('')).toBe('=');
    expect(subjectToken('a=b')).toBe('a=3Db');
    expect(auditSubject(stmt({}))).toBe('warden.audit.shop-prod.ci-deploy');
  });
});

describe('fitEvent', () => {
  it('leaves normal events alone and shortens huge ones below the limit, keeping who, what and the decision', () => {
    const small = stmt({});
    expect(fitEvent(small)).toBe(small);
    const huge = stmt({ sql: `INSERT INTO t VALUES ${'(1),'.repeat(200_000)}(1)`, sample: { columns: ['a'], rows: [['x'.repeat(100_000)]] } });
    const fitted = fitEvent(huge) as StatementEvent;
    expect(Buffer.byteLength(JSON.stringify(fitted))).toBeLessThanOrEqual(MAX_EVENT_BYTES);
    expect(fitted.sample).toBeUndefined();
    expect(fitted.sql).toMatch(/characters not recorded\]$/);
    expect(fitted).toMatchObject({ identity: 'ci-deploy', decision: 'allowed', id: 'x:1' });
  });
});
