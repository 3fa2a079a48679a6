// The maintained table of functions whose call has a side effect, mapping a
// function name to the access level a call needs and the reason.
//
// Matching (see lookupFunction): on the function's own name, lower-cased,
// whatever schema qualifies it. So `nextval`, `pg_catalog.nextval`,
// `PG_CATALOG.NEXTVAL` and even the quoted "NEXTVAL" or `myschema.nextval` all
// match. A quoted or schema-qualified name may be a different, user-defined
// function, but treating it like the built-in one can only over-classify:
// fail closed. Extension functions (dblink, adminpack, …) live in whatever
// schema the extension was installed in, which is another reason to ignore it.
//
// Functions not listed here are classified `read`. A user-defined function can
// do anything its body does and the classifier cannot see the body (it lives
// in the database): identities that must not write should also run under a
// database role without write privileges / in read-only transactions. The
// functions a statement calls are listed in StatementInfo.objects so a caller
// can apply its own allow- or deny-list.
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
   *   `sqlArgs`; constant text is classified like a statement, anything else
   *   gets `level`.
   */
  special?: 'set_config' | 'lo_open' | 'sql_text';
  /** For 'sql_text': 0-based indexes of the arguments holding SQL text. */
  sqlArgs?: readonly number[];
  /** For 'sql_text': the rule applies only to calls with this many arguments (overloads). */
  argCount?: number;
  /** Index of an argument naming a sequence (regclass literal), reported as an object. */
  sequenceArg?: number;
}

const W = (reason: string, extra: Partial<FunctionRule> = {}): FunctionRule => ({ level: 'write', reason, ...extra });
const A = (reason: string, extra: Partial<FunctionRule> = {}): FunctionRule => ({ level: 'admin', reason, ...extra });

const SERVER_FILE = 'reads or lists files on the database server';
const SIGNAL = 'signals another server process';
const REPLICATION = 'manages replication / WAL, server-wide';
const STATS_RESET = 'resets server statistics';
const SQL_TEXT = 'runs SQL text that the gateway cannot see';

/** Exact names (lower case). */
const EXACT: Record<string, FunctionRule> = {
  // --- sequences
  nextval: W('changes a sequence', { sequenceArg: 0 }),
  setval: W('changes a sequence', { sequenceArg: 0 }),

  // --- notifications
  pg_notify: W('sends a notification to other sessions'),

  // --- settings: level decided by the setting's name
  set_config: { level: 'admin', reason: 'changes a setting', special: 'set_config' },

  // --- large objects (server-side functions)
  lo_create: W('creates a large object'),
  lo_creat: W('creates a large object'),
  lo_from_bytea: W('creates a large object'),
  lo_put: W('writes a large object'),
  lowrite: W('writes a large object'),
  lo_truncate: W('truncates a large object'),
  lo_truncate64: W('truncates a large object'),
  lo_unlink: W('deletes a large object'),
  lo_open: { level: 'write', reason: 'opens a large object for writing', special: 'lo_open' },
  lo_import: A('reads a file on the database server'),
  lo_export: A('writes a file on the database server'),

  // --- server files (core and adminpack)
  pg_read_file: A(SERVER_FILE),
  pg_read_file_old: A(SERVER_FILE),
  pg_read_binary_file: A(SERVER_FILE),
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

  // --- functions that execute SQL given as text
  query_to_xml: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [0] }),
  query_to_xmlschema: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [0] }),
  query_to_xml_and_xmlschema: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [0] }),
  ts_stat: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [0] }),
  // ts_rewrite(query, 'SELECT …'): the two-argument form runs its second argument.
  ts_rewrite: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [1], argCount: 2 }),
  crosstab: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [0, 1] }),
  crosstab2: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [0] }),
  crosstab3: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [0] }),
  crosstab4: A(SQL_TEXT, { special: 'sql_text', sqlArgs: [0] }),
  // xpath_table assembles a query from several text arguments (including a
  // WHERE clause): not worth modelling.
  xpath_table: A('builds and runs SQL from its text arguments'),
  query_export_to_s3: A('exports the result of SQL text to S3'),
  table_import_from_s3: A('imports S3 data into a table'),

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
  'cron.schedule': A('schedules SQL to run later (pg_cron)'),
  'cron.schedule_in_database': A('schedules SQL to run later (pg_cron)'),
  'cron.alter_job': A('changes a pg_cron job'),
  'cron.unschedule': A('changes a pg_cron job'),
};

/** Prefixes (lower case), checked in order after the exact names. */
const PREFIXES: ReadonlyArray<readonly [string, FunctionRule]> = [
  ['pg_advisory_', W('takes or releases an advisory lock')],
  ['pg_try_advisory_', W('takes an advisory lock')],
  ['dblink', A('opens connections to, and runs SQL on, other servers')],
  ['pg_ls_', A(SERVER_FILE)],
  ['pg_stat_reset', A(STATS_RESET)],
  ['pg_replication_origin_', A(REPLICATION)],
  ['pg_create_', A(REPLICATION)], // pg_create_{physical,logical}_replication_slot, pg_create_restore_point
  ['pg_copy_', A(REPLICATION)], // pg_copy_{physical,logical}_replication_slot
  ['binary_upgrade_', A('is a binary-upgrade support function')],
  ['pg_background_', A('runs SQL in a background worker')],
];

/** The tables, for documentation and tests. */
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
