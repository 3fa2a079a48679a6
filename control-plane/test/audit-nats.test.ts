// Fault tests of the audit transport with a real NATS server of the test's
// own: NATS killed mid-stream and restarted with its store, the control plane
// stopped and restarted, a publishing process killed with events in its
// outbox and started again. Then count: every event stored, exactly once.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { createAuditSink } from '@warden/gateway';
import type { AuditEvent } from '@warden/proto';
import { eventFromRecord } from '@warden/proto/audit';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../src/server/start.js';
import { createTestDatabase, tempDir } from './helpers.js';
import { startNats, type TestNats } from './nats-server.js';

const PUBLISHER = fileURLToPath(new URL('./fixtures/audit-publisher.mjs', import.meta.url));
const log = process.env.WARDEN_TEST_LOG ? pino({ level: 'debug' }, pino.destination(2)) : pino({ level: 'silent' });

function statement(sessionId: string, seq: number): AuditEvent {
  return eventFromRecord({
    type: 'statement',
    id: `${sessionId}:${seq}`,
    time: new Date().toISOString(),
    gateway: 'gw-test',
    sessionId,
    seq,
    identity: 'ci-deploy',
    resource: 'shop',
    agent: 'local',
    sql: `SELECT ${seq}`,
    protocol: 'simple',
    decision: 'allowed',
    command: 'SELECT',
    rows: 1,
    durationMs: 0.5,
  })!;
}

/** Runs the publisher fixture; `lines` fills as it prints the seqs it published. */
function publisher(dataDir: string, natsUrl: string, session: string, count: number, delayMs: number) {
  const child = spawn(process.execPath, [PUBLISHER, dataDir, natsUrl, session, String(count), String(delayMs)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stderr = '';
  let partial = '';
  child.stdout!.on('data', (d) => {
    const parts = (partial + d).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, lines, exited, stderr: () => stderr };
}

async function until(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe('audit events through NATS JetStream', () => {
  let nats: TestNats;
  let cp: ControlPlane | undefined;
  let cpOptions: ControlPlaneOptions;
  const cleanups: (() => Promise<void> | void)[] = [];

  beforeAll(async () => {
    nats = await startNats();
    cleanups.push(() => nats.remove());
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    cpOptions = { listen: '127.0.0.1:0', dataDir: dir.path, databaseUrl: db.url, natsUrl: nats.url, logger: log, audit: { maintenanceIntervalMs: 3_600_000 } };
    cp = await startControlPlane(cpOptions);
  });

  afterAll(async () => {
    await cp?.close();
    for (const c of cleanups.reverse()) await c();
  });

  const stored = async () => {
    const r = await sql<{ id: string }>`select id from audit_events`.execute(cp!.storage.db);
    return r.rows.map((x) => x.id);
  };

  it('stores every event exactly once across NATS, control-plane and publisher restarts', { timeout: 240_000 }, async () => {
    const gatewayDir = tempDir('warden-gw-');
    cleanups.push(() => gatewayDir.remove());
    const expected = new Set<string>();
    const sink = createAuditSink({ gatewayId: 'gw-test', dataDir: gatewayDir.path, natsUrl: nats.url, log });

    // 1. NATS is killed mid-stream and comes back with its store.
    for (let seq = 0; seq < 300; seq++) {
      sink.publish(statement('s1', seq));
      expected.add(`s1:${seq}`);
      if (seq === 100) await nats.kill();
      if (seq === 200) await nats.start();
      if (seq % 10 === 0) await sleep(5);
    }
    await sink.flushed();

    // 2. The control plane is away while events keep coming; it catches up when back.
    await cp!.close();
    cp = undefined;
    for (let seq = 300; seq < 400; seq++) {
      sink.publish(statement('s1', seq));
      expected.add(`s1:${seq}`);
    }
    await sink.flushed();
    cp = await startControlPlane(cpOptions);

    // 3. A publishing process is killed while NATS is down, with events only in its outbox.
    const procDir = tempDir('warden-gw-proc-');
    cleanups.push(() => procDir.remove());
    await nats.kill();
    const first = publisher(procDir.path, nats.url, 's2', 100_000, 2);
    await until('the publisher to publish', () => first.lines.length >= 150, 30_000);
    first.child.kill('SIGKILL');
    await first.exited;
    const published = first.lines.filter((l) => /^\d+$/.test(l)).map(Number);
    for (const seq of published) expected.add(`s2:${seq}`);
    // The next seq may have reached the outbox just before the kill, without being reported.
    const maybe = `s2:${published.length}`;
    await nats.start();
    const second = publisher(procDir.path, nats.url, 's3', 50, 0);
    expect(await second.exited, second.stderr()).toBe(0);
    expect(second.lines.at(-1)).toBe('done');
    for (let seq = 0; seq < 50; seq++) expected.add(`s3:${seq}`);
    await sink.close();

    // Count: every event arrived, none twice.
    await until('every event to be stored', async () => (await stored()).filter((id) => id !== maybe).length >= expected.size).catch(async (err) => {
      const have = new Set(await stored());
      const missing = [...expected].filter((id) => !have.has(id));
      throw new Error(`${(err as Error).message}: ${missing.length} missing, e.g. ${missing.slice(0, 10).join(' ')}`);
    });
    await sleep(1500); // anything late (a duplicate slipping through) would show now
    const ids = (await stored()).filter((id) => id !== maybe);
    expect(ids.length).toBe(expected.size);
    expect(new Set(ids)).toEqual(expected);
    const counts = await sql<{ session_id: string; statements: number; events: number }>`
      select session_id, statements, events from audit_sessions order by session_id`.execute(cp!.storage.db);
    const extra = (await stored()).includes(maybe) ? 1 : 0;
    expect(counts.rows).toEqual([
      { session_id: 's1', statements: 400, events: 400 },
      { session_id: 's2', statements: published.length + extra, events: published.length + extra },
      { session_id: 's3', statements: 50, events: 50 },
    ]);
    const report = await cp!.audit.verify();
    expect(report.problems).toEqual([]);
    // The test's sessions never end: verify says so for each, and nothing else.
    expect(report.warnings.map((w) => w.replace(/ \(ci-deploy on shop, started [^)]*\)/, ''))).toEqual(['s1', 's2', 's3'].map((id) => `session ${id}: no end recorded (still open, or its gateway was lost)`));
  });
});
