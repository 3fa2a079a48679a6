// The shape of a statement: its text with plain integer literals replaced by a
// marker, so that `WHERE aid = 17` and `WHERE aid = 42` share one cache entry
// (pgbench and ORMs that inline numbers would otherwise parse every statement).
//
// Only what Postgres' lexer (standard_conforming_strings on, as libpg-query
// parses) certainly reads as an integer token is replaced: digits not inside a
// string, quoted identifier, comment or dollar quote, not part of an
// identifier or parameter ($1), and not touching '.', letters or '_' (which
// would make a decimal, a real, 0x…, 1_000 or trailing junk). Two texts with
// the same shape therefore have the same tokens but for integer values.

/** Cannot occur in a Query or Parse string, which are NUL-terminated. */
const MARK = '\u0000';

const DIGIT = 1;
const IDENT_START = 2;
const IDENT_CONT = 4;
const CLASS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (ch >= '0' && ch <= '9') CLASS[c] = DIGIT | IDENT_CONT;
  else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch === '_') CLASS[c] = IDENT_START | IDENT_CONT;
  else if (ch === '$') CLASS[c] = IDENT_CONT;
}
const is = (code: number, cls: number) => (code >= 128 ? (cls & (IDENT_START | IDENT_CONT)) !== 0 : (CLASS[code]! & cls) !== 0);

/** The statement's shape, or null when it has no replaceable integer (or cannot be scanned with certainty). */
export function statementShape(sql: string): string | null {
  const n = sql.length;
  let out = '';
  let copied = 0;
  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === 0x27 /* ' */) {
      i = skipQuoted(sql, i + 1, 0x27, false);
    } else if (c === 0x22 /* " */) {
      i = skipQuoted(sql, i + 1, 0x22, false);
    } else if (c === 0x2d /* - */ && sql.charCodeAt(i + 1) === 0x2d) {
      const eol = sql.indexOf('\n', i);
      i = eol < 0 ? n : eol + 1;
    } else if (c === 0x2f /* / */ && sql.charCodeAt(i + 1) === 0x2a /* * */) {
      i = skipBlockComment(sql, i + 2);
    } else if (c === 0x24 /* $ */) {
      i = skipDollar(sql, i);
    } else if (is(c, IDENT_START)) {
      // E'…' strings take backslash escapes; other prefixes (B, X, N, U&) do not.
      if ((c === 0x45 || c === 0x65) && sql.charCodeAt(i + 1) === 0x27) {
        i = skipQuoted(sql, i + 2, 0x27, true);
        continue;
      }
      i++;
      while (i < n && is(sql.charCodeAt(i), IDENT_CONT)) i++;
    } else if (c >= 0x30 && c <= 0x39) {
      const start = i;
      while (i < n && is(sql.charCodeAt(i), DIGIT)) i++;
      const next = i < n ? sql.charCodeAt(i) : 0x20;
      const before = start > 0 ? sql.charCodeAt(start - 1) : 0x20;
      if (next !== 0x2e /* . */ && !is(next, IDENT_CONT) && before !== 0x2e) {
        out += sql.slice(copied, start) + MARK;
        copied = i;
      } else {
        i = skipNumberTail(sql, i);
      }
    } else {
      i++;
    }
    if (i < 0) return null;
  }
  if (copied === 0) return null;
  return out + sql.slice(copied);
}

/** The rest of a number left as it is (1.5, 1e-3, 0x1F, 1_000): its digits are not integers of their own. */
function skipNumberTail(sql: string, i: number): number {
  const n = sql.length;
  while (i < n) {
    const c = sql.charCodeAt(i);
    const afterExponent = (c === 0x2b || c === 0x2d) && (sql.charCodeAt(i - 1) | 0x20) === 0x65; /* e+ e- */
    if (c === 0x2e || afterExponent || (c < 128 && is(c, IDENT_CONT) && c !== 0x24)) i++;
    else break;
  }
  return i;
}

/** Index after the closing quote; -1 when the text ends inside the literal. */
function skipQuoted(sql: string, i: number, quote: number, backslashes: boolean): number {
  const n = sql.length;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (backslashes && c === 0x5c /* \ */) {
      i += 2;
    } else if (c === quote) {
      if (sql.charCodeAt(i + 1) !== quote) return i + 1;
      i += 2;
    } else {
      i++;
    }
  }
  return -1;
}

/** Block comments nest in Postgres. */
function skipBlockComment(sql: string, i: number): number {
  let depth = 1;
  const n = sql.length;
  while (i < n) {
    if (sql.charCodeAt(i) === 0x2a && sql.charCodeAt(i + 1) === 0x2f) {
      i += 2;
      if (--depth === 0) return i;
    } else if (sql.charCodeAt(i) === 0x2f && sql.charCodeAt(i + 1) === 0x2a) {
      i += 2;
      depth++;
    } else {
      i++;
    }
  }
  return -1;
}

/** A parameter ($1) or a dollar-quoted string ($$…$$, $tag$…$tag$); a lone '$' is one character. */
function skipDollar(sql: string, i: number): number {
  const n = sql.length;
  let j = i + 1;
  if (j < n && is(sql.charCodeAt(j), DIGIT)) {
    while (j < n && is(sql.charCodeAt(j), DIGIT)) j++;
    return j;
  }
  if (j < n && is(sql.charCodeAt(j), IDENT_START)) {
    j++;
    while (j < n && is(sql.charCodeAt(j), IDENT_CONT) && sql.charCodeAt(j) !== 0x24) j++;
  }
  if (sql.charCodeAt(j) !== 0x24) return i + 1;
  const tag = sql.slice(i, j + 1);
  const end = sql.indexOf(tag, j + 1);
  return end < 0 ? -1 : end + tag.length;
}
