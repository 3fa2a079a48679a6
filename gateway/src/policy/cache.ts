// A bounded LRU of classifications keyed by the exact statement text (a whole
// simple-protocol Query string, or the text of a Parse message), so that a
// statement seen before costs a Map lookup instead of a parse.
//
// JS Maps iterate in insertion order: a hit is deleted and re-inserted to
// become the newest entry, and eviction removes the first (oldest) key.
// Cached classifications are deep-frozen, since every caller shares them.
import { classify } from './classify.js';
import type { Classification } from './types.js';

export interface ClassificationCacheOptions {
  /** Maximum number of cached statements (default 10,000). */
  maxEntries?: number;
  /**
   * Texts longer than this many characters are classified but not cached
   * (default 100,000), so a few huge statements cannot pin a lot of memory.
   */
  maxEntryChars?: number;
  /** The classifier to use on a miss (default: classify). For tests. */
  classifier?: (sql: string) => Classification;
}

export interface ClassificationCacheStats {
  hits: number;
  misses: number;
  evictions: number;
  size: number;
  maxEntries: number;
}

export const DEFAULT_CACHE_ENTRIES = 10_000;
export const DEFAULT_CACHE_ENTRY_CHARS = 100_000;

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}

export class ClassificationCache {
  readonly maxEntries: number;
  readonly maxEntryChars: number;
  private readonly classifier: (sql: string) => Classification;
  private readonly entries = new Map<string, Classification>();
  hits = 0;
  misses = 0;
  evictions = 0;

  constructor(options: ClassificationCacheOptions = {}) {
    const max = options.maxEntries ?? DEFAULT_CACHE_ENTRIES;
    if (!Number.isInteger(max) || max < 1) throw new RangeError('maxEntries must be a positive integer');
    this.maxEntries = max;
    this.maxEntryChars = options.maxEntryChars ?? DEFAULT_CACHE_ENTRY_CHARS;
    this.classifier = options.classifier ?? classify;
  }

  /** The classification of `sql`: from the cache, or classified now and cached. */
  get(sql: string): Classification {
    const cached = this.entries.get(sql);
    if (cached !== undefined) {
      this.hits++;
      this.entries.delete(sql);
      this.entries.set(sql, cached);
      return cached;
    }
    this.misses++;
    const result = deepFreeze(this.classifier(sql));
    if (sql.length <= this.maxEntryChars) {
      this.entries.set(sql, result);
      while (this.entries.size > this.maxEntries) {
        const oldest = this.entries.keys().next().value as string;
        this.entries.delete(oldest);
        this.evictions++;
      }
    }
    return result;
  }

  /** Whether `sql` is cached (does not count as a hit or change recency). */
  has(sql: string): boolean {
    return this.entries.has(sql);
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }

  stats(): ClassificationCacheStats {
    return { hits: this.hits, misses: this.misses, evictions: this.evictions, size: this.entries.size, maxEntries: this.maxEntries };
  }
}

/** Alias: the gateway's per-statement decision cache. */
export { ClassificationCache as DecisionCache };
