// Failed logins, counted per source address and per login name (the `user`
// the client gave, which is not verified yet) in fixed windows. Past the
// limit, new logins from that address or as that name are refused at once,
// before a token is read, until the window ends. While a limit is in force its
// refusals are not recorded one by one: they are counted, and reported once
// per window, so a flood cannot fill the outbox, the audit store or the log.
export interface LoginLimits {
  /** Failed logins from one address per window before its logins are refused (0: no limit). */
  perAddress: number;
  /** Failed logins as one login name per window (0: no limit). */
  perName: number;
  windowMs: number;
}

export const DEFAULT_LOGIN_LIMITS: LoginLimits = { perAddress: 30, perName: 100, windowMs: 60_000 };

/** What a limit counts by. */
export type LimitBy = 'address' | 'name';

/** A limit in force: who is limited, and what was refused since the last report. */
export interface LimitReport {
  by: LimitBy;
  key: string;
  failures: number;
  refused: number;
}

interface Window {
  start: number;
  failures: number;
  refused: number;
}

/** Keys kept at most: past it, the oldest windows go first (a flood of addresses cannot grow memory without bound). */
const MAX_KEYS = 100_000;

export class LoginLimiter {
  private readonly windows = new Map<string, Window>();

  constructor(
    readonly limits: LoginLimits = DEFAULT_LOGIN_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether a login from `address` as `name` may go ahead; otherwise why not, and when it may (counted as refused). */
  admit(address: string, name: string | undefined): { by: LimitBy; key: string; retryInS: number } | undefined {
    const blocked = this.over('address', address, this.limits.perAddress) ?? (name !== undefined ? this.over('name', name, this.limits.perName) : undefined);
    if (!blocked) return undefined;
    blocked.window.refused++;
    return { by: blocked.by, key: blocked.key, retryInS: Math.max(1, Math.ceil((blocked.window.start + this.limits.windowMs - this.now()) / 1000)) };
  }

  /** Counts a failed login; true when it is the one that puts a limit in force. */
  failed(address: string, name: string | undefined): boolean {
    let tripped = this.count('address', address, this.limits.perAddress);
    if (name !== undefined && this.count('name', name, this.limits.perName)) tripped = true;
    return tripped;
  }

  /** The limits in force with refusals since the last call, which are then cleared; ended windows are dropped. */
  report(): LimitReport[] {
    const out: LimitReport[] = [];
    const t = this.now();
    for (const [k, w] of this.windows) {
      if (w.refused > 0) {
        const by = k.startsWith('a') ? 'address' : 'name';
        out.push({ by, key: k.slice(2), failures: w.failures, refused: w.refused });
        w.refused = 0;
      }
      if (t - w.start >= this.limits.windowMs) this.windows.delete(k);
    }
    return out;
  }

  private over(by: LimitBy, key: string, limit: number): { by: LimitBy; key: string; window: Window } | undefined {
    if (limit <= 0) return undefined;
    const w = this.current(by, key, false);
    return w && w.failures >= limit ? { by, key, window: w } : undefined;
  }

  private count(by: LimitBy, key: string, limit: number): boolean {
    if (limit <= 0) return false;
    const w = this.current(by, key, true)!;
    w.failures++;
    return w.failures === limit;
  }

  private current(by: LimitBy, key: string, create: boolean): Window | undefined {
    const k = `${by[0]}:${key}`;
    const t = this.now();
    let w = this.windows.get(k);
    if (w && t - w.start >= this.limits.windowMs) {
      this.windows.delete(k);
      w = undefined;
    }
    if (!w && create) {
      if (this.windows.size >= MAX_KEYS) this.windows.delete(this.windows.keys().next().value!);
      w = { start: t, failures: 0, refused: 0 };
      this.windows.set(k, w);
    }
    return w;
  }
}
