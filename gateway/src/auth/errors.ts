// The one error type of token authentication and authorization.
//
// Messages are shown to the connecting client (as a Postgres ErrorResponse),
// so they say what went wrong and what to do about it, and they never contain
// the token: only values that are not secret on their own (iss, sub, aud,
// kid, alg, times).
import { PgError } from '@warden/proto/pgwire';

/** Which check refused the connection. */
export type AuthCheck =
  /** No password was sent. */
  | 'no_token'
  /** The password is not a JWS compact JWT with a JSON header and claims set. */
  | 'malformed'
  /** `alg` is `none` or not on the issuer's allow-list. */
  | 'algorithm'
  /** `iss` is missing or not a trusted issuer. */
  | 'issuer'
  /** The issuer's signing keys could not be fetched (discovery or JWKS failed). */
  | 'keys_unavailable'
  /** No key in the issuer's JWKS matches the token (`kid`/`alg`). */
  | 'unknown_key'
  /** The signature does not verify. */
  | 'signature'
  /** `exp` is in the past (beyond the clock tolerance). */
  | 'expired'
  /** `nbf` is in the future (beyond the clock tolerance). */
  | 'not_yet_valid'
  /** None of the token's `aud` values is accepted by the issuer. */
  | 'audience'
  /** The token has no `exp` claim. */
  | 'missing_exp'
  /** The token is valid but matches no configured identity. */
  | 'identity'
  /** The requested resource (database) does not exist. */
  | 'resource'
  /** The identity and its groups have no grant on the resource. */
  | 'grant';

/**
 * SQLSTATE suggested for each check when the error is reported over the
 * Postgres wire protocol.
 */
export const AUTH_SQLSTATE: Readonly<Record<AuthCheck, string>> = {
  no_token: '28P01',
  malformed: '28P01',
  algorithm: '28P01',
  issuer: '28P01',
  keys_unavailable: '28000',
  unknown_key: '28P01',
  signature: '28P01',
  expired: '28P01',
  not_yet_valid: '28P01',
  audience: '28P01',
  missing_exp: '28P01',
  identity: '28000',
  resource: '3D000', // invalid_catalog_name, as for an unknown database
  grant: '42501', // insufficient_privilege
};

/** `sqlstate` follows from the check; `hint` only adds to a message that already says what to do. */
export class AuthError extends PgError {
  override readonly name = 'AuthError';
  readonly check: AuthCheck;

  constructor(check: AuthCheck, message: string, options?: { cause?: unknown; hint?: string }) {
    super(AUTH_SQLSTATE[check], message, options);
    this.check = check;
  }

  /** Same as `check`; reads better for the authorization errors. */
  get kind(): AuthCheck {
    return this.check;
  }
}

/**
 * Raised by key sources when the issuer's keys cannot be obtained. Internal:
 * TokenVerifier turns it into an AuthError with check 'keys_unavailable'.
 */
export class KeysUnavailableError extends Error {
  override readonly name = 'KeysUnavailableError';
}

/** Renders an unknown thrown value as a short, single-line description. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    // fetch() reports "fetch failed" and hides the useful part in `cause`.
    if (err.message === 'fetch failed' && cause instanceof Error) {
      const code = (cause as { code?: unknown }).code;
      return `${err.message}: ${typeof code === 'string' ? code : cause.message}`;
    }
    return err.message;
  }
  return String(err);
}
