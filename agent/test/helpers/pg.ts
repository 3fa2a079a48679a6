// Test Postgres helpers: the machine's server (trust auth on 127.0.0.1:5432)
// and a throwaway cluster with password auth and TLS, started per test file.
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync, writeFileSync, chmodSync, appendFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export const MAIN = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' };
const PG_BIN = '/usr/lib/postgresql/15/bin';

export async function query<T extends pg.QueryResultRow = pg.QueryResultRow>(
  conn: pg.ClientConfig,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = new pg.Client(conn);
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export function rand(): string {
  return Math.random().toString(36).slice(2, 10);
}

export interface TempCluster {
  host: string;
  port: number;
  dir: string;
  /** PEM of the CA that signed the server certificate (SAN: 127.0.0.1, localhost). */
  caFile: string;
  /** PEM of an unrelated CA. */
  otherCaFile: string;
  superuser: pg.ClientConfig;
  stop(): void;
}

function idOf(user: string): { uid: number; gid: number } {
  return {
    uid: Number(execFileSync('id', ['-u', user]).toString().trim()),
    gid: Number(execFileSync('id', ['-g', user]).toString().trim()),
  };
}

/** Can we start a cluster here at all? */
export function canStartCluster(): boolean {
  return existsSync(join(PG_BIN, 'initdb')) && existsSync(join(PG_BIN, 'pg_ctl'));
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

function makeCerts(dir: string): void {
  for (const ca of ['ca', 'other-ca']) {
    openssl(
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=warden test ${ca}`, '-keyout', `${ca}.key`, '-out', `${ca}.crt`],
      dir,
    );
  }
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr'], dir);
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(
    ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'san.ext', '-out', 'server.crt'],
    dir,
  );
}

/**
 * initdb + pg_ctl start of a cluster with `host all all 127.0.0.1/32 md5`
 * (md5 roles use md5, SCRAM roles use SCRAM) and ssl=on. As root, the
 * server runs as the postgres OS user (postgres refuses to run as root).
 */
export async function startCluster(): Promise<TempCluster> {
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? idOf('postgres') : undefined;
  const run = (cmd: string, args: string[]): void => {
    const full = join(PG_BIN, cmd);
    if (asRoot) execFileSync('runuser', ['-u', 'postgres', '--', full, ...args], { stdio: 'pipe' });
    else execFileSync(full, args, { stdio: 'pipe' });
  };
  const dir = mkdtempSync(join(tmpdir(), 'warden-agent-pg-'));
  chmodSync(dir, 0o755);
  const data = join(dir, 'data');
  const superPassword = `su-${rand()}`;
  writeFileSync(join(dir, 'pw'), `${superPassword}\n`);
  makeCerts(dir);
  chmodSync(join(dir, 'server.key'), 0o600);
  if (owner) {
    for (const f of ['', 'pw', 'server.key', 'server.crt']) chownSync(join(dir, f), owner.uid, owner.gid);
  }
  run('initdb', ['-D', data, '-A', 'md5', '-U', 'postgres', `--pwfile=${join(dir, 'pw')}`, '-N', '--no-instructions']);
  const port = await freePort();
  appendFileSync(
    join(data, 'postgresql.conf'),
    [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = '${dir}'`,
      'fsync = off',
      'ssl = on',
      `ssl_cert_file = '${join(dir, 'server.crt')}'`,
      `ssl_key_file = '${join(dir, 'server.key')}'`,
      '',
    ].join('\n'),
  );
  run('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-t', '30', 'start']);
  let stopped = false;
  return {
    host: '127.0.0.1',
    port,
    dir,
    caFile: join(dir, 'ca.crt'),
    otherCaFile: join(dir, 'other-ca.crt'),
    superuser: { host: '127.0.0.1', port, user: 'postgres', password: superPassword, database: 'postgres' },
    stop() {
      if (stopped) return;
      stopped = true;
      try {
        run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
