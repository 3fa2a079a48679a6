// Issue 17, "audit never fails open": when the gateway cannot record audit
// events, new statements are refused (53100, with a sentence saying why) and
// the gateway logs the alert at the first refusal; once recording works,
// statements run again, and nothing the database ran is missing from the
// audit trail. Real processes throughout: control plane, agent, gateway,
// NATS, Postgres; the disk that fills is a real tmpfs.
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditedMarkers, connect, deploy, waitFor, type Deployment } from './support/deployment.js';
import { sh } from './support/stack.js';

const OUTBOX_LIMIT = 256 << 10;
const REFUSED = 'warden: statements are refused while the audit trail cannot record them';
const ALERT = 'AUDIT CANNOT RECORD';

/** Runs `sql`; the error it raised, or undefined when it ran. */
async function attempt(c: pg.Client, sql: string): Promise<(Error & { code?: string }) | undefined> {
  try {
    await c.query(sql);
    return undefined;
  } catch (err) {
    return err as Error & { code?: string };
  }
}

async function session(d: Deployment): Promise<pg.Client> {
  const c = connect(d);
  c.on('error', () => {}); // a session the gateway ends surfaces at the next query
  await c.connect();
  return c;
}

const insert = (marker: string) => `INSERT INTO public.marks (m) VALUES ('${marker}')`;

/** Every marker the database holds is recorded exactly once (waiting for the store to catch up first). */
async function expectEveryExecutedAuditedOnce(d: Deployment): Promise<number> {
  const executed = (await d.upstream.query('SELECT m FROM public.marks')).rows.map((r: { m: string }) => r.m);
  let audited: string[] = [];
  await waitFor('the audit store to hold every executed statement', async () => {
    audited = await auditedMarkers(d);
    const seen = new Set(audited);
    return executed.every((m) => seen.has(m));
  }, d, 90_000).catch(() => undefined); // the exact comparison below says what is missing
  const counts = new Map<string, number>();
  for (const m of audited) counts.set(m, (counts.get(m) ?? 0) + 1);
  expect(executed.filter((m) => counts.get(m) !== 1), `executed but not audited exactly once\n${d.logs()}`).toEqual([]);
  return executed.length;
}

/** Bytes in the outbox's segment files (written, delivered or not). */
function outboxFileBytes(dataDir: string): number {
  const dir = join(dataDir, 'audit-outbox');
  return readdirSync(dir)
    .filter((f) => /^\d{10}\.pb$/.test(f))
    .reduce((sum, f) => sum + statSync(join(dir, f)).size, 0);
}

/** For the tests of one describe: a deployment with the audit through NATS and an outbox of OUTBOX_LIMIT bytes. */
function smallOutboxThroughNats(): () => Deployment {
  let d: Deployment | undefined;
  beforeAll(async () => {
    d = await deploy({ nats: true, gatewayArgs: ['--audit-outbox-max-bytes', String(OUTBOX_LIMIT)] });
  });
  afterAll(async () => {
    await d?.stop();
  });
  return () => d!;
}

