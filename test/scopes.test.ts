// Issue 10, end to end: schema and table scopes hold against every route the
// issue lists, for an identity that reads and one that writes, over the
// simple and the extended protocol, and a scoped identity can still do the
// work its scope allows (reads of its tables, \d, information_schema, JDBC
// metadata, harmless functions).
//
// Rule under test: `schemas: { allow: [public] }` (scopes-policy.yaml). Rows
// out of that scope carry TOPSECRET (the sequence p.secret_seq: 987654321).
// A route passes when no marker ever comes back (rows, COPY data, notices,
// error texts; bytea as hex too), the first error, if any, is Warden's
// refusal (42501), routes that can only end in a refusal are refused, and
// the tables out of the scope are exactly as they were (checked over a
// direct connection). Each route is also run once straight against Postgres
// ("the routes are live"), which proves it is valid SQL that does reach or
// change the out-of-scope data there: a failing route is a hole, not a typo.
//
// WARDEN_SCOPES_TRACE=1 prints every route's transcript (statement, then rows
// or error) as it is judged.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sh } from './support/stack.js';
import { dump, RawSession, RESOURCE, startScopes, startupFailure, type Outcome, type Scopes, type Who } from './support/scopes.js';

let env: Scopes;
/** The fingerprint of every fixture table as loaded (by table). */
let baseline: Map<string, string>;
let fingerprintSql: string;

const SCOPED: Who[] = ['scoped-reader', 'scoped-writer'];
type Mode = 'simple' | 'extended';
const MODES: Mode[] = ['simple', 'extended'];

// ---------------------------------------------------------------- markers

const hex = (s: string) => Buffer.from(s, 'utf8').toString('hex');
/** What must never come back to an identity scoped to schema public. */
const OUT_OF_SCHEMA = [/topsecret/i, new RegExp(hex('TOPSECRET'), 'i'), /987654321/];
/** What must never come back to the identity denied public.secret. */
const OUT_OF_TABLE = [/public-ok-secret/, new RegExp(hex('public-ok-secret'), 'i')];
const markersOf = (who: Who) => (who === 'table-denied' ? OUT_OF_TABLE : who === 'unscoped-reader' ? [] : OUT_OF_SCHEMA);

/** A refusal that says the gateway cannot tell which objects a statement reaches. */
const CANNOT_TELL = /cannot|can't|could not|unable|unknown|not known/i;

// ---------------------------------------------------------------- routes

/** A statement of a route; `ok`: it must be allowed (the route's warm-up). */
type Step = string | { sql: string; params?: unknown[]; ok?: boolean; copyIn?: string };
/** Stands for the identity's probe: a read of unqualified `secret`, and for the writer also a delete through it. */
const PROBE = '{probe}';
/** The probe, where it must be allowed (before any change of search_path). */
const PROBE_OK = '{probe-ok}';

function probeOf(who: Who): string[] {
  const read = 'select id, v from secret order by id';
  // p.secret has ids 1..30, public.secret 1..2: id 3 exists in p only.
  return who === 'scoped-writer' ? [read, 'delete from secret where id = 3 returning v'] : [read];
}

interface Route {
  name: string;
  steps: Step[] | ((who: Who) => Step[]);
  /** Only over one protocol (several statements in one string: simple only; parameters: extended only). */
  only?: Mode;
  /** Default: both scoped identities. */
  who?: Who[];
  /** A 42501 must come: nothing but a refusal keeps this route in scope. Default true. */
  refuse?: boolean;
  /** When the set_config step went through, the refusal of what follows must say the gateway cannot tell. */
  cannotTell?: boolean;
  /** Run straight against Postgres, the route returns a marker (or changes an out-of-scope table). Default true. */
  live?: boolean;
  /** Extended protocol through RawClient instead of node-postgres, which drops the data of a COPY it did not start itself. */
  raw?: boolean;
}

function expand(route: Route, who: Who): Array<{ sql: string; params?: unknown[]; ok?: boolean; copyIn?: string }> {
  const steps = typeof route.steps === 'function' ? route.steps(who) : route.steps;
  const probe = probeOf(who);
  return steps.flatMap((s) => {
    const step = typeof s === 'string' ? { sql: s } : s;
    if (step.sql === PROBE) return probe.map((sql) => ({ sql }));
    if (step.sql === PROBE_OK) return probe.map((sql) => ({ sql, ok: true }));
    if (step.sql.includes(PROBE)) return [{ ...step, sql: step.sql.replace(PROBE, probe.join('; ')) }];
    return [step];
  });
}

const SEARCH_PATH: Route[] = [
  { name: 'SET search_path and the read in ONE query string', steps: [`set search_path = p; ${PROBE}`], only: 'simple' },
  { name: 'SET search_path, then the read as its own statement', steps: ['set search_path = p', PROBE] },
  { name: "SET SESSION search_path TO 'p', quoted", steps: ["set session search_path to 'p'", PROBE] },
  { name: "SET SCHEMA 'p' (an alias of SET search_path)", steps: ["set schema 'p'", PROBE] },
  { name: 'SET search_path to a Unicode-escaped identifier', steps: ['set search_path = U&"\\0070"', PROBE] },
  {
    name: 'a search_path of public, p reaches a name public lacks',
    steps: (who) => ['set search_path = public, p', 'select * from child', ...(who === 'scoped-writer' ? ['delete from child where id = 3'] : [])],
  },
  { name: 'SET LOCAL inside BEGIN…COMMIT', steps: ['begin', 'set local search_path = p', PROBE, 'commit'] },
  { name: 'SET LOCAL and the read in ONE query string (its implicit transaction)', steps: [`set local search_path = p; ${PROBE}`], only: 'simple' },
  { name: 'a session SET outlives COMMIT though a later SET LOCAL hid it', steps: ['begin', 'set search_path = p', 'set local search_path = public', 'commit', PROBE] },
  { name: 'a session SET made after a SET LOCAL outlives COMMIT', steps: ['begin', 'set local search_path = public', 'set search_path = p', 'commit', PROBE] },
  { name: 'SET inside a committed transaction', steps: ['begin', 'set search_path = p', 'commit', PROBE] },
  { name: 'ROLLBACK TO SAVEPOINT does not undo a SET made before the savepoint', steps: ['begin', 'set search_path = p', 'savepoint s', 'rollback to savepoint s', PROBE, 'commit'] },
  { name: 'RELEASE SAVEPOINT keeps a SET made after the savepoint', steps: ['begin', 'savepoint s', 'set search_path = p', 'release savepoint s', PROBE, 'commit'] },
  { name: 'a rolled-back RESET search_path leaves the SET in force', steps: ['set search_path = p', 'begin', 'reset search_path', 'rollback', PROBE] },
  { name: 'a cursor declared after SET search_path', steps: ['set search_path = p', 'begin', 'declare c cursor for select id, v from secret', 'fetch all from c', 'commit'] },
  { name: "set_config('search_path') in the target list", steps: ["select set_config('search_path', 'p', false)", PROBE] },
  { name: 'set_config and the read in ONE query string', steps: [`select set_config('search_path', 'p', false); ${PROBE}`], only: 'simple' },
  { name: 'pg_catalog.set_config, qualified', steps: ["select pg_catalog.set_config('search_path', 'p', false)", PROBE] },
  { name: 'set_config in a WHERE clause', steps: ["select 1 where set_config('search_path', 'p', false) is not null", PROBE] },
  { name: 'set_config in a CTE', steps: ["with x as (select set_config('search_path', 'p', false) as v) select v from x", PROBE] },
  { name: "set_config nested in other functions' arguments", steps: ["select length(upper(set_config('search_path', 'p', false)))", PROBE] },
  { name: 'set_config in FROM', steps: ["select * from set_config('search_path', 'p', false)", PROBE] },
  { name: 'set_config in VALUES', steps: ["values (set_config('search_path', 'p', false))", PROBE] },
  { name: 'set_config(…, true) inside a transaction', steps: ['begin', "select set_config('search_path', 'p', true)", PROBE, 'commit'] },
  { name: 'set_config(…, true) and the read in ONE query string', steps: [`select set_config('search_path', 'p', true); ${PROBE}`], only: 'simple' },
  { name: 'set_config with the name and value as bound parameters', steps: [{ sql: 'select set_config($1, $2, false)', params: ['search_path', 'p'] }, PROBE], only: 'extended' },
  { name: 'set_config to a value computed at run time (the gateway cannot tell)', steps: ["select set_config('search_path', lower('P'), false)", PROBE], cannotTell: true },
  { name: "set_config to 'P' (Postgres folds the unquoted name to p)", steps: ["select set_config('search_path', 'P', false)", PROBE] },
  { name: "set_config to ' p ' (blanks around the name)", steps: ["select set_config('search_path', ' p ', false)", PROBE] },
  { name: "set_config to 'pg_temp, p'", steps: ["select set_config('search_path', 'pg_temp, p', false)", PROBE] },
  {
    name: 'set_config with the setting name from a subquery (the gateway cannot tell)',
    steps: ["select set_config(x, 'p', false) from (values ('search_path')) t(x)", PROBE],
    cannotTell: true,
  },
  { name: 'set_config with a computed setting name (the gateway cannot tell)', steps: ["select set_config(lower('SEARCH_PATH'), 'p', false)", PROBE], cannotTell: true },
  { name: 'SET search_path, then query_to_xml naming the table unqualified', steps: ['set search_path = p', "select query_to_xml('select id, v from secret', true, false, '')"] },
  {
    name: 'SET search_path = "$user" names the upstream login\'s schema',
    steps: (who) => ['set search_path = "$user"', 'select id, v from shadowed', ...(who === 'scoped-writer' ? ['delete from shadowed returning v'] : [])],
  },
  {
    name: 'set_config(\'search_path\', \'"$user"\') names the upstream login\'s schema',
    steps: (who) => [`select set_config('search_path', '"$user"', false)`, 'select id, v from shadowed', ...(who === 'scoped-writer' ? ['delete from shadowed returning v'] : [])],
  },
  {
    name: '"$user" (the upstream login\'s schema, first in the default search_path) shadows public',
    steps: (who) => ['select id, v from shadowed', ...(who === 'scoped-writer' ? ['delete from shadowed returning v'] : [])],
    // Pinning the session's search_path to public would be a fix too: then public.shadowed comes back, and that is in scope.
    refuse: false,
  },
];

