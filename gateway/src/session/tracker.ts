// Pairs each statement the client sent with the server's answer to it, so
// every statement can be audited with its result: rows, duration, error.
// Postgres answers in order: one CommandComplete (or EmptyQueryResponse,
// PortalSuspended, ErrorResponse) per statement or Execute, and one
// ReadyForQuery per Query, FunctionCall or Sync. After an error the server
// skips the rest of the Query string, or everything up to Sync.
import type { MaskPlan } from '../masking/types.js';
import type { PathEffect, PolicyRefusal, StatementInfo } from '../policy/index.js';

/** What policy said about one statement. */
export interface StatementDecision {
  sql: string;
  /** Absent when the text could not be parsed. */
  info?: StatementInfo;
  /** The rule that allowed it, or that set the ceiling it exceeded. */
  rule?: string;
  refusal?: PolicyRefusal;
  /** What it does to search_path and the transaction once it has run. */
  effects?: PathEffect[];
  /** How its results are masked (sessions under masks only). */
  mask?: MaskPlan;
  /** The approval it runs under, when it was held. */
  approvalId?: string;
}

export interface TrackedStatement extends StatementDecision {
  protocol: 'simple' | 'extended';
  /** Raw Bind parameters; decoded only if the event is recorded. */
  parameters?: Buffer;
  startedAt: number;
  command?: string;
  rows?: number;
  error?: { sqlstate: string; message: string };
  /** True when the server skipped it after an earlier error. */
  skipped?: boolean;
  /** The result's masker, made by the relay on its first row. */
  masker?: unknown;
  /** Its audit event's number in the session, taken when it is forwarded. */
  seq?: number;
  /** The parameters as recorded, decoded once for its intent and its outcome. */
  parameterValues?: Array<{ value?: string }>;
}

/** Marks the end of a Query, FunctionCall or Sync: answered by ReadyForQuery. */
const SYNC = null;

/** A bound portal: its statement's decision, and what the Bind added. */
interface Portal {
  decision: StatementDecision;
  parameters: Buffer;
  approvalId?: string;
}

/**
 * A statement sent, every field written out: one object shape for all of
 * them (spreads made several, and cost on the per-statement path).
 */
function tracked(d: StatementDecision, protocol: 'simple' | 'extended', startedAt: number, parameters?: Buffer, approvalId = d.approvalId): TrackedStatement {
  return {
    sql: d.sql,
    info: d.info,
    rule: d.rule,
    refusal: d.refusal,
    effects: d.effects,
    mask: d.mask,
    approvalId,
    protocol,
    parameters,
    startedAt,
    command: undefined,
    rows: undefined,
    error: undefined,
    skipped: undefined,
    masker: undefined,
    seq: undefined,
    parameterValues: undefined,
  };
}

/** SQLSTATE of a statement whose answer never came: connection_failure. */
export const OUTCOME_UNKNOWN = '08006';

export class ResponseTracker {
  private readonly queue: Array<TrackedStatement | typeof SYNC> = [];
  /** Prepared statements by name, and portals by name, for Execute. */
  private readonly prepared = new Map<string, StatementDecision>();
  private readonly portals = new Map<string, Portal>();
  /**
   * Statements queued since the relay last took them: it records their
   * intent, then forwards them (or, when it does not forward, unsends them).
   */
  readonly sent: TrackedStatement[] = [];

  constructor(
    private readonly done: (s: TrackedStatement) => void,
    private readonly now: () => number,
    /** ReadyForQuery's transaction status; `idle` when no statement sent is still unanswered. */
    private readonly onReady?: (status: string, idle: boolean) => void,
  ) {}

  // Client → server.

  query(statements: StatementDecision[]): void {
    const t = this.now();
    for (const s of statements) this.push(tracked(s, 'simple', t));
    this.queue.push(SYNC);
  }

  parse(name: string, decision: StatementDecision): void {
    this.prepared.set(name, decision);
  }

  /** `approvalId`: this execution was approved on its own (a prepared statement run again). */
  bind(portal: string, statement: string, parameters: Buffer, approvalId?: string): void {
    const decision = this.prepared.get(statement);
    if (decision) this.portals.set(portal, { decision, parameters, approvalId });
  }

  execute(portal: string): void {
    const p = this.portals.get(portal);
    if (p) this.push(tracked(p.decision, 'extended', this.now(), p.parameters, p.approvalId));
  }

  private push(s: TrackedStatement): void {
    this.queue.push(s);
    this.sent.push(s);
  }

  /** The statements just sent were not forwarded after all: they leave the queue unrecorded. */
  unsend(): void {
    if (this.sent.length === 0) return;
    const gone = new Set(this.sent);
    this.sent.length = 0;
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i] && gone.has(this.queue[i]!)) this.queue.splice(i, 1);
  }

  sync(): void {
    this.queue.push(SYNC);
  }

  // Server → client.

  complete(tag: string): void {
    const head = this.head();
    if (!head) return;
    this.queue.shift();
    const space = tag.lastIndexOf(' ');
    const rows = space > 0 ? Number(tag.slice(space + 1)) : NaN;
    head.command = tag.slice(0, tag.indexOf(' ') > 0 ? tag.indexOf(' ') : tag.length);
    if (Number.isFinite(rows)) head.rows = rows;
    this.done(head);
  }

  error(sqlstate: string, message: string): void {
    const head = this.head();
    if (head) {
      this.queue.shift();
      head.error = { sqlstate, message };
      this.done(head);
    }
    // The server skips everything up to the next ReadyForQuery.
    while (this.queue.length && this.queue[0] !== SYNC) {
      const skipped = this.queue.shift()!;
      skipped.skipped = true;
      this.done(skipped);
    }
  }

  /**
   * The session ended with statements sent and never answered: each is
   * recorded with its outcome unknown (it may have run, and committed), or as
   * refused when it was a refusal, which never runs. The queue is emptied.
   */
  abandon(why: string): void {
    const unanswered = this.queue.splice(0);
    for (const s of unanswered) {
      if (s === SYNC) continue;
      if (!s.refusal && !s.skipped) s.error = { sqlstate: OUTCOME_UNKNOWN, message: `outcome unknown: ${why} after the statement was forwarded` };
      this.done(s);
    }
  }

  ready(status = 'I'): void {
    while (this.queue.length) {
      const s = this.queue.shift();
      if (s === SYNC) break;
      if (s) this.done(s);
    }
    this.onReady?.(status, this.queue.length === 0);
  }

  closeStatement(name: string): void {
    this.prepared.delete(name);
  }

  closePortal(name: string): void {
    this.portals.delete(name);
  }

  /** Something sent is still unanswered. */
  get waiting(): boolean {
    return this.queue.length > 0;
  }

  /** The statement whose answer the server is sending now. */
  head(): TrackedStatement | undefined {
    const h = this.queue[0];
    return h ?? undefined;
  }
}
