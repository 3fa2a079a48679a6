// The policy file's validation (line:col of every mistake), which checks the
// file's shape with the JSON Schema published for editors.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ACCESS_LEVELS, ALGORITHMS, formatProblem, parseProblem } from '../src/policy/model.js';
import { diffStates, grantsOfRule, stateFromPolicy, stateFromStore, summarize } from '../src/policy/state.js';
import { PolicyInvalidError, parsePolicy, validatePolicy } from '../src/policy/validate.js';
import { DETECTORS, MASK_COLUMN, MASK_FUNCTIONS, MASK_ON_INVALID, MASK_PREDICATES, MAX_KEEP, MAX_REDACT_TEXT, MAX_REGEX } from '../src/storage/validate-mask.js';
import { NAME, SCHEMA_ENTRY, TABLE_ENTRY, TRUST_ENTRY } from '../src/storage/validate.js';

const root = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));
const SCHEMA = JSON.parse(readFileSync(root('control-plane/policy.schema.json'), 'utf8'));
/** Every policy file the repository ships; each must pass. */
const EXAMPLES = ['deploy/policy.example.yaml', 'test/fixtures/policy.yaml'];

const problems = (text: string, externalIssuers: string[] = []) => {
  const r = validatePolicy(text, { externalIssuers });
  return r.ok ? [] : r.problems.map((p) => formatProblem(p, 'policy.yaml'));
};

const GOOD = `version: 1
issuers:
  - name: github
    issuer_url: https://token.actions.githubusercontent.com
    audiences: [warden]
identities:
  - name: ci-deploy
    issuer: github
    match: { repository: acme/shop, ref: refs/heads/main }
    groups: [deployers]
  - name: ci-reader
    issuer: github
    match: { repository: "acme/*" }
resources:
  - name: shop-prod
    agent: dc1
    description: shop primary
rules:
  - name: ci-read-only
    resource: shop-prod
    identities: [ci-reader]
    groups: [readers]
    access: read
    schemas: { allow: [public], deny: [] }
    tables: { allow: [], deny: [public.secrets] }
  - name: deploys
    resource: shop-prod
    groups: [deployers]
    access: ddl
`;

