// The audit store on both backends: idempotent ingest, chains that do not
// depend on arrival order, verify catching each kind of tampering, the daily
// chain, retention, and the reads.
import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '@warden/proto';
import { eventFromRecord, type AuditRecord } from '@warden/proto/audit';
import { AuditStore } from '../src/audit/store.js';
import { openStorage, type Storage } from '../src/storage/open.js';
import { createTestDatabase, tempDir } from './helpers.js';

const DAY = 86_400_000;
let clock = Date.parse('2024-05-01T10:00:00.000Z');
const now = () => new Date(clock);

/** Events as gateways send them, from their JSON form. */
const fromRecords = (records: AuditRecord[]): AuditEvent[] => records.map((r) => eventFromRecord(r)!);

/** A whole session: start, `statements` statements (the last one a refused DROP), end. */
function session(id: string, statements = 3, t0 = clock, identity = 'ci-deploy'): AuditEvent[] {
  const common = (seq: number) => ({ id: `${id}:${seq}`, time: new Date(t0 + seq * 100).toISOString(), gateway: 'gw1', sessionId: id, seq, identity, resource: 'shop', agent: 'local' });
  const records: AuditRecord[] = [
    { ...common(0), type: 'session.start', claims: { sub: identity }, groups: [], clientAddress: '127.0.0.1:5000', applicationName: 'psql', readOnly: true },
  ];
  for (let i = 1; i <= statements; i++) {
    const drop = i === statements;
    records.push({
      ...common(i),
      type: 'statement',
      sql: drop ? 'DROP TABLE orders' : `SELECT * FROM orders WHERE id = ${i}`,
      protocol: 'simple',
      decision: drop ? 'refused' : 'allowed',
      rule: 'ci-read-only',
      kind: drop ? 'DROP TABLE' : 'SELECT',
      objects: ['orders'],
      ...(drop ? { error: { sqlstate: '42501', message: 'not allowed' } } : { command: 'SELECT', rows: i }),
      durationMs: 1.5,
    });
  }
  records.push({ ...common(statements + 1), type: 'session.end', durationMs: 500, bytesIn: 10, bytesOut: 20, statements, reason: 'client disconnected' });
  return fromRecords(records);
}

