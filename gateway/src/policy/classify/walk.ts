// The generic walk over a statement's parse tree, and its state.
//
// Every object and array under a statement is visited, whatever its type, so
// that a statement or function call nested anywhere is seen. Node types that
// matter have a handler (handlers.ts); statement types without one are
// 'admin' ("unrecognised statement": fail closed); other node types are
// simply walked through.
import { accessRank, type Access, type ObjectRef, type PathChange, type WriteKind } from '../types.js';
import type { NumberReads } from './constants.js';
import { HANDLERS } from './handlers.js';
import { FIELD_TYPES, isObj, list, str, unwrap, type Obj } from './tree.js';

export interface HandlerResult {
  /** Kind of the statement (used when the node is the top-level statement). */
  kind?: string;
  /** The handler walked the node's children itself. */
  skip?: boolean;
  setting?: string;
  preparedName?: string;
}

export type Handler = (n: Obj, w: Walk, top: boolean) => HandlerResult | void;

/** What every walk over one statement (and the SQL texts inside it) adds to. */
export interface Shared extends NumberReads {
  objects: Map<string, ObjectRef>;
  pathChanges: PathChange[];
  /** Reasons the statement reaches what no scope can place, deduplicated. */
  unscoped: Set<string>;
  /** Operator names used, as written; made on the first one. */
  operators?: Set<string>;
}

export function newShared(): Shared {
  return { objects: new Map(), numbersRead: 0, pathChanges: [], unscoped: new Set() };
}

/** WriteKinds in a fixed order, so that a merged list does not depend on the order of appearance. */
const WRITE_ORDER: readonly WriteKind[] = ['insert', 'update', 'delete', 'truncate', 'truncate cascade'];

export class Walk {
  level: Access = 'read';
  escalation = false;
  private readonly reasons: Array<[Access, string]> = [];
  /** Names of CTEs in scope, innermost last. */
  readonly cteScopes: Array<Set<string>> = [];
  /** Inside code that a definition stores to run later (a function body, a view's query…): no writes or path changes now. */
  deferred = 0;

  /**
   * @param planOnly inside a plain EXPLAIN: the statement is planned, not
   *   run, so it writes nothing and changes no setting (its objects and
   *   unscoped reach still count: EXPLAIN shows plans and estimates).
   */
  constructor(
    readonly shared: Shared,
    readonly sqlDepth = 0,
    readonly planOnly = false,
  ) {}

  raise(level: Access, reason?: string): void {
    if (accessRank(level) > accessRank(this.level)) this.level = level;
    if (reason && level !== 'read') this.reasons.push([level, reason]);
  }

  escalate(): void {
    this.escalation = true;
    this.raise('admin');
  }

  /**
   * Adds an object, or merges it into the same one seen before: writes are
   * united, and `only` holds only while every mention said ONLY.
   */
  addObject(ref: ObjectRef): void {
    const key = `${ref.type}\u0000${ref.schema ?? ''}\u0000${ref.name}`;
    const objects = this.shared.objects;
    // Planned or stored code changes no rows now.
    const writes = this.planOnly || this.deferred > 0 ? undefined : ref.writes;
    const seen = objects.get(key);
    if (!seen) {
      const clean: ObjectRef = { type: ref.type, name: ref.name };
      if (ref.schema !== undefined) clean.schema = ref.schema;
      if (writes?.length) clean.writes = WRITE_ORDER.filter((k) => writes.includes(k));
      if (ref.only) clean.only = true;
      if (ref.named) clean.named = true;
      objects.set(key, clean);
      return;
    }
    if (writes?.length) {
      const had = seen.writes ?? [];
      seen.writes = WRITE_ORDER.filter((k) => had.includes(k) || writes.includes(k));
    }
    if (!ref.only) delete seen.only;
    if (!ref.named) delete seen.named;
  }

  /** Records a search_path change the statement makes when it runs. */
  changePath(change: PathChange): void {
    if (!this.planOnly && this.deferred === 0) this.shared.pathChanges.push(change);
  }

