// `warden-gateway`: the public Postgres endpoint.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { CliCommand, makeOption, packageVersion, parseCommandLine, withConfigFile, withConventions } from '@warden/proto/cli';
import { parseAddressList } from '@warden/proto';
import { createLogger, logFormatOption, logLevelOption } from '@warden/proto/log';
import { DEFAULT_METRICS_LISTEN, metricsListenOption, newRegistry, startMetricsServer } from '@warden/proto/metrics';
import { DEFAULT_OUTBOX_LIMITS } from './audit/outbox.js';
import { createAuditSink } from './audit/sink.js';
import { DEFAULT_LOGIN_LIMITS } from './auth/limiter.js';
import { DEFAULT_CONNECTION_LIMITS, startGateway, type ConnectionLimits } from './gateway.js';
import { PARAMETER_RECORDINGS, type ParameterRecording } from './session/recorder.js';

const DEFAULT_DATA_DIR = './.warden-gateway';
const program = new CliCommand('warden-gateway')
  .description('The public Postgres endpoint of Warden: checks tokens and grants, decides every statement, records the session, relays to the agents.')
  .usage('[options]')
  .addOption(makeOption({ flags: '--id <ID>', description: 'gateway id', env: 'WARDEN_GATEWAY_ID', default: hostname(), defaultDescription: 'host name' }))
  .addOption(makeOption({ flags: '--listen <HOST:PORT>', description: 'Postgres listener', env: 'WARDEN_GATEWAY_LISTEN', default: '0.0.0.0:15432' }))
  .addOption(makeOption({ flags: '--tunnel-listen <HOST:PORT>', description: 'listener for agents', env: 'WARDEN_GATEWAY_TUNNEL_LISTEN', default: '0.0.0.0:7443' }))
  .addOption(
    makeOption({ flags: '--tunnel-advertise <HOST:PORT>', description: 'tunnel address agents dial (default: --tunnel-listen)', env: 'WARDEN_GATEWAY_TUNNEL_ADVERTISE' }),
  )
  .addOption(makeOption({
      flags: '--control-plane <HOST:PORT>',
      description: 'control plane address; replicas separated by commas, the first that answers is used',
      env: 'WARDEN_CONTROL_PLANE',
      default: '127.0.0.1:7070',
    }))
  .addOption(makeOption({ flags: '--control-plane-ca <FILE>', description: "CA that signed the control plane's TLS certificate", env: 'WARDEN_CONTROL_PLANE_CA' }))
  .addOption(
    makeOption({ flags: '--gateway-token-file <FILE>', description: 'file with the token for the control plane (or the token in WARDEN_GATEWAY_TOKEN)', env: 'WARDEN_GATEWAY_TOKEN_FILE' }),
  )
  .addOption(makeOption({ flags: '--tls-cert <FILE>', description: 'TLS certificate for clients (with --tls-key)', env: 'WARDEN_GATEWAY_TLS_CERT' }))
  .addOption(makeOption({ flags: '--tls-key <FILE>', description: 'TLS private key for clients (with --tls-cert)', env: 'WARDEN_GATEWAY_TLS_KEY' }))
  .addOption(makeOption({ flags: '--tunnel-tls-cert <FILE>', description: 'TLS certificate for agents (with --tunnel-tls-key)', env: 'WARDEN_GATEWAY_TUNNEL_TLS_CERT' }))
  .addOption(makeOption({ flags: '--tunnel-tls-key <FILE>', description: 'TLS private key for agents (with --tunnel-tls-cert)', env: 'WARDEN_GATEWAY_TUNNEL_TLS_KEY' }))
  // No environment variable or options file: local mode weakens authentication, so it is asked for on the command line only.
  .addOption(makeOption({ flags: '--local', description: 'local mode: accept tokens without TLS from loopback addresses', commandLineOnly: true }))
  .addOption(
    makeOption({ flags: '--nats <URL>', description: 'send audit events to NATS JetStream (servers of a cluster separated by commas); without it they go to the control plane', env: 'WARDEN_NATS_URL' }),
  )
  .addOption(makeOption({ flags: '--data-dir <DIR>', description: 'gateway state, e.g. the audit outbox', env: 'WARDEN_GATEWAY_DATA_DIR', default: DEFAULT_DATA_DIR }))
  .addOption(
    makeOption({
      flags: '--record-parameters <MODE>',
      description: "Bind parameters in the audit trail: full (their values), redacted (each one's format and length) or none",
      env: 'WARDEN_GATEWAY_RECORD_PARAMETERS',
      default: 'full',
      choices: PARAMETER_RECORDINGS,
    }),
  )
  .addOption(
    makeOption({
      flags: '--login-failures-per-address <N>',
      description: 'failed logins from one address per minute before its logins are refused for the rest of the minute (0: no limit)',
      env: 'WARDEN_LOGIN_FAILURES_PER_ADDRESS',
      default: String(DEFAULT_LOGIN_LIMITS.perAddress),
    }),
  )
  .addOption(
    makeOption({
      flags: '--login-failures-per-name <N>',
      description: 'failed logins as one user name per minute before logins as it are refused for the rest of the minute (0: no limit)',
      env: 'WARDEN_LOGIN_FAILURES_PER_NAME',
      default: String(DEFAULT_LOGIN_LIMITS.perName),
    }),
  )
  .addOption(
    makeOption({
      flags: '--max-logging-in-per-address <N>',
      description: 'connections from one address that may be logging in at once (slow or silent clients); more are refused with 53300',
      env: 'WARDEN_MAX_LOGGING_IN_PER_ADDRESS',
      default: '64',
    }),
  )
  .addOption(
    makeOption({
      flags: '--max-logging-in <N>',
      description: 'connections that may be logging in at once, from all addresses',
      env: 'WARDEN_MAX_LOGGING_IN',
      default: String(DEFAULT_CONNECTION_LIMITS.loggingIn.total),
    }),
  )
  .addOption(
    makeOption({
      flags: '--max-waiting-links-per-address <N>',
      description: 'links on the tunnel port from one address that may wait to say HELLO; more are closed at once',
      env: 'WARDEN_MAX_WAITING_LINKS_PER_ADDRESS',
      default: String(DEFAULT_CONNECTION_LIMITS.waitingLinks.perAddress),
    }),
  )
  .addOption(
    makeOption({
      flags: '--max-waiting-links <N>',
      description: 'links on the tunnel port that may wait to say HELLO, from all addresses',
      env: 'WARDEN_MAX_WAITING_LINKS',
      default: String(DEFAULT_CONNECTION_LIMITS.waitingLinks.total),
    }),
  )
  .addOption(
    makeOption({
      flags: '--login-timeout <SECONDS>',
      description: 'time from connect to logged in; slower connections are closed with 28000',
      env: 'WARDEN_LOGIN_TIMEOUT',
      default: String(DEFAULT_CONNECTION_LIMITS.loginTimeoutMs / 1000),
    }),
  )
  .addOption(
    makeOption({
      flags: '--max-sessions-per-address <N>',
      description: 'sessions (logged-in connections) from one address at once; more are refused with 53300 (0: no limit)',
      env: 'WARDEN_MAX_SESSIONS_PER_ADDRESS',
      default: String(DEFAULT_CONNECTION_LIMITS.sessions.perAddress),
    }),
  )
  .addOption(
    makeOption({
      flags: '--max-sessions <N>',
      description: 'sessions at once, from all addresses (0: no limit)',
      env: 'WARDEN_MAX_SESSIONS',
      default: String(DEFAULT_CONNECTION_LIMITS.sessions.total),
    }),
  )
  .addOption(
    makeOption({
      flags: '--idle-session-timeout <SECONDS>',
      description: 'end a session that sends nothing this long with nothing running (57P05; 0: never)',
      env: 'WARDEN_IDLE_SESSION_TIMEOUT',
      default: '0',
    }),
  )
  .addOption(
    makeOption({
      flags: '--max-statement-bytes <N>',
      description: 'largest statement the gateway reads; a larger one ends its session with 54000',
      env: 'WARDEN_MAX_STATEMENT_BYTES',
      default: String(DEFAULT_CONNECTION_LIMITS.maxStatementBytes),
    }),
  )
  .addOption(
    makeOption({
      flags: '--statement-memory <N>',
      description: 'bytes all sessions together may hold in large statements still arriving; past it, 53200',
      env: 'WARDEN_STATEMENT_MEMORY',
      default: String(DEFAULT_CONNECTION_LIMITS.statementMemory),
    }),
  )
  .addOption(
    makeOption({
      flags: '--audit-outbox-max-bytes <N>',
      description: 'undelivered audit bytes the outbox under --data-dir may hold; near it, statements are refused (53100) until the audit transport catches up',
      env: 'WARDEN_AUDIT_OUTBOX_MAX_BYTES',
      default: String(DEFAULT_OUTBOX_LIMITS.maxBytes),
    }),
  )
  .addOption(makeOption(metricsListenOption(DEFAULT_METRICS_LISTEN.gateway)))
  .addOption(makeOption(logLevelOption))
  .addOption(makeOption(logFormatOption()));
