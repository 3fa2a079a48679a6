// What the gateway knows about a resource's database: the relations, views,
// functions, triggers and foreign keys that decide what a statement really
// touches. Read through the agent (which alone holds the credentials) with
// one catalog query, cached per resource, refreshed after DDL.
//
// Names are as Postgres stores them (unquoted identifiers lower-case).
// Relations and functions are keyed "schema.name".

export interface CatalogRelation {
  schema: string;
  name: string;
  /** pg_class.relkind: r table, p partitioned table, v view, m materialized view, f foreign table, S sequence, i/I index, c composite type, t toast. */
  kind: string;
}

export interface CatalogFunction {
  schema: string;
  name: string;
  /** pg_proc.prokind: f function, p procedure, a aggregate, w window. */
  kind: string;
  /** i immutable, s stable, v volatile. */
  volatility: 'i' | 's' | 'v';
  /** Language name: sql, plpgsql, c, internal, plpython3u… */
  language: string;
  securityDefiner: boolean;
  owner: string;
  /** The body for sql and plpgsql functions (prosrc, or the SQL-standard body as text). */
  body?: string;
  /** The search_path of the function's SET clause, when it has one (raw setting text). */
  searchPath?: string;
  /**
   * Aggregates only: the functions outside pg_catalog that running it calls
   * (transition, final, combine, (de)serialize, moving-aggregate and sort
   * operator functions), "schema.name"; absent when there are none.
   */
  calls?: string[];
}

/** A foreign key whose ON DELETE / ON UPDATE action changes the referencing table. */
export interface CatalogForeignKey {
  /** The referencing table, "schema.name": its rows change when `references` changes. */
  table: string;
  /** The referenced table, "schema.name". */
  references: string;
  /** pg_constraint.confdeltype / confupdtype: a no action, r restrict, c cascade, n set null, d set default. */
  onDelete: string;
  onUpdate: string;
}

export interface CatalogTrigger {
  /** The table the trigger is on, "schema.name". */
  table: string;
  /** The trigger function, "schema.name". */
  function: string;
  /** Events it fires on. */
  events: Array<'insert' | 'update' | 'delete' | 'truncate'>;
}

/** A rewrite rule (CREATE RULE) on a table, not a view's own _RETURN rule. */
export interface CatalogRule {
  table: string;
  event: 'select' | 'insert' | 'update' | 'delete';
  /** Relations the rule's actions reference, "schema.name". */
  relations: string[];
}

/** A column of a table, view, materialized view, foreign table or composite type. */
export interface CatalogColumn {
  name: string;
  /** pg_attribute.attnum: 1-based; numbers of dropped columns are skipped, not reused. */
  attnum: number;
  /** pg_attribute.atttypid: the declared type, a domain's own oid for a domain column. */
  type: number;
  /** The type, or a domain's base type however many domains deep, is of the string category (pg_type.typcategory 'S'): text, varchar, char, name… */
  textLike: boolean;
  /** pg_attribute.atttypmod when the type has one: varchar(n) and char(n) hold n + 4, numeric(p, s) holds (p << 16 | s) + 4. */
  typmod?: number;
}

export interface ResourceCatalog {
  /** Date.now() when it was read. */
  fetchedAt: number;
  /** The role the agent logs in as (session_user of a fresh session). */
  sessionUser: string;
  /** search_path of a fresh session before any startup parameter (SHOW search_path). */
  searchPath: string;
  /** Every schema of the database. */
  schemas: string[];
  /** Every relation outside pg_catalog, information_schema and pg_toast, keyed "schema.name". */
  relations: Record<string, CatalogRelation>;
  /** Names of pg_catalog's relations: an unqualified name among them resolves there while pg_catalog leads search_path. */
  catalogRelations: string[];
  /** Names of the functions of pg_catalog and information_schema: a call of any other name not among `functions` is one the catalog does not know (yet). Absent in catalogs built before it. */
  catalogFunctions?: string[];
  /** Views and materialized views → the relations their definition reads ("schema.name"), one level deep. */
  viewReads: Record<string, string[]>;
  /** Views and materialized views → the functions outside pg_catalog their definition calls ("schema.name"). */
  viewCalls: Record<string, string[]>;
  /** Parent → direct inheritance children and partitions ("schema.name"). */
  children: Record<string, string[]>;
  foreignKeys: CatalogForeignKey[];
  triggers: CatalogTrigger[];
  rules: CatalogRule[];
  /** Functions and procedures outside pg_catalog and information_schema, keyed "schema.name" (overloads share a key). */
  functions: Record<string, CatalogFunction[]>;
  /**
   * Operators outside pg_catalog, keyed "schema.symbol" (overloads share a
   * key) → the functions outside pg_catalog they run. Operators that run a
   * pg_catalog function are left out: they reach nothing of the user's.
   */
  operators: Record<string, string[]>;
  /**
   * Table → the functions outside pg_catalog that writing it may run: column
   * defaults and generated columns, constraints (CHECK, and the operators of
   * foreign keys and exclusion constraints), the checks of domains its
   * columns have, index expressions, predicates and operator classes,
   * row-level-security policies, trigger WHEN conditions and rule actions,
   * also through user operators used there.
   */
  tableCalls: Record<string, string[]>;
  /** Table → the functions of tableCalls that reading it runs too: those of its SELECT and ALL policies. */
  tableReadCalls: Record<string, string[]>;
  /**
   * Tables, partitioned tables, views, materialized views, foreign tables and
   * composite types → their columns that are not dropped, in attnum order.
   * Every such relation of `relations` has an entry (empty without columns).
   */
  columns: Record<string, CatalogColumn[]>;
  /** pg_class oid → "schema.name", for the relations of `columns`: RowDescription names a result column's table by oid. */
  relationOids: Record<number, string>;
  /**
   * Views and materialized views → pg_get_viewdef() text, a SELECT read with
   * an empty search_path so that every object outside pg_catalog is
   * schema-qualified. A view dropped while the catalog was read has none.
   */
  viewDefinitions: Record<string, string>;
  /** Child → its direct parents (inheritance, partition of): the inverse of `children`. */
  parents: Record<string, string[]>;
}
