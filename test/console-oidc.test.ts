// The console's sign-in with a trusted issuer that is not local mode's: an
// OpenID provider of the test's own on loopback (discovery, JWKS, an
// authorization endpoint that signs erin in, a token endpoint that wants
// the client secret and the PKCE verifier), and the control plane serving
// the console over TLS with its own certificate: the cookies are Secure, as
// they are behind a proxy that ends TLS.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startControlPlane, type ControlPlane } from '../control-plane/src/server/start.js';
import { makeCertificates } from './support/stack.js';

const CLIENT = 'warden-console-test';
const SECRET = 'the-client-secret';

let dir: string;
let cp: ControlPlane;
let idp: Server;
let idpUrl: string;
let ca: string;
/** What the token endpoint was sent, for the assertions. */
const exchanges: { auth?: string; form: URLSearchParams }[] = [];

async function startProvider(): Promise<void> {
  const { publicKey, privateKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  const codes = new Map<string, { challenge: string; nonce: string; redirect: string }>();
  idp = createServer((req, res) => {
    const url = new URL(req.url!, idpUrl);
    const json = (code: number, body: unknown) => res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (url.pathname === '/.well-known/openid-configuration') {
      return json(200, { issuer: idpUrl, authorization_endpoint: `${idpUrl}/authorize`, token_endpoint: `${idpUrl}/token`, jwks_uri: `${idpUrl}/jwks` });
    }
    if (url.pathname === '/jwks') return json(200, { keys: [jwk] });
    if (url.pathname === '/authorize') {
      // erin is signed in at the provider already: straight back with a code.
      const code = `code-${codes.size}`;
      codes.set(code, { challenge: url.searchParams.get('code_challenge')!, nonce: url.searchParams.get('nonce')!, redirect: url.searchParams.get('redirect_uri')! });
      const back = new URL(url.searchParams.get('redirect_uri')!);
      back.searchParams.set('code', code);
      back.searchParams.set('state', url.searchParams.get('state')!);
      return res.writeHead(302, { location: back.toString() }).end();
    }
    if (url.pathname === '/token' && req.method === 'POST') {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', async () => {
        const form = new URLSearchParams(body);
        exchanges.push({ auth: req.headers.authorization, form });
        const c = codes.get(form.get('code') ?? '');
        const basic = `Basic ${Buffer.from(`${CLIENT}:${SECRET}`).toString('base64')}`;
        if (req.headers.authorization !== basic) return json(401, { error: 'invalid_client' });
        if (!c || createHash('sha256').update(form.get('code_verifier') ?? '').digest('base64url') !== c.challenge || form.get('redirect_uri') !== c.redirect) {
          return json(400, { error: 'invalid_grant' });
        }
        const idToken = await new SignJWT({ nonce: c.nonce, groups: ['security'], email: 'erin@example.com' })
          .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
          .setIssuer(idpUrl)
          .setAudience(CLIENT)
          .setSubject('erin-sub-7')
          .setIssuedAt()
          .setExpirationTime('5m')
          .sign(privateKey);
        json(200, { id_token: idToken, token_type: 'Bearer' });
      });
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => idp.listen(0, '127.0.0.1', () => r()));
  idpUrl = `http://127.0.0.1:${(idp.address() as { port: number }).port}`;
}

/** One HTTPS GET that trusts the test CA; status, headers and body. */
function get(url: string, cookie = ''): Promise<{ status: number; location: string; cookies: string[]; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca: readFileSync(ca), headers: cookie ? { cookie } : {} }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, location: res.headers.location ?? '', cookies: res.headers['set-cookie'] ?? [], body }));
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-console-oidc-'));
  const certs = await makeCertificates(dir);
  ca = certs.ca;
  await startProvider();
  cp = await startControlPlane({
    listen: '127.0.0.1:0',
    dataDir: dir,
    pollIntervalMs: 0,
    tls: { cert: certs.cert, key: certs.key },
    console: { listen: '127.0.0.1:0', env: { CORP_CONSOLE_SECRET: SECRET } },
  });
  const yaml = [
    'version: 1',
    'issuers:',
    '  - name: corp',
    `    issuer_url: ${idpUrl}`,
    '    audiences: [warden]',
    `    client_id: ${CLIENT}`,
    '    client_secret_env: CORP_CONSOLE_SECRET',
    'console:',
    '  viewers: [security]',
    '  admins: [platform]',
    '',
  ].join('\n');
  const applied = await cp.repo.applyPolicy({ yaml, author: 'test', dryRun: false });
  expect(applied.lines).toContain(`~ console sign-in with corp: none -> client ${CLIENT} (secret in $CORP_CONSOLE_SECRET)`);
});

