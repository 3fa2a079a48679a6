// The SQL inside a PL/pgSQL body, read with Postgres' own PL/pgSQL parser,
// so a function's statements can be decided like any other statement.
import { parsePlPgSQLSync } from 'libpg-query';
import './parser.js'; // loads the parser module before the first call

export interface PlpgsqlSql {
  /** Each embedded statement or expression as a statement of its own. */
  statements: string[];
  /** The body runs SQL built at run time (EXECUTE, OPEN … FOR EXECUTE, RETURN QUERY EXECUTE). */
  dynamic: boolean;
}

const RETURN_TYPES = ['void', 'text', 'SETOF text', 'trigger'];

/** null when the body does not parse. */
export function extractPlpgsql(body: string): PlpgsqlSql | null {
  let tag = '$w$';
  for (let n = 0; body.includes(tag); n++) tag = `$w${n}$`;
  // The parser checks RETURN against the return type, which the body alone does not say: try the kinds in turn.
  let tree: unknown;
  for (const returns of RETURN_TYPES) {
    try {
      tree = parsePlPgSQLSync(`CREATE FUNCTION warden_body() RETURNS ${returns} LANGUAGE plpgsql AS ${tag}${body}${tag}`);
      break;
    } catch {
      // the next return type
    }
  }
  if (tree === undefined) return null;
  const out: PlpgsqlSql = { statements: [], dynamic: false };
  collect(tree, out);
  return out;
}

function collect(node: unknown, out: PlpgsqlSql): void {
  if (Array.isArray(node)) {
    for (const n of node) collect(n, out);
    return;
  }
  if (typeof node !== 'object' || node === null) return;
  for (const [key, value] of Object.entries(node)) {
    if (key.startsWith('PLpgSQL_stmt_dyn') || key === 'dynquery') out.dynamic = true;
    if (key === 'PLpgSQL_expr' && typeof value === 'object' && value !== null) {
      const { query, parseMode } = value as { query?: unknown; parseMode?: unknown };
      if (typeof query === 'string') out.statements.push(asStatement(query, typeof parseMode === 'number' ? parseMode : 0));
    }
    collect(value, out);
  }
}

/** parseMode 0: a whole statement; 2: an expression; 3-5: an assignment `target := expression`. */
function asStatement(query: string, parseMode: number): string {
  if (parseMode === 0) return query;
  if (parseMode >= 3) {
    const i = query.indexOf(':=');
    const j = query.indexOf('=');
    const at = i >= 0 ? i + 2 : j >= 0 ? j + 1 : 0;
    return `SELECT ${query.slice(at)}`;
  }
  return `SELECT ${query}`;
}
