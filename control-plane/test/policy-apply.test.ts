// Applying policy files to the store, on both backends: dry runs, versions,
// history, what is kept, and grants with access levels and scopes.
import { PGlite } from '@electric-sql/pglite';
import { Kysely, Migrator } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDevKey, publicJwks } from '../src/local/dev-issuer.js';
import { seedLocalConfig } from '../src/local/seed-config.js';
import { PolicyInvalidError } from '../src/policy/validate.js';
import { migrate, migrations } from '../src/storage/migrations.js';
import { openStorage, type Storage } from '../src/storage/open.js';
import { PGliteDialect } from '../src/storage/pglite-dialect.js';
import { Repository } from '../src/storage/repository.js';
import { configError, createTestDatabase, tempDir } from './helpers.js';
import { POLICY_A, POLICY_B } from './policy-fixtures.js';


describe.each(['pglite', 'postgres'] as const)('policy files on %s', (kind) => {
  let storage: Storage;
  let repo: Repository;
  const cleanups: (() => Promise<void> | void)[] = [];
  let changes = 0;

  beforeAll(async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    if (kind === 'pglite') {
      storage = await openStorage({ dataDir: dir.path });
    } else {
      const db = await createTestDatabase();
      cleanups.push(() => db.drop());
      storage = await openStorage({ databaseUrl: db.url });
    }
    repo = storage.repo;
    // What local mode leaves: local-dev, demo, demo-admin, shop and their rules;
    // plus a grant made with the CLI, an enrolled agent and a gateway.
    const key = await ensureDevKey(dir.path);
    await seedLocalConfig(repo, { resource: 'shop', jwksJson: publicJwks(key), description: 'demo', demo: true });
    await repo.createGrant({
      id: '', resource: 'shop', identity: '', group: 'ops', access: 'write', rule: '',
      allowSchemas: [], denySchemas: [], allowTables: ['public.orders'], denyTables: [],
    });
    await repo.enrollAgent('local', 'a'.repeat(64));
    await repo.registerGateway('gw-1', '127.0.0.1:7443');
    repo.onChange(() => changes++);
  }, 60_000);

  afterAll(async () => {
    await storage?.close();
    for (const fn of cleanups.reverse()) await fn();
  });

  it('seeds local mode with a read-only and an admin demo identity, and a mask only the first is under', async () => {
    const snap = await repo.snapshot();
    expect(snap.policyVersion).toBe(0);
    expect(snap.identities.map((i) => [i.name, i.match])).toEqual([
      ['demo', [{ claim: 'sub', value: 'demo' }]],
      ['demo-admin', [{ claim: 'sub', value: 'demo-admin' }]],
    ]);
    expect(snap.grants.filter((g) => g.rule).map((g) => [g.identity, g.rule, g.access])).toEqual([
      ['demo', 'demo-read-only', 'read'],
      ['demo-admin', 'demo-admin', 'admin'],
    ]);
    const partial = { fn: 'partial', keep: 4, text: '', char: '' };
    const email = { fn: 'email', keep: 0, text: '', char: '' };
    expect(snap.masks).toEqual([
      {
        name: 'demo-pii', resource: 'shop', identities: ['demo'], groups: [], exemptIdentities: ['demo-admin'], exemptGroups: [],
        columns: [{ pattern: 'public.customers.card_number', mask: partial }, { pattern: 'public.customers.email', mask: email }],
        detectors: [], predicates: 'refuse', onInvalid: 'null',
      },
    ]);
  });

  it('a dry run lists the changes and stores nothing', async () => {
    const before = await repo.snapshot();
    const dry = await repo.applyPolicy({ yaml: POLICY_A, author: 'alice', dryRun: true });
    expect(dry.applied).toBe(false);
    expect(dry.version).toBe(0);
    const g = before.grants.find((x) => x.group === 'ops')!;
    expect(dry.lines).toEqual([
      '+ issuer github',
      '+ identity ci-deploy',
      '+ identity ci-reader',
      '- identity demo-admin',
      '~ resource shop: description demo -> ""',
      '+ resource shop-prod',
      '+ rule ci-read-only',
      '- rule demo-admin',
      '+ rule deploys',
      '- mask demo-pii',
      `- grant ${g.id}: group ops on shop (write, made outside a policy file)`,
    ]);
    expect(await repo.snapshot()).toEqual(before);
    expect(await repo.policyHistory()).toEqual([]);
    expect(changes).toBe(0);
  });

  it('applies a file: expanded grants, policy version, one config bump; local-dev, agents and gateways stay', async () => {
    const before = await repo.snapshot();
    const res = await repo.applyPolicy({ yaml: POLICY_A, author: 'alice', dryRun: false });
    expect(res).toMatchObject({ applied: true, version: 1 });
    expect(res.lines).toHaveLength(11);
    expect(changes).toBe(1);

    const snap = await repo.snapshot();
    expect(snap.version).toBe(before.version + 1);
    expect(snap.policyVersion).toBe(1);
    expect(snap.issuers.map((i) => i.name)).toEqual(['github', 'local-dev']);
    expect(snap.issuers[1]).toEqual(before.issuers.find((i) => i.name === 'local-dev'));
    expect(snap.identities.map((i) => i.name)).toEqual(['ci-deploy', 'ci-reader', 'demo']);
    expect(snap.resources).toEqual([
      { name: 'shop', agent: 'local', description: '' },
      { name: 'shop-prod', agent: 'dc1', description: 'shop primary' },
    ]);
    const grants = snap.grants.map(({ id, ...g }) => {
      expect(id).toMatch(/^g_[0-9a-f]{12}$/);
      return g;
    });
    const scoped = { allowSchemas: ['public'], denySchemas: [], allowTables: [], denyTables: ['public.secrets'], trust: [] };
    const none = { allowSchemas: [], denySchemas: [], allowTables: [], denyTables: [], trust: [] };
    expect(grants).toEqual(
      expect.arrayContaining([
        { resource: 'shop', identity: 'demo', group: '', access: 'read', rule: 'demo-read-only', ...none },
        { resource: 'shop-prod', identity: 'ci-reader', group: '', access: 'read', rule: 'ci-read-only', ...scoped },
        { resource: 'shop-prod', identity: '', group: 'readers', access: 'read', rule: 'ci-read-only', ...scoped },
        { resource: 'shop-prod', identity: '', group: 'deployers', access: 'ddl', rule: 'deploys', ...none },
      ]),
    );
    expect(grants).toHaveLength(4);
    expect(snap.agents).toEqual(before.agents);
    expect(snap.gateways).toEqual(before.gateways);
  });

  it('re-applying the file in force makes no new version', async () => {
    const before = await repo.snapshot();
    expect(await repo.applyPolicy({ yaml: POLICY_A, author: 'bob', dryRun: false })).toEqual({ version: 1, lines: [], applied: false });
    expect(await repo.applyPolicy({ yaml: POLICY_A, author: 'bob', dryRun: true })).toEqual({ version: 1, lines: [], applied: false });
    expect(await repo.snapshot()).toEqual(before);
    expect(changes).toBe(1);
  });

  it('applies a second version with changes, keeping the ids of unchanged grants', async () => {
    const before = await repo.snapshot();
    const dry = await repo.applyPolicy({ yaml: POLICY_B, author: 'bob', dryRun: true });
    expect(dry.lines).toEqual([
      '- identity ci-deploy',
      '+ resource reports',
      '~ rule ci-read-only: access read -> write',
    ]);
    const res = await repo.applyPolicy({ yaml: POLICY_B, author: 'bob', dryRun: false });
    expect(res).toEqual({ version: 2, lines: dry.lines, applied: true });
    const snap = await repo.snapshot();
    expect(snap.policyVersion).toBe(2);
    expect(snap.version).toBe(before.version + 1);
    expect(snap.grants.filter((g) => g.rule === 'ci-read-only').map((g) => g.access)).toEqual(['write', 'write']);
    const ids = (s: typeof snap) => s.grants.map((g) => `${g.rule}/${g.identity || g.group}=${g.id}`).sort();
    expect(ids(snap)).toEqual(ids(before));
  });

  it('keeps the history, newest first, with author, summary and the file itself', async () => {
    const history = await repo.policyHistory();
    expect(history.map((v) => [v.version, v.author, v.summary])).toEqual([
      [2, 'bob', 'added resource reports; changed rule ci-read-only; removed identity ci-deploy'],
      [1, 'alice', expect.stringMatching(/^added issuer github, identity ci-deploy, .*; changed resource shop; removed identity demo-admin, rule demo-admin, mask demo-pii, g/)],
    ]);
    expect(history[0]!.yaml).toBe(POLICY_B);
    expect(history[1]!.yaml).toBe(POLICY_A);
    expect(Date.parse(history[0]!.appliedAt)).toBeGreaterThanOrEqual(Date.parse(history[1]!.appliedAt));
    // Files that would not fit in one answer are left out, oldest first.
    const small = await repo.policyHistory(POLICY_B.length + 10);
    expect(small.map((v) => v.yaml)).toEqual([POLICY_B, '']);
  });

  it('refuses an invalid file with every problem, and changes nothing', async () => {
    const before = await repo.snapshot();
    let err: unknown;
    try {
      await repo.applyPolicy({ yaml: POLICY_B.replace('access: write', 'access: everything').replace('agent: dc2', 'agent: DC2'), author: '', dryRun: false });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolicyInvalidError);
    expect((err as PolicyInvalidError).problems.map((p) => p.message)).toEqual([
      "resources[0].agent 'DC2' is invalid: use 1-63 lowercase letters, digits, '-' or '_'",
      'rules[0].access must be one of read, write, ddl, admin',
    ]);
    expect(await repo.snapshot()).toEqual(before);
    expect((await configError(repo.applyPolicy({ yaml: `${POLICY_B}#${'x'.repeat(1024 * 1024)}`, author: '', dryRun: true }))).kind).toBe('invalid');
  });

  it('a file that declares local-dev replaces it; one that does not keeps it as it is', async () => {
    const declared = POLICY_B.replace(
      'issuers:\n',
      'issuers:\n  - name: local-dev\n    issuer_url: urn:warden:local-dev\n    audiences: [warden]\n    jwks_uri: https://keys.example.com/jwks\n',
    );
    const res = await repo.applyPolicy({ yaml: declared, author: '', dryRun: false });
    expect(res.version).toBe(3);
    expect(res.lines).toEqual([
      '~ issuer local-dev: jwks_uri "" -> https://keys.example.com/jwks',
      expect.stringMatching(/^~ issuer local-dev: jwks_json sha256:[0-9a-f]{12} -> ""$/),
      '~ issuer local-dev: algorithms [ES256] -> []',
    ]);
    const local = () => repo.snapshot().then((s) => s.issuers.find((i) => i.name === 'local-dev'));
    expect(await local()).toMatchObject({ jwksUri: 'https://keys.example.com/jwks', jwksJson: '', algorithms: [] });
    // Leaving it out again keeps it (as declared last), so nothing changes.
    expect(await repo.applyPolicy({ yaml: POLICY_B, author: '', dryRun: false })).toEqual({ version: 3, lines: [], applied: false });
    expect(await local()).toMatchObject({ jwksUri: 'https://keys.example.com/jwks' });
  });

  it('grants made by hand carry access and scopes; only the same grant twice is refused', async () => {
    const grant = {
      id: '', resource: 'reports', identity: 'ci-reader', group: '', access: 'write', rule: '',
      allowSchemas: [], denySchemas: [], allowTables: ['public.orders', 'public.orders'], denyTables: [],
    };
    const made = await repo.createGrant(grant);
    expect(made).toMatchObject({ access: 'write', allowTables: ['public.orders'], rule: '' });
    const dup = await configError(repo.createGrant(grant));
    expect(dup.kind).toBe('already_exists');
    expect(dup.message).toBe(`identity 'ci-reader' already has grant ${made.id} on resource 'reports'`);
    await repo.createGrant({ ...grant, access: 'read', allowTables: [] });
    const bad = [
      [{ ...grant, access: 'root' }, "access 'root' is invalid: use one of read, write, ddl, admin"],
      [{ ...grant, allowTables: ['a.b.c'] }, "table 'a.b.c' is invalid: give schema.table, or table for that name in any schema"],
      [{ ...grant, denySchemas: ['x.y'] }, "schema 'x.y' is invalid: give a schema name without dots or spaces"],
    ] as const;
    for (const [g, message] of bad) expect(await configError(repo.createGrant(g))).toMatchObject({ kind: 'invalid', message });
    // The next apply removes them and says so.
    const dry = await repo.applyPolicy({ yaml: POLICY_B, author: '', dryRun: true });
    expect(dry.version).toBe(3);
    expect(dry.lines).toEqual([
      expect.stringMatching(/^- grant g_[0-9a-f]{12}: identity ci-reader on reports \(write, made outside a policy file\)$/),
      expect.stringMatching(/^- grant g_[0-9a-f]{12}: identity ci-reader on reports \(read, made outside a policy file\)$/),
    ]);
  });

  it('puts a rule\'s trust list on each of its grants, and a change to it is a new version', async () => {
    const tables = '    tables: { deny: [public.secrets] }\n';
    const trusting = POLICY_B.replace(tables, `${tables}    trust: [public.open_orders, billing.charge_card]\n`);
    const res = await repo.applyPolicy({ yaml: trusting, author: 'carol', dryRun: false });
    expect(res.version).toBe(4);
    expect(res.lines.filter((l) => l.startsWith('~'))).toEqual(['~ rule ci-read-only: trust [] -> [billing.charge_card, public.open_orders]']);
    const snap = await repo.snapshot();
    expect(snap.grants.map((g) => [g.rule, g.identity || g.group, g.trust]).sort()).toEqual([
      ['ci-read-only', 'ci-reader', ['public.open_orders', 'billing.charge_card']],
      ['ci-read-only', 'readers', ['public.open_orders', 'billing.charge_card']],
      ['demo-read-only', 'demo', []],
      ['deploys', 'deployers', []],
    ]);
    // Read back from the store, the rule is the file's again: nothing to change.
    expect(await repo.applyPolicy({ yaml: trusting, author: '', dryRun: true })).toEqual({ version: 4, lines: [], applied: false });
    const back = await repo.applyPolicy({ yaml: POLICY_B, author: '', dryRun: false });
    expect(back).toEqual({ version: 5, lines: ['~ rule ci-read-only: trust [billing.charge_card, public.open_orders] -> []'], applied: true });
    expect((await repo.snapshot()).grants.every((g) => g.trust.length === 0)).toBe(true);
    // A bad entry is the file's mistake, with its place.
    let err: unknown;
    try {
      await repo.applyPolicy({ yaml: POLICY_B.replace(tables, `${tables}    trust: [open_orders]\n`), author: '', dryRun: true });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolicyInvalidError);
    expect((err as PolicyInvalidError).problems.map((p) => p.message)).toEqual([
      "rules[0].trust[0] 'open_orders' is invalid: give schema.name with the schema (a view or function is always named with its schema)",
    ]);
  });
});

