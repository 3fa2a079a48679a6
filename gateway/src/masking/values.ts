// Masking one value so that it stays a valid value of its column's type, in
// the text format (the type's text representation) and in the binary format
// (the type's send format). Callers on the row path compile a mask once per
// column with compileMask and call the result per value; maskText and
// maskBinary are the one-off forms.
//
// `hash` digests the text Postgres prints for the value, so a value hashes
// the same in both formats. Where the binary format is decoded here the text
// matches Postgres' output for text-like types, integers, bool, uuid, json,
// jsonb and bytea (bytea_output hex), and for date, timestamp and time under
// DateStyle ISO. It differs for float4/float8 (JavaScript and Postgres print
// some numbers differently, e.g. 1e-07) and for timestamptz unless the
// session's TimeZone is UTC (binary is UTC, text is the session's zone).
import { createHmac } from 'node:crypto';
import type { ColumnPlan, MaskFunction, MaskSet } from './types.js';

/** A mask cannot give a valid value of the column's type (in that format). */
export class MaskTypeError extends Error {
  constructor(
    readonly fn: MaskFunction['fn'],
    readonly type: number,
    message = `mask ${fn} cannot give a valid value of type ${type}`,
  ) {
    super(message);
  }
}

/** Type oids of Postgres' string category that are built in: text, varchar, bpchar, name, "char". */
export const TEXT_OIDS: ReadonlySet<number> = new Set([25, 1043, 1042, 19, 18]);
const CHAR_OID = 18;
const NUMERIC_OID = 1700;

export const isTextLike = (type: number, textLike: boolean): boolean => textLike || TEXT_OIDS.has(type);

const REDACTED = '****';
const US_PER_DAY = 86_400_000_000n;
/** 1900-01-01 in days since 2000-01-01, Postgres' epoch for date and timestamp. */
const DAY_1900 = -36_524;
const HASH_SPAN_DAYS = 73_000;

/** What masking needs of a non-text type. */
interface TypeCodec {
  redactText: string;
  redactBinary: Buffer;
  /** A value of the type made from an HMAC. */
  hashText(h: Buffer): string;
  hashBinary(h: Buffer): Buffer;
  /** The text Postgres prints for a binary value; undefined when the type has no binary masks but null. */
  decode?(b: Buffer): string;
}

const sized = (size: number, write: (b: Buffer) => unknown) => {
  const b = Buffer.allocUnsafe(size);
  write(b);
  return b;
};
const int16 = (n: number) => sized(2, (b) => b.writeInt16BE(n));
const int32 = (n: number) => sized(4, (b) => b.writeInt32BE(n));
const int64 = (n: bigint) => sized(8, (b) => b.writeBigInt64BE(n));
const float32 = (n: number) => sized(4, (b) => b.writeFloatBE(n));
const float64 = (n: number) => sized(8, (b) => b.writeDoubleBE(n));

const pad = (n: number, width: number) => String(n).padStart(width, '0');

/** Year, month, day of a day count since 2000-01-01 (proleptic Gregorian, any range). */
function civil(days: number): [number, number, number] {
  // Count from 0000-03-01 so that the leap day ends each 400-year era.
  const z = days + 730_425;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (month <= 2 ? 1 : 0), month, day];
}

/** The date part as Postgres prints it in DateStyle ISO; `bc` is appended by the caller (after a time zone). */
function formatDay(days: number): { text: string; bc: boolean } {
  const [y, m, d] = civil(days);
  const bc = y <= 0;
  return { text: `${pad(bc ? 1 - y : y, 4)}-${pad(m, 2)}-${pad(d, 2)}`, bc };
}

function formatTime(us: bigint): string {
  const secs = Number(us / 1_000_000n);
  const frac = Number(us % 1_000_000n);
  const hms = `${pad(Math.floor(secs / 3600), 2)}:${pad(Math.floor(secs / 60) % 60, 2)}:${pad(secs % 60, 2)}`;
  return frac === 0 ? hms : `${hms}.${pad(frac, 6).replace(/0+$/, '')}`;
}

