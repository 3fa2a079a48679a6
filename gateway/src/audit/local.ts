// Delivers audit events straight to the control plane (IngestAudit), for
// installations without NATS such as local mode. The control plane stores a
// batch in one transaction with the same ingest code its NATS consumer uses,
// and answers only after the commit. The request is the AuditBatch made of
// the outbox's records as written, behind the gateway's id: never decoded
// and encoded again.
import { AuditBatch, ControlPlaneServiceClient, ControlPlaneServiceService, bearer, channelCredentials, grpcTarget, keepaliveOptions, type IngestAck } from '@warden/proto';
import type { OutboxEntry } from './outbox.js';
import type { Transport } from './pump.js';

export interface ControlPlaneTransportOptions {
  /** host:port of the control plane, or several separated by commas. */
  address: string;
  /** CA of the control plane's certificate; plaintext without it. */
  ca?: string;
  gatewayToken: string;
  gatewayId: string;
  timeoutMs?: number;
}

export class ControlPlaneTransport implements Transport {
  readonly name: string;
  private readonly client: ControlPlaneServiceClient;
  /** AuditBatch's field 1, gateway_id: the records follow it. */
  private readonly gatewayField: Buffer;

  constructor(private readonly opts: ControlPlaneTransportOptions) {
    this.name = `control plane ${opts.address}`;
    this.client = new ControlPlaneServiceClient(grpcTarget(opts.address), channelCredentials({ ca: opts.ca }), keepaliveOptions);
    this.gatewayField = Buffer.from(AuditBatch.encode({ gatewayId: opts.gatewayId, events: [] }).finish());
  }

  send(batch: OutboxEntry[]): Promise<void> {
    const request = Buffer.concat([this.gatewayField, ...batch.map((e) => e.record)]);
    const deadline = Date.now() + (this.opts.timeoutMs ?? 15_000);
    const rpc = ControlPlaneServiceService.ingestAudit;
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(rpc.path, (bytes: Buffer) => bytes, rpc.responseDeserialize, request, bearer(this.opts.gatewayToken), { deadline }, (err, ack?: IngestAck) => {
        if (err) return reject(err);
        // A control plane that does not know the events field sees none, and must not count as having stored them.
        const answered = ack ? ack.stored + ack.duplicates + ack.invalid : 0;
        if (answered !== batch.length) return reject(new Error(`the control plane accounted for ${answered} of ${batch.length} events; is it older than this gateway?`));
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    this.client.close();
  }
}
