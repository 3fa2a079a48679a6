// A bounded LRU of classifications keyed by the exact statement text (a whole
// simple-protocol Query string, or the text of a Parse message), so that a
// statement seen before costs a Map lookup instead of a parse. A statement
// that differs from one seen before only in integer constants is found by its
// shape (shape.ts), when the classifier read no numeric constant to decide.
//
// JS Maps iterate in insertion order: eviction removes the first (oldest)
// key, and a hit is deleted and re-inserted to become the newest entry, but
// only once half the cache was inserted since it last was: until then it is
// in the newer half anyway, and the delete and insert on every hit cost the
// simple protocol a fifth of its client-side path (pgbench, one shape).
// Cached classifications are deep-frozen, since every caller shares them.
import { classify } from './classify.js';
import { statementShape } from './shape.js';
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
  shapeHits: number;
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
  private readonly entries = new Map<string, { value: Classification; at: number }>();
  /** Insertions so far: an entry's `at` is this count when it was (re)inserted. */
  private inserted = 0;
  private readonly refreshAfter: number;
  hits = 0;
  /** Hits found by shape rather than exact text (counted in hits too). */
  shapeHits = 0;
  misses = 0;
  evictions = 0;

  constructor(options: ClassificationCacheOptions = {}) {
    const max = options.maxEntries ?? DEFAULT_CACHE_ENTRIES;
    if (!Number.isInteger(max) || max < 1) throw new RangeError('maxEntries must be a positive integer');
    this.maxEntries = max;
    this.refreshAfter = Math.max(1, Math.floor(max / 2));
    this.maxEntryChars = options.maxEntryChars ?? DEFAULT_CACHE_ENTRY_CHARS;
    this.classifier = options.classifier ?? classify;
  }

  /** The classification of `sql`: from the cache, or classified now and cached. */
  get(sql: string): Classification {
    const cached = this.lookup(sql);
    if (cached !== undefined) {
      this.hits++;
      return cached;
    }
    const shape = sql.length <= this.maxEntryChars ? statementShape(sql) : null;
    if (shape !== null) {
      const byShape = this.lookup(shape);
      if (byShape !== undefined) {
        this.hits++;
        this.shapeHits++;
        return byShape;
      }
    }
    this.misses++;
    const result = deepFreeze(this.classifier(sql));
    if (sql.length > this.maxEntryChars) return result;
    // One entry per shape rather than per text, when the decision cannot depend on the integers.
    const shared = shape !== null && result.ok && result.statements.length === 1 && !result.readsNumbers;
    this.entries.set(shared ? shape : sql, { value: result, at: ++this.inserted });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
      this.evictions++;
    }
    return result;
  }

  /** A cached entry, made the newest when it may have drifted into the older half. */
  private lookup(key: string): Classification | undefined {
    const cached = this.entries.get(key);
    if (cached === undefined) return undefined;
    if (this.inserted - cached.at >= this.refreshAfter) {
      this.entries.delete(key);
      cached.at = ++this.inserted;
      this.entries.set(key, cached);
    }
    return cached.value;
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
    return { hits: this.hits, shapeHits: this.shapeHits, misses: this.misses, evictions: this.evictions, size: this.entries.size, maxEntries: this.maxEntries };
  }
}

/** Alias: the gateway's per-statement decision cache. */
export { ClassificationCache as DecisionCache };
