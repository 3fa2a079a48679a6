// Which statements an approval rule holds: by kind, by the objects the
// statement touches (placed through search_path and the catalog), by UPDATE
// or DELETE without WHERE, and by a row estimate still to be asked; and the
// gate's decisions carrying those holds per statement.
import { ApprovalRule } from '@warden/proto';
import { describe, expect, it } from 'vitest';
import { afterEstimate, ApprovalMatcher, approvalRulesFor, type Hold } from '../src/approvals/index.js';
import type { ResourceCatalog } from '../src/catalog/types.js';
import { ClassificationCache, classify, StatementGate, type Rule, type StatementInfo } from '../src/policy/index.js';
import { catalog } from './masking-fixture.js';

const rule = (over: Partial<ApprovalRule>): ApprovalRule =>
  ApprovalRule.fromPartial({ resource: 'shop', approvers: ['dba'], quorum: 1, mode: 'wait', ...over });

const WRITER: Rule = { name: 'writer', access: 'ddl', allowSchemas: [], denySchemas: [], allowTables: [], denyTables: [] };

/** The fixture with an orders table in schema staging too. */
function withApp(): ResourceCatalog {
  const c = catalog();
  c.schemas = [...c.schemas, 'staging'];
  c.relations['staging.orders'] = { schema: 'staging', name: 'orders', kind: 'r' };
  return c;
}

function gate(rules: ApprovalRule[], opts: { catalog?: ResourceCatalog; access?: Rule } = {}): StatementGate {
  const cat = opts.catalog ?? withApp();
  return new StatementGate(
    { identity: 'ci', resource: 'shop', rules: [opts.access ?? WRITER], catalog: () => cat, approvals: new ApprovalMatcher(rules) },
    new ClassificationCache(),
  );
}

/** The holds of a text's statements, as "rule: why" ('-' for none). */
function holds(g: StatementGate, sql: string): string[] {
  const d = g.check(sql);
  expect(d.refusal?.message).toBeUndefined();
  return d.classification.ok ? d.classification.statements.map((_, i) => show(d.holds?.[i])) : [];
}

const show = (h: Hold | undefined) => (h ? `${h.rule.name}: ${h.why}${h.estimate ? ` [> ${h.estimate.rowsOver}]` : ''}` : '-');

/** One statement against a matcher, without the gate (no reach: names as written). */
function match(rules: ApprovalRule[], sql: string): string {
  const c = classify(sql);
  if (!c.ok) throw new Error(c.error);
  return show(new ApprovalMatcher(rules).match(c.statements[0]!, c.statements[0]!.text));
}

describe('approvalRulesFor', () => {
  it('keeps the rules on the resource that name the identity, one of its groups, or nobody', () => {
    const rules = [
      rule({ name: 'everyone' }),
      rule({ name: 'alice', identities: ['alice'] }),
      rule({ name: 'devs', groups: ['dev'] }),
      rule({ name: 'other', resource: 'crm' }),
      rule({ name: 'bob', identities: ['bob'], groups: ['ops'] }),
    ];
    expect(approvalRulesFor(rules, 'shop', 'alice', ['dev']).map((r) => r.name)).toEqual(['everyone', 'alice', 'devs']);
    expect(approvalRulesFor(rules, 'shop', 'carol', ['ops']).map((r) => r.name)).toEqual(['everyone', 'bob']);
    expect(approvalRulesFor(rules, 'crm', 'carol', []).map((r) => r.name)).toEqual(['other']);
  });
});

