// System relations: which describe structure only (open to every identity,
// so psql's \d, JDBC metadata and ORMs' introspection work under any scope)
// and which carry data or statistics about objects in any schema (refused,
// or limited, for rules with scopes). A maintained list with a reason each.
//
// Names are compared as Postgres stores them: "PG_STATS" is not pg_stats.
//
// Deliberately not listed as data:
// - pg_class (reltuples, relpages), pg_attribute, pg_index…: row-count
//   estimates and sizes are part of the structure that \d+ and ORMs read.
// - pg_statistic_ext: since PG 12 it holds only the definitions of extended
//   statistics (their values moved to pg_statistic_ext_data), and psql's \d
//   reads it for every table.
// - pg_largeobject_metadata: owners and privileges of large objects, not their
//   contents (psql's \lo_list reads it).
// - pg_roles, pg_user: password columns are masked there.

/** Schemas whose relations are the system catalogs. pg_toast is not one: its tables hold other tables' values. */
const SYSTEM_SCHEMAS: ReadonlySet<string> = new Set(['pg_catalog', 'information_schema']);

/** pg_catalog relations that carry data or statistics, with the reason. */
export const DATA_CATALOGS: Readonly<Record<string, string>> = {
  pg_statistic: "planner statistics: every column's most common values and histogram bounds",
  pg_statistic_ext_data: "extended statistics' values: most common combinations of column values",
  pg_stats: "every column's most common values and histogram bounds",
  pg_stats_ext: "extended statistics' most common combinations of column values",
  pg_stats_ext_exprs: "most common values of extended statistics' expressions",
  pg_sequences: "every sequence's last value",
  pg_largeobject: "the contents of large objects",
  pg_authid: "roles' password hashes",
  pg_shadow: "roles' password hashes",
  pg_user_mapping: "user mappings' options, passwords included",
  pg_user_mappings: "user mappings' options, passwords included",
  pg_subscription: "subscriptions' connection strings, which may hold passwords",
  pg_file_settings: "the server's configuration files, whose settings may hold passwords (primary_conninfo)",
  pg_prepared_xacts: "other sessions' prepared transactions",
  pg_replication_slots: "replication slots, through which every table's changes can be decoded",
  // pg_stat_statements' views live in the extension's schema; listed here
  // for a caller that has placed them (the pg_stat_ prefix covers them too).
  pg_stat_statements: "every session's statements, with the objects they name and their constants",
  pg_stat_statements_info: "statistics of every session's statements",
};

/** Prefixes of pg_catalog relations that carry statistics, checked after the exact names. */
export const DATA_CATALOG_PREFIXES: ReadonlyArray<readonly [string, string]> = [
  ['pg_stat_', "statistics and activity of every session: query texts, row, scan and tuple counts of every relation"],
  ['pg_statio_', 'block reads and hits of every relation'],
];

/** information_schema views that carry data. (The others show structure, filtered by privilege.) */
export const DATA_INFORMATION_SCHEMA: Readonly<Record<string, string>> = {
  // Shows option values, passwords included, for the current user's mappings:
  // through the gateway, every identity is the agent's one login role.
  user_mapping_options: "user mappings' options, passwords included",
  _pg_user_mappings: "user mappings' options, passwords included",
};

/** Whether `schema` holds the system catalogs (pg_catalog, information_schema). */
export function isSystemSchema(schema: string): boolean {
  return SYSTEM_SCHEMAS.has(schema);
}

const own = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

/**
 * Why the system relation `schema.name` carries data or statistics; undefined
 * when it only describes structure (or is not a system relation).
 */
export function dataCatalog(name: string, schema = 'pg_catalog'): string | undefined {
  if (schema === 'information_schema') return own(DATA_INFORMATION_SCHEMA, name) ? DATA_INFORMATION_SCHEMA[name] : undefined;
  if (schema !== 'pg_catalog') return undefined;
  if (own(DATA_CATALOGS, name)) return DATA_CATALOGS[name];
  for (const [prefix, reason] of DATA_CATALOG_PREFIXES) if (name.startsWith(prefix)) return reason;
  return undefined;
}