describe('the 0002 migration', () => {
  it('gives existing grants read access and no scopes, and allows several grants per subject', async () => {
    const dir = tempDir();
    const pglite = await PGlite.create(`${dir.path}/db`);
    const db = new Kysely<any>({ dialect: new PGliteDialect(pglite) });
    try {
      const provider = { getMigrations: async () => ({ '0001_initial': migrations['0001_initial']! }) };
      expect((await new Migrator({ db, provider }).migrateToLatest()).error).toBeUndefined();
      await db.insertInto('issuers').values({ name: 'gh', issuer_url: 'https://gh', audiences: '["warden"]', algorithms: '[]' }).execute();
      await db.insertInto('identities').values({ name: 'ci', issuer: 'gh', match: '[{"claim":"sub","value":"x"}]', groups: '[]' }).execute();
      await db.insertInto('resources').values({ name: 'shop', agent: 'a' }).execute();
      await db.insertInto('grants').values({ id: 'g_old', resource: 'shop', identity: 'ci' }).execute();

      await migrate(db);
      const repo = new Repository(db);
      const snap = await repo.snapshot();
      expect(snap.policyVersion).toBe(0);
      expect(snap.grants).toEqual([
        { id: 'g_old', resource: 'shop', identity: 'ci', group: '', access: 'read', rule: '', allowSchemas: [], denySchemas: [], allowTables: [], denyTables: [], trust: [] },
      ]);
      await repo.createGrant({ ...snap.grants[0]!, access: 'write' });
      expect((await repo.snapshot()).grants.map((g) => g.access)).toEqual(['read', 'write']);
    } finally {
      await db.destroy();
      dir.remove();
    }
  });
});

