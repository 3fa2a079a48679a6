// A role per client for the demo database. pglite-socket runs every client on
// one PGlite session (see demo-db.ts), so the SET ROLE with which the agent
// puts a session in its native role (docs/policy.md, "Native roles") would
// hold for every client: a read session connecting would turn an open admin
// session read-only, and the other way round. This notes the role each
// client sets with the agent's exact `SET ROLE "name"`, and before running a
// client's message puts the shared session back in that client's role (or in
// none) when another client left it elsewhere.
//
// It relies on two details of pglite-socket 0.2.x: the server's queue passes
// each client's message object, tagged with the client's handler id, to
// `db.execProtocolRawStream` inside `db.runExclusive`; and it keeps a
// client's transaction to itself. Without the queue it expects, nothing is
// tracked and the demo runs as before (one role for all).
import type { PGlite } from '@electric-sql/pglite';
import { ERROR_RESPONSE, PROTOCOL_3_0, QUERY, query } from '@warden/proto/pgwire';

type Enqueue = (handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void) => Promise<number>;
type RawStream = PGlite['execProtocolRawStream'];

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;

function isStartup(m: Uint8Array): boolean {
  return m.length >= 8 && Buffer.from(m.buffer, m.byteOffset, m.byteLength).readInt32BE(4) === PROTOCOL_3_0;
}

/** The role of a simple Query that is exactly the agent's SET ROLE, else undefined. */
export function agentSetRole(m: Uint8Array): string | undefined {
  if (m.length < 6 || m[0] !== QUERY) return undefined;
  const text = Buffer.from(m.buffer, m.byteOffset + 5, m.byteLength - 6).toString('utf8');
  const match = /^SET ROLE "((?:[^"]|"")+)"$/.exec(text);
  return match ? match[1]!.replace(/""/g, '"') : undefined;
}

/** Whether a backend byte stream holds an ErrorResponse. */
function hasError(bytes: Buffer): boolean {
  for (let i = 0; i + 5 <= bytes.length; i += 1 + bytes.readInt32BE(i + 1)) {
    if (bytes[i] === ERROR_RESPONSE) return true;
  }
  return false;
}

export class PerClientRoles {
  private readonly owner = new WeakMap<Uint8Array, number>();
  private readonly roles = new Map<number, string>();
  /** The role the shared session is in now; undefined: none (the login user). */
  private current: string | undefined;
  /** What to give pglite-socket instead of the database itself. */
  readonly db: PGlite;

  constructor(private readonly real: PGlite) {
    const stream: RawStream = (message, options) => this.run(message, options);
    this.db = new Proxy(real, {
      get(target, prop) {
        if (prop === 'execProtocolRawStream') return stream;
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  }

  /** Tags each client's messages with its handler id; false when the server is not the expected kind. */
  attach(server: object): boolean {
    const queue = (server as { queryQueue?: { enqueue?: Enqueue; clearQueueForHandler?: (handlerId: number) => void } }).queryQueue;
    if (!queue || typeof queue.enqueue !== 'function' || typeof queue.clearQueueForHandler !== 'function') return false;
    const enqueue = queue.enqueue.bind(queue);
    queue.enqueue = (handlerId, message, onData) => {
      this.owner.set(message, handlerId);
      return enqueue(handlerId, message, onData);
    };
    // Called when a client goes: forget its role.
    const clear = queue.clearQueueForHandler.bind(queue);
    queue.clearQueueForHandler = (handlerId) => {
      this.roles.delete(handlerId);
      clear(handlerId);
    };
    return true;
  }

  private async run(message: Uint8Array, options: Parameters<RawStream>[1]): Promise<void> {
    const client = this.owner.get(message);
    if (client === undefined) return this.real.execProtocolRawStream(message, options);
    if (isStartup(message)) this.roles.delete(client);
    const want = this.roles.get(client);
    if (want !== this.current) {
      // Through the streaming call too: PGlite 0.5 hands what execProtocolRaw
      // read to the next streaming call as well, so mixing them leaks.
      const answer: Buffer[] = [];
      await this.real.execProtocolRawStream(query(want === undefined ? 'RESET ROLE' : `SET ROLE ${quote(want)}`), {
        onRawData: (data) => answer.push(Buffer.from(data)),
      });
      // A failed switch (the role was dropped) leaves the session where it was.
      if (!hasError(Buffer.concat(answer))) this.current = want;
    }
    const role = agentSetRole(message);
    if (role === undefined) return this.real.execProtocolRawStream(message, options);
    const seen: Buffer[] = [];
    await this.real.execProtocolRawStream(message, {
      ...options,
      onRawData: (data) => {
        seen.push(Buffer.from(data));
        options?.onRawData(data);
      },
    });
    if (!hasError(Buffer.concat(seen))) {
      this.roles.set(client, role);
      this.current = role;
    }
  }
}
