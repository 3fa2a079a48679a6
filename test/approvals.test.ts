// Issue 13, end to end: just-in-time approval of risky statements, held in
// the client's own session. The policy (test/fixtures/approvals-policy.yaml)
// holds deployer's ALTER TABLE and DROP for one approver of group dba, a
// 3-second wait for slowpoke, retry mode for retrier's DELETEs, a quorum of
// two for quorum-user, bulk's writes estimated over 1000 rows and its
// UPDATE/DELETE without WHERE, and migrator's DROP through its group.
// Approvers are alice, bob and carol (group dba) with tokens of the local
// development issuer; mallory is in no approver group.
//
// Clients: psql (spawned), node-postgres in the simple and the extended
// protocol, and the raw client for a pipelined extended-protocol batch.
// Approvers decide with `warden approvals approve|deny --token`. New requests
// are announced to a webhook receiver of the test's own, which refuses each
// request's first delivery. What ran is
// read straight from Postgres: a column a held ALTER adds, rows a held
// DELETE removes, marks the statements around a held one write.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient, describeMessage, serialize, type Message } from './support/raw-client.js';
import { createDatabase, logs, ROOT, sh, startExtraGateway, startStack, WARDEN, type Stack, type TestDatabase } from './support/stack.js';

const RESOURCE = 'approvals';
const FIXTURE = join(ROOT, 'test/fixtures/approvals.sql');
const POLICY = join(ROOT, 'test/fixtures/approvals-policy.yaml');

let db: TestDatabase;
let stack: Stack;

/** What the webhook receiver got: each delivery attempt's parsed body, by approval id. */
const deliveries = new Map<string, Array<Record<string, unknown>>>();
let receiver: Server;

async function startReceiver(): Promise<string> {
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      let id = '';
      let parsed: Record<string, unknown> = {};
      try {
        parsed = JSON.parse(body) as Record<string, unknown>;
        id = String((parsed.approval as { id?: string } | undefined)?.id ?? '');
      } catch {
        parsed = { unparsed: body };
      }
      const seen = deliveries.get(id) ?? [];
      seen.push({ ...parsed, contentType: req.headers['content-type'], method: req.method });
      deliveries.set(id, seen);
      // The first delivery of each request fails: the control plane must retry.
      res.writeHead(seen.length === 1 ? 503 : 204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
  return `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hooks/approvals`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it gives something truthy; fails with the gateway's log after `ms`. */
async function waitFor<T>(what: string, fn: () => Promise<T | undefined | null | false>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}\n${logs(stack.dataDir)}`);
    await sleep(150);
  }
}

// ------------------------------------------------------------------ clients

interface Session {
  client: pg.Client;
  /** Every NoticeResponse's message, in order. */
  notices: string[];
}

async function connect(sub: string, app = `approvals-${sub}`, port = stack.port): Promise<Session> {
  const client = new pg.Client({ host: stack.host, port, user: sub, database: RESOURCE, password: await stack.token(sub), application_name: app });
  const notices: string[] = [];
  client.on('notice', (n) => notices.push(String(n.message)));
  client.on('error', () => {});
  await client.connect();
  return { client, notices };
}

type Outcome<T> = { ok: T } | { code: string; message: string };

/** A query's result or its SQLSTATE and message, never throwing; `settled` tells whether it is over yet. */
function track<T>(p: Promise<T>): Promise<Outcome<T>> & { settled: () => boolean } {
  let done = false;
  const out = p.then(
    (ok) => ({ ok }),
    (err: { code?: string; message?: string }) => ({ code: String(err.code ?? ''), message: String(err.message ?? err) }),
  ).finally(() => (done = true)) as Promise<Outcome<T>> & { settled: () => boolean };
  out.settled = () => done;
  return out;
}

/**
 * The transaction status of the client's last ReadyForQuery. node-postgres
 * settles a failed query on its ErrorResponse, which may come a packet
 * before the ReadyForQuery: wait for that first.
 */
async function txStatus(c: pg.Client): Promise<string> {
  await waitFor('ReadyForQuery', async () => (c as unknown as { readyForQuery: boolean }).readyForQuery, 10_000);
  return c.getTransactionStatus() ?? 'none';
}

const ID = 'apr_[A-Za-z0-9_-]+';
/** The NoticeResponse a held statement gets (wait mode). */
const HELD = new RegExp(`^warden: the statement is held for approval (${ID}) \\(rule ([a-z0-9_-]+): (.+)\\); an approver runs: warden approvals approve (${ID})$`);

interface Held {
  id: string;
  rule: string;
  why: string;
}

function heldFrom(text: string): Held | undefined {
  const m = HELD.exec(text.trim());
  if (!m) return undefined;
  // The command the notice gives names the same request.
  expect(m[4]).toBe(m[1]);
  return { id: m[1]!, rule: m[2]!, why: m[3]! };
}

/** Waits for the held notice among `notices`, past the first `from` of them. */
function heldIn(notices: string[], from = 0): Promise<Held> {
  return waitFor(`a held-for-approval notice (notices so far: ${JSON.stringify(notices)})`, async () => {
    for (const n of notices.slice(from)) {
      const h = heldFrom(n);
      if (h) return h;
    }
    return undefined;
  });
}

/** psql in the background: -X, ON_ERROR_STOP, each statement its own -c, on one connection. */
async function psql(sub: string, app: string, statements: string[]) {
  const env = { ...process.env, PGPASSWORD: await stack.token(sub) };
  const args = [stack.conninfo({ user: sub, application_name: app }), '-X', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose', '-At'];
  for (const s of statements) args.push('-c', s);
  const child = spawn('psql', args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  let exited = false;
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((r) =>
    child.once('exit', (code, signal) => {
      exited = true;
      r({ code, signal, stdout, stderr });
    }),
  );
  return { child, done, exited: () => exited, stderr: () => stderr, stdout: () => stdout };
}

/** The held notice psql printed on stderr. */
function heldInPsql(p: { stderr: () => string }): Promise<Held> {
  return waitFor('psql to print the held notice', async () => {
    for (const line of p.stderr().split('\n')) {
      const m = /^NOTICE:\s+(?:[0-9A-Z]{5}: )?(warden: .*)$/.exec(line);
      const h = m ? heldFrom(m[1]!) : undefined;
      if (h) return h;
    }
    return undefined;
  });
}

/** A CancelRequest with a pg client's key, sent by pg's own Connection.cancel to `port` (the client's gateway by default). */
function cancel(c: pg.Client, port = stack.port): Promise<void> {
  const k = c as unknown as { processID: number; secretKey: number };
  const con = new pg.Connection() as pg.Connection & { connect(port: number, host: string): void; cancel(pid: number, secret: number): void };
  const closed = new Promise<void>((resolve) => {
    con.on('end', () => resolve());
    con.on('error', () => resolve());
  });
  con.on('connect', () => con.cancel(k.processID, k.secretKey));
  con.connect(port, stack.host);
  return closed;
}

// ---------------------------------------------------------------- approvers

const tokens = new Map<string, string>();
/** An approver's token (group dba unless told), from the local development issuer. */
async function tokenOf(sub: string, groups: string[] = ['dba']): Promise<string> {
  const key = `${sub}:${groups.join(',')}`;
  if (!tokens.has(key)) tokens.set(key, await stack.token(sub, { groups }));
  return tokens.get(key)!;
}

async function approvals(token: string, ...args: string[]) {
  const r = await stack.cli('approvals', ...args, '--token', token);
  return { code: r.code, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

async function approve(id: string, sub = 'alice', groups?: string[]) {
  return approvals(await tokenOf(sub, groups), 'approve', id);
}

async function deny(id: string, reason: string, sub = 'alice', groups?: string[]) {
  return approvals(await tokenOf(sub, groups), 'deny', id, '--reason', reason);
}

/** Approves or denies, failing the test with the CLI's output when the CLI fails. */
async function decided(r: Promise<{ code: number; stdout: string; stderr: string }>): Promise<void> {
  const out = await r;
  expect(out.code, `${out.stderr}${out.stdout}`).toBe(0);
}

interface ShownDecision {
  approver: string;
  approve: boolean;
  reason?: string;
}
interface Shown {
  id: string;
  rule: string;
  identity: string;
  resource: string;
  sql: string;
  state: string;
  why: string;
  decisions?: ShownDecision[];
  parameters?: unknown[];
}

/** `warden approvals show ID --json`, as an approver sees it. */
async function show(id: string): Promise<Shown> {
  const r = await approvals(await tokenOf('carol'), 'show', id, '--json');
  if (r.code !== 0) throw new Error(`warden approvals show ${id} failed (${r.code}): ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout) as Shown;
}

function stateBecomes(id: string, state: string): Promise<Shown> {
  return waitFor(`approval ${id} to be ${state}`, async () => {
    const s = await show(id);
    return s.state === state ? s : undefined;
  });
}

/** The recorded events of the ended session of application `app`, once stored. */
async function sessionEvents(identity: string, app: string): Promise<EventRecord[]> {
  const sessionId = await sessionOf(identity, app);
  const shown = await stack.cli('sessions', 'show', sessionId, '--json');
  if (shown.code !== 0) throw new Error(`warden sessions show ${sessionId} failed: ${shown.stderr}`);
  return (JSON.parse(shown.stdout) as { events: EventRecord[] }).events;
}

function sessionOf(identity: string, app: string): Promise<string> {
  return waitFor(`the session of ${app} to be recorded`, async () => {
    const r = await stack.cli('sessions', 'list', '--identity', identity, '--since', '1h', '--json');
    const found = (JSON.parse(r.stdout) as Array<{ sessionId: string; applicationName: string; endedAt?: string }>).find((x) => x.applicationName === app && x.endedAt);
    if (!found) return undefined;
    // Recorded up to its end.
    const shown = await stack.cli('sessions', 'show', found.sessionId, '--json');
    const events = (JSON.parse(shown.stdout) as { events: EventRecord[] }).events;
    return events.some((e) => e.type === 'session.end') ? found.sessionId : undefined;
  }, 30_000);
}

// ----------------------------------------------------------------- database

async function hasColumn(table: string, column: string): Promise<boolean> {
  const r = await db.query('SELECT 1 FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND column_name = $3', ['public', table, column]);
  return r.rowCount === 1;
}

