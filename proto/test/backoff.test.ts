import { describe, expect, it, vi } from 'vitest';
import { Backoff, backoffDelay, RetryTimer } from '../src/backoff.js';

describe('backoff', () => {
  it('waits a random time below min(cap, base * 2^n)', () => {
    expect(backoffDelay(0, { baseMs: 100, capMs: 1_000 }, () => 0.999)).toBe(99);
    expect(backoffDelay(3, { baseMs: 100, capMs: 1_000 }, () => 0.5)).toBe(400);
    expect(backoffDelay(40, { baseMs: 100, capMs: 1_000 }, () => 0.5)).toBe(500);
  });

  it('Backoff counts failures until reset', () => {
    const b = new Backoff({ baseMs: 100, capMs: 1_000 }, () => 0.5);
    expect([b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([50, 100, 200, 400, 500]);
    expect(b.attempt).toBe(5);
    b.reset();
    expect(b.attempt).toBe(0);
    expect(b.next()).toBe(50);
  });

  it('Backoff.wait returns early when aborted', async () => {
    const b = new Backoff({ baseMs: 60_000, capMs: 60_000 }, () => 0.99);
    const abort = new AbortController();
    const waiting = b.wait(abort.signal);
    abort.abort();
    await expect(waiting).resolves.toBeUndefined();
  });

  it('RetryTimer runs one retry at a time, and none after cancel', async () => {
    vi.useFakeTimers();
    try {
      let runs = 0;
      const t = new RetryTimer(() => runs++, { baseMs: 100, capMs: 100 });
      expect(t.schedule()).toBeTypeOf('number');
      expect(t.schedule()).toBeUndefined();
      expect(t.pending).toBe(true);
      await vi.advanceTimersByTimeAsync(100);
      expect(runs).toBe(1);
      expect(t.pending).toBe(false);
      expect(t.attempt).toBe(1);
      t.schedule();
      t.cancel();
      await vi.advanceTimersByTimeAsync(200);
      expect(runs).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });
});
