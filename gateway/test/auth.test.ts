import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, base64url, exportJWK, exportSPKI, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import type { Identity, Issuer, Snapshot } from '@warden/proto';
import {
  AuthError,
  TokenVerifier,
  authorize,
  compileAuthConfig,
  mapIdentity,
  type AuthCheck,
  type AuthConfig,
  type TokenVerifierOptions,
  type VerifiedToken,
} from '../src/auth/index.js';
import { MAX_ENTRIES, VerifiedTokenCache, type Verification } from '../src/auth/cache.js';

// ---------------------------------------------------------------------------
// Keys, a JWKS / discovery server, and token helpers.
// ---------------------------------------------------------------------------

interface TestKey {
  alg: 'RS256' | 'ES256';
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
}

async function makeKey(alg: 'RS256' | 'ES256', kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, publicKey, jwk };
}

const jwks = (...keys: TestKey[]) => ({ keys: keys.map((k) => k.jwk) });

type Route = () => { status: number; body: unknown };
const routes = new Map<string, Route>();
const hits = new Map<string, number>();
let server: Server;
let base: string;

const hitCount = (path: string) => hits.get(path) ?? 0;
const json = (body: unknown): Route => () => ({ status: 200, body });

function nowSec(): number {
  return Math.floor(Date.now() / 1000);
}

interface TokenSpec {
  iss?: string;
  aud?: string | string[];
  sub?: string;
  exp?: number | null; // null: no exp claim
  nbf?: number;
  kid?: string | null; // null: no kid header
  claims?: Record<string, unknown>;
}

async function sign(key: TestKey, spec: TokenSpec = {}): Promise<string> {
  const payload: Record<string, unknown> = { ...spec.claims };
  payload.iss = spec.iss ?? ISS_RSA();
  if (spec.aud !== undefined) payload.aud = spec.aud;
  else payload.aud = 'warden';
  payload.sub = spec.sub ?? 'repo:acme/api:ref:refs/heads/main';
  payload.iat = nowSec();
  if (spec.exp !== null) payload.exp = spec.exp ?? nowSec() + 300;
  if (spec.nbf !== undefined) payload.nbf = spec.nbf;
  const header: { alg: string; typ: string; kid?: string } = { alg: key.alg, typ: 'JWT' };
  if (spec.kid !== null) header.kid = spec.kid ?? key.kid;
  return new SignJWT(payload).setProtectedHeader(header).sign(key.privateKey);
}

const b64json = (value: unknown) => base64url.encode(JSON.stringify(value));

// Every refusal seen in this file, checked at the end for token leaks.
const refusals: { token: string; error: AuthError }[] = [];