async function marks(prefix: string): Promise<string[]> {
  const r = await db.query('SELECT name FROM public.marks WHERE name LIKE $1 ORDER BY name', [`${prefix}%`]);
  return r.rows.map((x: { name: string }) => x.name);
}

/** The statement Warden refuses with, for `identity` on this resource (deny and timeout share it). */
const mayNotRun = (identity: string, held: Held) => `warden: ${identity} on ${RESOURCE} may not run ${held.why}: approval ${held.id}`;

// -------------------------------------------------------------------- setup

/** The applied policy reaches the gateway shortly after apply: wait until the identity gets in. */
async function untilConnects(sub: string): Promise<void> {
  await waitFor(`${sub} to connect`, async () => {
    const s = await connect(sub);
    try {
      await s.client.query('SELECT 1');
      return true;
    } finally {
      await s.client.end();
    }
  });
}

beforeAll(async () => {
  db = await createDatabase('warden_approvals');
  try {
    await db.query(readFileSync(FIXTURE, 'utf8'));
    const hook = await startReceiver();
    stack = await startStack({ upstream: db.url, resource: RESOURCE, args: ['--approval-webhook', hook] });
    const applied = await stack.cli('policy', 'apply', '-f', POLICY);
    if (applied.code !== 0) throw new Error(`policy apply failed (${applied.code}): ${applied.stderr}${applied.stdout}`);
    for (const sub of ['deployer', 'slowpoke', 'retrier', 'quorum-user', 'bulk', 'migrator', 'hasty', 'robot-sub-1', 'freebie', 'operator']) await untilConnects(sub);
  } catch (err) {
    await stack?.stop();
    await db.drop();
    throw err;
  }
});

afterAll(async () => {
  await stack?.stop();
  await db?.drop();
  await new Promise((r) => receiver?.close(r));
});

// ------------------------------------------------------------ 1. wait mode

describe('wait mode: the client waits in its session until an approver decides', () => {
  it('psql waits on a held ALTER until `warden approvals approve` releases it; the ALTER then runs, and the session goes on', async () => {
    const ALTER = 'ALTER TABLE public.psql_target ADD COLUMN approved_by text';
    const p = await psql('deployer', 'approvals-psql', [ALTER, "SELECT 'after the approval'"]);
    try {
      const held = await heldInPsql(p);
      expect(held.rule).toBe('prod-ddl');
      expect(held.why).toMatch(/^ALTER TABLE (public\.)?psql_target$/);
      // Held, not forwarded: psql is still waiting and Postgres has not seen the ALTER.
      expect((await show(held.id)).state).toBe('pending');
      expect(p.exited()).toBe(false);
      expect(await hasColumn('psql_target', 'approved_by')).toBe(false);

      // The approver's token as the issue says to get it: `warden token --sub alice --group dba`.
      const minted = await stack.cli('token', '--sub', 'alice', '--group', 'dba', '--data-dir', stack.dataDir);
      expect(minted.code, minted.stderr).toBe(0);
      const ok = await approvals(minted.stdout.trim(), 'approve', held.id);
      expect(ok.code, `${ok.stderr}${ok.stdout}`).toBe(0);

      const r = await p.done;
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe('ALTER TABLE\nafter the approval\n');
      expect(await hasColumn('psql_target', 'approved_by')).toBe(true);
      // The run used the approval up: the gateway marks it executed right after releasing the statement.
      const deadline = Date.now() + 5_000;
      let after = await show(held.id);
      while (after.state !== 'executed' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        after = await show(held.id);
      }
      expect(after.decisions?.map((d) => [d.approver, d.approve])).toEqual([['alice', true]]);
      expect(after.state).toBe('executed');
    } finally {
      p.child.kill('SIGKILL');
    }
  });

  it('two sessions held at once are released each by its own decision, in any order', async () => {
    const a = await connect('deployer', 'approvals-twin-a');
    const b = await connect('deployer', 'approvals-twin-b');
    try {
      const ra = track(a.client.query('ALTER TABLE public.twin_a ADD COLUMN c int'));
      const rb = track(b.client.query('ALTER TABLE public.twin_b ADD COLUMN c int'));
      const ha = await heldIn(a.notices);
      const hb = await heldIn(b.notices);
      expect(ha.id).not.toBe(hb.id);
      await decided(approve(hb.id));
      expect(await rb).toMatchObject({ ok: { command: 'ALTER' } });
      expect(ra.settled()).toBe(false);
      expect((await show(ha.id)).state).toBe('pending');
      await decided(deny(ha.id, 'one is enough'));
      expect(await ra).toEqual({ code: '42501', message: `${mayNotRun('deployer', ha)} was denied by alice (one is enough)` });
      expect([await hasColumn('twin_a', 'c'), await hasColumn('twin_b', 'c')]).toEqual([false, true]);
    } finally {
      await a.client.end();
      await b.client.end();
    }
  });

  it('lets a statement no approval rule matches run at once (freebie, same access; deployer\'s SELECT and INSERT)', async () => {
    const free = await connect('freebie');
    const dep = await connect('deployer');
    try {
      await free.client.query('ALTER TABLE public.plain_target ADD COLUMN free_col int');
      expect(await hasColumn('plain_target', 'free_col')).toBe(true);
      expect((await dep.client.query("INSERT INTO public.marks VALUES ('plain-insert')")).rowCount).toBe(1);
      expect((await dep.client.query('SELECT count(*)::int AS n FROM public.plain_target')).rows).toEqual([{ n: 0 }]);
      expect([...free.notices, ...dep.notices].filter((n) => /held for approval/.test(n))).toEqual([]);
    } finally {
      await free.client.end();
      await dep.client.end();
    }
  });

  it('denied outside a transaction: 42501 naming who denied and why, nothing ran, and the session is usable', async () => {
    const s = await connect('deployer', 'approvals-deny-plain');
    try {
      const alter = track(s.client.query('ALTER TABLE public.deny_plain ADD COLUMN c int'));
      const held = await heldIn(s.notices);
      expect(held.rule).toBe('prod-ddl');
      expect(alter.settled()).toBe(false);
      await decided(deny(held.id, 'not during the sale'));
      expect(await alter).toEqual({ code: '42501', message: `${mayNotRun('deployer', held)} was denied by alice (not during the sale)` });
      expect(await txStatus(s.client)).toBe('I');
      expect((await s.client.query('SELECT 41 + 1 AS n')).rows).toEqual([{ n: 42 }]);
      expect(await hasColumn('deny_plain', 'c')).toBe(false);
      const shown = await show(held.id);
      expect(shown.state).toBe('denied');
      expect(shown.decisions?.map((d) => [d.approver, d.approve, d.reason])).toEqual([['alice', false, 'not during the sale']]);
    } finally {
      await s.client.end();
    }
  });

  it('approved, a statement Postgres then rejects gives the client Postgres\' own error, and the session goes on', async () => {
    const s = await connect('deployer', 'approvals-approved-fails');
    try {
      const alter = track(s.client.query('ALTER TABLE public.psql_target ADD COLUMN id int'));
      const held = await heldIn(s.notices);
      await decided(approve(held.id));
      expect(await alter).toEqual({ code: '42701', message: 'column "id" of relation "psql_target" already exists' });
      expect(await txStatus(s.client)).toBe('I');
      expect((await s.client.query('SELECT 14 AS n')).rows).toEqual([{ n: 14 }]);
    } finally {
      await s.client.end();
    }
  });

  it('denied inside a transaction: 42501, and the transaction is failed as after a server error (25P02 until ROLLBACK, its writes undone)', async () => {
    const s = await connect('deployer', 'approvals-deny-tx');
    try {
      await s.client.query('BEGIN');
      await s.client.query("INSERT INTO public.marks VALUES ('deny-tx-before')");
      const alter = track(s.client.query('ALTER TABLE public.deny_tx ADD COLUMN c int'));
      const held = await heldIn(s.notices);
      await decided(deny(held.id, 'needs a migration plan'));
      expect(await alter).toEqual({ code: '42501', message: `${mayNotRun('deployer', held)} was denied by alice (needs a migration plan)` });
      expect(await txStatus(s.client)).toBe('E');
      // Postgres itself holds the transaction failed, not only what the client was told.
      const next = await track(s.client.query('SELECT 1'));
      expect(next).toMatchObject({ code: '25P02' });
      await s.client.query('ROLLBACK');
      expect(await txStatus(s.client)).toBe('I');
      expect((await s.client.query('SELECT 2 AS n')).rows).toEqual([{ n: 2 }]);
      expect(await marks('deny-tx-')).toEqual([]);
      expect(await hasColumn('deny_tx', 'c')).toBe(false);
    } finally {
      await s.client.end();
    }
  });

  it('timed out outside a transaction: 42501 after the rule\'s wait_timeout (3 s) with no decision; the request expires and a late approval releases nothing', async () => {
    const s = await connect('slowpoke', 'approvals-timeout-plain');
    try {
      const t0 = Date.now();
      const alter = track(s.client.query('ALTER TABLE public.late_plain ADD COLUMN c int'));
      const held = await heldIn(s.notices);
      expect(held.rule).toBe('quick-timeout');
      const r = await alter;
      const waited = Date.now() - t0;
      expect(r).toEqual({ code: '42501', message: `${mayNotRun('slowpoke', held)} timed out after 3 s with no decision` });
      expect(waited).toBeGreaterThanOrEqual(2_900);
      expect(waited).toBeLessThan(20_000);
      expect(await txStatus(s.client)).toBe('I');
      expect((await s.client.query('SELECT 3 AS n')).rows).toEqual([{ n: 3 }]);

      const late = await approve(held.id);
      expect(late.code).not.toBe(0);
      expect(['expired', 'withdrawn']).toContain((await show(held.id)).state);
      expect(await hasColumn('late_plain', 'c')).toBe(false);
    } finally {
      await s.client.end();
    }
  });

  it('timed out inside a transaction: 42501, the transaction failed (25P02) and rolled back, the session usable', async () => {
    const s = await connect('slowpoke', 'approvals-timeout-tx');
    try {
      await s.client.query('BEGIN');
      await s.client.query("INSERT INTO public.marks VALUES ('late-tx-before')");
      const alter = track(s.client.query('ALTER TABLE public.late_tx ADD COLUMN c int'));
      const held = await heldIn(s.notices);
      expect(await alter).toEqual({ code: '42501', message: `${mayNotRun('slowpoke', held)} timed out after 3 s with no decision` });
      expect(await txStatus(s.client)).toBe('E');
      expect(await track(s.client.query('SELECT 1'))).toMatchObject({ code: '25P02' });
      await s.client.query('ROLLBACK');
      expect((await s.client.query('SELECT 4 AS n')).rows).toEqual([{ n: 4 }]);
      expect(await marks('late-tx-')).toEqual([]);
      expect(await hasColumn('late_tx', 'c')).toBe(false);
    } finally {
      await s.client.end();
    }
  });

  it('approved inside a transaction: the ALTER runs in it, and COMMIT keeps it with the writes around it', async () => {
    const s = await connect('deployer', 'approvals-approve-tx');
    try {
      await s.client.query('BEGIN');
      await s.client.query("INSERT INTO public.marks VALUES ('approve-tx-before')");
      const alter = track(s.client.query('ALTER TABLE public.late_approval ADD COLUMN c int'));
      const held = await heldIn(s.notices);
      await decided(approve(held.id, 'bob'));
      expect(await alter).toMatchObject({ ok: { command: 'ALTER' } });
      expect(await txStatus(s.client)).toBe('T');
      await s.client.query("INSERT INTO public.marks VALUES ('approve-tx-after')");
      // Not visible outside before COMMIT: the ALTER ran in the client's transaction.
      expect(await hasColumn('late_approval', 'c')).toBe(false);
      await s.client.query('COMMIT');
      expect(await hasColumn('late_approval', 'c')).toBe(true);
      expect(await marks('approve-tx-')).toEqual(['approve-tx-after', 'approve-tx-before']);
    } finally {
      await s.client.end();
    }
  });
  it('a held statement in a multi-statement simple query: approved, all three run; denied, 42501 and the string\'s implicit transaction undone', async () => {
    const s = await connect('deployer', 'approvals-multi');
    try {
      const okRun = track(s.client.query("INSERT INTO public.marks VALUES ('multi-ok-1'); ALTER TABLE public.multi_ok ADD COLUMN c int; INSERT INTO public.marks VALUES ('multi-ok-3')"));
      const ok = await heldIn(s.notices);
      expect(ok.why).toMatch(/^ALTER TABLE (public\.)?multi_ok$/);
      await decided(approve(ok.id));
      const r = await okRun;
      expect('ok' in r && (r.ok as unknown as pg.QueryResult[]).map((x) => x.command)).toEqual(['INSERT', 'ALTER', 'INSERT']);
      expect(await marks('multi-ok-')).toEqual(['multi-ok-1', 'multi-ok-3']);
      expect(await hasColumn('multi_ok', 'c')).toBe(true);

      const count = s.notices.length;
      const deniedRun = track(s.client.query("INSERT INTO public.marks VALUES ('multi-denied-1'); ALTER TABLE public.multi_denied ADD COLUMN c int; INSERT INTO public.marks VALUES ('multi-denied-3')"));
      const no = await heldIn(s.notices, count);
      await decided(deny(no.id, 'not in a script'));
      expect(await deniedRun).toEqual({ code: '42501', message: `${mayNotRun('deployer', no)} was denied by alice (not in a script)` });
      expect(await txStatus(s.client)).toBe('I');
      expect(await marks('multi-denied-')).toEqual([]);
      expect(await hasColumn('multi_denied', 'c')).toBe(false);
      expect((await s.client.query('SELECT 10 AS n')).rows).toEqual([{ n: 10 }]);
    } finally {
      await s.client.end();
    }
  });

  it('extended protocol (node-postgres): an approved UPDATE … RETURNING gives its rows; each execution of a named prepared statement is held on its own, and a denial leaves the prepared statement usable', async () => {
    const s = await connect('bulk', 'approvals-extended');
    const values = async () => (await db.query('SELECT v FROM public.wide ORDER BY id')).rows.map((r: { v: string }) => r.v);
    const run = (v: string) => track(s.client.query({ name: 'set-wide', text: 'UPDATE public.wide SET v = $1 RETURNING id, v', values: [v] }));
    try {
      let seen = 0;
      const next = async () => {
        const h = await heldIn(s.notices, seen);
        seen = s.notices.length;
        return h;
      };
      const first = run('p');
      const one = await next();
      expect(one.rule).toBe('no-where');
      expect((await show(one.id)).parameters).toEqual([{ value: 'p' }]);
      await decided(approve(one.id));
      const r1 = await first;
      expect('ok' in r1 && [...r1.ok.rows].sort((a, b) => a.id - b.id)).toEqual([{ id: 1, v: 'p' }, { id: 2, v: 'p' }, { id: 3, v: 'p' }]);

      // The same prepared statement again (Bind and Execute only): held again, for its own approval.
      const second = run('q');
      const two = await next();
      expect(two.id).not.toBe(one.id);
      expect((await show(two.id)).parameters).toEqual([{ value: 'q' }]);
      await decided(deny(two.id, 'p is fine'));
      expect(await second).toEqual({ code: '42501', message: `${mayNotRun('bulk', two)} was denied by alice (p is fine)` });
      expect(await values()).toEqual(['p', 'p', 'p']);

      const third = run('r');
      const three = await next();
      await decided(approve(three.id));
      expect(await third).toMatchObject({ ok: { rowCount: 3 } });
      expect(await values()).toEqual(['r', 'r', 'r']);
    } finally {
      await s.client.end();
    }
  });

});

