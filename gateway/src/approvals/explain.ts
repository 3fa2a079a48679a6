// How many rows Postgres expects a statement to change, for rules that hold
// statements over N rows: EXPLAIN (never ANALYZE: nothing runs) on an
// upstream session of its own, opened through the agent like the catalog's,
// bounded in time. Any failure is null; the caller then holds the statement
// and says the estimate is unknown.
import type { Upstream } from '../tunnel/upstream.js';
import {
  DATA_ROW,
  ERROR_RESPONSE,
  type Message,
  MessageReader,
  parseDataRow,
  parseErrorResponse,
  query,
  READY_FOR_QUERY,
  terminate,
} from '@warden/proto/pgwire';
import { parseStatements, type PgNode } from '../policy/parser.js';

/** Statements EXPLAIN can estimate row changes for (SELECT: one with a data-modifying WITH query). */
const EXPLAINABLE = new Set(['DeleteStmt', 'UpdateStmt', 'InsertStmt', 'MergeStmt', 'SelectStmt']);

/** A plan is small; anything bigger is not one. */
const MAX_MESSAGE = 16 * 1024 * 1024;

function hasParameter(v: unknown): boolean {
  if (Array.isArray(v)) return v.some(hasParameter);
  if (typeof v !== 'object' || v === null) return false;
  for (const [k, x] of Object.entries(v as PgNode)) if (k === 'ParamRef' || hasParameter(x)) return true;
  return false;
}

/** The one statement to explain, or undefined when it must not be sent (several, parameters, not a row change). */
function explainable(sql: string): string | undefined {
  try {
    const parsed = parseStatements(sql);
    // Sent as a simple Query: a second statement would run.
    if (parsed.length !== 1) return undefined;
    const p = parsed[0]!;
    if (!EXPLAINABLE.has(p.type) || hasParameter(p.node)) return undefined;
    return p.text;
  } catch {
    return undefined;
  }
}

/** A string constant whatever standard_conforming_strings says: dollar-quoted with a tag the value lacks. */
function literal(value: string): string {
  let tag = 'w';
  while (value.includes(`$${tag}$`)) tag += 'w';
  return `$${tag}$${value}$${tag}$`;
}

interface PlanNode {
  'Node Type'?: string;
  'Plan Rows'?: number;
  'Parent Relationship'?: string;
  Plans?: PlanNode[];
}

/** Rows the plan's ModifyTable nodes take from their source (a data-modifying WITH query has its own); else the top node's. */
function rowsOf(plan: PlanNode): number {
  let total = 0;
  let found = false;
  const walk = (n: PlanNode): void => {
    if (n['Node Type'] === 'ModifyTable') {
      // ModifyTable itself says 0 without RETURNING; its outer child is what it changes.
      const source = n.Plans?.find((c) => c['Parent Relationship'] === 'Outer') ?? n.Plans?.[0];
      total += source?.['Plan Rows'] ?? 0;
      found = true;
    }
    for (const c of n.Plans ?? []) walk(c);
  };
  walk(plan);
  return found ? total : (plan['Plan Rows'] ?? 0);
}

/**
 * Postgres' estimate of the rows `sql` changes, asked on a session from
 * `open` (which the caller opens read-only) under `searchPath` (null: the
 * role's default), within `timeoutMs` in all; null when it cannot tell.
 * The session is always closed.
 */
export async function explainRows(open: () => Promise<Upstream>, sql: string, searchPath: string | null, timeoutMs: number): Promise<number | null> {
  const statement = explainable(sql);
  if (statement === undefined || searchPath?.includes('\0')) return null;
  const deadline = Date.now() + timeoutMs;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
    timer.unref?.();
  });
  const opening = open();
  try {
    const upstream = await Promise.race([opening, expired]);
    if (upstream === 'timeout') {
      // Opened too late: nobody will use it.
      opening.then((u) => u.close(), () => {});
      return null;
    }
    const queries = [`set statement_timeout = ${Math.max(1, deadline - Date.now())}`];
    if (searchPath !== null) queries.push(`select pg_catalog.set_config('search_path', ${literal(searchPath)}, false)`);
    queries.push(`explain (format json) ${statement}`);
    const plan = await run(upstream, queries, deadline - Date.now());
    return plan === null ? null : rowsOf(plan);
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

/** Sends the queries once the session is ready; the last one's first value, parsed, or null after `timeoutMs`. Closes the upstream. */
function run(upstream: Upstream, queries: string[], timeoutMs: number): Promise<PlanNode | null> {
  return new Promise((resolve) => {
    const reader = new MessageReader();
    let ready = false;
    let answered = 0;
    let failed = false;
    let value: string | undefined;
    let done = false;
    // statement_timeout bounds the EXPLAIN on the server; this, a session that never answers.
    const timer = setTimeout(() => finish(null), Math.max(0, timeoutMs));
    timer.unref?.();
    const finish = (plan: PlanNode | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      upstream.close();
      resolve(plan);
    };
    const onMessage = (m: Message): void => {
      if (m.type === ERROR_RESPONSE) {
        failed = true;
        const f = parseErrorResponse(m.body);
        // Before ReadyForQuery, or FATAL: no ReadyForQuery follows.
        if (!ready || f.severity === 'FATAL' || f.severity === 'PANIC') finish(null);
        return;
      }
      if (m.type === DATA_ROW && answered === queries.length - 1 && value === undefined) {
        value = parseDataRow(m.body)[0]?.toString('utf8');
        return;
      }
      if (m.type !== READY_FOR_QUERY) return;
      if (!ready) {
        // The session is up (after what the server sent at login): all queries at once, answered in order.
        ready = true;
        for (const q of queries) upstream.write(query(q));
        return;
      }
      if (++answered < queries.length) return;
      upstream.write(terminate());
      if (failed || value === undefined) return finish(null);
      try {
        const doc = JSON.parse(value) as Array<{ Plan?: PlanNode }>;
        finish(doc[0]?.Plan ?? null);
      } catch {
        finish(null);
      }
    };
    upstream.start({
      data(chunk: Buffer): void {
        if (done) return;
        reader.push(chunk);
        try {
          for (let m = reader.nextTyped(MAX_MESSAGE); m && !done; m = reader.nextTyped(MAX_MESSAGE)) onMessage(m);
        } catch {
          finish(null);
        }
      },
      drain(): void {},
      end(): void {
        finish(null);
      },
    });
  });
}
