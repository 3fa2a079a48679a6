// The agent's link against a fake gateway (the gateway's real link hub) and
// the machine's Postgres: hello, open, relay, cancel, close, reconnect.
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_WINDOW } from '@warden/proto';
import { type AgentContext, GatewayConnection, type RelaySession } from '../src/index.js';
import {
  dataRow,
  errorFields,
  type FakeControl,
  FakeGateway,
  type FakeSession,
  messages,
  queryMessage,
  waitFor,
} from './helpers/fake-gateway.js';
import { MAIN, query, rand } from './helpers/pg.js';

const TOKEN = `enroll-${rand()}`;
const log = pino({ level: process.env.WARDEN_TEST_LOG ?? 'silent' });

function context(): AgentContext {
  return {
    agentName: 'local',
    token: TOKEN,
    version: 'test',
    log,
    sessions: new Map<string, RelaySession>(),
    closeGraceMs: 3_000,
    resources: {
      shop: { ...MAIN, sslmode: 'disable' },
      nodb: { ...MAIN, database: `warden_missing_${rand()}`, sslmode: 'disable' },
      down: { ...MAIN, port: 1, sslmode: 'disable' },
    },
  };
}

/** Waits until the data received on a session holds `n` ReadyForQuery messages. */
async function untilReady(s: FakeSession, n: number, timeoutMs = 10_000) {
  return waitFor(
    () => {
      const msgs = messages(s.data);
      return msgs.filter((m) => m.type === 'Z').length >= n ? msgs : undefined;
    },
    timeoutMs,
    `${n} ReadyForQuery`,
  );
}

async function backends(appName: string): Promise<number> {
  const rows = await query<{ n: string }>(MAIN, 'SELECT count(*)::text AS n FROM pg_stat_activity WHERE application_name = $1', [
    appName,
  ]);
  return Number(rows[0]!.n);
}

