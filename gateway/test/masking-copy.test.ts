// COPY … TO STDOUT masking (copy.ts) over the CopyData messages the test
// Postgres really sends (read off a raw socket, one message per row), in
// text, csv with odd options and binary. Each masked stream is loaded back
// with COPY … FROM STDIN in the same format (pg-copy-streams), so the server
// itself checks that it parses and holds exactly the masked values.
import net from 'node:net';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { MessageReader, query, startupMessage, terminate } from '@warden/proto/pgwire';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CopyMasker } from '../src/masking/copy.js';
import { compileDetectors } from '../src/masking/detectors.js';
import type { CopyFormat, MaskPlan, MaskSet } from '../src/masking/types.js';
import { maskText } from '../src/masking/values.js';
import { scratchDatabase } from './catalog-fixture.js';

const KEY = Buffer.from('copy-key');
const SET: MaskSet = { columns: [], detectors: [], predicates: 'refuse', onInvalid: 'refuse', key: KEY };
const detectors = compileDetectors([{ detector: 'card', mask: { fn: 'partial', keep: 4 }, rule: 'cards' }], KEY);

const BIG = `${'é'.repeat(100_000)}4539148803436467`;
// id, card (text), email (text), d (date), u (uuid), note (text)
const ROWS: Array<Array<string | null>> = [
  ['1', '4539148803436467', 'jane.doe@example.com', '2024-02-29', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'card 4539 1488 0343 6467 here'],
  ['2', 'tab\there, comma; pipe| quote" \' back\\slash', 'new\nline\r\n@x.org', null, null, ''],
  ['3', '', '', '1999-01-01', '00000000-0000-0000-0000-000000000001', null],
  ['4', null, 'NULL', '2000-01-01', 'ffffffff-ffff-4fff-bfff-ffffffffffff', '\\N'],
  ['5', 'Zoë 😀 ünïcode', '"quoted"@example.com', '1900-01-01', '12345678-1234-4234-8234-123456789abc', BIG],
];
const COLUMNS = 'id int, card text, email text, d date, u uuid, note text';

const plan = (copy: CopyFormat): MaskPlan => ({
  columns: [
    null,
    { mask: { fn: 'partial', keep: 4 }, type: 25, textLike: true, column: 'public.t.card', rule: 'cards' },
    { mask: { fn: 'email' }, type: 25, textLike: true, column: 'public.t.email', rule: 'mails' },
    { mask: { fn: 'redact' }, type: 1082, textLike: false, column: 'public.t.d', rule: 'dates' },
    { mask: { fn: 'hash' }, type: 2950, textLike: false, column: 'public.t.u', rule: 'ids' },
    null,
  ],
  detect: true,
  copy,
  scrubMessages: false,
  masked: [],
});

/** What the masked table must hold. */
const expected = ROWS.map(([id, card, email, d, u, note]) => [
  id,
  card === null ? null : maskText(card, { fn: 'partial', keep: 4 }, 25, true, KEY),
  email === null ? null : maskText(email, { fn: 'email' }, 25, true, KEY),
  d === null ? null : '1900-01-01',
  u === null ? null : maskText(u, { fn: 'hash' }, 2950, false, KEY),
  note === null ? null : detectors.apply(note),
]);

/** The CopyData messages (whole) of one COPY … TO STDOUT, and the overall format of its CopyOutResponse. */
function copyOut(database: string, sql: string): Promise<{ format: number; messages: Buffer[] }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: 5432 });
    const reader = new MessageReader();
    const messages: Buffer[] = [];
    let format = -1;
    socket.on('error', reject);
    socket.on('connect', () => socket.write(startupMessage([['user', 'postgres'], ['database', database]])));
    socket.on('data', (b: Buffer) => {
      reader.push(b);
      for (let m = reader.nextTyped(1 << 26); m; m = reader.nextTyped(1 << 26)) {
        if (m.type === 0x45) return reject(new Error(m.body.toString()));
        if (m.type === 0x52 && m.body.readInt32BE(0) !== 0) return reject(new Error('the test server must trust 127.0.0.1'));
        if (m.type === 0x48) format = m.body[0]!;
        if (m.type === 0x64) messages.push(Buffer.from(m.raw));
        if (m.type === 0x5a) {
          if (format < 0) socket.write(query(sql));
          else {
            socket.end(terminate());
            resolve({ format, messages });
          }
        }
      }
    });
  });
}

