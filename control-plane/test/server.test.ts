// ControlPlaneService over a real gRPC connection: admin CRUD and its errors,
// the three kinds of credentials, and both watch streams.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { Metadata, status } from '@grpc/grpc-js';
import {
  ControlPlaneServiceClient,
  Grant as GrantMessage,
  bearer,
  channelCredentials,
  type Empty,
  type EnrollAgentResponse,
  type Grant,
  type Identity,
  type Issuer,
  type Resource,
  type Snapshot,
} from '@warden/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../src/server/secrets.js';
import { startControlPlane, type ControlPlane } from '../src/server/start.js';
import { grpcError, reader, tempDir, unary } from './helpers.js';

let dir: ReturnType<typeof tempDir>;
let cp: ControlPlane;
let client: ControlPlaneServiceClient;
let admin: Metadata;

const issuer: Issuer = {
  name: 'github',
  issuerUrl: 'https://token.actions.githubusercontent.com',
  audiences: ['warden'],
  jwksUri: '',
  jwksJson: '',
  algorithms: [],
};

// Helpers so tests read like the RPC names.
const rpc = {
  snapshot: (md = admin) => unary<Snapshot>((cb) => client.getSnapshot({}, md, cb)),
  putIssuer: (i: Issuer, md = admin) => unary<Issuer>((cb) => client.putIssuer(i, md, cb)),
  deleteIssuer: (name: string) => unary<Empty>((cb) => client.deleteIssuer({ name }, admin, cb)),
  putIdentity: (name: string, issuerName: string) =>
    unary<Identity>((cb) =>
      client.putIdentity({ name, issuer: issuerName, match: [{ claim: 'sub', value: name }], groups: [] }, admin, cb),
    ),
  putResource: (name: string, agent = 'eu-1') =>
    unary<Resource>((cb) => client.putResource({ name, agent, description: '' }, admin, cb)),
  createGrant: (resource: string, identity: string, group = '') =>
    unary<Grant>((cb) => client.createGrant(GrantMessage.fromPartial({ resource, identity, group }), admin, cb)),
  deleteGrant: (id: string) => unary<Empty>((cb) => client.deleteGrant({ id }, admin, cb)),
  enroll: (name: string) => unary<EnrollAgentResponse>((cb) => client.enrollAgent({ name }, admin, cb)),
  revoke: (name: string) => unary<Empty>((cb) => client.revokeAgent({ name }, admin, cb)),
};

beforeAll(async () => {
  dir = tempDir();
  cp = await startControlPlane({ listen: '127.0.0.1:0', dataDir: dir.path, pollIntervalMs: 0 });
  client = new ControlPlaneServiceClient(cp.address, channelCredentials());
  admin = bearer(cp.adminToken);
}, 60_000);

afterAll(async () => {
  client?.close();
  await cp?.close();
  dir?.remove();
});

describe('startup', () => {
  it('binds an ephemeral port and writes both tokens with mode 0600', () => {
    expect(cp.port).toBeGreaterThan(0);
    expect(cp.address).toBe(`127.0.0.1:${cp.port}`);
    expect(cp.adminToken).toMatch(/^wdn_admin_[\w-]{43}$/);
    expect(cp.gatewayToken).toMatch(/^wdn_gw_[\w-]{43}$/);
    for (const f of ['admin-token', 'gateway-token']) {
      expect(statSync(join(dir.path, f)).mode & 0o777).toBe(0o600);
    }
  });
});

