// warden control-plane: serve ControlPlaneService until SIGINT/SIGTERM.
import { mkdirSync } from 'node:fs';
import { CliError } from '../errors.js';
import type { Command } from '../context.js';
import { untilSignal } from '../signals.js';
import type { WebhookFormat } from '../../approvals/webhook.js';

export const serveCommand: Command = {
  name: 'control-plane',
  summary: 'serve the control plane until SIGINT or SIGTERM',
  usage:
    '[--listen H:P] [--data-dir D] [--database-url URL] [--tls-cert F --tls-key F] [--nats URL [--audit-stream-replicas N]] [--approval-webhook URL ...]\n' +
    '                    [--console-listen H:P [--console-url URL]] [--metrics-listen H:P] [--log-level LEVEL] [--log-format json|pretty] [--config-file FILE]',
  details:
    'The admin and gateway tokens come from WARDEN_ADMIN_TOKEN and WARDEN_GATEWAY_TOKEN, or from the files\n' +
    'admin-token and gateway-token in the data directory (made on the first start).',
  options: [
    'listen',
    ['data-dir', 'state: the embedded database (without --database-url) and the token files'],
    'database-url',
    'tls-cert',
    'tls-key',
    ['nats', "consume the gateways' audit events from NATS JetStream (servers of a cluster separated by commas)"],
    'audit-stream-replicas',
    ['approval-webhook', 'POST each new approval request to URL; also WARDEN_APPROVAL_WEBHOOKS, comma-separated (repeatable)'],
    'approval-webhook-format',
    'metrics-listen',
    'log-level',
    ['log-format', 'log lines as json or pretty (readable) (default json)'],
    'console-listen',
    'console-url',
  ],
  configFile: true,
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
    const replicasText = ctx.opt('audit-stream-replicas');
    const auditStreamReplicas = replicasText ? Number(replicasText) : undefined;
    if (replicasText && !/^[1-5]$/.test(replicasText)) throw new CliError(`--audit-stream-replicas takes a number from 1 to 5, not '${replicasText}'`);
    if (auditStreamReplicas && !ctx.opt('nats')) throw new CliError('--audit-stream-replicas goes with --nats');
    mkdirSync(ctx.dataDir, { recursive: true, mode: 0o700 });
    // Loaded here so the admin commands do not pay for storage and logging modules.
    const { createLogger } = await import('../../logger.js');
    const { startControlPlane } = await import('../../server/start.js');
    const { newRegistry, startMetricsServer } = await import('@warden/proto/metrics');
    const log = createLogger({ level: ctx.opt('log-level'), format: ctx.opt('log-format') });
    // Up before the store opens, so /healthz answers and /readyz says what is missing meanwhile.
    const registry = newRegistry();
    let serving = false;
    const metrics = await startMetricsServer({
      listen: ctx.opt('metrics-listen') ?? '0.0.0.0:9470',
      registry,
      notReady: () => (serving ? undefined : 'the store is not open yet'),
    });
    log.info({ url: metrics.url }, 'metrics on /metrics, health on /healthz and /readyz');
    const cp = await startControlPlane({
      listen: ctx.opt('listen') || undefined,
      dataDir: ctx.dataDir,
      databaseUrl: ctx.opt('database-url') || undefined,
      tls: cert && key ? { cert, key } : undefined,
      adminToken: ctx.env.WARDEN_ADMIN_TOKEN || undefined,
      gatewayToken: ctx.env.WARDEN_GATEWAY_TOKEN || undefined,
      logger: log,
      natsUrl: ctx.opt('nats') || undefined,
      auditStreamReplicas,
      approvalWebhooks: webhooks,
      approvalWebhookFormat: (ctx.opt('approval-webhook-format') as WebhookFormat | undefined) || undefined,
      console: ctx.opt('console-listen') ? { listen: ctx.opt('console-listen')!, publicUrl: ctx.opt('console-url') || undefined } : undefined,
      metrics: registry,
    }).catch(async (err: unknown) => {
      await metrics.close();
      throw err;
    });
    serving = true;
    const sig = await untilSignal();
    log.info({ signal: sig }, 'shutting down');
    serving = false;
    await cp.close();
    await metrics.close();
    return 0;
  },
};
