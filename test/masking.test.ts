// Issue 12, end to end: results are masked by the gateway, whatever the
// shape of the query and whatever the client. The fixture
// (test/fixtures/masking.sql) holds customers with Luhn-valid card numbers,
// e-mails, SSNs and birth dates; the policy (test/fixtures/masking-policy.yaml)
// masks them for everyone but clear-reader (exempt by name) and group-clear
// (exempt by group). masked-reader and masked-writer are refused predicates
// over masked columns; predicate-reader may use them.
//
// Each route runs through psql, node-postgres in the simple protocol and in
// the extended protocol (text results), and a raw client in the extended
// protocol asking for binary results; COPY through pg-copy-streams and psql.
// Straight against Postgres, each route gives the clear values: an exempt
// identity must get exactly that; a masked one must get the same rows with
// each masked column masked (partial, email, hash, redact) or a refusal
// (42501, naming the column). Every byte a masked identity's client received
// (rows, binary fields, COPY data, notices, errors with their detail, hint
// and context) is searched for the clear values and recognisable parts of
// them: one found is a leak, and the test fails.
import { Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import { to as copyTo } from 'pg-copy-streams';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient, dataRowValues, serialize, type Message } from './support/raw-client.js';
import { createDatabase, logs, ROOT, sh, startStack, type Stack, type TestDatabase } from './support/stack.js';

const RESOURCE = 'masking';
const FIXTURE = join(ROOT, 'test/fixtures/masking.sql');
const POLICY = join(ROOT, 'test/fixtures/masking-policy.yaml');

// ---------------------------------------------------------------- the data

interface Customer {
  id: number;
  card: string | null;
  email: string;
  ssn: string;
  birth: string | null;
}

/** As in the fixture. */
const CUSTOMERS: Customer[] = [
  { id: 1, card: '4539148803436467', email: 'zq.alice.7731@example.com', ssn: '512-38-4471', birth: '1987-03-14' },
  { id: 2, card: '5425233430109903', email: 'bruno.k.5518@example.com', ssn: '623-71-0095', birth: '1991-11-02' },
  { id: 3, card: '4916720588133700', email: 'chiara_v42@example.org', ssn: '408-52-1937', birth: '1975-06-29' },
  { id: 4, card: '378282246310005', email: 'dmitri.pavlov.1960@example.com', ssn: '315-67-2280', birth: '1998-12-08' },
  { id: 5, card: '6011639502744179', email: 'eunji.seo.88@example.com', ssn: '623-71-0095', birth: '1969-07-20' },
  { id: 6, card: null, email: 'gus.nocard.6@example.com', ssn: '401-23-5555', birth: null },
];
/** A card found only in the free-text notes of tickets. */
const NOTE_CARD = '4929381705541625';

const daysSince2000 = (date: string) => (Date.parse(`${date}T00:00:00Z`) - Date.parse('2000-01-01T00:00:00Z')) / 86_400_000;
const int32be = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b.toString('latin1');
};

function cardNeedles(card: string): string[] {
  const first12 = card.slice(0, 12);
  return [card, first12, card.slice(4, 12), `${card.slice(0, 4)} ${card.slice(4, 8)} ${card.slice(8, 12)}`, `${card.slice(0, 4)}-${card.slice(4, 8)}-${card.slice(8, 12)}`];
}

/** What must never reach a masked identity's client: each clear value and the parts of it that tell it. */
const NEEDLES: Array<{ needle: string; what: string }> = [];
for (const c of CUSTOMERS) {
  if (c.card) for (const n of cardNeedles(c.card)) NEEDLES.push({ needle: n, what: `card of customer ${c.id} (${n})` });
  NEEDLES.push({ needle: c.email, what: `e-mail of customer ${c.id}` });
  NEEDLES.push({ needle: c.email.slice(0, c.email.indexOf('@')), what: `e-mail local part of customer ${c.id}` });
  NEEDLES.push({ needle: c.ssn, what: `ssn of customer ${c.id}` });
  NEEDLES.push({ needle: c.ssn.replaceAll('-', ''), what: `ssn digits of customer ${c.id}` });
  if (c.birth) {
    NEEDLES.push({ needle: c.birth, what: `birth date of customer ${c.id}` });
    NEEDLES.push({ needle: int32be(daysSince2000(c.birth)), what: `birth date of customer ${c.id}, binary` });
  }
}
for (const n of cardNeedles(NOTE_CARD)) NEEDLES.push({ needle: n, what: `card in a ticket's notes (${n})` });

/** The clear values (or parts) found in what a client received. */
function leaksIn(received: string): string[] {
  // Case-insensitive: upper(email) tells the e-mail as well.
  const haystack = received.toLowerCase();
  return NEEDLES.filter((n) => haystack.includes(n.needle.toLowerCase())).map((n) => n.what);
}

// ------------------------------------------------------------ expectations

/** How an output column is expected to come back to a masked identity. */
type Kind =
  | '-' // clear: not masked
  | 'card' // partial, keep 4
  | 'email' // ****@domain
  | 'ssn' // HMAC, 32 hex digits, equal for equal values
  | 'date' // redact: 1900-01-01
  | 'notes'; // the card detector over free text

const NOTES_MASKED: Record<string, string> = {
  'Customer called, card 4929 3817 0554 1625 expires soon': 'Customer called, card **** **** **** 1625 expires soon',
  'Refund to 4539-1488-0343-6467 approved': 'Refund to ****-****-****-6467 approved',
  'Not a card: 1234 5678 9012 3456, order 77': 'Not a card: 1234 5678 9012 3456, order 77',
  'No number here': 'No number here',
  'paid with 4929381705541625': 'paid with ************1625',
};

type Cell = string | null;
/** A binary value the test does not decode (records, arrays): matches anything. */
const UNDECODED = '\u0000undecoded';

function maskExpected(v: Cell, kind: Kind): Cell {
  if (v === null) return null;
  switch (kind) {
    case '-':
      return v;
    case 'card':
      return '*'.repeat(Math.max(0, [...v].length - 4)) + v.slice(-4);
    case 'email':
      return `****${v.slice(v.lastIndexOf('@'))}`;
    case 'ssn':
      return `hash(${v})`;
    case 'date':
      return '1900-01-01';
    case 'notes':
      return NOTES_MASKED[v] ?? `(no expected mask for ${v})`;
  }
}

/** Every hash seen, both ways: a clear value always hashes to the same, and two values never to one. */
const hashOf = new Map<string, string>();
const clearOf = new Map<string, string>();
const HEX32 = /^[0-9a-f]{32}$/;

/** A hashed cell as `hash(<clear>)`, once it is known which clear value it hashes (from `clear`, or from an earlier test). */
function hashToken(actual: Cell, clear: Cell | undefined): Cell {
  if (actual === null || actual === UNDECODED) return actual;
  if (!HEX32.test(actual)) return `not a hash: ${actual}`;
  if (clear !== undefined && clear !== null) {
    const before = hashOf.get(clear);
    if (before !== undefined && before !== actual) return `hash of ${clear} changed: ${before} then ${actual}`;
    const other = clearOf.get(actual);
    if (other !== undefined && other !== clear) return `${clear} and ${other} hash alike: ${actual}`;
    hashOf.set(clear, actual);
    clearOf.set(actual, clear);
    return `hash(${clear})`;
  }
  const known = clearOf.get(actual);
  return known ? `hash(${known})` : `unknown hash ${actual}`;
}

/** The rows a masked identity must see, and what it saw, made comparable. */
function comparable(direct: Cell[][], actual: Cell[][], kinds: Kind[], unordered: boolean): { expected: Cell[][]; actual: Cell[][] } {
  const expected = direct.map((r) => r.map((v, i) => maskExpected(v, kinds[i] ?? '-')));
  const got = actual.map((r, j) =>
    r.map((v, i) => {
      if (v === UNDECODED) return expected[j]?.[i] ?? v;
      return kinds[i] === 'ssn' ? hashToken(v, unordered ? undefined : direct[j]?.[i]) : v;
    }),
  );
  if (!unordered) return { expected, actual: got };
  const sort = (rows: Cell[][]) => rows.map((r) => JSON.stringify(r)).sort();
  return { expected: sort(expected).map((s) => JSON.parse(s)), actual: sort(got).map((s) => JSON.parse(s)) };
}

// ---------------------------------------------------------------- clients

type Who = 'masked-reader' | 'masked-writer' | 'masked-owner' | 'predicate-reader' | 'column-reader' | 'clear-reader' | 'group-clear';
/** psql; node-postgres simple; node-postgres extended, text results; raw extended protocol, binary results; raw simple protocol. */
type Proto = 'psql' | 'simple' | 'extended' | 'binary' | 'raw-simple';

interface Failure {
  code: string;
  message: string;
  /** Every field of the error, for the reader of a failed assertion. */
  fields: string;
}

interface Outcome {
  /** Rows of every statement, in order, each value as text (binary ones decoded). */
  rows: Cell[][];
  error?: Failure;
  notices: string[];
  /** Everything the client received after the startup, as latin1 text, for the leak search. */
  received: string;
}

let db: TestDatabase;
let stack: Stack;

/** node-postgres hands every value over as the server sent it. */
const RAW_TYPES = { getTypeParser: () => (v: unknown) => v } as unknown as pg.CustomTypesConfig;

function pgError(err: unknown): Failure {
  const e = err as Record<string, unknown>;
  return { code: String(e.code), message: String(e.message), fields: JSON.stringify({ ...e, message: e.message }) };
}

