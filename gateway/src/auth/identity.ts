// From verified claims to a named identity, and from an identity to a grant.

import type { ClaimMatch, Identity, Resource } from '@warden/proto';
import type { JWTPayload } from 'jose';
import type { AuthConfig } from './config.js';
import { grantsFor } from './config.js';
import { AuthError } from './errors.js';
import type { VerifiedToken } from './tokens.js';

/** Who is connecting, once the token is mapped. */
export interface Principal {
  identity: string;
  groups: string[];
}

function quote(value: string): string {
  const text = JSON.stringify(value);
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}

/** A claim value as a string for matching; undefined when it cannot match (objects, null). */
function scalarText(value: unknown): string | undefined {
  switch (typeof value) {
    case 'string':
      return value;
    case 'number':
    case 'boolean':
    case 'bigint':
      return String(value);
    default:
      return undefined;
  }
}

function valueMatches(pattern: string, value: unknown): boolean {
  const text = scalarText(value);
  if (text === undefined) return false;
  if (pattern.endsWith('*')) return text.startsWith(pattern.slice(0, -1));
  return text === pattern;
}

/**
 * Whether one ClaimMatch holds: the claim is present and equals the value, or
 * starts with it when the value ends with '*'. For an array claim, any element
 * may match. Numbers and booleans are compared as their string form.
 */
export function claimMatches(claims: JWTPayload, match: ClaimMatch): boolean {
  if (match.claim === '' || !Object.hasOwn(claims, match.claim)) return false;
  const value = claims[match.claim];
  if (Array.isArray(value)) return value.some((element) => valueMatches(match.value, element));
  return valueMatches(match.value, value);
}

/**
 * Whether an identity accepts these claims. An identity without any
 * ClaimMatch matches nothing: "every token of the issuer" is never what an
 * admin means for a public issuer such as GitHub Actions.
 */
export function identityMatches(identity: Identity, claims: JWTPayload): boolean {
  return identity.match.length > 0 && identity.match.every((m) => claimMatches(claims, m));
}

/** String elements of the token's `groups` claim, when it is an array. */
function tokenGroups(claims: JWTPayload): string[] {
  const groups = claims['groups'];
  if (!Array.isArray(groups)) return [];
  return groups.filter((g): g is string => typeof g === 'string' && g !== '');
}

/**
 * Maps a verified token to the first identity (in definition order) of its
 * issuer whose claim matches all hold. Groups are the identity's groups
 * followed by the token's `groups` claim, without duplicates.
 */
export function mapIdentity(config: AuthConfig, verified: VerifiedToken): Principal {
  const { issuer, claims } = verified;
  const candidates = config.identitiesByIssuer.get(issuer.name) ?? [];
  const identity = candidates.find((candidate) => identityMatches(candidate, claims));
  if (!identity) {
    const sub = typeof claims.sub === 'string' ? quote(claims.sub) : '(none)';
    throw new AuthError(
      'identity',
      `token from issuer ${quote(issuer.name)} with sub ${sub} matches no identity; ` +
        'ask an admin to add one with `warden identities add`',
    );
  }
  const groups = [...new Set([...identity.groups.filter((g) => g !== ''), ...tokenGroups(claims)])];
  return { identity: identity.name, groups };
}

/**
 * Checks that `who` may reach `resource`: by a grant to the identity itself
 * or to any of its groups. Returns the resource (its `agent` serves it).
 * Fails with AuthError check 'resource' (unknown resource) or 'grant'.
 */
export function authorize(config: AuthConfig, resource: string, who: Principal): Resource {
  const found = config.resourcesByName.get(resource);
  if (!found) {
    throw new AuthError(
      'resource',
      `resource ${quote(resource)} does not exist; check the database name you connect to`,
    );
  }
  const grants = grantsFor(config, resource);
  if (grants.identities.has(who.identity) || who.groups.some((group) => grants.groups.has(group))) {
    return found;
  }
  const groups = who.groups.length > 0 ? ` or its groups (${who.groups.map(quote).join(', ')})` : '';
  throw new AuthError(
    'grant',
    `identity ${quote(who.identity)}${groups} has no grant on resource ${quote(resource)}; ` +
      'ask an admin for one with `warden grants add`',
  );
}
