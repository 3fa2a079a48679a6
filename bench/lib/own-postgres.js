// A Postgres cluster of the bench's own (initdb into a temp dir), for the
// session measurements when the machine's Postgres cannot take the requested
// number of sessions: its max_connections is set to fit them, and the
// machine's server configuration is left alone.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { appendFile, chown, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { query } from './db.js';
import { freePort, onCleanup, runOk, tempDir } from './util.js';

const POSTGRES_ROOT = '/usr/lib/postgresql';

/**
 * Server binaries of the newest installed major version
 * (WARDEN_BENCH_PG_BIN overrides), or null when there are none.
 */
export function postgresBinDir() {
  if (process.env.WARDEN_BENCH_PG_BIN) return process.env.WARDEN_BENCH_PG_BIN;
  if (!existsSync(POSTGRES_ROOT)) return null;
  const versions = readdirSync(POSTGRES_ROOT)
    .filter((v) => existsSync(path.join(POSTGRES_ROOT, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length ? path.join(POSTGRES_ROOT, versions[0], 'bin') : null;
}

/**
 * initdb and postgres refuse to run as root; as root they run as the
 * `postgres` user through runuser, and get the cluster's directory.
 * @returns {{ uid: number, gid: number } | null}
 */
function serverUser() {
  if (process.getuid?.() !== 0) return null;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new Error('initdb will not run as root, and there is no postgres user to run it as');
  }
}

const quote = (/** @type {string} */ s) => `'${s.replace(/'/g, "''")}'`;

/**
 * @typedef {object} OwnPostgres
 * @property {string} host
 * @property {number} port
 * @property {string} user           superuser, trust from loopback
 * @property {string} version        server_version
 * @property {number} maxConnections
 * @property {string} dir            temp dir (data, log, unix socket)
 * @property {(database: string) => import('./pgbench.js').Conn} conn
 * @property {() => Promise<string>} logTail  last lines of the server log
 * @property {() => Promise<void>} stop  stop the server and remove its dir
 */

/**
 * initdb a throwaway cluster and start it with pg_ctl on a free loopback
 * port. Stopped and removed by stop() or at the bench's cleanup.
 * @param {object} o
 * @param {number} o.maxConnections
 * @param {(msg: string) => void} o.log
 * @returns {Promise<OwnPostgres>}
 */
export async function startOwnPostgres({ maxConnections, log }) {
  const bin = postgresBinDir();
  if (!bin) throw new Error(`no Postgres server binaries under ${POSTGRES_ROOT}/*/bin (install postgresql, or set WARDEN_BENCH_PG_BIN)`);
  const user = serverUser();
  const dir = await tempDir('warden-bench-pg-');
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'postgres.log');
  if (user) await chown(dir, user.uid, user.gid);
  /** @param {string} tool @param {string[]} args */
  const exec = (tool, args) => {
    const cmd = path.join(bin, tool);
    return user
      ? runOk('runuser', ['-u', 'postgres', '--', cmd, ...args], { cwd: dir, timeoutMs: 120_000 })
      : runOk(cmd, args, { cwd: dir, timeoutMs: 120_000 });
  };
  const logTail = async () => (await readFile(logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-15).join('\n');

  let started = false;
  const stopServer = async () => {
    if (!started) return;
    started = false;
    await exec('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '30', 'stop']).catch(() =>
      exec('pg_ctl', ['-D', data, '-m', 'immediate', '-w', '-t', '30', 'stop']));
  };
  // Registered after tempDir(), so it runs before the dir is removed.
  const removeCleanup = onCleanup(`stop own postgres in ${dir}`, stopServer);

  try {
    await exec('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-locale', '--no-sync']);
    const port = await freePort();
    await appendFile(path.join(data, 'postgresql.conf'), [
      '',
      '# warden bench: throwaway cluster for the session measurements',
      "listen_addresses = '127.0.0.1'",
      `port = ${port}`,
      `unix_socket_directories = ${quote(dir)}`,
      `max_connections = ${maxConnections}`,
      'shared_buffers = 32MB',
      // Nothing here needs to survive a crash, and less background work
      // means less noise on a shared machine.
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
      'autovacuum = off',
      'ssl = off',
      '',
    ].join('\n'));
    // pg_hba.conf is replaced whole (initdb made it, so it has the right owner).
    await writeFile(path.join(data, 'pg_hba.conf'), 'local all all trust\nhost all all 127.0.0.1/32 trust\n');
    await exec('pg_ctl', ['-D', data, '-l', logFile, '-w', '-t', '60', 'start']);
    started = true;

    const host = '127.0.0.1';
    const conn = (/** @type {string} */ database) => ({ host, port, user: 'postgres', database });
    const [row] = await query(conn('postgres'), `SELECT current_setting('server_version') AS version, current_setting('max_connections')::int AS max`);
    log(`PostgreSQL ${row.version} of the bench's own on ${host}:${port} (max_connections=${row.max}, data in ${data})`);
    return {
      host,
      port,
      user: 'postgres',
      version: row.version,
      maxConnections: row.max,
      dir,
      conn,
      logTail,
      stop: async () => { removeCleanup(); await stopServer(); },
    };
  } catch (err) {
    const tail = await logTail();
    removeCleanup();
    await stopServer().catch(() => {});
    throw new Error(`own Postgres did not start: ${err instanceof Error ? err.message : err}${tail ? `\n--- postgres log (tail) ---\n${tail}` : ''}`);
  }
}
