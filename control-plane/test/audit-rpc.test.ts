// Audit events without NATS: the gateway's sink delivers to the control
// plane's IngestAudit, keeps events while the control plane is down, and
// sends them when it is back. Only the gateway token may ingest.
import { status } from '@grpc/grpc-js';
import { ControlPlaneServiceClient, bearer, channelCredentials, type AuditEvent } from '@warden/proto';
import { eventFromRecord } from '@warden/proto/audit';
import { createAuditSink } from '@warden/gateway';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../src/server/start.js';
import { grpcError, tempDir, unary } from './helpers.js';

const log = pino({ level: 'silent' });

const event = (seq: number): AuditEvent => eventFromRecord({
  type: 'statement',
  id: `rpc:${seq}`,
  time: new Date().toISOString(),
  gateway: 'gw',
  sessionId: 'rpc',
  seq,
  identity: 'ci-deploy',
  resource: 'shop',
  agent: 'local',
  sql: `SELECT ${seq}`,
  protocol: 'extended',
  decision: 'allowed',
  durationMs: 1,
})!;

describe('IngestAudit', () => {
  let cp: ControlPlane | undefined;
  let options: ControlPlaneOptions;
  const dirs = [tempDir(), tempDir('warden-gw-')];

  beforeAll(async () => {
    options = { listen: '127.0.0.1:0', dataDir: dirs[0]!.path, logger: log };
    cp = await startControlPlane(options);
    options.listen = cp.address; // restarts come back on the same address
  });

  afterAll(async () => {
    await cp?.close();
    for (const d of dirs) d.remove();
  });

  it('takes the gateway token only', async () => {
    const client = new ControlPlaneServiceClient(cp!.address, channelCredentials());
    const req = { gatewayId: 'gw', events: [event(100)] };
    const err = await grpcError(unary((cb) => client.ingestAudit(req, bearer(cp!.adminToken), cb)));
    expect(err.code).toBe(status.PERMISSION_DENIED);
    const ack = await unary((cb) => client.ingestAudit({ ...req, events: [...req.events, { ...event(101), id: '' }] }, bearer(cp!.gatewayToken), cb));
    expect(ack).toEqual({ stored: 1, duplicates: 0, invalid: 1 });
    // What an older gateway sends (events as JSON, in a field this version does not read) is refused, not taken as nothing.
    const empty = await grpcError(unary((cb) => client.ingestAudit({ gatewayId: 'gw', events: [] }, bearer(cp!.gatewayToken), cb)));
    expect(empty.code).toBe(status.FAILED_PRECONDITION);
    client.close();
  });

  it('keeps events in the outbox while the control plane is down and delivers them after', { timeout: 60_000 }, async () => {
    const sink = createAuditSink({
      gatewayId: 'gw',
      dataDir: dirs[1]!.path,
      controlPlane: { address: cp!.address, token: cp!.gatewayToken },
      log,
    });
    for (let seq = 0; seq < 20; seq++) sink.publish(event(seq));
    await sink.flushed();
    await cp!.close();
    cp = undefined;
    for (let seq = 20; seq < 60; seq++) sink.publish(event(seq));
    await new Promise((r) => setTimeout(r, 500));
    cp = await startControlPlane(options);
    await sink.flushed();
    await sink.close();
    const detail = await cp.audit.getSession('rpc');
    const seqs = detail!.events.map((b) => JSON.parse(b).seq as number);
    expect(seqs).toEqual([...Array.from({ length: 60 }, (_, i) => i), 100]);
    expect(detail!.session).toMatchObject({ statements: 61, events: 61, linkedSeq: 59 });
  });
});
