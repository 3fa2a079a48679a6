// One statement held for approval inside a client's session (issue 13): the
// relay has stopped forwarding at its message; this decides when and how it
// lets go. Wait mode opens a request, tells the client, and waits for the
// decision or the rule's timeout; retry mode consumes an approval made
// earlier or opens a request and refuses at once. The outcome is a Release:
// the relay then runs the held message as usual (approved, or an estimate
// under the rule's bound), or has the server raise the refusal in its place.
import { createHash } from 'node:crypto';
import type { ApprovalDecision, ApprovalEvent, ApprovalRequest, ApprovalRule, ConsumeApprovalRequest, StatementParameter } from '@warden/proto';
import { BIND, NOTICE_RESPONSE, SqlState, decodeParameters, errorResponse } from '@warden/proto/pgwire';
import type { Logger } from 'pino';
import { ApprovalsUnreachable } from './client.js';
import { afterEstimate, type Hold } from './rules.js';

/** What a session needs of the control plane's approvals (client.ts; a fake in tests). */
export interface ApprovalClient {
  request(r: ApprovalRequest): Promise<ApprovalRequest>;
  withdraw(id: string): Promise<ApprovalRequest>;
  /** The approval for this statement, now consumed; undefined when there is none. */
  consume(q: ConsumeApprovalRequest): Promise<ApprovalRequest | undefined>;
  /** Updates of request `id` from the gateway's stream, until the returned function is called. */
  watch(id: string, listener: (r: ApprovalRequest) => void): () => void;
}

/** What the gateway hands every session for holds. */
export interface ApprovalDeps {
  client: ApprovalClient;
  /** EXPLAIN's row estimate through an upstream of the gateway's own; null when unknown. */
  explain?(resource: string, agent: string, sql: string, searchPath: string | null): Promise<number | null>;
  /** Wait when the rule gives no wait_timeout_seconds (default 300). */
  defaultWaitSeconds?: number;
}

/** The statement the relay stopped at. */
export interface HeldStatement {
  hold: Hold;
  /** The held message's text (all statements of a Query). */
  sql: string;
  /** The statement that needs approval, alone (what EXPLAIN estimates). */
  statement: string;
  /** Index of the statement that needs approval among the message's statements. */
  index: number;
  /** Prepared statement name, for a Parse: its Bind gives the parameters. */
  parse?: string;
}

/** How the relay lets go of the held message. */
export interface Release {
  index: number;
  /** Run it, under this approval when one was needed. */
  approvalId?: string;
  /** Or have the server raise this in its place. */
  refusal?: { sqlstate: string; message: string; rule: string };
}

export interface HoldContext {
  client: ApprovalClient;
  explain?: (sql: string, searchPath: string | null) => Promise<number | null>;
  searchPath?: () => string | null;
  identity: string;
  resource: string;
  sessionId: string;
  gatewayId: string;
  /** Why, as the client said (application_name). */
  reason: string;
  /** Parameters sent to the control plane follow the audit's recording. */
  parameterRecording: 'full' | 'redacted' | 'none';
  defaultWaitSeconds: number;
  log: Logger;
}

export interface HoldHost {
  notice(text: string): void;
  record(e: ApprovalEvent): void;
  done(r: Release): void;
}

const QUERY_CANCELED = '57014';
export const CANCELED_MESSAGE = 'warden: the held statement was withdrawn: canceled by the client';

export class PendingApproval {
  private id: string | undefined;
  /** What binds the approval to this statement, once computed. */
  private fingerprint: string | undefined;
  private why: string;
  private over = false;
  private timer: NodeJS.Timeout | undefined;
  private unwatch: (() => void) | undefined;

  constructor(
    private readonly held: HeldStatement,
    /** The bytes kept so far: the held message first. */
    private readonly kept: () => Buffer,
    private readonly ctx: HoldContext,
    private readonly host: HoldHost,
  ) {
    this.why = held.hold.why;
  }

  private get rule(): ApprovalRule {
    return this.held.hold.rule;
  }

