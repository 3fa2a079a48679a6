// Encoding and decoding of link frames (see frames.ts). The decoder hands out
// payloads as views into the chunk they arrived in. DATA is a byte stream, so
// a DATA frame cut across chunks is handed out in parts, as views too; other
// frames cut across chunks are copied, once. (Copying cut DATA frames made
// half of a streaming gateway's garbage.)
import { FrameType, HEADER_SIZE, LinkProtocolError, MAX_PAYLOAD, frameTypeName, isKnownFrameType } from './frames.js';

const DATA = FrameType.DATA;

/** Writes a frame header at `offset`; returns the offset just past it. */
export function writeHeader(target: Buffer, offset: number, type: number, channel: number, length: number): number {
  target.writeUInt32BE(length, offset);
  target[offset + 4] = type;
  target.writeUInt32BE(channel, offset + 5);
  return offset + HEADER_SIZE;
}

/** A whole frame in a fresh buffer (for tests and rare frames). */
export function encodeFrame(type: number, channel: number, payload?: Uint8Array): Buffer {
  const n = payload?.length ?? 0;
  const out = Buffer.allocUnsafe(HEADER_SIZE + n);
  writeHeader(out, 0, type, channel, n);
  if (payload) out.set(payload, HEADER_SIZE);
  return out;
}

/**
 * Receives decoded frames. `payload` is a view into the chunk it came in:
 * chunks are never rewritten (see reader.ts), but a view kept keeps its
 * whole chunk, so small payloads kept for long are copied.
 */
export interface FrameSink {
  /** `more`: a part of a DATA frame, whose next bytes come with the next call. */
  frame(type: number, channel: number, payload: Buffer, more?: boolean): void;
}

const EMPTY = Buffer.alloc(0);

/**
 * Incremental frame decoder. Throws LinkProtocolError on an unknown type or
 * an oversized payload; after that the stream is unusable (the link closes).
 */
export class FrameDecoder {
  /** Bytes of a header cut across chunks. */
  private head = Buffer.allocUnsafe(HEADER_SIZE);
  private headFill = 0;
  /** A payload cut across chunks: its buffer and how much of it is filled. */
  private partial: Buffer | null = null;
  private partialFill = 0;
  private partialType = 0;
  private partialChannel = 0;
  /** Bytes of a cut DATA frame still to come, and its channel. */
  private dataLeft = 0;
  private dataChannel = 0;

  constructor(
    private readonly sink: FrameSink,
    /** Mutable: a listener keeps it small until the peer has authenticated. */
    public maxPayload = MAX_PAYLOAD,
  ) {}

  push(chunk: Buffer): void {
    let pos = 0;
    const end = chunk.length;

    // Finish what the previous chunk left open.
    if (this.dataLeft > 0) {
      pos = Math.min(this.dataLeft, end);
      this.dataLeft -= pos;
      this.sink.frame(DATA, this.dataChannel, chunk.subarray(0, pos), this.dataLeft > 0);
      if (this.dataLeft > 0) return;
    } else if (this.partial) {
      pos = this.fillPartial(chunk, 0);
      if (this.partial) return;
    } else if (this.headFill > 0) {
      const take = Math.min(HEADER_SIZE - this.headFill, end);
      chunk.copy(this.head, this.headFill, 0, take);
      this.headFill += take;
      pos = take;
      if (this.headFill < HEADER_SIZE) return;
      this.headFill = 0;
      const length = this.head.readUInt32BE(0);
      const type = this.head[4]!;
      const channel = this.head.readUInt32BE(5);
      this.check(type, length);
      if (end - pos >= length) {
        this.sink.frame(type, channel, length === 0 ? EMPTY : chunk.subarray(pos, pos + length));
        pos += length;
      } else {
        this.cut(type, channel, length, chunk, pos);
        return;
      }
    }

    // Whole frames straight out of the chunk.
    while (end - pos >= HEADER_SIZE) {
      const length = chunk.readUInt32BE(pos);
      const type = chunk[pos + 4]!;
      const channel = chunk.readUInt32BE(pos + 5);
      this.check(type, length);
      const start = pos + HEADER_SIZE;
      if (end - start < length) {
        this.cut(type, channel, length, chunk, start);
        return;
      }
      pos = start + length;
      this.sink.frame(type, channel, length === 0 ? EMPTY : chunk.subarray(start, pos));
    }
    if (pos < end) {
      chunk.copy(this.head, 0, pos, end);
      this.headFill = end - pos;
    }
  }

  private check(type: number, length: number): void {
    if (!isKnownFrameType(type)) throw new LinkProtocolError(`unknown frame type ${type}`);
    if (length > this.maxPayload) {
      throw new LinkProtocolError(`${frameTypeName(type)} frame of ${length} bytes exceeds the limit of ${this.maxPayload}`);
    }
  }

  /** A frame whose payload runs past the chunk, starting at `pos`. */
  private cut(type: number, channel: number, length: number, chunk: Buffer, pos: number): void {
    if (type !== DATA) {
      this.startPartial(type, channel, length);
      this.fillPartial(chunk, pos);
      return;
    }
    this.dataChannel = channel;
    this.dataLeft = length - (chunk.length - pos);
    if (pos < chunk.length) this.sink.frame(DATA, channel, chunk.subarray(pos), true);
  }

  private startPartial(type: number, channel: number, length: number): void {
    this.partial = Buffer.allocUnsafe(length);
    this.partialFill = 0;
    this.partialType = type;
    this.partialChannel = channel;
  }

  /** Copies what it can into the partial payload; delivers it when complete. Returns the new position. */
  private fillPartial(chunk: Buffer, pos: number): number {
    const p = this.partial!;
    const take = Math.min(p.length - this.partialFill, chunk.length - pos);
    chunk.copy(p, this.partialFill, pos, pos + take);
    this.partialFill += take;
    if (this.partialFill === p.length) {
      this.partial = null;
      this.sink.frame(this.partialType, this.partialChannel, p);
    }
    return pos + take;
  }
}
