// A list of control-plane replicas behind one channel: calls go to the first
// that answers and move to the next when it goes away.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, credentials, Server, ServerCredentials, type ServiceDefinition } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { makeCertificates } from '../../test/support/stack.js';
import { grpcTarget, parseAddressList } from '../src/grpc-target.js';

const identity = (b: Buffer) => b;
const NAME = { path: '/test.Replica/Name', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity };
const service = { name: NAME } as unknown as ServiceDefinition;

/** A server that answers every call with its name. */
async function replica(name: string, tls = ServerCredentials.createInsecure()): Promise<{ port: number; server: Server }> {
  const server = new Server();
  server.addService(service, { name: (_call: unknown, done: (err: null, value: Buffer) => void) => done(null, Buffer.from(name)) });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', tls, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port, server };
}

function ask(client: Client): Promise<string> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(NAME.path, identity, identity, Buffer.alloc(0), { deadline: Date.now() + 10_000 }, (err, value?: Buffer) =>
      err ? reject(err) : resolve(value!.toString()),
    ),
  );
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe('grpcTarget', () => {
  it('passes one address on as it is, and names the entry that is not host:port', () => {
    expect(grpcTarget('cp.example.com:7070')).toBe('cp.example.com:7070');
    expect(grpcTarget(' 10.0.0.1:7070 ')).toBe('10.0.0.1:7070');
    expect(parseAddressList('cp1:7070, [::1]:7071')).toEqual([
      { host: 'cp1', port: 7070 },
      { host: '::1', port: 7071 },
    ]);
    expect(() => grpcTarget('cp1:7070,cp2')).toThrow("address 'cp2' is not host:port");
    expect(() => parseAddressList(' , ')).toThrow(/no address given/);
  });

  it('uses the first replica that answers and fails over when it goes away', async () => {
    const one = await replica('one');
    const two = await replica('two');
    cleanups.push(() => two.server.forceShutdown());
    // Host names are looked up: the list may name replicas by DNS.
    const client = new Client(grpcTarget(`localhost:${one.port},127.0.0.1:${two.port}`), credentials.createInsecure());
    cleanups.push(() => client.close());
    expect(await ask(client)).toBe('one');
    expect(await ask(client)).toBe('one');
    one.server.forceShutdown();
    // The channel notices the lost connection and picks the next address; a call made meanwhile may fail once.
    let answer = '';
    for (let i = 0; i < 50 && answer !== 'two'; i++) answer = await ask(client).catch(() => '');
    expect(answer).toBe('two');
  });

  it('fails over between replicas over TLS', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-grpc-target-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const pem = await makeCertificates(dir);
    const serverTls = () => ServerCredentials.createSsl(null, [{ cert_chain: readFileSync(pem.cert), private_key: readFileSync(pem.key) }]);
    const one = await replica('one', serverTls());
    const two = await replica('two', serverTls());
    cleanups.push(() => two.server.forceShutdown());
    const client = new Client(grpcTarget(`localhost:${one.port},127.0.0.1:${two.port}`), credentials.createSsl(readFileSync(pem.ca)));
    cleanups.push(() => client.close());
    expect(await ask(client)).toBe('one');
    one.server.forceShutdown();
    let answer = '';
    for (let i = 0; i < 50 && answer !== 'two'; i++) answer = await ask(client).catch(() => '');
    expect(answer).toBe('two');
  });

  it('skips a replica that is down from the start', async () => {
    const down = await replica('down');
    down.server.forceShutdown();
    const up = await replica('up');
    cleanups.push(() => up.server.forceShutdown());
    const client = new Client(grpcTarget(`127.0.0.1:${down.port},127.0.0.1:${up.port}`), credentials.createInsecure());
    cleanups.push(() => client.close());
    expect(await ask(client)).toBe('up');
  });
});
