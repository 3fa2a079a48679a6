// Everything before the relay: SSL/GSS negotiation, the startup packet's
// rules, the password (the token), the auth timeout, admission and the
// upstream open. It ends in one of two ways: admitted (the Session starts the
// relay) or refused (with the auth-failure record built here).
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { AuditEvent } from '@warden/proto';
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
  negotiateProtocolVersion,
  parsePassword,
  parseStartupPacket,
  sslAnswer,
} from '@warden/proto/pgwire';
import type { LoginLimiter } from '../auth/limiter.js';
import type { CancelKeys, Upstream } from '../tunnel/index.js';
import { LoginLimited, Refusal, type Admission } from './admission.js';
import { authFailureEvent } from './recorder.js';

export interface HandshakeDeps {
  /** Matches CancelRequests against the keys this gateway handed out. */
  keys: Pick<CancelKeys, 'cancel'>;
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
  /** Called once when the handshake is over (admitted, refused or gone): the connection no longer waits to log in. */
  handshakeOver?(): void;
  /** Failed logins per address and login name; past its limits, logins are refused before a token is read. */
  logins?: LoginLimiter;
  gatewayId: string;
}

/** What the handshake needs from the Session that runs it. */
export interface HandshakeHost {
  readonly log: Logger;
  /** Re-read after awaits: the client may have gone meanwhile. */
  readonly closed: boolean;
  /** Adds fields to every later log line. */
  rebind(fields: Record<string, unknown>): void;
  /** The connection is now TLS (the plain socket's data and close listeners are gone): listen on `secure`. */
  upgraded(secure: TLSSocket): void;
  admitted(admission: Admission, upstream: Upstream): void;
  refuse(refusal: PgError, cause?: unknown): void;
  /** Ends the connection without an answer (a CancelRequest). */
  close(): void;
}

/** Startup parameters that would let a client pick its upstream identity. */
/**
 * Refusals that count as a failed login: a bad token (28P01) and broken
 * protocol (08P01). A good token without a grant is not a guess at a
 * credential, and a gateway that cannot check tokens (28000) is not the
 * client's fault.
 */
const FAILED_LOGIN = /^(28P01|08P01)$/;

const WITHHELD_PARAMETERS = new Set(['user', 'database', 'replication', 'options', 'role', 'session_authorization']);

export class Handshake {
  private state: 'startup' | 'password' | 'opening' = 'startup';
  private readonly reader = new MessageReader();
  /** The startup parameters, once the startup packet has passed its rules. */
  parameters: Record<string, string> = {};
  private encrypted = false;
  private addressChecked = false;
  private over = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private socket: Socket,
    private readonly deps: HandshakeDeps,
    private readonly host: HandshakeHost,
  ) {
    this.timer = setTimeout(
      () => host.refuse(new Refusal(SqlState.invalidAuthorization, 'authentication took too long; the gateway closed the connection')),
      deps.authTimeoutMs,
    );
  }

  /** Client bytes before the relay. */
  push(chunk: Buffer): void {
    this.reader.push(chunk);
    try {
      // A limited address is refused before its first bytes are even parsed (a flood of garbage is a flood of failures).
      if (this.state === 'startup' && !this.addressChecked) {
        this.addressChecked = true;
        this.checkLimits(undefined);
      }
      this.step();
    } catch (err) {
      if (err instanceof PgError) this.host.refuse(err);
      else if (err instanceof ProtocolError) this.host.refuse(new Refusal(SqlState.protocolViolation, `invalid startup: ${err.message}`));
      else this.host.refuse(new Refusal(SqlState.internalError, 'internal error in the gateway'), err);
    }
  }

  /** Client bytes that arrived after the password, to be relayed. */
  drain(): Buffer {
    return this.reader.drain();
  }

  /** The handshake is over (admitted or closed): the auth timeout no longer applies. */
  stop(): void {
    clearTimeout(this.timer);
    if (this.over) return;
    this.over = true;
    this.deps.handshakeOver?.();
  }

  /**
   * The record of this connection being refused before its session began,
   * counted as a failed login when it is one; none for a refusal by the
   * login limits, which the gateway reports in sums.
   */
  refused(refusal: PgError): AuditEvent | undefined {
    if (refusal instanceof LoginLimited) return undefined;
    if (FAILED_LOGIN.test(refusal.sqlstate) && this.deps.logins?.failed(this.socket.remoteAddress ?? '', this.parameters.user)) {
      this.host.log.warn({ limits: this.deps.logins.limits }, 'too many failed logins from this address or as this name: further logins are refused until the window ends');
    }
    const client = `${this.socket.remoteAddress}:${this.socket.remotePort}`;
    return authFailureEvent(this.deps.gatewayId, client, this.parameters.database, refusal);
  }

  /** Handles every complete pre-relay message that has arrived. */
  private step(): void {
    while (!this.host.closed && (this.state === 'startup' || this.state === 'password')) {
      if (this.state === 'startup') {
        const msg = this.reader.nextUntyped(MAX_STARTUP_PACKET);
        if (!msg) return;
        this.onStartupPacket(msg.body);
      } else {
        const msg = this.reader.nextTyped(MAX_PASSWORD_MESSAGE);
        if (!msg) return;
        if (msg.type !== PASSWORD_MESSAGE) throw new ProtocolError('expected a password message');
        this.state = 'opening';
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
        this.host.close();
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
    this.host.upgraded(secure);
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
    this.checkLimits(params.user);
    this.host.rebind({ resource: params.database, user: params.user, application: params.application_name });
    this.state = 'password';
    this.socket.write(authenticationCleartextPassword());
  }

  /** Throws LoginLimited when the client's address, or the login name it gave, failed too often lately. */
  private checkLimits(name: string | undefined): void {
    const limited = this.deps.logins?.admit(this.socket.remoteAddress ?? '', name);
    if (!limited) return;
    throw new LoginLimited(
      SqlState.rejectedConnection,
      `too many failed logins ${limited.by === 'address' ? `from ${limited.key}` : `as ${limited.key}`}; retry in ${limited.retryInS} s`,
      'Check the token the client sends (warden token, or your CI issuer); the limit lifts by itself.',
    );
  }

  private async authenticate(token: string): Promise<void> {
    const host = this.host;
    try {
      const admission = await this.deps.admit(token, this.parameters.database!);
      if (host.closed) return;
      host.rebind({ identity: admission.identity, agent: admission.agent });
      const passOn: Record<string, string> = {};
      for (const [k, v] of Object.entries(this.parameters)) if (!WITHHELD_PARAMETERS.has(k)) passOn[k] = v;
      // Startup parameters are settings like any SET, and search_path among them is where names resolve.
      const refused = admission.gate.startup(passOn);
      if (refused) throw new Refusal(refused.sqlstate, refused.message, 'Leave the parameter out, or ask a Warden admin for a rule that allows it.');
      const upstream = await this.deps.openUpstream(admission, passOn);
      if (host.closed) return upstream.close();
      this.stop();
      host.admitted(admission, upstream);
    } catch (err) {
      if (err instanceof PgError) host.refuse(err);
      else host.refuse(new Refusal(SqlState.internalError, 'internal error in the gateway'), err);
    }
  }
}
