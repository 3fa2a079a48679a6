import { describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import { MemoryBudget, MessageFilter, MessageRefused, messageTypes } from '../src/session/filter.js';
import { raise, clientMessages } from '../src/session/client-messages.js';
import { ResponseTracker } from '../src/session/tracker.js';
import { ClassificationCache, StatementGate, type Rule } from '../src/policy/index.js';
import { MessageReader, backendKeyData, decodeParameters, errorResponse, frame, readyForQuery } from '@warden/proto/pgwire';
import { serverMessages } from '../src/session/server-messages.js';
import type { TrackedStatement } from '../src/session/tracker.js';

const Q = 0x51;

function messages(buf: Buffer): Array<{ type: string; body: string }> {
  const r = new MessageReader();
  r.push(buf);
  const out = [];
  let m;
  while ((m = r.nextTyped(1 << 30))) out.push({ type: String.fromCharCode(m.type), body: m.body.toString('latin1') });
  return out;
}

describe('MessageFilter limits', () => {
  const big = serialize.query(`SELECT '${'x'.repeat(100_000)}'`);

  it('holds budget for a large message while it arrives, and gives it back when it is whole or the session ends', () => {
    const budget = new MemoryBudget(150_000);
    const a = new MessageFilter(messageTypes(Q), () => null, { budget });
    const b = new MessageFilter(messageTypes(Q), () => null, { budget });
    expect(a.filter(big.subarray(0, 70_000)).length).toBe(0);
    expect(budget.used).toBe(big.length);
    expect(() => b.filter(big.subarray(0, 70_000))).toThrow(MessageRefused);
    expect(a.filter(big.subarray(70_000))).toEqual(big);
    expect(budget.used).toBe(0);
    b.filter(big.subarray(0, 70_000));
    b.dispose();
    expect(budget.used).toBe(0);
  });

  it('refuses a message over maxMessage from its header, with what tooLarge says', () => {
    const f = new MessageFilter(messageTypes(Q), () => null, { maxMessage: 1_000, tooLarge: (n) => new MessageRefused('54000', `too large: ${n}`) });
    expect(() => f.filter(big.subarray(0, 10))).toThrow(`too large: ${big.length}`);
  });
});

describe('MessageFilter', () => {
  const input = Buffer.concat([serialize.query('SELECT 1'), serialize.sync(), serialize.query('SELECT 2'), serialize.flush()]);

  it('forwards the same Buffer when nothing is replaced', () => {
    const f = new MessageFilter(messageTypes(Q), () => null);
    expect(f.filter(input)).toBe(input);
  });

  it('gives the same output however the input is split', () => {
    const whole = new MessageFilter(messageTypes(Q), (_t, m) => serialize.query(`/*x*/${m.toString('utf8', 5, m.length - 1)}`)).filter(input);
    for (let size = 1; size <= input.length; size++) {
      const f = new MessageFilter(messageTypes(Q), (_t, m) => serialize.query(`/*x*/${m.toString('utf8', 5, m.length - 1)}`));
      const out: Buffer[] = [];
      for (let i = 0; i < input.length; i += size) out.push(f.filter(input.subarray(i, i + size)));
      expect(Buffer.concat(out)).toEqual(whole);
    }
    expect(messages(whole).map((m) => m.body)).toEqual(['/*x*/SELECT 1\0', '', '/*x*/SELECT 2\0', '']);
  });

  it('streams large pass-through messages without holding them', () => {
    const f = new MessageFilter(messageTypes(Q), () => null);
    const copyData = Buffer.alloc(1 << 20, 1);
    copyData[0] = 0x64;
    copyData.writeInt32BE(copyData.length - 1, 1);
    const first = f.filter(copyData.subarray(0, 1000));
    expect(first.length).toBe(1000);
    expect(f.filter(copyData.subarray(1000)).length).toBe(copyData.length - 1000);
  });

  it('rejects a length below 4', () => {
    const f = new MessageFilter(messageTypes(), () => null);
    expect(() => f.filter(Buffer.from([0x51, 0, 0, 0, 1]))).toThrow(/invalid message length/);
  });
});

describe('clientMessages', () => {
  const filter = (g: StatementGate) => clientMessages(g, new ResponseTracker(() => {}, () => 0));
  const read: Rule = { name: 'ci-read-only', access: 'read', allowSchemas: [], denySchemas: [], allowTables: [], denyTables: [] };
  const gate = () => new StatementGate({ identity: 'ci', resource: 'shop', rules: [read] }, new ClassificationCache());

  it('passes allowed statements unchanged', () => {
    const input = serialize.query('SELECT * FROM orders');
    expect(filter(gate()).filter(input)).toBe(input);
  });

  it('keeps statements before a refused one and raises in its place', () => {
    const out = messages(filter(gate()).filter(serialize.query('SELECT 1; DROP TABLE public.orders; SELECT 2')));
    expect(out).toHaveLength(1);
    expect(out[0]!.body).toMatch(/^SELECT 1;\nDO \$w\d\$BEGIN RAISE EXCEPTION USING ERRCODE = '42501'/);
    expect(out[0]!.body).toContain('warden: ci (read) may not DROP TABLE public.orders on shop (rule: ci-read-only)');
    expect(out[0]!.body).not.toContain('SELECT 2');
  });

  it('replaces a refused Parse and strips the parameters of its Binds', () => {
    const f = filter(gate());
    const input = Buffer.concat([
      serialize.parse({ name: 'del', text: 'DELETE FROM orders WHERE id = $1', types: [] }),
      serialize.bind({ statement: 'del', portal: '', values: ['7'], binary: true }),
      serialize.execute({}),
      serialize.sync(),
    ]);
    const out = messages(f.filter(input));
    expect(out.map((m) => m.type)).toEqual(['P', 'B', 'E', 'S']);
    expect(out[0]!.body).toMatch(/^del\0DO /);
    expect(out[1]!.body).toBe('\0del\0\0\0\0\0\0\x01\0\x01');
    // Re-preparing the name with an allowed statement lifts the rewrite.
    const again = Buffer.concat([
      serialize.parse({ name: 'del', text: 'SELECT $1::int', types: [] }),
      serialize.bind({ statement: 'del', portal: '', values: ['7'] }),
    ]);
    const ok = f.filter(again);
    expect(ok).toBe(again);
  });

  it('refuses the FunctionCall message below admin', () => {
    const fc = Buffer.from([0x46, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    const out = messages(filter(gate()).filter(fc));
    expect(out[0]!.type).toBe('Q');
    expect(out[0]!.body).toContain('FunctionCall');
  });

  it('refuses every statement with 53100 while audit cannot record, a Bind of one prepared before too, and lets them run again after', () => {
    let blocked: string | undefined = 'the audit outbox is full';
    const f = clientMessages(gate(), new ResponseTracker(() => {}, () => 0), undefined, () => blocked);
    const q = messages(f.filter(serialize.query('SELECT 1')));
    expect(q[0]!.body).toMatch(/^DO \$w\d\$BEGIN RAISE EXCEPTION USING ERRCODE = '53100'/);
    expect(q[0]!.body).toContain('warden: statements are refused while the audit trail cannot record them: the audit outbox is full');
    const p = messages(f.filter(serialize.parse({ name: 'one', text: 'SELECT 1', types: [] })));
    expect(p[0]!.body).toMatch(/^one\0DO /);
    blocked = undefined;
    const prepared = serialize.parse({ name: 'two', text: 'SELECT 2', types: [] });
    expect(f.filter(prepared)).toBe(prepared);
    blocked = 'writing the audit outbox failed (ENOSPC)';
    const b = messages(f.filter(serialize.bind({ statement: 'two', portal: '', values: [] })));
    expect(b.map((m) => m.type)).toEqual(['P', 'B']);
    expect(b[0]!.body).toContain('ENOSPC');
    blocked = undefined;
    const again = serialize.query('SELECT 3');
    expect(f.filter(again)).toBe(again);
  });

  it('quotes the message whatever dollar signs it holds', () => {
    expect(raise('42501', 'a $w0$ b')).toContain('$w1$a $w0$ b$w1$');
  });
});

describe('ResponseTracker with the server side', () => {
  const read: Rule = { name: 'r', access: 'read', allowSchemas: [], denySchemas: [], allowTables: [], denyTables: [] };
  const setup = () => {
    const done: TrackedStatement[] = [];
    const tracker = new ResponseTracker((s) => done.push(s), () => 0);
    const gate = new StatementGate({ identity: 'ci', resource: 'shop', rules: [read] }, new ClassificationCache());
    return { done, tracker, client: clientMessages(gate, tracker), server: serverMessages({ pid: 1, secret: 2 }, tracker) };
  };
  const complete = (tag: string) => frame(0x43, Buffer.from(`${tag}\0`));
  const ready = readyForQuery('I');

  it('pairs each statement of a Query with its CommandComplete', () => {
    const { done, client, server } = setup();
    client.filter(serialize.query('SELECT 1; SELECT 2'));
    server.filter(Buffer.concat([complete('SELECT 1'), complete('SELECT 3'), ready]));
    expect(done.map((s) => [s.sql, s.command, s.rows])).toEqual([
      ['SELECT 1', 'SELECT', 1],
      ['SELECT 2', 'SELECT', 3],
    ]);
  });

  it('records statements left unanswered when the session ends as of unknown outcome, refusals as refused', () => {
    const { done, tracker, client, server } = setup();
    client.filter(serialize.query('SELECT 1; SELECT pg_sleep(10)'));
    client.filter(serialize.query('DROP TABLE t'));
    server.filter(complete('SELECT 1'));
    expect(done).toHaveLength(1);
    tracker.abandon('the agent link was lost');
    // A refusal is recorded with the refusal as its error (the recorder's rule): it never ran.
    expect(done.map((s) => [s.sql, s.refusal ? 'refused' : 'allowed', (s.error ?? s.refusal)?.sqlstate, (s.error ?? s.refusal)?.message])).toEqual([
      ['SELECT 1', 'allowed', undefined, undefined],
      ['SELECT pg_sleep(10)', 'allowed', '08006', 'outcome unknown: the agent link was lost after the statement was forwarded'],
      ['DROP TABLE t', 'refused', '42501', expect.stringContaining('may not DROP TABLE')],
    ]);
  });

  it('records the error and the statements the server skipped after it', () => {
    const { done, client, server } = setup();
    client.filter(serialize.query('SELECT 1; DROP TABLE t; SELECT 2'));
    server.filter(Buffer.concat([complete('SELECT 1'), errorResponse({ severity: 'ERROR', code: '42501', message: 'no' }), ready]));
    expect(done.map((s) => [s.sql, s.refusal ? 'refused' : 'allowed', s.error?.sqlstate])).toEqual([
      ['SELECT 1', 'allowed', undefined],
      ['DROP TABLE t', 'refused', '42501'],
    ]);
  });

  it('follows named statements and portals through a pipeline', () => {
    const { done, client, server } = setup();
    client.filter(
      Buffer.concat([
        serialize.parse({ name: 'q', text: 'SELECT $1::int', types: [] }),
        serialize.bind({ statement: 'q', portal: 'p1', values: ['1'] }),
        serialize.execute({ portal: 'p1', rows: 1 }),
        serialize.bind({ statement: 'q', portal: '', values: ['2'] }),
        serialize.execute({}),
        serialize.sync(),
      ]),
    );
    server.filter(Buffer.concat([frame(0x73, Buffer.alloc(0)), complete('SELECT 1'), ready]));
    expect(done.map((s) => [s.sql, s.command, s.parameters && decodeParameters(s.parameters)])).toEqual([
      ['SELECT $1::int', 'SUSPENDED', ['1']],
      ['SELECT $1::int', 'SELECT', ['2']],
    ]);
  });

  it('swaps the upstream BackendKeyData for the gateway key', () => {
    const { server } = setup();
    const out = server.filter(backendKeyData(999, 888));
    expect(out.readInt32BE(5)).toBe(1);
    expect(out.readInt32BE(9)).toBe(2);
  });
});
