// The audit outbox and its pump: order, resend after a crash, compaction,
// repair of a torn tail, the size bound, retries while the transport is down,
// and outboxes left by versions that wrote JSON lines.
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditBatch, AuditEvent } from '@warden/proto';
import { eventFromRecord, eventRecord, type StatementRecord } from '@warden/proto/audit';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Outbox, type OutboxEntry } from '../src/audit/outbox.js';
import { Pump, type Transport } from '../src/audit/pump.js';

const log = pino({ level: 'silent' });
const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'warden-outbox-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function record(seq: number, session = 's1'): StatementRecord {
  return {
    type: 'statement',
    id: `${session}:${seq}`,
    time: new Date(1_700_000_000_000 + seq).toISOString(),
    gateway: 'gw',
    sessionId: session,
    seq,
    identity: 'ci-deploy',
    resource: 'shop',
    agent: 'local',
    sql: `SELECT ${seq}`,
    protocol: 'simple',
    decision: 'allowed',
    durationMs: 1,
  };
}

const statement = (seq: number, session = 's1'): AuditEvent => eventFromRecord(record(seq, session))!;
const segments = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.pb'));

const ids = (entries: OutboxEntry[]) => entries.map((e) => e.event.id);

/** A transport that records what it got and fails while `down` is set. */
class FakeTransport implements Transport {
  readonly name = 'fake';
  down = false;
  attempts = 0;
  readonly delivered: string[] = [];
  async send(batch: OutboxEntry[]): Promise<void> {
    this.attempts++;
    if (this.down) throw new Error('transport down');
    this.delivered.push(...ids(batch));
  }
  async close(): Promise<void> {}
}

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('outbox', () => {
  it('reads events back in the order they were written, across segments', () => {
    const box = Outbox.open(tempDir(), log, { segmentBytes: 600 });
    for (let i = 0; i < 20; i++) expect(box.append(statement(i))).toBe(true);
    const all: string[] = [];
    for (let batch = box.read(3); batch.length > 0; batch = box.read(3)) {
      all.push(...ids(batch));
      box.ack(batch[batch.length - 1]!.end);
    }
    expect(all).toEqual(Array.from({ length: 20 }, (_, i) => `s1:${i}`));
    expect(box.pendingBytes()).toBe(0);
    box.close();
  });

  it('hands results on only after their events are written, one write for all of a turn', async () => {
    const dir = tempDir();
    const box = Outbox.open(dir, log);
    // A segment is an AuditBatch of the events written so far.
    const onDisk = () => AuditBatch.decode(readFileSync(join(dir, segments(dir)[0]!))).events.length;
    const seen: number[] = [];
    box.afterWrite(() => seen.push(onDisk())); // nothing waits: at once
    expect(seen).toEqual([0]);
    for (let i = 0; i < 3; i++) {
      box.append(statement(i, `s${i}`));
      box.afterWrite(() => seen.push(onDisk()));
    }
    expect(seen).toEqual([0]); // not before the write
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual([0, 3, 3, 3]); // after one write that holds all three, in order
    box.close();
  });

  it('after a crash between write and ack, sends the unacknowledged events again (and only those once the cursor is saved)', async () => {
    const dir = tempDir();
    const first = Outbox.open(dir, log, { fsyncMs: 10 });
    for (let i = 0; i < 10; i++) first.append(statement(i));
    const batch = first.read(4);
    first.ack(batch[3]!.end);
    // The cursor is saved with the periodic sync: a crash before it re-sends the acknowledged events too.
    expect(ids(Outbox.open(dir, log).read(100))).toHaveLength(10);
    await new Promise((r) => setTimeout(r, 50));
    // Sent but never acknowledged, then the process dies: no close(), no cursor update.
    expect(ids(first.read(3))).toEqual(['s1:4', 's1:5', 's1:6']);

    const second = Outbox.open(dir, log);
    expect(ids(second.read(100))).toEqual(['s1:4', 's1:5', 's1:6', 's1:7', 's1:8', 's1:9']);
    second.close();
  });

  it('deletes fully delivered segments, so the files stay small', () => {
    const dir = tempDir();
    const box = Outbox.open(dir, log, { segmentBytes: 1000, compactBytes: 1000 });
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 30; i++) box.append(statement(round * 30 + i));
      for (let batch = box.read(7); batch.length > 0; batch = box.read(7)) box.ack(batch[batch.length - 1]!.end);
    }
    const left = segments(dir);
    expect(left.length).toBe(1);
    expect(statSync(join(dir, left[0]!)).size).toBeLessThan(1000);
    expect(box.pendingBytes()).toBe(0);
    // Still usable, and a reopen finds nothing to resend.
    box.append(statement(1000));
    box.close();
    const again = Outbox.open(dir, log);
    expect(ids(again.read(10))).toEqual(['s1:1000']);
    again.close();
  });

  it('keeps undelivered segments while deleting delivered ones', () => {
    const dir = tempDir();
    const box = Outbox.open(dir, log, { segmentBytes: 500 });
    for (let i = 0; i < 40; i++) {
      box.append(statement(i));
      box.flush(); // one write per event, as when statements come in separate turns
    }
    const segmentsBefore = segments(dir).length;
    expect(segmentsBefore).toBeGreaterThan(3);
    const batch = box.read(25);
    box.ack(batch[24]!.end);
    box.close();
    const reopened = Outbox.open(dir, log, { segmentBytes: 500 });
    expect(segments(dir).length).toBeLessThan(segmentsBefore);
    expect(ids(reopened.read(100))).toEqual(Array.from({ length: 15 }, (_, i) => `s1:${25 + i}`));
    reopened.close();
  });

  it('drops a torn last record left by a crash mid-write, keeping every complete event', () => {
    const dir = tempDir();
    const box = Outbox.open(dir, log);
    box.append(statement(0));
    box.append(statement(1));
    box.close();
    const segment = segments(dir)[0]!;
    const whole = AuditBatch.encode({ gatewayId: '', events: [statement(2)] }).finish();
    appendFileSync(join(dir, segment), whole.subarray(0, whole.length - 5));
    const reopened = Outbox.open(dir, log);
    expect(ids(reopened.read(10))).toEqual(['s1:0', 's1:1']);
    reopened.append(statement(3));
    expect(ids(reopened.read(10))).toEqual(['s1:0', 's1:1', 's1:3']);
    expect(AuditBatch.decode(readFileSync(join(dir, segment))).events).toHaveLength(3);
    reopened.close();
  });

  it('skips a corrupt record, delivering the events around it', () => {
    const dir = tempDir();
    const box = Outbox.open(dir, log);
    box.append(statement(0));
    box.close();
    // Framed as a record, but no event: field 1 (id) says 5 bytes follow and none do.
    appendFileSync(join(dir, segments(dir)[0]!), Buffer.from([0x1a, 0x02, 0x0a, 0x05]));
    const reopened = Outbox.open(dir, log);
    reopened.append(statement(1));
    expect(ids(reopened.read(10))).toEqual(['s1:0', 's1:1']);
    reopened.close();
  });

  it('skips records whose event is no well-formed message with an id, reading the heads of the others', () => {
    const dir = tempDir();
    const box = Outbox.open(dir, log);
    box.append(statement(0));
    box.close();
    const file = join(dir, segments(dir)[0]!);
    // A key whose varint never ends; then an event with a seq but no id.
    appendFileSync(file, Buffer.from([0x1a, 0x03, 0xff, 0xff, 0xff]));
    appendFileSync(file, Buffer.from([0x1a, 0x02, 0x28, 0x01]));
    const reopened = Outbox.open(dir, log);
    reopened.append(statement(1, 's2'));
    const entries = reopened.read(10);
    expect(entries.map((e) => e.head)).toEqual([
      { id: 's1:0', resource: 'shop', identity: 'ci-deploy', authFailure: false },
      { id: 's2:1', resource: 'shop', identity: 'ci-deploy', authFailure: false },
    ]);
    expect(eventRecord(entries[1]!.event)).toEqual(record(1, 's2'));
    reopened.close();
  });

  it('decodes whole the records an earlier run left, skipping one damaged inside', () => {
    const dir = tempDir();
    const box = Outbox.open(dir, log);
    box.append(statement(0));
    box.close();
    // Sound on the outside (id "s1:9", then a statement of 2 bytes), but the statement is no message.
    const event = Buffer.from([0x0a, 0x04, ...Buffer.from('s1:9'), 0x52, 0x02, 0xff, 0xff]);
    appendFileSync(join(dir, segments(dir)[0]!), Buffer.from([0x1a, event.length, ...event]));
    const reopened = Outbox.open(dir, log);
    reopened.append(statement(1));
    expect(ids(reopened.read(10))).toEqual(['s1:0', 's1:1']);
    reopened.close();
  });

  it('takes over an outbox of JSON lines written by an older version: what was not delivered is sent, once', () => {
    const dir = tempDir();
    const line = (seq: number) => `${JSON.stringify(record(seq))}\n`;
    // Segment 1 delivered up to seq 2; segment 2 never delivered, ending in a torn line.
    const first = [0, 1, 2, 3, 4].map(line).join('');
    writeFileSync(join(dir, '0000000001.jsonl'), first);
    writeFileSync(join(dir, '0000000002.jsonl'), `${[5, 6].map(line).join('')}{"type":"statement","id":"s1:7","sq`);
    writeFileSync(join(dir, 'acked.json'), JSON.stringify({ segment: 1, offset: [0, 1, 2].map(line).join('').length }));
    const box = Outbox.open(dir, log);
    const entries = box.read(100);
    expect(ids(entries)).toEqual(['s1:3', 's1:4', 's1:5', 's1:6']);
    expect(entries.map((e) => eventRecord(e.event))).toEqual([3, 4, 5, 6].map((seq) => record(seq)));
    expect(readdirSync(dir).filter((f) => f.endsWith('.jsonl') || f === 'acked.json')).toEqual([]);
    box.ack(entries.at(-1)!.end);
    box.close();
    const again = Outbox.open(dir, log);
    expect(again.read(100)).toEqual([]);
    again.close();
  });

  it('refuses events beyond its size bound instead of filling the disk, and accepts again once delivered', () => {
    const box = Outbox.open(tempDir(), log, { maxBytes: 2000 });
    let accepted = 0;
    for (let i = 0; i < 50; i++) if (box.append(statement(i))) accepted++;
    expect(accepted).toBeGreaterThan(0);
    expect(accepted).toBeLessThan(50);
    expect(box.pendingBytes()).toBeLessThanOrEqual(2000);
    const batch = box.read(100);
    box.ack(batch[batch.length - 1]!.end);
    expect(box.append(statement(99))).toBe(true);
    box.close();
  });

  it('says it is blocked once nearly full or closed, so statements are refused rather than run unrecorded', () => {
    const box = Outbox.open(tempDir(), log, { maxBytes: 4000 });
    expect(box.blocked()).toBeUndefined();
    while (box.append(statement(box.pendingBytes()))) box.flush();
    expect(box.blocked()).toMatch(/^the audit outbox is full \(\d+ undelivered bytes, limit 4000\)/);
    const batch = box.read(1000);
    box.ack(batch[batch.length - 1]!.end);
    expect(box.blocked()).toBeUndefined();
    box.close();
    expect(box.blocked()).toBe('the audit outbox is closed');
  });

  it('keeps the last 5 % for the records of statements under way: records that may not use it are dropped there', () => {
    const box = Outbox.open(tempDir(), log, { maxBytes: 4000 });
    while (!box.blocked()) {
      expect(box.append(statement(box.pendingBytes()))).toBe(true);
      box.flush();
    }
    expect(box.append(statement(9_000), false)).toBe(false);
    expect(box.append(statement(9_001))).toBe(true);
    box.close();
  });

  it('lets only one process use an outbox directory', () => {
    const dir = tempDir();
    const box = Outbox.open(dir, log);
    // Our own pid in the lock file counts as stale (same process reopening after a simulated crash);
    // a live foreign pid does not.
    writeFileSync(join(dir, 'lock'), String(process.ppid));
    expect(() => Outbox.open(dir, log)).toThrow(/in use by process/);
    box.close();
  });
});

