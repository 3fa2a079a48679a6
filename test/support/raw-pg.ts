// A Postgres frontend at the message level, for what real drivers do not let a
// test do: send a CopyFail by hand, or read a result as slowly as it likes
// (the socket stays paused and is read a little at a time).
import { connect, type Socket } from 'node:net';

export interface RawMessage {
  /** One letter: 'Z' ReadyForQuery, 'E' ErrorResponse, 'D' DataRow, 'd' CopyData… */
  type: string;
  /** The message without its type byte and length. */
  body: Buffer;
}

/** DataRow and CopyData: counted, and kept only when asked. */
const BULK = new Set(['D', 'd']);
const EMPTY = Buffer.alloc(0);

export class RawPg {
  /** Bytes received so far. */
  bytesRead = 0;
  /** Messages received so far, by type. */
  readonly counts: Record<string, number> = {};
  /** Keep DataRow and CopyData messages for next(); when false they are only counted. */
  keepBulk = true;
  private buf: Buffer = EMPTY;
  private readonly queue: RawMessage[] = [];
  private wake: (() => void) | null = null;
  private ended: Error | null = null;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.stop(err));
    socket.on('close', () => this.stop(new Error('the server closed the connection')));
  }

  /** Connects, logs in with a cleartext password (the token) and waits for ReadyForQuery. */
  static async open(o: { host: string; port: number; user: string; database: string; password: string }): Promise<RawPg> {
    const socket = connect(o.port, o.host);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const raw = new RawPg(socket);
    const params = Buffer.from(`user\0${o.user}\0database\0${o.database}\0\0`);
    const startup = Buffer.alloc(8 + params.length);
    startup.writeInt32BE(startup.length, 0);
    startup.writeInt32BE(196608, 4); // protocol 3.0
    params.copy(startup, 8);
    socket.write(startup);
    for (;;) {
      const m = await raw.next();
      if (m.type === 'E') throw new Error(`login failed: ${JSON.stringify(errorFields(m.body))}`);
      if (m.type === 'R' && m.body.readInt32BE(0) === 3) raw.send('p', cstring(o.password));
      else if (m.type === 'R' && m.body.readInt32BE(0) !== 0) throw new Error(`unexpected authentication request ${m.body.readInt32BE(0)}`);
      if (m.type === 'Z') return raw;
    }
  }

  send(type: string, body: Buffer = EMPTY): boolean {
    const msg = Buffer.alloc(5 + body.length);
    msg.write(type, 0, 'latin1');
    msg.writeInt32BE(4 + body.length, 1);
    body.copy(msg, 5);
    return this.socket.write(msg);
  }

  query(sql: string): void {
    this.send('Q', cstring(sql));
  }

  /** The next message (kept bulk messages included). */
  async next(): Promise<RawMessage> {
    for (;;) {
      const m = this.queue.shift();
      if (m) return m;
      if (this.ended) throw this.ended;
      if (this.socket.isPaused()) this.socket.resume();
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** Every message up to and including the first of `type`. */
  async until(type: string): Promise<RawMessage[]> {
    const out: RawMessage[] = [];
    for (;;) {
      const m = await this.next();
      out.push(m);
      if (m.type === type) return out;
    }
  }

  /** Resumes reading until the next chunk arrives, then pauses again; resolves with its size. */
  readOneChunk(): Promise<number> {
    const before = this.bytesRead;
    return new Promise((resolve) => {
      const got = () => {
        this.socket.pause();
        resolve(this.bytesRead - before);
      };
      this.socket.once('data', got);
      this.socket.resume();
    });
  }

  /** Sends Terminate and waits for the server to close. */
  async terminate(): Promise<void> {
    if (this.ended) return;
    const closed = new Promise((r) => this.socket.once('close', r));
    this.send('X');
    this.socket.end();
    this.socket.resume();
    await closed;
  }

  private onData(chunk: Buffer): void {
    this.bytesRead += chunk.length;
    let buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let pos = 0;
    while (buf.length - pos >= 5) {
      const total = 1 + buf.readInt32BE(pos + 1);
      if (buf.length - pos < total) break;
      const type = String.fromCharCode(buf[pos]!);
      this.counts[type] = (this.counts[type] ?? 0) + 1;
      if (this.keepBulk || !BULK.has(type)) this.queue.push({ type, body: Buffer.from(buf.subarray(pos + 5, pos + total)) });
      pos += total;
    }
    buf = buf.subarray(pos);
    // A copy, so that a large chunk is not kept alive by its unparsed tail.
    this.buf = buf.length ? Buffer.from(buf) : EMPTY;
    if (this.queue.length) this.notify();
  }

  private stop(err: Error): void {
    this.ended ??= err;
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}

export function cstring(s: string): Buffer {
  return Buffer.from(`${s}\0`);
}

/** Severity, SQLSTATE and message of an ErrorResponse (or NoticeResponse) body. */
export function errorFields(body: Buffer): { severity: string; code: string; message: string } {
  const out = { severity: '', code: '', message: '' };
  let pos = 0;
  while (pos < body.length && body[pos] !== 0) {
    const field = String.fromCharCode(body[pos]!);
    const end = body.indexOf(0, pos + 1);
    const value = body.toString('utf8', pos + 1, end);
    if (field === 'S') out.severity = value;
    else if (field === 'C') out.code = value;
    else if (field === 'M') out.message = value;
    pos = end + 1;
  }
  return out;
}

/** The column values of a DataRow body, as text (null for NULL). */
export function dataRow(body: Buffer): Array<string | null> {
  const n = body.readInt16BE(0);
  const values: Array<string | null> = [];
  let pos = 2;
  for (let i = 0; i < n; i++) {
    const len = body.readInt32BE(pos);
    pos += 4;
    if (len < 0) values.push(null);
    else {
      values.push(body.toString('utf8', pos, pos + len));
      pos += len;
    }
  }
  return values;
}

/** The command tag of a CommandComplete body ("SELECT 3", "COPY 10"). */
export function commandTag(body: Buffer): string {
  return body.toString('utf8', 0, body.length - 1);
}
