// A statement held for approval inside the client's session (issue 13): real
// Sessions over real sockets, the test's Postgres behind them through a
// plain-socket upstream, and a fake approval client the test decides with.
// The client is a raw protocol client, so every message it gets is checked.
import { createServer, connect, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ApprovalRequest, ApprovalRule, type AuditEvent, type ConsumeApprovalRequest } from '@warden/proto';
import { MessageReader, cancelRequest, startupMessage } from '@warden/proto/pgwire';
import { ApprovalsUnreachable } from '../src/approvals/client.js';
import type { ApprovalClient } from '../src/approvals/hold.js';
import { ApprovalMatcher } from '../src/approvals/rules.js';
import { ClassificationCache, StatementGate, type Rule } from '../src/policy/index.js';
import { Session, type Admission } from '../src/session/index.js';
import { CancelKeys, secretBytes, type CancelKey } from '../src/tunnel/cancel-keys.js';
import type { Upstream, UpstreamHandlers } from '../src/tunnel/upstream.js';
import { RawClient, serialize, type Message } from '../../test/support/raw-client.js';

const log = pino({ level: process.env.WARDEN_TEST_LOG ?? 'silent' });
const PG_URL = process.env.WARDEN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const SCHEMA = `aprhold_${process.pid}`;
const WRITER: Rule = { name: 'writer', access: 'ddl', allowSchemas: [], denySchemas: [], allowTables: [], denyTables: [] };

/** The control plane as a session sees it, decided by the test. */
class FakeApprovals implements ApprovalClient {
  readonly requests: ApprovalRequest[] = [];
  readonly withdrawn: string[] = [];
  unreachable = false;
  private readonly listeners = new Map<string, (r: ApprovalRequest) => void>();
  private waiters: Array<(r: ApprovalRequest) => void> = [];

  async request(r: ApprovalRequest): Promise<ApprovalRequest> {
    if (this.unreachable) throw new ApprovalsUnreachable('connect ECONNREFUSED');
    const same = this.requests.find((x) => x.fingerprint === r.fingerprint && x.sessionId === r.sessionId && x.state === 'pending');
    if (same) return same;
    const made = ApprovalRequest.fromPartial({ ...r, id: `apr_${this.requests.length + 1}`, state: 'pending' });
    this.requests.push(made);
    for (const w of this.waiters.splice(0)) w(made);
    return made;
  }

  async withdraw(id: string): Promise<ApprovalRequest> {
    this.withdrawn.push(id);
    const r = this.get(id);
    if (r.state === 'pending') r.state = 'withdrawn';
    return r;
  }

  async consume(q: ConsumeApprovalRequest): Promise<ApprovalRequest | undefined> {
    const r = this.requests.find((x) => x.fingerprint === q.fingerprint && x.identity === q.identity && x.state === 'approved');
    if (r) r.state = 'executed';
    return r;
  }

  watch(id: string, listener: (r: ApprovalRequest) => void): () => void {
    this.listeners.set(id, listener);
    return () => this.listeners.delete(id);
  }

  /** An approver's decision, sent on the stream unless `silent`. */
  decide(id: string, approve: boolean, opts: { by?: string; reason?: string; silent?: boolean } = {}): void {
    const r = this.get(id);
    r.state = approve ? 'approved' : 'denied';
    r.decisions = [{ approver: opts.by ?? 'alice', groups: ['dba'], approve, reason: opts.reason ?? '', at: new Date().toISOString() }];
    if (!opts.silent) this.listeners.get(id)?.(ApprovalRequest.fromPartial(r));
  }

  /** The next request opened (or the latest, if one came already and was not taken). */
  next(): Promise<ApprovalRequest> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private get(id: string): ApprovalRequest {
    const r = this.requests.find((x) => x.id === id);
    if (!r) throw new Error(`no request ${id}`);
    return r;
  }
}

/** Logs in to the test Postgres itself and then relays, as the agent does after OPEN. */
class SocketUpstream implements Upstream {
  readonly agent = 'test-agent';
  readonly cancelKey: CancelKey;
  private handlers: UpstreamHandlers | null = null;
  private early: Buffer[];

