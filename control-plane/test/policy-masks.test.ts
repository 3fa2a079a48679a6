// Masks in the policy file: validation (line:col of every mistake), change
// lines, and the store on both backends: apply, history, put, references,
// and the deployment's masking key.
import type { Mask } from '@warden/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatProblem } from '../src/policy/model.js';
import { diffStates, stateFromPolicy, summarize } from '../src/policy/state.js';
import { parsePolicy, validatePolicy } from '../src/policy/validate.js';
import { openStorage, type Storage } from '../src/storage/open.js';
import { configError, openTestStorage } from './helpers.js';

const BASE = `version: 1
issuers:
  - name: github
    issuer_url: https://token.actions.githubusercontent.com
    audiences: [warden]
identities:
  - name: ci-reader
    issuer: github
    match: { sub: "repo:acme/shop:*" }
  - name: demo-admin
    issuer: github
    match: { sub: admin }
resources:
  - name: shop
    agent: local
rules:
  - name: read
    resource: shop
    identities: [ci-reader, demo-admin]
`;

const PII = `masks:
  - name: pii
    resource: shop
    identities: [ci-reader]
    groups: [readers]
    exempt: { identities: [demo-admin], groups: [dba] }
    columns:
      - column: public.customers.card_number
        mask: partial
        keep: 4
      - column: public.customers.email
        mask: email
      - column: "*.*.ssn"
        mask: redact
        text: "XXX-XX-XXXX"
    detectors:
      - detector: card
        mask: partial
      - detector: regex
        pattern: "EMP-[0-9]{6}"
        mask: redact
    predicates: refuse
    on_invalid: null
`;
const GOOD = BASE + PII;

const fn = (f: Partial<{ fn: string; keep: number; text: string; char: string }>) => ({ fn: '', keep: 0, text: '', char: '', ...f });
const PII_MASK: Mask = {
  name: 'pii',
  resource: 'shop',
  identities: ['ci-reader'],
  groups: ['readers'],
  exemptIdentities: ['demo-admin'],
  exemptGroups: ['dba'],
  columns: [
    { pattern: 'public.customers.card_number', mask: fn({ fn: 'partial', keep: 4 }) },
    { pattern: 'public.customers.email', mask: fn({ fn: 'email' }) },
    { pattern: '*.*.ssn', mask: fn({ fn: 'redact', text: 'XXX-XX-XXXX' }) },
  ],
  detectors: [
    { detector: 'card', pattern: '', mask: fn({ fn: 'partial', keep: 4 }) },
    { detector: 'regex', pattern: 'EMP-[0-9]{6}', mask: fn({ fn: 'redact' }) },
  ],
  predicates: 'refuse',
  onInvalid: 'null',
};

const problems = (text: string) => {
  const r = validatePolicy(text);
  return r.ok ? [] : r.problems.map((p) => formatProblem(p, 'policy.yaml'));
};
/** BASE with these masks: the first entry starts on line 21. */
const withMasks = (masks: string) => `${BASE}masks:\n${masks}`;

