// The few Postgres frontend/backend protocol messages the agent itself reads
// or writes: only during the upstream login and for cancellation. After the
// login the relay moves raw bytes and never looks inside them.

export const PROTOCOL_3_0 = 3 << 16;
const SSL_REQUEST_CODE = 80877103;
const CANCEL_REQUEST_CODE = 80877102;

/** StartupMessage: length, protocol 3.0, then key/value C strings and a final NUL. */
export function startupMessage(params: ReadonlyArray<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of params) {
    parts.push(Buffer.from(`${k}\0${v}\0`, 'utf8'));
  }
  const body = Buffer.concat(parts);
  const out = Buffer.alloc(8 + body.length + 1);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(PROTOCOL_3_0, 4);
  body.copy(out, 8);
  out[out.length - 1] = 0;
  return out;
}

export function sslRequest(): Buffer {
  const out = Buffer.alloc(8);
  out.writeInt32BE(8, 0);
  out.writeInt32BE(SSL_REQUEST_CODE, 4);
  return out;
}

export function cancelRequest(processId: number, secretKey: Buffer): Buffer {
  const out = Buffer.alloc(12 + secretKey.length);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  out.writeInt32BE(processId, 8);
  secretKey.copy(out, 12);
  return out;
}

/** A typed message: one type byte, an int32 length that counts itself, the body. */
function typed(type: string, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

export function passwordMessage(password: string): Buffer {
  return typed('p', Buffer.from(`${password}\0`, 'utf8'));
}

export function saslInitialResponse(mechanism: string, data: Buffer): Buffer {
  const mech = Buffer.from(`${mechanism}\0`, 'utf8');
  const len = Buffer.alloc(4);
  len.writeInt32BE(data.length, 0);
  return typed('p', Buffer.concat([mech, len, data]));
}

export function saslResponse(data: Buffer): Buffer {
  return typed('p', data);
}

export const TERMINATE: Buffer = Buffer.from([0x58, 0, 0, 0, 4]);

export interface BackendMessage {
  /** Type byte as a one-character string ('R', 'E', 'S', 'K', 'Z', ...). */
  type: string;
  body: Buffer;
  /** The whole message including type and length, as received. */
  raw: Buffer;
}

/** Cuts a byte stream into backend messages. Used only during login. */
export class MessageReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
  }

  /** The next complete message, or undefined when more bytes are needed. */
  next(): BackendMessage | undefined {
    if (this.buf.length < 5) return undefined;
    const len = this.buf.readInt32BE(1);
    if (len < 4 || len > 64 * 1024 * 1024) {
      throw new Error(`invalid message length ${len} from the server`);
    }
    if (this.buf.length < len + 1) return undefined;
    const raw = this.buf.subarray(0, len + 1);
    this.buf = this.buf.subarray(len + 1);
    return { type: String.fromCharCode(raw[0]!), body: raw.subarray(5), raw };
  }

  /** Bytes received but not yet returned as messages. */
  rest(): Buffer {
    const r = this.buf;
    this.buf = Buffer.alloc(0);
    return r;
  }
}

/** ErrorResponse / NoticeResponse fields by their one-letter code (S, V, C, M, D, H, ...). */
export function parseFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const code = String.fromCharCode(body[i]!);
    const end = body.indexOf(0, i + 1);
    if (end < 0) break;
    out[code] = body.toString('utf8', i + 1, end);
    i = end + 1;
  }
  return out;
}

/** The list of C strings in an AuthenticationSASL body (after the int32 code). */
export function parseCStringList(buf: Buffer): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < buf.length && buf[i] !== 0) {
    const end = buf.indexOf(0, i);
    if (end < 0) break;
    out.push(buf.toString('utf8', i, end));
    i = end + 1;
  }
  return out;
}
