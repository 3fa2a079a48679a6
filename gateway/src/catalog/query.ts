// The catalog query: one statement whose one row holds the whole resource
// catalog as compact JSON (rows as arrays), and the parser that checks that
// JSON and builds the typed ResourceCatalog from it.
//
// Only plain catalog tables and functions are used so that the same text
// runs on PostgreSQL 13 to 18 and on PGlite. The one version difference is
// SQL-standard function bodies (PostgreSQL 14+): pg_proc.prosqlbody and
// pg_get_function_sqlbody() do not exist on 13, and a reference to either
// fails at parse time, so the text is chosen by the server's major version.
import type {
  CatalogColumn,
  CatalogForeignKey,
  CatalogFunction,
  CatalogRelation,
  CatalogRule,
  CatalogTrigger,
  ResourceCatalog,
} from './types.js';

/** Oldest server whose functions may have SQL-standard bodies (BEGIN ATOMIC / RETURN). */
const SQL_BODY_SINCE = 14;

// Schemas never listed as the database's own objects. Other sessions' temp
// schemas come and go with those sessions; our fresh session has none.
const OWN_SCHEMAS = (ns: string) =>
  `${ns}.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')` +
  ` and ${ns}.nspname !~ '^pg_toast_temp_'::pg_catalog.text and not pg_catalog.pg_is_other_temp_schema(${ns}.oid)`;

const key = (ns: string, name: string) => `pg_catalog.concat_ws('.', ${ns}.nspname, ${name})`;

const C = 'collate pg_catalog."C"';
const regclassOid = (name: string) => `'pg_catalog.${name}'::pg_catalog.regclass::pg_catalog.oid`;

/** table_calls (of the query's WITH) as [table, functions] rows, for the rows where `which` holds. */
const tableCalls = (which: string) => `(
    select pg_catalog.json_agg(pg_catalog.json_build_array(x.t, x.calls) order by x.t ${C})
    from (
      select ${key('tn', 'c.relname')} as t,
        pg_catalog.array_agg(distinct ${key('fn', 'f.proname')} ${C} order by ${key('fn', 'f.proname')} ${C}) as calls
      from table_calls tc
      join pg_catalog.pg_class c on c.oid = tc.t
      join pg_catalog.pg_namespace tn on tn.oid = c.relnamespace
      join pg_catalog.pg_proc f on f.oid = tc.f
      join pg_catalog.pg_namespace fn on fn.oid = f.pronamespace
      where ${which} and c.relkind in ('r', 'p', 'v', 'm', 'f') and ${OWN_SCHEMAS('tn')}
      group by 1) x)`;

/**
 * The catalog query for a server of the given major version (default: one
 * with SQL-standard bodies). Functions, types and collations are qualified
 * with pg_catalog, and every operator's operands have the exact types of a
 * pg_catalog operator, so that objects created in a schema on the session's
 * search_path cannot take over any part of it.
 */
