// The maintained table of functions whose call matters to a decision: side
// effects (the access level a call needs, and why), relations or schemas
// named inside their arguments, and reach that no scope can place.
//
// Matching (see lookupFunction): on the function's own name, lower-cased,
// whatever schema qualifies it. So `nextval`, `pg_catalog.nextval`,
// `PG_CATALOG.NEXTVAL` and even the quoted "NEXTVAL" or `myschema.nextval` all
// match. A quoted or schema-qualified name may be a different, user-defined
// function, but treating it like the built-in one can only over-classify:
// fail closed. Extension functions (dblink, pageinspect, …) live in whatever
// schema the extension was installed in, which is another reason to ignore it.
//
// Functions not listed here are classified `read` and reach nothing but their
// arguments. A user-defined function can do anything its body does and the
// classifier cannot see the body (it lives in the database): the functions a
// statement calls are listed in StatementInfo.objects so a caller that reads
// the catalog can follow them.
import type { Access } from './types.js';

export interface FunctionRule {
  level: Access;
  /** A verb phrase: reported as "calls <name>, which <reason>". */
  reason: string;
  /**
   * Level depends on the arguments, decided by the classifier:
   * - 'set_config': the setting named by the first argument (see settings.ts);
   * - 'lo_open': write when the mode argument asks for INV_WRITE (or is not a constant);
   * - 'sql_text': the function runs SQL text given in the arguments listed in
   *   `sqlArgs`; constant text is classified like a statement (its objects
   *   become the statement's), anything else gets `level` and is unscoped.
   */
  special?: 'set_config' | 'lo_open' | 'sql_text';
  /** For 'sql_text': 0-based indexes of the arguments holding SQL text. */
  sqlArgs?: readonly number[];
  /** For 'sql_text': the rule applies only to calls with this many arguments (overloads). */
  argCount?: number;
  /**
   * 0-based index of an argument naming a relation (a regclass literal such
   * as 'sch."My T"', or text parsed the same way): a constant becomes a table
   * object; an expression or an oid makes the statement unscoped.
   */
  relationArg?: number;
  /** 0-based index of an argument naming a schema (type name: taken verbatim), handled like relationArg. */
  schemaArg?: number;
  /** What the call does with the relation or schema named there, for messages ("reads a table"). */
  reaches?: string;
  /** Parameter names, so that relationArg, schemaArg and sqlArgs are found in named notation (tbl => …). */
  argNames?: readonly string[];
  /**
   * The call reaches what no schema or table scope can place (large objects,
   * every schema, relations named by oid inside the server…). A verb phrase:
   * reported as "<name> <unscoped>".
   */
  unscoped?: string;
  /** The call runs SQL of its arguments out of Warden's sight (on another connection, or later): what it does is unknown. */
  runsSql?: true;
}

const R = (reason: string, extra: Partial<FunctionRule> = {}): FunctionRule => ({ level: 'read', reason, ...extra });
const W = (reason: string, extra: Partial<FunctionRule> = {}): FunctionRule => ({ level: 'write', reason, ...extra });
const A = (reason: string, extra: Partial<FunctionRule> = {}): FunctionRule => ({ level: 'admin', reason, ...extra });

const SERVER_FILE = 'reads or lists files on the database server';
const SIGNAL = 'signals another server process';
const REPLICATION = 'manages replication / WAL, server-wide';
const STATS_RESET = 'resets server statistics';
const SQL_TEXT = 'runs SQL text that the gateway cannot see';
const SCOPES = "which cannot be checked against the rule's scopes";
const LARGE_OBJECT_READ = 'reads large objects, which belong to no schema';
const LARGE_OBJECT_WRITE = 'changes large objects, which belong to no schema';
// The table files themselves are server files.
const FILE_DATA = `reads files on the database server, where every schema's data is stored, ${SCOPES}`;
const XML_ARGS = ['nulls', 'tableforest', 'targetns'] as const;

/** An extension function that needs admin; `reach`: what it reads or changes, when that is data no scope can place. */
function ext(extension: string, reason: string, reach?: string): FunctionRule {
  const rule = A(`${reason} (${extension})`);
  if (reach) rule.unscoped = `${reach} (${extension}), ${SCOPES}`;
  return rule;
}
const PAGEINSPECT = (what: string) =>
  ext('pageinspect', `decodes ${what} of tables and indexes, bypassing privileges`, 'reads raw pages of relations named by text or oid');
