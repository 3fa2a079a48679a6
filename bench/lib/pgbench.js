// Running pgbench and reading its results: TPS from the summary, latency
// from the per-transaction log (--log), whose third column is microseconds.
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { childEnv, run } from './util.js';

/**
 * @typedef {object} Conn
 * @property {string} host
 * @property {number} port
 * @property {string} user
 * @property {string} database
 * @property {string} [password]
 */

/** libpq environment for a connection (password only via the environment). */
export function libpqEnv(/** @type {Conn} */ conn) {
  return childEnv({
    PGPASSWORD: conn.password,
    PGSSLMODE: 'disable',
    PGCONNECT_TIMEOUT: '10',
  });
}

/**
 * @typedef {object} PgbenchResult
 * @property {number} tps               "tps = ... (without initial connection time)"
 * @property {number} transactions      transactions actually processed
 * @property {number} failed            failed transactions (0 when not reported)
 * @property {number | null} initialConnectionMs
 * @property {number | null} latencyAvgMs
 * @property {number[] | null} latenciesUs  per-transaction latency, when logged
 * @property {number} wallSeconds
 */

/**
 * Run `pgbench -S` against a connection.
 * @param {object} o
 * @param {Conn} o.conn
 * @param {'simple' | 'prepared'} o.mode
 * @param {number} o.clients
 * @param {number} o.threads
 * @param {number} o.duration   seconds (-T)
 * @param {string | null} o.logDir  directory for the per-transaction log; null: no log
 * @returns {Promise<PgbenchResult>}
 */
export async function runPgbench({ conn, mode, clients, threads, duration, logDir }) {
  const prefix = logDir ? path.join(logDir, `pgbench_${process.pid}_${Date.now()}`) : null;
  const args = [
    '-h', conn.host, '-p', String(conn.port), '-U', conn.user,
    '-S', '-n', '-M', mode, '-c', String(clients), '-j', String(threads), '-T', String(duration),
  ];
  if (prefix) args.push('--log', `--log-prefix=${prefix}`);
  args.push(conn.database);
  const started = process.hrtime.bigint();
  const res = await run('pgbench', args, { env: libpqEnv(conn), timeoutMs: (duration + 120) * 1000 });
  const wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const out = res.stdout;
  if (res.code !== 0) {
    if (prefix) await removeLogs(prefix);
    const errLines = res.stderr.trim().split('\n').filter(Boolean);
    const reason = errLines.find((l) => /error|fatal|abort/i.test(l)) ?? errLines.at(-1) ?? 'no message';
    const detail = (out.trim() + '\n' + res.stderr.trim()).trim().split('\n').slice(-12).join('\n');
    throw new Error(`pgbench failed (${res.signal ?? `exit ${res.code}`}): ${reason}\n${detail}`);
  }
  const tps = matchNumber(out, /^tps = ([\d.]+) \(without initial connection time\)/m);
  const transactions = matchNumber(out, /^number of transactions actually processed: (\d+)/m);
  if (tps === null || transactions === null) {
    throw new Error(`could not read pgbench output:\n${out}\n${res.stderr}`);
  }
  const failed = matchNumber(out, /^number of failed transactions: (\d+)/m) ?? 0;
  let latenciesUs = null;
  if (prefix) {
    latenciesUs = await readLatencies(prefix);
    await removeLogs(prefix);
  }
  return {
    tps,
    transactions,
    failed,
    initialConnectionMs: matchNumber(out, /^initial connection time = ([\d.]+) ms/m),
    latencyAvgMs: matchNumber(out, /^latency average = ([\d.]+) ms/m),
    latenciesUs,
    wallSeconds,
  };
}

function matchNumber(text, re) {
  const m = re.exec(text);
  return m ? Number(m[1]) : null;
}

async function logFiles(prefix) {
  const dir = path.dirname(prefix);
  const base = path.basename(prefix) + '.';
  return (await readdir(dir)).filter((f) => f.startsWith(base)).map((f) => path.join(dir, f));
}

async function removeLogs(prefix) {
  for (const f of await logFiles(prefix)) await rm(f, { force: true });
}

/**
 * Latencies (µs) from pgbench's per-transaction log files
 * (`client_id transaction_no time script_no time_epoch time_us`); failed or
 * skipped transactions, whose time is a word, are left out.
 */
async function readLatencies(prefix) {
  /** @type {number[]} */
  const lat = [];
  for (const file of await logFiles(prefix)) {
    const text = await readFile(file, 'utf8');
    let start = 0;
    while (start < text.length) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = text.length;
      const line = text.slice(start, end);
      start = end + 1;
      const a = line.indexOf(' ');
      const b = line.indexOf(' ', a + 1);
      const c = line.indexOf(' ', b + 1);
      if (a < 0 || b < 0 || c < 0) continue;
      const v = Number(line.slice(b + 1, c));
      if (Number.isFinite(v)) lat.push(v);
    }
  }
  return lat;
}

/**
 * Nearest-rank percentile of an ascending array.
 * @param {ArrayLike<number>} sorted
 * @param {number} p  0..100
 */
export function percentile(sorted, p) {
  if (!sorted.length) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}
