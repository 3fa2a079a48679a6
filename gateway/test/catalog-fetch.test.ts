// fetchCatalog over a relayed session like the agent's: a small Upstream over
// a plain socket to the test Postgres that logs in itself (trust) and then,
// as the agent does after OPEN (agent/src/upstream/connect.ts, session.ts),
// hands over everything the server sent after AuthenticationOk
// (ParameterStatus…, BackendKeyData, ReadyForQuery) followed by the relayed
// bytes, and passes writes through untouched.
import net from 'node:net';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AgentContext, GatewayConnection, type RelaySession } from '@warden/agent';
import { CATALOG_PREAMBLE, CatalogFetchError, catalogQuery, fetchCatalog, parseCatalog, serverMajorVersion } from '../src/catalog/index.js';
import { AgentHub } from '../src/tunnel/index.js';
import type { Upstream, UpstreamHandlers } from '../src/tunnel/upstream.js';
import { MessageReader, query, startupMessage, terminate } from '@warden/proto/pgwire';
import { expected, FIXTURE, rest, scratchDatabase } from './catalog-fixture.js';

const TERMINATE = terminate();

interface SocketUpstreamOptions {
  /** Server port on 127.0.0.1 (default 5432). */
  port?: number;
  /** Startup parameters besides user and database (the agent adds default_transaction_read_only=on for read-only). */
  parameters?: Record<string, string>;
  /** Hands bytes to the reader in pieces of this size (the link may cut DATA anywhere). */
  chunk?: number;
  /** Rewrites each write before it reaches the server (to provoke errors, delays…). */
  rewrite?: (b: Buffer) => Buffer;
}

class SocketUpstream implements Upstream {
  readonly agent = 'test-agent';
  readonly sessionId = 'catalog-test';
  readonly written: Buffer[] = [];
  closed = false;
  /** Settles when the server side of the socket is gone. */
  readonly socketClosed: Promise<void>;
  private handlers: UpstreamHandlers | null = null;
  private early: Buffer[];
  private ended = false;

  private constructor(
    private readonly socket: net.Socket,
    initial: Buffer,
    private readonly opts: SocketUpstreamOptions,
  ) {
    this.early = initial.length ? [initial] : [];
    this.socketClosed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (b: Buffer) => {
      if (this.handlers) this.deliver(b);
      else this.early.push(b);
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.ended = true;
      const h = this.handlers;
      this.handlers = null;
      h?.end();
    });
    socket.resume();
  }

  /** Connects and logs in; resolves positioned just after AuthenticationOk, as the agent's connectUpstream does. */
  static open(database: string, opts: SocketUpstreamOptions = {}): Promise<SocketUpstream> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: opts.port ?? 5432 });
      const reader = new MessageReader();
      const onData = (b: Buffer): void => {
        reader.push(b);
        for (let m = reader.nextTyped(1 << 20); m; m = reader.nextTyped(1 << 20)) {
          if (m.type === 0x45) return fail(new Error(`login failed: ${m.body.toString('utf8')}`));
          if (m.type !== 0x52) continue;
          const code = m.body.readInt32BE(0);
          if (code !== 0) return fail(new Error(`the test server asked for authentication ${code}; it must trust 127.0.0.1`));
          socket.off('data', onData);
          socket.off('error', fail);
          socket.pause();
          resolve(new SocketUpstream(socket, reader.drain(), opts));
          return;
        }
      };
      const fail = (err: Error): void => {
        socket.destroy();
        reject(err);
      };
      socket.on('data', onData);
      socket.on('error', fail);
      socket.once('connect', () =>
        socket.write(startupMessage(Object.entries({ user: 'postgres', database, ...(opts.parameters ?? {}) }))),
      );
    });
  }

  start(handlers: UpstreamHandlers): void {
    this.handlers = handlers;
    const early = this.early;
    this.early = [];
    for (const b of early) if (this.handlers) this.deliver(b);
    if (this.ended && this.handlers) {
      this.handlers = null;
      handlers.end();
    }
  }

  write(chunk: Buffer): boolean {
    const b = this.opts.rewrite ? this.opts.rewrite(chunk) : chunk;
    this.written.push(b);
    return this.socket.write(b);
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  close(): void {
    this.closed = true;
    this.handlers = null;
    // Like the agent: a session whose last bytes were a Terminate is left to close by itself.
    const last = this.written.at(-1);
    if (last && last.equals(TERMINATE)) this.socket.end();
    else this.socket.destroy();
  }

  cancel(): void {}

  private deliver(b: Buffer): void {
    const size = this.opts.chunk ?? b.length;
    for (let i = 0; i < b.length && this.handlers; i += size) this.handlers.data(b.subarray(i, i + size));
  }
}

