// The local development issuer: an ES256 key pair kept in the data directory.
// Local mode registers its public half as issuer `local-dev`; `warden token`
// signs with the private half, so no real identity provider is needed.
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';

export const DEV_ISSUER_URL = 'urn:warden:local-dev';
export const DEV_AUDIENCE = 'warden';
export const DEV_ISSUER_NAME = 'local-dev';
export const DEV_KEY_FILE = 'dev-issuer.jwk';

export class DevIssuerMissingError extends Error {
  constructor(file: string) {
    super(`no development issuer key at ${file}: tokens can only be minted in local mode, after \`npm start\` (warden start) has run with this data directory`);
    this.name = 'DevIssuerMissingError';
  }
}

export const devKeyPath = (dataDir: string) => join(dataDir, DEV_KEY_FILE);

/** The public JWKS (JSON text) matching a private JWK. */
export function publicJwks(privateJwk: JWK): string {
  const { d: _d, ...pub } = privateJwk;
  return JSON.stringify({ keys: [{ ...pub, use: 'sig' }] });
}

export function loadDevKey(dataDir: string): JWK {
  const file = devKeyPath(dataDir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new DevIssuerMissingError(file);
    throw err;
  }
  const jwk = JSON.parse(text) as JWK;
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.d) throw new Error(`${file} is not an ES256 private key`);
  return jwk;
}

/** Loads the key, or creates it (mode 0600) on first use. */
export async function ensureDevKey(dataDir: string): Promise<JWK> {
  try {
    return loadDevKey(dataDir);
  } catch (err) {
    if (!(err instanceof DevIssuerMissingError)) throw err;
  }
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  const { d: _d, ...pub } = jwk;
  const full: JWK = { ...jwk, kid: await calculateJwkThumbprint(pub), alg: 'ES256' };
  try {
    writeFileSync(devKeyPath(dataDir), `${JSON.stringify(full)}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Created concurrently: keep the first one so issued tokens stay valid.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return loadDevKey(dataDir);
    throw err;
  }
  return full;
}

export interface DevTokenOptions {
  sub: string;
  groups?: string[];
  /** Lifetime in seconds; default one hour. */
  ttlSeconds?: number;
  audience?: string;
}

export async function signDevToken(key: JWK, opts: DevTokenOptions): Promise<string> {
  if (!opts.sub) throw new Error('a token needs a subject (--sub)');
  const now = Math.floor(Date.now() / 1000);
  const claims = opts.groups && opts.groups.length > 0 ? { groups: opts.groups } : {};
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT', ...(key.kid ? { kid: key.kid } : {}) })
    .setIssuer(DEV_ISSUER_URL)
    .setAudience(opts.audience ?? DEV_AUDIENCE)
    .setSubject(opts.sub)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + (opts.ttlSeconds ?? 3600))
    .setJti(randomUUID())
    .sign(await importJWK(key, 'ES256'));
}
