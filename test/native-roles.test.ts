// Native roles as the safety net, end to end: roles made with `warden roles
// sql`, the agent given its mapping with `warden start --role/--rule-role`,
// and real clients through gateway and agent. A session runs in its rule's
// (or level's) role, cannot leave it, and Postgres itself refuses what the
// role was not granted even when the gateway allows the statement.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from './support/raw-client.js';
import { createDatabase, pgUrl, sh, startStack, WARDEN, type Stack, type TestDatabase } from './support/stack.js';

const tag = randomBytes(4).toString('hex');
// Roles are cluster-wide: names of this run's own.
const ROLE = {
  demo: `warden_e2e_${tag}_demo`,
  reader: `warden_e2e_${tag}_reader`,
  writer: `warden_e2e_${tag}_writer`,
  boss: `warden_e2e_${tag}_boss`,
  lost: `warden_e2e_${tag}_lost`,
};
const MISSING = `warden_e2e_${tag}_missing`;

const POLICY = `version: 1
identities:
  - { name: demo, issuer: local-dev, match: { sub: demo } }
  - { name: reader, issuer: local-dev, match: { sub: reader } }
  - { name: writer, issuer: local-dev, match: { sub: writer } }
  - { name: boss, issuer: local-dev, match: { sub: boss } }
  - { name: lost, issuer: local-dev, match: { sub: lost } }
resources:
  - name: shop
    agent: local
rules:
  - { name: demo-read-only, resource: shop, identities: [demo], access: read }
  - name: reader-rule
    resource: shop
    identities: [reader]
    access: read
    schemas: { allow: [public] }
  - { name: writer-rule, resource: shop, identities: [writer], access: write }
  - { name: boss-rule, resource: shop, identities: [boss], access: admin }
  - { name: lost-rule, resource: shop, identities: [lost], access: read }
`;

/** Each must be refused for every identity (42501), and leave the role as it was. */
const LEAVE_THE_ROLE = [
  'SET ROLE postgres',
  'SET ROLE NONE',
  'SET LOCAL ROLE postgres',
  'RESET ROLE',
  'SET SESSION AUTHORIZATION postgres',
  'SET SESSION AUTHORIZATION DEFAULT',
  'RESET SESSION AUTHORIZATION',
  'DISCARD ALL',
  "SELECT set_config('role', 'postgres', false)",
  "SELECT set_config('role', 'none', true)",
];

let db: TestDatabase;
let stack: Stack;

async function connect(sub: string): Promise<pg.Client> {
  const c = new pg.Client({ host: stack.host, port: stack.port, user: sub, database: 'shop', password: await stack.token(sub) });
  await c.connect();
  return c;
}

const currentUser = async (c: pg.Client) => (await c.query('SELECT current_user AS u')).rows[0].u as string;

beforeAll(async () => {
  db = await createDatabase('warden_roles');
  await db.query(`
    CREATE TABLE orders (id serial PRIMARY KEY, amount int NOT NULL);
    CREATE TABLE secrets (id int, code text);
    INSERT INTO orders (amount) SELECT g FROM generate_series(1, 10) g;
    INSERT INTO secrets VALUES (1, 'hunter2');
  `);
  // The roles, as an operator makes them: the script printed from the policy file, run with psql.
  const dir = (await import('node:fs')).mkdtempSync(join((await import('node:os')).tmpdir(), 'warden-roles-e2e-'));
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, POLICY);
  const names = Object.entries({ 'demo-read-only': ROLE.demo, 'reader-rule': ROLE.reader, 'writer-rule': ROLE.writer, 'boss-rule': ROLE.boss, 'lost-rule': ROLE.lost });
  const printed = await sh(process.execPath, [
    WARDEN, 'roles', 'sql', '--resource', 'shop', '-f', policyFile, '--agent-user', 'postgres',
    ...names.flatMap(([rule, role]) => ['--rule-role', `${rule}=${role}`]),
  ]);
  expect(printed.stderr).toBe('');
  writeFileSync(join(dir, 'roles.sql'), printed.stdout);
  const ran = await sh('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', db.url, '-f', join(dir, 'roles.sql')]);
  expect(ran.stderr).toBe('');
  // The reader's rule allows all of public; its role is denied one table
  // there, as if the gateway's rule were wider than intended.
  await db.query(`REVOKE SELECT ON secrets FROM ${ROLE.reader}`);

  stack = await startStack({
    upstream: db.url,
    resource: 'shop',
    args: [
      '--role', `read=${ROLE.demo}`,
      '--role', `write=${ROLE.writer}`,
      '--rule-role', `reader-rule=${ROLE.reader}`, // wins over read=
      '--rule-role', `lost-rule=${MISSING}`,
    ],
  });
  const applied = await stack.cli('policy', 'apply', '-f', policyFile);
  expect(applied.stderr).toBe('');
  expect(applied.code).toBe(0);
  await new Promise((r) => setTimeout(r, 500)); // the new snapshot reaches the gateway
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await db?.drop();
  const admin = new pg.Client({ connectionString: pgUrl() });
  await admin.connect();
  await admin.query(`DROP ROLE IF EXISTS ${Object.values(ROLE).join(', ')}`);
  await admin.end();
});