const CACHED: Route[] = [
  { name: 'a decision cached under the default path is not reused after SET search_path', steps: [PROBE_OK, 'set search_path = p', PROBE] },
  {
    name: 'a decision cached by shape is not reused after SET search_path',
    steps: [{ sql: 'select id, v from secret where id > 0', ok: true }, 'set search_path = p', 'select id, v from secret where id > 1'],
  },
  { name: 'a decision cached under the default path is not reused after set_config', steps: [PROBE_OK, "select set_config('search_path', 'p', false)", PROBE] },
  {
    name: 'PREPARE, SET search_path and EXECUTE in ONE query string',
    steps: (who) => [
      who === 'scoped-writer'
        ? 'prepare q as select id, v from secret order by id; prepare d as delete from secret where id = 3 returning v; set search_path = p; execute q; execute d'
        : 'prepare q as select id, v from secret order by id; set search_path = p; execute q',
    ],
    only: 'simple',
  },
  {
    name: 'SQL PREPARE before SET search_path, EXECUTE after it',
    steps: (who) =>
      who === 'scoped-writer'
        ? ['prepare q as select id, v from secret order by id', 'prepare d as delete from secret where id = 3 returning v', 'execute q', 'set search_path = p', 'execute q', 'execute d']
        : ['prepare q as select id, v from secret order by id', 'execute q', 'set search_path = p', 'execute q'],
  },
];

const STRINGS: Route[] = [
  { name: "table_to_xml('p.secret', …)", steps: ["select table_to_xml('p.secret', true, false, '')"] },
  // No rows in it, but it names a table out of scope by a string: checked as that table, or refused.
  { name: "table_to_xmlschema('p.secret', …)", steps: ["select table_to_xmlschema('p.secret', true, false, '')"], live: false },
  { name: "table_to_xml_and_xmlschema('p.secret', …)", steps: ["select table_to_xml_and_xmlschema('p.secret', true, false, '')"] },
  { name: "schema_to_xml('p', …)", steps: ["select schema_to_xml('p', true, false, '')"] },
  { name: 'database_to_xml(…)', steps: ["select database_to_xml(true, false, '')"] },
  { name: "query_to_xml('select … from p.secret', …)", steps: ["select query_to_xml('select id, v from p.secret', true, false, '')"] },
  { name: 'query_to_xml with the query text as a bound parameter', steps: [{ sql: "select query_to_xml($1, true, false, '')", params: ['select id, v from p.secret'] }], only: 'extended' },
  { name: 'table_to_xml with the table name as a bound parameter', steps: [{ sql: "select table_to_xml($1::regclass, true, false, '')", params: ['p.secret'] }], only: 'extended' },
  { name: 'query_to_xml of a query text built by format()', steps: ["select query_to_xml(format('select id, v from %I.%I', 'p', 'secret'), true, false, '')"] },
  { name: "table_to_xml((select 'p.secret')::regclass, …)", steps: ["select table_to_xml((select 'p.secret')::regclass, true, false, '')"] },
  {
    name: 'table_to_xml of a regclass found in pg_class',
    steps: ["select table_to_xml(c.oid::regclass, true, false, '') from pg_class c where c.relname = 'secret' and c.relnamespace = 'p'::regnamespace"],
  },
  { name: "pg_sequence_last_value('p.secret_seq'::regclass)", steps: ["select pg_sequence_last_value('p.secret_seq'::regclass)"] },
  { name: 'ts_stat with a query naming p.secret', steps: ["select * from ts_stat('select to_tsvector(v) from p.secret')"] },
  { name: 'crosstab with a query naming p.secret', steps: ["select * from crosstab('select id::text, ''c''::text, v from p.secret order by 1') as ct(row_name text, c text)"] },
  { name: "connectby('p.tree', …)", steps: ["select * from connectby('p.tree', 'id', 'parent_id', 'root', 0) as t(id text, parent_id text, level int)"] },
];

const FUNCTIONS: Route[] = [
  { name: 'public.get_secret() (sql) reading p.secret', steps: ['select * from public.get_secret()'] },
  { name: 'public.get_secret_plpgsql() reading p.secret', steps: ['select public.get_secret_plpgsql()'] },
  { name: 'a function with SET search_path = p reading secret unqualified', steps: ['select public.get_secret_path()'] },
  { name: 'a SECURITY DEFINER function', steps: ['select public.get_secret_definer()'] },
  { name: 'priv.get_secret(), a function in a schema out of scope', steps: ['select priv.get_secret()'] },
  { name: 'acc.bump(), a volatile function out of scope that writes', steps: ['select acc.bump()'] },
  { name: 'public.v_secret, a view over p.secret', steps: ['select * from public.v_secret'] },
  { name: 'public.v_over, a view over that view', steps: ['select * from public.v_over'] },
  { name: 'public.mv_secret, a materialized view over p.secret', steps: ['select * from public.mv_secret'] },
  { name: 'unqualified get_secret() through the default path', steps: ['select get_secret()'] },
  // Stored code that moves the session's search_path, then an unqualified read.
  { name: 'a STABLE sql function in public calling set_config(search_path), then the read', steps: ['select public.path_to_p_sql()', PROBE] },
  { name: 'a STABLE plpgsql function in public calling set_config(search_path), then the read', steps: ['select public.path_to_p()', PROBE] },
  { name: 'a volatile plpgsql function in public running SET search_path by EXECUTE, then the read', steps: ['select public.path_by_execute()', PROBE] },
];

