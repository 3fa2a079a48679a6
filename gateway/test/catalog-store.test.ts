// CatalogStore with a fake loader whose loads the test settles by hand, and
// an injected clock: single flight, age refresh, invalidate + refreshed,
// failed loads and their retry limit.
import type { Logger } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CATALOG_RETRY_MS, CatalogStore } from '../src/catalog/index.js';
import type { ResourceCatalog } from '../src/catalog/index.js';

function catalog(tag: string): ResourceCatalog {
  return {
    fetchedAt: 0,
    sessionUser: tag,
    searchPath: 'public',
    schemas: [],
    relations: {},
    catalogRelations: [],
    viewReads: {},
    viewCalls: {},
    children: {},
    foreignKeys: [],
    triggers: [],
    rules: [],
    functions: {},
    operators: {},
    tableCalls: {},
    tableReadCalls: {},
    columns: {},
    relationOids: {},
    viewDefinitions: {},
    parents: {},
  };
}

interface Load {
  resource: string;
  resolve(c: ResourceCatalog): void;
  reject(e: Error): void;
}

/** A loader whose calls wait until the test settles them. */
function fakeLoader() {
  const loads: Load[] = [];
  const load = (resource: string) =>
    new Promise<ResourceCatalog>((resolve, reject) => {
      loads.push({ resource, resolve, reject });
    });
  return { loads, load };
}

function fakeLog() {
  const warnings: Array<Record<string, unknown>> = [];
  const log = { warn: (o: Record<string, unknown>) => warnings.push(o), debug: () => {} } as unknown as Logger;
  return { warnings, log };
}

/** Lets settled promises run their continuations. */
const tick = () => new Promise<void>((r) => setImmediate(r));

let store: CatalogStore | undefined;
afterEach(() => {
  store?.close();
  store = undefined;
  vi.useRealTimers();
});

