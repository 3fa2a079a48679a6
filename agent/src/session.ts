// One relayed session: an upstream Postgres socket joined to one
// TunnelService.Session stream. After the login nothing is parsed: each
// socket chunk becomes one `data` frame and each `data` frame one socket
// write, with backpressure in both directions.
import type net from 'node:net';
import { type ClientDuplexStream, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { bearer, type OpenSession, type SessionFrame, type TunnelServiceClient } from '@warden/proto';
import type { Logger } from 'pino';
import { type ResourceConfig, resourcePassword } from './config.js';
import { sendCancelRequest } from './upstream/cancel.js';
import {
  type BackendKey,
  CONNECTION_FAILURE,
  connectUpstream,
  type UpstreamConnection,
  type UpstreamTarget,
  UpstreamError,
} from './upstream/connect.js';
import { TERMINATE } from './upstream/wire.js';

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
}

/** How long an upstream may take to close after the client's Terminate before it is cancelled. */
const QUIT_WAIT_MS = 2_000;

export type SessionState = 'connecting' | 'relaying' | 'closing' | 'closed';

type SessionCall = ClientDuplexStream<SessionFrame, SessionFrame>;

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

/** The metadata of a Session stream. */
export function sessionMetadata(token: string, agentName: string, sessionId: string) {
  return bearer(token, { 'x-warden-agent': agentName, 'x-warden-session': sessionId });
}

export class RelaySession {
  readonly id: string;
  readonly resource: string;
  state: SessionState = 'connecting';
  /** Settles when the stream and the upstream socket are both closed. Never rejects. */
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private readonly log: Logger;
  private target: UpstreamTarget | undefined;
  private backendKey: BackendKey | undefined;
  private stopRequested = false;
  private call: SessionCall | undefined;
  private bytesFromUpstream = 0;
  private bytesToUpstream = 0;
  private readonly startedAt = Date.now();
  private upstream: net.Socket | undefined;

  constructor(
    private readonly ctx: SessionContext,
    private readonly client: TunnelServiceClient,
    private readonly open: OpenSession,
    log?: Logger,
  ) {
    this.id = open.sessionId;
    this.resource = open.resource;
    this.log = (log ?? ctx.log).child({ session: open.sessionId, resource: open.resource });
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
  }

  /** Logs in upstream and relays until either side closes. */
  start(): Promise<void> {
    this.run().then(
      () => this.finish(),
      (err: unknown) => {
        this.log.error({ err: errorSummary(err) }, 'session failed unexpectedly');
        this.finish();
      },
    );
    return this.done;
  }

