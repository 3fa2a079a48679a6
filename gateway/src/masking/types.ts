// What masking works with: the masks a session is under (from the policy
// file), the plan one statement's results are masked by, and where a masked
// column's values flow in a statement (lineage).

/** How a value is replaced. */
export type MaskFunction =
  /** A fixed value: `text` for text-like columns; for other types a fixed value of the type (0, 1900-01-01, false, the nil uuid). */
  | { fn: 'redact'; text?: string }
  /** Keeps the last `keep` characters, the others replaced by `char` (default '*'): ************6467. Text-like columns only. */
  | { fn: 'partial'; keep: number; char?: string }
  /** Keyed HMAC-SHA-256 of the value: equal values mask equally, so joins and GROUP BY on the masked value still work. */
  | { fn: 'hash' }
  /** Keeps the domain: ****@example.com. Text-like columns only. */
  | { fn: 'email' }
  /** SQL NULL: valid for every type. */
  | { fn: 'null' };

export type DetectorKind = 'card' | 'email' | 'phone' | 'iban' | 'ssn' | 'regex';

/** A mask by column: `pattern` is "schema.table.column", each part a name or `*` (any), matched against stored (lower-case) names. */
export interface ColumnMask {
  pattern: string;
  mask: MaskFunction;
  /** The policy's mask entry it comes from, named in refusals and `policy check`. */
  rule: string;
}

/** A mask by content: every match in a text-like output value is replaced. */
export interface DetectorMask {
  detector: DetectorKind;
  /** `regex` only: a JavaScript regular expression (source, no flags; matched globally). */
  pattern?: string;
  mask: MaskFunction;
  rule: string;
}

/** Everything that masks one session's results, merged from the masks that apply to its identity and groups. */
export interface MaskSet {
  columns: ColumnMask[];
  detectors: DetectorMask[];
  /** Filters, joins, ORDER BY, GROUP BY, DISTINCT and set operations over a masked column: refused unless allowed. */
  predicates: 'refuse' | 'allow';
  /** When a mask cannot produce a valid value of the column's type: NULL instead, or refuse the statement. */
  onInvalid: 'null' | 'refuse';
  /** The deployment's HMAC key for `hash`. */
  key: Buffer;
}

/** A column of a relation, "schema.table.column" split. */
export interface ColumnRef {
  schema: string;
  table: string;
  column: string;
}

/**
 * Where the masked columns' values flow in one statement, found from its
 * parse tree (and the view definitions the catalog holds). Only columns for
 * which `isMasked` answered are reported.
 */
export interface Lineage {
  /**
   * The statement's result columns in order (SELECT list, RETURNING, the
   * query of COPY … TO, DECLARE CURSOR, CREATE … AS is not a result),
   * null when it returns no rows. For each: the masked columns whose value
   * it is, unchanged (`direct`: a plain reference through aliases,
   * subqueries, CTEs, views, UNION ALL branches, casts between text types),
   * and those it is computed from (`derived`: any expression, function,
   * aggregate, whole-row reference).
   */
  outputs: Array<{ direct: ColumnRef[]; derived: ColumnRef[] }> | null;
  /** Masked columns that decide which rows come back or their order: WHERE, JOIN, GROUP BY, HAVING, ORDER BY, DISTINCT, window clauses, set operations other than UNION ALL, LIMIT. */
  predicates: Array<{ column: ColumnRef; where: string }>;
  /** Masked columns whose values a write would copy into a table ("into" is "schema.table" or the new relation's name). */
  written: Array<{ column: ColumnRef; into: string }>;
  /** Uses that cannot be followed (a masked column passed to a user function, a cursor Warden has not seen…), each with its column and why. */
  opaque: Array<{ column: ColumnRef; why: string }>;
  /** COPY … TO: the format and options, to rewrite the CopyData rows. */
  copy?: CopyFormat;
  /** DECLARE name [BINARY] CURSOR: the cursor, whose FETCHes return `outputs`. */
  cursor?: { name: string; binary: boolean };
  /** FETCH / MOVE: the cursor whose rows it returns (its plan is the DECLARE's). */
  fetch?: { name: string; returnsRows: boolean };
}

/** COPY … TO's output format, from the statement's options. */
export interface CopyFormat {
  format: 'text' | 'csv' | 'binary';
  /** One byte; default tab (text) or comma (csv). */
  delimiter: string;
  /** default '\N' (text) or '' (csv). */
  null: string;
  /** csv only. */
  quote: string;
  escape: string;
  header: boolean;
}

/** How one output column of a result is masked. */
export interface ColumnPlan {
  mask: MaskFunction;
  /** The column's type oid (the stored column's, from the catalog), for the binary format and type-valid masks. */
  type: number;
  /** The type is of Postgres' string category (text, varchar, char, name, citext, …): text masks apply to it in either format. */
  textLike: boolean;
  /** The column's declared size (pg_attribute.atttypmod), when it has one: masked values are made to fit it. */
  typmod?: number;
  /** "schema.table.column" (the first masked source), for audit and messages. */
  column: string;
  rule: string;
}

/** How one statement's results are masked. */
export interface MaskPlan {
  /** By output position; null for columns passed through. Empty when no column is masked (detectors may still apply). */
  columns: Array<ColumnPlan | null>;
  /** Run the detectors over text-like values. */
  detect: boolean;
  /** COPY … TO: how its CopyData is laid out. */
  copy?: CopyFormat;
  /** FETCH from a BINARY cursor: every column in the binary format. */
  binary?: boolean;
  /** The statement reaches a table with masked columns: server messages' DETAIL / CONTEXT fields may echo values. */
  scrubMessages: boolean;
  /** "schema.table.column" of every masked output, for the audit event. */
  masked: string[];
  /** `policy check` without the database: tables with masked columns whose `*` it cannot expand (the gateway, with the catalog, masks them all the same). */
  unknown?: string[];
}