async function pgClient(who: Who | 'direct'): Promise<{ client: pg.Client; notices: string[]; received: Buffer[] }> {
  const received: Buffer[] = [];
  const socket = new Socket();
  // Recorded as emitted: pg-copy-streams insists on being the socket's only 'data' listener.
  const emit = socket.emit.bind(socket);
  socket.emit = ((event: string | symbol, ...args: unknown[]) => {
    if (event === 'data') received.push(args[0] as Buffer);
    return emit(event, ...args);
  }) as typeof socket.emit;
  const client =
    who === 'direct'
      ? new pg.Client({ connectionString: db.url, types: RAW_TYPES })
      : new pg.Client({ host: stack.host, port: stack.port, user: who, database: RESOURCE, password: await stack.token(who), types: RAW_TYPES, stream: () => socket });
  const notices: string[] = [];
  client.on('notice', (n) => notices.push(JSON.stringify({ ...n, message: n.message })));
  client.on('error', () => {});
  await client.connect();
  received.length = 0;
  return { client, notices, received };
}

const cellOf = (v: unknown): Cell => (v === null || v === undefined ? null : Buffer.isBuffer(v) ? v.toString('utf8') : String(v));

interface RunOptions {
  /** Parameters, for the extended protocol. */
  params?: unknown[];
  /** Run every statement even after an error (each error kept in `errors`). */
  keepGoing?: boolean;
}

async function runPg(who: Who | 'direct', mode: 'simple' | 'extended', statements: string[], opts: RunOptions = {}): Promise<Outcome & { errors: Array<Failure | undefined> }> {
  const { client, notices, received } = await pgClient(who);
  const out: Outcome & { errors: Array<Failure | undefined> } = { rows: [], notices, received: '', errors: [] };
  try {
    for (const sql of statements) {
      try {
        const config: pg.QueryConfig & { queryMode?: string } = { text: sql, rowMode: 'array' } as pg.QueryConfig;
        if (mode === 'extended') {
          config.queryMode = 'extended';
          if (opts.params && /\$1/.test(sql)) config.values = opts.params;
        }
        const r = await client.query(config as pg.QueryArrayConfig);
        for (const res of Array.isArray(r) ? r : [r]) for (const row of (res as pg.QueryArrayResult).rows ?? []) out.rows.push(row.map(cellOf));
        out.errors.push(undefined);
      } catch (err) {
        out.error ??= pgError(err);
        out.errors.push(pgError(err));
        if (!opts.keepGoing) break;
      }
    }
  } finally {
    await client.end().catch(() => {});
    out.received = Buffer.concat(received).toString('latin1');
  }
  return out;
}

const TEXT_LIKE = new Set([25, 1043, 1042, 19, 18, 705, 114, 3802]);

function decodeNumeric(b: Buffer): string {
  const ndigits = b.readInt16BE(0);
  const weight = b.readInt16BE(2);
  const sign = b.readUInt16BE(4);
  const dscale = b.readInt16BE(6);
  if (sign === 0xc000) return 'NaN';
  const digit = (i: number) => (i >= 0 && i < ndigits ? b.readInt16BE(8 + 2 * i) : 0);
  let int = '';
  for (let i = 0; i <= weight; i++) int += i === 0 ? String(digit(i)) : String(digit(i)).padStart(4, '0');
  if (weight < 0) int = '0';
  let frac = '';
  for (let i = weight + 1; frac.length < dscale; i++) frac += String(digit(i)).padStart(4, '0');
  return `${sign === 0x4000 ? '-' : ''}${int}${dscale > 0 ? `.${frac.slice(0, dscale)}` : ''}`;
}

/** A binary value as the text Postgres prints for it, for the types of the fixture. */
function decodeBinary(b: Buffer, type: number): Cell {
  if (type === 3802) return b.subarray(1).toString('utf8');
  if (TEXT_LIKE.has(type)) return b.toString('utf8');
  switch (type) {
    case 16:
      return b[0] ? 't' : 'f';
    case 21:
      return String(b.readInt16BE(0));
    case 23:
    case 26:
      return String(type === 26 ? b.readUInt32BE(0) : b.readInt32BE(0));
    case 20:
      return String(b.readBigInt64BE(0));
    case 1082: {
      const days = b.readInt32BE(0);
      return new Date(Date.UTC(2000, 0, 1) + days * 86_400_000).toISOString().slice(0, 10);
    }
    case 1700:
      return decodeNumeric(b);
    default:
      return UNDECODED;
  }
}

function outcomeOf(messages: Message[]): Outcome {
  const out: Outcome = { rows: [], notices: [], received: messages.map((m) => m.raw.toString('latin1')).join('') };
  let fields: Array<{ dataTypeID: number; format: string }> = [];
  for (const m of messages) {
    if (m.name === 'rowDescription') fields = m.fields as typeof fields;
    else if (m.name === 'dataRow') {
      out.rows.push(dataRowValues(m).map((v, i) => (v === null ? null : fields[i]?.format === 'binary' ? decodeBinary(v, fields[i]!.dataTypeID) : v.toString('utf8'))));
    } else if (m.name === 'error') {
      const { raw: _raw, ...rest } = m;
      out.error ??= { code: String(m.code), message: String(m.message), fields: JSON.stringify(rest) };
    } else if (m.name === 'notice') {
      const { raw: _raw, ...rest } = m;
      out.notices.push(JSON.stringify(rest));
    }
  }
  return out;
}

async function rawClient(who: Who): Promise<RawClient> {
  return RawClient.connect({ host: stack.host, port: stack.port, user: who, database: RESOURCE, password: await stack.token(who) });
}

/** The raw client: each statement alone, in the simple protocol, or in the extended one asking for binary results. */
async function runRaw(who: Who, mode: 'binary' | 'raw-simple', statements: string[], opts: RunOptions = {}): Promise<Outcome> {
  const c = await rawClient(who);
  const messages: Message[] = [];
  try {
    for (const sql of statements) {
      if (mode === 'raw-simple') c.send(serialize.query(sql));
      else {
        const values = opts.params && /\$1/.test(sql) ? (opts.params as string[]).map(String) : [];
        c.send(serialize.parse({ text: sql }), serialize.bind({ binary: true, values }), serialize.describe({ type: 'P' }), serialize.execute(), serialize.sync());
      }
      const got = await c.until('readyForQuery');
      messages.push(...got);
      if (got.some((m) => m.name === 'error') && !opts.keepGoing) break;
    }
  } finally {
    await c.end().catch(() => {});
  }
  return outcomeOf(messages);
}

/** psql lines that only repeat the client's own statement (LINE n: … and its caret). */
function withoutEcho(stderr: string): string {
  const lines = stderr.split('\n');
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (/^LINE \d+: /.test(lines[i]!)) {
      i++; // the caret line
      continue;
    }
    out.push(lines[i]!);
  }
  return out.join('\n');
}

const PSQL_NULL = '<NULL>';

async function runPsql(who: Who, statements: string[], extra: string[] = []): Promise<Outcome & { stdout: string }> {
  const args = [stack.conninfo({ user: who }), '-X', '-q', '-A', '-t', '-F', '|', '-P', `null=${PSQL_NULL}`, '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose', ...extra];
  for (const s of statements) args.push('-c', s);
  const r = await sh('psql', args, { PGPASSWORD: await stack.token(who), PGCONNECT_TIMEOUT: '10' }, 60_000);
  const stderr = withoutEcho(r.stderr);
  const out: Outcome & { stdout: string } = { rows: [], notices: [], received: r.stdout + stderr, stdout: r.stdout };
  for (const line of r.stdout.split('\n')) if (line !== '') out.rows.push(line.split('|').map((v) => (v === PSQL_NULL ? null : v)));
  const e = /(?:^|\n)(?:psql:[^\n]*?: )?(?:ERROR|FATAL):\s+([0-9A-Z]{5}): ([^\n]*)/.exec(stderr);
  if (e) out.error = { code: e[1]!, message: e[2]!, fields: stderr };
  else if (r.code !== 0) out.error = { code: `psql exit ${r.code}`, message: stderr, fields: stderr };
  out.notices = stderr.split('\n').filter((l) => /^(NOTICE|WARNING|INFO):/.test(l));
  return out;
}

/** psql straight against Postgres, with the same options. */
async function psqlDirect(statements: string[]): Promise<string> {
  const args = [db.url, '-X', '-q', '-A', '-t', '-F', '|', '-P', `null=${PSQL_NULL}`, '-v', 'ON_ERROR_STOP=1'];
  for (const s of statements) args.push('-c', s);
  return (await sh('psql', args, {}, 60_000)).stdout;
}

async function run(who: Who, proto: Proto, statements: string[], opts: RunOptions = {}): Promise<Outcome> {
  switch (proto) {
    case 'psql':
      return runPsql(who, statements);
    case 'simple':
    case 'extended':
      return runPg(who, proto, statements, opts);
    case 'binary':
    case 'raw-simple':
      return runRaw(who, proto, statements, opts);
  }
}

/** The same statements straight against Postgres, in text. */
async function direct(statements: string[], opts: RunOptions = {}): Promise<Outcome> {
  const mode = opts.params ? 'extended' : 'simple';
  return runPg('direct', mode, statements, opts);
}

/** What a failed assertion shows: everything that came back. */
function show(o: Outcome): string {
  return JSON.stringify({ rows: o.rows, error: o.error, notices: o.notices }, null, 1);
}

