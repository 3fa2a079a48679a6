// One relayed session: an upstream Postgres socket joined to one channel of
// the agent's link to a gateway. After the login nothing is parsed: each
// socket chunk becomes DATA on the channel, and the DATA of one link read
// leaves in one socket write (see dataEnd), with the link's credit-based
// flow control in both directions.
import type net from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import { type Channel, type ChannelHandler, FrameType, type Link, type OpenSession, SessionFailed } from '@warden/proto';
import { terminate } from '@warden/proto/pgwire';
import type { Logger } from 'pino';
import { ConfigError, type ResourceConfig, resourcePassword, type SessionRole, sessionRole } from './config.js';
import { sendCancelRequest } from './upstream/cancel.js';
import {
  type BackendKey,
  CONNECTION_FAILURE,
  connectUpstream,
  type UpstreamConnection,
  type UpstreamTarget,
  UpstreamError,
} from './upstream/connect.js';

/** What a session needs from the agent. */
export interface SessionContext {
  agentName: string;
  token: string;
  resources: Readonly<Record<string, ResourceConfig>>;
  log: Logger;
  /** Upstream connect + login budget (default 15 s). */
  loginTimeoutMs?: number;
  /** How long to wait for a CancelRequest to complete (default 3 s). */
  cancelTimeoutMs?: number;
  /** How long a closing stream or socket may take before it is cut (default 10 s). */
  closeGraceMs?: number;
  /** Told the seconds from bytes forwarded upstream to the first byte back (metrics). */
  upstreamLatency?: { observe(seconds: number): void };
}

/** How long an upstream may take to close after the client's Terminate before it is cancelled. */
const QUIT_WAIT_MS = 2_000;

export type SessionState = 'connecting' | 'relaying' | 'closing' | 'closed';

function noop(): void {}

/**
 * Whether a frame for the upstream ends with Terminate ('X', length 4): a
 * constant-time look at the last five bytes, not a parse. It only lets a
 * client's own goodbye close the upstream without an extra CancelRequest.
 */
export function endsWithTerminate(chunk: Buffer): boolean {
  const n = chunk.length;
  return (
    n >= 5 && chunk[n - 5] === 0x58 && chunk[n - 4] === 0 && chunk[n - 3] === 0 && chunk[n - 2] === 0 && chunk[n - 1] === 4
  );
}

/** Resolves true when the socket closes within `ms`, false otherwise. */
function closedWithin(socket: net.Socket, ms: number): Promise<boolean> {
  if (socket.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onClose = (): void => {
      clearTimeout(t);
      resolve(true);
    };
    const t = setTimeout(() => {
      socket.off('close', onClose);
      resolve(false);
    }, ms);
    socket.once('close', onClose);
  });
}

export class RelaySession implements ChannelHandler {
  readonly id: string;
  readonly resource: string;
  state: SessionState = 'connecting';
  /** Settles when the channel and the upstream socket are both closed. Never rejects. */
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private readonly log: Logger;
  private readonly channel: Channel;
  private target: UpstreamTarget | undefined;
  /** The upstream role the session runs in, when the config maps one. */
  private role: SessionRole | undefined;
  private backendKey: BackendKey | undefined;
  private stopRequested = false;
  private bytesFromUpstream = 0;
  private bytesToUpstream = 0;
  /** Socket writes (or writevs) upstream: one per link read that brought DATA (for tests and logs). */
  upstreamWrites = 0;
  private readonly startedAt = Date.now();
  private upstream: net.Socket | undefined;
  private upstreamOpen = false;
  private channelOpen = true;
  /** Bytes written to the upstream socket while its buffer was full: credited back on drain. */
  private held = 0;
  /** DATA of the link read being decoded, written upstream together by dataEnd(). */
  private readonly outgoing: Buffer[] = [];
  private outgoingBytes = 0;
  /** The client's last bytes were a Terminate: the upstream is about to close by itself. */
  private clientQuit = false;
  private relayOver: (() => void) | undefined;
  /** When bytes last went upstream with no answer yet (performance.now()), 0 when none waits. */
  private awaitingSince = 0;
  private readonly onUpstreamData = (chunk: Buffer): void => {
    this.bytesFromUpstream += chunk.length;
    if (this.awaitingSince !== 0) {
      this.ctx.upstreamLatency?.observe((performance.now() - this.awaitingSince) / 1000);
      this.awaitingSince = 0;
    }
    if (!this.channel.send(chunk)) this.upstream!.pause();
  };

