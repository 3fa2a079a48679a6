// Local mode is ready when a real client gets through: Postgres wire to the
// gateway, token check, tunnel to the agent, agent to the database.
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

export interface ReadinessTarget {
  host: string;
  port: number;
  database: string;
  user: string;
  /** A fresh password (dev token) per attempt. */
  password: () => Promise<string>;
}

async function tryOnce(t: ReadinessTarget): Promise<void> {
  const client = new pg.Client({
    host: t.host,
    port: t.port,
    database: t.database,
    user: t.user,
    password: await t.password(),
    ssl: false,
    connectionTimeoutMillis: 3000,
    query_timeout: 5000,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
  } finally {
    await client.end().catch(() => {});
  }
}

/** Retries `SELECT 1` until it works; throws the last error after `timeoutMs` or when aborted. */
export async function waitUntilReady(t: ReadinessTarget, timeoutMs: number, signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no attempt made';
  while (!signal.aborted) {
    try {
      await tryOnce(t);
      return;
    } catch (err) {
      last = (err as Error).message || String(err);
    }
    if (Date.now() >= deadline) throw new Error(`no successful SELECT 1 through the gateway within ${timeoutMs / 1000} s (last error: ${last})`);
    await sleep(500, undefined, { signal }).catch(() => {});
  }
  throw new Error('stopped while waiting for the gateway');
}
