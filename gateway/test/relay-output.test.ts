// The relay's output to the client: held until the audit write of the turn,
// then handed on whole and in order, one write for all a session received in
// that turn.
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AuditEvent } from '@warden/proto';
import { frame, query, readyForQuery } from '@warden/proto/pgwire';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ClassificationCache, StatementGate, type Rule } from '../src/policy/index.js';
import { Relay } from '../src/session/relay.js';
import type { Upstream, UpstreamHandlers } from '../src/tunnel/index.js';

const log = pino({ level: 'silent' });
const READ: Rule = { name: 'ci-read', access: 'read', allowSchemas: [], denySchemas: [], allowTables: [], denyTables: [] };
const dataRow = (value: string) => {
  const v = Buffer.from(value);
  const body = Buffer.alloc(2 + 4 + v.length);
  body.writeInt16BE(1, 0);
  body.writeInt32BE(v.length, 2);
  v.copy(body, 6);
  return frame(0x44, body);
};
const commandComplete = (tag: string) => frame(0x43, Buffer.from(`${tag}\0`));

const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

/** A relay between a real client socket and a fake upstream, with an audit sink whose writes the test completes. */
async function relayed() {
  let accepted!: (s: Socket) => void;
  const serverSide = new Promise<Socket>((r) => (accepted = r));
  const server: Server = createServer((s) => accepted(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const client = connect((server.address() as { port: number }).port, '127.0.0.1');
  const socket = await serverSide;
  closers.push(() => {
    client.destroy();
    socket.destroy();
    server.close();
  });
  const received: Buffer[] = [];
  client.on('data', (d: Buffer) => received.push(d));

  let handlers!: UpstreamHandlers;
  const sent: Buffer[] = [];
  const upstream: Upstream = {
    agent: 'agent',
    sessionId: 's1',
    cancelKey: { pid: 1, secret: 2 } as Upstream['cancelKey'],
    start: (h) => (handlers = h),
    write: (chunk) => (sent.push(chunk), true),
    pause: () => {},
    resume: () => {},
    close: () => {},
    cancel: () => {},
  };
  const events: AuditEvent[] = [];
  const writes: (() => void)[] = [];
  const audit = { publish: (e: AuditEvent) => events.push(e), afterWrite: (fn: () => void) => writes.push(fn) };
  const gate = new StatementGate({ identity: 'ci', resource: 'shop', rules: [READ] }, new ClassificationCache());
  const relay = new Relay(
    socket,
    upstream,
    { identity: 'ci', groups: [], resource: 'shop', agent: 'agent', readOnly: true, gate, claims: {} },
    {},
    { audit, gatewayId: 'gw', parameterRecording: 'full' },
    { log, relaying: true, refuse: () => {}, close: () => {} },
  );
  relay.start(Buffer.alloc(0));
  const bytes = () => Buffer.concat(received);
  const settle = () => new Promise((r) => setTimeout(r, 50));
  return { relay, handlers: () => handlers, sent, events, writes, bytes, settle };
}

describe('relay output', () => {
  it('holds a turn\'s results until the audit write, then hands them on together and in order', async () => {
    const r = await relayed();
    await r.settle();
    const authOk = r.bytes().length;
    r.relay.client(query('SELECT 1; SELECT 2'));
    expect(r.sent).toHaveLength(1);
    const first = Buffer.concat([dataRow('1'), commandComplete('SELECT 1')]);
    const second = Buffer.concat([dataRow('2'), commandComplete('SELECT 1'), readyForQuery('I')]);
    r.handlers().data(first);
    r.handlers().data(second);
    // Both statements are recorded, and nothing reached the client before their write.
    expect(r.events.filter((e) => e.event?.$case === 'statement')).toHaveLength(2);
    await r.settle();
    expect(r.bytes().length).toBe(authOk);
    // One write for all of the turn's output.
    expect(r.writes).toHaveLength(1);
    r.writes.shift()!();
    await r.settle();
    expect(r.bytes().subarray(authOk)).toEqual(Buffer.concat([first, second]));

    // The next turn starts a new write.
    r.handlers().data(readyForQuery('I'));
    expect(r.writes).toHaveLength(1);
  });
});
