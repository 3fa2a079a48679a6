// Lineage: where masked columns flow in a statement, from the parse tree and
// the catalog's column lists and view definitions. Every case states the
// whole Lineage, so a column lost (or one too many) fails.
import { describe, expect, it } from 'vitest';
import type { ResourceCatalog } from '../src/catalog/types.js';
import { catalog } from './masking-fixture.js';
import { lineage, type LineageContext } from '../src/masking/lineage.js';
import type { ColumnRef, Lineage } from '../src/masking/types.js';

const MASKED = new Set([
  'public.customers.email',
  'public.customers.card_number',
  'billing.accounts.iban',
  'public.payments.pan',
  'public.payments_2024.pan',
  'public.legacy.secret',
]);

function context(over: Partial<LineageContext> = {}): LineageContext {
  return {
    catalog: catalog(),
    paths: ['"$user", public'],
    isMasked: (r) => MASKED.has(`${r.schema}.${r.table}.${r.column}`),
    maskedTable: (s, t) => [...MASKED].some((k) => k.startsWith(`${s}.${t}.`)),
    ...over,
  };
}

const ref = (schema: string, table: string, column: string): ColumnRef => ({ schema, table, column });
const CARD = ref('public', 'customers', 'card_number');
const EMAIL = ref('public', 'customers', 'email');
const IBAN = ref('billing', 'accounts', 'iban');
const PAN = ref('public', 'payments', 'pan');
const PAN24 = ref('public', 'payments_2024', 'pan');

/** Output columns: `d(...)` a direct copy, `v(...)` derived, `N` nothing masked. */
const d = (...direct: ColumnRef[]) => ({ direct, derived: [] as ColumnRef[] });
const v = (...derived: ColumnRef[]) => ({ direct: [] as ColumnRef[], derived });
const N = d();
const p = (column: ColumnRef, where: string) => ({ column, where });

function expected(over: Partial<Lineage>): Lineage {
  return { outputs: null, predicates: [], written: [], opaque: [], ...over };
}

function check(sql: string, want: Partial<Lineage>, ctx = context()): void {
  expect(lineage(sql, ctx)).toEqual(expected(want));
}

describe('lineage: outputs through names', () => {
  it.each<[string, Partial<Lineage>]>([
    ['select id, card_number from customers', { outputs: [N, d(CARD)] }],
    ['select c.card_number as cn, c.name from public.customers c', { outputs: [d(CARD), N] }],
    ['select * from customers', { outputs: [N, N, d(EMAIL), d(CARD)] }],
    ['select c.* , o.note from customers c join orders o on o.customer_id = c.id', { outputs: [N, N, d(EMAIL), d(CARD), N] }],
    ['select b from customers as c(a, b, x, y)', { outputs: [N] }],
    ['select y, x from customers as c(a, b, x, y)', { outputs: [d(CARD), d(EMAIL)] }],
    ['select "card_number" from "customers"', { outputs: [d(CARD)] }],
    ['select id from orders', { outputs: [N] }],
    ['select 1, \'a\'', { outputs: [N, N] }],
    ['select public.customers.card_number from public.customers', { outputs: [d(CARD)] }],
  ])('%s', (sql, want) => check(sql, want));
});

describe('lineage: subqueries, CTEs, joins', () => {
  it.each<[string, Partial<Lineage>]>([
    ['select s.k from (select card_number as k from customers) s', { outputs: [d(CARD)] }],
    ['select k from (select card_number from customers) s(k)', { outputs: [d(CARD)] }],
    ['with x as (select card_number, email from customers) select email, card_number from x', { outputs: [d(EMAIL), d(CARD)] }],
    ['with x(a) as (select card_number from customers) select a from x', { outputs: [d(CARD)] }],
    // A CTE named like a table shadows it.
    ['with orders as (select card_number as note from customers) select note from orders', { outputs: [d(CARD)] }],
    [
      'with recursive r(n, c) as (select 1, card_number from customers union all select n + 1, c from r where n < 3) select c from r',
      { outputs: [d(CARD)] },
    ],
    ['select x.* from orders o, lateral (select card_number from customers c where c.id = o.customer_id) x', { outputs: [d(CARD)] }],
    ['select * from orders join customers using (id)', { outputs: [N, N, N, N, d(EMAIL), d(CARD)] }],
    ['select j.card_number from (customers join orders using (id)) as j', { outputs: [d(CARD)] }],
    ['select card_number from customers natural join orders', { outputs: [d(CARD)] }],
    ['select (select card_number from customers limit 1)', { outputs: [d(CARD)] }],
    ['select (select max(card_number) from customers)', { outputs: [v(CARD)] }],
    ['select o.id, (select c.email from customers c where c.id = o.customer_id) from orders o', { outputs: [N, d(EMAIL)] }],
    ['select array(select card_number from customers)', { outputs: [v(CARD)] }],
    ['select exists(select 1 from customers)', { outputs: [N] }],
    ['table customers', { outputs: [N, N, d(EMAIL), d(CARD)] }],
    ['values (1, 2)', { outputs: [N, N] }],
    ['select * from (values (1, \'a\')) as t(a, b)', { outputs: [N, N] }],
  ])('%s', (sql, want) => check(sql, want));
});

