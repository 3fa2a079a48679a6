// `warden-gateway`: the public Postgres endpoint.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { destination, pino } from 'pino';
import { createAuditSink } from './audit/sink.js';
import { startGateway } from './gateway.js';

const USAGE = `usage: warden-gateway [options]
  --id ID                      gateway id (default: host name)
  --listen HOST:PORT           Postgres listener (default 0.0.0.0:15432)
  --tunnel-listen HOST:PORT    listener for agents (default 0.0.0.0:7443)
  --tunnel-advertise HOST:PORT tunnel address agents dial (default: --tunnel-listen)
  --control-plane HOST:PORT    control plane (default 127.0.0.1:7070)
  --control-plane-ca FILE      CA of the control plane's certificate (TLS)
  --gateway-token-file FILE    token for the control plane (or WARDEN_GATEWAY_TOKEN)
  --tls-cert FILE --tls-key FILE              certificate for clients
  --tunnel-tls-cert FILE --tunnel-tls-key FILE certificate for agents
  --local                      allow tokens without TLS from loopback (local mode)
  --nats URL                   send audit events to NATS JetStream (or WARDEN_NATS_URL);
                               without it they go to the control plane
  --data-dir DIR               gateway state, e.g. the audit outbox (default ./.warden-gateway)`;

const { values: v } = parseArgs({
  options: {
    id: { type: 'string', default: hostname() },
    listen: { type: 'string', default: '0.0.0.0:15432' },
    'tunnel-listen': { type: 'string', default: '0.0.0.0:7443' },
    'tunnel-advertise': { type: 'string' },
    'control-plane': { type: 'string', default: process.env.WARDEN_CONTROL_PLANE ?? '127.0.0.1:7070' },
    'control-plane-ca': { type: 'string' },
    'gateway-token-file': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'tunnel-tls-cert': { type: 'string' },
    'tunnel-tls-key': { type: 'string' },
    local: { type: 'boolean', default: false },
    nats: { type: 'string', default: process.env.WARDEN_NATS_URL || undefined },
    'data-dir': { type: 'string', default: process.env.WARDEN_GATEWAY_DATA_DIR || './.warden-gateway' },
    help: { type: 'boolean', default: false },
  },
});

if (v.help) {
  console.log(USAGE);
  process.exit(0);
}

// Buffered: a line per statement must not cost a write() per statement. The
// audit trail, not the log, is the durable record.
const logDestination = destination({ dest: 1, sync: false, minLength: 8 * 1024 });
const log = pino({ name: 'gateway', redact: ['token', 'password', '*.token', '*.password'] }, logDestination);
setInterval(() => logDestination.flush(), 1000).unref();
const token = v['gateway-token-file']
  ? readFileSync(v['gateway-token-file'], 'utf8').trim()
  : process.env.WARDEN_GATEWAY_TOKEN;
if (!token) {
  console.error('warden-gateway: no gateway token: set WARDEN_GATEWAY_TOKEN or pass --gateway-token-file\n' + USAGE);
  process.exit(2);
}
const pair = (cert?: string, key?: string) => (cert && key ? { cert, key } : undefined);

try {
  // Events recorded before a crash wait in the outbox under --data-dir and are sent after the restart.
  const audit = createAuditSink({
    gatewayId: v.id!,
    dataDir: v['data-dir']!,
    natsUrl: v.nats,
    controlPlane: { address: v['control-plane']!, ca: v['control-plane-ca'], token },
    log,
  });
  const gateway = await startGateway({
    id: v.id!,
    listen: v.listen!,
    tunnelListen: v['tunnel-listen']!,
    tunnelAdvertise: v['tunnel-advertise'],
    controlPlane: v['control-plane']!,
    controlPlaneCa: v['control-plane-ca'],
    gatewayToken: token,
    tls: pair(v['tls-cert'], v['tls-key']),
    tunnelTls: pair(v['tunnel-tls-cert'], v['tunnel-tls-key']),
    local: v.local,
    log,
    audit,
  });
  const stop = async () => {
    log.info('shutting down');
    await gateway.close();
    // After the sessions' last events; what is not delivered in time stays in the outbox.
    await audit.close();
    logDestination.flushSync();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} catch (err) {
  log.fatal({ err }, 'gateway failed to start');
  logDestination.flushSync();
  process.exit(1);
}