  private constructor(
    private readonly socket: Socket,
    initial: Buffer,
    private readonly keys: CancelKeys,
    readonly sessionId: string,
  ) {
    this.cancelKey = keys.issue(this);
    this.early = initial.length ? [initial] : [];
    socket.on('data', (b: Buffer) => (this.handlers ? this.handlers.data(b) : this.early.push(b)));
    socket.on('error', () => {});
    socket.on('close', () => {
      const h = this.handlers;
      this.handlers = null;
      h?.end();
    });
    socket.resume();
  }

  static open(keys: CancelKeys, sessionId: string): Promise<SocketUpstream> {
    const url = new URL(PG_URL);
    return new Promise((resolve, reject) => {
      const socket = connect({ host: url.hostname, port: Number(url.port || 5432) });
      const reader = new MessageReader();
      const onData = (b: Buffer): void => {
        reader.push(b);
        for (let m = reader.nextTyped(1 << 20); m; m = reader.nextTyped(1 << 20)) {
          if (m.type !== 0x52) continue;
          if (m.body.readInt32BE(0) !== 0) return reject(new Error('the test server must trust 127.0.0.1'));
          socket.off('data', onData);
          socket.pause();
          return resolve(new SocketUpstream(socket, reader.drain(), keys, sessionId));
        }
      };
      socket.on('data', onData);
      socket.once('error', reject);
      socket.once('connect', () => socket.write(startupMessage([['user', 'postgres'], ['database', url.pathname.slice(1) || 'postgres']])));
    });
  }

  start(handlers: UpstreamHandlers): void {
    this.handlers = handlers;
    for (const b of this.early.splice(0)) handlers.data(b);
  }
  write(chunk: Buffer): boolean {
    return this.socket.write(chunk);
  }
  pause(): void {
    this.socket.pause();
  }
  resume(): void {
    this.socket.resume();
  }
  close(): void {
    this.keys.release(this);
    this.handlers = null;
    this.socket.destroy();
  }
  cancel(): void {
    this.cancels++;
  }
  cancels = 0;
}

const rule = (over: Partial<ApprovalRule>): ApprovalRule =>
  ApprovalRule.fromPartial({ name: 'deletes', resource: 'shop', kinds: ['DELETE'], approvers: ['dba'], quorum: 1, mode: 'wait', waitTimeoutSeconds: 30, ...over });

interface Harness {
  client: RawClient;
  fake: FakeApprovals;
  events: AuditEvent[];
  key: { pid: number; secret: number };
  port: number;
}

const servers: Server[] = [];
const clients: RawClient[] = [];
let admin: pg.Client;

beforeAll(async () => {
  admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`drop schema if exists ${SCHEMA} cascade; create schema ${SCHEMA}; create table ${SCHEMA}.t (id int)`);
});
afterAll(async () => {
  await admin.query(`drop schema if exists ${SCHEMA} cascade`);
  await admin.end();
});
afterEach(async () => {
  for (const c of clients.splice(0)) await c.end().catch(() => {});
  for (const s of servers.splice(0)) s.close();
});

async function fill(): Promise<void> {
  await admin.query(`truncate ${SCHEMA}.t; insert into ${SCHEMA}.t select generate_series(1, 5)`);
}