describe('lineage: views', () => {
  it.each<[string, Partial<Lineage>]>([
    // The view's own WHERE and ORDER BY are not the client's predicates.
    ['select card_number, email_upper, id from customer_cards', { outputs: [d(CARD), v(EMAIL), N] }],
    ['select * from customer_cards', { outputs: [N, d(CARD), v(EMAIL)] }],
    ['select card, email_upper from cards_again', { outputs: [d(CARD), v(EMAIL)] }],
    ['select id from customer_cards where card_number like \'4539%\'', { outputs: [N], predicates: [p(CARD, 'WHERE')] }],
    ['select 1 from cards_again order by email_upper', { outputs: [N], predicates: [p(EMAIL, 'ORDER BY')] }],
    ['select * from order_notes', { outputs: [N, N] }],
    ['select last4, n from card_summary', { outputs: [v(CARD), N] }],
    ['select v from customer_cards v', { outputs: [v(CARD, EMAIL)] }],
  ])('%s', (sql, want) => check(sql, want));
});

describe('lineage: expressions, casts, functions', () => {
  it.each<[string, Partial<Lineage>]>([
    ['select card_number::text, card_number::varchar from customers', { outputs: [d(CARD), d(CARD)] }],
    // A length cuts the value: a mask keeping the last 4 would show its first 4.
    ['select card_number::varchar(4), card_number::char(4), cast(card_number as int) from customers', { outputs: [v(CARD), v(CARD), v(CARD)] }],
    ['select id::text from customers', { outputs: [N] }],
    ['select upper(card_number), \'x\' || email from customers', { outputs: [v(CARD), v(EMAIL)] }],
    ['select substring(card_number from 1 for 4), md5(email), format(\'%s\', card_number) from customers', { outputs: [v(CARD), v(EMAIL), v(CARD)] }],
    ['select to_json(card_number), coalesce(email, card_number), greatest(email, name) from customers', { outputs: [v(CARD), v(EMAIL, CARD), v(EMAIL)] }],
    ['select array[card_number], row(email, 1) from customers', { outputs: [v(CARD), v(EMAIL)] }],
    ['select case when name = \'x\' then card_number else email end from customers', { outputs: [v(CARD, EMAIL)] }],
    ['select case when card_number like \'4%\' then 1 else 0 end from customers', { outputs: [v(CARD)], predicates: [p(CARD, 'CASE')] }],
    ['select c from customers c', { outputs: [v(EMAIL, CARD)] }],
    ['select row_to_json(c), to_json(c.*), row(c.*) from customers c', { outputs: [v(EMAIL, CARD), v(EMAIL, CARD), v(EMAIL, CARD)] }],
    ['select json_agg(c) from customers c', { outputs: [v(EMAIL, CARD)] }],
    ['select array_agg(card_number), string_agg(email, \',\') from customers', { outputs: [v(CARD), v(EMAIL)] }],
    ['select f.x from customers c, lateral upper(c.card_number) as f(x)', { outputs: [v(CARD)] }],
    ['select * from unnest(array(select email from customers))', { outputs: [v(EMAIL)] }],
    ['select card_number collate "C" from customers', { outputs: [d(CARD)] }],
    ['select percentile_disc(0.5) within group (order by card_number) from customers', { outputs: [v(CARD)], predicates: [p(CARD, 'WITHIN GROUP')] }],
  ])('%s', (sql, want) => check(sql, want));
});

