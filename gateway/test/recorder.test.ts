// What --record-parameters does to the audit record of a statement with Bind parameters.
import type { AuditEvent } from '@warden/proto';
import { describe, expect, it } from 'vitest';
import { SessionRecorder, type ParameterRecording } from '../src/session/recorder.js';

/** The part of a Bind after the portal and statement names: a text, a NULL and a binary parameter. */
function bindParameters(): Buffer {
  const text = Buffer.from('alice@example.com');
  const binary = Buffer.from([0, 0, 0, 42]);
  const parts: Buffer[] = [];
  const i16 = (n: number) => { const b = Buffer.alloc(2); b.writeInt16BE(n); return b; };
  const i32 = (n: number) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };
  parts.push(i16(3), i16(0), i16(0), i16(1)); // formats: text, text, binary
  parts.push(i16(3), i32(text.length), text, i32(-1), i32(binary.length), binary);
  parts.push(i16(0)); // result formats
  return Buffer.concat(parts);
}

function recorded(mode: ParameterRecording) {
  const events: AuditEvent[] = [];
  const recorder = new SessionRecorder({ publish: (e) => events.push(e) }, { gateway: 'g', sessionId: 's', identity: 'i', resource: 'r', agent: 'a' }, mode);
  recorder.statement({ sql: 'SELECT $1, $2, $3', protocol: 'extended', parameters: bindParameters(), startedAt: 0 }, 1);
  const e = events[0]!.event;
  if (e?.$case !== 'statement') throw new Error('no statement event');
  return e.value.parameters.map((p) => p.value);
}

describe('recorded Bind parameters', () => {
  it('full: the values', () => {
    expect(recorded('full')).toEqual(['alice@example.com', undefined, '\\x0000002a']);
  });
  it('redacted: format and length of each, no value', () => {
    expect(recorded('redacted')).toEqual(['<redacted: text, 17 bytes>', undefined, '<redacted: binary, 4 bytes>']);
  });
  it('none: no parameters', () => {
    expect(recorded('none')).toEqual([]);
  });
});