function expectNoLeak(o: Outcome, also = ''): void {
  expect(leaksIn(o.received + also + JSON.stringify(o.rows) + (o.error?.fields ?? '') + o.notices.join('\n')), show(o)).toEqual([]);
}

function expectRefused(o: Outcome, names: string | RegExp): void {
  expect(o.error?.code, show(o)).toBe('42501');
  expect(o.error!.message, show(o)).toMatch(/warden: /);
  if (typeof names === 'string') expect(o.error!.message, show(o)).toContain(names);
  else expect(o.error!.message, show(o)).toMatch(names);
}

async function untilConnects(who: Who): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const r = await runPg(who, 'simple', ['select 1']);
      if (!r.error) return;
      throw new Error(r.error.message);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

// ------------------------------------------------------------------ setup

beforeAll(async () => {
  db = await createDatabase('warden_masking');
  try {
    await db.query(readFileSync(FIXTURE, 'utf8'));
    stack = await startStack({ upstream: db.url, resource: RESOURCE });
    const applied = await stack.cli('policy', 'apply', '-f', POLICY);
    if (applied.code !== 0) throw new Error(`policy apply failed (${applied.code}): ${applied.stderr}${applied.stdout}`);
    for (const who of ['masked-reader', 'masked-writer', 'masked-owner', 'predicate-reader', 'column-reader', 'clear-reader', 'group-clear'] as const) await untilConnects(who);
    // The masks come with the same policy version as the identities, and masking needs the resource's
    // catalog, which the gateway reads shortly after: wait (a while at most) until a masked row comes back.
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const r = await runPg('masked-reader', 'simple', ['select card_number from customers where id = 1']);
      if (r.rows[0]?.[0] === '************6467') break;
      await new Promise((res) => setTimeout(res, 250));
    }
  } catch (err) {
    if (stack) console.error(logs(stack.dataDir));
    await stack?.stop();
    await db.drop();
    throw err;
  }
});

afterAll(async () => {
  await stack?.stop();
  await db?.drop();
});

// ----------------------------------------------------------------- routes

interface Route {
  name: string;
  /** Statements, each its own query string, run in order in one session. */
  sql: string[];
  /** Allowed: the mask expected on each output column. */
  out?: Kind[];
  /** Refused for every masked identity, the message naming this. */
  refuse?: string | RegExp;
  /** A predicate over this masked column: refused for masked-reader and masked-writer, allowed (masked as `out`) for predicate-reader. */
  predicate?: string;
  /** Rows in no defined order. */
  unordered?: boolean;
  /** Default: psql, simple, extended, binary. */
  protocols?: Proto[];
  params?: unknown[];
  /** Straight against Postgres the statements fail with this SQLSTATE (an exempt identity gets the same error). */
  directError?: string;
  /** What to run straight against Postgres instead, for the reference rows (a BINARY cursor's rows, read in text). */
  directSql?: string[];
}

const ALL: Proto[] = ['psql', 'simple', 'extended', 'binary'];
const CUSTOMER_STAR: Kind[] = ['-', '-', 'card', 'email', 'ssn', 'date', '-'];

