// What the handshake hands the relay, and the refusal either of them sends.
import { PgError } from '@warden/proto/pgwire';
import type { ColumnMasks } from '../masking/plan.js';
import type { StatementGate } from '../policy/index.js';

/** A refusal the client sees as a FATAL ErrorResponse. */
export class Refusal extends PgError {
  constructor(sqlstate: string, message: string, hint?: string) {
    super(sqlstate, message, { hint });
  }
}

/** A login refused because too many failed before it from its address or as its name: counted, not recorded one by one. */
export class LoginLimited extends Refusal {}

export interface Admission {
  identity: string;
  groups: string[];
  resource: string;
  agent: string;
  readOnly: boolean;
  /** Decides each statement of this session. */
  gate: StatementGate;
  /** The masks its results are under, if any (the gate has them too). */
  masks?: ColumnMasks;
  /** The token's claims (never the token itself), for the audit record. */
  claims: Record<string, unknown>;
}