describe('policy validation', () => {
  it('accepts a good file and normalizes it', () => {
    const p = parsePolicy(GOOD);
    expect(p.issuers).toEqual([
      { name: 'github', issuerUrl: 'https://token.actions.githubusercontent.com', audiences: ['warden'], jwksUri: '', jwksJson: '', algorithms: [] },
    ]);
    expect(p.identities[0]).toEqual({
      name: 'ci-deploy',
      issuer: 'github',
      match: [
        { claim: 'repository', value: 'acme/shop' },
        { claim: 'ref', value: 'refs/heads/main' },
      ],
      groups: ['deployers'],
    });
    expect(p.rules).toEqual([
      {
        name: 'ci-read-only',
        resource: 'shop-prod',
        identities: ['ci-reader'],
        groups: ['readers'],
        access: 'read',
        allowSchemas: ['public'],
        denySchemas: [],
        allowTables: [],
        denyTables: ['public.secrets'],
        trust: [],
      },
      {
        name: 'deploys',
        resource: 'shop-prod',
        identities: [],
        groups: ['deployers'],
        access: 'ddl',
        allowSchemas: [],
        denySchemas: [],
        allowTables: [],
        denyTables: [],
        trust: [],
      },
    ]);
  });

  it('reads a rule\'s trust list, and reports each bad entry at its node', () => {
    const withTrust = GOOD.replace(
      '    tables: { allow: [], deny: [public.secrets] }\n',
      '    tables: { allow: [], deny: [public.secrets] }\n    trust: [public.open_orders, billing.charge_card$v2, public.open_orders]\n',
    );
    expect(parsePolicy(withTrust).rules[0]!.trust).toEqual(['public.open_orders', 'billing.charge_card$v2']);
    const bad = GOOD.replace(
      '    tables: { allow: [], deny: [public.secrets] }\n',
      '    tables: { allow: [], deny: [public.secrets] }\n' +
        '    trust:\n' +
        '      - open_orders\n' +
        '      - Public.Open_Orders\n' +
        '      - "public.charge(int)"\n' +
        '      - public.orders.v\n' +
        '      - 1st.v\n' +
        '      - 42\n',
    );
    expect(problems(bad)).toEqual([
      "policy.yaml:27:9: rules[0].trust[0] 'open_orders' is invalid: give schema.name with the schema (a view or function is always named with its schema)",
      "policy.yaml:28:9: rules[0].trust[1] 'Public.Open_Orders' is invalid: give schema.name in lower case, as Postgres stores unquoted names",
      "policy.yaml:29:9: rules[0].trust[2] 'public.charge(int)' is invalid: give schema.name without argument types (it covers every function of that name)",
      "policy.yaml:30:9: rules[0].trust[3] 'public.orders.v' is invalid: give schema.name of a view or function, each part 1-63 of a-z, 0-9, _ or $ (not starting with a digit or $)",
      "policy.yaml:31:9: rules[0].trust[4] '1st.v' is invalid: give schema.name of a view or function, each part 1-63 of a-z, 0-9, _ or $ (not starting with a digit or $)",
      'policy.yaml:32:9: rules[0].trust[5] must be a string',
    ]);
    expect(problems(GOOD.replace('    access: ddl\n', '    access: ddl\n    trust: public.v\n'))).toEqual([
      'policy.yaml:30:5: rules[1].trust must be a list (write [public.v])',
    ]);
    expect(problems(GOOD.replace('    access: ddl\n', `    access: ddl\n    trust: [public.${'v'.repeat(64)}]\n`))).toHaveLength(1);
  });

  it('reports a bad access level at its line, as in the docs', () => {
    expect(problems(GOOD.replace('access: ddl', 'access: drop'))).toEqual([
      'policy.yaml:29:5: rules[1].access must be one of read, write, ddl, admin',
    ]);
  });

  it('reports YAML syntax errors with line and column', () => {
    expect(problems('version: 1\nrules: [\n')).toEqual([
      'policy.yaml:3:1: YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
    ]);
    expect(problems('version: 1\nversion: 1\n')).toEqual(['policy.yaml:2:1: YAML: Map keys must be unique']);
    expect(problems('')).toEqual(['policy.yaml:1:1: the policy file is empty; it needs at least version: 1']);
    expect(problems('- a\n- b\n')).toEqual(['policy.yaml:1:1: the policy file must be a mapping of version, issuers, identities, resources, rules, masks, approvals, console']);
  });

  it('reports every shape mistake at the offending node', () => {
    const text = `version: 2
colour: blue
issuers:
  - name: github
    issuer_url: https://token.actions.githubusercontent.com
    audiences: warden
    algorithms: [HS256]
identities:
  - name: CI
    issuer: github
    match: { repository: "acme/*/x" }
  - issuer: github
    match: {}
resources:
  - name: shop
    agent: dc1
    description: 42
rules:
  - name: r1
    resource: shop
    access: writ
    tables: { allow: [a.b.c], except: [x] }
`;
    expect(problems(text)).toEqual([
      'policy.yaml:1:1: version must be 1',
      'policy.yaml:2:1: colour is not a known field; use version, issuers, identities, resources, rules, masks, approvals, console',
      'policy.yaml:6:5: issuers[0].audiences must be a list (write [warden])',
      'policy.yaml:7:18: issuers[0].algorithms[0] \'HS256\' is not supported; use one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA',
      "policy.yaml:9:5: identities[0].name 'CI' is invalid: use 1-63 lowercase letters, digits, '-' or '_'",
      "policy.yaml:11:14: identities[0].match.repository 'acme/*/x' is invalid: '*' is only allowed at the end, as a prefix wildcard",
      'policy.yaml:12:5: identities[1].name is required',
      'policy.yaml:13:5: identities[1].match needs at least one claim (without one, every token of the issuer would match)',
      'policy.yaml:17:5: resources[0].description must be a string (quote it: "42")',
      'policy.yaml:19:5: rules[0] needs at least one of identities or groups',
      'policy.yaml:21:5: rules[0].access must be one of read, write, ddl, admin',
      "policy.yaml:22:23: rules[0].tables.allow[0] 'a.b.c' is invalid: give schema.table, or table for that name in any schema",
      'policy.yaml:22:31: rules[0].tables.except is not a known field; use allow, deny',
    ]);
  });

  it('checks references and unique names', () => {
    const text = `version: 1
identities:
  - name: ci
    issuer: gitlab
    match: { sub: x }
  - name: ci
    issuer: local-dev
    match: { sub: y }
resources:
  - name: shop
    agent: dc1
rules:
  - name: r
    resource: shop-prod
    identities: [ci, ghost]
`;
    expect(problems(text, ['local-dev'])).toEqual([
      "policy.yaml:4:5: identities[0].issuer 'gitlab' is not an issuer in this file; the file declares no issuers",
      "policy.yaml:6:5: identities[1].name: identity 'ci' is already defined at identities[0] (line 3)",
      "policy.yaml:14:5: rules[0].resource 'shop-prod' is not a resource in this file",
      "policy.yaml:15:22: rules[0].identities: 'ghost' is not an identity in this file",
    ]);
    // The local-dev issuer is only known where the caller says it exists.
    expect(problems(text.replace('gitlab', 'local-dev'))).toContain(
      "policy.yaml:7:5: identities[1].issuer 'local-dev' is not an issuer in this file; the file declares no issuers",
    );
  });

  it('applies the store\'s own checks and points at the part', () => {
    const text = `version: 1
issuers:
  - name: corp
    issuer_url: urn:corp
    audiences: [warden]
`;
    expect(problems(text)).toEqual([
      "policy.yaml:3:5: issuers[0]: issuer 'corp' has no JWKS URI or inline JWKS, so its keys come from OIDC discovery, which needs an http(s) issuer URL",
    ]);
  });

  it('throws all problems at once from parsePolicy, in the form the server sends', () => {
    let err: unknown;
    try {
      parsePolicy('version: 1\nrules:\n  - name: x\n');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolicyInvalidError);
    const lines = (err as Error).message.split('\n');
    expect(lines).toEqual(['3:5: rules[0].resource is required', '3:5: rules[0] needs at least one of identities or groups']);
    expect(parseProblem(lines[0]!)).toEqual({ line: 3, col: 5, message: 'rules[0].resource is required' });
  });

  it('accepts empty lists written as nothing, and aliases', () => {
    const p = parsePolicy('version: 1\nissuers:\nidentities:\nresources:\n  - &r { name: a, agent: b }\nrules:\n');
    expect(p.resources).toEqual([{ name: 'a', agent: 'b', description: '' }]);
  });
});