/** Replaces the catalog query with other SQL. */
const replaceQuery = (sql: string) => (b: Buffer) => (b[0] === 0x51 ? query(sql) : b);

describe('fetchCatalog on the demo database (PGlite over pglite-socket)', () => {
  it('reads the catalog as from PostgreSQL', async () => {
    const { PGlite } = await import('@electric-sql/pglite');
    const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
    const pglite = await PGlite.create();
    const server = new PGLiteSocketServer({ db: pglite, host: '127.0.0.1', port: 0, maxConnections: 2 });
    try {
      await pglite.exec(FIXTURE);
      await server.start();
      const port = Number(server.getServerConn().split(':').pop());
      const up = await SocketUpstream.open('postgres', { port });
      const catalog = await fetchCatalog(up, 10_000);
      const major = serverMajorVersion((await pglite.query<{ server_version: string }>('show server_version')).rows[0]!.server_version)!;
      expect(rest(catalog)).toEqual(expected(major));
      // Its server_version ParameterStatus chose the query.
      expect(up.written[0]).toEqual(query(CATALOG_PREAMBLE + catalogQuery(major)));
    } finally {
      await server.stop();
      await pglite.close();
    }
  });
});

describe('fetchCatalog', () => {
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  let major = 0;
  let direct: ReturnType<typeof parseCatalog>;

  beforeAll(async () => {
    db = await scratchDatabase();
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      await c.query(FIXTURE);
      major = serverMajorVersion((await c.query<{ server_version: string }>('show server_version')).rows[0]!.server_version)!;
      await c.query('set jit = off');
      direct = parseCatalog((await c.query<{ catalog: string }>(catalogQuery(major))).rows[0]!.catalog, 0);
    } finally {
      await c.end();
    }
  });

  afterAll(async () => {
    await db?.drop();
  });

  for (const chunk of [undefined, 3]) {
    it(`reads the catalog over a read-only relayed session${chunk ? ` delivered ${chunk} bytes at a time` : ''}`, async () => {
      const up = await SocketUpstream.open(db.name, { parameters: { default_transaction_read_only: 'on' }, chunk });
      const before = Date.now();
      const catalog = await fetchCatalog(up, 10_000);
      expect(catalog.fetchedAt).toBeGreaterThanOrEqual(before);
      expect(catalog.fetchedAt).toBeLessThanOrEqual(Date.now());
      expect(catalog.sessionUser).toBe('postgres');
      expect(catalog.searchPath).toBe('"$user", public');
      expect(rest(catalog)).toEqual(expected(major));
      expect({ ...catalog, fetchedAt: 0 }).toEqual(direct);
      // The query for the server's version (from its ParameterStatus), then Terminate, then the channel closed.
      expect(up.written).toEqual([query(CATALOG_PREAMBLE + catalogQuery(major)), TERMINATE]);
      expect(up.closed).toBe(true);
      await up.socketClosed;
    });
  }

  it('turns JIT off for the catalog query only, without a warning', async () => {
    const c = new pg.Client({ connectionString: db.url });
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(n.message ?? ''));
    await c.connect();
    try {
      // One simple Query, as fetchCatalog sends it: SET LOCAL holds for its implicit transaction.
      const r = (await c.query(`${CATALOG_PREAMBLE}select pg_catalog.current_setting('jit') as jit`)) as unknown as pg.QueryResult[];
      expect(r.at(-1)!.rows).toEqual([{ jit: 'off' }]);
      expect((await c.query('show jit')).rows[0].jit).not.toBe('off');
      expect(notices).toEqual([]);
    } finally {
      await c.end();
    }
  });

  it('reads the catalog through the real agent link, read-only, leaving no backend behind', async () => {
    const log = pino({ level: process.env.WARDEN_TEST_LOG ?? 'silent' });
    const hub = new AgentHub((name, token) => name === 'local' && token === 'catalog-token', log);
    const port = await hub.listen('127.0.0.1:0');
    const ctx: AgentContext = {
      agentName: 'local',
      token: 'catalog-token',
      version: 'test',
      log,
      sessions: new Map<string, RelaySession>(),
      resources: { shop: { host: '127.0.0.1', port: 5432, user: 'postgres', database: db.name, sslmode: 'disable' } },
    };
    const agent = new GatewayConnection(ctx, { address: `127.0.0.1:${port}`, backoff: { baseMs: 50, capMs: 500 } });
    agent.start();
    try {
      const deadline = Date.now() + 10_000;
      while (!hub.isOnline('local')) {
        if (Date.now() > deadline) throw new Error('the agent did not connect');
        await new Promise((r) => setTimeout(r, 10));
      }
      const up = await hub.open('local', { resource: 'shop', parameters: { application_name: 'warden-catalog-test' }, readOnly: true });
      const catalog = await fetchCatalog(up, 10_000);
      expect({ ...catalog, fetchedAt: 0 }).toEqual(direct);
      // The agent sees our Terminate and lets the backend end by itself.
      const admin = new pg.Client({ connectionString: db.url });
      await admin.connect();
      try {
        for (;;) {
          const n = (await admin.query("select count(*)::int as n from pg_stat_activity where application_name = 'warden-catalog-test'")).rows[0].n;
          if (n === 0) break;
          if (Date.now() > deadline) throw new Error('the catalog backend is still there');
          await new Promise((r) => setTimeout(r, 50));
        }
      } finally {
        await admin.end();
      }
    } finally {
      await agent.stop({ closeSessions: true });
      await hub.close();
    }
  });

  it('rejects with the server message and SQLSTATE on an ErrorResponse, after the session is ready again', async () => {
    const up = await SocketUpstream.open(db.name, { rewrite: replaceQuery('select 1/0') });
    const err = await fetchCatalog(up, 10_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CatalogFetchError);
    expect((err as CatalogFetchError).sqlstate).toBe('22012');
    expect((err as Error).message).toBe('the catalog query failed on agent test-agent: division by zero [SQLSTATE 22012]');
    expect(up.written.at(-1)).toEqual(TERMINATE);
    expect(up.closed).toBe(true);
  });

  it('rejects at once on a FATAL error, which ends the session', async () => {
    const up = await SocketUpstream.open(db.name, { rewrite: replaceQuery('select pg_terminate_backend(pg_backend_pid())') });
    const err = await fetchCatalog(up, 10_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CatalogFetchError);
    expect((err as CatalogFetchError).sqlstate).toBe('57P01');
    expect(up.closed).toBe(true);
  });

  it('rejects and closes the session when the query outlasts the timeout', async () => {
    const up = await SocketUpstream.open(db.name, { rewrite: replaceQuery('select pg_sleep(3)') });
    const started = Date.now();
    const err = await fetchCatalog(up, 200).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(err).toBeInstanceOf(CatalogFetchError);
    expect((err as Error).message).toBe('the catalog query on agent test-agent did not complete within 0.2 s');
    expect((err as CatalogFetchError).sqlstate).toBeUndefined();
    expect(up.closed).toBe(true);
    await up.socketClosed;
  });

  it('says so when the session never becomes ready, and when the channel ends early', async () => {
    let closed = 0;
    let handlers: UpstreamHandlers | undefined;
    const silent: Upstream = {
      agent: 'quiet',
      sessionId: 's',
      start: (h) => {
        handlers = h;
      },
      write: () => true,
      pause: () => {},
      resume: () => {},
      close: () => {
        closed++;
      },
      cancel: () => {},
    };
    await expect(fetchCatalog(silent, 50)).rejects.toThrow(
      'the catalog query on agent quiet did not complete within 0.05 s (the session never became ready)',
    );
    expect(closed).toBe(1);

    const pending = fetchCatalog(silent, 5_000);
    handlers!.end(new Error('the link to agent quiet is closed'));
    await expect(pending).rejects.toThrow('the session on agent quiet ended before the catalog was read: the link to agent quiet is closed');
    expect(closed).toBe(2);
  });
});
