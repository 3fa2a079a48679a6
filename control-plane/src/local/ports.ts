// Port helpers for local mode: free ports for children that cannot report
// back which port they bound, and an early, clear error for busy ports.
import { createServer } from 'node:net';

function tryListen(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen({ host, port, exclusive: true }, () => {
      const addr = srv.address();
      const bound = typeof addr === 'object' && addr ? addr.port : port;
      srv.close(() => resolve(bound));
    });
  });
}

/** Binds port 0, reads the port the OS chose, and releases it. */
export const pickFreePort = (host = '127.0.0.1') => tryListen(host, 0);

/** `port`, or a free port when it is 0; fails with a sentence when `port` is taken. */
export async function resolvePort(host: string, port: number, flag: string): Promise<number> {
  if (port === 0) return pickFreePort(host);
  try {
    return await tryListen(host, port);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') {
      throw new Error(`port ${port} on ${host} is already in use (another \`warden start\`?); pass ${flag} 0 to pick a free one`);
    }
    throw new Error(`cannot use port ${port} on ${host}: ${(err as Error).message}`);
  }
}