// -------------------------------------------- 2. a pipelined extended batch

describe('a held statement in a pipelined extended-protocol batch (three Parse/Bind/Execute, one Sync)', () => {
  const alterOf = (table: string) => `ALTER TABLE public.${table} ADD COLUMN c int`;
  const batch = (middle: string, tag: string) =>
    [
      serialize.parse({ text: `INSERT INTO public.marks VALUES ('${tag}-1')` }),
      serialize.bind({}),
      serialize.execute({}),
      serialize.parse({ text: middle }),
      serialize.bind({}),
      serialize.execute({}),
      serialize.parse({ text: `INSERT INTO public.marks VALUES ('${tag}-3')` }),
      serialize.bind({}),
      serialize.execute({}),
      serialize.sync(),
    ] as Buffer[];

  async function raw(sub: string): Promise<RawClient> {
    return RawClient.connect({ host: stack.host, port: stack.port, user: sub, database: RESOURCE, password: await stack.token(sub), parameters: { application_name: `approvals-raw-${sub}` } });
  }

  /** Reads until the held notice; returns it and the messages before it. */
  async function untilHeld(c: RawClient): Promise<{ held: Held; before: Message[] }> {
    const before: Message[] = [];
    for (;;) {
      const m = await c.next();
      if (m.name === 'notice') {
        const h = heldFrom(String(m.message));
        if (h) return { held: h, before };
      }
      before.push(m);
    }
  }

  const lines = (ms: Message[]) => ms.filter((m) => m.name !== 'notice').map(describeMessage);

  it('straight against Postgres, an error in the middle statement rolls the first back and skips the third (the behaviour to match)', async () => {
    const c = await RawClient.connect({ host: '127.0.0.1', port: Number(new URL(db.url).port || 5432), user: 'postgres', database: db.name });
    try {
      const msgs = batch(alterOf('pipe_baseline'), 'pipe-baseline');
      // A duplicate of the first row: fails at Execute, after its Parse and Bind.
      msgs[3] = serialize.parse({ text: "INSERT INTO public.marks VALUES ('pipe-baseline-1')" });
      c.send(...msgs);
      expect(lines(await c.until('readyForQuery'))).toEqual([
        'parseComplete', 'bindComplete', 'commandComplete INSERT 0 1',
        'parseComplete', 'bindComplete', 'error 23505',
        'readyForQuery I',
      ]);
      expect(await marks('pipe-baseline-')).toEqual([]);
    } finally {
      await c.end();
    }
  });

  it('approved: all three results in order, then ReadyForQuery; all three ran', async () => {
    const c = await raw('deployer');
    try {
      c.send(...batch(alterOf('pipe_ok'), 'pipe-ok'));
      const { held, before } = await untilHeld(c);
      expect(held.rule).toBe('prod-ddl');
      expect(held.why).toMatch(/^ALTER TABLE (public\.)?pipe_ok$/);
      expect(lines(before)).not.toContain('readyForQuery I');
      expect(await hasColumn('pipe_ok', 'c')).toBe(false);
      await decided(approve(held.id));
      const rest = await c.until('readyForQuery');
      expect(lines([...before, ...rest])).toEqual([
        'parseComplete', 'bindComplete', 'commandComplete INSERT 0 1',
        'parseComplete', 'bindComplete', 'commandComplete ALTER TABLE',
        'parseComplete', 'bindComplete', 'commandComplete INSERT 0 1',
        'readyForQuery I',
      ]);
      expect(await marks('pipe-ok-')).toEqual(['pipe-ok-1', 'pipe-ok-3']);
      expect(await hasColumn('pipe_ok', 'c')).toBe(true);
      // The session goes on.
      c.send(serialize.query('SELECT 5'));
      expect(lines(await c.until('readyForQuery'))).toEqual(['rowDescription ?column?:text', 'dataRow 5', 'commandComplete SELECT 1', 'readyForQuery I']);
    } finally {
      await c.end();
    }
  });

  it('denied: the first result, the error, the third discarded, ReadyForQuery; the first is rolled back as Postgres would', async () => {
    const c = await raw('deployer');
    try {
      c.send(...batch(alterOf('pipe_denied'), 'pipe-denied'));
      const { held, before } = await untilHeld(c);
      await decided(deny(held.id, 'not in a batch'));
      const all = [...before, ...(await c.until('readyForQuery'))];
      const got = lines(all);
      // Whether the held statement's Parse and Bind were answered before the hold is the gateway's choice.
      const allowedMiddles = [[], ['parseComplete'], ['parseComplete', 'bindComplete']];
      const middle = got.slice(3, got.length - 2);
      expect(allowedMiddles, got.join(', ')).toContainEqual(middle);
      expect(got.slice(0, 3)).toEqual(['parseComplete', 'bindComplete', 'commandComplete INSERT 0 1']);
      expect(got.slice(-2)).toEqual(['error 42501', 'readyForQuery I']);
      const error = all.find((m) => m.name === 'error')!;
      expect(error.message).toBe(`${mayNotRun('deployer', held)} was denied by alice (not in a batch)`);
      expect(await marks('pipe-denied-')).toEqual([]);
      expect(await hasColumn('pipe_denied', 'c')).toBe(false);
      c.send(serialize.query('SELECT 6'));
      expect(lines(await c.until('readyForQuery'))).toEqual(['rowDescription ?column?:text', 'dataRow 6', 'commandComplete SELECT 1', 'readyForQuery I']);
    } finally {
      await c.end();
    }
  });
  it('retry mode: the batch fails at the held statement at once (first undone, third discarded); once approved, the same batch runs whole, once', async () => {
    const DELETE = 'DELETE FROM public.retry_rows WHERE id = 13';
    const c = await raw('retrier');
    try {
      c.send(...batch(DELETE, 'pipe-retry'));
      const first = await c.until('readyForQuery');
      const got = lines(first);
      expect(got.slice(0, 3)).toEqual(['parseComplete', 'bindComplete', 'commandComplete INSERT 0 1']);
      expect([[], ['parseComplete'], ['parseComplete', 'bindComplete']], got.join(', ')).toContainEqual(got.slice(3, -2));
      expect(got.slice(-2)).toEqual(['error 42501', 'readyForQuery I']);
      const id = /held for approval (apr_\S+):/.exec(String(first.find((m) => m.name === 'error')!.message))?.[1];
      expect(id).toBeDefined();
      expect(await marks('pipe-retry-')).toEqual([]);

      await decided(approve(id!));
      c.send(...batch(DELETE, 'pipe-retry'));
      expect(lines(await c.until('readyForQuery'))).toEqual([
        'parseComplete', 'bindComplete', 'commandComplete INSERT 0 1',
        'parseComplete', 'bindComplete', 'commandComplete DELETE 1',
        'parseComplete', 'bindComplete', 'commandComplete INSERT 0 1',
        'readyForQuery I',
      ]);
      expect(await marks('pipe-retry-')).toEqual(['pipe-retry-1', 'pipe-retry-3']);
      expect((await db.query('SELECT 1 FROM public.retry_rows WHERE id = 13')).rowCount).toBe(0);
      expect((await show(id!)).state).toBe('executed');
    } finally {
      await c.end();
    }
  });

  it('simple protocol: a Query sent behind a held one waits, then runs after the decision (denied: the held one fails alone)', async () => {
    const c = await raw('deployer');
    try {
      for (const verdict of ['approved', 'denied'] as const) {
        const column = verdict === 'approved' ? 'yes' : 'no';
        c.send(serialize.query(`ALTER TABLE public.queued ADD COLUMN ${column} int`), serialize.query(`SELECT '${verdict}' AS behind`));
        const { held, before } = await untilHeld(c);
        expect(lines(before)).toEqual([]);
        await decided(verdict === 'approved' ? approve(held.id) : deny(held.id, 'queued'));
        const first = lines(await c.until('readyForQuery'));
        expect(first).toEqual(verdict === 'approved' ? ['commandComplete ALTER TABLE', 'readyForQuery I'] : ['error 42501', 'readyForQuery I']);
        expect(lines(await c.until('readyForQuery'))).toEqual(['rowDescription behind:text', `dataRow ${verdict}`, 'commandComplete SELECT 1', 'readyForQuery I']);
        expect(await hasColumn('queued', column)).toBe(verdict === 'approved');
      }
    } finally {
      await c.end();
    }
  });

  describe('postgres.js pipelining (each query with its own Sync, on one connection)', () => {
    async function pipelined(opts: { host: string; port: number; user: string; password?: string; database: string }, table: string, tag: string, middle?: string) {
      const notices: string[] = [];
      const sql = postgres({ ...opts, max: 1, onnotice: (n) => notices.push(String(n.message)), connection: { application_name: `approvals-pjs-${tag}` } });
      const settle = (p: Promise<unknown>) => track(p.then((rows) => (rows as { command?: string }).command));
      await sql`SELECT 1`;
      const results = [
        settle(sql`INSERT INTO public.marks VALUES (${`${tag}-1`})`),
        settle(sql.unsafe(middle ?? `ALTER TABLE public.${table} ADD COLUMN c int`)),
        settle(sql`INSERT INTO public.marks VALUES (${`${tag}-3`})`),
      ];
      return { sql, notices, results };
    }

    it('straight against Postgres, a failing middle query fails alone (the behaviour to match)', async () => {
      const url = new URL(db.url);
      const { sql, results } = await pipelined({ host: url.hostname, port: Number(url.port || 5432), user: 'postgres', database: db.name }, 'none', 'pjs-baseline', "INSERT INTO public.marks VALUES ('pjs-baseline-1')");
      try {
        const out = await Promise.all(results);
        expect(out.map((o) => ('ok' in o ? o.ok : o.code))).toEqual(['INSERT', '23505', 'INSERT']);
        expect(await marks('pjs-baseline-')).toEqual(['pjs-baseline-1', 'pjs-baseline-3']);
      } finally {
        await sql.end();
      }
    });

    for (const verdict of ['approved', 'denied'] as const) {
      it(`${verdict}: the queries after the held one wait for it, then run`, async () => {
        const table = verdict === 'approved' ? 'pjs_ok' : 'pjs_denied';
        const tag = verdict === 'approved' ? 'pjs-ok' : 'pjs-denied';
        const { sql, notices, results } = await pipelined({ host: stack.host, port: stack.port, user: 'deployer', password: await stack.token('deployer'), database: RESOURCE }, table, tag);
        try {
          const held = await heldIn(notices);
          expect(results[1]!.settled()).toBe(false);
          expect(results[2]!.settled()).toBe(false);
          expect(await results[0]).toEqual({ ok: 'INSERT' });
          expect(await marks(`${tag}-`)).toEqual([`${tag}-1`]);
          await decided(verdict === 'approved' ? approve(held.id) : deny(held.id, 'pipelined'));
          const out = await Promise.all(results);
          expect(out.map((o) => ('ok' in o ? o.ok : o.code))).toEqual(verdict === 'approved' ? ['INSERT', 'ALTER TABLE', 'INSERT'] : ['INSERT', '42501', 'INSERT']);
          expect(await marks(`${tag}-`)).toEqual([`${tag}-1`, `${tag}-3`]);
          expect(await hasColumn(table, 'c')).toBe(verdict === 'approved');
          expect(await sql`SELECT 11 AS n`).toEqual([{ n: 11 }]);
        } finally {
          await sql.end();
        }
      });
    }
  });

});

