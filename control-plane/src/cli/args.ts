// Command-line parsing: one option table for every command (node:util
// parseArgs), then each command says which of those options it accepts.
import { parseArgs } from 'node:util';
import { CliError } from './errors.js';

const str = { type: 'string' } as const;
const many = { type: 'string', multiple: true } as const;

export const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
  'control-plane': str,
  'data-dir': str,
  ca: str,
  listen: str,
  'database-url': str,
  'tls-cert': str,
  'tls-key': str,
  'issuer-url': str,
  audience: many,
  'jwks-uri': str,
  'jwks-file': str,
  alg: many,
  issuer: str,
  match: many,
  group: many,
  set: many,
  agent: str,
  description: str,
  resource: str,
  identity: str,
  sub: str,
  ttl: str,
  aud: str,
  upstream: str,
  'gateway-port': str,
  'control-plane-port': str,
  'tunnel-port': str,
  'demo-port': str,
  'ready-file': str,
  // native roles (roles sql, start)
  'agent-user': str,
  'rule-role': many,
  role: many,
  access: str,
  'allow-schema': many,
  'deny-schema': many,
  'allow-table': many,
  'deny-table': many,
  trust: many,
  file: { type: 'string', short: 'f' },
  author: str,
  show: str,
  as: str,
  // audit
  since: str,
  until: str,
  outcome: str,
  speed: str,
  kind: str,
  decision: str,
  text: str,
  type: str,
  days: str,
  limit: str,
  nats: str,
} as const;

export type OptionName = keyof typeof OPTIONS;

export interface Values {
  help?: boolean;
  json?: boolean;
  [name: string]: string | string[] | boolean | undefined;
}

export interface Parsed {
  values: Values;
  positionals: string[];
}

export function parse(argv: string[]): Parsed {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
    return { values: values as Values, positionals };
  } catch (err) {
    // parseArgs messages are long and mention internals; keep the useful part.
    const msg = (err as Error).message.split('. ')[0]?.replace(/^Unknown option/, 'unknown option');
    throw new CliError(`${msg} (see warden --help)`);
  }
}

/** Rejects options the command does not take, so typos do not pass silently. */
export function allowOnly(values: Values, allowed: readonly OptionName[], command: string): void {
  for (const key of Object.keys(values)) {
    if (values[key] !== undefined && key !== 'help' && !allowed.includes(key as OptionName)) {
      throw new CliError(`warden ${command} does not take --${key} (see warden ${command} --help)`);
    }
  }
}

export const str1 = (v: Values, name: OptionName): string | undefined => v[name] as string | undefined;
export const list = (v: Values, name: OptionName): string[] => (v[name] as string[] | undefined) ?? [];

export function required(v: Values, name: OptionName, command: string): string {
  const value = str1(v, name);
  if (value === undefined || value === '') throw new CliError(`warden ${command} needs --${name}`);
  return value;
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