describe('a session mapped to a native role', () => {
  it('runs in its rule\'s role, else its level\'s, else as the login user', async () => {
    for (const [sub, role] of [['reader', ROLE.reader], ['demo', ROLE.demo], ['writer', ROLE.writer], ['boss', 'postgres']] as const) {
      const c = await connect(sub);
      expect(await currentUser(c), sub).toBe(role);
      expect((await c.query('SELECT session_user AS u')).rows[0].u).toBe('postgres');
      await c.end();
    }
  });

  it('cannot read a table its role was not granted, even though the gateway allows the statement', async () => {
    const check = await stack.cli('policy', 'check', '--as', 'reader', '--resource', 'shop', 'SELECT * FROM secrets');
    expect(check.stdout).toMatch(/^allowed: SELECT \(read\) on (public\.)?secrets — rule reader-rule \(read\)/);

    const c = await connect('reader');
    // Simple protocol: Postgres' own refusal, not Warden's.
    const simple = await c.query('SELECT * FROM secrets').then(() => null, (e) => e);
    expect(simple?.code).toBe('42501');
    expect(simple?.message).toBe('permission denied for table secrets');
    // Extended protocol, with a parameter.
    const extended = await c.query({ name: 'peek', text: 'SELECT code FROM secrets WHERE id = $1', values: [1] }).then(() => null, (e) => e);
    expect(extended?.code).toBe('42501');
    expect(extended?.message).toBe('permission denied for table secrets');
    // What the role was granted still works on the same session.
    expect((await c.query('SELECT count(*)::int AS n FROM orders')).rows[0].n).toBe(10);
    await c.end();

    const psql = await sh('psql', [stack.conninfo({ user: 'reader' }), '-X', '-c', 'SELECT code FROM secrets'], { PGPASSWORD: await stack.token('reader') });
    expect(psql.code).not.toBe(0);
    expect(psql.stderr).toContain('ERROR:  permission denied for table secrets');
    expect(psql.stdout).not.toContain('hunter2');
  });

  it('cannot leave its role: every way out is refused, for every identity', async () => {
    for (const [sub, role] of [['reader', ROLE.reader], ['writer', ROLE.writer], ['boss', 'postgres']] as const) {
      const c = await connect(sub);
      for (const sql of LEAVE_THE_ROLE) {
        const err = await c.query(sql).then(() => null, (e) => e);
        expect(err?.code, `${sub}: ${sql}`).toBe('42501');
        expect(err?.message, `${sub}: ${sql}`).toMatch(new RegExp(`^warden: ${sub} \\(\\w+\\) may not `));
        expect(await currentUser(c), `${sub} after ${sql}`).toBe(role);
      }
      // The same inside a transaction block: refused, and the rollback keeps the role.
      await c.query('BEGIN');
      expect(await c.query('SET LOCAL ROLE postgres').then(() => null, (e) => e.code)).toBe('42501');
      await c.query('ROLLBACK');
      expect(await currentUser(c)).toBe(role);
      await c.end();
    }
  });

  it('keeps its role across RESET ALL, and across BEGIN … ROLLBACK', async () => {
    const w = await connect('writer');
    await w.query("SET application_name = 'changed'");
    await w.query('RESET ALL');
    expect(await currentUser(w)).toBe(ROLE.writer);
    expect((await w.query("SELECT current_setting('application_name') AS a")).rows[0].a).not.toBe('changed');
    await w.query('BEGIN');
    await w.query('INSERT INTO orders (amount) VALUES (11)');
    expect(await currentUser(w)).toBe(ROLE.writer);
    await w.query('ROLLBACK');
    expect(await currentUser(w)).toBe(ROLE.writer);
    await w.end();

    const r = await connect('reader');
    await r.query('BEGIN');
    expect(await r.query('SELECT * FROM secrets').then(() => null, (e) => e.code)).toBe('42501');
    await r.query('ROLLBACK');
    expect(await currentUser(r)).toBe(ROLE.reader);
    await r.end();
    expect((await db.query('SELECT count(*)::int AS n FROM orders')).rows[0].n).toBe(10);
  });

  it('reports a consistent login: the same messages as without a role, is_superuser as the role has it', async () => {
    const login = async (sub: string) => {
      const c = await RawClient.connect({ host: stack.host, port: stack.port, user: sub, database: 'shop', password: await stack.token(sub) });
      const names = c.startup.map((m) => (m.name === 'parameterStatus' ? `S:${String(m.parameterName)}` : m.name));
      const params = Object.fromEntries(c.startup.filter((m) => m.name === 'parameterStatus').map((m) => [m.parameterName, m.parameterValue]));
      await c.end();
      return { names, params };
    };
    const mapped = await login('reader');
    const unmapped = await login('boss');
    expect(mapped.names).toEqual(unmapped.names);
    expect(mapped.names).not.toContain('commandComplete');
    expect(unmapped.params.is_superuser).toBe('on');
    expect(mapped.params.is_superuser).toBe('off');
    expect(mapped.params.session_authorization).toBe('postgres');
  });

  it('fails the session, with the server\'s SQLSTATE and the role named, when the role cannot be set', async () => {
    const err = await connect('lost').then(
      async (c) => {
        await c.end();
        return null;
      },
      (e) => e,
    );
    expect(['22023', '42704']).toContain(err?.code);
    expect(err?.message).toMatch(new RegExp(`could not put the session on resource shop in role "${MISSING}" \\(mapped from rule lost-rule\\): role "${MISSING}" does not exist; create the role`));
  });
});