describe('lineage: set operations', () => {
  it.each<[string, Partial<Lineage>]>([
    ['select card_number from customers union all select note from orders', { outputs: [d(CARD)] }],
    ['select card_number from customers union all select email from customers', { outputs: [d(CARD, EMAIL)] }],
    ['select card_number from customers union select note from orders', { outputs: [d(CARD)], predicates: [p(CARD, 'UNION')] }],
    ['select email from customers intersect select note from orders', { outputs: [d(EMAIL)], predicates: [p(EMAIL, 'INTERSECT')] }],
    ['select note from orders except all select card_number from customers', { outputs: [d(CARD)], predicates: [p(CARD, 'EXCEPT')] }],
    ['select card_number from customers union all select note from orders order by 1', { outputs: [d(CARD)], predicates: [p(CARD, 'ORDER BY')] }],
  ])('%s', (sql, want) => check(sql, want));
});

describe('lineage: predicates', () => {
  it.each<[string, Partial<Lineage>]>([
    ['select id from customers where card_number like \'4539%\'', { outputs: [N], predicates: [p(CARD, 'WHERE')] }],
    ['select o.id from orders o join customers c on c.card_number = o.note', { outputs: [N], predicates: [p(CARD, 'JOIN ON')] }],
    ['select o.id from orders o join customers c on card_number = note', { outputs: [N], predicates: [p(CARD, 'JOIN ON')] }],
    ['select 1 from customers c join customers d using (email)', { outputs: [N], predicates: [p(EMAIL, 'JOIN USING')] }],
    ['select count(*) from customers group by card_number', { outputs: [N], predicates: [p(CARD, 'GROUP BY')] }],
    ['select card_number, count(*) from customers group by 1', { outputs: [d(CARD), N], predicates: [p(CARD, 'GROUP BY')] }],
    ['select count(*) from customers group by rollup (email)', { outputs: [N], predicates: [p(EMAIL, 'GROUP BY')] }],
    ['select name from customers group by name having max(card_number) > \'4\'', { outputs: [N], predicates: [p(CARD, 'HAVING')] }],
    ['select id from customers order by card_number', { outputs: [N], predicates: [p(CARD, 'ORDER BY')] }],
    ['select id, card_number as k from customers order by k desc', { outputs: [N, d(CARD)], predicates: [p(CARD, 'ORDER BY')] }],
    ['select id, email from customers order by 2', { outputs: [N, d(EMAIL)], predicates: [p(EMAIL, 'ORDER BY')] }],
    ['select distinct card_number from customers', { outputs: [d(CARD)], predicates: [p(CARD, 'DISTINCT')] }],
    ['select distinct on (email) id from customers', { outputs: [N], predicates: [p(EMAIL, 'DISTINCT ON')] }],
    ['select rank() over (partition by email order by card_number) from customers', { outputs: [N], predicates: [p(EMAIL, 'PARTITION BY'), p(CARD, 'window ORDER BY')] }],
    ['select count(*) over w from customers window w as (order by email)', { outputs: [N], predicates: [p(EMAIL, 'window ORDER BY')] }],
    ['select id from customers limit (select length(max(card_number)) from customers)', { outputs: [N], predicates: [p(CARD, 'LIMIT')] }],
    ['select count(*) filter (where card_number like \'4%\') from customers', { outputs: [N], predicates: [p(CARD, 'FILTER')] }],
    ['select string_agg(name, \',\' order by email) from customers', { outputs: [N], predicates: [p(EMAIL, 'aggregate ORDER BY')] }],
    ['select id from orders where customer_id in (select id from customers where email = \'a@b.c\')', { outputs: [N], predicates: [p(EMAIL, 'WHERE')] }],
    ['select id from orders o where exists (select 1 from customers c where c.card_number = o.note)', { outputs: [N], predicates: [p(CARD, 'WHERE')] }],
    ['select id from orders where note = any (select card_number from customers)', { outputs: [N], predicates: [p(CARD, 'WHERE')] }],
    ['select id from customers for update', { outputs: [N] }],
  ])('%s', (sql, want) => check(sql, want));
});