  async start(): Promise<void> {
    try {
      if (this.held.hold.estimate) {
        const rows = await this.estimate();
        if (this.over) return;
        const hold = afterEstimate(this.held.hold, rows);
        if (!hold) return this.finish({ index: this.held.index });
        this.why = hold.why;
      }
      // A Bind sent with its Parse but cut into the next chunk has one turn to arrive.
      if (this.held.parse !== undefined) await new Promise((r) => setImmediate(r));
      if (this.over) return;
      const raw = this.held.parse !== undefined ? bindParameters(this.kept(), this.held.parse) : undefined;
      const fingerprint = (this.fingerprint = statementFingerprint(this.ctx.identity, this.ctx.resource, this.held.sql, raw ? decodeParameters(raw) : []));
      if (this.rule.mode === 'retry') return await this.retry(fingerprint, raw);
      const request = await this.ctx.client.request(this.request(fingerprint, raw));
      if (this.over) {
        // The client left or canceled while the request was on its way.
        void this.withdraw(request.id);
        return;
      }
      this.id = request.id;
      this.record('requested', request.decisions);
      if (this.settle(request)) return;
      this.host.notice(`warden: the statement is held for approval ${request.id} (rule ${this.rule.name}: ${this.why}); an approver runs: warden approvals approve ${request.id}`);
      this.unwatch = this.ctx.client.watch(request.id, (r) => this.settle(r));
      const seconds = this.rule.waitTimeoutSeconds || this.ctx.defaultWaitSeconds;
      this.timer = setTimeout(() => void this.timedOut(seconds), seconds * 1000);
    } catch (err) {
      if (this.over) return;
      this.ctx.log.warn({ err: (err as Error).message }, 'approval request failed');
      const cause = err instanceof ApprovalsUnreachable ? 'the control plane cannot be reached' : (err as Error).message;
      this.refuse(SqlState.insufficientPrivilege, `${this.subject()}: could not request approval: ${cause}`);
    }
  }

  /** A CancelRequest for the session: the request is withdrawn and the statement fails as canceled. */
  cancel(): void {
    if (this.over) return;
    this.withdrawn();
    this.finish({ index: this.held.index, refusal: { sqlstate: QUERY_CANCELED, message: CANCELED_MESSAGE, rule: this.rule.name } });
  }

  /** The session ended while the statement was held. */
  abandon(): void {
    if (this.over) return;
    this.withdrawn();
    this.end();
  }

  private async retry(fingerprint: string, raw: Buffer | undefined): Promise<void> {
    const { client, identity, resource, sessionId } = this.ctx;
    const approved = await client.consume({ identity, resource, fingerprint, sessionId });
    if (this.over) return;
    if (approved) return this.finish({ index: this.held.index, approvalId: approved.id });
    const request = await client.request(this.request(fingerprint, raw));
    if (this.over) return;
    this.id = request.id;
    this.record('requested', request.decisions);
    this.refuse(SqlState.insufficientPrivilege, `${this.subject()}: held for approval ${request.id}: run it again once it is approved (warden approvals approve ${request.id})`);
  }

  /** Wait mode: the approval is used up by this run, so `warden approvals list` shows it executed (best effort: the statement runs either way). */
  private markExecuted(): void {
    const { client, identity, resource, sessionId } = this.ctx;
    if (this.rule.mode === 'retry' || !this.fingerprint) return;
    client.consume({ identity, resource, fingerprint: this.fingerprint, sessionId }).catch(() => undefined);
  }

  /** Acts on a request's state; true once the hold is over. */
  private settle(r: ApprovalRequest): boolean {
    if (this.over) return true;
    const id = r.id;
    switch (r.state) {
      case 'approved':
        this.record('approved', r.decisions);
        this.finish({ index: this.held.index, approvalId: id });
        this.markExecuted();
        return true;
      case 'denied': {
        this.record('denied', r.decisions);
        const by = r.decisions.filter((d) => !d.approve).map((d) => (d.reason ? `${d.approver} (${d.reason})` : d.approver));
        this.refuse(SqlState.insufficientPrivilege, `${this.subject()}: approval ${id} was denied${by.length ? ` by ${by.join(', ')}` : ''}`);
        return true;
      }
      case 'expired':
        this.record('expired', r.decisions);
        this.refuse(SqlState.insufficientPrivilege, `${this.subject()}: approval ${id} expired with no decision`);
        return true;
      case 'withdrawn':
        this.record('withdrawn', r.decisions);
        this.refuse(SqlState.insufficientPrivilege, `${this.subject()}: approval ${id} was withdrawn`);
        return true;
      default:
        return false;
    }
  }

  /** The wait is over: withdraw, unless the decision was made and its update lost (then it runs). */
  private async timedOut(seconds: number): Promise<void> {
    if (this.over || !this.id) return;
    const id = this.id;
    this.unwatch?.();
    let last: ApprovalRequest | undefined;
    try {
      last = await this.ctx.client.withdraw(id);
    } catch (err) {
      this.ctx.log.warn({ err: (err as Error).message, approval: id }, 'could not withdraw a timed-out approval request');
    }
    if (this.over) return;
    if (last && last.state !== 'pending' && last.state !== 'withdrawn' && this.settle(last)) return;
    this.record('expired', last?.decisions ?? []);
    this.refuse(SqlState.insufficientPrivilege, `${this.subject()}: approval ${id} timed out after ${seconds} s with no decision`);
  }

