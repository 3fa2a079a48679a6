// The gate under masks: which statements it lets through with a masking plan
// and which it refuses, carrying cursors, prepared statements and the
// search_path from one statement to the next as a session does.
import { describe, expect, it } from 'vitest';
import type { ResourceCatalog } from '../src/catalog/types.js';
import { ColumnMasks } from '../src/masking/plan.js';
import type { MaskSet } from '../src/masking/types.js';
import { ClassificationCache, StatementGate, type Rule } from '../src/policy/index.js';
import { catalog } from './masking-fixture.js';

const RULE: Rule = { name: 'reader', access: 'read', allowSchemas: [], denySchemas: [], allowTables: [], denyTables: [] };

function masks(over: Partial<MaskSet> = {}): MaskSet {
  return {
    columns: [
      { pattern: 'public.customers.card_number', mask: { fn: 'partial', keep: 4 }, rule: 'pii' },
      { pattern: 'public.customers.email', mask: { fn: 'email' }, rule: 'pii' },
      { pattern: 'billing.*.iban', mask: { fn: 'hash' }, rule: 'bank' },
      { pattern: 'public.orders.customer_id', mask: { fn: 'partial', keep: 2 }, rule: 'ids' },
    ],
    detectors: [],
    predicates: 'refuse',
    onInvalid: 'null',
    key: Buffer.alloc(32, 7),
    ...over,
  };
}

/** The fixture, with a function that reads customers and one that does not. */
function withFunctions(): ResourceCatalog {
  const c = catalog();
  const fn = (name: string, body: string) => ({ schema: 'public', name, kind: 'f', volatility: 's' as const, language: 'sql', securityDefiner: false, owner: 'app', body });
  c.functions = {
    'public.first_card': [fn('first_card', 'select card_number from public.customers limit 1')],
    'public.order_count': [fn('order_count', 'select count(*) from public.accounts')],
    'public.py_card': [{ ...fn('py_card', 'return plpy.execute("select card_number from customers")[0]'), language: 'plpython3u' }],
  };
  c.rules = [{ table: 'public.accounts', event: 'insert', relations: ['public.customers'] }];
  return c;
}

function gate(set: MaskSet = masks(), opts: { rule?: Rule; catalog?: () => ResourceCatalog | undefined } = {}): StatementGate {
  const cat = withFunctions();
  const read = opts.catalog ?? (() => cat);
  return new StatementGate(
    { identity: 'ci', resource: 'shop', rules: [opts.rule ?? RULE], catalog: read, masks: new ColumnMasks(set, read) },
    new ClassificationCache(),
  );
}

/** The masked output columns of an allowed text's statements, as "position:column:fn". */
function masked(g: StatementGate, sql: string, parse?: string): string[][] {
  const d = g.check(sql, parse === undefined ? undefined : { name: parse });
  expect(d.refusal?.message).toBeUndefined();
  return (d.masks ?? []).map((p) => (p?.columns ?? []).flatMap((c, i) => (c ? [`${i + 1}:${c.column}:${c.mask.fn}`] : [])));
}

function refused(g: StatementGate, sql: string): string {
  const d = g.check(sql);
  expect(d.refusal).not.toBeNull();
  expect(d.refusal!.sqlstate).toBe('42501');
  return d.refusal!.message;
}