const PGSTATTUPLE = ext('pgstattuple', 'reads every page of a relation named by text or oid', 'reads statistics of relations named by text or oid');
const PG_VISIBILITY = ext('pg_visibility', "reads a relation's visibility map", 'reads visibility data of relations named by oid');
const AMCHECK = ext('amcheck', "reads every page of a relation to check it, which needs superuser or a grant of it");
const WALINSPECT = ext('pg_walinspect', 'reads the write-ahead log', "reads the write-ahead log, which holds every table's changes");

/** Exact names (lower case). */
const EXACT: Record<string, FunctionRule> = {
  // --- sequences
  nextval: W('changes a sequence', { relationArg: 0, reaches: 'changes a sequence' }),
  setval: W('changes a sequence', { relationArg: 0, reaches: 'changes a sequence' }),
  // Not session-local like currval: the value other sessions' nextval left.
  pg_sequence_last_value: R("reads a sequence's last value", { relationArg: 0, reaches: 'reads a sequence' }),
  // pg_dump's reader (PG 18), same reach.
  pg_get_sequence_data: R("reads a sequence's last value", { relationArg: 0, reaches: 'reads a sequence' }),

  // --- notifications
  pg_notify: W('sends a notification to other sessions'),

  // --- settings: level decided by the setting's name
  set_config: { level: 'admin', reason: 'changes a setting', special: 'set_config' },

  // --- large objects (server-side functions). Large objects live outside
  // every schema, so any that reaches an existing one is unscoped; creating
  // a new one reaches nothing.
  lo_create: W('creates a large object'),
  lo_creat: W('creates a large object'),
  lo_from_bytea: W('creates a large object'),
  lo_get: R('reads a large object', { unscoped: LARGE_OBJECT_READ }),
  loread: R('reads a large object', { unscoped: LARGE_OBJECT_READ }),
  lo_put: W('writes a large object', { unscoped: LARGE_OBJECT_WRITE }),
  lowrite: W('writes a large object', { unscoped: LARGE_OBJECT_WRITE }),
  lo_truncate: W('truncates a large object', { unscoped: LARGE_OBJECT_WRITE }),
  lo_truncate64: W('truncates a large object', { unscoped: LARGE_OBJECT_WRITE }),
  lo_unlink: W('deletes a large object', { unscoped: LARGE_OBJECT_WRITE }),
  // Unscoped in any mode: reading one is reaching it.
  lo_open: { level: 'write', reason: 'opens a large object for writing', special: 'lo_open', unscoped: LARGE_OBJECT_READ },
  lo_import: A('reads a file on the database server', { unscoped: FILE_DATA }),
  lo_export: A('writes a file on the database server', { unscoped: LARGE_OBJECT_READ }),

  // --- server files (core and adminpack)
  pg_read_file: A(SERVER_FILE, { unscoped: FILE_DATA }),
  pg_read_file_old: A(SERVER_FILE, { unscoped: FILE_DATA }),
  pg_read_binary_file: A(SERVER_FILE, { unscoped: FILE_DATA }),
  pg_stat_file: A(SERVER_FILE),
  pg_ls_dir: A(SERVER_FILE),
  pg_file_write: A('writes a file on the database server'),
  pg_file_rename: A('renames a file on the database server'),
  pg_file_unlink: A('deletes a file on the database server'),
  pg_file_sync: A('syncs a file on the database server'),
  pg_logdir_ls: A(SERVER_FILE),

  // --- other sessions / the server process
  pg_terminate_backend: A(SIGNAL),
  pg_cancel_backend: A(SIGNAL),
  pg_signal_backend: A(SIGNAL),
  pg_reload_conf: A('reloads the server configuration'),
  pg_rotate_logfile: A('rotates the server log'),
  pg_rotate_logfile_old: A('rotates the server log'),
  pg_log_backend_memory_contexts: A('makes another process write to the server log'),
  pg_import_system_collations: A('adds collations to the catalog'),
  pg_stat_statements_reset: A(STATS_RESET),
  pg_stat_statements: R("reads every session's statements (pg_stat_statements)", {
    unscoped: `reads other sessions' statements, which name any schema's objects and carry their constants, ${SCOPES}`,
  }),
  pg_nextoid: A('is a binary-upgrade support function'),
  pg_stop_making_pinned_objects: A('is an initdb support function'),
  pg_extension_config_dump: { level: 'ddl', reason: 'changes an extension\'s catalog entry' },

  // --- index maintenance (like VACUUM / REINDEX)
  brin_summarize_range: A('does index maintenance'),
  brin_summarize_new_values: A('does index maintenance'),
  brin_desummarize_range: A('does index maintenance'),
  gin_clean_pending_list: A('does index maintenance'),

  // --- WAL, backups, recovery, replication
  pg_switch_wal: A(REPLICATION),
  pg_switch_xlog: A(REPLICATION),
  pg_promote: A('promotes a standby server'),
  pg_wal_replay_pause: A(REPLICATION),
  pg_wal_replay_resume: A(REPLICATION),
  pg_xlog_replay_pause: A(REPLICATION),
  pg_xlog_replay_resume: A(REPLICATION),
  pg_create_restore_point: A(REPLICATION),
  pg_backup_start: A(REPLICATION),
  pg_backup_stop: A(REPLICATION),
  pg_start_backup: A(REPLICATION),
  pg_stop_backup: A(REPLICATION),
  pg_drop_replication_slot: A(REPLICATION),
  pg_replication_slot_advance: A(REPLICATION),
  pg_logical_slot_get_changes: A(REPLICATION),
  pg_logical_slot_get_binary_changes: A(REPLICATION),
  pg_logical_slot_peek_changes: A(REPLICATION),
  pg_logical_slot_peek_binary_changes: A(REPLICATION),
  pg_logical_emit_message: A('writes a message into the WAL'),
  pg_sync_replication_slots: A(REPLICATION),

  // --- planner statistics written by hand (PG 18)
  pg_restore_relation_stats: A('overwrites planner statistics'),
  pg_clear_relation_stats: A('overwrites planner statistics'),
  pg_restore_attribute_stats: A('overwrites planner statistics'),
  pg_clear_attribute_stats: A('overwrites planner statistics'),
  pg_truncate_visibility_map: A('truncates a visibility map'),

  // --- functions that reach relations or schemas named in their arguments
  table_to_xml: R('reads a table as XML', { relationArg: 0, argNames: ['tbl', ...XML_ARGS] }),
  table_to_xmlschema: R("describes a table's rows as an XML schema", { relationArg: 0, argNames: ['tbl', ...XML_ARGS] }),
  table_to_xml_and_xmlschema: R('reads a table as XML', { relationArg: 0, argNames: ['tbl', ...XML_ARGS] }),
  schema_to_xml: R("reads a schema's tables as XML", { schemaArg: 0, argNames: ['schema', ...XML_ARGS] }),
  schema_to_xmlschema: R("describes a schema's tables as an XML schema", { schemaArg: 0, argNames: ['schema', ...XML_ARGS] }),
  schema_to_xml_and_xmlschema: R("reads a schema's tables as XML", { schemaArg: 0, argNames: ['schema', ...XML_ARGS] }),
  database_to_xml: R('reads every table of the database as XML', { unscoped: `reads every schema of the database, ${SCOPES}` }),
  database_to_xmlschema: R('describes every table of the database as an XML schema', { unscoped: `reads every schema of the database, ${SCOPES}` }),
  database_to_xml_and_xmlschema: R('reads every table of the database as XML', { unscoped: `reads every schema of the database, ${SCOPES}` }),
  // The cursor's query was classified when it was declared.
  cursor_to_xml: R('reads from an open cursor'),
  cursor_to_xmlschema: R('describes an open cursor'),

  // --- functions that execute SQL given as text
  query_to_xml: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [0], argNames: ['query', ...XML_ARGS] }),
  query_to_xmlschema: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [0], argNames: ['query', ...XML_ARGS] }),
  query_to_xml_and_xmlschema: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [0], argNames: ['query', ...XML_ARGS] }),
  ts_stat: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [0], argNames: ['query', 'weights'] }),
  // ts_rewrite(query, 'SELECT …'): the two-argument form runs its second argument.
  ts_rewrite: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [1], argCount: 2 }),
  crosstab: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [0, 1] }),
  crosstab2: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [0] }),
  crosstab3: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [0] }),
  crosstab4: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [0] }),
  // xpath_table assembles a query from several text arguments (including a
  // WHERE clause): not worth modelling.
  xpath_table: A('builds and runs SQL from its text arguments', { unscoped: `reads a table named in its text arguments, ${SCOPES}` }),
  query_export_to_s3: A('exports the result of SQL text to S3'),
  table_import_from_s3: A('imports S3 data into a table'),

  // --- extensions that read or change relations by name or oid, below
  // privileges, or that need superuser
  get_raw_page: PAGEINSPECT('raw pages'),
  page_header: PAGEINSPECT('page headers'),
  heap_page_items: PAGEINSPECT('heap pages'),
  heap_page_item_attrs: PAGEINSPECT('heap pages'),
  tuple_data_split: PAGEINSPECT('heap tuples'),
  bt_metap: PAGEINSPECT('B-tree index pages'),
  bt_page_stats: PAGEINSPECT('B-tree index pages'),
  bt_page_items: PAGEINSPECT('B-tree index pages'),
  bt_multi_page_stats: PAGEINSPECT('B-tree index pages'),
  brin_page_type: PAGEINSPECT('BRIN index pages'),
  brin_metapage_info: PAGEINSPECT('BRIN index pages'),
  brin_revmap_data: PAGEINSPECT('BRIN index pages'),
  brin_page_items: PAGEINSPECT('BRIN index pages'),
  gin_metapage_info: PAGEINSPECT('GIN index pages'),
  gin_page_opaque_info: PAGEINSPECT('GIN index pages'),
  gin_leafpage_items: PAGEINSPECT('GIN index pages'),
  gist_page_opaque_info: PAGEINSPECT('GiST index pages'),
  gist_page_items: PAGEINSPECT('GiST index pages'),
  gist_page_items_bytea: PAGEINSPECT('GiST index pages'),
  hash_page_type: PAGEINSPECT('hash index pages'),
  hash_page_stats: PAGEINSPECT('hash index pages'),
  hash_page_items: PAGEINSPECT('hash index pages'),
  hash_bitmap_info: PAGEINSPECT('hash index pages'),
  hash_metapage_info: PAGEINSPECT('hash index pages'),
  fsm_page_contents: PAGEINSPECT('free space map pages'),
  page_checksum: PAGEINSPECT('page checksums'),
  heap_force_kill: ext('pg_surgery', 'changes table rows in place, bypassing privileges, triggers and checks', 'changes rows of a table named by oid'),
  heap_force_freeze: ext('pg_surgery', 'changes table rows in place, bypassing privileges, triggers and checks', 'changes rows of a table named by oid'),
  connectby: ext('tablefunc', 'reads a table named in its text arguments', 'reads a table named in its text arguments'),
  pgstattuple: PGSTATTUPLE,
  pgstattuple_approx: PGSTATTUPLE,
  pgstatindex: PGSTATTUPLE,
  pgstatginindex: PGSTATTUPLE,
  pgstathashindex: PGSTATTUPLE,
  pg_relpages: PGSTATTUPLE,
  pg_visibility_map: PG_VISIBILITY,
  pg_visibility: PG_VISIBILITY,
  pg_visibility_map_summary: PG_VISIBILITY,
  pg_check_frozen: PG_VISIBILITY,
  pg_check_visible: PG_VISIBILITY,
  pg_prewarm: ext('pg_prewarm', 'loads relations into the buffer cache, server-wide'),
  bt_index_check: AMCHECK,
  bt_index_parent_check: AMCHECK,
  verify_heapam: AMCHECK,
  gin_index_check: AMCHECK,
  pgrowlocks: ext('pgrowlocks', "reads a table's row locks and who holds them", 'reads row locks of a table named by text'),
  pg_freespace: ext('pg_freespace', "reads a relation's free space map", 'reads free space of relations named by oid'),
  // pg_walinspect, listed by name: core has pg_get_wal_* functions too
  // (pg_get_wal_replay_pause_state, pg_get_wal_resource_managers…).
  pg_get_wal_record_info: WALINSPECT,
  pg_get_wal_records_info: WALINSPECT,
  pg_get_wal_records_info_till_end_of_wal: WALINSPECT,
  pg_get_wal_stats: WALINSPECT,
  pg_get_wal_stats_till_end_of_wal: WALINSPECT,
  pg_get_wal_block_info: WALINSPECT,

  // --- network egress from the server (pgsql-http, pg_net)
  http: A('makes an HTTP request from the database server'),
  http_get: A('makes an HTTP request from the database server'),
  http_post: A('makes an HTTP request from the database server'),
  http_put: A('makes an HTTP request from the database server'),
  http_patch: A('makes an HTTP request from the database server'),
  http_delete: A('makes an HTTP request from the database server'),
  http_head: A('makes an HTTP request from the database server'),
};

