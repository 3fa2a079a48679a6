// Operators a statement uses. Users can define an operator of any symbol in
// any schema, and it runs a function of theirs wherever it is used; which
// operator a name resolves to depends on the operand types, known only to
// the server. So every operator name is recorded (as written: "<<<" or
// "public.<<<") and reach looks the names up in the resource's catalog.
import { isObj, list, str } from './tree.js';
import type { Handler, Walk } from './walk.js';

/** An operator name list ([{String: {sval}}…]) as "symbol" or "schema.symbol". */
function operatorName(v: unknown): string | undefined {
  const parts = list(v);
  const last = parts[parts.length - 1];
  const symbol = isObj(last) && isObj(last.String) ? str(last.String.sval) : undefined;
  if (!symbol) return undefined;
  if (parts.length === 1) return symbol;
  // OPERATOR(db.schema.op) is allowed for the current database: the schema is the one before the symbol.
  const before = parts[parts.length - 2];
  const schema = isObj(before) && isObj(before.String) ? str(before.String.sval) : undefined;
  return schema === undefined ? symbol : `${schema}.${symbol}`;
}

function use(w: Walk, name: string | undefined): void {
  if (name !== undefined) w.addOperator(name);
}

/** The comparisons BETWEEN stands for: a >= x AND a <= y; NOT BETWEEN: a < x OR a > y. */
const BETWEEN: Record<string, readonly [string, string]> = {
  AEXPR_BETWEEN: ['>=', '<='],
  AEXPR_BETWEEN_SYM: ['>=', '<='],
  AEXPR_NOT_BETWEEN: ['<', '>'],
  AEXPR_NOT_BETWEEN_SYM: ['<', '>'],
};

/** a <<< b, OPERATOR(s.<<<), = ANY, IS DISTINCT FROM (=), NULLIF (=), IN (= or <>), LIKE (~~), SIMILAR TO (~), BETWEEN. */
export const aExprHandler: Handler = (n, w) => {
  const between = BETWEEN[str(n.kind) ?? ''];
  if (between) {
    w.addOperator(between[0]);
    w.addOperator(between[1]);
    return;
  }
  use(w, operatorName(n.name));
};

/** x op ANY/ALL (subquery), row comparisons with a subquery, and IN (subquery), which compares with =. */
export const subLinkHandler: Handler = (n, w) => {
  if (n.operName !== undefined) use(w, operatorName(n.operName));
  else if (n.subLinkType === 'ANY_SUBLINK') w.addOperator('=');
};

/** ORDER BY x USING op. */
export const sortByHandler: Handler = (n, w) => {
  if (n.useOp !== undefined) use(w, operatorName(n.useOp));
};

/** CASE x WHEN y compares x = y. */
export const caseExprHandler: Handler = (n, w) => {
  if (n.arg !== undefined) w.addOperator('=');
};

/** JOIN … USING and NATURAL JOIN compare the columns with =. */
export const joinExprHandler: Handler = (n, w) => {
  if (n.isNatural === true || list(n.usingClause).length > 0) w.addOperator('=');
};
