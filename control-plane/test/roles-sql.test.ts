// `warden roles sql` as a real process: the script it prints is run twice on
// a real database (it must be idempotent), then the roles' privileges are
// read back, also after a policy change; and the rules may come from the
// control plane instead of a file.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeRolesSql } from '../src/policy/native-roles.js';
import { startControlPlane, type ControlPlane } from '../src/server/start.js';
import { createTestDatabase, runWarden, tempDir } from './helpers.js';

const tag = randomBytes(4).toString('hex');
const RO = `ro-${tag}`; // read, schema public, public.secrets denied
const RW = `rw-${tag}`; // write, only public.orders
const MIG = `mig-${tag}`; // ddl, every schema but priv
const AGENT = `warden_agent_${tag}`;
const role = (rule: string) => `warden_${rule.replace(/-/g, '_')}`;

function policy(roDeny: string[]): string {
  return `version: 1
issuers:
  - name: ci
    issuer_url: https://ci.example.com
    audiences: [warden]
identities:
  - name: reader
    issuer: ci
    match: { sub: reader }
resources:
  - name: shop
    agent: dc1
  - name: other
    agent: dc1
rules:
  - name: ${RO}
    resource: shop
    identities: [reader]
    access: read
    schemas: { allow: [public] }
    tables: { deny: [${roDeny.join(', ')}] }
  - name: ${RW}
    resource: shop
    groups: [writers]
    access: write
    tables: { allow: [public.orders] }
  - name: ${MIG}
    resource: shop
    groups: [deployers]
    access: ddl
    schemas: { deny: [priv] }
  - name: elsewhere
    resource: other
    groups: [x]
`;
}

const SETUP = `
  CREATE SCHEMA sales; CREATE SCHEMA priv;
  CREATE TABLE public.orders (id serial PRIMARY KEY, amount int);
  CREATE TABLE public.customers (id int GENERATED ALWAYS AS IDENTITY, name text);
  CREATE TABLE public.secrets (id int);
  CREATE VIEW public.order_totals AS SELECT sum(amount) FROM public.orders;
  CREATE TABLE sales.leads (id int);
  CREATE TABLE priv.keys (id int);
  CREATE FUNCTION public.order_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM public.orders';
  INSERT INTO public.orders (amount) VALUES (10), (20);
  INSERT INTO public.secrets VALUES (1);
`;

