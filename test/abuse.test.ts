// Issue 17, "public ports under abuse": malformed input on the gateway's
// Postgres port, before and after authentication, gets a clean refusal (an
// ErrorResponse with SQLSTATE 08P01 where the protocol still allows one) and
// a closed socket; the gateway keeps running and the other sessions never
// notice. (Random bytes at the startup and a 2 GiB startup length are in
// spine.test.ts; the decoders themselves are fuzzed in proto/test.)
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startupMessage } from '@warden/proto/pgwire';
import { RawClient, serialize } from './support/raw-client.js';
import { MiB, rssOf } from './support/rss.js';
import { createDatabase, startExtraGateway, startStack, type Stack, type TestDatabase } from './support/stack.js';

let db: TestDatabase;
let stack: Stack;
/** A session that runs throughout: it must never notice the abuse. */
let bystander: pg.Client;

beforeAll(async () => {
  db = await createDatabase('warden_abuse');
  await db.query('CREATE TABLE public.items (id int PRIMARY KEY); INSERT INTO public.items SELECT generate_series(1, 100)');
  stack = await startStack({ upstream: db.url, resource: 'shop' });
  bystander = new pg.Client({ host: stack.host, port: stack.port, user: 'demo', database: 'shop', password: await stack.token() });
  await bystander.connect();
});

afterAll(async () => {
  await bystander?.end().catch(() => {});
  await stack?.stop();
  await db?.drop();
});

async function bystanderStillWorks(): Promise<void> {
  const r = await bystander.query('SELECT count(*)::int AS n FROM public.items');
  expect(r.rows).toEqual([{ n: 100 }]);
}

/** What the gateway at `port` sends a connection that says nothing, until it closes it. */
function silentUntilClosed(port: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = connect(port, stack.host);
    s.on('data', (d) => chunks.push(d));
    s.on('error', () => {});
    s.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

/** Everything the gateway sends on a fresh socket after `bytes`, until it closes the connection (or 10 s pass). */
function exchange(bytes: Buffer | Buffer[]): Promise<{ reply: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s: Socket = connect(stack.port, stack.host, () => {
      for (const b of Array.isArray(bytes) ? bytes : [bytes]) s.write(b);
    });
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ reply: Buffer.concat(chunks), closed: false });
    }, 10_000);
    s.on('data', (d) => chunks.push(d));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ reply: Buffer.concat(chunks), closed: true });
    });
  });
}

/** A logged-in raw session that sends `bytes` and returns what came back up to the close. */
async function afterLogin(bytes: Buffer): Promise<{ messages: Array<{ name: string; code?: unknown; message?: unknown }>; closed: boolean }> {
  const c = await RawClient.connect({ host: stack.host, port: stack.port, user: 'demo', database: 'shop', password: await stack.token() });
  c.send(bytes);
  const messages: Array<{ name: string; code?: unknown; message?: unknown }> = [];
  for (;;) {
    try {
      messages.push(await c.next(10_000));
    } catch (err) {
      return { messages, closed: /closed the connection/.test(String(err)) };
    }
  }
}

const typed = (type: string, body: Buffer) => {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
};

