// Delivers audit events to NATS JetStream on warden.audit.<resource>.<identity>.
// A batch becomes one message per subject (up to MAX_MESSAGE_BYTES): an
// AuditBatch of its events, made of the outbox records as they were written.
// A JetStream publish costs its request, reply and timer, and one per event
// made the NATS path the gateway's largest cost.
// Nats-Msg-Id names the first and last event, so JetStream drops a batch
// re-sent as it was; re-sends cut differently are dropped by the control
// plane's insert, which is idempotent on the event id. A batch counts as
// delivered when JetStream acknowledged every message.
import { DEFAULT_STREAM_LIMITS, auditSubjectOf, ensureAuditStream, type AuditStreamLimits } from '@warden/proto/audit';
import { connect, type JetStreamClient, type NatsConnection } from 'nats';
import type { Logger } from 'pino';
import type { OutboxEntry } from './outbox.js';
import type { Transport } from './pump.js';

export interface JetStreamTransportOptions {
  /** nats://host:port, or several separated by commas. */
  url: string;
  /** Shown to the NATS server (monitoring). */
  clientName?: string;
  limits?: AuditStreamLimits;
  /** How long to wait for JetStream's acknowledgement of a message. */
  ackTimeoutMs?: number;
}

export class JetStreamTransport implements Transport {
  readonly name: string;
  private nc?: NatsConnection;
  private js?: JetStreamClient;
  private connecting?: Promise<JetStreamClient>;
  private closed = false;
  private streamReady = false;

  constructor(
    private readonly opts: JetStreamTransportOptions,
    private readonly log: Logger,
  ) {
    this.name = `NATS ${opts.url}`;
  }

  async send(batch: OutboxEntry[]): Promise<void> {
    const js = await this.client();
    const timeout = this.opts.ackTimeoutMs ?? 5_000;
    // Published back to back on one connection, so JetStream stores them in this order.
    const acks = messages(batch).map((m) => js.publish(m.subject, Buffer.concat(m.records, m.bytes), { msgID: messageId(m), timeout }));
    const results = await Promise.allSettled(acks);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      // The server may have come back without its store: check the stream again before the retry.
      if (/no responders|not found/i.test((failed.reason as Error)?.message ?? '')) this.streamReady = false;
      throw failed.reason;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const nc = this.nc;
    this.nc = undefined;
    this.js = undefined;
    await nc?.drain().catch(() => nc.close());
  }

  private client(): Promise<JetStreamClient> {
    if (this.js && this.nc && !this.nc.isClosed() && this.streamReady) return Promise.resolve(this.js);
    this.connecting ??= this.prepare().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async prepare(): Promise<JetStreamClient> {
    if (!this.nc || this.nc.isClosed()) await this.connect();
    if (!this.streamReady) {
      await ensureAuditStream(await this.nc!.jetstreamManager(), this.opts.limits ?? DEFAULT_STREAM_LIMITS);
      this.streamReady = true;
    }
    return this.js!;
  }

  private async connect(): Promise<void> {
    if (this.closed) throw new Error('the audit transport is closed');
    // After the first connection, the client reconnects by itself for as long as it takes.
    const nc = await connect({
      servers: this.opts.url.split(',').map((s) => s.trim()),
      name: this.opts.clientName ?? 'warden-gateway',
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      timeout: 3_000,
    });
    this.watch(nc);
    this.nc = nc;
    this.js = nc.jetstream();
    this.streamReady = false;
    this.log.info({ url: this.opts.url }, 'connected to NATS for audit events');
  }

  private watch(nc: NatsConnection): void {
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') this.log.warn({ server: s.data }, 'lost the NATS connection; audit events wait in the outbox');
        else if (s.type === 'reconnect') this.log.info({ server: s.data }, 'reconnected to NATS');
      }
    })().catch(() => {});
  }
}

/** Below NATS' default max_payload (1 MiB) with room for headers; an event is at most MAX_EVENT_BYTES. */
export const MAX_MESSAGE_BYTES = 512 << 10;

interface Message {
  subject: string;
  /** Outbox records: together, the AuditBatch the message carries. */
  records: Buffer[];
  bytes: number;
  first: string;
  last: string;
}

/** The batch as messages: the events of each subject in order, each message under MAX_MESSAGE_BYTES. */
export function messages(batch: OutboxEntry[]): Message[] {
  const open = new Map<string, Message>();
  const out: Message[] = [];
  for (const e of batch) {
    const { id, resource, identity, authFailure } = e.head;
    const subject = auditSubjectOf(resource, authFailure ? undefined : identity);
    const bytes = e.record.length;
    let m = open.get(subject);
    if (!m || m.bytes + bytes > MAX_MESSAGE_BYTES) {
      m = { subject, records: [], bytes: 0, first: id, last: id };
      open.set(subject, m);
      out.push(m);
    }
    m.records.push(e.record);
    m.bytes += bytes;
    m.last = id;
  }
  return out;
}

/** Nats-Msg-Id: the same events give the same id. */
export const messageId = (m: Message) => (m.first === m.last ? m.first : `${m.first}..${m.last}`);
