// search_path as Postgres keeps it for one session: the value after each
// statement, with the transaction semantics of SET (undone by ROLLBACK and
// ROLLBACK TO SAVEPOINT), SET LOCAL (gone at the end of the transaction) and
// RESET (back to the value the session started with).
//
// `null` is a path the gateway cannot know (set from an expression).
import { splitIdentifierString } from './classify/names.js';

/** The schemas of a search_path setting, as Postgres splits it; null when it does not split. */
export function parseSearchPath(text: string): string[] | null {
  return splitIdentifierString(text, ',') ?? null;
}

/** What a statement does to the path or to the transaction it runs in, once it has succeeded. */
export type PathEffect =
  /** `maybe`: set_config inside a query, which may run any number of times or never. */
  | { op: 'set'; value: string | null; local: boolean; maybe?: boolean }
  | { op: 'reset' }
  | { op: 'begin' }
  | { op: 'commit' }
  | { op: 'rollback' }
  | { op: 'savepoint'; name: string | null }
  | { op: 'release'; name: string | null }
  | { op: 'rollback to'; name: string | null };

interface Savepoint {
  name: string | null;
  current: string | null;
  pending: string | null | undefined;
}

/**
 * The path as the server holds it, moved only by statements that the server
 * confirmed. Transactions: 'implicit' is the one a Query string or a Sync
 * group runs in when no BEGIN was given.
 */
export class PathMachine {
  /** The value outside a transaction, kept by COMMIT. */
  private session: string | null;
  current: string | null;
  /** A non-local SET inside the transaction: becomes `session` at COMMIT. */
  private pending: string | null | undefined;
  private tx: 'none' | 'implicit' | 'explicit' | 'failed' = 'none';
  private savepoints: Savepoint[] = [];

  /** Some statement set or reset the path. */
  private moved = false;

  constructor(public initial: string | null) {
    this.session = this.current = initial;
  }

  /** The session's starting path, learnt late (the catalog arrived): taken only while nothing has moved the path. */
  learnInitial(value: string): boolean {
    if (this.initial !== null || this.moved) return false;
    this.initial = this.session = this.current = value;
    return true;
  }

  /** A statement of a Query or Sync group is about to run. */
  private enter(): void {
    if (this.tx === 'none') this.tx = 'implicit';
  }

  /** The ReadyForQuery status the server would send now. */
  status(): string {
    return this.tx === 'explicit' ? 'T' : this.tx === 'failed' ? 'E' : 'I';
  }

  /** A copy to simulate statements not yet answered. */
  clone(): PathMachine {
    const m = new PathMachine(this.initial);
    m.session = this.session;
    m.current = this.current;
    m.pending = this.pending;
    m.tx = this.tx;
    m.savepoints = [...this.savepoints];
    return m;
  }

  succeeded(effects: readonly PathEffect[]): void {
    this.enter();
    for (const e of effects) this.apply(e);
  }

  /** The statement failed: an implicit transaction is rolled back, an explicit one is marked failed. */
  failed(): void {
    if (this.tx === 'explicit') this.tx = 'failed';
    else this.rollback();
  }

  /** ReadyForQuery: 'I' idle, 'T' in a transaction block, 'E' in a failed one. */
  ready(status: string): void {
    if (this.tx === 'implicit') this.commit();
    const expected = status === 'I' ? 'none' : status === 'T' ? 'explicit' : 'failed';
    // The server knows better; if it disagrees, the path can no longer be told.
    if (this.tx !== expected) {
      this.tx = expected;
      this.current = this.session = null;
      this.pending = undefined;
      this.savepoints = [];
    }
  }

  private apply(e: PathEffect): void {
    if (e.op === 'set' || e.op === 'reset') this.moved = true;
    switch (e.op) {
      case 'set': {
        // A change that may or may not have happened leaves a path that cannot be told, unless both are the same.
        const value = e.maybe && e.value !== this.current ? null : e.value;
        this.current = value;
        if (!e.local) this.pending = e.maybe && e.value !== (this.pending === undefined ? this.session : this.pending) ? null : value;
        return;
      }
      case 'reset':
        this.current = this.pending = this.initial;
        return;
      case 'begin':
        if (this.tx === 'implicit' || this.tx === 'none') this.tx = 'explicit';
        return;
      case 'commit':
        return this.commit();
      case 'rollback':
        return this.rollback();
      case 'savepoint':
        this.savepoints.push({ name: e.name, current: this.current, pending: this.pending });
        return;
      case 'release': {
        const i = this.findSavepoint(e.name);
        if (i >= 0) this.savepoints.length = i;
        return;
      }
      case 'rollback to': {
        const i = this.findSavepoint(e.name);
        if (i < 0) {
          this.current = null;
          return;
        }
        const sp = this.savepoints[i]!;
        this.savepoints.length = i + 1;
        this.current = sp.current;
        this.pending = sp.pending;
        if (this.tx === 'failed') this.tx = 'explicit';
        return;
      }
    }
  }

  private findSavepoint(name: string | null): number {
    if (name === null) return -1;
    for (let i = this.savepoints.length - 1; i >= 0; i--) if (this.savepoints[i]!.name === name) return i;
    return -1;
  }

  private commit(): void {
    if (this.tx === 'failed') return this.rollback();
    if (this.pending !== undefined) this.session = this.pending;
    this.end();
  }

  private rollback(): void {
    this.end();
  }

  private end(): void {
    this.current = this.session;
    this.pending = undefined;
    this.savepoints = [];
    this.tx = 'none';
  }
}

/** The effects of one classified statement, from its kind, text and pathChanges. */
export function pathEffects(
  kind: string,
  text: string,
  changes: ReadonlyArray<{ op: 'set'; value: string | undefined; local: boolean } | { op: 'reset' }> | undefined,
  definite: boolean,
): PathEffect[] {
  const out: PathEffect[] = [];
  switch (kind) {
    case 'BEGIN':
    case 'START TRANSACTION':
      out.push({ op: 'begin' });
      break;
    case 'COMMIT':
    case 'PREPARE TRANSACTION':
      out.push({ op: 'commit' });
      break;
    case 'ROLLBACK':
      out.push({ op: 'rollback' });
      break;
    case 'SAVEPOINT':
      out.push({ op: 'savepoint', name: savepointName(text) });
      break;
    case 'RELEASE':
      out.push({ op: 'release', name: savepointName(text) });
      break;
    case 'ROLLBACK TO SAVEPOINT':
      out.push({ op: 'rollback to', name: savepointName(text) });
      break;
  }
  for (const c of changes ?? []) {
    if (c.op === 'reset') out.push(c);
    else if (definite) out.push({ op: 'set', value: c.value ?? null, local: c.local });
    else out.push({ op: 'set', value: c.value ?? null, local: c.local, maybe: true });
  }
  return out;
}

/** The savepoint named at the end of SAVEPOINT / RELEASE / ROLLBACK TO text; null when it cannot be read. */
function savepointName(text: string): string | null {
  const m = /("(?:[^"]|"")+"|[A-Za-z_\u0080-\uffff][\w$\u0080-\uffff]*)\s*;?\s*$/.exec(text);
  if (!m) return null;
  const raw = m[1]!;
  return raw.startsWith('"') ? raw.slice(1, -1).replace(/""/g, '"') : raw.toLowerCase();
}
