// The messages Warden writes itself, each returned as one Buffer ready for
// the socket: backend messages the gateway sends its clients during startup
// and for its own errors, and frontend messages the agent sends during the
// upstream login and the gateway sends in place of refused statements.
import {
  AUTHENTICATION,
  AuthRequest,
  BACKEND_KEY_DATA,
  CANCEL_REQUEST,
  ERROR_RESPONSE,
  NEGOTIATE_PROTOCOL_VERSION,
  PARAMETER_STATUS,
  PARSE,
  PASSWORD_MESSAGE,
  PROTOCOL_3_0,
  QUERY,
  READY_FOR_QUERY,
  SSL_REQUEST,
  TERMINATE,
} from './protocol.js';

/** The fields of an ErrorResponse Warden writes. */
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

/** A startup-phase packet, which has no type byte: int32 length, body. */
function untyped(...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeInt32BE(out.length, 0);
  body.copy(out, 4);
  return out;
}

function int32s(...values: number[]): Buffer {
  const b = Buffer.allocUnsafe(4 * values.length);
  values.forEach((v, i) => b.writeInt32BE(v, 4 * i));
  return b;
}

const cstrings = (...values: string[]) => Buffer.from(values.map((v) => `${v}\0`).join(''), 'utf8');

function fields(pairs: Array<[string, string | undefined]>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of pairs) if (v !== undefined) parts.push(Buffer.from(`${k}${v}\0`, 'utf8'));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

// Backend messages.

export const errorResponse = (e: ErrorFields) =>
  frame(
    ERROR_RESPONSE,
    fields([
      ['S', e.severity],
      ['V', e.severity],
      ['C', e.code],
      ['M', e.message],
      ['D', e.detail],
      ['H', e.hint],
    ]),
  );
export const authenticationCleartextPassword = () => frame(AUTHENTICATION, int32s(AuthRequest.cleartextPassword));
export const authenticationOk = () => frame(AUTHENTICATION, int32s(AuthRequest.ok));
export const backendKeyData = (pid: number, secret: number) => frame(BACKEND_KEY_DATA, int32s(pid, secret));
export const parameterStatus = (name: string, value: string) => frame(PARAMETER_STATUS, cstrings(name, value));
export const readyForQuery = (status: 'I' | 'T' | 'E' = 'I') => frame(READY_FOR_QUERY, Buffer.from(status, 'latin1'));

/** The protocol version the server speaks (Postgres sends it whole, e.g. 3.0 = 196608), and the `_pq_.` options it does not know. */
export const negotiateProtocolVersion = (version: number, unknownOptions: string[]) =>
  frame(NEGOTIATE_PROTOCOL_VERSION, Buffer.concat([int32s(version, unknownOptions.length), cstrings(...unknownOptions)]));

/** One byte answering SSLRequest or GSSENCRequest: 'S' to go TLS, 'N' to stay plain. */
export const sslAnswer = (accept: boolean) => Buffer.from(accept ? 'S' : 'N', 'latin1');

// Frontend messages.

/** StartupMessage for protocol 3.<minor>: key/value C strings, then a final NUL. */
export const startupMessage = (parameters: ReadonlyArray<readonly [string, string]>, minor = 0) =>
  untyped(int32s(PROTOCOL_3_0 | minor), cstrings(...parameters.flat()), Buffer.from([0]));
export const sslRequest = () => untyped(int32s(SSL_REQUEST));
/** `secretKey` as BackendKeyData gave it (4 bytes in protocol 3.0). */
export const cancelRequest = (processId: number, secretKey: Buffer) => untyped(int32s(CANCEL_REQUEST, processId), secretKey);
export const passwordMessage = (password: string) => frame(PASSWORD_MESSAGE, cstrings(password));
export const saslInitialResponse = (mechanism: string, data: Buffer) =>
  frame(PASSWORD_MESSAGE, Buffer.concat([cstrings(mechanism), int32s(data.length), data]));
export const saslResponse = (data: Buffer) => frame(PASSWORD_MESSAGE, data);
export const query = (sql: string) => frame(QUERY, cstrings(sql));
/** Parse naming no parameter types: the server infers them. */
export const parse = (name: string, sql: string) => frame(PARSE, Buffer.concat([cstrings(name, sql), Buffer.from([0, 0])]));
export const terminate = () => frame(TERMINATE, Buffer.alloc(0));