afterAll(async () => {
  await cp?.close();
  await new Promise((r) => idp?.close(r));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('signs a person in with a trusted issuer (discovery, code with PKCE, client secret) over TLS, with Secure cookies', async () => {
  expect(cp.consoleUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  const page = await get(`${cp.consoleUrl}/`);
  expect(page.status).toBe(200);
  expect(page.body).toContain('<div id="app">');
  const providers = JSON.parse((await get(`${cp.consoleUrl}/api/auth/providers`)).body) as { providers: { name: string }[] };
  expect(providers.providers.map((p) => p.name)).toEqual(['corp']);

  const login = await get(`${cp.consoleUrl}/auth/login?issuer=corp`);
  expect(login.status).toBe(303);
  expect(login.location.startsWith(`${idpUrl}/authorize?`)).toBe(true);
  const asked = new URL(login.location).searchParams;
  expect([asked.get('client_id'), asked.get('code_challenge_method'), asked.get('redirect_uri')]).toEqual([CLIENT, 'S256', `${cp.consoleUrl}/auth/callback`]);
  const loginCookie = login.cookies[0]!;
  expect(loginCookie).toMatch(/; Secure/);

  const atIdp = await fetch(login.location, { redirect: 'manual' });
  const callback = await get(atIdp.headers.get('location')!, loginCookie.split(';')[0]!);
  expect(callback.status, callback.location).toBe(303);
  expect(callback.location).toBe('/');
  const session = callback.cookies.find((c) => c.startsWith('warden_console='))!;
  expect(session.split('; ')).toEqual(expect.arrayContaining(['HttpOnly', 'SameSite=Lax', 'Secure', 'Path=/']));
  expect(exchanges).toHaveLength(1);
  expect(exchanges[0]!.form.get('code_verifier')).toBeTruthy();

  const me = JSON.parse((await get(`${cp.consoleUrl}/api/me`, session.split(';')[0]!)).body) as Record<string, unknown>;
  expect(me).toMatchObject({ name: 'erin-sub-7', display: 'erin@example.com', issuer: 'corp', groups: ['security'], role: 'viewers' });
  expect((await get(`${cp.consoleUrl}/api/policy`, session.split(';')[0]!)).status).toBe(403);
  expect((await get(`${cp.consoleUrl}/api/sessions`, session.split(';')[0]!)).status).toBe(200);
});

it('marks cookies Secure behind a proxy that ends TLS (--console-url https://…)', async () => {
  const behind = mkdtempSync(join(tmpdir(), 'warden-console-proxy-'));
  const { ensureDevKey } = await import('../control-plane/src/local/dev-issuer.js');
  const proxied = await startControlPlane({
    listen: '127.0.0.1:0',
    dataDir: behind,
    pollIntervalMs: 0,
    console: { listen: '127.0.0.1:0', publicUrl: 'https://warden.example.com', devIssuerKey: await ensureDevKey(behind) },
  });
  try {
    expect(proxied.consoleUrl).toMatch(/^http:\/\//);
    const login = await fetch(`${proxied.consoleUrl}/auth/login?issuer=local-dev`, { redirect: 'manual' });
    expect(login.status).toBe(303);
    expect(new URL(login.headers.get('location')!).searchParams.get('redirect_uri')).toBe('https://warden.example.com/auth/callback');
    expect(login.headers.getSetCookie()[0]).toMatch(/; Secure/);
  } finally {
    await proxied.close();
    rmSync(behind, { recursive: true, force: true });
  }
});
