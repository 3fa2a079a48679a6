// Splits a byte stream into protocol messages. Bytes are only copied when a
// message straddles two chunks; a message inside one chunk is a subarray.

export class ProtocolError extends Error {}

export interface Message {
  /** Type byte; 0 for startup-phase packets, which have none. */
  type: number;
  /** The bytes after the length field. */
  body: Buffer;
}

export class MessageReader {
  private pending: Buffer | null = null;

  push(chunk: Buffer): void {
    this.pending = this.pending && this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
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
    const rest = this.pending ?? Buffer.alloc(0);
    this.pending = null;
    return rest;
  }

  private take(typeBytes: 0 | 1, maxLength: number): Message | null {
    const buf = this.pending;
    if (!buf || buf.length < typeBytes + 4) return null;
    const length = buf.readInt32BE(typeBytes);
    if (length < 4) throw new ProtocolError(`invalid message length ${length}`);
    if (length > maxLength) throw new ProtocolError(`message of ${length} bytes exceeds the limit of ${maxLength}`);
    const end = typeBytes + length;
    if (buf.length < end) return null;
    const msg = { type: typeBytes ? buf[0]! : 0, body: buf.subarray(typeBytes + 4, end) };
    this.pending = end === buf.length ? null : buf.subarray(end);
    return msg;
  }
}