describe('masks in the policy file', () => {
  it('reads an entry with its defaults filled in: keep 4, predicates refuse, on_invalid null', () => {
    expect(parsePolicy(GOOD).masks).toEqual([PII_MASK]);
    const bare = parsePolicy(withMasks('  - name: m\n    resource: shop\n    columns:\n      - { column: a.b.c, mask: partial }\n      - { column: a.b.d, mask: null }\n'));
    expect(bare.masks).toEqual([
      {
        name: 'm', resource: 'shop', identities: [], groups: [], exemptIdentities: [], exemptGroups: [],
        columns: [{ pattern: 'a.b.c', mask: fn({ fn: 'partial', keep: 4 }) }, { pattern: 'a.b.d', mask: fn({ fn: 'null' }) }],
        detectors: [], predicates: 'refuse', onInvalid: 'null',
      },
    ]);
    expect(parsePolicy(BASE).masks).toEqual([]);
  });

  it('reports each mistake at its node', () => {
    const file = withMasks(`  - name: pii
    resource: nowhere
    identities: [ci-reader, ghost]
    exempt: { identities: [nobody], groups: [dba] }
    columns:
      - column: public.customers.Email
        mask: email
        keep: 3
      - column: customers.email
        mask: partial
        keep: 0
        char: "ab"
      - column: public.t.c
        mask: scramble
      - column: public.t.d
        mask: hash
        text: x
    detectors:
      - detector: regex
        pattern: "[0-9]*"
        mask: redact
      - detector: regex
        pattern: "EMP-[0-9"
        mask: redact
      - detector: card
        pattern: "x"
        mask: partial
      - detector: regex
        mask: hash
      - detector: dna
        mask: hash
    predicates: sometimes
    on_invalid: skip
  - name: pii
    resource: shop
`);
    expect(problems(file)).toEqual([
      "policy.yaml:22:5: masks[0].resource 'nowhere' is not a resource in this file",
      "policy.yaml:23:29: masks[0].identities: 'ghost' is not an identity in this file",
      "policy.yaml:24:28: masks[0].exempt.identities: 'nobody' is not an identity in this file",
      "policy.yaml:26:9: masks[0].columns[0].column 'public.customers.Email' is invalid: give schema.table.column in lower case, as Postgres stores unquoted names",
      'policy.yaml:28:9: masks[0].columns[0].keep is only for mask partial, not email',
      "policy.yaml:29:9: masks[0].columns[1].column 'customers.email' is invalid: give schema.table.column, each part a name or *",
      'policy.yaml:31:9: masks[0].columns[1].keep must be from 1 to 64',
      'policy.yaml:32:9: masks[0].columns[1].char must be one character',
      'policy.yaml:34:9: masks[0].columns[2].mask must be one of redact, partial, hash, email, null',
      'policy.yaml:37:9: masks[0].columns[3].text is only for mask redact, not hash',
      "policy.yaml:40:9: masks[0].detectors[0].pattern '[0-9]*' matches the empty string; it must match at least one character",
      "policy.yaml:43:9: masks[0].detectors[1].pattern 'EMP-[0-9' is not a valid JavaScript regular expression (Invalid regular expression: /EMP-[0-9/g: Unterminated character class)",
      'policy.yaml:46:9: masks[0].detectors[2].pattern is only for detector regex, not card',
      'policy.yaml:48:9: masks[0].detectors[3] needs a pattern for detector regex',
      "policy.yaml:50:9: masks[0].detectors[4].detector must be one of card, email, phone, iban, ssn, regex",
      'policy.yaml:52:5: masks[0].predicates must be one of refuse, allow',
      'policy.yaml:53:5: masks[0].on_invalid must be one of null, refuse',
      'policy.yaml:54:5: masks[1] needs at least one of columns or detectors',
      "policy.yaml:54:5: masks[1].name: mask 'pii' is already defined at masks[0] (line 21)",
    ]);
    expect(problems(withMasks('  - name: m\n    resource: shop\n    columns: []\n    detectors: []\n'))).toEqual([
      'policy.yaml:21:5: masks[0] needs at least one of columns or detectors',
    ]);
    expect(problems(withMasks('  - name: m\n    resource: shop\n    columns: [{ column: a.b.c }]\n    colour: blue\n'))).toEqual([
      'policy.yaml:23:15: masks[0].columns[0].mask is required',
      'policy.yaml:24:5: masks[0].colour is not a known field; use name, resource, identities, groups, exempt, columns, detectors, predicates, on_invalid',
    ]);
  });

  it('lists added, removed and changed entries, and a change of their order', () => {
    const before = parsePolicy(GOOD);
    const other = '  - name: other\n    resource: shop\n    detectors: [{ detector: ssn, mask: redact }]\n';
    const changed = parsePolicy(
      GOOD.replace('        keep: 4\n', '        keep: 2\n        char: "#"\n')
        .replace('    predicates: refuse\n', '    predicates: allow\n')
        .replace('    on_invalid: null\n', '    on_invalid: refuse\n') + other,
    );
    const lines = diffStates(stateFromPolicy(before), stateFromPolicy(changed));
    expect(lines).toEqual([
      '+ mask other',
      '~ mask pii: columns [public.customers.card_number: partial(4), public.customers.email: email, *.*.ssn: redact("XXX-XX-XXXX")] -> ' +
        '[public.customers.card_number: partial(2, "#"), public.customers.email: email, *.*.ssn: redact("XXX-XX-XXXX")]',
      '~ mask pii: predicates refuse -> allow',
      '~ mask pii: on_invalid null -> refuse',
    ]);
    expect(summarize(lines)).toBe('added mask other; changed mask pii');
    expect(diffStates(stateFromPolicy(before), stateFromPolicy(parsePolicy(BASE)))).toEqual(['- mask pii']);

    const two = parsePolicy(GOOD + other);
    const swapped = parsePolicy(`${BASE}masks:\n${other}${PII.slice('masks:\n'.length)}`);
    expect(diffStates(stateFromPolicy(two), stateFromPolicy(swapped))).toEqual(['~ masks: order [pii, other] -> [other, pii]']);
    expect(diffStates(stateFromPolicy(two), stateFromPolicy(parsePolicy(GOOD + other)))).toEqual([]);
  });
});