describe('ApprovalMatcher', () => {
  it('matches kinds by whole words at the start', () => {
    const alter = [rule({ name: 'ddl', kinds: ['ALTER', 'drop table'] })];
    expect(match(alter, 'ALTER TABLE public.orders ADD c int')).toBe('ddl: ALTER TABLE public.orders');
    expect(match(alter, 'DROP TABLE orders')).toBe('ddl: DROP TABLE orders');
    expect(match(alter, 'DROP VIEW v')).toBe('-');
    expect(match(alter, 'SELECT 1')).toBe('-');
    expect(match([rule({ name: 'x', kinds: ['ALTER T'] })], 'ALTER TABLE t ADD c int')).toBe('-');
    expect(match([rule({ name: 'x', kinds: ['TRUNCATE'] })], 'TRUNCATE public.orders')).toBe('x: TRUNCATE public.orders');
  });

  it('matches row changes wherever the statement makes them, and not where it only stores or plans them', () => {
    const del = [rule({ name: 'del', kinds: ['DELETE'] })];
    expect(match(del, 'WITH d AS (DELETE FROM public.orders WHERE id = 1 RETURNING *) SELECT * FROM d')).toBe('del: SELECT public.orders');
    expect(match(del, 'EXPLAIN ANALYZE DELETE FROM public.orders')).toBe('del: EXPLAIN ANALYZE public.orders');
    expect(match(del, 'MERGE INTO public.orders o USING public.customers c ON o.id = c.id WHEN MATCHED THEN DELETE')).toBe(
      'del: MERGE public.orders',
    );
    expect(match(del, 'EXPLAIN DELETE FROM public.orders')).toBe('-');
    expect(match(del, 'PREPARE p AS DELETE FROM public.orders')).toBe('-');
    expect(match(del, 'CREATE RULE r AS ON INSERT TO public.customers DO ALSO DELETE FROM public.orders')).toBe('-');
  });

  it('needs one of the objects, qualified or in any schema', () => {
    const rules = [rule({ name: 'orders', kinds: ['DELETE', 'ALTER TABLE'], objects: ['public.orders'] })];
    expect(match(rules, 'DELETE FROM public.orders WHERE id = 1')).toBe('orders: DELETE public.orders');
    expect(match(rules, 'DELETE FROM billing.orders WHERE id = 1')).toBe('-');
    expect(match(rules, 'DELETE FROM public.customers WHERE id = 1')).toBe('-');
    // Unplaced (no reach): it may be public.orders.
    expect(match(rules, 'DELETE FROM orders WHERE id = 1')).toBe('orders: DELETE orders');
    const bare = [rule({ name: 'any', kinds: ['DELETE'], objects: ['orders'] })];
    expect(match(bare, 'DELETE FROM billing.orders WHERE id = 1')).toBe('any: DELETE billing.orders');
    // Read, in a statement of a matching kind.
    expect(match(bare, 'DELETE FROM public.customers c USING public.orders o WHERE o.customer_id = c.id')).toBe('any: DELETE public.orders');
  });

  it('holds UPDATE and DELETE without WHERE, WITH queries included; WHERE CURRENT OF is a WHERE', () => {
    const ww = [rule({ name: 'ww', withoutWhere: true })];
    expect(match(ww, 'DELETE FROM public.orders')).toBe('ww: DELETE without WHERE on public.orders');
    expect(match(ww, 'UPDATE public.orders SET note = null')).toBe('ww: UPDATE without WHERE on public.orders');
    expect(match(ww, 'WITH d AS (DELETE FROM public.orders RETURNING id) SELECT count(*) FROM d')).toBe('ww: DELETE without WHERE on public.orders');
    expect(match(ww, 'WITH d AS (DELETE FROM public.orders WHERE id = 1 RETURNING id) UPDATE public.customers SET name = 1')).toBe(
      'ww: UPDATE without WHERE on public.customers',
    );
    expect(match(ww, 'DELETE FROM public.orders WHERE id = 1')).toBe('-');
    expect(match(ww, 'DELETE FROM public.orders WHERE CURRENT OF c')).toBe('-');
    expect(match(ww, 'INSERT INTO public.orders SELECT * FROM public.orders')).toBe('-');
    expect(match(ww, 'TRUNCATE public.orders')).toBe('-');
  });

  it('flags the statements whose row estimate decides', () => {
    const big = [rule({ name: 'big', rowsOver: 1000 })];
    expect(match(big, 'UPDATE public.orders SET note = 1 WHERE id > 5')).toBe('big: UPDATE public.orders estimated over 1000 rows [> 1000]');
    expect(match(big, 'DELETE FROM public.orders WHERE id > 5')).toBe('big: DELETE public.orders estimated over 1000 rows [> 1000]');
    expect(match(big, 'INSERT INTO public.orders SELECT * FROM public.orders')).toBe('big: INSERT public.orders estimated over 1000 rows [> 1000]');
    expect(match(big, 'MERGE INTO public.orders o USING public.customers c ON o.id = c.id WHEN MATCHED THEN UPDATE SET note = 1')).toMatch(/^big: MERGE/);
    expect(match(big, 'INSERT INTO public.orders VALUES (1)')).toBe('-');
    expect(match(big, 'SELECT * FROM public.orders')).toBe('-');
    expect(match(big, 'ALTER TABLE public.orders ADD c int')).toBe('-');
    // Without WHERE in the same rule: known now, no estimate needed.
    expect(match([rule({ name: 'both', rowsOver: 10, withoutWhere: true })], 'DELETE FROM public.orders')).toBe('both: DELETE without WHERE on public.orders');
  });

  it('takes the first matching rule, and a rule that matches now before one that needs an estimate', () => {
    const rules = [
      rule({ name: 'estimate', rowsOver: 100 }),
      rule({ name: 'first', kinds: ['DELETE'] }),
      rule({ name: 'second', kinds: ['DELETE'] }),
      rule({ name: 'later-estimate', rowsOver: 5 }),
    ];
    expect(match(rules, 'DELETE FROM public.orders WHERE id = 1')).toBe('first: DELETE public.orders');
    expect(match(rules, 'UPDATE public.orders SET note = 1 WHERE id = 1')).toBe('estimate: UPDATE public.orders estimated over 100 rows [> 100]');
    expect(match([], 'DROP TABLE public.orders')).toBe('-');
  });

  it('a rule with only objects holds every statement on them', () => {
    expect(match([rule({ name: 'payroll', objects: ['payroll'] })], 'SELECT * FROM hr.payroll')).toBe('payroll: SELECT hr.payroll');
    expect(match([rule({ name: 'payroll', objects: ['payroll'] })], 'SELECT * FROM hr.people')).toBe('-');
  });

  it('turns an estimate into a hold or none', () => {
    const h = new ApprovalMatcher([rule({ name: 'big', rowsOver: 1000 })]).match(
      (classify('DELETE FROM t WHERE a > 1') as { statements: StatementInfo[] }).statements[0]!,
      'DELETE FROM t WHERE a > 1',
    )!;
    expect(afterEstimate(h, 1000)).toBeUndefined();
    expect(afterEstimate(h, 1001)?.why).toBe('DELETE t estimated at 1001 rows (over 1000)');
    expect(afterEstimate(h, null)?.why).toBe('DELETE t: Postgres could not estimate its rows (the rule holds over 1000)');
  });
});

