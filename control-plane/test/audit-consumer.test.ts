// What the control plane reads from a JetStream message: an AuditBatch, or
// the JSON lines of gateways from before it, which may still wait in the stream.
import { AuditBatch } from '@warden/proto';
import { eventFromRecord, eventRecord, type AuditRecord } from '@warden/proto/audit';
import { describe, expect, it } from 'vitest';
import { messageEvents } from '../src/audit/consumer.js';

const record = (seq: number): AuditRecord => ({
  type: 'statement', id: `s:${seq}`, time: '2024-05-01T12:00:00.000Z', gateway: 'gw', sessionId: 's', seq,
  identity: 'ci', resource: 'shop', agent: 'a', sql: `SELECT ${seq}`, protocol: 'simple', decision: 'allowed', durationMs: 0.5,
});

describe('audit messages from NATS', () => {
  it('reads an AuditBatch', () => {
    const data = AuditBatch.encode({ gatewayId: '', events: [0, 1, 2].map((seq) => eventFromRecord(record(seq))!) }).finish();
    expect(messageEvents(data).map((e) => eventRecord(e!))).toEqual([0, 1, 2].map(record));
  });

  it('reads JSON lines of older gateways, and marks what is unreadable', () => {
    const data = Buffer.from([JSON.stringify(record(0)), 'not json', JSON.stringify(record(1))].join('\n'));
    const events = messageEvents(data);
    expect(events.map((e) => e && eventRecord(e))).toEqual([record(0), undefined, record(1)]);
  });

  it('marks a message that is no AuditBatch as one unreadable event', () => {
    expect(messageEvents(Buffer.from([0x1a, 0x05, 0x0a]))).toEqual([undefined]);
  });
});