const CATALOG: Route[] = [
  // Refused, or limited to objects in scope: either way no value of p.secret.
  { name: 'pg_stats most_common_vals of p.secret', steps: ["select most_common_vals::text from pg_stats where schemaname = 'p' and tablename = 'secret'"], refuse: false },
  { name: 'all of pg_stats', steps: ['select * from pg_stats'], refuse: false },
  { name: 'all of pg_statistic', steps: ['select * from pg_statistic'], refuse: false },
  { name: 'pg_sequences.last_value', steps: ['select schemaname, sequencename, last_value from pg_sequences'], refuse: false },
];

const EXTENSIONS: Route[] = [
  { name: "pageinspect get_raw_page('p.secret', 0)", steps: ["select get_raw_page('p.secret', 0)"] },
  { name: "pageinspect heap_page_items(get_raw_page('p.secret', 0))", steps: ["select * from heap_page_items(get_raw_page('p.secret', 0))"] },
  { name: "pg_surgery heap_force_kill('p.secret'::regclass, …) must not change p.secret", steps: ["select heap_force_kill('p.secret'::regclass, array['(0,1)']::tid[])"] },
  {
    name: 'dblink back into the same database',
    steps: () => [`select * from dblink('host=127.0.0.1 user=postgres dbname=${env.db.name}', 'select v from p.secret') as t(v text)`],
  },
];

const PARTITIONS: Route[] = [
  { name: 'SELECT from the partitioned public.measurements (a partition in p)', steps: ['select * from public.measurements order by id'] },
  { name: "SELECT from public.measurements WHERE region = 'secret'", steps: ["select * from public.measurements where region = 'secret'"] },
  { name: 'SELECT from the inheritance parent public.items (a child in p)', steps: ['select * from public.items order by id'] },
  // No rows of its own: no data either way.
  { name: 'SELECT FROM ONLY the partitioned public.measurements', steps: ['select * from only public.measurements'], refuse: false, live: false },
];

const W: Who[] = ['scoped-writer'];
const CASCADES: Route[] = [
  { name: 'TRUNCATE public.parent CASCADE (empties p.child and p.child2)', steps: ['truncate public.parent cascade'], who: W },
  { name: 'DELETE FROM public.parent (ON DELETE CASCADE into p.child)', steps: ['delete from public.parent where id = 2'], who: W },
  { name: 'INSERT into public.t_trig (its trigger writes p.audit)', steps: ["insert into public.t_trig values (10, 'x')"], who: W },
  { name: 'UPDATE public.t_trig (its trigger writes p.audit)', steps: ['update public.t_trig set v = v'], who: W },
  { name: 'INSERT … ON CONFLICT DO UPDATE on public.t_trig (its trigger writes p.audit)', steps: ["insert into public.t_trig values (1, 'y') on conflict (id) do update set v = excluded.v"], who: W },
  {
    name: 'MERGE into public.t_trig (its trigger writes p.audit)',
    steps: ["merge into public.t_trig t using (select 30 as id, 'x' as v) s on t.id = s.id when not matched then insert values (s.id, s.v)"],
    who: W,
  },
  { name: 'a data-modifying CTE inserting into public.t_trig (its trigger writes p.audit)', steps: ["with x as (insert into public.t_trig values (40, 'x') returning id) select id from x"], who: W },
  { name: 'COPY public.t_trig FROM STDIN (its trigger writes p.audit)', steps: [{ sql: 'copy public.t_trig from stdin', copyIn: '50\tx\n' }], who: W, only: 'simple', raw: true },
  {
    name: 'COPY public.measurements FROM STDIN routed to the p partition',
    steps: [{ sql: 'copy public.measurements from stdin', copyIn: '60\tsecret\tx\n' }],
    who: W,
    only: 'simple',
    raw: true,
  },
  { name: 'INSERT into public.t_rule (its rule writes p.log)', steps: ["insert into public.t_rule values (10, 'x')"], who: W },
  { name: 'UPDATE public.t_rule (its rule writes p.log)', steps: ['update public.t_rule set v = v'], who: W },
  { name: 'DELETE FROM the inheritance parent public.items', steps: ['delete from public.items'], who: W },
  { name: 'UPDATE the inheritance parent public.items', steps: ["update public.items set v = 'changed'"], who: W },
  { name: 'DELETE FROM the partitioned public.measurements', steps: ['delete from public.measurements'], who: W },
  { name: 'INSERT into public.measurements routed to the p partition', steps: ["insert into public.measurements values (9, 'secret', 'x')"], who: W },
  { name: 'UPDATE moving a row of public.measurements into the p partition', steps: ["update public.measurements set region = 'secret' where id = 1"], who: W },
];

const COPY: Route[] = [
  { name: 'COPY (select * from secret) TO STDOUT after SET search_path', steps: ['set search_path = p', 'copy (select id, v from secret) to stdout'], raw: true },
  { name: 'COPY p.secret TO STDOUT', steps: ['copy p.secret to stdout'], raw: true },
  {
    name: 'COPY secret FROM STDIN after SET search_path',
    steps: ['set search_path = p', { sql: 'copy secret from stdin', copyIn: '99\tx\n' }],
    who: W,
    only: 'simple',
    raw: true,
  },
  { name: 'COPY (select * from public.v_secret) TO STDOUT', steps: ['copy (select * from public.v_secret) to stdout'], raw: true },
  { name: 'COPY (select * from public.measurements) TO STDOUT', steps: ['copy (select * from public.measurements) to stdout'], raw: true },
];

const TABLE_DENIED: Route[] = [
  { name: 'SELECT from public.secret', steps: ['select * from public.secret'] },
  { name: 'SELECT from secret, unqualified', steps: ['select * from secret'] },
  { name: 'a search_path of pg_catalog, public', steps: ['set search_path = pg_catalog, public', 'select * from secret'] },
  { name: 'public.v_public_secret, a view over public.secret', steps: ['select * from public.v_public_secret'] },
  { name: "table_to_xml('public.secret', …)", steps: ["select table_to_xml('public.secret', true, false, '')"] },
  { name: "query_to_xml('select … from public.secret', …)", steps: ["select query_to_xml('select * from public.secret', true, false, '')"] },
  { name: "schema_to_xml('public', …)", steps: ["select schema_to_xml('public', true, false, '')"] },
  { name: "get_raw_page('public.secret', 0)", steps: ["select get_raw_page('public.secret', 0)"] },
  { name: 'pg_stats of public.secret', steps: ["select * from pg_stats where schemaname = 'public' and tablename = 'secret'"], refuse: false },
  { name: 'COPY public.secret TO STDOUT', steps: ['copy public.secret to stdout'], raw: true },
].map((r): Route => ({ ...r, who: ['table-denied'] }));

const U: Who[] = ['unscoped-reader'];
const UNSCOPED: Route[] = [
  // Access levels, not scopes: these read or change data past a read-only identity's level.
  { name: 'acc.bump(), a volatile user function, counts as a write', steps: ['select acc.bump()'], who: U },
  { name: 'public.bump_hits(), a volatile user function, counts as a write', steps: ['select public.bump_hits()'], who: U },
  { name: 'pg_surgery heap_force_kill is refused below admin', steps: ["select heap_force_kill('p.secret'::regclass, array['(0,1)']::tid[])"], who: U },
  { name: 'pageinspect get_raw_page (superuser only) is refused below admin', steps: ["select get_raw_page('p.secret', 0)"], who: U },
];

