// eventBody writes the stored, hashed text of the common events without the
// generic canonical JSON; it must be the same text, or chains stored before
// would no longer verify and new ones would differ from what verify expects.
import { StatementDecision, StatementProtocol, type AuditEvent } from '@warden/proto';
import { durationOf, eventFromRecord, eventRecord, timestampOf, type AuditRecord } from '@warden/proto/audit';
import { describe, expect, it } from 'vitest';
import { canonicalJson, eventBody } from '../src/audit/chain.js';

const base = { id: 's:1', time: timestampOf(Date.parse('2024-05-01T12:00:00.123Z')), gateway: 'gw "1"', sessionId: 's', seq: 1, identity: 'ci\u00e9', resource: 'shop', agent: 'a' };

const full: AuditEvent[] = [
  {
    ...base,
    event: {
      $case: 'statement',
      value: {
        sql: 'SELECT "x" FROM t WHERE a = $1 -- \u2603 \\ \n', parameters: [{ value: 'v' }, { value: undefined }], protocol: StatementProtocol.STATEMENT_PROTOCOL_EXTENDED,
        decision: StatementDecision.STATEMENT_DECISION_REFUSED, rule: 'r', access: 'read', kind: 'SELECT', objects: ['public.t'], command: 'SELECT', rows: 3,
        duration: durationOf(1.234567), error: { sqlstate: '42501', message: 'no' }, maskedColumns: ['public.t.c'], approvalId: 'ap-1', skipped: true,
      },
    },
  },
  {
    ...base,
    seq: 0,
    event: {
      $case: 'sessionStart',
      value: { claims: { sub: 'x', b: { z: [1, { y: null, a: 'q' }], a: true }, A: 1.5 }, groups: ['g2', 'g1'], clientAddress: '127.0.0.1:1', applicationName: 'psql', user: 'u', access: 'write', readOnly: true },
    },
  },
  { ...base, event: { $case: 'sessionEnd', value: { duration: durationOf(10), bytesIn: 1, bytesOut: 2, statements: 3, reason: 'client disconnected' } } },
  { ...base, sessionId: '', seq: 0, identity: '', event: { $case: 'authFailure', value: { clientAddress: '1.2.3.4:5', sqlstate: '28000', message: 'bad token' } } },
  {
    ...base,
    event: {
      $case: 'approval',
      value: { approvalId: 'ap', state: 'approved', rule: 'r', sql: 'DROP TABLE t', why: 'w', decisions: [{ approver: 'p', groups: ['g'], approve: true, reason: 'ok', at: '2024-05-01T12:00:00Z' }] },
    },
  },
];

const minimal: AuditEvent[] = [
  {
    ...base,
    event: {
      $case: 'statement',
      value: { sql: '', parameters: [], protocol: StatementProtocol.STATEMENT_PROTOCOL_UNSPECIFIED, decision: StatementDecision.STATEMENT_DECISION_UNSPECIFIED, objects: [], maskedColumns: [] },
    },
  },
  { ...base, event: { $case: 'sessionStart', value: { claims: undefined, groups: [], clientAddress: '', readOnly: false } } },
  { ...base, event: { $case: 'sessionEnd', value: { duration: undefined, bytesIn: 0, bytesOut: 0, statements: 0, reason: '' } } },
];

describe('the stored body of an event', () => {
  it('is the canonical JSON of its record, for every kind of event, with every field and with none', () => {
    for (const e of [...full, ...minimal]) expect(eventBody(e)).toBe(canonicalJson(eventRecord(e)));
  });

  it('holds every field of the record (a field added to the record must be added to eventBody)', () => {
    for (const e of full) {
      const written = Object.keys(JSON.parse(eventBody(e)) as object).sort();
      expect(written).toEqual(Object.keys(eventRecord(e)).sort());
    }
  });

  it('orders claims whose keys JSON.stringify would not keep in insertion order', () => {
    const claims = { '10': 'a', '9': 'b', x: { '2': 1, '1': 2 } };
    const e: AuditEvent = { ...base, seq: 0, event: { $case: 'sessionStart', value: { claims, groups: [], clientAddress: '', readOnly: false } } };
    expect(eventBody(e)).toBe(canonicalJson(eventRecord(e)));
    expect(eventBody(e)).toContain('"claims":{"10":"a","9":"b","x":{"1":2,"2":1}}');
  });

  it('is what earlier versions stored for an event read back from its JSON form', () => {
    const record: AuditRecord = {
      type: 'statement', id: 'x:2', time: '2024-05-01T12:00:00.000Z', gateway: 'gw', sessionId: 'x', seq: 2, identity: 'ci', resource: 'shop', agent: 'a',
      sql: 'SELECT 1', protocol: 'simple', decision: 'allowed', command: 'SELECT', rows: 1, durationMs: 0.5,
    };
    expect(eventBody(eventFromRecord(record)!)).toBe(canonicalJson(record));
  });
});
