// Fuzzing the wire decoders every byte of a client passes through: the
// stream reader and the parsers of what clients and servers send. Inputs are
// random bytes and mutated valid messages (bits flipped, cut short, lengths
// changed) from a seeded generator, so a failure names the seed that shows
// it. The contract: a decoder returns, or throws ProtocolError; never any
// other error (a RangeError from reading past the end would be a bug), and
// the reader never holds more than the message limit it was given.
import { describe, expect, it } from 'vitest';
import {
  MessageReader,
  ProtocolError,
  bindResultFormats,
  bindResultsOffset,
  decodeParameters,
  parseBackendKeyData,
  parseCStringList,
  parseDataRow,
  parseFields,
  parseNegotiateProtocolVersion,
  parsePassword,
  parseStartupPacket,
} from '../src/pgwire/index.js';

/** Runs per decoder: enough to find the boundary bugs, a second or two on the CI machine. */
const RUNS = 20_000;

/** A small, seedable generator (mulberry32): the same seed gives the same inputs. */
function generator(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  return { next, int, bytes };
}

type Gen = ReturnType<typeof generator>;

/** Valid bodies to mutate: a Bind's tail, a DataRow, startup packets, error fields. */
function seeds(): Buffer[] {
  const i16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
  const i32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeInt32BE(n);
    return b;
  };
  const bindTail = Buffer.concat([i16(1), i16(0), i16(2), i32(3), Buffer.from('abc'), i32(-1), i16(1), i16(1)]);
  const dataRow = Buffer.concat([i16(3), i32(2), Buffer.from('hi'), i32(-1), i32(0)]);
  const startup = Buffer.concat([i32(196608), Buffer.from('user\0demo\0database\0shop\0\0')]);
  const cancel = Buffer.concat([i32(80877102), i32(7), i32(9)]);
  const fields = Buffer.from('SERROR\0C42501\0Mno\0\0');
  return [bindTail, dataRow, startup, cancel, fields, Buffer.from('secret\0')];
}

function mutate(g: Gen, base: Buffer): Buffer {
  const b = Buffer.from(base);
  switch (g.int(5)) {
    case 0: // flip bits
      for (let k = 0; k <= g.int(4); k++) if (b.length) b[g.int(b.length)] ^= 1 << g.int(8);
      return b;
    case 1: // cut short
      return b.subarray(0, g.int(b.length + 1));
    case 2: // an absurd count or length somewhere
      if (b.length >= 4) b.writeInt32BE([0x7fffffff, -2, 65535, 1 << 30][g.int(4)]!, g.int(b.length - 3));
      return b;
    case 3: // grow with garbage
      return Buffer.concat([b, g.bytes(g.int(16))]);
    default:
      return g.bytes(g.int(64));
  }
}

/** Calls `f` on many inputs; returns the first input that threw something other than ProtocolError. */
function fuzz(seed: number, f: (input: Buffer) => unknown): { input: string; error: string } | undefined {
  const g = generator(seed);
  const bases = seeds();
  for (let i = 0; i < RUNS; i++) {
    const input = mutate(g, bases[g.int(bases.length)]!);
    try {
      f(input);
    } catch (err) {
      if (!(err instanceof ProtocolError)) return { input: input.toString('hex'), error: String(err) };
    }
  }
  return undefined;
}

const parsers: Record<string, (b: Buffer) => unknown> = {
  parseStartupPacket,
  parsePassword,
  parseFields,
  parseCStringList,
  parseDataRow,
  parseBackendKeyData,
  parseNegotiateProtocolVersion,
  bindResultsOffset,
  bindResultFormats,
  decodeParameters,
  'decodeParameters (redacted)': (b) => decodeParameters(b, { redact: true }),
};

describe('wire decoders under random and mutated input', () => {
  for (const [name, parse] of Object.entries(parsers)) {
    it(`${name} returns or throws ProtocolError, nothing else`, () => {
      expect(fuzz(0x5eed + name.length, parse)).toBeUndefined();
    });
  }

  it('MessageReader: only ProtocolError, and never more buffered than the limit allows', () => {
    const g = generator(0xc0ffee);
    const limit = 1 << 16;
    for (let run = 0; run < 2_000; run++) {
      const reader = new MessageReader();
      const typed = g.int(2) === 1;
      let buffered = 0;
      try {
        for (let k = 0; k < 20; k++) {
          const chunk = g.int(4) === 0 ? mutate(g, seeds()[g.int(6)]!) : g.bytes(g.int(300));
          reader.push(chunk);
          buffered += chunk.length;
          for (let m = typed ? reader.nextTyped(limit) : reader.nextUntyped(limit); m; m = typed ? reader.nextTyped(limit) : reader.nextUntyped(limit)) {
            expect(m.raw.length).toBeLessThanOrEqual(limit + 1);
            buffered -= m.raw.length;
          }
          // What waits is at most one incomplete message, which the limit bounds.
          expect(buffered).toBeLessThanOrEqual(limit + 5);
        }
      } catch (err) {
        expect(err).toBeInstanceOf(ProtocolError);
      }
    }
  });
});
