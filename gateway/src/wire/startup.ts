// Parsing of the packets a client sends before it is authenticated.
import { CANCEL_REQUEST, GSSENC_REQUEST, PROTOCOL_3_0, SSL_REQUEST } from './protocol.js';
import { ProtocolError } from './reader.js';

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secret: number }
  /** `minor`: the 3.x version the client asked for; the gateway answers with what it speaks (3.0). */
  | { kind: 'startup'; minor: number; parameters: Record<string, string> };

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
