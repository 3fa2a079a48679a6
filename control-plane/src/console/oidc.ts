// Signing people in with OpenID Connect: the authorization code flow with
// PKCE (S256), the code exchanged at the issuer's token endpoint, the ID
// token verified with jose against the issuer's keys (iss, aud = our client
// id, exp, nonce). Works the same for a trusted issuer found by discovery
// and for local mode's development issuer (dev-sign-in.ts).
import { createHash, randomBytes } from 'node:crypto';
import { createRemoteJWKSet, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { Person } from './sessions.js';

export interface Endpoints {
  authorization: string;
  token: string;
}

export interface Provider {
  /** The issuer's name in Warden's configuration. */
  name: string;
  /** The ID token's `iss`. */
  issuer: string;
  clientId: string;
  clientSecret?: string;
  endpoints(): Promise<Endpoints>;
  keys(): Promise<JWTVerifyGetKey>;
  /** Answers the token request itself instead of the token endpoint (the development issuer). */
  redeem?(form: URLSearchParams): Promise<TokenAnswer>;
}

/** A token endpoint's answer. */
export interface TokenAnswer {
  status: number;
  body: { id_token?: string; error?: string; error_description?: string; token_type?: string; expires_in?: number };
}

/** A login in progress, between the redirect to the issuer and its redirect back. */
export interface PendingLogin {
  state: string;
  provider: Provider;
  verifier: string;
  nonce: string;
  redirectUri: string;
  /** The console page to show once signed in. */
  returnTo: string;
  createdAt: number;
}

const LOGIN_TTL_MS = 10 * 60_000;
const rand = () => randomBytes(32).toString('base64url');
export const s256 = (verifier: string) => createHash('sha256').update(verifier).digest('base64url');

export class SignInError extends Error {}

/** Logins in progress by state; each is used once. */
export class PendingLogins {
  private readonly byState = new Map<string, PendingLogin>();

  start(provider: Provider, redirectUri: string, returnTo = '/'): PendingLogin {
    const now = Date.now();
    for (const [k, p] of this.byState) if (now - p.createdAt > LOGIN_TTL_MS) this.byState.delete(k);
    if (this.byState.size > 10_000) throw new SignInError('too many sign-ins in progress; try again in a few minutes');
    // Only a path of this console: never another site.
    const back = /^\/(?![/\\])/.test(returnTo) ? returnTo : '/';
    const p: PendingLogin = { state: rand(), provider, verifier: rand(), nonce: rand(), redirectUri, returnTo: back, createdAt: now };
    this.byState.set(p.state, p);
    return p;
  }

  take(state: string): PendingLogin | undefined {
    const p = this.byState.get(state);
    this.byState.delete(state);
    return p && Date.now() - p.createdAt <= LOGIN_TTL_MS ? p : undefined;
  }
}

export async function authorizationUrl(p: PendingLogin): Promise<string> {
  const url = new URL((await p.provider.endpoints()).authorization);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('client_id', p.provider.clientId);
  url.searchParams.set('redirect_uri', p.redirectUri);
  url.searchParams.set('scope', 'openid profile email');
  url.searchParams.set('state', p.state);
  url.searchParams.set('nonce', p.nonce);
  url.searchParams.set('code_challenge', s256(p.verifier));
  url.searchParams.set('code_challenge_method', 'S256');
  return url.toString();
}

/** Exchanges the code and verifies the ID token; the person it names. */
export async function finishSignIn(p: PendingLogin, code: string): Promise<Person> {
  const { provider } = p;
  const body = new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: p.redirectUri, client_id: provider.clientId, code_verifier: p.verifier });
  const { status, body: answer } = provider.redeem ? await provider.redeem(body) : await post(provider, body);
  if (status !== 200 || !answer.id_token) {
    throw new SignInError(`issuer ${provider.name} did not exchange the code: ${answer.error_description ?? answer.error ?? `HTTP ${status}`}`);
  }
  let claims: JWTPayload;
  try {
    ({ payload: claims } = await jwtVerify(answer.id_token, await provider.keys(), { issuer: provider.issuer, audience: provider.clientId, clockTolerance: 30 }));
  } catch (err) {
    throw new SignInError(`the ID token of issuer ${provider.name} is not valid: ${(err as Error).message}`);
  }
  if (claims.nonce !== p.nonce) throw new SignInError(`the ID token of issuer ${provider.name} does not carry this sign-in's nonce`);
  if (typeof claims.sub !== 'string' || claims.sub === '') throw new SignInError('the ID token has no sub claim');
  const groups = Array.isArray(claims.groups) ? claims.groups.filter((g): g is string => typeof g === 'string' && g !== '') : [];
  const label = [claims.email, claims.preferred_username, claims.name].find((v): v is string => typeof v === 'string' && v !== '');
  return { name: claims.sub, display: label ?? claims.sub, issuer: provider.name, groups: [...new Set(groups)], claims };
}

/** The code exchange at the issuer's token endpoint (client_secret_basic for a confidential client). */
async function post(provider: Provider, body: URLSearchParams): Promise<TokenAnswer> {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (provider.clientSecret) {
    headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(provider.clientId)}:${encodeURIComponent(provider.clientSecret)}`).toString('base64')}`;
  }
  const res = await fetch((await provider.endpoints()).token, { method: 'POST', headers, body, signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: (await res.json().catch(() => ({}))) as TokenAnswer['body'] };
}

/** A trusted issuer with a client id: endpoints and keys from its discovery document, fetched once. */
export function discoveredProvider(s: { name: string; issuerUrl: string; clientId: string; clientSecret?: string }): Provider {
  let doc: Promise<{ authorization_endpoint: string; token_endpoint: string; jwks_uri: string }> | undefined;
  let jwks: JWTVerifyGetKey | undefined;
  const discover = () =>
    (doc ??= (async () => {
      const url = `${s.issuerUrl.replace(/\/$/, '')}/.well-known/openid-configuration`;
      const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new SignInError(`cannot read ${url}: HTTP ${res.status}`);
      const d = (await res.json()) as Record<string, string>;
      if (!d.authorization_endpoint || !d.token_endpoint || !d.jwks_uri) throw new SignInError(`${url} lacks authorization_endpoint, token_endpoint or jwks_uri`);
      return d as unknown as { authorization_endpoint: string; token_endpoint: string; jwks_uri: string };
    })().catch((err) => {
      doc = undefined;
      throw err;
    }));
  return {
    name: s.name,
    issuer: s.issuerUrl,
    clientId: s.clientId,
    clientSecret: s.clientSecret,
    endpoints: async () => {
      const d = await discover();
      return { authorization: d.authorization_endpoint, token: d.token_endpoint };
    },
    keys: async () => (jwks ??= createRemoteJWKSet(new URL((await discover()).jwks_uri))),
  };
}
