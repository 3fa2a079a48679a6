// Where each issuer's signing keys come from.
//
// Three kinds of source, chosen from the Issuer settings in this order:
//   1. jwks_json: an inline JWKS (local development issuer, air-gapped sites);
//   2. jwks_uri: a JWKS URL, fetched and cached by jose's remote JWKS set,
//      which refetches when a token names an unknown `kid` (at most once per
//      cooldown), so issuer key rotation needs no restart;
//   3. OIDC discovery: {issuer_url}/.well-known/openid-configuration gives the
//      jwks_uri; the document's `issuer` must equal issuer_url.
//
// Sources are keyed by the settings that decide them, so a snapshot update
// that does not touch an issuer keeps its source, and with it the cached keys.

import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors } from 'jose';
import type { JSONWebKeySet, JWTVerifyGetKey } from 'jose';
import type { Issuer } from '@warden/proto';
import { KeysUnavailableError, describeError } from './errors.js';

export interface KeySourceOptions {
  /** HTTP timeout for discovery and JWKS requests, ms. Default 5000. */
  timeoutMs?: number;
  /** Minimum time between JWKS refetches triggered by an unknown `kid`, ms. Default 30000. */
  cooldownMs?: number;
  /** How long a fetched JWKS is used before it is fetched again, ms. Default 600000. */
  cacheMaxAgeMs?: number;
  /** How long a discovery result is used before discovery runs again, ms. Default 3600000. */
  discoveryMaxAgeMs?: number;
  /** After a failed discovery, how long before it is tried again, ms. Default 10000. */
  discoveryRetryMs?: number;
}

interface ResolvedKeySourceOptions {
  timeoutMs: number;
  cooldownMs: number;
  cacheMaxAgeMs: number;
  discoveryMaxAgeMs: number;
  discoveryRetryMs: number;
}

export interface KeySource {
  /** Human-readable origin of the keys, for error messages. */
  readonly description: string;
  /**
   * Key lookup for jose's jwtVerify. Rejects with jose's JWKSNoMatchingKey or
   * JWKSMultipleMatchingKeys when the key set has no single matching key, and
   * with KeysUnavailableError when the keys cannot be obtained.
   */
  readonly getKey: JWTVerifyGetKey;
}

type RemoteSet = ReturnType<typeof createRemoteJWKSet>;

/** The settings that decide an issuer's key source. */
export function keySourceFingerprint(issuer: Issuer): string {
  return JSON.stringify([issuer.issuerUrl, issuer.jwksUri, issuer.jwksJson]);
}

/** OIDC discovery document location for an issuer URL (trailing slashes removed first). */
export function discoveryUrl(issuerUrl: string): string {
  return `${issuerUrl.replace(/\/+$/, '')}/.well-known/openid-configuration`;
}