const CATEGORIES: Array<[string, Route[]]> = [
  ['search_path', SEARCH_PATH],
  ['cached decisions and prepared statements', CACHED],
  ['names in strings', STRINGS],
  ['functions and views', FUNCTIONS],
  ['catalog views that carry data', CATALOG],
  ['extension functions', EXTENSIONS],
  ['partitions and inheritance', PARTITIONS],
  ['cascades, triggers and rules', CASCADES],
  ['COPY', COPY],
  ['a table scope', TABLE_DENIED],
  ['access levels for user and extension functions', UNSCOPED],
];

// ---------------------------------------------------------------- sessions

interface Session {
  run(step: { sql: string; params?: unknown[]; copyIn?: string }): Promise<Outcome[]>;
  end(): Promise<void>;
  /** Notices that arrived outside a statement's outcome. */
  extra(): string;
}

async function pgSession(who: Who, config: Partial<pg.ClientConfig> = {}): Promise<Session> {
  const c = new pg.Client({ host: env.stack.host, port: env.stack.port, user: who, database: RESOURCE, password: await env.stack.token(who), ...config });
  let notices = '';
  c.on('notice', (n) => (notices += `NOTICE ${n.message} ${n.detail ?? ''}\n`));
  c.on('error', () => {});
  await c.connect();
  return {
    async run({ sql, params }) {
      try {
        // queryMode 'extended': Parse/Bind/Describe/Execute/Sync even without parameters.
        const r = await c.query({ text: sql, values: params ?? [], queryMode: 'extended' } as pg.QueryConfig & { queryMode: string });
        return [{ sql, text: `${dump(r.rows)}\n`, rows: r.rows.length }];
      } catch (e) {
        const err = e as { code?: string; message: string; detail?: string };
        return [{ sql, text: `ERROR ${err.message} ${err.detail ?? ''}`, rows: 0, error: { code: String(err.code), message: err.message } }];
      }
    },
    end: () => c.end().catch(() => {}),
    extra: () => notices,
  };
}

async function rawSession(who: Who, mode: Mode): Promise<Session> {
  const s = await RawSession.open(env.stack, who);
  return { run: ({ sql, params, copyIn }) => (mode === 'simple' ? s.simple(sql, copyIn) : s.extended(sql, params)), end: () => s.end(), extra: () => '' };
}

/** Simple: Query messages (RawClient). Extended: node-postgres, one unnamed statement per step (RawClient when `raw`). */
async function open(who: Who, mode: Mode, raw = false): Promise<Session> {
  return mode === 'simple' || raw ? rawSession(who, mode) : pgSession(who);
}

async function runSteps(session: Session, steps: Array<{ sql: string; params?: unknown[]; copyIn?: string }>): Promise<Outcome[]> {
  const out: Outcome[] = [];
  try {
    for (const step of steps) out.push(...(await session.run(step)));
  } finally {
    await session.end();
  }
  const extra = session.extra();
  if (extra) out.push({ sql: '(notices)', text: extra, rows: 0 });
  return out;
}

// ---------------------------------------------------------------- judging

function transcript(outcomes: Outcome[]): string {
  return outcomes
    .map((o) => `  ${o.sql}\n    -> ${o.error ? `ERROR ${o.error.code}: ${o.error.message}` : `${o.rows} row(s)`}${o.rows || !o.error ? ` ${o.text.trim().slice(0, 160)}` : ''}`)
    .join('\n');
}

function leaked(who: Who, outcomes: Outcome[]): string[] {
  const found: string[] = [];
  for (const o of outcomes) {
    for (const re of markersOf(who)) {
      const m = re.exec(o.text);
      if (m) found.push(`${o.sql}: …${o.text.slice(Math.max(0, m.index - 40), m.index + 60).replace(/\n/g, ' ')}…`);
    }
  }
  return found;
}

interface Expect {
  refuse?: boolean;
  cannotTell?: boolean;
  /** Indices of outcomes that must have been allowed. */
  ok?: number[];
}

function judge(who: Who, outcomes: Outcome[], e: Expect) {
  // Soft: a route that both leaks and changes a table reports both.
  const t = transcript(outcomes);
  if (process.env.WARDEN_SCOPES_TRACE) console.log(`[${who}]\n${t}`);
  expect.soft(leaked(who, outcomes), `data out of ${who}'s scope came back:\n${t}`).toEqual([]);
  for (const i of e.ok ?? []) expect.soft(outcomes[i]?.error, `in-scope statement ${i + 1} must be allowed:\n${t}`).toBeUndefined();
  const first = outcomes.findIndex((o) => o.error);
  if (first >= 0) expect.soft(outcomes[first]!.error!.code, `the first error must be Warden's refusal (42501):\n${t}`).toBe('42501');
  if (e.refuse !== false) expect.soft(first, `the route must be refused with 42501:\n${t}`).toBeGreaterThanOrEqual(0);
  if (e.cannotTell && first > 0) {
    // set_config went through: what follows cannot be placed in a schema, and the refusal says so.
    expect.soft(outcomes[first]!.error!.message, `a refusal where the gateway cannot know the search_path must say so:\n${t}`).toMatch(CANNOT_TELL);
  }
}

/** count and md5 of the rows of every table and materialized view of the fixture, and p.secret_seq. */
async function buildFingerprintSql(): Promise<string> {
  const r = await env.db.query(`
    SELECT format('%I.%I', n.nspname, c.relname) AS t
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname IN ('public', 'p', 'priv', 'acc', 'postgres') AND c.relkind IN ('r', 'm')
    ORDER BY 1`);
  const parts = r.rows.map(
    ({ t }: { t: string }) =>
      `SELECT '${t}' AS t, count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') AS h FROM ONLY ${t} x`,
  );
  parts.push(`SELECT 'p.secret_seq' AS t, last_value || ':' || is_called AS h FROM p.secret_seq`);
  return parts.join('\nUNION ALL\n');
}

async function fingerprint(): Promise<Map<string, string>> {
  const r = await env.db.query(fingerprintSql);
  return new Map(r.rows.map((x: { t: string; h: string }) => [x.t, x.h]));
}

/** Tables outside the identity's scope: for the schema-scoped ones every schema but public; else all. */
function outOfScope(who: Who, table: string): boolean {
  if (who === 'scoped-reader' || who === 'scoped-writer') return !table.startsWith('public.');
  return true;
}

async function expectOutOfScopeUnchanged(who: Who, outcomes: Outcome[]) {
  const now = await fingerprint();
  const changed = [...baseline].filter(([t, h]) => outOfScope(who, t) && now.get(t) !== h).map(([t]) => t);
  expect.soft(changed, `tables out of ${who}'s scope were changed:\n${transcript(outcomes)}`).toEqual([]);
}

beforeAll(async () => {
  env = await startScopes('warden_scopes');
  fingerprintSql = await buildFingerprintSql();
  await env.restoreRows();
  baseline = await fingerprint();
});

afterAll(async () => {
  await env?.stop();
});

afterEach(async () => {
  // Whatever a route changed (in scope or not), the next one starts from the fixture's rows.
  const now = await fingerprint();
  if ([...baseline].some(([t, h]) => now.get(t) !== h)) await env.restoreRows();
});

// ---------------------------------------------------------------- the routes, live

