// The messages Warden reads, as plain data, and their parsers. Each parser
// takes a message body (the bytes after the length, as MessageReader gives
// them) and throws ProtocolError where a malformed message would otherwise
// be misread.
import { ProtocolError } from './errors.js';
import { CANCEL_REQUEST, GSSENC_REQUEST, PROTOCOL_3_0, SSL_REQUEST } from './protocol.js';

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secret: number }
  /** `minor`: the 3.x version the client asked for; the gateway answers with what it speaks (3.0). */
  | { kind: 'startup'; minor: number; parameters: Record<string, string> };

/** The body of a startup-phase packet from a client. */
export function parseStartupPacket(body: Buffer): StartupPacket {
  if (body.length < 4) throw new ProtocolError('startup packet too short');
  const code = body.readInt32BE(0);
  switch (code) {
    case SSL_REQUEST:
      return { kind: 'ssl' };
    case GSSENC_REQUEST:
      return { kind: 'gssenc' };
    case CANCEL_REQUEST:
      if (body.length !== 12) throw new ProtocolError('malformed CancelRequest');
      return { kind: 'cancel', pid: body.readInt32BE(4), secret: body.readInt32BE(8) };
    default:
      if (code >>> 16 === PROTOCOL_3_0 >>> 16) return { kind: 'startup', minor: code & 0xffff, parameters: parseParameters(body.subarray(4)) };
      throw new ProtocolError(
        `unsupported frontend protocol ${code >>> 16}.${code & 0xffff}: Warden speaks protocol 3`,
      );
  }
}

/** key\0value\0 ... \0 */
function parseParameters(buf: Buffer): Record<string, string> {
  const params: Record<string, string> = Object.create(null);
  let pos = 0;
  for (;;) {
    const keyEnd = buf.indexOf(0, pos);
    if (keyEnd < 0) throw new ProtocolError('startup packet is not terminated');
    if (keyEnd === pos) break;
    const valueEnd = buf.indexOf(0, keyEnd + 1);
    if (valueEnd < 0) throw new ProtocolError('startup parameter has no value');
    params[buf.toString('utf8', pos, keyEnd)] = buf.toString('utf8', keyEnd + 1, valueEnd);
    pos = valueEnd + 1;
  }
  return params;
}

/** Body of a PasswordMessage: a null-terminated string. */
export function parsePassword(body: Buffer): string {
  const end = body.indexOf(0);
  if (end < 0) throw new ProtocolError('password message is not terminated');
  return body.toString('utf8', 0, end);
}

/** ErrorResponse / NoticeResponse fields by their one-letter code (S, V, C, M, D, H, ...). */
export function parseFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const end = body.indexOf(0, i + 1);
    if (end < 0) break;
    out[String.fromCharCode(body[i]!)] = body.toString('utf8', i + 1, end);
    i = end + 1;
  }
  return out;
}

/** The fields of an ErrorResponse or NoticeResponse that Warden acts on. */
export interface NoticeFields {
  /** V (never localized), or S from servers older than 9.6. */
  severity?: string;
  code?: string;
  message?: string;
  detail?: string;
  hint?: string;
}

export function parseErrorResponse(body: Buffer): NoticeFields {
  const f = parseFields(body);
  return { severity: f.V ?? f.S, code: f.C, message: f.M, detail: f.D, hint: f.H };
}

/** A list of C strings ended by an empty one (AuthenticationSASL's mechanisms, ParameterStatus). */
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

/** Name and value of a ParameterStatus, or undefined for an empty one. */
export function parseParameterStatus(body: Buffer): { name: string; value: string } | undefined {
  const [name, value] = parseCStringList(body);
  return name === undefined ? undefined : { name, value: value ?? '' };
}

export interface BackendKey {
  processId: number;
  /** 4 bytes in protocol 3.0; longer from 3.2 on. */
  secretKey: Buffer;
}

/** BackendKeyData, or undefined when it is too short to hold a key. */
export function parseBackendKeyData(body: Buffer): BackendKey | undefined {
  if (body.length < 8) return undefined;
  return { processId: body.readInt32BE(0), secretKey: Buffer.from(body.subarray(4)) };
}

