// warden start: local mode (docs/processes.md, "Local mode").
import { parsePort } from '../args.js';
import type { Command } from '../context.js';
import { CliError } from '../errors.js';
import { parseNamePairs } from './roles.js';

const port = (text: string | undefined, fallback: number, name: string) => (text === undefined ? fallback : parsePort(text, name));

export const startCommand: Command = {
  name: 'start',
  summary: 'local mode: control plane, gateway, agent and a demo database on this machine',
  usage:
    '[--data-dir .warden] [--upstream URL] [--resource shop] [--gateway-port 15432]\n' +
    '                    [--control-plane-port 7070] [--console-port 7080] [--tunnel-port 7443] [--demo-port 15433] [--ready-file PATH] [--nats URL]\n' +
    '                    [--role LEVEL=ROLE ...] [--rule-role RULE=ROLE ...] [--record-parameters full|redacted|none]\n' +
    '                    [--log-level LEVEL] [--log-format pretty|json]',
  options: [
    ['data-dir', "state: the control plane's database, keys, tokens and logs"],
    'upstream',
    ['resource', 'the name clients connect to as dbname (default shop)'],
    'gateway-port',
    'control-plane-port',
    'console-port',
    'tunnel-port',
    'demo-port',
    'ready-file',
    ['database-url', 'Postgres for the control plane to store in (default: embedded PGlite)'],
    ['nats', 'carry the audit events through NATS JetStream instead of straight to the control plane'],
    'role',
    'rule-role',
    'record-parameters',
    ['approval-webhook', 'POST each new approval request to URL; also WARDEN_APPROVAL_WEBHOOKS, comma-separated (repeatable)'],
    'approval-webhook-format',
    'log-level',
    ['log-format', 'log lines as pretty (readable, the default here) or json'],
  ],
  async run(ctx) {
    const roles = parseNamePairs(ctx.many('role'), 'role', 'LEVEL');
    for (const level of Object.keys(roles)) {
      if (!['read', 'write', 'ddl', 'admin'].includes(level)) throw new CliError(`--role takes LEVEL=ROLE with LEVEL one of read, write, ddl, admin; got '${level}'`);
    }
    const ruleRoles = parseNamePairs(ctx.many('rule-role'), 'rule-role', 'RULE');
    const { webhookUrls } = await import('../../approvals/webhook.js');
    let approvalWebhooks: string[];
    try {
      approvalWebhooks = webhookUrls(ctx.many('approval-webhook'), ctx.env.WARDEN_APPROVAL_WEBHOOKS);
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    const { runLocal } = await import('../../local/run.js');
    const code = await runLocal({
      dataDir: ctx.dataDir,
      upstream: ctx.opt('upstream') || undefined,
      resource: ctx.opt('resource') ?? 'shop',
      gatewayPort: port(ctx.opt('gateway-port'), 15432, 'gateway-port'),
      controlPlanePort: port(ctx.opt('control-plane-port'), 7070, 'control-plane-port'),
      consolePort: port(ctx.opt('console-port'), 7080, 'console-port'),
      tunnelPort: port(ctx.opt('tunnel-port'), 7443, 'tunnel-port'),
      demoPort: port(ctx.opt('demo-port'), 15433, 'demo-port'),
      readyFile: ctx.opt('ready-file'),
      databaseUrl: ctx.opt('database-url') || undefined,
      natsUrl: ctx.opt('nats') || undefined,
      recordParameters: ctx.opt('record-parameters') || undefined,
      approvalWebhooks,
      approvalWebhookFormat: (ctx.opt('approval-webhook-format') as 'json' | 'slack' | undefined) || undefined,
      roles,
      ruleRoles,
      logLevel: ctx.opt('log-level') || undefined,
      logFormat: ctx.opt('log-format') || undefined,
      env: ctx.env,
    });
    // Everything is stopped by now; exit even if a library left a handle open.
    process.exit(code);
  },
};
