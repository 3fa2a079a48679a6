// The gateway's audit trail: the sink that records events and delivers them.
export type * from './events.js';
export { createAuditSink, type AuditSinkOptions, type ClosableAuditSink } from './sink.js';
export { Outbox, DEFAULT_OUTBOX_LIMITS, type OutboxLimits, type OutboxEntry, type Position } from './outbox.js';
export { Pump, type Transport } from './pump.js';
export { JetStreamTransport } from './nats.js';
export { ControlPlaneTransport } from './local.js';
export { encodeEvent, fitEvent, MAX_EVENT_BYTES } from './limit.js';
