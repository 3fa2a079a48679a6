// The policy file's model: what a validated file turns into. The file's
// shape is control-plane/policy.schema.json (checked by schema.ts).
import type { ApprovalRule, Issuer, Identity, Mask, Resource } from '@warden/proto';
import { ACCESS_LEVELS, ALGORITHMS, type AccessLevel } from '../storage/validate.js';

export { ACCESS_LEVELS, ALGORITHMS, type AccessLevel };

/** The only format version so far. */
export const POLICY_FORMAT_VERSION = 1;

/** A rule of the file: who may do what on one resource. */
export interface PolicyRule {
  name: string;
  resource: string;
  identities: string[];
  groups: string[];
  access: AccessLevel;
  allowSchemas: string[];
  denySchemas: string[];
  allowTables: string[];
  denyTables: string[];
  /** Views and functions ("schema.name") counted as themselves rather than what they reach. */
  trust: string[];
}

export interface Policy {
  version: number;
  issuers: Issuer[];
  identities: Identity[];
  resources: Resource[];
  rules: PolicyRule[];
  /** In the file's order, with defaults filled in (see storage/validate-mask.ts). */
  masks: Mask[];
  /** The `approvals` section, in the file's order, with defaults filled in (see storage/validate-approval.ts). */
  approvals: ApprovalRule[];
}

/** One mistake in a policy file; line and column are 1-based. */
export interface PolicyProblem {
  line: number;
  col: number;
  message: string;
}

/** "FILE:line:col: message", as compilers print it. */
export const formatProblem = (p: PolicyProblem, file?: string) => `${file ? `${file}:` : ''}${p.line}:${p.col}: ${p.message}`;

/** Parses "line:col: message" back (what the server sends in INVALID_ARGUMENT details). */
export function parseProblem(text: string): PolicyProblem | undefined {
  const m = /^(\d+):(\d+): (.*)$/s.exec(text);
  return m ? { line: Number(m[1]), col: Number(m[2]), message: m[3]! } : undefined;
}
