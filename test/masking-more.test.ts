// Issue 12, end to end, beyond test/masking.test.ts: the audit trail and
// replay of masked sessions, `warden policy check` on masks, the local demo
// as a new user sees it, tables with inheritance and partitions, wildcard
// column patterns and every detector kind, non-text types under hash and
// redact, policy changes during a session, and a large masked result read
// slowly through pg-query-stream.
//
// The fixture (test/fixtures/masking-more.sql) holds distinctive clear
// values; the policy (test/fixtures/masking-more-policy.yaml) masks them for
// `masked` and `changer`, runs the detectors for `detect-reader`, and leaves
// `exempt` in the clear. Everything a masked client received (and every
// line the CLI printed about its sessions) is searched for the clear values.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import QueryStream from 'pg-query-stream';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient, dataRowValues, serialize, type Message } from './support/raw-client.js';
import { describeRss, MiB, sampleRss } from './support/rss.js';
import { createDatabase, logs, ROOT, WARDEN, startStack, type Stack, type TestDatabase } from './support/stack.js';

const RESOURCE = 'more';
const POLICY = join(ROOT, 'test/fixtures/masking-more-policy.yaml');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------ clear values

const CARDS = [
  { id: 1, card: '4485275742308327', email: 'kx.vortan.4471@mailhub.example', ssn: '219-44-7310' },
  { id: 2, card: '4719035628174401', email: 'plume.quist.902@ledger.example', ssn: '533-12-8846' },
  { id: 3, card: '5302187744096156', email: 'orrin.vale.613@ledger.example', ssn: '219-44-7310' },
];
const int32be = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b.toString('latin1');
};
const int64be = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(n);
  return b.toString('latin1');
};
/** Microseconds since 2000-01-01 UTC of "YYYY-MM-DD HH:MM:SS[.ffffff]+00". */
function microsOf(text: string): bigint {
  const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?\+00$/.exec(text);
  if (!m) throw new Error(`not a UTC timestamptz: ${text}`);
  const ms = Date.parse(`${m[1]}T${m[2]}Z`) - Date.parse('2000-01-01T00:00:00Z');
  return BigInt(ms) * 1000n + BigInt((m[3] ?? '').padEnd(6, '0') || '0');
}
const uuidBytes = (u: string) => Buffer.from(u.replaceAll('-', ''), 'hex').toString('latin1');

/** Each clear value (and the parts that tell it) a masked identity must never receive. */
const SECRETS: string[] = [
  ...CARDS.flatMap((c) => [c.card, c.card.slice(0, 12), c.card.slice(4, 12), c.email, c.email.slice(0, c.email.indexOf('@')), c.ssn, c.ssn.replaceAll('-', '')]),
  // people, hr.staff (its ssn; its email is outside public.*.email)
  'wren.halloway.358', '604-21-7789', '604217789', '377-90-1246', '377901246',
  // typed_h / typed_r, text and binary
  '2019-04-07', '2021-09-30', '13:45:12', '02:03:04', '6f1c2a9e', '3b7d-4c55', 'a3d4e5f6', '0718-4293', '73519', '60214', 'zr-77123', 'qv-30901', '448213', '117795', '918273', '564738',
  int32be(918273), int32be(564738), uuidBytes('6f1c2a9e-3b7d-4c55-9e21-8a0b7c6d5e41'), uuidBytes('a3d4e5f6-0718-4293-8a4b-5c6d7e8f9012'),
  int64be(microsOf('2019-04-07 13:45:12.345678+00')), int64be(microsOf('2021-09-30 02:03:04+00')),
  // inheritance and partitions (payments_eu's iban is masked only when read through payments)
  'lp-secret-alpha', 'alpha-9931', 'lc-secret-bravo', 'bravo-4417', 'np-body-charlie', 'charlie-2208', 'nc-body-delta', 'delta-6654', 'pay-card-echo', 'pay-card-golf', 'us-iban-hotel', 'hotel-9043',
  // the streamed rows
  'STREAMSECRET',
];
/** Found by the detectors in memos. */
const MEMO_SECRETS = ['tallis.morrow.518', '7946 0958', '79460958', '555-0187', '5550187', '3704 0044', '0532 0130', '370400440532', '287-65-4321', '287654321', '804213', '551907'];

function leaks(received: string, needles: readonly string[] = SECRETS): string[] {
  const hay = received.toLowerCase();
  return needles.filter((n) => hay.includes(n.toLowerCase()));
}

// ----------------------------------------------------------------- clients

let db: TestDatabase;
let stack: Stack;

type Cell = string | null;

interface PgConn {
  client: pg.Client;
  /** Every byte received after the startup, as latin1. */
  received(): string;
  /** Errors the connection reported outside a query (a FATAL from the gateway). */
  errors: Error[];
}

