// Streaming a large COPY result through a path with psql, sampling the
// memory of the path's processes.
import { libpqEnv } from './pgbench.js';
import { startRssSampler } from './procstat.js';
import { run } from './util.js';

export const ROW_WIDTH = 1000;

/**
 * `COPY (SELECT repeat('x', 1000) FROM generate_series(1, rows)) TO STDOUT`
 * with the output going to /dev/null; VmRSS sampled every 50 ms.
 * @param {import('./paths.js').BenchPath} path
 * @param {number} rows
 */
export async function streamCopy(path, rows) {
  const conn = await path.conn();
  const sql = `COPY (SELECT repeat('x', ${ROW_WIDTH}) FROM generate_series(1, ${rows})) TO STDOUT`;
  const sampler = startRssSampler(path.pids, 50);
  const started = process.hrtime.bigint();
  let res;
  let stats;
  try {
    res = await run('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', conn.host, '-p', String(conn.port), '-U', conn.user, '-d', conn.database, '-c', sql], {
      env: libpqEnv(conn), stdout: 'ignore', timeoutMs: 30 * 60 * 1000,
    });
  } finally {
    stats = sampler.stop();
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (res.code !== 0) throw new Error(`psql COPY through ${path.id} failed (${res.signal ?? `exit ${res.code}`}): ${res.stderr.trim()}`);
  const bytes = rows * (ROW_WIDTH + 1); // each row plus its newline
  /** @type {Record<string, number>} */
  const peakRssBytes = {};
  /** @type {Record<string, number | null>} */
  const startRssBytes = {};
  for (const [name, s] of Object.entries(stats)) {
    peakRssBytes[name] = s.peak;
    startRssBytes[name] = s.first;
  }
  return { path: path.id, rows, bytes, seconds, mbPerSecond: bytes / 1e6 / seconds, peakRssBytes, startRssBytes };
}
