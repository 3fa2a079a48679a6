// The session gate: scopes decided on names placed the way the server will
// place them, with the session's search_path and prepared statements carried
// from statement to statement, and views, functions, triggers, rules,
// foreign keys and partitions followed through the resource's catalog.
import { describe, expect, it } from 'vitest';
import type { CatalogFunction, ResourceCatalog } from '../src/catalog/types.js';
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
    operators: {},
    tableCalls: {},
    tableReadCalls: {},
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

describe('functions a statement does not name', () => {
  const fn = (schema: string, name: string, over: Partial<CatalogFunction> = {}): CatalogFunction => ({
    schema,
    name,
    kind: 'f',
    volatility: 'i',
    language: 'sql',
    securityDefiner: false,
    owner: 'postgres',
    body: 'SELECT $1',
    ...over,
  });
  const fns = (...list: CatalogFunction[]) => Object.fromEntries(list.map((f) => [`${f.schema}.${f.name}`, [f]]));
  const rel = (schema: string, name: string) => [`${schema}.${name}`, { schema, name, kind: 'r' }] as const;

  function hidden(over: Partial<ResourceCatalog> = {}): ResourceCatalog {
    const base = catalog();
    return {
      ...base,
      relations: {
        ...base.relations,
        ...Object.fromEntries([rel('public', 't'), rel('public', 't_def'), rel('public', 't_ok'), rel('public', 't_pol'), rel('public', 't_uuid'), rel('public', 't_ext'), rel('public', 't_dblink')]),
      },
      functions: {
        ...base.functions,
        ...fns(
          fn('public', 'leak_op', { body: 'SELECT $1 = (SELECT count(*) FROM p.secret)' }),
          fn('public', 'plus_ok', { body: 'SELECT $1 + $2' }),
          fn('p', 'eq'),
          fn('public', 'leak_default', { volatility: 's', body: 'SELECT max(v) FROM p.secret' }),
          fn('public', 'leak_policy', { volatility: 's', language: 'plpgsql', body: 'BEGIN RETURN EXISTS (SELECT 1 FROM p.secret); END' }),
          fn('public', 'gen_id', { volatility: 'v', language: 'c', body: undefined }),
          fn('public', 'dblink_exec', { volatility: 'v', language: 'c', body: undefined }),
          fn('ext', 'gen'),
          fn('public', 'leak_step', { body: 'SELECT $1 + (SELECT count(*) FROM p.secret)' }),
          fn('public', 'step_ok', { body: 'SELECT $1 + $2' }),
          fn('p', 'step'),
          fn('public', 'leak_agg', { kind: 'a', language: 'internal', body: undefined, calls: ['public.leak_step'] }),
          fn('public', 'sum_ok', { kind: 'a', language: 'internal', body: undefined, calls: ['public.step_ok'] }),
          fn('public', 'p_agg', { kind: 'a', language: 'internal', body: undefined, calls: ['p.step'] }),
        ),
      },
      operators: { 'public.<<<': ['public.leak_op'], 'public.&+&': ['public.plus_ok'], 'p.<<<': ['p.eq'], 'p.===': ['p.eq'] },
      tableCalls: {
        'public.t_def': ['public.leak_default'],
        'public.t_ok': ['public.add_one'],
        'public.t_pol': ['public.leak_policy'],
        'public.t_uuid': ['public.gen_id'],
        'public.t_ext': ['ext.gen'],
        'public.t_dblink': ['public.dblink_exec'],
      },
      tableReadCalls: { 'public.t_pol': ['public.leak_policy'] },
      ...over,
    };
  }
  const cat = hidden();
  const read = [rule()];
  const write = [rule({ access: 'write' })];
  const refusal = (sql: string, rules: Rule[] = read, c: ResourceCatalog = cat) => gate(rules, { catalog: c }).check(sql).refusal?.message;

  it('a user operator runs its function, which counts as called', () => {
    expect(refusal('select a <<< b from public.t')).toContain('SELECT p.secret (through function public.leak_op)');
    expect(refusal('select a operator(public.<<<) b from public.t')).toContain('p.secret');
    expect(refusal('select * from public.t order by a using <<<')).toContain('p.secret');
    expect(refusal('select * from public.t where a <<< any (select 1)')).toContain('p.secret');
    expect(refusal('select 1 &+& 2')).toBeUndefined();
    // In the parameters of EXECUTE.
    const g = gate(read, { catalog: cat });
    expect(run(g, 'prepare q(text) as select $1', 'execute q(1 <<< 2)').map((r) => r.refused)).toEqual([-1, 0]);
    // Trusting the operator's function counts it as itself.
    expect(refusal('select a <<< b from public.t', [rule({ trust: ['public.leak_op'] })])).toBeUndefined();
  });

  it("an operator's schema counts for scope; an unqualified one is every user operator of that symbol on the path", () => {
    expect(refusal('select a operator(p.===) b from public.t')).toContain('p.eq (through operator p.===)');
    // Not in the catalog (its function is pg_catalog's, or it does not exist): its schema still counts.
    expect(refusal('select a operator(p.##) b from public.t')).toContain('operator p.##');
    expect(refusal('select a operator(pg_catalog.+) b from public.t')).toBeUndefined();
    // p is not on the path: p.=== cannot be the one.
    expect(refusal('select a === b from public.t')).toBeUndefined();
    const g = gate(read, { catalog: cat });
    expect(run(g, 'set search_path = p, public', 'select a === b from public.t').map((r) => r.refused)).toEqual([-1, 0]);
    // With public first, public.<<< and p.<<< may both be the one, depending on the types.
    expect(g.check('select a <<< b from public.t').refusal?.message).toContain('p.secret');
    // An operator of an implied comparison (IN compares with =) is followed too.
    const eq = hidden({ operators: { 'public.=': ['public.leak_op'] } });
    expect(refusal('select * from public.t where a in (select 1)', read, eq)).toContain('p.secret');
    expect(refusal('select * from public.t where a in (select 1)')).toBeUndefined();
  });

  it('without a catalog, only a qualified operator can be placed', () => {
    const g = () => gate(read);
    expect(g().check('select a operator(p.<<<) b from public.t').refusal?.message).toContain('operator p.<<<');
    expect(g().check('select a <<< b from public.t').refusal).toBeNull();
  });

  it('a write runs the defaults, checks, indexes and policies of its table', () => {
    expect(refusal('insert into public.t_def (id) values (1)', write)).toContain('INSERT p.secret (through function public.leak_default)');
    expect(refusal('update public.t_def set id = 2', write)).toContain('p.secret');
    // Reached through a view, a partition or a foreign key, the table runs them too.
    const via = hidden({ viewReads: { 'public.v_secret': ['public.t_def'] } });
    expect(refusal('insert into public.v_secret values (1)', write, via)).toContain('p.secret');
    // A read does not run defaults.
    expect(refusal('select * from public.t_def')).toBeUndefined();
    expect(refusal('insert into public.t_ok values (1)', write)).toBeUndefined();
  });

  it('a read runs the row-level-security policies of its table', () => {
    expect(refusal('select * from public.t_pol')).toContain('SELECT p.secret (through function public.leak_policy)');
    expect(refusal('delete from public.t_pol', write)).toContain('p.secret');
  });

  it("a volatile default does not make a read a write; the function's schema counts for scope", () => {
    expect(refusal('select * from public.t_uuid')).toBeUndefined();
    expect(refusal('insert into public.t_uuid default values', write)).toBeUndefined();
    expect(refusal('insert into public.t_ext default values', write)).toContain('ext.gen (through a default, check, index, policy, trigger or rule of public.t_ext)');
    expect(refusal('insert into public.t_ext default values', [rule({ access: 'write', allowSchemas: ['public', 'ext'] })])).toBeUndefined();
  });

  it('a function of the maintained list run by stored code is judged without its arguments', () => {
    const m = refusal('insert into public.t_dblink default values', [rule({ access: 'admin' })]);
    expect(m).toContain('public.dblink_exec, whose reach depends on arguments Warden cannot see');
    expect(refusal('insert into public.t_dblink default values', write)).toContain('public.dblink_exec');
    expect(refusal('insert into public.t_dblink default values', [rule({ access: 'admin', allowSchemas: [] })])).toBeUndefined();
  });

  it('an aggregate runs its support functions', () => {
    expect(refusal('select public.leak_agg(a) from public.t')).toContain('SELECT p.secret (through function public.leak_step)');
    expect(refusal('select leak_agg(a) from public.t')).toContain('p.secret');
    expect(refusal('select p_agg(a) from public.t')).toContain('p.step (through aggregate public.p_agg)');
    expect(refusal('select sum_ok(a) from public.t')).toBeUndefined();
  });

  it('every overload of a function is followed', () => {
    const over = hidden({
      functions: { ...cat.functions, 'public.over': [fn('public', 'over'), fn('public', 'over', { body: 'SELECT v FROM p.secret' })] },
    });
    expect(refusal('select public.over(1)', read, over)).toContain('p.secret');
  });
});
