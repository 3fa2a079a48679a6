// COPY end to end (client → gateway → agent → Postgres) with real clients:
// psql's \copy and node-postgres with pg-copy-streams, in text, csv and
// binary; a gigabyte each way with the memory of gateway and agent watched;
// CopyFail and bad data; what policy lets each identity copy; and a client
// that reads a large result slowly, which must not make gateway or agent
// buffer it.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { RawClient, serialize, type Message } from './support/raw-client.js';
import { MiB, describeRss, sampleRss } from './support/rss.js';
import { createDatabase, sh, startStack, type Stack, type TestDatabase } from './support/stack.js';

let db: TestDatabase;
let stack: Stack;
let dir: string;

/** Rows of the `items` table, whose values exercise each format's quoting and escaping. */
const ROWS = 20_000;

const FORMATS = [
  { name: 'text', options: '' },
  { name: 'csv', options: 'WITH (FORMAT csv, HEADER true)' },
  { name: 'binary', options: 'WITH (FORMAT binary)' },
];

/** The big transfers: 131,072 rows of 8 KiB, just over 1 GiB of COPY text. */
const BIG_ROWS = 131_072;
const GiB = 1024 * MiB;
/** Peak RSS allowed to gateway and agent while a gigabyte goes through. */
const BIG_TRANSFER_RSS_LIMIT = 200 * MiB;
/** RSS growth allowed to gateway and agent while a slow client holds back a large result. */
const SLOW_READER_GROWTH_LIMIT = 64 * MiB;

beforeAll(async () => {
  db = await createDatabase('warden_copy');
  await db.query(`
    CREATE TABLE items (
      id int PRIMARY KEY, name text, price numeric(12,2), tags text[], note text,
      seen timestamptz, data bytea, doc jsonb)`);
  // Notes cover what each format must escape or quote: tabs, newlines,
  // backslashes, quotes, commas, the end-of-data marker, NULL, the empty
  // string and multibyte UTF-8.
  await db.query(`
    INSERT INTO items
    SELECT g, 'item ' || g, g * 1.25, ARRAY['a' || g, 'b,c', 'q"uote', NULL],
           CASE g % 8 WHEN 0 THEN NULL WHEN 1 THEN E'tab\\there' WHEN 2 THEN E'line\\nbreak, "quoted"\\r\\n'
                      WHEN 3 THEN E'back\\\\slash \\\\N' WHEN 4 THEN '' WHEN 5 THEN '\\.' WHEN 6 THEN 'NULL'
                      ELSE 'unicode ü € 😀' END,
           timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute 1.5 seconds',
           decode(md5(g::text), 'hex'),
           jsonb_build_object('g', g, 'even', g % 2 = 0)
    FROM generate_series(1, ${ROWS}) g`);
  await db.query(`CREATE TABLE copy_target (id int PRIMARY KEY, note text NOT NULL)`);
  // The gigabyte sink: every row is checked and counted, then dropped, so 1 GB
  // need not reach the disk (a BEFORE trigger returning NULL stores nothing).
  await db.query(`CREATE TABLE sink (id int, payload text)`);
  await db.query(`
    CREATE FUNCTION sink_check() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.payload IS DISTINCT FROM repeat(md5(NEW.id::text), 256) THEN
        RAISE EXCEPTION 'row % arrived altered', NEW.id USING ERRCODE = 'data_corrupted';
      END IF;
      PERFORM set_config('sink.rows', (current_setting('sink.rows')::bigint + 1)::text, false),
              set_config('sink.ids', (current_setting('sink.ids')::bigint + NEW.id)::text, false);
      RETURN NULL;
    END $$`);
  await db.query(`CREATE TRIGGER sink_check BEFORE INSERT ON sink FOR EACH ROW EXECUTE FUNCTION sink_check()`);
  stack = await startStack({ upstream: db.url });
  // An identity with write access, besides local mode's 'demo' (read) and 'demo-admin' (admin).
  const added = await stack.cli('identities', 'add', 'copy-writer', '--issuer', 'local-dev', '--match', 'sub=copy-writer');
  expect(added.stderr).toBe('');
  const granted = await stack.cli('grants', 'add', '--resource', stack.resource, '--identity', 'copy-writer', '--access', 'write');
  expect(granted.stderr).toBe('');
  dir = mkdtempSync(join(tmpdir(), 'warden-copy-'));
});

