// The configuration local mode needs, created only where missing so that
// edits made with the CLI survive restarts. The issuer is the exception: its
// keys must always match dev-issuer.jwk.
import type { Repository } from '../storage/repository.js';
import { hashEquals, newToken, readSecretFile, sha256Hex, writeSecretFile } from '../server/secrets.js';
import { DEV_AUDIENCE, DEV_ISSUER_NAME, DEV_ISSUER_URL } from './dev-issuer.js';

export const LOCAL_AGENT = 'local';
export const DEMO_IDENTITY = 'demo';

export interface LocalConfig {
  resource: string;
  /** Public JWKS (JSON text) of the development issuer. */
  jwksJson: string;
  description: string;
}

export async function seedLocalConfig(repo: Repository, cfg: LocalConfig): Promise<void> {
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

  if (!snap.identities.some((i) => i.name === DEMO_IDENTITY)) {
    await repo.putIdentity({ name: DEMO_IDENTITY, issuer: DEV_ISSUER_NAME, match: [{ claim: 'sub', value: 'demo' }], groups: [] });
  }
  if (!snap.resources.some((r) => r.name === cfg.resource)) {
    await repo.putResource({ name: cfg.resource, agent: LOCAL_AGENT, description: cfg.description });
  }
  if (!snap.grants.some((g) => g.resource === cfg.resource && g.identity === DEMO_IDENTITY)) {
    await repo.createGrant({ id: '', resource: cfg.resource, identity: DEMO_IDENTITY, group: '' });
  }
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