describe('lineage: writes and RETURNING', () => {
  it.each<[string, Partial<Lineage>]>([
    ['insert into orders (note) select card_number from customers', { written: [{ column: CARD, into: 'public.orders' }] }],
    ['insert into orders (note) values (\'x\') returning note', { outputs: [N] }],
    ['insert into customers (id, card_number) values (1, \'4539\') returning *', { outputs: [N, N, d(EMAIL), d(CARD)] }],
    ['update orders o set note = c.card_number from customers c where c.id = o.customer_id', { written: [{ column: CARD, into: 'public.orders' }] }],
    ['update customers set name = \'x\' where email like \'%@x\' returning card_number', { outputs: [d(CARD)], predicates: [p(EMAIL, 'WHERE')] }],
    ['update orders set (note, id) = (select email, 1 from customers limit 1)', { written: [{ column: EMAIL, into: 'public.orders' }] }],
    ['delete from customers where card_number = \'1\' returning upper(email)', { outputs: [v(EMAIL)], predicates: [p(CARD, 'WHERE')] }],
    ['delete from orders o using customers c where c.id = o.customer_id and c.email = \'a\'', { predicates: [p(EMAIL, 'WHERE')] }],
    [
      'merge into orders o using customers c on o.note = c.card_number when matched and c.email is null then update set note = c.email when not matched then insert (note) values (c.card_number)',
      {
        predicates: [p(CARD, 'MERGE ON'), p(EMAIL, 'MERGE WHEN')],
        written: [
          { column: EMAIL, into: 'public.orders' },
          { column: CARD, into: 'public.orders' },
        ],
      },
    ],
    ['with d as (delete from customers returning card_number) select * from d', { outputs: [d(CARD)] }],
    ['with x as (select email from customers) insert into orders (note) select email from x', { written: [{ column: EMAIL, into: 'public.orders' }] }],
    ['create table copy1 as select id, card_number from customers', { written: [{ column: CARD, into: 'copy1' }] }],
    ['create materialized view public.mv as select upper(email) from customers', { written: [{ column: EMAIL, into: 'public.mv' }] }],
    ['select card_number into temp t1 from customers where email > \'\'', { predicates: [p(EMAIL, 'WHERE')], written: [{ column: CARD, into: 't1' }] }],
    ['create view v2 as select card_number from customers', {}],
    ['insert into customers (email) values (\'a\') on conflict (id) do update set card_number = excluded.email', { written: [{ column: EMAIL, into: 'public.customers' }] }],
  ])('%s', (sql, want) => check(sql, want));
});

describe('lineage: cursors, COPY, PREPARE, EXPLAIN, CALL', () => {
  it('DECLARE: the outputs, and binary from the options', () => {
    check('declare k cursor for select card_number from customers', { outputs: [d(CARD)], cursor: { name: 'k', binary: false } });
    check('declare k binary cursor with hold for select email from customers where card_number > \'\'', {
      outputs: [d(EMAIL)],
      predicates: [p(CARD, 'WHERE')],
      cursor: { name: 'k', binary: true },
    });
  });

  it('FETCH and MOVE name the cursor', () => {
    check('fetch 10 from k', { fetch: { name: 'k', returnsRows: true } });
    check('move forward 5 in k', { fetch: { name: 'k', returnsRows: false } });
  });

  const text = { format: 'text', delimiter: '\t', null: '\\N', quote: '"', escape: '"', header: false } as const;
  const csv = { format: 'csv', delimiter: ',', null: '', quote: '"', escape: '"', header: false } as const;

  it('COPY table TO: the table columns, the list order, the format', () => {
    check('copy customers to stdout', { outputs: [N, N, d(EMAIL), d(CARD)], copy: text });
    check('copy customers (card_number, id) to stdout with (format csv, header)', { outputs: [d(CARD), N], copy: { ...csv, header: true } });
    check("copy customers (email) to stdout with (format csv, delimiter ';', null 'NULL', quote '''', force_quote *)", {
      outputs: [d(EMAIL)],
      copy: { ...csv, delimiter: ';', null: 'NULL', quote: "'", escape: "'" },
    });
    check("copy customers (email) to stdout csv header quote '|' escape '\\'", { outputs: [d(EMAIL)], copy: { ...csv, header: true, quote: '|', escape: '\\' } });
    check('copy customers (id) to stdout binary', { outputs: [N], copy: { ...text, format: 'binary' } });
    check("copy orders to stdout with (delimiter '|', header false)", { outputs: [N, N, N], copy: { ...text, delimiter: '|' } });
  });

  it('COPY (query) TO, and COPY FROM', () => {
    check('copy (select upper(card_number) from customers order by email) to stdout with (format csv)', {
      outputs: [v(CARD)],
      predicates: [p(EMAIL, 'ORDER BY')],
      copy: csv,
    });
    check('copy customers from stdin', {});
  });

  it('PREPARE: its query', () => {
    check('prepare q(int) as select card_number from customers where id = $1 and email = $1::text', { outputs: [d(CARD)], predicates: [p(EMAIL, 'WHERE')] });
  });

  it('EXPLAIN: no outputs, the inner predicates; writes only when it runs the statement', () => {
    check('explain select card_number from customers where email like \'a%\'', { predicates: [p(EMAIL, 'WHERE')] });
    check('explain insert into orders (note) select card_number from customers', {});
    check('explain (analyze) insert into orders (note) select card_number from customers', { written: [{ column: CARD, into: 'public.orders' }] });
  });

  it('CALL: masked arguments cannot be followed', () => {
    check('call bump((select card_number from customers limit 1))', { opaque: [{ column: CARD, why: 'passed to procedure bump' }] });
    check('call bump(1)', {});
    check("do 'begin perform 1; end'", {});
  });

  it('anything else returns no rows and carries nothing', () => {
    check('set search_path = billing', {});
    check('create table t (card_number text)', {});
    check('', {});
  });
});