/** Reads: masked-reader, predicate-reader, clear-reader. */
const READS: Route[] = [
  // Plain references, masked in place.
  { name: 'plain columns', sql: ['select id, name, card_number, email, ssn, birth_date from customers order by id'], out: ['-', '-', 'card', 'email', 'ssn', 'date'] },
  { name: 'aliases', sql: ['select c.id, c.card_number as "Card", c.email as e, c.birth_date as born from customers as c order by c.id'], out: ['-', 'card', 'email', 'date'] },
  { name: 'quoted and qualified names', sql: ['select "customers"."card_number", public.customers.email from "public"."customers" order by id'], out: ['card', 'email'] },
  { name: 'the same column twice', sql: ['select card_number, card_number as again, id from customers order by id'], out: ['card', 'card', '-'] },
  { name: 'a subquery', sql: ['select s.id, s.cc from (select id, card_number as cc from customers) s order by s.id'], out: ['-', 'card'] },
  { name: 'a subquery with column aliases', sql: ['select y, x from (select card_number, id from customers) s(x, y) order by y'], out: ['-', 'card'] },
  { name: 'nested subqueries', sql: ['select cc, mail from (select cc, mail, id from (select card_number as cc, email as mail, id from customers) a) b order by id'], out: ['card', 'email'] },
  { name: 'a CTE', sql: ['with c as (select id, card_number as cc, email from customers) select id, cc, email from c order by id'], out: ['-', 'card', 'email'] },
  { name: 'CTEs over CTEs, materialized', sql: ['with a as materialized (select id, ssn from customers), b as (select * from a) select id, ssn from b order by id'], out: ['-', 'ssn'] },
  {
    name: 'a recursive CTE',
    sql: ['with recursive r(id, cc) as (select id, card_number from customers where id = 1 union all select c.id, c.card_number from customers c join r on c.id = r.id + 1) select id, cc from r order by id'],
    out: ['-', 'card'],
  },
  { name: 'a view, direct columns', sql: ['select id, card_number, email, birth_date from customer_cards order by id'], out: ['-', 'card', 'email', 'date'] },
  { name: "a view's clear column", sql: ['select id, name from customer_cards order by id'], out: ['-', '-'] },
  { name: "a view's computed column", sql: ['select email_upper from customer_cards'], refuse: 'public.customers.email' },
  { name: 'SELECT * from a view with a computed column', sql: ['select * from customer_cards order by id'], refuse: 'public.customers.email' },
  { name: 'a view over a view', sql: ['select id, cc, mail from customer_cards_v2 order by id'], out: ['-', 'card', 'email'] },
  { name: 'SELECT *', sql: ['select * from customers order by id'], out: CUSTOMER_STAR },
  { name: 'SELECT c.*', sql: ['select c.* from customers c order by c.id'], out: CUSTOMER_STAR },
  { name: 'TABLE customers', sql: ['table customers'], out: CUSTOMER_STAR, unordered: true },
  { name: 'a join on clear columns', sql: ['select o.id, c.card_number, o.amount from orders o join customers c on c.id = o.customer_id order by o.id'], out: ['-', 'card', '-'] },
  { name: 'a scalar subquery', sql: ['select id, (select c2.card_number from customers c2 where c2.id = c.id) as cc from customers c order by id'], out: ['-', 'card'] },
  { name: 'a scalar subquery over another table', sql: ['select o.id, (select email from customers c where c.id = o.customer_id) from orders o order by o.id'], out: ['-', 'email'] },
  { name: 'LATERAL', sql: ['select c.id, x.cc from customers c cross join lateral (select c.card_number as cc) x order by c.id'], out: ['-', 'card'] },
  { name: 'UNION ALL', sql: ['select id, card_number from customers where id <= 2 union all select id, card_number from customers where id >= 4 order by id'], out: ['-', 'card'] },
  { name: 'a cast to text', sql: ['select card_number::text, email::text from customers order by id'], out: ['card', 'email'] },
  { name: 'a cast to varchar', sql: ['select card_number::varchar, cast(email as varchar) from customers order by id'], out: ['card', 'email'] },
  // varchar(n) truncates before the mask applies: 'keep the last 4' would keep characters of a cut value, so it is refused.
  { name: 'a cast to varchar(n)', sql: ['select email::varchar(64) from customers order by id'], refuse: 'public.customers.email' },
  { name: 'a parameter', sql: ['select id, card_number, birth_date from customers where id = $1'], params: [1], out: ['-', 'card', 'date'], protocols: ['extended', 'binary'] },
  { name: 'no masked column', sql: ['select tier, count(*) from customers group by tier order by tier'], out: ['-', '-'] },
  { name: 'a card in free text (detector)', sql: ['select id, notes from tickets order by id'], out: ['-', 'notes'] },
  { name: "a card in the client's own literal (detector)", sql: ["select 'paid with 4929381705541625' as x"], out: ['notes'] },

  // Expressions over masked columns: refused.
  { name: 'upper()', sql: ['select upper(email) from customers'], refuse: 'public.customers.email' },
  { name: '|| on the right', sql: ["select card_number || '' from customers"], refuse: 'public.customers.card_number' },
  { name: '|| on the left', sql: ["select 'card: ' || card_number from customers"], refuse: 'public.customers.card_number' },
  { name: 'substring()', sql: ['select substring(card_number from 1 for 12) from customers'], refuse: 'public.customers.card_number' },
  { name: 'substr()', sql: ['select substr(card_number, 5, 8) from customers'], refuse: 'public.customers.card_number' },
  { name: 'left()', sql: ['select left(card_number, 12) from customers'], refuse: 'public.customers.card_number' },
  { name: 'format()', sql: ["select format('%s', card_number) from customers"], refuse: 'public.customers.card_number' },
  { name: 'to_json()', sql: ['select to_json(card_number) from customers'], refuse: 'public.customers.card_number' },
  { name: 'to_jsonb()', sql: ['select to_jsonb(email) from customers'], refuse: 'public.customers.email' },
  { name: 'md5()', sql: ['select md5(card_number) from customers'], refuse: 'public.customers.card_number' },
  { name: 'length()', sql: ['select length(card_number) from customers'], refuse: 'public.customers.card_number' },
  { name: 'coalesce()', sql: ["select coalesce(card_number, 'none') from customers"], refuse: 'public.customers.card_number' },
  { name: 'CASE', sql: ["select case when card_number like '4%' then 'visa' else 'other' end from customers"], refuse: 'public.customers.card_number' },
  { name: 'a cast to bigint', sql: ['select card_number::bigint from customers where id = 1'], refuse: 'public.customers.card_number' },
  { name: 'a cast to numeric', sql: ['select card_number::numeric from customers'], refuse: 'public.customers.card_number' },
  // Straight against Postgres, this one fails with the value in the message: invalid input syntax for type integer: "512-38-4471".
  { name: 'a failing cast to int (the error would tell the value)', sql: ['select ssn::int from customers'], refuse: 'public.customers.ssn', directError: '22P02' },
  { name: 'a cast to int of digits', sql: ['select left(ssn, 3)::int from customers'], refuse: 'public.customers.ssn' },
  { name: 'extract() on a date', sql: ['select extract(year from birth_date) from customers'], refuse: 'public.customers.birth_date' },
  { name: 'date arithmetic', sql: ['select birth_date + 1 from customers'], refuse: 'public.customers.birth_date' },
  { name: 'to_char() on a date', sql: ["select to_char(birth_date, 'YYYY') from customers"], refuse: 'public.customers.birth_date' },
  { name: 'a whole-row reference', sql: ['select c from customers c'], refuse: /public\.customers\.(card_number|email|ssn|birth_date)/ },
  { name: 'a whole row cast to text', sql: ['select c::text from customers c'], refuse: /public\.customers\.(card_number|email|ssn|birth_date)/ },
  { name: 'a whole row in format()', sql: ["select format('%s', c) from customers c"], refuse: /public\.customers\.(card_number|email|ssn|birth_date)/ },
  { name: 'row_to_json()', sql: ['select row_to_json(c) from customers c'], refuse: /public\.customers\.(card_number|email|ssn|birth_date)/ },
  { name: 'to_json() of a row', sql: ['select to_json(c) from customers c'], refuse: /public\.customers\.(card_number|email|ssn|birth_date)/ },
  { name: 'json_agg() of rows', sql: ['select json_agg(c) from customers c'], refuse: /public\.customers\.(card_number|email|ssn|birth_date)/ },
  { name: 'json_agg() of a column', sql: ['select json_agg(card_number) from customers'], refuse: 'public.customers.card_number' },
  { name: 'jsonb_build_object()', sql: ["select jsonb_build_object('card', card_number) from customers"], refuse: 'public.customers.card_number' },
  { name: 'array_agg()', sql: ['select array_agg(card_number) from customers'], refuse: 'public.customers.card_number' },
  { name: 'string_agg()', sql: ["select string_agg(email, ',') from customers"], refuse: 'public.customers.email' },
  { name: 'an ARRAY constructor', sql: ['select array[card_number] from customers'], refuse: 'public.customers.card_number' },
  { name: 'a ROW constructor', sql: ['select row(id, card_number) from customers'], refuse: 'public.customers.card_number' },
  { name: 'min()', sql: ['select min(card_number) from customers'], refuse: 'public.customers.card_number' },
  { name: 'max() of a date', sql: ['select max(birth_date) from customers'], refuse: 'public.customers.birth_date' },
  { name: 'count(DISTINCT)', sql: ['select count(distinct card_number) from customers'], refuse: 'public.customers.card_number' },
  { name: 'a scalar subquery of an aggregate', sql: ['select (select max(card_number) from customers)'], refuse: 'public.customers.card_number' },
  { name: 'UNION ALL with an expression in one branch', sql: ['select id, card_number from customers union all select id, upper(email) from customers'], refuse: 'public.customers.email' },
  { name: 'quote_literal()', sql: ['select quote_literal(card_number) from customers'], refuse: 'public.customers.card_number' },
  { name: 'encode() of the bytes', sql: ["select encode(convert_to(email, 'UTF8'), 'base64') from customers"], refuse: 'public.customers.email' },
  { name: 'reverse()', sql: ['select reverse(card_number) from customers'], refuse: 'public.customers.card_number' },
  { name: 'a function whose body reads customers', sql: ['select card_of(1)'], refuse: 'public.customers' },
  { name: 'a function whose body reads customers, per row of another table', sql: ['select id, public.card_of(customer_id) from orders'], refuse: 'public.customers' },
  { name: 'pg_stats', sql: ["select attname, histogram_bounds::text, most_common_vals::text from pg_stats where tablename = 'customers'"], refuse: 'pg_stats' },
  { name: 'pg_stats, all columns', sql: ["select * from pg_stats where schemaname = 'public'"], refuse: 'pg_stats' },

  // Predicates over masked columns: refused unless allowed.
  { name: 'WHERE … LIKE', sql: ["select id, card_number from customers where card_number like '4539%' order by id"], predicate: 'public.customers.card_number', out: ['-', 'card'] },
  { name: 'WHERE on a masked column, returning clear ones', sql: ["select id from customers where card_number like '4%' order by id"], predicate: 'public.customers.card_number', out: ['-'] },
  { name: 'WHERE on an e-mail', sql: ["select id from customers where email like 'bruno%'"], predicate: 'public.customers.email', out: ['-'] },
  { name: 'WHERE on a date', sql: ["select id from customers where birth_date < '1980-01-01' order by id"], predicate: 'public.customers.birth_date', out: ['-'] },
  { name: 'WHERE in a subquery', sql: ["select id, card_number from customers where id in (select id from customers where email like 'zq.%') order by id"], predicate: 'public.customers.email', out: ['-', 'card'] },
  {
    name: 'WHERE EXISTS over an expression of a masked column',
    sql: ["select id from customers c where exists (select 1 from tickets t where t.notes like '%' || right(c.card_number, 4) || '%') order by id"],
    predicate: 'public.customers.card_number',
    out: ['-'],
  },
  { name: 'ORDER BY', sql: ['select id, card_number from customers order by card_number'], predicate: 'public.customers.card_number', out: ['-', 'card'] },
  { name: 'ORDER BY position', sql: ['select id, card_number from customers order by 2'], predicate: 'public.customers.card_number', out: ['-', 'card'] },
  { name: 'ORDER BY a date, not selected', sql: ['select id from customers order by birth_date nulls last, id'], predicate: 'public.customers.birth_date', out: ['-'] },
  { name: 'ORDER BY … LIMIT', sql: ['select id, card_number from customers order by card_number limit 2'], predicate: 'public.customers.card_number', out: ['-', 'card'] },
  { name: 'GROUP BY', sql: ['select ssn, count(*) from customers group by ssn order by count(*) desc, min(id)'], predicate: 'public.customers.ssn', out: ['ssn', '-'] },
  { name: 'GROUP BY … HAVING', sql: ['select count(*) from customers group by ssn having count(*) > 1'], predicate: 'public.customers.ssn', out: ['-'] },
  { name: 'DISTINCT', sql: ['select distinct ssn from customers'], predicate: 'public.customers.ssn', out: ['ssn'], unordered: true },
  { name: 'DISTINCT ON', sql: ['select distinct on (ssn) id from customers order by ssn, id'], predicate: 'public.customers.ssn', out: ['-'], unordered: true },
  { name: 'JOIN ON', sql: ['select a.id, b.id from customers a join customers b on a.ssn = b.ssn and a.id < b.id'], predicate: 'public.customers.ssn', out: ['-', '-'] },
  { name: 'window PARTITION BY', sql: ['select id, count(*) over (partition by ssn) from customers order by id'], predicate: 'public.customers.ssn', out: ['-', '-'] },
  { name: 'window ORDER BY', sql: ['select id, row_number() over (order by card_number) from customers order by id'], predicate: 'public.customers.card_number', out: ['-', '-'] },
  { name: 'UNION (dedup)', sql: ['select card_number from customers union select card_number from customers'], predicate: 'public.customers.card_number', out: ['card'], unordered: true },
  { name: 'INTERSECT', sql: ['select email from customers intersect select email from customers where id < 3'], predicate: 'public.customers.email', out: ['email'], unordered: true },
  { name: 'EXCEPT', sql: ['select email from customers except select email from customers where id < 3'], predicate: 'public.customers.email', out: ['email'], unordered: true },
  { name: 'EXPLAIN of a WHERE', sql: ["explain (costs off) select id from customers where card_number = '4000000000000001'"], predicate: 'public.customers.card_number', out: ['-'] },

  // Cursors.
  {
    name: 'DECLARE / FETCH',
    sql: ['begin', 'declare c1 cursor for select id, card_number, email from customers order by id', 'fetch 2 from c1', 'fetch all from c1', 'commit'],
    out: ['-', 'card', 'email'],
  },
  { name: 'DECLARE / MOVE / FETCH', sql: ['begin', 'declare c2 cursor for select card_number from customers order by id', 'move 2 in c2', 'fetch 1 from c2', 'commit'], out: ['card'] },
  { name: 'a cursor WITH HOLD, fetched after its transaction', sql: ['declare c3 cursor with hold for select id, ssn from customers order by id', 'fetch all from c3', 'close c3'], out: ['-', 'ssn'] },
  {
    name: 'DECLARE and FETCH in one query string',
    sql: ['begin; declare c4 cursor for select id, card_number from customers order by id; fetch all from c4; commit'],
    out: ['-', 'card'],
    protocols: ['psql', 'simple', 'raw-simple'],
  },
  { name: 'a cursor over an expression', sql: ['begin', 'declare c5 cursor for select upper(email) from customers', 'fetch all from c5'], refuse: 'public.customers.email' },
  { name: 'a cursor with a predicate', sql: ['begin', 'declare c6 cursor for select id from customers order by card_number', 'fetch all from c6'], predicate: 'public.customers.card_number', out: ['-'] },
  {
    name: 'a BINARY cursor',
    sql: ['begin', 'declare b1 binary cursor for select id, card_number, email, ssn, birth_date from customers order by id', 'fetch all from b1', 'commit'],
    out: ['-', 'card', 'email', 'ssn', 'date'],
    directSql: ['begin', 'declare b1 cursor for select id, card_number, email, ssn, birth_date from customers order by id', 'fetch all from b1', 'commit'],
    protocols: ['raw-simple', 'binary'],
  },
  { name: 'FETCH from a cursor a function opened', sql: ['begin', "select open_cards('sneaky')", 'fetch all from sneaky'], refuse: /public\.customers|sneaky|open_cards/ },

  // Prepared statements.
  {
    name: 'PREPARE / EXECUTE',
    sql: ['prepare p1(int) as select id, card_number, email from customers where id <= $1 order by id', 'execute p1(3)', 'execute p1(6)'],
    out: ['-', 'card', 'email'],
  },
  { name: 'PREPARE / EXECUTE of an expression', sql: ['prepare p2 as select upper(email) from customers', 'execute p2'], refuse: 'public.customers.email' },
  { name: 'PREPARE / EXECUTE of a predicate', sql: ['prepare p3 as select id from customers order by card_number', 'execute p3'], predicate: 'public.customers.card_number', out: ['-'] },
];

