// What every audit operation needs: the database with the audit tables, a
// clock (tests move it across days) and a logger.
import type { Kysely, Transaction } from 'kysely';
import type { Logger } from 'pino';
import type { AuditTables } from './schema.js';

export type AuditDb = Kysely<AuditTables>;
export type AuditTrx = Transaction<AuditTables>;

export interface AuditContext {
  db: AuditDb;
  now: () => Date;
  log: Logger;
}

/** Timestamps come back as Date from pg and PGlite, as text from some drivers. */
export const isoOf = (t: Date | string) => (t instanceof Date ? t : new Date(t)).toISOString();
