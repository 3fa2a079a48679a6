// The audit RPCs of ControlPlaneService: IngestAudit for gateways without
// NATS (gateway token), and the admin reads, verify and retention.
import { status, type Metadata, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import type { AuditEvent, AuditSession, ControlPlaneServiceServer, VerifyReport } from '@warden/proto';
import { AUDIT_EVENT_TYPES, eventFromRecord } from '@warden/proto/audit';
import type { Logger } from 'pino';
import type { SessionSummary } from '../audit/query.js';
import type { AuditStore } from '../audit/store.js';
import type { Authenticator } from './auth.js';
import { StatusError, toStatus } from './status.js';

export type AuditMethods = Pick<
  ControlPlaneServiceServer,
  'ingestAudit' | 'listSessions' | 'getSession' | 'searchAudit' | 'verifyAudit' | 'getRetention' | 'setRetention'
>;

const invalid = (msg: string) => new StatusError(status.INVALID_ARGUMENT, msg);

/** An optional ISO time filter, checked so a typo is an error rather than an empty answer. */
function time(value: string, name: string): string | undefined {
  if (!value) return undefined;
  if (Number.isNaN(Date.parse(value))) throw invalid(`${name} '${value}' is not a time (ISO 8601, e.g. 2024-05-01T00:00:00Z)`);
  return new Date(value).toISOString();
}

function oneOf(value: string, allowed: string[], name: string): string | undefined {
  if (!value) return undefined;
  if (!allowed.includes(value)) throw invalid(`${name} must be one of ${allowed.join(', ')}`);
  return value;
}

const toProto = (s: SessionSummary): AuditSession => s;

export function auditMethods(store: AuditStore, auth: Authenticator, log: Logger): AuditMethods {
  /** Checks the token, maps errors to gRPC statuses, logs refusals (never payloads). */
  const handle =
    <Req, Res>(method: string, check: (md: Metadata) => void, fn: (req: Req) => Promise<Res>) =>
    (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      const run = async () => {
        check(call.metadata);
        return fn(call.request);
      };
      run().then(
        (res) => callback(null, res),
        (err) => {
          const s = toStatus(err instanceof RangeError ? invalid(err.message) : err);
          if (s.known) log.info({ method, peer: call.getPeer(), code: status[s.code], reason: s.details }, 'audit call refused');
          else log.error({ method, peer: call.getPeer(), err }, 'audit call failed');
          callback({ code: s.code, details: s.details, message: s.details });
        },
      );
    };
  const admin = (md: Metadata) => auth.admin(md);
  const gateway = (md: Metadata) => auth.gateway(md);
  /** Stored bodies (JSON forms) as events; one that is none any more is left out, and verify names it. */
  const events = (bodies: string[]): AuditEvent[] =>
    bodies.flatMap((body) => {
      try {
        const e = eventFromRecord(JSON.parse(body));
        if (e) return [e];
      } catch {
        // logged below
      }
      log.warn('a stored audit event is unreadable and was left out of an answer; warden audit verify reports it');
      return [];
    });

  return {
    ingestAudit: handle('IngestAudit', gateway, async (r) => {
      // Gateways never send an empty batch; older ones send JSON in a field this version does not read.
      if (r.events.length === 0) {
        throw new StatusError(status.FAILED_PRECONDITION, 'the batch holds no events: a gateway older than this control plane sends them as JSON, which it no longer reads; upgrade the gateway (its outbox keeps the events)');
      }
      return store.ingest(r.events);
    }),
    listSessions: handle('ListSessions', admin, async (r) => {
      const sessions = await store.listSessions({
        identity: r.identity || undefined,
        resource: r.resource || undefined,
        since: time(r.since, 'since'),
        until: time(r.until, 'until'),
        outcome: oneOf(r.outcome, ['ok', 'error', 'refused'], 'outcome'),
        limit: r.limit,
      });
      return { sessions: sessions.map(toProto) };
    }),
    getSession: handle('GetSession', admin, async (r) => {
      const found = await store.getSession(r.sessionId);
      if (!found) throw new StatusError(status.NOT_FOUND, `no recorded session '${r.sessionId}'`);
      return { session: toProto(found.session), events: events(found.events) };
    }),
    searchAudit: handle('SearchAudit', admin, async (r) => ({
      events: events(await store.search({
        kind: r.kind || undefined,
        identity: r.identity || undefined,
        resource: r.resource || undefined,
        decision: oneOf(r.decision, ['allowed', 'refused'], 'decision'),
        since: time(r.since, 'since'),
        until: time(r.until, 'until'),
        text: r.text || undefined,
        type: oneOf(r.type, [...AUDIT_EVENT_TYPES], 'type'),
        sessionId: r.sessionId || undefined,
        limit: r.limit,
      })),
    })),
    verifyAudit: handle('VerifyAudit', admin, async (): Promise<VerifyReport> => {
      const v = await store.verify();
      return { ...v, problems: v.problems.map((p) => ({ ...p })) };
    }),
    getRetention: handle('GetRetention', admin, async () => ({ days: await store.getRetention() })),
    setRetention: handle('SetRetention', admin, async (r) => {
      const days = await store.setRetention(r.days);
      log.info({ days }, 'audit retention changed');
      return { days };
    }),
  };
}
