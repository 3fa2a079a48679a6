// The agent's link to one gateway: a connection to its tunnel listener that
// starts with HELLO (enrollment token and AgentHello) and then carries every
// session as a channel: OPEN from the gateway, READY or FAILED back, DATA
// both ways. The link is redialled with capped exponential backoff whenever
// it ends.
import {
  type BackoffOptions,
  DEFAULT_BACKOFF,
  decodeCancelKey,
  decodeWelcome,
  dialLink,
  encodeHello,
  FrameType,
  type Link,
  LINK_FEATURE_CANCEL_KEY,
  LINK_VERSION,
  type LinkOptions,
  type LinkOwner,
  LinkClosedError,
  LinkProtocolError,
  OpenSession,
  RetryTimer,
  SessionFailed,
} from '@warden/proto';
import type { Logger } from 'pino';
import { errorSummary, RelaySession, type SessionContext } from '../session.js';

/** State shared by every gateway connection of one agent. */
export interface AgentContext extends SessionContext {
  version: string;
  /** Every live session of the agent, by session id. */
  sessions: Map<string, RelaySession>;
}

export interface GatewayConnectionOptions {
  /** host:port of the gateway's tunnel listener. */
  address: string;
  /** Gateway id from the control plane, for logs. */
  id?: string;
  /** TLS to the gateway when `ca` (a PEM file) is set; plain TCP otherwise. */
  tls?: { ca?: string };
  backoff?: BackoffOptions;
  /** A link that lived this long counts as healthy: the next retry starts from the base delay. */
  healthyAfterMs?: number;
  /** Window and keepalive settings (tests). */
  link?: LinkOptions;
}

export class GatewayConnection implements LinkOwner {
  readonly address: string;
  private readonly log: Logger;
  private readonly healthyAfterMs: number;
  private link: Link | undefined;
  private dialing = false;
  private readonly retries: RetryTimer;
  private stopped = false;
  private connectedFlag = false;
  private linkStartedAt = 0;
  /** Sessions opened through this gateway. */
  readonly sessions = new Set<RelaySession>();
  /** Number of dials so far (for tests and logs). */
  dials = 0;

  constructor(
    private readonly ctx: AgentContext,
    private readonly opts: GatewayConnectionOptions,
  ) {
    this.address = opts.address;
    this.retries = new RetryTimer(() => this.dial(), opts.backoff ?? DEFAULT_BACKOFF);
    this.healthyAfterMs = opts.healthyAfterMs ?? 10_000;
    this.log = ctx.log.child({ gateway: opts.address, ...(opts.id ? { gatewayId: opts.id } : {}) });
  }

  /** True while the link is up and the gateway has welcomed this agent. */
  get connected(): boolean {
    return this.connectedFlag;
  }

  start(): void {
    if (this.stopped || this.link || this.dialing || this.retries.pending) return;
    this.dial();
  }

  /**
   * Stops dialling. With `closeSessions`, live sessions are ended too and the
   * promise waits for them; otherwise the gateway is told to open no more
   * (GOAWAY), the live sessions run to their natural end and the link closes
   * after the last one.
   */
  async stop(opts: { closeSessions?: boolean } = {}): Promise<void> {
    this.stopped = true;
    this.retries.cancel();
    this.connectedFlag = false;
    const link = this.link;
    if (opts.closeSessions) {
      for (const s of this.sessions) s.shutdown();
      await Promise.all([...this.sessions].map((s) => s.done));
    }
    if (!link) return;
    if (this.sessions.size === 0) link.close();
    else link.send(FrameType.GOAWAY, 0);
    // Otherwise the last session to finish closes the link (see openSession).
  }

  private dial(): void {
    if (this.stopped) return;
    this.dials++;
    this.dialing = true;
    const tls = this.opts.tls?.ca ? { ca: this.opts.tls.ca } : undefined;
    dialLink({ ...this.opts.link, address: this.address, tls }, this).then(
      (link) => {
        this.dialing = false;
        if (this.stopped) {
          link.close();
          return;
        }
        this.link = link;
        this.linkStartedAt = Date.now();
        link.send(
          FrameType.HELLO,
          0,
          encodeHello(
            this.ctx.token,
            {
              agentName: this.ctx.agentName,
              version: this.ctx.version,
              resources: Object.keys(this.ctx.resources).sort(),
              features: [LINK_FEATURE_CANCEL_KEY],
            },
            link.window,
          ),
        );
      },
      (err: unknown) => {
        this.dialing = false;
        const attempt = this.retries.attempt;
        const level = attempt === 0 || attempt % 10 === 0 ? 'warn' : 'debug';
        this.log[level]({ err: errorSummary(err), attempt }, 'could not reach the gateway');
        this.scheduleRetry();
      },
    );
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    const delay = this.retries.schedule();
    if (delay !== undefined) this.log.debug({ delayMs: delay, attempt: this.retries.attempt }, 'redialling the gateway');
  }

