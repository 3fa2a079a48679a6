// Issue 17, "nothing the database ran goes unrecorded, even when a process
// dies": a deployment built from the real programs (control plane over
// Postgres, gateway, agent, and a NATS server of the test's own where the
// audit goes through NATS), 8 sessions inserting rows with distinct markers,
// one process killed with SIGKILL mid-run and started again, then the
// database, the clients' acknowledgements and the audit store compared:
// every row in the database has exactly one statement record, and every
// acknowledged insert is in the database.
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { auditedMarkers, connect, deploy, sleep, waitFor, type Deployment, type Proc } from './support/deployment.js';

const WORKERS = 8;
const PER_WORKER = 60;

interface LoadResult {
  acknowledged: Set<string>;
  attempts: number;
  failures: number;
}

/**
 * WORKERS sessions insert PER_WORKER acknowledged rows each (half with the
 * simple protocol, half extended), each attempt a new marker; a session that
 * fails reconnects. `fault` runs once a third of the rows are in.
 */
async function load(d: Deployment, fault: () => Promise<void>): Promise<LoadResult> {
  const result: LoadResult = { acknowledged: new Set(), attempts: 0, failures: 0 };
  let faulted: Promise<void> | undefined;
  const worker = async (w: number) => {
    let done = 0;
    let n = 0;
    let client: pg.Client | undefined;
    const deadline = Date.now() + 180_000;
    while (done < PER_WORKER) {
      if (Date.now() > deadline) throw new Error(`worker ${w} made no progress\n${d.logs()}`);
      if (!client) {
        const c = connect(d);
        c.on('error', () => {}); // a connection lost between queries surfaces at the next one
        try {
          await c.connect();
          client = c;
        } catch {
          await c.end().catch(() => {});
          await sleep(100);
          continue;
        }
      }
      const marker = `w${w}-${n++}`;
      result.attempts++;
      try {
        if (w % 2 === 0) await client.query(`INSERT INTO public.marks (m) VALUES ('${marker}')`);
        else await client.query('INSERT INTO public.marks (m) VALUES ($1)', [marker]);
        result.acknowledged.add(marker);
        done++;
      } catch {
        result.failures++;
        await client.end().catch(() => {});
        client = undefined;
      }
      if (!faulted && result.acknowledged.size >= (WORKERS * PER_WORKER) / 3) faulted = fault();
    }
    await client?.end();
  };
  await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
  await faulted;
  return result;
}

/** Waits until every row in the database has its record, then compares exactly. */
async function compare(d: Deployment, loaded: LoadResult) {
  const executed = (await d.upstream.query('SELECT m FROM public.marks')).rows.map((r: { m: string }) => r.m);
  let audited: string[] = [];
  await waitFor(
    'the audit store to hold every executed statement',
    async () => {
      audited = await auditedMarkers(d);
      const seen = new Set(audited);
      return executed.every((m) => seen.has(m));
    },
    d,
    90_000,
  ).catch(() => undefined); // the exact comparison below says what is missing
  const seen = new Set(audited);
  const counts = new Map<string, number>();
  for (const m of audited) counts.set(m, (counts.get(m) ?? 0) + 1);
  const inDb = new Set(executed);
  return {
    executed: executed.length,
    executedNotAudited: executed.filter((m) => !seen.has(m)),
    duplicates: [...counts].filter(([, n]) => n > 1).map(([m]) => m),
    acknowledgedNotExecuted: [...loaded.acknowledged].filter((m) => !inDb.has(m)),
  };
}

/** Sessions of `marks` with no end record, once the clients are gone and the gateway had time to record them. */
async function sessionsWithoutEnd(d: Deployment): Promise<number> {
  let open = -1;
  await waitFor('every session to have its end recorded', async () => {
    const r = await d.store.query(`SELECT count(*)::int AS n FROM audit_sessions WHERE resource = 'marks' AND end_seq IS NULL`);
    open = r.rows[0].n;
    return open === 0;
  }, d, 30_000).catch(() => undefined);
  return open;
}

let current: Deployment | undefined;
afterEach(async () => {
  await current?.stop();
  current = undefined;
});

/** One run: deploy, load with `victim` killed and started again mid-run, compare. */
async function crashRun(nats: boolean, victim: (d: Deployment) => Proc) {
  const d = (current = await deploy({ nats, slowInserts: true }));
  const loaded = await load(d, async () => {
    const p = victim(d);
    await p.kill('SIGKILL');
    await sleep(500);
    p.start();
  });
  const r = await compare(d, loaded);
  expect(r.executed).toBeGreaterThanOrEqual(WORKERS * PER_WORKER);
  expect(r.executedNotAudited, `executed but not audited\n${d.logs()}`).toEqual([]);
  expect(r.duplicates, 'recorded more than once').toEqual([]);
  expect(r.acknowledgedNotExecuted, 'acknowledged but not executed').toEqual([]);
  return { d, loaded };
}

describe('a process killed mid-run loses no audit record', { timeout: 300_000 }, () => {
  it('the gateway (audit straight to the control plane): statements in flight are recorded at its next start, sessions ended', async () => {
    const { d, loaded } = await crashRun(false, (d) => d.gateway);
    // The kill cut sessions mid-statement.
    expect(loaded.failures).toBeGreaterThan(0);
    expect(await sessionsWithoutEnd(d)).toBe(0);
    // The statements it had forwarded when it died are recorded, by its next start, as of unknown outcome.
    const unknown = await d.store.query(`SELECT body FROM audit_events WHERE type = 'statement' AND body LIKE '%the gateway stopped after the statement was forwarded%'`);
    expect(unknown.rows.length).toBeGreaterThan(0);
    for (const r of unknown.rows) expect(JSON.parse(r.body).error.sqlstate).toBe('08006');
    const ended = await d.store.query(`SELECT count(*)::int AS n FROM audit_sessions WHERE end_reason LIKE 'the gateway stopped with the session open%'`);
    expect(ended.rows[0].n).toBeGreaterThan(0);
    const verify = await d.cli('audit', 'verify');
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });

  it('the gateway (audit through NATS)', async () => {
    const { d } = await crashRun(true, (d) => d.gateway);
    expect(await sessionsWithoutEnd(d)).toBe(0);
  });

  it('the agent', async () => {
    const { d, loaded } = await crashRun(false, (d) => d.agent);
    expect(loaded.failures).toBeGreaterThan(0);
    expect(await sessionsWithoutEnd(d)).toBe(0);
  });

  it('the control plane', async () => {
    const { d } = await crashRun(false, (d) => d.controlPlane);
    expect(await sessionsWithoutEnd(d)).toBe(0);
  });

  it('the NATS server', async () => {
    const { d } = await crashRun(true, (d) => d.nats!);
    expect(await sessionsWithoutEnd(d)).toBe(0);
  });
});