describe('after authentication', () => {
  it('a truncated Bind: 08P01 as Postgres gives it, and the session goes on after Sync', async () => {
    const c = await RawClient.connect({ host: stack.host, port: stack.port, user: 'demo', database: 'shop', password: await stack.token() });
    try {
      c.send(serialize.parse({ text: 'SELECT 1' }), typed('B', Buffer.from([0, 0, 0x00, 0x05])), serialize.sync());
      const reply = await c.until('readyForQuery');
      expect(reply.find((m) => m.name === 'error')).toMatchObject({ code: '08P01' });
      c.send(serialize.query('SELECT 41 + 1 AS n'));
      const rows = (await c.until('readyForQuery')).filter((m) => m.name === 'dataRow');
      expect(rows.map((m) => (m.fields as string[])[0])).toEqual(['42']);
    } finally {
      await c.end();
    }
    await bystanderStillWorks();
  });

  it('a Query that claims 2 GiB: 54000 (over --max-statement-bytes) at once, the socket closed, and no memory taken for it', async () => {
    const before = rssOf(stack.gatewayPid);
    const head = Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xff]);
    const r = await afterLogin(Buffer.concat([head, randomBytes(64 << 10)]));
    expect(r.closed).toBe(true);
    expect(r.messages.at(-1)).toMatchObject({ name: 'error', code: '54000' });
    expect(rssOf(stack.gatewayPid) - before).toBeLessThan(64 * MiB);
    await bystanderStillWorks();
  });

  it('an unknown message type: 08P01, the socket closed', async () => {
    const r = await afterLogin(typed('z', Buffer.from('junk')));
    expect(r.closed).toBe(true);
    expect(r.messages.at(-1)).toMatchObject({ name: 'error', code: '08P01' });
    await bystanderStillWorks();
  });

  it('a Query whose text has no terminating NUL: an error, and the gateway goes on', async () => {
    const r = await afterLogin(typed('Q', Buffer.from('SELECT 1')));
    expect(r.messages.some((m) => m.name === 'error')).toBe(true);
    await bystanderStillWorks();
  });

  it('random bytes after the login, then a hang-up: answered as a protocol error or waited for, never a crash', async () => {
    for (let i = 0; i < 20; i++) {
      const c = await RawClient.connect({ host: stack.host, port: stack.port, user: 'demo', database: 'shop', password: await stack.token() });
      c.send(randomBytes(1 + ((i * 997) % 4096)));
      // A length that promises more bytes is waited for, as Postgres does; the client hangs up.
      await new Promise((r) => setTimeout(r, 100));
      await c.end();
    }
    expect(() => process.kill(stack.gatewayPid, 0)).not.toThrow();
    await bystanderStillWorks();
  });
});

describe('before authentication', () => {
  it('a password message that claims 2 GiB: 08P01 and closed', async () => {
    const startup = startupMessage([['user', 'demo'], ['database', 'shop']]);
    const r = await exchange([startup, Buffer.from([0x70, 0x7f, 0xff, 0xff, 0xff]), randomBytes(1024)]);
    expect(r.closed).toBe(true);
    expect(r.reply.toString('latin1')).toContain('C08P01');
  });

  it('a startup packet cut short, then silence and a close: nothing left behind', async () => {
    const startup = startupMessage([['user', 'demo'], ['database', 'shop']]);
    const r = await new Promise<boolean>((resolve) => {
      const s = connect(stack.port, stack.host, () => {
        s.write(startup.subarray(0, 9));
        setTimeout(() => s.destroy(), 200);
      });
      s.on('error', () => {});
      s.on('close', () => resolve(true));
    });
    expect(r).toBe(true);
    await bystanderStillWorks();
  });

  it('200 connections of random bytes at once: each refused or closed, the flood limited, the gateway and its sessions unharmed', async () => {
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => exchange(randomBytes(8 + (i * 131) % 2000))));
    expect(results.every((r) => r.closed)).toBe(true);
    await bystanderStillWorks();
    // Broken protocol counts as a failed login: the address is now limited (30 a minute by default), good token or not.
    const fresh = new pg.Client({ host: stack.host, port: stack.port, user: 'demo', database: 'shop', password: await stack.token() });
    const err = await fresh.connect().then(() => undefined, (e: { code?: string }) => e);
    expect(err?.code).toBe('08004');
    // About the limit's worth of refusals was logged (and recorded) one by one, the rest go in a sum; connections
    // whose bytes were already being read when the limit tripped are refused on their own, hence some slack.
    await new Promise((r) => setTimeout(r, 1_500));
    const logged = readFileSync(join(stack.dataDir, 'logs', 'gateway.log'), 'utf8').split('\n').filter((l) => /connection refused/.test(l) && l.includes('"sqlstate":"08P01"'));
    expect(logged.length).toBeLessThanOrEqual(60);
    expect(logged.length).toBeGreaterThan(0);
  });
});

