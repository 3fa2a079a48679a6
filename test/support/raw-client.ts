// A minimal Postgres v3 client for message-level tests, for what real drivers
// do not let a test do. It sends exactly the messages a test writes
// (serialised by pg-protocol: queries, the extended protocol, CopyData,
// CopyFail, CopyDone...) and hands back every message the server sends, cut
// by Warden's own wire reader, decoded by pg-protocol's parser (the
// independent implementation) and with its raw bytes, so a test can
// compare the same exchange against Postgres directly and through Warden byte
// for byte. It can also read a large result as slowly as a test likes: the
// socket stays paused and is read a chunk at a time, and rows are only
// counted, not kept.
import { connect, type Socket } from 'node:net';
import { MessageReader, NEGOTIATE_PROTOCOL_VERSION, parseDataRow, parseNegotiateProtocolVersion, startupMessage } from '@warden/proto/pgwire';
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
  /** Ask for protocol 3.<minor> instead of 3.0. */
  protocolMinor?: number;
}

/** DataRow and CopyData: always counted, kept for next() only while `keepBulk` is set. */
const BULK = new Set(['dataRow', 'copyData']);
/** Larger than any message a test provokes. */
const MAX_MESSAGE = 1 << 30;

export class RawClient {
  /** Bytes received so far. */
  bytesRead = 0;
  /** Messages received so far, by name. */
  readonly counts: Record<string, number> = {};
  /** Keep DataRow and CopyData messages for next(); when false they are only counted. */
  keepBulk = true;
  /** Settles when the server closes the connection. */
  readonly closed: Promise<void>;
  /** What the server sent from the startup packet to the first ReadyForQuery. */
  readonly startup: Message[] = [];
  private readonly queue: Message[] = [];
  private wake: (() => void) | undefined;
  private readonly reader = new MessageReader();
  private readonly parser = new Parser();
  private ended = false;

  private constructor(private readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {}); // 'close' follows, and next() reports it
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.ended = true;
        this.wake?.();
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
    const parameters = { user: opts.user, database: opts.database, client_encoding: 'UTF8', ...opts.parameters };
    client.send(startupMessage(Object.entries(parameters), opts.protocolMinor ?? 0));
    for (;;) {
      const m = await client.next();
      client.startup.push(m);
      let failure: string | undefined;
      if (m.name === 'authenticationCleartextPassword') client.send(serialize.password(opts.password ?? ''));
      else if (m.name === 'error') failure = `startup failed: ${String(m.code)} ${String(m.message)}`;
      else if (m.name.startsWith('authentication') && m.name !== 'authenticationOk') failure = `unsupported authentication request ${m.name}`;
      else if (m.name === 'readyForQuery') return client;
      if (failure) {
        socket.destroy();
        throw new Error(failure);
      }
    }
  }

  send(...messages: Buffer[]): void {
    this.socket.write(Buffer.concat(messages));
  }

  /**
   * The next message kept from the server, reading again if the socket is
   * paused; fails if the server sends nothing for `timeoutMs` (a hang, not a
   * speed check).
   */
  async next(timeoutMs = 15_000): Promise<Message> {
    for (;;) {
      const m = this.queue.shift();
      if (m) return m;
      if (this.ended) throw new Error('the server closed the connection');
      this.socket.resume();
      if (!(await this.arrival(timeoutMs))) throw new Error(`nothing from the server within ${timeoutMs} ms`);
    }
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

  /** Stops reading from the socket, so the server's data waits (readChunk, next and end read again). */
  pause(): void {
    this.socket.pause();
  }

  /** Reads the next chunk that arrives on a paused socket, then pauses again; resolves with its size. */
  readChunk(): Promise<number> {
    return new Promise((resolve) => {
      this.socket.once('data', (chunk: Buffer) => {
        this.socket.pause();
        resolve(chunk.length);
      });
      this.socket.resume();
    });
  }

  /** Sends Terminate and waits for the server to close the connection. */
  async end(): Promise<void> {
    if (!this.ended) this.socket.end(serialize.end());
    this.socket.resume(); // a paused socket would not see the close
    await this.closed;
  }

  /** Resolves true when bytes arrive or the connection closes, false after `ms` without. */
  private arrival(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve(false);
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve(true);
      };
    });
  }

  private onData(chunk: Buffer): void {
    this.bytesRead += chunk.length;
    this.reader.push(chunk);
    for (let framed = this.reader.nextTyped(MAX_MESSAGE); framed; framed = this.reader.nextTyped(MAX_MESSAGE)) {
      // A copy, so that a message kept for next() does not keep its whole chunk alive.
      const raw = Buffer.from(framed.raw);
      if (framed.type === NEGOTIATE_PROTOCOL_VERSION) {
        // Which pg-protocol does not decode.
        const { version, unknownOptions } = parseNegotiateProtocolVersion(framed.body);
        this.queue.push({ name: 'negotiateProtocolVersion', raw, version, unknown: unknownOptions });
        continue;
      }
      this.parser.parse(raw, (decoded) => {
        // pg-protocol decodes an ErrorResponse as an Error, whose message is not enumerable.
        const m: Message = decoded instanceof Error ? { ...decoded, message: decoded.message, raw } : { ...decoded, raw };
        this.counts[m.name] = (this.counts[m.name] ?? 0) + 1;
        if (this.keepBulk || !BULK.has(m.name)) this.queue.push(m);
      });
    }
    this.wake?.();
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
  return parseDataRow(m.raw.subarray(5));
}
