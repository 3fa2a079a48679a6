// The JSON form of an audit event: what the control plane stores, what its
// hash chains cover (as canonical JSON), and what `warden ... --json` prints.
// It is the shape events had before they became protobuf messages, so chains
// stored by earlier versions verify unchanged and scripts reading the JSON
// keep working. eventRecord and eventFromRecord map it to and from AuditEvent.
import type { Duration } from '../gen/google/protobuf/duration.js';
import type { Timestamp } from '../gen/google/protobuf/timestamp.js';
import { StatementDecision, StatementProtocol, type AuditEvent } from '../gen/warden/v1/warden.js';

interface RecordBase {
  id: string;
  /** ISO 8601, milliseconds, UTC. */
  time: string;
  gateway: string;
}

interface SessionScoped extends RecordBase {
  sessionId: string;
  seq: number;
  identity: string;
  resource: string;
  agent: string;
}

export interface SessionStartRecord extends SessionScoped {
  type: 'session.start';
  claims: Record<string, unknown>;
  groups: string[];
  clientAddress: string;
  applicationName?: string;
  user?: string;
  access?: string;
  readOnly: boolean;
}

export interface StatementRecord extends SessionScoped {
  type: 'statement';
  sql: string;
  /** Absent when the statement had none. */
  parameters?: Array<string | null>;
  protocol: 'simple' | 'extended';
  decision: 'allowed' | 'refused';
  rule?: string;
  access?: string;
  kind?: string;
  /** Absent when the statement touches no table. */
  objects?: string[];
  command?: string;
  rows?: number;
  durationMs: number;
  error?: { sqlstate: string; message: string };
  /** Columns ("schema.table.column") masked in its results; absent when none. */
  maskedColumns?: string[];
  /** The approval it ran under, when it was held. */
  approvalId?: string;
  /** The server skipped it after an earlier error: it did not run. */
  skipped?: true;
}

export interface SessionEndRecord extends SessionScoped {
  type: 'session.end';
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
  statements: number;
  reason: string;
}

export interface AuthFailureRecord extends RecordBase {
  type: 'auth.failure';
  clientAddress: string;
  /** Absent when the client named no database. */
  resource?: string;
  sqlstate: string;
  message: string;
}

/** A held statement's approval, as the session saw it. */
export interface ApprovalRecord extends SessionScoped {
  type: 'approval';
  approvalId: string;
  /** requested | approved | denied | expired | withdrawn */
  state: string;
  rule: string;
  sql: string;
  why: string;
  /** Absent before anyone decided. */
  decisions?: Array<{ approver: string; groups: string[]; approve: boolean; reason: string; at: string }>;
}

export type AuditRecord = SessionStartRecord | StatementRecord | SessionEndRecord | AuthFailureRecord | ApprovalRecord;
export type AuditEventType = AuditRecord['type'];

export const AUDIT_EVENT_TYPES: readonly AuditEventType[] = ['session.start', 'statement', 'session.end', 'auth.failure', 'approval'];

type Case = NonNullable<AuditEvent['event']>['$case'];
const TYPE_OF: Record<Case, AuditEventType> = {
  sessionStart: 'session.start',
  statement: 'statement',
  sessionEnd: 'session.end',
  authFailure: 'auth.failure',
  approval: 'approval',
};

/** session.start, statement, session.end or auth.failure; undefined for an event without one. */
export const eventType = (e: AuditEvent): AuditEventType | undefined => (e.event ? TYPE_OF[e.event.$case] : undefined);

// Times and durations. Gateways record times to the millisecond and
// statement durations to the microsecond, which these keep exactly.