describe('the gate with approval rules', () => {
  it('places names through search_path and the catalog before matching objects', () => {
    const rules = [rule({ name: 'public-orders', kinds: ['ALTER'], objects: ['public.orders'] })];
    expect(holds(gate(rules), 'ALTER TABLE orders ADD c int')).toEqual(['public-orders: ALTER TABLE public.orders']);
    const g = gate(rules);
    expect(holds(g, "SET search_path = staging, public; ALTER TABLE orders ADD c int; ALTER TABLE public.orders ADD d int")).toEqual([
      '-',
      '-',
      'public-orders: ALTER TABLE public.orders',
    ]);
  });

  it('holds per statement of a query string, and keeps them when a later statement is refused', () => {
    const reader: Rule = { ...WRITER, name: 'tables', access: 'write', allowSchemas: ['public'] };
    const g = gate([rule({ name: 'ww', withoutWhere: true }), rule({ name: 'ddl', kinds: ['DROP'] })], { access: reader });
    expect(holds(g, 'SELECT 1; DELETE FROM public.orders; UPDATE public.orders SET note = 1 WHERE id = 2')).toEqual([
      '-',
      'ww: DELETE without WHERE on public.orders',
      '-',
    ]);
    const d = g.check('DELETE FROM orders; SELECT * FROM billing.accounts');
    expect(d.refusal?.index).toBe(1);
    expect(d.holds?.map(show)).toEqual(['ww: DELETE without WHERE on public.orders']);
  });

  it('holds an EXECUTE as the statement it runs', () => {
    const g = gate([rule({ name: 'del', kinds: ['DELETE'], objects: ['public.orders'] })]);
    expect(holds(g, 'PREPARE p AS DELETE FROM orders WHERE id = $1; EXECUTE p(1)')).toEqual(['-', 'del: EXECUTE of DELETE public.orders']);
    expect(holds(g, 'EXECUTE p(2)')).toEqual(['del: EXECUTE of DELETE public.orders']);
    expect(holds(g, 'PREPARE q AS SELECT * FROM orders; EXECUTE q')).toEqual(['-', '-']);
  });

  it('without rules, or after they are dropped, asks nothing', () => {
    let asked = 0;
    const m = new ApprovalMatcher([]);
    m.match = () => {
      asked++;
      return undefined;
    };
    const g = gate([]);
    g.setApprovals(m);
    expect(g.check('DELETE FROM orders').holds).toBeUndefined();
    expect(asked).toBe(0);
    const h = gate([rule({ name: 'ww', withoutWhere: true })]);
    expect(holds(h, 'DELETE FROM orders')).toEqual(['ww: DELETE without WHERE on public.orders']);
    h.setApprovals(undefined);
    expect(h.check('DELETE FROM orders').holds).toBeUndefined();
  });

  it('caches decisions with their holds, and a new matcher decides again', () => {
    const g = gate([rule({ name: 'one', kinds: ['DELETE'] })]);
    const first = g.check('DELETE FROM orders WHERE id = 1');
    expect(g.check('DELETE FROM orders WHERE id = 1')).toBe(first);
    g.setApprovals(new ApprovalMatcher([rule({ name: 'two', kinds: ['DELETE'] })]));
    expect(holds(g, 'DELETE FROM orders WHERE id = 1')).toEqual(['two: DELETE public.orders']);
  });
});

