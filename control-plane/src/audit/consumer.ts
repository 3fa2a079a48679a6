// Reads audit events from JetStream with the durable pull consumer
// `warden-control-plane` and stores them. A message is acknowledged only after
// the transaction holding its event committed, so a crash in between means a
// redelivery, which the idempotent ingest absorbs. NATS restarts are ridden
// out by the client's reconnects; anything worse (the stream or consumer gone,
// the connection closed) restarts the whole setup after a backoff.
import { setTimeout as sleep } from 'node:timers/promises';
import { AckPolicy, ConsumerEvents, DeliverPolicy, connect, nanos, type JsMsg, type NatsConnection } from 'nats';
import { AuditBatch, Backoff, type AuditEvent } from '@warden/proto';
import { AUDIT_CONSUMER, AUDIT_STREAM, AUDIT_SUBJECTS, ensureAuditStream, eventFromRecord } from '@warden/proto/audit';
import type { Logger } from 'pino';
import type { IngestResult } from './ingest.js';

export interface AuditConsumerOptions {
  url: string;
  /** Events that could not be read are undefined, to be counted and logged as invalid. */
  ingest: (events: Array<AuditEvent | undefined>) => Promise<IngestResult>;
  log: Logger;
  /** Events stored per transaction, about (whole messages are taken; at least one). Default 1024. */
  batchSize?: number;
}

/**
 * The events of a message: an AuditBatch in the protobuf binary encoding.
 * Gateways of versions before it wrote JSON lines, one event each; such
 * messages may still wait in the stream, so they are read too ('{' starts no
 * AuditBatch: its first byte is a field tag, 0x0a or 0x1a).
 */
export function messageEvents(data: Uint8Array): Array<AuditEvent | undefined> {
  if (data[0] === 0x7b) {
    return Buffer.from(data.buffer, data.byteOffset, data.byteLength)
      .toString('utf8')
      .split('\n')
      .map((line) => {
        try {
          return eventFromRecord(JSON.parse(line));
        } catch {
          return undefined;
        }
      });
  }
  try {
    return AuditBatch.decode(data).events;
  } catch {
    return [undefined];
  }
}

const isNotFound = (err: unknown) => /not found/i.test((err as Error)?.message ?? '');

export class AuditConsumer {
  private readonly abort = new AbortController();
  private nc?: NatsConnection;
  private running?: Promise<void>;
  private stopCurrent?: () => void;
  /** Events stored since start (for tests and logs). */
  stored = 0;

  constructor(private readonly opts: AuditConsumerOptions) {}

  start(): void {
    this.running ??= this.loop();
  }

  /** Stops pulling, lets the batch in hand be stored and acknowledged (a few seconds at most), then disconnects. */
  async stop(): Promise<void> {
    this.abort.abort();
    this.stopCurrent?.();
    await Promise.race([this.running, sleep(5_000)]);
    await this.nc?.close().catch(() => {});
    await this.running;
  }

  private async loop(): Promise<void> {
    const { log } = this.opts;
    const backoff = new Backoff({ baseMs: 250, capMs: 5_000 });
    while (!this.abort.signal.aborted) {
      try {
        await this.session(() => backoff.reset());
      } catch (err) {
        if (this.abort.signal.aborted) break;
        if (backoff.attempt === 0) log.warn({ err: (err as Error).message, url: this.opts.url }, 'audit consumer interrupted; reconnecting');
      }
      if (this.abort.signal.aborted) break;
      await backoff.wait(this.abort.signal);
    }
  }

