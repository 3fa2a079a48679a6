// The session gate: scopes decided on names placed the way the server will
// place them, with the session's search_path and prepared statements carried
// from statement to statement, and views, functions, triggers, rules,
// foreign keys and partitions followed through the resource's catalog.
import { describe, expect, it } from 'vitest';
import type { ResourceCatalog } from '../src/catalog/types.js';
import { ClassificationCache, StatementGate, type Rule } from '../src/policy/index.js';

const rule = (over: Partial<Rule> = {}): Rule => ({
  name: 'scoped',
  access: 'read',
  allowSchemas: ['public'],
  denySchemas: [],
  allowTables: [],
  denyTables: [],
  ...over,
});

function catalog(): ResourceCatalog {
  const rel = (schema: string, name: string, kind = 'r') => [`${schema}.${name}`, { schema, name, kind }] as const;
  const fn = (schema: string, name: string, over: Record<string, unknown> = {}) => ({
    schema,
    name,
    kind: 'f',
    volatility: 's' as const,
    language: 'sql',
    securityDefiner: false,
    owner: 'postgres',
    body: 'SELECT 1',
    ...over,
  });
  return {
    fetchedAt: 0,
    sessionUser: 'app',
    searchPath: '"$user", public',
    schemas: ['public', 'p', 'priv', 'app', 'pg_catalog', 'information_schema'],
    catalogRelations: ['pg_class', 'pg_stats', 'pg_namespace'],
    relations: Object.fromEntries([
      rel('public', 'secret'),
      rel('p', 'secret'),
      rel('public', 'v_secret', 'v'),
      rel('public', 'parent'),
      rel('p', 'child'),
      rel('public', 'measurements', 'p'),
      rel('p', 'm_part'),
      rel('public', 't_trig'),
      rel('p', 'audit'),
      rel('public', 't_rule'),
      rel('p', 'log'),
      rel('public', 'orders'),
    ]),
    viewReads: { 'public.v_secret': ['p.secret'] },
    viewCalls: {},
    children: { 'public.measurements': ['p.m_part'] },
    foreignKeys: [{ table: 'p.child', references: 'public.parent', onDelete: 'c', onUpdate: 'a' }],
    triggers: [{ table: 'public.t_trig', function: 'public.trig_fn', events: ['insert'] }],
    rules: [{ table: 'public.t_rule', event: 'insert', relations: ['p.log'] }],
    functions: {
      'public.get_secret': [fn('public', 'get_secret', { body: 'SELECT v FROM p.secret' })],
      'public.get_plain': [fn('public', 'get_plain', { language: 'plpgsql', body: 'BEGIN RETURN (SELECT count(*) FROM secret); END' })],
      'public.pathy': [fn('public', 'pathy', { body: 'SELECT v FROM secret', searchPath: 'p' })],
      'public.add_one': [fn('public', 'add_one', { volatility: 'i', body: 'SELECT $1 + 1' })],
      'public.bump': [fn('public', 'bump', { volatility: 'v', body: 'UPDATE public.orders SET n = n + 1' })],
      'public.definer': [fn('public', 'definer', { securityDefiner: true })],
      'public.dyn': [fn('public', 'dyn', { language: 'plpgsql', body: "BEGIN EXECUTE 'select 1'; END" })],
      'public.trig_fn': [fn('public', 'trig_fn', { language: 'plpgsql', volatility: 'v', body: 'BEGIN INSERT INTO p.audit VALUES (1); RETURN NEW; END' })],
      'priv.get_secret': [fn('priv', 'get_secret')],
    },
  };
}

function gate(rules: Rule[], opts: { catalog?: ResourceCatalog; startup?: Record<string, string> } = {}) {
  const g = new StatementGate(
    { identity: 'job', resource: 'db', rules, catalog: opts.catalog ? () => opts.catalog : undefined, assumeNoUserSchema: !opts.catalog },
    new ClassificationCache(),
  );
  if (opts.startup) {
    const r = g.startup(opts.startup);
    if (r) throw new Error(r.message);
  }
  return g;
}

