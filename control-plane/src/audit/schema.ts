// Row types of the audit tables. They live apart from the configuration
// schema: audit code opens them with `db.withTables<AuditTables>()`.
import type { ColumnType, Generated } from 'kysely';

type Timestamp = ColumnType<Date | string, Date | string, Date | string>;

/** One stored event. `body` is the event as canonical JSON: what the hash chain covers. */
export interface AuditEventsTable {
  id: string;
  session_id: string | null;
  seq: number | null;
  type: string;
  time: Timestamp;
  gateway: string;
  identity: string | null;
  resource: string | null;
  kind: string | null;
  decision: string | null;
  rule: string | null;
  sql: string | null;
  body: string;
  /** Session chain: set once the event is linked (its predecessor is stored). */
  prev_hash: string | null;
  hash: string | null;
  /** Auth failures only: the day whose daily chain covers them. */
  day: string | null;
  received_at: ColumnType<Date | string, Date | string | undefined, never>;
}

export interface AuditSessionsTable {
  session_id: string;
  gateway: string;
  identity: string;
  resource: string;
  agent: string;
  started_at: Timestamp;
  ended_at: Timestamp | null;
  client_address: string | null;
  application_name: string | null;
  end_reason: string | null;
  events: Generated<number>;
  statements: Generated<number>;
  refused: Generated<number>;
  errors: Generated<number>;
  /** seq of session.end once it is stored. */
  end_seq: number | null;
  /** Highest seq linked into the chain (-1: none) and its hash. */
  linked_seq: Generated<number>;
  head_hash: string;
  /** Control-plane time of the last event stored, to seal sessions that never end. */
  last_event_at: Timestamp;
  /** Set when the session joined the daily chain: that day, and the chain position it vouches for. */
  sealed_day: string | null;
  sealed_seq: number | null;
  sealed_hash: string | null;
}

/** The daily chain: one record per closed day that sealed anything. */
export interface AuditDaysTable {
  day: string;
  prev_hash: string;
  hash: string;
  sessions: number;
  auth_failures: number;
  closed_at: Timestamp;
}

export interface AuditSettingsTable {
  key: string;
  value: string;
}

/** What retention removed, so verify starts the daily chain where it left off. */
export interface AuditRetentionTable {
  id: Generated<number>;
  through_day: string;
  last_hash: string;
  sessions: number;
  events: number;
  at: Timestamp;
}

// A type alias, not an interface: withTables<T>() wants an index-signature-compatible type.
export type AuditTables = {
  audit_events: AuditEventsTable;
  audit_sessions: AuditSessionsTable;
  audit_days: AuditDaysTable;
  audit_settings: AuditSettingsTable;
  audit_retention: AuditRetentionTable;
};
