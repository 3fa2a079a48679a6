// The API's answers, as the pages use them (control-plane/src/console/api.ts).
// Shapes the server defines are imported as types only: nothing of the
// server reaches the bundle.
import type { SessionSummary } from '../../control-plane/src/audit/query.js';
import type { ConsoleRole } from '../../control-plane/src/policy/console.js';
export type { EventView } from '../../control-plane/src/console/views.js';

export type Role = ConsoleRole;

export interface Me {
  name: string;
  display: string;
  issuer: string;
  groups: string[];
  role: Role | null;
  csrf: string;
  roles: Record<Role, string[]>;
}

export type Session = SessionSummary & { live: boolean };

export interface Approval {
  id: string;
  state: string;
  identity: string;
  resource: string;
  rule: string;
  sql: string;
  why: string;
  reason: string;
  approvers: string[];
  quorum: number;
  createdAt: string;
  expiresAt: string;
  decisions: { approver: string; approve: boolean; reason: string; at: string }[];
}

export interface Overview {
  since: string;
  bucketMinutes: number;
  counts: { sessions: number; live: number; statements: number; refused: number; pendingApprovals: number };
  identities: { identity: string; statements: number[]; refused: number[] }[];
}
