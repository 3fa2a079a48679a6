// warden control-plane: serve ControlPlaneService until SIGINT/SIGTERM.
import { mkdirSync } from 'node:fs';
import { CliError } from '../errors.js';
import type { Command } from '../context.js';
import { untilSignal } from '../signals.js';
import type { WebhookFormat } from '../../approvals/webhook.js';

export const serveCommand: Command = {
  name: 'control-plane',
  summary: 'serve the control plane until SIGINT or SIGTERM',
  usage: '[--listen H:P] [--data-dir D] [--database-url URL] [--tls-cert F --tls-key F] [--nats URL] [--approval-webhook URL ...]\n' +
    '                    [--console-listen H:P [--console-url URL]]',
  details:
    'The admin and gateway tokens come from WARDEN_ADMIN_TOKEN and WARDEN_GATEWAY_TOKEN, or from the files\n' +
    'admin-token and gateway-token in the data directory (made on the first start).',
  options: [
    'listen',
    ['data-dir', 'state: the embedded database (without --database-url) and the token files'],
    'database-url',
    'tls-cert',
    'tls-key',
    ['nats', "consume the gateways' audit events from NATS JetStream"],
    ['approval-webhook', 'POST each new approval request to URL; also WARDEN_APPROVAL_WEBHOOKS, comma-separated (repeatable)'],
    'approval-webhook-format',
    'console-listen',
    'console-url',
  ],
  async run(ctx) {
    const cert = ctx.opt('tls-cert');
    const key = ctx.opt('tls-key');
    if (Boolean(cert) !== Boolean(key)) throw new CliError('--tls-cert and --tls-key go together');
    const { webhookUrls } = await import('../../approvals/webhook.js');
    let webhooks: string[];
    try {
      webhooks = webhookUrls(ctx.many('approval-webhook'), ctx.env.WARDEN_APPROVAL_WEBHOOKS);
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    mkdirSync(ctx.dataDir, { recursive: true, mode: 0o700 });
    // Loaded here so the admin commands do not pay for storage and logging modules.
    const { createLogger } = await import('../../logger.js');
    const { startControlPlane } = await import('../../server/start.js');
    const log = createLogger();
    const cp = await startControlPlane({
      listen: ctx.opt('listen') || undefined,
      dataDir: ctx.dataDir,
      databaseUrl: ctx.opt('database-url') || undefined,
      tls: cert && key ? { cert, key } : undefined,
      adminToken: ctx.env.WARDEN_ADMIN_TOKEN || undefined,
      gatewayToken: ctx.env.WARDEN_GATEWAY_TOKEN || undefined,
      logger: log,
      natsUrl: ctx.opt('nats') || undefined,
      approvalWebhooks: webhooks,
      approvalWebhookFormat: (ctx.opt('approval-webhook-format') as WebhookFormat | undefined) || undefined,
      console: ctx.opt('console-listen') ? { listen: ctx.opt('console-listen')!, publicUrl: ctx.opt('console-url') || undefined } : undefined,
    });
    const sig = await untilSignal();
    log.info({ signal: sig }, 'shutting down');
    await cp.close();
    return 0;
  },
};