// ----------------------------------------------------------- 3. retry mode

describe('retry mode: an error at once, then the approved statement runs once and only once', () => {
  const RETRY = new RegExp(`^warden: retrier on ${RESOURCE} may not run (.+): (?:the statement is )?held for approval (${ID}): run it again once it is approved \\(warden approvals approve (${ID})\\)$`);

  /** Runs a statement as retrier; the request id when it is held (checked to be 42501 with the retry message), else the result. */
  async function attempt(s: Session, text: string, values?: unknown[]): Promise<{ held: string } | { rows: number }> {
    const r = await track(s.client.query(values ? { text, values } : text));
    if ('ok' in r) return { rows: r.ok.rowCount ?? -1 };
    expect(r.code, r.message).toBe('42501');
    const m = RETRY.exec(r.message);
    expect(m, r.message).not.toBeNull();
    expect(m![3]).toBe(m![2]);
    return { held: m![2]! };
  }

  async function rowExists(id: number): Promise<boolean> {
    return (await db.query('SELECT 1 FROM public.retry_rows WHERE id = $1', [id])).rowCount === 1;
  }

  it('the first run is refused at once with the request id, nothing runs, and the session stays usable', async () => {
    const s = await connect('retrier', 'approvals-retry-first');
    try {
      const t0 = Date.now();
      const first = await attempt(s, 'DELETE FROM public.retry_rows WHERE id = 1');
      expect(first).toEqual({ held: expect.stringMatching(new RegExp(`^${ID}$`)) });
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(await txStatus(s.client)).toBe('I');
      expect((await s.client.query('SELECT 7 AS n')).rows).toEqual([{ n: 7 }]);
      expect(await rowExists(1)).toBe(true);
      const shown = await show((first as { held: string }).held);
      expect(shown).toMatchObject({ state: 'pending', rule: 'retry-deletes', identity: 'retrier', sql: 'DELETE FROM public.retry_rows WHERE id = 1' });
    } finally {
      await s.client.end();
    }
  });

  it('once approved, the identical statement runs once; the next identical run is held again with a new request', async () => {
    const SQL = 'DELETE FROM public.retry_rows WHERE id = 2';
    const s = await connect('retrier', 'approvals-retry-once');
    try {
      const first = (await attempt(s, SQL)) as { held: string };
      await decided(approve(first.held));
      expect(await rowExists(2)).toBe(true);
      expect(await attempt(s, SQL)).toEqual({ rows: 1 });
      expect(await rowExists(2)).toBe(false);
      expect((await show(first.held)).state).toBe('executed');
      const again = await attempt(s, SQL);
      expect(again).toEqual({ held: expect.any(String) });
      expect((again as { held: string }).held).not.toBe(first.held);
    } finally {
      await s.client.end();
    }
  });

  it('once approved, two sessions running the identical statement at the same moment: exactly one runs it', async () => {
    const SQL = 'DELETE FROM public.retry_rows WHERE id = 3';
    const a = await connect('retrier', 'approvals-retry-race-a');
    const b = await connect('retrier', 'approvals-retry-race-b');
    try {
      const first = (await attempt(a, SQL)) as { held: string };
      await decided(approve(first.held));
      const both = await Promise.all([attempt(a, SQL), attempt(b, SQL)]);
      expect(both.filter((x) => 'rows' in x)).toEqual([{ rows: 1 }]);
      expect(both.filter((x) => 'held' in x)).toHaveLength(1);
      expect(await rowExists(3)).toBe(false);
    } finally {
      await a.client.end();
      await b.client.end();
    }
  });

  it('an approval covers neither another statement text (another constant) nor the same text in other spelling differences that change it', async () => {
    const s = await connect('retrier', 'approvals-retry-text');
    try {
      const first = (await attempt(s, 'DELETE FROM public.retry_rows WHERE id = 4')) as { held: string };
      await decided(approve(first.held));
      // Another constant is another statement: held with a request of its own, and nothing deleted.
      const other = await attempt(s, 'DELETE FROM public.retry_rows WHERE id = 5');
      expect(other).toEqual({ held: expect.any(String) });
      expect((other as { held: string }).held).not.toBe(first.held);
      expect(await rowExists(5)).toBe(true);
      const wider = await attempt(s, 'DELETE FROM public.retry_rows WHERE id = 4 OR id = 6');
      expect(wider).toEqual({ held: expect.any(String) });
      expect(await rowExists(6)).toBe(true);
      // The approval is still there for the exact statement.
      expect(await attempt(s, 'DELETE FROM public.retry_rows WHERE id = 4')).toEqual({ rows: 1 });
      expect(await rowExists(4)).toBe(false);
    } finally {
      await s.client.end();
    }
  });

  it('extended protocol: an approval is bound to the parameters; other parameters are held, the approved ones run once', async () => {
    const SQL = 'DELETE FROM public.retry_rows WHERE id = $1';
    const s = await connect('retrier', 'approvals-retry-params');
    try {
      const first = (await attempt(s, SQL, [8])) as { held: string };
      expect(first.held).toMatch(new RegExp(`^${ID}$`));
      const shown = await show(first.held);
      expect(shown.sql).toBe(SQL);
      expect(JSON.stringify(shown.parameters)).toContain('"8"');
      await decided(approve(first.held));

      const other = await attempt(s, SQL, [9]);
      expect(other).toEqual({ held: expect.any(String) });
      expect((other as { held: string }).held).not.toBe(first.held);
      expect(await rowExists(9)).toBe(true);
      // The same text in the simple protocol with the value written in is another statement too.
      const inlined = await attempt(s, 'DELETE FROM public.retry_rows WHERE id = 8');
      expect(inlined).toEqual({ held: expect.any(String) });
      expect(await rowExists(8)).toBe(true);

      expect(await attempt(s, SQL, [8])).toEqual({ rows: 1 });
      expect(await rowExists(8)).toBe(false);
      expect(await attempt(s, SQL, [8])).toEqual({ held: expect.any(String) });
    } finally {
      await s.client.end();
    }
  });

  it('an approval is bound to the identity: another identity running the same text does not consume it', async () => {
    const SQL = 'DELETE FROM public.hasty_rows WHERE id = 3';
    const mine = await connect('retrier', 'approvals-retry-identity');
    const theirs = await connect('hasty', 'approvals-retry-identity-other');
    try {
      const first = (await attempt(mine, SQL)) as { held: string };
      await decided(approve(first.held));
      // hasty's own rule holds it, with a request of its own.
      const other = await track(theirs.client.query(SQL));
      expect(other).toMatchObject({ code: '42501', message: expect.stringMatching(/^warden: hasty on approvals may not run .*held for approval apr_/) });
      expect('message' in other && other.message).not.toContain(first.held);
      expect((await show(first.held)).state).toBe('approved');
      expect(await attempt(mine, SQL)).toEqual({ rows: 1 });
    } finally {
      await mine.client.end();
      await theirs.client.end();
    }
  });

  it('a denied request lets nothing run: the identical statement is held again with a new request', async () => {
    const SQL = 'DELETE FROM public.retry_rows WHERE id = 10';
    const s = await connect('retrier', 'approvals-retry-denied');
    try {
      const first = (await attempt(s, SQL)) as { held: string };
      await decided(deny(first.held, 'keep row 10'));
      const again = await attempt(s, SQL);
      expect(again).toEqual({ held: expect.any(String) });
      expect((again as { held: string }).held).not.toBe(first.held);
      expect(await rowExists(10)).toBe(true);
    } finally {
      await s.client.end();
    }
  });
  it('records the execution under its approval in the audit trail (the statement\'s approvalId)', async () => {
    const SQL = 'DELETE FROM public.retry_rows WHERE id = 11';
    const app = 'approvals-retry-audit';
    const s = await connect('retrier', app);
    let first: { held: string };
    try {
      first = (await attempt(s, SQL)) as { held: string };
      await decided(approve(first.held, 'bob'));
      expect(await attempt(s, SQL)).toEqual({ rows: 1 });
    } finally {
      await s.client.end();
    }
    const events = await sessionEvents('retrier', app);
    const stmts = events.filter((e) => e.type === 'statement');
    expect(stmts.map((e) => [e.sql, e.decision, e.approvalId ?? null])).toEqual([
      [SQL, 'refused', null],
      [SQL, 'allowed', first.held],
    ]);
    expect(stmts[0]!.error?.sqlstate).toBe('42501');
    expect(events.filter((e) => e.type === 'approval').map((e) => [e.approvalId, e.state])).toEqual([[first.held, 'requested']]);
  });

  it('inside a transaction, the retry refusal fails the transaction as a server error would', async () => {
    const s = await connect('retrier', 'approvals-retry-tx');
    try {
      await s.client.query('BEGIN');
      await s.client.query("INSERT INTO public.marks VALUES ('retry-tx-before')");
      expect(await attempt(s, 'DELETE FROM public.retry_rows WHERE id = 12')).toEqual({ held: expect.any(String) });
      expect(await txStatus(s.client)).toBe('E');
      expect(await track(s.client.query('SELECT 1'))).toMatchObject({ code: '25P02' });
      await s.client.query('ROLLBACK');
      expect(await marks('retry-tx-')).toEqual([]);
      expect(await rowExists(12)).toBe(true);
    } finally {
      await s.client.end();
    }
  });

  /** The request id of a statement refused at once in retry mode. */
  async function heldInRetry(s: Session, sql: string): Promise<string> {
    const r = await track(s.client.query(sql));
    const id = /held for approval (apr_\S+):/.exec('message' in r ? r.message : '')?.[1];
    expect(id, JSON.stringify(r)).toBeDefined();
    return id!;
  }

  it('an approval stays valid for approval_ttl only: after it, the identical statement is held again (hasty, 3 s)', async () => {
    const SQL = 'DELETE FROM public.hasty_rows WHERE id = 1';
    const s = await connect('hasty', 'approvals-hasty-approval-ttl');
    try {
      const id = await heldInRetry(s, SQL);
      await decided(approve(id));
      const shown = (await show(id)) as Shown & { approvalExpiresAt: string };
      const until = Date.parse(shown.approvalExpiresAt);
      expect(until - Date.now()).toBeLessThanOrEqual(3_500);
      // Let the approval lapse (the wait is the TTL, not an assertion).
      await sleep(Math.max(0, until - Date.now()) + 500);
      const late = await track(s.client.query(SQL));
      expect(late).toMatchObject({ code: '42501', message: expect.stringMatching(/held for approval apr_/) });
      expect('message' in late && late.message).not.toContain(id);
      expect((await db.query('SELECT 1 FROM public.hasty_rows WHERE id = 1')).rowCount).toBe(1);
      expect((await show(id)).state).not.toBe('executed');
    } finally {
      await s.client.end();
    }
  });

  it('a request nobody decides expires after request_ttl, and can no longer be approved (hasty, 3 s)', async () => {
    const s = await connect('hasty', 'approvals-hasty-request-ttl');
    try {
      const id = await heldInRetry(s, 'DELETE FROM public.hasty_rows WHERE id = 2');
      await stateBecomes(id, 'expired');
      const late = await approve(id);
      expect(late.code).not.toBe(0);
      expect(late.stderr).toContain(id);
      expect(await track(s.client.query('DELETE FROM public.hasty_rows WHERE id = 2'))).toMatchObject({ code: '42501', message: expect.stringMatching(/held for approval apr_/) });
      expect((await db.query('SELECT 1 FROM public.hasty_rows WHERE id = 2')).rowCount).toBe(1);
    } finally {
      await s.client.end();
    }
  });
});

