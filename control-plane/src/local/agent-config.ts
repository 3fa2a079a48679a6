// The agent's config file (format in docs/processes.md) and the parsing of
// --upstream postgres:// URLs into its per-resource upstream settings.
import { isAbsolute, resolve } from 'node:path';
import { SSL_MODES, type AgentConfigFile, type ResourceConfig, type SslMode } from '@warden/agent';
import { writeSecretFile } from '../server/secrets.js';

/** One resource's upstream, as the agent's own config type has it (local mode writes no password files). */
export type UpstreamSettings = Omit<ResourceConfig, 'passwordFile'>;

const isLoopback = (host: string) => host === 'localhost' || host === '::1' || host === '[::1]' || /^127\./.test(host);

/**
 * postgres://user[:password]@host[:port][/database][?sslmode=…&sslrootcert=…].
 * Without sslmode, loopback hosts get `disable` and every other host
 * `require`, so credentials never cross a network in clear by default.
 */
export function parseUpstreamUrl(text: string): UpstreamSettings {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error('--upstream must be a URL like postgres://user:password@host:5432/database');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new Error(`--upstream must start with postgres:// (got ${url.protocol}//)`);
  }
  if (!url.hostname) throw new Error('--upstream needs a host (Unix sockets are not supported)');
  const user = decodeURIComponent(url.username);
  if (!user) throw new Error('--upstream needs a user, e.g. postgres://app@db.internal:5432/shop');
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const params = new Map(url.searchParams);
  for (const key of params.keys()) {
    if (key !== 'sslmode' && key !== 'sslrootcert') {
      throw new Error(`--upstream parameter '${key}' is not supported; only sslmode and sslrootcert are`);
    }
  }
  const sslmode = params.get('sslmode') ?? (isLoopback(host) ? 'disable' : 'require');
  if (!(SSL_MODES as readonly string[]).includes(sslmode)) {
    throw new Error(`--upstream sslmode '${sslmode}' is not supported; use disable, require or verify-full`);
  }
  const root = params.get('sslrootcert');
  const password = url.password ? decodeURIComponent(url.password) : undefined;
  return {
    host,
    port: url.port ? Number(url.port) : 5432,
    database: decodeURIComponent(url.pathname.replace(/^\//, '')) || user,
    user,
    ...(password !== undefined ? { password } : {}),
    sslmode: sslmode as SslMode,
    ...(root ? { sslrootcert: isAbsolute(root) ? root : resolve(root) } : {}),
  };
}

/** Written with mode 0600: it may hold the upstream password. The agent's own type, so it reads what is written. */
export function writeAgentConfig(file: string, config: AgentConfigFile): void {
  writeSecretFile(file, `${JSON.stringify(config, null, 2)}\n`);
}