afterAll(async () => {
  await stack?.stop();
  await db?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type PgError = Error & { code?: string; severity?: string };

async function gatewayClient(sub = 'demo-admin'): Promise<pg.Client> {
  const c = new pg.Client({ host: stack.host, port: stack.port, user: sub, database: stack.resource, password: await stack.token(sub) });
  await c.connect();
  return c;
}

/** A session straight to Postgres, to compare with. */
async function directClient(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  return c;
}

/** A new identity's grant reaches the gateway with the next config snapshot: retry until it does. */
async function writerClient(): Promise<pg.Client> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await gatewayClient('copy-writer');
    } catch (err) {
      if (attempt >= 50) throw err;
      await sleep(200);
    }
  }
}

async function copyOut(c: pg.Client, sql: string): Promise<{ data: Buffer; rows: number }> {
  const stream = c.query(copyTo(sql));
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return { data: Buffer.concat(chunks), rows: stream.rowCount };
}

async function copyIn(c: pg.Client, sql: string, source: Iterable<Buffer> | AsyncIterable<Buffer>): Promise<number> {
  const stream = c.query(copyFrom(sql));
  await pipeline(Readable.from(source), stream);
  return stream.rowCount;
}

async function copyInError(c: pg.Client, sql: string, source: Iterable<Buffer>): Promise<PgError> {
  return copyIn(c, sql, source).then(
    () => {
      throw new Error(`${sql} unexpectedly succeeded`);
    },
    (err: PgError) => err,
  );
}

