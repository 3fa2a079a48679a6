// The catalog query against real servers: PostgreSQL on 127.0.0.1 (15 on the
// development machine) and PGlite (the demo database, a newer major), on a
// fixture with every kind of object the catalog describes. Every field of
// the parsed catalog is asserted exactly.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CatalogShapeError, catalogQuery, parseCatalog, serverMajorVersion } from '../src/catalog/index.js';
import type { ResourceCatalog } from '../src/catalog/index.js';
import { checkOids, expected, FIXTURE, rest, SCHEMAS, scratchDatabase } from './catalog-fixture.js';

function checkCatalogRelations(names: string[]): void {
  for (const n of ['pg_class', 'pg_stats', 'pg_statistic', 'pg_settings', 'pg_proc', 'pg_roles', 'pg_matviews']) {
    expect(names).toContain(n);
  }
  // Indexes, toast tables and composite types are not relations one reads.
  expect(names).not.toContain('pg_class_oid_index');
  expect(names.some((n) => n.startsWith('pg_toast'))).toBe(false);
  expect([...names].sort()).toEqual(names.slice().sort());
}

/** Built-in function names: those of pg_catalog and information_schema, none of the fixture's own. */
function checkCatalogFunctions(names: string[] | undefined, own: readonly string[]): void {
  for (const n of ['count', 'now', 'format', 'btrim', 'set_config', 'query_to_xml', '_pg_expandarray']) expect(names).toContain(n);
  for (const n of own) expect(names).not.toContain(n);
  expect(new Set(names).size).toBe(names!.length);
}

const ownFunctions = (c: ResourceCatalog) => Object.values(c.functions).flatMap((list) => list.map((f) => f.name));

async function readCatalog(client: pg.Client, major?: number): Promise<ResourceCatalog> {
  // Without JIT, as fetchCatalog reads it: compiling would take seconds.
  await client.query('set jit = off');
  const r = await client.query<{ catalog: string }>(catalogQuery(major));
  expect(r.rows).toHaveLength(1);
  expect(typeof r.rows[0]!.catalog).toBe('string');
  return parseCatalog(r.rows[0]!.catalog, 1234);
}

