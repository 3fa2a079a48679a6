// The decision cache's recency: hits refresh an entry only once it may have
// drifted into the older half, yet an entry in use is never evicted.
import { describe, expect, it } from 'vitest';
import { ClassificationCache } from '../src/policy/index.js';

describe('decision cache recency', () => {
  it('keeps a statement in use while many others come and go', () => {
    const cache = new ClassificationCache({ maxEntries: 10 });
    for (let i = 0; i < 100; i++) {
      cache.get('SELECT abalance FROM pgbench_accounts WHERE aid = 1');
      cache.get(`SELECT '${i}'`);
    }
    expect(cache.misses).toBe(101);
    expect(cache.hits).toBe(99);
    expect(cache.size).toBe(10);
    expect(cache.evictions).toBe(91);
    // The hot statement (cached by its shape) survived every eviction.
    cache.get('SELECT abalance FROM pgbench_accounts WHERE aid = 7');
    expect(cache.hits).toBe(100);
  });

  it('evicts an entry not used for as many insertions as the cache holds', () => {
    const cache = new ClassificationCache({ maxEntries: 4 });
    for (const s of ['a', 'b', 'c', 'd']) cache.get(`SELECT '${s}'`);
    cache.get("SELECT 'a'"); // old enough to be refreshed
    for (const s of ['e', 'f', 'g']) cache.get(`SELECT '${s}'`);
    expect(cache.has("SELECT 'a'")).toBe(true);
    cache.get("SELECT 'h'");
    expect(cache.has("SELECT 'a'")).toBe(false);
  });
});