/** Polls pg_stat_activity until no backend carries `appName`. */
async function noBackends(appName: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await backends(appName)) > 0) {
    if (Date.now() > deadline) throw new Error(`a backend for ${appName} is still present`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('tunnel relay with a fake gateway', () => {
  let gw: FakeGateway;
  let ctx: AgentContext;
  let conn: GatewayConnection;

  beforeAll(async () => {
    gw = await new FakeGateway().start();
    ctx = context();
    conn = new GatewayConnection(ctx, {
      address: gw.address,
      backoff: { baseMs: 50, capMs: 500 },
    });
    conn.start();
  });

  afterAll(async () => {
    await conn.stop({ closeSessions: true });
    await gw.stop();
  });

  /** Opens a session on the agent and waits for the end of its startup (ReadyForQuery). */
  async function readySession(): Promise<{ c: FakeControl; id: string; s: FakeSession }> {
    const c = await gw.control();
    const id = `s-${rand()}`;
    c.open({ sessionId: id });
    const s = await gw.session(id);
    await untilReady(s, 1);
    return { c, id, s };
  }

  it('says hello with the enrollment token and agent name', async () => {
    const c = await gw.control();
    expect(c.token).toBe(TOKEN);
    expect(c.info.agent).toBe('local');
    expect(c.hello).toEqual({ agentName: 'local', version: 'test', resources: ['down', 'nodb', 'shop'], features: ['cancel-key'] });
    await waitFor(() => conn.connected, 5_000, 'connected');
  });

  it('opens a session: ready, startup bytes, then relays a simple query', async () => {
    const c = await gw.control();
    const id = `s-${rand()}`;
    c.open({ sessionId: id, parameters: { application_name: `warden-relay-${id}` } });
    const s = await gw.session(id);
    expect(ctx.sessions.get(id)?.id).toBe(id);

    const startup = await untilReady(s, 1);
    expect(s.first?.$case).toBe('ready');
    expect(startup.map((m) => m.type)).toContain('K');
    expect(startup.map((m) => m.type)).toContain('S');
    expect(startup[startup.length - 1]!.type).toBe('Z');
    const startupLength = s.data.length;

    s.send(queryMessage('SELECT 1'));
    const msgs = await untilReady(s, 2);
    const after = messages(s.data.subarray(startupLength));
    expect(after.map((m) => m.type)).toEqual(['T', 'D', 'C', 'Z']);
    expect(dataRow(after[1]!.body)).toEqual(['1']);
    expect(msgs[msgs.length - 1]!.body.toString()).toBe('I');

    s.send(Buffer.from([0x58, 0, 0, 0, 4])); // Terminate: the upstream closes, the agent ends the channel
    await waitFor(() => s.agentEnded, 10_000, 'the agent to end the channel');
    expect(s.endError).toBeUndefined();
    await waitFor(() => !ctx.sessions.has(id), 10_000, 'session cleanup');
  });

  it('splits and joins frames freely: the relay does not care about message boundaries', async () => {
    const { id, s } = await readySession();
    const q = Buffer.concat([queryMessage("SELECT 'a'"), queryMessage("SELECT 'b'")]);
    for (let i = 0; i < q.length; i += 3) s.send(q.subarray(i, i + 3));
    const msgs = await untilReady(s, 3);
    expect(msgs.filter((m) => m.type === 'D').map((m) => dataRow(m.body)[0])).toEqual(['a', 'b']);
    s.end();
    await waitFor(() => !ctx.sessions.has(id), 10_000, 'session cleanup');
  });

  it('the DATA frames of one link read leave in one upstream write', async () => {
    const { id, s } = await readySession();
    const session = ctx.sessions.get(id)!;
    const before = session.upstreamWrites;
    // Three DATA frames queued in one turn: the gateway's link sends them in one write, the agent reads them at once.
    for (const v of ['a', 'b', 'c']) s.send(queryMessage(`SELECT '${v}'`));
    const msgs = await untilReady(s, 4);
    expect(msgs.filter((m) => m.type === 'D').map((m) => dataRow(m.body)[0])).toEqual(['a', 'b', 'c']);
    expect(session.upstreamWrites - before).toBe(1);
    s.end();
    await waitFor(() => !ctx.sessions.has(id), 10_000, 'session cleanup');
  });

  it('cancel stops a running pg_sleep(30)', async () => {
    const { c, id, s } = await readySession();
    s.send(queryMessage('SELECT pg_sleep(30)'));
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    c.cancel(id);
    const msgs = await untilReady(s, 2, 15_000);
    expect(Date.now() - t0).toBeLessThan(15_000);
    const err = msgs.find((m) => m.type === 'E');
    expect(err && errorFields(err.body).C).toBe('57014');
    // The session is still usable after the cancel.
    s.send(queryMessage('SELECT 2'));
    const more = await untilReady(s, 3);
    expect(more.filter((m) => m.type === 'D').map((m) => dataRow(m.body)[0])).toEqual(['2']);
    s.end();
  }, 30_000);

  it('CANCEL_KEY with the client key from OPEN cancels the query; a wrong secret or pid matches nothing', async () => {
    const { id, s } = await readySession();
    const session = ctx.sessions.get(id)!;
    let cancels = 0;
    const cancelQuery = session.cancelQuery.bind(session);
    session.cancelQuery = () => {
      cancels++;
      cancelQuery();
    };
    const key = gw.hub.keys.issue(s.upstream!);
    const secret = Buffer.alloc(4);
    secret.writeInt32BE(key.secret);
    s.send(queryMessage('SELECT pg_sleep(30)'));
    await new Promise((r) => setTimeout(r, 300));
    gw.hub.cancelByKey(key.pid, Buffer.from(secret.map((b, i) => (i === 3 ? b ^ 1 : b))));
    gw.hub.cancelByKey(key.pid ^ 1, secret);
    gw.hub.cancelByKey(key.pid, Buffer.concat([secret, Buffer.from([0])]));
    // Frames are handled in order: the right key comes last.
    gw.hub.cancelByKey(key.pid, secret);
    const msgs = await untilReady(s, 2, 15_000);
    expect(msgs.filter((m) => m.type === 'E').map((m) => errorFields(m.body).C)).toEqual(['57014']);
    expect(cancels).toBe(1);
    s.end();
  }, 30_000);

  it('ending the session channel cancels the query and leaves no backend', async () => {
    const c = await gw.control();
    const id = `s-${rand()}`;
    const app = `warden-end-${id}`;
    c.open({ sessionId: id, parameters: { application_name: app } });
    const s = await gw.session(id);
    await untilReady(s, 1);
    s.send(queryMessage('SELECT pg_sleep(30)'));
    await new Promise((r) => setTimeout(r, 300));
    expect(await backends(app)).toBe(1);
    s.end();
    await noBackends(app, 15_000);
    await waitFor(() => !ctx.sessions.has(id), 10_000, 'session cleanup');
  }, 30_000);

  it('a client Terminate followed by the end of the channel closes the upstream', async () => {
    const c = await gw.control();
    for (const busy of [false, true]) {
      const id = `s-${rand()}`;
      const app = `warden-quit-${id}`;
      c.open({ sessionId: id, parameters: { application_name: app } });
      const s = await gw.session(id);
      await untilReady(s, 1);
      // Busy: a query still runs when the Terminate arrives; the agent must still cancel it.
      if (busy) s.send(Buffer.concat([queryMessage('SELECT pg_sleep(30)'), Buffer.from([0x58, 0, 0, 0, 4])]));
      else s.send(Buffer.from([0x58, 0, 0, 0, 4]));
      s.end();
      await waitFor(() => !ctx.sessions.has(id), 15_000, 'session cleanup');
      await noBackends(app);
    }
  }, 30_000);

  it('a dropped link (gateway gone) also closes the upstream, and the agent redials', async () => {
    const c = await gw.control();
    const id = `s-${rand()}`;
    const app = `warden-cancel-${id}`;
    c.open({ sessionId: id, parameters: { application_name: app } });
    const s = await gw.session(id);
    await untilReady(s, 1);
    expect(await backends(app)).toBe(1);
    c.drop();
    await waitFor(() => s.agentEnded, 5_000, 'the gateway side to see the session lost');
    expect(s.endError).toBeDefined();
    await waitFor(() => !ctx.sessions.has(id), 15_000, 'session cleanup');
    await noBackends(app);
    const again = await gw.control(10_000);
    expect(again).not.toBe(c);
    await waitFor(() => conn.connected, 5_000, 'connected again');
  }, 30_000);

  it('when the upstream closes, the agent ends the channel', async () => {
    const c = await gw.control();
    const id = `s-${rand()}`;
    const app = `warden-kill-${id}`;
    c.open({ sessionId: id, parameters: { application_name: app } });
    const s = await gw.session(id);
    await untilReady(s, 1);
    await query(MAIN, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [app]);
    await waitFor(() => s.agentEnded, 10_000, 'the agent to end the channel');
    // The FATAL the server sent before closing was relayed.
    const fatal = messages(s.data).find((m) => m.type === 'E');
    expect(fatal && errorFields(fatal.body).C).toBe('57P01');
    await waitFor(() => !ctx.sessions.has(id), 10_000, 'session cleanup');
  });

  it('read_only opens the upstream with default_transaction_read_only=on', async () => {
    const c = await gw.control();
    const id = `s-${rand()}`;
    c.open({ sessionId: id, readOnly: true, parameters: { default_transaction_read_only: 'off' } });
    const s = await gw.session(id);
    await untilReady(s, 1);
    const n = s.data.length;
    s.send(queryMessage('SHOW default_transaction_read_only'));
    await untilReady(s, 2);
    const row = messages(s.data.subarray(n)).find((m) => m.type === 'D');
    expect(dataRow(row!.body)).toEqual(['on']);
    s.end();
  });

  it('FAILED frames: unknown resource (3D000), missing database (3D000), unreachable upstream (08006)', async () => {
    const c = await gw.control();
    const cases = [
      { resource: 'nope', sqlstate: '3D000', message: /^agent local has no upstream settings for resource nope$/ },
      {
        resource: 'nodb',
        sqlstate: '3D000',
        message: /^agent local could not log in to resource nodb upstream as role postgres: database "warden_missing_\w+" does not exist/,
      },
      {
        resource: 'down',
        sqlstate: '08006',
        message: /^agent local could not connect to resource down upstream 127.0.0.1:1: connection refused/,
      },
    ];
    for (const k of cases) {
      const id = `s-${rand()}`;
      c.open({ sessionId: id, resource: k.resource });
      const s = await gw.session(id);
      expect(s.agentEnded).toBe(true);
      expect(s.frames).toHaveLength(1);
      const f = s.first;
      expect(f?.$case).toBe('failed');
      if (f?.$case !== 'failed') continue;
      expect(f.value.sqlstate).toBe(k.sqlstate);
      expect(f.value.message).toMatch(k.message);
      await waitFor(() => !ctx.sessions.has(id), 5_000, 'session cleanup');
    }
  });

  it('moves large results and large requests intact with a slow reader (backpressure)', async () => {
    const { id, s } = await readySession();
    const start = s.data.length;
    // The gateway stops returning credit for a while (a client that does not
    // read): the agent must pause the upstream after about one window, not buffer without end.
    s.pause();
    s.send(queryMessage("SELECT i, repeat('x', 1000) FROM generate_series(1, 20000) i"));
    const session = ctx.sessions.get(id)!;
    await waitFor(() => session.upstreamPaused, 10_000, 'the agent to pause the upstream socket');
    await new Promise((r) => setTimeout(r, 300));
    expect(session.upstreamPaused).toBe(true);
    expect(s.data.length - start).toBeLessThanOrEqual(DEFAULT_WINDOW);
    s.resume();
    const msgs = await untilReady(s, 2, 30_000);
    const rows = messages(s.data.subarray(start)).filter((m) => m.type === 'D');
    expect(rows).toHaveLength(20_000);
    expect(dataRow(rows[19_999]!.body)).toEqual(['20000', 'x'.repeat(1000)]);
    expect(msgs[msgs.length - 1]!.type).toBe('Z');

    // The other way: an 8 MB query text sent in 16 KB pieces (queued past the window, sent as credit comes back).
    const n = s.data.length;
    const big = queryMessage(`SELECT length('${'y'.repeat(8 * 1024 * 1024)}')`);
    for (let i = 0; i < big.length; i += 16 * 1024) s.send(big.subarray(i, i + 16 * 1024));
    await untilReady(s, 3, 30_000);
    const row = messages(s.data.subarray(n)).find((m) => m.type === 'D');
    expect(dataRow(row!.body)).toEqual([String(8 * 1024 * 1024)]);
    s.end();
  }, 60_000);

  it('a duplicate session id is refused and does not disturb the running session', async () => {
    const { c, id, s } = await readySession();
    const dup = c.open({ sessionId: id });
    await waitFor(() => dup.frames.length > 0, 5_000, 'an answer to the duplicate');
    expect(dup.first?.$case).toBe('failed');
    s.send(queryMessage('SELECT 3'));
    const msgs = await untilReady(s, 2);
    expect(msgs.filter((m) => m.type === 'D').map((m) => dataRow(m.body)[0])).toEqual(['3']);
    s.end();
  });
});

describe('reconnects', () => {
  let gw: FakeGateway;
  let conn: GatewayConnection | undefined;
  afterEach(async () => {
    await conn?.stop({ closeSessions: true });
    await gw?.stop();
  });

  it('redials after the gateway restarts, and keeps serving sessions', async () => {
    gw = await new FakeGateway().start();
    const port = gw.port;
    const ctx = context();
    conn = new GatewayConnection(ctx, {
      address: gw.address,
      backoff: { baseMs: 50, capMs: 1_000 },
    });
    conn.start();
    await gw.control();
    const dials = conn.dials;

    await gw.stop();
    await waitFor(() => !conn!.connected, 10_000, 'disconnect');
    await new Promise((r) => setTimeout(r, 500)); // a few failed dials while it is down
    gw = await new FakeGateway().start(port);
    const c = await gw.control(20_000);
    expect(conn.dials).toBeGreaterThan(dials);
    expect(c.hello?.agentName).toBe('local');

    const id = `s-${rand()}`;
    c.open({ sessionId: id });
    const s = await gw.session(id);
    await untilReady(s, 1);
    s.send(queryMessage('SELECT 4'));
    const msgs = await untilReady(s, 2);
    expect(msgs.filter((m) => m.type === 'D').map((m) => dataRow(m.body)[0])).toEqual(['4']);
    s.end();
  }, 40_000);

  it('a gateway that dies takes its sessions down, backends included', async () => {
    gw = await new FakeGateway().start();
    const ctx = context();
    conn = new GatewayConnection(ctx, {
      address: gw.address,
      backoff: { baseMs: 50, capMs: 1_000 },
    });
    conn.start();
    const c = await gw.control();
    const id = `s-${rand()}`;
    const app = `warden-die-${id}`;
    c.open({ sessionId: id, parameters: { application_name: app } });
    const s = await gw.session(id);
    await untilReady(s, 1);
    s.send(queryMessage('SELECT pg_sleep(30)'));
    await new Promise((r) => setTimeout(r, 300));
    await gw.stop();
    await waitFor(() => ctx.sessions.size === 0, 15_000, 'session cleanup');
    await noBackends(app);
  }, 30_000);

  it('stop() with closeSessions ends live sessions and their backends', async () => {
    gw = await new FakeGateway().start();
    const ctx = context();
    conn = new GatewayConnection(ctx, { address: gw.address });
    conn.start();
    const c = await gw.control();
    const id = `s-${rand()}`;
    const app = `warden-stop-${id}`;
    c.open({ sessionId: id, parameters: { application_name: app } });
    const s = await gw.session(id);
    await untilReady(s, 1);
    s.send(queryMessage('SELECT pg_sleep(30)'));
    await new Promise((r) => setTimeout(r, 300));
    await conn.stop({ closeSessions: true });
    conn = undefined;
    expect(ctx.sessions.size).toBe(0);
    await waitFor(() => s.agentEnded, 5_000, 'channel end');
    expect(s.endError?.message).toMatch(/shutting down/);
    await noBackends(app, 10_000);
  }, 30_000);
});
