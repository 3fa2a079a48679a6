// Public surface of the agent package (used by tests and by `warden start`).
export { Agent, type AgentOptions } from './agent.js';
export {
  ACCESS_LEVELS,
  type AccessLevel,
  type AgentConfig,
  type AgentConfigFile,
  ConfigError,
  type LoadedConfig,
  loadConfig,
  parseConfig,
  type ParseOptions,
  type ResourceConfig,
  resourcePassword,
  type SessionRole,
  sessionRole,
  SSL_MODES,
  type SslMode,
} from './config.js';
export { endsWithTerminate, errorSummary, RelaySession, type SessionContext, type SessionState } from './session.js';
export { type AgentContext, GatewayConnection, type GatewayConnectionOptions } from './tunnel/connection.js';
export { GatewayWatcher, type GatewayWatcherOptions } from './tunnel/gateways.js';
export { sendCancelRequest } from './upstream/cancel.js';
export {
  type BackendKey,
  type ConnectOptions,
  CONNECTION_FAILURE,
  connectUpstream,
  openTransport,
  quoteIdent,
  redact,
  startupParameters,
  type UpstreamConnection,
  UpstreamError,
  type UpstreamLabels,
  type UpstreamPhase,
  type UpstreamTarget,
} from './upstream/connect.js';
export { md5Password, SCRAM_MECHANISM, ScramClient, ScramError, saslprep, scramStats } from './upstream/scram.js';
export { VERSION } from './version.js';
