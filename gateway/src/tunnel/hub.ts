// The gateway's side of the tunnel: agents dial in with a Control stream each,
// and open one Session stream per client session when asked to.
import { randomUUID } from 'node:crypto';
import { status, type ServerDuplexStream, type ServiceError } from '@grpc/grpc-js';
import {
  metadataValue,
  readBearer,
  type AgentToGateway,
  type GatewayToAgent,
  type OpenSession,
  type SessionFrame,
  type TunnelServiceServer,
} from '@warden/proto';
import type { Logger } from 'pino';
import { GrpcUpstream, type Upstream } from './upstream.js';

/** A failure to reach the upstream, with the SQLSTATE the client should see. */
export class TunnelError extends Error {
  constructor(
    readonly sqlstate: string,
    message: string,
  ) {
    super(message);
  }
}

/** Decides whether an enrollment token belongs to the named, non-revoked agent. */
export type AgentVerifier = (name: string, token: string) => boolean;

type ControlCall = ServerDuplexStream<AgentToGateway, GatewayToAgent>;
type SessionCall = ServerDuplexStream<SessionFrame, SessionFrame>;

interface Pending {
  agent: string;
  resolve(upstream: Upstream): void;
  reject(err: TunnelError): void;
  timer: NodeJS.Timeout;
}

export class AgentHub {
  private readonly controls = new Map<string, ControlCall[]>();
  private readonly pending = new Map<string, Pending>();
  private nextControl = 0;

  constructor(
    private readonly verify: AgentVerifier,
    private readonly log: Logger,
    private readonly openTimeoutMs = 15_000,
  ) {}

  /** gRPC handlers for TunnelService. */
  readonly service: TunnelServiceServer = {
    control: (call) => this.onControl(call),
    session: (call) => this.onSession(call),
  };

  isOnline(agent: string): boolean {
    return (this.controls.get(agent)?.length ?? 0) > 0;
  }

  /** Asks the agent to log in upstream and waits for its Session stream. */
  open(agent: string, request: Omit<OpenSession, 'sessionId'>): Promise<Upstream> {
    const calls = this.controls.get(agent);
    if (!calls?.length) {
      return Promise.reject(
        new TunnelError('08006', `agent ${agent}, which serves resource ${request.resource}, is not connected to this gateway`),
      );
    }
    const sessionId = randomUUID();
    const control = calls[this.nextControl++ % calls.length]!;
    return new Promise<Upstream>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(sessionId);
        reject(new TunnelError('08006', `agent ${agent} did not open resource ${request.resource} within ${this.openTimeoutMs / 1000} s`));
      }, this.openTimeoutMs);
      this.pending.set(sessionId, { agent, resolve, reject, timer });
      control.write({ msg: { $case: 'open', value: { ...request, sessionId } } });
    });
  }

  /** Drops the streams of agents that are no longer enrolled. */
  revokeUnless(stillValid: (agent: string) => boolean): void {
    for (const [agent, calls] of this.controls) {
      if (stillValid(agent)) continue;
      this.log.warn({ agent }, 'agent enrollment revoked; closing its tunnel');
      for (const call of calls) call.emit('error', grpcError(status.PERMISSION_DENIED, `agent ${agent} is no longer enrolled`));
      this.controls.delete(agent);
    }
  }

  private authenticate(call: ControlCall | SessionCall): string | null {
    const token = readBearer(call.metadata);
    const agent = metadataValue(call.metadata, 'x-warden-agent');
    if (!token || !agent || !this.verify(agent, token)) {
      this.log.warn({ agent, peer: call.getPeer() }, 'agent authentication failed');
      call.emit('error', grpcError(status.UNAUTHENTICATED, 'unknown agent or invalid enrollment token'));
      return null;
    }
    return agent;
  }

  private onControl(call: ControlCall): void {
    const agent = this.authenticate(call);
    if (!agent) return;
    let registered = false;
    call.on('data', (msg: AgentToGateway) => {
      if (msg.msg?.$case !== 'hello' || registered) return;
      registered = true;
      const calls = this.controls.get(agent) ?? [];
      calls.push(call);
      this.controls.set(agent, calls);
      this.log.info({ agent, peer: call.getPeer(), resources: msg.msg.value.resources }, 'agent connected');
    });
    const gone = () => {
      if (!registered) return;
      registered = false;
      const left = (this.controls.get(agent) ?? []).filter((c) => c !== call);
      if (left.length) this.controls.set(agent, left);
      else this.controls.delete(agent);
      this.log.info({ agent }, 'agent disconnected');
    };
    call.on('end', () => {
      gone();
      call.end();
    });
    call.on('error', gone);
    call.on('cancelled', gone);
    call.on('close', gone);
  }

  private onSession(call: SessionCall): void {
    const agent = this.authenticate(call);
    if (!agent) return;
    const sessionId = metadataValue(call.metadata, 'x-warden-session') ?? '';
    const pending = this.pending.get(sessionId);
    if (!pending || pending.agent !== agent) {
      call.emit('error', grpcError(status.NOT_FOUND, 'no session is waiting for this agent under that id'));
      return;
    }
    this.pending.delete(sessionId);
    clearTimeout(pending.timer);

    // The first frame says whether the upstream login worked.
    call.once('data', (frame: SessionFrame) => {
      if (frame.msg?.$case === 'ready') {
        pending.resolve(new GrpcUpstream(agent, sessionId, call, () => this.cancel(agent, sessionId)));
      } else {
        const failed = frame.msg?.$case === 'failed' ? frame.msg.value : undefined;
        pending.reject(new TunnelError(failed?.sqlstate || '08006', failed?.message || `agent ${agent} sent no answer`));
        call.end();
      }
    });
    call.once('error', (err) => pending.reject(new TunnelError('08006', `agent ${agent} failed to open the session: ${err.message}`)));
  }

  private cancel(agent: string, sessionId: string): void {
    for (const control of this.controls.get(agent) ?? []) {
      control.write({ msg: { $case: 'cancel', value: { sessionId } } });
    }
  }
}

function grpcError(code: status, details: string): ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: undefined as never });
}