export function catalogQuery(major = SQL_BODY_SINCE): string {
  // A SQL-standard body is stored parsed and deparsed on demand, leaving
  // unqualified whatever the current search_path finds. It is deparsed
  // under an empty search_path (pg_catalog only), restored right after, so
  // that every user object in the text carries its schema. The nested
  // subqueries (not flattened: OFFSET 0, volatile set_config) fix the order:
  // save and clear, deparse, restore.
  const body =
    major >= SQL_BODY_SINCE
      ? `case when p.prosqlbody is not null then (
          select case when pg_catalog.set_config('search_path', s1.o, true) is not null then s1.b end
          from (
            select s0.o, pg_catalog.pg_get_function_sqlbody(s0.f) as b
            from (
              select pg_catalog.current_setting('search_path') as o, pg_catalog.set_config('search_path', '', true) as x, p.oid as f
              offset 0) s0
            offset 0) s1)
        else p.prosrc end`
      : 'p.prosrc';
  return `with recursive
-- Text-like types: base types of the string category, and the domains over
-- them however many domains deep (a domain counts as its base type).
text_types (typ) as (
  select t.oid from pg_catalog.pg_type t where t.typcategory = 'S' and t.typtype <> 'd'
  union
  select t.oid from text_types x join pg_catalog.pg_type t on t.typbasetype = x.typ and t.typtype = 'd'),
-- Dependencies on functions outside pg_catalog, directly or through an
-- operator (which runs its function): what stored expressions call.
calls (classid, objid, f) as (
  select d.classid, d.objid, f.oid
  from pg_catalog.pg_depend d
  left join pg_catalog.pg_operator o on d.refclassid = ${regclassOid('pg_operator')} and o.oid = d.refobjid
  join pg_catalog.pg_proc f on f.oid = case
    when d.refclassid = ${regclassOid('pg_proc')} then d.refobjid
    else o.oprcode::pg_catalog.oid end
  join pg_catalog.pg_namespace fn on fn.oid = f.pronamespace
  where d.refclassid in (${regclassOid('pg_proc')}, ${regclassOid('pg_operator')}) and fn.nspname <> 'pg_catalog'),
-- Types whose values are checked by such functions: domains with those
-- checks, and the domains over them, arrays of them and composite types
-- with an attribute of them.
checked (typ, f) as (
  select k.contypid, x.f
  from pg_catalog.pg_constraint k
  join calls x on x.classid = ${regclassOid('pg_constraint')} and x.objid = k.oid
  where k.contypid <> 0::pg_catalog.oid
  union
  select t.oid, c.f
  from checked c
  join pg_catalog.pg_type t on (t.typtype = 'd' and t.typbasetype = c.typ) or t.typelem = c.typ
    or (t.typtype = 'c' and exists (
      select from pg_catalog.pg_attribute a
      where a.attrelid = t.typrelid and a.atttypid = c.typ and a.attnum > 0 and not a.attisdropped))),
-- What writing a relation may run (and, for read = true, reading it too).
table_calls (t, f, read) as (
  select ad.adrelid, x.f, false
  from pg_catalog.pg_attrdef ad
  join calls x on x.classid = ${regclassOid('pg_attrdef')} and x.objid = ad.oid
  union all
  -- CHECK expressions; the operators of foreign keys and exclusion constraints.
  select k.conrelid, x.f, false
  from pg_catalog.pg_constraint k
  join calls x on x.classid = ${regclassOid('pg_constraint')} and x.objid = k.oid
  where k.conrelid <> 0::pg_catalog.oid
  union all
  select a.attrelid, c.f, false
  from pg_catalog.pg_attribute a
  join checked c on c.typ = a.atttypid
  where a.attnum > 0 and not a.attisdropped
  union all
  -- Index expressions and predicates.
  select i.indrelid, x.f, false
  from pg_catalog.pg_index i
  join calls x on x.classid = ${regclassOid('pg_class')} and x.objid = i.indexrelid
  union all
  -- Row-level-security policies: SELECT and ALL ones also filter reads.
  select pol.polrelid, x.f, pol.polcmd in ('*', 'r')
  from pg_catalog.pg_policy pol
  join calls x on x.classid = ${regclassOid('pg_policy')} and x.objid = pol.oid
  union all
  -- Trigger WHEN conditions (the trigger's own function is in triggers).
  select tg.tgrelid, x.f, false
  from pg_catalog.pg_trigger tg
  join calls x on x.classid = ${regclassOid('pg_trigger')} and x.objid = tg.oid
  where x.f <> tg.tgfoid
  union all
  -- Rule conditions and actions.
  select w.ev_class, x.f, false
  from pg_catalog.pg_rewrite w
  join calls x on x.classid = ${regclassOid('pg_rewrite')} and x.objid = w.oid
  where w.rulename <> '_RETURN')
select pg_catalog.json_build_object(
  'sessionUser', session_user,
  'searchPath', pg_catalog.current_setting('search_path'),
  'schemas', (select pg_catalog.json_agg(n.nspname::pg_catalog.text order by n.nspname ${C}) from pg_catalog.pg_namespace n),
  'relations', (
    select pg_catalog.json_agg(pg_catalog.json_build_array(n.nspname::pg_catalog.text, c.relname::pg_catalog.text, c.relkind::pg_catalog.text)
      order by n.nspname ${C}, c.relname ${C})
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p', 'v', 'm', 'f', 'S') and ${OWN_SCHEMAS('n')}),
  -- Relations whose columns a result may carry: [key, oid, columns].
  'relationColumns', (
    select pg_catalog.json_agg(pg_catalog.json_build_array(${key('n', 'c.relname')}, c.oid::pg_catalog.int8, (
        select pg_catalog.json_agg(pg_catalog.json_build_array(a.attname::pg_catalog.text, a.attnum, a.atttypid::pg_catalog.int8,
            a.atttypid in (select tt.typ from text_types tt), a.atttypmod) order by a.attnum)
        from pg_catalog.pg_attribute a
        where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped))
      order by n.nspname ${C}, c.relname ${C})
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p', 'v', 'm', 'f', 'c') and ${OWN_SCHEMAS('n')}),
  'catalogRelations', (
    select pg_catalog.json_agg(c.relname::pg_catalog.text order by c.relname ${C})
    from pg_catalog.pg_class c
    where c.relnamespace = 'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid and c.relkind in ('r', 'v', 'm', 'p')),
  'catalogFunctions', (
    select pg_catalog.json_agg(distinct p.proname::pg_catalog.text)
    from pg_catalog.pg_proc p
    where p.pronamespace in ('pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid, 'information_schema'::pg_catalog.regnamespace::pg_catalog.oid)),
  'viewReads', (
    select pg_catalog.json_agg(pg_catalog.json_build_array(x.view, x.reads) order by x.view ${C})
    from (
      select ${key('vn', 'v.relname')} as view,
        pg_catalog.array_agg(distinct ${key('rn', 'r.relname')} ${C} order by ${key('rn', 'r.relname')} ${C}) as reads
      from pg_catalog.pg_class v
      join pg_catalog.pg_namespace vn on vn.oid = v.relnamespace
      join pg_catalog.pg_rewrite w on w.ev_class = v.oid and w.rulename = '_RETURN'
      join pg_catalog.pg_depend d on d.classid = ${regclassOid('pg_rewrite')} and d.objid = w.oid
        and d.refclassid = ${regclassOid('pg_class')} and d.refobjid <> v.oid
      join pg_catalog.pg_class r on r.oid = d.refobjid
      join pg_catalog.pg_namespace rn on rn.oid = r.relnamespace
      where v.relkind in ('v', 'm') and ${OWN_SCHEMAS('vn')}
      group by 1) x),
  'viewCalls', (
    select pg_catalog.json_agg(pg_catalog.json_build_array(x.view, x.calls) order by x.view ${C})
    from (
      select ${key('vn', 'v.relname')} as view,
        pg_catalog.array_agg(distinct ${key('fn', 'f.proname')} ${C} order by ${key('fn', 'f.proname')} ${C}) as calls
      from pg_catalog.pg_class v
      join pg_catalog.pg_namespace vn on vn.oid = v.relnamespace
      join pg_catalog.pg_rewrite w on w.ev_class = v.oid and w.rulename = '_RETURN'
      join pg_catalog.pg_depend d on d.classid = ${regclassOid('pg_rewrite')} and d.objid = w.oid
      -- An operator runs its function: a user-defined one counts as a call.
      left join pg_catalog.pg_operator o on d.refclassid = ${regclassOid('pg_operator')} and o.oid = d.refobjid
      join pg_catalog.pg_proc f on f.oid = case
        when d.refclassid = ${regclassOid('pg_proc')} then d.refobjid
        else o.oprcode::pg_catalog.oid end
      join pg_catalog.pg_namespace fn on fn.oid = f.pronamespace
      where v.relkind in ('v', 'm') and ${OWN_SCHEMAS('vn')} and fn.nspname <> 'pg_catalog'
      group by 1) x),
  -- Like SQL-standard bodies below, view definitions are deparsed under an
  -- empty search_path, restored right after, so that every user object in
  -- them carries its schema. All at once: one save and restore. The inner
  -- subquery names s0.x so that it runs per row of s0, after the clearing.
  'viewDefinitions', (
    select case when pg_catalog.set_config('search_path', s1.o, true) is not null then s1.defs end
    from (
      select s0.o, (
          select pg_catalog.json_agg(pg_catalog.json_build_array(${key('vn', 'v.relname')}, pg_catalog.pg_get_viewdef(v.oid))
            order by vn.nspname ${C}, v.relname ${C})
          from pg_catalog.pg_class v
          join pg_catalog.pg_namespace vn on vn.oid = v.relnamespace
          where v.relkind in ('v', 'm') and ${OWN_SCHEMAS('vn')} and s0.x is not null) as defs
      from (
        select pg_catalog.current_setting('search_path') as o, pg_catalog.set_config('search_path', '', true) as x
        offset 0) s0
      offset 0) s1),
  'children', (
    select pg_catalog.json_agg(pg_catalog.json_build_array(x.parent, x.children) order by x.parent ${C})
    from (
      select ${key('pn', 'p.relname')} as parent,
        pg_catalog.array_agg(${key('cn', 'c.relname')} ${C} order by ${key('cn', 'c.relname')} ${C}) as children
      from pg_catalog.pg_inherits i
      join pg_catalog.pg_class p on p.oid = i.inhparent
      join pg_catalog.pg_namespace pn on pn.oid = p.relnamespace
      join pg_catalog.pg_class c on c.oid = i.inhrelid
      join pg_catalog.pg_namespace cn on cn.oid = c.relnamespace
      where p.relkind not in ('i', 'I')
      group by 1) x),
  'foreignKeys', (
    select pg_catalog.json_agg(pg_catalog.json_build_array(x.t, x.r, x.d, x.u) order by x.t ${C}, x.r ${C}, x.d, x.u)
    from (
      select distinct ${key('tn', 't.relname')} as t, ${key('rn', 'r.relname')} as r,
        k.confdeltype::pg_catalog.text as d, k.confupdtype::pg_catalog.text as u
      from pg_catalog.pg_constraint k
      join pg_catalog.pg_class t on t.oid = k.conrelid
      join pg_catalog.pg_namespace tn on tn.oid = t.relnamespace
      join pg_catalog.pg_class r on r.oid = k.confrelid
      join pg_catalog.pg_namespace rn on rn.oid = r.relnamespace
      where k.contype = 'f') x),
  'triggers', (
    select pg_catalog.json_agg(pg_catalog.json_build_array(x.t, x.f, x.type) order by x.t ${C}, x.f ${C}, x.type)
    from (
      select ${key('tn', 'c.relname')} as t, ${key('fn', 'f.proname')} as f, t.tgtype::pg_catalog.int4 as type
      from pg_catalog.pg_trigger t
      join pg_catalog.pg_class c on c.oid = t.tgrelid
      join pg_catalog.pg_namespace tn on tn.oid = c.relnamespace
      join pg_catalog.pg_proc f on f.oid = t.tgfoid
      join pg_catalog.pg_namespace fn on fn.oid = f.pronamespace
      -- Before 15, the clones of a partitioned table's trigger on its
      -- partitions are marked internal; foreign-key triggers are internal
      -- everywhere and run pg_catalog's RI_FKey_* functions.
      where (not t.tgisinternal or t.tgparentid <> 0::pg_catalog.oid)
        and not (fn.nspname = 'pg_catalog' and f.proname::pg_catalog.text like 'RI\\_FKey\\_%')) x),
  'rules', (
    select pg_catalog.json_agg(pg_catalog.json_build_array(x.t, x.event, x.rels) order by x.t ${C}, x.event, x.oid)
    from (
      select w.oid, ${key('tn', 'c.relname')} as t, w.ev_type::pg_catalog.text as event,
        coalesce((
          select pg_catalog.array_agg(distinct ${key('rn', 'r.relname')} ${C} order by ${key('rn', 'r.relname')} ${C})
          from pg_catalog.pg_depend d
          join pg_catalog.pg_class r on r.oid = d.refobjid
          join pg_catalog.pg_namespace rn on rn.oid = r.relnamespace
          where d.classid = ${regclassOid('pg_rewrite')} and d.objid = w.oid
            and d.refclassid = ${regclassOid('pg_class')} and d.refobjid <> w.ev_class), '{}') as rels
      from pg_catalog.pg_rewrite w
      join pg_catalog.pg_class c on c.oid = w.ev_class
      join pg_catalog.pg_namespace tn on tn.oid = c.relnamespace
      where w.rulename <> '_RETURN') x),
  'operators', (
    select pg_catalog.json_agg(pg_catalog.json_build_array(x.op, x.calls) order by x.op ${C})
    from (
      select ${key('n', 'o.oprname')} as op,
        pg_catalog.array_agg(distinct ${key('fn', 'f.proname')} ${C} order by ${key('fn', 'f.proname')} ${C}) as calls
      from pg_catalog.pg_operator o
      join pg_catalog.pg_namespace n on n.oid = o.oprnamespace
      join pg_catalog.pg_proc f on f.oid = o.oprcode::pg_catalog.oid
      join pg_catalog.pg_namespace fn on fn.oid = f.pronamespace
      where n.nspname <> 'pg_catalog' and fn.nspname <> 'pg_catalog' and not pg_catalog.pg_is_other_temp_schema(n.oid)
      group by 1) x),
  'tableCalls', ${tableCalls('true')},
  'tableReadCalls', ${tableCalls('tc.read')},
  'functions', (
    select pg_catalog.json_agg(pg_catalog.json_build_array(
        n.nspname::pg_catalog.text, p.proname::pg_catalog.text, p.prokind::pg_catalog.text, p.provolatile::pg_catalog.text, l.lanname::pg_catalog.text, p.prosecdef,
        pg_catalog.pg_get_userbyid(p.proowner)::pg_catalog.text,
        case when l.lanname in ('sql', 'plpgsql') then ${body} end,
        (select pg_catalog.substr(s, pg_catalog.strpos(s, '=') + 1) from pg_catalog.unnest(p.proconfig) s
          where pg_catalog.lower(pg_catalog.split_part(s, '=', 1)) = 'search_path' limit 1),
        -- What an aggregate runs: its support functions and its sort operator's.
        case when p.prokind = 'a' then (
          select pg_catalog.array_agg(distinct ${key('sn', 's.proname')} ${C} order by ${key('sn', 's.proname')} ${C})
          from pg_catalog.pg_aggregate a
          cross join pg_catalog.unnest(array[
            a.aggtransfn::pg_catalog.oid, a.aggfinalfn::pg_catalog.oid, a.aggcombinefn::pg_catalog.oid,
            a.aggserialfn::pg_catalog.oid, a.aggdeserialfn::pg_catalog.oid, a.aggmtransfn::pg_catalog.oid,
            a.aggminvtransfn::pg_catalog.oid, a.aggmfinalfn::pg_catalog.oid,
            (select o.oprcode::pg_catalog.oid from pg_catalog.pg_operator o where o.oid = a.aggsortop)]) u(f)
          join pg_catalog.pg_proc s on s.oid = u.f
          join pg_catalog.pg_namespace sn on sn.oid = s.pronamespace
          where a.aggfnoid::pg_catalog.oid = p.oid and sn.nspname <> 'pg_catalog') end)
      order by n.nspname ${C}, p.proname ${C}, p.oid)
    from pg_catalog.pg_proc p
    join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    join pg_catalog.pg_language l on l.oid = p.prolang
    where n.nspname not in ('pg_catalog', 'information_schema') and not pg_catalog.pg_is_other_temp_schema(n.oid))
)::pg_catalog.text as catalog`;
}