export function formatDate(days: number): string {
  if (days === 0x7fffffff) return 'infinity';
  if (days === -0x80000000) return '-infinity';
  const { text, bc } = formatDay(days);
  return bc ? `${text} BC` : text;
}

const INT64_MAX = 0x7fffffffffffffffn;
const INT64_MIN = -0x8000000000000000n;

export function formatTimestamp(us: bigint, tz: boolean): string {
  if (us === INT64_MAX) return 'infinity';
  if (us === INT64_MIN) return '-infinity';
  let days = us / US_PER_DAY;
  let rest = us % US_PER_DAY;
  if (rest < 0n) {
    rest += US_PER_DAY;
    days -= 1n;
  }
  const { text, bc } = formatDay(Number(days));
  return `${text} ${formatTime(rest)}${tz ? '+00' : ''}${bc ? ' BC' : ''}`;
}

function formatUuid(b: Buffer): string {
  const h = b.toString('hex', 0, 16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** 16 HMAC bytes with the version (4) and variant bits of a random uuid. */
function uuidBytes(h: Buffer): Buffer {
  const b = Buffer.from(h.subarray(0, 16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return b;
}

const hex32 = (h: Buffer) => h.toString('hex', 0, 16);
const hashDay = (h: Buffer) => DAY_1900 + (h.readUInt32BE(0) % HASH_SPAN_DAYS);
const hashMicros = (h: Buffer) => BigInt(DAY_1900) * US_PER_DAY + (h.readBigUInt64BE(0) % (BigInt(HASH_SPAN_DAYS) * US_PER_DAY));
const hashTimeOfDay = (h: Buffer) => h.readBigUInt64BE(0) % US_PER_DAY;
const int8Of = (h: Buffer) => h.readBigUInt64BE(0) & INT64_MAX;

function timestampCodec(tz: boolean): TypeCodec {
  return {
    redactText: formatTimestamp(BigInt(DAY_1900) * US_PER_DAY, tz),
    redactBinary: int64(BigInt(DAY_1900) * US_PER_DAY),
    hashText: (h) => formatTimestamp(hashMicros(h), tz),
    hashBinary: (h) => int64(hashMicros(h)),
    decode: (b) => formatTimestamp(b.readBigInt64BE(0), tz),
  };
}

function jsonCodec(prefix: Buffer): TypeCodec {
  const text = (s: string) => Buffer.concat([prefix, Buffer.from(s)]);
  return {
    redactText: `"${REDACTED}"`,
    redactBinary: text(`"${REDACTED}"`),
    hashText: (h) => `"${hex32(h)}"`,
    hashBinary: (h) => text(`"${hex32(h)}"`),
    decode: (b) => b.toString('utf8', prefix.length),
  };
}

const CODECS = new Map<number, TypeCodec>([
  [21, { redactText: '0', redactBinary: int16(0), hashText: (h) => String(h.readUInt16BE(0) & 0x7fff), hashBinary: (h) => int16(h.readUInt16BE(0) & 0x7fff), decode: (b) => String(b.readInt16BE(0)) }],
  [23, { redactText: '0', redactBinary: int32(0), hashText: (h) => String(h.readUInt32BE(0) & 0x7fffffff), hashBinary: (h) => int32(h.readUInt32BE(0) & 0x7fffffff), decode: (b) => String(b.readInt32BE(0)) }],
  [20, { redactText: '0', redactBinary: int64(0n), hashText: (h) => String(int8Of(h)), hashBinary: (h) => int64(int8Of(h)), decode: (b) => String(b.readBigInt64BE(0)) }],
  // Floats from an integer small enough to be exact in the type: 24 bits for float4, 48 for float8.
  [700, { redactText: '0', redactBinary: float32(0), hashText: (h) => String(h.readUIntBE(0, 3)), hashBinary: (h) => float32(h.readUIntBE(0, 3)), decode: (b) => String(b.readFloatBE(0)) }],
  [701, { redactText: '0', redactBinary: float64(0), hashText: (h) => String(h.readUIntBE(0, 6)), hashBinary: (h) => float64(h.readUIntBE(0, 6)), decode: (b) => String(b.readDoubleBE(0)) }],
  // numeric's binary form (base-10000 digits) is not written here: text format only.
  [NUMERIC_OID, { redactText: '0', redactBinary: Buffer.alloc(0), hashText: (h) => String(h.readUIntBE(0, 6)), hashBinary: () => Buffer.alloc(0) }],
  [16, { redactText: 'f', redactBinary: Buffer.from([0]), hashText: (h) => (h[0]! & 1 ? 't' : 'f'), hashBinary: (h) => Buffer.from([h[0]! & 1]), decode: (b) => (b[0] ? 't' : 'f') }],
  [1082, { redactText: formatDate(DAY_1900), redactBinary: int32(DAY_1900), hashText: (h) => formatDate(hashDay(h)), hashBinary: (h) => int32(hashDay(h)), decode: (b) => formatDate(b.readInt32BE(0)) }],
  [1114, timestampCodec(false)],
  [1184, timestampCodec(true)],
  [1083, { redactText: '00:00:00', redactBinary: int64(0n), hashText: (h) => formatTime(hashTimeOfDay(h)), hashBinary: (h) => int64(hashTimeOfDay(h)), decode: (b) => formatTime(b.readBigInt64BE(0)) }],
  [2950, { redactText: formatUuid(Buffer.alloc(16)), redactBinary: Buffer.alloc(16), hashText: (h) => formatUuid(uuidBytes(h)), hashBinary: uuidBytes, decode: formatUuid }],
  [114, jsonCodec(Buffer.alloc(0))],
  [3802, jsonCodec(Buffer.from([1]))],
  [17, { redactText: '\\x', redactBinary: Buffer.alloc(0), hashText: (h) => `\\x${hex32(h)}`, hashBinary: (h) => Buffer.from(h.subarray(0, 16)), decode: (b) => `\\x${b.toString('hex')}` }],
]);

/**
 * Whether `mask` gives a valid value of `type`: every mask for text-like
 * types; null, redact and hash for the types of CODECS (numeric only in the
 * text format); null only for any other type.
 */
export function maskable(mask: MaskFunction, type: number, textLike: boolean, binary = false): boolean {
  if (mask.fn === 'null' || isTextLike(type, textLike)) return true;
  if (mask.fn !== 'redact' && mask.fn !== 'hash') return false;
  const codec = CODECS.get(type);
  return codec !== undefined && (!binary || codec.decode !== undefined);
}

/** Keeps the last `keep` code points, each earlier one replaced by `char`; a value of `keep` or fewer is replaced whole. */
export function partial(value: string, keep: number, char: string): string {
  // Walk back `keep` code points from the end, then count the rest.
  let i = value.length;
  for (let k = 0; k < keep && i > 0; k++) {
    const c = value.charCodeAt(i - 1);
    i -= c >= 0xdc00 && c <= 0xdfff && i >= 2 && (value.charCodeAt(i - 2) & 0xfc00) === 0xd800 ? 2 : 1;
  }
  // A value no longer than `keep` is hidden whole.
  if (i === 0) i = value.length;
  let hidden = 0;
  for (let j = 0; j < i; j++) {
    const c = value.charCodeAt(j);
    if (!(c >= 0xdc00 && c <= 0xdfff && j > 0 && (value.charCodeAt(j - 1) & 0xfc00) === 0xd800)) hidden++;
  }
  return char.repeat(hidden) + value.slice(i);
}

/** Keeps the domain: '****@example.com'; '****' when there is no '@'. */
export function maskEmail(value: string): string {
  const at = value.lastIndexOf('@');
  return at < 0 ? REDACTED : REDACTED + value.slice(at);
}

const hmac = (key: Buffer, value: Buffer | string) => createHmac('sha256', key).update(value).digest();

/** A mask for a text-like value given as a string ("char" keeps one character). */
export function textMasker(mask: MaskFunction, key: Buffer, oneChar = false): (value: string) => string | null {
  const fit = oneChar ? (s: string) => String.fromCodePoint(s.codePointAt(0) ?? 32) : (s: string) => s;
  switch (mask.fn) {
    case 'null':
      return () => null;
    case 'redact': {
      const out = fit(mask.text ?? REDACTED);
      return () => out;
    }
    case 'partial': {
      const char = mask.char ? String.fromCodePoint(mask.char.codePointAt(0)!) : '*';
      const keep = Math.max(0, Math.floor(mask.keep));
      return (v) => fit(partial(v, keep, char));
    }
    case 'email':
      return (v) => fit(maskEmail(v));
    case 'hash':
      return (v) => fit(hex32(hmac(key, v)));
  }
}

const REDACTED_BYTES = Buffer.from(REDACTED);

/**
 * Copies src[start, end) to dst at `at`; returns the count. Buffer#copy
 * makes a view for every call, which costs more than a short loop for the
 * few bytes of one field.
 */
export function copyBytes(src: Buffer, start: number, end: number, dst: Buffer, at: number): number {
  const n = end - start;
  if (n > 64) return src.copy(dst, at, start, end);
  for (let i = 0; i < n; i++) dst[at + i] = src[start + i]!;
  return n;
}

/**
 * A mask that writes its output straight into the row being built, from a
 * range of the source message: no value is cut out or allocated on its own.
 */
export interface ByteMasker {
  size(src: Buffer, start: number, end: number): number;
  /** Writes the masked value at `at`; returns the offset after it. */
  write(src: Buffer, start: number, end: number, out: Buffer, at: number): number;
}

/** maskEmail on UTF-8 bytes: the domain's bytes are kept as they are. */
const EMAIL_BYTES: ByteMasker = {
  size(src, start, end) {
    const at = src.lastIndexOf(0x40, end - 1);
    return REDACTED_BYTES.length + (at < start ? 0 : end - at);
  },
  write(src, start, end, out, to) {
    const at = src.lastIndexOf(0x40, end - 1);
    to += copyBytes(REDACTED_BYTES, 0, REDACTED_BYTES.length, out, to);
    return at < start ? to : to + copyBytes(src, at, end, out, to);
  },
};

/** partial() on UTF-8 bytes: characters are counted by their lead bytes. */
function partialBytes(keep: number, char: Buffer): ByteMasker {
  // Where the kept characters start, and how many characters come before.
  const split = (src: Buffer, start: number, end: number): [number, number] => {
    let i = end;
    let kept = 0;
    while (i > start && kept < keep) if ((src[--i]! & 0xc0) !== 0x80) kept++;
    // A value no longer than `keep` is hidden whole.
    if (i === start) i = end;
    let hidden = 0;
    for (let j = start; j < i; j++) if ((src[j]! & 0xc0) !== 0x80) hidden++;
    return [i, hidden];
  };
  return {
    size(src, start, end) {
      const [i, hidden] = split(src, start, end);
      return hidden * char.length + end - i;
    },
    write(src, start, end, out, at) {
      const [i, hidden] = split(src, start, end);
      if (char.length === 1) out.fill(char[0]!, at, (at += hidden));
      else for (let j = 0; j < hidden; j++) at += char.copy(out, at);
      return at + copyBytes(src, i, end, out, at);
    },
  };
}

/** A ByteMasker as a ValueMasker, for callers that mask one value at a time. */
function fromBytes(m: ByteMasker): ValueMasker {
  const f: ValueMasker = (v) => {
    const out = Buffer.allocUnsafe(m.size(v, 0, v.length));
    m.write(v, 0, v.length, out, 0);
    return out;
  };
  f.bytes = m;
  return f;
}

/** A value's bytes in, masked bytes out (null = SQL NULL); `bytes` when it can also write into a row being built. */
export type ValueMasker = ((value: Buffer) => Buffer | null) & { bytes?: ByteMasker };

/**
 * Compiles `mask` for one column: `binary` says the values come in the
 * binary format. Throws MaskTypeError when !maskable.
 */
export function compileMask(mask: MaskFunction, type: number, textLike: boolean, binary: boolean, key: Buffer): ValueMasker {
  if (!maskable(mask, type, textLike, binary)) throw new MaskTypeError(mask.fn, type);
  if (mask.fn === 'null') return () => null;
  if (isTextLike(type, textLike)) {
    // The text and binary forms of a text-like type are both its characters (UTF-8).
    const oneChar = type === CHAR_OID;
    if (mask.fn === 'redact') {
      const out = Buffer.from(textMasker(mask, key, oneChar)('')!);
      return () => out;
    }
    if (mask.fn === 'hash' && !oneChar) return (v) => Buffer.from(hex32(hmac(key, v)), 'latin1');
    // On the bytes, without decoding: the hot path of a large masked result.
    if (mask.fn === 'partial' && !oneChar) return fromBytes(partialBytes(Math.max(0, Math.floor(mask.keep)), Buffer.from(mask.char ? String.fromCodePoint(mask.char.codePointAt(0)!) : '*')));
    if (mask.fn === 'email' && !oneChar) return fromBytes(EMAIL_BYTES);
    const m = textMasker(mask, key, oneChar);
    return (v) => Buffer.from(m(v.toString('utf8'))!);
  }
  const codec = CODECS.get(type)!;
  if (mask.fn === 'redact') {
    const out = binary ? codec.redactBinary : Buffer.from(codec.redactText);
    return () => out;
  }
  // hash
  if (binary) return (v) => codec.hashBinary(hmac(key, codec.decode!(v)));
  return (v) => Buffer.from(codec.hashText(hmac(key, v)));
}

/** Masks one value in the text format; null is SQL NULL. Throws MaskTypeError when !maskable. */
export function maskText(value: string, mask: MaskFunction, type: number, textLike: boolean, key: Buffer): string | null {
  if (isTextLike(type, textLike)) return textMasker(mask, key, type === CHAR_OID)(value);
  return compileMask(mask, type, textLike, false, key)(Buffer.from(value))?.toString('utf8') ?? null;
}

/** Masks one value in the binary format (the type's send format); null is SQL NULL. Throws MaskTypeError when !maskable. */
export function maskBinary(value: Buffer, mask: MaskFunction, type: number, textLike: boolean, key: Buffer): Buffer | null {
  return compileMask(mask, type, textLike, true, key)(value);
}

/**
 * The masker of one output column of a plan, in the text or the binary
 * format. Where the mask cannot give a valid value of the column's type:
 * NULL under onInvalid 'null', else a MaskTypeError naming the column (the
 * statement is refused).
 */
export function planMasker(col: ColumnPlan, set: MaskSet, binary: boolean): ValueMasker {
  if (maskable(col.mask, col.type, col.textLike, binary)) return fitTypmod(compileMask(col.mask, col.type, col.textLike, binary, set.key), col);
  if (set.onInvalid === 'null') return () => null;
  throw new MaskTypeError(
    col.mask.fn,
    col.type,
    `column ${col.column} cannot be masked by ${col.mask.fn} (mask rule ${col.rule}): its type (oid ${col.type}) has no such value in the ${binary ? 'binary' : 'text'} format`,
  );
}

/**
 * A masker whose values also fit the column's declared size: varchar(n) and
 * char(n) get at most n characters, numeric(p, s) a hash with at most p - s
 * digits (a value the column could hold).
 */
function fitTypmod(m: ValueMasker, col: ColumnPlan): ValueMasker {
  const typmod = col.typmod;
  if (typmod === undefined || typmod < 4) return m;
  if (col.type === NUMERIC_OID) {
    if (col.mask.fn !== 'hash') return m;
    const digits = ((typmod - 4) >> 16) - ((typmod - 4) & 0xffff);
    const limit = 10n ** BigInt(Math.max(0, digits));
    return (v) => {
      const out = m(v);
      return out && out.length ? Buffer.from(String(BigInt(out.toString('latin1')) % limit)) : out;
    };
  }
  if (!isTextLike(col.type, col.textLike)) return m;
  const n = typmod - 4;
  return (v) => {
    const out = m(v);
    if (!out || out.length <= n) return out;
    const text = out.toString('utf8');
    const chars = [...text];
    return chars.length <= n ? out : Buffer.from(chars.slice(0, n).join(''));
  };
}
