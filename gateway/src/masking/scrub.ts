// Server messages can echo row values: a unique violation's DETAIL shows the
// key, CONTEXT and the internal query may show values too. scrubMessage
// withholds those fields when the statement reaches masked columns, and runs
// the detectors over the human-readable ones.
import { ERROR_RESPONSE, frame, NOTICE_RESPONSE, ProtocolError } from '@warden/proto/pgwire';
import type { Detectors } from './detectors.js';

export const WITHHELD = 'warden: withheld, it may show masked values';

const D = 0x44; // detail
const W = 0x57; // where (context)
const Q = 0x71; // internal query
const P = 0x70; // internal position
const M = 0x4d; // message
const H = 0x48; // hint

/**
 * A whole NoticeResponse or ErrorResponse with D, W and q withheld and p
 * dropped (when `withhold`; M and H too when code raised it) and the
 * detectors run over M, D, H and W; the other fields are kept in their
 * order. Null when nothing changed.
 */
export function scrubMessage(msg: Buffer, detectors: Detectors | undefined, withhold: boolean): Buffer | null {
  const type = msg[0];
  if (type !== ERROR_RESPONSE && type !== NOTICE_RESPONSE) throw new ProtocolError('not an ErrorResponse or NoticeResponse');
  const end = Math.min(msg.length, 1 + msg.readInt32BE(1));
  // A message raised by code (it has a context: a trigger, a policy's function…) says whatever the code put in it.
  const fromCode = withhold && hasField(msg, W, end);
  const parts: Buffer[] = [];
  let changed = false;
  let pos = 5;
  while (pos < end && msg[pos] !== 0) {
    const code = msg[pos]!;
    const stop = msg.indexOf(0, pos + 1);
    if (stop < 0 || stop >= end) throw new ProtocolError('unterminated field in an ErrorResponse or NoticeResponse');
    let text: string | undefined;
    if (withhold && (code === D || code === W || code === Q || code === P || (fromCode && (code === M || code === H)))) {
      text = code === P ? '' : WITHHELD;
    } else if (detectors && (code === M || code === D || code === H || code === W)) {
      const value = msg.toString('utf8', pos + 1, stop);
      const masked = detectors.apply(value);
      if (masked !== value) text = masked;
    }
    if (text === undefined) {
      parts.push(msg.subarray(pos, stop + 1));
    } else {
      changed = true;
      if (code !== P) parts.push(Buffer.from(`${String.fromCharCode(code)}${text}\0`));
    }
    pos = stop + 1;
  }
  if (!changed) return null;
  parts.push(Buffer.from([0]));
  return frame(type, Buffer.concat(parts));
}

function hasField(msg: Buffer, field: number, end: number): boolean {
  for (let pos = 5; pos < end && msg[pos] !== 0; pos = msg.indexOf(0, pos + 1) + 1) {
    if (msg[pos] === field) return true;
    if (msg.indexOf(0, pos + 1) < 0) return false;
  }
  return false;
}