/** The major version in a server_version ParameterStatus ("15.4 (Debian …)", "17devel", "9.6.1"): undefined when unreadable. */
export function serverMajorVersion(serverVersion: string | undefined): number | undefined {
  const m = /^\s*(\d+)/.exec(serverVersion ?? '');
  return m ? Number(m[1]) : undefined;
}

// --- parsing ---------------------------------------------------------------

/** The catalog JSON does not have the expected shape. */
export class CatalogShapeError extends Error {
  constructor(where: string, what: string) {
    super(`the resource catalog is malformed: ${where} ${what}`);
    this.name = 'CatalogShapeError';
  }
}

type Row = unknown[];

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown, where: string): string {
  if (typeof v !== 'string') throw new CatalogShapeError(where, `should be a string, got ${JSON.stringify(v)}`);
  return v;
}

function optStr(v: unknown, where: string): string | undefined {
  return v === null || v === undefined ? undefined : str(v, where);
}

function oneOf<T extends string>(v: unknown, allowed: readonly T[], where: string): T {
  const s = str(v, where);
  if (!(allowed as readonly string[]).includes(s)) throw new CatalogShapeError(where, `should be one of ${allowed.join(', ')}, got ${JSON.stringify(s)}`);
  return s as T;
}

function strings(v: unknown, where: string): string[] {
  if (!Array.isArray(v)) throw new CatalogShapeError(where, 'should be an array');
  return v.map((s, i) => str(s, `${where}[${i}]`));
}

