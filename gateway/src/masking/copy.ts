// Masks the CopyData messages of COPY … TO STDOUT. The server sends one
// CopyData per row; in the binary format the file header comes in front of
// the first row and the trailer (int16 -1) comes on its own. Text and csv
// rows are split into fields by Postgres' own rules, masked values are
// written back escaped (text) or quoted (csv), and the row is rebuilt.
import { frame, ProtocolError } from '@warden/proto/pgwire';
import { type Detectors, textOffset } from './detectors.js';
import { actOn, type ColumnAction, columnCountError, int32Buffer, Splice } from './rows.js';
import type { CopyFormat, MaskPlan, MaskSet } from './types.js';
import { copyBytes, planMasker, type ByteMasker } from './values.js';

export const COPY_DATA = 0x64; // 'd'
const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const BACKSLASH = 0x5c;

/** COPY's defaults for a format, as the server applies them. */
export function defaultCopyFormat(format: CopyFormat['format']): CopyFormat {
  return format === 'csv'
    ? { format, delimiter: ',', null: '', quote: '"', escape: '"', header: false }
    : { format, delimiter: '\t', null: '\\N', quote: '"', escape: '"', header: false };
}

// Text format: the escapes COPY reads (\b \f \n \r \t \v, octal, \x hex, any other byte as itself).
const UNESCAPE: Record<number, number> = { 0x62: 8, 0x66: 12, 0x6e: 10, 0x72: 13, 0x74: 9, 0x76: 11 };
const ESCAPE: Record<number, number> = { 8: 0x62, 12: 0x66, 10: 0x6e, 13: 0x72, 9: 0x74, 11: 0x76, [BACKSLASH]: BACKSLASH };
const isOctal = (c: number | undefined) => c !== undefined && c >= 0x30 && c <= 0x37;
const hexValue = (c: number | undefined) =>
  c === undefined ? -1 : c >= 0x30 && c <= 0x39 ? c - 0x30 : (c | 0x20) >= 0x61 && (c | 0x20) <= 0x66 ? (c | 0x20) - 0x57 : -1;

function unescapeText(raw: Buffer): Buffer {
  if (!raw.includes(BACKSLASH)) return raw;
  const out = Buffer.allocUnsafe(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== BACKSLASH || i + 1 === raw.length) {
      out[n++] = c;
      continue;
    }
    const e = raw[++i]!;
    if (isOctal(e)) {
      let v = e - 0x30;
      for (let k = 0; k < 2 && isOctal(raw[i + 1]); k++) v = v * 8 + raw[++i]! - 0x30;
      out[n++] = v & 0xff;
    } else if (e === 0x78 && hexValue(raw[i + 1]) >= 0) {
      let v = hexValue(raw[++i]);
      if (hexValue(raw[i + 1]) >= 0) v = v * 16 + hexValue(raw[++i]);
      out[n++] = v;
    } else {
      out[n++] = UNESCAPE[e] ?? e;
    }
  }
  return out.subarray(0, n);
}

/** The letter after a backslash for each byte COPY's text format escapes (0: none); the delimiter is escaped as itself. */
const ESCAPE_TABLE = new Uint8Array(256);
for (const [c, e] of Object.entries(ESCAPE)) ESCAPE_TABLE[Number(c)] = e;

function escapeText(value: Buffer, delimiter: number): Buffer {
  let extra = 0;
  for (let i = 0; i < value.length; i++) if (ESCAPE_TABLE[value[i]!] || value[i] === delimiter) extra++;
  if (extra === 0) return value;
  const out = Buffer.allocUnsafe(value.length + extra);
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    const e = ESCAPE_TABLE[c] || (c === delimiter ? c : 0);
    if (e) out[n++] = BACKSLASH;
    out[n++] = e || c;
  }
  return out;
}

/** A csv value always quoted, so it is never read as NULL and may hold anything. */
function quoteCsv(value: Buffer, quote: number, escape: number): Buffer {
  let extra = 2;
  for (let i = 0; i < value.length; i++) if (value[i] === quote || value[i] === escape) extra++;
  const out = Buffer.allocUnsafe(value.length + extra);
  let n = 0;
  out[n++] = quote;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === quote || c === escape) out[n++] = escape;
    out[n++] = c;
  }
  out[n++] = quote;
  return out;
}

const oneByte = (s: string, what: string): number => {
  const b = Buffer.from(s);
  if (b.length !== 1) throw new Error(`COPY ${what} must be one byte, not ${JSON.stringify(s)}`);
  return b[0]!;
};

export class CopyMasker {
  private readonly format: CopyFormat;
  private readonly delimiter: number;
  private readonly quote: number;
  private readonly escape: number;
  private readonly nullBytes: Buffer;
  private readonly actions: ColumnAction[];
  private readonly idle: boolean;
  /** Per row, reused: start, end and replacement of each changed field. */
  private readonly edits: Array<number | Buffer | ByteMasker> = [];
  /** The text/csv header row, or the binary file header, is still to come. */
  private headerPending: boolean;

