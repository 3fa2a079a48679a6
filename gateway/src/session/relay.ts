// The relay of one admitted session: the client's messages through the policy
// gate to the upstream, the server's answers through the tracker to the
// recorder and back, backpressure both ways, and the session's end. It holds
// the audit ordering: results reach the client only after their audit record
// is written.
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { SqlState, authenticationOk, errorResponse } from '@warden/proto/pgwire';
import type { AuditSink } from '../audit/events.js';
import { ResultMasking, UnmaskableResult } from '../masking/results.js';
import type { Upstream } from '../tunnel/index.js';
import { Refusal, type Admission } from './admission.js';
import { clientMessages } from './client-messages.js';
import type { MessageFilter } from './filter.js';
import { SessionRecorder, type ParameterRecording } from './recorder.js';
import { serverMessages } from './server-messages.js';
import { ResponseTracker } from './tracker.js';

export interface RelayDeps {
  audit: AuditSink;
  gatewayId: string;
  parameterRecording: ParameterRecording;
}

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
  private readonly fromClient: MessageFilter;
  private readonly fromServer: MessageFilter;
  private bytesOut = 0;

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
    const tracker = new ResponseTracker(
      (s) => {
        // What ran moves the session's search_path; what the server skipped did not run.
        if (!s.skipped) gate.settled(s.effects, !s.error, s.info);
        recorder.statement(s, performance.now());
      },
      () => performance.now(),
      (status, idle) => gate.ready(status, idle),
    );
    this.fromClient = clientMessages(gate, tracker);
    const masking = admission.masks ? new ResultMasking(admission.masks, () => tracker.head()) : undefined;
    this.fromServer = serverMessages(upstream.cancelKey, tracker, masking);
  }

  /** Tells the client it is in, then relays: `early` is what it sent after the password. */
  start(early: Buffer): void {
    const { socket, upstream } = this;
    socket.write(authenticationOk());
    upstream.start({
      data: (chunk) => this.server(chunk),
      drain: () => socket.resume(),
      // After the results still waiting for their audit write, so they reach the client first.
      end: (error) => this.afterAuditWrite(() => this.upstreamEnded(error)),
    });
    socket.on('drain', () => upstream.resume());
    if (early.length) this.client(early);
    socket.resume();
  }

  /** The hot path: scan, decide (a cache hit for a statement seen before), forward. */
  client(chunk: Buffer): void {
    let out: Buffer;
    try {
      out = this.fromClient.filter(chunk);
    } catch (err) {
      return this.host.refuse(new Refusal(SqlState.protocolViolation, `invalid message: ${(err as Error).message}`));
    }
    if (out.length && !this.upstream.write(out)) this.socket.pause();
  }

  private server(chunk: Buffer): void {
    this.bytesOut += chunk.length;
    let out: Buffer;
    try {
      out = this.fromServer.filter(chunk);
    } catch (err) {
      if (err instanceof UnmaskableResult) {
        this.host.log.error({ err: err.message }, 'result could not be masked');
        return this.host.refuse(new Refusal(SqlState.insufficientPrivilege, `warden: a result could not be masked with certainty (${err.message}); the session was ended rather than show it`));
      }
      this.host.log.error({ err }, 'invalid message from upstream');
      return this.host.refuse(new Refusal(SqlState.protocolViolation, 'the upstream server sent an invalid message'));
    }
    if (out.length === 0) return;
    this.afterAuditWrite(() => {
      if (this.socket.writable && !this.socket.write(out)) this.upstream.pause();
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
    this.upstream.close();
    if (!this.socket.destroyed && !this.socket.writableEnded) this.socket.end();
    const details = { durationMs, bytesIn, bytesOut: this.bytesOut, reason };
    this.recorder.end(details);
    this.host.log.info(details, 'session ended');
  }
}
