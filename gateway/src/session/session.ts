// One client connection, from the first byte to the last: a small state
// machine that runs the handshake (handshake.ts), then the relay (relay.ts),
// and closes once. Everything it needs from outside (authentication, policy,
// the tunnel, the audit sink, TLS) is handed in.
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { type PgError, SqlState, errorResponse } from '@warden/proto/pgwire';
import { sameMasks } from '../masking/plan.js';
import type { MaskSet } from '../masking/types.js';
import type { Rule } from '../policy/index.js';
import type { Upstream } from '../tunnel/index.js';
import { LoginLimited, Refusal, type Admission } from './admission.js';
import { Handshake, type HandshakeDeps } from './handshake.js';
import { Relay, type RelayDeps } from './relay.js';

export { Refusal, type Admission } from './admission.js';

export interface SessionDeps extends HandshakeDeps, RelayDeps {
  log: Logger;
}

type Phase = 'handshake' | 'relay' | 'closed';

export class Session {
  private phase: Phase = 'handshake';
  private socket: Socket;
  private readonly handshake: Handshake;
  private relay: Relay | null = null;
  /** Set once the token and grant are checked and the upstream is open. */
  admission: Admission | null = null;
  private readonly startedAt = Date.now();
  private bytesIn = 0;
  /** Client bytes came since the last idle check. */
  private active = true;
  private idleSince = 0;
  log: Logger;
  private logFields: Record<string, unknown>;

  constructor(
    socket: Socket,
    private readonly deps: SessionDeps,
  ) {
    this.socket = socket;
    this.log = deps.log.child((this.logFields = { client: `${socket.remoteAddress}:${socket.remotePort}` }));
    socket.setNoDelay(true);
    this.attach(socket);
    this.handshake = new Handshake(socket, deps, this);
  }

  /** Adds fields to every later log line: one child of the gateway's logger, not a chain (chained children keep their parents). */
  rebind(fields: Record<string, unknown>): void {
    this.logFields = { ...this.logFields, ...fields };
    this.log = this.deps.log.child(this.logFields);
  }

  /** Re-read after awaits: the client may have gone meanwhile. */
  get closed(): boolean {
    return this.phase === 'closed';
  }

  get relaying(): boolean {
    return this.phase === 'relay';
  }

  private attach(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.bytesIn += chunk.length;
      this.active = true;
      if (this.relay) this.relay.client(chunk);
      else this.handshake.push(chunk);
    });
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'client socket error'));
    socket.on('close', () => this.close());
  }

  // --- HandshakeHost -------------------------------------------------------

  /** @internal */
  upgraded(secure: TLSSocket): void {
    this.socket = secure;
    this.attach(secure);
  }

  /** @internal */
  admitted(admission: Admission, upstream: Upstream): void {
    this.admission = admission;
    const relay = new Relay(this.socket, upstream, admission, this.handshake.parameters, this.deps, this);
    const early = this.handshake.drain();
    this.phase = 'relay';
    this.relay = relay;
    relay.start(early);
    this.log.info({ groups: admission.groups, readOnly: admission.readOnly }, 'session started');
  }

  /**
   * Called every second or so by the gateway: a session that sent nothing,
   * with nothing running or held, for `limitMs` is ended as Postgres' own
   * idle_session_timeout does (57P05).
   */
  idleCheck(limitMs: number): void {
    if (!this.relay || this.phase !== 'relay') return;
    const now = Date.now();
    if (this.active || this.relay.busy) {
      this.active = false;
      this.idleSince = now;
    } else if (now - this.idleSince >= limitMs) {
      this.refuse(new Refusal(SqlState.idleSessionTimeout, `warden: the session sent nothing for ${limitMs / 1000} s (--idle-session-timeout) and was ended`));
    }
  }

  // --- both ------------------------------------------------------------------

  /**
   * A new policy version: the session continues under the new rules, or
   * ends if none is left, or if the masks on its results changed (rows
   * already in flight were masked the old way; a new session starts clean).
   */
  setPolicy(rules: Rule[], masks: MaskSet | undefined): void {
    if (!this.admission || this.closed) return;
    const { identity, resource } = this.admission;
    if (rules.length === 0) {
      return this.refuse(new Refusal(SqlState.insufficientPrivilege, `warden: ${identity} no longer has a grant on ${resource}; the session was ended`));
    }
    if (!sameMasks(masks, this.admission.masks?.set)) {
      return this.refuse(new Refusal(SqlState.insufficientPrivilege, `warden: the masks on ${identity}'s results on ${resource} changed; the session was ended, so reconnect to continue under them`));
    }
    this.admission.gate.setRules(rules, this.admission.masks);
  }

  /** Sends a FATAL error and closes the connection; before the relay, the refusal is audited as an auth failure. */
  refuse(refusal: PgError, cause?: unknown): void {
    if (this.phase === 'closed') return;
    if (cause) this.log.error({ err: cause }, refusal.message);
    // Refusals by the login limits are logged and recorded in sums by the gateway.
    else if (!(refusal instanceof LoginLimited)) this.log.info({ sqlstate: refusal.sqlstate, reason: refusal.message }, 'connection refused');
    if (this.phase === 'handshake') {
      const event = this.handshake.refused(refusal);
      if (event) this.deps.audit.publish(event);
    }
    this.socket.end(errorResponse({ severity: 'FATAL', code: refusal.sqlstate, message: refusal.message, hint: refusal.hint }));
    this.close(refusal.message);
  }

  close(reason = 'client disconnected'): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.handshake.stop();
    if (this.relay) this.relay.close(reason, Date.now() - this.startedAt, this.bytesIn);
    else if (!this.socket.destroyed && !this.socket.writableEnded) this.socket.end();
  }
}