  /** Records an operator name the statement uses ("<<<", "public.<<<"). */
  addOperator(name: string): void {
    (this.shared.operators ??= new Set()).add(name);
  }

  /** Records reach that no schema or table scope can place. */
  unscope(reason: string): void {
    this.shared.unscoped.add(reason);
  }

  isCte(name: string): boolean {
    for (let i = this.cteScopes.length - 1; i >= 0; i--) if (this.cteScopes[i]!.has(name)) return true;
    return false;
  }

  /** Reasons given for the statement's final level, deduplicated. */
  reasonText(): string | undefined {
    const seen = new Set<string>();
    for (const [level, r] of this.reasons) if (level === this.level) seen.add(r);
    return seen.size > 0 ? [...seen].join('; ') : undefined;
  }
}

export function visit(v: unknown, w: Walk, hint?: string): void {
  if (Array.isArray(v)) {
    for (const item of v) visit(item, w);
    return;
  }
  if (!isObj(v)) return;
  const [type, body] = unwrap(v, hint);
  visitNode(type, body, w, false);
}

export function visitChildren(type: string | undefined, n: Obj, w: Walk, skip?: readonly string[]): void {
  for (const key of Object.keys(n)) {
    if (skip && skip.includes(key)) continue;
    const child = n[key];
    if (typeof child === 'object' && child !== null) visit(child, w, type ? FIELD_TYPES[`${type}.${key}`] : undefined);
  }
}

/**
 * Statements that store code without running it: a set_config in a function
 * body, a view's query, a rule's actions, a trigger's WHEN, a policy's
 * expressions or a domain's DEFAULT / CHECK moves search_path when that code
 * runs, not now. (Not CREATE TABLE: its partition bounds are evaluated now.)
 */
const STORES_CODE = new Set([
  'CreateFunctionStmt',
  'ViewStmt',
  'RuleStmt',
  'CreateTrigStmt',
  'CreatePolicyStmt',
  'AlterPolicyStmt',
  'CreateDomainStmt',
]);

export function visitNode(type: string | undefined, n: Obj, w: Walk, top: boolean): HandlerResult {
  let res: HandlerResult | void = undefined;
  const handler = type !== undefined && Object.prototype.hasOwnProperty.call(HANDLERS, type) ? HANDLERS[type] : undefined;
  if (handler) {
    res = handler(n, w, top);
  } else if (type !== undefined && (top || type.endsWith('Stmt'))) {
    // Fail closed on anything this classifier does not know.
    w.raise('admin', `unrecognised statement (${type})`);
    res = { kind: type };
  }
  if (!res?.skip) {
    if (type !== undefined && STORES_CODE.has(type)) {
      w.deferred++;
      try {
        visitChildren(type, n, w);
      } finally {
        w.deferred--;
      }
    } else {
      visitChildren(type, n, w);
    }
  }
  return res ?? {};
}

/** Walks a statement's fields with its WITH clause's CTE names in scope. */
export function walkWithCtes(type: string, n: Obj, w: Walk, skip: readonly string[] = []): void {
  const wc = n.withClause;
  if (!isObj(wc)) {
    visitChildren(type, n, w, skip);
    return;
  }
  const ctes = list(wc.ctes);
  const names = ctes.map((c) => (isObj(c) && isObj(c.CommonTableExpr) ? str(c.CommonTableExpr.ctename) : undefined));
  const scope = new Set<string>();
  w.cteScopes.push(scope);
  try {
    // A non-recursive CTE sees only the CTEs before it; WITH RECURSIVE, all.
    if (wc.recursive === true) for (const name of names) if (name) scope.add(name);
    ctes.forEach((c, i) => {
      visit(c, w);
      const name = names[i];
      if (name) scope.add(name);
    });
    visitChildren(type, n, w, [...skip, 'withClause']);
  } finally {
    w.cteScopes.pop();
  }
}
