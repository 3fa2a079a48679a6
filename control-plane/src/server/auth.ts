// Who may call what: the admin token for admin calls, the gateway token for
// WatchConfig, an enrolled agent's token for WatchGateways (docs/processes.md).
import { status, type Metadata } from '@grpc/grpc-js';
import { readBearer } from '@warden/proto';
import type { Repository } from '../storage/repository.js';
import { checkName } from '../storage/validate.js';
import { ConfigError } from '../storage/errors.js';
import { StatusError } from './status.js';
import { hashEquals, secretEquals, sha256Hex } from './secrets.js';

const missing = (what: string) =>
  new StatusError(status.UNAUTHENTICATED, `missing credentials: send 'authorization: Bearer <${what}>'`);

export class Authenticator {
  constructor(
    private readonly adminToken: string,
    private readonly gatewayToken: string,
  ) {}

  /** Admin calls. A valid token of another kind is PERMISSION_DENIED, anything else UNAUTHENTICATED. */
  admin(md: Metadata): void {
    const token = readBearer(md);
    if (!token) throw missing('admin token');
    if (secretEquals(token, this.adminToken)) return;
    if (secretEquals(token, this.gatewayToken)) {
      throw new StatusError(status.PERMISSION_DENIED, 'the gateway token cannot make admin calls; use the admin token');
    }
    throw new StatusError(status.UNAUTHENTICATED, 'invalid admin token');
  }

  /** WatchConfig. */
  gateway(md: Metadata): void {
    const token = readBearer(md);
    if (!token) throw missing('gateway token');
    if (secretEquals(token, this.gatewayToken)) return;
    if (secretEquals(token, this.adminToken)) {
      throw new StatusError(status.PERMISSION_DENIED, 'WatchConfig needs the gateway token, not the admin token');
    }
    throw new StatusError(status.UNAUTHENTICATED, 'invalid gateway token');
  }

  /**
   * WatchGateways: the token must hash to the stored hash of agent `name`.
   * Returns that hash so the stream can notice a later revocation or re-enrollment.
   */
  async agent(md: Metadata, name: string, repo: Repository): Promise<string> {
    try {
      checkName('agent', name);
    } catch (err) {
      throw new StatusError(status.INVALID_ARGUMENT, (err as ConfigError).message);
    }
    const token = readBearer(md);
    if (!token) throw missing('enrollment token');
    const hash = sha256Hex(token);
    const agent = await repo.getAgent(name);
    // One message for "no such agent" and "wrong token": unauthenticated
    // callers learn nothing about which agents exist.
    if (!agent || !hashEquals(agent.tokenHash, hash)) {
      throw new StatusError(status.UNAUTHENTICATED, `unknown agent '${name}' or wrong enrollment token`);
    }
    if (agent.revoked) throw new StatusError(status.PERMISSION_DENIED, `agent '${name}' has been revoked`);
    return hash;
  }
}
