// `warden-gateway`: the public Postgres endpoint.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { CliCommand, makeOption, packageVersion, parseCommandLine, withConfigFile, withConventions } from '@warden/proto/cli';
import { createLogger } from '@warden/proto/log';
import { createAuditSink } from './audit/sink.js';
import { DEFAULT_LOGIN_LIMITS } from './auth/limiter.js';
import { startGateway } from './gateway.js';
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
  .addOption(makeOption({ flags: '--control-plane <HOST:PORT>', description: 'control plane address', env: 'WARDEN_CONTROL_PLANE', default: '127.0.0.1:7070' }))
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
    makeOption({ flags: '--nats <URL>', description: 'send audit events to NATS JetStream; without it they go to the control plane', env: 'WARDEN_NATS_URL' }),
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
      default: '1024',
    }),
  );
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

// Buffered: a line per statement must not cost a write() per statement. The
// audit trail, not the log, is the durable record.
let log: ReturnType<typeof createLogger>;
try {
  log = createLogger({ name: 'gateway', buffered: true });
} catch (err) {
  console.error(`error: ${(err as Error).message}`);
  process.exit(2);
}
const token = v.gatewayTokenFile ? readFileSync(v.gatewayTokenFile, 'utf8').trim() : process.env.WARDEN_GATEWAY_TOKEN;
if (!token) {
  console.error('error: warden-gateway has no gateway token: set WARDEN_GATEWAY_TOKEN or pass --gateway-token-file (see warden-gateway --help)');
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
  });
  const gateway = await startGateway({
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
    waitingLimits: { perAddress: limitOf('--max-logging-in-per-address', v.maxLoggingInPerAddress), total: limitOf('--max-logging-in', v.maxLoggingIn) },
    log,
    audit,
  });
  const stop = async () => {
    log.info('shutting down');
    await gateway.close();
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
