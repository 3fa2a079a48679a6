// Sockets for links: the gateway's listener and the agent's dialer, over TCP
// or TLS. Callers get Link objects, never sockets.
import { readFileSync } from 'node:fs';
import { connect as netConnect, createServer as netServer, isIP, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as tlsServer } from 'node:tls';
import { Link, type LinkOptions, type LinkOwner } from './link.js';
import { SlabReader } from './reader.js';

export interface LinkServerOptions extends LinkOptions {
  /** host:port; port 0 picks a free one. */
  listen: string;
  /** PEM files of the listener's certificate; plain TCP without. */
  tls?: { cert: string; key: string };
}

export interface LinkServer {
  readonly port: number;
  /** Stops listening and drops every link. */
  close(): Promise<void>;
}

export function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  if (i < 0) throw new Error(`address ${address} needs the form host:port`);
  const port = Number(address.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`address ${address} has no valid port`);
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port };
}

/** Listens for agents; each accepted connection becomes a Link owned by `owner`. */
export async function listenLinks(opts: LinkServerOptions, owner: LinkOwner): Promise<LinkServer> {
  const sockets = new Set<Socket>();
  const accept = (socket: Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.setKeepAlive(true, 30_000);
    new Link(socket, owner, opts);
  };
  let server: Server;
  if (opts.tls) {
    server = tlsServer({ cert: readFileSync(opts.tls.cert), key: readFileSync(opts.tls.key) }, accept);
    // A failed handshake ends that connection only; the owner says why in its log.
    server.on('tlsClientError', (err: Error, socket: Socket) => owner.handshakeFailed?.(err, `${socket.remoteAddress}:${socket.remotePort}`));
  } else {
    server = netServer(accept);
  }
  const { host, port } = splitAddress(opts.listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', () => undefined);
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

export interface DialOptions extends LinkOptions {
  /** host:port of the gateway's tunnel listener. */
  address: string;
  /** TLS when set: `ca` is a PEM file of the CA that signed the gateway's certificate. */
  tls?: { ca?: string };
  connectTimeoutMs?: number;
}

/** Connects to a gateway; the Link is returned once the socket (and TLS) is up. */
export function dialLink(opts: DialOptions, owner: LinkOwner): Promise<Link> {
  const { host, port } = splitAddress(opts.address);
  return new Promise<Link>((resolve, reject) => {
    let socket: Socket;
    const onError = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    // Plain TCP reads into slabs (reader.ts); TLS decrypts into buffers of its own.
    const reader = opts.tls ? undefined : new SlabReader();
    const onConnect = (): void => {
      clearTimeout(timer);
      socket.off('error', onError);
      socket.setKeepAlive(true, 30_000);
      resolve(new Link(socket, owner, opts, reader));
    };
    if (opts.tls) {
      socket = tlsConnect({
        host,
        port,
        ca: opts.tls.ca ? readFileSync(opts.tls.ca) : undefined,
        servername: isIP(host) ? undefined : host,
      });
      socket.once('secureConnect', onConnect);
    } else {
      socket = netConnect({ host, port, onread: reader!.onread });
      socket.once('connect', onConnect);
    }
    socket.once('error', onError);
    const timer = setTimeout(
      () => onError(new Error(`connecting to ${opts.address} took longer than ${opts.connectTimeoutMs ?? 10_000} ms`)),
      opts.connectTimeoutMs ?? 10_000,
    );
  });
}
