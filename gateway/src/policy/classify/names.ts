// Names written inside strings: regclass literals, search_path lists.
import type { ObjectRef } from '../types.js';

const NAME_BYTES = 63; // NAMEDATALEN - 1

/** Postgres' truncate_identifier: at most 63 bytes of UTF-8, cut on a character boundary. */
function truncateIdent(name: string): string {
  if (Buffer.byteLength(name, 'utf8') <= NAME_BYTES) return name;
  let out = '';
  let bytes = 0;
  for (const ch of name) {
    const b = Buffer.byteLength(ch, 'utf8');
    if (bytes + b > NAME_BYTES) break;
    out += ch;
    bytes += b;
  }
  return out;
}

const isSpace = (c: string | undefined): boolean =>
  c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';

/**
 * Splits a list of identifiers written in text ('sch."My T"' with '.', a
 * search_path with ',') the way Postgres' SplitIdentifierString does:
 * whitespace around the parts, quoted parts kept as written, unquoted ones
 * with ASCII letters lower-cased (not others: the database encoding is
 * UTF-8), each cut to 63 bytes. Empty text gives no parts; undefined when
 * Postgres would reject the syntax.
 */
export function splitIdentifierString(text: string, separator: '.' | ','): string[] | undefined {
  const parts: string[] = [];
  const n = text.length;
  let i = 0;
  while (isSpace(text[i])) i++;
  if (i === n) return parts;
  for (;;) {
    let part = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= n) return undefined;
        if (text[i] === '"') {
          if (text[i + 1] !== '"') break;
          i++;
        }
        part += text[i++];
      }
      i++;
    } else {
      const start = i;
      while (i < n && text[i] !== separator && !isSpace(text[i])) i++;
      if (i === start) return undefined;
      part = text.slice(start, i).replace(/[A-Z]+/g, (m) => m.toLowerCase());
    }
    parts.push(truncateIdent(part));
    while (isSpace(text[i])) i++;
    if (i === n) return parts;
    if (text[i] !== separator) return undefined;
    i++;
    while (isSpace(text[i])) i++;
  }
}

/** A qualified name written in text ('sch."My T"'); undefined when Postgres would reject it. */
export function splitQualifiedName(text: string): string[] | undefined {
  const parts = splitIdentifierString(text, '.');
  return parts?.length ? parts : undefined;
}

/**
 * The table a regclass literal names; undefined when it is not a name
 * Postgres would accept (too many parts, bad quoting…).
 */
export function regclassRef(text: string): ObjectRef | undefined {
  const parts = splitQualifiedName(text);
  if (!parts || parts.length > 3 || parts.some((p) => p === '')) return undefined;
  const ref: ObjectRef = { type: 'table', name: parts[parts.length - 1]! };
  if (parts.length >= 2) ref.schema = parts[parts.length - 2]!;
  return ref;
}

/** A regclass literal that Postgres reads as an oid: only digits ('16384'), or '-' (no relation). */
export function isOidText(text: string): boolean {
  return /^[0-9]+$/.test(text) || text === '-';
}

/**
 * An identifier as Postgres' quote_identifier writes it: bare when it is
 * lower-case letters, digits and underscores not starting with a digit,
 * else double-quoted. (Postgres also quotes keywords, which changes nothing
 * for anyone who splits the list again.)
 */
export function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}
