// A stand-in gateway: a real grpc-js server implementing TunnelService that
// records Control streams and Session streams so tests can drive the agent.
import {
  Metadata,
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServerWritableStream,
} from '@grpc/grpc-js';
import {
  ControlPlaneServiceService,
  type AgentHello,
  type AgentToGateway,
  type Gateway,
  type GatewayList,
  type GatewayToAgent,
  type OpenSession,
  type SessionFrame,
  TunnelServiceService,
  type WatchGatewaysRequest,
} from '@warden/proto';

export async function waitFor<T>(fn: () => T | undefined | false, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export class FakeControl {
  hello: AgentHello | undefined;
  ended = false;
  constructor(
    readonly call: ServerDuplexStream<AgentToGateway, GatewayToAgent>,
    readonly metadata: Metadata,
  ) {
    call.on('data', (m: AgentToGateway) => {
      if (m.msg?.$case === 'hello') this.hello = m.msg.value;
    });
    call.on('error', () => undefined);
    call.on('end', () => {
      this.ended = true;
    });
    call.on('close', () => {
      this.ended = true;
    });
    call.on('cancelled', () => {
      this.ended = true;
    });
  }

  open(open: Partial<OpenSession> & { sessionId: string }): void {
    this.call.write({
      msg: { $case: 'open', value: { resource: 'shop', parameters: {}, readOnly: false, ...open } },
    });
  }

  cancel(sessionId: string): void {
    this.call.write({ msg: { $case: 'cancel', value: { sessionId } } });
  }
}

export class FakeSession {
  readonly frames: SessionFrame[] = [];
  private chunks: Buffer[] = [];
  /** True once the agent half-closed (or the call went away). */
  agentEnded = false;
  cancelled = false;
  constructor(
    readonly call: ServerDuplexStream<SessionFrame, SessionFrame>,
    readonly metadata: Metadata,
  ) {
    call.on('data', (f: SessionFrame) => {
      this.frames.push(f);
      if (f.msg?.$case === 'data') this.chunks.push(f.msg.value);
    });
    call.on('error', () => undefined);
    call.on('end', () => {
      this.agentEnded = true;
      // Like a gateway: once the agent is done, finish the call.
      if (!call.writableEnded) call.end();
    });
    call.on('cancelled', () => {
      this.cancelled = true;
      this.agentEnded = true;
    });
  }

  get first(): SessionFrame | undefined {
    return this.frames[0];
  }

  /** All `data` bytes received so far. */
  get data(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  send(bytes: Buffer): boolean {
    return this.call.write({ msg: { $case: 'data', value: bytes } });
  }

  /** Ends the session from the gateway side (status OK). */
  end(): void {
    this.call.end();
  }
}

export class FakeGateway {
  server: Server | undefined;
  port = 0;
  readonly controls: FakeControl[] = [];
  readonly sessions = new Map<string, FakeSession>();

  async start(port = 0): Promise<this> {
    const server = new Server();
    server.addService(TunnelServiceService, {
      control: (call: ServerDuplexStream<AgentToGateway, GatewayToAgent>) => {
        this.controls.push(new FakeControl(call, call.metadata));
      },
      session: (call: ServerDuplexStream<SessionFrame, SessionFrame>) => {
        const id = call.metadata.get('x-warden-session')[0];
        this.sessions.set(String(id), new FakeSession(call, call.metadata));
      },
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

  /** The newest control stream that has said hello. */
  async control(timeoutMs = 10_000): Promise<FakeControl> {
    return waitFor(
      () => {
        const c = this.controls[this.controls.length - 1];
        return c && c.hello && !c.ended ? c : undefined;
      },
      timeoutMs,
      'a control stream with hello',
    );
  }

  async session(id: string, timeoutMs = 10_000): Promise<FakeSession> {
    return waitFor(() => this.sessions.get(id), timeoutMs, `session stream ${id}`);
  }

  stop(): void {
    this.server?.forceShutdown();
    this.server = undefined;
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

/** Postgres wire helpers for the tests. */
export function queryMessage(sql: string): Buffer {
  const body = Buffer.from(`${sql}\0`, 'utf8');
  const out = Buffer.alloc(5 + body.length);
  out[0] = 0x51; // 'Q'
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

export interface Msg {
  type: string;
  body: Buffer;
}

/** Splits backend bytes into messages (ignoring a trailing partial one). */
export function messages(buf: Buffer): Msg[] {
  const out: Msg[] = [];
  let i = 0;
  while (i + 5 <= buf.length) {
    const len = buf.readInt32BE(i + 1);
    if (i + 1 + len > buf.length) break;
    out.push({ type: String.fromCharCode(buf[i]!), body: buf.subarray(i + 5, i + 1 + len) });
    i += 1 + len;
  }
  return out;
}

/** Error fields (C, M, ...) of an ErrorResponse body. */
export function errorFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const end = body.indexOf(0, i + 1);
    out[String.fromCharCode(body[i]!)] = body.toString('utf8', i + 1, end);
    i = end + 1;
  }
  return out;
}

/** Text values of a DataRow body. */
export function dataRow(body: Buffer): Array<string | null> {
  const n = body.readInt16BE(0);
  const out: Array<string | null> = [];
  let i = 2;
  for (let k = 0; k < n; k++) {
    const len = body.readInt32BE(i);
    i += 4;
    if (len < 0) out.push(null);
    else {
      out.push(body.toString('utf8', i, i + len));
      i += len;
    }
  }
  return out;
}
