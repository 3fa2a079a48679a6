// Classification of configuration parameters changed by SET / RESET /
// set_config(). Parameter names are case-insensitive in Postgres (even when
// quoted: SET "ROLE" = … is SET ROLE), so every name is lower-cased first.
import type { Access } from './types.js';

export interface SettingVerdict {
  level: Access;
  reason?: string;
  /** Changes the session's identity (role / session_authorization). */
  escalation?: true;
}

/** How the setting is being changed. */
export type SettingChange =
  | { op: 'set'; value: string | undefined } // value undefined: not a constant
  | { op: 'default' } // SET x TO DEFAULT, RESET x
  | { op: 'from-current' }; // SET x FROM CURRENT (function definitions)

/**
 * Session settings a client may change freely: they only affect how this
 * session formats, plans, times out or reports, never what it may touch.
 */
export const HARMLESS_SETTINGS: ReadonlySet<string> = new Set([
  'application_name',
  'search_path',
  'statement_timeout',
  'lock_timeout',
  'idle_in_transaction_session_timeout',
  'idle_session_timeout',
  'transaction_timeout',
  'datestyle',
  'intervalstyle',
  'timezone',
  'timezone_abbreviations',
  'extra_float_digits',
  'bytea_output',
  'xmlbinary',
  'xmloption',
  'client_min_messages',
  'lc_monetary',
  'lc_numeric',
  'lc_time',
  'default_text_search_config',
  'transaction_isolation',
  'default_transaction_isolation',
  'transaction_deferrable',
  'default_transaction_deferrable',
  'synchronous_commit',
  'work_mem',
  'maintenance_work_mem',
  'hash_mem_multiplier',
  'temp_buffers',
  'logical_decoding_work_mem',
  'effective_cache_size',
  'effective_io_concurrency',
  'maintenance_io_concurrency',
  'random_page_cost',
  'seq_page_cost',
  'cursor_tuple_fraction',
  'from_collapse_limit',
  'join_collapse_limit',
  'constraint_exclusion',
  'plan_cache_mode',
  'default_statistics_target',
  'max_parallel_workers_per_gather',
  'max_parallel_maintenance_workers',
  'min_parallel_table_scan_size',
  'min_parallel_index_scan_size',
  'recursive_worktable_factor',
  'array_nulls',
  'quote_all_identifiers',
  'transform_null_equals',
  'escape_string_warning',
  'check_function_bodies',
  'default_table_access_method',
  'default_toast_compression',
  'default_tablespace',
  'temp_tablespaces',
  'gin_fuzzy_search_limit',
  'gin_pending_list_limit',
  'row_security', // off makes queries on RLS tables fail, it never bypasses RLS
  'password_encryption',
  'exit_on_error',
  'vacuum_cost_delay',
  'vacuum_cost_limit',
  'vacuum_cost_page_hit',
  'vacuum_cost_page_miss',
  'vacuum_cost_page_dirty',
  'vacuum_freeze_min_age',
  'vacuum_freeze_table_age',
  'vacuum_multixact_freeze_min_age',
  'vacuum_multixact_freeze_table_age',
  'vacuum_failsafe_age',
  'vacuum_multixact_failsafe_age',
  'vacuum_buffer_usage_limit',
  'geqo',
  'enable_seqscan',
  'commit_siblings',
  'debug_parallel_query',
  'force_parallel_mode',
  'icu_validation_level',
  'jit',
  'jit_above_cost',
  'jit_inline_above_cost',
  'jit_optimize_above_cost',
  'trace_sort',
]);

/** Families of planner/cost knobs, all harmless. */
const HARMLESS_PREFIXES = ['enable_', 'geqo_', 'cpu_', 'parallel_'];

const READ_ONLY_SETTINGS = new Set(['transaction_read_only', 'default_transaction_read_only']);
const IDENTITY_SETTINGS = new Set(['role', 'session_authorization']);

const TRUE_WORDS = ['on', '1', 't', 'tr', 'tru', 'true', 'y', 'ye', 'yes'];
const FALSE_WORDS = ['off', 'of', '0', 'f', 'fa', 'fal', 'fals', 'false', 'n', 'no'];

/**
 * A boolean as Postgres' parse_bool reads it (unique prefixes of true, false,
 * yes, no; on, off; 1, 0; surrounding whitespace ignored); undefined when it
 * is not one.
 */
export function parseBool(value: string): boolean | undefined {
  const v = value.trim().toLowerCase();
  if (TRUE_WORDS.includes(v)) return true;
  if (FALSE_WORDS.includes(v)) return false;
  return undefined;
}

function isTrue(value: string): boolean {
  return parseBool(value) === true;
}

function isUtf8(value: string): boolean {
  const v = value.trim().toLowerCase().replace(/[^a-z0-9]/g, '');
  return v === 'utf8' || v === 'unicode';
}

/** Whether a setting is on the harmless list (name lower-cased by the caller). */
export function isHarmlessSetting(name: string): boolean {
  return HARMLESS_SETTINGS.has(name) || HARMLESS_PREFIXES.some((p) => name.startsWith(p));
}

/** The level needed to change `rawName` the way `change` says. */
export function classifySetting(rawName: string, change: SettingChange): SettingVerdict {
  const name = rawName.toLowerCase();

  if (IDENTITY_SETTINGS.has(name)) {
    return {
      level: 'admin',
      escalation: true,
      reason: name === 'role' ? 'changes the current role' : 'changes the session user',
    };
  }

  if (READ_ONLY_SETTINGS.has(name)) {
    // Turning read-only mode on (a constant true) restricts the session; any
    // other change (off, DEFAULT, RESET, a non-constant value) may lift it.
    if (change.op === 'set' && change.value !== undefined && isTrue(change.value)) return { level: 'read' };
    return { level: 'write', reason: `changes ${name}, which lifts read-only mode` };
  }

  if (name === 'client_encoding') {
    // The gateway decodes query text as UTF-8. Another client encoding would
    // let the server decode the same bytes into different SQL (e.g. SJIS/GBK
    // multibyte characters swallowing a backslash or quote): fail closed.
    if (change.op !== 'set' || (change.value !== undefined && isUtf8(change.value))) return { level: 'read' };
    return {
      level: 'admin',
      reason: 'a client_encoding other than UTF8 would let the server read different SQL than the gateway classified',
    };
  }

  if (name === 'standard_conforming_strings') {
    // The parser here assumes standard_conforming_strings = on; with it off the
    // server reads backslashes in '...' literals as escapes, so a literal could
    // end somewhere else than the gateway thinks and hide a statement.
    if (change.op !== 'set' || (change.value !== undefined && isTrue(change.value))) return { level: 'read' };
    return {
      level: 'admin',
      reason: 'standard_conforming_strings = off would let the server read different SQL than the gateway classified',
    };
  }

  if (name === 'session_replication_role') {
    return { level: 'admin', reason: 'session_replication_role disables triggers and foreign-key enforcement' };
  }

  // Returning a setting to its session default is harmless for everything not
  // handled above.
  if (change.op === 'default') return { level: 'read' };

  if (isHarmlessSetting(name)) return { level: 'read' };

  if (name.includes('.')) {
    return {
      level: 'admin',
      reason: `changes custom setting ${name}, which row-level security policies or application code may trust`,
    };
  }
  return { level: 'admin', reason: `changes setting ${name}, which is not on the list of harmless session settings` };
}
