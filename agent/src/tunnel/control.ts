// The agent's link to one gateway: a TunnelService.Control stream that starts
// with `hello` and then carries `open` and `cancel` requests. The stream is
// redialled with capped exponential backoff whenever it ends. Sessions opened
// through it run on their own Session streams on the same channel.
import {
  type ChannelCredentials,
  type ChannelOptions,
  type ClientDuplexStream,
  connectivityState,
  status as GrpcStatus,
  type ServiceError,
} from '@grpc/grpc-js';
import {
  type AgentToGateway,
  bearer,
  type GatewayToAgent,
  keepaliveOptions,
  type OpenSession,
  TunnelServiceClient,
} from '@warden/proto';
import type { Logger } from 'pino';
import { errorSummary, RelaySession, type SessionContext } from '../session.js';
import { type BackoffOptions, backoffDelay, DEFAULT_BACKOFF } from '@warden/proto';

/** State shared by every gateway connection of one agent. */
export interface AgentContext extends SessionContext {
  version: string;
  /** Every live session of the agent, by session id (a cancel may arrive on any gateway). */
  sessions: Map<string, RelaySession>;
}

export interface GatewayConnectionOptions {
  /** host:port of the gateway's tunnel listener. */
  address: string;
  /** Gateway id from the control plane, for logs. */
  id?: string;
  credentials: ChannelCredentials;
  backoff?: BackoffOptions;
  /** A stream that lived this long counts as healthy: the next retry starts from the base delay. */
  healthyAfterMs?: number;
  channelOptions?: ChannelOptions;
}

/** Channel options for tunnel channels: keepalives, prompt reconnects, no retry buffering. */
export function tunnelChannelOptions(backoff: BackoffOptions = DEFAULT_BACKOFF): ChannelOptions {
  return {
    ...keepaliveOptions,
    'grpc.initial_reconnect_backoff_ms': backoff.baseMs,
    'grpc.max_reconnect_backoff_ms': backoff.capMs,
    // Session streams are long-lived and never replayed; skip the retry buffer.
    'grpc.enable_retries': 0,
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc-node.flow_control_window': 1024 * 1024,
  };
}

export class GatewayConnection {
  readonly address: string;
  readonly client: TunnelServiceClient;
  private readonly log: Logger;
  private readonly backoff: BackoffOptions;
  private readonly healthyAfterMs: number;
  private call: ClientDuplexStream<AgentToGateway, GatewayToAgent> | undefined;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private connectedFlag = false;
  /** Sessions opened through this gateway. */
  readonly sessions = new Set<RelaySession>();
  /** Number of Control streams opened so far (for tests and logs). */
  dials = 0;

  constructor(
    private readonly ctx: AgentContext,
    opts: GatewayConnectionOptions,
  ) {
    this.address = opts.address;
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF;
    this.healthyAfterMs = opts.healthyAfterMs ?? 10_000;
    this.log = ctx.log.child({ gateway: opts.address, ...(opts.id ? { gatewayId: opts.id } : {}) });
    this.client = new TunnelServiceClient(opts.address, opts.credentials, {
      ...tunnelChannelOptions(this.backoff),
      ...opts.channelOptions,
    });
  }

  /** True while a Control stream is open and the gateway has answered it (headers or a message). */
  get connected(): boolean {
    return this.connectedFlag;
  }

  start(): void {
    if (this.stopped || this.call || this.retryTimer) return;
    this.dial();
  }