/** A top-level list: json_agg gives null when there are no rows. */
function rows(v: unknown, where: string, width: number): Row[] {
  if (v === null || v === undefined) return [];
  if (!Array.isArray(v)) throw new CatalogShapeError(where, 'should be an array');
  return v.map((r, i) => {
    if (!Array.isArray(r) || r.length !== width) throw new CatalogShapeError(`${where}[${i}]`, `should be an array of ${width}`);
    return r;
  });
}

function list(v: unknown, where: string): string[] {
  return v === null || v === undefined ? [] : strings(v, where);
}

const RELATION_KINDS = ['r', 'p', 'v', 'm', 'f', 'S', 'i', 'I', 'c', 't'] as const;
const FUNCTION_KINDS = ['f', 'p', 'a', 'w'] as const;
const VOLATILITIES = ['i', 's', 'v'] as const;
const FK_ACTIONS = ['a', 'r', 'c', 'n', 'd'] as const;
const RULE_EVENTS: Record<string, CatalogRule['event']> = { '1': 'select', '2': 'update', '3': 'insert', '4': 'delete' };
/** pg_trigger.tgtype event bits, in the order events are listed. */
const TRIGGER_EVENTS: Array<[number, CatalogTrigger['events'][number]]> = [
  [1 << 2, 'insert'],
  [1 << 4, 'update'],
  [1 << 3, 'delete'],
  [1 << 5, 'truncate'],
];

