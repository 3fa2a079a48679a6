// Row types of the control-plane tables, as kysely sees them.
import type { ColumnType, Generated } from 'kysely';
import type { ApprovalDecision, ApprovalRule, Mask, StatementParameter } from '@warden/proto';

/** JSON columns: written as JSON text (see jsonValue), read back parsed or as text depending on the driver. */
type Json<T> = ColumnType<T | string, string, string>;
type Timestamp = ColumnType<Date | string, Date | string | undefined, Date | string>;

export interface IssuersTable {
  name: string;
  issuer_url: string;
  audiences: Json<string[]>;
  jwks_uri: string;
  jwks_json: string;
  algorithms: Json<string[]>;
}

export interface IdentitiesTable {
  name: string;
  issuer: string;
  match: Json<{ claim: string; value: string }[]>;
  groups: Json<string[]>;
}

export interface ResourcesTable {
  name: string;
  agent: string;
  description: string;
}

export interface GrantsTable {
  id: string;
  resource: string;
  identity: string | null;
  group_name: string | null;
  /** read | write | ddl | admin (checked by the database). */
  access: ColumnType<string, string | undefined, string>;
  /** Policy rule the grant comes from; null for grants made with `warden grants add`. */
  rule: string | null;
  allow_schemas: Json<string[]>;
  deny_schemas: Json<string[]>;
  allow_tables: Json<string[]>;
  deny_tables: Json<string[]>;
  /** Views and functions ("schema.name") counted as themselves; the column defaults to []. */
  trust: ColumnType<string[] | string, string | undefined, string>;
  created_at: Timestamp;
}

/** What a mask entry stores beyond its name and resource: the wire's Mask fields. */
export type MaskSpec = Omit<Mask, 'name' | 'resource'>;

export interface MasksTable {
  name: string;
  resource: string;
  /** The entry's place in the policy file (the order masks merge in). */
  position: number;
  spec: Json<MaskSpec>;
}

/** What an approval rule stores beyond its name and resource: the wire's ApprovalRule fields. */
export type ApprovalRuleSpec = Omit<ApprovalRule, 'name' | 'resource'>;

export interface ApprovalRulesTable {
  name: string;
  resource: string;
  /** The rule's place in the policy file. */
  position: number;
  spec: Json<ApprovalRuleSpec>;
}

export interface ApprovalRequestsTable {
  id: string;
  rule: string;
  identity: string;
  resource: string;
  sql: string;
  parameters: Json<StatementParameter[]>;
  fingerprint: string;
  session_id: string;
  gateway_id: string;
  reason: string;
  why: string;
  created_at: Timestamp;
  expires_at: Timestamp;
  state: string;
  decisions: Json<ApprovalDecision[]>;
  approvers: Json<string[]>;
  quorum: number;
  mode: string;
  /** The rule's approval_ttl when the request was made. */
  approval_ttl_seconds: number;
  approval_expires_at: Timestamp | null;
  /** Audit events the control plane has recorded for this request so far (the next one's seq). */
  audit_seq: number;
  updated_at: ColumnType<Date | string, Date | string | undefined, any>;
}

/** Secrets made once per deployment; `mask` is the HMAC key of the hash mask function. */
export interface DeploymentKeysTable {
  name: string;
  secret: Uint8Array;
  created_at: Timestamp;
}

export interface AgentsTable {
  name: string;
  token_hash: string;
  revoked: boolean;
  created_at: Timestamp;
}

export interface GatewaysTable {
  id: string;
  tunnel_address: string;
  last_seen: Timestamp;
}

export interface ConfigVersionTable {
  id: Generated<number>;
  // bigint: pg hands it back as a string, PGlite as a number.
  version: ColumnType<string | number | bigint, number, number>;
}

export interface PolicyVersionsTable {
  // bigint: pg hands it back as a string, PGlite as a number.
  version: ColumnType<string | number | bigint, number, number>;
  applied_at: Timestamp;
  author: string;
  summary: string;
  yaml: string;
}

export interface Database {
  issuers: IssuersTable;
  identities: IdentitiesTable;
  resources: ResourcesTable;
  grants: GrantsTable;
  masks: MasksTable;
  approval_rules: ApprovalRulesTable;
  approval_requests: ApprovalRequestsTable;
  deployment_keys: DeploymentKeysTable;
  agents: AgentsTable;
  gateways: GatewaysTable;
  config_version: ConfigVersionTable;
  policy_versions: PolicyVersionsTable;
}