describe('the routes are live: run straight against Postgres, each reaches or changes out-of-scope data', () => {
  const all = CATEGORIES.flatMap(([, routes]) => routes).filter((r) => r.live !== false);
  it.each(all.map((r) => [r.name, r] as const))('%s', async (_name, route) => {
    const who = (route.who ?? SCOPED).includes('scoped-writer') ? 'scoped-writer' : route.who?.[0] ?? 'scoped-reader';
    const steps = expand(route, who === 'unscoped-reader' ? 'scoped-reader' : who);
    const s = await RawSession.direct(env.db);
    const out: Outcome[] = [];
    try {
      for (const step of steps) {
        // Inline the parameters: the direct check runs everything over the simple protocol.
        const sql = step.params ? step.sql.replace(/\$(\d)/g, (_m, i) => `'${String(step.params![Number(i) - 1])}'`) : step.sql;
        out.push(...(await s.simple(sql, step.copyIn)));
      }
    } finally {
      await s.end();
    }
    const t = transcript(out);
    expect(out.filter((o) => o.error), `the route must be valid SQL on Postgres:\n${t}`).toEqual([]);
    const markers = who === 'table-denied' ? OUT_OF_TABLE : OUT_OF_SCHEMA;
    const reached = out.some((o) => markers.some((re) => re.test(o.text)));
    const now = await fingerprint();
    const changed = [...baseline].some(([tb, h]) => outOfScope(who, tb) && now.get(tb) !== h);
    expect(reached || changed, `the route neither returned a marker nor changed an out-of-scope table on Postgres:\n${t}`).toBe(true);
  });
});

describe('the protocol-level routes are live too, straight against Postgres', () => {
  const reaches = (out: Outcome[]) => out.some((o) => OUT_OF_SCHEMA.some((re) => re.test(o.text)));

  it('SET search_path and the read pipelined before one Sync; set_config likewise', async () => {
    for (const first of [{ sql: 'set search_path = p' }, { sql: 'select set_config($1, $2, false)', params: ['search_path', 'p'] }]) {
      const s = await RawSession.direct(env.db);
      const out = await s.pipeline([first, { sql: 'select id, v from secret order by id' }]).finally(() => s.end());
      expect(reaches(out), transcript(out)).toBe(true);
    }
  });

  it('a statement made by Parse, run by SQL EXECUTE after SET; one made by PREPARE, run by Bind after SET', async () => {
    const s = await RawSession.direct(env.db);
    try {
      const a = [...(await s.parseNamed('read_q', 'select id, v from secret order by id')), ...(await s.simple('set search_path = p')), ...(await s.simple('execute read_q'))];
      expect(reaches(a), transcript(a)).toBe(true);
      await s.simple('reset search_path');
      const b = [...(await s.simple('prepare read_p as select id, v from secret order by id')), ...(await s.simple('set search_path = p')), ...(await s.executeNamed('read_p'))];
      expect(reaches(b), transcript(b)).toBe(true);
    } finally {
      await s.end();
    }
  });

  it('search_path=p in the startup packet, also after RESET and SET … TO DEFAULT', async () => {
    const s = await RawSession.direct(env.db, { search_path: 'p' });
    try {
      for (const sql of ['select id, v from secret', 'reset search_path; select id, v from secret', 'set search_path to default; select id, v from secret']) {
        const out = await s.simple(sql);
        expect(reaches(out), transcript(out)).toBe(true);
      }
    } finally {
      await s.end();
    }
  });
});

// ---------------------------------------------------------------- the routes, through Warden

for (const [category, routes] of CATEGORIES) {
  describe(`${category}: no route gets around the scope`, () => {
    for (const route of routes) {
      for (const who of route.who ?? SCOPED) {
        for (const mode of route.only ? [route.only] : MODES) {
          it(`${route.name} [${who}, ${mode}]`, async () => {
            const steps = expand(route, who);
            const outcomes = await runSteps(await open(who, mode, route.raw), steps);
            const ok = steps.flatMap((s, i) => (s.ok ? [i] : []));
            judge(who, outcomes, { refuse: route.refuse, cannotTell: route.cannotTell, ok });
            await expectOutOfScopeUnchanged(who, outcomes);
            if (route.name.includes('bump_hits')) {
              const hits = await env.db.query('SELECT n FROM public.hits WHERE id = 1');
              expect.soft(hits.rows[0].n, 'a read identity made public.bump_hits() write').toBe(0);
            }
          });
        }
      }
    }
  });
}

describe('the extended protocol: named statements made before the path changes, and pipelines', () => {
  for (const who of SCOPED) {
    it(`SET search_path and the read pipelined before one Sync [${who}, extended]`, async () => {
      const s = await RawSession.open(env.stack, who);
      let out: Outcome[];
      try {
        out = await s.pipeline([{ sql: 'set search_path = p' }, ...probeOf(who).map((sql) => ({ sql }))]);
      } finally {
        await s.end();
      }
      judge(who, out, {});
      await expectOutOfScopeUnchanged(who, out);
    });

    it(`a statement made by protocol Parse, run by SQL EXECUTE after SET search_path [${who}, simple + extended]`, async () => {
      const s = await RawSession.open(env.stack, who);
      const out: Outcome[] = [];
      try {
        out.push(...(await s.parseNamed('read_q', 'select id, v from secret order by id')));
        if (who === 'scoped-writer') out.push(...(await s.parseNamed('delete_q', 'delete from secret where id = 3 returning v')));
        out.push(...(await s.simple('set search_path = p')));
        out.push(...(await s.simple('execute read_q')));
        if (who === 'scoped-writer') out.push(...(await s.simple('execute delete_q')));
      } finally {
        await s.end();
      }
      judge(who, out, {});
      await expectOutOfScopeUnchanged(who, out);
    });

    it(`a statement made by SQL PREPARE, run by protocol Bind/Execute after SET search_path [${who}, simple + extended]`, async () => {
      const s = await RawSession.open(env.stack, who);
      const out: Outcome[] = [];
      try {
        out.push(...(await s.simple('prepare read_p as select id, v from secret order by id')));
        if (who === 'scoped-writer') out.push(...(await s.simple('prepare delete_p as delete from secret where id = 3 returning v')));
        out.push(...(await s.simple('set search_path = p')));
        out.push(...(await s.executeNamed('read_p')));
        if (who === 'scoped-writer') out.push(...(await s.executeNamed('delete_p')));
      } finally {
        await s.end();
      }
      judge(who, out, {});
      await expectOutOfScopeUnchanged(who, out);
    });

    it(`set_config and the read pipelined before one Sync [${who}, extended]`, async () => {
      const s = await RawSession.open(env.stack, who);
      let out: Outcome[];
      try {
        out = await s.pipeline([{ sql: 'select set_config($1, $2, false)', params: ['search_path', 'p'] }, ...probeOf(who).map((sql) => ({ sql }))]);
      } finally {
        await s.end();
      }
      judge(who, out, {});
      await expectOutOfScopeUnchanged(who, out);
    });

    it(`protocol Parse before SET search_path, Bind/Execute after it (node-postgres) [${who}, extended]`, async () => {
      const client = new pg.Client({ host: env.stack.host, port: env.stack.port, user: who, database: RESOURCE, password: await env.stack.token(who) });
      client.on('error', () => {});
      await client.connect();
      const out: Outcome[] = [];
      const q = async (cfg: pg.QueryConfig) => {
        const label = `${cfg.name ? `[${cfg.name}] ` : ''}${cfg.text}`;
        try {
          const r = await client.query(cfg);
          out.push({ sql: label, text: dump(r.rows), rows: r.rows.length });
        } catch (e) {
          const err = e as { code?: string; message: string };
          out.push({ sql: label, text: err.message, rows: 0, error: { code: String(err.code), message: err.message } });
        }
      };
      // node-postgres sends Parse for a name once per connection, then only Bind/Execute.
      const read = { name: 'read_secret', text: 'select id, v from secret order by id' };
      const del = { name: 'delete_secret', text: 'delete from secret where id = 3 returning v' };
      try {
        await q(read);
        if (who === 'scoped-writer') await q(del);
        await q({ text: 'set search_path = p' });
        await q(read);
        if (who === 'scoped-writer') await q(del);
      } finally {
        await client.end().catch(() => {});
      }
      judge(who, out, { ok: who === 'scoped-writer' ? [0, 1] : [0] });
      await expectOutOfScopeUnchanged(who, out);
    });

    it(`postgres.js's cached statement, reused after SET search_path [${who}, extended]`, async () => {
      const sql = postgres({ host: env.stack.host, port: env.stack.port, user: who, database: RESOURCE, password: await env.stack.token(who), max: 1, onnotice: () => {}, fetch_types: false });
      const out: Outcome[] = [];
      const q = async (label: string, run: () => PromiseLike<readonly unknown[]>) => {
        try {
          const rows = await run();
          out.push({ sql: label, text: dump(rows), rows: rows.length });
        } catch (e) {
          const err = e as { code?: string; message: string };
          out.push({ sql: label, text: err.message, rows: 0, error: { code: String(err.code), message: err.message } });
        }
      };
      try {
        await q('select id, v from secret', () => sql`select id, v from secret order by id`);
        await q('set search_path = p', () => sql`set search_path = p`);
        await q('select id, v from secret', () => sql`select id, v from secret order by id`);
        if (who === 'scoped-writer') await q('delete from secret where id = 3', () => sql`delete from secret where id = ${3} returning v`);
      } finally {
        await sql.end();
      }
      judge(who, out, { ok: [0] });
      await expectOutOfScopeUnchanged(who, out);
    });
  }
});

