// Shared by the catalog tests: a database fixture with every kind of object
// the resource catalog describes, what the catalog must say about it, and a
// scratch database to put it in.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { expect } from 'vitest';
import type { CatalogColumn, CatalogFunction, ResourceCatalog } from '../src/catalog/index.js';

export const PG_URL = process.env.WARDEN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export const FIXTURE = `
create schema p;
create schema priv;
create table public.customers (id int primary key, name text);
create table public.orders (id int primary key, customer_id int references public.customers on delete cascade, note text);
create index on public.orders (note);
create table p.accounts (id int primary key, owner int unique);
create table p.notes (id int primary key, account_owner int references p.accounts (owner) on update set null);
create table priv.secret (id int primary key, customer_id int references public.customers, s text);
create table public.events (id int, at date not null) partition by range (at);
create table public.events_2024 partition of public.events for values from ('2024-01-01') to ('2025-01-01');
create table p.events_2025 partition of public.events for values from ('2025-01-01') to ('2026-01-01');
create table public.base (id int);
create table p.derived (extra text) inherits (public.base);
create sequence public.ticket_seq;
create type public.pair as (a int, b int);
create table p.log (at timestamptz default now(), what text);
create function priv.mask(t text) returns text language sql immutable as $$ select left(t, 1) || '***' $$;
create function public.audit_trg() returns trigger language plpgsql as $$ begin insert into p.log(what) values (tg_op); return new; end $$;
create trigger orders_audit after insert or update or delete on public.orders for each row execute function public.audit_trg();
create trigger customers_trunc before truncate on public.customers execute function public.audit_trg();
create trigger events_audit after insert on public.events for each row execute function public.audit_trg();
create rule log_notes as on insert to p.notes do also insert into p.log(what) values ('note ' || new.id);
create view public.customer_names as select id, priv.mask(name) as name from public.customers;
create view public.customer_names2 as select upper(c.name) as name, o.id from public.customer_names c join public.orders o on o.customer_id = c.id;
create materialized view p.order_counts as select customer_id, count(*) from public.orders group by 1;
create function priv.add_cents(a int, b int) returns int language sql immutable as 'select a + b';
create operator priv.<+> (leftarg = int, rightarg = int, function = priv.add_cents);
create view p.sums as select id operator(priv.<+>) 1 as x from p.accounts;
create function public.total() returns bigint language sql stable begin atomic select count(*) from public.orders; end;
create function public.ret1(x int) returns int language sql return x + 1;
create function public.ret1(x text) returns text language sql return x || '1';
create function priv.get_secret(i int) returns text language plpgsql security definer stable set search_path = priv
  as $$ begin return (select s from secret where id = i); end $$;
create procedure public.bump(n int) language plpgsql as $$ begin update public.orders set note = 'x' where id = n; end $$;
-- Functions run without being named: by operators, aggregates, and what a table runs when written or read.
create function priv.f_eq(int, int) returns boolean language sql immutable as 'select $1 = $2';
create operator public.=== (leftarg = int, rightarg = int, function = priv.f_eq);
create operator public.## (leftarg = int, rightarg = int, function = pg_catalog.int4pl);
create function priv.f_default() returns int language sql stable as 'select 1';
create function priv.f_gen(int) returns int language sql immutable as 'select $1';
create function priv.f_check(int) returns boolean language sql immutable as 'select $1 > 0';
create function priv.f_index(text) returns text language sql immutable as 'select lower($1)';
create function priv.f_pred(int) returns boolean language sql immutable as 'select $1 > 0';
create function priv.f_policy(int) returns boolean language sql stable as 'select $1 > 0';
create function priv.f_policy_ins(int) returns boolean language sql stable as 'select $1 > 0';
create function priv.f_domain(int) returns boolean language sql immutable as 'select $1 > 0';
create function priv.f_when(int) returns boolean language sql stable as 'select $1 > 0';
create function priv.f_rule(int) returns int language sql volatile as 'select $1';
create domain public.positive as int check (priv.f_domain(value));
create domain public.positive2 as public.positive;
create type public.wrap as (v public.positive);
create table public.guarded (
  id int primary key default priv.f_default(),
  g int generated always as (priv.f_gen(id)) stored,
  n public.positive2,
  s text,
  check (priv.f_check(id)),
  check (id operator(public.===) id));
create index on public.guarded (priv.f_index(s)) where priv.f_pred(id);
alter table public.guarded enable row level security;
create policy sel on public.guarded for select using (priv.f_policy(id));
create policy ins on public.guarded for insert with check (priv.f_policy_ins(id));
create trigger guarded_when before update on public.guarded for each row when (priv.f_when(new.id)) execute function public.audit_trg();
create rule guarded_rule as on delete to public.guarded do also select priv.f_rule(old.id);
create table public.boxed (vals public.positive[]);
create table public.wrapped (w public.wrap);
create function priv.agg_step(int, int) returns int language sql immutable as 'select $1 + $2';
create function public.agg_final(int) returns int language sql immutable as 'select $1';
create aggregate public.mysum(int) (sfunc = priv.agg_step, stype = int, finalfunc = public.agg_final, initcond = '0');
create aggregate public.plainsum(int) (sfunc = pg_catalog.int4pl, stype = int);
-- What masking reads: columns through domains, a dropped column, quoted mixed-case names.
create domain public.email as text;
create domain public.email2 as public.email;
create table public."Contacts" ("Id" int, gone text, "E-Mail" public.email2, nick varchar(20), tags text[]);
alter table public."Contacts" drop column gone;
create view public."Contact View" as
  select "Id", "E-Mail", nick::public.email as alias, public.ret1("Id") as next from public."Contacts" where "Id" operator(public.===) 1;
`;

