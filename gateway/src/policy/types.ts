// Public types of the statement classifier.

/** Access levels, lowest first. A statement's level is the highest of everything inside it. */
export type Access = 'read' | 'write' | 'ddl' | 'admin';

export const ACCESS_LEVELS: readonly Access[] = ['read', 'write', 'ddl', 'admin'];

const RANK: Record<Access, number> = { read: 0, write: 1, ddl: 2, admin: 3 };

/** Numeric rank of a level (read = 0 … admin = 3), for comparisons. */
export function accessRank(a: Access): number {
  return RANK[a];
}

/** The higher of two levels. */
export function maxAccess(a: Access, b: Access): Access {
  return RANK[a] >= RANK[b] ? a : b;
}

/** True when `level` is allowed for an identity whose ceiling is `ceiling`. */
export function accessAllows(ceiling: Access, level: Access): boolean {
  return RANK[level] <= RANK[ceiling];
}

/**
 * Something a statement touches. `table` means any relation: table, view,
 * materialized view, sequence, index or foreign table (the parser cannot tell
 * them apart). `other` covers types, extensions, languages, settings' owners…
 */
export interface ObjectRef {
  type: 'table' | 'schema' | 'function' | 'role' | 'database' | 'other';
  schema?: string;
  name: string;
  /**
   * Tables only: the statement changes the table's rows (it is the target of
   * INSERT, UPDATE, DELETE, MERGE, TRUNCATE or COPY FROM). Absent: it reads.
   */
  writes?: WriteKind[];
  /** Tables only: written with ONLY, so inheritance children and partitions are not reached. */
  only?: true;
  /** Functions only: named by DDL (CREATE, DROP, ALTER, COMMENT, GRANT…), not called: its code does not run now. */
  named?: true;
}

/** How a statement changes a table's rows; decides which foreign-key actions and triggers fire. */
export type WriteKind = 'insert' | 'update' | 'delete' | 'truncate' | 'truncate cascade';

/**
 * A change of search_path made by a statement: SET / SET LOCAL / RESET /
 * SET … TO DEFAULT, set_config('search_path', …) anywhere in it, RESET ALL,
 * DISCARD ALL. `value` is undefined when it is not a constant.
 */
export type PathChange = { op: 'set'; value: string | undefined; local: boolean } | { op: 'reset' };

export interface StatementInfo {
  access: Access;
  /** e.g. 'SELECT', 'INSERT', 'DROP TABLE', 'SET ROLE', 'COPY TO PROGRAM'. */
  kind: string;
  objects: ObjectRef[];
  /** Why the statement is above read when that is not obvious from `kind`. */
  reason?: string;
  /**
   * The statement changes (or may change) the session's identity: SET ROLE,
   * SET SESSION AUTHORIZATION, RESET ROLE, DISCARD ALL, set_config('role', …).
   * Always `admin`; the caller may refuse these even for admin identities.
   */
  escalation?: true;
  /** The configuration parameter named by SET / RESET / SHOW (lower-cased). */
  setting?: string;
  /**
   * Name of the SQL-level prepared statement for PREPARE / EXECUTE / DEALLOCATE,
   * so a caller that tracks PREPAREd levels per session can resolve EXECUTE.
   */
  preparedName?: string;
  /** search_path changes the statement makes, in the order they happen. */
  pathChanges?: PathChange[];
  /**
   * The statement reaches data that cannot be placed in a schema (large
   * objects, a table named by an expression, every schema at once…): a rule
   * with schema or table scopes refuses it, giving this reason.
   */
  unscoped?: string;
  /**
   * Names of the operators the statement uses, as written ("<<<",
   * "public.<<<"), including those implied (IN and CASE compare with =,
   * BETWEEN with >= and <=, LIKE is ~~): any of them may be a user's
   * operator, which runs a function. Absent when there are none.
   */
  operators?: string[];
  /** The statement's own text, cut from the query string. */
  text: string;
}

export type Classification =
  | {
      ok: true;
      statements: StatementInfo[];
      /** A decision read the value of a numeric constant, so texts differing only in numbers may classify differently. */
      readsNumbers?: true;
    }
  | { ok: false; error: string };