function parseHttpUrl(text: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new KeysUnavailableError(`${what} "${text}" is not a valid URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new KeysUnavailableError(`${what} "${text}" must be an http(s) URL`);
  }
  return url;
}

/**
 * Wraps a jose key lookup so that every failure other than "no (single)
 * matching key" becomes a KeysUnavailableError naming the source.
 */
function guarded(description: string, lookup: JWTVerifyGetKey): JWTVerifyGetKey {
  return async (header, token) => {
    try {
      return await lookup(header, token);
    } catch (err) {
      if (
        err instanceof joseErrors.JWKSNoMatchingKey ||
        err instanceof joseErrors.JWKSMultipleMatchingKeys ||
        err instanceof KeysUnavailableError
      ) {
        throw err;
      }
      throw new KeysUnavailableError(`could not load signing keys from ${description}: ${describeError(err)}`, {
        cause: err,
      });
    }
  };
}

function inlineSource(issuer: Issuer): KeySource {
  const description = `the inline JWKS of issuer "${issuer.name}"`;
  let lookup: JWTVerifyGetKey;
  try {
    const jwks = JSON.parse(issuer.jwksJson) as JSONWebKeySet;
    lookup = createLocalJWKSet(jwks);
  } catch (err) {
    const problem = new KeysUnavailableError(`${description} is not a valid JSON Web Key Set: ${describeError(err)}`);
    lookup = async () => {
      throw problem;
    };
  }
  return { description, getKey: guarded(description, lookup) };
}

function remoteSet(url: URL, options: ResolvedKeySourceOptions): RemoteSet {
  return createRemoteJWKSet(url, {
    timeoutDuration: options.timeoutMs,
    cooldownDuration: options.cooldownMs,
    cacheMaxAge: options.cacheMaxAgeMs,
  });
}

function jwksUriSource(issuer: Issuer, options: ResolvedKeySourceOptions): KeySource {
  const description = `the JWKS at ${issuer.jwksUri}`;
  let lookup: JWTVerifyGetKey;
  try {
    lookup = remoteSet(parseHttpUrl(issuer.jwksUri, `jwks_uri of issuer "${issuer.name}"`), options);
  } catch (err) {
    lookup = async () => {
      throw err;
    };
  }
  return { description, getKey: guarded(description, lookup) };
}

/**
 * Finds the JWKS through OIDC discovery. A successful result is used for
 * discoveryMaxAgeMs, then refreshed (keeping the old JWKS set, and its cached
 * keys, when jwks_uri did not change; and keeping on using it if the refresh
 * fails). A failure is remembered for discoveryRetryMs so a broken issuer is
 * not hammered by every connection, then discovery is tried again.
 */
class DiscoverySource implements KeySource {
  readonly description: string;
  readonly getKey: JWTVerifyGetKey;

  private readonly url: string;
  private current: { jwksUri: string; set: RemoteSet; at: number } | undefined;
  private failure: { error: KeysUnavailableError; at: number } | undefined;
  private pending: Promise<void> | undefined;

  constructor(
    private readonly issuer: Issuer,
    private readonly options: ResolvedKeySourceOptions,
  ) {
    this.url = discoveryUrl(issuer.issuerUrl);
    this.description = `OIDC discovery at ${this.url}`;
    this.getKey = guarded(this.description, async (header, token) => {
      const { set, jwksUri } = await this.keySet();
      return guarded(`the JWKS at ${jwksUri} (found through ${this.description})`, set)(header, token);
    });
  }

  private async keySet(): Promise<{ set: RemoteSet; jwksUri: string }> {
    const now = Date.now();
    if (this.current && now - this.current.at < this.options.discoveryMaxAgeMs) return this.current;
    const failedRecently = this.failure && now - this.failure.at < this.options.discoveryRetryMs;
    if (!failedRecently) {
      this.pending ??= this.discover().finally(() => {
        this.pending = undefined;
      });
      await this.pending;
    }
    // A stale discovery result beats none when a refresh failed.
    if (this.current) return this.current;
    throw this.failure?.error ?? new KeysUnavailableError(`${this.description} gave no result`);
  }

  private async discover(): Promise<void> {
    try {
      const jwksUri = await this.fetchJwksUri();
      if (this.current?.jwksUri === jwksUri) {
        this.current.at = Date.now();
      } else {
        const set = remoteSet(parseHttpUrl(jwksUri, `jwks_uri from ${this.url}`), this.options);
        this.current = { jwksUri, set, at: Date.now() };
      }
      this.failure = undefined;
    } catch (err) {
      const error =
        err instanceof KeysUnavailableError
          ? err
          : new KeysUnavailableError(`${this.description} failed: ${describeError(err)}`, { cause: err });
      this.failure = { error, at: Date.now() };
    }
  }

  private async fetchJwksUri(): Promise<string> {
    parseHttpUrl(this.issuer.issuerUrl, `issuer_url of issuer "${this.issuer.name}"`);
    let response: Response;
    try {
      response = await fetch(this.url, {
        headers: { accept: 'application/json' },
        redirect: 'manual',
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
    } catch (err) {
      const timedOut = err instanceof Error && err.name === 'TimeoutError';
      throw new KeysUnavailableError(
        `${this.description} failed: ${timedOut ? `no answer within ${this.options.timeoutMs} ms` : describeError(err)}`,
        { cause: err },
      );
    }
    if (response.status !== 200) {
      await response.body?.cancel().catch(() => {});
      throw new KeysUnavailableError(`${this.description} failed: HTTP ${response.status}`);
    }
    let doc: unknown;
    try {
      doc = await response.json();
    } catch {
      throw new KeysUnavailableError(`${this.description} did not return JSON`);
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
      throw new KeysUnavailableError(`${this.description} did not return a JSON object`);
    }
    const { issuer, jwks_uri: jwksUri } = doc as Record<string, unknown>;
    if (issuer !== this.issuer.issuerUrl) {
      throw new KeysUnavailableError(
        `${this.description} names issuer ${JSON.stringify(issuer)}, but issuer "${this.issuer.name}" is ` +
          `configured with issuer_url "${this.issuer.issuerUrl}"; they must be equal`,
      );
    }
    if (typeof jwksUri !== 'string' || jwksUri === '') {
      throw new KeysUnavailableError(`${this.description} has no jwks_uri`);
    }
    return jwksUri;
  }
}

function createKeySource(issuer: Issuer, options: ResolvedKeySourceOptions): KeySource {
  if (issuer.jwksJson) return inlineSource(issuer);
  if (issuer.jwksUri) return jwksUriSource(issuer, options);
  return new DiscoverySource(issuer, options);
}

/** Key sources of all trusted issuers, kept across snapshot updates. */
export class KeySources {
  private readonly options: ResolvedKeySourceOptions;
  private sources = new Map<string, KeySource>();

  constructor(options: KeySourceOptions = {}) {
    this.options = {
      timeoutMs: options.timeoutMs ?? 5_000,
      cooldownMs: options.cooldownMs ?? 30_000,
      cacheMaxAgeMs: options.cacheMaxAgeMs ?? 600_000,
      discoveryMaxAgeMs: options.discoveryMaxAgeMs ?? 3_600_000,
      discoveryRetryMs: options.discoveryRetryMs ?? 10_000,
    };
  }

  /**
   * Makes the set of sources match `issuers`: sources of issuers whose key
   * settings are unchanged are kept (with their cached keys), others are
   * created, and sources no issuer uses any more are dropped.
   */
  update(issuers: Iterable<Issuer>): void {
    const next = new Map<string, KeySource>();
    for (const issuer of issuers) {
      const fingerprint = keySourceFingerprint(issuer);
      if (next.has(fingerprint)) continue;
      next.set(fingerprint, this.sources.get(fingerprint) ?? createKeySource(issuer, this.options));
    }
    this.sources = next;
  }

  /** The key source for an issuer, created on first use if update() has not seen it. */
  get(issuer: Issuer): KeySource {
    const fingerprint = keySourceFingerprint(issuer);
    let source = this.sources.get(fingerprint);
    if (!source) {
      source = createKeySource(issuer, this.options);
      this.sources.set(fingerprint, source);
    }
    return source;
  }
}
