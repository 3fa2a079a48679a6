// Shared by the catalog tests: a database fixture with every kind of object
// the resource catalog describes, what the catalog must say about it, and a
// scratch database to put it in.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { CatalogFunction, ResourceCatalog } from '../src/catalog/index.js';

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
`;

type Defaulted = 'kind' | 'securityDefiner' | 'owner';
const fn = (f: Omit<CatalogFunction, Defaulted> & Partial<Pick<CatalogFunction, Defaulted>>): CatalogFunction => ({
  kind: 'f',
  securityDefiner: false,
  owner: 'postgres',
  ...f,
});

/** What the fixture looks like in the catalog, apart from the server-specific fields. */
export const EXPECTED: Omit<ResourceCatalog, 'fetchedAt' | 'sessionUser' | 'searchPath' | 'schemas' | 'catalogRelations'> = {
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
        ['public', 'base', 'r'],
        ['public', 'customer_names', 'v'],
        ['public', 'customer_names2', 'v'],
        ['public', 'customers', 'r'],
        ['public', 'events', 'p'],
        ['public', 'events_2024', 'r'],
        ['public', 'orders', 'r'],
        ['public', 'ticket_seq', 'S'],
      ] as const
    ).map(([schema, name, kind]) => [`${schema}.${name}`, { schema, name, kind }]),
  ),
  viewReads: {
    'p.order_counts': ['public.orders'],
    'p.sums': ['p.accounts'],
    'public.customer_names': ['public.customers'],
    'public.customer_names2': ['public.customer_names', 'public.orders'],
  },
  viewCalls: {
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
    { table: 'public.orders', function: 'public.audit_trg', events: ['insert', 'update', 'delete'] },
  ],
  rules: [
    { table: 'p.notes', event: 'insert', relations: ['p.log'] },
    // pg_settings' own rules (UPDATE runs set_config): part of every database.
    { table: 'pg_catalog.pg_settings', event: 'update', relations: [] },
    { table: 'pg_catalog.pg_settings', event: 'update', relations: [] },
  ],
  functions: {
    'priv.add_cents': [
      fn({ schema: 'priv', name: 'add_cents', volatility: 'i', language: 'sql', body: 'select a + b' }),
    ],
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
};

export const SCHEMAS = ['information_schema', 'p', 'pg_catalog', 'pg_toast', 'priv', 'public'];

/** The catalog without the fields that depend on the server rather than the fixture. */
export function rest(c: ResourceCatalog) {
  const { fetchedAt: _f, sessionUser: _u, searchPath: _s, schemas: _n, catalogRelations: _c, ...others } = c;
  return others;
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