// Column types: built-in oids are the same on every server.
const INT4 = 23;
const INT8 = 20;
const TEXT = 25;
const VARCHAR = 1043;
const TEXT_ARRAY = 1009;
const DATE = 1082;
const TIMESTAMPTZ = 1184;
/** A type the fixture creates: rest() puts 0 for its oid, which differs between servers; OWN_TYPES says which. */
const OWN = 0;

/** Columns numbered from 1: [name, type, textLike]. */
const cols = (...cs: Array<[string, number, boolean?]>): CatalogColumn[] =>
  cs.map(([name, type, textLike = false], i) => ({ name, attnum: i + 1, type, textLike }));

/** "relation.column" → the type created by the fixture that the column has (a regtype). */
export const OWN_TYPES: Record<string, string> = {
  'public.boxed.vals': 'public.positive[]',
  'public.guarded.n': 'public.positive2',
  'public.wrap.v': 'public.positive',
  'public.wrapped.w': 'public.wrap',
  'public.Contacts.E-Mail': 'public.email2',
  'public.Contact View.E-Mail': 'public.email2',
  'public.Contact View.alias': 'public.email',
};

type Defaulted = 'kind' | 'securityDefiner' | 'owner';
const fn = (f: Omit<CatalogFunction, Defaulted> & Partial<Pick<CatalogFunction, Defaulted>>): CatalogFunction => ({
  kind: 'f',
  securityDefiner: false,
  owner: 'postgres',
  ...f,
});

const sqlFn = (schema: string, name: string, volatility: CatalogFunction['volatility'], body: string) =>
  fn({ schema, name, volatility, language: 'sql', body });