describe('the 0004 migration', () => {
  it('gives existing grants an empty trust list, which rules can then fill', async () => {
    const dir = tempDir();
    const pglite = await PGlite.create(`${dir.path}/db`);
    const db = new Kysely<any>({ dialect: new PGliteDialect(pglite) });
    try {
      const before = Object.fromEntries(Object.entries(migrations).filter(([name]) => name < '0004'));
      expect(Object.keys(before)).toEqual(['0001_initial', '0002_policy', '0003_audit']);
      expect((await new Migrator({ db, provider: { getMigrations: async () => before } }).migrateToLatest()).error).toBeUndefined();
      await db.insertInto('issuers').values({ name: 'gh', issuer_url: 'https://gh', audiences: '["warden"]', algorithms: '[]' }).execute();
      await db.insertInto('identities').values({ name: 'ci', issuer: 'gh', match: '[{"claim":"sub","value":"x"}]', groups: '[]' }).execute();
      await db.insertInto('resources').values({ name: 'shop', agent: 'a' }).execute();
      await db.insertInto('grants').values({ id: 'g_old', resource: 'shop', identity: 'ci', access: 'write', rule: 'r', allow_schemas: '["public"]' }).execute();

      await migrate(db);
      const repo = new Repository(db);
      expect((await repo.snapshot()).grants).toEqual([
        { id: 'g_old', resource: 'shop', identity: 'ci', group: '', access: 'write', rule: 'r', allowSchemas: ['public'], denySchemas: [], allowTables: [], denyTables: [], trust: [] },
      ]);
      const policy = `version: 1
issuers:
  - name: gh
    issuer_url: https://gh
    audiences: [warden]
identities:
  - name: ci
    issuer: gh
    match: { sub: x }
resources:
  - name: shop
    agent: a
rules:
  - name: r
    resource: shop
    identities: [ci]
    access: write
    schemas: { allow: [public] }
    trust: [public.v]
`;
      const res = await repo.applyPolicy({ yaml: policy, author: '', dryRun: false });
      expect(res.lines).toEqual(['~ rule r: trust [] -> [public.v]']);
      expect((await repo.snapshot()).grants.map((g) => g.trust)).toEqual([['public.v']]);
    } finally {
      await db.destroy();
      dir.remove();
    }
  });
});

