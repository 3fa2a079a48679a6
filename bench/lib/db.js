// The throwaway benchmark database on the local Postgres.
import pg from 'pg';
import { libpqEnv } from './pgbench.js';
import { onCleanup, randomSuffix, runOk } from './util.js';

/** @typedef {import('./pgbench.js').Conn} Conn */

/**
 * Run one statement on a connection and return the rows.
 * @param {Conn} conn
 * @param {string} sql
 */
export async function query(conn, sql) {
  const client = new pg.Client({ ...conn, ssl: false, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

/**
 * Create an empty database `<prefix><random>` and register its removal
 * (DROP ... WITH (FORCE), also on Ctrl+C and errors), unless `drop` is
 * false (on a throwaway cluster that goes as a whole).
 * @param {{ host: string, port: number, user: string }} server
 * @param {string} prefix
 * @param {{ drop?: boolean }} [o]
 * @returns {Promise<Conn>}
 */
export async function createScratchDatabase(server, prefix, { drop = true } = {}) {
  const name = `${prefix}${randomSuffix()}`;
  const admin = { ...server, database: 'postgres' };
  await query(admin, `CREATE DATABASE ${name}`);
  if (drop) onCleanup(`drop database ${name}`, async () => {
    await query(admin, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });
  return { ...server, database: name };
}

/**
 * Create `warden_bench_<random>` and fill it with `pgbench -i -s scale`;
 * dropped at the end.
 * @param {{ host: string, port: number, user: string }} server
 * @param {number} scale
 * @param {(msg: string) => void} log
 */
export async function createBenchDatabase(server, scale, log) {
  const conn = await createScratchDatabase(server, 'warden_bench_');
  log(`created database ${conn.database}; pgbench -i -s ${scale} ...`);
  const started = Date.now();
  await runOk('pgbench', ['-i', '-q', '-s', String(scale), '-h', server.host, '-p', String(server.port), '-U', server.user, conn.database], {
    env: libpqEnv(conn),
  });
  log(`initialised in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return conn;
}

/**
 * Server facts that shape the run.
 * @param {Conn} conn
 */
export async function serverInfo(conn) {
  const [row] = await query(conn, `
    SELECT current_setting('server_version') AS version,
           current_setting('max_connections')::int AS max_connections,
           current_setting('superuser_reserved_connections')::int AS reserved,
           (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS in_use`);
  return row;
}
