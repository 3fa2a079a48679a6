// The gateway's side of the agent link: agents dial the tunnel listener and
// keep one link each; every client session becomes a channel on one of the
// links of its resource's agent (round-robin when an agent has several).
import { randomUUID } from 'node:crypto';
import {
  type AgentHello,
  encodeCancelKey,
  FrameType,
  LINK_FEATURE_CANCEL_KEY,
  LINK_VERSION,
  type Link,
  type LinkOptions,
  type LinkOwner,
  LinkProtocolError,
  type LinkServer,
  MAX_PAYLOAD,
  OpenSession,
  decodeHello,
  encodeWelcome,
  listenLinks,
} from '@warden/proto';
import { PgError } from '@warden/proto/pgwire';
import type { Logger } from 'pino';
import { CancelKeys, secretBytes } from './cancel-keys.js';
import { LinkUpstream, type Upstream } from './upstream.js';
import { AddressSlots } from '../auth/slots.js';

/** A HELLO carries a name, a token and a list of resources: far below this. */
const MAX_HELLO_PAYLOAD = 64 * 1024;

/** A failure to reach the upstream, with the SQLSTATE the client should see. */
export class TunnelError extends PgError {}

/** Decides whether an enrollment token belongs to the named, non-revoked agent. */
export type AgentVerifier = (name: string, token: string) => boolean;

export interface AgentHubOptions extends LinkOptions {
  /** How long an agent may take to answer OPEN (default 15 s). */
  openTimeoutMs?: number;
  /** How long a new link may take to say HELLO (default 10 s). */
  helloTimeoutMs?: number;
  /** Links that have not said HELLO yet, at most (default 256): more are closed at once. */
  maxWaitingLinks?: number;
  /** The same, from one source address (default 32). */
  maxWaitingLinksPerAddress?: number;
  /** Called when an agent has been welcomed on a new link. */
  onAgentLink?(info: AgentLinkInfo): void;
  /** Where sessions get the key their client sees (shared with the Postgres listener). */
  keys?: CancelKeys;
}

/** What the hub knows about one agent link (for logs, tests and admin). */
export interface AgentLinkInfo {
  agent: string;
  hello: AgentHello;
  remoteAddress: string;
  connectedAt: Date;
  /** Sessions now open on the link. */
  readonly sessions: number;
  /** True once the link is gone. */
  readonly closed: boolean;
  /** True after the agent said GOAWAY: no new sessions go to this link. */
  readonly draining: boolean;
  /** Drops the link; its sessions end with 08006 and the agent redials. */
  disconnect(reason?: string): void;
}

/** Per-link state, kept in Link.data. */
class AgentLink implements AgentLinkInfo {
  agent = '';
  hello!: AgentHello;
  readonly connectedAt = new Date();
  draining = false;
  /** Gives back its place among the links waiting for HELLO. */
  unwait?: () => void;
  /** Next channel number to hand out. */
  private nextChannel = 1;
  readonly helloTimer: NodeJS.Timeout;

  constructor(
    readonly link: Link,
    helloTimeoutMs: number,
  ) {
    this.helloTimer = setTimeout(() => link.close('no HELLO in time'), helloTimeoutMs);
    this.helloTimer.unref();
  }

  get remoteAddress(): string {
    return this.link.remoteAddress;
  }

  get sessions(): number {
    return this.link.channelCount;
  }

  get closed(): boolean {
    return this.link.closed;
  }

  /** A channel number not in use on this link (numbers wrap after 2^32 - 1 sessions). */
  allocateChannel(): number {
    for (;;) {
      const ch = this.nextChannel;
      this.nextChannel = ch >= 0xffffffff ? 1 : ch + 1;
      if (!this.link.hasChannel(ch)) return ch;
    }
  }

  disconnect(reason = 'disconnected by the gateway'): void {
    this.link.close(reason);
  }
}

export class AgentHub implements LinkOwner {
  private readonly links = new Map<string, AgentLink[]>();
  private readonly all = new Set<AgentLink>();
  /** Links not yet past HELLO, and how many were closed for being over the cap (for logs). */
  /** Links that have not said HELLO yet: each holds memory, and costs its peer nothing. */
  private readonly waiting: AddressSlots;
  private waitingRefused = 0;
  private nextLink = 0;
  private lastHandshakeLog = 0;
  private handshakeFailures = 0;
  private server: LinkServer | undefined;
  private readonly openTimeoutMs: number;
  private readonly helloTimeoutMs: number;
  /** The keys handed to clients; each upstream holds one from its OPEN to its end. */
  readonly keys: CancelKeys;

