// Handlers for transactions, SET / RESET / SHOW and DISCARD.
import { classifySetting, type SettingChange } from '../settings.js';
import type { PathChange } from '../types.js';
import { constant, constInt, constValue } from './constants.js';
import { quoteIdent } from './names.js';
import { isObj, list, str, type Obj } from './tree.js';
import type { Handler, Walk } from './walk.js';

/** BEGIN / START TRANSACTION / SET TRANSACTION / SET SESSION CHARACTERISTICS modes. */
function transactionModes(options: unknown, w: Walk, what: string): void {
  for (const opt of list(options)) {
    const d = isObj(opt) && isObj(opt.DefElem) ? opt.DefElem : undefined;
    const name = d ? str(d.defname) : undefined;
    if (name === 'transaction_read_only') {
      if (constInt(d!.arg, w.shared) !== 1) w.raise('write', `${what} READ WRITE lifts read-only mode`);
    } else if (name !== 'transaction_isolation' && name !== 'transaction_deferrable') {
      w.raise('admin', `unrecognised transaction option (${name ?? 'unknown'})`);
    }
  }
}

const TRANSACTION_KINDS: Record<string, string> = {
  TRANS_STMT_BEGIN: 'BEGIN',
  TRANS_STMT_START: 'START TRANSACTION',
  TRANS_STMT_COMMIT: 'COMMIT',
  TRANS_STMT_ROLLBACK: 'ROLLBACK',
  TRANS_STMT_SAVEPOINT: 'SAVEPOINT',
  TRANS_STMT_RELEASE: 'RELEASE',
  TRANS_STMT_ROLLBACK_TO: 'ROLLBACK TO SAVEPOINT',
  TRANS_STMT_PREPARE: 'PREPARE TRANSACTION',
  TRANS_STMT_COMMIT_PREPARED: 'COMMIT PREPARED',
  TRANS_STMT_ROLLBACK_PREPARED: 'ROLLBACK PREPARED',
};

export const transactionHandler: Handler = (n, w) => {
  const k = str(n.kind);
  const kind = k ? TRANSACTION_KINDS[k] : undefined;
  if (!kind) {
    w.raise('admin', `unrecognised transaction statement (${k ?? 'unknown'})`);
    return { kind: 'TRANSACTION', skip: true };
  }
  transactionModes(n.options, w, kind);
  if (k === 'TRANS_STMT_PREPARE' || k === 'TRANS_STMT_COMMIT_PREPARED' || k === 'TRANS_STMT_ROLLBACK_PREPARED') {
    // Two-phase commit keeps (or finishes) a transaction beyond this session.
    w.raise('write', `${kind} is two-phase commit, which outlives the session`);
  }
  return { kind, skip: true };
};

/** The value(s) of SET x = …, as text; undefined when any is not a constant. */
function settingValue(args: unknown, w: Walk): string | undefined {
  const values = list(args).map((a) => constValue(a, w.shared));
  if (values.length === 0 || values.some((v) => v === undefined)) return undefined;
  return values.join(',');
}

/**
 * search_path as Postgres stores it after SET search_path = a, "My S", 'q':
 * it is a list setting, so each element is kept as an identifier, quoted when
 * needed (flatten_set_variable_args); undefined when one is not a constant.
 */
function searchPathValue(args: unknown, w: Walk): string | undefined {
  const out: string[] = [];
  for (const a of list(args)) {
    const c = constant(a, w.shared);
    if (c === undefined) return undefined;
    out.push(c.kind === 'string' ? quoteIdent(c.value) : c.value);
  }
  return out.join(', ');
}

/** The change a top-level SET / RESET of search_path makes; none for SET … FROM CURRENT (a no-op). */
function pathChange(kind: string | undefined, n: Obj, w: Walk): PathChange | undefined {
  const local = n.is_local === true;
  switch (kind) {
    case 'VAR_SET_VALUE':
      return { op: 'set', value: searchPathValue(n.args, w), local };
    case 'VAR_SET_DEFAULT':
    case 'VAR_RESET':
      // SET LOCAL … TO DEFAULT lasts until the transaction ends, which a
      // reset (back to the session's starting value for good) cannot say:
      // report it as a local change to a value not known here.
      return local ? { op: 'set', value: undefined, local: true } : { op: 'reset' };
    default:
      return undefined;
  }
}

