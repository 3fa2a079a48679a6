// One client connection, from the first byte to the last: SSL negotiation,
// startup, token authentication, upstream open, then the relay. Everything it
// needs from outside (authentication, policy, the tunnel, the audit sink, TLS)
// is handed in.
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { Upstream } from '../tunnel/upstream.js';
import {
  MAX_PASSWORD_MESSAGE,
  MAX_STARTUP_PACKET,
  MessageReader,
  PASSWORD_MESSAGE,
  PROTOCOL_3_0,
  PgError,
  ProtocolError,
  SqlState,
  authenticationCleartextPassword,
  authenticationOk,
  errorResponse,
  negotiateProtocolVersion,
  parsePassword,
  parseStartupPacket,
  sslAnswer,
} from '@warden/proto/pgwire';
import type { AuditSink } from '../audit/events.js';
import type { Rule, StatementGate } from '../policy/index.js';
import { clientMessages } from './client-messages.js';
import type { MessageFilter } from './filter.js';
import type { CancelKeys } from './keys.js';
import { SessionRecorder, authFailureEvent, type ParameterRecording } from './recorder.js';
import { serverMessages } from './server-messages.js';
import { ResponseTracker } from './tracker.js';

/** A refusal the client sees as a FATAL ErrorResponse. */
export class Refusal extends PgError {
  constructor(sqlstate: string, message: string, hint?: string) {
    super(sqlstate, message, { hint });
  }
}

export interface Admission {
  identity: string;
  groups: string[];
  resource: string;
  agent: string;
  readOnly: boolean;
  /** Decides each statement of this session. */
  gate: StatementGate;
  /** The token's claims (never the token itself), for the audit record. */
  claims: Record<string, unknown>;
}

export interface SessionDeps {
  log: Logger;
  keys: CancelKeys;
  /** Present when the gateway has a certificate. */
  tls?: SecureContext;
  /** Whether a token may travel without TLS from this address (local mode, loopback). */
  allowPlaintext(remoteAddress: string | undefined): boolean;
  /** Validates the token and the grant; throws a PgError. */
  admit(token: string, resource: string): Promise<Admission>;
  /** Opens the upstream session through the resource's agent; throws a PgError. */
  openUpstream(admission: Admission, parameters: Record<string, string>): Promise<Upstream>;
  /** Milliseconds a client may take from connect to authenticated. */
  authTimeoutMs: number;
  audit: AuditSink;
  gatewayId: string;
  parameterRecording: ParameterRecording;
}

/** Startup parameters that would let a client pick its upstream identity. */
const WITHHELD_PARAMETERS = new Set(['user', 'database', 'replication', 'options', 'role', 'session_authorization']);

type Phase = 'startup' | 'password' | 'opening' | 'relay' | 'closed';

export class Session {
  private phase: Phase = 'startup';
  private socket: Socket;
  private readonly reader = new MessageReader();
  private parameters: Record<string, string> = {};
  private upstream: Upstream | null = null;
  /** Set once the token and grant are checked. */
  admission: Admission | null = null;
  private filter: MessageFilter | null = null;
  private recorder: SessionRecorder | null = null;
  private key: { pid: number; secret: number } | null = null;
  private readonly authTimer: NodeJS.Timeout;
  private readonly startedAt = Date.now();
  private bytesIn = 0;
  private bytesOut = 0;
  private log: Logger;
  private logFields: Record<string, unknown>;
  private encrypted = false;

  constructor(
    socket: Socket,
    private readonly deps: SessionDeps,
  ) {
    this.socket = socket;
    this.log = deps.log.child((this.logFields = { client: `${socket.remoteAddress}:${socket.remotePort}` }));
    socket.setNoDelay(true);
    this.attach(socket);
    this.authTimer = setTimeout(
      () => this.refuse(new Refusal(SqlState.invalidAuthorization, 'authentication took too long; the gateway closed the connection')),
      deps.authTimeoutMs,
    );
  }

  /** Adds fields to every later log line: one child of the gateway's logger, not a chain (chained children keep their parents). */
  private rebind(fields: Record<string, unknown>): void {
    this.logFields = { ...this.logFields, ...fields };
    this.log = this.deps.log.child(this.logFields);
  }

  /** Re-read after awaits: the client may have gone meanwhile. */
  private get closed(): boolean {
    return this.phase === 'closed';
  }