// ------------------------------------------------------------ 4. approvers

describe('routes around a hold through code: what a function, trigger or DO block runs is held as if sent', () => {
  async function tableExists(table: string): Promise<boolean> {
    return (await db.query('SELECT to_regclass($1) IS NOT NULL AS e', [`public.${table}`])).rows[0].e as boolean;
  }

  /** Runs `text` as `sub`, expects it held, denies it, and returns the held notice; the session must stay usable. */
  async function heldThenDenied(sub: string, app: string, text: string, before: string[] = []): Promise<Held> {
    const s = await connect(sub, app);
    try {
      for (const b of before) await s.client.query(b);
      const q = track(s.client.query(text));
      const held = await heldIn(s.notices);
      expect(q.settled()).toBe(false);
      await decided(deny(held.id, 'not through code either'));
      expect(await q).toEqual({ code: '42501', message: `${mayNotRun(sub, held)} was denied by alice (not through code either)` });
      expect((await s.client.query('SELECT 2 AS n')).rows).toEqual([{ n: 2 }]);
      return held;
    } finally {
      await s.client.end();
    }
  }

  it('a function whose body ALTERs a table is held (SELECT f()); approved, it runs', async () => {
    const s = await connect('deployer', 'approvals-fn-alter');
    try {
      const q = track(s.client.query('SELECT public.widen_fn_target()'));
      const held = await heldIn(s.notices);
      expect(held.rule).toBe('prod-ddl');
      expect(held.why).toBe('SELECT, which runs ALTER TABLE on public.fn_target in function public.widen_fn_target');
      expect(await hasColumn('fn_target', 'via_fn')).toBe(false);
      await decided(approve(held.id));
      expect(await q).toMatchObject({ ok: { rowCount: 1 } });
      expect(await hasColumn('fn_target', 'via_fn')).toBe(true);
    } finally {
      await s.client.end();
    }
  });

  it('a function that runs SQL built at run time (EXECUTE format(…DROP…)) is held: what it runs cannot be read', async () => {
    const held = await heldThenDenied('deployer', 'approvals-fn-dynamic', "SELECT public.drop_by_name('dyn_target')");
    expect(held.why).toBe('SELECT runs code Warden cannot read: function public.drop_by_name runs SQL built at run time, which Warden cannot see');
    expect(await tableExists('dyn_target')).toBe(true);
  });

  it('a function made in the session and called at once, before the catalog knows it, is held', async () => {
    const create = 'CREATE FUNCTION public.fresh_drop() RETURNS void LANGUAGE plpgsql AS $$ BEGIN DROP TABLE public.fresh_target; END $$';
    const held = await heldThenDenied('deployer', 'approvals-fn-fresh', 'SELECT public.fresh_drop()', [create]);
    // Held either way: as a function not in the catalog yet, or, once the catalog is read again, for the DROP in its body.
    expect(held.why).toMatch(/^SELECT(?: runs code Warden cannot read: calls public\.fresh_drop, which is not in the catalog Warden holds|, which runs DROP TABLE on public\.fresh_target in function public\.fresh_drop)$/);
    expect(await tableExists('fresh_target')).toBe(true);
  });

  it('a procedure made in the session and CALLed is held (admin identity)', async () => {
    const create = 'CREATE PROCEDURE public.fresh_proc() LANGUAGE plpgsql AS $$ BEGIN ALTER TABLE public.proc_target ADD COLUMN c int; END $$';
    const held = await heldThenDenied('operator', 'approvals-proc', 'CALL public.fresh_proc()', [create]);
    expect(held.rule).toBe('operator-ddl');
    expect(await hasColumn('proc_target', 'c')).toBe(false);
  });

  it('a DO block whose code ALTERs a table is held; one that EXECUTEs a DROP is held as code Warden cannot read', async () => {
    const plain = await heldThenDenied('operator', 'approvals-do', 'DO $$ BEGIN ALTER TABLE public.do_target ADD COLUMN c int; END $$');
    expect(plain.rule).toBe('operator-ddl');
    expect(plain.why).toBe('DO, which runs ALTER TABLE on public.do_target in the DO block');
    expect(await hasColumn('do_target', 'c')).toBe(false);
    const dynamic = await heldThenDenied('operator', 'approvals-do-dynamic', "DO $$ BEGIN EXECUTE 'DROP TABLE public.do_dynamic'; END $$");
    expect(dynamic.why).toBe('DO runs code Warden cannot read: the DO block: it runs SQL built at run time');
    expect(await tableExists('do_dynamic')).toBe(true);
  });

  it("a trigger's DELETE without WHERE holds the INSERT that fires it (bulk)", async () => {
    const held = await heldThenDenied('bulk', 'approvals-trigger', 'INSERT INTO public.trigger_source VALUES (1)');
    expect(held.why).toMatch(/which (runs DELETE without WHERE on public\.trigger_victim|changes rows) in function public\.wipe_victims/);
    expect((await db.query('SELECT count(*)::int AS n FROM public.trigger_victim')).rows).toEqual([{ n: 3 }]);
    expect((await db.query('SELECT count(*)::int AS n FROM public.trigger_source')).rows).toEqual([{ n: 0 }]);
  });

  it("retry mode: a SQL function's DELETE is refused at once with the request id (retrier)", async () => {
    const s = await connect('retrier', 'approvals-fn-retry');
    try {
      const r = await track(s.client.query('SELECT public.delete_retry_fn_row(4)'));
      expect(r).toMatchObject({ code: '42501' });
      expect((r as { message: string }).message).toMatch(
        new RegExp(`^warden: retrier on ${RESOURCE} may not run SELECT, which runs DELETE on public\\.retry_fn_rows in function public\\.delete_retry_fn_row: (?:the statement is )?held for approval ${ID}`),
      );
      expect((await db.query('SELECT 1 FROM public.retry_fn_rows WHERE id = 4')).rowCount).toBe(1);
    } finally {
      await s.client.end();
    }
  });

  it('a function that only reads runs at once (deployer, SELECT public.order_count())', async () => {
    const s = await connect('deployer', 'approvals-fn-read');
    try {
      expect((await s.client.query('SELECT public.order_count()::int AS n')).rows).toEqual([{ n: 5000 }]);
      expect(s.notices.filter((n) => /held for approval/.test(n))).toEqual([]);
    } finally {
      await s.client.end();
    }
  });
});