describe.each(['pglite', 'postgres'] as const)('masks stored on %s', (kind) => {
  let storage: Storage;
  let options: { dataDir?: string; databaseUrl?: string };
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    ({ storage, options, cleanup } = await openTestStorage(kind));
  }, 60_000);

  afterAll(async () => {
    await storage?.close();
    await cleanup?.();
  });

  it('applies a file with masks, shows them in the snapshot in the file\'s order, and diffs and records changes', async () => {
    const repo = storage.repo;
    const other = '  - name: other\n    resource: shop\n    detectors: [{ detector: ssn, mask: redact }]\n';
    const first = await repo.applyPolicy({ yaml: GOOD + other, author: 'alice', dryRun: false });
    expect(first).toMatchObject({ version: 1, applied: true });
    expect(first.lines).toEqual(expect.arrayContaining(['+ mask other', '+ mask pii']));
    const snap = await repo.snapshot();
    expect(snap.masks.map((m) => m.name)).toEqual(['pii', 'other']);
    expect(snap.masks[0]).toEqual(PII_MASK);
    expect(snap.maskKey).toEqual(Buffer.alloc(0));

    // The same file again is no new version; another order is.
    expect(await repo.applyPolicy({ yaml: GOOD + other, author: '', dryRun: false })).toEqual({ version: 1, lines: [], applied: false });
    const swapped = `${BASE}masks:\n${other}${PII.slice('masks:\n'.length)}`;
    expect(await repo.applyPolicy({ yaml: swapped, author: 'bob', dryRun: true })).toEqual({
      version: 1,
      lines: ['~ masks: order [pii, other] -> [other, pii]'],
      applied: false,
    });
    await repo.applyPolicy({ yaml: swapped, author: 'bob', dryRun: false });
    expect((await repo.snapshot()).masks.map((m) => m.name)).toEqual(['other', 'pii']);

    const looser = swapped.replace('    predicates: refuse\n', '    predicates: allow\n');
    const res = await repo.applyPolicy({ yaml: looser, author: 'carol', dryRun: false });
    expect(res).toEqual({ version: 3, lines: ['~ mask pii: predicates refuse -> allow'], applied: true });
    const history = await repo.policyHistory();
    expect(history.map((h) => [h.version, h.author, h.summary])).toEqual([
      [3, 'carol', 'changed mask pii'],
      [2, 'bob', 'changed masks'],
      [1, 'alice', expect.stringContaining('added')],
    ]);
    expect(history[0]!.yaml).toBe(looser);

    // A file without masks removes them.
    expect((await repo.applyPolicy({ yaml: BASE, author: '', dryRun: false })).lines).toEqual(['- mask other', '- mask pii']);
    expect((await repo.snapshot()).masks).toEqual([]);
  });

  it('puts and replaces an entry by name, checking it and what it names', async () => {
    const repo = storage.repo;
    const v0 = await repo.version();
    const put = await repo.putMask({ ...PII_MASK, columns: [{ pattern: 'a.b.c', mask: fn({ fn: 'partial' }) }], identities: ['ci-reader', 'ci-reader'] });
    expect(put.columns[0]!.mask).toEqual(fn({ fn: 'partial', keep: 4 }));
    expect(put.identities).toEqual(['ci-reader']);
    await repo.putMask({ ...PII_MASK, name: 'second' });
    await repo.putMask({ ...PII_MASK, predicates: '', onInvalid: 'refuse' });
    expect(await repo.version()).toBe(v0 + 3);
    const snap = await repo.snapshot();
    // Replaced in place, with empty settings made explicit.
    expect(snap.masks).toEqual([{ ...PII_MASK, onInvalid: 'refuse' }, { ...PII_MASK, name: 'second' }]);

    const bad = [
      [{ ...PII_MASK, resource: 'nope' }, 'not_found', "resource 'nope' does not exist"],
      [{ ...PII_MASK, exemptIdentities: ['ghost'] }, 'not_found', "identity 'ghost' does not exist"],
      [{ ...PII_MASK, columns: [], detectors: [] }, 'invalid', "mask 'pii' needs at least one column or detector"],
      [{ ...PII_MASK, columns: [{ pattern: 'a.b', mask: fn({ fn: 'hash' }) }] }, 'invalid', "mask 'pii' columns[0] 'a.b' is invalid: give schema.table.column, each part a name or *"],
      [{ ...PII_MASK, columns: [{ pattern: 'a.b.c', mask: fn({ fn: 'hash', keep: 3 }) }] }, 'invalid', "mask 'pii' columns[0]: keep is only for mask partial, not hash"],
      [{ ...PII_MASK, columns: [{ pattern: 'a.b.c', mask: fn({ fn: 'partial', keep: 65 }) }] }, 'invalid', "mask 'pii' columns[0]: keep must be from 1 to 64"],
      [{ ...PII_MASK, detectors: [{ detector: 'regex', pattern: 'x?', mask: fn({ fn: 'redact' }) }] }, 'invalid', "mask 'pii' detectors[0]: pattern 'x?' matches the empty string; it must match at least one character"],
      [{ ...PII_MASK, predicates: 'maybe' }, 'invalid', "mask 'pii': predicates 'maybe' is not supported; use one of refuse, allow"],
    ] as const;
    for (const [m, errKind, message] of bad) {
      expect(await configError(repo.putMask(m as Mask))).toMatchObject({ kind: errKind, message });
    }

    // What masks name cannot go while they do.
    for (const g of (await repo.snapshot()).grants) await repo.deleteGrant(g.id);
    expect(await configError(repo.deleteIdentity('demo-admin'))).toMatchObject({
      kind: 'in_use',
      message: "identity 'demo-admin' is named by masks 'pii', 'second'; remove it there first",
    });
    expect(await configError(repo.deleteResource('shop'))).toMatchObject({ kind: 'in_use', message: "resource 'shop' still has masks 'pii', 'second'; remove them first" });
    await repo.deleteMask('pii');
    await repo.deleteMask('second');
    expect(await configError(repo.deleteMask('pii'))).toMatchObject({ kind: 'not_found' });
    await repo.deleteResource('shop');
  });

  it('makes the masking key once, and keeps it across a reopen', async () => {
    const key = await storage.repo.maskKey();
    expect(key).toHaveLength(32);
    expect(key.equals(Buffer.alloc(32))).toBe(false);
    expect(await storage.repo.maskKey()).toEqual(key);
    const before = await storage.repo.snapshot();
    await storage.close();
    storage = await openStorage(options);
    expect(await storage.repo.maskKey()).toEqual(key);
    // Making it is no configuration change, and the snapshot never holds it.
    expect(await storage.repo.snapshot()).toEqual(before);
  }, 30_000);
});