  private attach(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => this.onClientData(chunk));
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'client socket error'));
    socket.on('close', () => this.close());
  }

  private onClientData(chunk: Buffer): void {
    this.bytesIn += chunk.length;
    if (this.phase === 'relay') return this.relayClient(chunk);
    this.reader.push(chunk);
    try {
      this.handshake();
    } catch (err) {
      if (err instanceof PgError) this.refuse(err);
      else if (err instanceof ProtocolError) this.refuse(new Refusal(SqlState.protocolViolation, `invalid startup: ${err.message}`));
      else this.refuse(new Refusal(SqlState.internalError, 'internal error in the gateway'), err);
    }
  }

  /** The hot path: scan, decide (a cache hit for a statement seen before), forward. */
  private relayClient(chunk: Buffer): void {
    let out: Buffer;
    try {
      out = this.filter!.filter(chunk);
    } catch (err) {
      return this.refuse(new Refusal(SqlState.protocolViolation, `invalid message: ${(err as Error).message}`));
    }
    if (out.length && !this.upstream!.write(out)) this.socket.pause();
  }

  /** Handles every complete pre-relay message that has arrived. */
  private handshake(): void {
    while (this.phase === 'startup' || this.phase === 'password') {
      if (this.phase === 'startup') {
        const msg = this.reader.nextUntyped(MAX_STARTUP_PACKET);
        if (!msg) return;
        this.onStartupPacket(msg.body);
      } else {
        const msg = this.reader.nextTyped(MAX_PASSWORD_MESSAGE);
        if (!msg) return;
        if (msg.type !== PASSWORD_MESSAGE) throw new ProtocolError('expected a password message');
        this.phase = 'opening';
        this.socket.pause();
        void this.authenticate(parsePassword(msg.body));
      }
    }
  }

  private onStartupPacket(body: Buffer): void {
    const packet = parseStartupPacket(body);
    switch (packet.kind) {
      case 'ssl': {
        const accept = !!this.deps.tls && !this.encrypted;
        this.socket.write(sslAnswer(accept));
        if (accept) this.startTls();
        return;
      }
      case 'gssenc':
        this.socket.write(sslAnswer(false));
        return;
      case 'cancel':
        // As Postgres does: act if the key matches, answer nothing either way.
        this.deps.keys.cancel(packet.pid, packet.secret, this.socket.remoteAddress);
        this.close();
        return;
      case 'startup':
        return this.onStartup(packet.parameters, packet.minor);
    }
  }

  private startTls(): void {
    // Bytes sent before the handshake would be unencrypted, so they are refused.
    if (this.reader.drain().length > 0) throw new ProtocolError('data received after SSLRequest before the TLS handshake');
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    const secure = new TLSSocket(plain, { isServer: true, secureContext: this.deps.tls });
    this.socket = secure;
    this.encrypted = true;
    this.attach(secure);
  }

  private onStartup(params: Record<string, string>, minor: number): void {
    // As Postgres does for a newer 3.x or protocol options: name what it speaks, carry on without them.
    const options = Object.keys(params).filter((k) => k.startsWith('_pq_.'));
    if (minor > 0 || options.length) {
      this.socket.write(negotiateProtocolVersion(PROTOCOL_3_0, options));
      for (const o of options) delete params[o];
    }
    if (params.replication && params.replication !== 'false' && params.replication !== 'off') {
      throw new Refusal(SqlState.featureNotSupported, 'replication connections are not supported through Warden');
    }
    if (!params.database) {
      throw new Refusal(SqlState.invalidCatalogName, 'no database given', 'Set the database name (dbname) to the Warden resource you want to reach.');
    }
    if (!this.encrypted && !this.deps.allowPlaintext(this.socket.remoteAddress)) {
      throw new Refusal(
        SqlState.invalidAuthorization,
        'this gateway accepts tokens only over TLS',
        'Connect with sslmode=require (or verify-full).',
      );
    }
    this.parameters = params;
    this.rebind({ resource: params.database, user: params.user, application: params.application_name });
    this.phase = 'password';
    this.socket.write(authenticationCleartextPassword());
  }

  private async authenticate(token: string): Promise<void> {
    try {
      const admission = await this.deps.admit(token, this.parameters.database!);
      if (this.closed) return;
      this.rebind({ identity: admission.identity, agent: admission.agent });
      const passOn: Record<string, string> = {};
      for (const [k, v] of Object.entries(this.parameters)) if (!WITHHELD_PARAMETERS.has(k)) passOn[k] = v;
      // Startup parameters are settings like any SET, and search_path among them is where names resolve.
      const refused = admission.gate.startup(passOn);
      if (refused) throw new Refusal(refused.sqlstate, refused.message, 'Leave the parameter out, or ask a Warden admin for a rule that allows it.');
      const upstream = await this.deps.openUpstream(admission, passOn);
      if (this.closed) return upstream.close();
      this.admission = admission;
      this.startRelay(upstream, admission);
      this.log.info({ groups: admission.groups, readOnly: admission.readOnly }, 'session started');
    } catch (err) {
      if (err instanceof PgError) this.refuse(err);
      else this.refuse(new Refusal(SqlState.internalError, 'internal error in the gateway'), err);
    }
  }

  private startRelay(upstream: Upstream, admission: Admission): void {
    clearTimeout(this.authTimer);
    this.upstream = upstream;
    const key = (this.key = this.deps.keys.issue(upstream));
    const recorder = (this.recorder = new SessionRecorder(
      this.deps.audit,
      { gateway: this.deps.gatewayId, sessionId: upstream.sessionId, identity: admission.identity, resource: admission.resource, agent: upstream.agent },
      this.deps.parameterRecording,
    ));
    recorder.start({
      claims: admission.claims,
      groups: admission.groups,
      clientAddress: `${this.socket.remoteAddress}:${this.socket.remotePort}`,
      applicationName: this.parameters.application_name,
      user: this.parameters.user,
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
    this.filter = clientMessages(admission.gate, tracker);
    const fromServer = serverMessages(key, tracker);
    this.socket.write(authenticationOk());
    const early = this.reader.drain();
    this.phase = 'relay';
    upstream.start({
      data: (chunk) => {
        this.bytesOut += chunk.length;
        let out: Buffer;
        try {
          out = fromServer.filter(chunk);
        } catch (err) {
          this.log.error({ err }, 'invalid message from upstream');
          return this.refuse(new Refusal(SqlState.protocolViolation, 'the upstream server sent an invalid message'));
        }
        if (out.length === 0) return;
        // Results reach the client only after their audit record is written (one write per turn for all sessions).
        this.afterAuditWrite(() => {
          if (this.socket.writable && !this.socket.write(out)) upstream.pause();
        });
      },
      drain: () => this.socket.resume(),
      // After the results still waiting for their audit write, so they reach the client first.
      end: (error) => this.afterAuditWrite(() => {
        if (error && this.phase === 'relay') {
          this.log.warn({ err: error.message }, 'upstream session lost');
          this.socket.end(
            errorResponse({
              severity: 'FATAL',
              code: SqlState.connectionFailure,
              message: `lost the connection to resource ${this.parameters.database} through agent ${upstream.agent}`,
            }),
          );
          this.close('upstream lost');
        } else {
          this.socket.end();
          this.close('upstream closed');
        }
      }),
    });
    this.socket.on('drain', () => upstream.resume());
    if (early.length) this.relayClient(early);
    this.socket.resume();
  }

  private afterAuditWrite(fn: () => void): void {
    if (this.deps.audit.afterWrite) this.deps.audit.afterWrite(fn);
    else fn();
  }

  /** A new policy version: the session continues under the new rules, or ends if none is left. */
  setRules(rules: Rule[]): void {
    if (!this.admission || this.closed) return;
    if (rules.length === 0) {
      const { identity, resource } = this.admission;
      return this.refuse(new Refusal(SqlState.insufficientPrivilege, `warden: ${identity} no longer has a grant on ${resource}; the session was ended`));
    }
    this.admission.gate.setRules(rules);
  }

  /** Sends a FATAL error and closes the connection. */
  private refuse(refusal: PgError, cause?: unknown): void {
    if (this.phase === 'closed') return;
    if (cause) this.log.error({ err: cause }, refusal.message);
    else this.log.info({ sqlstate: refusal.sqlstate, reason: refusal.message }, 'connection refused');
    if (this.phase !== 'relay') {
      const client = `${this.socket.remoteAddress}:${this.socket.remotePort}`;
      this.deps.audit.publish(authFailureEvent(this.deps.gatewayId, client, this.parameters.database, refusal));
    }
    this.socket.end(errorResponse({ severity: 'FATAL', code: refusal.sqlstate, message: refusal.message, hint: refusal.hint }));
    this.close(refusal.message);
  }

  close(reason = 'client disconnected'): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    clearTimeout(this.authTimer);
    if (this.key) this.deps.keys.release(this.key.pid);
    this.upstream?.close();
    if (!this.socket.destroyed && !this.socket.writableEnded) this.socket.end();
    if (this.recorder) {
      const details = { durationMs: Date.now() - this.startedAt, bytesIn: this.bytesIn, bytesOut: this.bytesOut, reason };
      this.recorder.end(details);
      this.log.info(details, 'session ended');
    }
  }
}
