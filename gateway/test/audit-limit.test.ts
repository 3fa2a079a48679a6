// The event size limit.
import { AuditEvent } from '@warden/proto';
import { eventFromRecord, eventRecord, type StatementRecord } from '@warden/proto/audit';
import { describe, expect, it } from 'vitest';
import { MAX_EVENT_BYTES, encodeEvent, fitEvent } from '../src/audit/limit.js';

const stmt = (over: Partial<StatementRecord>) =>
  eventFromRecord({
    id: 'x:1', time: '2024-05-01T12:00:00.000Z', gateway: 'gw', sessionId: 'x', seq: 1, identity: 'ci-deploy', resource: 'shop-prod', agent: 'a',
    type: 'statement', sql: 'SELECT * FROM public.orders', protocol: 'simple', decision: 'allowed', kind: 'SELECT', objects: ['public.orders'], command: 'SELECT', rows: 42, durationMs: 3,
    ...over,
  })!;

describe('fitEvent', () => {
  it('leaves normal events alone and shortens huge ones below the limit, keeping who, what and the decision', () => {
    const small = stmt({});
    expect(fitEvent(small)).toBe(small);
    const huge = stmt({ sql: `INSERT INTO t VALUES ${'(1),'.repeat(200_000)}(1)`, parameters: ['x'.repeat(100_000), null] });
    const fitted = fitEvent(huge);
    expect(AuditEvent.encode(fitted).finish().length).toBeLessThanOrEqual(MAX_EVENT_BYTES);
    expect(Buffer.from(encodeEvent(huge)).equals(AuditEvent.encode(fitted).finish())).toBe(true);
    const r = eventRecord(fitted) as StatementRecord;
    expect(r.parameters).toBeUndefined();
    expect(r.sql).toMatch(/characters not recorded\]$/);
    expect(r).toMatchObject({ identity: 'ci-deploy', decision: 'allowed', id: 'x:1' });
  });

  it('shortens long parameters before dropping them', () => {
    const event = stmt({ sql: 'x'.repeat(MAX_EVENT_BYTES - 1000), parameters: ['y'.repeat(5000), null, 'short'] });
    const r = eventRecord(fitEvent(event)) as StatementRecord;
    expect(r.parameters).toEqual([`${'y'.repeat(64)}…`, null, 'short']);
    expect(r.sql).toBe('x'.repeat(MAX_EVENT_BYTES - 1000));
  });
});
