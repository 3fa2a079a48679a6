// The approval RPCs over real gRPC, on PGlite and on Postgres: gateways open,
// watch, withdraw and consume requests; people (dev-issuer tokens) list and
// decide, with every refusal; quorum, deny, expiry, exactly-once consume, the
// audit trail, and a second replica on the same Postgres.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { Metadata, status } from '@grpc/grpc-js';
import { ControlPlaneServiceClient, bearer, channelCredentials, type ApprovalList, type ApprovalRequest } from '@warden/proto';
import type { JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDevKey, publicJwks, signDevToken } from '../src/local/dev-issuer.js';
import { startControlPlane, type ControlPlane } from '../src/server/start.js';
import { createTestDatabase, grpcError, reader, tempDir, unary } from './helpers.js';

const policy = (jwks: string) => `version: 1
issuers:
  - name: people
    issuer_url: urn:warden:local-dev
    audiences: [warden]
    jwks_json: '${jwks}'
identities:
  - name: ci-deploy
    issuer: people
    match: { sub: ci-deploy }
  - name: ops
    issuer: people
    match: { sub: dave }
    groups: [dba]
resources:
  - name: shop
    agent: local
rules:
  - name: deploy
    resource: shop
    identities: [ci-deploy]
    access: ddl
approvals:
  - name: prod-ddl
    resource: shop
    identities: [ci-deploy]
    kinds: [ALTER TABLE, DROP]
    approvers: [dba]
    quorum: 2
  - name: quick
    resource: shop
    without_where: true
    approvers: [dba]
    request_ttl: 1s
    wait_timeout: 1s
  - name: deletes
    resource: shop
    kinds: [DELETE]
    approvers: [dba]
    mode: retry
    approval_ttl: 1h
`;

let n = 0;
const held = (rule: string, extra: Partial<ApprovalRequest> = {}): ApprovalRequest => ({
  id: '',
  rule,
  identity: 'ci-deploy',
  resource: 'shop',
  sql: 'ALTER TABLE orders ADD COLUMN note text',
  parameters: [],
  fingerprint: `fp-${++n}`,
  sessionId: `s-${n}`,
  gatewayId: 'gw-1',
  reason: 'deploy 42',
  createdAt: '',
  expiresAt: '',
  state: '',
  decisions: [],
  approvers: [],
  quorum: 0,
  mode: '',
  approvalExpiresAt: '',
  why: 'ALTER TABLE public.orders',
  ...extra,
});

