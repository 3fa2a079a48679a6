// BackendKeyData handed to clients is the gateway's own (pid, secret) pair,
// mapped to the session, so a client never learns the upstream backend's key.
// The one registry of keys: an upstream session takes its key when it is
// created and gives it back when it ends (LinkUpstream); the Postgres
// listener's CancelRequests are matched here.
// The agent learns it too (in OPEN): a CancelRequest that lands on another
// gateway (a load balancer in front of several) is relayed to the agents as
// CANCEL_KEY, and the agent holding the session cancels it.
import { randomInt, timingSafeEqual } from 'node:crypto';

export interface Cancellable {
  cancel(): void;
}

export interface CancelKey {
  pid: number;
  secret: number;
}

interface Entry {
  secret: number;
  session: Cancellable;
}

export interface CancelKeysOptions {
  /**
   * Called for a key this gateway did not issue (or with a wrong secret),
   * within the relay budget: asks the agents whether one of them holds it.
   */
  relay?(pid: number, secret: Buffer): void;
  /** Relayed cancels allowed per client address: burst and per second (default 20, 10). */
  perAddress?: { burst: number; perSecond: number };
  /** Relayed cancels allowed for the whole gateway (default 200, 100). */
  total?: { burst: number; perSecond: number };
}

export class CancelKeys {
  private readonly byPid = new Map<number, Entry>();
  private readonly bySession = new Map<Cancellable, CancelKey>();
  /** Keys whose cancel goes elsewhere for now: a statement the gateway holds, which no backend is running. */
  private readonly diverted = new Map<number, Cancellable>();
  private readonly budget: RelayBudget;

  constructor(private readonly opts: CancelKeysOptions = {}) {
    this.budget = new RelayBudget(opts.perAddress ?? { burst: 20, perSecond: 10 }, opts.total ?? { burst: 200, perSecond: 100 });
  }

  /** The session's key, allocated on first call; release() it when the session ends. */
  issue(session: Cancellable): CancelKey {
    const known = this.bySession.get(session);
    if (known) return known;
    let pid: number;
    do pid = randomInt(1, 2 ** 31 - 1);
    while (this.byPid.has(pid));
    const secret = randomInt(0, 2 ** 32) | 0;
    const key = { pid, secret };
    this.byPid.set(pid, { secret, session });
    this.bySession.set(session, key);
    return key;
  }

  /** Releases the session's key, if it has one. */
  release(session: Cancellable): void {
    const key = this.bySession.get(session);
    if (!key) return;
    this.byPid.delete(key.pid);
    this.diverted.delete(key.pid);
    this.bySession.delete(session);
  }

  /** While `to` is set, a matching CancelRequest for key `pid` cancels it instead of the session's upstream. */
  divert(pid: number, to: Cancellable | undefined): void {
    if (to && this.byPid.has(pid)) this.diverted.set(pid, to);
    else this.diverted.delete(pid);
  }

  /** A cancel for `session` that came back through its agent: it reaches a held statement, if there is one (the agent cancelled the backend). */
  cancelDiverted(session: Cancellable): void {
    const key = this.bySession.get(session);
    if (key) this.diverted.get(key.pid)?.cancel();
  }

  /**
   * Cancels the session's running statement if the key is one of ours;
   * otherwise relays it to the agents (within budget). True when it matched here.
   */
  cancel(pid: number, secret: number, from = ''): boolean {
    const entry = this.byPid.get(pid);
    if (entry && timingSafeEqual(secretBytes(entry.secret), secretBytes(secret))) {
      (this.diverted.get(pid) ?? entry.session).cancel();
      return true;
    }
    if (this.opts.relay && this.budget.take(from)) this.opts.relay(pid, secretBytes(secret));
    return false;
  }

  get size(): number {
    return this.byPid.size;
  }
}

/** The secret as it travels in BackendKeyData and CancelRequest: 4 bytes, big endian. */
export function secretBytes(secret: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(secret | 0);
  return b;
}

/**
 * Token buckets that bound how many unknown keys are relayed: an
 * unauthenticated client must not make the gateway flood its agents.
 */
class RelayBudget {
  private readonly addresses = new Map<string, Bucket>();
  private readonly all: Bucket;

  constructor(
    private readonly perAddress: { burst: number; perSecond: number },
    total: { burst: number; perSecond: number },
  ) {
    this.all = new Bucket(total.burst, total.perSecond);
  }

  take(address: string): boolean {
    let bucket = this.addresses.get(address);
    if (!bucket) {
      // Full buckets carry no state worth keeping; drop them before growing.
      if (this.addresses.size >= 10_000) for (const [a, b] of this.addresses) if (b.full()) this.addresses.delete(a);
      if (this.addresses.size >= 10_000) return false;
      bucket = new Bucket(this.perAddress.burst, this.perAddress.perSecond);
      this.addresses.set(address, bucket);
    }
    if (!bucket.available() || !this.all.available()) return false;
    bucket.take();
    this.all.take();
    return true;
  }
}

class Bucket {
  private tokens: number;
  private at = Date.now();

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
  ) {
    this.tokens = burst;
  }

  available(): boolean {
    this.refill();
    return this.tokens >= 1;
  }

  take(): void {
    this.tokens -= 1;
  }

  full(): boolean {
    this.refill();
    return this.tokens >= this.burst;
  }

  private refill(): void {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.perSecond);
    this.at = now;
  }
}
