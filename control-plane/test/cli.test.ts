// The `warden` command as a real process against a control plane started on
// an ephemeral port, plus `warden token` checked against the stored JWKS.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDevKey, publicJwks } from '../src/local/dev-issuer.js';
import { seedLocalConfig } from '../src/local/seed-config.js';
import { sha256Hex } from '../src/server/secrets.js';
import { startControlPlane, type ControlPlane } from '../src/server/start.js';
import pg from 'pg';
import { WARDEN_BIN, cleanEnv, createTestDatabase, runWarden, tempDir } from './helpers.js';

let dir: ReturnType<typeof tempDir>;
let cp: ControlPlane;
/** Runs `warden` against the test control plane; the admin token comes from <data-dir>/admin-token. */
const warden = (...args: string[]) => runWarden([...args, '--control-plane', cp.address, '--data-dir', dir.path]);

beforeAll(async () => {
  dir = tempDir();
  cp = await startControlPlane({ listen: '127.0.0.1:0', dataDir: dir.path, pollIntervalMs: 0 });
}, 60_000);

afterAll(async () => {
  await cp?.close();
  dir?.remove();
});

describe('warden admin commands', () => {
  it('adds and lists issuers, identities, resources and grants', async () => {
    const add = await warden('issuers', 'add', 'github', '--issuer-url', 'https://token.actions.githubusercontent.com', '--audience', 'warden', '--alg', 'RS256');
    expect(add).toEqual({ code: 0, stdout: "Issuer 'github' saved.\n", stderr: '' });

    const list = await warden('issuers', 'list');
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n')[0]).toMatch(/^NAME\s+ISSUER URL\s+AUDIENCES\s+KEYS\s+ALGORITHMS$/);
    expect(list.stdout).toMatch(/github\s+https:\/\/token\.actions\.githubusercontent\.com\s+warden\s+OIDC discovery\s+RS256/);

    const identity = await warden('identities', 'add', 'deployer', '--issuer', 'github', '--match', 'sub=repo:acme/app:*', '--match', 'repository_owner=acme', '--group', 'ci');
    expect(identity.stdout).toBe("Identity 'deployer' saved.\n");
    const identities = JSON.parse((await warden('identities', 'list', '--json')).stdout);
    expect(identities).toEqual([
      {
        name: 'deployer',
        issuer: 'github',
        match: [
          { claim: 'sub', value: 'repo:acme/app:*' },
          { claim: 'repository_owner', value: 'acme' },
        ],
        groups: ['ci'],
      },
    ]);

    expect((await warden('resources', 'add', 'orders', '--agent', 'eu-1', '--description', 'Orders DB')).stdout).toBe(
      "Resource 'orders' saved (served by agent 'eu-1').\n",
    );
    expect((await warden('resources', 'list')).stdout).toMatch(/orders\s+eu-1\s+Orders DB/);

    const grant = JSON.parse((await warden('grants', 'add', '--resource', 'orders', '--identity', 'deployer', '--json')).stdout);
    expect(grant).toEqual({
      id: expect.stringMatching(/^g_[0-9a-f]{12}$/),
      resource: 'orders',
      identity: 'deployer',
      group: '',
      access: 'read',
      rule: '',
      allowSchemas: [],
      denySchemas: [],
      allowTables: [],
      denyTables: [],
      trust: [],
    });
    const byGroup = await warden('grants', 'add', '--resource', 'orders', '--group', 'ci');
    expect(byGroup.stdout).toMatch(/^Grant g_[0-9a-f]{12} created: group 'ci' may use resource 'orders'\.\n$/);
    const grants = await warden('grants', 'list');
    expect(grants.stdout).toContain(`${grant.id}  orders    deployer  -`);

    // --trust: schema-qualified views and functions, listed in their own column.
    const trusting = await warden('grants', 'add', '--resource', 'orders', '--identity', 'deployer', '--trust', 'public.open_orders', '--trust', 'billing.charge_card');
    expect(trusting.stdout).toMatch(
      /^Grant g_[0-9a-f]{12} created: identity 'deployer' may use resource 'orders' trusting public\.open_orders, billing\.charge_card\.\n$/,
    );
    const trustId = /^Grant (g_[0-9a-f]{12})/.exec(trusting.stdout)![1]!;
    const listed = (await warden('grants', 'list')).stdout.split('\n');
    expect(listed[0]).toMatch(/^ID\s+RESOURCE\s+IDENTITY\s+GROUP\s+ACCESS\s+RULE\s+SCOPES\s+TRUST$/);
    expect(listed.find((l) => l.startsWith(trustId))).toMatch(/\s+read\s+-\s+-\s+public\.open_orders,billing\.charge_card$/);
    expect(listed.find((l) => l.startsWith(grant.id))).toMatch(/\s+read\s+-\s+-\s+-$/);
    const asJson = JSON.parse((await warden('grants', 'list', '--json')).stdout);
    expect(asJson.find((g: { id: string }) => g.id === trustId).trust).toEqual(['public.open_orders', 'billing.charge_card']);
    expect(await warden('grants', 'add', '--resource', 'orders', '--identity', 'deployer', '--trust', 'open_orders')).toEqual({
      code: 1,
      stdout: '',
      stderr: "error: trust 'open_orders' is invalid: give schema.name with the schema (a view or function is always named with its schema)\n",
    });
    expect((await warden('grants', 'remove', trustId)).code).toBe(0);

    expect((await warden('grants', 'remove', grant.id)).stdout).toBe(`Grant ${grant.id} removed.\n`);
    expect((await warden('grants', 'list')).stdout).not.toContain(grant.id);
  });

  it('enrolls an agent: only the token on stdout, the advice on stderr, the hash in the store', async () => {
    const res = await warden('agents', 'enroll', 'eu-1');
    expect(res.code).toBe(0);
    const token = res.stdout.trim();
    expect(token).toMatch(/^wdn_agent_[\w-]{43}$/);
    expect(res.stderr).toContain('shown only once');

    const agents = JSON.parse((await warden('agents', 'list', '--json')).stdout);
    expect(agents).toEqual([{ name: 'eu-1', tokenHash: sha256Hex(token), revoked: false, createdAt: expect.any(String) }]);
    expect((await warden('agents', 'revoke', 'eu-1')).code).toBe(0);
    expect((await warden('agents', 'list')).stdout).toMatch(/eu-1\s+revoked\s+\d{4}-/);
    expect((await warden('gateways', 'list')).stdout).toBe('No gateways.\n');
  });

  it('prints one error line on stderr and exits 1', async () => {
    const cases: [string[], string][] = [
      [['issuers', 'add', 'Bad', '--issuer-url', 'https://x', '--audience', 'a'], "error: issuer name 'Bad' is invalid: use 1-63 lowercase letters, digits, '-' or '_'\n"],
      [['identities', 'add', 'x', '--issuer', 'nope', '--match', 'sub=x'], "error: issuer 'nope' does not exist; add it first\n"],
      [['identities', 'add', 'x', '--issuer', 'github', '--match', 'sub'], "error: --match 'sub' must be claim=value, e.g. --match sub=repo:acme/app:ref:refs/heads/main\n"],
      [['issuers', 'remove', 'github'], "error: issuer 'github' is used by identities 'deployer'; remove them first\n"],
      [['grants', 'add', '--resource', 'orders'], 'error: a grant names exactly one of identity or group\n'],
      [['agents', 'revoke', 'ghost'], "error: agent 'ghost' is not enrolled\n"],
      [['issuers', 'remove'], 'error: warden issuers remove needs NAME\n'],
      [['issuers', 'frob'], 'error: unknown subcommand \'frob\' for warden issuers: use one of list, add, remove\n'],
      [['frob'], "error: unknown command 'frob' (see warden --help)\n"],
      [['issuers', 'list', '--sub', 'x'], 'error: warden issuers list does not take --sub (see warden issuers list --help)\n'],
    ];
    for (const [args, stderr] of cases) {
      expect(await warden(...args)).toEqual({ code: 1, stdout: '', stderr });
    }
  });

  it('explains missing or wrong credentials and an unreachable control plane', async () => {
    const empty = tempDir();
    try {
      const noToken = await runWarden(['issuers', 'list', '--control-plane', cp.address, '--data-dir', empty.path]);
      expect(noToken.code).toBe(1);
      expect(noToken.stderr).toMatch(/^error: no admin token: set WARDEN_ADMIN_TOKEN/);

      const wrong = await runWarden(['issuers', 'list', '--control-plane', cp.address], cleanEnv({ WARDEN_ADMIN_TOKEN: 'wdn_admin_wrong-wrong-wrong' }));
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toMatch(/^error: invalid admin token/);

      // Address and token from the environment instead of flags.
      const viaEnv = await runWarden(['resources', 'list'], cleanEnv({ WARDEN_ADMIN_TOKEN: cp.adminToken, WARDEN_CONTROL_PLANE: cp.address }));
      expect(viaEnv.code).toBe(0);
      expect(viaEnv.stdout).toContain('orders');

      const down = await runWarden(['issuers', 'list', '--control-plane', '127.0.0.1:1', '--data-dir', dir.path]);
      expect(down).toEqual({
        code: 1,
        stdout: '',
        stderr: 'error: cannot reach the control plane at 127.0.0.1:1 (connection refused); is it running? Set --control-plane or WARDEN_CONTROL_PLANE\n',
      });
    } finally {
      empty.remove();
    }
  });

  it('prints usage on --help', async () => {
    const help = await runWarden(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('agents enroll <NAME>');
    const sub = await runWarden(['grants', 'add', '--help']);
    expect(sub.stdout).toMatch(/^Usage: warden grants add --resource R \(--identity I \| --group G\) \[--access read\|write\|ddl\|admin\]\n/);
  });
});

describe('warden token', () => {
  it('signs an ES256 JWT that verifies with the JWKS stored for issuer local-dev', async () => {
    const key = await ensureDevKey(dir.path);
    await seedLocalConfig(cp.repo, { resource: 'shop', jwksJson: publicJwks(key), description: 'demo', demo: true });
    const stored = (await cp.repo.snapshot()).issuers.find((i) => i.name === 'local-dev');
    expect(stored).toMatchObject({ issuerUrl: 'urn:warden:local-dev', audiences: ['warden'], algorithms: ['ES256'] });

    const res = await runWarden(['token', '--sub', 'demo', '--group', 'ops', '--group', 'dev', '--ttl', '10m', '--data-dir', dir.path]);
    expect(res.code).toBe(0);
    const token = res.stdout.trim();
    expect(res.stdout).toBe(`${token}\n`);

    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(JSON.parse(stored!.jwksJson)), {
      issuer: 'urn:warden:local-dev',
      audience: 'warden',
      algorithms: ['ES256'],
    });
    expect(protectedHeader).toMatchObject({ alg: 'ES256', typ: 'JWT', kid: key.kid });
    expect(payload).toMatchObject({ sub: 'demo', groups: ['ops', 'dev'] });
    expect(payload.exp! - payload.iat!).toBe(600);
    expect(payload.nbf).toBe(payload.iat);
  });

  it('leaves out the groups claim when no group is given and honours --aud', async () => {
    const res = await runWarden(['token', '--sub', 'svc', '--aud', 'other', '--data-dir', dir.path]);
    const token = res.stdout.trim();
    const jwks = createLocalJWKSet(JSON.parse(publicJwks(await ensureDevKey(dir.path))));
    const { payload } = await jwtVerify(token, jwks, { audience: 'other' });
    expect(payload.groups).toBeUndefined();
    expect(payload.exp! - payload.iat!).toBe(3600);
    expect(decodeProtectedHeader(token).alg).toBe('ES256');
  });

  it('says tokens need local mode when the key is missing, and checks its arguments', async () => {
    const empty = tempDir();
    try {
      const res = await runWarden(['token', '--sub', 'demo', '--data-dir', empty.path]);
      expect(res.code).toBe(1);
      expect(res.stdout).toBe('');
      expect(res.stderr).toBe(
        `error: no development issuer key at ${join(empty.path, 'dev-issuer.jwk')}: tokens can only be minted in local mode, after \`npm start\` (warden start) has run with this data directory\n`,
      );
      expect((await runWarden(['token', '--data-dir', dir.path])).stderr).toBe('error: warden token needs --sub, e.g. --sub demo\n');
      expect((await runWarden(['token', '--sub', 'x', '--ttl', '1y', '--data-dir', dir.path])).stderr).toMatch(/^error: duration '1y' is invalid/);
    } finally {
      empty.remove();
    }
  });
});

