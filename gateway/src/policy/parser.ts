// Postgres' own parser (libpg_query compiled to wasm), loaded once when this
// module is first imported. The module uses a top-level await, so anything
// that imports it can call the synchronous parseStatements() straight away:
// the hot path never awaits.
import { loadModule, parseSync } from 'libpg-query';

await loadModule();

/** Every node of the raw parse tree is a plain JSON object. */
export type PgNode = Record<string, unknown>;

export interface ParsedStatement {
  /** Node type of the statement, e.g. 'SelectStmt', 'DropStmt'. */
  type: string;
  /** The node's fields (the object under the type key). */
  node: PgNode;
  /** The statement's text, cut from the input (trailing whitespace trimmed). */
  text: string;
  /** Offset of the statement in the input, in UTF-16 code units (JS string index). */
  location: number;
}

/** A statement that Postgres' parser rejects (or text that must not reach it). */
export class SqlParseError extends Error {
  /** 0-based character offset of the error in the input, when known. */
  readonly position?: number;
  constructor(message: string, position?: number) {
    super(message);
    this.name = 'SqlParseError';
    this.position = position;
  }
}

/** Counters, for tests and metrics: how many times the wasm parser ran. */
export const parserStats = { calls: 0 };

const ASCII_ONLY = /^[\x00-\x7f]*$/;

/**
 * Parses `sql` with Postgres' grammar and splits it into statements.
 * Throws SqlParseError when the text does not parse. Empty text, or text that
 * is only whitespace and comments, yields no statements.
 */
export function parseStatements(sql: string): ParsedStatement[] {
  if (typeof sql !== 'string') throw new SqlParseError('statement text is not a string');
  // The wasm parser reads a NUL-terminated C string: anything after a NUL
  // would be invisible to it while possibly reaching the server. Refuse.
  if (sql.includes('\0')) throw new SqlParseError('statement text contains a NUL character');
  if (sql.trim() === '') return [];

  parserStats.calls++;
  let result: { stmts?: Array<{ stmt?: unknown; stmt_location?: number; stmt_len?: number }> };
  try {
    result = parseSync(sql) as unknown as typeof result;
  } catch (err) {
    const e = err as { message?: string; sqlDetails?: { cursorPosition?: number } };
    const pos = e.sqlDetails?.cursorPosition;
    throw new SqlParseError(String(e.message ?? err), typeof pos === 'number' ? pos : undefined);
  }

  // stmt_location / stmt_len are byte offsets into the UTF-8 text.
  const ascii = ASCII_ONLY.test(sql);
  const bytes = ascii ? undefined : Buffer.from(sql, 'utf8');
  const out: ParsedStatement[] = [];
  // Byte → character offsets, advanced incrementally (statements come in order).
  let seenBytes = 0;
  let seenChars = 0;
  for (const raw of result.stmts ?? []) {
    const stmt = raw.stmt;
    if (!stmt || typeof stmt !== 'object') throw new SqlParseError('parser returned a statement without a tree');
    const keys = Object.keys(stmt);
    if (keys.length !== 1) throw new SqlParseError('parser returned an unexpected statement shape');
    const type = keys[0]!;
    const node = (stmt as PgNode)[type];
    if (!node || typeof node !== 'object') throw new SqlParseError('parser returned an unexpected statement shape');
    const start = raw.stmt_location ?? 0;
    const len = raw.stmt_len ?? 0; // 0 means "to the end of the input"
    let text: string;
    let location: number;
    if (bytes) {
      const end = len > 0 ? start + len : bytes.length;
      text = bytes.subarray(start, end).toString('utf8');
      if (start >= seenBytes) {
        seenChars += bytes.subarray(seenBytes, start).toString('utf8').length;
        seenBytes = start;
      } else {
        seenChars = bytes.subarray(0, start).toString('utf8').length;
        seenBytes = start;
      }
      location = seenChars;
    } else {
      text = len > 0 ? sql.slice(start, start + len) : sql.slice(start);
      location = start;
    }
    out.push({ type, node: node as PgNode, text: text.trimEnd(), location });
  }
  return out;
}