describe('who may approve', () => {
  it('refuses self-approval and approval by a non-approver, and the request stays pending with the client waiting', async () => {
    const s = await connect('deployer', 'approvals-refused-approvers');
    try {
      const alter = track(s.client.query('ALTER TABLE public.refused_approvers ADD COLUMN c int'));
      const held = await heldIn(s.notices);

      // The requester itself, even with a token in the approver group.
      const self = await approve(held.id, 'deployer', ['dba']);
      expect(self.code).not.toBe(0);
      expect(self.stderr).toMatch(/own|self|requester|requested/i);
      expect(self.stderr).toContain(held.id);

      // Someone in no approver group, and someone with no groups at all.
      const mallory = await approve(held.id, 'mallory', ['devs']);
      expect(mallory.code).not.toBe(0);
      expect(mallory.stderr).toMatch(/dba/);
      const nobody = await approve(held.id, 'nobody', []);
      expect(nobody.code).not.toBe(0);
      const malloryDeny = await deny(held.id, 'I say no', 'mallory', ['devs']);
      expect(malloryDeny.code).not.toBe(0);

      const shown = await show(held.id);
      expect(shown.state).toBe('pending');
      expect(shown.decisions ?? []).toEqual([]);
      expect(alter.settled()).toBe(false);
      expect(await hasColumn('refused_approvers', 'c')).toBe(false);

      await decided(deny(held.id, 'cleaning up', 'carol'));
      expect(await alter).toEqual({ code: '42501', message: `${mayNotRun('deployer', held)} was denied by carol (cleaning up)` });
    } finally {
      await s.client.end();
    }
  });

  it('refuses self-approval by the requester\'s own token when its identity is named otherwise than its sub (robot, sub robot-sub-1)', async () => {
    const s = await connect('robot-sub-1', 'approvals-robot');
    try {
      const alter = track(s.client.query('ALTER TABLE public.robot_target ADD COLUMN c int'));
      const held = await heldIn(s.notices);
      expect((await show(held.id)).identity).toBe('robot');
      const self = await approve(held.id, 'robot-sub-1', ['dba']);
      expect(self.code).not.toBe(0);
      expect(self.stderr).toMatch(/own request/);
      expect((await show(held.id)).state).toBe('pending');
      expect(alter.settled()).toBe(false);
      await decided(deny(held.id, 'robots wait', 'carol'));
      expect(await alter).toMatchObject({ code: '42501' });
      expect(await hasColumn('robot_target', 'c')).toBe(false);
    } finally {
      await s.client.end();
    }
  });

  it('a quorum of 2 needs two distinct approvers: one approval (even twice) leaves it pending; a second approver releases it', async () => {
    const s = await connect('quorum-user', 'approvals-quorum');
    try {
      const alter = track(s.client.query('ALTER TABLE public.two_keys ADD COLUMN c int'));
      const held = await heldIn(s.notices);
      expect(held.rule).toBe('two-dbas');
      await decided(approve(held.id, 'alice'));
      expect((await show(held.id)).state).toBe('pending');
      // The same approver again does not count twice (refused or ignored).
      await approve(held.id, 'alice');
      const once = await show(held.id);
      expect(once.state).toBe('pending');
      expect(once.decisions?.map((d) => [d.approver, d.approve])).toEqual([['alice', true]]);
      expect(alter.settled()).toBe(false);
      expect(await hasColumn('two_keys', 'c')).toBe(false);

      await decided(approve(held.id, 'bob'));
      expect(await alter).toMatchObject({ ok: { command: 'ALTER' } });
      expect(await hasColumn('two_keys', 'c')).toBe(true);
      const done = await show(held.id);
      expect(done.decisions?.map((d) => [d.approver, d.approve])).toEqual([['alice', true], ['bob', true]]);
      expect((await s.client.query('SELECT 8 AS n')).rows).toEqual([{ n: 8 }]);
    } finally {
      await s.client.end();
    }
  });
  it('in a quorum of 2, one denial decides: the client gets the denial at once', async () => {
    const s = await connect('quorum-user', 'approvals-quorum-deny');
    try {
      const alter = track(s.client.query('ALTER TABLE public.two_keys ADD COLUMN d int'));
      const held = await heldIn(s.notices);
      await decided(approve(held.id, 'alice'));
      await decided(deny(held.id, 'not this week', 'bob'));
      expect(await alter).toEqual({ code: '42501', message: `${mayNotRun('quorum-user', held)} was denied by bob (not this week)` });
      const shown = await show(held.id);
      expect(shown.state).toBe('denied');
      expect(shown.decisions?.map((d) => [d.approver, d.approve])).toEqual([['alice', true], ['bob', false]]);
      expect(await hasColumn('two_keys', 'd')).toBe(false);
    } finally {
      await s.client.end();
    }
  });


  it('`warden approvals list` shows the pending request with identity, statement and why (token by --token and by WARDEN_TOKEN)', async () => {
    const ALTER = 'ALTER TABLE public.listed ADD COLUMN c int';
    const s = await connect('deployer', 'approvals-listed');
    try {
      const alter = track(s.client.query(ALTER));
      const held = await heldIn(s.notices);

      const text = await approvals(await tokenOf('alice'), 'list');
      expect(text.code, text.stderr).toBe(0);
      const line = text.stdout.split('\n').find((l) => l.includes(held.id));
      expect(line, text.stdout).toBeDefined();
      const block = text.stdout.slice(text.stdout.indexOf(held.id));
      expect(line).toContain('deployer');
      expect(block).toContain(ALTER);
      expect(block).toContain(held.why);

      const json = await approvals(await tokenOf('alice'), 'list', '--json');
      expect(json.code, json.stderr).toBe(0);
      const parsed = JSON.parse(json.stdout) as Shown[] | { approvals: Shown[] };
      const list = Array.isArray(parsed) ? parsed : parsed.approvals;
      expect(list.find((a) => a.id === held.id)).toMatchObject({ identity: 'deployer', resource: RESOURCE, sql: ALTER, why: held.why, state: 'pending', rule: 'prod-ddl' });

      // The client's application_name is the request's reason.
      expect((await show(held.id)) as Shown & { reason: string }).toMatchObject({ reason: 'approvals-listed' });
      // Someone in no approver group of the rule does not see it.
      const outsider = await approvals(await tokenOf('mallory', ['devs']), 'list');
      expect(outsider.stdout).not.toContain(held.id);
      expect((await approvals(await tokenOf('mallory', ['devs']), 'show', held.id)).code).not.toBe(0);

      const env = await sh(process.execPath, [WARDEN, 'approvals', 'list'], {
        WARDEN_DATA_DIR: stack.dataDir,
        WARDEN_CONTROL_PLANE: stack.controlPlane,
        WARDEN_TOKEN: await tokenOf('bob'),
      });
      expect(env.code, env.stderr).toBe(0);
      expect(env.stdout).toContain(held.id);

      await decided(deny(held.id, 'listed only'));
      await alter;
      // Decided requests are no longer pending.
      const after = await approvals(await tokenOf('alice'), 'list');
      expect(after.stdout).not.toContain(held.id);
    } finally {
      await s.client.end();
    }
  });
});