/** What the fixture looks like in the catalog, apart from the server-specific fields. */
export const EXPECTED: Omit<ResourceCatalog, ServerSpecific> = {
  relations: Object.fromEntries(
    (
      [
        ['p', 'accounts', 'r'],
        ['p', 'derived', 'r'],
        ['p', 'events_2025', 'r'],
        ['p', 'log', 'r'],
        ['p', 'notes', 'r'],
        ['p', 'order_counts', 'm'],
        ['p', 'sums', 'v'],
        ['priv', 'secret', 'r'],
        ['public', 'Contact View', 'v'],
        ['public', 'Contacts', 'r'],
        ['public', 'base', 'r'],
        ['public', 'boxed', 'r'],
        ['public', 'customer_names', 'v'],
        ['public', 'customer_names2', 'v'],
        ['public', 'customers', 'r'],
        ['public', 'events', 'p'],
        ['public', 'events_2024', 'r'],
        ['public', 'guarded', 'r'],
        ['public', 'orders', 'r'],
        ['public', 'ticket_seq', 'S'],
        ['public', 'wrapped', 'r'],
      ] as const
    ).map(([schema, name, kind]) => [`${schema}.${name}`, { schema, name, kind }]),
  ),
  viewReads: {
    'public.Contact View': ['public.Contacts'],
    'p.order_counts': ['public.orders'],
    'p.sums': ['p.accounts'],
    'public.customer_names': ['public.customers'],
    'public.customer_names2': ['public.customer_names', 'public.orders'],
  },
  viewCalls: {
    'public.Contact View': ['priv.f_eq', 'public.ret1'],
    'p.order_counts': [],
    'p.sums': ['priv.add_cents'],
    'public.customer_names': ['priv.mask'],
    'public.customer_names2': [],
  },
  children: {
    'public.base': ['p.derived'],
    'public.events': ['p.events_2025', 'public.events_2024'],
  },
  foreignKeys: [
    { table: 'p.notes', references: 'p.accounts', onDelete: 'a', onUpdate: 'n' },
    { table: 'priv.secret', references: 'public.customers', onDelete: 'a', onUpdate: 'a' },
    { table: 'public.orders', references: 'public.customers', onDelete: 'c', onUpdate: 'a' },
  ],
  triggers: [
    { table: 'p.events_2025', function: 'public.audit_trg', events: ['insert'] },
    { table: 'public.customers', function: 'public.audit_trg', events: ['truncate'] },
    { table: 'public.events', function: 'public.audit_trg', events: ['insert'] },
    { table: 'public.events_2024', function: 'public.audit_trg', events: ['insert'] },
    { table: 'public.guarded', function: 'public.audit_trg', events: ['update'] },
    { table: 'public.orders', function: 'public.audit_trg', events: ['insert', 'update', 'delete'] },
  ],
  rules: [
    { table: 'p.notes', event: 'insert', relations: ['p.log'] },
    // pg_settings' own rules (UPDATE runs set_config): part of every database.
    { table: 'pg_catalog.pg_settings', event: 'update', relations: [] },
    { table: 'pg_catalog.pg_settings', event: 'update', relations: [] },
    { table: 'public.guarded', event: 'delete', relations: [] },
  ],
  functions: {
    'priv.add_cents': [
      fn({ schema: 'priv', name: 'add_cents', volatility: 'i', language: 'sql', body: 'select a + b' }),
    ],
    'priv.agg_step': [sqlFn('priv', 'agg_step', 'i', 'select $1 + $2')],
    'priv.f_check': [sqlFn('priv', 'f_check', 'i', 'select $1 > 0')],
    'priv.f_default': [sqlFn('priv', 'f_default', 's', 'select 1')],
    'priv.f_domain': [sqlFn('priv', 'f_domain', 'i', 'select $1 > 0')],
    'priv.f_eq': [sqlFn('priv', 'f_eq', 'i', 'select $1 = $2')],
    'priv.f_gen': [sqlFn('priv', 'f_gen', 'i', 'select $1')],
    'priv.f_index': [sqlFn('priv', 'f_index', 'i', 'select lower($1)')],
    'priv.f_policy': [sqlFn('priv', 'f_policy', 's', 'select $1 > 0')],
    'priv.f_policy_ins': [sqlFn('priv', 'f_policy_ins', 's', 'select $1 > 0')],
    'priv.f_pred': [sqlFn('priv', 'f_pred', 'i', 'select $1 > 0')],
    'priv.f_rule': [sqlFn('priv', 'f_rule', 'v', 'select $1')],
    'priv.f_when': [sqlFn('priv', 'f_when', 's', 'select $1 > 0')],
    'public.agg_final': [sqlFn('public', 'agg_final', 'i', 'select $1')],
    // Aggregates run their support functions; pg_catalog's are left out.
    'public.mysum': [
      fn({ schema: 'public', name: 'mysum', kind: 'a', volatility: 'i', language: 'internal', calls: ['priv.agg_step', 'public.agg_final'] }),
    ],
    'public.plainsum': [fn({ schema: 'public', name: 'plainsum', kind: 'a', volatility: 'i', language: 'internal' })],
    'priv.get_secret': [
      fn({
        schema: 'priv',
        name: 'get_secret',
        volatility: 's',
        language: 'plpgsql',
        securityDefiner: true,
        body: ' begin return (select s from secret where id = i); end ',
        searchPath: 'priv',
      }),
    ],
    'priv.mask': [fn({ schema: 'priv', name: 'mask', volatility: 'i', language: 'sql', body: " select left(t, 1) || '***' " })],
    'public.audit_trg': [
      fn({
        schema: 'public',
        name: 'audit_trg',
        volatility: 'v',
        language: 'plpgsql',
        body: ' begin insert into p.log(what) values (tg_op); return new; end ',
      }),
    ],
    'public.bump': [
      fn({
        schema: 'public',
        name: 'bump',
        kind: 'p',
        volatility: 'v',
        language: 'plpgsql',
        body: " begin update public.orders set note = 'x' where id = n; end ",
      }),
    ],
    'public.ret1': [
      fn({ schema: 'public', name: 'ret1', volatility: 'v', language: 'sql', body: 'RETURN (x + 1)' }),
      fn({ schema: 'public', name: 'ret1', volatility: 'v', language: 'sql', body: "RETURN (x || '1'::text)" }),
    ],
    // Deparsed with every user object schema-qualified, whatever the session's search_path.
    'public.total': [
      fn({
        schema: 'public',
        name: 'total',
        volatility: 's',
        language: 'sql',
        body: 'BEGIN ATOMIC\n SELECT count(*) AS count\n    FROM public.orders;\nEND',
      }),
    ],
  },
  // public.## runs pg_catalog's int4pl: left out.
  operators: { 'priv.<+>': ['priv.add_cents'], 'public.===': ['priv.f_eq'] },
  tableCalls: {
    // Through a domain, in an array and in a composite type.
    'public.boxed': ['priv.f_domain'],
    'public.guarded': [
      'priv.f_check',
      'priv.f_default',
      'priv.f_domain',
      'priv.f_eq',
      'priv.f_gen',
      'priv.f_index',
      'priv.f_policy',
      'priv.f_policy_ins',
      'priv.f_pred',
      'priv.f_rule',
      'priv.f_when',
    ],
    'public.wrapped': ['priv.f_domain'],
  },
  tableReadCalls: { 'public.guarded': ['priv.f_policy'] },
  columns: {
    'p.accounts': cols(['id', INT4], ['owner', INT4]),
    'p.derived': cols(['id', INT4], ['extra', TEXT, true]),
    'p.events_2025': cols(['id', INT4], ['at', DATE]),
    'p.log': cols(['at', TIMESTAMPTZ], ['what', TEXT, true]),
    'p.notes': cols(['id', INT4], ['account_owner', INT4]),
    'p.order_counts': cols(['customer_id', INT4], ['count', INT8]),
    'p.sums': cols(['x', INT4]),
    'priv.secret': cols(['id', INT4], ['customer_id', INT4], ['s', TEXT, true]),
    'public.base': cols(['id', INT4]),
    // An array of a domain over int: neither is text.
    'public.boxed': cols(['vals', OWN]),
    // A domain over a domain over text is text-like; a text array is not.
    'public.Contact View': cols(['Id', INT4], ['E-Mail', OWN, true], ['alias', OWN, true], ['next', INT4]),
    // The dropped column's number (2) is skipped.
    'public.Contacts': [
      { name: 'Id', attnum: 1, type: INT4, textLike: false },
      { name: 'E-Mail', attnum: 3, type: OWN, textLike: true },
      { name: 'nick', attnum: 4, type: VARCHAR, textLike: true, typmod: 24 },
      { name: 'tags', attnum: 5, type: TEXT_ARRAY, textLike: false },
    ],
    'public.customer_names': cols(['id', INT4], ['name', TEXT, true]),
    'public.customer_names2': cols(['name', TEXT, true], ['id', INT4]),
    'public.customers': cols(['id', INT4], ['name', TEXT, true]),
    'public.events': cols(['id', INT4], ['at', DATE]),
    'public.events_2024': cols(['id', INT4], ['at', DATE]),
    'public.guarded': cols(['id', INT4], ['g', INT4], ['n', OWN], ['s', TEXT, true]),
    'public.orders': cols(['id', INT4], ['customer_id', INT4], ['note', TEXT, true]),
    // Composite types too.
    'public.pair': cols(['a', INT4], ['b', INT4]),
    'public.wrap': cols(['v', OWN]),
    'public.wrapped': cols(['w', OWN]),
  },
  // Every user object schema-qualified, those in public too, whatever the
  // session's search_path. As PostgreSQL 15 and earlier deparse them: see expected().
  viewDefinitions: {
    'p.order_counts': ' SELECT orders.customer_id,\n    count(*) AS count\n   FROM public.orders\n  GROUP BY orders.customer_id;',
    'p.sums': ' SELECT (accounts.id OPERATOR(priv.<+>) 1) AS x\n   FROM p.accounts;',
    'public.Contact View':
      ' SELECT "Contacts"."Id",\n    "Contacts"."E-Mail",\n    ("Contacts".nick)::public.email AS alias,\n    public.ret1("Contacts"."Id") AS next\n' +
      '   FROM public."Contacts"\n  WHERE ("Contacts"."Id" OPERATOR(public.===) 1);',
    'public.customer_names': ' SELECT customers.id,\n    priv.mask(customers.name) AS name\n   FROM public.customers;',
    'public.customer_names2':
      ' SELECT upper(c.name) AS name,\n    o.id\n   FROM (public.customer_names c\n     JOIN public.orders o ON ((o.customer_id = c.id)));',
  },
  parents: {
    'p.derived': ['public.base'],
    'p.events_2025': ['public.events'],
    'public.events_2024': ['public.events'],
  },
};