  constructor(
    private readonly verify: AgentVerifier,
    private readonly log: Logger,
    private readonly opts: AgentHubOptions = {},
  ) {
    this.openTimeoutMs = opts.openTimeoutMs ?? 15_000;
    this.helloTimeoutMs = opts.helloTimeoutMs ?? 10_000;
    this.waiting = new AddressSlots({ perAddress: opts.maxWaitingLinksPerAddress ?? 32, total: opts.maxWaitingLinks ?? 256 }, 'waiting to say HELLO');
    this.keys = opts.keys ?? new CancelKeys();
  }

  /** Starts the tunnel listener; resolves with its port. */
  async listen(address: string, tls?: { cert: string; key: string }): Promise<number> {
    this.server = await listenLinks({ ...this.opts, listen: address, tls }, this);
    return this.server.port;
  }

  /** Stops listening and drops every link (their sessions end with 08006). */
  async close(): Promise<void> {
    for (const l of this.all) l.link.close('the gateway is shutting down');
    await this.server?.close();
  }

  isOnline(agent: string): boolean {
    return this.pick(agent) !== undefined;
  }

  /** The live links of an agent (or of all agents). */
  connections(agent?: string): AgentLinkInfo[] {
    if (agent !== undefined) return [...(this.links.get(agent) ?? [])];
    return [...this.links.values()].flat();
  }