  constructor(
    private readonly ctx: SessionContext,
    link: Link,
    channelId: number,
    private readonly open: OpenSession,
    log?: Logger,
  ) {
    this.id = open.sessionId;
    this.resource = open.resource;
    this.log = (log ?? ctx.log).child({ session: open.sessionId, resource: open.resource, channel: channelId });
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
    this.channel = link.openChannel(channelId, this);
    if (!this.channel.open) this.channelOpen = false;
  }

  /** Logs in upstream and relays until either side closes. */
  start(): Promise<void> {
    this.run().then(
      () => this.finish(),
      (err: unknown) => {
        this.log.error({ err: errorSummary(err) }, 'session failed unexpectedly');
        this.upstream?.destroy();
        if (this.channelOpen) {
          this.channelOpen = false;
          this.channel.close('internal error in the agent');
        }
        this.finish();
      },
    );
    return this.done;
  }

  /** True while reading from the upstream is paused because the channel has no credit. */
  get upstreamPaused(): boolean {
    return this.upstream?.isPaused() ?? false;
  }

  /**
   * Whether (pid, secret) is the key the gateway gave this session's client
   * (OpenSession): how a cancel that reached another gateway finds it.
   */
  holdsClientKey(pid: number, secret: Buffer): boolean {
    const own = this.open.cancelSecret;
    if (own.length === 0 || own.length !== secret.length || pid !== this.open.cancelProcessId) return false;
    return timingSafeEqual(own, secret);
  }

  /** Tells the session's gateway that its client's CancelRequest arrived (through another gateway). */
  reportCancel(): void {
    this.channel.signal(FrameType.CANCEL);
  }

  /** Forwards a client's cancel: a CancelRequest for the upstream backend. */
  cancelQuery(): void {
    const target = this.target;
    const key = this.backendKey;
    if (!target || !key || this.state !== 'relaying') {
      this.log.debug('cancel for a session with no running upstream backend ignored');
      return;
    }
    this.log.info({ backendPid: key.processId }, 'cancelling the running query');
    sendCancelRequest(target, key, this.ctx.cancelTimeoutMs ?? 3_000).catch((err: unknown) => {
      this.log.warn({ err: errorSummary(err) }, 'cancel request to the upstream failed');
    });
  }

  /** Ends the session from the agent's side (shutdown): the client sees the connection lost. */
  shutdown(): void {
    this.stopRequested = true;
    if (this.state !== 'relaying') return;
    this.endChannel('the agent is shutting down');
    this.onChannelOver('shutdown');
  }

  // --- ChannelHandler -----------------------------------------------------

  /** @internal Bytes from the client for the upstream: gathered until dataEnd(). */
  data(payload: Buffer): void {
    if (!this.upstream || !this.upstreamOpen || this.state !== 'relaying') {
      this.channel.consumed(payload.length);
      return;
    }
    this.bytesToUpstream += payload.length;
    this.clientQuit = endsWithTerminate(payload);
    this.outgoing.push(payload);
    this.outgoingBytes += payload.length;
  }

  /** @internal The link read is decoded: what it brought leaves in one write (several DATA frames as one writev). */
  dataEnd(): void {
    const parts = this.outgoing;
    const n = this.outgoingBytes;
    if (n === 0) return;
    this.outgoingBytes = 0;
    const socket = this.upstream;
    if (!socket || !this.upstreamOpen) {
      parts.length = 0;
      this.channel.consumed(n);
      return;
    }
    let room: boolean;
    this.upstreamWrites++;
    if (parts.length === 1) {
      room = socket.write(parts[0]!);
    } else {
      socket.cork();
      for (let i = 0; i < parts.length; i++) socket.write(parts[i]!);
      socket.uncork();
      room = !socket.writableNeedDrain;
    }
    parts.length = 0;
    if (this.awaitingSince === 0 && this.ctx.upstreamLatency) this.awaitingSince = performance.now();
    if (this.held > 0) {
      // Still waiting for 'drain': these bytes are credited with the rest.
      this.held += n;
    } else if (room) {
      this.channel.consumed(n);
    } else {
      this.held = n;
      socket.once('drain', this.onUpstreamDrain);
    }
  }

