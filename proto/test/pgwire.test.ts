import { describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import {
  MessageReader,
  PgError,
  ProtocolError,
  SqlState,
  cancelRequest,
  decodeParameters,
  errorResponse,
  negotiateProtocolVersion,
  parse,
  parseDataRow,
  parseErrorResponse,
  parseFields,
  parseNegotiateProtocolVersion,
  parseParameterStatus,
  parsePassword,
  parseStartupPacket,
  parameterStatus,
  passwordMessage,
  query,
  sslRequest,
  startupMessage,
  terminate,
} from '../src/pgwire/index.js';

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

describe('MessageReader across chunks', () => {
  it('joins a message that arrives in many chunks, and keeps what follows it', () => {
    const big = serialize.query('x'.repeat(100_000));
    const input = Buffer.concat([big, serialize.sync()]);
    const r = new MessageReader();
    for (let i = 0; i < input.length - 3; i += 1000) {
      r.push(input.subarray(i, Math.min(i + 1000, input.length - 3)));
      if (i + 1000 < big.length) expect(r.nextTyped(1 << 20)).toBeNull();
    }
    const m = r.nextTyped(1 << 20)!;
    expect(m.raw).toEqual(big);
    expect(m.body.length).toBe(big.length - 5);
    expect(r.nextTyped(1 << 20)).toBeNull();
    expect(r.drain()).toEqual(input.subarray(big.length, input.length - 3));
  });

  it('reads a header split across chunks', () => {
    const r = new MessageReader();
    const sync = serialize.sync();
    r.push(sync.subarray(0, 2));
    expect(r.nextTyped(100)).toBeNull();
    r.push(sync.subarray(2));
    expect(r.nextTyped(100)!.raw).toEqual(sync);
  });
});

describe('frontend messages', () => {
  // pg-protocol (node-postgres) as an independent implementation of the same bytes.
  it('writes what pg-protocol writes', () => {
    expect(query('SELECT 1')).toEqual(serialize.query('SELECT 1'));
    expect(parse('s1', 'SELECT $1')).toEqual(serialize.parse({ name: 's1', text: 'SELECT $1' }));
    expect(passwordMessage('tok')).toEqual(serialize.password('tok'));
    expect(terminate()).toEqual(serialize.end());
    expect(sslRequest()).toEqual(serialize.requestSsl());
    const secret = Buffer.alloc(4);
    secret.writeInt32BE(7);
    expect(cancelRequest(42, secret)).toEqual(serialize.cancel(42, 7));
    // pg-protocol always appends client_encoding.
    const params = { user: 'ci', database: 'shop' };
    expect(startupMessage([...Object.entries(params), ['client_encoding', 'UTF8']])).toEqual(serialize.startup(params));
  });

  it('parses back what it writes', () => {
    const secret = Buffer.from([1, 2, 3, 4]);
    expect(parseStartupPacket(cancelRequest(42, secret).subarray(4))).toEqual({ kind: 'cancel', pid: 42, secret: 0x01020304 });
    expect(parseStartupPacket(sslRequest().subarray(4))).toEqual({ kind: 'ssl' });
    expect(parseStartupPacket(startupMessage([['user', 'ci']], 2).subarray(4))).toEqual({ kind: 'startup', minor: 2, parameters: { user: 'ci' } });
  });
});

describe('backend message parsers', () => {
  it('reads ErrorResponse fields, the unlocalized severity first', () => {
    const body = errorResponse({ severity: 'FATAL', code: '28P01', message: 'token expired', detail: 'd', hint: 'h' }).subarray(5);
    expect(parseErrorResponse(body)).toEqual({ severity: 'FATAL', code: '28P01', message: 'token expired', detail: 'd', hint: 'h' });
    expect(parseErrorResponse(Buffer.from('SFEHLER\0VERROR\0C42P01\0\0')).severity).toBe('ERROR');
    expect(parseErrorResponse(Buffer.from('SERROR\0C42P01\0\0')).severity).toBe('ERROR');
    expect(parseFields(Buffer.from('C42P01\0Mno end'))).toEqual({ C: '42P01' });
  });

  it('reads ParameterStatus, DataRow and NegotiateProtocolVersion', () => {
    expect(parseParameterStatus(parameterStatus('server_version', '17.2').subarray(5))).toEqual({ name: 'server_version', value: '17.2' });
    expect(parseParameterStatus(Buffer.from('x\0\0'))).toEqual({ name: 'x', value: '' });
    const row = Buffer.from([0, 3, 0, 0, 0, 1, 0x61, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    expect(parseDataRow(row)).toEqual([Buffer.from('a'), null, Buffer.alloc(0)]);
    expect(() => parseDataRow(row.subarray(0, 6))).toThrow(ProtocolError);
    expect(parseNegotiateProtocolVersion(negotiateProtocolVersion(196608, ['_pq_.x', '_pq_.y']).subarray(5))).toEqual({
      version: 196608,
      unknownOptions: ['_pq_.x', '_pq_.y'],
    });
  });

  it('decodes Bind parameters for the audit record', () => {
    const bind = serialize.bind({ values: ['a', null, Buffer.from([1, 2])], valueMapper: (v) => v });
    // The bytes after the (empty) portal and statement names.
    expect(decodeParameters(bind.subarray(7))).toEqual(['a', null, '\\x0102']);
  });
});

describe('PgError', () => {
  it('carries a SQLSTATE, and a hint and a cause only when given', () => {
    const e = new PgError(SqlState.invalidCatalogName, 'no database given', { hint: 'Set dbname.' });
    expect(e).toBeInstanceOf(Error);
    expect(e).toMatchObject({ sqlstate: '3D000', message: 'no database given', hint: 'Set dbname.' });
    expect('cause' in e).toBe(false);
    expect(new PgError('08006', 'x', { cause: 1 }).cause).toBe(1);
  });
});