describe('catalog query on PostgreSQL', () => {
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  let url = '';
  let major = 0;

  beforeAll(async () => {
    db = await scratchDatabase();
    url = db.url;
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query(FIXTURE);
      major = serverMajorVersion((await c.query<{ server_version: string }>('show server_version')).rows[0]!.server_version)!;
    } finally {
      await c.end();
    }
  });

  afterAll(async () => {
    await db?.drop();
  });

  it('describes every object of the fixture exactly', async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    // Another session's temp schema must not show up among the relations.
    const other = new pg.Client({ connectionString: url });
    await other.connect();
    try {
      await other.query('create temp table scratch (a int)');
      const catalog = await readCatalog(c, major);
      expect(catalog.fetchedAt).toBe(1234);
      expect(catalog.sessionUser).toBe('postgres');
      expect(catalog.searchPath).toBe('"$user", public');
      expect(catalog.schemas.filter((s) => !/^pg_(toast_)?temp_/.test(s))).toEqual(SCHEMAS);
      expect(catalog.schemas.some((s) => /^pg_temp_\d+$/.test(s))).toBe(true);
      checkCatalogRelations(catalog.catalogRelations);
      checkCatalogFunctions(catalog.catalogFunctions, ownFunctions(catalog));
      expect(rest(catalog)).toEqual(expected(major));
      await checkOids(catalog, c);
    } finally {
      await other.end();
      await c.end();
    }
  });

  it('reads the same catalog whatever the session search_path, and reports that path', async () => {
    const c = new pg.Client({ connectionString: url, options: '-c search_path=priv,p' });
    await c.connect();
    try {
      const catalog = await readCatalog(c, major);
      expect(catalog.searchPath).toBe('priv,p');
      expect(rest(catalog)).toEqual(expected(major));
      // The query restores the path it clears while deparsing SQL-standard bodies and views.
      expect((await c.query('show search_path')).rows[0].search_path).toBe('priv,p');
    } finally {
      await c.end();
    }
  });

  it('has a PostgreSQL 13 variant, which knows no SQL-standard bodies', async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const catalog = await readCatalog(c, 13);
      expect(catalogQuery(13)).not.toContain('prosqlbody');
      // Run on a newer server, the variant sees prosrc, which such functions leave empty.
      const blank = (name: string) => expected(major).functions[name]!.map((f) => ({ ...f, body: '' }));
      expect(rest(catalog)).toEqual({
        ...expected(major),
        functions: { ...expected(major).functions, 'public.ret1': blank('public.ret1'), 'public.total': blank('public.total') },
      });
    } finally {
      await c.end();
    }
  });

  it('stays small and quick with 2,000 columns', async () => {
    const wide = await scratchDatabase();
    try {
      const c = new pg.Client({ connectionString: wide.url });
      await c.connect();
      try {
        // 100 tables of 20 columns (half text), a view over every tenth, and 20 partitions of one of them.
        const columns = Array.from({ length: 20 }, (_, i) => `c${i} ${i % 2 ? 'text' : 'int'}`).join(', ');
        let ddl = 'create schema w;';
        for (let t = 0; t < 100; t++) {
          ddl += `create table w.t${t} (${columns})${t === 0 ? ' partition by list (c0)' : ''};`;
          if (t % 10 === 0) ddl += `create view w.v${t} as select * from w.t${t};`;
        }
        for (let p = 0; p < 20; p++) ddl += `create table w.t0_${p} partition of w.t0 for values in (${p});`;
        await c.query(ddl);
        await c.query('set jit = off');
        const started = Date.now();
        const text = (await c.query<{ catalog: string }>(catalogQuery(major))).rows[0]!.catalog;
        const took = Date.now() - started;
        const catalog = parseCatalog(text);
        const count = Object.values(catalog.columns).reduce((n, list) => n + list.length, 0);
        expect(count).toBe(130 * 20);
        expect(catalog.columns['w.t0_7']!.map((col) => [col.name, col.textLike])).toEqual(
          Array.from({ length: 20 }, (_, i) => [`c${i}`, i % 2 === 1]),
        );
        expect(catalog.parents['w.t0_7']).toEqual(['w.t0']);
        expect(Object.keys(catalog.viewDefinitions)).toHaveLength(10);
        expect(Object.keys(catalog.relationOids)).toHaveLength(130);
        // About 30 bytes a column on the wire; generous bounds for a busy machine.
        expect(text.length).toBeLessThan(count * 60);
        expect(took).toBeLessThan(5_000);
      } finally {
        await c.end();
      }
    } finally {
      await wide.drop();
    }
  });

  it('cannot be taken over by operators created on the search_path', async () => {
    const trapDb = await scratchDatabase();
    try {
      const c = new pg.Client({ connectionString: trapDb.url });
      await c.connect();
      try {
        // Each would be picked by a query comparing with loosely typed operands.
        for (const [op, l, r] of [
          ['=', 'oid', 'regclass'],
          ['<>', 'oid', 'integer'],
          ['=', 'oid', 'regnamespace'],
          ['=', 'oid', 'regproc'],
          ['!~', 'name', 'name'],
          ['~~', 'name', 'name'],
          ['||', 'name', 'text'],
          ['=', 'name', 'text'],
        ] as const) {
          const f = `trap_${randomBytes(4).toString('hex')}`;
          await c.query(
            `create function public.${f}(${l}, ${r}) returns boolean language plpgsql as $$ begin raise exception 'trapped ${op}'; end $$`,
          );
          await c.query(`create operator public.${op} (leftarg = ${l}, rightarg = ${r}, function = public.${f})`);
        }
        // Rows for every part of the query to compare: defaults, checks, domains, policies, trigger conditions, aggregates.
        await c.query(`
          create function public.g(int) returns int language sql immutable as 'select $1';
          create function public.ok(int) returns boolean language sql immutable as 'select true';
          create function public.trg() returns trigger language plpgsql as 'begin return new; end';
          create domain public.d as int check (public.ok(value));
          create table public.t (a int default public.g(1) check (public.ok(a)), b public.d);
          create index on public.t (public.g(a)) where public.ok(a);
          create policy p on public.t for select using (public.ok(a));
          create trigger w before insert on public.t for each row when (public.ok(new.a)) execute function public.trg();
          create view public.v as select a from public.t;
          create aggregate public.agg(int) (sfunc = int4pl, stype = int, finalfunc = public.g);`);
        const catalog = await readCatalog(c);
        expect(catalog.viewReads).toEqual({ 'public.v': ['public.t'] });
        // PostgreSQL 16 and later leave the column unqualified.
        expect(catalog.viewDefinitions).toEqual({ 'public.v': ` SELECT ${major >= 16 ? '' : 't.'}a\n   FROM public.t;` });
        expect(catalog.columns).toEqual({
          'public.t': [
            { name: 'a', attnum: 1, type: 23, textLike: false },
            { name: 'b', attnum: 2, type: catalog.columns['public.t']![1]!.type, textLike: false },
          ],
          'public.v': [{ name: 'a', attnum: 1, type: 23, textLike: false }],
        });
        expect(Object.keys(catalog.relations)).toEqual(['public.t', 'public.v']);
        expect(catalog.tableCalls).toEqual({ 'public.t': ['public.g', 'public.ok'] });
        expect(catalog.tableReadCalls).toEqual({ 'public.t': ['public.ok'] });
        expect(catalog.functions['public.agg']![0]!.calls).toEqual(['public.g']);
        // The traps are user operators like any other.
        expect(Object.keys(catalog.operators)).toEqual(['public.!~', 'public.<>', 'public.=', 'public.||', 'public.~~']);
        expect(catalog.operators['public.=']).toHaveLength(4);
      } finally {
        await c.end();
      }
    } finally {
      await trapDb.drop();
    }
  });
});

