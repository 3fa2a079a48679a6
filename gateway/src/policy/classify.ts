// Classifies SQL statements into access levels from Postgres' own parse tree.
// The walk and its state are in classify/walk.ts, the handlers per node type
// in classify/handlers*.ts (the decisions taken where the spec was open are
// listed in classify/handlers.ts).
import { parseStatements, SqlParseError, type ParsedStatement } from './parser.js';
import { HANDLERS } from './classify/handlers.js';
import { newShared, visitNode, Walk, type Shared } from './classify/walk.js';
import { maxAccess, type Access, type Classification, type StatementInfo } from './types.js';

/** Node types with a handler (statement types and the few others that matter). */
export const HANDLED_NODE_TYPES: readonly string[] = Object.keys(HANDLERS);

function classifyWith(p: ParsedStatement, shared: Shared): StatementInfo {
  const w = new Walk(shared);
  const res = visitNode(p.type, p.node, w, true);
  const info: StatementInfo = {
    access: w.level,
    kind: res.kind ?? p.type,
    objects: [...shared.objects.values()],
    text: p.text,
  };
  const reason = w.reasonText();
  if (reason) info.reason = reason;
  if (w.escalation) {
    info.escalation = true;
    info.access = 'admin';
  }
  if (res.setting !== undefined) info.setting = res.setting;
  if (res.preparedName !== undefined) info.preparedName = res.preparedName;
  if (shared.pathChanges.length) info.pathChanges = shared.pathChanges;
  if (shared.unscoped.size) info.unscoped = [...shared.unscoped].join('; ');
  if (shared.operators) info.operators = [...shared.operators];
  return info;
}

/** Classifies one parsed statement. */
export function classifyStatement(p: ParsedStatement): StatementInfo {
  return classifyWith(p, newShared());
}

/**
 * The highest level among a classification's statements ('read' for none);
 * undefined when the text did not parse or classify, which must be refused.
 */
export function overallAccess(c: Classification): Access | undefined {
  if (!c.ok) return undefined;
  let level: Access = 'read';
  for (const s of c.statements) level = maxAccess(level, s.access);
  return level;
}

function parseErrorText(err: unknown): string {
  if (err instanceof SqlParseError) {
    return err.position !== undefined ? `${err.message} (at character ${err.position + 1})` : err.message;
  }
  return err instanceof Error ? err.message : String(err);
}

/**
 * Classifies every statement of `sql` (a simple-protocol Query string, or
 * the text of an extended-protocol Parse). Never throws: text that does not
 * parse, or that cannot be classified, gives { ok: false } so the caller can
 * refuse it (fail closed).
 */
export function classify(sql: string): Classification {
  let parsed: ParsedStatement[];
  try {
    parsed = parseStatements(sql);
  } catch (err) {
    return { ok: false, error: parseErrorText(err) };
  }
  try {
    let numbersRead = 0;
    const statements = parsed.map((p) => {
      const shared = newShared();
      const info = classifyWith(p, shared);
      numbersRead += shared.numbersRead;
      return info;
    });
    return numbersRead ? { ok: true, statements, readsNumbers: true } : { ok: true, statements };
  } catch (err) {
    // e.g. a tree too deep for the walk's recursion.
    return { ok: false, error: `statement could not be classified: ${err instanceof Error ? err.message : String(err)}` };
  }
}
