// A stand-in gateway built on the gateway's real link hub (AgentHub): it
// accepts agent links on a loopback port and lets tests open sessions as
// channels, send bytes, cancel, pause and end them, and watch what the agent
// sends back.
import { Metadata, Server, ServerCredentials, type ServerWritableStream } from '@grpc/grpc-js';
import {
  ControlPlaneServiceService,
  type AgentHello,
  type Gateway,
  type GatewayList,
  type LinkOptions,
  type OpenSession,
  type WatchGatewaysRequest,
} from '@warden/proto';
import { MessageReader, parseDataRow, parseFields, query } from '@warden/proto/pgwire';
import { pino } from 'pino';
import { AgentHub, type AgentLinkInfo, TunnelError, type Upstream } from '@warden/gateway';

export async function waitFor<T>(fn: () => T | undefined | false, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const log = pino({ level: process.env.WARDEN_TEST_LOG ?? 'silent' });

/** One agent link, as the gateway sees it. */
export class FakeControl {
  constructor(
    readonly gw: FakeGateway,
    readonly info: AgentLinkInfo,
    /** The enrollment token the agent presented in HELLO. */
    readonly token: string,
  ) {}

  get hello(): AgentHello {
    return this.info.hello;
  }

  get ended(): boolean {
    return this.info.closed;
  }

  /** Opens a session on the agent (OPEN); the session shows up in gw.sessions. */
  open(open: Partial<OpenSession> & { sessionId: string }): FakeSession {
    const s = new FakeSession(open.sessionId);
    if (!this.gw.sessions.has(open.sessionId)) this.gw.sessions.set(open.sessionId, s);
    this.gw.hub
      .open(this.info.agent, { resource: 'shop', parameters: {}, readOnly: false, ...open })
      .then(
        (upstream) => s.attach(upstream),
        (err: unknown) => s.fail(err),
      );
    return s;
  }

  cancel(sessionId: string): void {
    this.gw.sessions.get(sessionId)?.upstream?.cancel();
  }

  /** Drops the link, as a network failure or a dying gateway would. */
  drop(): void {
    this.info.disconnect('dropped by the test');
  }
}

export type FakeFrame =
  | { $case: 'ready' }
  | { $case: 'failed'; value: { sqlstate: string; message: string } };

export class FakeSession {
  readonly frames: FakeFrame[] = [];
  upstream: Upstream | undefined;
  private chunks: Buffer[] = [];
  /** True once the agent ended the session (or it failed, or the link went). */
  agentEnded = false;
  /** Set when the session ended abnormally (link lost, agent shutdown). */
  endError: Error | undefined;

  constructor(readonly id: string) {}

  attach(upstream: Upstream): void {
    this.upstream = upstream;
    this.frames.push({ $case: 'ready' });
    upstream.start({
      data: (chunk) => this.chunks.push(chunk),
      drain: () => undefined,
      end: (error) => {
        this.agentEnded = true;
        this.endError = error;
      },
    });
  }

  fail(err: unknown): void {
    const e = err instanceof TunnelError ? err : new TunnelError('08006', String(err));
    this.frames.push({ $case: 'failed', value: { sqlstate: e.sqlstate, message: e.message } });
    this.agentEnded = true;
  }

  get first(): FakeFrame | undefined {
    return this.frames[0];
  }

  /** All DATA bytes received so far. */
  get data(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  /** Sends bytes to the upstream; false when the channel's credit is used up (they are queued). */
  send(bytes: Buffer): boolean {
    return this.upstream!.write(bytes);
  }

  /** Stops returning credit, like a client that does not read. */
  pause(): void {
    this.upstream!.pause();
  }

  resume(): void {
    this.upstream!.resume();
  }

  /** Ends the session from the gateway side (CLOSE). */
  end(): void {
    this.upstream?.close();
  }
}

export class FakeGateway {
  hub!: AgentHub;
  port = 0;
  readonly controls: FakeControl[] = [];
  readonly sessions = new Map<string, FakeSession>();
  /** Decides which HELLOs are accepted (default: any). */
  accept: (name: string, token: string) => boolean = () => true;
  private presented = '';

  constructor(private readonly linkOptions: LinkOptions = {}) {}

  async start(port = 0): Promise<this> {
    this.hub = new AgentHub(
      (name, token) => {
        this.presented = token;
        return this.accept(name, token);
      },
      log,
      {
        ...this.linkOptions,
        openTimeoutMs: 20_000,
        onAgentLink: (info) => this.controls.push(new FakeControl(this, info, this.presented)),
      },
    );
    this.port = await this.hub.listen(`127.0.0.1:${port}`);
    return this;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** The newest link that said HELLO and is still up. */
  async control(timeoutMs = 10_000): Promise<FakeControl> {
    return waitFor(
      () => {
        const c = this.controls[this.controls.length - 1];
        return c && !c.ended ? c : undefined;
      },
      timeoutMs,
      'an agent link',
    );
  }

  /** A session opened with FakeControl.open, once the agent has answered (READY or FAILED). */
  async session(id: string, timeoutMs = 10_000): Promise<FakeSession> {
    return waitFor(
      () => {
        const s = this.sessions.get(id);
        return s && s.frames.length > 0 ? s : undefined;
      },
      timeoutMs,
      `session ${id}`,
    );
  }

  stop(): Promise<void> {
    return this.hub.close();
  }
}

/** A stand-in control plane serving only WatchGateways. */
export class FakeControlPlane {
  server: Server | undefined;
  port = 0;
  gateways: Gateway[] = [];
  readonly watchers: Array<{ call: ServerWritableStream<WatchGatewaysRequest, GatewayList>; request: WatchGatewaysRequest; metadata: Metadata }> = [];

  async start(port = 0): Promise<this> {
    const server = new Server();
    const unimplemented = (_call: unknown, cb: (err: Error) => void): void => cb(new Error('not implemented'));
    server.addService(ControlPlaneServiceService, {
      watchConfig: (call: ServerWritableStream<unknown, unknown>) => call.end(),
      watchGateways: (call: ServerWritableStream<WatchGatewaysRequest, GatewayList>) => {
        this.watchers.push({ call, request: call.request, metadata: call.metadata });
        call.on('error', () => undefined);
        call.write({ gateways: this.gateways });
      },
      getSnapshot: unimplemented,
      putIssuer: unimplemented,
      deleteIssuer: unimplemented,
      putIdentity: unimplemented,
      deleteIdentity: unimplemented,
      putResource: unimplemented,
      deleteResource: unimplemented,
      createGrant: unimplemented,
      deleteGrant: unimplemented,
      enrollAgent: unimplemented,
      revokeAgent: unimplemented,
    });
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.server = server;
    return this;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  setGateways(gateways: Gateway[]): void {
    this.gateways = gateways;
    for (const w of this.watchers) {
      if (!w.call.cancelled && w.call.writable) w.call.write({ gateways });
    }
  }

  stop(): void {
    this.server?.forceShutdown();
    this.server = undefined;
  }
}

/** Postgres wire helpers for the tests, on the shared wire module. */
export const queryMessage = query;

export interface Msg {
  type: string;
  body: Buffer;
}

/** Splits backend bytes into messages (ignoring a trailing partial one). */
export function messages(buf: Buffer): Msg[] {
  const reader = new MessageReader();
  reader.push(buf);
  const out: Msg[] = [];
  for (let m = reader.nextTyped(2 ** 31 - 1); m; m = reader.nextTyped(2 ** 31 - 1)) out.push({ type: String.fromCharCode(m.type), body: m.body });
  return out;
}

/** Error fields (C, M, ...) of an ErrorResponse body. */
export const errorFields = parseFields;

/** Text values of a DataRow body. */
export function dataRow(body: Buffer): Array<string | null> {
  return parseDataRow(body).map((v) => (v === null ? null : v.toString('utf8')));
}