  /** One connection's worth of consuming; returns or throws when it must be set up again. */
  private async session(onHealthy: () => void): Promise<void> {
    const nc = await connect({
      servers: this.opts.url.split(',').map((s) => s.trim()),
      name: 'warden-control-plane',
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      timeout: 3_000,
    });
    this.nc = nc;
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') this.opts.log.warn({ server: s.data }, 'lost the NATS connection; audit events wait in JetStream');
        else if (s.type === 'reconnect') this.opts.log.info({ server: s.data }, 'reconnected to NATS');
      }
    })().catch(() => {});
    try {
      const jsm = await nc.jetstreamManager();
      await ensureAuditStream(jsm);
      await this.ensureConsumer(jsm);
      const consumer = await nc.jetstream().consumers.get(AUDIT_STREAM, AUDIT_CONSUMER);
      // Short pulls: a pull request lost while JetStream was still recovering after a restart is replaced within seconds.
      const messages = await consumer.consume({ max_messages: 256, expires: 5_000 });
      this.stopCurrent = () => messages.stop();
      this.opts.log.info({ url: this.opts.url, stream: AUDIT_STREAM, consumer: AUDIT_CONSUMER }, 'consuming audit events from NATS');
      onHealthy();
      void this.watch(messages.status(), () => messages.stop());
      await this.drain(messages);
    } finally {
      this.stopCurrent = undefined;
      // Acks are plain publishes: make sure the last ones left before closing.
      if (!nc.isClosed()) await Promise.race([nc.flush(), sleep(2_000)]).catch(() => {});
      await nc.close().catch(() => {});
    }
  }

  private async ensureConsumer(jsm: Awaited<ReturnType<NatsConnection['jetstreamManager']>>): Promise<void> {
    try {
      await jsm.consumers.info(AUDIT_STREAM, AUDIT_CONSUMER);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await jsm.consumers.add(AUDIT_STREAM, {
        durable_name: AUDIT_CONSUMER,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subject: AUDIT_SUBJECTS,
        // Messages the server sent to a consumer that then stopped come back after this;
        // a batch transaction takes far less.
        ack_wait: nanos(15_000),
        max_ack_pending: 4096,
      });
    }
  }

  /** The stream or consumer vanished (e.g. NATS came back without its store): start over, which recreates them. */
  private async watch(status: Promise<AsyncIterable<{ type: string }>>, restart: () => void): Promise<void> {
    try {
      for await (const s of await status) {
        if (s.type === ConsumerEvents.ConsumerNotFound || s.type === ConsumerEvents.StreamNotFound || s.type === ConsumerEvents.ConsumerDeleted) {
          this.opts.log.warn({ event: s.type }, 'the audit stream or consumer disappeared; setting it up again');
          restart();
          return;
        }
      }
    } catch {
      // The iterator ends with the messages.
    }
  }

  /**
   * Stores messages as they come: while one transaction runs, the next
   * messages queue up and go into the following one, so a burst costs few
   * transactions and a lone message waits for none.
   */
  private async drain(messages: AsyncIterable<JsMsg>): Promise<void> {
    const max = this.opts.batchSize ?? 1024;
    const queue: Received[] = [];
    // Messages up to about `max` events.
    const take = () => {
      let n = 0;
      for (let events = 0; n < queue.length; n++) {
        events += queue[n]!.events.length;
        if (n > 0 && events > max) break;
      }
      return queue.splice(0, n);
    };
    let storing: Promise<void> | undefined;
    const kick = () => {
      if (storing) return;
      storing = (async () => {
        while (queue.length > 0) await this.store(take());
      })().finally(() => {
        storing = undefined;
        if (queue.length > 0) kick();
      });
    };
    for await (const m of messages) {
      queue.push({ msg: m, events: messageEvents(m.data) });
      kick();
    }
    await storing;
  }

  private async store(batch: Received[]): Promise<void> {
    const events = batch.flatMap((r) => r.events);
    try {
      const r = await this.opts.ingest(events);
      this.stored += r.stored;
    } catch (err) {
      // Not stored: let JetStream deliver them again a little later.
      this.opts.log.warn({ err, events: events.length }, 'storing audit events failed; they will be redelivered');
      for (const r of batch) r.msg.nak(2_000);
      await sleep(1_000, undefined, { signal: this.abort.signal }).catch(() => {});
      return;
    }
    for (const r of batch) r.msg.ack();
  }
}

interface Received {
  msg: JsMsg;
  events: Array<AuditEvent | undefined>;
}
