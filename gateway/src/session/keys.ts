// BackendKeyData handed to clients is the gateway's own (pid, secret) pair,
// mapped to the session, so a client never learns the upstream backend's key.
import { randomInt, timingSafeEqual } from 'node:crypto';

export interface Cancellable {
  cancel(): void;
}

interface Entry {
  secret: number;
  session: Cancellable;
}

export class CancelKeys {
  private readonly byPid = new Map<number, Entry>();

  /** Allocates a key for a session; release() it when the session ends. */
  issue(session: Cancellable): { pid: number; secret: number } {
    let pid: number;
    do pid = randomInt(1, 2 ** 31 - 1);
    while (this.byPid.has(pid));
    const secret = randomInt(0, 2 ** 32) | 0;
    this.byPid.set(pid, { secret, session });
    return { pid, secret };
  }

  release(pid: number): void {
    this.byPid.delete(pid);
  }

  /** Cancels the session's running statement if the key matches; false otherwise. */
  cancel(pid: number, secret: number): boolean {
    const entry = this.byPid.get(pid);
    if (!entry) return false;
    const a = Buffer.alloc(4);
    const b = Buffer.alloc(4);
    a.writeInt32BE(entry.secret);
    b.writeInt32BE(secret);
    if (!timingSafeEqual(a, b)) return false;
    entry.session.cancel();
    return true;
  }

  get size(): number {
    return this.byPid.size;
  }
}
