// The one retry helper of every process: capped exponential backoff with full
// jitter, the n-th retry waiting a random time in [0, min(cap, base * 2^n)).
// Backoff counts the failures and gives the delays (for loops that await);
// RetryTimer runs a callback after the next delay (for event-driven retries).
import { setTimeout as sleep } from 'node:timers/promises';

export interface BackoffOptions {
  baseMs: number;
  capMs: number;
}

// The cap bounds how long a process takes to notice that the control plane
// (or a gateway) is back: at most 2 s, whatever the length of the outage.
export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 250, capMs: 2_000 };

export function backoffDelay(attempt: number, opts: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const ceiling = Math.min(opts.capMs, opts.baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** Failures since the last success, and the delay before the next try. */
export class Backoff {
  private failures = 0;

  constructor(
    readonly options: BackoffOptions = DEFAULT_BACKOFF,
    private readonly random: () => number = Math.random,
  ) {}

  /** Failed tries since the last reset(). */
  get attempt(): number {
    return this.failures;
  }

  /** The delay before the next try; counts one more failure. */
  next(): number {
    return backoffDelay(this.failures++, this.options, this.random);
  }

  /** A try succeeded (or the thing retried proved healthy): the next delay starts from the base again. */
  reset(): void {
    this.failures = 0;
  }

  /** Waits out next(); resolves early, without throwing, when the signal aborts. */
  async wait(signal?: AbortSignal): Promise<void> {
    await sleep(this.next(), undefined, { signal }).catch(() => {});
  }
}

/** Runs `retry` after the backoff's next delay; at most one retry waits at a time. */
export class RetryTimer {
  readonly backoff: Backoff;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly retry: () => void,
    options: BackoffOptions = DEFAULT_BACKOFF,
  ) {
    this.backoff = new Backoff(options);
  }

  /** True while a retry waits for its time. */
  get pending(): boolean {
    return this.timer !== undefined;
  }

  /** Failed tries since the last reset. */
  get attempt(): number {
    return this.backoff.attempt;
  }

  reset(): void {
    this.backoff.reset();
  }

  /** Schedules the retry and returns its delay; undefined (and nothing scheduled) when one already waits. */
  schedule(): number | undefined {
    if (this.timer) return undefined;
    const delay = this.backoff.next();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.retry();
    }, delay);
    return delay;
  }

  /** Drops the waiting retry, if any. */
  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
