// A minimal Postgres v3 client for message-level tests: it sends exactly the
// messages a test writes (serialised by pg-protocol) and hands back every
// message the server sends, decoded by pg-protocol's parser and with its raw
// bytes, so a test can compare the same exchange against Postgres directly
// and through Warden byte for byte.
import { connect, type Socket } from 'node:net';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';

export { serialize };

export interface Message {
  name: string;
  /** The whole message as it arrived: type byte, length, body. */
  raw: Buffer;
  [field: string]: unknown;
}

export interface RawConnectOptions {
  host: string;
  port: number;
  user: string;
  database: string;
  /** Sent when the server asks for a cleartext password (Warden: the token). */
  password?: string;
  parameters?: Record<string, string>;
}

export class RawClient {
  /** ParameterStatus values as last reported by the server. */
  readonly parameters = new Map<string, string>();
  backendKey: { processID: number; secretKey: number } | undefined;
  /** Settles when the server closes the connection. */
  readonly closed: Promise<void>;
  private readonly queue: Message[] = [];
  private waiter: (() => void) | undefined;
  private pending = Buffer.alloc(0);
  private readonly parser = new Parser();
  private ended = false;

  private constructor(private readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.ended = true;
        this.wake();
        resolve();
      }),
    );
  }

  /** Connects and completes the startup (password if asked) up to the first ReadyForQuery. */
  static async connect(opts: RawConnectOptions): Promise<RawClient> {
    const socket = connect(opts.port, opts.host);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new RawClient(socket);
    client.send(serialize.startup({ user: opts.user, database: opts.database, ...opts.parameters }));
    for (;;) {
      const m = await client.next();
      if (m.name === 'authenticationCleartextPassword') client.send(serialize.password(opts.password ?? ''));
      else if (m.name === 'error') throw new Error(`startup failed: ${String(m.message)}`);
      else if (m.name === 'readyForQuery') return client;
    }
  }

  send(...messages: Buffer[]): void {
    this.socket.write(Buffer.concat(messages));
  }

  /** The next message from the server; fails if none comes in `timeoutMs` (a hang, not a speed check). */
  async next(timeoutMs = 15_000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      if (this.ended) throw new Error('the server closed the connection');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message from the server within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    return this.queue.shift()!;
  }

  /** Messages up to and including the first one named `name`. */
  async until(name: string): Promise<Message[]> {
    const out: Message[] = [];
    for (;;) {
      const m = await this.next();
      out.push(m);
      if (m.name === name) return out;
    }
  }

  /** Whether a message is waiting, without waiting for one. */
  get buffered(): number {
    return this.queue.length;
  }

  /** Sends Terminate and waits for the server to close the connection. */
  async end(): Promise<void> {
    if (!this.ended) this.socket.end(serialize.end());
    await this.closed;
  }

  private onData(chunk: Buffer): void {
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    while (buf.length >= 5) {
      const total = buf.readUInt32BE(1) + 1;
      if (buf.length < total) break;
      const raw = Buffer.from(buf.subarray(0, total));
      buf = buf.subarray(total);
      this.parser.parse(raw, (decoded) => {
        const m = Object.assign({}, decoded, { raw }) as unknown as Message;
        if (m.name === 'parameterStatus') this.parameters.set(String(m.parameterName), String(m.parameterValue));
        if (m.name === 'backendKeyData') this.backendKey = { processID: Number(m.processID), secretKey: Number(m.secretKey) };
        this.queue.push(m);
      });
    }
    this.pending = Buffer.from(buf);
    this.wake();
  }

  private wake(): void {
    this.waiter?.();
  }
}

/** A message as a short readable line, for assertions on the sequence. */
export function describeMessage(m: Message): string {
  switch (m.name) {
    case 'dataRow':
      return `dataRow ${(m.fields as Array<string | null>).map((f) => (f === null ? 'NULL' : f)).join('|')}`;
    case 'commandComplete':
      return `commandComplete ${String(m.text)}`;
    case 'readyForQuery':
      return `readyForQuery ${String(m.status)}`;
    case 'error':
      return `error ${String(m.code)}`;
    case 'rowDescription':
      return `rowDescription ${(m.fields as Array<{ name: string; format: string }>).map((f) => `${f.name}:${f.format}`).join(',')}`;
    case 'parameterDescription':
      return `parameterDescription ${(m.dataTypeIDs as number[]).join(',')}`;
    default:
      return m.name;
  }
}

/** The column values of a DataRow as raw bytes (null for SQL NULL), whatever their format. */
export function dataRowValues(m: Message): Array<Buffer | null> {
  const raw = m.raw;
  const count = raw.readInt16BE(5);
  const values: Array<Buffer | null> = [];
  let pos = 7;
  for (let i = 0; i < count; i++) {
    const len = raw.readInt32BE(pos);
    pos += 4;
    values.push(len < 0 ? null : raw.subarray(pos, pos + len));
    pos += Math.max(len, 0);
  }
  return values;
}
