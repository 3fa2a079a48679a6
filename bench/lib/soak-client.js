// One client process of the soak (bench/lib/soak.js): opens its share of the
// sessions with node-postgres, keeps every one open, and runs a small read
// and write on each at a steady pace until told to stop. It runs apart from
// the bench, so the bench's own work does not slow the clients down.
//
// Messages from the parent: { type: 'run' }, { type: 'stats' }, { type: 'stop' }.
// To the parent: { type: 'opened' | 'stats' | 'stopped' | 'failed', ... }.
import pg from 'pg';

/**
 * @typedef {object} ClientConfig
 * @property {import('./pgbench.js').Conn} conn
 * @property {number[]} ids           table rows, one per session of this client
 * @property {string} table
 * @property {number} periodMs        one read and one write per session per period
 * @property {number} batch           sessions opened at once
 */

/** @type {ClientConfig} */
const config = JSON.parse(process.env.WARDEN_SOAK_CLIENT ?? 'null');
if (!config || !process.send) {
  process.stderr.write('soak-client.js is started by bench/lib/soak.js\n');
  process.exit(2);
}
const send = (/** @type {any} */ msg) => process.send?.(msg);

const stats = { statements: 0, reads: 0, writes: 0, errors: 0, late: 0, lost: 0, firstErrors: /** @type {string[]} */ ([]) };
const noteError = (/** @type {unknown} */ err) => {
  stats.errors++;
  if (stats.firstErrors.length < 5) stats.firstErrors.push(err instanceof Error ? err.message : String(err));
};

/** @type {{ client: pg.Client, id: number, ended: boolean }[]} */
const sessions = [];
let running = false;

async function open() {
  for (let i = 0; i < config.ids.length; i += config.batch) {
    const ids = config.ids.slice(i, i + config.batch);
    const opened = await Promise.allSettled(ids.map(async (id) => {
      const client = new pg.Client({ ...config.conn, ssl: false, connectionTimeoutMillis: 60_000 });
      const s = { client, id, ended: false };
      client.on('error', (err) => { if (running) noteError(err); });
      client.on('end', () => {
        s.ended = true;
        if (running) { stats.lost++; noteError(new Error(`session for row ${id} ended during the run`)); }
      });
      await client.connect();
      await client.query('SELECT 1');
      sessions.push(s);
    }));
    const failed = opened.find((r) => r.status === 'rejected');
    if (failed && failed.status === 'rejected') {
      const reason = failed.reason instanceof Error ? failed.reason.message : String(failed.reason);
      throw new Error(`soak: could not open the sessions: ${sessions.length} of this client's ${config.ids.length} opened, then: ${reason}`);
    }
  }
}

/**
 * One session's loop: a read and a write every period, from a random phase so
 * the sessions spread evenly over the period. A session that falls behind
 * skips the ticks it missed (counted as late) rather than bursting.
 * @param {{ client: pg.Client, id: number, ended: boolean }} s
 */
async function loop(s) {
  const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));
  let next = Date.now() + Math.random() * config.periodMs;
  while (running && !s.ended) {
    const wait = next - Date.now();
    if (wait > 0) await sleep(wait);
    if (!running || s.ended) break;
    try {
      await s.client.query(`SELECT n FROM ${config.table} WHERE id = $1`, [s.id]);
      stats.reads++;
      stats.statements++;
      await s.client.query(`UPDATE ${config.table} SET n = n + 1 WHERE id = $1`, [s.id]);
      stats.writes++;
      stats.statements++;
    } catch (err) {
      noteError(err);
    }
    next += config.periodMs;
    if (next < Date.now()) {
      const missed = Math.ceil((Date.now() - next) / config.periodMs);
      stats.late += missed;
      next += missed * config.periodMs;
    }
  }
}

/** @type {Promise<unknown> | null} */
let loops = null;
process.on('message', async (/** @type {any} */ msg) => {
  if (msg.type === 'run') {
    running = true;
    loops = Promise.all(sessions.map(loop));
  } else if (msg.type === 'stats') {
    send({ type: 'stats', stats, open: sessions.filter((s) => !s.ended).length, rssBytes: process.memoryUsage.rss() });
  } else if (msg.type === 'stop') {
    running = false;
    await loops;
    const open = sessions.filter((s) => !s.ended).length;
    await Promise.all(sessions.map((s) => s.client.end().catch(() => {})));
    send({ type: 'stopped', stats, open });
    process.disconnect?.();
  }
});

try {
  await open();
  send({ type: 'opened', sessions: sessions.length });
} catch (err) {
  send({ type: 'failed', error: err instanceof Error ? err.message : String(err) });
  await Promise.all(sessions.map((s) => s.client.end().catch(() => {})));
  process.exit(1);
}
