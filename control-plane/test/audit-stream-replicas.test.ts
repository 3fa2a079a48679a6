// The audit stream's replica count on a real NATS of the test's own: set when
// asked (warden control-plane --audit-stream-replicas), kept by an ensure that
// does not say (a gateway's), changed again when asked. A standalone server
// records the count as configured; the cluster that holds three copies is
// test/scale-out.test.ts's.
import { connect, type NatsConnection } from 'nats';
import { AUDIT_STREAM, DEFAULT_STREAM_LIMITS, ensureAuditStream } from '@warden/proto/audit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNats, type TestNats } from './nats-server.js';

let nats: TestNats;
let nc: NatsConnection;

beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
});

afterAll(async () => {
  await nc?.close();
  await nats?.remove();
});

describe('audit stream replicas', () => {
  it('sets the count when asked and keeps it otherwise', async () => {
    const jsm = await nc.jetstreamManager();
    const replicas = async () => (await jsm.streams.info(AUDIT_STREAM)).config.num_replicas;
    await ensureAuditStream(jsm);
    expect(await replicas()).toBe(1);
    await ensureAuditStream(jsm, { ...DEFAULT_STREAM_LIMITS, replicas: 3 });
    expect(await replicas()).toBe(3);
    await ensureAuditStream(jsm, DEFAULT_STREAM_LIMITS);
    expect(await replicas()).toBe(3);
    await ensureAuditStream(jsm, { ...DEFAULT_STREAM_LIMITS, replicas: 1 });
    expect(await replicas()).toBe(1);
  });
});
