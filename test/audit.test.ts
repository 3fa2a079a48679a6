// The audit trail end to end: a real psql session through gateway and agent
// is recorded, read back with the CLI (list, show, replay, search), verified,
// and caught when a stored row is tampered with.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, sh, startStack, type Stack, type TestDatabase } from './support/stack.js';

let upstream: TestDatabase;
let store: TestDatabase;
let stack: Stack;

beforeAll(async () => {
  upstream = await createDatabase();
  await upstream.query(`CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL)`);
  await upstream.query(`INSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Edsger')`);
  // The control plane keeps its data in a Postgres database of the test's own, so the test can tamper with it.
  store = await createDatabase('warden_audit_store');
  stack = await startStack({ upstream: upstream.url, resource: 'shop', args: ['--database-url', store.url] });
});

afterAll(async () => {
  await stack?.stop();
  await upstream?.drop();
  await store?.drop();
});

async function cliJson<T>(...args: string[]): Promise<T> {
  const r = await stack.cli(...args, '--json');
  if (r.code !== 0) throw new Error(`warden ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

interface Session {
  sessionId: string;
  identity: string;
  statements: number;
  refused: number;
  endedAt: string;
  outcome: string;
}

/** Waits until the session of application `app` is stored with its end. */
async function recordedSession(app: string): Promise<Session> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const sessions = await cliJson<(Session & { applicationName: string })[]>('sessions', 'list', '--identity', 'demo', '--since', '1h');
    const s = sessions.find((x) => x.applicationName === app && x.endedAt);
    if (s) return s;
    if (Date.now() > deadline) throw new Error(`session of ${app} not recorded; sessions: ${JSON.stringify(sessions)}`);
    await sleep(200);
  }
}

describe('audit trail', () => {
  let session: Session;
  const statements = [
    'SELECT id, name FROM customers ORDER BY id',
    'SELECT count(*) FROM customers WHERE id > 1',
    'DROP TABLE customers',
    'SELECT name FROM customers WHERE id = 2',
  ];

  it('records a psql session: start, each statement with its decision, end', async () => {
    const args = [stack.conninfo({ application_name: 'audit-e2e' }), '-X'];
    for (const s of statements) args.push('-c', s);
    const r = await sh('psql', args, { PGPASSWORD: await stack.token() });
    expect(r.stderr).toMatch(/may not DROP TABLE customers/);
    expect(r.stdout).toContain('Grace');

    session = await recordedSession('audit-e2e');
    expect(session).toMatchObject({ identity: 'demo', statements: 4, refused: 1, outcome: 'refused' });
    const { events } = await cliJson<{ events: Array<Record<string, unknown>> }>('sessions', 'show', session.sessionId);
    expect(events.map((e) => e.type)).toEqual(['session.start', 'statement', 'statement', 'statement', 'statement', 'session.end']);
    expect(events.map((e) => e.seq)).toEqual([0, 1, 2, 3, 4, 5]);
    const stmts = events.filter((e) => e.type === 'statement');
    expect(stmts.map((e) => e.sql)).toEqual(statements);
    expect(stmts[0]).toMatchObject({ decision: 'allowed', rows: 3, identity: 'demo', resource: 'shop' });
    expect(stmts[2]).toMatchObject({ decision: 'refused', rule: 'demo-read-only', kind: 'DROP TABLE', error: { sqlstate: '42501' } });
  });

  it('replays the session as a transcript, in order, with decisions and row counts', async () => {
    const r = await stack.cli('sessions', 'replay', session.sessionId, '--speed', 'fast');
    expect(r.code).toBe(0);
    const out = r.stdout;
    const at = statements.map((s) => out.indexOf(s));
    expect(at.every((i) => i >= 0)).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    expect(out).toMatch(/SELECT id, name FROM customers ORDER BY id\n\s+allowed( by rule \S+)? -> 3 rows, /);
    expect(out).toMatch(/DROP TABLE customers\n\s+REFUSED by rule demo-read-only: warden: demo \(read\) may not DROP TABLE customers/);
    expect(out).toMatch(/-- demo connected to shop from .* \(audit-e2e\)/);
    expect(out).toMatch(/-- demo left shop after 4 statements/);

    // At real speed the replay takes as long as the session did (within reason).
    const t0 = Date.now();
    const real = await stack.cli('sessions', 'replay', session.sessionId, '--speed', 'real');
    expect(real.stdout.replace(/\s+/g, ' ')).toBe(out.replace(/\s+/g, ' '));
    expect(Date.now() - t0).toBeLessThan(30_000);
  });

  it('prints one-line summaries in the gateway log and the CLI', async () => {
    const log = readFileSync(join(stack.dataDir, 'logs', 'gateway.log'), 'utf8');
    // Sessions at info; statements only at debug level (their line cost the gateway more than their record).
    expect(log).toMatch(/demo connected to shop from [\d.:]+ \(audit-e2e\)/);
    expect(log).toMatch(/demo left shop after 4 statements/);
    expect(log).not.toMatch(/demo SELECT FROM (public\.)?customers on shop/);
    const show = await stack.cli('sessions', 'show', session.sessionId);
    expect(show.stdout).toMatch(/demo DROP TABLE (public\.)?customers on shop: refused by rule demo-read-only/);
  });

  it('finds every DROP of the last week, and lists refused sessions', async () => {
    const r = await stack.cli('audit', 'search', '--kind', 'DROP', '--since', '7d');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toContain(session.sessionId);
    expect(r.stdout).toMatch(/demo DROP TABLE (public\.)?customers on shop: refused/);
    const refused = await cliJson<Session[]>('sessions', 'list', '--outcome', 'refused');
    expect(refused.map((s) => s.sessionId)).toContain(session.sessionId);
  });

  it('verifies the trail, and fails naming the session and seq once a row is edited', async () => {
    const ok = await stack.cli('audit', 'verify');
    expect(ok.stdout).toMatch(/Audit trail intact/);
    expect(ok.code).toBe(0);

    await store.query(
      `UPDATE audit_events SET sql = 'SELECT 1', body = replace(body, 'DROP TABLE customers', 'SELECT 1') WHERE session_id = $1 AND seq = 3`,
      [session.sessionId],
    );
    const bad = await stack.cli('audit', 'verify');
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/TAMPERED/);
    expect(bad.stdout).toContain(`edited    session ${session.sessionId} seq 3`);
  });

  it('keeps retention settings in the control plane', async () => {
    expect((await stack.cli('audit', 'retention')).stdout).toMatch(/kept forever/);
    const set = await stack.cli('audit', 'retention', 'set', '--days', '30');
    expect(set.stdout).toMatch(/kept for 30 day/);
    expect(await cliJson<{ days: number }>('audit', 'retention')).toEqual({ days: 30 });
  });
});

describe('a gateway killed between statements', () => {
  it('loses no event and stores none twice: its outbox is delivered after the restart', { timeout: 180_000 }, async () => {
    const { mkdtempSync, rmSync, existsSync, unlinkSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { spawn } = await import('node:child_process');
    const pg = (await import('pg')).default;
    const { WARDEN } = await import('./support/stack.js');
    const dataDir = mkdtempSync(join(tmpdir(), 'warden-audit-kill-'));
    const cpStore = await createDatabase('warden_audit_kill');
    const ready = join(dataDir, 'ready.json');

    const start = async () => {
      if (existsSync(ready)) unlinkSync(ready);
      const args = [WARDEN, 'start', '--data-dir', dataDir, '--ready-file', ready, '--upstream', upstream.url, '--database-url', cpStore.url];
      args.push('--gateway-port', '0', '--control-plane-port', '0', '--console-port', '0', '--tunnel-port', '0', '--demo-port', '0');
      const child = spawn(process.execPath, args, { stdio: 'ignore' });
      const exited = new Promise((r) => child.once('exit', r));
      const deadline = Date.now() + 60_000;
      while (!existsSync(ready)) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error('warden start did not become ready');
        await sleep(100);
      }
      return { child, exited, info: JSON.parse(readFileSync(ready, 'utf8')) };
    };
    const cli = (info: { controlPlane: string }, ...args: string[]) =>
      sh(process.execPath, [WARDEN, ...args], { WARDEN_DATA_DIR: dataDir, WARDEN_CONTROL_PLANE: info.controlPlane });

    try {
      const first = await start();
      const token = (await cli(first.info, 'token', '--sub', 'demo')).stdout.trim();
      const client = new pg.Client({ host: first.info.gateway.host, port: first.info.gateway.port, user: 'demo', database: 'shop', password: token, application_name: 'killed' });
      client.on('error', () => {});
      await client.connect();
      for (let i = 1; i <= 5; i++) await client.query(`SELECT ${i} AS n, name FROM customers WHERE id = 1`);
      // Between two statements, the gateway dies without a goodbye; local mode then stops as a whole.
      process.kill(first.info.gateway.pid, 'SIGKILL');
      await client.query('SELECT 6').catch(() => {});
      await first.exited;

      const second = await start();
      try {
        const deadline = Date.now() + 30_000;
        let events: Array<{ type: string; seq: number; id: string }> = [];
        for (;;) {
          const list = JSON.parse((await cli(second.info, 'sessions', 'list', '--json')).stdout) as Array<{ sessionId: string; applicationName: string }>;
          const s = list.find((x) => x.applicationName === 'killed');
          if (s) {
            const shown = JSON.parse((await cli(second.info, 'sessions', 'show', s.sessionId, '--json')).stdout);
            events = shown.events;
            if (events.length >= 7) break;
          }
          if (Date.now() > deadline) throw new Error(`events of the killed session did not all arrive: ${JSON.stringify(events)}`);
          await sleep(200);
        }
        await sleep(1000); // a duplicate would have arrived by now
        const sid = (events[0] as unknown as { sessionId: string }).sessionId;
        const rows = await cpStore.query('SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM audit_events WHERE session_id = $1', [sid]);
        expect(rows.rows[0]).toEqual({ n: 7, d: 7 });
        // The session left open gets its end at the next start, saying so.
        expect(events.map((e) => `${e.type}:${e.seq}`)).toEqual(['session.start:0', ...[1, 2, 3, 4, 5].map((n) => `statement:${n}`), 'session.end:6']);
        expect((events[6] as unknown as { reason: string }).reason).toMatch(/^the gateway stopped with the session open/);
        const verify = await cli(second.info, 'audit', 'verify');
        expect(verify.code).toBe(0);
      } finally {
        second.child.kill('SIGTERM');
        await second.exited;
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      await cpStore.drop();
    }
  });
});
