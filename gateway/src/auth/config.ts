// Per-snapshot indexes for token authentication and authorization.
//
// A gateway receives a whole Snapshot after every configuration change. We
// compile it once into maps so that the per-connection path (pick the issuer
// by `iss`, find the identities of that issuer, look up a resource and its
// grants) is a handful of map lookups.

import type { Identity, Issuer, Resource, Snapshot } from '@warden/proto';

/** Algorithms used when an issuer does not list any. */
export const DEFAULT_ALGORITHMS: readonly string[] = ['RS256', 'ES256'];

/**
 * Asymmetric JWS algorithms we are willing to verify. Anything else (in
 * particular `none` and the HMAC family HS256/384/512) is dropped from an
 * issuer's list: a JWKS holds public keys, and accepting HMAC would let anyone
 * holding the public key mint tokens.
 */
export const SUPPORTED_ALGORITHMS: ReadonlySet<string> = new Set([
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
]);

/** An issuer with its settings normalised for verification. */
export interface CompiledIssuer {
  readonly issuer: Issuer;
  /** Allowed `alg` values (never empty unless the configured list had only unusable entries). */
  readonly algorithms: readonly string[];
  /** Accepted `aud` values. */
  readonly audiences: readonly string[];
}

/** Who may reach one resource. */
export interface ResourceGrants {
  readonly identities: ReadonlySet<string>;
  readonly groups: ReadonlySet<string>;
}

export interface AuthConfig {
  /** Snapshot version this was compiled from. */
  readonly version: number;
  /** Trusted issuers keyed by their exact `iss` value (issuer_url). */
  readonly issuersByUrl: ReadonlyMap<string, CompiledIssuer>;
  /** Identities keyed by issuer name, in snapshot (definition) order. */
  readonly identitiesByIssuer: ReadonlyMap<string, readonly Identity[]>;
  /** Resources keyed by name. */
  readonly resourcesByName: ReadonlyMap<string, Resource>;
  /** Grants keyed by resource name. */
  readonly grantsByResource: ReadonlyMap<string, ResourceGrants>;
  /**
   * Problems found while compiling (duplicate issuer URLs, dropped algorithms,
   * identities naming unknown issuers, ...). The snapshot is still usable; the
   * caller should log these.
   */
  readonly warnings: readonly string[];
}

const EMPTY_GRANTS: ResourceGrants = { identities: new Set(), groups: new Set() };

/** Grants of a resource; empty sets when it has none. */
export function grantsFor(config: AuthConfig, resource: string): ResourceGrants {
  return config.grantsByResource.get(resource) ?? EMPTY_GRANTS;
}

function compileAlgorithms(issuer: Issuer, warnings: string[]): string[] {
  if (issuer.algorithms.length === 0) return [...DEFAULT_ALGORITHMS];
  const allowed: string[] = [];
  for (const alg of issuer.algorithms) {
    if (SUPPORTED_ALGORITHMS.has(alg)) {
      if (!allowed.includes(alg)) allowed.push(alg);
    } else {
      warnings.push(
        `issuer "${issuer.name}": algorithm "${alg}" is not allowed (only asymmetric algorithms ` +
          `${[...SUPPORTED_ALGORITHMS].join(', ')}); ignoring it`,
      );
    }
  }
  if (allowed.length === 0) {
    warnings.push(`issuer "${issuer.name}": no usable algorithms configured; every token from it will be refused`);
  }
  return allowed;
}

/** Builds the lookup indexes for one snapshot. Pure; never throws on odd data. */
export function compileAuthConfig(snapshot: Snapshot): AuthConfig {
  const warnings: string[] = [];

  const issuersByUrl = new Map<string, CompiledIssuer>();
  const issuerNames = new Set<string>();
  for (const issuer of snapshot.issuers) {
    issuerNames.add(issuer.name);
    if (!issuer.issuerUrl) {
      warnings.push(`issuer "${issuer.name}" has no issuer_url; ignoring it`);
      continue;
    }
    const existing = issuersByUrl.get(issuer.issuerUrl);
    if (existing) {
      warnings.push(
        `issuers "${existing.issuer.name}" and "${issuer.name}" share issuer_url ${issuer.issuerUrl}; ` +
          `using "${existing.issuer.name}"`,
      );
      continue;
    }
    const audiences = [...new Set(issuer.audiences.filter((a) => a !== ''))];
    if (audiences.length === 0) {
      warnings.push(`issuer "${issuer.name}" accepts no audiences; every token from it will be refused`);
    }
    issuersByUrl.set(issuer.issuerUrl, {
      issuer,
      algorithms: compileAlgorithms(issuer, warnings),
      audiences,
    });
  }

  const identitiesByIssuer = new Map<string, Identity[]>();
  const identityNames = new Set<string>();
  for (const identity of snapshot.identities) {
    if (identityNames.has(identity.name)) {
      warnings.push(`identity "${identity.name}" is defined more than once; the first definition that matches wins`);
    }
    identityNames.add(identity.name);
    if (identity.match.length === 0) {
      warnings.push(`identity "${identity.name}" has no claim matches, so no token maps to it`);
    }
    if (!issuerNames.has(identity.issuer)) {
      warnings.push(`identity "${identity.name}" names unknown issuer "${identity.issuer}"`);
    }
    let list = identitiesByIssuer.get(identity.issuer);
    if (!list) {
      list = [];
      identitiesByIssuer.set(identity.issuer, list);
    }
    list.push(identity);
  }

  const resourcesByName = new Map<string, Resource>();
  for (const resource of snapshot.resources) {
    if (resourcesByName.has(resource.name)) {
      warnings.push(`resource "${resource.name}" is defined more than once; using the first definition`);
      continue;
    }
    resourcesByName.set(resource.name, resource);
  }

  const grantsByResource = new Map<string, { identities: Set<string>; groups: Set<string> }>();
  for (const grant of snapshot.grants) {
    if (!resourcesByName.has(grant.resource)) {
      warnings.push(`grant ${grant.id || '(no id)'} names unknown resource "${grant.resource}"`);
    }
    let entry = grantsByResource.get(grant.resource);
    if (!entry) {
      entry = { identities: new Set(), groups: new Set() };
      grantsByResource.set(grant.resource, entry);
    }
    if (grant.identity) entry.identities.add(grant.identity);
    if (grant.group) entry.groups.add(grant.group);
    if (!grant.identity && !grant.group) {
      warnings.push(`grant ${grant.id || '(no id)'} on "${grant.resource}" names neither an identity nor a group`);
    }
  }

  return {
    version: snapshot.version,
    issuersByUrl,
    identitiesByIssuer,
    resourcesByName,
    grantsByResource,
    warnings,
  };
}