/** Writes: masked-writer, in a transaction rolled back. */
const WRITES: Array<Route & { codes?: string[] }> = [
  {
    name: 'INSERT … RETURNING',
    sql: ["insert into customers values (7, 'Frank New', '4111111111111111', 'frank.new.2024@example.com', '234-56-7890', '1980-05-05', 'basic') returning id, card_number, email, ssn, birth_date"],
    out: ['-', 'card', 'email', 'ssn', 'date'],
  },
  { name: 'UPDATE … RETURNING', sql: ["update customers set tier = 'gold' where id = 2 returning id, card_number, ssn"], out: ['-', 'card', 'ssn'] },
  { name: 'DELETE … RETURNING *', sql: ['delete from customers where id = 4 returning *'], out: CUSTOMER_STAR },
  { name: 'RETURNING through a CTE', sql: ["with d as (update customers set tier = 'x' where id = 1 returning card_number) select card_number from d"], out: ['card'] },
  { name: 'RETURNING an expression', sql: ["update customers set tier = 'gold' where id = 2 returning upper(email)"], refuse: 'public.customers.email' },
  { name: 'INSERT … SELECT', sql: ['insert into card_copy select id, card_number from customers'], refuse: 'public.customers.card_number' },
  { name: 'INSERT … SELECT from a view over a view', sql: ['insert into card_copy (id, card) select id, cc from customer_cards_v2'], refuse: 'public.customers.card_number' },
  { name: 'INSERT … VALUES with a scalar subquery', sql: ['insert into card_copy values (1, (select card_number from customers where id = 1))'], refuse: 'public.customers.card_number' },
  { name: 'INSERT from a CTE', sql: ['with x as (select id, card_number from customers) insert into card_copy select id, card_number from x'], refuse: 'public.customers.card_number' },
  { name: 'UPDATE SET x = masked column', sql: ['update customers set name = card_number where id = 1'], refuse: 'public.customers.card_number' },
  { name: 'UPDATE SET x = masked column, every row', sql: ['update customers set tier = email'], refuse: 'public.customers.email' },
  { name: 'UPDATE … FROM', sql: ['update card_copy set card = c.card_number from customers c where c.id = card_copy.id'], refuse: 'public.customers.card_number' },
  // Straight against Postgres: a unique violation, whose DETAIL tells Bruno's e-mail.
  { name: 'UPDATE SET e-mail from another row', sql: ['update customers set email = (select email from customers where id = 2) where id = 1'], refuse: 'public.customers.email', directError: '23505' },
  { name: 'PREPARE / EXECUTE of INSERT … SELECT', sql: ['prepare w1 as insert into card_copy select id, card_number from customers', 'execute w1'], refuse: 'public.customers.card_number' },
];

/** DDL that copies masked values, or hides where they flow: masked-owner (ddl), in a transaction rolled back. */
const DDL: Route[] = [
  { name: 'CREATE TABLE … AS', sql: ['create table stolen as select card_number from customers'], refuse: 'public.customers.card_number' },
  { name: 'SELECT … INTO', sql: ['select card_number into stolen2 from customers'], refuse: 'public.customers.card_number' },
  { name: 'CREATE MATERIALIZED VIEW', sql: ['create materialized view stolen_mv as select id, email from customers'], refuse: 'public.customers.email' },
  {
    name: 'a view made in the session, over an expression',
    sql: ['create view public.leaky as select id, upper(email) as e from public.customers', 'select e from public.leaky'],
    refuse: /public\.customers|leaky/,
  },
  {
    name: 'a function made in the session that reads customers',
    sql: ["create function public.leakfn() returns text language sql stable as $f$ select string_agg(card_number, ',') from public.customers $f$", 'select public.leakfn()'],
    refuse: /public\.customers|leakfn/,
  },
  {
    name: 'a generated column over a masked column',
    sql: ['alter table customers add column shout text generated always as (upper(email)) stored', 'select shout from customers'],
    refuse: /masked column public\.customers\.\w+/,
  },
];

/** Writes whose server messages echo row values: withheld, or the statement refused; either way nothing leaks. */
const ECHOES: Array<{ name: string; sql: string[]; codes: Array<string | undefined> }> = [
  // Straight against Postgres: DETAIL Failing row contains (1, , 4539148803436467, zq.alice.7731@example.com, …).
  { name: 'a CHECK violation, whose DETAIL shows the row', sql: ["update customers set name = '' where id = 1"], codes: ['23514', '42501'] },
  // DETAIL Key (email)=(…) already exists.
  {
    name: 'a unique violation, whose DETAIL shows the key',
    sql: ["insert into customers (id, name, email, ssn) values (8, 'Dup', 'zq.alice.7731@example.com', '999-99-9999')"],
    codes: ['23505', '42501'],
  },
  // A NOTICE from a trigger, its message, DETAIL and HINT telling the row's values.
  { name: 'a trigger that RAISEs a NOTICE with the row', sql: ["update customers set tier = 'notify' where id = 1"], codes: [undefined, '42501'] },
  { name: 'a trigger NOTICE, with RETURNING', sql: ["update customers set tier = 'notify' where id = 4 returning id"], codes: [undefined, '42501'] },
];

function protocolsOf(r: Route): Proto[] {
  return r.protocols ?? ALL;
}

/** What one identity must get for one route. */
async function check(route: Route, who: Who, proto: Proto): Promise<void> {
  const writer = who === 'masked-writer' || who === 'masked-owner';
  const tx = (s: string[]) => (writer ? ['begin', ...s, 'rollback'] : s);
  const sql = tx(route.sql);
  const [got, ref] = [await run(who, proto, sql, { params: route.params }), await direct(tx(route.directSql ?? route.sql), { params: route.params })];
  expect(ref.error?.code, `straight against Postgres: ${show(ref)}`).toBe(route.directError);
  const clear = who === 'clear-reader' || who === 'group-clear';
  if (clear && route.directError) {
    expect(got.error?.code, show(got)).toBe(route.directError);
    return;
  }
  if (clear && proto === 'psql') {
    expect(got.error, show(got)).toBeUndefined();
    expect((got as Outcome & { stdout: string }).stdout).toBe(await psqlDirect(sql));
    return;
  }
  if (clear) {
    expect(got.error, show(got)).toBeUndefined();
    const { expected, actual } = comparable(ref.rows, got.rows, [], route.unordered ?? false);
    expect(actual).toEqual(expected);
    return;
  }
  expectNoLeak(got);
  const refused = route.refuse ?? (who === 'predicate-reader' ? undefined : route.predicate);
  if (refused) {
    expectRefused(got, refused);
    return;
  }
  expect(got.error, show(got)).toBeUndefined();
  const { expected, actual } = comparable(ref.rows, got.rows, route.out ?? [], route.unordered ?? false);
  expect(actual, show(got)).toEqual(expected);
  expect(got.rows.length).toBe(ref.rows.length);
}