/** The column values of a DataRow as raw bytes (null for SQL NULL), whatever their format. */
export function parseDataRow(body: Buffer): Array<Buffer | null> {
  if (body.length < 2) throw new ProtocolError('truncated DataRow');
  const count = body.readInt16BE(0);
  const values: Array<Buffer | null> = [];
  let pos = 2;
  for (let i = 0; i < count; i++) {
    if (pos + 4 > body.length) throw new ProtocolError('truncated DataRow');
    const len = body.readInt32BE(pos);
    pos += 4;
    if (len < 0) {
      values.push(null);
      continue;
    }
    if (pos + len > body.length) throw new ProtocolError('truncated DataRow');
    values.push(body.subarray(pos, pos + len));
    pos += len;
  }
  return values;
}

/** NegotiateProtocolVersion: the newest minor version the server speaks, and the options it did not recognise. */
export function parseNegotiateProtocolVersion(body: Buffer): { version: number; unknownOptions: string[] } {
  if (body.length < 8) throw new ProtocolError('truncated NegotiateProtocolVersion');
  const n = body.readInt32BE(4);
  const unknownOptions = parseCStringList(body.subarray(8)).slice(0, n);
  return { version: body.readInt32BE(0), unknownOptions };
}

/** Throws ProtocolError unless `size` bytes are left at `pos` of a Bind. */
function need(rest: Buffer, pos: number, size: number): void {
  if (pos + size > rest.length) throw new ProtocolError('truncated Bind message');
}

/** A count inside a Bind: int16, not negative. */
function bindCount(rest: Buffer, pos: number): number {
  need(rest, pos, 2);
  const n = rest.readInt16BE(pos);
  if (n < 0) throw new ProtocolError(`negative count ${n} in a Bind message`);
  return n;
}

/** A parameter value's length inside a Bind (-1: NULL), checked against what is left of the message. */
function bindLength(rest: Buffer, pos: number): number {
  need(rest, pos, 4);
  const len = rest.readInt32BE(pos);
  need(rest, pos + 4, Math.max(len, 0));
  return len;
}

/** Where a Bind's result-format codes start, in the bytes after its portal and statement names. */
export function bindResultsOffset(rest: Buffer): number {
  let pos = 2 + 2 * bindCount(rest, 0);
  const n = bindCount(rest, pos);
  pos += 2;
  for (let i = 0; i < n; i++) pos += 4 + Math.max(bindLength(rest, pos), 0);
  return pos;
}

/** A Bind's result-format codes (from the bytes after its names): one for every column, one per column, or none (all text). */
export function bindResultFormats(rest: Buffer): number[] {
  let pos = bindResultsOffset(rest);
  const n = bindCount(rest, pos);
  need(rest, pos + 2, 2 * n);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(rest.readInt16BE((pos += 2)));
  return out;
}

/** Longest text of one Bind parameter value kept by decodeParameters. */
const MAX_SHOWN = 1024;

/**
 * The parameter values of a Bind message as text (binary ones as \x hex),
 * each cut at MAX_SHOWN bytes, for the audit record: only done for recorded
 * statements, never on the forwarding path. Takes the bytes after the portal
 * and statement names. With `redact`, a value reads as its format and length
 * only: "<redacted: text, 11 bytes>".
 */
export function decodeParameters(bind: Buffer, opts: { redact?: boolean } = {}): Array<string | null> {
  let pos = 0;
  const nFormats = bindCount(bind, pos);
  pos += 2;
  need(bind, pos, 2 * nFormats);
  const formats: number[] = [];
  for (let i = 0; i < nFormats; i++, pos += 2) formats.push(bind.readInt16BE(pos));
  const n = bindCount(bind, pos);
  pos += 2;
  const values: Array<string | null> = [];
  for (let i = 0; i < n; i++) {
    const len = bindLength(bind, pos);
    pos += 4;
    if (len < 0) {
      values.push(null);
      continue;
    }
    const binary = (nFormats === 1 ? formats[0] : formats[i]) === 1;
    if (opts.redact) {
      values.push(`<redacted: ${binary ? 'binary' : 'text'}, ${len} bytes>`);
      pos += len;
      continue;
    }
    const shown = Math.min(len, MAX_SHOWN);
    const text = binary ? `\\x${bind.toString('hex', pos, pos + shown)}` : bind.toString('utf8', pos, pos + shown);
    values.push(len > MAX_SHOWN ? `${text}… (${len} bytes)` : text);
    pos += len;
  }
  return values;
}