withConventions(withConfigFile(program), packageVersion(new URL('../package.json', import.meta.url)));

const stop = await parseCommandLine(program, process.argv.slice(2), 2);
if (stop !== undefined) process.exit(stop);
const v = program.opts<{
  id: string;
  listen: string;
  tunnelListen: string;
  tunnelAdvertise?: string;
  controlPlane: string;
  controlPlaneCa?: string;
  gatewayTokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  tunnelTlsCert?: string;
  tunnelTlsKey?: string;
  local?: boolean;
  nats?: string;
  dataDir: string;
  recordParameters: ParameterRecording;
  loginFailuresPerAddress: string;
  loginFailuresPerName: string;
  maxLoggingInPerAddress: string;
  maxLoggingIn: string;
  maxWaitingLinksPerAddress: string;
  maxWaitingLinks: string;
  loginTimeout: string;
  maxSessionsPerAddress: string;
  maxSessions: string;
  idleSessionTimeout: string;
  maxStatementBytes: string;
  statementMemory: string;
  auditOutboxMaxBytes: string;
  metricsListen: string;
  logLevel?: string;
  logFormat?: string;
}>();

/** A limit flag's value: a whole number, 0 or more. */
function limitOf(flag: string, text: string): number {
  if (!/^\d+$/.test(text)) {
    console.error(`error: ${flag} takes a whole number (0: no limit), not ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return Number(text);
}
const loginLimits = {
  perAddress: limitOf('--login-failures-per-address', v.loginFailuresPerAddress),
  perName: limitOf('--login-failures-per-name', v.loginFailuresPerName),
  windowMs: DEFAULT_LOGIN_LIMITS.windowMs,
};

const limits: ConnectionLimits = {
  loggingIn: { perAddress: limitOf('--max-logging-in-per-address', v.maxLoggingInPerAddress), total: limitOf('--max-logging-in', v.maxLoggingIn) },
  sessions: { perAddress: limitOf('--max-sessions-per-address', v.maxSessionsPerAddress), total: limitOf('--max-sessions', v.maxSessions) },
  waitingLinks: { perAddress: limitOf('--max-waiting-links-per-address', v.maxWaitingLinksPerAddress), total: limitOf('--max-waiting-links', v.maxWaitingLinks) },
  loginTimeoutMs: limitOf('--login-timeout', v.loginTimeout) * 1000,
  idleSessionMs: limitOf('--idle-session-timeout', v.idleSessionTimeout) * 1000,
  maxStatementBytes: limitOf('--max-statement-bytes', v.maxStatementBytes),
  statementMemory: limitOf('--statement-memory', v.statementMemory),
};
const outboxMaxBytes = limitOf('--audit-outbox-max-bytes', v.auditOutboxMaxBytes);
if (limits.loginTimeoutMs === 0 || limits.maxStatementBytes === 0 || limits.statementMemory === 0 || outboxMaxBytes === 0) {
  console.error('error: --login-timeout, --max-statement-bytes, --statement-memory and --audit-outbox-max-bytes take a whole number above 0');
  process.exit(2);
}

// Buffered: a line per statement must not cost a write() per statement. The
// audit trail, not the log, is the durable record.
let log: ReturnType<typeof createLogger>;
try {
  log = createLogger({ name: 'gateway', buffered: true, level: v.logLevel, format: v.logFormat });
} catch (err) {
  console.error(`error: ${(err as Error).message}`);
  process.exit(2);
}
const token = v.gatewayTokenFile ? readFileSync(v.gatewayTokenFile, 'utf8').trim() : process.env.WARDEN_GATEWAY_TOKEN;
if (!token) {
  console.error('error: warden-gateway has no gateway token: set WARDEN_GATEWAY_TOKEN or pass --gateway-token-file (see warden-gateway --help)');
  process.exit(2);
}
try {
  parseAddressList(v.controlPlane);
} catch (err) {
  console.error(`error: --control-plane: ${(err as Error).message}`);
  process.exit(2);
}
const pair = (cert?: string, key?: string) => (cert && key ? { cert, key } : undefined);

try {
  // Events recorded before a crash wait in the outbox under --data-dir and are sent after the restart.
  const audit = createAuditSink({
    gatewayId: v.id,
    dataDir: v.dataDir || DEFAULT_DATA_DIR,
    natsUrl: v.nats || undefined,
    controlPlane: { address: v.controlPlane, ca: v.controlPlaneCa, token },
    log,
    outbox: { maxBytes: outboxMaxBytes },
  });
  // Up before the gateway, so /healthz answers and /readyz says what is missing while it starts.
  const registry = newRegistry();
  let gateway: Awaited<ReturnType<typeof startGateway>> | undefined;
  const metrics = await startMetricsServer({ listen: v.metricsListen, registry, notReady: () => (gateway ? gateway.notReady() : 'starting') });
  log.info({ url: metrics.url }, 'metrics on /metrics, health on /healthz and /readyz');
  gateway = await startGateway({
    id: v.id,
    listen: v.listen,
    tunnelListen: v.tunnelListen,
    tunnelAdvertise: v.tunnelAdvertise,
    controlPlane: v.controlPlane,
    controlPlaneCa: v.controlPlaneCa,
    gatewayToken: token,
    tls: pair(v.tlsCert, v.tlsKey),
    tunnelTls: pair(v.tunnelTlsCert, v.tunnelTlsKey),
    local: v.local === true,
    parameterRecording: v.recordParameters,
    configCache: join(v.dataDir || DEFAULT_DATA_DIR, 'config.snapshot'),
    loginLimits,
    limits,
    log,
    audit,
    metrics: registry,
  });
  const stop = async () => {
    log.info('shutting down');
    await gateway!.close();
    await metrics.close();
    // After the sessions' last events; what is not delivered in time stays in the outbox.
    await audit.close();
    process.exit(0); // the logger flushes at exit
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} catch (err) {
  log.fatal({ err }, 'gateway failed to start');
  process.exit(1);
}