describe('the leak search finds clear values where they are', () => {
  // An exempt identity's answers hold every clear value: the search must see each one,
  // in every client's bytes (text and binary), or a masked identity's clean result proves nothing.
  // (Cards written with spaces or dashes are only in the tickets' notes; SSNs are stored with their dashes.)
  const every = NEEDLES.filter((n) => !/ticket|\(\d{4}[ -]|ssn digits/.test(n.what)).map((n) => n.what);
  for (const proto of ALL) {
    it(proto, async () => {
      const o = await run('clear-reader', proto, ['select id, card_number, email, ssn, birth_date, ssn, birth_date from customers order by id']);
      expect(o.error).toBeUndefined();
      const found = leaksIn(o.received);
      // Binary dates are only in the bytes of the binary format; text dates only in text.
      const wanted = every.filter((w) => (proto === 'binary' ? !/^birth date of customer \d+$/.test(w) : !/binary/.test(w)));
      expect(found.filter((w) => wanted.includes(w)).sort()).toEqual([...wanted].sort());
    });
  }
});

describe('reads: masked in place, refused, or clear for the exempt', () => {
  for (const route of READS) {
    for (const proto of protocolsOf(route)) {
      for (const who of ['masked-reader', 'predicate-reader', 'clear-reader'] as const) {
        it(`${route.name} (${who}, ${proto})`, () => check(route, who, proto));
      }
    }
  }

  it('exempt through a group: group-clear sees clear values', async () => {
    for (const route of READS.filter((r) => ['plain columns', 'upper()', 'ORDER BY', 'a card in free text (detector)'].includes(r.name))) {
      await check(route, 'group-clear', 'simple');
      await check(route, 'group-clear', 'binary');
    }
  });
});

describe('writes: RETURNING masked, copies of masked values refused (masked-writer, masked-owner)', () => {
  for (const route of WRITES) {
    for (const proto of protocolsOf(route)) {
      it(`${route.name} (${proto})`, () => check(route, 'masked-writer', proto));
    }
  }

  for (const route of DDL) {
    for (const proto of protocolsOf(route)) {
      it(`${route.name} (masked-owner, ${proto})`, () => check(route, 'masked-owner', proto));
    }
  }

  it('nothing was copied, and the customers are as the fixture left them', async () => {
    expect((await db.query('select count(*)::int as n from card_copy')).rows[0].n).toBe(0);
    const made = await db.query("select to_regclass('public.stolen') is null and to_regclass('public.stolen2') is null and to_regclass('public.stolen_mv') is null and to_regclass('public.leaky') is null as gone");
    expect(made.rows[0].gone).toBe(true);
    expect((await db.query("select count(*)::int as n from information_schema.columns where table_name = 'customers' and column_name = 'shout'")).rows[0].n).toBe(0);
    const rows = (await db.query('select id, card_number, email, ssn, name, tier from customers order by id')).rows;
    expect(rows.map((r) => [r.id, r.card_number, r.email, r.ssn])).toEqual(CUSTOMERS.map((c) => [c.id, c.card, c.email, c.ssn]));
    expect(rows.map((r) => r.name)).not.toContain('');
  });
});

describe('server messages that echo row values never show them', () => {
  it('the routes are live: straight against Postgres they tell the clear values', async () => {
    for (const route of ECHOES) {
      const r = await direct(['begin', ...route.sql, 'rollback']);
      expect(leaksIn(r.received + (r.error?.fields ?? '') + r.notices.join('\n')), `${route.name}: ${show(r)}`).not.toEqual([]);
    }
  });

  for (const route of ECHOES) {
    for (const proto of ALL) {
      it(`${route.name} (masked-writer, ${proto})`, async () => {
        const got = await run('masked-writer', proto, ['begin', ...route.sql, 'rollback']);
        expectNoLeak(got);
        expect(route.codes, show(got)).toContain(got.error?.code);
        if (got.error?.code === '42501') expect(got.error.message).toMatch(/warden: .*customers/);
      });
    }
  }
});

// --------------------------------------------------- types and determinism

describe('masked values keep their types, and hashes are deterministic', () => {
  it('a masked date is a valid date in text and in binary', async () => {
    const sql = ['select birth_date from customers where id = 1'];
    const text = await runPg('masked-reader', 'extended', sql);
    expect(text.rows).toEqual([['1900-01-01']]);
    const c = await rawClient('masked-reader');
    try {
      c.send(serialize.parse({ text: sql[0]! }), serialize.bind({ binary: true }), serialize.describe({ type: 'P' }), serialize.execute(), serialize.sync());
      const got = await c.until('readyForQuery');
      const desc = got.find((m) => m.name === 'rowDescription')!;
      expect((desc.fields as Array<{ dataTypeID: number; format: string }>)[0]).toMatchObject({ dataTypeID: 1082, format: 'binary' });
      const row = got.find((m) => m.name === 'dataRow')!;
      const [value] = dataRowValues(row);
      expect(value?.length).toBe(4);
      expect(value!.readInt32BE(0)).toBe(daysSince2000('1900-01-01'));
    } finally {
      await c.end();
    }
    // And node-postgres' own date parser takes it.
    const client = new pg.Client({ host: stack.host, port: stack.port, user: 'masked-reader', database: RESOURCE, password: await stack.token('masked-reader') });
    await client.connect();
    try {
      const r = await client.query(sql[0]!);
      expect(r.rows[0].birth_date).toBeInstanceOf(Date);
      expect((r.rows[0].birth_date as Date).getFullYear()).toBe(1900);
    } finally {
      await client.end();
    }
  });

  it('a NULL stays NULL, in every mask', async () => {
    for (const proto of ALL) {
      const r = await run('masked-reader', proto, ['select card_number, birth_date from customers where id = 6']);
      expect(r.rows, `${proto}: ${show(r)}`).toEqual([[null, null]]);
    }
  });

  it('the hash is deterministic: equal across rows, sessions, protocols and formats; different for different values', async () => {
    const sql = ['select id, ssn from customers order by id'];
    const runs = [
      await run('masked-reader', 'simple', sql),
      await run('masked-reader', 'extended', sql),
      await run('masked-reader', 'binary', sql),
      await run('masked-reader', 'psql', sql),
      await run('predicate-reader', 'simple', sql),
    ];
    for (const r of runs) expectNoLeak(r);
    const first = runs[0]!.rows;
    expect(first.length).toBe(6);
    for (const r of runs) expect(r.rows, show(r)).toEqual(first);
    const hashes = first.map((r) => r[1]);
    for (const h of hashes) expect(h).toMatch(HEX32);
    // Bruno (2) and Eun-ji (5) share an SSN.
    expect(hashes[1]).toBe(hashes[4]);
    expect(new Set(hashes).size).toBe(5);
    // The client can group by the masked value itself.
    const groups = new Map<string, number>();
    for (const h of hashes) groups.set(h!, (groups.get(h!) ?? 0) + 1);
    expect([...groups.values()].sort()).toEqual([1, 1, 1, 1, 2]);
  });

  it('the client sees the RowDescription it would have seen', async () => {
    const sql = 'select id, card_number, email, ssn, birth_date from customers order by id';
    const describeOf = async (c: RawClient) => {
      c.send(serialize.parse({ text: sql }), serialize.bind({ binary: true }), serialize.describe({ type: 'P' }), serialize.execute(), serialize.sync());
      const got = await c.until('readyForQuery');
      return got.find((m) => m.name === 'rowDescription')!.raw.toString('hex');
    };
    const url = new URL(db.url);
    const d = await RawClient.connect({ host: url.hostname, port: Number(url.port), user: 'postgres', database: db.name });
    const g = await rawClient('masked-reader');
    try {
      expect(await describeOf(g)).toBe(await describeOf(d));
    } finally {
      await d.end();
      await g.end();
    }
  });
});

// ----------------------------------------------- extended protocol, named

describe('named statements executed several times (JDBC-like)', () => {
  const SQL = 'select id, card_number, email, birth_date from customers where id = $1';
  const expected = (id: number): Cell[] => {
    const c = CUSTOMERS[id - 1]!;
    return [String(id), maskExpected(c.card, 'card'), maskExpected(c.email, 'email'), maskExpected(c.birth, 'date')];
  };

  it('raw: Parse and Describe once, then Bind/Execute again and again, in text and binary', async () => {
    const c = await rawClient('masked-reader');
    const messages: Message[] = [];
    try {
      c.send(serialize.parse({ name: 's1', text: SQL, types: [23] }), serialize.describe({ type: 'S', name: 's1' }), serialize.sync());
      messages.push(...(await c.until('readyForQuery')));
      const rows: Cell[][] = [];
      for (const [i, id] of [1, 2, 3, 1, 5].entries()) {
        c.send(serialize.bind({ statement: 's1', values: [String(id)], binary: i % 2 === 1 }), serialize.execute(), serialize.sync());
        const got = await c.until('readyForQuery');
        messages.push(...got);
        const dataRow = got.find((m) => m.name === 'dataRow');
        expect(dataRow, JSON.stringify(got.map((m) => m.name))).toBeDefined();
        // No RowDescription after Bind: the types are the Describe's.
        const types = [23, 25, 25, 1082];
        rows.push(dataRowValues(dataRow!).map((v, k) => (v === null ? null : i % 2 === 1 ? decodeBinary(v, types[k]!) : v.toString('utf8'))));
      }
      expect(rows).toEqual([1, 2, 3, 1, 5].map(expected));
      expect(leaksIn(messages.map((m) => m.raw.toString('latin1')).join(''))).toEqual([]);
    } finally {
      await c.end();
    }
  });

  it('raw: a named statement over an expression is refused, and the session goes on', async () => {
    const c = await rawClient('masked-reader');
    const messages: Message[] = [];
    try {
      c.send(serialize.parse({ name: 's2', text: 'select upper(email) from customers' }), serialize.describe({ type: 'S', name: 's2' }), serialize.sync());
      messages.push(...(await c.until('readyForQuery')));
      c.send(serialize.bind({ statement: 's2' }), serialize.execute(), serialize.sync());
      messages.push(...(await c.until('readyForQuery')));
      const o = outcomeOf(messages);
      expectNoLeak(o);
      expectRefused(o, 'public.customers.email');
      expect(o.rows).toEqual([]);
      c.send(serialize.parse({ text: 'select card_number from customers where id = 1' }), serialize.bind({}), serialize.describe({ type: 'P' }), serialize.execute(), serialize.sync());
      const after = outcomeOf(await c.until('readyForQuery'));
      expect(after.error).toBeUndefined();
      expect(after.rows).toEqual([['************6467']]);
    } finally {
      await c.end();
    }
  });

  it('node-postgres: a named query executed three times, text and binary', async () => {
    for (const binary of [false, true]) {
      const { client, received } = await pgClient('masked-reader');
      try {
        const rows: Cell[][] = [];
        for (const id of [1, 4, 1]) {
          // Binary: text-like columns only (node-postgres decodes binary fields through a UTF-8 string).
          const text = binary ? 'select id::text, card_number, email from customers where id = $1' : SQL;
          const r = await client.query({ name: `byid-${binary}`, text, values: [id], rowMode: 'array', binary } as pg.QueryArrayConfig);
          rows.push(r.rows[0]!.map(cellOf));
        }
        expect(rows).toEqual([1, 4, 1].map((id) => (binary ? expected(id).slice(0, 3) : expected(id))));
      } finally {
        await client.end();
      }
      expect(leaksIn(Buffer.concat(received).toString('latin1'))).toEqual([]);
    }
  });

  it('postgres.js: prepared statements reused, a refusal, and the session goes on', async () => {
    const notices: string[] = [];
    const sql = postgres({
      host: stack.host,
      port: stack.port,
      user: 'masked-reader',
      database: RESOURCE,
      password: await stack.token('masked-reader'),
      ssl: false,
      max: 1,
      onnotice: (n) => notices.push(JSON.stringify(n)),
    });
    try {
      const got: unknown[] = [];
      for (const id of [1, 2, 1]) got.push(...(await sql`select id, card_number, email from customers where id = ${id}`));
      expect(got).toEqual([1, 2, 1].map((id) => ({ id, card_number: maskExpected(CUSTOMERS[id - 1]!.card, 'card'), email: maskExpected(CUSTOMERS[id - 1]!.email, 'email') })));
      const err = (await sql`select upper(email) as e from customers`.then(
        (r) => ({ rows: r }),
        (e: unknown) => e,
      )) as Record<string, unknown>;
      expect(err.code, JSON.stringify(err)).toBe('42501');
      expect(String(err.message)).toContain('public.customers.email');
      expect(leaksIn(JSON.stringify(got) + JSON.stringify({ ...err, message: err.message }) + notices.join(''))).toEqual([]);
      const after = await sql`select card_number from customers where id = ${5}`;
      expect(after).toEqual([{ card_number: '************4179' }]);
    } finally {
      await sql.end();
    }
  });
});

describe('a session keeps working after a refusal', () => {
  for (const proto of ALL) {
    it(proto, async () => {
      const statements = ['select upper(email) from customers', "select id from customers where card_number like '4%'", 'select id, card_number from customers where id = 2'];
      const o =
        proto === 'psql'
          ? await runPsql('masked-reader', statements, ['-v', 'ON_ERROR_STOP=0'])
          : proto === 'binary'
            ? await runRaw('masked-reader', 'binary', statements, { keepGoing: true })
            : await runPg('masked-reader', proto as 'simple' | 'extended', statements, { keepGoing: true });
      expectNoLeak(o);
      expectRefused(o, 'public.customers.email');
      if ('errors' in o) {
        const errors = (o as { errors: Array<Failure | undefined> }).errors;
        expect(errors.map((e) => e?.code)).toEqual(['42501', '42501', undefined]);
      }
      expect(o.rows).toEqual([['2', '************9903']]);
    });
  }
});

// ------------------------------------------------------------------ COPY

/** COPY … TO STDOUT through pg-copy-streams: the data, and every byte the client received. */
async function copyOut(who: Who | 'direct', sql: string): Promise<{ data: Buffer; error?: Failure; received: string; notices: string[] }> {
  const { client, received, notices } = await pgClient(who);
  try {
    const stream = client.query(copyTo(sql));
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of stream) chunks.push(chunk as Buffer);
    } catch (err) {
      return { data: Buffer.concat(chunks), error: pgError(err), received: Buffer.concat(received).toString('latin1'), notices };
    }
    return { data: Buffer.concat(chunks), received: Buffer.concat(received).toString('latin1'), notices };
  } finally {
    await client.end().catch(() => {});
  }
}