/** Runs each text as its own query; returns, per text, the index refused (or -1) and the message. */
function run(g: StatementGate, ...texts: string[]): Array<{ refused: number; message?: string }> {
  return texts.map((t) => {
    const d = g.check(t);
    g.assumeRan(d);
    return d.refusal ? { refused: d.refusal.index, message: d.refusal.message } : { refused: -1 };
  });
}

describe('search_path, without a catalog', () => {
  it('SET in the same query string moves the names after it', () => {
    const [r] = run(gate([rule()]), 'set search_path = p; select * from secret');
    expect(r!.refused).toBe(1);
    expect(r!.message).toContain('SELECT p.secret');
  });

  it('SET as its own query, then the read', () => {
    expect(run(gate([rule()]), 'set search_path = p', 'select * from secret').map((r) => r.refused)).toEqual([-1, 0]);
  });

  it('a rolled-back SET and an ended SET LOCAL leave the path as it was', () => {
    const g = gate([rule()]);
    expect(run(g, 'begin', 'set search_path = p', 'rollback', 'select * from secret').map((r) => r.refused)).toEqual([-1, -1, -1, -1]);
    expect(run(g, 'begin; set local search_path = p; commit; select * from secret')[0]!.refused).toBe(-1);
    expect(run(g, 'begin', 'set local search_path = p', 'select * from secret', 'commit').map((r) => r.refused)).toEqual([-1, -1, 0, -1]);
    expect(run(g, 'select * from secret')[0]!.refused).toBe(-1);
  });

  it('ROLLBACK TO SAVEPOINT undoes a SET made after the savepoint', () => {
    const g = gate([rule()]);
    expect(run(g, 'begin', 'savepoint a', 'set search_path = p', 'rollback to savepoint a', 'select * from secret', 'commit').map((r) => r.refused)).toEqual([-1, -1, -1, -1, -1, -1]);
  });

  it('set_config anywhere leaves a path that cannot be told, and RESET brings it back', () => {
    const g = gate([rule()]);
    const [, read] = run(g, "select 1 from pg_class where set_config('search_path', 'p', false) is not null", 'select * from secret');
    expect(read!.refused).toBe(0);
    expect(read!.message).toContain('cannot be known');
    expect(run(g, 'reset search_path', 'select * from secret').map((r) => r.refused)).toEqual([-1, -1]);
    expect(run(g, "select set_config('search_path', '\"$user\", public', false)", 'select * from secret').map((r) => r.refused)).toEqual([-1, -1]);
  });

  it('the search_path startup parameter is where names start', () => {
    expect(run(gate([rule()], { startup: { search_path: 'p' } }), 'select * from secret')[0]!.refused).toBe(0);
    expect(run(gate([rule()], { startup: { search_path: 'public' } }), 'select * from secret')[0]!.refused).toBe(-1);
  });

  it('startup parameters above the level are refused like SET', () => {
    const g = gate([rule()]);
    expect(g.startup({ default_transaction_read_only: 'off' })?.sqlstate).toBe('42501');
    expect(g.startup({ application_name: 'ci', DateStyle: 'ISO' })).toBeNull();
  });

  it('a cached decision does not outlive a path change', () => {
    const g = gate([rule()]);
    expect(run(g, 'select * from secret', 'set search_path = p', 'select * from secret').map((r) => r.refused)).toEqual([-1, -1, 0]);
  });

  it('a path change that would re-resolve a prepared statement out of scope is refused', () => {
    const g = gate([rule({ allowSchemas: ['public'] })]);
    const parsed = g.check('select * from secret', { name: 's1' });
    expect(parsed.refusal).toBeNull();
    const d = g.check('set search_path = p');
    expect(d.refusal?.message).toContain('prepared statement "s1"');
    g.closed('s1');
    expect(g.check('set search_path = p').refusal).toBeNull();
  });

  it('SQL PREPARE / EXECUTE: EXECUTE is decided as the prepared statement, re-resolved', () => {
    const g = gate([rule()]);
    expect(run(g, 'prepare s as select * from secret', 'execute s').map((r) => r.refused)).toEqual([-1, -1]);
    expect(run(g, 'set search_path = p')[0]!.refused).toBe(0);
    expect(run(g, 'deallocate s', 'set search_path = p').map((r) => r.refused)).toEqual([-1, -1]);
  });

  it('a rule without scopes is not affected by the path', () => {
    const g = gate([rule({ allowSchemas: [] })]);
    expect(run(g, 'set search_path = p; select * from secret')[0]!.refused).toBe(-1);
  });
});