describe('the search_path as a startup parameter', () => {
  const probeSteps = (who: Who) => [...probeOf(who), 'reset search_path', ...probeOf(who), 'set search_path to default', ...probeOf(who)];

  for (const who of SCOPED) {
    it(`search_path=p in the startup packet [${who}, simple]`, async () => {
      let out: Outcome[];
      try {
        const s = await RawSession.open(env.stack, who, { search_path: 'p' });
        out = [];
        try {
          for (const sql of probeSteps(who)) out.push(...(await s.simple(sql)));
        } finally {
          await s.end();
        }
      } catch (err) {
        out = [startupFailure('search_path=p', err)];
      }
      judge(who, out, { refuse: false });
      await expectOutOfScopeUnchanged(who, out);
    });

    it(`postgres.js connection: { search_path: 'p' } [${who}, extended]`, async () => {
      const sql = postgres({
        host: env.stack.host, port: env.stack.port, user: who, database: RESOURCE, password: await env.stack.token(who),
        max: 1, onnotice: () => {}, fetch_types: false, connection: { search_path: 'p' },
      });
      const out: Outcome[] = [];
      try {
        for (const text of probeSteps(who)) {
          try {
            const rows = await sql.unsafe(text, [], { prepare: true, simple: false } as never);
            out.push({ sql: text, text: dump(rows), rows: rows.length });
          } catch (e) {
            const err = e as { code?: string; message: string };
            out.push({ sql: text, text: err.message, rows: 0, error: { code: String(err.code), message: err.message } });
            if (/startup|connect/i.test(err.message) && err.code !== '42501') break;
          }
        }
      } finally {
        await sql.end();
      }
      judge(who, out, { refuse: false });
      await expectOutOfScopeUnchanged(who, out);
    });

    it(`node-postgres options: '-c search_path=p' [${who}, extended]`, async () => {
      let out: Outcome[];
      try {
        out = await runSteps(await pgSession(who, { options: '-c search_path=p' }), probeSteps(who).map((sql) => ({ sql })));
      } catch (err) {
        const e = err as { code?: string; message: string };
        out = [{ sql: '(connect)', text: e.message, rows: 0, error: { code: String(e.code), message: e.message } }];
      }
      judge(who, out, { refuse: false });
      await expectOutOfScopeUnchanged(who, out);
    });

    it(`psql with options=-csearch_path=p [${who}, simple]`, async () => {
      const r = await sh(
        'psql',
        [env.stack.conninfo({ user: who, dbname: RESOURCE, options: '-csearch_path=p' }), '-X', '-At', '-v', 'VERBOSITY=verbose', ...probeSteps(who).flatMap((s) => ['-c', s])],
        { PGPASSWORD: await env.stack.token(who) },
      );
      const out = psqlOutcomes(r);
      judge(who, out, { refuse: false });
      await expectOutOfScopeUnchanged(who, out);
    });
  }

  it('pgjdbc currentSchema=p [scoped-reader, extended]', async () => {
    const r = await java('probe', 'scoped-reader', 'currentSchema=p');
    const out: Outcome[] = [{ sql: 'select id, v from secret (jdbc, currentSchema=p)', text: r.stdout, rows: 0, error: errorOf(r.stdout) }];
    expect(r.stdout, r.stderr).toMatch(/^done=yes$/m);
    judge('scoped-reader', out, { refuse: false });
  });
});

// ---------------------------------------------------------------- psql, JDBC

function psqlOutcomes(r: { code: number; stdout: string; stderr: string }): Outcome[] {
  const out: Outcome[] = [{ sql: '(psql stdout)', text: r.stdout, rows: r.stdout.trim() ? r.stdout.trim().split('\n').length : 0 }];
  for (const m of r.stderr.matchAll(/(?:ERROR|FATAL):\s+([0-9A-Z]{5}): (.*)/g)) {
    out.push({ sql: '(psql stderr)', text: m[0], rows: 0, error: { code: m[1]!, message: m[2]! } });
  }
  if (r.stderr.trim() && !out.some((o) => o.error)) out.push({ sql: '(psql stderr)', text: r.stderr, rows: 0 });
  return out;
}

function errorOf(stdout: string): Outcome['error'] {
  const m = /^probe_sqlstate=(.*)$/m.exec(stdout);
  return m ? { code: m[1]!, message: /^probe_message=(.*)$/m.exec(stdout)?.[1] ?? '' } : undefined;
}

const JDBC_JAR = process.env.WARDEN_TEST_JDBC_JAR ?? '/usr/share/java/postgresql.jar';
const JAVA = `
import java.sql.*;
public class ScopesJdbc {
  public static void main(String[] a) throws Exception {
    String url = System.getenv("WARDEN_JDBC_URL");
    java.util.Properties p = new java.util.Properties();
    p.setProperty("user", System.getenv("WARDEN_JDBC_USER"));
    p.setProperty("password", System.getenv("WARDEN_JDBC_TOKEN"));
    try (Connection c = DriverManager.getConnection(url, p)) {
      if (a[0].equals("probe")) {
        try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("select id, v from secret order by id")) {
          StringBuilder b = new StringBuilder();
          while (r.next()) b.append(r.getInt(1)).append(':').append(r.getString(2)).append(',');
          System.out.println("probe_rows=" + b);
        } catch (SQLException e) {
          System.out.println("probe_sqlstate=" + e.getSQLState());
          System.out.println("probe_message=" + e.getMessage().replace('\\n', ' '));
        }
      } else {
        DatabaseMetaData md = c.getMetaData();
        StringBuilder t = new StringBuilder();
        try (ResultSet r = md.getTables(null, "public", "%", new String[] {"TABLE", "VIEW"})) { while (r.next()) t.append(r.getString("TABLE_NAME")).append(','); }
        System.out.println("tables=" + t);
        StringBuilder col = new StringBuilder();
        try (ResultSet r = md.getColumns(null, "public", "secret", "%")) { while (r.next()) col.append(r.getString("COLUMN_NAME")).append(':').append(r.getString("TYPE_NAME")).append(','); }
        System.out.println("columns=" + col);
        StringBuilder pk = new StringBuilder();
        try (ResultSet r = md.getPrimaryKeys(null, "public", "secret")) { while (r.next()) pk.append(r.getString("COLUMN_NAME")).append(','); }
        System.out.println("primary_key=" + pk);
        StringBuilder sc = new StringBuilder();
        try (ResultSet r = md.getSchemas()) { while (r.next()) sc.append(r.getString("TABLE_SCHEM")).append(','); }
        System.out.println("schemas=" + sc);
        StringBuilder fn = new StringBuilder();
        try (ResultSet r = md.getFunctions(null, "public", "add_one")) { while (r.next()) fn.append(r.getString("FUNCTION_NAME")).append(','); }
        System.out.println("functions=" + fn);
        StringBuilder ix = new StringBuilder();
        try (ResultSet r = md.getIndexInfo(null, "public", "secret", false, true)) { while (r.next()) ix.append(r.getString("INDEX_NAME")).append(','); }
        System.out.println("indexes=" + ix);
        System.out.println("product=" + md.getDatabaseProductName() + " " + md.getDatabaseMajorVersion());
      }
    } catch (SQLException e) {
      System.out.println("probe_sqlstate=" + e.getSQLState());
      System.out.println("probe_message=" + e.getMessage().replace('\\n', ' '));
    }
    System.out.println("done=yes");
  }
}
`;

