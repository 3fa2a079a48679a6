// Token authentication and authorization of the gateway.
export { compileAuthConfig, grantsFor, DEFAULT_ALGORITHMS, SUPPORTED_ALGORITHMS } from './config.js';
export type { AuthConfig, CompiledIssuer, ResourceGrants } from './config.js';
export { AuthError, AUTH_SQLSTATE, KeysUnavailableError } from './errors.js';
export type { AuthCheck } from './errors.js';
export { KeySources, discoveryUrl, keySourceFingerprint } from './keys.js';
export type { KeySource, KeySourceOptions } from './keys.js';
export { TokenVerifier, formatDuration } from './tokens.js';
export type { TokenVerifierOptions, VerifiedToken } from './tokens.js';
export { LoginLimiter, DEFAULT_LOGIN_LIMITS } from './limiter.js';
export type { LoginLimits, LimitReport } from './limiter.js';
export { mapIdentity, authorize, claimMatches, identityMatches } from './identity.js';
export type { Principal } from './identity.js';