/** COPY text format: rows of fields, \N as null (the fixture has nothing to unescape). */
function parseCopyText(data: string): Cell[][] {
  return data
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('\t').map((v) => (v === '\\N' ? null : v)));
}

/** CSV with the given delimiter and quote; an unquoted empty field is null. */
function parseCsv(data: string, delimiter: string, quote: string): Array<Array<{ v: string; quoted: boolean } | null>> {
  const rows: Array<Array<{ v: string; quoted: boolean } | null>> = [];
  let row: Array<{ v: string; quoted: boolean } | null> = [];
  let i = 0;
  while (i < data.length) {
    let v = '';
    let quoted = false;
    if (data[i] === quote) {
      quoted = true;
      i++;
      for (;;) {
        if (i >= data.length) throw new Error('unterminated quote');
        if (data[i] === quote) {
          if (data[i + 1] === quote) {
            v += quote;
            i += 2;
            continue;
          }
          i++;
          break;
        }
        v += data[i++];
      }
    } else {
      while (i < data.length && data[i] !== delimiter && data[i] !== '\n') v += data[i++];
    }
    row.push(!quoted && v === '' ? null : { v, quoted });
    if (data[i] === delimiter) i++;
    else {
      i++;
      rows.push(row);
      row = [];
    }
  }
  return rows;
}

/** COPY binary format: each row's fields as raw bytes. */
function parseCopyBinary(data: Buffer): Array<Array<Buffer | null>> {
  expect(data.subarray(0, 11).toString('latin1')).toBe('PGCOPY\n\xff\r\n\0');
  let pos = 11 + 4;
  const ext = data.readInt32BE(pos);
  pos += 4 + ext;
  const rows: Array<Array<Buffer | null>> = [];
  for (;;) {
    const n = data.readInt16BE(pos);
    pos += 2;
    if (n === -1) break;
    const row: Array<Buffer | null> = [];
    for (let i = 0; i < n; i++) {
      const len = data.readInt32BE(pos);
      pos += 4;
      if (len < 0) row.push(null);
      else {
        row.push(data.subarray(pos, pos + len));
        pos += len;
      }
    }
    rows.push(row);
  }
  expect(pos).toBe(data.length);
  return rows;
}

const mask = (rows: Cell[][], kinds: Kind[]) => rows.map((r) => r.map((v, i) => maskExpected(v, kinds[i] ?? '-')));
const hashed = (rows: Cell[][], kinds: Kind[]) => rows.map((r) => r.map((v, i) => (kinds[i] === 'ssn' ? hashToken(v, undefined) : v)));