describe('catalog query on PGlite (the demo database)', () => {
  it('describes the fixture as PostgreSQL does', async () => {
    const { PGlite } = await import('@electric-sql/pglite');
    const db = await PGlite.create();
    try {
      await db.exec(FIXTURE);
      const version = (await db.query<{ server_version: string }>('show server_version')).rows[0]!.server_version;
      const major = serverMajorVersion(version)!;
      expect(major).toBeGreaterThanOrEqual(14);
      const r = await db.query<{ catalog: string }>(catalogQuery(major));
      const catalog = parseCatalog(r.rows[0]!.catalog, 1);
      expect(catalog.sessionUser).toBe('postgres');
      expect(catalog.schemas).toEqual(SCHEMAS);
      checkCatalogRelations(catalog.catalogRelations);
      checkCatalogFunctions(catalog.catalogFunctions, ownFunctions(catalog));
      expect(rest(catalog)).toEqual(expected(major));
      await checkOids(catalog, db);
    } finally {
      await db.close();
    }
  });
});

describe('parseCatalog', () => {
  const good = () => ({
    sessionUser: 'app',
    searchPath: 'public',
    schemas: ['public'],
    relations: [['public', 't', 'r']],
    catalogRelations: ['pg_class'],
    viewReads: null,
    viewCalls: null,
    children: null,
    foreignKeys: null,
    triggers: [['public.t', 'public.f', 4 | 8 | 16 | 32 | 1]],
    rules: null,
    functions: [
      ['public', 'f', 'f', 'v', 'c', false, 'app', null, null, null],
      ['public', 'agg', 'a', 'i', 'internal', false, 'app', null, null, ['public.f']],
    ],
    operators: [['public.<<<', ['public.f']]],
    tableCalls: [['public.t', ['public.f']]],
    tableReadCalls: null,
    relationColumns: null,
    viewDefinitions: null,
  });

  it('builds empty lists from json_agg nulls, decodes trigger bits, omits absent body, path and calls', () => {
    const c = parseCatalog(JSON.stringify(good()), 7);
    expect(c).toEqual({
      fetchedAt: 7,
      sessionUser: 'app',
      searchPath: 'public',
      schemas: ['public'],
      relations: { 'public.t': { schema: 'public', name: 't', kind: 'r' } },
      catalogRelations: ['pg_class'],
      viewReads: {},
      viewCalls: {},
      children: {},
      foreignKeys: [],
      triggers: [{ table: 'public.t', function: 'public.f', events: ['insert', 'update', 'delete', 'truncate'] }],
      rules: [],
      functions: {
        'public.f': [
          { schema: 'public', name: 'f', kind: 'f', volatility: 'v', language: 'c', securityDefiner: false, owner: 'app' },
        ],
        'public.agg': [
          { schema: 'public', name: 'agg', kind: 'a', volatility: 'i', language: 'internal', securityDefiner: false, owner: 'app', calls: ['public.f'] },
        ],
      },
      operators: { 'public.<<<': ['public.f'] },
      tableCalls: { 'public.t': ['public.f'] },
      tableReadCalls: {},
      columns: {},
      relationOids: {},
      viewDefinitions: {},
      parents: {},
    });
    expect('body' in c.functions['public.f']![0]!).toBe(false);
    expect('calls' in c.functions['public.f']![0]!).toBe(false);
  });

  it('reads columns, relation oids and view definitions, and inverts children into parents', () => {
    const c = parseCatalog({
      ...good(),
      relationColumns: [
        ['public.t', 16400, [['a', 1, 23, false, -1], ['B c', 3, 16500, true, 24]]],
        // No columns: json_agg over no rows.
        ['public.empty', 4294967295, null],
        ['public.v', 16402, [['a', 1, 23, false, -1]]],
      ],
      // A view dropped while it was read: pg_get_viewdef gives null.
      viewDefinitions: [
        ['public.v', ' SELECT t.a\n   FROM public.t;'],
        ['public.gone', null],
      ],
      children: [
        ['public.a', ['public.c', 'public.d']],
        ['public.b', ['public.c']],
      ],
    });
    expect(c.columns).toEqual({
      'public.t': [
        { name: 'a', attnum: 1, type: 23, textLike: false },
        { name: 'B c', attnum: 3, type: 16500, textLike: true, typmod: 24 },
      ],
      'public.empty': [],
      'public.v': [{ name: 'a', attnum: 1, type: 23, textLike: false }],
    });
    expect(c.relationOids).toEqual({ 16400: 'public.t', 4294967295: 'public.empty', 16402: 'public.v' });
    expect(c.viewDefinitions).toEqual({ 'public.v': ' SELECT t.a\n   FROM public.t;' });
    expect(c.parents).toEqual({ 'public.c': ['public.a', 'public.b'], 'public.d': ['public.a'] });
  });

  it('throws a clear error naming the bad field', () => {
    const bad = (patch: Record<string, unknown>) => () => parseCatalog({ ...good(), ...patch });
    expect(() => parseCatalog('{"sessionUser": ')).toThrow(/is not JSON/);
    expect(() => parseCatalog('[]')).toThrow(CatalogShapeError);
    expect(bad({ sessionUser: undefined })).toThrow(/sessionUser should be a string/);
    expect(bad({ relations: {} })).toThrow(/relations should be an array/);
    expect(bad({ relations: [['public', 't']] })).toThrow(/relations\[0\] should be an array of 3/);
    expect(bad({ relations: [['public', 't', 'x']] })).toThrow(/relations\[0\]\[2\] should be one of/);
    expect(bad({ functions: [['public', 'f', 'f', 'x', 'c', false, 'app', null, null, null]] })).toThrow(/functions\[0\]\[3\]/);
    expect(bad({ functions: [['public', 'f', 'f', 'v', 'c', 'no', 'app', null, null, null]] })).toThrow(/functions\[0\]\[5\] should be a boolean/);
    expect(bad({ functions: [['public', 'f', 'f', 'v', 'c', false, 'app', null, null]] })).toThrow(/functions\[0\] should be an array of 10/);
    expect(bad({ functions: [['public', 'f', 'f', 'v', 'c', false, 'app', null, null, ['public.g']]] })).toThrow(
      /functions\[0\]\[9\] should be null for a function that is not an aggregate/,
    );
    expect(bad({ functions: [['public', 'a', 'a', 'i', 'internal', false, 'app', null, null, [7]]] })).toThrow(/functions\[0\]\[9\]\[0\] should be a string/);
    expect(bad({ operators: [['<<<', ['public.f']]] })).toThrow(/operators\[0\]\[0\] is not "schema.symbol"/);
    expect(bad({ operators: [['public.f', ['public.f']]] })).toThrow(/operators\[0\]\[0\] is not "schema.symbol"/);
    expect(bad({ operators: [['public.<<<', 'public.f']] })).toThrow(/operators\[0\]\[1\] should be an array/);
    expect(bad({ tableCalls: [['public.t']] })).toThrow(/tableCalls\[0\] should be an array of 2/);
    expect(bad({ tableReadCalls: {} })).toThrow(/tableReadCalls should be an array/);
    expect(bad({ rules: [['public.t', '9', []]] })).toThrow(/rules\[0\]\[1\] is not a rule event/);
    expect(bad({ triggers: [['public.t', 'public.f', '4']] })).toThrow(/triggers\[0\]\[2\] should be an integer/);
    expect(bad({ foreignKeys: [['a.b', 'c.d', 'c', 'z']] })).toThrow(/foreignKeys\[0\]\[3\]/);
    expect(bad({ viewReads: [['public.v', [1]]] })).toThrow(/viewReads\[0\]\[1\]\[0\] should be a string/);
    const columns = (cols: unknown, oid: unknown = 16400) => bad({ relationColumns: [['public.t', oid, cols]] });
    expect(bad({ relationColumns: {} })).toThrow(/relationColumns should be an array/);
    expect(bad({ relationColumns: [['public.t', 1]] })).toThrow(/relationColumns\[0\] should be an array of 3/);
    expect(columns([], '16400')).toThrow(/relationColumns\[0\]\[1\] should be an oid, got "16400"/);
    expect(columns([], 2 ** 32)).toThrow(/relationColumns\[0\]\[1\] should be an oid/);
    expect(columns([['a', 1, 23, false]])).toThrow(/relationColumns\[0\]\[2\]\[0\] should be an array of 5/);
    expect(columns([['a', 0, 23, false, -1]])).toThrow(/relationColumns\[0\]\[2\]\[0\]\[1\] should be a positive integer/);
    expect(columns([['a', 1, -1, false, -1]])).toThrow(/relationColumns\[0\]\[2\]\[0\]\[2\] should be an oid/);
    expect(columns([['a', 1, 23, 'f', -1]])).toThrow(/relationColumns\[0\]\[2\]\[0\]\[3\] should be a boolean/);
    expect(columns([['a', 1, 23, false, '-1']])).toThrow(/relationColumns\[0\]\[2\]\[0\]\[4\] should be an integer/);
    expect(columns([[null, 1, 23, false, -1]])).toThrow(/relationColumns\[0\]\[2\]\[0\]\[0\] should be a string/);
    expect(bad({ viewDefinitions: [['public.v', 7]] })).toThrow(/viewDefinitions\[0\]\[1\] should be a string/);
    expect(bad({ viewDefinitions: [[null, 'SELECT 1']] })).toThrow(/viewDefinitions\[0\]\[0\] should be a string/);
  });
});