describe('local mode seeding and policy files', () => {
  it('replaces the unnamed demo grant of older data directories; once a policy is in force, seeds nothing back', async () => {
    const dir = tempDir();
    const storage = await openStorage({ dataDir: dir.path });
    try {
      const repo = storage.repo;
      const key = await ensureDevKey(dir.path);
      const cfg = { resource: 'shop', jwksJson: publicJwks(key), description: 'demo', demo: true };
      // What `warden start` created before rules existed.
      await repo.putIssuer({ name: 'local-dev', issuerUrl: 'urn:warden:local-dev', audiences: ['warden'], jwksUri: '', jwksJson: cfg.jwksJson, algorithms: ['ES256'] });
      await repo.putIdentity({ name: 'demo', issuer: 'local-dev', match: [{ claim: 'sub', value: 'demo' }], groups: [] });
      await repo.putResource({ name: 'shop', agent: 'local', description: 'demo' });
      const legacy = await repo.createGrant({ id: '', resource: 'shop', identity: 'demo', group: '' } as never);

      expect(await seedLocalConfig(repo, cfg)).toEqual({ policyVersion: 0 });
      const seeded = await repo.snapshot();
      expect(seeded.grants.map((g) => [g.identity, g.rule, g.access])).toEqual([
        ['demo', 'demo-read-only', 'read'],
        ['demo-admin', 'demo-admin', 'admin'],
      ]);
      expect(seeded.grants.some((g) => g.id === legacy.id)).toBe(false);
      await seedLocalConfig(repo, cfg);
      expect(await repo.snapshot()).toEqual(seeded);

      // A policy without demo-admin: local mode does not bring it back.
      const policy = `version: 1
identities:
  - name: demo
    issuer: local-dev
    match: { sub: demo }
resources:
  - name: shop
    agent: local
rules:
  - name: demo-read-only
    resource: shop
    identities: [demo]
`;
      expect((await repo.applyPolicy({ yaml: policy, author: '', dryRun: false })).lines).toEqual([
        '- identity demo-admin',
        '~ resource shop: description demo -> ""',
        '- rule demo-admin',
        '- mask demo-pii',
      ]);
      const applied = await repo.snapshot();
      expect(await seedLocalConfig(repo, cfg)).toEqual({ policyVersion: 1 });
      expect(await repo.snapshot()).toEqual(applied);
      // Without demo, local mode says why its readiness check will fail.
      await repo.applyPolicy({ yaml: 'version: 1\n', author: '', dryRun: false });
      const outcome = await seedLocalConfig(repo, cfg);
      expect(outcome.warning).toMatch(/^policy version 2 is in force and gives identity 'demo' no rule on resource 'shop'/);
      expect((await repo.snapshot()).issuers.map((i) => i.name)).toEqual(['local-dev']);
    } finally {
      await storage.close();
      dir.remove();
    }
  });
});
