// `warden policy …` and `warden grants …` as real processes against a control
// plane on an ephemeral port, on both storage backends; plus the two policy
// RPCs' credentials and error codes.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { ControlPlaneServiceClient, bearer, channelCredentials, type PolicyApplyResult, type PolicyHistory, type Snapshot } from '@warden/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlane } from '../src/server/start.js';
import { createTestDatabase, grpcError, reader, runWarden, tempDir, unary } from './helpers.js';
import { POLICY_A, POLICY_B } from './policy-fixtures.js';

describe.each(['pglite', 'postgres'] as const)('warden policy on %s', (kind) => {
  let dir: ReturnType<typeof tempDir>;
  let cp: ControlPlane;
  const cleanups: (() => Promise<void> | void)[] = [];
  const warden = (...args: string[]) => runWarden([...args, '--control-plane', cp.address, '--data-dir', dir.path]);
  const file = (name: string, text: string) => {
    const path = join(dir.path, name);
    writeFileSync(path, text);
    return path;
  };

  beforeAll(async () => {
    dir = tempDir();
    let databaseUrl: string | undefined;
    if (kind === 'postgres') {
      const db = await createTestDatabase();
      cleanups.push(() => db.drop());
      databaseUrl = db.url;
    }
    cp = await startControlPlane({ listen: '127.0.0.1:0', dataDir: dir.path, databaseUrl, pollIntervalMs: 0 });
  }, 60_000);

  afterAll(async () => {
    await cp?.close();
    for (const fn of cleanups.reverse()) await fn();
    dir?.remove();
  });

  it('prints validation errors as FILE:line:col and exits 1, applying nothing', async () => {
    const bad = file('bad.yaml', POLICY_A.replace('    access: ddl\n', '    access: drop\n').replace('identities: [ci-reader]', 'identities: [ci-raeder]'));
    const res = await warden('policy', 'apply', '-f', bad);
    expect(res).toEqual({
      code: 1,
      stdout: '',
      stderr:
        // No local mode here, so the local-dev issuer does not exist and naming it is a mistake too.
        `${bad}:15:5: identities[2].issuer 'local-dev' is not an issuer in this file; issuers here: github\n` +
        `${bad}:26:18: rules[0].identities: 'ci-raeder' is not an identity in this file\n` +
        `${bad}:34:5: rules[1].access must be one of read, write, ddl, admin\n`,
    });
    const diff = await warden('policy', 'diff', '-f', file('a.yaml', POLICY_A), '--json');
    expect(diff.code).toBe(1);
    expect(JSON.parse(diff.stdout)).toEqual({
      file: join(dir.path, 'a.yaml'),
      errors: [{ line: 15, col: 5, message: "identities[2].issuer 'local-dev' is not an issuer in this file; issuers here: github" }],
    });
    expect((await warden('policy', 'history')).stdout).toBe('No policy versions: no policy file has been applied yet.\n');
    const missing = await warden('policy', 'apply', '-f', join(dir.path, 'nope.yaml'));
    expect(missing).toEqual({ code: 1, stdout: '', stderr: `error: policy file ${join(dir.path, 'nope.yaml')} does not exist\n` });
    expect((await warden('policy', 'apply')).stderr).toBe('error: warden policy apply needs -f FILE (the policy file)\n');
  });

  // The same files, with the local-dev identity swapped for one of github's.
  const A = POLICY_A.replace('issuer: local-dev', 'issuer: github');
  const B = POLICY_B.replace('issuer: local-dev', 'issuer: github');

  it('diffs, applies, re-applies and applies a second version', async () => {
    const a = file('policy.yaml', A);
    const diff = await warden('policy', 'diff', '-f', a);
    const added = [
      '+ issuer github',
      '+ identity ci-deploy',
      '+ identity ci-reader',
      '+ identity demo',
      '+ resource shop',
      '+ resource shop-prod',
      '+ rule ci-read-only',
      '+ rule demo-read-only',
      '+ rule deploys',
    ];
    expect(diff).toEqual({ code: 0, stdout: `${added.join('\n')}\n`, stderr: '' });
    expect((await warden('policy', 'history')).stdout).toMatch(/^No policy versions/);

    const apply = await warden('policy', 'apply', '-f', a, '--author', 'alice');
    expect(apply).toEqual({ code: 0, stdout: `${added.join('\n')}\nApplied policy version 1.\n`, stderr: '' });
    expect(await warden('policy', 'diff', '-f', a)).toEqual({ code: 0, stdout: 'no changes\n', stderr: '' });
    expect((await warden('policy', 'apply', '-f', a)).stdout).toBe('No changes; policy version 1 stays in force.\n');

    const b = file('policy-b.yaml', B);
    const second = await warden('policy', 'apply', '-f', b, '--json');
    expect(JSON.parse(second.stdout)).toEqual({
      version: 2,
      changes: ['- identity ci-deploy', '+ resource reports', '~ rule ci-read-only: access read -> write'],
    });
    const snap = JSON.parse((await warden('grants', 'list', '--json')).stdout);
    expect(snap).toHaveLength(4);
  });

  it('shows the history and any version\'s file', async () => {
    const history = await runWarden(['policy', 'history', '--control-plane', cp.address, '--data-dir', dir.path], {
      ...process.env,
      USER: 'ignored',
    });
    const lines = history.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^VERSION\s+APPLIED\s+AUTHOR\s+SUMMARY$/);
    expect(lines[1]).toMatch(/^2\s+\d{4}-\d\d-\d\dT[\d:.]+Z\s+\S+\s+added resource reports; changed rule ci-read-only; removed identity ci-deploy$/);
    expect(lines[2]).toMatch(/^1\s+\S+\s+alice\s+added issuer github, /);
    expect(lines).toHaveLength(3);
    expect(await warden('policy', 'history', '--show', '1')).toEqual({ code: 0, stdout: A, stderr: '' });
    const json = JSON.parse((await warden('policy', 'history', '--json')).stdout);
    expect(json.map((v: { version: number }) => v.version)).toEqual([2, 1]);
    expect(json[0]).not.toHaveProperty('yaml');
    expect(await warden('policy', 'history', '--show', '7')).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: there is no policy version 7; versions 1-2 exist\n',
    });
    expect((await warden('policy', 'history', '--show', 'x')).stderr).toBe("error: --show takes a version number, e.g. --show 3 (got 'x')\n");
  });

  it('lists grants with access, rule and scopes', async () => {
    const list = (await warden('grants', 'list')).stdout.split('\n');
    expect(list[0]).toMatch(/^ID\s+RESOURCE\s+IDENTITY\s+GROUP\s+ACCESS\s+RULE\s+SCOPES\s+TRUST$/);
    expect(list.find((l) => l.includes('readers'))).toMatch(
      /^g_[0-9a-f]{12}\s+shop-prod\s+-\s+readers\s+write\s+ci-read-only\s+allow-schema=public deny-table=public\.secrets\s+-$/,
    );
    const add = await warden('grants', 'add', '--resource', 'reports', '--group', 'analysts', '--access', 'write', '--allow-table', 'public.daily', '--deny-schema', 'audit');
    expect(add.code).toBe(0);
    expect(add.stdout).toMatch(
      /^Grant g_[0-9a-f]{12} created: group 'analysts' may use resource 'reports' with write access \(deny-schema=audit allow-table=public\.daily\)\.\n$/,
    );
    const bad = await warden('grants', 'add', '--resource', 'reports', '--group', 'analysts', '--access', 'root');
    expect(bad).toEqual({ code: 1, stdout: '', stderr: "error: access 'root' is invalid: use one of read, write, ddl, admin\n" });
    // The next apply removes the hand-made grant, and the diff says so first.
    const diff = await warden('policy', 'diff', '-f', join(dir.path, 'policy-b.yaml'));
    expect(diff.stdout).toMatch(/^- grant g_[0-9a-f]{12}: group analysts on reports \(write, made outside a policy file\)\n$/);
  });

  it('checks statements against the configuration in force, naming the rule', async () => {
    const allowed = await warden('policy', 'check', '--as', 'ci-reader', '--resource', 'shop-prod', 'SELECT * FROM public.orders');
    expect(allowed).toEqual({ code: 0, stdout: 'allowed: SELECT (read) on public.orders — rule ci-read-only (write)\n', stderr: '' });

    const multi = await warden(
      'policy', 'check', '--as', 'ci-reader', '--resource', 'shop-prod',
      'DELETE FROM orders WHERE id = 1; DROP TABLE public.orders; SELECT * FROM public.secrets; SET ROLE postgres',
    );
    expect(multi.code).toBe(0);
    expect(multi.stdout.split('\n')).toEqual([
      'allowed: DELETE (write) on orders — rule ci-read-only (write)',
      'refused: warden: ci-reader (write) may not DROP TABLE public.orders on shop-prod (rule: ci-read-only)',
      'refused: warden: ci-reader (write) may not SELECT public.secrets on shop-prod (rule: ci-read-only)',
      expect.stringMatching(/^refused: warden: ci-reader \(write\) may not SET ROLE on shop-prod .*changing the session's role is never allowed through Warden$/),
      '',
    ]);
    expect(multi.stderr).toBe(
      'note: sent as one query string, statements after statement 2 would not run: the gateway stops at the first refused statement\n',
    );

    // Groups: the identity's own plus --group.
    const viaGroup = await warden('policy', 'check', '--as', 'demo', '--resource', 'shop-prod', '--group', 'deployers', 'CREATE TABLE t (id int)');
    expect(viaGroup.stdout).toBe('allowed: CREATE TABLE (ddl) on t — rule deploys (ddl)\n');
    const noRule = await warden('policy', 'check', '--as', 'demo', '--resource', 'shop-prod', 'SELECT 1');
    expect(noRule.stdout).toBe('refused: warden: demo (no access) may not SELECT on shop-prod\n');

    const json = JSON.parse((await warden('policy', 'check', '--as', 'ci-reader', '--resource', 'shop-prod', '--json', 'DROP TABLE orders')).stdout);
    expect(json).toEqual({
      identity: 'ci-reader',
      resource: 'shop-prod',
      groups: [],
      source: 'policy version 2',
      statements: [
        {
          statement: 'DROP TABLE orders',
          kind: 'DROP TABLE',
          access: 'ddl',
          objects: ['orders'],
          decision: 'refused',
          rule: 'ci-read-only',
          sqlstate: '42501',
          message: 'warden: ci-reader (write) may not DROP TABLE orders on shop-prod (rule: ci-read-only)',
        },
      ],
    });
  });

  it('checks against a file without applying it, and fails only on errors', async () => {
    const a = join(dir.path, 'policy.yaml');
    const fromFile = await warden('policy', 'check', '--as', 'ci-reader', '--resource', 'shop-prod', '-f', a, 'DELETE FROM orders');
    expect(fromFile).toEqual({
      code: 0,
      stdout: 'refused: warden: ci-reader (read) may not DELETE orders on shop-prod (rule: ci-read-only)\n',
      stderr: '',
    });
    expect((await warden('policy', 'history', '--json')).stdout).toContain('"version": 2');

    const unknown = await warden('policy', 'check', '--as', 'ghost', '--resource', 'shop-prod', 'SELECT 1');
    expect(unknown).toEqual({
      code: 1,
      stdout: '',
      stderr: "error: identity 'ghost' is not defined in policy version 2 (identities: ci-reader, demo)\n",
    });
    const noResource = await warden('policy', 'check', '--as', 'demo', '--resource', 'nope', '-f', a, 'SELECT 1');
    expect(noResource.stderr).toBe(`error: resource 'nope' is not defined in ${a} (resources: shop, shop-prod)\n`);
    expect((await warden('policy', 'check', '--as', 'demo', '--resource', 'shop', 'SELECT 1', 'SELECT 2')).stderr).toBe(
      'error: warden policy check takes the SQL as one argument: quote it\n',
    );
    const badFile = file('bad-check.yaml', 'version: 1\nrules: 3\n');
    expect(await warden('policy', 'check', '--as', 'demo', '--resource', 'shop', '-f', badFile, 'SELECT 1')).toEqual({
      code: 1,
      stdout: '',
      stderr: `${badFile}:2:1: rules must be a list\n`,
    });
  });

  it('carries a rule\'s trust list from the file to its grants, and diffs it', async () => {
    const tables = '    tables: { deny: [public.secrets] }\n';
    const withTrust = (list: string) => B.replace(tables, `${tables}    trust: ${list}\n`);
    const bad = file('bad-trust.yaml', withTrust('[public.open_orders, Billing.Charge]'));
    const line = withTrust('[]').split('\n').findIndex((l) => l.startsWith('    trust:')) + 1;
    expect(await warden('policy', 'diff', '-f', bad)).toEqual({
      code: 1,
      stdout: '',
      stderr: `${bad}:${line}:33: rules[0].trust[1] 'Billing.Charge' is invalid: give schema.name in lower case, as Postgres stores unquoted names\n`,
    });

    const t = file('policy-trust.yaml', withTrust('[public.open_orders, billing.charge_card]'));
    const diff = (await warden('policy', 'diff', '-f', t)).stdout.trimEnd().split('\n');
    expect(diff).toContain('~ rule ci-read-only: trust [] -> [billing.charge_card, public.open_orders]');
    expect(diff.filter((l) => l.startsWith('~'))).toHaveLength(1);
    expect((await warden('policy', 'apply', '-f', t)).stdout).toMatch(/Applied policy version 3\.\n$/);
    const grants: { rule: string; trust: string[] }[] = JSON.parse((await warden('grants', 'list', '--json')).stdout);
    expect(grants.map((g) => [g.rule, g.trust]).sort()).toEqual([
      ['ci-read-only', ['public.open_orders', 'billing.charge_card']],
      ['ci-read-only', ['public.open_orders', 'billing.charge_card']],
      ['demo-read-only', []],
      ['deploys', []],
    ]);
    const list = (await warden('grants', 'list')).stdout.split('\n');
    expect(list.find((l) => l.includes('readers'))).toMatch(/\s+ci-read-only\s+allow-schema=public deny-table=public\.secrets\s+public\.open_orders,billing\.charge_card$/);
    expect(await warden('policy', 'diff', '-f', t)).toEqual({ code: 0, stdout: 'no changes\n', stderr: '' });
    // Taking it out again is a change too.
    expect((await warden('policy', 'diff', '-f', join(dir.path, 'policy-b.yaml'))).stdout).toBe(
      '~ rule ci-read-only: trust [billing.charge_card, public.open_orders] -> []\n',
    );
  });
});