describe('the outbox full (NATS away)', { timeout: 300_000 }, () => {
  const deployment = smallOutboxThroughNats();

  it('refuses statements with 53100 and an immediate alert, runs them again once NATS is back, and none ran unrecorded', async () => {
    const d = deployment();
    const c = await session(d);
    expect(await attempt(c, insert('before-0'))).toBeUndefined();
    // A statement under way all along: it waits in the database for a row lock the test holds.
    const holder = new pg.Client({ connectionString: d.upstream.url });
    await holder.connect();
    await holder.query(`BEGIN; INSERT INTO public.marks (m) VALUES ('under-way')`);
    const slow = await session(d);
    const underWay = attempt(slow, insert('under-way'));
    await waitFor('the statement to wait in the database', async () =>
      (await d.upstream.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%under-way%'`)).rowCount === 1, d);
    await d.nats!.kill('SIGKILL');

    // Large statements fill the outbox sooner; each carries a marker of its own.
    const pad = 'x'.repeat(800);
    let refusal: (Error & { code?: string }) | undefined;
    let logAtRefusal = '';
    let ran = 0;
    for (let n = 0; n < 2_000 && !refusal; n++) {
      expect(d.gateway.output, 'the alert before any refusal').not.toContain(ALERT);
      refusal = await attempt(c, insert(`down-${n}-${pad}`));
      // The gateway's log goes straight to a file: read at once, it holds all the gateway wrote before it answered.
      if (refusal) logAtRefusal = d.gateway.output;
      else ran++;
    }
    expect(ran, 'statements ran while the outbox had room').toBeGreaterThan(0);
    expect(refusal?.code, `no refusal after ${ran} statements\n${d.logs()}`).toBe('53100');
    expect(refusal!.message).toContain(REFUSED);
    expect(refusal!.message).toMatch(/the audit outbox is full \(\d+ undelivered bytes, limit 262144\); check the audit transport/);
    expect(logAtRefusal).toContain(`${ALERT}: the audit outbox is full`);

    // Every new statement is refused, in this session and in a new one; their records do not take the room kept for the one under way.
    for (let n = 0; n < 100; n++) expect((await attempt(c, insert(`down-again-${n}-${pad}`)))?.code).toBe('53100');
    const other = await session(d);
    expect((await attempt(other, insert('down-other')))?.code).toBe('53100');
    await holder.query('ROLLBACK');
    await holder.end();
    expect(await underWay, 'the statement under way').toBeUndefined();
    await slow.end();
    const inDb = (await d.upstream.query(`SELECT count(*)::int AS n FROM public.marks WHERE m LIKE 'down-%'`)).rows[0].n;
    expect(inDb, 'only the statements before the refusal ran').toBe(ran);

    // NATS back on its port and store: the outbox drains and statements run again.
    d.nats!.start();
    let k = 0;
    await waitFor('statements to run again', async () => (await attempt(c, insert(`after-${k++}`))) === undefined, d, 120_000);
    expect(await attempt(other, insert('after-other'))).toBeUndefined();
    await waitFor('the log to say so', async () => d.gateway.output.includes('audit records again; statements run again'), d);
    expect(d.gateway.output.split(ALERT).length - 1, 'the alert, once').toBe(1);
    await c.end();
    await other.end();

    const executed = await expectEveryExecutedAuditedOnce(d);
    expect(executed).toBe(1 + 1 + ran + 1 + 1); // before-0, under-way, the down-* that ran, one after-*, after-other
  });
});

describe('a failed-login flood with NATS away', { timeout: 300_000 }, () => {
  const deployment = smallOutboxThroughNats();

  it('does not fill the outbox: 2,000 bad logins from one address leave room, and good sessions still run statements', async () => {
    const d = deployment();
    await d.nats!.kill('SIGKILL');
    const before = outboxFileBytes(join(d.dir, 'g1'));
    // The flood comes from 127.0.0.2 under another name, so the limits it trips (per address, per name) do not refuse the good sessions.
    const fromFloodAddress = () => {
      const s = new Socket();
      const connectTo = s.connect.bind(s) as (o: object) => Socket;
      (s as unknown as { connect: (port: number, host: string) => Socket }).connect = (port, host) => connectTo({ port, host, localAddress: '127.0.0.2' });
      return s;
    };
    const refusedCodes = new Map<string, number>();
    let next = 0;
    const flooder = async () => {
      while (next < 2_000) {
        next++;
        const c = new pg.Client({ host: '127.0.0.1', port: d.gatewayPort, database: 'marks', user: 'intruder', password: 'not-a-token', ssl: false, stream: fromFloodAddress });
        c.on('error', () => {});
        const code = await c.connect().then(() => 'connected', (err: { code?: string }) => err.code ?? 'no code');
        refusedCodes.set(code, (refusedCodes.get(code) ?? 0) + 1);
        await c.end().catch(() => {});
      }
    };
    await Promise.all(Array.from({ length: 16 }, flooder));
    expect(refusedCodes.get('connected'), 'a bad token logged in').toBeUndefined();
    expect([...refusedCodes.values()].reduce((a, b) => a + b, 0)).toBe(2_000);

    const grown = outboxFileBytes(join(d.dir, 'g1')) - before;
    // Each failure is recorded until the per-address limit trips (28P01); after that one summary per 10 s (08004 to the client).
    expect(refusedCodes.get('28P01'), JSON.stringify([...refusedCodes])).toBeLessThan(100);
    expect(refusedCodes.get('08004'), JSON.stringify([...refusedCodes])).toBeGreaterThan(1_900);
    expect(grown, `the flood wrote ${grown} bytes of audit events`).toBeLessThan(OUTBOX_LIMIT / 10);
    const c = await session(d);
    expect(await attempt(c, insert('after-flood'))).toBeUndefined();
    await c.end();
    d.nats!.start();
    expect(await expectEveryExecutedAuditedOnce(d)).toBe(1);
  });
});

describe('the disk full under the outbox and the statement journal', { timeout: 300_000 }, () => {
  let mount: string | undefined;
  let d: Deployment | undefined;
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-tmpfs-'));
    const mounted = await sh('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
    if (mounted.code !== 0) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`this test needs a 1 MiB tmpfs of its own as the gateway's --data-dir and could not mount one (it needs root): ${mounted.stderr.trim()}`);
    }
    mount = dir;
    d = await deploy({ gatewayDataDir: join(mount, 'g1') });
  });
  afterAll(async () => {
    try {
      await d?.stop();
    } finally {
      if (mount) {
        const r = await sh('umount', [mount]);
        expect(r.code, `umount ${mount}: ${r.stderr}`).toBe(0);
        rmSync(mount, { recursive: true, force: true });
      }
    }
  });

  /** Takes every free page of the tmpfs with one file; the files already there keep what is left of their last page. */
  function fill(file: string): void {
    const fd = openSync(file, 'w');
    try {
      for (const size of [64 << 10, 4 << 10, 1]) {
        const chunk = Buffer.alloc(size, 1);
        try {
          for (;;) writeSync(fd, chunk);
        } catch (err) {
          if ((err as { code?: string }).code !== 'ENOSPC') throw err;
        }
      }
    } finally {
      closeSync(fd);
    }
  }

  it('refuses statements with 53100 naming the write failure, ends the session whose record could not be written, and runs them again once there is room', async () => {
    const dep = d!;
    const c = await session(dep);
    expect(await attempt(c, insert('disk-ok-0'))).toBeUndefined();

    const filler = join(mount!, 'filler');
    fill(filler);
    // Statements larger than a page: the record written before each is forwarded needs a page the disk no longer has.
    const big = (m: string) => insert(`${m}-${'y'.repeat(6_000)}`);
    const failed = await attempt(c, big('disk-full-1'));
    const logAtRefusal = dep.gateway.output;
    expect(failed?.code, dep.logs()).toBe('53100');
    expect(failed!.message).toMatch(/^warden: the statement was not run: its audit record could not be written \(writing the statement journal failed \(ENOSPC: no space left on device, write\)\); the session was ended$/);
    expect(logAtRefusal).toContain(`${ALERT}: writing the statement journal failed (ENOSPC`);
    // That session is over.
    expect(await attempt(c, 'SELECT 1')).toBeInstanceOf(Error);

    // A new session's statements are refused as well, with the reason.
    const other = await session(dep);
    const refused = await attempt(other, big('disk-full-2'));
    expect(refused?.code).toBe('53100');
    expect(refused!.message).toContain('ENOSPC: no space left on device');
    await other.end().catch(() => {});
    const ran = (await dep.upstream.query(`SELECT count(*)::int AS n FROM public.marks WHERE m LIKE 'disk-full-%'`)).rows[0].n;
    expect(ran, 'a statement ran while its record could not be written').toBe(0);

    // Room again: statements run again (a new session each try, as a refused one may have been ended).
    rmSync(filler);
    let k = 0;
    await waitFor('statements to run again', async () => {
      const s = await session(dep);
      try {
        return (await attempt(s, big(`disk-again-${k++}`))) === undefined;
      } finally {
        await s.end().catch(() => {});
      }
    }, dep, 60_000);
    expect(await expectEveryExecutedAuditedOnce(dep)).toBe(2);
    // The records of the statements refused meanwhile (each larger than a page, so their outbox write failed too) were kept and written once there was room.
    const audited = await auditedMarkers(dep);
    for (const m of ['disk-full-1-', 'disk-full-2-']) expect(audited.filter((a) => a.startsWith(m)), `the record of ${m}`).toHaveLength(1);
    expect(dep.gateway.output).toContain('writing the audit outbox failed; the events are kept in memory');
  });
});
