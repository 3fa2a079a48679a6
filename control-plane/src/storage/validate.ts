// Input checks for configuration objects. Each returns a normalized copy or
// throws a ConfigError whose message says what is wrong and what is allowed.
import type { Grant, Identity, Issuer, Resource } from '@warden/proto';
import { invalid } from './errors.js';

export const NAME = /^[a-z0-9_-]{1,63}$/;
// Gateway ids may be host names, so they allow dots and upper case too.
const GATEWAY_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
// Characters that make a value unprintable or ambiguous in logs and tables.
const CONTROL = /[\u0000-\u001f\u007f]/;

export const ALGORITHMS = [
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA',
] as const;

/** Access levels, lowest first (the gateway's classifier uses the same four). */
export const ACCESS_LEVELS = ['read', 'write', 'ddl', 'admin'] as const;
export type AccessLevel = (typeof ACCESS_LEVELS)[number];

/** A schema in a scope: one name, no dot, no spaces. */
export const SCHEMA_ENTRY = /^[^.\s\x00-\x1f\x7f]{1,63}$/;
/** A table in a scope: "schema.table", or "table" for that name in any schema. */
export const TABLE_ENTRY = /^([^.\s\x00-\x1f\x7f]{1,63}\.)?[^.\s\x00-\x1f\x7f]{1,63}$/;

/**
 * A view, materialized view, function or procedure a rule trusts:
 * "schema.name", both parts as Postgres stores unquoted identifiers (lower
 * case), without argument types (every function of that name is meant).
 */
export const TRUST_ENTRY = /^[a-z_][a-z0-9_$]{0,62}\.[a-z_][a-z0-9_$]{0,62}$/;

/** Why a trust entry is invalid, or undefined when it is fine. */
export function trustProblem(entry: string): string | undefined {
  if (TRUST_ENTRY.test(entry)) return undefined;
  const hint = entry.includes('(')
    ? 'without argument types (it covers every function of that name)'
    : !entry.includes('.')
      ? 'with the schema (a view or function is always named with its schema)'
      : /[A-Z]/.test(entry)
        ? 'in lower case, as Postgres stores unquoted names'
        : 'of a view or function, each part 1-63 of a-z, 0-9, _ or $ (not starting with a digit or $)';
  return `'${entry}' is invalid: give schema.name ${hint}`;
}

export function checkTrustEntry(entry: string): string {
  const problem = trustProblem(entry);
  if (problem) throw invalid(`trust ${problem}`);
  return entry;
}

export function checkAccess(access: string): AccessLevel {
  if (!(ACCESS_LEVELS as readonly string[]).includes(access)) {
    throw invalid(`access '${access}' is invalid: use one of ${ACCESS_LEVELS.join(', ')}`);
  }
  return access as AccessLevel;
}

export function checkSchemaEntry(entry: string): string {
  if (!SCHEMA_ENTRY.test(entry)) throw invalid(`schema '${entry}' is invalid: give a schema name without dots or spaces`);
  return entry;
}

export function checkTableEntry(entry: string): string {
  if (!TABLE_ENTRY.test(entry)) {
    throw invalid(`table '${entry}' is invalid: give schema.table, or table for that name in any schema`);
  }
  return entry;
}

export function checkName(kind: string, name: string): string {
  if (!NAME.test(name)) {
    const shown = name === '' ? 'is missing' : `'${name}' is invalid`;
    throw invalid(`${kind} name ${shown}: use 1-63 lowercase letters, digits, '-' or '_'`);
  }
  return name;
}

function checkText(what: string, value: string, max: number): string {
  if (value.length > max) throw invalid(`${what} is longer than ${max} characters`);
  if (CONTROL.test(value)) throw invalid(`${what} contains control characters`);
  return value;
}

function isHttpUrl(value: string): boolean {
  try {
    const u = new URL(value);
    return u.protocol === 'https:' || u.protocol === 'http:';
  } catch {
    return false;
  }
}

const unique = <T>(xs: T[]) => [...new Set(xs)];

export function checkGroup(group: string): string {
  if (group.trim() === '' || group.trim() !== group) {
    throw invalid(`group '${group}' is invalid: it must be non-empty without surrounding spaces`);
  }
  return checkText(`group '${group}'`, group, 128);
}