// ------------------------------------------------- 5. cancel and disconnect

describe('a CancelRequest or a disconnect withdraws the pending request', () => {
  it("node-postgres' CancelRequest while held: 57014, the request withdrawn, the session usable", async () => {
    const s = await connect('deployer', 'approvals-cancel-pg');
    try {
      const alter = track(s.client.query('ALTER TABLE public.cancelled_pg ADD COLUMN c int'));
      const held = await heldIn(s.notices);
      await cancel(s.client);
      const r = await alter;
      expect(r).toMatchObject({ code: '57014' });
      await stateBecomes(held.id, 'withdrawn');
      expect((await s.client.query('SELECT 9 AS n')).rows).toEqual([{ n: 9 }]);
      // A late approval releases nothing.
      expect((await approve(held.id)).code).not.toBe(0);
      expect(await hasColumn('cancelled_pg', 'c')).toBe(false);
      const pending = await approvals(await tokenOf('alice'), 'list');
      expect(pending.stdout).not.toContain(held.id);
      const withdrawn = await approvals(await tokenOf('alice'), 'list', '--state', 'withdrawn');
      expect(withdrawn.code, withdrawn.stderr).toBe(0);
      expect(withdrawn.stdout).toContain(held.id);
    } finally {
      await s.client.end();
    }
  });

  it('a CancelRequest while held inside a transaction fails the transaction, as a canceled statement does', async () => {
    const s = await connect('deployer', 'approvals-cancel-tx');
    try {
      await s.client.query('BEGIN');
      await s.client.query("INSERT INTO public.marks VALUES ('cancel-tx-before')");
      const alter = track(s.client.query('ALTER TABLE public.cancelled_pg ADD COLUMN in_tx int'));
      const held = await heldIn(s.notices);
      await cancel(s.client);
      expect(await alter).toMatchObject({ code: '57014' });
      expect(await txStatus(s.client)).toBe('E');
      expect(await track(s.client.query('SELECT 1'))).toMatchObject({ code: '25P02' });
      await s.client.query('ROLLBACK');
      await stateBecomes(held.id, 'withdrawn');
      expect(await marks('cancel-tx-')).toEqual([]);
      expect((await s.client.query('SELECT 13 AS n')).rows).toEqual([{ n: 13 }]);
    } finally {
      await s.client.end();
    }
  });

  it("psql's Ctrl+C while held: 57014, the request withdrawn", async () => {
    const p = await psql('deployer', 'approvals-cancel-psql', ['ALTER TABLE public.cancelled_psql ADD COLUMN c int']);
    try {
      const held = await heldInPsql(p);
      expect(p.exited()).toBe(false);
      p.child.kill('SIGINT');
      const r = await p.done;
      expect(r.stderr).toMatch(/ERROR:\s+57014: /);
      expect(r.code).not.toBe(0);
      await stateBecomes(held.id, 'withdrawn');
      expect(await hasColumn('cancelled_psql', 'c')).toBe(false);
    } finally {
      p.child.kill('SIGKILL');
    }
  });

  it('a client killed while held (connection dropped): the request withdrawn, nothing runs', async () => {
    const p = await psql('deployer', 'approvals-killed', ['ALTER TABLE public.dropped_client ADD COLUMN killed int']);
    const held = await heldInPsql(p);
    p.child.kill('SIGKILL');
    await p.done;
    await stateBecomes(held.id, 'withdrawn');
    expect((await approve(held.id)).code).not.toBe(0);
    expect(await hasColumn('dropped_client', 'killed')).toBe(false);
  });

  it('a client that sends Terminate while held: the request withdrawn', async () => {
    const c = await RawClient.connect({ host: stack.host, port: stack.port, user: 'deployer', database: RESOURCE, password: await stack.token('deployer') });
    c.send(serialize.query('ALTER TABLE public.dropped_client ADD COLUMN terminated int'));
    let held: Held | undefined;
    while (!held) {
      const m = await c.next();
      if (m.name === 'notice') held = heldFrom(String(m.message));
    }
    await c.end();
    await stateBecomes(held.id, 'withdrawn');
    expect(await hasColumn('dropped_client', 'terminated')).toBe(false);
  });
});

// ------------------------------------------------------ 6. rule matching

describe('rule matching: rows_over by EXPLAIN, without_where, groups', () => {
  it('a DELETE Postgres estimates over rows_over is held; one by primary key is not', async () => {
    const s = await connect('bulk', 'approvals-rows-over');
    try {
      // Postgres' own estimates, for the record.
      const est = async (sql: string) => ((await db.query(`EXPLAIN (FORMAT JSON) ${sql}`)).rows[0]['QUERY PLAN'][0].Plan.Plans?.[0]?.['Plan Rows'] ?? -1) as number;
      expect(await est('DELETE FROM public.orders WHERE id > 10')).toBeGreaterThan(1000);
      expect(await est('DELETE FROM public.orders WHERE id = 7')).toBe(1);

      // INSERT … SELECT counts too: an estimated 5000 rows.
      const copy = track(s.client.query('INSERT INTO public.orders_archive SELECT * FROM public.orders'));
      const copyHeld = await heldIn(s.notices);
      expect(copyHeld.rule).toBe('big-writes');
      await decided(deny(copyHeld.id, 'no archive today'));
      expect(await copy).toMatchObject({ code: '42501' });
      expect((await db.query('SELECT count(*)::int AS n FROM public.orders_archive')).rows).toEqual([{ n: 0 }]);
      const seen = s.notices.length;

      const one = await s.client.query('DELETE FROM public.orders WHERE id = 7');
      expect(one.rowCount).toBe(1);
      expect(s.notices.slice(seen).filter((n) => /held for approval/.test(n))).toEqual([]);

      const many = track(s.client.query('DELETE FROM public.orders WHERE id > 10'));
      const held = await heldIn(s.notices, seen);
      expect(held.rule).toBe('big-writes');
      expect((await db.query('SELECT count(*)::int AS n FROM public.orders')).rows).toEqual([{ n: 4999 }]);
      await decided(approve(held.id));
      expect(await many).toMatchObject({ ok: { rowCount: 4990 } });
      expect((await db.query('SELECT count(*)::int AS n FROM public.orders')).rows).toEqual([{ n: 9 }]);
    } finally {
      await s.client.end();
    }
  });

  it('an UPDATE without WHERE is held (without_where); with a WHERE it runs', async () => {
    const s = await connect('bulk', 'approvals-without-where');
    try {
      const all = track(s.client.query("UPDATE public.small SET v = 'z'"));
      const held = await heldIn(s.notices);
      expect(held.rule).toBe('no-where');
      await decided(deny(held.id, 'too broad'));
      expect(await all).toEqual({ code: '42501', message: `${mayNotRun('bulk', held)} was denied by alice (too broad)` });
      expect((await db.query('SELECT v FROM public.small ORDER BY id')).rows.map((r: { v: string }) => r.v)).toEqual(['a', 'b', 'c']);
      const one = await s.client.query("UPDATE public.small SET v = 'y' WHERE id = 1");
      expect(one.rowCount).toBe(1);
      expect(s.notices.filter((n) => /held for approval/.test(n))).toHaveLength(1);
    } finally {
      await s.client.end();
    }
  });

  it("a rule by group holds a member's DROP (groups: [migrators])", async () => {
    const s = await connect('migrator', 'approvals-by-group');
    try {
      const drop = track(s.client.query('DROP TABLE public.by_group'));
      const held = await heldIn(s.notices);
      expect(held.rule).toBe('group-drops');
      await decided(deny(held.id, 'keep it'));
      expect(await drop).toMatchObject({ code: '42501' });
      expect((await db.query("SELECT to_regclass('public.by_group') IS NOT NULL AS present")).rows).toEqual([{ present: true }]);
    } finally {
      await s.client.end();
    }
  });
});

// --------------------------------------------------------------- 6b. webhook

describe('new requests are announced by webhook', () => {
  it('POSTs the request as JSON with the approve command, retried after the receiver failed the first delivery', async () => {
    const s = await connect('deployer', 'approvals-announced');
    try {
      const alter = track(s.client.query('ALTER TABLE public.announced ADD COLUMN c int'));
      const held = await heldIn(s.notices);
      const got = await waitFor(`a second delivery of ${held.id}`, async () => ((deliveries.get(held.id)?.length ?? 0) >= 2 ? deliveries.get(held.id) : undefined), 30_000);
      for (const d of got) {
        expect(d).toMatchObject({
          method: 'POST',
          contentType: expect.stringMatching(/^application\/json/),
          type: 'approval.requested',
          approve: `warden approvals approve ${held.id}`,
          approval: { id: held.id, identity: 'deployer', resource: RESOURCE, rule: 'prod-ddl', sql: 'ALTER TABLE public.announced ADD COLUMN c int', why: held.why, approvers: ['dba'], state: 'pending' },
        });
      }
      // Delivered once it was taken: no more attempts after the success.
      expect(got).toHaveLength(2);
      await decided(deny(held.id, 'announced only'));
      expect(await alter).toMatchObject({ code: '42501' });
    } finally {
      await s.client.end();
    }
  });
});

// ------------------------------------------------------ 6c. several gateways