function api(address: string) {
  const c = new ControlPlaneServiceClient(address, channelCredentials());
  return {
    client: c,
    request: (r: ApprovalRequest, md: Metadata) => unary<ApprovalRequest>((cb) => c.requestApproval(r, md, cb)),
    withdraw: (id: string, md: Metadata) => unary<ApprovalRequest>((cb) => c.withdrawApproval({ id }, md, cb)),
    consume: (r: ApprovalRequest, md: Metadata) =>
      unary<ApprovalRequest>((cb) => c.consumeApproval({ identity: r.identity, resource: r.resource, fingerprint: r.fingerprint, sessionId: 's-retry' }, md, cb)),
    list: (md: Metadata, state = '') => unary<ApprovalList>((cb) => c.listApprovals({ state, limit: 0 }, md, cb)),
    get: (id: string, md: Metadata) => unary<ApprovalRequest>((cb) => c.getApproval({ id }, md, cb)),
    decide: (id: string, md: Metadata, approve = true, reason = '') => unary<ApprovalRequest>((cb) => c.decideApproval({ id, approve, reason }, md, cb)),
    watch: (md: Metadata, gatewayId = 'gw-1') => reader(c.watchApprovals({ gatewayId }, md)),
  };
}

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`approval RPCs (${kind})`, () => {
    const dir = tempDir();
    let db: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
    let cp: ControlPlane;
    let a: ReturnType<typeof api>;
    let key: JWK;
    let gw: Metadata;
    let admin: Metadata;
    const person = async (sub: string, groups: string[] = []) => bearer(await signDevToken(key, { sub, groups }));

    beforeAll(async () => {
      db = kind === 'postgres' ? await createTestDatabase() : undefined;
      key = await ensureDevKey(dir.path);
      cp = await startControlPlane({ listen: '127.0.0.1:0', dataDir: dir.path, databaseUrl: db?.url, pollIntervalMs: 0, approvalPollMs: 100 });
      await cp.repo.applyPolicy({ yaml: policy(publicJwks(key)), author: 't', dryRun: false });
      a = api(cp.address);
      gw = bearer(cp.gatewayToken);
      admin = bearer(cp.adminToken);
    });
    afterAll(async () => {
      a?.client.close();
      await cp?.close();
      await db?.drop();
      dir.remove();
    });

    it('opens a request from the rule, once per session and statement, for the gateway token only', async () => {
      const r = held('prod-ddl');
      const first = await a.request(r, gw);
      expect(first.id).toMatch(/^apr_[a-z2-7]{32}$/);
      expect(first).toMatchObject({ state: 'pending', approvers: ['dba'], quorum: 2, mode: 'wait', rule: 'prod-ddl', reason: 'deploy 42' });
      expect(Date.parse(first.expiresAt) - Date.parse(first.createdAt)).toBe(900_000);
      expect((await a.request(r, gw)).id).toBe(first.id);

      const unknown = await grpcError(a.request(held('nope'), gw));
      expect(unknown.code).toBe(status.INVALID_ARGUMENT);
      expect(unknown.details).toBe("approval rule 'nope' does not exist (the policy in force has prod-ddl, quick or deletes)");
      expect((await grpcError(a.request(held('prod-ddl'), admin))).code).toBe(status.PERMISSION_DENIED);
      expect((await grpcError(a.request(held('prod-ddl', { resource: 'other' }), gw))).details).toBe("approval rule 'prod-ddl' is for resource 'shop', not 'other'");
    });

    it('refuses non-approvers, the requester, the admin token, and a second decision by the same person; approves at a quorum of two people', async () => {
      const watch = a.watch(gw);
      const r = await a.request(held('prod-ddl'), gw);
      await watch.until((x) => x.id === r.id && x.state === 'pending');

      const outsider = await grpcError(a.decide(r.id, await person('alice', ['dev'])));
      expect(outsider.code).toBe(status.PERMISSION_DENIED);
      expect(outsider.details).toBe(`alice may not approve ${r.id}: they are not in an approver group (dba) of rule prod-ddl`);
      const self = await grpcError(a.decide(r.id, await person('ci-deploy', ['dba'])));
      expect(self.code).toBe(status.PERMISSION_DENIED);
      expect(self.details).toBe(`ci-deploy may not approve ${r.id}: it is their own request (identity ci-deploy)`);
      expect((await grpcError(a.decide(r.id, admin))).code).toBe(status.PERMISSION_DENIED);
      expect((await grpcError(a.decide(r.id, gw))).code).toBe(status.PERMISSION_DENIED);
      const forged = await grpcError(a.decide(r.id, bearer('a.b.c')));
      expect(forged.code).toBe(status.UNAUTHENTICATED);

      const one = await a.decide(r.id, await person('bob', ['dba']), true, 'looks fine');
      expect(one.state).toBe('pending');
      expect(one.decisions).toMatchObject([{ approver: 'bob', groups: ['dba'], approve: true, reason: 'looks fine' }]);
      const seen = await watch.until((x) => x.id === r.id && x.decisions.length === 1);
      expect(seen.state).toBe('pending');
      const again = await grpcError(a.decide(r.id, await person('bob', ['dba'])));
      expect(again.code).toBe(status.PERMISSION_DENIED);
      expect(again.details).toBe(`bob has already decided on ${r.id}; each approver decides once`);

      // dave is in dba through the identity his token maps to.
      const two = await a.decide(r.id, await person('dave'));
      expect(two.state).toBe('approved');
      expect(Date.parse(two.approvalExpiresAt) - Date.now()).toBeGreaterThan(3500_000);
      expect((await watch.until((x) => x.id === r.id && x.state === 'approved')).decisions.map((d) => d.approver)).toEqual(['bob', 'dave']);

      const late = await grpcError(a.decide(r.id, await person('erin', ['dba'])));
      expect(late.code).toBe(status.FAILED_PRECONDITION);
      expect(late.details).toBe(`approval request ${r.id} is approved (by bob, dave), not pending`);
      watch.cancel();
    });

    it('denies at once with a reason, which a denial requires', async () => {
      const r = await a.request(held('prod-ddl'), gw);
      const bob = await person('bob', ['dba']);
      const noReason = await grpcError(a.decide(r.id, bob, false, ''));
      expect(noReason.code).toBe(status.INVALID_ARGUMENT);
      const d = await a.decide(r.id, bob, false, 'not during the sale');
      expect(d).toMatchObject({ state: 'denied', decisions: [{ approver: 'bob', approve: false, reason: 'not during the sale' }] });
    });

    it('lists what an approver may decide; the admin sees all; get hides others', async () => {
      const r = await a.request(held('prod-ddl'), gw);
      const bob = await person('bob', ['dba']);
      expect((await a.list(bob)).approvals.map((x) => x.id)).toContain(r.id);
      expect((await a.list(bob)).approvals.every((x) => x.state === 'pending')).toBe(true);
      expect((await a.list(await person('alice', ['dev']))).approvals).toEqual([]);
      expect((await a.list(admin, 'denied')).approvals.length).toBeGreaterThan(0);
      expect((await a.get(r.id, bob)).id).toBe(r.id);
      expect((await grpcError(a.get(r.id, await person('alice', ['dev'])))).code).toBe(status.NOT_FOUND);
      expect((await grpcError(a.list(bob, 'maybe'))).code).toBe(status.INVALID_ARGUMENT);
    });

    it('expires a pending request, tells the gateway, and refuses decisions on it', async () => {
      const watch = a.watch(gw);
      const r = await a.request(held('quick', { sql: 'DELETE FROM orders', why: 'DELETE without WHERE' }), gw);
      const expired = await watch.until((x) => x.id === r.id && x.state === 'expired');
      expect(expired.decisions).toEqual([]);
      const e = await grpcError(a.decide(r.id, await person('bob', ['dba'])));
      expect(e.code).toBe(status.FAILED_PRECONDITION);
      expect(e.details).toBe(`approval request ${r.id} is expired, not pending`);
      watch.cancel();
    });

    it('withdraws a pending request only', async () => {
      const r = await a.request(held('prod-ddl'), gw);
      expect((await a.withdraw(r.id, gw)).state).toBe('withdrawn');
      const e = await grpcError(a.withdraw(r.id, gw));
      expect(e.code).toBe(status.FAILED_PRECONDITION);
      expect(e.details).toBe(`approval request ${r.id} is withdrawn, not pending`);
      expect((await grpcError(a.withdraw('apr_none', gw))).code).toBe(status.NOT_FOUND);
    });

    it('retry mode: an approved statement is consumed exactly once, even by concurrent callers', async () => {
      const r = held('deletes', { sql: 'DELETE FROM orders WHERE id = $1', parameters: [{ value: '7' }] });
      const opened = await a.request(r, gw);
      expect(opened.mode).toBe('retry');
      expect((await grpcError(a.consume(r, gw))).code).toBe(status.NOT_FOUND);
      await a.decide(opened.id, await person('bob', ['dba']));
      const results = await Promise.allSettled(Array.from({ length: 8 }, () => a.consume(r, gw)));
      const ok = results.filter((x) => x.status === 'fulfilled');
      expect(ok).toHaveLength(1);
      expect((ok[0] as PromiseFulfilledResult<ApprovalRequest>).value).toMatchObject({ id: opened.id, state: 'executed' });
      for (const x of results.filter((x) => x.status === 'rejected')) expect((x as PromiseRejectedResult).reason.code).toBe(status.NOT_FOUND);
      expect((await grpcError(a.consume(r, gw))).details).toBe("no valid approval of this statement for identity 'ci-deploy' on resource 'shop'");
    });

    it("records each change in the control plane's audit chain of the request", async () => {
      const r = await a.request(held('prod-ddl'), gw);
      await a.decide(r.id, await person('bob', ['dba']), false, 'no');
      await expect.poll(async () => (await cp.audit.getSession(r.id))?.events.length ?? 0).toBe(2);
      const found = (await cp.audit.getSession(r.id))!;
      const bodies = found.events.map((b) => JSON.parse(b));
      expect(bodies.map((b) => b.state)).toEqual(['requested', 'denied']);
      expect(found.session).toMatchObject({ gateway: 'control-plane', identity: 'ci-deploy', resource: 'shop' });
      expect((await cp.audit.verify()).ok).toBe(true);
    });
  });
}

