// warden control-plane: serve ControlPlaneService until SIGINT/SIGTERM.
import { mkdirSync } from 'node:fs';
import { CliError } from '../errors.js';
import type { Command } from '../context.js';
import { untilSignal } from '../signals.js';

export const serveCommand: Command = {
  name: 'control-plane',
  usage:
    'warden control-plane [--listen H:P] [--data-dir D] [--database-url URL] [--tls-cert F --tls-key F] [--nats URL]\n' +
    '  (PGlite in <data-dir>/db unless --database-url / WARDEN_DATABASE_URL; tokens from\n' +
    '   WARDEN_ADMIN_TOKEN / WARDEN_GATEWAY_TOKEN or <data-dir>/admin-token, gateway-token;\n' +
    '   --nats / WARDEN_NATS_URL: consume the gateways\' audit events from NATS JetStream)',
  options: ['listen', 'data-dir', 'database-url', 'tls-cert', 'tls-key', 'nats'],
  async run(ctx) {
    ctx.noArgs();
    const cert = ctx.opt('tls-cert');
    const key = ctx.opt('tls-key');
    if (Boolean(cert) !== Boolean(key)) throw new CliError('--tls-cert and --tls-key go together');
    mkdirSync(ctx.dataDir, { recursive: true, mode: 0o700 });
    // Loaded here so the admin commands do not pay for storage and logging modules.
    const { createLogger } = await import('../../logger.js');
    const { DEFAULT_LISTEN, startControlPlane } = await import('../../server/start.js');
    const log = createLogger();
    const cp = await startControlPlane({
      listen: ctx.opt('listen') ?? DEFAULT_LISTEN,
      dataDir: ctx.dataDir,
      databaseUrl: ctx.opt('database-url') ?? (ctx.env.WARDEN_DATABASE_URL || undefined),
      tls: cert && key ? { cert, key } : undefined,
      adminToken: ctx.env.WARDEN_ADMIN_TOKEN || undefined,
      gatewayToken: ctx.env.WARDEN_GATEWAY_TOKEN || undefined,
      logger: log,
      natsUrl: ctx.opt('nats') ?? (ctx.env.WARDEN_NATS_URL || undefined),
    });
    const sig = await untilSignal();
    log.info({ signal: sig }, 'shutting down');
    await cp.close();
    return 0;
  },
};
