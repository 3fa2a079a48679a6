// Agent configuration: a JSON file (see docs/processes.md, "Agent"). Its
// shape is the zod schema below, which also gives the types (the file local
// mode writes, and the config the agent runs with); what depends on the
// machine (files that must be readable, the token from a file or the
// environment) is checked after it. Every mistake names the field's path.
import { accessSync, constants, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import * as z from 'zod';

export const SSL_MODES = ['disable', 'require', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** The gateway's access levels, which `roles` maps to upstream roles. */
export const ACCESS_LEVELS = ['read', 'write', 'ddl', 'admin'] as const;
export type AccessLevel = (typeof ACCESS_LEVELS)[number];

export class ConfigError extends Error {
  constructor(
    message: string,
    /** Dotted path of the offending field, e.g. `resources.shop.port`. */
    readonly field?: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

// ---- the file's shape ------------------------------------------------------

const shown = (v: unknown) => JSON.stringify(v);
/** A non-blank string. */
const text = () => z.string().refine((s) => s.trim() !== '', 'must not be empty');

const portError = (iss: { input?: unknown }) => `must be a port number between 1 and 65535, got ${shown(iss.input)}`;
const port = z
  .union([z.number(), z.string()], { error: portError })
  .refine((v) => (typeof v === 'number' || /^\d+$/.test(v)) && Number.isInteger(Number(v)) && Number(v) >= 1 && Number(v) <= 65535, { error: portError })
  .transform(Number);

const isHostPort = (s: string) => {
  const m = /^(.+):(\d+)$/.exec(s.trim());
  return m !== null && Number(m[2]) >= 1 && Number(m[2]) <= 65535;
};
/** host:port, or several separated by commas (control-plane replicas). */
const hostPorts = text().refine((s) => s.split(',').every(isHostPort), {
  error: (iss) => `must be host:port, or several separated by commas, got ${shown(iss.input)}`,
});

/**
 * An upstream role name as Postgres stores it (SET ROLE quotes it, so case is
 * kept). Longer than 63 bytes, Postgres would silently cut it to another name.
 */
const roleName = text()
  .refine((s) => !s.includes('\0'), 'must not contain a NUL character')
  .refine((s) => Buffer.byteLength(s, 'utf8') <= 63, { error: (iss) => `must be at most 63 bytes (Postgres' limit for names), got ${shown(iss.input)}` });

/** At most one of two fields; the problem is reported at the first, naming the second. */
const notBoth = <K extends string>(a: K, b: K): [(v: Partial<Record<K, unknown>>) => boolean, z.core.$ZodCustomParams] => [
  (v) => v[a] === undefined || v[b] === undefined,
  { path: [a], params: { alsoSet: b }, error: 'both set' },
];

const resourceFile = z
  .object({
    host: text(),
    port: port.default(5432),
    /** Default: the user name. */
    database: text().optional(),
    user: text(),
    /** Inline password, when given in the file. */
    password: z.string().optional(),
    /** A file holding the password; read at every login so it can be rotated. */
    passwordFile: text().optional(),
    sslmode: z.enum(SSL_MODES, { error: (iss) => `must be one of ${SSL_MODES.join(', ')}, got ${shown(iss.input)}` }).default('disable'),
    /** A PEM file with the CA(s) to trust for the upstream's certificate. */
    sslrootcert: text().optional(),
    /** Upstream role per access level: the session runs SET ROLE to it after the login. */
    roles: z
      // A typo in a level would silently leave that level on the login user: refuse it.
      .partialRecord(z.enum(ACCESS_LEVELS), roleName, {
        error: (iss) => (iss.code === 'invalid_type' ? undefined : `is not an access level (use ${ACCESS_LEVELS.join(', ')})`),
      })
      .optional(),
    /** Upstream role per rule name; wins over `roles`. */
    ruleRoles: z.record(z.string().refine((s) => s.trim() !== '', 'has an empty rule name'), roleName).optional(),
  })
  .refine(...notBoth('password', 'passwordFile'));

const controlPlaneFile = z.object({ address: hostPorts, ca: text().optional() });
const gatewayTlsFile = z.object({ ca: text().optional() });

const configFile = z
  .object({
    name: text().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, { error: (iss) => `must be letters, digits, '.', '_' or '-', got ${shown(iss.input)}` }),
    controlPlane: controlPlaneFile,
    enrollmentToken: text().optional(),
    enrollmentTokenFile: text().optional(),
    gatewayTls: gatewayTlsFile.optional(),
    resources: z.record(z.string().refine((s) => s.trim() !== '', 'has an empty resource name'), resourceFile),
  })
  .refine(...notBoth('enrollmentToken', 'enrollmentTokenFile'));

/** What the config file holds (local mode writes one). */
export type AgentConfigFile = z.input<typeof configFile>;

/** How the agent reaches one upstream database: defaults filled in, file paths absolute. */
export type ResourceConfig = Omit<z.output<typeof resourceFile>, 'database'> & { database: string };

/** The configuration the agent runs with. */
export interface AgentConfig {
  name: string;
  controlPlane: { address: string; ca?: string };
  enrollmentToken: string;
  gatewayTls: { ca?: string };
  resources: Record<string, ResourceConfig>;
}

export interface LoadedConfig {
  config: AgentConfig;
  /** Things worth a log line that do not stop the agent (unknown keys, ...). */
  warnings: string[];
}

export interface ParseOptions {
  /** Directory relative paths in the file are resolved against (the config file's directory). */
  baseDir?: string;
  env?: NodeJS.ProcessEnv;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return `a ${typeof v}`;
}

/** Words for zod's own issues (the schema words its checks itself). */
function words(iss: z.core.$ZodRawIssue): string | undefined {
  if (iss.code === 'invalid_type') {
    if (iss.expected === 'object' || iss.expected === 'record') return `must be an object, got ${describe(iss.input)}`;
    return iss.input === undefined ? 'is required' : `must be a ${iss.expected}, got ${describe(iss.input)}`;
  }
  if (iss.code === 'invalid_key') return iss.issues[0]?.message;
  return undefined;
}

/** One line per field at fault, `config field "a.b" what is wrong`. */
function shapeError(issues: z.core.$ZodIssue[]): ConfigError {
  const lines: string[] = [];
  const fields: string[] = [];
  for (const iss of issues) {
    // A key not allowed is the field at fault (only `roles` has a fixed set); a blank key's mapping is.
    const path = iss.code === 'unrecognized_keys' ? [...iss.path, iss.keys[0]!] : iss.code === 'invalid_key' ? iss.path.slice(0, -1) : iss.path;
    const field = path.join('.');
    if (fields.includes(field)) continue;
    fields.push(field);
    if (field === '') {
      lines.push(`config must be a JSON object, got ${describe(iss.input)}`);
      continue;
    }
    const also = (iss as { params?: { alsoSet?: string } }).params?.alsoSet;
    const message = also ? `and "${[...path.slice(0, -1), also].join('.')}" are both set; give only one` : iss.message;
    lines.push(`config field "${field}" ${message}`);
  }
  return new ConfigError(lines.join('\n'), fields[0] || undefined);
}

/** Validates an already parsed JSON value. Throws ConfigError naming the field at fault. */
export function parseConfig(raw: unknown, options: ParseOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const baseDir = options.baseDir ?? process.cwd();
  const parsed = configFile.safeParse(raw, { error: words, reportInput: true });
  if (!parsed.success) throw shapeError(parsed.error.issues);
  const file = parsed.data;
  const input = raw as Record<string, any>;

  const warnings: string[] = [];
  const unknownKeys = (value: Record<string, unknown>, field: string, schema: z.ZodObject) => {
    const known = Object.keys(schema.shape);
    for (const k of Object.keys(value)) {
      if (!known.includes(k)) warnings.push(`unknown config field "${field ? `${field}.${k}` : k}" ignored (known: ${known.join(', ')})`);
    }
  };
  unknownKeys(input, '', configFile);
  unknownKeys(input.controlPlane, 'controlPlane', controlPlaneFile);
  if (input.gatewayTls) unknownKeys(input.gatewayTls, 'gatewayTls', gatewayTlsFile);

  // Files named in the config must be readable now; relative paths are the config file's.
  const readable = (p: string | undefined, field: string): string | undefined => {
    if (p === undefined) return undefined;
    const abs = isAbsolute(p) ? p : resolve(baseDir, p);
    try {
      accessSync(abs, constants.R_OK);
    } catch {
      throw new ConfigError(`config field "${field}" names a file that cannot be read: ${abs}`, field);
    }
    return abs;
  };
  const controlPlane = { address: file.controlPlane.address, ca: readable(file.controlPlane.ca, 'controlPlane.ca') };

  let enrollmentToken: string;
  if (file.enrollmentToken !== undefined) {
    enrollmentToken = file.enrollmentToken.trim();
  } else if (file.enrollmentTokenFile !== undefined) {
    enrollmentToken = readSecretFile(readable(file.enrollmentTokenFile, 'enrollmentTokenFile')!, 'enrollmentTokenFile').trim();
  } else if (env.WARDEN_ENROLLMENT_TOKEN && env.WARDEN_ENROLLMENT_TOKEN.trim() !== '') {
    enrollmentToken = env.WARDEN_ENROLLMENT_TOKEN.trim();
  } else {
    throw new ConfigError(
      'config field "enrollmentTokenFile" is required (or "enrollmentToken", or the WARDEN_ENROLLMENT_TOKEN environment variable)',
      'enrollmentTokenFile',
    );
  }

  const gatewayTls = { ca: readable(file.gatewayTls?.ca, 'gatewayTls.ca') };

  const resources: Record<string, ResourceConfig> = {};
  for (const [name, r] of Object.entries(file.resources)) {
    const f = `resources.${name}`;
    unknownKeys(input.resources[name], f, resourceFile);
    const resource: ResourceConfig = { ...r, database: r.database ?? r.user };
    const sslrootcert = readable(r.sslrootcert, `${f}.sslrootcert`);
    if (sslrootcert) resource.sslrootcert = sslrootcert;
    if (sslrootcert && r.sslmode === 'disable') warnings.push(`config field "${f}.sslrootcert" has no effect with sslmode disable`);
    const passwordFile = readable(r.passwordFile, `${f}.passwordFile`);
    if (passwordFile) resource.passwordFile = passwordFile;
    resources[name] = resource;
  }
  if (Object.keys(resources).length === 0) {
    warnings.push('config field "resources" is empty: every session will fail');
  }

  return { config: { name: file.name, controlPlane, enrollmentToken, gatewayTls, resources }, warnings };
}

function readSecretFile(path: string, field: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new ConfigError(`config field "${field}" names a file that cannot be read: ${path}`, field);
  }
  // A trailing newline is an editor artefact, not part of the secret.
  const secret = text.replace(/\r?\n$/, '');
  if (secret === '') throw new ConfigError(`config field "${field}" names an empty file: ${path}`, field);
  return secret;
}

/** The upstream role a session runs in, and why (for messages and logs). */
export interface SessionRole {
  name: string;
  /** "rule ci-read-only" or "access level read". */
  source: string;
}

/**
 * The role for a session under `access` and `rule` (from OpenSession): the
 * rule's mapping, else the level's, else none (the login user). Throws when
 * the resource maps roles but the gateway named no level: without it the
 * agent cannot tell which role applies, and must not fall back to the login
 * user (fail closed).
 */
export function sessionRole(r: ResourceConfig, access: string, rule: string): SessionRole | undefined {
  const byRule = r.ruleRoles && rule && Object.hasOwn(r.ruleRoles, rule) ? r.ruleRoles[rule] : undefined;
  if (byRule !== undefined) return { name: byRule, source: `rule ${rule}` };
  const mapsRoles = Object.keys(r.roles ?? {}).length > 0 || Object.keys(r.ruleRoles ?? {}).length > 0;
  if (!access) {
    if (mapsRoles) throw new ConfigError('the gateway did not say the session\'s access level (is it older than the agent?), and this resource maps levels to roles');
    return undefined;
  }
  const byLevel = r.roles && Object.hasOwn(r.roles, access) ? r.roles[access as AccessLevel] : undefined;
  if (byLevel !== undefined) return { name: byLevel, source: `access level ${access}` };
  return undefined;
}

/** Reads and validates the config file. Relative paths inside are resolved against its directory. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(`cannot read config file ${file}${code ? ` (${code})` : ''}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  return parseConfig(raw, { baseDir: dirname(resolve(file)), env });
}

/** The password for a resource: inline, or read from its file now (so a rotated file is picked up). */
export async function resourcePassword(r: ResourceConfig): Promise<string | undefined> {
  if (r.password !== undefined) return r.password;
  if (r.passwordFile === undefined) return undefined;
  const text = await readFile(r.passwordFile, 'utf8');
  return text.replace(/\r?\n$/, '');
}
