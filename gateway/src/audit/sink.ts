// The gateway's AuditSink: every event is logged as a one-line summary
// (statements at debug level), written to the durable outbox, and delivered from there by a pump, to NATS
// JetStream when a NATS URL is configured, else to the control plane's
// IngestAudit RPC.
import { join } from 'node:path';
import { StatementDecision } from '@warden/proto';
import { summarize } from '@warden/proto/audit';
import type { Logger } from 'pino';
import type { AuditEvent, AuditSink } from './events.js';
import { IntentJournal } from './intents.js';
import { ControlPlaneTransport } from './local.js';
import { JetStreamTransport } from './nats.js';
import { DEFAULT_OUTBOX_LIMITS, Outbox, type OutboxLimits } from './outbox.js';
import { Pump, type Transport } from './pump.js';

export interface AuditSinkOptions {
  gatewayId: string;
  /** The gateway's data directory; the outbox lives in `<dataDir>/audit-outbox`. */
  dataDir: string;
  /** JetStream transport when set. */
  natsUrl?: string;
  /** Otherwise events go to the control plane, with the gateway token. */
  controlPlane?: { address: string; ca?: string; token: string };
  log: Logger;
  outbox?: Partial<OutboxLimits>;
  /** How long close() keeps delivering before leaving the rest for the next start. Default 3 s. */
  closeGraceMs?: number;
}

export interface ClosableAuditSink extends AuditSink {
  /** Resolves once everything published so far is delivered. */
  flushed(): Promise<void>;
  /** For metrics: the outbox's undelivered bytes and the age of its oldest undelivered event (ms). */
  stats(): { pendingBytes: number; oldestPendingMs?: number };
  close(): Promise<void>;
}

export function createAuditSink(opts: AuditSinkOptions): ClosableAuditSink {
  const log = opts.log.child({ component: 'audit' });
  let transport: Transport;
  if (opts.natsUrl) {
    transport = new JetStreamTransport({ url: opts.natsUrl, clientName: `warden-gateway ${opts.gatewayId}` }, log);
  } else if (opts.controlPlane) {
    transport = new ControlPlaneTransport({
      address: opts.controlPlane.address,
      ca: opts.controlPlane.ca,
      gatewayToken: opts.controlPlane.token,
      gatewayId: opts.gatewayId,
    });
  } else {
    throw new Error('the audit sink needs a NATS URL or a control plane to deliver to');
  }
  const outbox = Outbox.open(join(opts.dataDir, 'audit-outbox'), log, opts.outbox);
  // Before the pump starts: what a run that stopped left unanswered goes out first.
  const journal = IntentJournal.open(outbox.dir, log, (records) => outbox.keep(records));
  const syncJournal = setInterval(() => journal.sync(), opts.outbox?.fsyncMs ?? DEFAULT_OUTBOX_LIMITS.fsyncMs);
  syncJournal.unref();
  // The journal is cut once every record settled so far is written (writes that callbacks cause included).
  let cutting = false;
  const cutWhenWritten = (): void =>
    outbox.afterWrite(() => {
      if (outbox.writing) return cutWhenWritten();
      cutting = false;
      journal.cut();
    });
  const pending = outbox.pendingBytes();
  if (pending > 0) log.info({ pendingBytes: pending, transport: transport.name }, 'sending audit events left from the previous run');
  const pump = new Pump(outbox, transport, log);
  pump.start();
  let closing: Promise<void> | undefined;
  /** What blocked() said last. */
  let lastBlocked: string | undefined;

  return {
    publish(event: AuditEvent): void {
      try {
        // One readable line per event in the gateway log (statements at debug:
        // at info, the line cost about as much as the rest of the audit path);
        // the full event goes to the outbox.
        const c = event.event?.$case;
        const level = c === 'statement' ? 'debug' : 'info';
        if (log.isLevelEnabled(level)) {
          const scoped = c !== 'authFailure';
          log[level]({ session: scoped ? event.sessionId : undefined, seq: scoped ? event.seq : undefined }, summarize(event));
        }
        // A refused statement did not run: its record may not take the room kept for those that did.
        const refused = event.event?.$case === 'statement' && event.event.value.decision === StatementDecision.STATEMENT_DECISION_REFUSED;
        outbox.append(event, !refused);
        if (c === 'sessionStart') journal.opened(event);
        else if (c !== 'authFailure') journal.recorded(event);
      } catch (err) {
        // The hot path must never see an audit failure; the outbox already logs lost events loudly.
        log.error({ err, id: event.id }, 'could not record an audit event');
      }
    },
    intend(events: AuditEvent[]): boolean {
      const ok = journal.intend(events);
      if (journal.due && !cutting) {
        cutting = true;
        cutWhenWritten();
      }
      return ok;
    },
    afterWrite: (fn) => outbox.afterWrite(fn),
    blocked(): string | undefined {
      journal.retry();
      const why = journal.writeError ? `writing the statement journal failed (${journal.writeError})` : outbox.blocked();
      // Each change of cause logged once (not each new byte count), at once (error lines are not buffered): the alert is the first refusal.
      if (causeOf(why) !== causeOf(lastBlocked)) {
        if (why) log.error({ dir: outbox.dir }, `AUDIT CANNOT RECORD: ${why}; statements are refused until it can`);
        else log.warn({ dir: outbox.dir }, 'audit records again; statements run again');
        lastBlocked = why;
      }
      return why;
    },
    flushed: () => pump.flushed(),
    stats: () => outbox.stats(),
    close: () =>
      (closing ??= (async () => {
        await pump.stop(opts.closeGraceMs ?? 3_000);
        clearInterval(syncJournal);
        outbox.close();
        journal.close();
        await transport.close();
      })()),
  };
}

/** What a reason of blocked() is about, without the figures in its parentheses. */
const causeOf = (why: string | undefined): string | undefined => why?.split(' (')[0];