describe('change lines', () => {
  it('lists additions, removals and field changes, and expands rules to grants', () => {
    const before = parsePolicy(GOOD);
    const after = parsePolicy(
      GOOD.replace('access: read', 'access: write')
        .replace('identities: [ci-reader]', 'identities: [ci-reader, ci-deploy]')
        .replace(/  - name: deploys[\s\S]*$/, '  - name: extra\n    resource: shop-prod\n    groups: [ops]\n'),
    );
    expect(diffStates(stateFromPolicy(before), stateFromPolicy(after))).toEqual([
      '~ rule ci-read-only: identities [ci-reader] -> [ci-deploy, ci-reader]',
      '~ rule ci-read-only: access read -> write',
      '- rule deploys',
      '+ rule extra',
    ]);
    // Trust is a field of the rule like its scopes, carried by every grant of the rule.
    const trusting = parsePolicy(GOOD.replace('    access: ddl\n', '    access: ddl\n    trust: [public.v, audit.log_event]\n'));
    expect(diffStates(stateFromPolicy(before), stateFromPolicy(trusting))).toEqual(['~ rule deploys: trust [] -> [audit.log_event, public.v]']);
    expect(diffStates(stateFromPolicy(trusting), stateFromPolicy(before))).toEqual(['~ rule deploys: trust [audit.log_event, public.v] -> []']);
    const trustGrants = trusting.rules.flatMap(grantsOfRule);
    expect(trustGrants.map((g) => [g.rule, g.trust])).toEqual([
      ['ci-read-only', []],
      ['ci-read-only', []],
      ['deploys', ['public.v', 'audit.log_event']],
    ]);
    expect(diffStates(stateFromStore({ ...trusting, grants: trustGrants }), stateFromPolicy(trusting))).toEqual([]);
    expect(diffStates(stateFromStore({ ...trusting, grants: trustGrants }), stateFromPolicy(before))).toEqual([
      '~ rule deploys: trust [audit.log_event, public.v] -> []',
    ]);
    const grants = after.rules.flatMap(grantsOfRule);
    expect(grants.map((g) => [g.rule, g.identity, g.group, g.access])).toEqual([
      ['ci-read-only', 'ci-reader', '', 'write'],
      ['ci-read-only', 'ci-deploy', '', 'write'],
      ['ci-read-only', '', 'readers', 'write'],
      ['extra', '', 'ops', 'read'],
    ]);
    // Ids are stable, so re-applying keeps them; the store's grants read back as the same rules.
    expect(after.rules.flatMap(grantsOfRule)).toEqual(grants);
    const stored = stateFromStore({ ...after, grants });
    expect(diffStates(stored, stateFromPolicy(after))).toEqual([]);
    expect(summarize(['+ identity a', '~ rule r: access read -> write', '~ rule r: groups [] -> [x]', '- resource old'])).toBe(
      'added identity a; changed rule r; removed resource old',
    );
  });
});