/**
 * EXPECTED for a server of the given major version: from PostgreSQL 16 on,
 * view definitions leave a column unqualified when one relation is read.
 */
export function expected(major: number): Omit<ResourceCatalog, ServerSpecific> {
  if (major < 16) return EXPECTED;
  return {
    ...EXPECTED,
    viewDefinitions: {
      ...EXPECTED.viewDefinitions,
      'p.order_counts': ' SELECT customer_id,\n    count(*) AS count\n   FROM public.orders\n  GROUP BY customer_id;',
      'p.sums': ' SELECT (id OPERATOR(priv.<+>) 1) AS x\n   FROM p.accounts;',
      'public.Contact View':
        ' SELECT "Id",\n    "E-Mail",\n    (nick)::public.email AS alias,\n    public.ret1("Id") AS next\n' +
        '   FROM public."Contacts"\n  WHERE ("Id" OPERATOR(public.===) 1);',
      'public.customer_names': ' SELECT id,\n    priv.mask(name) AS name\n   FROM public.customers;',
    },
  };
}

export const SCHEMAS = ['information_schema', 'p', 'pg_catalog', 'pg_toast', 'priv', 'public'];

/** Fields that depend on the server rather than on the fixture. */
type ServerSpecific = 'fetchedAt' | 'sessionUser' | 'searchPath' | 'schemas' | 'catalogRelations' | 'catalogFunctions' | 'relationOids';

