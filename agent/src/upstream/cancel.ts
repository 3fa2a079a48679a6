// CancelRequest: a new connection to the upstream carrying only the backend
// key; the server signals the backend and closes the connection.
import { cancelRequest } from '@warden/proto/pgwire';
import type { BackendKey, UpstreamTarget } from './connect.js';
import { openTransport } from './connect.js';

/**
 * Sends a CancelRequest for `key` to the upstream (over TLS when the
 * resource's sslmode asks for it) and waits until the server closes the
 * connection or `timeoutMs` passes. Rejects only when the upstream cannot be
 * reached at all.
 */
export async function sendCancelRequest(
  target: Pick<UpstreamTarget, 'host' | 'port' | 'sslmode' | 'sslrootcert'>,
  key: BackendKey,
  timeoutMs = 5_000,
): Promise<void> {
  const full: UpstreamTarget = { ...target, user: '', database: '' };
  let timer: NodeJS.Timeout | undefined;
  let late = false;
  const opening = openTransport(full);
  const socket = await Promise.race([
    opening,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        late = true;
        // A connection that completes after we gave up is closed at once.
        opening.then(
          (s) => s.destroy(),
          () => undefined,
        );
        reject(new Error(`cancel request to ${target.host}:${target.port} timed out`));
      }, timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
  if (late) {
    socket.destroy();
    return;
  }

  await new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(t);
      socket.destroy();
      resolve();
    };
    const t = setTimeout(done, timeoutMs);
    socket.on('error', done);
    socket.on('close', done);
    socket.on('end', done);
    socket.resume();
    socket.end(cancelRequest(key.processId, key.secretKey));
  });
}