  /** True while reading from the upstream is paused because the stream's buffer is full. */
  get upstreamPaused(): boolean {
    return this.upstream?.isPaused() ?? false;
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

  /** Ends the session from the agent's side (shutdown, gateway removed). */
  shutdown(): void {
    this.stopRequested = true;
    if (this.call && this.state === 'relaying') this.call.cancel();
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
      await this.sendFailure('3D000', `agent ${agentName} has no upstream settings for resource ${this.resource}`);
      return;
    }
    let password: string | undefined;
    try {
      password = await resourcePassword(settings);
    } catch {
      await this.sendFailure(
        CONNECTION_FAILURE,
        `agent ${agentName} could not read the password file of resource ${this.resource}`,
      );
      return;
    }
    const target: UpstreamTarget = { ...settings, password };
    this.target = target;

    let conn: UpstreamConnection;
    try {
      conn = await connectUpstream(target, {
        labels: { agent: agentName, resource: this.resource },
        parameters: this.open.parameters,
        readOnly: this.open.readOnly,
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
      await this.sendFailure(e.sqlstate, e.message);
      return;
    }
    if (this.stopRequested) {
      conn.socket.destroy();
      await this.sendFailure(CONNECTION_FAILURE, `agent ${agentName} is shutting down`);
      return;
    }
    this.backendKey = conn.backendKey;
    await this.relay(conn);
  }

  /** Opens the stream only to report a failed login, then ends it. */
  private sendFailure(sqlstate: string, message: string): Promise<void> {
    this.state = 'closing';
    return new Promise((resolve) => {
      let call: SessionCall;
      try {
        call = this.client.session(sessionMetadata(this.ctx.token, this.ctx.agentName, this.id));
      } catch (err) {
        this.log.warn({ err: errorSummary(err) }, 'could not open the session stream to report a failure');
        resolve();
        return;
      }
      const timer = setTimeout(() => call.cancel(), this.ctx.closeGraceMs ?? 10_000);
      const settle = (): void => {
        clearTimeout(timer);
        resolve();
      };
      call.on('data', noop);
      call.on('error', (err: ServiceError) => {
        if (err.code !== GrpcStatus.CANCELLED) {
          this.log.debug({ code: err.code, details: err.details }, 'failure report stream ended with an error');
        }
        settle();
      });
      call.on('status', settle);
      call.write({ msg: { $case: 'failed', value: { sessionId: this.id, sqlstate, message } } });
      call.end();
    });
  }

  private relay(conn: UpstreamConnection): Promise<void> {
    const { socket, initial } = conn;
    const log = this.log;
    return new Promise<void>((resolve) => {
      let call: SessionCall;
      try {
        call = this.client.session(sessionMetadata(this.ctx.token, this.ctx.agentName, this.id));
      } catch (err) {
        log.warn({ err: errorSummary(err) }, 'could not open the session stream');
        socket.destroy();
        resolve();
        return;
      }
      this.call = call;
      this.upstream = socket;
      this.state = 'relaying';
      let upstreamOpen = true;
      let callOpen = true;
      let callTimer: NodeJS.Timeout | undefined;
      const grace = this.ctx.closeGraceMs ?? 10_000;

      const settle = (): void => {
        if (upstreamOpen || callOpen) return;
        clearTimeout(callTimer);
        log.info(
          {
            bytesFromUpstream: this.bytesFromUpstream,
            bytesToUpstream: this.bytesToUpstream,
            durationMs: Date.now() - this.startedAt,
          },
          'session closed',
        );
        resolve();
      };

      // The client's last bytes were a Terminate: the upstream is about to close by itself.
      let clientQuit = false;

      // Upstream -> gateway: one frame per chunk; stop reading while the stream's buffer is full.
      const onUpstreamData = (chunk: Buffer): void => {
        this.bytesFromUpstream += chunk.length;
        if (!call.write({ msg: { $case: 'data', value: chunk } })) socket.pause();
      };
      call.on('drain', () => {
        if (upstreamOpen) socket.resume();
      });

      // Gateway -> upstream: one write per frame; stop reading the stream while the socket's buffer is full.
      call.on('data', (frame: SessionFrame) => {
        if (frame.msg?.$case !== 'data' || !upstreamOpen || this.state !== 'relaying') return;
        const bytes = frame.msg.value;
        this.bytesToUpstream += bytes.length;
        clientQuit = endsWithTerminate(bytes);
        if (!socket.write(bytes)) call.pause();
      });
      socket.on('drain', () => call.resume());

      socket.on('error', (err: Error) => {
        log.warn({ err: errorSummary(err) }, 'upstream socket error');
      });
      socket.on('close', () => {
        upstreamOpen = false;
        if (callOpen) {
          // The upstream went away: end our side after what is queued, and let
          // the gateway finish; do not wait for it forever.
          if (this.state === 'relaying') log.info('upstream closed the connection');
          this.state = 'closing';
          call.resume(); // frames still arriving are dropped
          try {
            if (!call.writableEnded) call.end();
          } catch {
            // already finished
          }
          callTimer = setTimeout(() => call.cancel(), grace);
        }
        settle();
      });

      // The stream ended or was cancelled: cancel, terminate and close the upstream.
      let callEnded = false;
      const onCallOver = (why: string): void => {
        if (callEnded) return;
        callEnded = true;
        if (upstreamOpen && this.state === 'relaying') {
          log.debug({ why }, 'session stream ended; closing the upstream');
          void this.closeUpstream(socket, onUpstreamData, grace, clientQuit).catch(noop);
        }
        this.state = 'closing';
      };
      call.on('end', () => onCallOver('end'));
      call.on('error', (err: ServiceError) => {
        if (err.code === GrpcStatus.CANCELLED) log.debug('session stream cancelled');
        else log.warn({ code: err.code, details: err.details }, 'session stream failed');
        onCallOver(err.code === GrpcStatus.CANCELLED ? 'cancelled' : 'error');
      });
      call.on('status', () => {
        onCallOver('status');
        callOpen = false;
        clearTimeout(callTimer);
        settle();
      });

      socket.on('data', onUpstreamData);
      call.write({ msg: { $case: 'ready', value: {} } });
      const flowing = initial.length === 0 || call.write({ msg: { $case: 'data', value: initial } });
      this.bytesFromUpstream += initial.length;
      log.info({ backendPid: conn.backendKey?.processId, readOnly: this.open.readOnly }, 'session ready');
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
      socket.end(TERMINATE);
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
