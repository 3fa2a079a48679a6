// Turns what happens in one session into audit events, numbered in order,
// and a connection refused before its session into an auth failure.
import { randomUUID } from 'node:crypto';
import { StatementDecision, StatementProtocol, type ApprovalEvent, type AuditEvent, type SessionStart, type StatementParameter } from '@warden/proto';
import { durationOf, timestampOf } from '@warden/proto/audit';
import type { AuditSink } from '../audit/events.js';
import type { StatementInfo } from '../policy/index.js';
import { decodeParameters } from '@warden/proto/pgwire';
import { OUTCOME_UNKNOWN, type TrackedStatement } from './tracker.js';

/**
 * How Bind parameters appear in the audit record: their values (full), each
 * one's format and length only (redacted), or not at all (none).
 */
export type ParameterRecording = 'full' | 'redacted' | 'none';

export const PARAMETER_RECORDINGS: readonly ParameterRecording[] = ['full', 'redacted', 'none'];

export interface RecorderContext {
  gateway: string;
  sessionId: string;
  identity: string;
  resource: string;
  agent: string;
}

/** The outcome a statement's intent records: what stands if the gateway stops before the server answers. */
const GATEWAY_STOPPED = { sqlstate: OUTCOME_UNKNOWN, message: 'outcome unknown: the gateway stopped after the statement was forwarded' };

export class SessionRecorder {
  private seq = 0;
  private statements = 0;

  constructor(
    private readonly sink: AuditSink,
    private readonly ctx: RecorderContext,
    private readonly parameters: ParameterRecording,
  ) {}

  /** The next event of this session, its fields written out: spreads cost on the per-statement path. */
  private next(event: AuditEvent['event']): AuditEvent {
    const c = this.ctx;
    const seq = this.seq++;
    return { id: `${c.sessionId}:${seq}`, time: timestampOf(Date.now()), gateway: c.gateway, sessionId: c.sessionId, seq, identity: c.identity, resource: c.resource, agent: c.agent, event };
  }

  start(details: SessionStart): void {
    this.sink.publish(this.next({ $case: 'sessionStart', value: details }));
  }

  /**
   * Statements about to be forwarded: each takes its number now, and its
   * record as it stands if no outcome ever comes is written before they go
   * (false when that write failed).
   */
  intend(sent: TrackedStatement[]): boolean {
    if (!this.sink.intend) return true;
    const events: AuditEvent[] = [];
    for (const s of sent) {
      s.seq = this.seq++;
      events.push(this.statementEvent(s, s.startedAt, GATEWAY_STOPPED));
    }
    return this.sink.intend(events);
  }

  statement(s: TrackedStatement, now: number): void {
    if (!s.skipped || s.refusal) this.statements++;
    this.sink.publish(this.statementEvent(s, now));
  }

  /** `unknown`: the record of a statement forwarded whose outcome is not known yet. */
  private statementEvent(s: TrackedStatement, now: number, unknown?: { sqlstate: string; message: string }): AuditEvent {
    const info = s.info;
    const seq = s.seq ?? this.seq++;
    const c = this.ctx;
    return {
      id: `${c.sessionId}:${seq}`,
      time: timestampOf(Date.now()),
      gateway: c.gateway,
      sessionId: c.sessionId,
      seq,
      identity: c.identity,
      resource: c.resource,
      agent: c.agent,
      event: {
        $case: 'statement',
        value: {
          sql: s.sql,
          parameters: s.parameters && this.parameters !== 'none' ? (s.parameterValues ??= this.decode(s.parameters)) : [],
          protocol: s.protocol === 'extended' ? StatementProtocol.STATEMENT_PROTOCOL_EXTENDED : StatementProtocol.STATEMENT_PROTOCOL_SIMPLE,
          decision: s.refusal ? StatementDecision.STATEMENT_DECISION_REFUSED : StatementDecision.STATEMENT_DECISION_ALLOWED,
          rule: s.rule,
          access: info?.access,
          kind: info?.kind,
          objects: info ? objectNames(info) : [],
          command: s.command,
          rows: s.rows,
          // To the microsecond: finer is noise.
          duration: durationOf(Math.round((now - s.startedAt) * 1000) / 1000),
          error: s.refusal ? { sqlstate: s.refusal.sqlstate, message: s.refusal.message } : (unknown ?? s.error),
          maskedColumns: s.mask?.masked ?? [],
          approvalId: s.approvalId,
          // A refusal's raise the server skipped is still the refusal.
          skipped: !!s.skipped && !s.refusal,
        },
      },
    };
  }

  /** A held statement's approval: requested, then approved, denied, expired or withdrawn. */
  approval(e: ApprovalEvent): void {
    this.sink.publish(this.next({ $case: 'approval', value: e }));
  }

  end(details: { durationMs: number; bytesIn: number; bytesOut: number; reason: string }): void {
    const { durationMs, bytesIn, bytesOut, reason } = details;
    this.sink.publish(this.next({ $case: 'sessionEnd', value: { duration: durationOf(durationMs), bytesIn, bytesOut, statements: this.statements, reason } }));
  }

  private decode(raw: Buffer): StatementParameter[] {
    try {
      const values = decodeParameters(raw, { redact: this.parameters === 'redacted' });
      return values.map((v) => ({ value: v ?? undefined }));
    } catch {
      return []; // A malformed Bind fails upstream; the statement is still recorded.
    }
  }
}

/** The record of a connection refused before a session began. */
export function authFailureEvent(gateway: string, clientAddress: string, resource: string | undefined, refusal: { sqlstate: string; message: string }): AuditEvent {
  return {
    id: randomUUID(),
    time: timestampOf(Date.now()),
    gateway,
    sessionId: '',
    seq: 0,
    identity: '',
    resource: resource ?? '',
    agent: '',
    event: { $case: 'authFailure', value: { clientAddress, sqlstate: refusal.sqlstate, message: refusal.message } },
  };
}

/** The tables a statement touches, as "schema.name"; computed once per (shared, cached) classification. */
const names = new WeakMap<StatementInfo, string[]>();
function objectNames(info: StatementInfo): string[] {
  let list = names.get(info);
  if (!list) {
    list = info.objects.filter((o) => o.type !== 'function').map((o) => (o.schema ? `${o.schema}.${o.name}` : o.name));
    names.set(info, list);
  }
  return list;
}