/**
 * Rules that apply only to a schema-qualified name, for extension functions
 * whose bare names are too generic to match everywhere (pg_cron's
 * `cron.schedule`). Key: 'schema.name', lower case.
 */
const QUALIFIED: Record<string, FunctionRule> = {
  'cron.schedule': A('schedules SQL to run later (pg_cron)', { runsSql: true }),
  'cron.schedule_in_database': A('schedules SQL to run later (pg_cron)', { runsSql: true }),
  'cron.alter_job': A('changes a pg_cron job'),
  'cron.unschedule': A('changes a pg_cron job'),
};

/** Prefixes (lower case), checked in order after the exact names. */
const PREFIXES: ReadonlyArray<readonly [string, FunctionRule]> = [
  ['pg_advisory_', W('takes or releases an advisory lock')],
  ['pg_try_advisory_', W('takes an advisory lock')],
  ['dblink', A('opens connections to, and runs SQL on, other servers', { unscoped: `runs SQL on other servers and databases, ${SCOPES}`, runsSql: true })],
  // Statistics by oid (pg_stat_get_numscans(oid)…) and other sessions' activity (pg_stat_get_activity).
  [
    'pg_stat_get_',
    R('reads server statistics', { unscoped: `reads statistics of relations and sessions named by oid or number, ${SCOPES}` }),
  ],
  ['autoprewarm_', ext('pg_prewarm', 'starts or runs the autoprewarm worker, server-wide')],
  ['pg_buffercache', ext('pg_buffercache', "reads or evicts the shared buffer cache of every database", 'reads buffer counts of every relation')],
  ['pg_ls_', A(SERVER_FILE)],
  ['pg_stat_reset', A(STATS_RESET)],
  ['pg_replication_origin_', A(REPLICATION)],
  ['pg_create_', A(REPLICATION)], // pg_create_{physical,logical}_replication_slot, pg_create_restore_point
  ['pg_copy_', A(REPLICATION)], // pg_copy_{physical,logical}_replication_slot
  ['binary_upgrade_', A('is a binary-upgrade support function')],
  ['pg_background_', A('runs SQL in a background worker')],
];

/** The tables, for documentation and tests (they hold reads with reach as well as side effects). */
export const SIDE_EFFECT_FUNCTIONS: Readonly<Record<string, FunctionRule>> = EXACT;
export const SIDE_EFFECT_QUALIFIED_FUNCTIONS: Readonly<Record<string, FunctionRule>> = QUALIFIED;
export const SIDE_EFFECT_FUNCTION_PREFIXES = PREFIXES;

/**
 * Looks up a function by its unqualified name (any case), whatever its
 * schema; `schema` (the qualifier written in the call, if any) is only used
 * for the few schema-specific rules. Returns undefined for functions without
 * a known side effect.
 */
export function lookupFunction(name: string, schema?: string): FunctionRule | undefined {
  const n = name.toLowerCase();
  if (schema !== undefined) {
    const key = `${schema.toLowerCase()}.${n}`;
    if (Object.prototype.hasOwnProperty.call(QUALIFIED, key)) return QUALIFIED[key];
  }
  const exact = Object.prototype.hasOwnProperty.call(EXACT, n) ? EXACT[n] : undefined;
  if (exact) return exact;
  for (const [prefix, rule] of PREFIXES) if (n.startsWith(prefix)) return rule;
  return undefined;
}
