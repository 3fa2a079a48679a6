// How a batch of audit events becomes JetStream messages.
import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../src/audit/events.js';
import { MAX_MESSAGE_BYTES, messageId, messages } from '../src/audit/nats.js';
import type { OutboxEntry } from '../src/audit/outbox.js';

function entry(seq: number, resource = 'shop', identity = 'ci', sql = 'SELECT 1'): OutboxEntry {
  const event = {
    type: 'statement', id: `s-${resource}:${seq}`, time: new Date(0).toISOString(), gateway: 'g', sessionId: `s-${resource}`, seq,
    identity, resource, agent: 'a', sql, protocol: 'simple', decision: 'allowed', durationMs: 1,
  } as AuditEvent;
  return { event, line: JSON.stringify(event), end: { segment: 1, offset: seq } };
}

describe('JetStream messages of a batch', () => {
  it('one message per subject, events in order as JSON lines', () => {
    const batch = [entry(0), entry(0, 'crm'), entry(1), entry(2), entry(1, 'crm')];
    const out = messages(batch);
    expect(out.map((m) => m.subject)).toEqual(['warden.audit.shop.ci', 'warden.audit.crm.ci']);
    expect(out[0]!.lines.map((l) => JSON.parse(l).id)).toEqual(['s-shop:0', 's-shop:1', 's-shop:2']);
    expect(out.map(messageId)).toEqual(['s-shop:0..s-shop:2', 's-crm:0..s-crm:1']);
    expect(messageId(messages([entry(7)])[0]!)).toBe('s-shop:7');
  });

  it(`splits a subject's events so no message exceeds ${MAX_MESSAGE_BYTES} bytes`, () => {
    const big = 'x'.repeat(100_000);
    const batch = Array.from({ length: 12 }, (_, i) => entry(i, 'shop', 'ci', big));
    const out = messages(batch);
    expect(out.length).toBeGreaterThan(2);
    for (const m of out) expect(Buffer.byteLength(m.lines.join('\n'))).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(out.flatMap((m) => m.lines)).toEqual(batch.map((e) => e.line));
  });
});
