// The repository on both backends: real Postgres (a throwaway database) and
// embedded PGlite in a temp directory.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStorage, type Storage } from '../src/storage/open.js';
import { configError, createTestDatabase, tempDir } from './helpers.js';

const issuer = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  issuerUrl: 'https://token.actions.githubusercontent.com',
  audiences: ['warden'],
  jwksUri: '',
  jwksJson: '',
  algorithms: ['RS256'],
  ...extra,
});


describe.each(['pglite', 'postgres'] as const)('storage on %s', (kind) => {
  let storage: Storage;
  let options: { dataDir?: string; databaseUrl?: string };
  const cleanups: (() => Promise<void> | void)[] = [];

  beforeAll(async () => {
    if (kind === 'pglite') {
      const dir = tempDir();
      cleanups.push(() => dir.remove());
      options = { dataDir: dir.path };
    } else {
      const db = await createTestDatabase();
      cleanups.push(() => db.drop());
      options = { databaseUrl: db.url };
    }
    storage = await openStorage(options);
  }, 60_000);

  afterAll(async () => {
    await storage?.close();
    for (const fn of cleanups.reverse()) await fn();
  });

  it('reports which backend it opened', () => {
    expect(storage.kind).toBe(kind);
  });

  it('stores the whole configuration and returns it in the snapshot', async () => {
    const v0 = await storage.repo.version();
    let changes = 0;
    const off = storage.repo.onChange(() => changes++);

    await storage.repo.putIssuer(issuer('github', { audiences: ['warden', 'warden', 'other'] }));
    await storage.repo.putIdentity({
      name: 'deployer',
      issuer: 'github',
      match: [{ claim: 'sub', value: 'repo:acme/*' }],
      groups: ['ci', 'ci'],
    });
    await storage.repo.putResource({ name: 'orders', agent: 'eu-1', description: 'orders DB' });
    const byIdentity = await storage.repo.createGrant({ id: 'ignored', resource: 'orders', identity: 'deployer', group: '' });
    const byGroup = await storage.repo.createGrant({ id: '', resource: 'orders', identity: '', group: 'ci' });
    off();

    expect(byIdentity.id).toMatch(/^g_[0-9a-f]{12}$/);
    expect(changes).toBe(5);
    const snap = await storage.repo.snapshot();
    expect(snap.version).toBe(v0 + 5);
    expect(snap.issuers).toEqual([issuer('github', { audiences: ['warden', 'other'] })]);
    expect(snap.identities).toEqual([
      { name: 'deployer', issuer: 'github', match: [{ claim: 'sub', value: 'repo:acme/*' }], groups: ['ci'] },
    ]);
    expect(snap.resources).toEqual([{ name: 'orders', agent: 'eu-1', description: 'orders DB' }]);
    const defaults = { access: 'read', rule: '', allowSchemas: [], denySchemas: [], allowTables: [], denyTables: [], trust: [] };
    expect(snap.grants).toEqual([
      { id: byIdentity.id, resource: 'orders', identity: 'deployer', group: '', ...defaults },
      { id: byGroup.id, resource: 'orders', identity: '', group: 'ci', ...defaults },
    ]);
  });

  it('replaces an object put again under the same name', async () => {
    await storage.repo.putResource({ name: 'orders', agent: 'eu-2', description: '' });
    const snap = await storage.repo.snapshot();
    expect(snap.resources).toEqual([{ name: 'orders', agent: 'eu-2', description: '' }]);
  });

  it('rejects invalid input with a sentence', async () => {
    const bad = [
      [storage.repo.putIssuer(issuer('GitHub')), /issuer name 'GitHub' is invalid/],
      [storage.repo.putIssuer(issuer('x'.repeat(64))), /1-63 lowercase/],
      [storage.repo.putIssuer(issuer('gh', { issuerUrl: '' })), /needs an issuer URL/],
      [storage.repo.putIssuer(issuer('gh', { audiences: [] })), /at least one non-empty audience/],
      [storage.repo.putIssuer(issuer('gh', { algorithms: ['HS256'] })), /algorithm 'HS256' is not supported/],
      [storage.repo.putIssuer(issuer('gh', { jwksJson: '{"keys":[]}' })), /at least one key/],
      [storage.repo.putIssuer(issuer('gh', { jwksUri: 'https://x/jwks', jwksJson: '{"keys":[{"kty":"EC"}]}' })), /only one/],
      [storage.repo.putIssuer(issuer('gh', { issuerUrl: 'urn:x' })), /OIDC discovery/],
      [storage.repo.putIdentity({ name: 'a', issuer: 'github', match: [], groups: [] }), /at least one claim match/],
      [storage.repo.putIdentity({ name: 'a', issuer: 'github', match: [{ claim: 'sub', value: 'a*b' }], groups: [] }), /only allowed at the end/],
      [storage.repo.putResource({ name: 'r', agent: '', description: '' }), /agent name is missing/],
      [storage.repo.createGrant({ id: '', resource: 'orders', identity: 'deployer', group: 'ci' }), /exactly one of identity or group/],
      [storage.repo.createGrant({ id: '', resource: 'orders', identity: '', group: '' }), /exactly one of identity or group/],
    ] as const;
    for (const [p, message] of bad) {
      const err = await configError(p);
      expect(err.kind).toBe('invalid');
      expect(err.message).toMatch(message);
    }
  });

  it('stores a grant\'s trust list and tells grants apart by it', async () => {
    const base = { id: '', resource: 'orders', identity: 'deployer', group: '', access: 'write', rule: '', allowSchemas: [], denySchemas: [], allowTables: [], denyTables: [] };
    const trusting = await storage.repo.createGrant({ ...base, trust: ['public.open_orders', 'billing.charge_card', 'public.open_orders'] });
    expect(trusting.trust).toEqual(['public.open_orders', 'billing.charge_card']);
    const stored = (await storage.repo.snapshot()).grants.find((g) => g.id === trusting.id);
    expect(stored).toEqual({ ...base, id: trusting.id, trust: ['public.open_orders', 'billing.charge_card'] });
    // The same list in another order is the same grant; another list is another grant.
    const dup = await configError(storage.repo.createGrant({ ...base, trust: ['billing.charge_card', 'public.open_orders'] }));
    expect(dup).toMatchObject({ kind: 'already_exists', message: `identity 'deployer' already has grant ${trusting.id} on resource 'orders'` });
    const narrower = await storage.repo.createGrant({ ...base, trust: ['public.open_orders'] });
    const plain = await storage.repo.createGrant({ ...base, trust: [] });
    expect(new Set([trusting.id, narrower.id, plain.id]).size).toBe(3);
    const bad = [
      ['open_orders', "trust 'open_orders' is invalid: give schema.name with the schema (a view or function is always named with its schema)"],
      ['Public.V', "trust 'Public.V' is invalid: give schema.name in lower case, as Postgres stores unquoted names"],
      ['public.f(int)', "trust 'public.f(int)' is invalid: give schema.name without argument types (it covers every function of that name)"],
    ] as const;
    for (const [entry, message] of bad) {
      expect(await configError(storage.repo.createGrant({ ...base, trust: [entry] }))).toMatchObject({ kind: 'invalid', message });
    }
    for (const g of [trusting, narrower, plain]) await storage.repo.deleteGrant(g.id);
  });

  it('checks references and refuses to delete what is in use', async () => {
    expect(await configError(storage.repo.putIdentity({ name: 'x', issuer: 'nope', match: [{ claim: 'sub', value: 'x' }], groups: [] }))).toMatchObject({
      kind: 'not_found',
      message: "issuer 'nope' does not exist; add it first",
    });
    expect(await configError(storage.repo.createGrant({ id: '', resource: 'nope', identity: 'deployer', group: '' }))).toMatchObject({
      kind: 'not_found',
      message: "resource 'nope' does not exist",
    });
    expect(await configError(storage.repo.createGrant({ id: '', resource: 'orders', identity: 'ghost', group: '' }))).toMatchObject({
      kind: 'not_found',
    });
    const dup = await configError(storage.repo.createGrant({ id: '', resource: 'orders', identity: 'deployer', group: '' }));
    expect(dup.kind).toBe('already_exists');
    expect(dup.message).toMatch(/^identity 'deployer' already has grant g_[0-9a-f]+ on resource 'orders'$/);

    expect(await configError(storage.repo.deleteIssuer('github'))).toMatchObject({ kind: 'in_use' });
    expect(await configError(storage.repo.deleteIdentity('deployer'))).toMatchObject({ kind: 'in_use' });
    expect(await configError(storage.repo.deleteResource('orders'))).toMatchObject({ kind: 'in_use' });
    expect(await configError(storage.repo.deleteGrant('g_000000000000'))).toMatchObject({ kind: 'not_found' });
    expect(await configError(storage.repo.deleteIssuer('nope'))).toMatchObject({ kind: 'not_found' });

    // In dependency order, everything goes.
    for (const g of (await storage.repo.snapshot()).grants) await storage.repo.deleteGrant(g.id);
    await storage.repo.deleteIdentity('deployer');
    await storage.repo.deleteResource('orders');
    await storage.repo.deleteIssuer('github');
    const snap = await storage.repo.snapshot();
    expect([snap.issuers, snap.identities, snap.resources, snap.grants]).toEqual([[], [], [], []]);
  });

  it('enrolls, refuses a second enrollment, revokes and re-enrolls agents', async () => {
    const hash1 = 'a'.repeat(64);
    const hash2 = 'b'.repeat(64);
    const agent = await storage.repo.enrollAgent('eu-1', hash1);
    expect(agent).toMatchObject({ name: 'eu-1', tokenHash: hash1, revoked: false });
    expect(new Date(agent.createdAt).toISOString()).toBe(agent.createdAt);

    expect(await configError(storage.repo.enrollAgent('eu-1', hash2))).toMatchObject({ kind: 'already_exists' });
    await storage.repo.revokeAgent('eu-1');
    await storage.repo.revokeAgent('eu-1');
    expect(await storage.repo.getAgent('eu-1')).toMatchObject({ revoked: true, tokenHash: hash1 });
    await storage.repo.enrollAgent('eu-1', hash2);
    expect(await storage.repo.getAgent('eu-1')).toMatchObject({ revoked: false, tokenHash: hash2 });
    expect(await configError(storage.repo.revokeAgent('ghost'))).toMatchObject({ kind: 'not_found' });
  });

  it('bumps the version for new or moved gateways, not for a plain reconnect', async () => {
    const v0 = await storage.repo.version();
    await storage.repo.registerGateway('gw-a.example', '10.0.0.1:7443');
    expect(await storage.repo.version()).toBe(v0 + 1);
    await storage.repo.registerGateway('gw-a.example', '10.0.0.1:7443');
    expect(await storage.repo.version()).toBe(v0 + 1);
    await storage.repo.registerGateway('gw-a.example', '10.0.0.2:7443');
    expect(await storage.repo.version()).toBe(v0 + 2);
    const gateways = await storage.repo.gateways();
    expect(gateways).toEqual([{ id: 'gw-a.example', tunnelAddress: '10.0.0.2:7443', lastSeen: expect.any(String) }]);
    expect(await configError(storage.repo.registerGateway('gw', 'no-port'))).toMatchObject({ kind: 'invalid' });
  });

  it('keeps everything across a reopen, and migrating again changes nothing', async () => {
    const before = await storage.repo.snapshot();
    await storage.close();
    storage = await openStorage(options);
    expect(await storage.repo.snapshot()).toEqual(before);
  }, 30_000);
});

describe('pglite storage', () => {
  it('refuses a second opener of the same data directory', async () => {
    const dir = tempDir();
    const first = await openStorage({ dataDir: dir.path });
    try {
      await expect(openStorage({ dataDir: dir.path })).rejects.toThrow(/already open in this process/);
    } finally {
      await first.close();
      dir.remove();
    }
  }, 60_000);
});

describe('directory lock', () => {
  it('refuses a directory locked by another live process and takes over a stale lock', async () => {
    const { lockDirectory } = await import('../src/storage/dir-lock.js');
    const { writeFileSync } = await import('node:fs');
    const dir = tempDir();
    try {
      const target = `${dir.path}/db`;
      writeFileSync(`${target}.lock`, String(process.ppid));
      expect(() => lockDirectory(target)).toThrow(`in use by another Warden process (pid ${process.ppid})`);
      // A pid far above any pid_max in use: nobody holds it.
      writeFileSync(`${target}.lock`, '2147483646');
      const release = lockDirectory(target);
      release();
    } finally {
      dir.remove();
    }
  });
});