/** Types and relations created after initdb have oids from here on (FirstNormalObjectId). */
const FIRST_NORMAL_OID = 16384;

/** The catalog without the server-specific fields, with 0 for the oids of the fixture's own column types. */
export function rest(c: ResourceCatalog): Omit<ResourceCatalog, ServerSpecific> {
  const { fetchedAt: _f, sessionUser: _u, searchPath: _s, schemas: _n, catalogRelations: _c, catalogFunctions: _p, relationOids: _o, ...others } = c;
  const columns = Object.fromEntries(
    Object.entries(c.columns).map(([k, list]) => [k, list.map((col) => (col.type >= FIRST_NORMAL_OID ? { ...col, type: OWN } : col))]),
  );
  return { ...others, columns };
}

/** Anything that runs SQL with $n parameters: pg.Client and PGlite. */
interface Queryable {
  query(sql: string, params?: unknown[]): Promise<{ rows: unknown[] }>;
}

/**
 * Checks the oids rest() leaves out against the server: relationOids is
 * exactly the relations of `columns`, each oid being 'schema.name'::regclass,
 * and the columns of OWN_TYPES have those types' oids.
 */
export async function checkOids(c: ResourceCatalog, db: Queryable): Promise<void> {
  const oidOf = async (sql: string, params: unknown[]): Promise<number> => {
    const r = await db.query(sql, params);
    return Number((r.rows[0] as { oid: unknown }).oid);
  };
  const keys = Object.values(c.relationOids);
  expect(new Set(keys).size).toBe(keys.length);
  expect(keys.sort()).toEqual(Object.keys(c.columns).sort());
  const regclass: Record<number, string> = {};
  for (const key of keys) {
    const dot = key.indexOf('.');
    const oid = await oidOf(`select pg_catalog.format('%I.%I', $1::text, $2::text)::regclass::oid::int8 as oid`, [key.slice(0, dot), key.slice(dot + 1)]);
    regclass[oid] = key;
  }
  expect(c.relationOids).toEqual(regclass);
  const types: Record<string, number | undefined> = {};
  const expected: Record<string, number> = {};
  for (const [where, type] of Object.entries(OWN_TYPES)) {
    const dot = where.lastIndexOf('.');
    types[where] = c.columns[where.slice(0, dot)]?.find((x) => x.name === where.slice(dot + 1))?.type;
    expected[where] = await oidOf(`select $1::text::regtype::oid::int8 as oid`, [type]);
  }
  expect(types).toEqual(expected);
}

/** A fresh database (random name) on the test server; dropped by the returned function. */
export async function scratchDatabase(): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `warden_catalog_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(PG_URL);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    async drop() {
      const a = new pg.Client({ connectionString: PG_URL });
      await a.connect();
      try {
        await a.query(`drop database if exists ${name} with (force)`);
      } finally {
        await a.end();
      }
    },
  };
}