describe('lineage: placement, inheritance, unknown columns', () => {
  it('an unqualified name resolves through the path to another schema', () => {
    check('select iban from accounts', { outputs: [d(IBAN)] }, context({ paths: ['billing, public'] }));
    check('select iban from accounts', { outputs: [N] }, context({ paths: ['public, billing'] }));
    check('select * from accounts', { outputs: [N, d(IBAN), N] }, context({ paths: ['billing'] }));
  });

  it('an unknown path, or paths that differ: masked under any of them', () => {
    check('select iban from accounts', { outputs: [d(IBAN)] }, context({ paths: [null] }));
    check('select iban from accounts', { outputs: [d(IBAN)] }, context({ paths: ['public', 'billing'] }));
    check('select iban from billing.accounts', { outputs: [d(IBAN)] }, context({ paths: [null] }));
  });

  it('partitions: the parent and the child name their own columns', () => {
    check('select pan from payments', { outputs: [d(PAN)] });
    check('select pan from only payments_2024 where pan > \'4\'', { outputs: [d(PAN24)], predicates: [p(PAN24, 'WHERE')] });
  });

  it('a masked table whose columns are not known: names are asked, * cannot be expanded', () => {
    check('select secret from legacy', { outputs: [d(ref('public', 'legacy', 'secret'))] });
    check('select * from legacy', {
      outputs: [],
      opaque: [{ column: ref('public', 'legacy', '*'), why: "cannot expand * on public.legacy without the resource's catalog" }],
    });
  });

  it('no catalog: qualified names still resolve by name', () => {
    check('select card_number from public.customers', { outputs: [d(CARD)] }, context({ catalog: undefined }));
  });

  it('a statement reaching no masked table does not ask about columns', () => {
    let asked = 0;
    const ctx = context({
      isMasked: (r) => {
        asked++;
        return MASKED.has(`${r.schema}.${r.table}.${r.column}`);
      },
    });
    expect(lineage('select o.*, n.note from orders o join order_notes n using (id) where note like \'x\' order by 1', ctx).outputs).toEqual([N, N, N, N]);
    expect(asked).toBe(0);
  });

  it('a view whose definition is not known is opaque', () => {
    const cat = catalog() as unknown as { viewDefinitions: Record<string, string> };
    delete cat.viewDefinitions['public.customer_cards'];
    check(
      'select id from customer_cards',
      { outputs: [N], opaque: [{ column: ref('public', 'customer_cards', '*'), why: 'cannot follow view public.customer_cards whose definition is not known' }] },
      context({ catalog: cat as unknown as ResourceCatalog }),
    );
  });

  it('writes name the table where the path places it', () => {
    check('insert into accounts (iban) select card_number from customers', { written: [{ column: CARD, into: 'billing.accounts' }] }, context({ paths: ['billing, public'] }));
    check('update billing.accounts set owner = iban', { written: [{ column: IBAN, into: 'billing.accounts' }] });
  });

  it('views nested past the depth limit are opaque', () => {
    const cat = catalog() as unknown as { relations: Record<string, unknown>; viewReads: Record<string, string[]>; viewDefinitions: Record<string, string> };
    for (let i = 0; i < 10; i++) {
      cat.relations[`public.deep${i}`] = { schema: 'public', name: `deep${i}`, kind: 'v' };
      const from = i === 0 ? 'public.customers' : `public.deep${i - 1}`;
      cat.viewReads[`public.deep${i}`] = [from];
      cat.viewDefinitions[`public.deep${i}`] = ` SELECT card_number FROM ${from};`;
    }
    const out = lineage('select card_number from deep9', context({ catalog: cat as unknown as ResourceCatalog }));
    expect(out.opaque.map((o) => o.why)).toEqual(['cannot follow view public.deep1, nested too deeply to follow']);
    expect(lineage('select card_number from deep5', context({ catalog: cat as unknown as ResourceCatalog })).outputs).toEqual([d(CARD)]);
  });
});