describe('policy RPCs', () => {
  let dir: ReturnType<typeof tempDir>;
  let cp: ControlPlane;
  let client: ControlPlaneServiceClient;

  beforeAll(async () => {
    dir = tempDir();
    cp = await startControlPlane({ listen: '127.0.0.1:0', dataDir: dir.path, pollIntervalMs: 0 });
    client = new ControlPlaneServiceClient(cp.address, channelCredentials());
  }, 60_000);

  afterAll(async () => {
    client?.close();
    await cp?.close();
    dir?.remove();
  });

  it('need the admin token', async () => {
    const doc = { yaml: 'version: 1\n', author: 'x', dryRun: true };
    const err = await grpcError(unary<PolicyApplyResult>((cb) => client.applyPolicy(doc, bearer(cp.gatewayToken), cb)));
    expect(err.code).toBe(status.PERMISSION_DENIED);
    const err2 = await grpcError(unary<PolicyHistory>((cb) => client.getPolicyHistory({}, bearer('nope-nope-nope-nope'), cb)));
    expect(err2.code).toBe(status.UNAUTHENTICATED);
  });

  it('answer INVALID_ARGUMENT with one line:col line per problem, and a version for a good file', async () => {
    const admin = bearer(cp.adminToken);
    const err = await grpcError(
      unary<PolicyApplyResult>((cb) => client.applyPolicy({ yaml: 'version: 1\nrules:\n  - name: r\n', author: '', dryRun: false }, admin, cb)),
    );
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.details).toBe('3:5: rules[0].resource is required\n3:5: rules[0] needs at least one of identities or groups');
    const ok = await unary<PolicyApplyResult>((cb) => client.applyPolicy({ yaml: 'version: 1\n', author: 'ci', dryRun: false }, admin, cb));
    // An empty file over an empty store changes nothing, but the first apply is always a version.
    expect(ok).toEqual({ version: 1, change: { lines: [] } });
    const history = await unary<PolicyHistory>((cb) => client.getPolicyHistory({}, admin, cb));
    expect(history.versions).toEqual([{ version: 1, appliedAt: expect.any(String), author: 'ci', summary: 'no changes', yaml: 'version: 1\n' }]);
  });

  it('pushes the new snapshot to watching gateways at once', async () => {
    const admin = bearer(cp.adminToken);
    const watch = reader<Snapshot>(client.watchConfig({ gatewayId: 'gw-1', tunnelAddress: '127.0.0.1:7443' }, bearer(cp.gatewayToken)));
    const first = await watch.next();
    expect(first.policyVersion).toBe(1);
    const yaml = 'version: 1\nissuers:\n  - name: gh\n    issuer_url: https://gh.example.com\n    audiences: [warden]\n';
    const res = await unary<PolicyApplyResult>((cb) => client.applyPolicy({ yaml, author: 'ci', dryRun: false }, admin, cb));
    expect(res).toEqual({ version: 2, change: { lines: ['+ issuer gh'] } });
    const next = await watch.until((s) => s.version > first.version);
    expect(next).toMatchObject({ version: first.version + 1, policyVersion: 2, issuers: [{ name: 'gh' }] });
    // A dry run pushes nothing.
    await unary<PolicyApplyResult>((cb) => client.applyPolicy({ yaml: 'version: 1\n', author: '', dryRun: true }, admin, cb));
    expect((await unary<Snapshot>((cb) => client.getSnapshot({}, admin, cb))).version).toBe(next.version);
    watch.cancel();
  });
});