async function java(what: 'probe' | 'metadata', who: Who, query = '') {
  const file = join(env.stack.dataDir, 'ScopesJdbc.java');
  writeFileSync(file, JAVA);
  const url = `jdbc:postgresql://${env.stack.host}:${env.stack.port}/${RESOURCE}${query ? `?${query}` : ''}`;
  return sh('java', ['-cp', JDBC_JAR, file, what], { WARDEN_JDBC_URL: url, WARDEN_JDBC_USER: who, WARDEN_JDBC_TOKEN: await env.stack.token(who) });
}

// ---------------------------------------------------------------- in-scope work still works

/** Structure queries as psql, drivers and ORMs send them: allowed for every identity. */
const STRUCTURE = [
  'show search_path',
  'select current_schema(), current_schemas(true), current_database(), version()',
  "select current_setting('server_version_num')",
  "select table_schema, table_name, table_type from information_schema.tables where table_schema not in ('pg_catalog', 'information_schema') order by 1, 2",
  "select column_name, data_type, is_nullable, column_default from information_schema.columns where table_schema = 'public' and table_name = 'secret' order by ordinal_position",
  "select routine_schema, routine_name from information_schema.routines where routine_schema = 'public' order by 2",
  "select constraint_name, constraint_type from information_schema.table_constraints where table_schema = 'public' order by 1",
  'select schema_name from information_schema.schemata order by 1',
  "select n.nspname, c.relname, c.relkind from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace where n.nspname !~ '^pg_' and n.nspname <> 'information_schema' order by 1, 2",
  'select nspname from pg_catalog.pg_namespace order by 1',
  "select a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull from pg_catalog.pg_attribute a where a.attrelid = 'public.secret'::regclass and a.attnum > 0 and not a.attisdropped order by a.attnum",
  "select p.proname, pg_catalog.pg_get_function_arguments(p.oid) from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace where n.nspname = 'public' order by 1",
  'select oid, typname, typtype from pg_catalog.pg_type where typnamespace = \'pg_catalog\'::regnamespace order by oid limit 50',
  // JDBC-style getTables: schemas, relations, kinds and comments.
  `select null as table_cat, n.nspname as table_schem, c.relname as table_name,
     case c.relkind when 'r' then 'TABLE' when 'p' then 'PARTITIONED TABLE' when 'v' then 'VIEW' when 'm' then 'MATERIALIZED VIEW' when 'S' then 'SEQUENCE' else null end as table_type,
     d.description as remarks
   from pg_catalog.pg_namespace n join pg_catalog.pg_class c on c.relnamespace = n.oid
   left join pg_catalog.pg_description d on d.objoid = c.oid and d.objsubid = 0 and d.classoid = 'pg_catalog.pg_class'::regclass
   where n.nspname like 'public' and c.relname like '%' order by table_type, table_schem, table_name`,
  // JDBC-style getColumns: types, defaults (as text) and comments.
  `select n.nspname, c.relname, a.attname, a.atttypid, a.attnotnull or (t.typtype = 'd' and t.typnotnull) as attnotnull, a.atttypmod, a.attlen, a.attnum,
     pg_catalog.pg_get_expr(def.adbin, def.adrelid) as adsrc, dsc.description, t.typbasetype, t.typtype
   from pg_catalog.pg_namespace n join pg_catalog.pg_class c on c.relnamespace = n.oid
   join pg_catalog.pg_attribute a on a.attrelid = c.oid join pg_catalog.pg_type t on a.atttypid = t.oid
   left join pg_catalog.pg_attrdef def on a.attrelid = def.adrelid and a.attnum = def.adnum
   left join pg_catalog.pg_description dsc on c.oid = dsc.objoid and a.attnum = dsc.objsubid
   where c.relkind in ('r', 'p', 'v', 'f', 'm') and a.attnum > 0 and not a.attisdropped and n.nspname like 'public' and c.relname like '%'
   order by n.nspname, c.relname, a.attnum`,
  // JDBC-style getPrimaryKeys.
  `select n.nspname as table_schem, ct.relname as table_name, a.attname as column_name, ci.relname as pk_name
   from pg_catalog.pg_class ct join pg_catalog.pg_attribute a on a.attrelid = ct.oid
   join pg_catalog.pg_namespace n on ct.relnamespace = n.oid
   join pg_catalog.pg_index i on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
   join pg_catalog.pg_class ci on ci.oid = i.indexrelid
   where i.indisprimary and n.nspname = 'public' and ct.relname = 'secret' order by column_name`,
  // ORM-style foreign keys.
  `select conname, conrelid::regclass::text, confrelid::regclass::text, pg_catalog.pg_get_constraintdef(oid) from pg_catalog.pg_constraint where contype = 'f' order by 1`,
];

const IN_SCOPE_READS: Array<[string, string[]]> = [
  ['select v from public.secret order by id', ['public-ok-secret-1', 'public-ok-secret-2']],
  ['select v from secret order by id', ['public-ok-secret-1', 'public-ok-secret-2']],
  ['select note as v from public.parent order by id', ['public-ok', 'public-ok', 'public-ok']],
  ['select v from public.measurements_eu order by id', ['public-ok']],
  ['select v from only public.items order by id', ['public-ok']],
  ['select public.add_one(41) as v', ['42']],
  ['select add_one(1) as v', ['2']],
];

/** Values of column v of a result, as text, from either session kind. */
function values(o: Outcome): string[] {
  return o.text
    .trim()
    .split('\n')
    .filter((line) => line !== '')
    .flatMap((line) => {
      const parsed = JSON.parse(line) as unknown;
      if (Array.isArray(parsed) && parsed.every((x) => typeof x === 'object' && x !== null)) return parsed.map((r) => String((r as { v: unknown }).v));
      return [String((parsed as unknown[])[0])];
    });
}