  private readonly onUpstreamDrain = (): void => {
    const n = this.held;
    this.held = 0;
    this.channel.consumed(n);
  };

  /** @internal Credit is back: read the upstream again. */
  writable(): void {
    if (this.upstreamOpen) this.upstream?.resume();
  }

  /** @internal The gateway closed the channel, or the link went down. */
  closed(error?: Error): void {
    this.channelOpen = false;
    if (error) this.log.debug({ reason: error.message }, 'channel ended abnormally');
    this.onChannelOver(error ? 'error' : 'close');
  }

  /** @internal */
  signal(type: number): void {
    if (type === FrameType.CANCEL) this.cancelQuery();
  }

  private endChannel(reason?: string): void {
    if (!this.channelOpen) return;
    this.channelOpen = false;
    this.channel.close(reason);
  }

  /** The channel is over: cancel, terminate and close the upstream (see closeUpstream). */
  private onChannelOver(why: string): void {
    if (this.state === 'relaying' && this.upstreamOpen && this.upstream) {
      this.log.debug({ why }, 'session channel ended; closing the upstream');
      void this.closeUpstream(this.upstream, this.onUpstreamData, this.ctx.closeGraceMs ?? 10_000, this.clientQuit).catch(noop);
    }
    if (this.state !== 'connecting') this.state = 'closing';
    this.relayOver?.();
  }

  private finish(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.resolveDone();
  }

  private async run(): Promise<void> {
    const { agentName } = this.ctx;
    const settings = Object.hasOwn(this.ctx.resources, this.resource) ? this.ctx.resources[this.resource] : undefined;
    if (!settings) {
      this.log.warn('open for a resource this agent has no settings for');
      this.sendFailure('3D000', `agent ${agentName} has no upstream settings for resource ${this.resource}`);
      return;
    }
    let password: string | undefined;
    try {
      password = await resourcePassword(settings);
    } catch {
      this.sendFailure(CONNECTION_FAILURE, `agent ${agentName} could not read the password file of resource ${this.resource}`);
      return;
    }
    const target: UpstreamTarget = { ...settings, password };
    this.target = target;
    let role: SessionRole | undefined;
    try {
      role = sessionRole(settings, this.open.access, this.open.rule);
    } catch (err) {
      const reason = err instanceof ConfigError ? err.message : String(err);
      this.log.warn({ access: this.open.access, rule: this.open.rule, reason }, 'no role for the session');
      this.sendFailure(CONNECTION_FAILURE, `agent ${agentName} cannot choose the role for resource ${this.resource}: ${reason}`);
      return;
    }

    let conn: UpstreamConnection;
    try {
      conn = await connectUpstream(target, {
        labels: { agent: agentName, resource: this.resource },
        parameters: this.open.parameters,
        readOnly: this.open.readOnly,
        role,
        timeoutMs: this.ctx.loginTimeoutMs,
      });
    } catch (err) {
      const e =
        err instanceof UpstreamError
          ? err
          : new UpstreamError(
              `agent ${agentName} could not open resource ${this.resource} upstream: internal error`,
              CONNECTION_FAILURE,
              'connect',
              'internal error',
            );
      this.log.warn({ sqlstate: e.sqlstate, reason: e.reason, phase: e.phase }, 'upstream login failed');
      this.sendFailure(e.sqlstate, e.message);
      return;
    }
    if (!this.channelOpen) {
      // The gateway gave up meanwhile (client gone, open timeout, link lost).
      this.log.info('session channel closed during the upstream login; terminating the upstream');
      const timer = setTimeout(() => conn.socket.destroy(), this.ctx.closeGraceMs ?? 10_000);
      conn.socket.once('close', () => clearTimeout(timer));
      conn.socket.on('error', noop);
      conn.socket.end(terminate());
      return;
    }
    if (this.stopRequested) {
      conn.socket.destroy();
      this.sendFailure(CONNECTION_FAILURE, `agent ${agentName} is shutting down`);
      return;
    }
    this.backendKey = conn.backendKey;
    this.role = role;
    await this.relay(conn);
  }