  // --- LinkOwner ----------------------------------------------------------

  /** @internal */
  frame(link: Link, type: number, channel: number, payload: Buffer): void {
    switch (type) {
      case FrameType.WELCOME: {
        const welcome = decodeWelcome(payload);
        if (welcome.version !== LINK_VERSION) throw new LinkProtocolError(`the gateway speaks link version ${welcome.version}`);
        link.peerWindow = welcome.window;
        if (link === this.link && !this.connectedFlag && !this.stopped) {
          this.connectedFlag = true;
          this.retries.reset();
          this.log.info('connected to gateway');
        }
        return;
      }
      case FrameType.OPEN: {
        let open: OpenSession;
        try {
          open = OpenSession.decode(payload);
        } catch {
          throw new LinkProtocolError('OPEN carries an invalid OpenSession');
        }
        // A view into the link's read slab would keep the whole slab for the session's life.
        open.cancelSecret = Buffer.from(open.cancelSecret);
        this.openSession(link, channel, open);
        return;
      }
      case FrameType.CANCEL:
        this.log.debug({ channel }, 'cancel for an unknown channel ignored');
        return;
      case FrameType.CANCEL_KEY: {
        if (channel !== 0) throw new LinkProtocolError('CANCEL_KEY outside channel 0');
        const { pid, secret } = decodeCancelKey(payload);
        // The session may belong to any gateway: a client's cancel lands wherever its balancer sends it.
        let matched = 0;
        for (const s of this.ctx.sessions.values()) {
          if (s.holdsClientKey(pid, secret)) {
            matched++;
            s.cancelQuery();
            // The gateway of the session may be holding the statement for approval, with no backend running it.
            s.reportCancel();
          }
        }
        this.log.debug({ pid, matched }, 'cancel by client key');
        return;
      }
      case FrameType.GOAWAY:
        this.log.info('the gateway asked for no new sessions on this link');
        return;
      default:
        throw new LinkProtocolError(`unexpected frame type ${type} from a gateway`);
    }
  }

  /** @internal */
  closed(link: Link, error?: Error): void {
    if (link !== this.link) return;
    this.link = undefined;
    const wasConnected = this.connectedFlag;
    this.connectedFlag = false;
    this.log.debug({ reason: error?.message, ...link.stats }, 'link closed');
    if (this.stopped) return;
    if (wasConnected || Date.now() - this.linkStartedAt >= this.healthyAfterMs) this.retries.reset();
    const peerReason = error instanceof LinkClosedError ? error.peerReason : undefined;
    if (peerReason && !wasConnected) {
      this.log.error({ reason: peerReason }, 'the gateway rejected this agent (check the enrollment token and the agent name)');
    } else if (error) {
      const attempt = this.retries.attempt;
      const level = wasConnected || attempt === 0 || attempt % 10 === 0 ? 'warn' : 'debug';
      this.log[level]({ reason: error.message, attempt }, 'link to the gateway lost');
    }
    this.scheduleRetry();
  }

  /** @internal */
  handlerError(_link: Link, channel: number, error: unknown): void {
    this.log.error({ channel, err: errorSummary(error) }, 'error while handling a frame from the gateway');
  }

  private refuse(link: Link, channel: number, sessionId: string, sqlstate: string, message: string): void {
    link.send(FrameType.FAILED, channel, Buffer.from(SessionFailed.encode({ sessionId, sqlstate, message }).finish()));
  }

  private openSession(link: Link, channel: number, open: OpenSession): void {
    if (link.hasChannel(channel)) throw new LinkProtocolError(`OPEN for channel ${channel}, which is in use`);
    if (this.stopped) {
      this.refuse(link, channel, open.sessionId, '08006', `agent ${this.ctx.agentName} is shutting down`);
      return;
    }
    if (!open.sessionId) {
      this.log.warn({ resource: open.resource }, 'open without a session id refused');
      this.refuse(link, channel, '', '08P01', 'OPEN without a session id');
      return;
    }
    if (this.ctx.sessions.has(open.sessionId)) {
      this.log.warn({ session: open.sessionId }, 'open for a session id already in use refused');
      this.refuse(link, channel, open.sessionId, '08P01', `session id ${open.sessionId} is already in use`);
      return;
    }
    const session = new RelaySession(this.ctx, link, channel, open, this.log);
    this.ctx.sessions.set(open.sessionId, session);
    this.sessions.add(session);
    this.log.debug({ session: open.sessionId, resource: open.resource, readOnly: open.readOnly }, 'opening session');
    void session.start().then(() => {
      if (this.ctx.sessions.get(open.sessionId) === session) this.ctx.sessions.delete(open.sessionId);
      this.sessions.delete(session);
      if (this.stopped && this.sessions.size === 0) this.link?.close();
    });
  }
}
