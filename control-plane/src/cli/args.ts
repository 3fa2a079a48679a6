// Every option of the `warden` command, declared once so that an option has
// the same name, value, description and environment variable in every command
// that takes it. Each command lists which of these it takes (commands/*.ts);
// commander parses them (run.ts).
import type { OptionSpec } from '@warden/proto/cli';
import { CliError } from './errors.js';

export const DEFAULT_CONTROL_PLANE = '127.0.0.1:7070';

const option = (value: string, description: string, more: Partial<OptionSpec> & { short?: string } = {}) => ({ value, description, ...more });
const flag = (description: string) => ({ value: '', description });
/** Given several times, the values collect in a list. */
const repeatable = (value: string, description: string) => option(value, `${description} (repeatable)`, { repeatable: true });

export const OPTIONS = {
  json: flag('print JSON instead of text'),
  // The control plane, for the commands that talk to it.
  'control-plane': option('HOST:PORT', 'control plane address; replicas separated by commas, the first that answers is used', { env: 'WARDEN_CONTROL_PLANE', default: DEFAULT_CONTROL_PLANE }),
  'data-dir': option('DIR', 'data directory; the admin token is read from DIR/admin-token unless WARDEN_ADMIN_TOKEN is set', {
    env: 'WARDEN_DATA_DIR',
    default: '.warden',
  }),
  ca: option('FILE', "CA certificate that signed a TLS control plane's certificate", { env: 'WARDEN_CONTROL_PLANE_CA' }),
  // warden control-plane
  listen: option('HOST:PORT', 'address to serve on', { env: 'WARDEN_CONTROL_PLANE_LISTEN', default: DEFAULT_CONTROL_PLANE }),
  'database-url': option('URL', 'Postgres to store in (default: embedded PGlite in DATA_DIR/db)', { env: 'WARDEN_DATABASE_URL' }),
  'tls-cert': option('FILE', 'TLS certificate (with --tls-key)', { env: 'WARDEN_CONTROL_PLANE_TLS_CERT' }),
  'tls-key': option('FILE', 'TLS private key (with --tls-cert)', { env: 'WARDEN_CONTROL_PLANE_TLS_KEY' }),
  nats: option('URL', 'NATS JetStream that carries the audit events', { env: 'WARDEN_NATS_URL' }),
  'audit-stream-replicas': option('N', 'copies the NATS cluster keeps of each audit event, 1 to 5 (default: 1 for a new stream; an existing one keeps its count)', {
    env: 'WARDEN_AUDIT_STREAM_REPLICAS',
  }),
  // DEFAULT_METRICS_LISTEN of @warden/proto/metrics, not imported: it would load prom-client for every command.
  'metrics-listen': option('HOST:PORT', 'HTTP listener for /metrics, /healthz and /readyz', { env: 'WARDEN_METRICS_LISTEN', default: '0.0.0.0:9470' }),
  // warden control-plane and warden start (passed on to the gateway and the agent)
  'log-level': option('LEVEL', 'log level: fatal, error, warn, info, debug, trace or silent (default info)', { env: 'WARDEN_LOG_LEVEL' }),
  'log-format': option('FORMAT', 'log lines as json or pretty (readable) (default json; pretty for warden start)', { env: 'WARDEN_LOG_FORMAT' }),
  // issuers, identities, resources, grants
  'issuer-url': option('URL', "the issuer URL, the tokens' iss claim"),
  audience: repeatable('A', 'an accepted aud claim'),
  'jwks-uri': option('URL', 'where the signing keys are (default: from OIDC discovery)'),
  'jwks-file': option('FILE', 'a JWKS file with the signing keys, stored inline'),
  alg: repeatable('ALG', 'an accepted signature algorithm (default RS256 and ES256)'),
  issuer: option('NAME', 'the issuer whose tokens this identity is'),
  match: repeatable('CLAIM=VALUE', 'a claim the token must have (a value ending in * matches by prefix)'),
  group: repeatable('G', 'a group'),
  agent: option('NAME', 'the agent that serves the resource'),
  description: option('TEXT', 'free text'),
  resource: option('R', 'the resource'),
  identity: option('I', 'the identity'),
  access: option('LEVEL', 'read, write, ddl or admin (default read)'),
  'allow-schema': repeatable('S', 'only objects in schema S'),
  'deny-schema': repeatable('S', 'no objects in schema S'),
  'allow-table': repeatable('T', 'only table T (schema.table, or table for that name in any schema)'),
  'deny-table': repeatable('T', 'not table T (schema.table, or table for that name in any schema)'),
  trust: repeatable('SCHEMA.NAME', 'a view or function that counts as itself rather than what it reaches'),
  // warden token
  sub: option('NAME', 'the subject (sub claim), the identity to be'),
  ttl: option('DURATION', 'lifetime: 30s, 15m, 1h or 2d, at most 7d (default 1h)'),
  aud: option('AUDIENCE', 'the aud claim (default warden)'),
  // warden start
  upstream: option('URL', 'a Postgres to serve instead of the demo database', { env: 'WARDEN_UPSTREAM_URL' }),
  'gateway-port': option('PORT', 'port of the Postgres endpoint (default 15432; 0 picks a free port)'),
  'control-plane-port': option('PORT', 'port of the control plane (default 7070; 0 picks a free port)'),
  'tunnel-port': option('PORT', 'port the agent dials (default 7443; 0 picks a free port)'),
  'console-port': option('PORT', 'port of the web console (default 7080; 0 picks a free port)'),
  'console-listen': option('H:P', 'serve the web console here (TLS with --tls-cert); none without', { env: 'WARDEN_CONSOLE_LISTEN' }),
  'console-url': option('URL', 'the URL people reach the console at, when a proxy is in front (default: from the request)', { env: 'WARDEN_CONSOLE_URL' }),
  'demo-port': option('PORT', 'port of the demo database (default 15433; 0 picks a free port)'),
  'ready-file': option('PATH', 'write the addresses here as JSON once everything runs'),
  // No environment variable: warden start keeps the caller's gateway settings from its own gateway.
  'record-parameters': option('MODE', "the gateway's Bind parameters in the audit trail: full (their values), redacted (each one's format and length) or none", {
    default: 'full',
    choices: ['full', 'redacted', 'none'],
  }),
  // native roles (roles sql, start)
  'agent-user': option('NAME', 'the user the agent logs in as, granted the roles'),
  'rule-role': repeatable('RULE=ROLE', 'the role for the sessions of a rule'),
  role: repeatable('LEVEL=ROLE', 'the role for the sessions of an access level'),
  // policy
  file: option('FILE', 'the policy file', { short: 'f' }),
  author: option('NAME', 'who applies it, kept in the history (default: the login name)', { env: 'WARDEN_AUTHOR' }),
  show: option('VERSION', "print that version's file"),
  as: option('IDENTITY', 'the identity to check as'),
  set: repeatable('NAME=VALUE', 'a startup parameter of the session, such as search_path'),
  // audit
  since: option('WHEN', 'from: 24h, 7d… ago, or an ISO time'),
  until: option('WHEN', 'until: 24h, 7d… ago, or an ISO time'),
  outcome: option('OUTCOME', 'ok, error or refused'),
  speed: option('SPEED', 'real waits the recorded gaps, N plays N times faster, fast does not wait (default fast)'),
  kind: option('KIND', 'statement kind; DROP finds DROP TABLE, DROP SCHEMA…'),
  decision: option('DECISION', 'allowed or refused'),
  text: option('SUBSTRING', 'statement text containing SUBSTRING'),
  type: option('TYPE', 'statement, session.start, session.end or auth.failure'),
  days: option('N', 'days of sessions to keep; 0 keeps them forever'),
  limit: option('N', 'at most N results'),
  // approvals
  token: option('TOKEN', "the approver's token, from a trusted issuer (never printed)", { env: 'WARDEN_TOKEN' }),
  state: option('STATE', 'pending (default), approved, denied, expired, withdrawn, executed or all'),
  reason: option('TEXT', 'why; kept with the decision'),
  // warden control-plane
  'approval-webhook': repeatable('URL', 'POST each new approval request to URL'),
  'approval-webhook-format': option('FORMAT', 'body of every approval webhook: json or slack (default: slack for hooks.slack.com, else json)', {
    choices: ['json', 'slack'],
  }),
} satisfies Record<string, { value: string; description: string; short?: string } & Omit<OptionSpec, 'flags'>>;