  /**
   * `overallFormat`: CopyOutResponse's (0 text or csv, 1 binary). `types`:
   * the columns' type oids where known; in the binary format only columns
   * with a text-like type go through the detectors.
   */
  constructor(
    private readonly plan: MaskPlan,
    set: MaskSet,
    private readonly detectors: Detectors | undefined,
    overallFormat: number,
    private readonly types?: number[],
  ) {
    const binary = overallFormat === 1;
    this.format = plan.copy ?? defaultCopyFormat(binary ? 'binary' : 'text');
    if ((this.format.format === 'binary') !== binary) {
      throw new Error(`COPY ${this.format.format} announced as ${binary ? 'binary' : 'text'} data: the rows cannot be masked`);
    }
    this.delimiter = oneByte(this.format.delimiter, 'DELIMITER');
    this.quote = oneByte(this.format.quote || '"', 'QUOTE');
    this.escape = oneByte(this.format.escape || this.format.quote || '"', 'ESCAPE');
    this.nullBytes = Buffer.from(this.format.null);
    this.headerPending = binary || this.format.header;
    this.actions = plan.columns.map((col, i) => (col ? { mask: planMasker(col, set, binary) } : this.detectAction(i)));
    this.idle = plan.columns.every((c) => c === null) && !(plan.detect && detectors);
  }

  private detectAction(i: number): ColumnAction {
    if (!this.plan.detect || !this.detectors) return null;
    const skip = this.format.format === 'binary' ? textOffset(this.types?.[i]) : 0;
    return skip < 0 ? null : { detect: this.detectors, skip };
  }

  private actionFor(i: number): ColumnAction {
    while (this.actions.length <= i) this.actions.push(this.detectAction(this.actions.length));
    return this.actions[i]!;
  }

  /** One whole CopyData message masked, or null when unchanged. Throws when a row does not fit the plan. */
  data(msg: Buffer): Buffer | null {
    if (msg[0] !== COPY_DATA) throw new ProtocolError('not a CopyData');
    if (this.idle) return null;
    const body = msg.subarray(5, 1 + msg.readInt32BE(1));
    if (this.format.format === 'binary') {
      const out = this.binaryRows(body);
      return out && frame(COPY_DATA, out);
    }
    if (this.headerPending) {
      this.headerPending = false;
      return null;
    }
    if (this.format.format === 'text') return this.textRow(msg);
    // The row's fields are spliced in the whole message, whose length is then set: one copy.
    const out = this.csvRow(body, new Splice(msg));
    if (out) out.writeInt32BE(out.length - 1, 1);
    return out;
  }

  private checkCount(count: number): void {
    const planned = this.plan.columns.length;
    if (planned > 0 && count !== planned) throw columnCountError(count, planned);
  }

  /** Where the row's fields end: before its "\n" or "\r\n". */
  private static lineEnd(body: Buffer): number {
    let end = body.length;
    if (body[end - 1] === 10) end--;
    if (body[end - 1] === 13) end--;
    return end;
  }

  /**
   * A text-format row, on the whole message: fields are found with indexOf,
   * the new length is added up first, and the row is written once. A masked
   * field without escapes is masked straight from the message.
   */
  private textRow(msg: Buffer): Buffer | null {
    let end = 1 + msg.readInt32BE(1);
    if (msg[end - 1] === 10) end--;
    if (msg[end - 1] === 13) end--;
    const delimiter = this.delimiter;
    const { edits } = this;
    edits.length = 0;
    let size = 1 + msg.readInt32BE(1);
    let backslash = msg.indexOf(BACKSLASH, 5);
    let field = 0;
    let start = 5;
    for (;;) {
      // The next delimiter that is not escaped (an odd run of backslashes before it escapes it).
      let i = start;
      for (;;) {
        i = msg.indexOf(delimiter, i);
        if (i < 0 || i >= end) {
          i = end;
          break;
        }
        let slashes = 0;
        while (i - slashes - 1 >= start && msg[i - slashes - 1] === BACKSLASH) slashes++;
        if (slashes % 2 === 0) break;
        i++;
      }
      const action = this.actionFor(field);
      if (action) {
        if (backslash >= 0 && backslash < start) backslash = msg.indexOf(BACKSLASH, start);
        const plain = backslash < 0 || backslash >= i;
        const isNull = i - start === this.nullBytes.length && msg.compare(this.nullBytes, 0, this.nullBytes.length, start, i) === 0;
        if (plain && !isNull && 'mask' in action && action.mask.bytes) {
          // No escapes in, none out: the mask's bytes are the field's (partial and e-mail keep a part of the value).
          edits.push(start, i, action.mask.bytes);
          size += action.mask.bytes.size(msg, start, i) - (i - start);
        } else {
          const raw = msg.subarray(start, i);
          const value = actOn(action, isNull ? null : plain ? raw : unescapeText(raw));
          if (value !== undefined) {
            const text = value === null ? this.nullBytes : escapeText(value, delimiter);
            edits.push(start, i, text);
            size += text.length - (i - start);
          }
        }
      }
      field++;
      if (i >= end) break;
      start = i + 1;
    }
    this.checkCount(field);
    if (edits.length === 0) return null;
    const out = Buffer.allocUnsafe(size);
    let at = copyBytes(msg, 0, 5, out, 0);
    let run = 5;
    for (let k = 0; k < edits.length; k += 3) {
      const from = edits[k] as number;
      const to = edits[k + 1] as number;
      const by = edits[k + 2] as Buffer | ByteMasker;
      at += copyBytes(msg, run, from, out, at);
      at = Buffer.isBuffer(by) ? at + copyBytes(by, 0, by.length, out, at) : (by as ByteMasker).write(msg, from, to, out, at);
      run = to;
    }
    copyBytes(msg, run, msg.length, out, at);
    out.writeInt32BE(size - 1, 1);
    return out;
  }