describe('the gate with approval rules: what code runs counts as the statement', () => {
  const ADMIN: Rule = { ...WRITER, name: 'admin', access: 'admin' };
  const fn = (name: string, language: string, body: string, volatility: 'i' | 's' | 'v' = 'v') => ({
    schema: 'public', name, kind: 'f', volatility, language, securityDefiner: false, owner: 'app', body,
  });

  /** The fixture with user functions, a trigger and a rule, and the names of the built-in functions. */
  function withCode(): ResourceCatalog {
    const c = withApp();
    c.functions['public.purge'] = [fn('purge', 'plpgsql', 'BEGIN DELETE FROM public.orders; END')];
    c.functions['public.widen'] = [fn('widen', 'sql', 'ALTER TABLE public.orders ADD c int')];
    c.functions['public.by_name'] = [fn('by_name', 'plpgsql', "BEGIN EXECUTE 'DROP TABLE ' || $1; END")];
    c.functions['public.py'] = [fn('py', 'plpython3u', 'plpy.execute("DROP TABLE orders")')];
    c.functions['public.reads'] = [fn('reads', 'sql', 'SELECT count(*) FROM public.orders', 's')];
    c.functions['public.outer'] = [fn('outer', 'sql', 'SELECT public.purge()')];
    c.triggers = [...c.triggers, { table: 'public.customers', function: 'public.purge', events: ['insert'] }];
    c.rules = [...c.rules, { table: 'public.order_notes', event: 'update', relations: ['public.orders'] }];
    c.catalogFunctions = ['count', 'now', 'format'];
    return c;
  }
  const g = (rules: ApprovalRule[]) => gate(rules, { catalog: withCode(), access: ADMIN });

  it("holds by the kinds and row changes of a function's body, also through another function", () => {
    const del = [rule({ name: 'del', kinds: ['DELETE'] })];
    expect(holds(g(del), 'SELECT public.purge()')).toEqual(['del: SELECT, which runs DELETE on public.orders in function public.purge']);
    expect(holds(g(del), 'SELECT public.outer()')).toEqual(['del: SELECT, which runs DELETE on public.orders in function public.purge']);
    expect(holds(g([rule({ name: 'ddl', kinds: ['ALTER TABLE'] })]), 'SELECT widen()')).toEqual([
      'ddl: SELECT, which runs ALTER TABLE on public.orders in function public.widen',
    ]);
    expect(holds(g([rule({ name: 'ww', withoutWhere: true })]), 'SELECT public.purge()')).toEqual([
      'ww: SELECT, which runs DELETE without WHERE on public.orders in function public.purge',
    ]);
    expect(holds(g([rule({ name: 'rows', rowsOver: 10 })]), 'SELECT public.purge()')).toEqual([
      'rows: SELECT, which changes rows in function public.purge, more than EXPLAIN can estimate (the rule holds over 10)',
    ]);
    // An object rule sees the tables the code reaches.
    expect(holds(g([rule({ name: 'orders', objects: ['public.orders'] })]), 'SELECT public.reads()')).toEqual(['orders: SELECT public.orders']);
  });

  it('holds what a trigger runs for the write that fires it, and a write a rule rewrites', () => {
    expect(holds(g([rule({ name: 'del', kinds: ['DELETE'] })]), "INSERT INTO public.customers (id) VALUES (1)")).toEqual([
      'del: INSERT public.customers, which runs DELETE on public.orders in function public.purge',
    ]);
    expect(holds(g([rule({ name: 'ddl', kinds: ['DROP'] })]), "UPDATE public.order_notes SET note = 'x' WHERE id = 1")).toEqual([
      'ddl: UPDATE runs code Warden cannot read: a rule on public.order_notes turns the update into statements of its own',
    ]);
  });

  it('holds code it cannot read under every rule: dynamic SQL, other languages, functions the catalog does not know, dblink', () => {
    const drop = [rule({ name: 'ddl', kinds: ['DROP'] })];
    expect(holds(g(drop), "SELECT public.by_name('orders')")).toEqual([
      'ddl: SELECT runs code Warden cannot read: function public.by_name runs SQL built at run time, which Warden cannot see',
    ]);
    expect(holds(g(drop), 'SELECT public.py()')).toEqual(['ddl: SELECT runs code Warden cannot read: function public.py is written in plpython3u, whose body Warden cannot read']);
    expect(holds(g(drop), 'SELECT fresh()')).toEqual(["ddl: SELECT runs code Warden cannot read: calls fresh, which is not in the catalog Warden holds"]);
    expect(holds(g(drop), "SELECT dblink_exec('dbname=shop', 'DROP TABLE orders')")).toEqual([
      'ddl: SELECT runs code Warden cannot read: calls dblink_exec, which runs SQL Warden cannot see',
    ]);
    // Built-ins and functions that only read are not code to hold.
    expect(holds(g(drop), "SELECT count(*), now(), format('%s', 1), public.reads()")).toEqual(['-']);
  });

  it('holds a DO block by the statements in it, or as unreadable when it builds SQL at run time', () => {
    const ddl = [rule({ name: 'ddl', kinds: ['ALTER TABLE', 'DROP'] })];
    expect(holds(g(ddl), 'DO $$ BEGIN ALTER TABLE public.orders ADD c int; END $$')).toEqual([
      'ddl: DO, which runs ALTER TABLE on public.orders in the DO block',
    ]);
    expect(holds(g(ddl), "DO $$ BEGIN EXECUTE 'DROP TABLE public.orders'; END $$")).toEqual([
      'ddl: DO runs code Warden cannot read: the DO block: it runs SQL built at run time',
    ]);
    expect(holds(g(ddl), 'DO LANGUAGE plpython3u $$ plpy.execute("DROP TABLE orders") $$')).toEqual([
      'ddl: DO runs code Warden cannot read: the DO block: it is written in plpython3u, which Warden cannot read',
    ]);
    expect(holds(g(ddl), "DO $$ BEGIN RAISE NOTICE 'hello'; END $$")).toEqual(['-']);
  });

  it('does not hold DDL that only names a function: its code does not run', () => {
    const del = [rule({ name: 'del', kinds: ['DELETE'] })];
    expect(holds(g(del), 'DROP FUNCTION public.purge()')).toEqual(['-']);
    expect(holds(g(del), "COMMENT ON FUNCTION public.purge() IS 'x'")).toEqual(['-']);
    expect(holds(g(del), 'CREATE FUNCTION public.newer() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$')).toEqual(['-']);
  });
});