export function validateIssuer(i: Issuer): Issuer {
  checkName('issuer', i.name);
  const issuerUrl = checkText('issuer URL', i.issuerUrl ?? '', 2048);
  if (issuerUrl.trim() === '' || /\s/.test(issuerUrl)) {
    throw invalid(`issuer '${i.name}' needs an issuer URL (the token's exact 'iss' value, without spaces)`);
  }
  const audiences = unique(i.audiences.map((a) => a.trim()));
  if (audiences.length === 0 || audiences.some((a) => a === '')) {
    throw invalid(`issuer '${i.name}' needs at least one non-empty audience`);
  }
  audiences.forEach((a) => checkText('audience', a, 512));
  if (i.jwksUri && i.jwksJson) {
    throw invalid(`issuer '${i.name}' has both a JWKS URI and an inline JWKS; give only one`);
  }
  if (i.jwksUri && !isHttpUrl(i.jwksUri)) {
    throw invalid(`JWKS URI '${i.jwksUri}' of issuer '${i.name}' is not an http(s) URL`);
  }
  if (i.jwksJson) checkJwks(i.name, i.jwksJson);
  if (!i.jwksUri && !i.jwksJson && !isHttpUrl(issuerUrl)) {
    throw invalid(
      `issuer '${i.name}' has no JWKS URI or inline JWKS, so its keys come from OIDC discovery, which needs an http(s) issuer URL`,
    );
  }
  const algorithms = unique(i.algorithms);
  for (const alg of algorithms) {
    if (!(ALGORITHMS as readonly string[]).includes(alg)) {
      throw invalid(`algorithm '${alg}' is not supported; use one of ${ALGORITHMS.join(', ')}`);
    }
  }
  return {
    name: i.name,
    issuerUrl,
    audiences,
    jwksUri: i.jwksUri,
    jwksJson: i.jwksJson,
    algorithms,
  };
}

function checkJwks(issuer: string, text: string): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw invalid(`inline JWKS of issuer '${issuer}' is not valid JSON`);
  }
  const keys = (parsed as { keys?: unknown })?.keys;
  if (!Array.isArray(keys) || keys.length === 0 || !keys.every((k) => typeof k?.kty === 'string')) {
    throw invalid(`inline JWKS of issuer '${issuer}' must be {"keys": [...]} with at least one key`);
  }
  if (keys.some((k) => 'd' in k)) {
    throw invalid(`inline JWKS of issuer '${issuer}' contains a private key; give only the public keys`);
  }
}

export function validateIdentity(i: Identity): Identity {
  checkName('identity', i.name);
  checkName('issuer', i.issuer);
  if (i.match.length === 0) {
    // Without any claim to match, every token of the issuer would be this identity.
    throw invalid(`identity '${i.name}' needs at least one claim match, e.g. sub=...`);
  }
  const seen = new Set<string>();
  const match = i.match.map(({ claim, value }) => {
    if (claim === '' || /\s/.test(claim)) throw invalid(`claim name '${claim}' is invalid: it must be non-empty without spaces`);
    if (seen.has(claim)) throw invalid(`claim '${claim}' is matched twice in identity '${i.name}'`);
    seen.add(claim);
    if (value === '') throw invalid(`claim '${claim}' of identity '${i.name}' needs a value to match`);
    if (value.slice(0, -1).includes('*')) {
      throw invalid(`claim '${claim}' value '${value}': '*' is only allowed at the end, as a prefix wildcard`);
    }
    checkText(`claim '${claim}'`, claim, 128);
    checkText(`value of claim '${claim}'`, value, 512);
    return { claim, value };
  });
  return { name: i.name, issuer: i.issuer, match, groups: unique(i.groups.map(checkGroup)) };
}

export function validateResource(r: Resource): Resource {
  checkName('resource', r.name);
  checkName('agent', r.agent);
  return { name: r.name, agent: r.agent, description: checkText('description', r.description, 500) };
}

/** The grant id is assigned by the store; any id sent in is ignored. */
export function validateGrant(g: Grant): Omit<Grant, 'id'> {
  checkName('resource', g.resource);
  if (Boolean(g.identity) === Boolean(g.group)) {
    throw invalid('a grant names exactly one of identity or group');
  }
  if (g.identity) checkName('identity', g.identity);
  if (g.group) checkGroup(g.group);
  const rule = g.rule ?? '';
  if (rule) checkName('rule', rule);
  const scope = (xs: string[] | undefined, check: (x: string) => string) => unique((xs ?? []).map(check));
  return {
    resource: g.resource,
    identity: g.identity,
    group: g.group,
    access: checkAccess(g.access || 'read'),
    rule,
    allowSchemas: scope(g.allowSchemas, checkSchemaEntry),
    denySchemas: scope(g.denySchemas, checkSchemaEntry),
    allowTables: scope(g.allowTables, checkTableEntry),
    denyTables: scope(g.denyTables, checkTableEntry),
    trust: scope(g.trust, checkTrustEntry),
  };
}

export function validateGatewayRegistration(id: string, tunnelAddress: string): void {
  if (!GATEWAY_ID.test(id)) {
    throw invalid(`gateway id '${id}' is invalid: use 1-128 letters, digits, '.', '-' or '_'`);
  }
  const m = /^(.+):(\d{1,5})$/.exec(tunnelAddress);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535 || /\s/.test(m[1]!)) {
    throw invalid(`tunnel address '${tunnelAddress}' of gateway '${id}' must be host:port`);
  }
}
