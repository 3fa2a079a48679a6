// Verification of the OIDC JWT a client sends as its Postgres password.
//
// Order of checks: present → well-formed → not `alg: none` → trusted `iss` →
// `alg` on the issuer's allow-list → signature (key from the issuer's key
// source) → claims (exp required, nbf, aud), with a clock skew tolerance.
// The header and claims are decoded without verification first only to pick
// the issuer; nothing from them is trusted before jwtVerify succeeds.

import { decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import type { JWTHeaderParameters, JWTPayload, JWTVerifyGetKey, JWTVerifyOptions, ProtectedHeaderParameters } from 'jose';
import { Snapshot, type Issuer } from '@warden/proto';
import { VerifiedTokenCache, type Verification } from './cache.js';
import type { AuthConfig, CompiledIssuer } from './config.js';
import { compileAuthConfig } from './config.js';
import { AuthError, KeysUnavailableError } from './errors.js';
import type { KeySource, KeySourceOptions } from './keys.js';
import { KeySources } from './keys.js';

export interface VerifiedToken {
  issuer: Issuer;
  claims: JWTPayload;
}

export interface TokenVerifierOptions extends KeySourceOptions {
  /** Allowed clock difference for exp and nbf, in seconds. Default 30. */
  clockToleranceSec?: number;
  /** Longest accepted token, in characters. Default 32768. */
  maxTokenLength?: number;
  /** Clock for the cache of verified tokens, ms (tests). Default Date.now. */
  now?: () => number;
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** Quotes a value taken from a token for a message, bounded in length. */
function quote(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}

function list(values: readonly string[]): string {
  return values.length === 0 ? '(none)' : values.map((v) => quote(v)).join(', ');
}

/** "45 s", "12 min", "3 h 20 min", "2 d 4 h". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

function isoTime(numericDate: number): string {
  const date = new Date(numericDate * 1000);
  return Number.isNaN(date.getTime()) ? String(numericDate) : date.toISOString();
}

export class TokenVerifier {
  private config: AuthConfig;
  private readonly keys: KeySources;
  private readonly clockToleranceSec: number;
  private readonly maxTokenLength: number;
  private readonly verified: VerifiedTokenCache;
  /** Counts update() calls: a verification that began under older settings is not cached. */
  private generation = 0;

  constructor(options: TokenVerifierOptions = {}) {
    this.keys = new KeySources(options);
    this.verified = new VerifiedTokenCache(options.now);
    this.clockToleranceSec = options.clockToleranceSec ?? 30;
    this.maxTokenLength = options.maxTokenLength ?? 32_768;
    if (!(this.clockToleranceSec >= 0)) throw new TypeError('clockToleranceSec must be a non-negative number');
    this.config = compileAuthConfig(Snapshot.create());
  }

  /** Switches to a new snapshot's configuration; unchanged issuers keep their cached keys. */
  update(config: AuthConfig): void {
    this.keys.update([...config.issuersByUrl.values()].map((c) => c.issuer));
    this.config = config;
    // Issuers, audiences or algorithms may have changed: every token is checked afresh.
    this.verified.clear();
    this.generation++;
  }

  /**
   * Verifies `token` against the trusted issuers. Rejects with AuthError; its
   * message is meant for the client and never contains the token.
   */
  async verify(token: string | null | undefined): Promise<VerifiedToken> {
    const trimmed = typeof token === 'string' ? token.trim() : '';
    const cached = trimmed ? this.verified.get(trimmed) : undefined;
    if (cached) {
      if (await stillServes(cached)) return cached.verified;
      this.verified.delete(trimmed);
    }
    const generation = this.generation;
    try {
      const verification = await this.verifyToken(token);
      if (generation === this.generation) this.verified.set(trimmed, verification);
      return verification.verified;
    } catch (err) {
      throw scrub(err instanceof AuthError ? err : unexpected(err), token);
    }
  }

  private async verifyToken(password: string | null | undefined): Promise<Verification> {
    if (typeof password !== 'string' || password.trim() === '') {
      throw new AuthError('no_token', 'no token: send your OIDC token as the password');
    }
    const token = password.trim();
    if (token.length > this.maxTokenLength) {
      throw new AuthError(
        'malformed',
        `the password is ${token.length} characters long, more than the ${this.maxTokenLength} accepted for a token`,
      );
    }

    const parts = token.split('.');
    if (parts.length === 5) {
      throw new AuthError(
        'malformed',
        'the password is an encrypted JWT (JWE); send a signed OIDC token (JWS compact form) as the password',
      );
    }
    if (parts.length !== 3 || !parts.every((p) => BASE64URL.test(p)) || parts[0] === '' || parts[1] === '') {
      throw new AuthError(
        'malformed',
        'the password is not a JWT (expected header.payload.signature in base64url); send your OIDC token as the password',
      );
    }

    let header: ProtectedHeaderParameters;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw new AuthError('malformed', 'the token header is not base64url-encoded JSON; send your OIDC token as the password');
    }
    let claims: JWTPayload;
    try {
      claims = decodeJwt(token);
    } catch {
      throw new AuthError('malformed', 'the token claims are not a base64url-encoded JSON object; send your OIDC token as the password');
    }

    const alg = header.alg;
    if (typeof alg !== 'string' || alg === '') {
      throw new AuthError('malformed', 'the token header has no "alg"');
    }
    if (alg.toLowerCase() === 'none') {
      throw new AuthError('algorithm', 'the token is unsigned (alg "none"); only signed tokens are accepted');
    }

    const iss = claims.iss;
    if (typeof iss !== 'string' || iss === '') {
      throw new AuthError('issuer', 'the token has no "iss" (issuer) claim; send a token from a trusted OIDC issuer');
    }
    const compiled = this.config.issuersByUrl.get(iss);
    if (!compiled) throw this.untrustedIssuer(iss);

    if (!compiled.algorithms.includes(alg)) {
      const hmac = /^HS\d+$/i.test(alg) ? ' (HMAC algorithms are never accepted)' : '';
      throw new AuthError(
        'algorithm',
        `the token is signed with ${quote(alg)}${hmac}, which issuer "${compiled.issuer.name}" does not allow; ` +
          `allowed: ${compiled.algorithms.join(', ') || '(none)'}`,
      );
    }

    const options: JWTVerifyOptions = {
      algorithms: [...compiled.algorithms],
      issuer: compiled.issuer.issuerUrl,
      audience: [...compiled.audiences],
      clockTolerance: this.clockToleranceSec,
      requiredClaims: ['exp'],
    };
    const source = this.keys.get(compiled.issuer);
    try {
      const { payload, key } = await verifyWith(token, source, options);
      const [protectedHeader, encodedPayload, signature] = parts as [string, string, string];
      return {
        verified: { issuer: compiled.issuer, claims: payload },
        source,
        header: header as JWTHeaderParameters,
        input: { protected: protectedHeader, payload: encodedPayload, signature },
        key,
      };
    } catch (err) {
      throw this.explain(err, compiled, source, header, claims);
    }
  }

  private untrustedIssuer(iss: string): AuthError {
    let hint = '';
    const bare = iss.replace(/\/+$/, '');
    for (const url of this.config.issuersByUrl.keys()) {
      if (url !== iss && url.replace(/\/+$/, '') === bare) {
        hint = ` (a trusted issuer is configured as ${quote(url)}; the values must be equal, trailing slash included)`;
        break;
      }
    }
    return new AuthError(
      'issuer',
      `token issuer ${quote(iss)} is not trusted by this gateway${hint}; ask an admin to add it as a trusted issuer`,
    );
  }

  /** Turns a jose (or key source) failure into an AuthError a person can act on. */
  private explain(
    err: unknown,
    compiled: CompiledIssuer,
    source: KeySource,
    header: ProtectedHeaderParameters,
    claims: JWTPayload,
  ): AuthError {
    const name = compiled.issuer.name;
    const tolerance = `${this.clockToleranceSec} s`;
    if (err instanceof AuthError) return err;
    if (err instanceof KeysUnavailableError) {
      return new AuthError(
        'keys_unavailable',
        `cannot check the token of issuer "${name}" now: ${err.message}; try again later, and tell an admin if it persists`,
        { cause: err.cause },
      );
    }
    if (err instanceof joseErrors.JWKSNoMatchingKey) {
      const which = typeof header.kid === 'string' ? `key id ${quote(header.kid)}` : 'no key id (kid)';
      return new AuthError(
        'unknown_key',
        `no signing key of issuer "${name}" matches the token (${which}, alg ${header.alg}); ` +
          `the keys come from ${source.description}; ` +
          'if the issuer rotated its keys just now, try again in a minute; otherwise get a fresh token from the issuer',
      );
    }
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
      return new AuthError(
        'signature',
        `the token signature does not verify with the keys of issuer "${name}"; ` +
          'the token was altered or not signed by this issuer; get a fresh token from the issuer',
      );
    }
    if (err instanceof joseErrors.JOSEAlgNotAllowed) {
      return new AuthError(
        'algorithm',
        `the token is signed with ${quote(header.alg)}, which issuer "${name}" does not allow; ` +
          `allowed: ${compiled.algorithms.join(', ')}`,
      );
    }
    if (err instanceof joseErrors.JWTExpired) {
      const exp = typeof claims.exp === 'number' ? claims.exp : undefined;
      const when =
        exp === undefined ? '' : ` at ${isoTime(exp)} (${formatDuration(Date.now() / 1000 - exp)} ago)`;
      return new AuthError(
        'expired',
        `the token expired${when}, beyond the ${tolerance} allowed for clock skew; get a fresh token from the issuer`,
      );
    }
    if (err instanceof joseErrors.JWTClaimValidationFailed) {
      switch (err.claim) {
        case 'exp':
          if (err.reason === 'missing') {
            return new AuthError(
              'missing_exp',
              'the token has no "exp" (expiry) claim; only tokens that expire are accepted',
            );
          }
          return new AuthError('malformed', 'the token "exp" claim is not a number of seconds since the epoch');
        case 'nbf': {
          if (typeof claims.nbf !== 'number') {
            return new AuthError('malformed', 'the token "nbf" claim is not a number of seconds since the epoch');
          }
          return new AuthError(
            'not_yet_valid',
            `the token is not valid before ${isoTime(claims.nbf)} ` +
              `(${formatDuration(claims.nbf - Date.now() / 1000)} from now, beyond the ${tolerance} allowed for clock skew); ` +
              'check the clocks of the issuer and this gateway, or wait',
          );
        }
        case 'aud': {
          const accepted = `issuer "${name}" accepts ${list(compiled.audiences)}`;
          if (compiled.audiences.length === 0) {
            return new AuthError(
              'audience',
              `issuer "${name}" has no accepted audiences configured, so none of its tokens are accepted; ask an admin to set one`,
            );
          }
          if (claims.aud === undefined) {
            return new AuthError(
              'audience',
              `the token has no "aud" (audience) claim; ${accepted}: request the token for that audience`,
            );
          }
          const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
          return new AuthError(
            'audience',
            `the token audience ${list(aud.map(String))} is not accepted; ${accepted}: request the token for that audience`,
          );
        }
        case 'iat':
          return new AuthError('malformed', 'the token "iat" claim is not a number of seconds since the epoch');
        case 'iss':
          return this.untrustedIssuer(String(claims.iss));
        default:
          return new AuthError('malformed', `the token claim ${quote(err.claim)} is invalid`);
      }
    }
    if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) {
      return new AuthError('malformed', `the token is malformed: ${err.message}`);
    }
    if (err instanceof joseErrors.JOSENotSupported) {
      return new AuthError(
        'algorithm',
        `the token cannot be verified with the keys of issuer "${name}": ${err.message}`,
      );
    }
    return unexpected(err);
  }
}