/** "schema.symbol": operator symbols are made of these characters only (never a dot). */
const OPERATOR_KEY = /^.+\.[-+*/<>=~!@#%^&|`?]+$/;

/** A map from "schema.name" to a sorted list, from [key, list] rows. */
function keyedLists(v: unknown, where: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  rows(v, where, 2).forEach((r, i) => {
    const k = str(r[0], `${where}[${i}][0]`);
    out[k] = strings(r[1], `${where}[${i}][1]`);
  });
  return out;
}

/** An object id: a JSON number that fits pg's unsigned 32-bit oid. */
function oid(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new CatalogShapeError(where, `should be an oid, got ${JSON.stringify(v)}`);
  return v;
}

function columnsOf(v: unknown, where: string): CatalogColumn[] {
  // A relation without columns: json_agg over no rows gives null.
  return rows(v, where, 5).map((r, i) => {
    const w = (j: number) => `${where}[${i}][${j}]`;
    const attnum = r[1];
    if (typeof attnum !== 'number' || !Number.isInteger(attnum) || attnum < 1) throw new CatalogShapeError(w(1), 'should be a positive integer');
    if (typeof r[3] !== 'boolean') throw new CatalogShapeError(w(3), 'should be a boolean');
    const typmod = r[4];
    if (typeof typmod !== 'number' || !Number.isInteger(typmod)) throw new CatalogShapeError(w(4), 'should be an integer');
    const col: CatalogColumn = { name: str(r[0], w(0)), attnum, type: oid(r[2], w(2)), textLike: r[3] };
    if (typmod >= 0) col.typmod = typmod;
    return col;
  });
}

/** Child → sorted direct parents, from parent → children. */
function invert(children: Record<string, string[]>): Record<string, string[]> {
  const parents: Record<string, string[]> = {};
  for (const [parent, kids] of Object.entries(children)) for (const kid of kids) (parents[kid] ??= []).push(parent);
  for (const list of Object.values(parents)) list.sort();
  return parents;
}

/**
 * Checks the catalog query's JSON (text, or already parsed) and builds the
 * typed catalog. Throws a CatalogShapeError naming the first bad field.
 */
export function parseCatalog(json: unknown, fetchedAt: number = Date.now()): ResourceCatalog {
  let doc: unknown = json;
  if (typeof json === 'string') {
    try {
      doc = JSON.parse(json);
    } catch (err) {
      throw new CatalogShapeError('the text', `is not JSON (${(err as Error).message})`);
    }
  }
  if (!isRecord(doc)) throw new CatalogShapeError('the document', 'should be an object');

  const relations: Record<string, CatalogRelation> = {};
  rows(doc.relations, 'relations', 3).forEach((r, i) => {
    const schema = str(r[0], `relations[${i}][0]`);
    const name = str(r[1], `relations[${i}][1]`);
    relations[`${schema}.${name}`] = { schema, name, kind: oneOf(r[2], RELATION_KINDS, `relations[${i}][2]`) };
  });

  // Every view gets an entry, so a missing key never reads as "reads nothing".
  const viewReads = keyedLists(doc.viewReads, 'viewReads');
  const viewCalls = keyedLists(doc.viewCalls, 'viewCalls');
  for (const [k, rel] of Object.entries(relations)) {
    if (rel.kind !== 'v' && rel.kind !== 'm') continue;
    viewReads[k] ??= [];
    viewCalls[k] ??= [];
  }

  const columns: Record<string, CatalogColumn[]> = {};
  const relationOids: Record<number, string> = {};
  rows(doc.relationColumns, 'relationColumns', 3).forEach((r, i) => {
    const k = str(r[0], `relationColumns[${i}][0]`);
    columns[k] = columnsOf(r[2], `relationColumns[${i}][2]`);
    relationOids[oid(r[1], `relationColumns[${i}][1]`)] = k;
  });

  // pg_get_viewdef gives null for a view dropped meanwhile: left out.
  const viewDefinitions: Record<string, string> = {};
  rows(doc.viewDefinitions, 'viewDefinitions', 2).forEach((r, i) => {
    const def = optStr(r[1], `viewDefinitions[${i}][1]`);
    if (def !== undefined) viewDefinitions[str(r[0], `viewDefinitions[${i}][0]`)] = def;
  });

  const children = keyedLists(doc.children, 'children');

  const foreignKeys: CatalogForeignKey[] = rows(doc.foreignKeys, 'foreignKeys', 4).map((r, i) => ({
    table: str(r[0], `foreignKeys[${i}][0]`),
    references: str(r[1], `foreignKeys[${i}][1]`),
    onDelete: oneOf(r[2], FK_ACTIONS, `foreignKeys[${i}][2]`),
    onUpdate: oneOf(r[3], FK_ACTIONS, `foreignKeys[${i}][3]`),
  }));

  const triggers: CatalogTrigger[] = rows(doc.triggers, 'triggers', 3).map((r, i) => {
    const type = r[2];
    if (typeof type !== 'number' || !Number.isInteger(type)) throw new CatalogShapeError(`triggers[${i}][2]`, 'should be an integer');
    return {
      table: str(r[0], `triggers[${i}][0]`),
      function: str(r[1], `triggers[${i}][1]`),
      events: TRIGGER_EVENTS.filter(([bit]) => (type & bit) !== 0).map(([, e]) => e),
    };
  });

  const rules: CatalogRule[] = rows(doc.rules, 'rules', 3).map((r, i) => {
    const ev = str(r[1], `rules[${i}][1]`);
    const event = RULE_EVENTS[ev];
    if (!event) throw new CatalogShapeError(`rules[${i}][1]`, `is not a rule event: ${JSON.stringify(ev)}`);
    return { table: str(r[0], `rules[${i}][0]`), event, relations: strings(r[2], `rules[${i}][2]`) };
  });

  const functions: Record<string, CatalogFunction[]> = {};
  rows(doc.functions, 'functions', 10).forEach((r, i) => {
    const w = (j: number) => `functions[${i}][${j}]`;
    if (typeof r[5] !== 'boolean') throw new CatalogShapeError(w(5), 'should be a boolean');
    const fn: CatalogFunction = {
      schema: str(r[0], w(0)),
      name: str(r[1], w(1)),
      kind: oneOf(r[2], FUNCTION_KINDS, w(2)),
      volatility: oneOf(r[3], VOLATILITIES, w(3)),
      language: str(r[4], w(4)),
      securityDefiner: r[5],
      owner: str(r[6], w(6)),
    };
    const body = optStr(r[7], w(7));
    if (body !== undefined) fn.body = body;
    const searchPath = optStr(r[8], w(8));
    if (searchPath !== undefined) fn.searchPath = searchPath;
    if (r[9] !== null && r[9] !== undefined) {
      if (fn.kind !== 'a') throw new CatalogShapeError(w(9), 'should be null for a function that is not an aggregate');
      fn.calls = strings(r[9], w(9));
    }
    (functions[`${fn.schema}.${fn.name}`] ??= []).push(fn);
  });

  // The symbol after the last dot is what reach matches a statement's operators on.
  const operators = keyedLists(doc.operators, 'operators');
  Object.keys(operators).forEach((k, i) => {
    if (!OPERATOR_KEY.test(k)) throw new CatalogShapeError(`operators[${i}][0]`, `is not "schema.symbol": ${JSON.stringify(k)}`);
  });

  return {
    fetchedAt,
    sessionUser: str(doc.sessionUser, 'sessionUser'),
    searchPath: str(doc.searchPath, 'searchPath'),
    schemas: list(doc.schemas, 'schemas'),
    relations,
    catalogRelations: list(doc.catalogRelations, 'catalogRelations'),
    ...(doc.catalogFunctions === undefined ? {} : { catalogFunctions: list(doc.catalogFunctions, 'catalogFunctions') }),
    viewReads,
    viewCalls,
    children,
    foreignKeys,
    triggers,
    rules,
    functions,
    operators,
    tableCalls: keyedLists(doc.tableCalls, 'tableCalls'),
    tableReadCalls: keyedLists(doc.tableReadCalls, 'tableReadCalls'),
    columns,
    relationOids,
    viewDefinitions,
    parents: invert(children),
  };
}