  /** Asks the agent to log in upstream; resolves once it is READY. */
  open(
    agent: string,
    request: Pick<OpenSession, 'resource' | 'parameters' | 'readOnly'> & Partial<Pick<OpenSession, 'access' | 'rule'>> & { sessionId?: string },
  ): Promise<Upstream> {
    const target = this.pick(agent);
    if (!target) {
      return Promise.reject(
        new TunnelError('08006', `agent ${agent}, which serves resource ${request.resource}, is not connected to this gateway`),
      );
    }
    const sessionId = request.sessionId || randomUUID();
    const channel = target.allocateChannel();
    return new Promise<Upstream>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const upstream = new LinkUpstream(agent, sessionId, target.link, channel, this.keys, {
        ready: () => {
          clearTimeout(timer);
          resolve(upstream);
        },
        failed: (sqlstate, message) => {
          clearTimeout(timer);
          reject(new TunnelError(sqlstate || '08006', message || `agent ${agent} could not open resource ${request.resource}`));
        },
      });
      if (upstream.settled) return;
      timer = setTimeout(() => {
        upstream.abandon();
        reject(
          new TunnelError('08006', `agent ${agent} did not open resource ${request.resource} within ${this.openTimeoutMs / 1000} s`),
        );
      }, this.openTimeoutMs);
      // The agent learns the client's key so that a cancel reaching another gateway finds the session.
      const key = upstream.cancelKey;
      const open: OpenSession = {
        sessionId,
        resource: request.resource,
        parameters: request.parameters,
        readOnly: request.readOnly,
        cancelProcessId: key.pid,
        cancelSecret: secretBytes(key.secret),
        // The agent puts the session in the native role it maps these to.
        access: request.access ?? '',
        rule: request.rule ?? '',
      };
      target.link.send(FrameType.OPEN, channel, Buffer.from(OpenSession.encode(open).finish()));
    });
  }

  /**
   * A CancelRequest with a key this gateway did not issue: one CANCEL_KEY to
   * each agent link that understands it; the agent holding the key (its
   * session may be on another gateway) cancels. Returns the frames sent.
   */
  cancelByKey(pid: number, secret: Buffer): number {
    let sent = 0;
    const payload = encodeCancelKey(pid, secret);
    for (const links of this.links.values()) {
      for (const l of links) {
        if (l.link.closed || !l.hello.features.includes(LINK_FEATURE_CANCEL_KEY)) continue;
        l.link.send(FrameType.CANCEL_KEY, 0, payload);
        sent++;
      }
    }
    this.log.debug({ pid, agentLinks: sent }, 'cancel for a key this gateway did not issue relayed to the agents');
    return sent;
  }

  /** Drops the links of agents that are no longer enrolled. */
  revokeUnless(stillValid: (agent: string) => boolean): void {
    for (const [agent, links] of this.links) {
      if (stillValid(agent)) continue;
      this.log.warn({ agent }, 'agent enrollment revoked; closing its links');
      this.links.delete(agent);
      for (const l of links) l.link.close(`agent ${agent} is no longer enrolled`);
    }
  }

  private pick(agent: string): AgentLink | undefined {
    const links = this.links.get(agent);
    if (!links?.length) return undefined;
    for (let i = 0; i < links.length; i++) {
      const l = links[this.nextLink++ % links.length]!;
      if (!l.draining && !l.link.closed) return l;
    }
    return undefined;
  }

  // --- LinkOwner ----------------------------------------------------------

  /** @internal */
  opened(link: Link): void {
    // Before HELLO a peer is nobody: its frames are small, and it cannot make the gateway hold much.
    link.maxPayload = MAX_HELLO_PAYLOAD;
    const state = new AgentLink(link, this.helloTimeoutMs);
    link.data = state;
    this.all.add(state);
    const slot = this.waiting.take(link.remoteAddress.slice(0, link.remoteAddress.lastIndexOf(':')));
    if ('refused' in slot) {
      this.waitingRefused++;
      link.close(slot.refused);
    } else state.unwait = slot.release;
  }

  /** @internal */
  frame(link: Link, type: number, channel: number, payload: Buffer): void {
    const state = link.data as AgentLink;
    if (!state.agent) {
      if (type !== FrameType.HELLO) throw new LinkProtocolError(`expected HELLO, got frame type ${type}`);
      this.onHello(state, payload);
      return;
    }
    switch (type) {
      case FrameType.GOAWAY:
        if (!state.draining) {
          state.draining = true;
          this.log.info({ agent: state.agent, peer: link.remoteAddress, sessions: link.channelCount }, 'agent draining its link');
        }
        return;
      case FrameType.READY:
      case FrameType.FAILED:
      case FrameType.CANCEL:
        // For a channel already given up (open timeout): nothing to do.
        return;
      default:
        throw new LinkProtocolError(`unexpected frame type ${type} from an agent`);
    }
  }

  /** @internal */
  closed(link: Link, error?: Error): void {
    const state = link.data as AgentLink | undefined;
    if (!state) return;
    clearTimeout(state.helloTimer);
    this.all.delete(state);
    if (!state.agent) {
      state.unwait?.();
      if (this.waitingRefused > 0 && this.waiting.count === 0) {
        this.log.warn({ refused: this.waitingRefused }, 'links were closed for exceeding the number allowed to wait for HELLO');
        this.waitingRefused = 0;
      }
      return;
    }
    const left = (this.links.get(state.agent) ?? []).filter((l) => l !== state);
    if (left.length) this.links.set(state.agent, left);
    else if (this.links.get(state.agent)) this.links.delete(state.agent);
    this.log.info({ agent: state.agent, peer: link.remoteAddress, reason: error?.message, ...link.stats }, 'agent disconnected');
  }

  /** @internal An agent that cannot complete TLS (wrong CA, plain TCP…) would otherwise fail silently here; once per 10 s is enough. */
  handshakeFailed(error: Error, remote: string): void {
    const now = Date.now();
    if (now - this.lastHandshakeLog < 10_000) {
      this.handshakeFailures++;
      return;
    }
    this.log.warn({ remote, err: error.message, alsoFailedSinceLast: this.handshakeFailures }, 'an agent could not complete the TLS handshake with the tunnel listener');
    this.lastHandshakeLog = now;
    this.handshakeFailures = 0;
  }

  /** @internal */
  handlerError(link: Link, channel: number, error: unknown): void {
    const state = link.data as AgentLink | undefined;
    this.log.error({ agent: state?.agent, channel, err: error }, 'error while handling a frame from an agent');
  }

  private onHello(state: AgentLink, payload: Buffer): void {
    const { version, window, token, hello } = decodeHello(payload);
    const link = state.link;
    if (version !== LINK_VERSION) {
      this.log.warn({ peer: link.remoteAddress, version }, 'agent speaks another link version');
      link.close(`link version ${version} is not supported by this gateway (it speaks ${LINK_VERSION})`);
      return;
    }
    const name = hello.agentName;
    if (!name || !this.verify(name, token)) {
      this.log.warn({ agent: name, peer: link.remoteAddress }, 'agent authentication failed');
      link.close('unknown agent or invalid enrollment token');
      return;
    }
    clearTimeout(state.helloTimer);
    state.unwait?.();
    link.maxPayload = MAX_PAYLOAD;
    link.peerWindow = window;
    state.agent = name;
    state.hello = hello;
    const links = this.links.get(name) ?? [];
    links.push(state);
    this.links.set(name, links);
    link.send(FrameType.WELCOME, 0, encodeWelcome(link.window));
    this.log.info({ agent: name, peer: link.remoteAddress, version: hello.version, resources: hello.resources }, 'agent connected');
    this.opts.onAgentLink?.(state);
  }
}