describe('two replicas on one Postgres', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  const dirs = [tempDir(), tempDir()];
  const cps: ControlPlane[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    const tokens = { adminToken: 'wdn_admin_shared_for_test', gatewayToken: 'wdn_gw_shared_for_test' };
    for (const d of dirs) cps.push(await startControlPlane({ listen: '127.0.0.1:0', dataDir: d.path, databaseUrl: db.url, pollIntervalMs: 200, ...tokens }));
  });
  afterAll(async () => {
    for (const c of cps) await c.close();
    await db?.drop();
    for (const d of dirs) d.remove();
  });

  it("the gateway's stream on one replica sees a decision made through the other", async () => {
    const key = await ensureDevKey(dirs[0]!.path);
    await cps[0]!.repo.applyPolicy({ yaml: policy(publicJwks(key)), author: 't', dryRun: false });
    const [one, two] = cps.map((c) => api(c.address));
    const gw = bearer(cps[0]!.gatewayToken);
    const watch = one!.watch(gw);
    const r = await one!.request(held('prod-ddl'), gw);
    await watch.until((x) => x.id === r.id);
    // The second replica learns the policy from its poll of config_version.
    await expect.poll(async () => (await cps[1]!.repo.snapshot()).approvalRules.length).toBe(3);
    const bob = bearer(await signDevToken(key, { sub: 'bob', groups: ['dba'] }));
    const carol = bearer(await signDevToken(key, { sub: 'carol', groups: ['dba'] }));
    await two!.decide(r.id, bob);
    await two!.decide(r.id, carol);
    const seen = await watch.until((x) => x.id === r.id && x.state === 'approved');
    expect(seen.decisions.map((d) => d.approver)).toEqual(['bob', 'carol']);
    watch.cancel();
    one!.client.close();
    two!.client.close();
  });
});

