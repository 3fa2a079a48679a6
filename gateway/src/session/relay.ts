// The relay of one admitted session: the client's messages through the policy
// gate to the upstream, the server's answers through the tracker to the
// recorder and back, backpressure both ways, and the session's end. It holds
// the audit ordering: results reach the client only after their audit record
// is written. A statement that needs approval is held here: the client's
// bytes from its message on are kept (bounded), and a
// PendingApproval (approvals/hold.ts) decides how the relay lets go.
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { PARSE, QUERY, SqlState, authenticationOk, errorResponse } from '@warden/proto/pgwire';
import type { AuditSink } from '../audit/events.js';
import { ResultMasking, UnmaskableResult } from '../masking/results.js';
import type { Upstream } from '../tunnel/index.js';
import { PendingApproval, noticeResponse, type ApprovalDeps, type HoldContext, type Release } from '../approvals/hold.js';
import type { CancelKeys } from '../tunnel/cancel-keys.js';
import { Refusal, type Admission } from './admission.js';
import { clientMessages, type HoldSwitch } from './client-messages.js';
import { MessageRefused, messageTypes, mib, type MemoryBudget, type MessageFilter } from './filter.js';
import { SessionRecorder, type ParameterRecording } from './recorder.js';
import { serverMessages } from './server-messages.js';
import { ResponseTracker } from './tracker.js';

const STATEMENT_MESSAGES = messageTypes(QUERY, PARSE);

export interface RelayDeps {
  audit: AuditSink;
  gatewayId: string;
  parameterRecording: ParameterRecording;
  /** Present when statements may be held for approval. */
  approvals?: ApprovalDeps;
  /** Where a CancelRequest is redirected to the held statement. */
  cancels?: Pick<CancelKeys, 'divert'>;
  /** Largest statement (Query or Parse message) read; larger ones end the session with 54000. */
  maxStatementBytes?: number;
  /** Memory for inspected messages still arriving, shared by every session. */
  statementMemory?: MemoryBudget;
}

/** Client bytes kept behind a held statement before the session is ended. */
export const MAX_KEPT_BYTES = 64 * 1024 * 1024;

/** What the relay needs from the Session that runs it. */
export interface RelayHost {
  readonly log: Logger;
  /** False once the session is closing. */
  readonly relaying: boolean;
  refuse(refusal: Refusal): void;
  close(reason: string): void;
}


export class Relay {
  private readonly recorder: SessionRecorder;
  private readonly tracker: ResponseTracker;
  private readonly fromClient: MessageFilter;
  private readonly fromServer: MessageFilter;
  private bytesOut = 0;
  private readonly holds: HoldSwitch | undefined;
  /** The statement held for approval, and the client bytes from its message on. */
  private hold: { pending: PendingApproval; kept: Buffer[]; size: number } | null = null;
  /** A NoticeResponse waiting for the server's stream to reach a message boundary. */
  private pendingNotice: Buffer | null = null;
  /** The upstream asked us to wait for drain. */
  private upstreamFull = false;
  /** What goes to the client after this turn's audit write: one write for all of it. */
  private toClient: Buffer[] | null = null;
  private readonly holdContext: HoldContext | undefined;

