// explainRows against the test Postgres, over an Upstream that logs in by
// itself (trust) and then behaves as the agent's relayed session: what the
// server sent after AuthenticationOk first, then the bytes as they come.
import net from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MessageReader, startupMessage } from '@warden/proto/pgwire';
import { explainRows } from '../src/approvals/index.js';
import type { Upstream, UpstreamHandlers } from '../src/tunnel/upstream.js';
import { scratchDatabase } from './catalog-fixture.js';

/** A read-only session on `database`, as the agent opens one; `log` collects what was sent and whether it was closed. */
function opener(database: string, log: { sent: string[]; closed: number; opened: number }): () => Promise<Upstream> {
  return () =>
    new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: 5432 });
      const reader = new MessageReader();
      socket.on('error', reject);
      socket.once('connect', () => socket.write(startupMessage([['user', 'postgres'], ['database', database], ['default_transaction_read_only', 'on']])));
      const login = (b: Buffer): void => {
        reader.push(b);
        for (let m = reader.nextTyped(1 << 20); m; m = reader.nextTyped(1 << 20)) {
          if (m.type !== 0x52 || m.body.readInt32BE(0) !== 0) continue;
          socket.off('data', login);
          socket.pause();
          log.opened++;
          let handlers: UpstreamHandlers | undefined;
          const early = [reader.drain()];
          socket.on('data', (d: Buffer) => (handlers ? handlers.data(d) : early.push(d)));
          socket.on('close', () => handlers?.end());
          resolve({
            agent: 'test',
            sessionId: 'explain',
            cancelKey: undefined as never,
            start(h) {
              handlers = h;
              for (const d of early.splice(0)) if (d.length) h.data(d);
              socket.resume();
            },
            write(chunk) {
              if (chunk[0] === 0x51) log.sent.push(chunk.subarray(5, chunk.length - 1).toString('utf8'));
              return socket.write(chunk);
            },
            pause: () => socket.pause(),
            resume: () => socket.resume(),
            close() {
              log.closed++;
              handlers = undefined;
              socket.destroy();
            },
            cancel() {},
          });
          return;
        }
      };
      socket.on('data', login);
    });
}

describe('explainRows', () => {
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  let admin: pg.Client;

  beforeAll(async () => {
    db = await scratchDatabase();
    admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    await admin.query(`
      create schema app;
      create table app.orders (id int primary key, note text);
      insert into app.orders select g, 'n' || g from generate_series(1, 5000) g;
      create table public.orders (id int primary key);
      insert into public.orders select generate_series(1, 10);
      analyze;`);
  });

  afterAll(async () => {
    await admin?.end();
    await db?.drop();
  });

  const log = () => ({ sent: [] as string[], closed: 0, opened: 0 });

  it('estimates a DELETE without WHERE at the table’s rows, under the given search_path', async () => {
    const l = log();
    expect(await explainRows(opener(db.name, l), 'DELETE FROM orders', 'app, public', 5000)).toBe(5000);
    expect(l.sent.slice(1)).toEqual(["select pg_catalog.set_config('search_path', $w$app, public$w$, false)", 'explain (format json) DELETE FROM orders']);
    expect(l.sent[0]).toMatch(/^set statement_timeout = \d+$/);
    expect(l.closed).toBe(1);
    // The role's default path: public.orders.
    expect(await explainRows(opener(db.name, log()), 'DELETE FROM orders', null, 5000)).toBe(10);
  });

  it('estimates one row by primary key, and the source of INSERT … SELECT, UPDATE and MERGE', async () => {
    const open = opener(db.name, log());
    expect(await explainRows(open, 'DELETE FROM app.orders WHERE id = 42', null, 5000)).toBe(1);
    expect(await explainRows(open, 'UPDATE app.orders SET note = null', null, 5000)).toBe(5000);
    expect(await explainRows(open, 'INSERT INTO public.orders SELECT id + 100 FROM app.orders', null, 5000)).toBe(5000);
    expect(await explainRows(open, 'MERGE INTO public.orders p USING app.orders a ON p.id = a.id WHEN MATCHED THEN DELETE', null, 5000)).toBeGreaterThanOrEqual(10);
    expect(await explainRows(open, 'WITH d AS (DELETE FROM app.orders RETURNING id) SELECT count(*) FROM d', null, 5000)).toBe(5000);
    // Nothing ran.
    expect((await admin.query('select count(*)::int as n from app.orders')).rows[0].n).toBe(5000);
  });

  it('gives null for a bad statement, parameters, several statements, or what is not a row change', async () => {
    const l = log();
    const open = opener(db.name, l);
    expect(await explainRows(open, 'DELETE FROM nowhere', null, 5000)).toBeNull();
    expect(l.closed).toBe(1);
    expect(await explainRows(open, 'DELETE FROM app.orders WHERE id = $1', null, 5000)).toBeNull();
    expect(await explainRows(open, 'DELETE FROM app.orders WHERE id = 1; DROP TABLE app.orders', null, 5000)).toBeNull();
    expect(await explainRows(open, 'DROP TABLE app.orders', null, 5000)).toBeNull();
    expect(await explainRows(open, 'DELETE FROM orders', "app'; drop table app.orders; --", 5000)).toBeNull();
    // Only the bad statement reached a session.
    expect(l.opened).toBe(2);
    expect(await explainRows(() => Promise.reject(new Error('no agent')), 'DELETE FROM app.orders', null, 5000)).toBeNull();
    expect((await admin.query('select count(*)::int as n from app.orders')).rows[0].n).toBe(5000);
  });

  it('gives null when the statement outlasts the timeout, and closes the session', async () => {
    // A lock held elsewhere keeps the planner waiting.
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    try {
      await locker.query('begin; lock table app.orders in access exclusive mode');
      const l = log();
      const started = Date.now();
      expect(await explainRows(opener(db.name, l), 'DELETE FROM app.orders', null, 500)).toBeNull();
      expect(Date.now() - started).toBeLessThan(3000);
      expect(l.closed).toBe(1);
    } finally {
      await locker.query('rollback');
      await locker.end();
    }
  });

  it('gives null when the session never becomes ready', async () => {
    let closed = 0;
    const silent: Upstream = {
      agent: 'test',
      sessionId: 'silent',
      cancelKey: undefined as never,
      start() {},
      write: () => true,
      pause() {},
      resume() {},
      close: () => void closed++,
      cancel() {},
    };
    expect(await explainRows(async () => silent, 'DELETE FROM app.orders', null, 200)).toBeNull();
    expect(closed).toBe(1);
  });
});
