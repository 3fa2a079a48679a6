// A private PgBouncer for the comparison rows: own ini + userlist in a temp
// dir, listening on a free loopback port, stopped at the end.
import { spawn, execFileSync } from 'node:child_process';
import { access, chown, constants, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { query } from './db.js';
import { childEnv, freePort, onCleanup, pidAlive, sleep, tempDir, waitForPort, which } from './util.js';

export const PGBOUNCER_POOL_MODE = 'session';
export const PGBOUNCER_INSTALL_HINT = 'install it with: apt-get update && apt-get install -y pgbouncer';

/**
 * Start PgBouncer in front of `upstream`, or return { skipped } when the
 * binary is missing.
 * @param {import('./pgbench.js').Conn} upstream
 * @param {(msg: string) => void} log
 * @param {{ sessions?: number }} [o]  sessions it must hold open at once
 *   (in session mode each one keeps a server connection)
 * @returns {Promise<import('./paths.js').BenchPath | { skipped: string }>}
 */
export async function startPgbouncer(upstream, log, { sessions = 0 } = {}) {
  // WARDEN_BENCH_PGBOUNCER names the binary when it is not on the PATH.
  const bin = process.env.WARDEN_BENCH_PGBOUNCER
    ? await access(process.env.WARDEN_BENCH_PGBOUNCER, constants.X_OK).then(() => process.env.WARDEN_BENCH_PGBOUNCER, () => null)
    : await which('pgbouncer');
  if (!bin) return { skipped: `pgbouncer not found; ${PGBOUNCER_INSTALL_HINT}` };
  const version = execFileSync(bin, ['--version'], { encoding: 'utf8' }).split('\n')[0].trim();

  const dir = await tempDir('warden-bench-pgbouncer-');
  const port = await freePort();
  const ini = path.join(dir, 'pgbouncer.ini');
  const pidfile = path.join(dir, 'pgbouncer.pid');
  const logfile = path.join(dir, 'pgbouncer.log');
  // session pooling: pgbench -M prepared needs a client to keep its server
  // connection (PgBouncer < 1.21 cannot track protocol-level prepared
  // statements in transaction mode), and it matches Warden's 1:1 sessions.
  await writeFile(path.join(dir, 'userlist.txt'), `"${upstream.user}" ""\n`);
  await writeFile(ini, [
    '[databases]',
    `bench = host=${upstream.host} port=${upstream.port} dbname=${upstream.database} user=${upstream.user}`,
    '',
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = trust',
    `auth_file = ${path.join(dir, 'userlist.txt')}`,
    `admin_users = ${upstream.user}`,
    `pool_mode = ${PGBOUNCER_POOL_MODE}`,
    `default_pool_size = ${Math.max(20, sessions + 10)}`,
    `max_client_conn = ${Math.max(2000, sessions + 100)}`,
    'ignore_startup_parameters = extra_float_digits,options',
    `logfile = ${logfile}`,
    `pidfile = ${pidfile}`,
    '',
  ].join('\n'));

  // PgBouncer refuses to run as root: drop to the postgres user, which must
  // be able to read the config and write the log and pid file.
  let cmd = bin;
  let args = [ini];
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    await chown(dir, uid, gid);
    const setpriv = await which('setpriv');
    if (setpriv) {
      cmd = setpriv;
      args = [`--reuid=${uid}`, `--regid=${gid}`, '--init-groups', bin, ini];
    } else {
      cmd = 'runuser';
      args = ['-u', 'postgres', '--', bin, ini];
    }
  }
  const child = spawn(cmd, args, { env: childEnv(), stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
  let exited = false;
  child.on('exit', () => { exited = true; });

  let pid = 0;
  const stop = async () => {
    const target = pid || child.pid;
    if (!exited && target && pidAlive(target)) {
      process.kill(target, 'SIGTERM');
      for (let i = 0; i < 50 && !exited; i++) await sleep(100);
      if (!exited && pidAlive(target)) process.kill(target, 'SIGKILL');
    }
    if (!exited && child.pid && pidAlive(child.pid)) child.kill('SIGKILL');
  };
  const removeCleanup = onCleanup('stop pgbouncer', stop);

  try {
    await waitForPort('127.0.0.1', port, 15_000, () => !exited);
    pid = Number((await readFile(pidfile, 'utf8').catch(() => '')).trim()) || /** @type {number} */ (child.pid);
    const conn = { host: '127.0.0.1', port, user: upstream.user, database: 'bench' };
    await query(conn, 'SELECT 1');
    const admin = { ...conn, database: 'pgbouncer' };
    // Idle server connections stay open for server_idle_timeout (10 min):
    // after the idle-session measurement they would hold that many backends.
    const releaseServers = async () => {
      await query(admin, 'RECONNECT bench');
      for (let i = 0; i < 100; i++) {
        const servers = await query(admin, 'SHOW SERVERS');
        if (!servers.some((r) => r.database === 'bench')) return;
        await sleep(100);
      }
    };
    log(`${version} on 127.0.0.1:${port} (pid ${pid}, pool_mode=${PGBOUNCER_POOL_MODE})`);
    return {
      id: 'pgbouncer',
      label: 'pgbouncer',
      kind: 'pgbouncer',
      note: `${version}, pool_mode=${PGBOUNCER_POOL_MODE}, auth_type=trust`,
      version,
      conn: async () => conn,
      pids: { pgbouncer: pid },
      releaseServers,
      stop: async () => { removeCleanup(); await stop(); },
    };
  } catch (err) {
    const logText = await readFile(logfile, 'utf8').catch(() => '');
    removeCleanup();
    await stop();
    const detail = (stderr + logText).trim().split('\n').slice(-10).join('\n');
    throw new Error(`pgbouncer did not start: ${err instanceof Error ? err.message : err}\n${detail}`);
  }
}