  /** Records the session's start and wires the gate and the recorder to the tracker. */
  constructor(
    private readonly socket: Socket,
    private readonly upstream: Upstream,
    admission: Admission,
    private readonly parameters: Record<string, string>,
    private readonly deps: RelayDeps,
    private readonly host: RelayHost,
  ) {
    const recorder = (this.recorder = new SessionRecorder(
      deps.audit,
      { gateway: deps.gatewayId, sessionId: upstream.sessionId, identity: admission.identity, resource: admission.resource, agent: upstream.agent },
      deps.parameterRecording,
    ));
    recorder.start({
      claims: admission.claims,
      groups: admission.groups,
      clientAddress: `${socket.remoteAddress}:${socket.remotePort}`,
      applicationName: parameters.application_name,
      user: parameters.user,
      access: admission.gate.ceiling,
      readOnly: admission.readOnly,
    });
    const gate = admission.gate;
    const tracker = (this.tracker = new ResponseTracker(
      (s) => {
        // What ran moves the session's search_path; what the server skipped did not run.
        if (!s.skipped) gate.settled(s.effects, !s.error, s.info);
        recorder.statement(s, performance.now());
      },
      () => performance.now(),
      (status, idle) => gate.ready(status, idle),
    ));
    const approvals = deps.approvals;
    if (approvals) {
      this.holds = { held: null, release: null };
      const explain = approvals.explain;
      this.holdContext = {
        client: approvals.client,
        explain: explain && ((sql, path) => explain(admission.resource, upstream.agent, sql, path)),
        // The gate's search_path, when it exposes one.
        searchPath: () => gate.searchPath,
        identity: admission.identity,
        resource: admission.resource,
        sessionId: upstream.sessionId,
        gatewayId: deps.gatewayId,
        reason: parameters.application_name ?? '',
        parameterRecording: deps.parameterRecording,
        defaultWaitSeconds: approvals.defaultWaitSeconds ?? 300,
        log: host.log,
      };
    }
    const max = deps.maxStatementBytes;
    this.fromClient = clientMessages(gate, tracker, this.holds, deps.audit.blocked && (() => deps.audit.blocked!()), {
      maxMessage: max,
      // Statement text, which is parsed: a Bind's parameters and a FunctionCall's arguments are not, and may be large.
      limited: STATEMENT_MESSAGES,
      tooLarge: (bytes) =>
        new MessageRefused(SqlState.programLimitExceeded, `warden: a statement of ${mib(bytes)} is larger than this gateway reads (${mib(max!)}, --max-statement-bytes); the session was ended`),
      budget: deps.statementMemory,
    });
    const masking = admission.masks ? new ResultMasking(admission.masks, () => tracker.head()) : undefined;
    this.fromServer = serverMessages(upstream.cancelKey, tracker, masking, deps.statementMemory);
  }

  /** Tells the client it is in, then relays: `early` is what it sent after the password. */
  start(early: Buffer): void {
    const { socket, upstream } = this;
    socket.write(authenticationOk());
    upstream.start({
      data: (chunk) => this.server(chunk),
      drain: () => {
        this.upstreamFull = false;
        if (!this.hold) socket.resume();
      },
      // After the results still waiting for their audit write, so they reach the client first.
      end: (error) => this.afterAuditWrite(() => this.upstreamEnded(error)),
    });
    socket.on('drain', () => upstream.resume());
    if (early.length) this.client(early);
    socket.resume();
  }

  /** A statement is running or held: the session is not idle, whatever the client sends. */
  get busy(): boolean {
    return this.hold !== null || this.tracker.waiting;
  }

  /** The hot path: scan, decide (a cache hit for a statement seen before), forward. */
  client(chunk: Buffer): void {
    if (this.hold) return this.keep(chunk);
    let out: Buffer;
    const tracker = this.tracker;
    try {
      out = this.fromClient.filter(chunk);
    } catch (err) {
      tracker.unsend();
      if (err instanceof MessageRefused) return this.host.refuse(new Refusal(err.sqlstate, err.message));
      return this.host.refuse(new Refusal(SqlState.protocolViolation, `invalid message: ${(err as Error).message}`));
    }
    // What may run is recorded before it goes: a gateway that dies now still leaves its record.
    if (tracker.sent.length) {
      const written = this.recorder.intend(tracker.sent);
      if (!written) {
        // Not forwarded: recorded as not run, and why.
        for (const s of tracker.sent) {
          s.skipped = true;
          s.error = { sqlstate: SqlState.diskFull, message: 'not run: its audit record could not be written' };
        }
        tracker.sent.length = 0;
        const why = this.deps.audit.blocked?.() ?? 'the audit sink refused it';
        return this.host.refuse(new Refusal(SqlState.diskFull, `warden: the statement was not run: its audit record could not be written (${why}); the session was ended`));
      }
      tracker.sent.length = 0;
    }
    if (out.length && !this.upstream.write(out)) {
      this.upstreamFull = true;
      this.socket.pause();
    }
    const rest = this.fromClient.held;
    if (rest) this.startHold(rest);
  }

  /** The filter stopped at a statement that needs approval: `rest` is its message and what followed it. */
  private startHold(rest: Buffer): void {
    const holds = this.holds!;
    const held = holds.held!;
    this.fromClient.held = holds.held = null;
    // The socket is still read: a paused one would not see the client leave, whose request must be withdrawn (keep() bounds what piles up).
    const hold = { kept: [rest], size: rest.length, pending: null as unknown as PendingApproval };
    hold.pending = new PendingApproval(held, () => Buffer.concat(hold.kept), this.holdContext!, {
      notice: (text) => this.notice(noticeResponse(text)),
      record: (e) => this.recorder.approval(e),
      done: (r) => this.release(r),
    });
    this.hold = hold;
    this.deps.cancels?.divert(this.upstream.cancelKey.pid, hold.pending);
    void hold.pending.start();
  }