/**
 * jwtVerify with the issuer's key source, and the key that verified. When the
 * key set holds several keys that fit the token (no `kid`, or keys sharing
 * one), each is tried in turn.
 */
async function verifyWith(token: string, source: KeySource, options: JWTVerifyOptions): Promise<{ payload: JWTPayload; key: unknown }> {
  let key: unknown;
  const getKey: JWTVerifyGetKey = async (header, input) => (key = await source.getKey(header, input));
  try {
    return { payload: (await jwtVerify(token, getKey, options)).payload, key };
  } catch (err) {
    if (!(err instanceof joseErrors.JWKSMultipleMatchingKeys)) throw err;
    for await (const candidate of err) {
      try {
        return { payload: (await jwtVerify(token, candidate, options)).payload, key: candidate };
      } catch (inner) {
        if (inner instanceof joseErrors.JWSSignatureVerificationFailed) continue;
        throw inner;
      }
    }
    throw new joseErrors.JWSSignatureVerificationFailed();
  }
}

/**
 * Whether a cached verification still holds: the issuer's key source still
 * gives the very key that verified it. A refetched key set (rotation, its
 * cache age passed) gives new key objects, so the token is verified afresh
 * and a withdrawn key fails as it would without the cache.
 */
async function stillServes(v: Verification): Promise<boolean> {
  try {
    return (await v.source.getKey(v.header, v.input)) === v.key;
  } catch (err) {
    if (!(err instanceof joseErrors.JWKSMultipleMatchingKeys)) return false;
    for await (const candidate of err) if (candidate === v.key) return true;
    return false;
  }
}

function unexpected(err: unknown): AuthError {
  const detail = err instanceof Error ? err.message : String(err);
  return new AuthError('signature', `the token could not be verified: ${detail}`);
}

/**
 * Last line of defence: an error message must never carry the token (or its
 * signature, which is what makes it usable).
 */
function scrub(err: AuthError, token: string | null | undefined): AuthError {
  if (typeof token !== 'string') return err;
  const trimmed = token.trim();
  const signature = trimmed.split('.')[2] ?? '';
  const leaks = (text: string) =>
    (trimmed.length >= 8 && text.includes(trimmed)) || (signature.length >= 8 && text.includes(signature));
  if (!leaks(err.message)) return err;
  return new AuthError(err.check, `the token was refused (${err.check})`);
}
