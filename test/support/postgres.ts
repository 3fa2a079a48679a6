// A Postgres server of the test's own (initdb into a temp dir), for what the
// machine's shared Postgres must not be reconfigured for: TLS on or off,
// pg_hba rules that require TLS for one role and allow plain TCP for another.
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort, makeCertificates } from './stack.js';

const run = promisify(execFile);

export interface PostgresRole {
  name: string;
  password: string;
  /** Only over TLS (a hostssl line); otherwise plain TCP is allowed too. Password auth is scram-sha-256 either way. */
  tlsOnly?: boolean;
}

export interface StartPostgresOptions {
  /** ssl=on with a certificate from makeCertificates() (SAN 127.0.0.1 and localhost). */
  ssl?: boolean;
  roles?: PostgresRole[];
  /** Addresses to listen on (all loopback); default 127.0.0.1. */
  listen?: string[];
}

export interface TestPostgres {
  host: string;
  port: number;
  /** Superuser URL (trust from loopback, no TLS) for the test's own setup and checks. */
  url: string;
  /** URL for a database on this server as the superuser. */
  urlFor(database: string): string;
  /** The CA that signed the server certificate (when ssl). */
  ca?: string;
  /** One query as the superuser on `database` (default postgres). */
  query(sql: string, params?: unknown[], database?: string): Promise<pg.QueryResult>;
  /** The server's log, for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

/** The newest installed server binaries (PG_BIN overrides). */
function binDir(): string {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base) ? readdirSync(base).filter((v) => existsSync(join(base, v, 'bin/initdb'))) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0) throw new Error(`no Postgres server binaries under ${base}/*/bin (install postgresql, or set PG_BIN)`);
  return join(base, versions[0]!, 'bin');
}

/** initdb and postgres refuse to run as root: run them as the postgres user then. */
async function serverUser(): Promise<{ uid: number; gid: number; wrap: (cmd: string, args: string[]) => [string, string[]] } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const ids = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]).catch(() => {
    throw new Error('initdb refuses to run as root, and there is no postgres user to run it as (run the tests as another user, or create one)');
  });
  const [{ stdout: uid }, { stdout: gid }] = ids;
  return { uid: Number(uid), gid: Number(gid), wrap: (cmd, args) => ['runuser', ['-u', 'postgres', '--', cmd, ...args]] };
}

const quote = (s: string) => `'${s.replace(/'/g, "''")}'`;

export async function startPostgres(opts: StartPostgresOptions = {}): Promise<TestPostgres> {
  const bin = binDir();
  const user = await serverUser();
  const dir = mkdtempSync(join(tmpdir(), 'warden-pg-'));
  const data = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  const exec = async (cmd: string, args: string[]) => {
    const [c, a] = user ? user.wrap(cmd, args) : [cmd, args];
    try {
      return await run(c, a, { cwd: dir, timeout: 120_000 });
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      throw new Error(`${cmd} failed: ${err.stderr || err.message}${existsSync(logFile) ? `\n${readFileSync(logFile, 'utf8').slice(-2000)}` : ''}`);
    }
  };
  const own = (path: string) => user && chownSync(path, user.uid, user.gid);
  let started = false;

  const stop = async () => {
    if (started) {
      started = false;
      await exec(join(bin, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop']).catch(() =>
        exec(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined),
      );
    }
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    own(dir);
    await exec(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-locale', '--no-sync']);

    const port = await freePort();
    const listen = opts.listen ?? ['127.0.0.1'];
    const conf = [
      `listen_addresses = ${quote(listen.join(','))}`,
      `port = ${port}`,
      `unix_socket_directories = ${quote(dir)}`,
      // Small and fast: a test server shares the machine with everyone's tests.
      'max_connections = 20',
      'shared_buffers = 16MB',
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
      "password_encryption = 'scram-sha-256'",
      'log_connections = on',
    ];
    let ca: string | undefined;
    if (opts.ssl) {
      const certs = await makeCertificates(dir);
      ca = certs.ca;
      // The key must belong to the server's user and be private to it.
      copyFileSync(certs.cert, join(data, 'server.crt'));
      copyFileSync(certs.key, join(data, 'server.key'));
      chmodSync(join(data, 'server.key'), 0o600);
      own(join(data, 'server.crt'));
      own(join(data, 'server.key'));
      conf.push('ssl = on', "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'");
    } else {
      conf.push('ssl = off');
    }
    appendFileSync(join(data, 'postgresql.conf'), `\n# warden test server\n${conf.join('\n')}\n`);

    // First match wins: the superuser by trust, then each role by its TLS rule.
    const hba = ['local all all trust', 'host all postgres 127.0.0.0/8 trust'];
    for (const r of opts.roles ?? []) hba.push(`${r.tlsOnly ? 'hostssl' : 'host'} all ${r.name} 127.0.0.0/8 scram-sha-256`);
    writeFileSync(join(data, 'pg_hba.conf'), `${hba.join('\n')}\n`);
    own(join(data, 'pg_hba.conf'));

    await exec(join(bin, 'pg_ctl'), ['-D', data, '-l', logFile, '-w', '-t', '60', 'start']);
    started = true;

    const host = '127.0.0.1';
    const urlFor = (database: string) => `postgres://postgres@${host}:${port}/${database}`;
    const query = async (sql: string, params?: unknown[], database = 'postgres') => {
      const c = new pg.Client({ connectionString: urlFor(database) });
      await c.connect();
      try {
        return await c.query(sql, params);
      } finally {
        await c.end();
      }
    };
    for (const r of opts.roles ?? []) await query(`CREATE ROLE ${r.name} LOGIN PASSWORD ${quote(r.password)}`);

    return {
      host,
      port,
      url: urlFor('postgres'),
      urlFor,
      ca,
      query,
      log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
