// An outbox record: one AuditEvent as a field of AuditBatch (tag 0x1a, field 3,
// length-delimited; the length as a varint; the event in the protobuf binary
// encoding). Any run of records is thus an AuditBatch, which the transports
// send as written. They need only an event's id, resource and identity, which
// recordHead reads from the event's first fields without decoding the rest.
import { AuditBatch, type AuditEvent } from '@warden/proto';
import { MAX_EVENT_BYTES, fitEvent } from './limit.js';

const RECORD_TAG = 0x1a;
/** Far above any event fitEvent lets through: a longer length is garbage, not a record. */
const MAX_RECORD_BYTES = 64 << 20;

/** AuditEvent's field numbers that recordHead reads. */
const ID = 1;
const IDENTITY = 6;
const RESOURCE = 7;
const AUTH_FAILURE = 12;
const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

/**
 * One writer for every record: a fresh one starts at 128 bytes and grows by
 * copying, two or three times per event. (AuditBatch.encode of nothing is how
 * to get one without the protobuf runtime as a dependency of its own.)
 */
const writer = AuditBatch.encode({ gatewayId: '', events: [] });

/**
 * The record of an event, encoded once, stored as it is and sent as it is:
 * an AuditBatch of that one event is exactly its record. Events too large
 * for the transports are shortened first (limit.ts).
 */
export function encodeRecord(event: AuditEvent): Buffer {
  let bytes = AuditBatch.encode({ gatewayId: '', events: [event] }, writer).finish();
  if (bytes.length > MAX_EVENT_BYTES) bytes = AuditBatch.encode({ gatewayId: '', events: [fitEvent(event)] }, writer).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

/**
 * The record at `at`: where its event's bytes start and end (`end` may lie
 * beyond `buf`); undefined when `buf` ends inside the header; null when the
 * bytes there are not a record.
 */
export function recordAt(buf: Buffer, at: number): { start: number; end: number } | null | undefined {
  if (at >= buf.length) return undefined;
  if (buf[at] !== RECORD_TAG) return null;
  let length = 0;
  for (let i = 1; i <= 4; i++) {
    if (at + i >= buf.length) return undefined;
    const byte = buf[at + i]!;
    length += (byte & 0x7f) * 2 ** (7 * (i - 1));
    if (byte < 0x80) return length > MAX_RECORD_BYTES ? null : { start: at + i + 1, end: at + i + 1 + length };
  }
  return null;
}

/** What the transports need of an event: its id, and the subject's parts. */
export interface RecordHead {
  id: string;
  resource: string;
  identity: string;
  authFailure: boolean;
}

/**
 * The head of the event in `buf[start, end)`, or undefined when those bytes
 * are not a well-formed message with an id: every field's length must land
 * inside them, exactly at `end` for the last.
 */
export function recordHead(buf: Buffer, start: number, end: number): RecordHead | undefined {
  const head: RecordHead = { id: '', resource: '', identity: '', authFailure: false };
  at = start;
  while (at < end) {
    const key = varint(buf, end);
    if (key < 0) return undefined;
    const field = Math.floor(key / 8);
    switch (key & 7) {
      case WIRE_VARINT:
        if (varint(buf, end) < 0) return undefined;
        break;
      case WIRE_I64:
        at += 8;
        break;
      case WIRE_I32:
        at += 4;
        break;
      case WIRE_LEN: {
        const length = varint(buf, end);
        if (length < 0 || at + length > end) return undefined;
        if (field === ID) head.id = buf.toString('utf8', at, at + length);
        else if (field === IDENTITY) head.identity = buf.toString('utf8', at, at + length);
        else if (field === RESOURCE) head.resource = buf.toString('utf8', at, at + length);
        else if (field === AUTH_FAILURE) head.authFailure = true;
        at += length;
        break;
      }
      default:
        return undefined;
    }
  }
  return at === end && head.id ? head : undefined;
}

/** recordHead's read position: a module variable rather than a closure made per record. */
let at = 0;

/** The varint at `at` (moving past it), or -1 when it runs past `end`; values beyond 2^35 are not exact (lengths never are). */
function varint(buf: Buffer, end: number): number {
  let value = 0;
  for (let shift = 0; shift < 64; shift += 7) {
    if (at >= end) return -1;
    const byte = buf[at++]!;
    if (shift < 35) value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return value;
  }
  return -1;
}
