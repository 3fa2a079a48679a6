// Public API of @warden/control-plane (used by tests and by tools embedding it).
export { startControlPlane, DEFAULT_LISTEN, type ControlPlane, type ControlPlaneOptions } from './server/start.js';
export { openStorage, redactUrl, type Storage, type StorageOptions } from './storage/open.js';
export { Repository } from './storage/repository.js';
export { ConfigError, type ConfigErrorKind } from './storage/errors.js';
export { migrate } from './storage/migrations.js';
export { PGliteDialect } from './storage/pglite-dialect.js';
export { sha256Hex, newToken } from './server/secrets.js';
export { createLogger, silentLogger } from './logger.js';
export {
  DEV_AUDIENCE,
  DEV_ISSUER_NAME,
  DEV_ISSUER_URL,
  DevIssuerMissingError,
  ensureDevKey,
  loadDevKey,
  publicJwks,
  signDevToken,
  type DevTokenOptions,
} from './local/dev-issuer.js';
export {
  seedLocalConfig,
  ensureLocalAgent,
  LOCAL_AGENT,
  DEMO_IDENTITY,
  DEMO_ADMIN_IDENTITY,
  DEMO_READ_RULE,
  DEMO_ADMIN_RULE,
} from './local/seed-config.js';
export * from './policy/index.js';
export { parseUpstreamUrl, type UpstreamSettings } from './local/agent-config.js';
export { startDemoDatabase, DEMO_MAX_CONNECTIONS } from './local/demo-db.js';
export { demoRows } from './local/demo-seed.js';
export { runLocal, type LocalOptions, type ReadyInfo } from './local/run.js';
export { runCli } from './cli/run.js';
export { AuditStore, startMaintenance, type AuditStoreOptions } from './audit/store.js';
export { AuditConsumer, type AuditConsumerOptions } from './audit/consumer.js';