  private async estimate(): Promise<number | null> {
    if (!this.ctx.explain) return null;
    try {
      return await this.ctx.explain(this.held.statement, this.ctx.searchPath?.() ?? null);
    } catch (err) {
      this.ctx.log.warn({ err: (err as Error).message }, 'row estimate failed');
      return null;
    }
  }

  private request(fingerprint: string, raw: Buffer | undefined): ApprovalRequest {
    const c = this.ctx;
    const recorded: StatementParameter[] =
      raw && c.parameterRecording !== 'none' ? decodeParameters(raw, { redact: c.parameterRecording === 'redacted' }).map((v) => ({ value: v ?? undefined })) : [];
    return {
      id: '',
      rule: this.rule.name,
      identity: c.identity,
      resource: c.resource,
      sql: this.held.sql,
      parameters: recorded,
      fingerprint,
      sessionId: c.sessionId,
      gatewayId: c.gatewayId,
      reason: c.reason,
      createdAt: '',
      expiresAt: '',
      state: '',
      decisions: [],
      approvers: this.rule.approvers,
      quorum: this.rule.quorum,
      mode: this.rule.mode || 'wait',
      approvalExpiresAt: '',
      why: this.why,
    };
  }

  private subject(): string {
    return `warden: ${this.ctx.identity} on ${this.ctx.resource} may not run ${this.why}`;
  }

  private withdrawn(): void {
    if (!this.id) return; // the request, if on its way, is withdrawn when it returns
    this.record('withdrawn', []);
    void this.withdraw(this.id);
  }

  private async withdraw(id: string): Promise<void> {
    try {
      await this.ctx.client.withdraw(id);
    } catch (err) {
      this.ctx.log.warn({ err: (err as Error).message, approval: id }, 'could not withdraw an approval request');
    }
  }

  private record(state: string, decisions: ApprovalDecision[]): void {
    this.host.record({ approvalId: this.id!, state, rule: this.rule.name, sql: this.held.sql, why: this.why, decisions });
  }

  private refuse(sqlstate: string, message: string): void {
    this.finish({ index: this.held.index, refusal: { sqlstate, message, rule: this.rule.name } });
  }

  private finish(r: Release): void {
    if (this.over) return;
    this.end();
    this.host.done(r);
  }

  private end(): void {
    this.over = true;
    clearTimeout(this.timer);
    this.unwatch?.();
  }
}

/**
 * What binds an approval to exactly one statement: sha256 of identity,
 * resource, the text without trailing blanks and semicolons, and the
 * parameters (text; null for NULL).
 */
export function statementFingerprint(identity: string, resource: string, sql: string, parameters: ReadonlyArray<string | null>): string {
  let end = sql.length;
  while (end > 0 && /[\s;]/.test(sql[end - 1]!)) end--;
  return createHash('sha256').update(JSON.stringify([identity, resource, sql.slice(0, end), parameters])).digest('hex');
}

/**
 * The parameters of the first Bind of prepared statement `name` among the
 * kept bytes (the part after portal and statement names, as the tracker
 * keeps it); undefined when it has not arrived.
 */
export function bindParameters(kept: Buffer, name: string): Buffer | undefined {
  let pos = 0;
  while (pos + 5 <= kept.length) {
    const total = kept.readInt32BE(pos + 1) + 1;
    if (total < 5 || pos + total > kept.length) return undefined;
    if (kept[pos] === BIND) {
      const portalEnd = kept.indexOf(0, pos + 5);
      const stmtEnd = portalEnd < 0 ? -1 : kept.indexOf(0, portalEnd + 1);
      if (stmtEnd < 0 || stmtEnd >= pos + total) return undefined;
      if (kept.toString('utf8', portalEnd + 1, stmtEnd) === name) return kept.subarray(stmtEnd + 1, pos + total);
    }
    pos += total;
  }
  return undefined;
}

/** A NoticeResponse: the fields an ErrorResponse has, under the notice's type byte. */
export function noticeResponse(message: string): Buffer {
  const out = errorResponse({ severity: 'NOTICE', code: '01000', message });
  out[0] = NOTICE_RESPONSE;
  return out;
}
