// Public API of @warden/gateway: the gateway itself; its audit sink and its
// end of the agent link, for tools and tests that stand in for a gateway.
// `./policy` is the statement classification and decision code, which
// `warden policy check` uses.
export * from './gateway.js';
export { createAuditSink, type AuditSink, type AuditSinkOptions, type ClosableAuditSink } from './audit/index.js';
export { AgentHub, TunnelError, type AgentHubOptions, type AgentLinkInfo, type AgentVerifier, type Upstream } from './tunnel/index.js';