describe.each(['pglite', 'postgres'] as const)('audit store on %s', (kind) => {
  let storage: Storage;
  let store: AuditStore;
  const cleanups: (() => Promise<void> | void)[] = [];
  const db = () => storage.db as any;
  const problems = async () => (await store.verify()).problems;

  beforeAll(async () => {
    if (kind === 'pglite') {
      const dir = tempDir();
      cleanups.push(() => dir.remove());
      storage = await openStorage({ dataDir: dir.path });
    } else {
      const pg = await createTestDatabase();
      cleanups.push(() => pg.drop());
      storage = await openStorage({ databaseUrl: pg.url });
    }
    cleanups.unshift(() => storage.close());
    store = new AuditStore(storage.db, { now });
  });

  afterAll(async () => {
    for (const c of cleanups) await c();
  });

  beforeEach(async () => {
    for (const t of ['audit_events', 'audit_sessions', 'audit_days', 'audit_settings', 'audit_retention']) await sql`delete from ${sql.table(t)}`.execute(db());
    clock = Date.parse('2024-05-01T10:00:00.000Z');
  });

  it('stores an event once, however often it is sent', async () => {
    const events = session('s1');
    expect(await store.ingest(events)).toEqual({ stored: 5, duplicates: 0, invalid: 0 });
    expect(await store.ingest([events[1], events[1], events[2]])).toEqual({ stored: 0, duplicates: 3, invalid: 0 });
    const count = await sql<{ n: number }>`select count(*)::int as n, count(distinct id)::int as d from audit_events`.execute(db());
    expect(count.rows[0]).toMatchObject({ n: 5, d: 5 });
    const [s] = await store.listSessions({});
    expect(s).toMatchObject({ sessionId: 's1', statements: 3, refused: 1, outcome: 'refused', events: 5, linkedSeq: 4 });
  });

  it('links new events that arrive together with re-sent ones', async () => {
    const events = session('s1', 4);
    await store.ingest(events.slice(0, 3));
    expect(await store.ingest(events.slice(1))).toMatchObject({ stored: events.length - 3, duplicates: 2 });
    const [s] = await store.listSessions({});
    expect(s!.linkedSeq).toBe(events.length - 1);
    expect(await problems()).toEqual([]);
  });

  it('skips what is not an event, and counts it', async () => {
    const r = await store.ingest([undefined, { ...session('s1')[1]!, id: 'x', event: undefined }, { ...session('s1')[1]!, seq: -1 }]);
    expect(r).toEqual({ stored: 0, duplicates: 0, invalid: 3 });
  });

  it('builds the same chain whatever the arrival order', async () => {
    const events = session('s1', 6);
    await store.ingest(events);
    const inOrder = (await sql<{ hash: string }>`select hash from audit_events order by seq`.execute(db())).rows.map((r) => r.hash);
    await sql`delete from audit_events`.execute(db());
    await sql`delete from audit_sessions`.execute(db());
    // Reversed, in three deliveries, one duplicated.
    const shuffled = [...events].reverse();
    await store.ingest(shuffled.slice(0, 3));
    let s = (await store.listSessions({}))[0]!;
    expect(s.linkedSeq).toBe(-1); // seq 0 not here yet
    await store.ingest(shuffled.slice(2, 6));
    await store.ingest(shuffled.slice(6));
    const again = (await sql<{ hash: string }>`select hash from audit_events order by seq`.execute(db())).rows.map((r) => r.hash);
    expect(again).toEqual(inOrder);
    s = (await store.listSessions({}))[0]!;
    expect(s.linkedSeq).toBe(7);
    expect(await problems()).toEqual([]);
  });

  it('reports a gap still in transit as a warning, not as tampering', async () => {
    const events = session('s1');
    await store.ingest(events.filter((e) => e.seq !== 2));
    const report = await store.verify();
    expect(report.ok).toBe(true);
    expect(report.warnings.join()).toMatch(/wait for seq 2/);
  });

  it('finds an edited SQL text, naming the session and seq', async () => {
    await store.ingest(session('s1'));
    await store.ingest(session('s2'));
    // Only the searchable column:
    await sql`update audit_events set sql = 'SELECT 1' where id = 's1:3'`.execute(db());
    expect(await problems()).toEqual([expect.objectContaining({ kind: 'edited', sessionId: 's1', seq: 3 })]);
    // The recorded event itself (column and body kept consistent):
    await sql`update audit_events set body = replace(body, 'DROP TABLE orders', 'SELECT 1'), sql = 'SELECT 1' where id = 's1:3'`.execute(db());
    const p = await problems();
    expect(p).toContainEqual(expect.objectContaining({ kind: 'edited', sessionId: 's1', seq: 3, detail: expect.stringMatching(/does not match its hash/) }));
    expect(p.every((x) => x.sessionId === 's1')).toBe(true);
  });

  it('finds an edit whose hash was recomputed, at the next link', async () => {
    await store.ingest(session('s1'));
    const row = (await sql<{ prev_hash: string; body: string }>`select prev_hash, body from audit_events where id = 's1:2'`.execute(db())).rows[0]!;
    const body = row.body.replace('id = 2', 'id = 7');
    const { createHash } = await import('node:crypto');
    const hash = createHash('sha256').update(row.prev_hash + body).digest('hex');
    await sql`update audit_events set body = ${body}, sql = 'SELECT * FROM orders WHERE id = 7', hash = ${hash} where id = 's1:2'`.execute(db());
    expect(await problems()).toContainEqual(expect.objectContaining({ kind: 'edited', sessionId: 's1', seq: 3, detail: expect.stringMatching(/chain is broken before seq 3/) }));
  });

  it('finds a deleted record, in the middle and at the end', async () => {
    await store.ingest(session('s1', 5));
    await sql`delete from audit_events where id = 's1:2'`.execute(db());
    expect(await problems()).toContainEqual(expect.objectContaining({ kind: 'deleted', sessionId: 's1', seq: 2 }));
    await store.ingest(session('s2', 5));
    await sql`delete from audit_events where session_id = 's2' and seq >= 5`.execute(db());
    expect(await problems()).toContainEqual(expect.objectContaining({ kind: 'deleted', sessionId: 's2', seq: 5 }));
  });

  it('finds two records that swapped places', async () => {
    await store.ingest(session('s1', 5));
    await sql`update audit_events set seq = 100 where id = 's1:2'`.execute(db());
    await sql`update audit_events set seq = 2 where id = 's1:4'`.execute(db());
    await sql`update audit_events set seq = 4 where id = 's1:2'`.execute(db());
    const p = await problems();
    expect(p).toContainEqual(expect.objectContaining({ kind: 'reordered', sessionId: 's1', seq: 2 }));
    expect(p).toContainEqual(expect.objectContaining({ kind: 'reordered', sessionId: 's1', seq: 4 }));
  });

  it('closes days into a chain, and finds a session deleted whole or a day record changed', async () => {
    await store.ingest(session('a1', 2, clock));
    await store.ingest(session('a2', 2, clock + 1000, 'etl'));
    clock += DAY;
    await store.ingest(session('b1', 2, clock));
    // A session that never ended (gateway killed): sealed once idle.
    await store.ingest(session('b2', 2, clock).slice(0, 2));
    clock += 2 * 3_600_000;
    await store.maintain();
    clock += DAY;
    await store.maintain();
    const days = (await sql<{ day: string; sessions: number }>`select day, sessions from audit_days order by day`.execute(db())).rows;
    expect(days).toEqual([
      { day: '2024-05-01', sessions: 2 },
      { day: '2024-05-02', sessions: 2 },
    ]);
    const ok = await store.verify();
    expect(ok).toMatchObject({ ok: true, days: 2, headDay: '2024-05-02' });

    // Late events of the unfinished session extend its chain without breaking the sealed day.
    await store.ingest(session('b2', 2, Date.parse('2024-05-02T10:00:00.000Z')).slice(2));
    expect((await store.verify()).ok).toBe(true);

    // A whole session removed, rows and all: only the daily chain can tell.
    await sql`delete from audit_events where session_id = 'a2'`.execute(db());
    await sql`delete from audit_sessions where session_id = 'a2'`.execute(db());
    expect(await problems()).toEqual([expect.objectContaining({ kind: 'deleted', day: '2024-05-01' })]);
  });

  it('finds a tampered daily chain record', async () => {
    await store.ingest(session('a1', 2));
    clock += DAY;
    await store.ingest(session('b1', 2));
    clock += DAY;
    await store.maintain();
    await sql`update audit_days set hash = ${'f'.repeat(64)} where day = '2024-05-01'`.execute(db());
    const p = await problems();
    expect(p).toContainEqual(expect.objectContaining({ kind: 'day_chain', day: '2024-05-01' }));
    expect(p).toContainEqual(expect.objectContaining({ kind: 'day_chain', day: '2024-05-02', detail: expect.stringMatching(/does not follow/) }));
  });

  it('applies retention by whole days, and verify accepts what retention removed', async () => {
    for (let d = 0; d < 5; d++) {
      await store.ingest(session(`d${d}`, 1, clock));
      clock += DAY;
    }
    await store.maintain();
    expect((await sql<{ n: number }>`select count(*)::int as n from audit_days`.execute(db())).rows[0]!.n).toBe(5);
    expect(await store.getRetention()).toBe(0);
    await store.setRetention(2);
    await expect(store.setRetention(-1)).rejects.toThrow(/whole number/);
    await store.maintain();
    const left = (await store.listSessions({})).map((s) => s.sessionId).sort();
    expect(left).toEqual(['d3', 'd4']);
    expect(await store.verify()).toMatchObject({ ok: true, days: 2 });
    // Deleting the oldest remaining day by hand is still caught.
    await sql`delete from audit_days where day = '2024-05-04'`.execute(db());
    expect((await store.verify()).ok).toBe(false);
  });

  it('lists, filters and searches', async () => {
    await store.ingest(session('s1', 3, clock, 'ci-deploy'));
    await store.ingest(session('s2', 2, clock + 60_000, 'etl'));
    await store.ingest(
      fromRecords([
        { id: 'af1', type: 'auth.failure', time: new Date(clock).toISOString(), gateway: 'gw1', clientAddress: '1.2.3.4:5', resource: 'shop', sqlstate: '28000', message: 'bad token' },
      ]),
    );
    expect((await store.listSessions({ identity: 'etl' })).map((s) => s.sessionId)).toEqual(['s2']);
    expect((await store.listSessions({ since: new Date(clock + 30_000).toISOString() })).map((s) => s.sessionId)).toEqual(['s2']);
    expect((await store.listSessions({ outcome: 'ok' })).length).toBe(0);
    const drops = (await store.search({ kind: 'drop', since: new Date(clock - 7 * DAY).toISOString() })).map((b) => JSON.parse(b));
    expect(drops.map((e) => e.id)).toEqual(['s1:3', 's2:2']);
    expect((await store.search({ text: 'id = 2' })).map((b) => JSON.parse(b).id)).toEqual(['s1:2']);
    expect((await store.search({ type: 'auth.failure' })).length).toBe(1);
    const detail = await store.getSession('s1');
    expect(detail!.events.map((b) => JSON.parse(b).seq)).toEqual([0, 1, 2, 3, 4]);
    expect(await store.getSession('nope')).toBeUndefined();
  });
});