const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(!hasOpenssl)('TLS', () => {
  it('serves over TLS and the CLI connects with --ca', async () => {
    const tls = tempDir();
    const cert = join(tls.path, 'cert.pem');
    const key = join(tls.path, 'key.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert,
    ], { stdio: 'ignore' });
    expect(existsSync(cert)).toBe(true);
    const secure = await startControlPlane({ listen: '127.0.0.1:0', dataDir: tls.path, tls: { cert, key }, pollIntervalMs: 0 });
    try {
      const ok = await runWarden(['resources', 'list', '--control-plane', secure.address, '--data-dir', tls.path, '--ca', cert]);
      expect(ok).toEqual({ code: 0, stdout: 'No resources.\n', stderr: '' });
      const plain = await runWarden(['resources', 'list', '--control-plane', secure.address, '--data-dir', tls.path]);
      expect(plain.code).toBe(1);
      expect(plain.stderr).toMatch(/^error: cannot reach the control plane/);
    } finally {
      await secure.close();
      tls.remove();
    }
  }, 60_000);
});

describe('warden control-plane', () => {
  it('serves from Postgres given by --database-url, logs JSON, serves metrics and health, and exits 0 on SIGTERM', async () => {
    const db = await createTestDatabase();
    const data = tempDir();
    const proc = spawn(
      process.execPath,
      [WARDEN_BIN, 'control-plane', '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--data-dir', data.path, '--database-url', db.url],
      { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    try {
      let out = '';
      const address = await new Promise<string>((resolve, reject) => {
        proc.stdout!.on('data', (d) => {
          out += d;
          for (const line of out.split('\n')) {
            if (line.includes('control plane listening')) resolve(JSON.parse(line).address);
          }
        });
        void exit.then(() => reject(new Error(`control plane exited:\n${out}`)));
      });
      const logLines = out.trim().split('\n').map((l) => JSON.parse(l));
      expect(logLines.every((l) => l.name === 'warden-control-plane' && typeof l.level === 'number')).toBe(true);

      const add = await runWarden(['resources', 'add', 'pgdb', '--agent', 'a1', '--control-plane', address, '--data-dir', data.path]);
      expect(add.code).toBe(0);
      const direct = new pg.Client({ connectionString: db.url });
      await direct.connect();
      const rows = (await direct.query('select name, agent from resources')).rows;
      await direct.end();
      expect(rows).toEqual([{ name: 'pgdb', agent: 'a1' }]);
      // The log names where the token is, never the token.
      const adminToken = (await import('node:fs')).readFileSync(join(data.path, 'admin-token'), 'utf8').trim();
      expect(out).not.toContain(adminToken);

      const metrics = logLines.find((l) => l.msg === 'metrics on /metrics, health on /healthz and /readyz')?.url as string;
      expect(metrics).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect((await fetch(`${metrics}/readyz`)).status).toBe(200);
      expect(await (await fetch(`${metrics}/metrics`)).text()).toContain('# TYPE warden_audit_events_ingested_total counter');

      proc.kill('SIGTERM');
      expect(await exit).toBe(0);
    } finally {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      data.remove();
      await db.drop();
    }
  }, 60_000);
});
