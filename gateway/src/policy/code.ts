// Code a statement defines or runs out of the parse tree's sight: a
// function's or procedure's body, a DO block. Its statements are read so that
// what the code would do can be decided (masking's reach, approval holds).
import { extractPlpgsql } from './plpgsql.js';
import { parseStatements, type PgNode } from './parser.js';

/** The SQL texts of the code; `unreadable` says why they cannot all be known. */
export type DefinedCode = { texts: string[] } | { unreadable: string };

/** The code inside CREATE FUNCTION / CREATE PROCEDURE / DO `text`, or undefined for other statements. */
export function definedCode(text: string): DefinedCode | undefined {
  const stmt = parseStatements(text)[0];
  if (!stmt || (stmt.type !== 'CreateFunctionStmt' && stmt.type !== 'DoStmt')) return undefined;
  // A SQL-standard body (BEGIN ATOMIC, RETURN) is parsed with the statement, and its names were read with it.
  if (stmt.node.sql_body) return { texts: [] };
  const options = (stmt.type === 'DoStmt' ? stmt.node.args : stmt.node.options) as PgNode[] | undefined;
  let language = 'plpgsql';
  let body: string | undefined;
  for (const o of options ?? []) {
    const d = o.DefElem as { defname?: string; arg?: PgNode } | undefined;
    if (d?.defname === 'language') language = String((d.arg?.String as { sval?: string } | undefined)?.sval ?? '').toLowerCase();
    if (d?.defname === 'as') {
      const items = ((d.arg?.List as { items?: PgNode[] } | undefined)?.items ?? [d.arg]) as PgNode[];
      body = (items[0]?.String as { sval?: string } | undefined)?.sval;
    }
  }
  if (body === undefined) return { unreadable: 'its body cannot be read' };
  if (language === 'sql') return { texts: [body] };
  if (language !== 'plpgsql') return { unreadable: `it is written in ${language}, which Warden cannot read` };
  const code = extractPlpgsql(body);
  if (!code) return { unreadable: 'its body does not parse' };
  if (code.dynamic) return { unreadable: 'it runs SQL built at run time' };
  return { texts: code.statements };
}
