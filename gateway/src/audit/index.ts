// The gateway's audit trail: event types, the sink that delivers them, and
// the one-line summaries.
export type * from './events.js';
export { createAuditSink, type AuditSinkOptions, type ClosableAuditSink } from './sink.js';
export { Outbox, DEFAULT_OUTBOX_LIMITS, type OutboxLimits, type OutboxEntry, type Position } from './outbox.js';
export { Pump, type Transport } from './pump.js';
export { JetStreamTransport } from './nats.js';
export { ControlPlaneTransport } from './local.js';
export { AUDIT_CONSUMER, AUDIT_STREAM, AUDIT_SUBJECTS, auditSubject, ensureAuditStream, subjectToken } from './stream.js';
export { summarize, statementHead, statementResult, formatDuration } from './summary.js';
export { fitEvent, MAX_EVENT_BYTES } from './limit.js';