describe('COPY … TO STDOUT is masked in text, csv and binary', () => {
  const TEXT_ROUTES: Array<{ name: string; sql: string; kinds: Kind[] }> = [
    { name: 'COPY customers (text)', sql: 'COPY customers TO STDOUT', kinds: CUSTOMER_STAR },
    { name: 'COPY customers with a column list', sql: 'COPY customers (email, id, card_number) TO STDOUT', kinds: ['email', '-', 'card'] },
    { name: 'COPY (SELECT …) (text)', sql: 'COPY (SELECT id, card_number, ssn, birth_date FROM customers ORDER BY id) TO STDOUT', kinds: ['-', 'card', 'ssn', 'date'] },
    { name: 'COPY (SELECT …) with an odd delimiter and NULL', sql: "COPY (SELECT id, card_number, email FROM customers ORDER BY id) TO STDOUT WITH (DELIMITER '#', NULL 'nil')", kinds: ['-', 'card', 'email'] },
    { name: 'COPY (SELECT from a view over a view)', sql: 'COPY (SELECT * FROM customer_cards_v2 ORDER BY id) TO STDOUT', kinds: ['-', 'card', 'email'] },
    { name: 'COPY tickets (detector)', sql: 'COPY tickets TO STDOUT', kinds: ['-', '-', 'notes'] },
  ];

  for (const route of TEXT_ROUTES) {
    it(`${route.name}, pg-copy-streams`, async () => {
      const [got, ref] = [await copyOut('masked-reader', route.sql), await copyOut('direct', route.sql)];
      expect(ref.error).toBeUndefined();
      expect(leaksIn(got.received + got.data.toString('latin1') + (got.error?.fields ?? ''))).toEqual([]);
      expect(got.error).toBeUndefined();
      const odd = /DELIMITER '#', NULL 'nil'/.test(route.sql);
      const parse = (d: Buffer) =>
        odd
          ? d
              .toString('utf8')
              .split('\n')
              .filter((l) => l)
              .map((l) => l.split('#').map((v) => (v === 'nil' ? null : v)))
          : parseCopyText(d.toString('utf8'));
      const expected = mask(parse(ref.data), route.kinds);
      expect(hashed(parse(got.data), route.kinds)).toEqual(expected);
    });
    it(`${route.name}, psql`, async () => {
      const got = await runPsql('masked-reader', [route.sql]);
      const ref = await copyOut('direct', route.sql);
      expect(leaksIn(got.received)).toEqual([]);
      expect(got.error, show(got)).toBeUndefined();
      expect(got.stdout).not.toBe('');
      if (!/DELIMITER/.test(route.sql)) expect(hashed(parseCopyText(got.stdout), route.kinds)).toEqual(mask(parseCopyText(ref.data.toString('utf8')), route.kinds));
    });
    it(`${route.name}, clear-reader gets it byte for byte`, async () => {
      const [got, ref] = [await copyOut('clear-reader', route.sql), await copyOut('direct', route.sql)];
      expect(got.error).toBeUndefined();
      expect(got.data.toString('utf8')).toBe(ref.data.toString('utf8'));
    });
  }

  const CSV = "COPY (SELECT id, name, card_number, email, ssn, birth_date FROM customers ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER true, DELIMITER ';', QUOTE '''', FORCE_QUOTE (card_number, email))";
  const CSV_KINDS: Kind[] = ['-', '-', 'card', 'email', 'ssn', 'date'];

  it('csv with HEADER, an odd DELIMITER and QUOTE, FORCE_QUOTE on masked columns', async () => {
    const [got, ref] = [await copyOut('masked-reader', CSV), await copyOut('direct', CSV)];
    expect(leaksIn(got.received + got.data.toString('latin1'))).toEqual([]);
    expect(got.error).toBeUndefined();
    const g = parseCsv(got.data.toString('utf8'), ';', "'");
    const r = parseCsv(ref.data.toString('utf8'), ';', "'");
    // The header, and the name with the delimiter and quote in it, as Postgres wrote them.
    expect(got.data.toString('utf8').split('\n')[0]).toBe('id;name;card_number;email;ssn;birth_date');
    expect(g[0]).toEqual(r[0]);
    expect(g.length).toBe(r.length);
    const values = (rows: typeof g) => rows.slice(1).map((row) => row.map((f) => f?.v ?? null));
    expect(hashed(values(g), CSV_KINDS)).toEqual(mask(values(r), CSV_KINDS));
    // Forced quotes stay on the masked values (NULL stays unquoted).
    expect(g.slice(1).map((row) => [row[2]?.quoted ?? null, row[3]?.quoted])).toEqual(r.slice(1).map((row) => [row[2]?.quoted ?? null, row[3]?.quoted]));
  });

  it('csv, psql', async () => {
    const got = await runPsql('masked-reader', [CSV]);
    expect(leaksIn(got.received)).toEqual([]);
    expect(got.error, show(got)).toBeUndefined();
    const ref = await copyOut('direct', CSV);
    const values = (s: string) =>
      parseCsv(s, ';', "'")
        .slice(1)
        .map((row) => row.map((f) => f?.v ?? null));
    expect(hashed(values(got.stdout), CSV_KINDS)).toEqual(mask(values(ref.data.toString('utf8')), CSV_KINDS));
  });

  const BINARY: Array<{ name: string; sql: string; types: number[]; kinds: Kind[] }> = [
    { name: 'COPY customers (binary)', sql: 'COPY customers TO STDOUT WITH (FORMAT binary)', types: [23, 25, 25, 25, 25, 1082, 25], kinds: CUSTOMER_STAR },
    {
      name: 'COPY (SELECT …) (binary)',
      sql: 'COPY (SELECT id, birth_date, card_number, ssn FROM customers ORDER BY id) TO STDOUT WITH (FORMAT binary)',
      types: [23, 1082, 25, 25],
      kinds: ['-', 'date', 'card', 'ssn'],
    },
    { name: 'COPY tickets (binary, detector)', sql: 'COPY tickets TO STDOUT (FORMAT binary)', types: [23, 23, 25], kinds: ['-', '-', 'notes'] },
  ];
  for (const route of BINARY) {
    for (const who of ['masked-reader', 'column-reader'] as const) {
    if (who === 'column-reader' && route.kinds.includes('notes')) continue;
    it(`${route.name} (${who})`, async () => {
      const [got, ref] = [await copyOut(who, route.sql), await copyOut('direct', route.sql)];
      expect(leaksIn(got.received + got.data.toString('latin1'))).toEqual([]);
      expect(got.error).toBeUndefined();
      const decode = (d: Buffer) => parseCopyBinary(d).map((r) => r.map((v, i) => (v === null ? null : decodeBinary(v, route.types[i]!))));
      expect(hashed(decode(got.data), route.kinds)).toEqual(mask(decode(ref.data), route.kinds));
    });
    }
  }

  const REFUSED = [
    { name: 'COPY (SELECT expression)', sql: 'COPY (SELECT upper(email) FROM customers) TO STDOUT', refuse: 'public.customers.email', who: ['masked-reader', 'predicate-reader'] as Who[] },
    { name: 'COPY (SELECT … WHERE masked)', sql: "COPY (SELECT id FROM customers WHERE card_number LIKE '4%') TO STDOUT", refuse: 'public.customers.card_number', who: ['masked-reader'] as Who[] },
    { name: 'COPY (SELECT whole row) (csv)', sql: 'COPY (SELECT c FROM customers c) TO STDOUT (FORMAT csv)', refuse: 'public.customers.', who: ['masked-reader', 'predicate-reader'] as Who[] },
    { name: 'COPY (SELECT json_agg)', sql: 'COPY (SELECT json_agg(card_number) FROM customers) TO STDOUT', refuse: 'public.customers.card_number', who: ['masked-reader'] as Who[] },
    { name: 'COPY (SELECT json_agg) (binary)', sql: 'COPY (SELECT json_agg(card_number) FROM customers) TO STDOUT (FORMAT binary)', refuse: 'public.customers.card_number', who: ['column-reader'] as Who[] },
    { name: 'COPY (SELECT … ORDER BY masked) (binary)', sql: 'COPY (SELECT id FROM customers ORDER BY ssn) TO STDOUT (FORMAT binary)', refuse: 'public.customers.ssn', who: ['column-reader'] as Who[] },
  ];
  for (const route of REFUSED) {
    for (const who of route.who) {
      it(`${route.name} is refused (${who})`, async () => {
        const got = await copyOut(who, route.sql);
        expect(leaksIn(got.received + got.data.toString('latin1'))).toEqual([]);
        expect(got.data.length).toBe(0);
        expect(got.error?.code, JSON.stringify(got.error)).toBe('42501');
        expect(got.error!.message).toContain(route.refuse);
      });
    }
  }

  it('COPY (SELECT … WHERE masked) is allowed and masked for predicate-reader', async () => {
    const sql = "COPY (SELECT id, card_number FROM customers WHERE card_number LIKE '4%' ORDER BY id) TO STDOUT";
    const got = await copyOut('predicate-reader', sql);
    expect(leaksIn(got.received)).toEqual([]);
    expect(got.error).toBeUndefined();
    expect(got.data.toString('utf8')).toBe('1\t************6467\n3\t************3700\n');
  });
});

// ------------------------------------------------------------- big result

describe('a 20,000-row result is masked completely', () => {
  const N = 20_000;
  const card = (id: number) => `4000${String(id).padStart(12, '0')}`;
  const email = (id: number) => `big.user.${id}@example.net`;
  const expectAllMasked = (rows: Cell[][]) => {
    expect(rows.length).toBe(N);
    const wrong: string[] = [];
    rows.forEach((r, i) => {
      const id = i + 1;
      const want = [String(id), `************${card(id).slice(-4)}`, '****@example.net'];
      if (JSON.stringify(r) !== JSON.stringify(want) && wrong.length < 5) wrong.push(`row ${id}: ${JSON.stringify(r)}`);
    });
    expect(wrong).toEqual([]);
  };
  const bigLeaks = (received: string) => {
    const found: string[] = [];
    for (let id = 1; id <= N && found.length < 5; id++) {
      if (received.includes(card(id).slice(0, 12)) || received.includes(email(id))) found.push(`row ${id}`);
    }
    return found;
  };
  const SQL = 'select id, card_number, email from big_customers order by id';

  it('node-postgres, extended protocol, text', async () => {
    const o = await runPg('masked-reader', 'extended', [SQL]);
    expect(o.error).toBeUndefined();
    expectAllMasked(o.rows);
    expect(bigLeaks(o.received)).toEqual([]);
  });

  it('raw client, binary', async () => {
    const o = await runRaw('masked-reader', 'binary', [SQL]);
    expect(o.error).toBeUndefined();
    expectAllMasked(o.rows);
    expect(bigLeaks(o.received)).toEqual([]);
  });

  it('psql', async () => {
    const o = await runPsql('masked-reader', [SQL]);
    expect(o.error).toBeUndefined();
    expectAllMasked(o.rows);
    expect(bigLeaks(o.received)).toEqual([]);
  });

  it('COPY, text', async () => {
    const text = await copyOut('masked-reader', 'COPY big_customers TO STDOUT');
    expect(text.error).toBeUndefined();
    expectAllMasked(parseCopyText(text.data.toString('utf8')));
    expect(bigLeaks(text.received)).toEqual([]);
  });

  it.each(['masked-reader', 'column-reader'] as const)('COPY, binary (%s)', async (who) => {
    const bin = await copyOut(who, 'COPY (SELECT id, card_number, email FROM big_customers ORDER BY id) TO STDOUT (FORMAT binary)');
    expect(bin.error).toBeUndefined();
    expectAllMasked(parseCopyBinary(bin.data).map((r) => r.map((v, i) => (v === null ? null : decodeBinary(v, [23, 25, 25][i]!)))));
    expect(bigLeaks(bin.received)).toEqual([]);
  });

  it('clear-reader gets the clear values', async () => {
    const o = await runPg('clear-reader', 'simple', [SQL]);
    expect(o.rows.length).toBe(N);
    expect(o.rows[N - 1]).toEqual([String(N), card(N), email(N)]);
  });
});
