// warden approvals: list, show, approve and deny against a running control
// plane, with a person's token from --token or WARDEN_TOKEN.
import type { ApprovalRequest } from '@warden/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { webhookBody } from '../src/approvals/webhook.js';
import { ensureDevKey, publicJwks, signDevToken } from '../src/local/dev-issuer.js';
import { startControlPlane, type ControlPlane } from '../src/server/start.js';
import { APPROVAL_BASE } from './policy-fixtures.js';
import { cleanEnv, runWarden, tempDir } from './helpers.js';

const dir = tempDir();
let cp: ControlPlane;
let id: string;
let env: NodeJS.ProcessEnv;
let bob: string;

beforeAll(async () => {
  const key = await ensureDevKey(dir.path);
  cp = await startControlPlane({ listen: '127.0.0.1:0', dataDir: dir.path, pollIntervalMs: 0 });
  const yaml = APPROVAL_BASE.replace('issuers:\n', `issuers:\n  - name: people\n    issuer_url: urn:warden:local-dev\n    audiences: [warden]\n    jwks_json: '${publicJwks(key)}'\n`) +
    'approvals:\n  - name: prod-ddl\n    resource: shop\n    kinds: [ALTER TABLE]\n    approvers: [dba]\n';
  await cp.repo.applyPolicy({ yaml, author: 't', dryRun: false });
  const r = await cp.approvals.create({
    request: { rule: 'prod-ddl', identity: 'ci-deploy', resource: 'shop', sql: 'ALTER TABLE orders ADD COLUMN note text', parameters: [], fingerprint: 'f', sessionId: 's', gatewayId: 'gw', reason: '', why: 'ALTER TABLE public.orders' } as unknown as ApprovalRequest,
    rule: (await cp.repo.snapshot()).approvalRules[0]!,
    now: new Date(),
  });
  id = r.stored.approval.id;
  env = cleanEnv({ WARDEN_CONTROL_PLANE: cp.address, WARDEN_DATA_DIR: dir.path });
  bob = await signDevToken(key, { sub: 'bob', groups: ['dba'] });
});
afterAll(async () => {
  await cp?.close();
  dir.remove();
});

describe('warden approvals', () => {
  it('lists and shows with the admin token', async () => {
    const list = await runWarden(['approvals', 'list'], env);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`${id}\\s+pending\\s+ci-deploy\\s+shop\\s+ALTER TABLE public.orders\\s+0 of 1`));
    const show = await runWarden(['approvals', 'show', id], env);
    expect(show.stdout).toContain('statement   ALTER TABLE orders ADD COLUMN note text');
    expect(show.stdout).toContain(`Approve: warden approvals approve ${id}`);
  });

  it('refuses to approve without a person, or as someone outside the approver groups', async () => {
    const none = await runWarden(['approvals', 'approve', id], env);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain('approve needs your token as an approver: pass --token TOKEN or set WARDEN_TOKEN');
    const key = await ensureDevKey(dir.path);
    const alice = await signDevToken(key, { sub: 'alice', groups: ['dev'] });
    const out = await runWarden(['approvals', 'approve', id], { ...env, WARDEN_TOKEN: alice });
    expect(out.stderr.trim()).toBe(`error: alice may not approve ${id}: they are not in an approver group (dba) of rule prod-ddl`);
    expect(out.stderr).not.toContain(alice);
    const deny = await runWarden(['approvals', 'deny', id, '--token', bob], env);
    expect(deny.stderr).toContain('deny needs --reason TEXT');
  });

  it('approves with --token and says until when the statement may run', async () => {
    const out = await runWarden(['approvals', 'approve', id, '--token', bob, '--reason', 'ok'], env);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(new RegExp(`^Approved ${id}: 1 of 1 \\(bob\\); the statement may run until `));
    expect(out.stdout).not.toContain(bob);
    const json = JSON.parse((await runWarden(['approvals', 'list', '--state', 'approved', '--json'], env)).stdout);
    expect(json[0]).toMatchObject({ id, state: 'approved', decisions: [{ approver: 'bob', reason: 'ok' }] });
  });
});

describe('webhook bodies', () => {
  it('are JSON with the approve command, or Slack text', () => {
    const a = { id: 'apr_x', rule: 'prod-ddl', identity: 'ci', resource: 'shop', sql: 'DROP TABLE t', why: 'DROP TABLE public.t', approvers: ['dba'], quorum: 1, expiresAt: 'soon', reason: '' } as unknown as ApprovalRequest;
    expect(JSON.parse(webhookBody(a, 'json'))).toMatchObject({ type: 'approval.requested', approval: { id: 'apr_x' }, approve: 'warden approvals approve apr_x' });
    const slack = JSON.parse(webhookBody(a, 'slack'));
    expect(Object.keys(slack)).toEqual(['text']);
    expect(slack.text).toContain('warden approvals approve apr_x');
  });
});