describe('plans', () => {
  it('masks plain references, with the stored type', () => {
    const g = gate();
    expect(masked(g, 'select id, card_number, email from customers')).toEqual([['2:public.customers.card_number:partial', '3:public.customers.email:email']]);
    const plan = g.check('select card_number from customers').masks![0]!;
    expect(plan.columns[0]).toMatchObject({ type: 25, textLike: true, rule: 'pii' });
    expect(plan.masked).toEqual(['public.customers.card_number']);
    expect(plan.scrubMessages).toBe(true);
  });

  it('a statement that reaches no masked column gets the plain plan', () => {
    const plan = gate().check('select id, iban from public.accounts').masks![0]!;
    expect(plan).toMatchObject({ columns: [], scrubMessages: false, masked: [] });
  });

  it('a mask that cannot keep the type gives NULL, or refuses when the entry says so', () => {
    expect(masked(gate(), 'select customer_id from orders')).toEqual([['1:public.orders.customer_id:null']]);
    expect(refused(gate(masks({ onInvalid: 'refuse' })), 'select customer_id from orders')).toMatch(/public\.orders\.customer_id.*cannot give a value of the column's type/);
  });

  it('every statement of a query string has its own plan', () => {
    expect(masked(gate(), 'select email from customers; select note from orders; select card_number from customers')).toEqual([
      ['1:public.customers.email:email'],
      [],
      ['1:public.customers.card_number:partial'],
    ]);
  });
});

describe('refusals name the column', () => {
  it.each([
    ['select upper(email) from customers', /expression over masked column public\.customers\.email \(mask pii\)/],
    ['select c from customers c', /expression over masked column public\.customers\./],
    ['select name from customers where card_number like $$4539%$$', /masked column public\.customers\.card_number \(mask pii\) in WHERE/],
    ['select name from customers order by email', /in ORDER BY/],
    ['select email from customers union select $$x$$', /in UNION/],
    ['select public.first_card()', /call public\.first_card, which reads masked columns of public\.customers/],
    ['select * from pg_catalog.pg_stats', /pg_stats.*may show masked values/],
  ])('%s', (sql, message) => {
    const text = refused(gate(), sql);
    expect(text).toMatch(message);
    expect(text).toMatch(/^warden: ci on shop may not /);
  });

  it('copying masked values into a table is refused', () => {
    const ddl = { ...RULE, access: 'ddl' as const };
    expect(refused(gate(masks(), { rule: ddl }), 'create table t as select card_number from customers')).toMatch(/copy the values of masked column public\.customers\.card_number \(mask pii\) into t/);
    expect(refused(gate(masks(), { rule: ddl }), 'insert into orders (note) select email from customers')).toMatch(/masked column public\.customers\.email .*into public\.orders/);
  });

  it('a function that reads no masked column is allowed', () => {
    expect(masked(gate(), 'select public.order_count()')).toEqual([[]]);
  });

  it('a function the rule trusts counts as itself', () => {
    expect(masked(gate(masks(), { rule: { ...RULE, trust: ['public.first_card'] } }), 'select public.first_card()')).toEqual([[]]);
  });

  it('predicates are allowed when the masks say so, and the output is still masked', () => {
    expect(masked(gate(masks({ predicates: 'allow' })), 'select card_number from customers where email like $$%@example.com$$ order by 1')).toEqual([
      ['1:public.customers.card_number:partial'],
    ]);
  });

  it('ORDER BY a position is decided per position, not shared by the shape cache', () => {
    const g = gate();
    expect(masked(g, 'select id, card_number from customers order by 1')).toEqual([['2:public.customers.card_number:partial']]);
    expect(refused(g, 'select id, card_number from customers order by 2')).toMatch(/in ORDER BY/);
  });

  it('COPY to a file cannot be masked', () => {
    const admin = { ...RULE, access: 'admin' as const };
    expect(refused(gate(masks(), { rule: admin }), "copy customers to '/tmp/x'")).toMatch(/only COPY TO STDOUT can be masked/);
  });

  it('without the resource catalog, statements over tables are refused rather than guessed', () => {
    const text = refused(gate(masks(), { catalog: () => undefined }), 'select id from orders');
    expect(text).toMatch(/catalog cannot be read/);
  });
});

describe('code and stored queries that would carry masked values out of sight', () => {
  const ddl = { ...RULE, access: 'admin' as const };
  it.each([
    ['do $$ begin raise notice $n$%$n$, (select card_number from public.customers limit 1); end $$', /run a DO block whose code reads masked columns of public\.customers/],
    ["do $$ begin execute 'select 1'; end $$", /run a DO block under masks: it runs SQL built at run time/],
    ['create function pg_temp.f() returns text language sql as $$ select email from public.customers $$', /create function .*whose code reads masked columns of public\.customers/],
    ['create function f() returns text language plpython3u as $$ return 1 $$', /written in plpython3u, which Warden cannot read/],
    ['create view v as select card_number from customers', /create view over masked columns of public\.customers/],
    ['create temp view v as select id from customers', /create view over masked columns/],
    ['select public.py_card()', /call public\.py_card, which may read masked columns out of Warden's sight: function public\.py_card is written in plpython3u/],
    ['insert into public.accounts (id) values (1)', /a rule on public\.accounts reads masked columns of public\.customers/],
    ['select * from public.made_elsewhere', /public\.made_elsewhere, which is not in the resource's catalog yet/],
    ['alter table customers rename column email to contact', /alter table on public\.customers: a change there could move its masked column public\.customers\.email \(mask pii\) out from under the mask/],
    ['alter table customers add column shout text generated always as (upper(email)) stored', /alter table on public\.customers: a change there could move its masked column public\.customers\.email \(mask pii\) out from under the mask/],
    ['create index on customers (lower(email))', /create index on public\.customers: a change there could move its masked column public\.customers\.email/],
  ])('%s', (sql, message) => {
    expect(refused(gate(masks(), { rule: ddl }), sql)).toMatch(message);
  });

  it('code that reads no masked column may be defined and run', () => {
    const g = gate(masks(), { rule: ddl });
    expect(masked(g, 'do $$ begin perform count(*) from public.accounts; end $$')).toEqual([[]]);
    expect(masked(g, 'create function pg_temp.n() returns bigint language sql as $$ select count(*) from public.accounts $$')).toEqual([[]]);
    expect(masked(g, 'create view v as select id, iban from public.accounts')).toEqual([[]]);
  });

  it('a table the session made is not in the catalog, and may be used', () => {
    const g = gate(masks(), { rule: ddl });
    expect(masked(g, 'create temp table scratch (a int)')).toEqual([[]]);
    expect(masked(g, 'insert into scratch values (1); select * from scratch')).toEqual([[], []]);
  });
});

describe('session state', () => {
  it('FETCH returns the columns its cursor was declared with', () => {
    const g = gate();
    expect(masked(g, 'declare c cursor with hold for select id, email from customers')).toEqual([['2:public.customers.email:email']]);
    expect(masked(g, 'fetch 10 from c')).toEqual([['2:public.customers.email:email']]);
    expect(g.check('declare c binary cursor with hold for select card_number from customers').masks![0]!.binary).toBe(true);
    expect(masked(g, 'fetch all in c')).toEqual([['1:public.customers.card_number:partial']]);
  });

  it('FETCH from a cursor Warden has not seen declared is refused', () => {
    expect(refused(gate(), 'fetch 1 from elsewhere')).toMatch(/cursor "elsewhere", which Warden has not seen declared/);
  });

  it('EXECUTE is masked as its PREPARE', () => {
    const g = gate();
    expect(masked(g, 'prepare p as select name, card_number from customers')).toEqual([[]]);
    expect(masked(g, 'execute p')).toEqual([['2:public.customers.card_number:partial']]);
  });

  it('a path change that would move a prepared statement onto masked columns is refused', () => {
    const g = gate();
    expect(masked(g, 'select iban from accounts', 'p1')).toEqual([[]]);
    g.ready('I', true);
    expect(refused(g, 'set search_path = billing')).toMatch(/prepared statement "p1" would then reach other columns than it was masked for/);
  });

  it('an unqualified name is masked under the path the session set', () => {
    const g = gate();
    expect(masked(g, 'set search_path = billing, public; select iban from accounts')).toEqual([[], ['1:billing.accounts.iban:hash']]);
  });
});