describe('admin calls', () => {
  it('creates, lists and removes configuration', async () => {
    expect(await rpc.putIssuer(issuer)).toEqual(issuer);
    await rpc.putIdentity('deployer', 'github');
    await rpc.putResource('orders');
    const grant = await rpc.createGrant('orders', 'deployer');
    expect(grant).toEqual({
      id: expect.stringMatching(/^g_/),
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

    const snap = await rpc.snapshot();
    expect(snap.issuers.map((i) => i.name)).toEqual(['github']);
    expect(snap.identities.map((i) => i.name)).toEqual(['deployer']);
    expect(snap.resources).toEqual([{ name: 'orders', agent: 'eu-1', description: '' }]);
    expect(snap.grants).toEqual([grant]);

    await rpc.deleteGrant(grant.id);
    expect((await rpc.snapshot()).grants).toEqual([]);
  });

  it('answers bad input with the matching status code and a sentence', async () => {
    const invalid = await grpcError(rpc.putIssuer({ ...issuer, name: 'Bad Name' }));
    expect(invalid.code).toBe(status.INVALID_ARGUMENT);
    expect(invalid.details).toBe("issuer name 'Bad Name' is invalid: use 1-63 lowercase letters, digits, '-' or '_'");

    const missing = await grpcError(rpc.putIdentity('x', 'no-such-issuer'));
    expect(missing.code).toBe(status.NOT_FOUND);
    expect(missing.details).toBe("issuer 'no-such-issuer' does not exist; add it first");

    const grant = await rpc.createGrant('orders', '', 'ops');
    const duplicate = await grpcError(rpc.createGrant('orders', '', 'ops'));
    expect(duplicate.code).toBe(status.ALREADY_EXISTS);
    expect(duplicate.details).toBe(`group 'ops' already has grant ${grant.id} on resource 'orders'`);

    const inUse = await grpcError(rpc.deleteIssuer('github'));
    expect(inUse.code).toBe(status.FAILED_PRECONDITION);
    expect(inUse.details).toBe("issuer 'github' is used by identities 'deployer'; remove them first");

    const noGrant = await grpcError(rpc.deleteGrant('g_nope'));
    expect(noGrant.code).toBe(status.NOT_FOUND);
  });

  it('enrolls an agent: the token is returned once and only its sha256 is stored', async () => {
    const res = await rpc.enroll('eu-1');
    expect(res.token).toMatch(/^wdn_agent_[\w-]{43}$/);
    expect(res.agent).toMatchObject({ name: 'eu-1', revoked: false, tokenHash: sha256Hex(res.token) });
    const stored = (await rpc.snapshot()).agents.find((a) => a.name === 'eu-1');
    expect(stored?.tokenHash).toBe(sha256Hex(res.token));
    expect(JSON.stringify(await rpc.snapshot())).not.toContain(res.token);

    const again = await grpcError(rpc.enroll('eu-1'));
    expect(again.code).toBe(status.ALREADY_EXISTS);
  });
});

describe('authentication', () => {
  it('refuses admin calls without a token, with a wrong token, or with the gateway token', async () => {
    const none = await grpcError(rpc.snapshot(new Metadata()));
    expect(none.code).toBe(status.UNAUTHENTICATED);
    expect(none.details).toBe("missing credentials: send 'authorization: Bearer <admin token>'");

    const wrong = await grpcError(rpc.snapshot(bearer('wdn_admin_not-the-right-one')));
    expect(wrong.code).toBe(status.UNAUTHENTICATED);
    expect(wrong.details).toBe('invalid admin token');

    const gateway = await grpcError(rpc.putIssuer(issuer, bearer(cp.gatewayToken)));
    expect(gateway.code).toBe(status.PERMISSION_DENIED);
    expect(gateway.details).toBe('the gateway token cannot make admin calls; use the admin token');
  });

  it('refuses WatchConfig without the gateway token', async () => {
    const req = { gatewayId: 'gw-x', tunnelAddress: '127.0.0.1:7443' };
    const none = await reader(client.watchConfig(req, new Metadata())).ended();
    expect(none.code).toBe(status.UNAUTHENTICATED);
    const adminToken = await reader(client.watchConfig(req, admin)).ended();
    expect(adminToken.code).toBe(status.PERMISSION_DENIED);
    const badAddress = await reader(client.watchConfig({ ...req, tunnelAddress: 'nowhere' }, bearer(cp.gatewayToken))).ended();
    expect(badAddress.code).toBe(status.INVALID_ARGUMENT);
    expect((await rpc.snapshot()).gateways.map((g) => g.id)).not.toContain('gw-x');
  });

  it('refuses WatchGateways with a wrong enrollment token or another agent name', async () => {
    const { token } = await rpc.enroll('eu-2');
    const wrongToken = await reader(client.watchGateways({ agentName: 'eu-2' }, bearer('wdn_agent_wrong'))).ended();
    expect(wrongToken.code).toBe(status.UNAUTHENTICATED);
    expect(wrongToken.details).toBe("unknown agent 'eu-2' or wrong enrollment token");

    const otherName = await reader(client.watchGateways({ agentName: 'eu-1' }, bearer(token))).ended();
    expect(otherName.code).toBe(status.UNAUTHENTICATED);

    const noToken = await reader(client.watchGateways({ agentName: 'eu-2' }, new Metadata())).ended();
    expect(noToken.code).toBe(status.UNAUTHENTICATED);
  });

  it('refuses a revoked agent with PERMISSION_DENIED', async () => {
    const { token } = await rpc.enroll('eu-3');
    await rpc.revoke('eu-3');
    const err = await reader(client.watchGateways({ agentName: 'eu-3' }, bearer(token))).ended();
    expect(err.code).toBe(status.PERMISSION_DENIED);
    expect(err.details).toBe("agent 'eu-3' has been revoked");
  });
});

describe('watch streams', () => {
  it('WatchConfig sends the snapshot at once (with the gateway registered), then again after a change', async () => {
    const stream = reader(client.watchConfig({ gatewayId: 'gw-1', tunnelAddress: '10.1.2.3:7443' }, bearer(cp.gatewayToken)));
    const first = await stream.next();
    expect(first.gateways).toContainEqual({ id: 'gw-1', tunnelAddress: '10.1.2.3:7443', lastSeen: expect.any(String) });
    expect(first.resources.map((r) => r.name)).not.toContain('invoices');

    await rpc.putResource('invoices');
    const second: Snapshot = await stream.next();
    expect(second.version).toBeGreaterThan(first.version);
    expect(second.resources.map((r) => r.name)).toContain('invoices');
    stream.cancel();
  });

  it('WatchConfig carries the deployment\'s masking key and the masks; GetSnapshot never carries the key', async () => {
    const stream = reader(client.watchConfig({ gatewayId: 'gw-key', tunnelAddress: '10.1.2.4:7443' }, bearer(cp.gatewayToken)));
    const first: Snapshot = await stream.next();
    expect(first.maskKey).toHaveLength(32);
    expect(first.maskKey).toEqual(await cp.repo.maskKey());
    const admin1 = await rpc.snapshot();
    expect(admin1.maskKey).toHaveLength(0);

    await rpc.putResource('cards');
    const column = { pattern: 'public.cards.number', mask: { fn: 'partial', keep: 4, text: '', char: '' } };
    await cp.repo.putMask({ name: 'cards', resource: 'cards', identities: [], groups: ['ci'], exemptIdentities: [], exemptGroups: [], columns: [column], detectors: [], predicates: 'refuse', onInvalid: 'null' });
    const later = await stream.until((s) => s.masks.some((m) => m.name === 'cards'));
    expect(later.masks.find((m) => m.name === 'cards')!.columns).toEqual([column]);
    expect(later.maskKey).toEqual(first.maskKey);
    const admin2 = await rpc.snapshot();
    expect(admin2.masks.map((m) => m.name)).toContain('cards');
    expect(admin2.maskKey).toHaveLength(0);
    stream.cancel();
    await cp.repo.deleteMask('cards');
  });

  it('WatchGateways lists gateways now and after a gateway registers, and ends when the agent is revoked', async () => {
    const { token } = await rpc.enroll('eu-4');
    const agentStream = reader(client.watchGateways({ agentName: 'eu-4' }, bearer(token)));
    const first = await agentStream.next();
    expect(first.gateways.map((g) => g.id)).not.toContain('gw-2');

    const gw = reader(client.watchConfig({ gatewayId: 'gw-2', tunnelAddress: '10.9.9.9:7443' }, bearer(cp.gatewayToken)));
    await gw.next();
    const withGateway = await agentStream.until((l) => l.gateways.some((g) => g.id === 'gw-2'));
    expect(withGateway.gateways.find((g) => g.id === 'gw-2')?.tunnelAddress).toBe('10.9.9.9:7443');

    await rpc.revoke('eu-4');
    const ended = await agentStream.ended();
    expect(ended.code).toBe(status.PERMISSION_DENIED);
    expect(ended.details).toBe("agent 'eu-4' has been revoked");
    gw.cancel();
  });
});

describe('restart', () => {
  it('keeps tokens, configuration and registered gateways', async () => {
    const before = await rpc.snapshot();
    const keyBefore = await cp.repo.maskKey();
    client.close();
    await cp.close();
    cp = await startControlPlane({ listen: '127.0.0.1:0', dataDir: dir.path, pollIntervalMs: 0 });
    client = new ControlPlaneServiceClient(cp.address, channelCredentials());
    const after = await rpc.snapshot(bearer(cp.adminToken));
    expect(after.version).toBe(before.version);
    expect(after.gateways.map((g) => [g.id, g.tunnelAddress])).toEqual(before.gateways.map((g) => [g.id, g.tunnelAddress]));
    expect(after.grants).toEqual(before.grants);
    // The masking key lives in the database: gateways get the same one after a restart.
    const watch = reader(client.watchConfig({ gatewayId: 'gw-key', tunnelAddress: '10.1.2.4:7443' }, bearer(cp.gatewayToken)));
    expect((await watch.next()).maskKey).toEqual(keyBefore);
    watch.cancel();
    expect(bearer(cp.adminToken).get('authorization')).toEqual(admin.get('authorization'));
  }, 30_000);
});
