// Backend messages that the gateway writes itself (during startup and for its
// own errors). Each returns one Buffer ready for the socket.

export interface ErrorFields {
  severity: 'ERROR' | 'FATAL' | 'NOTICE' | 'WARNING';
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

/** A typed message: type byte, int32 length, body. */
export function frame(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function int32s(...values: number[]): Buffer {
  const b = Buffer.allocUnsafe(4 * values.length);
  values.forEach((v, i) => b.writeInt32BE(v, 4 * i));
  return b;
}

function fields(pairs: Array<[string, string | undefined]>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of pairs) if (v !== undefined) parts.push(Buffer.from(`${k}${v}\0`, 'utf8'));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

const noticeOrError = (type: number, e: ErrorFields) =>
  frame(
    type,
    fields([
      ['S', e.severity],
      ['V', e.severity],
      ['C', e.code],
      ['M', e.message],
      ['D', e.detail],
      ['H', e.hint],
    ]),
  );

export const errorResponse = (e: ErrorFields) => noticeOrError(0x45, e);
export const authenticationCleartextPassword = () => frame(0x52, int32s(3));
export const authenticationOk = () => frame(0x52, int32s(0));
export const backendKeyData = (pid: number, secret: number) => frame(0x4b, int32s(pid, secret));
export const readyForQuery = (status: 'I' | 'T' | 'E' = 'I') => frame(0x5a, Buffer.from(status, 'latin1'));

/** The protocol version the gateway speaks (Postgres sends it whole, e.g. 3.0 = 196608), and the `_pq_.` options it does not know. */
export const negotiateProtocolVersion = (version: number, unknownOptions: string[]) =>
  frame(0x76, Buffer.concat([int32s(version, unknownOptions.length), ...unknownOptions.map((o) => Buffer.from(`${o}\0`, 'utf8'))]));

/** One byte answering SSLRequest or GSSENCRequest: 'S' to go TLS, 'N' to stay plain. */
export const sslAnswer = (accept: boolean) => Buffer.from(accept ? 'S' : 'N', 'latin1');

// Frontend messages the gateway writes upstream in place of refused ones.
export const query = (sql: string) => frame(0x51, Buffer.from(`${sql}\0`, 'utf8'));
export const parse = (name: string, sql: string) =>
  frame(0x50, Buffer.concat([Buffer.from(`${name}\0${sql}\0`, 'utf8'), Buffer.from([0, 0])]));