describe('several gateways: the decision reaches the gateway that holds the session', () => {
  let other: Awaited<ReturnType<typeof startExtraGateway>>;

  beforeAll(async () => {
    other = await startExtraGateway(stack, 'gw-b', ['--local']);
    // Usable once the agent has found it through the control plane and dialled it.
    await waitFor('the second gateway to reach the agent', async () => {
      const r = await sh('psql', [stack.conninfo({ port: String(other.port), user: 'deployer' }), '-Atc', 'SELECT 1'], { PGPASSWORD: await stack.token('deployer') });
      return r.code === 0;
    }, 30_000);
  });

  afterAll(async () => {
    await other?.stop();
  });

  const onB = (app: string) => connect('deployer', app, other.port);

  it('a statement held on gateway B is released by an approval made through the control plane', async () => {
    const s = await onB('approvals-gw-b');
    try {
      const alter = track(s.client.query('ALTER TABLE public.on_gateway_b ADD COLUMN c int'));
      const held = await heldIn(s.notices);
      expect((await show(held.id)).state).toBe('pending');
      await decided(approve(held.id));
      expect(await alter).toMatchObject({ ok: { command: 'ALTER' } });
      expect(await hasColumn('on_gateway_b', 'c')).toBe(true);
    } finally {
      await s.client.end();
    }
  });

  it('a CancelRequest sent to gateway A for a session held on gateway B withdraws the request there', async () => {
    const s = await onB('approvals-cancel-across');
    try {
      const alter = track(s.client.query('ALTER TABLE public.cancel_across ADD COLUMN c int'));
      const held = await heldIn(s.notices);
      await cancel(s.client, stack.port);
      try {
        await waitFor('the held statement to end after the CancelRequest sent to gateway A', async () => alter.settled(), 15_000);
      } finally {
        if (!alter.settled()) {
          // Let the session end, so that the test can report and go on.
          await decided(deny(held.id, 'the cancel did not arrive'));
        }
      }
      expect(await alter).toMatchObject({ code: '57014' });
      await stateBecomes(held.id, 'withdrawn');
      expect((await s.client.query('SELECT 12 AS n')).rows).toEqual([{ n: 12 }]);
      expect(await hasColumn('cancel_across', 'c')).toBe(false);
    } finally {
      await s.client.end();
    }
  });
});

// ------------------------------------------------------------- 7. policy check

describe('warden policy check says when a statement would be held and who could approve it', () => {
  for (const [name, src] of [
    ['the control plane', []],
    ['a policy file (-f)', ['-f', POLICY]],
  ] as const) {
    it(`from ${name}`, async () => {
      const check = (as: string, sql: string) => stack.cli('policy', 'check', ...src, '--as', as, '--resource', RESOURCE, sql);
      const lines = async (as: string, sql: string) => {
        const r = await check(as, sql);
        expect(r.code, r.stderr).toBe(0);
        return r.stdout.trimEnd().split('\n');
      };
      expect(await lines('deployer', 'ALTER TABLE public.plain_target ADD COLUMN c int')).toEqual([
        'allowed: ALTER TABLE (ddl) on public.plain_target — rule owners (ddl)',
        '  held: needs approval (rule prod-ddl: ALTER TABLE public.plain_target) by 1 of groups dba; mode wait',
      ]);
      expect(await lines('quorum-user', 'ALTER TABLE public.plain_target ADD COLUMN c int')).toEqual([
        'allowed: ALTER TABLE (ddl) on public.plain_target — rule owners (ddl)',
        '  held: needs approval (rule two-dbas: ALTER TABLE public.plain_target) by 2 of groups dba; mode wait',
      ]);
      expect((await lines('bulk', 'DELETE FROM public.small'))[1]).toBe('  held: needs approval (rule no-where: DELETE without WHERE on public.small) by 1 of groups dba; mode wait');
      expect((await lines('migrator', 'DROP TABLE public.by_group'))[1]).toMatch(/^ {2}held: needs approval \(rule group-drops: DROP TABLE (public\.)?by_group\) by 1 of groups dba; mode wait$/);
      expect((await lines('retrier', 'DELETE FROM public.retry_rows WHERE id = 1'))[1]).toMatch(/^ {2}held: needs approval \(rule retry-deletes: .*\) by 1 of groups dba; mode retry$/);
      // rows_over depends on Postgres' estimate, which policy check cannot ask: it says so.
      const estimate = await lines('bulk', 'DELETE FROM public.orders WHERE id > 10');
      expect(estimate).toHaveLength(2);
      expect(estimate[1]).toContain('big-writes');
      expect(estimate[1]).toContain('1000 rows');
      expect(estimate[1]).not.toMatch(/^ {2}held:/);

      for (const [as, sql] of [
        ['freebie', 'ALTER TABLE public.plain_target ADD COLUMN c int'],
        ['deployer', 'SELECT * FROM public.marks'],
        ['bulk', 'DELETE FROM public.small WHERE id = 1'],
      ] as const) {
        const r = await check(as, sql);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout, `${as}: ${sql}`).toMatch(/^allowed: /);
        expect(r.stdout, `${as}: ${sql}`).not.toMatch(/\bheld\b/i);
      }

      const json = await stack.cli('policy', 'check', ...src, '--as', 'deployer', '--resource', RESOURCE, 'ALTER TABLE public.plain_target ADD COLUMN c int', '--json');
      expect(json.code, json.stderr).toBe(0);
      const j = JSON.parse(json.stdout) as { statements: Array<Record<string, unknown>> };
      expect(j.statements).toHaveLength(1);
      expect(JSON.stringify(j.statements[0])).toContain('prod-ddl');
      expect(JSON.stringify(j.statements[0])).toContain('dba');
    });
  }
});

// ------------------------------------------------------------------ 8. audit

interface EventRecord {
  type: string;
  seq: number;
  sql?: string;
  decision?: string;
  approvalId?: string;
  state?: string;
  rule?: string;
  why?: string;
  decisions?: Array<{ approver: string; approve: boolean; reason: string; groups: string[] }>;
  error?: { sqlstate: string; message: string };
}

describe('the audit trail records each request and decision, and the statement\'s approval', () => {
  it('sessions show and replay: requested, approved by alice, the statement run under it; requested, denied by bob; requested, withdrawn by a cancel', async () => {
    const APPROVED = 'ALTER TABLE public.audited ADD COLUMN yes int';
    const DENIED = 'ALTER TABLE public.audited ADD COLUMN no int';
    const CANCELED = 'ALTER TABLE public.audited ADD COLUMN maybe int';
    const app = 'approvals-audit';
    const s = await connect('deployer', app);
    let ok: Held;
    let no: Held;
    let gone: Held;
    try {
      const first = track(s.client.query(APPROVED));
      ok = await heldIn(s.notices);
      await decided(approve(ok.id, 'alice'));
      expect(await first).toMatchObject({ ok: { command: 'ALTER' } });
      let count = s.notices.length;
      const second = track(s.client.query(DENIED));
      no = await heldIn(s.notices, count);
      await decided(deny(no.id, 'one column is enough', 'bob'));
      expect(await second).toMatchObject({ code: '42501' });
      count = s.notices.length;
      const third = track(s.client.query(CANCELED));
      gone = await heldIn(s.notices, count);
      await cancel(s.client);
      expect(await third).toMatchObject({ code: '57014' });
    } finally {
      await s.client.end();
    }

    const sessionId = await sessionOf('deployer', app);
    const events = await sessionEvents('deployer', app);
    const approvalsOf = (id: string) => events.filter((e) => e.type === 'approval' && e.approvalId === id);

    expect(approvalsOf(ok.id).map((e) => [e.state, e.rule, e.sql, e.why])).toEqual([
      ['requested', 'prod-ddl', APPROVED, ok.why],
      ['approved', 'prod-ddl', APPROVED, ok.why],
    ]);
    expect(approvalsOf(ok.id)[1]!.decisions?.map((d) => [d.approver, d.approve, d.groups])).toEqual([['alice', true, ['dba']]]);
    expect(approvalsOf(no.id).map((e) => e.state)).toEqual(['requested', 'denied']);
    expect(approvalsOf(no.id)[1]!.decisions?.map((d) => [d.approver, d.approve, d.reason])).toEqual([['bob', false, 'one column is enough']]);
    expect(approvalsOf(gone.id).map((e) => e.state)).toEqual(['requested', 'withdrawn']);

    const stmts = events.filter((e) => e.type === 'statement');
    expect(stmts.map((e) => [e.sql, e.decision])).toEqual([
      [APPROVED, 'allowed'],
      [DENIED, 'refused'],
      [CANCELED, 'refused'],
    ]);
    expect(stmts[0]!.approvalId).toBe(ok.id);
    expect(stmts[1]!.error).toEqual({ sqlstate: '42501', message: `${mayNotRun('deployer', no)} was denied by bob (one column is enough)` });
    expect(stmts[2]!.error?.sqlstate).toBe('57014');
    // In order: the request, the decision, then the statement it let run.
    const seqOf = (e: EventRecord | undefined) => e?.seq ?? -1;
    expect(seqOf(approvalsOf(ok.id)[0])).toBeLessThan(seqOf(approvalsOf(ok.id)[1]));
    expect(seqOf(approvalsOf(ok.id)[1])).toBeLessThan(seqOf(stmts[0]));

    const text = await stack.cli('sessions', 'show', sessionId);
    expect(text.stdout).toContain(`deployer's ${ok.why} on ${RESOURCE}: approval ${ok.id} approved, approved by alice`);
    expect(text.stdout).toContain(`deployer's ${no.why} on ${RESOURCE}: approval ${no.id} denied, denied by bob (one column is enough)`);
    expect(text.stdout).toContain(`approval ${gone.id} withdrawn`);

    const replay = await stack.cli('sessions', 'replay', sessionId, '--speed', 'fast');
    expect(replay.code, replay.stderr).toBe(0);
    const out = replay.stdout;
    const requested = out.indexOf(`approval ${ok.id} requested`);
    const approvedAt = out.indexOf(`approval ${ok.id} approved, approved by alice`);
    const ran = out.indexOf(`${APPROVED}\n`);
    expect([requested, approvedAt, ran].every((i) => i >= 0), out).toBe(true);
    expect(requested).toBeLessThan(approvedAt);
    expect(approvedAt).toBeLessThan(ran);
    expect(out).toContain(`approval ${no.id} denied, denied by bob (one column is enough)`);
    expect(out).toMatch(new RegExp(`${DENIED}\\n\\s+REFUSED by rule prod-ddl: warden: deployer on ${RESOURCE} may not run .*: approval ${no.id} was denied by bob`));
    expect(out).toContain(`approval ${gone.id} withdrawn`);
  });

  it('records a timed-out request as expired', async () => {
    const app = 'approvals-audit-timeout';
    const s = await connect('slowpoke', app);
    let held: Held;
    try {
      const alter = track(s.client.query('ALTER TABLE public.late_plain ADD COLUMN audited int'));
      held = await heldIn(s.notices);
      expect(await alter).toMatchObject({ code: '42501' });
    } finally {
      await s.client.end();
    }
    const events = await sessionEvents('slowpoke', app);
    expect(events.filter((e) => e.type === 'approval').map((e) => [e.approvalId, e.state])).toEqual([
      [held.id, 'requested'],
      [held.id, 'expired'],
    ]);
    expect(events.filter((e) => e.type === 'statement').map((e) => [e.decision, e.error?.sqlstate])).toEqual([['refused', '42501']]);
  });
});
