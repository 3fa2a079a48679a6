// Scans client → server messages during the relay. Messages that carry SQL
// (Query, Parse) or call functions (FunctionCall) are handed to the inspector;
// everything else passes through without being copied. A chunk in which
// nothing is replaced is forwarded as the very same Buffer.
import { ProtocolError, SqlState } from '@warden/proto/pgwire';

/** Returns a replacement for the whole message, or null to forward it unchanged, or HOLD to stop at it. */
export type Inspector = (type: number, message: Buffer) => Buffer | null;

const EMPTY = Buffer.alloc(0);
/** From the inspector: forward nothing from this message on (a statement held for approval); see `held`. */
export const HOLD = Buffer.alloc(0);
/** Inspected messages are read whole; larger ones are refused rather than buffered. */
export const MAX_INSPECTED_MESSAGE = 256 * 1024 * 1024;
/** Messages split across reads below this size are not counted against the budget. */
const UNCOUNTED_BYTES = 64 * 1024;

/**
 * The memory all sessions together may hold in inspected messages that are
 * still arriving: a flood of large partial statements is refused once it is
 * spent, instead of growing the process.
 */
export class MemoryBudget {
  used = 0;
  constructor(readonly bytes: number) {}

  take(n: number): boolean {
    if (this.used + n > this.bytes) return false;
    this.used += n;
    return true;
  }

  give(n: number): void {
    this.used -= n;
  }
}

/** An inspected message the filter will not read: too large, or no memory left for it. */
export class MessageRefused extends Error {
  constructor(
    readonly sqlstate: string,
    message: string,
  ) {
    super(message);
  }
}

export interface FilterLimits {
  /** Largest message read of the `limited` types (default MAX_INSPECTED_MESSAGE); other inspected types keep that default. */
  maxMessage?: number;
  /** From messageTypes(): the types maxMessage bounds (all inspected ones when absent). */
  limited?: Uint8Array;
  /** What a message over maxMessage is told. */
  tooLarge?: (bytes: number) => MessageRefused;
  /** Shared by every session's filters. */
  budget?: MemoryBudget;
}

/** A table of message types, shared by every session's filter: one array read per message. */
export function messageTypes(...types: number[]): Uint8Array {
  const table = new Uint8Array(256);
  for (const t of types) table[t] = 1;
  return table;
}

export class MessageFilter {
  /** Bytes of a pass-through message that are still to come. */
  private skip = 0;
  /** Start of an inspected message (or a header) split across chunks. */
  private partial: Buffer[] = [];
  private partialLength = 0;
  /** Total bytes the partial message needs; 0 while only part of a header is known. */
  private partialNeed = 0;
  /** After an inspector's HOLD: that message and the rest of its chunk, not forwarded. The caller takes it. */
  held: Buffer | null = null;
  /** Bytes of the budget held for the partial message. */
  private reserved = 0;
  private readonly maxMessage: number;

  constructor(
    /** From messageTypes(): 1 for the types handed to the inspector. */
    private readonly inspected: Uint8Array,
    private readonly inspect: Inspector,
    private readonly limits: FilterLimits = {},
  ) {
    this.maxMessage = limits.maxMessage ?? MAX_INSPECTED_MESSAGE;
  }

  /** Gives back what the partial message held of the budget (the session ended). */
  dispose(): void {
    this.release();
    this.partial = [];
    this.partialLength = this.partialNeed = 0;
  }

  private release(): void {
    if (this.reserved) this.limits.budget?.give(this.reserved);
    this.reserved = 0;
  }

  filter(chunk: Buffer): Buffer {
    if (this.partialLength) {
      if (this.partialNeed && this.partialLength + chunk.length < this.partialNeed) {
        this.partial.push(chunk);
        this.partialLength += chunk.length;
        return EMPTY;
      }
      this.partial.push(chunk);
      chunk = Buffer.concat(this.partial);
      this.partial = [];
      this.partialLength = this.partialNeed = 0;
      this.release();
    }
    const length = chunk.length;
    let pos = Math.min(this.skip, length);
    this.skip -= pos;
    let end = length;
    let parts: Buffer[] | null = null;
    let copyFrom = 0;
    while (pos < length) {
      if (length - pos < 5) {
        end = this.stash(chunk, pos, 0);
        break;
      }
      const type = chunk[pos]!;
      const total = chunk.readInt32BE(pos + 1) + 1;
      if (total < 5) throw new ProtocolError(`invalid message length ${total - 1}`);
      if (this.inspected[type] === 0) {
        if (pos + total <= length) pos += total;
        else {
          this.skip = pos + total - length;
          pos = length;
        }
        continue;
      }
      if (total > (this.limits.limited && this.limits.limited[type] === 0 ? MAX_INSPECTED_MESSAGE : this.maxMessage)) {
        throw this.limits.tooLarge?.(total) ?? new ProtocolError(`a message of ${total} bytes is larger than Warden inspects`);
      }
      if (pos + total > length) {
        const budget = this.limits.budget;
        if (budget && total >= UNCOUNTED_BYTES) {
          if (!budget.take(total)) {
            throw new MessageRefused(SqlState.outOfMemory, `warden: the gateway's memory for statements still arriving (${mib(budget.bytes)}, --statement-memory) is in use; the session was ended, retry shortly`);
          }
          this.reserved = total;
        }
        end = this.stash(chunk, pos, total);
        break;
      }
      const replacement = this.inspect(type, chunk.subarray(pos, pos + total));
      if (replacement) {
        if (replacement === HOLD) {
          this.held = chunk.subarray(pos);
          end = pos;
          break;
        }
        (parts ??= []).push(chunk.subarray(copyFrom, pos), replacement);
        copyFrom = pos + total;
      }
      pos += total;
    }
    if (!parts) return end === length ? chunk : chunk.subarray(0, end);
    parts.push(chunk.subarray(copyFrom, end));
    return Buffer.concat(parts);
  }

  /** True when what was passed on so far ends at a message boundary: a message of the gateway's own may go next. */
  get between(): boolean {
    return this.skip === 0;
  }

  private stash(chunk: Buffer, from: number, need: number): number {
    // A copy, so the rest of a large chunk is not kept alive by it.
    const rest = Buffer.from(chunk.subarray(from));
    this.partial = [rest];
    this.partialLength = rest.length;
    this.partialNeed = need;
    return from;
  }
}

/** Bytes as MiB, for messages. */
export const mib = (bytes: number) => `${Math.round((bytes / 1048576) * 10) / 10} MiB`;
