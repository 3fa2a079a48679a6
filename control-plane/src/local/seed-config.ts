// The configuration local mode needs, created only where missing so that
// edits made with the CLI survive restarts. The issuer is the exception: its
// keys must always match dev-issuer.jwk.
import type { Repository } from '../storage/repository.js';
import { hashEquals, newToken, readSecretFile, sha256Hex, writeSecretFile } from '../server/secrets.js';
import { DEV_AUDIENCE, DEV_ISSUER_NAME, DEV_ISSUER_URL } from './dev-issuer.js';

export const LOCAL_AGENT = 'local';
export const DEMO_IDENTITY = 'demo';
/** An identity with admin access, so users can compare the two. */
export const DEMO_ADMIN_IDENTITY = 'demo-admin';
export const DEMO_READ_RULE = 'demo-read-only';
export const DEMO_ADMIN_RULE = 'demo-admin';
/** Masks the demo shop's card numbers and e-mails for `demo`; `demo-admin` sees them in clear. */
export const DEMO_MASK = 'demo-pii';

export interface LocalConfig {
  resource: string;
  /** Public JWKS (JSON text) of the development issuer. */
  jwksJson: string;
  description: string;
  /** The demo database is the resource (not --upstream). */
  demo: boolean;
}

export interface SeedOutcome {
  /** Policy version in force; when not 0, only the issuer was kept current. */
  policyVersion: number;
  /** A sentence for the user when the policy in force leaves the demo identity out. */
  warning?: string;
}

const grant = (resource: string, identity: string, rule: string, access: string) => ({
  id: '',
  resource,
  identity,
  group: '',
  access,
  rule,
  allowSchemas: [],
  denySchemas: [],
  allowTables: [],
  denyTables: [],
  trust: [],
});

/**
 * Creates what is missing. Once a policy file has been applied, the file is
 * the whole truth: only the issuer's keys are kept current, and nothing the
 * file removed (such as the admin demo identity) comes back.
 */
export async function seedLocalConfig(repo: Repository, cfg: LocalConfig): Promise<SeedOutcome> {
  const snap = await repo.snapshot();
  const issuer = {
    name: DEV_ISSUER_NAME,
    issuerUrl: DEV_ISSUER_URL,
    audiences: [DEV_AUDIENCE],
    jwksUri: '',
    jwksJson: cfg.jwksJson,
    algorithms: ['ES256'],
  };
  const current = snap.issuers.find((i) => i.name === DEV_ISSUER_NAME);
  if (JSON.stringify(current) !== JSON.stringify(issuer)) await repo.putIssuer(issuer);

  if (snap.policyVersion > 0) {
    const reaches = snap.grants.some((g) => g.resource === cfg.resource && g.identity === DEMO_IDENTITY);
    return {
      policyVersion: snap.policyVersion,
      warning: reaches
        ? undefined
        : `policy version ${snap.policyVersion} is in force and gives identity '${DEMO_IDENTITY}' no rule on resource '${cfg.resource}'; ` +
          `local mode checks readiness as '${DEMO_IDENTITY}', so add it to the policy file (issuer local-dev, match { sub: ${DEMO_IDENTITY} }) and apply it again`,
    };
  }

  for (const name of [DEMO_IDENTITY, DEMO_ADMIN_IDENTITY]) {
    if (!snap.identities.some((i) => i.name === name)) {
      await repo.putIdentity({ name, issuer: DEV_ISSUER_NAME, match: [{ claim: 'sub', value: name }], groups: [] });
    }
  }
  if (!snap.resources.some((r) => r.name === cfg.resource)) {
    await repo.putResource({ name: cfg.resource, agent: LOCAL_AGENT, description: cfg.description });
  }
  const has = (identity: string, rule: string) =>
    snap.grants.some((g) => g.resource === cfg.resource && g.identity === identity && g.rule === rule);
  if (!has(DEMO_IDENTITY, DEMO_READ_RULE)) {
    // Data directories from before rules had one unnamed read grant for demo: the named rule replaces it.
    const legacy = snap.grants.find(
      (g) =>
        g.resource === cfg.resource &&
        g.identity === DEMO_IDENTITY &&
        !g.rule &&
        g.access === 'read' &&
        g.allowSchemas.length + g.denySchemas.length + g.allowTables.length + g.denyTables.length === 0,
    );
    if (legacy) await repo.deleteGrant(legacy.id);
    await repo.createGrant(grant(cfg.resource, DEMO_IDENTITY, DEMO_READ_RULE, 'read'));
  }
  if (!has(DEMO_ADMIN_IDENTITY, DEMO_ADMIN_RULE)) {
    await repo.createGrant(grant(cfg.resource, DEMO_ADMIN_IDENTITY, DEMO_ADMIN_RULE, 'admin'));
  }
  // The demo database's customers only: a database of the user's own has no such table to mask.
  if (cfg.demo && !snap.masks.some((m) => m.name === DEMO_MASK)) {
    await repo.putMask({
      name: DEMO_MASK,
      resource: cfg.resource,
      identities: [DEMO_IDENTITY],
      groups: [],
      // demo-admin is not among the identities anyway; the exemption says so
      // where people look, and holds should the entry be widened to everyone.
      exemptIdentities: [DEMO_ADMIN_IDENTITY],
      exemptGroups: [],
      columns: [
        { pattern: 'public.customers.card_number', mask: { fn: 'partial', keep: 4, text: '', char: '' } },
        { pattern: 'public.customers.email', mask: { fn: 'email', keep: 0, text: '', char: '' } },
      ],
      detectors: [],
      predicates: 'refuse',
      onInvalid: 'null',
    });
  }
  return { policyVersion: 0 };
}

/**
 * Makes sure agent `local` is enrolled with the token in `tokenFile`. When the
 * file is missing or no longer matches (lost, or the database was reset), the
 * old enrollment is revoked and a new token is written.
 */
export async function ensureLocalAgent(repo: Repository, tokenFile: string): Promise<'kept' | 'enrolled'> {
  const agent = await repo.getAgent(LOCAL_AGENT);
  const token = readSecretFile(tokenFile);
  if (agent && !agent.revoked && token && hashEquals(agent.tokenHash, sha256Hex(token))) return 'kept';
  if (agent && !agent.revoked) await repo.revokeAgent(LOCAL_AGENT);
  const fresh = newToken('wdn_agent_');
  await repo.enrollAgent(LOCAL_AGENT, sha256Hex(fresh));
  writeSecretFile(tokenFile, `${fresh}\n`);
  return 'enrolled';
}
