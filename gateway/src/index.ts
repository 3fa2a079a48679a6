// Public API of @warden/gateway: the gateway itself, and its audit sink (for
// tools and tests that record events as a gateway does). `./policy` is the
// statement classification and decision code, which `warden policy check` uses.
export * from './gateway.js';
export { createAuditSink, type AuditSink, type AuditSinkOptions, type ClosableAuditSink } from './audit/index.js';