describe('webhooks', () => {
  const dir = tempDir();
  let cp: ControlPlane;
  let server: Server;
  const got: { path: string; body: any }[] = [];
  let failures = 2;

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        if (req.url === '/flaky' && failures-- > 0) return void res.writeHead(503).end();
        got.push({ path: req.url!, body: JSON.parse(body) });
        res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const key = await ensureDevKey(dir.path);
    cp = await startControlPlane({
      listen: '127.0.0.1:0',
      dataDir: dir.path,
      pollIntervalMs: 0,
      approvalWebhooks: [`http://127.0.0.1:${port}/flaky`, `http://127.0.0.1:${port}/slack`],
      approvalWebhookFormat: undefined,
    });
    await cp.repo.applyPolicy({ yaml: policy(publicJwks(key)), author: 't', dryRun: false });
  });
  afterAll(async () => {
    await cp?.close();
    server?.close();
    dir.remove();
  });

  it('POSTs each new request, retrying with backoff until the receiver takes it', async () => {
    const a = api(cp.address);
    const r = await a.request(held('prod-ddl'), bearer(cp.gatewayToken));
    await expect.poll(() => got.filter((g) => g.path === '/flaky').length, { timeout: 15_000 }).toBe(1);
    const body = got.find((g) => g.path === '/flaky')!.body;
    expect(body).toMatchObject({ type: 'approval.requested', approval: { id: r.id, rule: 'prod-ddl', state: 'pending' }, approve: `warden approvals approve ${r.id}` });
    expect(failures).toBeLessThan(0);
    a.client.close();
  });
});
