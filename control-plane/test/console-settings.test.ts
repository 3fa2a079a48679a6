// The policy file's console section: roles by group, sign-in issuers, and
// the change lines `warden policy diff` prints for them; and who a signed-in
// person is to the approvals service.
import { Identity, Issuer, Snapshot } from '@warden/proto';
import { describe, expect, it } from 'vitest';
import { callerOf } from '../src/console/api.js';
import type { SignIn } from '../src/console/sessions.js';
import { DEFAULT_ROLES, consoleSettingsOf, diffConsoleSettings, roleOf } from '../src/policy/console.js';
import { validatePolicy } from '../src/policy/validate.js';

const FILE = `version: 1
issuers:
  - name: corp
    issuer_url: https://login.example.com
    audiences: [warden]
    client_id: warden-console
    client_secret_env: CORP_SECRET
  - name: ci
    issuer_url: https://token.actions.githubusercontent.com
    audiences: [warden]
console:
  viewers: [security]
  approvers: [dba, sre]
  admins: [platform]
`;

describe('console settings', () => {
  it('reads roles and the issuers people sign in with from the file', () => {
    expect(validatePolicy(FILE).ok).toBe(true);
    expect(consoleSettingsOf(FILE)).toEqual({
      roles: { viewers: ['security'], approvers: ['dba', 'sre'], admins: ['platform'] },
      signIn: [{ name: 'corp', issuerUrl: 'https://login.example.com', clientId: 'warden-console', clientSecretEnv: 'CORP_SECRET' }],
    });
  });

  it('gives the groups named like the roles those roles when there is no file or section', () => {
    expect(consoleSettingsOf('').roles).toEqual(DEFAULT_ROLES);
    expect(consoleSettingsOf('version: 1\n').roles).toEqual(DEFAULT_ROLES);
  });

  it('takes the strongest role any group holds, and none for other groups', () => {
    const { roles } = consoleSettingsOf(FILE);
    expect(roleOf(roles, ['security'])).toBe('viewers');
    expect(roleOf(roles, ['security', 'sre'])).toBe('approvers');
    expect(roleOf(roles, ['sre', 'platform'])).toBe('admins');
    expect(roleOf(roles, ['marketing'])).toBeUndefined();
    expect(roleOf(roles, [])).toBeUndefined();
  });

  it('refuses a secret where the name of an environment variable belongs', () => {
    const checked = validatePolicy(FILE.replace('client_secret_env: CORP_SECRET', 'client_secret_env: "s3cr3t value!"'));
    expect(checked.ok).toBe(false);
    if (!checked.ok) expect(checked.problems.map((p) => p.message).join('\n')).toContain('use the name of an environment variable');
  });

  it('says what changed, in the lines of warden policy diff', () => {
    const after = FILE.replace('approvers: [dba, sre]', 'approvers: [dba]').replace('    client_secret_env: CORP_SECRET\n', '');
    expect(diffConsoleSettings(FILE, after)).toEqual([
      '~ console approvers: [dba, sre] -> [dba]',
      '~ console sign-in with corp: client warden-console (secret in $CORP_SECRET) -> client warden-console',
    ]);
    expect(diffConsoleSettings('', FILE)).toEqual([
      '~ console viewers: [viewers] -> [security]',
      '~ console approvers: [approvers] -> [dba, sre]',
      '~ console admins: [admins] -> [platform]',
      '~ console sign-in with corp: none -> client warden-console (secret in $CORP_SECRET)',
    ]);
    expect(diffConsoleSettings(FILE, FILE)).toEqual([]);
  });
});

describe('a signed-in person as an approver', () => {
  const snapshot = Snapshot.create({
    issuers: [Issuer.create({ name: 'corp', issuerUrl: 'https://login.example.com', audiences: ['warden'] })],
    identities: [Identity.create({ name: 'release-bot', issuer: 'corp', match: [{ claim: 'sub', value: 'erin-sub-7' }], groups: ['deployers'] })],
  });
  const signIn = (sub: string, issuer = 'corp'): SignIn => ({
    id: 'x',
    csrf: 'y',
    expiresAt: 0,
    person: { name: sub, display: sub, issuer, groups: ['dba'], claims: { sub } },
  });

  it('is also the identity its token matches, with that identity\'s groups, so it cannot approve that identity\'s requests', () => {
    expect(callerOf(signIn('erin-sub-7'), snapshot)).toEqual({ admin: false, person: 'erin-sub-7', identity: 'release-bot', groups: ['dba', 'deployers'] });
  });

  it('is only a person when no identity matches, or its issuer is not configured', () => {
    expect(callerOf(signIn('frank'), snapshot)).toEqual({ admin: false, person: 'frank', groups: ['dba'] });
    expect(callerOf(signIn('erin-sub-7', 'local-dev'), snapshot)).toEqual({ admin: false, person: 'erin-sub-7', groups: ['dba'] });
  });
});
