// TLS between client and gateway, and a second gateway that the agent finds
// through the control plane and dials by itself.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createDatabase, makeCertificates, sh, startExtraGateway, startStack, type Stack, type TestDatabase } from './support/stack.js';

let db: TestDatabase;
let stack: Stack;
let certs: { ca: string; cert: string; key: string };
let certDir: string;
let gateway: Awaited<ReturnType<typeof startExtraGateway>>;

beforeAll(async () => {
  db = await createDatabase('warden_tls');
  await db.query(`CREATE TABLE t (v text)`);
  await db.query(`INSERT INTO t VALUES ('over tls')`);
  stack = await startStack({ upstream: db.url, resource: 'shop' });
  certDir = mkdtempSync(join(tmpdir(), 'warden-certs-'));
  certs = await makeCertificates(certDir);
  // Not --local: this gateway accepts tokens over TLS only.
  gateway = await startExtraGateway(stack, 'gw-tls', ['--tls-cert', certs.cert, '--tls-key', certs.key]);
  // Ready once the agent has found and dialed it.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await sh('psql', [conninfo('verify-full'), '-Atc', 'SELECT 1'], { PGPASSWORD: await stack.token() });
    if (r.code === 0) break;
    if (Date.now() > deadline) throw new Error(`second gateway never became usable: ${r.stderr}\n${gateway.output()}`);
    await new Promise((res) => setTimeout(res, 250));
  }
});

afterAll(async () => {
  await gateway?.stop();
  await stack?.stop();
  await db?.drop();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

function conninfo(sslmode: string) {
  return `host=localhost port=${gateway.port} dbname=shop user=demo sslmode=${sslmode} sslrootcert=${certs.ca}`;
}

describe('client ↔ gateway TLS', () => {
  it('psql with sslmode=verify-full gets rows through the second gateway', async () => {
    const r = await sh('psql', [conninfo('verify-full'), '-Atc', 'SELECT v FROM t'], { PGPASSWORD: await stack.token() });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('over tls');
  });

  it('node-postgres verifies the certificate too', async () => {
    const c = new pg.Client({ host: 'localhost', port: gateway.port, user: 'demo', database: 'shop', password: await stack.token(), ssl: { ca: (await import('node:fs')).readFileSync(certs.ca, 'utf8') } });
    await c.connect();
    expect((await c.query('SELECT v FROM t')).rows).toEqual([{ v: 'over tls' }]);
    expect((await c.query('SHOW ssl')).rows.length).toBe(1);
    await c.end();
  });

  it('refuses a token sent without TLS when not in local mode', async () => {
    const r = await sh('psql', [conninfo('disable'), '-c', 'SELECT 1'], { PGPASSWORD: await stack.token() });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/accepts tokens only over TLS/);
  });

  it('a gateway without a certificate answers SSLRequest with N', async () => {
    const r = await sh('psql', [stack.conninfo({ sslmode: 'require' }), '-c', 'SELECT 1'], { PGPASSWORD: await stack.token() });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/server does not support SSL/);
  });
});
