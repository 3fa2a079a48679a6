// The audit tables (registered in storage/migrations.ts).
import { sql, type Kysely, type Migration } from 'kysely';

export const auditMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('audit_events')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('session_id', 'text')
      .addColumn('seq', 'integer')
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('time', 'timestamptz', (c) => c.notNull())
      .addColumn('gateway', 'text', (c) => c.notNull())
      .addColumn('identity', 'text')
      .addColumn('resource', 'text')
      .addColumn('kind', 'text')
      .addColumn('decision', 'text')
      .addColumn('rule', 'text')
      .addColumn('sql', 'text')
      .addColumn('body', 'text', (c) => c.notNull())
      .addColumn('prev_hash', 'text')
      .addColumn('hash', 'text')
      .addColumn('day', 'text')
      .addColumn('received_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
      // A seq is taken once per session: a second event claiming it is a duplicate.
      .addUniqueConstraint('audit_events_session_seq', ['session_id', 'seq'])
      .execute();
    await db.schema.createIndex('audit_events_time').on('audit_events').column('time').execute();
    await db.schema.createIndex('audit_events_identity_time').on('audit_events').columns(['identity', 'time']).execute();
    await db.schema.createIndex('audit_events_resource_time').on('audit_events').columns(['resource', 'time']).execute();
    await db.schema.createIndex('audit_events_day').on('audit_events').column('day').execute();

    await db.schema
      .createTable('audit_sessions')
      .addColumn('session_id', 'text', (c) => c.primaryKey())
      .addColumn('gateway', 'text', (c) => c.notNull())
      .addColumn('identity', 'text', (c) => c.notNull())
      .addColumn('resource', 'text', (c) => c.notNull())
      .addColumn('agent', 'text', (c) => c.notNull())
      .addColumn('started_at', 'timestamptz', (c) => c.notNull())
      .addColumn('ended_at', 'timestamptz')
      .addColumn('client_address', 'text')
      .addColumn('application_name', 'text')
      .addColumn('end_reason', 'text')
      .addColumn('events', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('statements', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('refused', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('errors', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('end_seq', 'integer')
      .addColumn('linked_seq', 'integer', (c) => c.notNull().defaultTo(-1))
      .addColumn('head_hash', 'text', (c) => c.notNull())
      .addColumn('last_event_at', 'timestamptz', (c) => c.notNull())
      .addColumn('sealed_day', 'text')
      .addColumn('sealed_seq', 'integer')
      .addColumn('sealed_hash', 'text')
      .execute();
    await db.schema.createIndex('audit_sessions_started').on('audit_sessions').column('started_at').execute();
    await db.schema.createIndex('audit_sessions_sealed_day').on('audit_sessions').column('sealed_day').execute();

    await db.schema
      .createTable('audit_days')
      .addColumn('day', 'text', (c) => c.primaryKey())
      .addColumn('prev_hash', 'text', (c) => c.notNull())
      .addColumn('hash', 'text', (c) => c.notNull())
      .addColumn('sessions', 'integer', (c) => c.notNull())
      .addColumn('auth_failures', 'integer', (c) => c.notNull())
      .addColumn('closed_at', 'timestamptz', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('audit_settings')
      .addColumn('key', 'text', (c) => c.primaryKey())
      .addColumn('value', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('audit_retention')
      .addColumn('id', 'serial', (c) => c.primaryKey())
      .addColumn('through_day', 'text', (c) => c.notNull())
      .addColumn('last_hash', 'text', (c) => c.notNull())
      .addColumn('sessions', 'integer', (c) => c.notNull())
      .addColumn('events', 'integer', (c) => c.notNull())
      .addColumn('at', 'timestamptz', (c) => c.notNull())
      .execute();
  },
};
