// Cuts a byte stream into protocol messages, typed (type byte, int32 length,
// body) or, before the startup completes, untyped (int32 length, body).
// Chunks are only joined once the message at the head is complete, so a
// large message arriving in many chunks is copied once; a message inside one
// chunk is a subarray of it, never a copy.
import { ProtocolError } from './errors.js';

export interface Message {
  /** Type byte; 0 for startup-phase packets, which have none. */
  type: number;
  /** The bytes after the length field. */
  body: Buffer;
  /** The whole message as received: type byte (if any), length, body. */
  raw: Buffer;
}

export class MessageReader {
  private chunks: Buffer[] = [];
  private size = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  /** Next startup-phase packet (int32 length, then body), or null if incomplete. */
  nextUntyped(maxLength: number): Message | null {
    return this.take(0, maxLength);
  }

  /** Next typed message (byte type, int32 length, body), or null if incomplete. */
  nextTyped(maxLength: number): Message | null {
    return this.take(1, maxLength);
  }

  /** Whatever has been pushed but not returned; the reader is empty afterwards. */
  drain(): Buffer {
    const rest = this.size ? this.join() : Buffer.alloc(0);
    this.chunks = [];
    this.size = 0;
    return rest;
  }

  private take(typeBytes: 0 | 1, maxLength: number): Message | null {
    if (this.size < typeBytes + 4) return null;
    let head = this.chunks[0]!;
    if (head.length < typeBytes + 4) head = this.join();
    const length = head.readInt32BE(typeBytes);
    if (length < 4) throw new ProtocolError(`invalid message length ${length}`);
    if (length > maxLength) throw new ProtocolError(`message of ${length} bytes exceeds the limit of ${maxLength}`);
    const end = typeBytes + length;
    if (this.size < end) return null;
    if (head.length < end) head = this.join();
    const msg = { type: typeBytes ? head[0]! : 0, body: head.subarray(typeBytes + 4, end), raw: head.subarray(0, end) };
    if (end === head.length) this.chunks.shift();
    else this.chunks[0] = head.subarray(end);
    this.size -= end;
    return msg;
  }

  /** All pending chunks as one Buffer (kept as the only chunk). */
  private join(): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    this.chunks = [all];
    return all;
  }
}