export type OptionName = keyof typeof OPTIONS;

/** An option a command takes, with a description of its own where the general one says too little. */
export type OptionRef = OptionName | readonly [OptionName, string];

/** The option as commander declares it, e.g. '-f, --file <FILE>'. */
export function optionSpec(ref: OptionRef): OptionSpec {
  const [name, description] = typeof ref === 'string' ? [ref, undefined] : ref;
  const o: { value: string; description: string; short?: string } & Omit<OptionSpec, 'flags'> = OPTIONS[name];
  const flags = `${o.short ? `-${o.short}, ` : ''}--${name}${o.value ? ` <${o.value}>` : ''}`;
  return { flags, description: description ?? o.description, env: o.env, default: o.default, repeatable: o.repeatable, choices: o.choices };
}

/** "30s", "15m", "1h", "2d" or a plain number of seconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text.trim());
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m?.[2] ?? ''];
  const seconds = m && unit ? Number(m[1]) * unit : NaN;
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new CliError(`duration '${text}' is invalid: use e.g. 30s, 15m, 1h or 1d`);
  }
  if (seconds > 7 * 86400) throw new CliError(`duration '${text}' is too long: at most 7d`);
  return seconds;
}

export function parsePort(text: string, name: string): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(port >= 0 && port <= 65535)) throw new CliError(`--${name} must be a port number between 0 and 65535`);
  return port;
}
