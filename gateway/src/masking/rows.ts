// Masks the DataRow messages of one result: each masked column's value is
// replaced, the detectors run over the other text-like values, and the
// message is rebuilt with its new lengths. A row no mask touches is not
// copied, and a result with nothing to mask is not even parsed.
import { DATA_ROW, ProtocolError } from '@warden/proto/pgwire';
import { type Detectors, detectValue, textOffset } from './detectors.js';
import type { MaskPlan, MaskSet } from './types.js';
import { copyBytes, planMasker, type ByteMasker, type ValueMasker } from './values.js';

/** What is done to one column's values: masked, run through the detectors (after `skip` bytes), or passed. */
export type ColumnAction = { mask: ValueMasker } | { detect: Detectors; skip: number } | null;

/** The new value of one field: undefined when unchanged, null for SQL NULL. */
export function actOn(action: ColumnAction, value: Buffer | null): Buffer | null | undefined {
  if (action === null || value === null) return undefined;
  if ('mask' in action) return action.mask(value);
  return detectValue(action.detect, value, action.skip) ?? undefined;
}

/** A copy of `src` with some ranges replaced, made only once the first range is. */
export class Splice {
  private parts: Buffer[] | null = null;
  private at = 0;

  constructor(private readonly src: Buffer) {}

  replace(start: number, end: number, ...by: Buffer[]): void {
    (this.parts ??= []).push(this.src.subarray(this.at, start), ...by);
    this.at = end;
  }

  /** The new bytes up to `end`, or null when nothing was replaced. */
  finish(end = this.src.length): Buffer | null {
    if (this.parts === null) return null;
    this.parts.push(this.src.subarray(this.at, end));
    return Buffer.concat(this.parts);
  }
}

export const int32Buffer = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n);
  return b;
};

/** Thrown when a row has another number of columns than the plan: the rows cannot be masked, the statement must be refused. */
export function columnCountError(got: number, planned: number): Error {
  return new Error(`a row has ${got} columns where the masking plan has ${planned}: the result cannot be masked`);
}

export class RowMasker {
  private readonly actions: ColumnAction[] = [];
  /** Per row, reused: where each field starts, and its new value (undefined: unchanged). */
  private readonly starts: number[] = [];
  private readonly values: Array<Buffer | ByteMasker | null | undefined> = [];
  private readonly idle: boolean;

  /**
   * `formats`: the result format of each column (0 text, 1 binary), one
   * entry for all, or none for all text. `types`: the columns' type oids
   * from RowDescription, which say which binary values are text the
   * detectors can read.
   */
  constructor(
    private readonly plan: MaskPlan,
    private readonly set: MaskSet,
    private readonly detectors: Detectors | undefined,
    private readonly formats: number[],
    private readonly types?: number[],
  ) {
    // Compiled up front so that an unmaskable column refuses the statement before any row.
    plan.columns.forEach((_, i) => this.actions.push(this.action(i)));
    this.idle = plan.columns.every((c) => c === null) && !(plan.detect && detectors);
  }

  private binary(i: number): boolean {
    if (this.plan.binary) return true;
    const f = this.formats.length === 1 ? this.formats[0] : this.formats[i];
    return f === 1;
  }

  private action(i: number): ColumnAction {
    const col = this.plan.columns[i];
    const binary = this.binary(i);
    if (col) return { mask: planMasker(col, this.set, binary) };
    if (!this.plan.detect || !this.detectors) return null;
    const skip = binary ? textOffset(this.types?.[i]) : 0;
    return skip < 0 ? null : { detect: this.detectors, skip };
  }

  /** One whole DataRow message masked, or null when no value changed. Throws when the row does not fit the plan. */
  dataRow(msg: Buffer): Buffer | null {
    if (msg[0] !== DATA_ROW) throw new ProtocolError('not a DataRow');
    if (this.idle) return null;
    const count = msg.readInt16BE(5);
    const planned = this.plan.columns.length;
    if (planned > 0 && count !== planned) throw columnCountError(count, planned);
    // First pass: the new values and the length they make; the row is copied once, only if one changed.
    const { starts, values } = this;
    let pos = 7;
    let size = msg.length;
    let changed = false;
    for (let i = 0; i < count; i++) {
      if (pos + 4 > msg.length) throw new ProtocolError('truncated DataRow');
      const len = msg.readInt32BE(pos);
      const end = pos + 4 + Math.max(len, 0);
      if (end > msg.length) throw new ProtocolError('truncated DataRow');
      while (this.actions.length <= i) this.actions.push(this.action(this.actions.length));
      const action = this.actions[i]!;
      starts[i] = pos;
      let value: Buffer | ByteMasker | null | undefined;
      if (action === null || len < 0) value = undefined;
      else if ('mask' in action && action.mask.bytes) {
        value = action.mask.bytes;
        size += value.size(msg, pos + 4, end) - len;
      } else {
        value = actOn(action, msg.subarray(pos + 4, end));
        if (value !== undefined) size += (value === null ? 0 : value.length) - len;
      }
      values[i] = value;
      if (value !== undefined) changed = true;
      pos = end;
    }
    starts[count] = pos;
    if (!changed) return null;
    size -= msg.length - pos;
    const out = Buffer.allocUnsafe(size);
    copyBytes(msg, 0, 7, out, 0);
    out.writeInt32BE(size - 1, 1);
    let at = 7;
    // Unchanged fields are copied in runs: one copy per run rather than per field.
    let run = 7;
    for (let i = 0; i < count; i++) {
      const value = values[i];
      if (value === undefined) continue;
      at += copyBytes(msg, run, starts[i]!, out, at);
      run = starts[i + 1]!;
      if (value === null) at = out.writeInt32BE(-1, at);
      else if (Buffer.isBuffer(value)) {
        at = out.writeInt32BE(value.length, at);
        at += copyBytes(value, 0, value.length, out, at);
      } else {
        const from = at + 4;
        at = (value as ByteMasker).write(msg, starts[i]! + 4, run, out, from);
        out.writeInt32BE(at - from, from - 4);
      }
      values[i] = undefined;
    }
    copyBytes(msg, run, pos, out, at);
    return out;
  }
}

/** The columns of a RowDescription ('T') message: source table oid and attribute number, type oid, format. */
export function rowDescriptionInfo(msg: Buffer): { tableOids: number[]; attnums: number[]; types: number[]; formats: number[] } {
  if (msg[0] !== 0x54) throw new ProtocolError('not a RowDescription');
  const info = { tableOids: [] as number[], attnums: [] as number[], types: [] as number[], formats: [] as number[] };
  const count = msg.readInt16BE(5);
  let pos = 7;
  for (let i = 0; i < count; i++) {
    const nameEnd = msg.indexOf(0, pos);
    if (nameEnd < 0 || nameEnd + 19 > msg.length) throw new ProtocolError('truncated RowDescription');
    pos = nameEnd + 1;
    info.tableOids.push(msg.readUInt32BE(pos));
    info.attnums.push(msg.readInt16BE(pos + 4));
    info.types.push(msg.readUInt32BE(pos + 6));
    // typlen (int16) and typmod (int32) are not needed.
    info.formats.push(msg.readInt16BE(pos + 16));
    pos += 18;
  }
  return info;
}
