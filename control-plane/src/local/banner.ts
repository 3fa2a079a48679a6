// What `warden start` prints once everything answers: what runs where, and
// commands that work when pasted as they are.
import { existsSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { UpstreamSettings } from './agent-config.js';
import { DEMO_MAX_CONNECTIONS } from './demo-db.js';

export interface BannerInfo {
  dataDir: string;
  storage: { kind: 'postgres' | 'pglite'; location: string };
  controlPlane: string;
  /** The web console's URL. */
  console?: string;
  gateway: { host: string; port: number; pid: number };
  tunnel: string;
  agent: { pid: number };
  /** Each process's metrics address (http://host:port). */
  metrics?: { controlPlane: string; gateway: string; agent: string };
  resource: string;
  demo?: { host: string; port: number };
  upstream?: UpstreamSettings;
  /**
   * A one-hour token for a ready-to-paste command: only when the banner goes
   * to a terminal, never into a file a log collector may keep.
   */
  token?: string;
  /** The seeded rules and mask are in force (no policy file applied yet). */
  demoRules?: boolean;
  /** The agent's role mapping for the resource. */
  nativeRoles?: Pick<UpstreamSettings, 'roles' | 'ruleRoles'>;
}

/** "rule demo-admin -> warden_demo_admin, level read -> r": the agent's role mapping, or '' without one. */
function roleLine(u: BannerInfo['nativeRoles']): string {
  const parts = [
    ...Object.entries(u?.ruleRoles ?? {}).map(([rule, role]) => `rule ${rule} -> ${role}`),
    ...Object.entries(u?.roles ?? {}).map(([level, role]) => `level ${level} -> ${role}`),
  ];
  return parts.join(', ');
}

/** Paths under the working directory are shown relative, the rest absolute. */
function shortPath(p: string): string {
  const rel = relative(process.cwd(), p);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : p;
}

const shellQuote = (s: string) => (/^[\w./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/**
 * How to run `warden` from the current directory: `npx warden` resolves the
 * workspace's bin link only inside the repository; elsewhere it would look
 * for an unrelated package on the registry.
 */
function wardenCommand(): string {
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const rel = relative(root, process.cwd());
  const inside = !rel.startsWith('..') && !isAbsolute(rel) && existsSync(join(root, 'node_modules/.bin/warden'));
  return inside ? 'npx warden' : `node ${shellQuote(join(root, 'control-plane/bin/warden.js'))}`;
}

export function banner(b: BannerInfo): string {
  const conn = `host=${b.gateway.host} port=${b.gateway.port} dbname=${b.resource} user=demo sslmode=disable`;
  // `warden token` finds the key through --data-dir; only the default can be left out.
  const dirFlag = resolve(b.dataDir) === resolve('.warden') ? '' : ` --data-dir ${shellQuote(shortPath(b.dataDir))}`;
  const logs = shortPath(join(b.dataDir, 'logs'));
  const database = b.demo
    ? `PGlite on ${b.demo.host}:${b.demo.port} (one shared session: up to ${DEMO_MAX_CONNECTIONS} connections, queries run one at a time)`
    : `${b.upstream!.host}:${b.upstream!.port}/${b.upstream!.database} as ${b.upstream!.user} (sslmode ${b.upstream!.sslmode})`;
  const lines = [
    `Warden is running in local mode (data in ${shortPath(b.dataDir)}).`,
    '',
    `  control plane   ${b.controlPlane}  (config in ${b.storage.kind === 'pglite' ? `PGlite at ${shortPath(b.storage.location)}` : `Postgres ${b.storage.location}`})`,
    ...(b.console ? [`  web console     ${b.console}  (sign in with any name; groups viewers, approvers or admins)`] : []),
    `  gateway         ${b.gateway.host}:${b.gateway.port}  (pid ${b.gateway.pid}; agent tunnel ${b.tunnel})`,
    `  agent           'local' (pid ${b.agent.pid}), serving resource '${b.resource}'`,
    `  ${b.demo ? 'demo database ' : 'upstream      '}  ${database}`,
    ...(roleLine(b.nativeRoles) ? [`  native roles    ${roleLine(b.nativeRoles)} (SELECT current_user shows it)`] : []),
    `  logs            ${logs}/{control-plane,gateway,agent}.log`,
    ...(b.metrics
      ? [
          `  metrics         control plane ${b.metrics.controlPlane}/metrics`,
          `                  gateway       ${b.metrics.gateway}/metrics`,
          `                  agent         ${b.metrics.agent}/metrics  (/healthz and /readyz beside each)`,
        ]
      : []),
    '',
    ...(b.token
      ? [`Connect as identity 'demo' (this token is valid for 1 hour):`, `  psql "${conn} password=${b.token}"`, '', 'Or mint a fresh token each time:']
      : [`Connect as identity 'demo', with a fresh token each time:`]),
    `  PGPASSWORD=$(${wardenCommand()} token --sub demo${dirFlag}) psql "${conn}"`,
    '',
  ];
  if (b.demo) lines.push('Try: SELECT c.name, o.amount, o.status FROM orders o JOIN customers c ON c.id = o.customer_id LIMIT 5;', '');
  if (b.demoRules) {
    const adminConn = conn.replace('user=demo ', 'user=demo-admin ');
    lines.push(
      `'demo' may only read (rule demo-read-only): ${b.demo ? 'DELETE FROM orders' : 'a DELETE'} as demo is refused.`,
      `'demo-admin' has admin access (rule demo-admin) and can do it:`,
      `  PGPASSWORD=$(${wardenCommand()} token --sub demo-admin${dirFlag}) psql "${adminConn}"`,
      ...(b.demo
        ? [
            `'demo' sees card numbers and e-mails masked (mask demo-pii on public.customers); 'demo-admin' is exempt and sees them in clear:`,
            `  SELECT name, email, card_number FROM customers LIMIT 3;`,
          ]
        : []),
      'Explain a decision without running anything:',
      `  ${wardenCommand()} policy check --as demo --resource ${b.resource}${dirFlag}${b.controlPlane === '127.0.0.1:7070' ? '' : ` --control-plane ${b.controlPlane}`} "DELETE FROM orders"`,
      '',
    );
  }
  lines.push('Press Ctrl+C to stop.');
  return lines.join('\n');
}
