// @warden/proto/audit: what gateways and the control plane share about audit
// events besides the messages themselves (which are in the package's main
// entry): their JSON form, the one-line summaries, and the JetStream stream.
// A separate entry point, so processes without audit (the agent) never load
// the NATS client.
export type { Duration } from '../gen/google/protobuf/duration.js';
export type { Timestamp } from '../gen/google/protobuf/timestamp.js';
export {
  AUDIT_EVENT_TYPES,
  decisionName,
  durationMs,
  durationOf,
  eventFromRecord,
  eventRecord,
  eventType,
  isoOf,
  msOf,
  protocolName,
  timestampOf,
  type AuditEventType,
  type AuditRecord,
  type AuthFailureRecord,
  type SessionEndRecord,
  type SessionStartRecord,
  type StatementRecord,
} from './record.js';
export { formatDuration, statementHead, statementResult, summarize } from './summary.js';
export {
  AUDIT_CONSUMER,
  AUDIT_STREAM,
  AUDIT_SUBJECTS,
  DEFAULT_STREAM_LIMITS,
  auditSubject,
  auditSubjectOf,
  ensureAuditStream,
  subjectToken,
  type AuditStreamLimits,
} from './stream.js';