/** node-postgres through the gateway, values handed over as sent, the bytes it reads recorded (or passed to `sink`). */
async function connectPg(who: string, opts: { app?: string; sink?: (b: Buffer) => void } = {}): Promise<PgConn> {
  const chunks: Buffer[] = [];
  let recording = false;
  const socket = new Socket();
  const push = socket.push.bind(socket);
  socket.push = ((chunk: unknown, enc?: BufferEncoding) => {
    if (recording && Buffer.isBuffer(chunk)) (opts.sink ?? ((b: Buffer) => chunks.push(b)))(chunk);
    return push(chunk, enc);
  }) as typeof socket.push;
  const client = new pg.Client({
    host: stack.host,
    port: stack.port,
    user: who,
    database: RESOURCE,
    password: await stack.token(who),
    application_name: opts.app ?? 'masking-more',
    stream: () => socket,
    types: { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig,
  });
  const errors: Error[] = [];
  client.on('error', (e) => errors.push(e));
  await client.connect();
  recording = true;
  return { client, received: () => Buffer.concat(chunks).toString('latin1'), errors };
}

async function queryRows(c: PgConn, text: string, values?: unknown[]): Promise<Cell[][]> {
  const r = await c.client.query({ text, values, rowMode: 'array', ...(values ? { queryMode: 'extended' } : {}) } as pg.QueryArrayConfig);
  return r.rows.map((row) => row.map((v) => (v === null ? null : String(v))));
}

/** One statement in the simple protocol, text results, through a fresh session. */
async function textRows(who: string, sql: string): Promise<{ rows: Cell[][]; received: string }> {
  const c = await connectPg(who);
  try {
    return { rows: await queryRows(c, sql), received: c.received() };
  } finally {
    await c.client.end();
  }
}

async function copyOut(c: PgConn, sql: string): Promise<string> {
  const out: Buffer[] = [];
  const stream = c.client.query(copyTo(sql));
  for await (const chunk of stream) out.push(chunk as Buffer);
  return Buffer.concat(out).toString('utf8');
}

/** COPY … TO STDOUT through a fresh session. */
async function copyRows(who: string, sql: string): Promise<{ data: string; received: string }> {
  const c = await connectPg(who);
  try {
    return { data: await copyOut(c, sql), received: c.received() };
  } finally {
    await c.client.end();
  }
}

interface BinaryResult {
  rows: Array<Array<Buffer | null>>;
  types: number[];
  error?: { code: string; message: string };
  received: string;
}

async function rawConnect(who: string): Promise<RawClient> {
  return RawClient.connect({ host: stack.host, port: stack.port, user: who, database: RESOURCE, password: await stack.token(who), parameters: { TimeZone: 'UTC' } });
}

function resultOf(messages: Message[]): BinaryResult {
  const out: BinaryResult = { rows: [], types: [], received: messages.map((m) => m.raw.toString('latin1')).join('') };
  for (const m of messages) {
    if (m.name === 'rowDescription') out.types = (m.fields as Array<{ dataTypeID: number }>).map((f) => f.dataTypeID);
    else if (m.name === 'dataRow') out.rows.push(dataRowValues(m));
    else if (m.name === 'error') out.error ??= { code: String(m.code), message: String(m.message) };
  }
  return out;
}

/** Statements on one raw session (TimeZone UTC): `simple` in the simple protocol (text), else the extended protocol asking for binary results. */
async function rawSession(who: string, statements: Array<{ sql: string; simple?: boolean }>): Promise<BinaryResult[]> {
  const c = await rawConnect(who);
  try {
    const out: BinaryResult[] = [];
    for (const s of statements) {
      if (s.simple) c.send(serialize.query(s.sql));
      else c.send(serialize.parse({ text: s.sql }), serialize.bind({ binary: true }), serialize.describe({ type: 'P' }), serialize.execute(), serialize.sync());
      out.push(resultOf(await c.until('readyForQuery')));
    }
    return out;
  } finally {
    await c.end().catch(() => {});
  }
}

/** Binary results of text and int4 columns, as text. */
function asText(r: BinaryResult): Cell[][] {
  return r.rows.map((row) => row.map((v, i) => (v === null ? null : r.types[i] === 23 ? String(v.readInt32BE(0)) : v.toString('utf8'))));
}

/**
 * COPY csv data (default options) as rows: an unquoted empty field is NULL.
 * The gateway quotes every masked value (so none reads as NULL), which csv
 * reads the same as Postgres' unquoted form: rows are compared, not bytes.
 */
function csvRows(data: string): Cell[][] {
  const rows: Cell[][] = [];
  let row: Cell[] = [];
  let i = 0;
  while (i < data.length) {
    let value = '';
    let quoted = false;
    for (; i < data.length && data[i] !== ',' && data[i] !== '\n'; i++) {
      if (data[i] !== '"') {
        value += data[i];
        continue;
      }
      quoted = true;
      for (i++; i < data.length; i++) {
        if (data[i] === '"' && data[i + 1] === '"') value += data[i++];
        else if (data[i] === '"') break;
        else value += data[i];
      }
    }
    row.push(value === '' && !quoted ? null : value);
    if (data[i] === '\n' || i >= data.length) {
      rows.push(row);
      row = [];
    }
    i++;
  }
  return rows;
}

async function cli(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  const r = await stack.cli(...args);
  return { ...r, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

async function cliJson<T>(...args: string[]): Promise<T> {
  const r = await cli(...args, '--json');
  if (r.code !== 0) throw new Error(`warden ${args.join(' ')} failed (${r.code}): ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout) as T;
}

async function applyPolicy(file: string): Promise<void> {
  const r = await cli('policy', 'apply', '-f', file);
  if (r.code !== 0) throw new Error(`policy apply failed (${r.code}): ${r.stderr}${r.stdout}`);
}

/** Waits until `check` returns true (it may throw meanwhile). */
async function eventually(what: string, check: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
    }
    await sleep(200);
  }
  throw new Error(`timed out waiting until ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

const MASKED_CARD_1 = '************8327';

async function tearDown(): Promise<void> {
  await stack?.stop();
  await db?.drop();
}

beforeAll(async () => {
  db = await createDatabase('warden_masking_more');
  try {
    await db.query(readFileSync(join(ROOT, 'test/fixtures/masking-more.sql'), 'utf8'));
    stack = await startStack({ upstream: db.url, resource: RESOURCE });
    await applyPolicy(POLICY);
    // Masking needs the policy's masks and the resource's catalog: wait for a masked row.
    await eventually('the masks are in force', async () => (await textRows('masked', 'select card_number from cards where id = 1')).rows[0]?.[0] === MASKED_CARD_1);
    for (const who of ['exempt', 'detect-reader', 'changer']) await eventually(`${who} connects`, async () => (await textRows(who, 'select 1')).rows.length === 1);
  } catch (err) {
    if (stack) console.error(logs(stack.dataDir));
    await tearDown();
    throw err;
  }
});

afterAll(tearDown);

// The leak search must be able to find something: an exempt identity's bytes hold the clear values.
describe('the leak search', () => {
  it("finds the clear values in an exempt identity's text, binary and COPY bytes", async () => {
    const t = await textRows('exempt', 'select id, card_number, email, ssn from cards order by id');
    const [b] = await rawSession('exempt', [{ sql: 'select id, ts, u, n from typed_h order by id' }]);
    const c = await copyRows('exempt', 'copy (select id, secret from legacy_parent order by id) to stdout with (format csv)');
    expect(leaks(t.received)).toEqual(expect.arrayContaining([CARDS[0]!.card, CARDS[1]!.email, CARDS[2]!.ssn]));
    expect(leaks(b!.received)).toEqual(expect.arrayContaining([int32be(918273), uuidBytes('6f1c2a9e-3b7d-4c55-9e21-8a0b7c6d5e41'), int64be(microsOf('2021-09-30 02:03:04+00'))]));
    expect(leaks(c.received)).toEqual(expect.arrayContaining(['lp-secret-alpha', 'bravo-4417']));
  });
});

// ------------------------------------------------------ 1. audit and replay

interface SessionRow {
  sessionId: string;
  identity: string;
  applicationName: string;
  statements: number;
  refused: number;
  endedAt?: string;
  outcome: string;
}
interface EventRecord {
  type: string;
  sql?: string;
  decision?: string;
  maskedColumns?: string[];
  error?: { sqlstate: string; message: string };
}

async function recordedSession(identity: string, app: string, statements: number): Promise<SessionRow> {
  let found: SessionRow | undefined;
  await eventually(`the session of ${app} is recorded`, async () => {
    const list = await cliJson<SessionRow[]>('sessions', 'list', '--identity', identity, '--since', '1h');
    found = list.find((s) => s.applicationName === app && s.endedAt);
    if (!found) return false;
    const { events } = await cliJson<{ events: EventRecord[] }>('sessions', 'show', found.sessionId);
    return events.filter((e) => e.type === 'statement').length === statements && events.some((e) => e.type === 'session.end');
  }, 30_000);
  return found!;
}

describe('audit and replay of masked sessions', () => {
  const S = {
    simple: 'select id, card_number, email, ssn from cards order by id',
    extended: 'select card_number, email from cards where id = $1',
    copy: 'copy (select id, card_number from cards order by id) to stdout with (format csv)',
    wildcard: 'select id, ssn, email from hr.staff',
    refused: 'select lower(email) from cards',
  };
  let masked: SessionRow;
  let exempt: SessionRow;
  /** Everything the CLI printed about the sessions. */
  let printed = '';

  beforeAll(async () => {
    const c = await connectPg('masked', { app: 'more-audit-masked' });
    const simple = await queryRows(c, S.simple);
    const extended = await queryRows(c, S.extended, [2]);
    const copy = await copyOut(c, S.copy);
    const wildcard = await queryRows(c, S.wildcard);
    const refusal = await c.client.query(S.refused).then(
      () => undefined,
      (e: { code?: string; message: string }) => e,
    );
    await c.client.end();
    expect(simple.map((r) => r[1])).toEqual(['************8327', '************4401', '************6156']);
    expect(extended).toEqual([['************4401', '****@ledger.example']]);
    expect(csvRows(copy)).toEqual([['1', '************8327'], ['2', '************4401'], ['3', '************6156']]);
    expect(wildcard[0]?.[2]).toBe('staff.clear.1@hr.example');
    expect(refusal?.code).toBe('42501');
    expect(refusal?.message).toContain('public.cards.email');
    expect(leaks(c.received())).toEqual([]);

    const e = await connectPg('exempt', { app: 'more-audit-exempt' });
    const clear = await queryRows(e, S.simple);
    await queryRows(e, S.extended, [2]);
    await e.client.end();
    expect(clear.map((r) => r[1])).toEqual(CARDS.map((x) => x.card));

    masked = await recordedSession('masked', 'more-audit-masked', 5);
    exempt = await recordedSession('exempt', 'more-audit-exempt', 2);
  }, 90_000);

  it('lists the masked columns of each statement of a masked session (sessions show --json, audit search --json)', async () => {
    expect(masked).toMatchObject({ identity: 'masked', statements: 5, refused: 1 });
    const shown = await cli('sessions', 'show', masked.sessionId, '--json');
    printed += shown.stdout;
    const stmts = (JSON.parse(shown.stdout) as { events: EventRecord[] }).events.filter((e) => e.type === 'statement');
    expect(stmts.map((s) => [s.sql, s.decision, s.maskedColumns])).toEqual([
      [S.simple, 'allowed', ['public.cards.card_number', 'public.cards.email', 'public.cards.ssn']],
      [S.extended, 'allowed', ['public.cards.card_number', 'public.cards.email']],
      [S.copy, 'allowed', ['public.cards.card_number']],
      [S.wildcard, 'allowed', ['hr.staff.ssn']],
      [S.refused, 'refused', undefined],
    ]);
    expect(stmts[4]!.error?.sqlstate).toBe('42501');
    expect(stmts[4]!.error?.message).toContain('public.cards.email');

    const search = await cli('audit', 'search', '--identity', 'masked', '--type', 'statement', '--since', '1h', '--json');
    expect(search.code).toBe(0);
    printed += search.stdout;
    const found = (JSON.parse(search.stdout) as Array<EventRecord & { sessionId: string }>).filter((e) => e.sessionId === masked.sessionId);
    expect(found.map((e) => e.maskedColumns).sort()).toEqual(stmts.map((s) => s.maskedColumns).sort());
  });

  it('prints the masked columns under each statement in the replay, and the refusal naming the column', async () => {
    const r = await cli('sessions', 'replay', masked.sessionId, '--speed', 'fast');
    expect(r.code, r.stderr).toBe(0);
    printed += r.stdout + r.stderr;
    const after = (sql: string) => {
      const at = r.stdout.indexOf(sql);
      expect(at, r.stdout).toBeGreaterThanOrEqual(0);
      // The statement's own lines: those indented under it.
      const lines = r.stdout.slice(at + sql.length).split('\n').slice(1);
      return lines.slice(0, lines.findIndex((l) => !l.startsWith(indent)));
    };
    const indent = ' '.repeat(11);
    const maskedOf = (sql: string) => after(sql).filter((l) => l.includes('masked:'));
    expect(maskedOf(S.simple)).toEqual([`${indent}masked: public.cards.card_number, public.cards.email, public.cards.ssn`]);
    expect(after(S.extended)).toEqual([`${indent}parameters: "2"`, expect.stringMatching(/^ {11}allowed .*-> 1 row/), `${indent}masked: public.cards.card_number, public.cards.email`]);
    expect(maskedOf(S.copy)).toEqual([`${indent}masked: public.cards.card_number`]);
    expect(maskedOf(S.wildcard)).toEqual([`${indent}masked: hr.staff.ssn`]);
    const refused = after(S.refused);
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatch(new RegExp(`^${indent}REFUSED.*: warden: .*masked column public\\.cards\\.email`));
  });

  it('shows no clear value in any CLI output about the sessions, json or text', async () => {
    const outputs = [
      await cli('sessions', 'show', masked.sessionId),
      await cli('sessions', 'list', '--since', '1h'),
      await cli('sessions', 'list', '--since', '1h', '--json'),
      await cli('audit', 'search', '--since', '1h'),
      await cli('audit', 'search', '--since', '1h', '--json'),
      await cli('audit', 'search', '--identity', 'masked', '--since', '1h'),
      await cli('sessions', 'replay', masked.sessionId, '--json'),
    ];
    for (const o of outputs) expect(o.code, o.stderr).toBe(0);
    const all = printed + outputs.map((o) => o.stdout + o.stderr).join('\n');
    expect(all).toContain(masked.sessionId);
    expect(leaks(all)).toEqual([]);
  });

  it("records no masked columns for an exempt identity's statements", async () => {
    const { events } = await cliJson<{ events: EventRecord[] }>('sessions', 'show', exempt.sessionId);
    const stmts = events.filter((e) => e.type === 'statement');
    expect(stmts.map((s) => [s.sql, s.decision, s.maskedColumns])).toEqual([
      [S.simple, 'allowed', undefined],
      [S.extended, 'allowed', undefined],
    ]);
    const replay = await cli('sessions', 'replay', exempt.sessionId, '--speed', 'fast');
    expect(replay.stdout).toContain(S.simple);
    expect(replay.stdout).not.toContain('masked:');
  });
});

// --------------------------------------------------------- 2. policy check

describe('warden policy check on masks', () => {
  const PLAIN = 'SELECT id, card_number, email FROM cards';
  const PLAIN_LINES = ['  masked: column 2 (public.cards.card_number) with partial (keep 4) — mask more-cols', '  masked: column 3 (public.cards.email) with email — mask more-cols'];
  const maskedLines = (out: string) => out.split('\n').filter((l) => l.includes('masked:'));
  const sources = [
    ['a policy file (-f)', ['-f', POLICY]],
    ['the control plane', []],
  ] as const;

  for (const [name, src] of sources) {
    it(`lists the masked output columns of a plain SELECT, from ${name}`, async () => {
      const r = await cli('policy', 'check', ...src, '--as', 'masked', '--resource', RESOURCE, PLAIN);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.split('\n')[0]).toMatch(/^allowed: SELECT \(read\) on .*cards — rule more-read \(read\)$/);
      expect(maskedLines(r.stdout)).toEqual(PLAIN_LINES);

      const wild = await cli('policy', 'check', ...src, '--as', 'masked', '--resource', RESOURCE, 'SELECT email, ssn FROM hr.staff');
      expect(maskedLines(wild.stdout)).toEqual(['  masked: column 2 (hr.staff.ssn) with hash — mask more-cols']);
    });

    it(`shows the refusal of an expression and of a predicate over a masked column, from ${name}`, async () => {
      const expr = await cli('policy', 'check', ...src, '--as', 'masked', '--resource', RESOURCE, 'SELECT upper(email) FROM cards');
      expect(expr.stdout.trim()).toBe(
        'refused: warden: masked on more may not return an expression over masked column public.cards.email (mask more-cols): only the column itself can be masked, so select it plainly',
      );
      const pred = await cli('policy', 'check', ...src, '--as', 'masked', '--resource', RESOURCE, "SELECT id FROM cards WHERE card_number LIKE '4485%'");
      expect(pred.stdout.trim()).toMatch(/^refused: warden: masked on more may not use masked column public\.cards\.card_number \(mask more-cols\) in WHERE/);
    });

    it(`lists nothing masked for an exempt identity, from ${name}`, async () => {
      const r = await cli('policy', 'check', ...src, '--as', 'exempt', '--resource', RESOURCE, PLAIN);
      expect(r.stdout).toMatch(/^allowed: /);
      expect(maskedLines(r.stdout)).toEqual([]);
      const j = JSON.parse((await cli('policy', 'check', ...src, '--as', 'exempt', '--resource', RESOURCE, PLAIN, '--json')).stdout);
      expect(j.statements[0].decision).toBe('allowed');
      expect(j.statements[0].masked).toBeUndefined();
    });

    it(`has the masked array in --json, from ${name}`, async () => {
      const r = await cli('policy', 'check', ...src, '--as', 'masked', '--resource', RESOURCE, PLAIN, '--json');
      expect(r.code, r.stderr).toBe(0);
      const j = JSON.parse(r.stdout);
      expect(j.statements).toHaveLength(1);
      expect(j.statements[0].masked).toEqual([
        { position: 2, column: 'public.cards.card_number', mask: 'partial (keep 4)', rule: 'more-cols' },
        { position: 3, column: 'public.cards.email', mask: 'email', rule: 'more-cols' },
      ]);
    });
  }

  it('runs the statements before a refused one in the same query string masked (simple protocol)', async () => {
    const c = await connectPg('masked');
    let error: { code?: string; message: string } | undefined;
    try {
      await c.client.query('select id, card_number, email from cards order by id; select upper(email) from cards');
    } catch (e) {
      error = e as typeof error;
    }
    await c.client.end();
    expect(error?.code).toBe('42501');
    expect(error?.message).toContain('public.cards.email');
    // The allowed first statement runs, masked, before the refusal.
    for (const v of ['************8327', '****@mailhub.example', '************6156']) expect(c.received()).toContain(v);
    expect(leaks(c.received())).toEqual([]);
  });

  it('keeps the masked columns of the statements before a refused one in the same script', async () => {
    const script = `${PLAIN}; SELECT upper(email) FROM cards`;
    const r = await cli('policy', 'check', '-f', POLICY, '--as', 'masked', '--resource', RESOURCE, script);
    expect(r.stdout.split('\n')[0]).toMatch(/^allowed: SELECT/);
    expect(r.stdout).toMatch(/\nrefused: .*public\.cards\.email/);
    // The gateway runs the first statement (masked) before refusing the second: the check must say how it is masked.
    expect(maskedLines(r.stdout)).toEqual(PLAIN_LINES);
  });
});

// ------------------------------------------------------ 3. the local demo

describe('local demo as a new user', () => {
  it("masks demo's card numbers and e-mails, shows demo-admin the database's values, and says so in the banner", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-demo-mask-'));
    const readyFile = join(dir, 'ready.json');
    const child = spawn(
      process.execPath,
      [WARDEN, 'start', '--data-dir', dir, '--ready-file', readyFile, '--gateway-port', '0', '--control-plane-port', '0', '--console-port', '0', '--tunnel-port', '0', '--demo-port', '0'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise((r) => child.once('exit', r));
    const clients: pg.Client[] = [];
    try {
      await eventually('warden start prints its banner', async () => existsSync(readyFile) && stdout.includes('Press Ctrl+C to stop.'), 90_000).catch((err) => {
        throw new Error(`${(err as Error).message}\n${stdout}\n${stderr}`);
      });
      const ready = JSON.parse(readFileSync(readyFile, 'utf8'));
      expect(ready.demoDatabase?.port, JSON.stringify(ready)).toBeGreaterThan(0);
      expect(stdout).toContain(
        "'demo' sees card numbers and e-mails masked (mask demo-pii on public.customers); 'demo-admin' is exempt and sees them in clear:\n  SELECT name, email, card_number FROM customers LIMIT 3;\n",
      );

      const token = async (sub: string) => {
        const r = await new Promise<string>((resolve, reject) => {
          const t = spawn(process.execPath, [WARDEN, 'token', '--sub', sub, '--data-dir', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
          let out = '';
          t.stdout!.on('data', (d) => (out += d));
          t.once('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`warden token exited ${code}`))));
        });
        return r;
      };
      const SQL = 'SELECT name, email, card_number FROM customers LIMIT 3';
      const received: Buffer[] = [];
      const run = async (user: string, viaGateway: boolean) => {
        const socket = new Socket();
        if (user === 'demo') socket.on('data', (d: Buffer) => received.push(d));
        const c = viaGateway
          ? new pg.Client({ host: ready.gateway.host, port: ready.gateway.port, user, database: ready.resource, password: await token(user), stream: () => socket })
          : new pg.Client({ host: ready.demoDatabase.host, port: ready.demoDatabase.port, user: 'postgres', database: 'postgres' });
        clients.push(c);
        await c.connect();
        const r = await c.query({ text: SQL, rowMode: 'array' });
        await c.end();
        return r.rows as string[][];
      };
      const clear = await run('postgres', false);
      expect(clear).toHaveLength(3);
      const admin = await run('demo-admin', true);
      expect(admin).toEqual(clear);
      const demo = await run('demo', true);
      expect(demo).toEqual(clear.map(([name, email, card]) => [name, `****${email!.slice(email!.indexOf('@'))}`, `${'*'.repeat(card!.length - 4)}${card!.slice(-4)}`]));
      for (const [, email, card] of demo) {
        expect(card).toMatch(/^\*{12}\d{4}$/);
        expect(email).toMatch(/^\*{4}@[a-z0-9.-]+$/);
      }
      const needles = clear.flatMap(([, email, card]) => [email!, email!.slice(0, email!.indexOf('@')), card!, card!.slice(0, 12)]);
      expect(leaks(Buffer.concat(received).toString('latin1'), needles)).toEqual([]);
    } finally {
      for (const c of clients) await c.end().catch(() => {});
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 150_000);
});

// ------------------------------------- 4 and 5. tables, wildcards, detectors

interface Case {
  name: string;
  sql: string;
  rows: Cell[][];
  /** Run the same rows as COPY (…) TO STDOUT csv. */
  copy?: string;
  /** What may not reach the client; default SECRETS. */
  needles?: readonly string[];
  who?: string;
}

const star = (n: number, tail: string) => `${'*'.repeat(n)}${tail}`;

/** Rows through text results, binary results and (when given) COPY csv: each must come back exactly masked, with no clear value in the bytes. */
function checkCases(cases: Case[]): void {
  for (const c of cases) {
    const who = c.who ?? 'masked';
    it(`${c.name}: text`, async () => {
      const r = await textRows(who, c.sql);
      expect(r.rows).toEqual(c.rows);
      expect(leaks(r.received, c.needles)).toEqual([]);
    });
    it(`${c.name}: binary`, async () => {
      const [r] = await rawSession(who, [{ sql: c.sql }]);
      expect(r!.error).toBeUndefined();
      expect(asText(r!)).toEqual(c.rows);
      expect(leaks(r!.received, c.needles)).toEqual([]);
    });
    if (c.copy) {
      it(`${c.name}: COPY csv`, async () => {
        const r = await copyRows(who, c.copy!);
        expect(csvRows(r.data)).toEqual(c.rows);
        expect(leaks(r.received, c.needles)).toEqual([]);
      });
    }
  }
}

describe('inheritance and partitions', () => {
  const LP = star(18, '31');
  const LC = star(18, '17');
  checkCases([
    { name: 'a mask on the parent, read through the parent', sql: 'select id, secret from legacy_parent order by id', rows: [['1', LP], ['2', LC]], copy: 'copy (select id, secret from legacy_parent order by id) to stdout with (format csv)' },
    { name: 'a mask on the parent, the child read directly', sql: 'select id, secret, extra from legacy_child', rows: [['2', LC, 'x']], copy: 'copy legacy_child to stdout with (format csv)' },
    { name: 'a mask on a child, the parent read', sql: 'select id, body from notes_parent order by id', rows: [['1', '[hidden]'], ['2', '[hidden]']], copy: 'copy (select id, body from notes_parent order by id) to stdout with (format csv)' },
    { name: 'a mask on a child, the child read', sql: 'select id, body from notes_child', rows: [['2', '[hidden]']], copy: 'copy notes_child to stdout with (format csv)' },
    {
      name: 'masks on a partitioned table and on a partition, the partitioned table read',
      sql: 'select id, region, card, iban from payments order by id',
      rows: [['1', 'eu', star(14, '3381'), '****'], ['2', 'us', star(14, '5106'), '****']],
      copy: 'copy (select id, region, card, iban from payments order by id) to stdout with (format csv)',
      needles: [...SECRETS, 'eu-iban-foxtrot', 'foxtrot-7720'],
    },
    {
      name: "the partitioned table's mask, a partition read directly",
      sql: 'select id, region, card, iban from payments_eu',
      // The iban mask names payments_us only: its sibling's ibans stay clear.
      rows: [['1', 'eu', star(14, '3381'), 'eu-iban-foxtrot-7720']],
      copy: 'copy payments_eu to stdout with (format csv)',
    },
    { name: "both masks, the masked partition read directly", sql: 'select id, region, card, iban from payments_us', rows: [['2', 'us', star(14, '5106'), '****']], copy: 'copy payments_us to stdout with (format csv)' },
  ]);
});

describe('wildcard column patterns', () => {
  /** HMAC of an ssn, as the first text read of people gives it. */
  let peopleHash = '';
  it('public.*.email and *.*.ssn mask people: equal ssns hash alike, NULL stays NULL', async () => {
    const r = await textRows('masked', 'select id, email, ssn from people order by id');
    expect(r.rows[0]![2]).toMatch(/^[0-9a-f]{32}$/);
    peopleHash = r.rows[0]![2]!;
    expect(r.rows).toEqual([['1', '****@postbox.example', peopleHash], ['2', null, peopleHash]]);
    expect(leaks(r.received)).toEqual([]);
  });
  it('the same in binary results and COPY csv, with the same hashes', async () => {
    const [b] = await rawSession('masked', [{ sql: 'select id, email, ssn from people order by id' }]);
    expect(asText(b!)).toEqual([['1', '****@postbox.example', peopleHash], ['2', null, peopleHash]]);
    const c = await copyRows('masked', 'copy people to stdout with (format csv)');
    expect(csvRows(c.data)).toEqual([['1', '****@postbox.example', peopleHash], ['2', null, peopleHash]]);
    expect(leaks(b!.received + c.received)).toEqual([]);
  });
  it("*.*.ssn reaches another schema's table; public.*.email does not", async () => {
    const t = await textRows('masked', 'select id, email, ssn from hr.staff');
    expect(t.rows).toEqual([['1', 'staff.clear.1@hr.example', expect.stringMatching(/^[0-9a-f]{32}$/)]]);
    const [b] = await rawSession('masked', [{ sql: 'select id, email, ssn from hr.staff' }]);
    expect(asText(b!)).toEqual(t.rows);
    const c = await copyRows('masked', 'copy hr.staff to stdout with (format csv)');
    expect(csvRows(c.data)).toEqual(t.rows);
    expect(leaks(t.received + b!.received + c.received)).toEqual([]);
  });
  it('cards under the wildcards: equal ssns of two customers hash alike, different ones do not', async () => {
    const r = await textRows('masked', 'select id, email, ssn from cards order by id');
    expect(r.rows.map((x) => x[1])).toEqual(['****@mailhub.example', '****@ledger.example', '****@ledger.example']);
    const [h1, h2, h3] = r.rows.map((x) => x[2]);
    expect(h1).toMatch(/^[0-9a-f]{32}$/);
    expect(h3).toBe(h1);
    expect(h2).not.toBe(h1);
    expect(leaks(r.received)).toEqual([]);
  });
});

describe('detectors over free text (detect-reader)', () => {
  const MEMOS: Cell[][] = [
    ['1', 'write to ****@quietpost.example today'],
    ['2', 'call *** ** **** **58 or (***) ***-**87'],
    ['3', 'pay to **** **** **** **** **30 00 now'],
    ['4', 'ssn on file XXX-XX-XXXX, ok'],
    ['5', 'badge EMP-###### and EMP-######'],
    ['6', 'nothing to see, 12-34'],
  ];
  checkCases([{ name: 'email, phone, iban, ssn and regex detectors', who: 'detect-reader', sql: 'select id, body from memos order by id', rows: MEMOS, copy: 'copy memos to stdout with (format csv)', needles: MEMO_SECRETS }]);
  checkCases([
    {
      name: 'the e-mail and ssn detectors over columns no column mask covers',
      who: 'detect-reader',
      sql: 'select email, ssn from cards where id = 1',
      rows: [['****@mailhub.example', 'XXX-XX-XXXX']],
      needles: [CARDS[0]!.email.slice(0, CARDS[0]!.email.indexOf('@')), CARDS[0]!.ssn],
    },
  ]);
  it('no detector runs for an identity under column masks only', async () => {
    const r = await textRows('masked', 'select body from memos where id = 4');
    expect(r.rows).toEqual([['ssn on file 287-65-4321, ok']]);
  });
});

// --------------------------------------------------------- 6. typed values

describe('non-text types under hash and redact', () => {
  const HASH_SQL = 'select id, ts, u, amount, doc, n from typed_h order by id';
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  let text: BinaryResult;
  let binary: BinaryResult;
  const textCells = (r: BinaryResult) => r.rows.map((row) => row.map((v) => (v === null ? null : v.toString('utf8'))));

  beforeAll(async () => {
    [text, binary] = await rawSession('masked', [{ sql: HASH_SQL, simple: true }, { sql: HASH_SQL }]);
  });

  it('hashes timestamptz, uuid, numeric, jsonb and int into valid text values of their types, equal for equal values', async () => {
    expect(text.error).toBeUndefined();
    const rows = textCells(text);
    expect(rows).toHaveLength(3);
    const parse = (oid: number, v: string | null) => (v === null ? null : pg.types.getTypeParser(oid, 'text')(v));
    for (const [id, ts, u, amount, doc, n] of rows) {
      const when = parse(1184, ts) as Date;
      expect(when instanceof Date && !Number.isNaN(when.getTime()), String(ts)).toBe(true);
      expect(when.getUTCFullYear()).toBeGreaterThanOrEqual(1900);
      expect(when.getUTCFullYear()).toBeLessThan(2100);
      expect(ts).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?\+00$/);
      expect(u).toMatch(UUID);
      expect(amount).toMatch(/^\d+$/);
      expect(typeof JSON.parse(doc!)).toBe('string');
      expect(JSON.parse(doc!)).toMatch(/^[0-9a-f]{32}$/);
      expect(Number(n)).toBeGreaterThanOrEqual(0);
      expect(Number(n)).toBeLessThanOrEqual(2 ** 31 - 1);
      expect(String(parse(23, n))).toBe(n);
      expect(id).toMatch(/^[123]$/);
    }
    // Row 3 holds row 1's values; row 2 others.
    expect(rows[2]!.slice(1)).toEqual(rows[0]!.slice(1));
    for (let i = 1; i <= 5; i++) expect(rows[1]![i]).not.toBe(rows[0]![i]);
    expect(leaks(text.received)).toEqual([]);
  });

  it('sends the hashed text values back to Postgres as parameters of their types', async () => {
    for (const [, ts, u, amount, doc, n] of textCells(text)) {
      await db.query("set timezone = 'UTC'");
      const r = await db.query('select $1::timestamptz::text as ts, $2::uuid::text as u, $3::numeric::text as amount, $4::jsonb::text as doc, $5::int::text as n', [ts, u, amount, doc, n]);
      expect(r.rows[0]).toEqual({ ts, u, amount, doc, n });
    }
  });

  it("gives hashed values that fit the columns' declared types (numeric(12,2)): a masked row can be stored in a copy of the table", async () => {
    await db.query('create table if not exists typed_h_copy (like public.typed_h)');
    try {
      for (const [id, ts, u, amount, doc, n] of textCells(text)) {
        await expect(db.query('insert into typed_h_copy values ($1, $2, $3, $4, $5, $6)', [id, ts, u, amount, doc, n]).then(() => 'stored')).resolves.toBe('stored');
      }
    } finally {
      await db.query('drop table typed_h_copy');
    }
  });

  it('hashes the same in binary results (TimeZone UTC): valid binary values, numeric NULL (no binary hash)', async () => {
    expect(binary.error).toBeUndefined();
    expect(binary.types).toEqual([23, 1184, 2950, 1700, 3802, 23]);
    const t = textCells(text);
    binary.rows.forEach((row, i) => {
      const [, ts, u, amount, doc, n] = row;
      expect(ts!.length).toBe(8);
      expect(ts!.readBigInt64BE(0)).toBe(microsOf(t[i]![1]!));
      expect(u!.toString('hex')).toBe(t[i]![2]!.replaceAll('-', ''));
      expect(amount).toBeNull();
      expect(doc![0]).toBe(1);
      expect(doc!.subarray(1).toString('utf8')).toBe(t[i]![4]);
      expect(String(n!.readInt32BE(0))).toBe(t[i]![5]);
    });
    expect(leaks(binary.received)).toEqual([]);
  });

  it('hashes alike in another session, text and binary', async () => {
    const [text2, binary2] = await rawSession('masked', [{ sql: HASH_SQL, simple: true }, { sql: HASH_SQL }]);
    expect(textCells(text2!)).toEqual(textCells(text));
    expect(binary2!.rows).toEqual(binary.rows);
    const c = await copyRows('masked', 'copy (select id, u, n from typed_h order by id) to stdout with (format csv)');
    expect(csvRows(c.data)).toEqual(textCells(text).map((r) => [r[0]!, r[2]!, r[5]!]));
    expect(leaks(text2!.received + binary2!.received + c.received)).toEqual([]);
  });

  it('redacts every column of typed_r (public.typed_r.*) to fixed values of the types, text and binary', async () => {
    const [t, b] = await rawSession('masked', [{ sql: 'select * from typed_r', simple: true }, { sql: 'select * from typed_r' }]);
    const REDACTED = ['1900-01-01 00:00:00+00', '00000000-0000-0000-0000-000000000000', '0', '"****"', '0'];
    expect(textCells(t!)).toEqual([REDACTED, REDACTED]);
    const DAY_1900 = -36_524n * 86_400_000_000n;
    for (const [ts, u, amount, doc, n] of b!.rows) {
      expect(ts!.readBigInt64BE(0)).toBe(DAY_1900);
      expect(u!.equals(Buffer.alloc(16))).toBe(true);
      expect(amount).toBeNull();
      expect(doc!.toString('latin1')).toBe('\u0001"****"');
      expect(n!.readInt32BE(0)).toBe(0);
    }
    expect(b!.rows).toHaveLength(2);
    const r = await db.query('select $1::timestamptz, $2::uuid, $3::numeric, $4::jsonb, $5::int', REDACTED);
    expect(r.rowCount).toBe(1);
    expect(leaks(t!.received + b!.received)).toEqual([]);
  });
});

// ---------------------------------------------- 8. a large result, read slowly

describe('a large masked result through pg-query-stream', () => {
  it('keeps the gateway RSS bounded and other sessions responsive', async () => {
    let tail = '';
    let leaked = false;
    const c = await connectPg('masked', {
      sink: (b) => {
        const s = tail + b.toString('latin1');
        if (s.includes('STREAMSECRET')) leaked = true;
        tail = s.slice(-16);
      },
    });
    const other = await connectPg('exempt');
    const rss = sampleRss({ gateway: stack.gatewayPid }, 50);
    const waits: number[] = [];
    let count = 0;
    let bad: string | undefined;
    try {
      const stream = c.client.query(new QueryStream('select id, payload from stream_rows', [], { batchSize: 500, rowMode: 'array' }));
      for await (const row of stream as AsyncIterable<[string, string]>) {
        count++;
        const [id, payload] = row;
        const want = star(178, createHash('md5').update(String(id)).digest('hex').slice(-4));
        if (payload !== want && !bad) bad = `row ${id}: ${payload}`;
        if (count % 10_000 === 0) {
          // Read slowly: the client stops reading for a while.
          await sleep(100);
          if (count % 50_000 === 0) {
            const t0 = Date.now();
            await other.client.query('select 1');
            waits.push(Date.now() - t0);
          }
        }
      }
    } finally {
      const report = rss.stop();
      await c.client.end().catch(() => {});
      await other.client.end().catch(() => {});
      console.log(describeRss('gateway', report.gateway), `select 1 waits (ms): ${waits.join(', ')}`);
      expect(report.gateway.peak, describeRss('gateway', report.gateway)).toBeLessThan(300 * MiB);
    }
    expect(bad).toBeUndefined();
    expect(count).toBe(300_000);
    expect(leaked).toBe(false);
    expect(waits).toHaveLength(6);
    for (const w of waits) expect(w).toBeLessThan(2000);
  }, 240_000);
});

describe('a large masked result read slowly off a paused socket', () => {
  it('keeps the gateway RSS bounded while the client reads a chunk at a time (simple protocol)', async () => {
    const c = await rawConnect('masked');
    const other = await connectPg('exempt');
    c.keepBulk = false;
    const rss = sampleRss({ gateway: stack.gatewayPid }, 50);
    const waits: number[] = [];
    let report: ReturnType<typeof rss.stop> | undefined;
    try {
      c.pause();
      c.send(serialize.query('select id, payload from stream_rows'));
      // Until the query's ReadyForQuery (the first one came after the startup).
      for (let chunks = 1; (c.counts.readyForQuery ?? 0) < 2; chunks++) {
        await c.readChunk();
        if (chunks % 5 === 0) await sleep(10);
        if (chunks % 300 === 0) {
          const t0 = Date.now();
          await other.client.query('select 1');
          waits.push(Date.now() - t0);
        }
      }
    } finally {
      report = rss.stop();
      await c.end().catch(() => {});
      await other.client.end().catch(() => {});
      console.log(describeRss('gateway', report.gateway), `select 1 waits (ms): ${waits.join(', ')}`);
    }
    expect(c.counts.dataRow).toBe(300_000);
    expect(c.counts.error).toBeUndefined();
    expect(report!.gateway.peak, describeRss('gateway', report!.gateway)).toBeLessThan(300 * MiB);
    expect(waits.length).toBeGreaterThan(0);
    for (const w of waits) expect(w).toBeLessThan(2000);
  }, 240_000);
});

// ------------------------------------------- 7. policy changes mid-session

describe('a policy change during an open session', () => {
  const policy = parseYaml(readFileSync(POLICY, 'utf8'));
  const dir = mkdtempSync(join(tmpdir(), 'warden-more-policy-'));
  const write = (name: string, doc: unknown) => {
    const f = join(dir, name);
    writeFileSync(f, stringifyYaml(doc));
    return f;
  };

  afterAll(async () => {
    await applyPolicy(POLICY);
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps the session when the masks stay the same, ends it with 42501 when they change', async () => {
    const changer = await connectPg('changer');
    const exempt = await connectPg('exempt');
    const detect = await connectPg('detect-reader');
    expect(await queryRows(changer, 'select card_number from cards where id = 1')).toEqual([[MASKED_CARD_1]]);

    // A new identity and rule: no mask changes for anyone.
    const same = structuredClone(policy);
    same.identities.push({ name: 'newcomer', issuer: 'local-dev', match: { sub: 'newcomer' } });
    same.rules[0].identities.push('newcomer');
    await applyPolicy(write('same-masks.yaml', same));
    await eventually('newcomer may connect', async () => (await textRows('newcomer', 'select 1')).rows.length === 1);
    expect(await queryRows(changer, 'select card_number from cards where id = 2')).toEqual([['************4401']]);
    expect(changer.errors).toEqual([]);

    // One more masked column under more-cols: changer's masks change; exempt and detect-reader's do not.
    const changed = structuredClone(same);
    changed.masks[0].columns.push({ column: 'public.cards.holder', mask: 'redact' });
    await applyPolicy(write('changed-masks.yaml', changed));
    let failure: { code?: string; message: string } | undefined;
    await eventually('the session is ended', async () => {
      if (changer.errors.length) failure = changer.errors[0] as typeof failure;
      else await changer.client.query('select 1').catch((e) => (failure = e));
      return failure !== undefined;
    });
    expect(failure?.code).toBe('42501');
    expect(failure?.message).toBe("warden: the masks on changer's results on more changed; the session was ended, so reconnect to continue under them");

    // A new session is under the new masks; sessions whose masks did not change go on.
    await eventually('a new session sees the holder redacted', async () => (await textRows('changer', 'select holder from cards where id = 1')).rows[0]?.[0] === '****');
    expect(await queryRows(exempt, 'select card_number from cards where id = 1')).toEqual([[CARDS[0]!.card]]);
    expect(await queryRows(detect, 'select body from memos where id = 4')).toEqual([['ssn on file XXX-XX-XXXX, ok']]);
    expect(exempt.errors).toEqual([]);
    expect(detect.errors).toEqual([]);
    await exempt.client.end();
    await detect.client.end();
    await changer.client.end().catch(() => {});
  }, 90_000);
});
