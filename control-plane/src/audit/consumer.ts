// Reads audit events from JetStream with the durable pull consumer
// `warden-control-plane` and stores them. A message is acknowledged only after
// the transaction holding its event committed, so a crash in between means a
// redelivery, which the idempotent ingest absorbs. NATS restarts are ridden
// out by the client's reconnects; anything worse (the stream or consumer gone,
// the connection closed) restarts the whole setup after a backoff.
import { setTimeout as sleep } from 'node:timers/promises';
import { AckPolicy, DeliverPolicy, connect, nanos, type Consumer, type JetStreamManager, type JsMsg, type NatsConnection } from 'nats';
import { AuditBatch, Backoff, type AuditEvent } from '@warden/proto';
import { AUDIT_CONSUMER, AUDIT_STREAM, AUDIT_SUBJECTS, DEFAULT_STREAM_LIMITS, ensureAuditStream, eventFromRecord } from '@warden/proto/audit';
import type { Logger } from 'pino';
import type { IngestResult } from './ingest.js';

export interface AuditConsumerOptions {
  url: string;
  /** Events that could not be read are undefined, to be counted and logged as invalid. */
  ingest: (events: Array<AuditEvent | undefined>) => Promise<IngestResult>;
  log: Logger;
  /** Events stored per transaction, about (whole messages are taken; at least one). Default 1024. */
  batchSize?: number;
  /**
   * Messages held at once, received and not yet acknowledged: what bounds the
   * consumer's memory whatever the backlog (gateways' messages are at most
   * 512 KiB, mostly far less). Default 256.
   */
  maxHeldMessages?: number;
  /** Copies JetStream keeps of each audit message (the stream's replicas); unset, an existing stream keeps its count. */
  streamReplicas?: number;
  /** Another stream and durable consumer than the gateways' (tests); the stream must exist. */
  stream?: { name: string; consumer: string; subjects: string };
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

/**
 * How long JetStream waits for the acknowledgement of a delivered message
 * before it delivers it again. It bounds how late events delivered to a
 * control plane that died (or to a pull request of one that closed) arrive
 * at another. Messages held longer, behind a slow store, are kept from
 * redelivery by telling JetStream they are being worked on (WORKING_EVERY_MS).
 */
const ACK_WAIT_MS = 30_000;
const WORKING_EVERY_MS = 10_000;

export class AuditConsumer {
  private readonly abort = new AbortController();
  private nc?: NatsConnection;
  private running?: Promise<void>;
  private stopCurrent?: () => void;
  private readonly stream: { name: string; consumer: string; subjects: string };
  readonly maxHeldMessages: number;
  /** Events stored since start, and events received again that were stored before (for tests and logs). */
  stored = 0;
  duplicates = 0;
  /** Messages held at once, at most since start: never above maxHeldMessages. */
  peakHeld = 0;

  constructor(private readonly opts: AuditConsumerOptions) {
    this.stream = opts.stream ?? { name: AUDIT_STREAM, consumer: AUDIT_CONSUMER, subjects: AUDIT_SUBJECTS };
    this.maxHeldMessages = Math.max(1, opts.maxHeldMessages ?? 256);
  }

  start(): void {
    this.running ??= this.loop();
  }

  /** Stops fetching, lets the messages in hand be stored and acknowledged (a few seconds at most), then disconnects. */
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
      if (!this.opts.stream) await ensureAuditStream(jsm, { ...DEFAULT_STREAM_LIMITS, replicas: this.opts.streamReplicas });
      await this.ensureConsumer(jsm);
      const consumer = await nc.jetstream().consumers.get(this.stream.name, this.stream.consumer);
      this.opts.log.info({ url: this.opts.url, stream: this.stream.name, consumer: this.stream.consumer }, 'consuming audit events from NATS');
      onHealthy();
      await this.drain(consumer);
    } finally {
      this.stopCurrent = undefined;
      // Acks are plain publishes: make sure the last ones left before closing.
      if (!nc.isClosed()) await Promise.race([nc.flush(), sleep(2_000)]).catch(() => {});
      await nc.close().catch(() => {});
    }
  }

  private async ensureConsumer(jsm: JetStreamManager): Promise<void> {
    const wanted = { ack_wait: nanos(ACK_WAIT_MS), max_ack_pending: 4096 };
    try {
      const info = await jsm.consumers.info(this.stream.name, this.stream.consumer);
      // Consumers made by earlier versions waited 15 s or 120 s.
      if (info.config.ack_wait !== wanted.ack_wait) await jsm.consumers.update(this.stream.name, this.stream.consumer, wanted);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await jsm.consumers.add(this.stream.name, {
        durable_name: this.stream.consumer,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subject: this.stream.subjects,
        // Room for several control planes, each holding at most maxHeldMessages.
        ...wanted,
      });
    }
  }

  /**
   * Fetches messages while fewer than maxHeldMessages are held, and stores
   * them as they come: while one transaction runs, the next messages queue
   * up and go into the following one, so a burst costs few transactions and
   * a lone message waits for none. A message is held from
   * its delivery until it is acknowledged (or refused) after its
   * transaction, so however long the backlog, memory stays bounded and
   * JetStream never sees a message wait long enough to deliver it again.
   */
  private async drain(consumer: Consumer): Promise<void> {
    const max = this.opts.batchSize ?? 1024;
    const queue: Received[] = [];
    let held = 0;
    let progress: (() => void) | undefined;
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
    let failed: unknown;
    let inStore: Received[] = [];
    // Messages delivered and not yet acknowledged: JetStream hears they are being worked on, so a slow store does not get them again.
    const working = setInterval(() => {
      for (const r of queue) r.msg.working();
      for (const r of inStore) r.msg.working();
    }, WORKING_EVERY_MS);
    const kick = () => {
      if (storing) return;
      storing = (async () => {
        while (queue.length > 0) {
          const batch = (inStore = take());
          await this.store(batch);
          inStore = [];
          held -= batch.length;
          progress?.();
        }
      })()
        .catch((err) => (failed = err))
        .finally(() => {
          storing = undefined;
          progress?.();
          if (queue.length > 0 && failed === undefined) kick();
        });
    };
    const signal = this.abort.signal;
    while (!signal.aborted && failed === undefined) {
      // Fetch again once half the room is free: one batch is stored while the next arrives.
      if (held > this.maxHeldMessages / 2) {
        await new Promise<void>((resolve) => (progress = resolve));
        progress = undefined;
        continue;
      }
      // Short pulls: a pull request lost while JetStream was still recovering after a restart is replaced within seconds.
      const messages = await consumer.fetch({ max_messages: this.maxHeldMessages - held, expires: 5_000 });
      this.stopCurrent = () => messages.stop();
      for await (const m of messages) {
        held++;
        this.peakHeld = Math.max(this.peakHeld, held);
        queue.push({ msg: m, events: messageEvents(m.data) });
        kick();
      }
      // The stream or consumer vanished (e.g. NATS came back without its store): start over, which recreates them.
      const err = await messages.closed();
      if (err) {
        await storing;
        throw err;
      }
    }
    await storing;
    clearInterval(working);
    if (failed !== undefined) throw failed;
  }

  private async store(batch: Received[]): Promise<void> {
    const events = batch.flatMap((r) => r.events);
    try {
      const r = await this.opts.ingest(events);
      this.stored += r.stored;
      this.duplicates += r.duplicates;
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
