// The NATS consumer against a backlog: 20,000 events wait in JetStream before
// it starts (the machine's NATS, a stream of the test's own). It must store
// each exactly once, hold no more messages at once than its bound, and leave
// JetStream nothing to deliver twice.
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { AuditBatch, StatementDecision, StatementProtocol, type AuditEvent } from '@warden/proto';
import { durationOf, timestampOf } from '@warden/proto/audit';
import { AckPolicy, connect, nanos, type NatsConnection } from 'nats';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditConsumer } from '../src/audit/consumer.js';
import { AuditStore } from '../src/audit/store.js';
import { openStorage, type Storage } from '../src/storage/open.js';
import { tempDir } from './helpers.js';

const NATS_URL = process.env.WARDEN_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
const SESSIONS = 100;
const PER_SESSION = 200;
const PER_MESSAGE = 10;
const MAX_HELD = 64;
const log = process.env.WARDEN_TEST_LOG ? pino({ level: 'debug' }, pino.destination(2)) : pino({ level: 'silent' });

function event(session: number, seq: number, t: number): AuditEvent {
  const sessionId = `backlog-${session}`;
  const common = { id: `${sessionId}:${seq}`, time: timestampOf(t), gateway: 'gw-test', sessionId, seq, identity: `id-${session % 4}`, resource: 'shop', agent: 'a' };
  if (seq === 0) return { ...common, event: { $case: 'sessionStart', value: { claims: { sub: 'ci' }, groups: [], clientAddress: '127.0.0.1:5000', readOnly: false } } };
  if (seq === PER_SESSION - 1) {
    return { ...common, event: { $case: 'sessionEnd', value: { duration: durationOf(1000), bytesIn: 1, bytesOut: 2, statements: PER_SESSION - 2, reason: 'client disconnected' } } };
  }
  return {
    ...common,
    event: {
      $case: 'statement',
      value: {
        sql: `SELECT * FROM orders WHERE id = ${seq}`, parameters: [], protocol: StatementProtocol.STATEMENT_PROTOCOL_SIMPLE,
        decision: StatementDecision.STATEMENT_DECISION_ALLOWED, objects: ['public.orders'], maskedColumns: [], command: 'SELECT', rows: 1, duration: durationOf(0.4),
      },
    },
  };
}

describe('audit consumer with a backlog in JetStream', () => {
  const run = randomBytes(4).toString('hex');
  const stream = { name: `WARDEN_AUDIT_TEST_${run}`, consumer: `warden-test-${run}`, subjects: `warden.audit-test-${run}.>` };
  const dir = tempDir();
  let nc: NatsConnection;
  let storage: Storage;

  beforeAll(async () => {
    nc = await connect({ servers: NATS_URL });
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: stream.name, subjects: [stream.subjects] });
    storage = await openStorage({ dataDir: dir.path });
  });

  afterAll(async () => {
    await (await nc?.jetstreamManager())?.streams.delete(stream.name).catch(() => {});
    await nc?.close();
    await storage?.close();
    dir.remove();
  });

  it('stores 20,000 waiting events exactly once, holding at most its bound of messages', { timeout: 180_000 }, async () => {
    // Sessions interleaved as a gateway records them, cut into messages of 10 events.
    const events: AuditEvent[] = [];
    const t0 = Date.now() - 60_000;
    for (let seq = 0; seq < PER_SESSION; seq++) for (let s = 0; s < SESSIONS; s++) events.push(event(s, seq, t0 + events.length));
    const js = nc.jetstream();
    const subject = `warden.audit-test-${run}.shop`;
    for (let i = 0; i < events.length; i += PER_MESSAGE * 50) {
      const acks = [];
      for (let j = i; j < Math.min(i + PER_MESSAGE * 50, events.length); j += PER_MESSAGE) {
        acks.push(js.publish(subject, AuditBatch.encode({ gatewayId: '', events: events.slice(j, j + PER_MESSAGE) }).finish()));
      }
      await Promise.all(acks);
    }

    const store = new AuditStore(storage.db);
    let transactions = 0;
    const consumer = new AuditConsumer({
      url: NATS_URL,
      ingest: (batch) => {
        transactions++;
        return store.ingest(batch);
      },
      log,
      stream,
      maxHeldMessages: MAX_HELD,
      batchSize: 256,
    });
    consumer.start();
    try {
      const deadline = Date.now() + 150_000;
      while (consumer.stored < events.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      expect(consumer.stored).toBe(events.length);
    } finally {
      await consumer.stop();
    }

    expect(consumer.peakHeld).toBeLessThanOrEqual(MAX_HELD);
    expect(consumer.peakHeld).toBeGreaterThan(MAX_HELD / 2); // the bound was what held it back
    expect(consumer.duplicates).toBe(0);
    expect(transactions).toBeLessThan(events.length / PER_MESSAGE); // many messages per transaction
    const info = await (await nc.jetstreamManager()).consumers.info(stream.name, stream.consumer);
    expect(info.num_redelivered).toBe(0);
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_pending).toBe(0);

    const counts = await sql<{ n: number; d: number }>`select count(*)::int as n, count(distinct id)::int as d from audit_events`.execute(storage.db);
    expect(counts.rows[0]).toEqual({ n: events.length, d: events.length });
    const v = await store.verify();
    expect(v.problems).toEqual([]);
    expect(v).toMatchObject({ ok: true, sessions: SESSIONS, events: events.length, warnings: [] });
  });

  it('gives a consumer made by an older version time to store before JetStream redelivers', async () => {
    const old = { ...stream, consumer: `${stream.consumer}-old` };
    const jsm = await nc.jetstreamManager();
    await jsm.consumers.add(old.name, { durable_name: old.consumer, ack_policy: AckPolicy.Explicit, filter_subject: old.subjects, ack_wait: nanos(15_000), max_ack_pending: 4096 });
    const consumer = new AuditConsumer({ url: NATS_URL, ingest: async () => ({ stored: 0, duplicates: 0, invalid: 0 }), log, stream: old });
    consumer.start();
    try {
      const deadline = Date.now() + 20_000;
      while ((await jsm.consumers.info(old.name, old.consumer)).config.ack_wait === nanos(15_000) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    } finally {
      await consumer.stop();
    }
    expect((await jsm.consumers.info(old.name, old.consumer)).config.ack_wait).toBe(nanos(30_000));
  });
});
