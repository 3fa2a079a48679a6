// The relation a statement creates: under masks it holds only what the
// session put there, until the catalog knows it.
import { parseStatements } from '../policy/parser.js';

/** The relation a CREATE TABLE / CREATE TABLE AS / SELECT INTO / CREATE [MATERIALIZED] VIEW makes, as stored. */
export function createdRelation(text: string): string | undefined {
  const stmt = parseStatements(text)[0];
  const n = stmt?.node as Record<string, { relname?: string; rel?: { relname?: string } } | undefined> | undefined;
  switch (stmt?.type) {
    case 'CreateStmt':
      return n!.relation?.relname;
    case 'ViewStmt':
      return n!.view?.relname;
    case 'CreateTableAsStmt':
      return n!.into?.rel?.relname;
    case 'SelectStmt':
      return n!.intoClause?.rel?.relname;
    default:
      return undefined;
  }
}