describe('failed logins are limited per source address', () => {
  it('past --login-failures-per-address, logins from that address get 08004 at once, even with a good token; the refusals are reported in one sum', async () => {
    const gw = await startExtraGateway(stack, 'gw-limited', ['--local', '--login-failures-per-address', '5']);
    const login = async (password: string) => {
      const c = new pg.Client({ host: stack.host, port: gw.port, user: 'demo', database: 'shop', password });
      return c.connect().then(
        async () => {
          await c.end();
          return 'ok';
        },
        (e: { code?: string; message?: string }) => `${e.code}: ${e.message}`,
      );
    };
    try {
      // Usable once the agent has dialled it.
      const deadline = Date.now() + 30_000;
      while ((await login(await stack.token())) !== 'ok') {
        if (Date.now() > deadline) throw new Error(`the extra gateway never accepted a login\n${gw.output()}`);
        await new Promise((r) => setTimeout(r, 300));
      }
      const bad = [];
      for (let i = 0; i < 5; i++) bad.push(await login('not-a-token'));
      expect(bad.every((r) => r.startsWith('28P01'))).toBe(true);
      const limited = await login(await stack.token());
      expect(limited).toMatch(/^08004: too many failed logins from 127\.0\.0\.1; retry in \d+ s$/);
      for (let i = 0; i < 20; i++) expect(await login('not-a-token')).toMatch(/^08004/);
      // Other gateways (other limits) are untouched.
      await bystanderStillWorks();
      // One summary line for the 21 refusals, within the report interval (10 s) and the log's flush.
      const until = Date.now() + 20_000;
      while (!/login limit: 21 logins from 127\.0\.0\.1 refused after 5 failed within 60 s/.test(gw.output())) {
        if (Date.now() > until) throw new Error(`no summary of the limited logins in the log\n${gw.output()}`);
        await new Promise((r) => setTimeout(r, 500));
      }
      // Each failed login logged (and recorded) on its own, the limited ones not.
      const lines = gw.output().split('\n').filter((l) => /connection refused/.test(l));
      expect(lines.filter((l) => l.includes('"sqlstate":"28P01"'))).toHaveLength(5);
      expect(lines.filter((l) => l.includes('"sqlstate":"08004"'))).toHaveLength(0);
    } finally {
      await gw.stop();
    }
  });
});

describe('connections that do not log in are limited per source address', () => {
  it('past --max-logging-in-per-address silent connections, the next gets 53300 at once; once they leave, a login works', async () => {
    const gw = await startExtraGateway(stack, 'gw-waiting', ['--local', '--max-logging-in-per-address', '5']);
    const silent: Socket[] = [];
    try {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const c = new pg.Client({ host: stack.host, port: gw.port, user: 'demo', database: 'shop', password: await stack.token() });
        if (await c.connect().then(() => c.end().then(() => true), () => false)) break;
        if (Date.now() > deadline) throw new Error(`the extra gateway never accepted a login\n${gw.output()}`);
        await new Promise((r) => setTimeout(r, 300));
      }
      for (let i = 0; i < 5; i++) {
        const s = connect(gw.port, stack.host);
        s.on('error', () => {});
        silent.push(s);
        await new Promise((r) => s.once('connect', r));
      }
      await new Promise((r) => setTimeout(r, 200));
      const sixth = await silentUntilClosed(gw.port);
      expect(sixth.toString('latin1')).toContain('C53300');
      expect(sixth.toString('latin1')).toContain('too many connections from 127.0.0.1 are still logging in (limit 5); retry shortly');
      for (const s of silent) s.destroy();
      await new Promise((r) => setTimeout(r, 300));
      const c = new pg.Client({ host: stack.host, port: gw.port, user: 'demo', database: 'shop', password: await stack.token() });
      await c.connect();
      expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      await c.end();
    } finally {
      for (const s of silent) s.destroy();
      await gw.stop();
    }
  });
});

