import { describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import {
  MessageReader,
  ProtocolError,
  errorResponse,
  negotiateProtocolVersion,
  parsePassword,
  parseStartupPacket,
} from '../src/wire/index.js';

describe('MessageReader', () => {
  const query = serialize.query('SELECT 1');
  const sync = serialize.sync();

  it('splits several messages in one chunk', () => {
    const r = new MessageReader();
    r.push(Buffer.concat([query, sync]));
    const a = r.nextTyped(1 << 20)!;
    expect(String.fromCharCode(a.type)).toBe('Q');
    expect(a.body.toString()).toBe('SELECT 1\0');
    expect(String.fromCharCode(r.nextTyped(1 << 20)!.type)).toBe('S');
    expect(r.nextTyped(1 << 20)).toBeNull();
  });

  it('joins a message split at every byte', () => {
    const r = new MessageReader();
    for (let i = 0; i < query.length - 1; i++) {
      r.push(query.subarray(i, i + 1));
      expect(r.nextTyped(1 << 20)).toBeNull();
    }
    r.push(query.subarray(query.length - 1));
    expect(r.nextTyped(1 << 20)!.body.toString()).toBe('SELECT 1\0');
  });

  it('returns a subarray, not a copy, when the message is inside one chunk', () => {
    const r = new MessageReader();
    r.push(query);
    expect(r.nextTyped(1 << 20)!.body.buffer).toBe(query.buffer);
  });

  it('rejects lengths below 4 and above the limit', () => {
    const r = new MessageReader();
    r.push(Buffer.from([0x51, 0, 0, 0, 2]));
    expect(() => r.nextTyped(100)).toThrow(ProtocolError);
    const big = new MessageReader();
    big.push(Buffer.from([0, 1, 0, 0, 0, 0]));
    expect(() => big.nextUntyped(10_000)).toThrow(/exceeds the limit/);
  });

  it('drain returns what was not consumed', () => {
    const r = new MessageReader();
    r.push(Buffer.concat([sync, query.subarray(0, 3)]));
    r.nextTyped(100);
    expect(r.drain()).toEqual(query.subarray(0, 3));
    expect(r.drain().length).toBe(0);
  });
});

describe('startup packets', () => {
  const body = (buf: Buffer) => buf.subarray(4);

  it('parses a startup message with parameters', () => {
    const p = parseStartupPacket(body(serialize.startup({ user: 'ci', database: 'shop', application_name: 'x' })));
    expect(p).toEqual({ kind: 'startup', minor: 0, parameters: { user: 'ci', database: 'shop', application_name: 'x', client_encoding: 'UTF8' } });
  });

  it('accepts a newer 3.x version, and answers with the one it speaks and the options it does not know', () => {
    const v32 = Buffer.concat([Buffer.from([0, 3, 0, 2]), Buffer.from('user\0ci\0_pq_.x\0y\0\0')]);
    expect(parseStartupPacket(v32)).toEqual({ kind: 'startup', minor: 2, parameters: { user: 'ci', '_pq_.x': 'y' } });
    const v = negotiateProtocolVersion(196608, ['_pq_.x']);
    expect(v.toString('latin1')).toBe('v\x00\x00\x00\x13\x00\x03\x00\x00\x00\x00\x00\x01_pq_.x\x00');
  });

  it('recognises SSLRequest, GSSENCRequest and CancelRequest', () => {
    expect(parseStartupPacket(body(serialize.requestSsl()))).toEqual({ kind: 'ssl' });
    const gss = Buffer.alloc(8);
    gss.writeInt32BE(8);
    gss.writeInt32BE(80877104, 4);
    expect(parseStartupPacket(body(gss))).toEqual({ kind: 'gssenc' });
    expect(parseStartupPacket(body(serialize.cancel(42, 7)))).toEqual({ kind: 'cancel', pid: 42, secret: 7 });
  });

  it('refuses other protocol versions and unterminated parameters', () => {
    const v2 = Buffer.from([0, 2, 0, 0, 0]);
    expect(() => parseStartupPacket(v2)).toThrow(/protocol 2\.0/);
    const bad = Buffer.concat([Buffer.from([0, 3, 0, 0]), Buffer.from('user\0ci')]);
    expect(() => parseStartupPacket(bad)).toThrow(ProtocolError);
  });

  it('parses a password message and refuses an unterminated one', () => {
    expect(parsePassword(Buffer.from('tok\0'))).toBe('tok');
    expect(() => parsePassword(Buffer.from('tok'))).toThrow(ProtocolError);
  });
});

describe('serializer', () => {
  it('writes an ErrorResponse with SQLSTATE, message and hint', () => {
    const buf = errorResponse({ severity: 'FATAL', code: '28P01', message: 'token expired', hint: 'get a new one' });
    expect(buf[0]).toBe(0x45);
    expect(buf.readInt32BE(1)).toBe(buf.length - 1);
    const fields = buf.subarray(5, -1).toString().split('\0').filter(Boolean);
    expect(fields).toEqual(['SFATAL', 'VFATAL', 'C28P01', 'Mtoken expired', 'Hget a new one']);
  });
});