async function harness(rules: ApprovalRule[], opts: { explain?: (sql: string) => Promise<number | null> } = {}): Promise<Harness> {
  const fake = new FakeApprovals();
  const events: AuditEvent[] = [];
  const keys = new CancelKeys();
  let n = 0;
  const server = createServer((socket) => {
    new Session(socket, {
      log,
      keys,
      allowPlaintext: () => true,
      admit: async (_token, resource): Promise<Admission> => {
        const gate = new StatementGate({ identity: 'ci', resource, rules: [WRITER], approvals: new ApprovalMatcher(rules) }, new ClassificationCache());
        return { identity: 'ci', groups: [], resource, agent: 'test-agent', readOnly: false, gate, claims: {} };
      },
      openUpstream: () => SocketUpstream.open(keys, `s${++n}`),
      authTimeoutMs: 10_000,
      audit: { publish: (e) => events.push(e) },
      gatewayId: 'gw',
      parameterRecording: 'full',
      approvals: { client: fake, explain: opts.explain && ((_r, _a, sql) => opts.explain!(sql)) },
      cancels: keys,
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  const client = await RawClient.connect({ host: '127.0.0.1', port, user: 'ci', database: 'shop', password: 'token', parameters: { application_name: 'migration 42' } });
  clients.push(client);
  const k = client.startup.find((m) => m.name === 'backendKeyData')!;
  return { client, fake, events, port, key: { pid: k.processID as number, secret: k.secretKey as number } };
}

/** Messages up to ReadyForQuery, as short lines. */
async function answer(c: RawClient): Promise<string[]> {
  return (await c.until('readyForQuery')).map(line);
}

function line(m: Message): string {
  switch (m.name) {
    case 'error':
    case 'notice':
      return `${m.name} ${String(m.code)} ${String(m.message)}`;
    case 'commandComplete':
      return `complete ${String(m.text)}`;
    case 'readyForQuery':
      return `ready ${String(m.status)}`;
    case 'dataRow':
      return `row ${(m.fields as unknown[]).join('|')}`;
    default:
      return m.name;
  }
}

async function count(): Promise<number> {
  return Number((await admin.query(`select count(*) from ${SCHEMA}.t`)).rows[0].count);
}

const approvalStates = (events: AuditEvent[]) => events.flatMap((e) => (e.event?.$case === 'approval' ? [`${e.event.value.state} ${e.event.value.approvalId}`] : []));
const statementEvents = (events: AuditEvent[]) => events.flatMap((e) => (e.event?.$case === 'statement' ? [e.event.value] : []));

async function waitFor<T>(fn: () => T | undefined | false, what: string, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const DELETE = `delete from ${SCHEMA}.t where id = 1`;

describe('wait mode, simple protocol', () => {
  it('holds the statement, tells the client, and runs it once approved', async () => {
    await fill();
    const h = await harness([rule({})]);
    const requested = h.fake.next();
    h.client.send(serialize.query(DELETE));
    const req = await requested;
    expect(req).toMatchObject({ rule: 'deletes', identity: 'ci', resource: 'shop', sql: DELETE, sessionId: 's1', gatewayId: 'gw', reason: 'migration 42', mode: 'wait' });
    expect(req.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    const notice = await h.client.next();
    expect(line(notice)).toBe(`notice 01000 warden: the statement is held for approval apr_1 (rule deletes: ${req.why}); an approver runs: warden approvals approve apr_1`);
    expect(await count()).toBe(5);
    h.fake.decide('apr_1', true);
    expect(await answer(h.client)).toEqual(['complete DELETE 1', 'ready I']);
    expect(await count()).toBe(4);
    expect(approvalStates(h.events)).toEqual(['requested apr_1', 'approved apr_1']);
    expect(statementEvents(h.events).at(-1)).toMatchObject({ sql: DELETE, approvalId: 'apr_1' });
  });

  it('keeps what the client sent behind the held statement, in order', async () => {
    await fill();
    const h = await harness([rule({})]);
    h.client.send(serialize.query('select 1'), serialize.query(DELETE), serialize.query('select 2'));
    // The notice may come before or after the first answer: between messages either way.
    let first = await answer(h.client);
    if (!first.some((l) => l.startsWith('notice'))) first = [...first, line(await h.client.next())];
    expect(first.filter((l) => !l.startsWith('notice'))).toEqual(['rowDescription', 'row 1', 'complete SELECT 1', 'ready I']);
    h.fake.decide('apr_1', true);
    expect(await answer(h.client)).toEqual(['complete DELETE 1', 'ready I']);
    expect(await answer(h.client)).toEqual(['rowDescription', 'row 2', 'complete SELECT 1', 'ready I']);
  });

  it('denied outside a transaction: 42501 with who and why, and the session goes on', async () => {
    await fill();
    const h = await harness([rule({})]);
    const requested = h.fake.next();
    h.client.send(serialize.query(DELETE));
    const req = await requested;
    await h.client.next();
    h.fake.decide('apr_1', false, { reason: 'not during business hours' });
    expect(await answer(h.client)).toEqual([`error 42501 warden: ci on shop may not run ${req.why}: approval apr_1 was denied by alice (not during business hours)`, 'ready I']);
    expect(await count()).toBe(5);
    h.client.send(serialize.query('select 3'));
    expect(await answer(h.client)).toEqual(['rowDescription', 'row 3', 'complete SELECT 1', 'ready I']);
    expect(approvalStates(h.events)).toEqual(['requested apr_1', 'denied apr_1']);
    expect(statementEvents(h.events).find((s) => s.sql === DELETE)?.error?.sqlstate).toBe('42501');
  });

  it('denied inside a transaction: the transaction is failed as Postgres fails it', async () => {
    await fill();
    const h = await harness([rule({})]);
    h.client.send(serialize.query('begin'));
    expect(await answer(h.client)).toEqual(['complete BEGIN', 'ready T']);
    h.client.send(serialize.query(DELETE));
    await h.client.next();
    h.fake.decide('apr_1', false);
    const [error, ready] = await answer(h.client);
    expect(error).toMatch(/^error 42501 .*approval apr_1 was denied by alice$/);
    expect(ready).toBe('ready E');
    h.client.send(serialize.query('select 1'));
    expect((await answer(h.client))[0]).toMatch(/^error 25P02 /);
    h.client.send(serialize.query('rollback'));
    expect(await answer(h.client)).toEqual(['complete ROLLBACK', 'ready I']);
  });

  it('a multi-statement query: held whole; denied, the statements before the held one are rolled back with it', async () => {
    await fill();
    const h = await harness([rule({})]);
    h.client.send(serialize.query(`insert into ${SCHEMA}.t values (9); ${DELETE}; select 1`));
    const notice = await h.client.next();
    expect(notice.name).toBe('notice');
    expect(h.fake.requests[0]!.sql).toBe(`insert into ${SCHEMA}.t values (9); ${DELETE}; select 1`);
    h.fake.decide('apr_1', false);
    const got = await answer(h.client);
    expect(got[0]).toBe('complete INSERT 0 1');
    expect(got.slice(1)).toEqual([expect.stringMatching(/^error 42501 /), 'ready I']);
    expect(await count()).toBe(5);
  });

  it('times out with no decision: withdrawn, 42501, usable', async () => {
    await fill();
    const h = await harness([rule({ waitTimeoutSeconds: 1 })]);
    const requested = h.fake.next();
    h.client.send(serialize.query(DELETE));
    const req = await requested;
    await h.client.next();
    expect(await answer(h.client)).toEqual([`error 42501 warden: ci on shop may not run ${req.why}: approval apr_1 timed out after 1 s with no decision`, 'ready I']);
    expect(h.fake.withdrawn).toEqual(['apr_1']);
    expect(approvalStates(h.events)).toEqual(['requested apr_1', 'expired apr_1']);
    h.client.send(serialize.query('select 1'));
    expect((await answer(h.client)).at(-1)).toBe('ready I');
  });

  it('a decision whose stream update never came is found at the timeout, and runs', async () => {
    await fill();
    const h = await harness([rule({ waitTimeoutSeconds: 1 })]);
    h.client.send(serialize.query(DELETE));
    await h.client.next();
    h.fake.decide('apr_1', true, { silent: true });
    expect(await answer(h.client)).toEqual(['complete DELETE 1', 'ready I']);
  });

  it('a CancelRequest withdraws the request: 57014, and the session goes on', async () => {
    await fill();
    const h = await harness([rule({})]);
    h.client.send(serialize.query(DELETE));
    await h.client.next();
    const canceller = connect(h.port, '127.0.0.1');
    canceller.on('error', () => {});
    canceller.write(cancelRequest(h.key.pid, secretBytes(h.key.secret)));
    expect(await answer(h.client)).toEqual(['error 57014 warden: the held statement was withdrawn: canceled by the client', 'ready I']);
    canceller.destroy();
    expect(h.fake.withdrawn).toEqual(['apr_1']);
    expect(approvalStates(h.events)).toEqual(['requested apr_1', 'withdrawn apr_1']);
    expect(await count()).toBe(5);
    h.client.send(serialize.query('select 1'));
    expect((await answer(h.client)).at(-1)).toBe('ready I');
  });

  it('a disconnect withdraws the request, recorded before the session ends', async () => {
    const h = await harness([rule({})]);
    h.client.send(serialize.query(DELETE));
    await h.client.next();
    await h.client.end();
    await waitFor(() => h.fake.withdrawn.length > 0, 'the withdrawal');
    expect(h.fake.withdrawn).toEqual(['apr_1']);
    await waitFor(() => h.events.some((e) => e.event?.$case === 'sessionEnd'), 'the session end');
    const types = h.events.map((e) => (e.event?.$case === 'approval' ? `approval ${e.event.value.state}` : e.event?.$case));
    expect(types.slice(-2)).toEqual(['approval withdrawn', 'sessionEnd']);
  });

  it('a control plane that cannot be reached: refused at once', async () => {
    await fill();
    const h = await harness([rule({})]);
    h.fake.unreachable = true;
    h.client.send(serialize.query(DELETE));
    const got = await answer(h.client);
    expect(got).toEqual([expect.stringMatching(/^error 42501 warden: ci on shop may not run .*: could not request approval: the control plane cannot be reached$/), 'ready I']);
  });

  it('statements no rule holds are not held', async () => {
    const h = await harness([rule({})]);
    h.client.send(serialize.query(`select count(*) from ${SCHEMA}.t`));
    expect((await answer(h.client)).at(-1)).toBe('ready I');
    expect(h.fake.requests).toEqual([]);
  });
});

describe('wait mode, extended protocol', () => {
  const batch = (param: string) => [
    serialize.parse({ text: 'select 1' }),
    serialize.bind({}),
    serialize.execute({}),
    serialize.parse({ text: `delete from ${SCHEMA}.t where id = $1` }),
    serialize.bind({ values: [param] }),
    serialize.execute({}),
    serialize.parse({ text: 'select 2' }),
    serialize.bind({}),
    serialize.execute({}),
    serialize.sync(),
  ];

  it('holds the Parse with its Bind parameters; approved, the batch runs', async () => {
    await fill();
    const h = await harness([rule({})]);
    h.client.send(...batch('2'));
    // Postgres sends nothing of a batch before its Sync, so the notice comes first.
    expect(line(await h.client.next())).toMatch(/^notice 01000 .*apr_1/);
    expect(h.fake.requests[0]!.parameters).toEqual([{ value: '2' }]);
    h.fake.decide('apr_1', true);
    expect(await answer(h.client)).toEqual([
      ...['parseComplete', 'bindComplete', 'row 1', 'complete SELECT 1'],
      ...['parseComplete', 'bindComplete', 'complete DELETE 1'],
      ...['parseComplete', 'bindComplete', 'row 2', 'complete SELECT 1', 'ready I'],
    ]);
    expect(statementEvents(h.events).find((s) => s.sql.startsWith('delete'))).toMatchObject({ approvalId: 'apr_1', parameters: [{ value: '2' }] });
  });

  it('denied: the rest of the batch up to Sync is discarded as after a server error', async () => {
    await fill();
    const h = await harness([rule({})]);
    h.client.send(...batch('2'));
    await h.client.until('notice');
    h.fake.decide('apr_1', false);
    // The held Parse and its Bind are the refusal's: the error comes at its Execute, and the last statement is skipped.
    expect(await answer(h.client)).toEqual([
      ...['parseComplete', 'bindComplete', 'row 1', 'complete SELECT 1'],
      ...['parseComplete', 'bindComplete', expect.stringMatching(/^error 42501 .*denied by alice$/), 'ready I'],
    ]);
    expect(await count()).toBe(5);
    h.client.send(...batch('3'));
    await h.client.until('notice');
    h.fake.decide('apr_2', true);
    expect((await answer(h.client)).at(-1)).toBe('ready I');
    expect(await count()).toBe(4);
  });

  it('the fingerprint binds the parameters', async () => {
    const h = await harness([rule({})]);
    h.client.send(...batch('2'));
    await h.client.until('notice');
    h.fake.decide('apr_1', false);
    await answer(h.client);
    h.client.send(...batch('3'));
    await h.client.until('notice');
    expect(h.fake.requests[0]!.fingerprint).not.toBe(h.fake.requests[1]!.fingerprint);
  });
});

describe('a prepared statement run again', () => {
  it('an approval covers one execution: a second Bind of the named statement, with other parameters, is held again; denied, its portal raises', async () => {
    await fill();
    const h = await harness([rule({})]);
    const run = (param: string) => [serialize.bind({ statement: 'del', values: [param] }), serialize.execute({}), serialize.sync()];
    h.client.send(serialize.parse({ name: 'del', text: `delete from ${SCHEMA}.t where id = $1` }), ...run('2'));
    await h.client.until('notice');
    h.fake.decide('apr_1', true);
    expect(await answer(h.client)).toEqual(['parseComplete', 'bindComplete', 'complete DELETE 1', 'ready I']);
    expect(await count()).toBe(4);
    // The same prepared statement again: not covered by apr_1.
    h.client.send(...run('3'));
    expect(line(await h.client.next())).toMatch(/^notice 01000 .*apr_2/);
    expect(h.fake.requests[1]!.parameters).toEqual([{ value: '3' }]);
    expect(h.fake.requests[1]!.fingerprint).not.toBe(h.fake.requests[0]!.fingerprint);
    h.fake.decide('apr_2', false);
    expect(await answer(h.client)).toEqual(['parseComplete', 'bindComplete', expect.stringMatching(/^error 42501 .*apr_2 was denied by alice$/), 'ready I']);
    expect(await count()).toBe(4);
    // Approved, the third run goes through under its own approval.
    h.client.send(...run('4'));
    await h.client.until('notice');
    h.fake.decide('apr_3', true);
    expect(await answer(h.client)).toEqual(['bindComplete', 'complete DELETE 1', 'ready I']);
    expect(await count()).toBe(3);
    expect(statementEvents(h.events).filter((e) => e.sql.startsWith('delete')).map((e) => e.approvalId)).toEqual(['apr_1', undefined, 'apr_3']);
  });
});

describe('retry mode', () => {
  it('refuses at once with the request id; once approved the statement runs once', async () => {
    await fill();
    const h = await harness([rule({ mode: 'retry' })]);
    h.client.send(serialize.query(DELETE));
    const first = await answer(h.client);
    const why = h.fake.requests[0]!.why;
    expect(first).toEqual([`error 42501 warden: ci on shop may not run ${why}: held for approval apr_1: run it again once it is approved (warden approvals approve apr_1)`, 'ready I']);
    h.client.send(serialize.query(DELETE));
    expect((await answer(h.client))[0]).toContain('held for approval apr_1:'); // the pending one again
    h.fake.decide('apr_1', true);
    h.client.send(serialize.query(DELETE));
    expect(await answer(h.client)).toEqual(['complete DELETE 1', 'ready I']);
    expect(statementEvents(h.events).at(-1)).toMatchObject({ sql: DELETE, approvalId: 'apr_1' });
    h.client.send(serialize.query(DELETE));
    expect((await answer(h.client))[0]).toContain('held for approval apr_2:');
  });
});

describe('row estimates', () => {
  it('runs at once under the bound, holds over it with the estimate in why', async () => {
    await fill();
    let rows = 3;
    const h = await harness([rule({ kinds: [], rowsOver: 10 })], { explain: async () => rows });
    h.client.send(serialize.query(DELETE));
    expect(await answer(h.client)).toEqual(['complete DELETE 1', 'ready I']);
    expect(h.fake.requests).toEqual([]);
    rows = 50;
    h.client.send(serialize.query(`delete from ${SCHEMA}.t where id = 2`));
    const notice = line(await h.client.next());
    expect(notice).toContain('estimated at 50 rows (over 10)');
    h.fake.decide('apr_1', true);
    expect(await answer(h.client)).toEqual(['complete DELETE 1', 'ready I']);
  });
});