describe('with the catalog', () => {
  const cat = catalog();
  const refusal = (sql: string, rules: Rule[] = [rule()]) => gate(rules, { catalog: cat }).check(sql).refusal?.message;

  it('the default path comes from the catalog, "$user" included', () => {
    // app.secret does not exist, so secret is public.secret.
    expect(refusal('select * from secret')).toBeUndefined();
    expect(refusal('select * from p.secret')).toContain('SELECT p.secret');
  });

  it('a view counts as the tables it reads, unless trusted', () => {
    expect(refusal('select * from v_secret')).toContain('SELECT p.secret (through view public.v_secret)');
    expect(refusal('select * from v_secret', [rule({ trust: ['public.v_secret'] })])).toBeUndefined();
  });

  it('a function counts as what its body reaches, with its own search_path', () => {
    expect(refusal('select get_secret()')).toContain('SELECT p.secret (through function public.get_secret)');
    expect(refusal('select public.get_plain()')).toBeUndefined();
    expect(refusal('select pathy()')).toContain('SELECT p.secret (through function public.pathy)');
    expect(refusal('select priv.get_secret()')).toContain('SELECT priv.get_secret');
    expect(refusal('select add_one(1)')).toBeUndefined();
  });

  it('a volatile user function is a write; SECURITY DEFINER needs trust; run-time SQL cannot be scoped', () => {
    expect(refusal('select bump()', [rule({ allowSchemas: [] })])).toContain('volatile function public.bump');
    expect(refusal('select bump()', [rule({ access: 'write' })])).toBeUndefined();
    expect(refusal('select definer()', [rule({ allowSchemas: [] })])).toContain('SECURITY DEFINER function public.definer');
    expect(refusal('select definer()', [rule({ trust: ['public.definer'] })])).toBeUndefined();
    expect(refusal('select dyn()', [rule({ access: 'write' })])).toContain('SQL built at run time');
  });

  it('writes follow foreign-key actions, triggers and rules', () => {
    const w = [rule({ access: 'write' })];
    expect(refusal('delete from parent', w)).toContain('DELETE p.child (through a foreign key of p.child on public.parent)');
    expect(refusal('truncate parent cascade', w)).toContain('TRUNCATE p.child');
    expect(refusal('truncate parent', w)).toBeUndefined();
    expect(refusal('insert into t_trig values (1)', w)).toContain('INSERT p.audit');
    expect(refusal('insert into t_rule values (1)', w)).toContain('INSERT p.log');
  });

  it('partitions and inheritance children are read through their parent, not with ONLY', () => {
    expect(refusal('select * from measurements')).toContain('SELECT p.m_part');
    expect(refusal('select * from only measurements')).toBeUndefined();
  });

  it('catalogs that describe structure are open; those carrying data are not', () => {
    expect(refusal('select relname from pg_class')).toBeUndefined();
    expect(refusal('select * from information_schema.tables')).toBeUndefined();
    expect(refusal('select * from pg_stats')).toContain('pg_catalog.pg_stats');
    expect(refusal('select * from pg_stats', [rule({ allowSchemas: [] })])).toBeUndefined();
  });
});
