// Agent configuration: a JSON file (see docs/processes.md, "Agent"), checked
// field by field so that a mistake is reported with the field's path.
import { accessSync, constants, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';

export type SslMode = 'disable' | 'require' | 'verify-full';
export const SSL_MODES: readonly SslMode[] = ['disable', 'require', 'verify-full'];

/** The gateway's access levels, which `roles` maps to upstream roles. */
export type AccessLevel = 'read' | 'write' | 'ddl' | 'admin';
export const ACCESS_LEVELS: readonly AccessLevel[] = ['read', 'write', 'ddl', 'admin'];

/** How the agent reaches one upstream database. */
export interface ResourceConfig {
  host: string;
  port: number;
  database: string;
  user: string;
  /** Inline password, when given in the file. */
  password?: string;
  /** Absolute path of a file holding the password; read at every login so it can be rotated. */
  passwordFile?: string;
  sslmode: SslMode;
  /** Absolute path of a PEM file with the CA(s) to trust for the upstream's certificate. */
  sslrootcert?: string;
  /** Upstream role per access level: the session runs SET ROLE to it after the login. */
  roles?: Partial<Record<AccessLevel, string>>;
  /** Upstream role per rule name; wins over `roles`. */
  ruleRoles?: Record<string, string>;
}

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

export interface ParseOptions {
  /** Directory relative paths in the file are resolved against (the config file's directory). */
  baseDir?: string;
  env?: NodeJS.ProcessEnv;
}

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return `a ${typeof v}`;
}

class Checker {
  readonly warnings: string[] = [];
  constructor(
    private readonly baseDir: string,
  ) {}

  fail(field: string, problem: string): never {
    throw new ConfigError(`config field "${field}" ${problem}`, field);
  }

  object(v: unknown, field: string): Obj {
    if (!isObject(v)) this.fail(field, `must be an object, got ${describe(v)}`);
    return v;
  }

  optionalObject(v: unknown, field: string): Obj {
    if (v === undefined) return {};
    return this.object(v, field);
  }

  string(v: unknown, field: string): string {
    if (v === undefined) this.fail(field, 'is required');
    if (typeof v !== 'string') this.fail(field, `must be a string, got ${describe(v)}`);
    if (v.trim() === '') this.fail(field, 'must not be empty');
    return v;
  }

  optionalString(v: unknown, field: string): string | undefined {
    if (v === undefined) return undefined;
    return this.string(v, field);
  }

  /** A path to a file that must exist and be readable; resolved against the config file's directory. */
  optionalFile(v: unknown, field: string): string | undefined {
    const p = this.optionalString(v, field);
    if (p === undefined) return undefined;
    const abs = isAbsolute(p) ? p : resolve(this.baseDir, p);
    try {
      accessSync(abs, constants.R_OK);
    } catch {
      this.fail(field, `names a file that cannot be read: ${abs}`);
    }
    return abs;
  }

  port(v: unknown, field: string): number {
    if (v === undefined) return 5432;
    const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) {
      this.fail(field, `must be a port number between 1 and 65535, got ${JSON.stringify(v)}`);
    }
    return n;
  }

  address(v: unknown, field: string): string {
    const s = this.string(v, field);
    const m = /^(.+):(\d+)$/.exec(s);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
      this.fail(field, `must be host:port, got ${JSON.stringify(s)}`);
    }
    return s;
  }

  unknownKeys(o: Obj, field: string, known: readonly string[]): void {
    for (const k of Object.keys(o)) {
      if (!known.includes(k)) {
        const where = field ? `${field}.${k}` : k;
        this.warnings.push(`unknown config field "${where}" ignored (known: ${known.join(', ')})`);
      }
    }
  }
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

const TOP_KEYS = ['name', 'controlPlane', 'enrollmentToken', 'enrollmentTokenFile', 'gatewayTls', 'resources'] as const;
const RESOURCE_KEYS = [
  'host',
  'port',
  'database',
  'user',
  'password',
  'passwordFile',
  'sslmode',
  'sslrootcert',
  'roles',
  'ruleRoles',
] as const;

/**
 * An upstream role name as Postgres stores it (SET ROLE quotes it, so case is
 * kept). Longer than 63 bytes, Postgres would silently cut it to another name.
 */
function roleName(c: Checker, v: unknown, field: string): string {
  const name = c.string(v, field);
  if (name.includes('\0')) c.fail(field, 'must not contain a NUL character');
  if (Buffer.byteLength(name, 'utf8') > 63) c.fail(field, `must be at most 63 bytes (Postgres' limit for names), got ${JSON.stringify(name)}`);
  return name;
}