  private csvRow(body: Buffer, out: Splice): Buffer | null {
    const end = CopyMasker.lineEnd(body);
    const { delimiter, quote, escape } = this;
    let field = 0;
    let start = 0;
    for (;;) {
      // A field that does not start with a quote holds neither quote nor delimiter (Postgres quotes those): it ends at the next delimiter.
      if (body[start] !== quote) {
        let i = body.indexOf(delimiter, start);
        if (i < 0 || i > end) i = end;
        const raw = body.subarray(start, i);
        if (!raw.includes(quote)) {
          const action = this.actionFor(field);
          if (action) {
            const value = actOn(action, raw.equals(this.nullBytes) ? null : raw);
            if (value !== undefined) out.replace(5 + start, 5 + i, value === null ? this.nullBytes : quoteCsv(value, quote, escape));
          }
          field++;
          if (i >= end) break;
          start = i + 1;
          continue;
        }
      }
      // Postgres' reading rules: a quote opens or closes a quoted stretch
      // anywhere; inside one, ESCAPE before QUOTE or ESCAPE takes it literally.
      const action = this.actionFor(field);
      const bytes: number[] | null = action ? [] : null;
      let quoted = false;
      let sawQuote = false;
      let i = start;
      for (; i < end; i++) {
        const c = body[i]!;
        if (quoted) {
          if (c === escape && (body[i + 1] === escape || body[i + 1] === quote) && i + 1 < end) {
            bytes?.push(body[++i]!);
          } else if (c === quote) {
            quoted = false;
          } else {
            bytes?.push(c);
          }
        } else if (c === delimiter) {
          break;
        } else if (c === quote) {
          quoted = sawQuote = true;
        } else {
          bytes?.push(c);
        }
      }
      if (quoted) throw new ProtocolError('unterminated quoted csv field in COPY data');
      if (bytes) {
        const raw = body.subarray(start, i);
        const isNull = !sawQuote && raw.equals(this.nullBytes);
        const value = actOn(action, isNull ? null : Buffer.from(bytes));
        if (value !== undefined) out.replace(5 + start, 5 + i, value === null ? this.nullBytes : quoteCsv(value, quote, escape));
      }
      field++;
      if (i >= end) break;
      start = i + 1;
    }
    this.checkCount(field);
    return out.finish();
  }

  private binaryRows(body: Buffer): Buffer | null {
    let pos = 0;
    if (this.headerPending) {
      if (body.length < 19 || !body.subarray(0, 11).equals(SIGNATURE)) throw new ProtocolError('binary COPY data without its header');
      pos = 19 + body.readInt32BE(15);
      this.headerPending = false;
    }
    const out = new Splice(body);
    while (pos + 2 <= body.length) {
      const count = body.readInt16BE(pos);
      pos += 2;
      if (count === -1) break; // the trailer
      this.checkCount(count);
      for (let i = 0; i < count; i++) {
        if (pos + 4 > body.length) throw new ProtocolError('truncated binary COPY row');
        const len = body.readInt32BE(pos);
        const end = pos + 4 + Math.max(len, 0);
        if (end > body.length) throw new ProtocolError('truncated binary COPY row');
        const value = actOn(this.actionFor(i), len < 0 ? null : body.subarray(pos + 4, end));
        if (value !== undefined) {
          if (value === null) out.replace(pos, end, int32Buffer(-1));
          else out.replace(pos, end, int32Buffer(value.length), value);
        }
        pos = end;
      }
    }
    return out.finish();
  }
}