async function expectRefused(
  verifier: TokenVerifier,
  token: string | undefined,
  check: AuthCheck,
  ...fragments: string[]
): Promise<AuthError> {
  let caught: unknown;
  try {
    await verifier.verify(token);
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected the token to be refused with ${check}`).toBeInstanceOf(AuthError);
  const error = caught as AuthError;
  expect({ check: error.check, message: error.message }).toMatchObject({ check });
  for (const fragment of fragments) expect(error.message).toContain(fragment);
  if (token) {
    refusals.push({ token, error });
    assertNoLeak(token, error);
  }
  return error;
}

function assertNoLeak(token: string, error: AuthError): void {
  const texts = [error.message, error.hint ?? '', String(error.stack)];
  const trimmed = token.trim();
  if (trimmed === '') return;
  const signature = trimmed.split('.')[2] ?? '';
  for (const text of texts) {
    expect(text.includes(trimmed)).toBe(false);
    if (signature.length >= 8) expect(text.includes(signature)).toBe(false);
  }
}

// ---------------------------------------------------------------------------
// Configuration used by most tests.
// ---------------------------------------------------------------------------

let rsa: TestKey;
let ec: TestKey;
let stranger: TestKey; // never published
let rotA: TestKey;
let rotB: TestKey;
let inlineA: TestKey;
let inlineB: TestKey;

const ISS_RSA = () => `${base}/rsa`; // OIDC discovery
const ISS_EC = 'https://ec.example'; // explicit jwks_uri
const ISS_LOCAL = 'urn:warden:local-dev'; // inline jwks_json
const ISS_ROT = () => `${base}/rot`; // discovery, rotating keys
const ISS_MISMATCH = () => `${base}/mismatch`;
const ISS_FLAKY = () => `${base}/flaky`;

function issuer(partial: Partial<Issuer> & { name: string; issuerUrl: string }): Issuer {
  return { audiences: ['warden'], jwksUri: '', jwksJson: '', algorithms: [], ...partial };
}

function identity(name: string, issuerName: string, match: [string, string][], groups: string[] = []): Identity {
  return { name, issuer: issuerName, match: match.map(([claim, value]) => ({ claim, value })), groups };
}

function snapshot(overrides: Partial<Snapshot> = {}): Snapshot {
  return {
    version: 1,
    issuers: [
      issuer({ name: 'github', issuerUrl: ISS_RSA() }),
      issuer({ name: 'ec', issuerUrl: ISS_EC, jwksUri: `${base}/ec/jwks`, audiences: ['warden', 'db'] }),
      issuer({
        name: 'local',
        issuerUrl: ISS_LOCAL,
        jwksJson: JSON.stringify({ keys: [strip(inlineA.jwk), strip(inlineB.jwk)] }),
      }),
      issuer({ name: 'rot', issuerUrl: ISS_ROT() }),
      issuer({ name: 'mismatch', issuerUrl: ISS_MISMATCH() }),
      issuer({ name: 'flaky', issuerUrl: ISS_FLAKY() }),
      issuer({ name: 'rsa-only', issuerUrl: 'https://rsa-only.example', jwksUri: `${base}/rsa/jwks`, algorithms: ['RS256', 'HS256'] }),
    ],
    identities: [
      identity('api-deploy', 'github', [['sub', 'repo:acme/api:ref:refs/heads/main']], ['deployers']),
      identity('acme-ci', 'github', [['sub', 'repo:acme/*']], ['ci']),
      identity('ec-svc', 'ec', [['sub', 'svc-*']], []),
      identity('dev', 'local', [['sub', '*']], ['developers']),
      identity('rot-svc', 'rot', [['sub', '*']], []),
      identity('flaky-svc', 'flaky', [['sub', '*']], []),
    ],
    resources: [
      { name: 'shop', agent: 'agent-1', description: '' },
      { name: 'billing', agent: 'agent-2', description: '' },
      { name: 'secrets', agent: 'agent-2', description: '' },
    ],
    grants: [
      { id: 'g1', resource: 'shop', identity: 'api-deploy', group: '' },
      { id: 'g2', resource: 'billing', identity: '', group: 'ci' },
    ],
    agents: [],
    gateways: [],
    ...overrides,
  };
}

/** Inline keys without kid/alg so that several keys match a kid-less token. */
function strip(jwk: JWK): JWK {
  const { kid: _kid, alg: _alg, ...rest } = jwk;
  return rest;
}

function verifierFor(snap: Snapshot = snapshot(), options: TokenVerifierOptions = {}): { verifier: TokenVerifier; config: AuthConfig } {
  const verifier = new TokenVerifier({ discoveryRetryMs: 300, ...options });
  const config = compileAuthConfig(snap);
  verifier.update(config);
  return { verifier, config };
}

beforeAll(async () => {
  [rsa, ec, stranger, rotA, rotB, inlineA, inlineB] = await Promise.all([
    makeKey('RS256', 'rsa-1'),
    makeKey('ES256', 'ec-1'),
    makeKey('RS256', 'rsa-1'), // same kid as the real key, different key
    makeKey('RS256', 'rot-a'),
    makeKey('RS256', 'rot-b'),
    makeKey('RS256', 'inline-a'),
    makeKey('RS256', 'inline-b'),
  ]);
  server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    hits.set(path, hitCount(path) + 1);
    const route = routes.get(path);
    const { status, body } = route ? route() : { status: 404, body: { error: 'not found' } };
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  routes.set('/rsa/.well-known/openid-configuration', () => ({
    status: 200,
    body: { issuer: ISS_RSA(), jwks_uri: `${base}/rsa/jwks` },
  }));
  routes.set('/rsa/jwks', json(jwks(rsa)));
  routes.set('/ec/jwks', json(jwks(ec)));
  routes.set('/rot/.well-known/openid-configuration', () => ({
    status: 200,
    body: { issuer: ISS_ROT(), jwks_uri: `${base}/rot/jwks` },
  }));
  routes.set('/rot/jwks', json(jwks(rotA)));
  routes.set('/mismatch/.well-known/openid-configuration', () => ({
    status: 200,
    body: { issuer: `${base}/somebody-else`, jwks_uri: `${base}/rsa/jwks` },
  }));
  routes.set('/flaky/.well-known/openid-configuration', () => ({ status: 500, body: { error: 'down' } }));
  routes.set('/flaky/jwks', json(jwks(rsa)));
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

// ---------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------

describe('compileAuthConfig', () => {
  it('indexes issuers, identities, resources and grants', () => {
    const config = compileAuthConfig(snapshot());
    expect(config.version).toBe(1);
    expect(config.issuersByUrl.get(ISS_RSA())?.issuer.name).toBe('github');
    expect(config.issuersByUrl.get(ISS_RSA())?.algorithms).toEqual(['RS256', 'ES256']);
    expect(config.identitiesByIssuer.get('github')?.map((i) => i.name)).toEqual(['api-deploy', 'acme-ci']);
    expect(config.resourcesByName.get('shop')?.agent).toBe('agent-1');
    expect([...(config.grantsByResource.get('shop')?.identities ?? [])]).toEqual(['api-deploy']);
    expect([...(config.grantsByResource.get('billing')?.groups ?? [])]).toEqual(['ci']);
  });

  it('drops HMAC algorithms from an allow-list and warns about it', () => {
    const config = compileAuthConfig(snapshot());
    expect(config.issuersByUrl.get('https://rsa-only.example')?.algorithms).toEqual(['RS256']);
    expect(config.warnings.some((w) => w.includes('"HS256" is not allowed'))).toBe(true);
  });

  it('warns about duplicate issuer URLs, unknown issuers and grants on unknown resources', () => {
    const snap = snapshot();
    snap.issuers.push(issuer({ name: 'github-again', issuerUrl: ISS_RSA() }));
    snap.identities.push(identity('orphan', 'nobody', [['sub', 'x']]));
    snap.grants.push({ id: 'g9', resource: 'nowhere', identity: 'x', group: '' });
    const config = compileAuthConfig(snap);
    expect(config.issuersByUrl.get(ISS_RSA())?.issuer.name).toBe('github');
    expect(config.warnings).toEqual(
      expect.arrayContaining([
        expect.stringContaining('share issuer_url'),
        expect.stringContaining('identity "orphan" names unknown issuer "nobody"'),
        expect.stringContaining('grant g9 names unknown resource "nowhere"'),
      ]),
    );
  });
});

describe('TokenVerifier: valid tokens', () => {
  it('accepts an RS256 token (keys through OIDC discovery) and maps it', async () => {
    const { verifier, config } = verifierFor();
    const token = await sign(rsa, { claims: { groups: ['ops', 'deployers'] } });
    const verified = await verifier.verify(token);
    expect(verified.issuer.name).toBe('github');
    expect(verified.claims.sub).toBe('repo:acme/api:ref:refs/heads/main');
    const who = mapIdentity(config, verified);
    expect(who).toEqual({ identity: 'api-deploy', groups: ['deployers', 'ops'] });
    expect(authorize(config, 'shop', who).agent).toBe('agent-1');
  });

  it('accepts an ES256 token (keys from an explicit jwks_uri) and maps it', async () => {
    const { verifier, config } = verifierFor();
    const token = await sign(ec, { iss: ISS_EC, aud: ['other', 'db'], sub: 'svc-reports' });
    const verified = await verifier.verify(token);
    expect(verified.issuer.name).toBe('ec');
    expect(mapIdentity(config, verified)).toEqual({ identity: 'ec-svc', groups: [] });
  });

  it('accepts a token signed by the inline JWKS, trying each key when there is no kid', async () => {
    const { verifier, config } = verifierFor();
    const token = await sign(inlineB, { iss: ISS_LOCAL, sub: 'alice', kid: null, claims: { groups: ['x'] } });
    const verified = await verifier.verify(token);
    expect(mapIdentity(config, verified)).toEqual({ identity: 'dev', groups: ['developers', 'x'] });
  });

  it('accepts a token with surrounding whitespace (token files often end with a newline)', async () => {
    const { verifier } = verifierFor();
    const token = await sign(rsa);
    await expect(verifier.verify(`${token}\n`)).resolves.toMatchObject({ issuer: { name: 'github' } });
  });

  it('accepts exp and nbf within the 30 s clock skew', async () => {
    const { verifier } = verifierFor();
    await expect(verifier.verify(await sign(rsa, { exp: nowSec() - 15 }))).resolves.toBeDefined();
    await expect(verifier.verify(await sign(rsa, { nbf: nowSec() + 15 }))).resolves.toBeDefined();
  });

  it('uses the configured clock skew', async () => {
    const { verifier } = verifierFor(snapshot(), { clockToleranceSec: 0 });
    await expectRefused(verifier, await sign(rsa, { exp: nowSec() - 15 }), 'expired');
    await expectRefused(verifier, await sign(rsa, { nbf: nowSec() + 15 }), 'not_yet_valid');
  });
});

describe('TokenVerifier: refusals', () => {
  it('refuses a missing or empty password', async () => {
    const { verifier } = verifierFor();
    for (const password of [undefined, '', '   ']) {
      const err = await expectRefused(verifier, password, 'no_token');
      expect(err.message).toBe('no token: send your OIDC token as the password');
    }
  });

  it('refuses passwords that are not JWS compact JWTs', async () => {
    const { verifier } = verifierFor();
    await expectRefused(verifier, 'hunter2-not-a-token', 'malformed', 'not a JWT');
    await expectRefused(verifier, 'abc.def', 'malformed', 'not a JWT');
    await expectRefused(verifier, 'a b.c d.e f', 'malformed', 'not a JWT');
    await expectRefused(verifier, `${b64json({ alg: 'RS256' })}.not-json-at-all.c2ln`, 'malformed', 'claims');
    await expectRefused(verifier, `bm9wZQ.${b64json({ iss: ISS_RSA() })}.c2ln`, 'malformed', 'header');
    await expectRefused(verifier, `${b64json({ alg: 'RS256' })}.${b64json([1, 2])}.c2ln`, 'malformed', 'claims');
    await expectRefused(verifier, 'aaaa.bbbb.cccc.dddd.eeee', 'malformed', 'encrypted JWT (JWE)');
    await expectRefused(verifier, `${b64json({ typ: 'JWT' })}.${b64json({ iss: ISS_RSA() })}.c2ln`, 'malformed', 'no "alg"');
  });

  it('refuses alg "none"', async () => {
    const { verifier } = verifierFor();
    const payload = { iss: ISS_RSA(), aud: 'warden', sub: 'repo:acme/api:ref:refs/heads/main', exp: nowSec() + 300 };
    for (const alg of ['none', 'None', 'NONE']) {
      const token = `${b64json({ alg, typ: 'JWT' })}.${b64json(payload)}.`;
      await expectRefused(verifier, token, 'algorithm', 'unsigned (alg "none")');
    }
  });

  it('refuses HS256 tokens signed with the issuer public key (PEM or JWK bytes) as the HMAC secret', async () => {
    const { verifier } = verifierFor();
    const pem = await exportSPKI(rsa.publicKey);
    const secrets = [new TextEncoder().encode(pem), new TextEncoder().encode(JSON.stringify(rsa.jwk))];
    for (const iss of [ISS_RSA(), 'https://rsa-only.example']) {
      for (const secret of secrets) {
        const token = await new SignJWT({ iss, aud: 'warden', sub: 'repo:acme/api:ref:refs/heads/main' })
          .setProtectedHeader({ alg: 'HS256', kid: rsa.kid })
          .setExpirationTime('5m')
          .sign(secret);
        const err = await expectRefused(verifier, token, 'algorithm', '"HS256"', 'HMAC algorithms are never accepted');
        expect(err.message).toContain(iss === ISS_RSA() ? 'allowed: RS256, ES256' : 'allowed: RS256');
      }
    }
  });

  it('refuses an algorithm the issuer does not allow', async () => {
    const { verifier } = verifierFor();
    const ecForRsaOnly = await sign(ec, { iss: 'https://rsa-only.example' });
    await expectRefused(verifier, ecForRsaOnly, 'algorithm', '"ES256"', 'issuer "rsa-only" does not allow', 'allowed: RS256');
  });

  it('refuses an untrusted issuer and names it', async () => {
    const { verifier } = verifierFor();
    await expectRefused(
      verifier,
      await sign(rsa, { iss: 'https://evil.example' }),
      'issuer',
      'token issuer "https://evil.example" is not trusted',
    );
    const err = await expectRefused(verifier, await sign(rsa, { iss: `${ISS_RSA()}/` }), 'issuer', 'trailing slash');
    expect(err.message).toContain(JSON.stringify(ISS_RSA()));
    const noIss = `${b64json({ alg: 'RS256' })}.${b64json({ aud: 'warden', exp: nowSec() + 60 })}.c2ln`;
    await expectRefused(verifier, noIss, 'issuer', 'no "iss"');
  });

  it('refuses a token whose signature does not verify', async () => {
    const { verifier } = verifierFor();
    // Right kid, wrong key.
    await expectRefused(verifier, await sign(stranger), 'signature', 'does not verify', 'issuer "github"');
    // Altered claims.
    const [h, , s] = (await sign(rsa)).split('.');
    const forged = `${h}.${b64json({ iss: ISS_RSA(), aud: 'warden', sub: 'repo:acme/admin', exp: nowSec() + 600 })}.${s}`;
    await expectRefused(verifier, forged, 'signature', 'does not verify');
  });

  it('refuses a token signed by an unknown key', async () => {
    const { verifier } = verifierFor();
    await expectRefused(verifier, await sign(stranger, { kid: 'no-such-kid' }), 'unknown_key', 'key id "no-such-kid"', 'issuer "github"', '/rsa/.well-known/openid-configuration');
  });

  it('refuses an expired token and says when it expired', async () => {
    const { verifier } = verifierFor();
    const exp = nowSec() - 3600;
    const err = await expectRefused(verifier, await sign(rsa, { exp }), 'expired', new Date(exp * 1000).toISOString());
    expect(err.message).toMatch(/\(60 min ago\)|\(59 min ago\)/);
    expect(err.message).toContain('30 s allowed for clock skew');
  });

  it('refuses a token that is not valid yet (nbf)', async () => {
    const { verifier } = verifierFor();
    const nbf = nowSec() + 600;
    await expectRefused(verifier, await sign(rsa, { nbf }), 'not_yet_valid', `not valid before ${new Date(nbf * 1000).toISOString()}`);
  });

  it('refuses the wrong audience and lists the accepted ones', async () => {
    const { verifier } = verifierFor();
    const err = await expectRefused(verifier, await sign(rsa, { aud: ['sts.amazonaws.com', 'x'] }), 'audience');
    expect(err.message).toBe(
      'the token audience "sts.amazonaws.com", "x" is not accepted; issuer "github" accepts "warden": request the token for that audience',
    );
    await expectRefused(verifier, await sign(ec, { iss: ISS_EC, aud: 'nope', sub: 'svc-a' }), 'audience', 'accepts "warden", "db"');
  });

  it('refuses a token without exp', async () => {
    const { verifier } = verifierFor();
    await expectRefused(verifier, await sign(rsa, { exp: null }), 'missing_exp', 'no "exp" (expiry) claim');
  });

  it('never puts the token into an error message', () => {
    expect(refusals.length).toBeGreaterThan(20);
    for (const { token, error } of refusals) assertNoLeak(token, error);
  });
});

describe('TokenVerifier: keys', () => {
  it('picks up a rotated key from the JWKS (refetch on unknown kid)', async () => {
    routes.set('/rot/jwks', json(jwks(rotA)));
    const { verifier } = verifierFor(snapshot(), { cooldownMs: 0 });
    await expect(verifier.verify(await sign(rotA, { iss: ISS_ROT() }))).resolves.toBeDefined();
    const before = hitCount('/rot/jwks');

    routes.set('/rot/jwks', json(jwks(rotB)));
    await expect(verifier.verify(await sign(rotB, { iss: ISS_ROT() }))).resolves.toBeDefined();
    expect(hitCount('/rot/jwks')).toBe(before + 1);

    // The retired key is gone after the refetch.
    await expectRefused(verifier, await sign(rotA, { iss: ISS_ROT() }), 'unknown_key', 'key id "rot-a"');
  });

  it('does not refetch the JWKS for every unknown kid (cooldown)', async () => {
    routes.set('/rot/jwks', json(jwks(rotA)));
    const { verifier } = verifierFor(); // default 30 s cooldown
    await verifier.verify(await sign(rotA, { iss: ISS_ROT() }));
    const before = hitCount('/rot/jwks');
    for (let i = 0; i < 3; i++) {
      await expectRefused(verifier, await sign(rotB, { iss: ISS_ROT() }), 'unknown_key', 'try again in a minute');
    }
    expect(hitCount('/rot/jwks')).toBe(before);
  });

  it('caches discovery, also across concurrent first connections', async () => {
    const { verifier } = verifierFor();
    const path = '/rsa/.well-known/openid-configuration';
    const before = [hitCount(path), hitCount('/rsa/jwks')];
    const token = await sign(rsa);
    await Promise.all(Array.from({ length: 5 }, () => verifier.verify(token)));
    for (let i = 0; i < 3; i++) await verifier.verify(await sign(rsa));
    expect([hitCount(path), hitCount('/rsa/jwks')]).toEqual([before[0]! + 1, before[1]! + 1]);
  });

  it('refuses keys when the discovery document names another issuer', async () => {
    const { verifier } = verifierFor();
    const token = await sign(rsa, { iss: ISS_MISMATCH() });
    const err = await expectRefused(verifier, token, 'keys_unavailable', `names issuer "${base}/somebody-else"`, 'must be equal');
    expect(err.message).toContain(`issuer_url "${ISS_MISMATCH()}"`);
    expect(err.sqlstate).toBe('28000');
  });

  it('retries a failed discovery later instead of caching the failure', async () => {
    routes.set('/flaky/.well-known/openid-configuration', () => ({ status: 500, body: {} }));
    const path = '/flaky/.well-known/openid-configuration';
    const { verifier } = verifierFor(snapshot(), { discoveryRetryMs: 300 });
    const token = await sign(rsa, { iss: ISS_FLAKY(), kid: rsa.kid });
    const before = hitCount(path);

    await expectRefused(verifier, token, 'keys_unavailable', 'HTTP 500', 'try again later');
    expect(hitCount(path)).toBe(before + 1);

    // Fixed, but within the retry interval: the failure is remembered, no new request.
    routes.set(path, () => ({ status: 200, body: { issuer: ISS_FLAKY(), jwks_uri: `${base}/flaky/jwks` } }));
    await expectRefused(verifier, token, 'keys_unavailable', 'HTTP 500');
    expect(hitCount(path)).toBe(before + 1);

    await new Promise((resolve) => setTimeout(resolve, 350));
    await expect(verifier.verify(token)).resolves.toMatchObject({ issuer: { name: 'flaky' } });
    expect(hitCount(path)).toBe(before + 2);
  });

  it('reports an unreachable JWKS as keys_unavailable', async () => {
    const snap = snapshot();
    snap.issuers.push(issuer({ name: 'gone', issuerUrl: 'https://gone.example', jwksUri: `${base}/gone/jwks` }));
    const { verifier } = verifierFor(snap);
    await expectRefused(verifier, await sign(rsa, { iss: 'https://gone.example' }), 'keys_unavailable', `${base}/gone/jwks`);
  });

  it('keeps key sources across snapshot updates when the issuer did not change', async () => {
    const { verifier } = verifierFor();
    const discovery = '/rsa/.well-known/openid-configuration';
    await verifier.verify(await sign(rsa));
    const [d0, j0] = [hitCount(discovery), hitCount('/rsa/jwks')];

    const next = snapshot({ version: 2 });
    next.issuers[0] = { ...next.issuers[0]!, audiences: ['warden', 'more'] }; // not a key setting
    next.resources.push({ name: 'new', agent: 'agent-3', description: '' });
    verifier.update(compileAuthConfig(next));
    await verifier.verify(await sign(rsa, { aud: 'more' }));
    expect([hitCount(discovery), hitCount('/rsa/jwks')]).toEqual([d0, j0]);

    // Changing where the keys come from makes a new source.
    const moved = snapshot({ version: 3 });
    moved.issuers[0] = { ...moved.issuers[0]!, jwksUri: `${base}/rsa/jwks` };
    verifier.update(compileAuthConfig(moved));
    await verifier.verify(await sign(rsa));
    expect([hitCount(discovery), hitCount('/rsa/jwks')]).toEqual([d0, j0 + 1]);
  });

  it('stops trusting an issuer removed by an update', async () => {
    const { verifier } = verifierFor();
    const token = await sign(rsa);
    await verifier.verify(token);
    verifier.update(compileAuthConfig(snapshot({ version: 2, issuers: [] })));
    await expectRefused(verifier, token, 'issuer', 'not trusted');
  });

  it('reports a broken inline JWKS', async () => {
    const snap = snapshot({ issuers: [issuer({ name: 'local', issuerUrl: ISS_LOCAL, jwksJson: '{not json' })] });
    const { verifier } = verifierFor(snap);
    await expectRefused(verifier, await sign(inlineA, { iss: ISS_LOCAL }), 'keys_unavailable', 'inline JWKS of issuer "local"');
  });
});

describe('TokenVerifier: cache of verified tokens', () => {
  it('checks the same token bytes once, and again once the token has expired', async () => {
    let clock = Date.now();
    const { verifier } = verifierFor(snapshot(), { now: () => clock });
    const exp = nowSec() + 300;
    const token = await sign(ec, { iss: ISS_EC, sub: 'svc-a', exp });
    const first = await verifier.verify(token);
    // The same result object: no second signature check.
    expect(await verifier.verify(token)).toBe(first);
    expect(await verifier.verify(` ${token}\n`)).toBe(first);
    clock = exp * 1000;
    const again = await verifier.verify(token);
    expect(again).not.toBe(first);
    expect(again.claims).toEqual(first.claims);
  });

  it('checks other bytes in full while a token is cached', async () => {
    const { verifier } = verifierFor();
    const token = await sign(rsa);
    await verifier.verify(token);
    const [h, p, s] = token.split('.') as [string, string, string];
    const i = Math.floor(s.length / 2);
    const tampered = `${h}.${p}.${s.slice(0, i)}${s[i] === 'A' ? 'B' : 'A'}${s.slice(i + 1)}`;
    await expectRefused(verifier, tampered, 'signature', 'does not verify');
    const otherClaims = `${h}.${b64json({ iss: ISS_RSA(), aud: 'warden', sub: 'repo:acme/admin', exp: nowSec() + 600 })}.${s}`;
    await expectRefused(verifier, otherClaims, 'signature', 'does not verify');
  });

  it('checks every token afresh after a configuration change', async () => {
    const { verifier } = verifierFor();
    const token = await sign(ec, { iss: ISS_EC, aud: 'db', sub: 'svc-a' });
    await verifier.verify(token);
    const next = snapshot({ version: 2 });
    next.issuers[1] = { ...next.issuers[1]!, audiences: ['warden'] };
    verifier.update(compileAuthConfig(next));
    await expectRefused(verifier, token, 'audience', 'accepts "warden"');
  });

  it('does not keep a verification that began under the previous configuration', async () => {
    routes.set('/rot/jwks', json(jwks(rotA)));
    const { verifier } = verifierFor();
    const rotToken = await sign(rotA, { iss: ISS_ROT() });
    // The key set is fetched over HTTP: the update lands while the check waits for it.
    const pending = verifier.verify(rotToken);
    const next = snapshot({ version: 2 });
    next.issuers[3] = { ...next.issuers[3]!, audiences: ['elsewhere'] };
    verifier.update(compileAuthConfig(next));
    await expect(pending).resolves.toBeDefined();
    await expectRefused(verifier, rotToken, 'audience', 'accepts "elsewhere"');
  });

  it('stops accepting a cached token once its key is withdrawn from the JWKS', async () => {
    routes.set('/rot/jwks', json(jwks(rotA)));
    const { verifier } = verifierFor(snapshot(), { cooldownMs: 0 });
    const old = await sign(rotA, { iss: ISS_ROT() });
    await verifier.verify(old);
    await verifier.verify(old);
    routes.set('/rot/jwks', json(jwks(rotB)));
    await verifier.verify(await sign(rotB, { iss: ISS_ROT() })); // refetch on the unknown kid
    await expectRefused(verifier, old, 'unknown_key', 'key id "rot-a"');
  });

  it('keeps at most MAX_ENTRIES tokens, dropping the oldest, and none without a future exp', () => {
    let clock = 1_000_000;
    const cache = new VerifiedTokenCache(() => clock);
    const entry = (exp: unknown) => ({ verified: { claims: { exp } } }) as unknown as Verification;
    cache.set('no-exp', entry(undefined));
    cache.set('expired', entry(clock / 1000));
    expect(cache.size).toBe(0);
    for (let i = 0; i <= MAX_ENTRIES; i++) cache.set(`t${i}`, entry(clock / 1000 + 60));
    expect(cache.size).toBe(MAX_ENTRIES);
    expect(cache.get('t0')).toBeUndefined();
    expect(cache.get('t1')).toBeDefined();
    expect(cache.get(`t${MAX_ENTRIES}`)).toBeDefined();
    clock += 60_000;
    expect(cache.get('t1')).toBeUndefined();
  });
});

describe('mapIdentity', () => {
  const iss = (name: string): Issuer => issuer({ name, issuerUrl: `https://${name}.example` });
  const config = compileAuthConfig({
    version: 1,
    issuers: [iss('gh'), iss('other')],
    identities: [
      identity('main-deploy', 'gh', [
        ['sub', 'repo:acme/api:*'],
        ['ref', 'refs/heads/main'],
      ], ['deployers']),
      identity('acme-any', 'gh', [['sub', 'repo:acme/*']], ['ci', 'deployers']),
      identity('by-role', 'gh', [['roles', 'db-*']], []),
      identity('by-number', 'gh', [['run_attempt', '2'], ['private', 'true']], []),
      identity('no-match-rules', 'gh', [], ['admins']),
      identity('other-issuer', 'other', [['sub', '*']], []),
    ],
    resources: [],
    grants: [],
    agents: [],
    gateways: [],
  });
  const token = (issuerName: string, claims: Record<string, unknown>): VerifiedToken => ({
    issuer: config.issuersByUrl.get(`https://${issuerName}.example`)!.issuer,
    claims,
  });

  it('requires every claim match, first identity in definition order wins', () => {
    expect(mapIdentity(config, token('gh', { sub: 'repo:acme/api:ref:refs/heads/main', ref: 'refs/heads/main' }))).toEqual({
      identity: 'main-deploy',
      groups: ['deployers'],
    });
    // One of two claims differs: falls through to the wildcard identity.
    expect(mapIdentity(config, token('gh', { sub: 'repo:acme/api:ref:refs/heads/dev', ref: 'refs/heads/dev' })).identity).toBe(
      'acme-any',
    );
  });

  it('matches a wildcard as a prefix only', () => {
    expect(mapIdentity(config, token('gh', { sub: 'repo:acme/web' })).identity).toBe('acme-any');
    expect(() => mapIdentity(config, token('gh', { sub: 'repo:acmecorp/web' }))).toThrow(AuthError);
  });

  it('matches array claims when any element matches', () => {
    expect(mapIdentity(config, token('gh', { sub: 'x', roles: ['reader', 'db-writer'] })).identity).toBe('by-role');
    expect(() => mapIdentity(config, token('gh', { sub: 'x', roles: ['reader'] }))).toThrow(AuthError);
  });

  it('compares non-string claims as strings', () => {
    expect(mapIdentity(config, token('gh', { sub: 'x', run_attempt: 2, private: true })).identity).toBe('by-number');
    expect(() => mapIdentity(config, token('gh', { sub: 'x', run_attempt: 2, private: false }))).toThrow(AuthError);
    expect(() => mapIdentity(config, token('gh', { sub: 'x', roles: { 'db-x': 1 } }))).toThrow(AuthError);
  });

  it('merges identity groups with the token groups claim, without duplicates', () => {
    const who = mapIdentity(config, token('gh', { sub: 'repo:acme/web', groups: ['ops', 'ci', 7, 'ops'] }));
    expect(who).toEqual({ identity: 'acme-any', groups: ['ci', 'deployers', 'ops'] });
    // A non-array groups claim is ignored.
    expect(mapIdentity(config, token('gh', { sub: 'repo:acme/web', groups: 'admins' })).groups).toEqual(['ci', 'deployers']);
  });

  it('only considers identities of the token issuer, and never one without claim matches', () => {
    expect(mapIdentity(config, token('other', { sub: 'repo:acme/web' })).identity).toBe('other-issuer');
  });

  it('refuses a token that matches no identity', () => {
    let caught: unknown;
    try {
      mapIdentity(config, token('gh', { sub: 'repo:someone/else' }));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(AuthError);
    const err = caught as AuthError;
    expect(err.check).toBe('identity');
    expect(err.message).toBe(
      'token from issuer "gh" with sub "repo:someone/else" matches no identity; ask an admin to add one with `warden identities add`',
    );
    expect(() => mapIdentity(config, token('gh', {}))).toThrow(/with sub \(none\) matches no identity/);
  });
});

describe('authorize', () => {
  let config: AuthConfig;
  beforeAll(() => {
    config = compileAuthConfig(snapshot());
  });

  function refusal(resource: string, who: { identity: string; groups: string[] }): AuthError {
    try {
      authorize(config, resource, who);
    } catch (err) {
      if (err instanceof AuthError) return err;
      throw err;
    }
    throw new Error('expected a refusal');
  }

  it('refuses an unknown resource', () => {
    const err = refusal('nope', { identity: 'api-deploy', groups: [] });
    expect(err.check).toBe('resource');
    expect(err.kind).toBe('resource');
    expect(err.sqlstate).toBe('3D000');
    expect(err.message).toBe('resource "nope" does not exist; check the database name you connect to');
  });

  it('allows by a grant to the identity', () => {
    expect(authorize(config, 'shop', { identity: 'api-deploy', groups: [] })).toEqual({
      name: 'shop',
      agent: 'agent-1',
      description: '',
    });
  });

  it('allows by a grant to one of the groups', () => {
    expect(authorize(config, 'billing', { identity: 'someone', groups: ['x', 'ci'] }).agent).toBe('agent-2');
  });

  it('refuses without a grant', () => {
    const err = refusal('secrets', { identity: 'acme-ci', groups: ['ci'] });
    expect(err.check).toBe('grant');
    expect(err.sqlstate).toBe('42501');
    expect(err.message).toBe(
      'identity "acme-ci" or its groups ("ci") has no grant on resource "secrets"; ask an admin for one with `warden grants add`',
    );
    expect(refusal('shop', { identity: 'acme-ci', groups: [] }).check).toBe('grant');
  });
});