// ---- the JSON Schema -------------------------------------------------------

describe('policy.schema.json', () => {
  const keys = (o: Record<string, unknown>) => Object.keys(o);
  const doc = readFileSync(root('docs/policy.md'), 'utf8');

  it('has the fields and required fields docs/policy.md lists, and no others', () => {
    const defs = SCHEMA.$defs;
    const parts: [string, Record<string, any>][] = [['issuers', defs.issuer], ['identities', defs.identity], ['resources', defs.resource], ['rules', defs.rule], ['masks', defs.mask]];
    for (const [part, schema] of parts) {
      const table = doc.split(`### \`${part}\``)[1]!.split('\n\n').find((chunk) => chunk.startsWith('| field'))!;
      const rows = [...table.matchAll(/^\| `(\w+)` \| ([^|]+) \|/gm)].map((m) => [m[1]!, m[2]!.trim()]);
      expect(keys(schema.properties), part).toEqual(rows.map(([field]) => field));
      expect(schema.required, part).toEqual(rows.filter(([, need]) => need === 'required').map(([field]) => field));
      expect(schema.additionalProperties).toBe(false);
    }
    // "one of these two" is the rule's anyOf.
    expect(defs.rule.anyOf.map((b: any) => b.required)).toEqual([['identities'], ['groups']]);
    for (const scope of [defs.schemaScope, defs.tableScope]) expect([keys(scope.properties), scope.additionalProperties]).toEqual([['allow', 'deny'], false]);
    expect(defs.mask.anyOf.map((b: any) => b.required)).toEqual([['columns'], ['detectors']]);
    // A mask's columns and detectors: the fields the docs' example and text name.
    expect([keys(defs.maskColumn.properties), defs.maskColumn.required]).toEqual([['column', 'mask', 'keep', 'char', 'text'], ['column', 'mask']]);
    expect([keys(defs.maskDetector.properties), defs.maskDetector.required]).toEqual([['detector', 'pattern', 'mask', 'keep', 'char', 'text'], ['detector', 'mask']]);
    expect(keys(defs.mask.properties.exempt.properties)).toEqual(['identities', 'groups']);
    expect([keys(SCHEMA.properties), SCHEMA.required, SCHEMA.additionalProperties]).toEqual([['version', 'issuers', 'identities', 'resources', 'rules', 'masks', 'approvals', 'console'], ['version'], false]);
  });

  it('allows the same values as the store\'s checks of grants made by hand', () => {
    const defs = SCHEMA.$defs;
    expect(defs.rule.properties.access.enum).toEqual([...ACCESS_LEVELS]);
    expect(defs.issuer.properties.algorithms.items.enum).toEqual([...ALGORITHMS]);
    expect(defs.name.pattern).toBe(NAME.source);
    expect(defs.schemaEntry.pattern).toBe(SCHEMA_ENTRY.source);
    expect(defs.tableEntry.pattern).toBe(TABLE_ENTRY.source);
    expect(defs.trustEntry.pattern).toBe(TRUST_ENTRY.source);
    expect(defs.rule.properties.trust.items).toEqual({ $ref: '#/$defs/trustEntry' });
    expect(SCHEMA.properties.version.const).toBe(1);
    // YAML's bare null counts as 'null' where that is a value.
    expect(defs.maskFunction.enum).toEqual([...MASK_FUNCTIONS, null]);
    expect(defs.maskDetector.properties.detector.enum).toEqual([...DETECTORS]);
    expect(defs.mask.properties.predicates.enum).toEqual([...MASK_PREDICATES]);
    expect(defs.mask.properties.on_invalid.enum).toEqual([...MASK_ON_INVALID, null]);
    expect(defs.maskColumnEntry.pattern).toBe(MASK_COLUMN.source);
    expect([defs.maskColumn.properties.keep.maximum, defs.maskColumn.properties.text.maxLength, defs.maskDetector.properties.pattern.maxLength]).toEqual([MAX_KEEP, MAX_REDACT_TEXT, MAX_REGEX]);
  });

  it('says every pattern in words, so nobody is shown a regular expression', () => {
    const patterned: string[] = [];
    (function walk(s: unknown, path: string): void {
      if (!s || typeof s !== 'object') return;
      const o = s as Record<string, unknown>;
      if (typeof o.pattern === 'string') patterned.push(typeof o.patternErrorMessage === 'string' ? '' : path);
      for (const [k, v] of Object.entries(o)) walk(v, `${path}/${k}`);
    })(SCHEMA, '#');
    expect(patterned.length).toBeGreaterThan(5);
    expect(patterned.filter(Boolean)).toEqual([]);
  });

  it.each(EXAMPLES)('%s passes', (file) => {
    const text = readFileSync(root(file), 'utf8');
    const r = validatePolicy(text, { externalIssuers: ['local-dev'] });
    expect(r.ok ? [] : r.problems).toEqual([]);
  });

  it('the docs example passes too', () => {
    const block = /```yaml\n([\s\S]*?)```/.exec(doc)![1]!;
    expect(validatePolicy(block).ok).toBe(true);
  });

  it.each([
    ['an unknown top-level key', 'colour: blue'],
    ['a bad access level', 'access: drop'],
    ['a rule without identities or groups', 'NO_SUBJECTS'],
    ['a bad algorithm', 'algorithms: [HS256]'],
    ['an invalid name', 'name: Shop'],
    ['a bad table entry', 'tables: { deny: [a.b.c] }'],
    ['a wildcard in the middle', 'match: { sub: "a*b" }'],
    ['a wrong version', 'version: 2'],
    ['a missing agent', 'NO_AGENT'],
    ['an unqualified trust entry', 'trust: [open_orders]'],
    ['a trust entry in upper case', 'trust: [public.Open_Orders]'],
    ['a trust entry with argument types', 'trust: ["public.charge(int)"]'],
    ['a trust entry with three parts', 'trust: [public.orders.v]'],
  ])('rejects %s', (_what, mistake) => {
    const base = `version: 1
issuers:
  - name: gh
    issuer_url: https://token.actions.githubusercontent.com
    audiences: [warden]
    algorithms: [RS256]
identities:
  - name: ci
    issuer: gh
    match: { sub: "repo:acme/*" }
resources:
  - name: shop
    agent: dc1
rules:
  - name: r
    resource: shop
    identities: [ci]
    access: read
    tables: { deny: [public.secrets] }
    trust: [public.open_orders]
`;
    const text =
      mistake === 'NO_SUBJECTS' ? base.replace('    identities: [ci]\n', '')
      : mistake === 'NO_AGENT' ? base.replace('    agent: dc1\n', '')
      : mistake === 'version: 2' ? base.replace('version: 1', mistake)
      : mistake === 'colour: blue' ? `${base}${mistake}\n`
      : mistake.startsWith('name:') ? base.replace('  - name: shop', `  - ${mistake}`).replace('resource: shop', 'resource: Shop')
      : base.replace(new RegExp(`${mistake.split(':')[0]}: .*`), mistake);
    expect(text).not.toBe(base);
    expect(validatePolicy(text).ok).toBe(false);
    // The unchanged file passes, so the mistake is what was caught.
    expect(validatePolicy(base).ok).toBe(true);
  });
});