function psql(url: string, file: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url, '-f', file], (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('warden roles sql', () => {
  let dir: ReturnType<typeof tempDir>;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let client: pg.Client;
  const q = async (sql: string, params: unknown[] = []) => (await client.query(sql, params)).rows;
  const file = (name: string, text: string) => {
    const path = join(dir.path, name);
    writeFileSync(path, text);
    return path;
  };
  /** Prints the script for a policy text and runs it twice; returns it. */
  async function generateAndRun(name: string, policyText: string): Promise<string> {
    const res = await runWarden(['roles', 'sql', '--resource', 'shop', '-f', file(`${name}.yaml`, policyText), '--agent-user', AGENT]);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const script = file(`${name}.sql`, res.stdout);
    for (const run of [1, 2]) {
      const r = await psql(db.url, script);
      expect(r.stderr, `run ${run}`).toBe('');
      expect(r.code, `run ${run}`).toBe(0);
    }
    return res.stdout;
  }
  const can = async (who: string, object: string, privilege: string) =>
    (await q('SELECT has_table_privilege($1, $2, $3) AS ok', [who, object, privilege]))[0]!.ok as boolean;
  const canSchema = async (who: string, schema: string, privilege: string) =>
    (await q('SELECT has_schema_privilege($1, $2, $3) AS ok', [who, schema, privilege]))[0]!.ok as boolean;

  beforeAll(async () => {
    dir = tempDir('warden-roles-sql-');
    db = await createTestDatabase();
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await q(`CREATE ROLE ${AGENT} LOGIN`);
    await q(SETUP);
  }, 60_000);

  afterAll(async () => {
    await client?.end();
    await db?.drop();
    // Roles are cluster-wide; their privileges went with the database.
    const admin = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' });
    await admin.connect();
    await admin.query(`DROP ROLE IF EXISTS ${[RO, RW, MIG].map(role).join(', ')}, ${AGENT}`);
    await admin.end();
    dir?.remove();
  });

  it('prints a script whose roles hold exactly what each rule allows, and runs twice', async () => {
    const sql = await generateAndRun('v1', policy(['public.secrets']));
    expect(sql).toContain(`-- rule ${RO} (read) -> role ${role(RO)}: SELECT on tables, views and sequences; USAGE on schemas; schemas public, never tables public.secrets`);
    expect(sql).not.toContain('elsewhere'); // another resource's rule
    // The agent config snippet closes the script, as comments.
    expect(sql.trimEnd().split('\n').slice(-6)).toEqual([
      '-- The agent\'s config (docs/processes.md), in resources."shop":',
      '--  "ruleRoles": {',
      `--    "${MIG}": "${role(MIG)}",`,
      `--    "${RO}": "${role(RO)}",`,
      `--    "${RW}": "${role(RW)}"`,
      '--  }',
    ]);

    const ro = role(RO);
    expect(await q(`SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = $1`, [ro])).toEqual([{ rolcanlogin: false, rolsuper: false }]);
    for (const t of ['public.orders', 'public.customers', 'public.order_totals', 'public.orders_id_seq']) expect(await can(ro, t, 'SELECT'), t).toBe(true);
    for (const t of ['public.secrets', 'sales.leads', 'priv.keys']) expect(await can(ro, t, 'SELECT'), t).toBe(false);
    expect(await can(ro, 'public.orders', 'INSERT')).toBe(false);
    expect(await canSchema(ro, 'public', 'USAGE')).toBe(true);
    expect(await canSchema(ro, 'public', 'CREATE')).toBe(false);
    expect(await canSchema(ro, 'sales', 'USAGE')).toBe(false);

    const rw = role(RW);
    for (const p of ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) expect(await can(rw, 'public.orders', p), p).toBe(true);
    expect(await can(rw, 'public.orders', 'REFERENCES')).toBe(false);
    // The serial's sequence follows its table.
    expect((await q(`SELECT has_sequence_privilege($1, 'public.orders_id_seq', 'USAGE') AS ok`, [rw]))[0]!.ok).toBe(true);
    for (const t of ['public.customers', 'public.secrets', 'public.order_totals', 'sales.leads']) expect(await can(rw, t, 'SELECT'), t).toBe(false);
    expect(await canSchema(rw, 'sales', 'USAGE')).toBe(true); // every schema; tables narrow it

    const mig = role(MIG);
    for (const t of ['public.orders', 'public.secrets', 'sales.leads']) expect(await can(mig, t, 'TRIGGER'), t).toBe(true);
    expect(await can(mig, 'priv.keys', 'SELECT')).toBe(false);
    expect(await canSchema(mig, 'sales', 'CREATE')).toBe(true);
    expect(await canSchema(mig, 'priv', 'USAGE')).toBe(false);

    // The agent's login user may SET ROLE to each; from PostgreSQL 16 on it
    // does not inherit their privileges (before 16 a member with INHERIT does).
    const version = Number((await q('SHOW server_version_num'))[0]!.server_version_num);
    for (const r of [ro, rw, mig]) {
      expect((await q(`SELECT pg_has_role($1, $2, 'USAGE') AS usage, pg_has_role($1, $2, 'MEMBER') AS member`, [AGENT, r]))[0]).toEqual({
        usage: version < 160000,
        member: true,
      });
    }
  });

  it('makes the native role refuse what the rule does not allow', async () => {
    const agent = new pg.Client({ connectionString: db.url.replace('postgres@', `${AGENT}@`) });
    await agent.connect();
    try {
      await agent.query(`SET ROLE ${role(RO)}`);
      expect((await agent.query('SELECT current_user, count(*)::int AS n FROM public.orders')).rows).toEqual([{ current_user: role(RO), n: 2 }]);
      await expect(agent.query('SELECT * FROM public.secrets')).rejects.toMatchObject({ code: '42501' });
      await expect(agent.query('DELETE FROM public.orders')).rejects.toMatchObject({ code: '42501' });
      await agent.query(`SET ROLE ${role(RW)}`);
      expect((await agent.query('INSERT INTO public.orders (amount) VALUES (5) RETURNING id')).rowCount).toBe(1);
      await expect(agent.query('SELECT * FROM public.customers')).rejects.toMatchObject({ code: '42501' });
    } finally {
      await agent.end();
    }
  });

  it('covers tables made later by default privileges, and new schemas once run again', async () => {
    await q('CREATE TABLE public.invoices (id int); CREATE SCHEMA later; CREATE TABLE later.things (id int)');
    expect(await can(role(RO), 'public.invoices', 'SELECT')).toBe(true);
    expect(await can(role(MIG), 'public.invoices', 'DELETE')).toBe(true);
    expect(await can(role(RW), 'public.invoices', 'SELECT')).toBe(false); // its rule lists its tables
    expect(await can(role(MIG), 'later.things', 'SELECT')).toBe(false);
    await generateAndRun('v1-again', policy(['public.secrets']));
    expect(await can(role(MIG), 'later.things', 'SELECT')).toBe(true);
    expect(await can(role(RO), 'later.things', 'SELECT')).toBe(false); // only public
  });

  it('takes away what a changed policy no longer allows, and what was granted by hand', async () => {
    await q(`GRANT pg_read_all_data TO ${role(RO)}; GRANT SELECT ON priv.keys TO ${role(RO)}; GRANT USAGE ON SCHEMA sales TO ${role(RO)}`);
    await q(`GRANT SELECT (id) ON public.secrets TO ${role(RO)}`);
    expect(await can(role(RO), 'priv.keys', 'SELECT')).toBe(true);
    await generateAndRun('v2', policy(['public.secrets', 'public.customers']));
    expect(await can(role(RO), 'public.customers', 'SELECT')).toBe(false);
    expect(await can(role(RO), 'public.orders', 'SELECT')).toBe(true);
    expect(await can(role(RO), 'priv.keys', 'SELECT')).toBe(false);
    expect((await q(`SELECT has_column_privilege($1, 'public.secrets', 'id', 'SELECT') AS ok`, [role(RO)]))[0]!.ok).toBe(false);
    expect((await q(`SELECT pg_has_role($1, 'pg_read_all_data', 'MEMBER') AS ok`, [role(RO)]))[0]!.ok).toBe(false);
    expect(await canSchema(role(RO), 'sales', 'USAGE')).toBe(false);
    // Back again: the table comes back.
    await generateAndRun('v3', policy(['public.secrets']));
    expect(await can(role(RO), 'public.customers', 'SELECT')).toBe(true);
  });

  it('reads the rules from the control plane, names roles with --rule-role, and says what is wrong', async () => {
    const cpDir = tempDir('warden-roles-cp-');
    const cp: ControlPlane = await startControlPlane({ listen: '127.0.0.1:0', dataDir: cpDir.path, pollIntervalMs: 0 });
    try {
      const warden = (...args: string[]) => runWarden([...args, '--control-plane', cp.address, '--data-dir', cpDir.path]);
      const path = file('cp.yaml', policy(['public.secrets']));
      expect((await warden('policy', 'apply', '-f', path)).code).toBe(0);
      const fromCp = await warden('roles', 'sql', '--resource', 'shop', '--agent-user', AGENT);
      const fromFile = await runWarden(['roles', 'sql', '--resource', 'shop', '-f', path, '--agent-user', AGENT]);
      expect(fromCp.code).toBe(0);
      expect(fromCp.stdout.replace(/from policy version 1\./, `from ${path}.`)).toBe(fromFile.stdout);

      const named = await warden('roles', 'sql', '--resource', 'shop', '--rule-role', `${RO}=ci_reader`, '--json');
      const out = JSON.parse(named.stdout);
      expect(out.ruleRoles).toEqual({ [RO]: 'ci_reader', [RW]: role(RW), [MIG]: role(MIG) });
      expect(out.sql).toContain("role_name => 'ci_reader', access_level => 'read'");
      // Without --agent-user the role goes to whoever runs the script.
      expect(out.sql).toContain('agent_user text := current_user;');

      const errors: Array<[string[], string]> = [
        [['--resource', 'nope'], "error: resource 'nope' is not defined in policy version 1\n"],
        [[], 'error: warden roles sql needs --resource R\n'],
        [['--resource', 'shop', '--rule-role', 'nope=x'], `error: there is no rule nope on resource shop in policy version 1 (rules: ${MIG}, ${RO}, ${RW})\n`],
        [['--resource', 'shop', '--rule-role', 'oops'], "error: --rule-role takes RULE=ROLE, got 'oops'\n"],
        [['--resource', 'shop', '--rule-role', `${RO}=${'x'.repeat(64)}`], `error: the role name "${'x'.repeat(64)}" for rule ${RO} is longer than Postgres' 63 bytes; choose one with --rule-role ${RO}=NAME\n`],
        [['--resource', 'shop', '--rule-role', `${RO}=same`, '--rule-role', `${RW}=same`], `error: rules ${RO} and ${RW} would both get role same; give one another name with --rule-role ${RW}=NAME\n`],
      ];
      for (const [args, stderr] of errors) {
        expect(await warden('roles', 'sql', ...args), args.join(' ')).toEqual({ code: 1, stdout: '', stderr });
      }
    } finally {
      await cp.close();
      cpDir.remove();
    }
  }, 60_000);
});

describe('nativeRolesSql', () => {
  it('quotes names and values it puts in the script', () => {
    const { sql } = nativeRolesSql({
      resource: 'shop',
      source: 'test',
      agentUser: "o'brien",
      roleNames: { r: "it's" },
      rules: [{ name: 'r', access: 'read', allowSchemas: ["a'b"], denySchemas: [], allowTables: [], denyTables: [] }],
    });
    expect(sql).toContain("agent_user text := 'o''brien';");
    expect(sql).toContain("role_name => 'it''s'");
    expect(sql).toContain("allow_schemas => ARRAY['a''b']");
  });

  it('refuses a rule whose default role name is too long', () => {
    const name = 'r'.repeat(60);
    expect(() =>
      nativeRolesSql({ resource: 'shop', source: 'test', rules: [{ name, access: 'read', allowSchemas: [], denySchemas: [], allowTables: [], denyTables: [] }] }),
    ).toThrow(/longer than Postgres' 63 bytes; choose one with --rule-role/);
  });
});