/** The buffer in pieces of uneven sizes, so CopyData messages split rows (and rows split messages). */
function* pieces(data: Buffer): Generator<Buffer> {
  const sizes = [1, 7, 4096, 65_539, 100, 30_000];
  for (let pos = 0, i = 0; pos < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    yield data.subarray(pos, pos + n);
    pos += n;
  }
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Row count and a checksum of a table's contents, read straight from Postgres. */
async function checksum(table: string): Promise<{ n: number; md5: string }> {
  const r = await db.query(`SELECT count(*)::int AS n, md5(string_agg(t::text, E'\\n' ORDER BY id)) AS md5 FROM ${table} t`);
  return r.rows[0];
}

async function count(table: string): Promise<number> {
  return (await db.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n;
}

async function psqlScript(sub: string, lines: string[], extra: string[] = []) {
  const file = join(dir, `script-${Math.random().toString(36).slice(2)}.sql`);
  writeFileSync(file, lines.join('\n') + '\n');
  return sh('psql', [stack.conninfo({ user: sub }), '-X', '-v', 'VERBOSITY=verbose', ...extra, '-f', file], { PGPASSWORD: await stack.token(sub) });
}

async function psqlDirect(lines: string[]) {
  const file = join(dir, `direct-${Math.random().toString(36).slice(2)}.sql`);
  writeFileSync(file, lines.join('\n') + '\n');
  return sh('psql', [db.url, '-X', '-v', 'ON_ERROR_STOP=1', '-f', file]);
}

describe('COPY round-trips exactly through gateway and agent', () => {
  it.each(FORMATS)('node-postgres with pg-copy-streams, $name format', async ({ name, options }) => {
    const gw = await gatewayClient();
    const direct = await directClient();
    try {
      const fromGateway = await copyOut(gw, `COPY items TO STDOUT ${options}`);
      const fromPostgres = await copyOut(direct, `COPY items TO STDOUT ${options}`);
      expect(fromGateway.rows).toBe(ROWS);
      expect(fromGateway.data.length).toBeGreaterThan(1_000_000);
      expect(fromGateway.data.length).toBe(fromPostgres.data.length);
      expect(sha256(fromGateway.data)).toBe(sha256(fromPostgres.data));

      const table = `items_pg_${name}`;
      await db.query(`CREATE TABLE ${table} (LIKE items INCLUDING ALL)`);
      expect(await copyIn(gw, `COPY ${table} FROM STDIN ${options}`, pieces(fromGateway.data))).toBe(ROWS);
      expect(await checksum(table)).toEqual(await checksum('items'));

      // And out again through the chain, byte for byte what Postgres gives.
      const again = await copyOut(gw, `COPY ${table} TO STDOUT ${options}`);
      expect(sha256(again.data)).toBe(sha256(fromPostgres.data));
      // A query as the source, too.
      const query = `COPY (SELECT id, note, data FROM items WHERE id % 3 = 0 ORDER BY id) TO STDOUT ${options}`;
      const [viaGateway, viaPostgres] = [await copyOut(gw, query), await copyOut(direct, query)];
      expect(viaGateway.rows).toBe(Math.floor(ROWS / 3));
      expect(sha256(viaGateway.data)).toBe(sha256(viaPostgres.data));
    } finally {
      await gw.end();
      await direct.end();
    }
  });

  it('psql \\copy to and from files, in text, csv and binary', async () => {
    const out = (where: string, f: (typeof FORMATS)[number]) => `\\copy items TO '${join(dir, `${where}.${f.name}`)}' ${f.options}`;
    const viaGateway = await psqlScript('demo-admin', FORMATS.map((f) => out('gateway', f)), ['-v', 'ON_ERROR_STOP=1']);
    expect(viaGateway.stderr).toBe('');
    expect(viaGateway.code).toBe(0);
    expect(viaGateway.stdout.trim().split('\n')).toEqual(FORMATS.map(() => `COPY ${ROWS}`));
    const direct = await psqlDirect(FORMATS.map((f) => out('direct', f)));
    expect(direct.code).toBe(0);
    for (const f of FORMATS) {
      const mine = readFileSync(join(dir, `gateway.${f.name}`));
      expect(mine.length, f.name).toBeGreaterThan(1_000_000);
      expect(sha256(mine), f.name).toBe(sha256(readFileSync(join(dir, `direct.${f.name}`))));
      await db.query(`CREATE TABLE items_psql_${f.name} (LIKE items INCLUDING ALL)`);
    }

    const back = await psqlScript(
      'demo-admin',
      FORMATS.map((f) => `\\copy items_psql_${f.name} FROM '${join(dir, `gateway.${f.name}`)}' ${f.options}`),
      ['-v', 'ON_ERROR_STOP=1'],
    );
    expect(back.stderr).toBe('');
    expect(back.code).toBe(0);
    expect(back.stdout.trim().split('\n')).toEqual(FORMATS.map(() => `COPY ${ROWS}`));
    const original = await checksum('items');
    for (const f of FORMATS) expect(await checksum(`items_psql_${f.name}`), f.name).toEqual(original);
  });
});

// ---------------------------------------------------------------------------
// A gigabyte each way
// ---------------------------------------------------------------------------

/** The COPY text of row `id` of the big transfers: its id, a tab, 8 KiB derived from the id. */
function bigRow(id: number): string {
  return `${id}\t${createHash('md5').update(String(id)).digest('hex').repeat(256)}\n`;
}

/** All big rows, generated as they are read, in 128 KiB chunks. */
function* bigRows(): Generator<Buffer> {
  for (let id = 1; id <= BIG_ROWS; id += 16) {
    let s = '';
    for (let j = id; j < id + 16 && j <= BIG_ROWS; j++) s += bigRow(j);
    yield Buffer.from(s);
  }
}

let bigHash: { sha256: string; bytes: number } | undefined;

/** SHA-256 and length of the big rows' COPY text. */
function bigRowsDigest(): { sha256: string; bytes: number } {
  if (!bigHash) {
    const h = createHash('sha256');
    let bytes = 0;
    for (const chunk of bigRows()) {
      h.update(chunk);
      bytes += chunk.length;
    }
    bigHash = { sha256: h.digest('hex'), bytes };
  }
  return bigHash;
}

function expectBounded(reports: Record<string, { start: number; peak: number; samples: number }>, limit: number) {
  for (const [name, r] of Object.entries(reports)) {
    console.info(describeRss(name, r));
    expect(r.samples, name).toBeGreaterThan(5);
    expect(r.peak, describeRss(name, r)).toBeLessThan(limit);
  }
}

describe('a gigabyte through the chain with bounded memory', () => {
  it('COPY FROM STDIN of 1 GiB generated on the fly arrives intact', async () => {
    const c = await gatewayClient();
    try {
      await c.query(`SELECT set_config('sink.rows', '0', false), set_config('sink.ids', '0', false)`);
      let sent = 0;
      const counted = async function* () {
        for (const chunk of bigRows()) {
          sent += chunk.length;
          yield chunk;
        }
      };
      const rss = sampleRss({ gateway: stack.gatewayPid, agent: stack.agentPid });
      await copyIn(c, 'COPY sink FROM STDIN', counted());
      const reports = rss.stop();
      expect(sent).toBeGreaterThanOrEqual(GiB);
      // The trigger checked every row's 8 KiB and counted it; nothing was stored.
      const r = await c.query(`SELECT current_setting('sink.rows') AS rows, current_setting('sink.ids') AS ids, (SELECT count(*)::int FROM sink) AS stored`);
      expect(r.rows[0]).toEqual({ rows: String(BIG_ROWS), ids: String((BIG_ROWS * (BIG_ROWS + 1)) / 2), stored: 0 });
      expectBounded(reports, BIG_TRANSFER_RSS_LIMIT);
    } finally {
      await c.end();
    }
  });

  it('COPY TO STDOUT of 1 GiB arrives intact', async () => {
    const expected = bigRowsDigest();
    const c = await gatewayClient('demo');
    try {
      const rss = sampleRss({ gateway: stack.gatewayPid, agent: stack.agentPid });
      const stream = c.query(copyTo(`COPY (SELECT g, repeat(md5(g::text), 256) FROM generate_series(1, ${BIG_ROWS}) g) TO STDOUT`));
      const h = createHash('sha256');
      let bytes = 0;
      for await (const chunk of stream) {
        h.update(chunk as Buffer);
        bytes += (chunk as Buffer).length;
      }
      const reports = rss.stop();
      expect(stream.rowCount).toBe(BIG_ROWS);
      expect(bytes).toBeGreaterThanOrEqual(GiB);
      expect({ sha256: h.digest('hex'), bytes }).toEqual(expected);
      expectBounded(reports, BIG_TRANSFER_RSS_LIMIT);
    } finally {
      await c.end();
    }
  });
});

// ---------------------------------------------------------------------------
// CopyFail and bad data
// ---------------------------------------------------------------------------

/** COPY text rows `from`..`to` for copy_target. */
function goodRows(from: number, to: number): Buffer {
  let s = '';
  for (let i = from; i <= to; i++) s += `${i}\tnote ${i}\n`;
  return Buffer.from(s);
}

describe('CopyFail and bad data leave the session usable and nothing half-done', () => {
  it('pg-copy-streams destroy(err) sends CopyFail: 57014, and the session goes on', async () => {
    const c = await gatewayClient();
    try {
      const stream = c.query(copyFrom('COPY copy_target FROM STDIN'));
      const failed = new Promise<PgError>((resolve) => stream.on('error', resolve));
      // Rows the server has received before the client gives up.
      await new Promise<void>((resolve, reject) => stream.write(goodRows(1, 5000), (err) => (err ? reject(err) : resolve())));
      stream.destroy(new Error('the client gave up'));
      const err = await failed;
      expect(err.code).toBe('57014');
      expect(err.message).toBe('COPY from stdin failed: the client gave up');
      expect((await c.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
      expect(await count('copy_target')).toBe(0);
      // The session still copies.
      expect(await copyIn(c, 'COPY copy_target FROM STDIN', [goodRows(1, 10)])).toBe(10);
      expect(await count('copy_target')).toBe(10);
    } finally {
      await c.end();
      await db.query('TRUNCATE copy_target');
    }
  });

  it('a raw CopyFail inside a transaction fails it as Postgres does; stray copy messages after it are dropped', async () => {
    const raw = await RawClient.connect({ host: stack.host, port: stack.port, user: 'demo-admin', database: stack.resource, password: await stack.token('demo-admin') });
    const result = async (sql: string): Promise<Message[]> => {
      raw.send(serialize.query(sql));
      return raw.until('readyForQuery');
    };
    const errorOf = (msgs: Message[]) => {
      const e = msgs.find((m) => m.name === 'error')!;
      return { severity: e.severity, code: e.code, message: e.message };
    };
    const status = (msgs: Message[]) => msgs.at(-1)!.status;
    try {
      expect(status(await result(`BEGIN; INSERT INTO copy_target VALUES (0, 'before the copy')`))).toBe('T');
      raw.send(serialize.query('COPY copy_target FROM STDIN'));
      expect((await raw.next()).name).toBe('copyInResponse');
      raw.send(serialize.copyData(goodRows(1, 1000)));
      raw.send(serialize.copyFail('stopped by hand'));
      let msgs = await raw.until('readyForQuery');
      expect(errorOf(msgs)).toEqual({ severity: 'ERROR', code: '57014', message: 'COPY from stdin failed: stopped by hand' });
      expect(status(msgs)).toBe('E'); // in a failed transaction
      // Late CopyData and CopyDone after the failure: Postgres drops them.
      raw.send(serialize.copyData(goodRows(2000, 2001)));
      raw.send(serialize.copyDone());
      msgs = await result('SELECT 1');
      expect(errorOf(msgs).code).toBe('25P02');
      expect(status(await result('ROLLBACK'))).toBe('I');
      msgs = await result('SELECT count(*) FROM copy_target');
      expect(msgs.find((m) => m.name === 'dataRow')!.fields).toEqual(['0']);
      expect(status(msgs)).toBe('I');
    } finally {
      await raw.end();
    }
    expect(await count('copy_target')).toBe(0);
  });

  const BAD: Array<{ what: string; sql: string; data: () => Buffer; code: string; message: RegExp }> = [
    {
      what: 'text: not an integer',
      sql: 'COPY copy_target FROM STDIN',
      data: () => Buffer.concat([goodRows(1, 5000), Buffer.from('three\tbad\n'), goodRows(5001, 10_000)]),
      code: '22P02',
      message: /^invalid input syntax for type integer: "three"$/,
    },
    {
      what: 'text: a missing column',
      sql: 'COPY copy_target FROM STDIN',
      data: () => Buffer.concat([goodRows(1, 5000), Buffer.from('5001\n'), goodRows(5002, 10_000)]),
      code: '22P04',
      message: /^missing data for column "note"$/,
    },
    {
      what: 'text: an extra column',
      sql: 'COPY copy_target FROM STDIN',
      data: () => Buffer.concat([goodRows(1, 5000), Buffer.from('5001\ta\tb\n'), goodRows(5002, 10_000)]),
      code: '22P04',
      message: /^extra data after last expected column$/,
    },
    {
      what: 'text: NULL in a NOT NULL column',
      sql: 'COPY copy_target FROM STDIN',
      data: () => Buffer.concat([goodRows(1, 5000), Buffer.from('5001\t\\N\n'), goodRows(5002, 10_000)]),
      code: '23502',
      message: /null value in column "note"/,
    },
    {
      what: 'text: a duplicate key',
      sql: 'COPY copy_target FROM STDIN',
      data: () => Buffer.concat([goodRows(1, 5000), goodRows(42, 42), goodRows(5001, 10_000)]),
      code: '23505',
      message: /duplicate key value violates unique constraint/,
    },
    {
      what: 'csv: an unterminated quoted field',
      sql: 'COPY copy_target FROM STDIN WITH (FORMAT csv)',
      data: () => Buffer.from(Array.from({ length: 5000 }, (_, i) => `${i + 1},"csv ${i + 1}"\n`).join('') + '5001,"never closed\n'),
      code: '22P04',
      message: /^unterminated CSV quoted field$/,
    },
    {
      what: 'binary: no signature',
      sql: 'COPY copy_target FROM STDIN WITH (FORMAT binary)',
      data: () => goodRows(1, 100),
      code: '22P04',
      message: /^COPY file signature not recognized$/,
    },
  ];

  it.each(BAD)('bad data ($what) gets $code, nothing is stored, the session goes on', async ({ sql, data, code, message }) => {
    const c = await gatewayClient();
    try {
      const err = await copyInError(c, sql, pieces(data()));
      expect(err.code).toBe(code);
      expect(err.severity).toBe('ERROR');
      expect(err.message).toMatch(message);
      expect(await count('copy_target')).toBe(0);
      expect((await c.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
      expect(await copyIn(c, 'COPY copy_target FROM STDIN', [goodRows(1, 3)])).toBe(3);
    } finally {
      await c.end();
      await db.query('TRUNCATE copy_target');
    }
  });

  it('psql \\copy of a file with a bad row in the middle: the error and line, then the next statement runs', async () => {
    const file = join(dir, 'bad.txt');
    writeFileSync(file, Buffer.concat([goodRows(1, 5000), Buffer.from('three\tbad\n'), goodRows(5001, 10_000)]));
    const r = await psqlScript('demo-admin', [`\\copy copy_target FROM '${file}'`, 'SELECT count(*) AS stored FROM copy_target;'], ['-At']);
    expect(r.stderr).toContain('ERROR:  22P02: invalid input syntax for type integer: "three"');
    expect(r.stderr).toContain('COPY copy_target, line 5001, column id: "three"');
    expect(r.stdout.trim()).toBe('0');
    expect(await count('copy_target')).toBe(0);
  });
});

// ---------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------

describe('what each identity may copy', () => {
  // test/policy.test.ts already refuses a read identity COPY … TO PROGRAM and
  // COPY … FROM a server file; these add COPY FROM STDIN, FROM PROGRAM, and the
  // write level.
  it('a read-only identity is refused COPY FROM STDIN (pg-copy-streams and psql \\copy) but may COPY TO STDOUT', async () => {
    const c = await gatewayClient('demo');
    try {
      const err = await copyInError(c, 'COPY copy_target FROM STDIN', [goodRows(1, 100)]);
      expect(err.code).toBe('42501');
      expect(err.message).toMatch(/^warden: demo \(read\) may not COPY FROM STDIN copy_target on /);
      expect(await count('copy_target')).toBe(0);
      const out = await copyOut(c, 'COPY items TO STDOUT WITH (FORMAT csv)');
      expect(out.rows).toBe(ROWS);
      const refused = await copyInError(c, `COPY copy_target FROM PROGRAM 'echo 1,x'`, []);
      expect(refused.code).toBe('42501');
      expect(refused.message).toMatch(/^warden: demo \(read\) may not COPY FROM PROGRAM copy_target on .*runs a shell command/);
      expect((await c.query('SELECT count(*)::int AS n FROM items')).rows).toEqual([{ n: ROWS }]);
    } finally {
      await c.end();
    }

    const file = join(dir, 'demo-in.txt');
    writeFileSync(file, goodRows(1, 10));
    const r = await psqlScript('demo', [`\\copy copy_target FROM '${file}'`, `\\copy (SELECT id FROM items WHERE id <= 3) TO '${join(dir, 'demo-out.txt')}'`]);
    expect(r.stderr).toMatch(/ERROR:  42501: warden: demo \(read\) may not COPY FROM STDIN copy_target on /);
    expect(r.stdout).toContain('COPY 3');
    expect(readFileSync(join(dir, 'demo-out.txt'), 'utf8')).toBe('1\n2\n3\n');
    expect(await count('copy_target')).toBe(0);
  });

  it('a write identity copies from STDIN but is refused COPY TO/FROM PROGRAM and server files', async () => {
    const c = await writerClient();
    try {
      expect(await copyIn(c, 'COPY copy_target FROM STDIN', [goodRows(1, 10)])).toBe(10);
      expect((await copyOut(c, 'COPY copy_target TO STDOUT')).rows).toBe(10);
      const refusals: Array<[string, RegExp]> = [
        [`COPY copy_target FROM PROGRAM 'echo 11 x'`, /may not COPY FROM PROGRAM copy_target on .*runs a shell command/],
        [`COPY copy_target TO PROGRAM 'cat > /dev/null'`, /may not COPY TO PROGRAM copy_target on .*runs a shell command/],
        [`COPY (SELECT 1) TO PROGRAM 'cat > /dev/null'`, /may not COPY TO PROGRAM on .*runs a shell command/],
        [`COPY copy_target FROM '/etc/hostname'`, /may not COPY FROM FILE copy_target on .*reads a file/],
        [`COPY copy_target TO '/tmp/warden-copy-leak'`, /may not COPY TO FILE copy_target on .*writes a file/],
      ];
      for (const [sql, message] of refusals) {
        const err = await c.query(sql).then(() => null, (e: PgError) => e);
        expect(err?.code, sql).toBe('42501');
        expect(err?.message, sql).toMatch(/^warden: copy-writer \(write\) /);
        expect(err?.message, sql).toMatch(message);
      }
      expect(await count('copy_target')).toBe(10);
      expect((await c.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    } finally {
      await c.end();
      await db.query('TRUNCATE copy_target');
    }
  });
});

// ---------------------------------------------------------------------------
// A slow reader
// ---------------------------------------------------------------------------

describe('a client that reads a large result slowly', () => {
  const SLOW_ROWS = 70_000; // of 8 KB: 560 MB
  const cases = [
    { what: 'a SELECT', sql: `SELECT /* slow-reader */ g, repeat('x', 8000) FROM generate_series(1, ${SLOW_ROWS}) g`, row: 'dataRow', tag: `SELECT ${SLOW_ROWS}` },
    {
      what: 'COPY TO STDOUT',
      sql: `COPY (SELECT /* slow-reader */ g, repeat('x', 8000) FROM generate_series(1, ${SLOW_ROWS}) g) TO STDOUT`,
      row: 'copyData',
      tag: `COPY ${SLOW_ROWS}`,
    },
  ];

  it.each(cases)('of $what (560 MB) makes neither gateway nor agent buffer it', async ({ sql, row, tag }) => {
    const raw = await RawClient.connect({ host: stack.host, port: stack.port, user: 'demo', database: stack.resource, password: await stack.token('demo') });
    try {
      // A first statement, so that what a session loads once is not counted as growth.
      raw.send(serialize.query('SELECT 1'));
      await raw.until('readyForQuery');
      const rowsBefore = raw.counts[row] ?? 0;
      raw.keepBulk = false;
      raw.pause();
      const rss = sampleRss({ gateway: stack.gatewayPid, agent: stack.agentPid });
      raw.send(serialize.query(sql));
      // Six seconds of reading one chunk every 150 ms: a few MB of 560.
      for (let i = 0; i < 40; i++) {
        await sleep(150);
        await raw.readChunk();
      }
      const reports = rss.stop();
      for (const [name, r] of Object.entries(reports)) {
        console.info(describeRss(name, r));
        expect(r.peak - r.start, describeRss(name, r)).toBeLessThan(SLOW_READER_GROWTH_LIMIT);
        expect(r.peak, describeRss(name, r)).toBeLessThan(BIG_TRANSFER_RSS_LIMIT);
      }
      // Meanwhile Postgres still has most of the result to send, and waits for
      // its client (the agent) to read. (Polled: right after a read the
      // backend may be producing the rows that refill the buffers.)
      let activity: Array<{ state: string; wait_event: string | null }> = [];
      for (let i = 0; i < 20; i++) {
        activity = (
          await db.query(
            `SELECT state, wait_event FROM pg_stat_activity WHERE datname = $1 AND query LIKE '%slow-reader%' AND pid <> pg_backend_pid()`,
            [db.name],
          )
        ).rows;
        if (activity[0]?.state !== 'active' || activity[0]?.wait_event === 'ClientWrite') break;
        await sleep(100);
      }
      expect(activity).toEqual([{ state: 'active', wait_event: 'ClientWrite' }]);
      expect(raw.bytesRead).toBeLessThan(64 * MiB);
      // Then it reads the rest at full speed: all of it arrives.
      const rest = await raw.until('readyForQuery');
      expect(rest.filter((m) => m.name === 'error').map((m) => `${m.code}: ${m.message}`)).toEqual([]);
      expect(raw.counts[row]! - rowsBefore).toBe(SLOW_ROWS);
      expect(rest.find((m) => m.name === 'commandComplete')!.text).toBe(tag);
      expect(raw.bytesRead).toBeGreaterThan(SLOW_ROWS * 8000);
    } finally {
      await raw.end();
    }
  });
});
