// How a batch of audit events becomes JetStream messages.
import { AuditBatch } from '@warden/proto';
import { eventFromRecord, type StatementRecord } from '@warden/proto/audit';
import { describe, expect, it } from 'vitest';
import { MAX_MESSAGE_BYTES, messageId, messages } from '../src/audit/nats.js';
import { OutboxEntry } from '../src/audit/outbox.js';
import { encodeRecord, recordAt, recordHead } from '../src/audit/record.js';

function entry(seq: number, resource = 'shop', identity = 'ci', sql = 'SELECT 1'): OutboxEntry {
  const record: StatementRecord = {
    type: 'statement', id: `s-${resource}:${seq}`, time: new Date(0).toISOString(), gateway: 'g', sessionId: `s-${resource}`, seq,
    identity, resource, agent: 'a', sql, protocol: 'simple', decision: 'allowed', durationMs: 1,
  };
  const bytes = encodeRecord(eventFromRecord(record)!);
  const at = recordAt(bytes, 0)!;
  return new OutboxEntry(bytes, at.start, recordHead(bytes, at.start, at.end)!, { segment: 1, offset: seq });
}

const payload = (m: ReturnType<typeof messages>[number]) => Buffer.concat(m.records);

describe('JetStream messages of a batch', () => {
  it('one message per subject, its events in order as one AuditBatch', () => {
    const batch = [entry(0), entry(0, 'crm'), entry(1), entry(2), entry(1, 'crm')];
    const out = messages(batch);
    expect(out.map((m) => m.subject)).toEqual(['warden.audit.shop.ci', 'warden.audit.crm.ci']);
    expect(AuditBatch.decode(payload(out[0]!)).events.map((e) => e.id)).toEqual(['s-shop:0', 's-shop:1', 's-shop:2']);
    expect(out.map(messageId)).toEqual(['s-shop:0..s-shop:2', 's-crm:0..s-crm:1']);
    expect(messageId(messages([entry(7)])[0]!)).toBe('s-shop:7');
  });

  it('takes an auth failure\'s subject without an identity, and names that need escaping escaped', () => {
    const failure = encodeRecord({
      id: 'u1', time: undefined, gateway: 'g', sessionId: '', seq: 0, identity: 'ignored', resource: 'shop.eu', agent: '',
      event: { $case: 'authFailure', value: { clientAddress: '1.2.3.4:5', sqlstate: '28000', message: 'no' } },
    });
    const at = recordAt(failure, 0)!;
    const out = messages([new OutboxEntry(failure, at.start, recordHead(failure, at.start, at.end)!, { segment: 1, offset: 1 }), entry(0, 'shop', 'ci bot')]);
    expect(out.map((m) => m.subject)).toEqual(['warden.audit.shop=2Eeu.=', 'warden.audit.shop.ci=20bot']);
  });

  it(`splits a subject's events so no message exceeds ${MAX_MESSAGE_BYTES} bytes`, () => {
    const big = 'x'.repeat(100_000);
    const batch = Array.from({ length: 12 }, (_, i) => entry(i, 'shop', 'ci', big));
    const out = messages(batch);
    expect(out.length).toBeGreaterThan(2);
    for (const m of out) expect(payload(m).length).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    // The outbox's records themselves, in order (compared by identity: deep equality of large buffers is slow).
    const records = out.flatMap((m) => m.records);
    expect(records.length).toBe(batch.length);
    records.forEach((r, i) => expect(r).toBe(batch[i]!.record));
  });
});