describe('in-scope work still works (no over-refusal)', () => {
  for (const who of ['scoped-reader', 'scoped-writer'] as Who[]) {
    for (const mode of MODES) {
      it(`reads of allowed tables and a harmless function in public [${who}, ${mode}]`, async () => {
        const out = await runSteps(await open(who, mode), IN_SCOPE_READS.map(([sql]) => ({ sql })));
        const t = transcript(out);
        IN_SCOPE_READS.forEach(([sql, expected], i) => {
          expect(out[i]?.error, `${sql} must be allowed:\n${t}`).toBeUndefined();
          expect(values(out[i]!), `${sql}:\n${t}`).toEqual(expected);
        });
      });

      it(`information_schema, pg_catalog and JDBC-style metadata queries [${who}, ${mode}]`, async () => {
        const out = await runSteps(await open(who, mode), STRUCTURE.map((sql) => ({ sql })));
        expect(out.filter((o) => o.error), `structure queries must be allowed:\n${transcript(out)}`).toEqual([]);
        expect(leaked(who, out)).toEqual([]);
      });

      it(`a rolled-back SET search_path leaves the path as it was [${who}, ${mode}]`, async () => {
        const out = await runSteps(await open(who, mode), [
          { sql: 'show search_path' },
          { sql: 'begin' },
          { sql: 'set search_path = p' }, // may be refused; then ROLLBACK ends the failed transaction
          { sql: 'rollback' },
          { sql: 'select v from secret order by id' },
          { sql: 'show search_path' },
          { sql: 'begin' },
          { sql: 'savepoint s' },
          { sql: 'set search_path = p' },
          { sql: 'rollback to savepoint s' },
          { sql: 'select v from secret order by id' },
          { sql: 'commit' },
          { sql: 'begin' },
          { sql: 'set local search_path = p' },
          { sql: 'commit' },
          { sql: 'select v from secret order by id' },
        ]);
        const t = transcript(out);
        expect(leaked(who, out), t).toEqual([]);
        for (const i of [0, 1, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15]) expect(out[i]?.error, `statement ${i + 1} must be allowed:\n${t}`).toBeUndefined();
        for (const i of [4, 10, 15]) expect(values(out[i]!), t).toEqual(['public-ok-secret-1', 'public-ok-secret-2']);
        expect(out[5]!.text, t).toBe(out[0]!.text);
        for (const i of [2, 8, 13]) if (out[i]!.error) expect(out[i]!.error!.code, t).toBe('42501');
      });

      it(`a SET in an implicit transaction that fails is undone with it [${who}, ${mode}]`, async () => {
        // Several statements in one Query, or in one pipeline before Sync, run as one transaction:
        // the error rolls the SET back, and the path is the default again.
        const s = await RawSession.open(env.stack, who);
        const out: Outcome[] = [];
        try {
          if (mode === 'simple') out.push(...(await s.simple('set search_path = p; select 1/0')));
          else out.push(...(await s.pipeline([{ sql: 'set search_path = p' }, { sql: 'select 1/0' }])));
          out.push(...(await s.simple('show search_path')));
          out.push(...(await s.simple('select v from secret order by id')));
        } finally {
          await s.end();
        }
        const t = transcript(out);
        expect(leaked(who, out), t).toEqual([]);
        const [show, read] = out.slice(-2);
        expect(show!.error, t).toBeUndefined();
        expect(show!.text, t).toContain('public');
        expect(show!.text, t).not.toMatch(/"p"|\["p"\]/);
        expect(read!.error, `the read after the rolled-back SET must be allowed:\n${t}`).toBeUndefined();
        expect(values(read!), t).toEqual(['public-ok-secret-1', 'public-ok-secret-2']);
      });

      it(`SET search_path = public, then unqualified reads of public [${who}, ${mode}]`, async () => {
        const out = await runSteps(await open(who, mode), [{ sql: 'set search_path = public' }, { sql: 'select v from secret order by id' }, { sql: 'select public.add_one(1) as v' }]);
        const t = transcript(out);
        expect(out.filter((o) => o.error), `a search_path of public only is in scope:\n${t}`).toEqual([]);
        expect(values(out[1]!), t).toEqual(['public-ok-secret-1', 'public-ok-secret-2']);
      });
    }
  }

  for (const mode of MODES) {
    it(`writes to allowed tables, ONLY forms, and a volatile function in public [scoped-writer, ${mode}]`, async () => {
      const out = await runSteps(await open('scoped-writer', mode), [
        { sql: 'begin' },
        { sql: "insert into public.secret values (100, 'public-ok-new')" },
        { sql: 'update public.secret set v = v where id = 100' },
        { sql: 'delete from public.secret where id = 100' },
        { sql: 'commit' },
        { sql: 'begin' },
        { sql: 'update only public.items set v = v' },
        { sql: 'delete from only public.items where id = 1' },
        { sql: 'rollback' },
        { sql: 'select public.bump_hits() as v' },
      ]);
      const t = transcript(out);
      expect(out.filter((o) => o.error), `in-scope writes must be allowed:\n${t}`).toEqual([]);
      expect(values(out[9]!), t).toEqual(['1']);
      await expectOutOfScopeUnchanged('scoped-writer', out);
    });
  }

  for (const who of ['scoped-reader', 'table-denied'] as Who[]) {
    it(`psql \\d, \\dt, \\df, \\dn, \\dv, \\d public.secret [${who}]`, async () => {
      const r = await sh(
        'psql',
        [env.stack.conninfo({ user: who, dbname: RESOURCE }), '-X', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose', '-c', '\\d', '-c', '\\dt', '-c', '\\df', '-c', '\\dn', '-c', '\\dv', '-c', '\\d public.secret'],
        { PGPASSWORD: await env.stack.token(who) },
      );
      const errors = r.stderr.split('\n').filter((l) => l.trim());
      expect(errors, `psql printed errors:\n${errors.join('\n')}`).toEqual([]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/secret/);
      expect(r.stdout).toMatch(/add_one/);
      expect(r.stdout).toMatch(/Table "public\.secret"/);
    });
  }

  it('JDBC DatabaseMetaData: tables, columns, primary keys, schemas, functions, indexes [scoped-reader]', async () => {
    const r = await java('metadata', 'scoped-reader');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/probe_sqlstate/);
    expect(r.stdout).toMatch(/^tables=.*\bsecret,/m);
    expect(r.stdout).toMatch(/^columns=id:int4,v:text,$/m);
    expect(r.stdout).toMatch(/^primary_key=id,$/m);
    expect(r.stdout).toMatch(/^schemas=.*\bpublic,/m);
    expect(r.stdout).toMatch(/^functions=add_one,$/m);
    expect(r.stdout).toMatch(/^done=yes$/m);
  });

  it('the table-denied identity reads the rest of public, and all of p [table-denied, simple]', async () => {
    const out = await runSteps(await open('table-denied', 'simple'), [{ sql: 'select note from public.parent order by id' }, { sql: 'select v from p.secret order by id' }]);
    expect(out.filter((o) => o.error), transcript(out)).toEqual([]);
    expect(out[1]!.rows).toBe(30);
  });

  it('the unscoped reader reads p.secret, its views and functions: the markers are live [unscoped-reader, extended]', async () => {
    const out = await runSteps(await open('unscoped-reader', 'extended'), [
      { sql: 'select v from p.secret order by id' },
      { sql: 'select * from public.v_secret' },
      { sql: 'select * from public.get_secret()' },
    ]);
    expect(out.filter((o) => o.error), transcript(out)).toEqual([]);
    expect(out.every((o) => OUT_OF_SCHEMA[0]!.test(o.text))).toBe(true);
  });
});

// ---------------------------------------------------------------- psql and COPY over real clients

describe('psql, as a new user would try it', () => {
  for (const who of SCOPED) {
    it(`psql -c "set search_path = p; select * from secret" [${who}, simple]`, async () => {
      const r = await sh('psql', [env.stack.conninfo({ user: who, dbname: RESOURCE }), '-X', '-At', '-v', 'VERBOSITY=verbose', '-c', `set search_path = p; ${probeOf(who).join('; ')}`], {
        PGPASSWORD: await env.stack.token(who),
      });
      const out = psqlOutcomes(r);
      judge(who, out, {});
      await expectOutOfScopeUnchanged(who, out);
    });

    it(`psql COPY (select * from secret) TO STDOUT after SET, and COPY p.secret TO STDOUT [${who}, simple]`, async () => {
      const token = await env.stack.token(who);
      const a = psqlOutcomes(
        await sh('psql', [env.stack.conninfo({ user: who, dbname: RESOURCE }), '-X', '-v', 'VERBOSITY=verbose', '-c', 'set search_path = p', '-c', 'copy (select id, v from secret) to stdout'], { PGPASSWORD: token }),
      );
      const b = psqlOutcomes(await sh('psql', [env.stack.conninfo({ user: who, dbname: RESOURCE }), '-X', '-v', 'VERBOSITY=verbose', '-c', 'copy p.secret to stdout'], { PGPASSWORD: token }));
      judge(who, a, {});
      judge(who, b, {});
    });
  }
});