export function timestampOf(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

/** Milliseconds since the epoch, whole (as Date has them). */
export const msOf = (t: Timestamp | undefined): number => (t ? t.seconds * 1000 + Math.floor(t.nanos / 1e6) : 0);

export const isoOf = (t: Timestamp | undefined): string => new Date(msOf(t)).toISOString();

export function durationOf(ms: number): Duration {
  const total = Math.round(ms * 1e6);
  const seconds = Math.floor(total / 1e9);
  return { seconds, nanos: total - seconds * 1e9 };
}

/** One division of whole nanoseconds: the same duration always gives the same number. */
export const durationMs = (d: Duration | undefined): number => (d ? (d.seconds * 1e9 + d.nanos) / 1e6 : 0);

const PROTOCOL_NAME: Partial<Record<StatementProtocol, StatementRecord['protocol']>> = {
  [StatementProtocol.STATEMENT_PROTOCOL_SIMPLE]: 'simple',
  [StatementProtocol.STATEMENT_PROTOCOL_EXTENDED]: 'extended',
};
const DECISION_NAME: Partial<Record<StatementDecision, StatementRecord['decision']>> = {
  [StatementDecision.STATEMENT_DECISION_ALLOWED]: 'allowed',
  [StatementDecision.STATEMENT_DECISION_REFUSED]: 'refused',
};
export const protocolName = (p: StatementProtocol) => PROTOCOL_NAME[p];
export const decisionName = (d: StatementDecision) => DECISION_NAME[d];

/**
 * The event's JSON form. Throws for an event without a type, which no store
 * accepts. Fields are written out rather than spread: the control plane runs
 * this for every event it stores.
 */
export function eventRecord(e: AuditEvent): AuditRecord {
  const { id, gateway, sessionId, seq, identity, resource, agent } = e;
  const time = isoOf(e.time);
  if (!e.event) throw new Error(`audit event ${id} has no type`);
  switch (e.event.$case) {
    case 'sessionStart': {
      const s = e.event.value;
      return {
        type: 'session.start',
        id, time, gateway, sessionId, seq, identity, resource, agent,
        claims: s.claims ?? {},
        groups: s.groups,
        clientAddress: s.clientAddress,
        applicationName: s.applicationName,
        user: s.user,
        access: s.access,
        readOnly: s.readOnly,
      };
    }
    case 'statement': {
      const s = e.event.value;
      return {
        type: 'statement',
        id, time, gateway, sessionId, seq, identity, resource, agent,
        sql: s.sql,
        parameters: s.parameters.length > 0 ? s.parameters.map((p) => p.value ?? null) : undefined,
        protocol: PROTOCOL_NAME[s.protocol] ?? 'simple',
        decision: DECISION_NAME[s.decision] ?? 'refused',
        rule: s.rule,
        access: s.access,
        kind: s.kind,
        objects: s.objects.length > 0 ? s.objects : undefined,
        command: s.command,
        rows: s.rows,
        durationMs: durationMs(s.duration),
        error: s.error ? { sqlstate: s.error.sqlstate, message: s.error.message } : undefined,
        maskedColumns: s.maskedColumns.length > 0 ? s.maskedColumns : undefined,
        approvalId: s.approvalId,
        skipped: s.skipped || undefined,
      };
    }
    case 'sessionEnd': {
      const s = e.event.value;
      return {
        type: 'session.end',
        id, time, gateway, sessionId, seq, identity, resource, agent,
        durationMs: durationMs(s.duration),
        bytesIn: s.bytesIn,
        bytesOut: s.bytesOut,
        statements: s.statements,
        reason: s.reason,
      };
    }
    case 'authFailure': {
      const f = e.event.value;
      return { type: 'auth.failure', id, time, gateway, clientAddress: f.clientAddress, resource: resource || undefined, sqlstate: f.sqlstate, message: f.message };
    }
    case 'approval': {
      const a = e.event.value;
      return {
        type: 'approval',
        id, time, gateway, sessionId, seq, identity, resource, agent,
        approvalId: a.approvalId,
        state: a.state,
        rule: a.rule,
        sql: a.sql,
        why: a.why,
        decisions: a.decisions.length ? a.decisions.map((d) => ({ approver: d.approver, groups: d.groups, approve: d.approve, reason: d.reason, at: d.at })) : undefined,
      };
    }
  }
}

// Reading JSON that may be anything (stored rows, JSON from older gateways):
// a field of the wrong type reads as missing, which the control plane's
// checks then refuse where it matters.
const str = (v: unknown) => (typeof v === 'string' ? v : '');
const optStr = (v: unknown) => (typeof v === 'string' ? v : undefined);
const count = (v: unknown) => (Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : 0);
const strings = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
const ms = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

/** An event from its JSON form, or undefined when the value is not an object of a known type. */
export function eventFromRecord(value: unknown): AuditEvent | undefined {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const r = value as Record<string, unknown>;
  const time = typeof r.time === 'string' ? Date.parse(r.time) : NaN;
  const e: AuditEvent = {
    id: str(r.id),
    time: Number.isNaN(time) ? undefined : timestampOf(time),
    gateway: str(r.gateway),
    sessionId: str(r.sessionId),
    // Not a count: in a session event, a seq that is missing or negative must stay visibly wrong.
    seq: r.type === 'auth.failure' ? 0 : Number.isSafeInteger(r.seq) ? (r.seq as number) : -1,
    identity: str(r.identity),
    resource: str(r.resource),
    agent: str(r.agent),
    event: undefined,
  };
  switch (r.type) {
    case 'session.start': {
      const claims = r.claims && typeof r.claims === 'object' && !Array.isArray(r.claims) ? (r.claims as Record<string, unknown>) : {};
      e.event = {
        $case: 'sessionStart',
        value: {
          claims,
          groups: strings(r.groups),
          clientAddress: str(r.clientAddress),
          applicationName: optStr(r.applicationName),
          user: optStr(r.user),
          access: optStr(r.access),
          readOnly: r.readOnly === true,
        },
      };
      break;
    }
    case 'statement': {
      const error = r.error && typeof r.error === 'object' ? (r.error as Record<string, unknown>) : undefined;
      e.event = {
        $case: 'statement',
        value: {
          sql: str(r.sql),
          parameters: Array.isArray(r.parameters) ? r.parameters.map((p) => ({ value: optStr(p) })) : [],
          protocol: r.protocol === 'extended' ? StatementProtocol.STATEMENT_PROTOCOL_EXTENDED : r.protocol === 'simple' ? StatementProtocol.STATEMENT_PROTOCOL_SIMPLE : StatementProtocol.STATEMENT_PROTOCOL_UNSPECIFIED,
          decision: r.decision === 'allowed' ? StatementDecision.STATEMENT_DECISION_ALLOWED : r.decision === 'refused' ? StatementDecision.STATEMENT_DECISION_REFUSED : StatementDecision.STATEMENT_DECISION_UNSPECIFIED,
          rule: optStr(r.rule),
          access: optStr(r.access),
          kind: optStr(r.kind),
          objects: strings(r.objects),
          command: optStr(r.command),
          rows: Number.isSafeInteger(r.rows) ? (r.rows as number) : undefined,
          duration: durationOf(ms(r.durationMs)),
          error: error ? { sqlstate: str(error.sqlstate), message: str(error.message) } : undefined,
          maskedColumns: strings(r.maskedColumns),
          approvalId: optStr(r.approvalId),
          skipped: r.skipped === true,
        },
      };
      break;
    }
    case 'session.end':
      e.event = {
        $case: 'sessionEnd',
        value: {
          duration: durationOf(ms(r.durationMs)),
          bytesIn: count(r.bytesIn),
          bytesOut: count(r.bytesOut),
          statements: count(r.statements),
          reason: str(r.reason),
        },
      };
      break;
    case 'auth.failure':
      e.event = { $case: 'authFailure', value: { clientAddress: str(r.clientAddress), sqlstate: str(r.sqlstate), message: str(r.message) } };
      break;
    case 'approval': {
      const decisions = Array.isArray(r.decisions) ? (r.decisions as Array<Record<string, unknown>>) : [];
      e.event = {
        $case: 'approval',
        value: {
          approvalId: str(r.approvalId),
          state: str(r.state),
          rule: str(r.rule),
          sql: str(r.sql),
          why: str(r.why),
          decisions: decisions.map((d) => ({ approver: str(d.approver), groups: strings(d.groups), approve: d.approve === true, reason: str(d.reason), at: str(d.at) })),
        },
      };
      break;
    }
    default:
      return undefined;
  }
  return e;
}