describe('pump', () => {
  it('delivers in order, retries while the transport is down, and reports when flushed', async () => {
    const box = Outbox.open(tempDir(), log);
    const transport = new FakeTransport();
    const pump = new Pump(box, transport, log, { batchSize: 4, backoff: { baseMs: 5, capMs: 20 } });
    pump.start();
    for (let i = 0; i < 10; i++) box.append(statement(i));
    await pump.flushed();
    transport.down = true;
    for (let i = 10; i < 20; i++) box.append(statement(i));
    await until(() => transport.attempts > 5);
    expect(box.pendingBytes()).toBeGreaterThan(0);
    transport.down = false;
    await pump.flushed();
    expect(transport.delivered).toEqual(Array.from({ length: 20 }, (_, i) => `s1:${i}`));
    await pump.stop(0);
    box.close();
  });

  it('keeps running when reading the outbox fails (EMFILE), and delivers once it reads again', async () => {
    const box = Outbox.open(tempDir(), log);
    const read = box.read.bind(box);
    let failures = 3;
    box.read = (max: number, maxBytes?: number) => {
      if (failures-- > 0) throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' });
      return read(max, maxBytes);
    };
    const transport = new FakeTransport();
    const pump = new Pump(box, transport, log, { backoff: { baseMs: 5, capMs: 20 } });
    pump.start();
    box.append(statement(0));
    await until(() => transport.delivered.length === 1);
    expect(transport.delivered).toEqual(['s1:0']);
    expect(failures).toBeLessThan(0);
    await pump.stop(0);
    box.close();
  });

  it('stops within its grace period while the transport is down, leaving the events for the next start', async () => {
    const dir = tempDir();
    const box = Outbox.open(dir, log);
    const transport = new FakeTransport();
    transport.down = true;
    const pump = new Pump(box, transport, log, { backoff: { baseMs: 5, capMs: 20 } });
    pump.start();
    box.append(statement(0));
    box.append(statement(1));
    const t0 = Date.now();
    await pump.stop(100);
    expect(Date.now() - t0).toBeLessThan(2000);
    box.close();

    const next = Outbox.open(dir, log);
    const up = new FakeTransport();
    const pump2 = new Pump(next, up, log);
    pump2.start();
    await pump2.flushed();
    expect(up.delivered).toEqual(['s1:0', 's1:1']);
    await pump2.stop(0);
    next.close();
  });
});