export const variableSetHandler: Handler = (n, w, top) => {
  const k = str(n.kind);
  const name = (str(n.name) ?? '').toLowerCase();
  if (k === 'VAR_RESET_ALL') {
    // Verified on PG 15: RESET ALL keeps the role but resets
    // default_transaction_read_only.
    w.raise('write', 'RESET ALL resets default_transaction_read_only, which lifts read-only mode');
    if (top) w.changePath({ op: 'reset' });
    return { kind: 'RESET ALL', skip: true };
  }
  if (k === 'VAR_SET_MULTI') {
    if (name === 'transaction') {
      transactionModes(n.args, w, 'SET TRANSACTION');
      return { kind: 'SET TRANSACTION', skip: true };
    }
    if (name === 'session characteristics') {
      transactionModes(n.args, w, 'SET SESSION CHARACTERISTICS AS TRANSACTION');
      return { kind: 'SET SESSION CHARACTERISTICS', skip: true };
    }
    if (name === 'transaction snapshot') return { kind: 'SET TRANSACTION SNAPSHOT', skip: true };
    w.raise('admin', `unrecognised SET form (${name})`);
    return { kind: 'SET', skip: true };
  }
  let change: SettingChange;
  switch (k) {
    case 'VAR_SET_VALUE':
      change = { op: 'set', value: settingValue(n.args, w) };
      break;
    case 'VAR_SET_DEFAULT':
    case 'VAR_RESET':
      change = { op: 'default' };
      break;
    case 'VAR_SET_CURRENT':
      change = { op: 'from-current' };
      break;
    default:
      w.raise('admin', `unrecognised SET form (${k ?? 'unknown'})`);
      return { kind: 'SET', skip: true };
  }
  const verdict = classifySetting(name, change);
  w.raise(verdict.level, verdict.reason);
  // Only a SET that runs now changes this session's identity; the same SET
  // inside ALTER ROLE … SET or CREATE FUNCTION … SET is still admin.
  if (verdict.escalation && top) w.escalate();
  // Likewise only a SET that runs now moves search_path (not CREATE
  // FUNCTION … SET, ALTER ROLE / DATABASE … SET).
  if (top && name === 'search_path') {
    const path = pathChange(k, n, w);
    if (path) w.changePath(path);
  }
  const reset = k === 'VAR_RESET';
  let kind = reset ? 'RESET' : 'SET';
  if (name === 'role') kind += ' ROLE';
  else if (name === 'session_authorization') kind += ' SESSION AUTHORIZATION';
  if ((name === 'role' || name === 'session_authorization') && change.op === 'set' && change.value !== undefined) {
    const role = change.value;
    if (role.toLowerCase() !== 'none') w.addObject({ type: 'role', name: role });
  }
  return { kind, skip: true, setting: name };
};

export const discardHandler: Handler = (n, w, top) => {
  const target = str(n.target);
  if (target === 'DISCARD_ALL') {
    // DISCARD ALL includes SET SESSION AUTHORIZATION DEFAULT (undoing SET
    // ROLE, verified on PG 15) and RESET ALL.
    w.raise('admin', 'DISCARD ALL resets the session user and role (and default_transaction_read_only)');
    if (top) {
      w.escalate();
      w.changePath({ op: 'reset' });
    }
    return { kind: 'DISCARD ALL', skip: true };
  }
  if (target === 'DISCARD_PLANS' || target === 'DISCARD_SEQUENCES' || target === 'DISCARD_TEMP') {
    return { kind: `DISCARD ${target.slice('DISCARD_'.length)}`, skip: true };
  }
  w.raise('admin', `unrecognised DISCARD (${target ?? 'unknown'})`);
  return { kind: 'DISCARD', skip: true };
};
