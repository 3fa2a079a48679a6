// Approval rules in the policy file: validation at line:col, change lines,
// and the store on both backends (apply, snapshot, references).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatProblem } from '../src/policy/model.js';
import { diffStates, stateFromPolicy } from '../src/policy/state.js';
import { parsePolicy, validatePolicy } from '../src/policy/validate.js';
import type { Storage } from '../src/storage/open.js';
import { configError, openTestStorage } from './helpers.js';
import { APPROVAL_BASE } from './policy-fixtures.js';


const PROD_DDL = `approvals:
  - name: prod-ddl
    resource: shop
    identities: [ci-deploy]
    kinds: [ALTER TABLE, DROP]
    objects: [public.orders]
    approvers: [dba]
`;

const problems = (text: string) => {
  const r = validatePolicy(text);
  return r.ok ? [] : r.problems.map((p) => formatProblem(p));
};

describe('approvals in the policy file', () => {
  it('fills in the defaults', () => {
    const p = parsePolicy(APPROVAL_BASE + PROD_DDL);
    expect(p.approvals).toEqual([
      {
        name: 'prod-ddl',
        resource: 'shop',
        identities: ['ci-deploy'],
        groups: [],
        kinds: ['ALTER TABLE', 'DROP'],
        objects: ['public.orders'],
        withoutWhere: false,
        rowsOver: 0,
        approvers: ['dba'],
        quorum: 1,
        requestTtlSeconds: 900,
        approvalTtlSeconds: 3600,
        mode: 'wait',
        waitTimeoutSeconds: 600,
      },
    ]);
  });

  it('reads every field', () => {
    const p = parsePolicy(`${APPROVAL_BASE}approvals:
  - name: big-writes
    resource: shop
    groups: [deployers]
    without_where: true
    rows_over: 1000
    approvers: [dba, sre]
    quorum: 2
    request_ttl: 30m
    approval_ttl: 2h
    mode: retry
`);
    expect(p.approvals[0]).toMatchObject({ withoutWhere: true, rowsOver: 1000, quorum: 2, requestTtlSeconds: 1800, approvalTtlSeconds: 7200, mode: 'retry', waitTimeoutSeconds: 600 });
  });

  it('reports each mistake at its line and column', () => {
    const text = `${APPROVAL_BASE}approvals:
  - name: a
    resource: nowhere
    identities: [nobody]
    kinds: [alter table]
    approvers: []
    quorum: 0
    request_ttl: 5x
  - name: b
    resource: shop
    approvers: [dba]
  - name: c
    resource: shop
    without_where: true
    approvers: [dba]
    request_ttl: 5m
    wait_timeout: 10m
  - name: c
    resource: shop
    rows_over: 10
    mode: retry
    wait_timeout: 1m
    approvers: [dba]
    approval_ttl: 8d
`;
    expect(problems(text)).toEqual([
      "20:5: approvals[0].resource 'nowhere' is not a resource in this file",
      "21:18: approvals[0].identities: 'nobody' is not an identity in this file",
      "22:13: approvals[0].kinds[0] 'alter table' is invalid: give a statement kind in upper-case words, such as ALTER TABLE, DROP or DELETE",
      '23:5: approvals[0].approvers needs at least one entry',
      '24:5: approvals[0].quorum must be from 1 to 10',
      "25:5: approvals[0].request_ttl '5x' is invalid: give a duration such as 30s, 15m, 1h or 1d",
      '26:5: approvals[1] needs at least one of kinds or without_where or rows_over',
      '34:5: approvals[2].wait_timeout (10m) must be at most request_ttl (5m): the request ends then',
      "35:5: approvals[3].name: approval 'c' is already defined at approvals[2] (line 29)",
      '39:5: approvals[3].wait_timeout is only for mode wait: in mode retry the client does not wait',
      "41:5: approvals[3].approval_ttl '8d' is invalid: give a duration from 1s to 7d, such as 30s, 15m, 1h or 1d",
    ]);
  });

  it('says what changed, field by field', () => {
    const from = stateFromPolicy(parsePolicy(APPROVAL_BASE + PROD_DDL));
    const to = stateFromPolicy(parsePolicy(APPROVAL_BASE + PROD_DDL.replace('approvers: [dba]', 'approvers: [dba]\n    quorum: 2\n    request_ttl: 1h\n    wait_timeout: 15m')));
    const none = stateFromPolicy(parsePolicy(APPROVAL_BASE));
    expect(diffStates(none, from)).toEqual(['+ approval prod-ddl']);
    expect(diffStates(from, to)).toEqual([
      '~ approval prod-ddl: quorum 1 -> 2',
      '~ approval prod-ddl: request_ttl 15m -> 1h',
      '~ approval prod-ddl: wait_timeout 10m -> 15m',
    ]);
    expect(diffStates(from, none)).toEqual(['- approval prod-ddl']);
  });
});

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`approval rules in the store (${kind})`, () => {
    let storage: Storage;
    let cleanup: () => Promise<void>;
    beforeAll(async () => {
      ({ storage, cleanup } = await openTestStorage(kind));
    });
    afterAll(async () => {
      await storage?.close();
      await cleanup?.();
    });

    it('applies, lists in the snapshot in file order, and diffs against the store', async () => {
      const two = `${PROD_DDL}  - name: a-wide
    resource: shop
    without_where: true
    approvers: [sre]
`;
      const out = await storage.repo.applyPolicy({ yaml: APPROVAL_BASE + two, author: 't', dryRun: false });
      expect(out.lines).toContain('+ approval prod-ddl');
      expect(out.lines).toContain('+ approval a-wide');
      const snap = await storage.repo.snapshot();
      expect(snap.approvalRules.map((r) => r.name)).toEqual(['prod-ddl', 'a-wide']);
      expect(snap.approvalRules[0]).toMatchObject({ kinds: ['ALTER TABLE', 'DROP'], requestTtlSeconds: 900 });

      const again = await storage.repo.applyPolicy({ yaml: APPROVAL_BASE + two, author: 't', dryRun: true });
      expect(again.lines).toEqual([]);
      const changed = await storage.repo.applyPolicy({ yaml: APPROVAL_BASE + two.replace('approvers: [sre]', 'approvers: [sre]\n    quorum: 2'), author: 't', dryRun: true });
      expect(changed.lines).toEqual(['~ approval a-wide: quorum 1 -> 2']);
    });

    it('keeps a resource and an identity that rules of approvals name', async () => {
      expect((await configError(storage.repo.deleteResource('shop'))).message).toMatch(/approvals|grants|masks/);
      await storage.repo.applyPolicy({ yaml: APPROVAL_BASE.replace('rules:\n  - name: deploy\n    resource: shop\n    identities: [ci-deploy]\n    access: ddl\n', '') + PROD_DDL, author: 't', dryRun: false });
      expect((await configError(storage.repo.deleteIdentity('ci-deploy'))).message).toBe("identity 'ci-deploy' is named by approvals 'prod-ddl'; remove it there first");
      expect((await configError(storage.repo.deleteResource('shop'))).message).toBe("resource 'shop' still has approvals 'prod-ddl'; remove them first");
    });
  });
}