function roleMaps(c: Checker, r: Obj, f: string): Pick<ResourceConfig, 'roles' | 'ruleRoles'> {
  const out: Pick<ResourceConfig, 'roles' | 'ruleRoles'> = {};
  if (r.roles !== undefined) {
    const o = c.object(r.roles, `${f}.roles`);
    const roles: Partial<Record<AccessLevel, string>> = {};
    for (const [level, v] of Object.entries(o)) {
      if (!(ACCESS_LEVELS as readonly string[]).includes(level)) {
        // A typo here would silently leave a level on the login user: refuse it.
        c.fail(`${f}.roles.${level}`, `is not an access level (use ${ACCESS_LEVELS.join(', ')})`);
      }
      roles[level as AccessLevel] = roleName(c, v, `${f}.roles.${level}`);
    }
    out.roles = roles;
  }
  if (r.ruleRoles !== undefined) {
    const o = c.object(r.ruleRoles, `${f}.ruleRoles`);
    const ruleRoles: Record<string, string> = {};
    for (const [rule, v] of Object.entries(o)) {
      if (rule.trim() === '') c.fail(`${f}.ruleRoles`, 'has an empty rule name');
      ruleRoles[rule] = roleName(c, v, `${f}.ruleRoles.${rule}`);
    }
    out.ruleRoles = ruleRoles;
  }
  return out;
}

/** Validates an already parsed JSON value. Throws ConfigError naming the field at fault. */
export function parseConfig(raw: unknown, options: ParseOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const c: Checker = new Checker(options.baseDir ?? process.cwd());
  if (!isObject(raw)) throw new ConfigError(`config must be a JSON object, got ${describe(raw)}`);
  c.unknownKeys(raw, '', TOP_KEYS);

  const name = c.string(raw.name, 'name');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
    c.fail('name', `must be letters, digits, '.', '_' or '-', got ${JSON.stringify(name)}`);
  }

  const cp = c.object(raw.controlPlane, 'controlPlane');
  c.unknownKeys(cp, 'controlPlane', ['address', 'ca']);
  const controlPlane = {
    address: c.address(cp.address, 'controlPlane.address'),
    ca: c.optionalFile(cp.ca, 'controlPlane.ca'),
  };

  let enrollmentToken: string;
  if (raw.enrollmentToken !== undefined && raw.enrollmentTokenFile !== undefined) {
    c.fail('enrollmentToken', 'and "enrollmentTokenFile" are both set; give only one');
  }
  if (raw.enrollmentToken !== undefined) {
    enrollmentToken = c.string(raw.enrollmentToken, 'enrollmentToken').trim();
  } else if (raw.enrollmentTokenFile !== undefined) {
    const file = c.optionalFile(raw.enrollmentTokenFile, 'enrollmentTokenFile')!;
    enrollmentToken = readSecretFile(file, 'enrollmentTokenFile').trim();
  } else if (env.WARDEN_ENROLLMENT_TOKEN && env.WARDEN_ENROLLMENT_TOKEN.trim() !== '') {
    enrollmentToken = env.WARDEN_ENROLLMENT_TOKEN.trim();
  } else {
    throw new ConfigError(
      'config field "enrollmentTokenFile" is required (or "enrollmentToken", or the WARDEN_ENROLLMENT_TOKEN environment variable)',
      'enrollmentTokenFile',
    );
  }

  const gt = c.optionalObject(raw.gatewayTls, 'gatewayTls');
  c.unknownKeys(gt, 'gatewayTls', ['ca']);
  const gatewayTls = { ca: c.optionalFile(gt.ca, 'gatewayTls.ca') };

  const res = c.object(raw.resources, 'resources');
  const resources: Record<string, ResourceConfig> = {};
  for (const [rname, rv] of Object.entries(res)) {
    const f = `resources.${rname}`;
    if (rname.trim() === '') c.fail(f, 'has an empty resource name');
    const r = c.object(rv, f);
    c.unknownKeys(r, f, RESOURCE_KEYS);
    const user = c.string(r.user, `${f}.user`);
    if (r.password !== undefined && r.passwordFile !== undefined) {
      c.fail(`${f}.password`, `and "${f}.passwordFile" are both set; give only one`);
    }
    let password: string | undefined;
    if (r.password !== undefined) {
      if (typeof r.password !== 'string') c.fail(`${f}.password`, `must be a string, got ${describe(r.password)}`);
      password = r.password;
    }
    const sslmode = r.sslmode === undefined ? 'disable' : r.sslmode;
    if (typeof sslmode !== 'string' || !(SSL_MODES as readonly string[]).includes(sslmode)) {
      c.fail(`${f}.sslmode`, `must be one of ${SSL_MODES.join(', ')}, got ${JSON.stringify(r.sslmode)}`);
    }
    const sslrootcert = c.optionalFile(r.sslrootcert, `${f}.sslrootcert`);
    if (sslrootcert && sslmode === 'disable') {
      c.warnings.push(`config field "${f}.sslrootcert" has no effect with sslmode disable`);
    }
    const resource: ResourceConfig = {
      host: c.string(r.host, `${f}.host`),
      port: c.port(r.port, `${f}.port`),
      database: r.database === undefined ? user : c.string(r.database, `${f}.database`),
      user,
      sslmode: sslmode as SslMode,
    };
    if (password !== undefined) resource.password = password;
    const passwordFile = c.optionalFile(r.passwordFile, `${f}.passwordFile`);
    if (passwordFile) resource.passwordFile = passwordFile;
    if (sslrootcert) resource.sslrootcert = sslrootcert;
    Object.assign(resource, roleMaps(c, r, f));
    resources[rname] = resource;
  }
  if (Object.keys(resources).length === 0) {
    c.warnings.push('config field "resources" is empty: every session will fail');
  }

  const config: AgentConfig = { name, controlPlane, enrollmentToken, gatewayTls, resources };
  return { config, warnings: c.warnings };
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