describe('sessions and statements are bounded by limits the user sets', () => {
  let gw: Awaited<ReturnType<typeof startExtraGateway>>;
  const opts = async () => ({ host: stack.host, port: gw.port, user: 'demo', database: 'shop', password: await stack.token() });
  const client = async () => new pg.Client(await opts());

  beforeAll(async () => {
    gw = await startExtraGateway(stack, 'gw-bounded', [
      '--local',
      '--max-sessions-per-address', '3',
      '--idle-session-timeout', '2',
      '--login-timeout', '2',
      '--max-statement-bytes', String(3 * MiB),
      '--statement-memory', String(4 * MiB),
    ]);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const c = await client();
      if (await c.connect().then(() => c.end().then(() => true), () => false)) break;
      if (Date.now() > deadline) throw new Error(`the extra gateway never accepted a login\n${gw.output()}`);
      await new Promise((r) => setTimeout(r, 300));
    }
  });
  afterAll(async () => gw?.stop());

  it('a statement over --max-statement-bytes ends its session with 54000 as its header arrives; others go on', async () => {
    const c = await client();
    c.on('error', () => {});
    await c.connect();
    const huge = `SELECT '${'x'.repeat(4 * MiB)}'`;
    const err = await c.query(huge).then(() => undefined, (e: { code?: string; message: string }) => e);
    expect(err?.code).toBe('54000');
    expect(err?.message).toBe('warden: a statement of 4 MiB is larger than this gateway reads (3 MiB, --max-statement-bytes); the session was ended');
    await c.end().catch(() => {});
    await bystanderStillWorks();
    const next = await client();
    await next.connect();
    expect((await next.query(`SELECT length('${'y'.repeat(2 * MiB)}') AS n`)).rows).toEqual([{ n: 2 * MiB }]);
    await next.end();
  });

  it('a Bind parameter over --max-statement-bytes is no statement: it is not parsed, and passes', async () => {
    const c = await client();
    await c.connect();
    const big = 'z'.repeat(Math.floor(3.5 * MiB));
    expect((await c.query('SELECT length($1::text) AS n', [big])).rows).toEqual([{ n: big.length }]);
    await c.end();
  });

  it('large statements still arriving share --statement-memory: past it, 53200; the memory comes back when they go', async () => {
    // A Query header that announces 2.5 MiB, and the first 64 KiB of it: the gateway waits for the rest.
    const partial = () => {
      const total = Math.floor(2.5 * MiB);
      const head = Buffer.alloc(5);
      head[0] = 0x51;
      head.writeInt32BE(total - 1, 1);
      return Buffer.concat([head, Buffer.alloc(64 * 1024, 0x20)]);
    };
    const first = await RawClient.connect(await opts());
    first.send(partial());
    await new Promise((r) => setTimeout(r, 300));
    const second = await RawClient.connect(await opts());
    second.send(partial());
    const refused = await second.next();
    expect(refused).toMatchObject({ name: 'error', code: '53200' });
    expect(String(refused.message)).toContain("the gateway's memory for statements still arriving (4 MiB, --statement-memory) is in use");
    await second.closed;
    first.end();
    await first.closed;
    await new Promise((r) => setTimeout(r, 300));
    const third = await RawClient.connect(await opts());
    third.send(partial());
    // Not refused this time: the gateway waits for the rest, and gets a plain query instead once the socket is ended.
    await expect(third.next(1_000)).rejects.toThrow();
    third.end();
    await bystanderStillWorks();
  });

  it('past --max-sessions-per-address sessions, the next login gets 53300; when one ends, a login works again', async () => {
    const open: pg.Client[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const c = await client();
        c.on('error', () => {});
        await c.connect();
        open.push(c);
      }
      const fourth = await client();
      const err = await fourth.connect().then(() => undefined, (e: { code?: string; message: string }) => e);
      expect(err?.code).toBe('53300');
      expect(err?.message).toBe('too many connections from 127.0.0.1 are in a session (limit 3); retry shortly');
      await open.pop()!.end();
      await new Promise((r) => setTimeout(r, 200));
      const again = await client();
      await again.connect();
      expect((await again.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      open.push(again);
    } finally {
      for (const c of open) await c.end().catch(() => {});
    }
  });

  it('--idle-session-timeout ends a session that sends nothing (57P05), never one whose statement is running', async () => {
    const idle = await client();
    const ended = new Promise<{ code?: string; message: string }>((resolve) => idle.on('error', resolve));
    await idle.connect();
    const busy = await client();
    busy.on('error', () => {});
    await busy.connect();
    const slow = await busy.query('SELECT 1 AS slept FROM pg_sleep(4)');
    expect(slow.rows).toEqual([{ slept: 1 }]);
    const err = await ended;
    expect(err.code).toBe('57P05');
    expect(err.message).toBe('warden: the session sent nothing for 2 s (--idle-session-timeout) and was ended');
    await idle.end().catch(() => {});
    await busy.end().catch(() => {});
  });

  it('--login-timeout closes a connection that never logs in, with 28000', async () => {
    const reply = await silentUntilClosed(gw.port);
    expect(reply.toString('latin1')).toContain('C28000');
    expect(reply.toString('latin1')).toContain('authentication took too long');
  });
});