describe('CatalogStore', () => {
  it('shares one load among concurrent callers, per resource', async () => {
    const { loads, load } = fakeLoader();
    store = new CatalogStore(load, { now: () => 0 });
    expect(store.get('shop')).toBeUndefined(); // starts the load, does not wait
    const a = store.ensure('shop');
    const b = store.ensure('shop');
    const other = store.ensure('crm');
    expect(loads.map((l) => l.resource)).toEqual(['shop', 'crm']);
    const shop = catalog('shop');
    loads[0]!.resolve(shop);
    expect(await a).toBe(shop);
    expect(await b).toBe(shop);
    expect(store.get('shop')).toBe(shop);
    expect(await store.ensure('shop')).toBe(shop);
    loads[1]!.resolve(catalog('crm'));
    expect((await other)?.sessionUser).toBe('crm');
    expect(loads).toHaveLength(2);
  });

  it('serves an old catalog while one background refresh replaces it', async () => {
    const { loads, load } = fakeLoader();
    let now = 1_000;
    store = new CatalogStore(load, { maxAgeMs: 60_000, now: () => now });
    const first = store.ensure('shop');
    const v1 = catalog('v1');
    loads[0]!.resolve(v1);
    await first;
    now += 59_999;
    expect(store.get('shop')).toBe(v1);
    expect(loads).toHaveLength(1);
    now += 1;
    expect(store.get('shop')).toBe(v1); // stale: refresh starts, old one served
    expect(store.get('shop')).toBe(v1);
    expect(await store.ensure('shop')).toBe(v1);
    expect(loads).toHaveLength(2);
    const v2 = catalog('v2');
    loads[1]!.resolve(v2);
    await tick();
    expect(store.get('shop')).toBe(v2);
    // Its age counts from when its load started.
    now += 59_999;
    expect(store.get('shop')).toBe(v2);
    expect(loads).toHaveLength(2);
  });

  it('invalidate refreshes in the background; refreshed() waits for the new catalog', async () => {
    const { loads, load } = fakeLoader();
    store = new CatalogStore(load, { now: () => 0 });
    const v1 = catalog('v1');
    const first = store.ensure('shop');
    loads[0]!.resolve(v1);
    await first;
    await store.refreshed('shop'); // nothing owed: settles at once

    store.invalidate('shop');
    expect(loads).toHaveLength(2);
    expect(store.get('shop')).toBe(v1);
    let done = false;
    const waited = store.refreshed('shop').then(() => {
      done = true;
    });
    await tick();
    expect(done).toBe(false);
    const v2 = catalog('v2');
    loads[1]!.resolve(v2);
    await waited;
    expect(store.get('shop')).toBe(v2);
  });

  it('an invalidate during a load owes one more load, and refreshed() waits for that one', async () => {
    const { loads, load } = fakeLoader();
    store = new CatalogStore(load, { now: () => 0 });
    const first = store.ensure('shop');
    store.invalidate('shop'); // the DDL may have come after the running load read the catalog
    store.invalidate('shop');
    expect(loads).toHaveLength(1);
    let done = false;
    const waited = store.refreshed('shop').then(() => {
      done = true;
    });
    const v1 = catalog('v1');
    loads[0]!.resolve(v1);
    expect(await first).toBe(v1);
    await tick();
    expect(loads).toHaveLength(2);
    expect(done).toBe(false);
    expect(store.get('shop')).toBe(v1);
    const v2 = catalog('v2');
    loads[1]!.resolve(v2);
    await waited;
    expect(store.get('shop')).toBe(v2);
    expect(loads).toHaveLength(2);
  });

  it('a failed load resolves undefined, is logged, and is retried at most once per 2 s', async () => {
    const { loads, load } = fakeLoader();
    const { warnings, log } = fakeLog();
    let now = 0;
    store = new CatalogStore(load, { now: () => now, log });
    const a = store.ensure('shop');
    const b = store.ensure('shop');
    loads[0]!.reject(new Error('agent local is not connected'));
    expect(await a).toBeUndefined();
    expect(await b).toBeUndefined();
    expect(warnings).toEqual([
      { resource: 'shop', err: 'agent local is not connected', serving: 'none' },
    ]);
    now += CATALOG_RETRY_MS - 1;
    expect(await store.ensure('shop')).toBeUndefined();
    expect(store.get('shop')).toBeUndefined();
    expect(loads).toHaveLength(1);
    now += 1;
    const c = store.ensure('shop');
    expect(loads).toHaveLength(2);
    const v1 = catalog('v1');
    loads[1]!.resolve(v1);
    expect(await c).toBe(v1);
  });

  it('ensureOrRetry waits out the retry delay once after a failed load and tries again', async () => {
    const { loads, load } = fakeLoader();
    const { log } = fakeLog();
    store = new CatalogStore(load, { log });
    const started = Date.now();
    const got = store.ensureOrRetry('shop');
    loads[0]!.reject(new Error('agent local is not connected'));
    await vi.waitFor(() => expect(loads).toHaveLength(2), { timeout: CATALOG_RETRY_MS + 2_000 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(CATALOG_RETRY_MS - 50);
    const v1 = catalog('v1');
    loads[1]!.resolve(v1);
    expect(await got).toBe(v1);
    // Failed twice: it gives up (undefined) after that second try.
    const again = new CatalogStore(load, { log });
    const none = again.ensureOrRetry('other');
    loads[2]!.reject(new Error('down'));
    await vi.waitFor(() => expect(loads).toHaveLength(4), { timeout: CATALOG_RETRY_MS + 2_000 });
    loads[3]!.reject(new Error('still down'));
    expect(await none).toBeUndefined();
    again.close();
  });

  it('a loader that throws at once counts as a failed load', async () => {
    const { warnings, log } = fakeLog();
    let calls = 0;
    store = new CatalogStore(
      () => {
        calls++;
        throw new Error('no agent serves resource shop');
      },
      { now: () => 0, log },
    );
    expect(await store.ensure('shop')).toBeUndefined();
    expect(await store.ensure('shop')).toBeUndefined();
    expect(calls).toBe(1);
    expect(warnings).toHaveLength(1);
  });

  it('a failed refresh keeps serving the previous catalog', async () => {
    const { loads, load } = fakeLoader();
    const { warnings, log } = fakeLog();
    let now = 0;
    store = new CatalogStore(load, { maxAgeMs: 10_000, now: () => now, log });
    const v1 = catalog('v1');
    const first = store.ensure('shop');
    loads[0]!.resolve(v1);
    await first;
    store.invalidate('shop');
    const waited = store.refreshed('shop');
    loads[1]!.reject(new Error('timeout'));
    await waited; // settles on failure too
    expect(store.get('shop')).toBe(v1);
    expect(warnings).toEqual([{ resource: 'shop', err: 'timeout', serving: 'the previous catalog' }]);
    // Stale: a background refresh that fails too; no new attempt until the retry delay has passed.
    now = 10_000;
    expect(store.get('shop')).toBe(v1);
    expect(loads).toHaveLength(3);
    loads[2]!.reject(new Error('timeout'));
    await tick();
    now = 10_000 + CATALOG_RETRY_MS - 1;
    expect(store.get('shop')).toBe(v1);
    expect(loads).toHaveLength(3);
    now = 10_000 + CATALOG_RETRY_MS;
    expect(store.get('shop')).toBe(v1);
    expect(loads).toHaveLength(4);
    const v2 = catalog('v2');
    loads[3]!.resolve(v2);
    await tick();
    expect(store.get('shop')).toBe(v2);
  });

  it('an invalidate right after a failure waits out the retry delay on a timer; close() stops it', async () => {
    vi.useFakeTimers();
    const { loads, load } = fakeLoader();
    store = new CatalogStore(load, { now: () => Date.now() });
    const first = store.ensure('shop');
    loads[0]!.reject(new Error('down'));
    await first;

    store.invalidate('shop');
    expect(loads).toHaveLength(1);
    let done = false;
    const waited = store.refreshed('shop').then(() => {
      done = true;
    });
    await vi.advanceTimersByTimeAsync(CATALOG_RETRY_MS - 1);
    expect(loads).toHaveLength(1);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(loads).toHaveLength(2);
    const v1 = catalog('v1');
    loads[1]!.resolve(v1);
    await waited;
    expect(store.get('shop')).toBe(v1);

    // Fail again, invalidate, then close before the timer fires: no load, and refreshed() is released.
    store.invalidate('shop');
    loads[2]!.reject(new Error('down'));
    await vi.advanceTimersByTimeAsync(0);
    store.invalidate('shop');
    const released = store.refreshed('shop');
    store.close();
    await released;
    await vi.advanceTimersByTimeAsync(10 * CATALOG_RETRY_MS);
    expect(loads).toHaveLength(3);
    expect(store.get('shop')).toBe(v1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('close() releases refreshed() callers while a load is still running', async () => {
    const { loads, load } = fakeLoader();
    store = new CatalogStore(load, { now: () => 0 });
    store.invalidate('shop');
    const released = store.refreshed('shop');
    store.close();
    await released;
    loads[0]!.resolve(catalog('late'));
    await tick();
    expect(store.get('shop')).toBeUndefined();
    expect(loads).toHaveLength(1);
  });
});