  /**
   * Stops dialling. With `closeSessions`, live sessions are ended too and the
   * promise waits for them; otherwise they run to their natural end and the
   * channel closes after the last one.
   */
  async stop(opts: { closeSessions?: boolean } = {}): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const call = this.call;
    this.call = undefined;
    this.connectedFlag = false;
    call?.cancel();
    if (opts.closeSessions) {
      for (const s of this.sessions) s.shutdown();
      await Promise.all([...this.sessions].map((s) => s.done));
    }
    if (this.sessions.size === 0) this.client.close();
    // Otherwise the last session to finish closes the channel (see openSession).
  }

  private dial(): void {
    this.retryTimer = undefined;
    if (this.stopped) return;
    this.dials++;
    const startedAt = Date.now();
    let heard = false;
    let call: ClientDuplexStream<AgentToGateway, GatewayToAgent>;
    try {
      call = this.client.control(bearer(this.ctx.token, { 'x-warden-agent': this.ctx.agentName }));
    } catch (err) {
      this.log.error({ err: errorSummary(err) }, 'could not open the control stream');
      this.scheduleRetry();
      return;
    }
    this.call = call;

    const markConnected = (): void => {
      if (this.call !== call || this.connectedFlag) return;
      this.connectedFlag = true;
      this.log.info('connected to gateway');
    };
    call.on('metadata', markConnected);
    // A gateway need not send headers before its first request; a stream
    // still open after a moment on a ready channel counts as accepted.
    const settled = setTimeout(() => {
      if (this.client.getChannel().getConnectivityState(false) === connectivityState.READY) markConnected();
    }, 1_000);
    call.on('data', (msg: GatewayToAgent) => {
      heard = true;
      markConnected();
      try {
        this.handle(msg);
      } catch (err) {
        this.log.error({ err: errorSummary(err) }, 'could not handle a gateway request');
      }
    });

    let over = false;
    const onOver = (err?: ServiceError): void => {
      if (over) return;
      over = true;
      clearTimeout(settled);
      if (this.call !== call) return; // stopped, or already replaced
      this.call = undefined;
      const wasConnected = this.connectedFlag;
      this.connectedFlag = false;
      if (this.stopped) return;
      if (heard || Date.now() - startedAt >= this.healthyAfterMs) this.attempt = 0;
      if (err?.code === GrpcStatus.UNAUTHENTICATED || err?.code === GrpcStatus.PERMISSION_DENIED) {
        this.log.error(
          { code: err.code, details: err.details },
          'the gateway rejected this agent (check the enrollment token and the agent name)',
        );
      } else if (err) {
        const level = wasConnected || this.attempt === 0 || this.attempt % 10 === 0 ? 'warn' : 'debug';
        this.log[level](
          { code: err.code, details: err.details, attempt: this.attempt },
          'control stream to the gateway failed',
        );
      } else {
        this.log.warn('the gateway ended the control stream');
      }
      this.scheduleRetry();
    };
    call.on('error', (err: ServiceError) => onOver(err));
    call.on('end', () => onOver());
    call.on('status', (s: { code: number; details: string }) => {
      if (s.code === GrpcStatus.OK) onOver();
    });

    call.write({
      msg: {
        $case: 'hello',
        value: {
          agentName: this.ctx.agentName,
          version: this.ctx.version,
          resources: Object.keys(this.ctx.resources).sort(),
        },
      },
    });
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt, this.backoff);
    this.attempt++;
    this.log.debug({ delayMs: delay, attempt: this.attempt }, 'redialling the gateway');
    this.retryTimer = setTimeout(() => this.dial(), delay);
  }

  private handle(msg: GatewayToAgent): void {
    switch (msg.msg?.$case) {
      case 'open':
        this.openSession(msg.msg.value);
        break;
      case 'cancel': {
        const s = this.ctx.sessions.get(msg.msg.value.sessionId);
        if (s) s.cancelQuery();
        else this.log.debug({ session: msg.msg.value.sessionId }, 'cancel for an unknown session ignored');
        break;
      }
      default:
        this.log.debug('unknown message from the gateway ignored');
    }
  }

  private openSession(open: OpenSession): void {
    if (!open.sessionId) {
      this.log.warn({ resource: open.resource }, 'open without a session id ignored');
      return;
    }
    if (this.ctx.sessions.has(open.sessionId)) {
      this.log.warn({ session: open.sessionId }, 'open for a session id already in use ignored');
      return;
    }
    const session = new RelaySession(this.ctx, this.client, open, this.log);
    this.ctx.sessions.set(open.sessionId, session);
    this.sessions.add(session);
    this.log.debug({ session: open.sessionId, resource: open.resource, readOnly: open.readOnly }, 'opening session');
    void session.start().then(() => {
      if (this.ctx.sessions.get(open.sessionId) === session) this.ctx.sessions.delete(open.sessionId);
      this.sessions.delete(session);
      if (this.stopped && this.sessions.size === 0) this.client.close();
    });
  }
}