  /** Reports a failed login: FAILED ends the channel on both sides. */
  private sendFailure(sqlstate: string, message: string): void {
    this.state = 'closing';
    if (!this.channelOpen) return;
    this.channelOpen = false;
    this.channel.signal(FrameType.FAILED, Buffer.from(SessionFailed.encode({ sessionId: this.id, sqlstate, message }).finish()));
    this.channel.forget();
  }

  private relay(conn: UpstreamConnection): Promise<void> {
    const { socket, initial } = conn;
    const log = this.log;
    return new Promise<void>((resolve) => {
      this.upstream = socket;
      this.upstreamOpen = true;
      this.state = 'relaying';

      const settle = (): void => {
        if (this.upstreamOpen || this.channelOpen) return;
        this.relayOver = undefined;
        log.info(
          {
            bytesFromUpstream: this.bytesFromUpstream,
            bytesToUpstream: this.bytesToUpstream,
            upstreamWrites: this.upstreamWrites,
            durationMs: Date.now() - this.startedAt,
          },
          'session closed',
        );
        resolve();
      };
      this.relayOver = settle;

      socket.on('error', (err: Error) => {
        log.warn({ err: errorSummary(err) }, 'upstream socket error');
      });
      socket.on('close', () => {
        this.upstreamOpen = false;
        if (this.channelOpen) {
          // The upstream went away: CLOSE follows the bytes already sent.
          if (this.state === 'relaying') log.info('upstream closed the connection');
          this.state = 'closing';
          this.endChannel();
        }
        settle();
      });

      socket.on('data', this.onUpstreamData);
      this.channel.signal(FrameType.READY);
      this.bytesFromUpstream += initial.length;
      const flowing = initial.length === 0 || this.channel.send(initial);
      log.info(
        { backendPid: conn.backendKey?.processId, readOnly: this.open.readOnly, role: this.role?.name, access: this.open.access, rule: this.open.rule },
        'session ready',
      );
      if (flowing) socket.resume();
    });
  }

  /**
   * CancelRequest (the backend may be running a query), then Terminate, then
   * close; whatever the upstream still sends is read and dropped so that a
   * backend blocked on writing can see the cancel. When the client's last
   * message was a Terminate, the upstream gets a moment to close on its own
   * first: a CancelRequest costs it a connection (a process fork on
   * Postgres) and would change nothing. The socket is destroyed
   * if the server has not closed it `grace` ms after the Terminate.
   */
  private async closeUpstream(
    socket: net.Socket,
    forwarder: (chunk: Buffer) => void,
    grace: number,
    clientQuit = false,
  ): Promise<void> {
    socket.off('data', forwarder);
    socket.on('data', noop);
    socket.resume();
    const key = this.backendKey;
    const target = this.target;
    if (clientQuit && (await closedWithin(socket, QUIT_WAIT_MS))) return;
    if (key && target && !socket.destroyed) {
      try {
        await sendCancelRequest(target, key, this.ctx.cancelTimeoutMs ?? 3_000);
      } catch (err) {
        this.log.debug({ err: errorSummary(err) }, 'cancel request at close failed');
      }
    }
    if (socket.destroyed) return;
    const timer = setTimeout(() => socket.destroy(), grace);
    socket.once('close', () => clearTimeout(timer));
    try {
      socket.end(terminate());
    } catch {
      socket.destroy();
    }
  }
}

/** A loggable summary of an error, without stacks full of noise. */
export function errorSummary(err: unknown): Record<string, unknown> {
  if (err instanceof Error) {
    const e = err as NodeJS.ErrnoException & { details?: string };
    const out: Record<string, unknown> = { message: e.message };
    if (e.code !== undefined) out.code = e.code;
    return out;
  }
  return { message: String(err) };
}