describe('CopyMasker against Postgres 15', () => {
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  let client: pg.Client;
  beforeAll(async () => {
    db = await scratchDatabase();
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query(`set datestyle = 'ISO, YMD'; create table t (${COLUMNS})`);
    for (const r of ROWS) await client.query('insert into t values ($1, $2, $3, $4, $5, $6)', r);
  });
  afterAll(async () => {
    await client?.end();
    await db?.drop();
  });

  async function roundTrip(options: string, copy: CopyFormat, opts: { source?: string; extra?: string; types?: number[] } = {}) {
    const { format, messages } = await copyOut(db.name, `copy ${opts.source ?? 't'} to stdout with (${options}${opts.extra ?? ''})`);
    const masker = new CopyMasker(plan(copy), SET, detectors, format, opts.types);
    const masked = messages.map((m) => masker.data(m) ?? m);
    for (const m of masked) expect(m.readInt32BE(1)).toBe(m.length - 1);
    await client.query(`drop table if exists back; create table back (${COLUMNS})`);
    const stream = client.query(copyFrom(`copy back from stdin with (${options})`));
    await pipeline(Readable.from(masked.map((m) => m.subarray(5))), stream);
    const { rows } = await client.query({
      text: 'select id, card, email, d, u, note from back order by id',
      rowMode: 'array',
      types: { getTypeParser: () => (v: string) => v },
    });
    // Compared as one boolean first, so that a failure does not print the 100 kB value.
    expect(JSON.stringify(rows) === JSON.stringify(expected)).toBe(true);
    return { messages, masked };
  }

  it('text format: escapes, NULL marker, one row per message', async () => {
    const { messages } = await roundTrip('format text', { format: 'text', delimiter: '\t', null: '\\N', quote: '"', escape: '"', header: false });
    expect(messages).toHaveLength(ROWS.length);
  });

  it('text format with a pipe delimiter, a NULL word and a header', async () => {
    const { messages, masked } = await roundTrip(
      "format text, delimiter '|', null 'NIL', header true",
      { format: 'text', delimiter: '|', null: 'NIL', quote: '"', escape: '"', header: true },
    );
    expect(masked[0]).toBe(messages[0]); // the header passes unchanged
    expect(masked[1]!.subarray(5).toString()).toBe(`1|************6467|****@example.com|1900-01-01|${expected[0]![4]}|card **** **** **** 6467 here\n`);
  });

  it('csv with odd QUOTE, ESCAPE, DELIMITER, NULL and a header', async () => {
    const { masked } = await roundTrip(
      "format csv, delimiter ';', quote '''', escape '\\', null 'NULL', header true",
      { format: 'csv', delimiter: ';', null: 'NULL', quote: "'", escape: '\\', header: true },
      { extra: ', force_quote (note)' },
    );
    expect(masked[0]!.subarray(5).toString()).toBe('id;card;email;d;u;note\n');
    // Masked values are written quoted; the NULL word stays bare.
    expect(masked[4]!.subarray(5).toString()).toBe(`4;NULL;'****';'1900-01-01';'${expected[3]![4]}';'\\\\N'\n`);
  });

  it('csv defaults, from a query', async () => {
    await roundTrip('format csv', { format: 'csv', delimiter: ',', null: '', quote: '"', escape: '"', header: false }, { source: '(select * from t)' });
  });

  it('binary: header with the first row, trailer on its own', async () => {
    const plainBinary = { format: 'binary' as const, delimiter: '\t', null: '\\N', quote: '"', escape: '"', header: false };
    const { messages, masked } = await roundTrip('format binary', plainBinary, { types: [23, 25, 25, 1082, 2950, 25] });
    expect(messages).toHaveLength(ROWS.length + 1);
    expect(messages.at(-1)!.subarray(5).toString('hex')).toBe('ffff');
    expect(masked.at(-1)).toBe(messages.at(-1));
    // Detectors only reach binary fields whose type says they are text.
    const typed = new CopyMasker({ ...plan(plainBinary), columns: [] }, SET, detectors, 1, [23, 25, 25, 1082, 2950, 25]);
    const out = messages.map((m) => typed.data(m) ?? m);
    expect(Buffer.concat(out).includes(Buffer.from('card **** **** **** 6467 here'))).toBe(true);
    expect(Buffer.concat(out).includes(Buffer.from('4539148803436467'))).toBe(false);
  });

  it('refuses rows that do not fit the plan and a format mismatch', async () => {
    const { format, messages } = await copyOut(db.name, 'copy (select id, card from t) to stdout');
    const masker = new CopyMasker(plan({ format: 'text', delimiter: '\t', null: '\\N', quote: '"', escape: '"', header: false }), SET, detectors, format);
    expect(() => masker.data(messages[0]!)).toThrow(/2 columns where the masking plan has 6/);
    expect(() => new CopyMasker(plan({ format: 'csv', delimiter: ',', null: '', quote: '"', escape: '"', header: false }), SET, detectors, 1)).toThrow(/cannot be masked/);
  });
});