  /** Client bytes behind the held statement: kept (bounded) until it is decided. */
  private keep(chunk: Buffer): void {
    const hold = this.hold!;
    hold.kept.push(chunk);
    hold.size += chunk.length;
    if (hold.size > MAX_KEPT_BYTES) {
      this.host.refuse(new Refusal(SqlState.configurationLimitExceeded, `warden: more than ${MAX_KEPT_BYTES >> 20} MB arrived while a statement was held for approval; the session was ended`));
    }
  }

  /** The held statement is decided: its message and what followed go through the filter again. */
  private release(r: Release): void {
    const hold = this.hold;
    if (!hold || !this.host.relaying) return;
    this.hold = null;
    this.deps.cancels?.divert(this.upstream.cancelKey.pid, undefined);
    this.holds!.release = r;
    this.client(hold.kept.length === 1 ? hold.kept[0]! : Buffer.concat(hold.kept));
    if (!this.hold && !this.upstreamFull) this.socket.resume();
  }

  /** A message of the gateway's own to the client: after the audit write, and never inside a server message. */
  private notice(msg: Buffer): void {
    if (this.fromServer.between) this.send(msg);
    else this.pendingNotice = msg;
  }

  private server(chunk: Buffer): void {
    this.bytesOut += chunk.length;
    let out: Buffer;
    try {
      out = this.fromServer.filter(chunk);
    } catch (err) {
      if (err instanceof MessageRefused) return this.host.refuse(new Refusal(err.sqlstate, err.message));
      if (err instanceof UnmaskableResult) {
        this.host.log.error({ err: err.message }, 'result could not be masked');
        return this.host.refuse(new Refusal(SqlState.insufficientPrivilege, `warden: a result could not be masked with certainty (${err.message}); the session was ended rather than show it`));
      }
      this.host.log.error({ err }, 'invalid message from upstream');
      return this.host.refuse(new Refusal(SqlState.protocolViolation, 'the upstream server sent an invalid message'));
    }
    if (this.pendingNotice && this.fromServer.between) {
      out = Buffer.concat([out, this.pendingNotice]);
      this.pendingNotice = null;
    }
    if (out.length === 0) return;
    this.send(out);
  }

  /** Bytes for the client, in order, once the audit records of this turn are written. */
  private send(out: Buffer): void {
    if (this.toClient) {
      this.toClient.push(out);
      return;
    }
    this.toClient = [out];
    this.afterAuditWrite(() => {
      const parts = this.toClient!;
      this.toClient = null;
      const socket = this.socket;
      if (!socket.writable) return;
      // Several parts go out corked: one writev, no copy.
      if (parts.length > 1) socket.cork();
      let full = false;
      for (const part of parts) full = !socket.write(part);
      if (parts.length > 1) socket.uncork();
      if (full) this.upstream.pause();
    });
  }

  private upstreamEnded(error: Error | undefined): void {
    if (error && this.host.relaying) {
      this.host.log.warn({ err: error.message }, 'upstream session lost');
      this.socket.end(
        errorResponse({
          severity: 'FATAL',
          code: SqlState.connectionFailure,
          message: `lost the connection to resource ${this.parameters.database} through agent ${this.upstream.agent}`,
        }),
      );
      this.host.close('upstream lost');
    } else {
      this.socket.end();
      this.host.close('upstream closed');
    }
  }

  /** The one place that orders client writes behind the audit write (one write per turn for all sessions). */
  private afterAuditWrite(fn: () => void): void {
    if (this.deps.audit.afterWrite) this.deps.audit.afterWrite(fn);
    else fn();
  }

  /** Ends the upstream and the client connection, and records the session's end. */
  close(reason: string, durationMs: number, bytesIn: number): void {
    // A statement still held is withdrawn; its record comes before the session's end.
    this.hold?.pending.abandon();
    this.hold = null;
    this.upstream.close();
    this.fromClient.dispose();
    this.fromServer.dispose();
    if (!this.socket.destroyed && !this.socket.writableEnded) this.socket.end();
    const details = { durationMs, bytesIn, bytesOut: this.bytesOut, reason };
    // Statements still unanswered get a record saying their outcome is unknown, before the session's end.
    this.tracker.abandon(`the session ended (${reason})`);
    this.recorder.end(details);
    this.host.log.info(details, 'session ended');
  }
}
