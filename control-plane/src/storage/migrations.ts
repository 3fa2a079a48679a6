// Schema migrations, kept in code so the compiled package needs no SQL files.
import { Migrator, sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import { auditMigration } from '../audit/migration.js';

/** Exported for tests that start from an older schema. */
export const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('issuers')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('issuer_url', 'text', (c) => c.notNull())
        .addColumn('audiences', 'jsonb', (c) => c.notNull())
        .addColumn('jwks_uri', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('jwks_json', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('algorithms', 'jsonb', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('identities')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('issuer', 'text', (c) => c.notNull().references('issuers.name'))
        .addColumn('match', 'jsonb', (c) => c.notNull())
        .addColumn('groups', 'jsonb', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('resources')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('agent', 'text', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .execute();
      await db.schema
        .createTable('grants')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('resource', 'text', (c) => c.notNull().references('resources.name'))
        .addColumn('identity', 'text', (c) => c.references('identities.name'))
        .addColumn('group_name', 'text')
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addCheckConstraint('grants_one_subject', sql`(identity is null) <> (group_name is null)`)
        // NULLs are distinct, so these two only bite within their own kind of grant.
        .addUniqueConstraint('grants_resource_identity', ['resource', 'identity'])
        .addUniqueConstraint('grants_resource_group', ['resource', 'group_name'])
        .execute();
      await db.schema
        .createTable('agents')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('token_hash', 'text', (c) => c.notNull())
        .addColumn('revoked', 'boolean', (c) => c.notNull().defaultTo(false))
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
      await db.schema
        .createTable('gateways')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('tunnel_address', 'text', (c) => c.notNull())
        .addColumn('last_seen', 'timestamptz', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('config_version')
        .addColumn('id', 'integer', (c) => c.primaryKey().check(sql`id = 1`))
        .addColumn('version', 'bigint', (c) => c.notNull())
        .execute();
      await db.insertInto('config_version').values({ id: 1, version: 1 }).execute();
    },
  },
  // Access levels and scopes on grants (policy rules), and the history of
  // applied policy files.
  '0002_policy': {
    async up(db: Kysely<any>) {
      const list = (c: any) => c.notNull().defaultTo(sql`'[]'::jsonb`);
      await db.schema
        .alterTable('grants')
        .addColumn('access', 'text', (c) => c.notNull().defaultTo('read').check(sql`access in ('read', 'write', 'ddl', 'admin')`))
        .addColumn('rule', 'text')
        .addColumn('allow_schemas', 'jsonb', list)
        .addColumn('deny_schemas', 'jsonb', list)
        .addColumn('allow_tables', 'jsonb', list)
        .addColumn('deny_tables', 'jsonb', list)
        .execute();
      // With access levels and scopes, one subject may hold several grants on
      // a resource (read everywhere, write on one table). What stays unique is
      // a policy rule's grant per subject; NULL rules (CLI grants) never clash
      // here, the repository refuses exact duplicates among those.
      await db.schema.alterTable('grants').dropConstraint('grants_resource_identity').execute();
      await db.schema.alterTable('grants').dropConstraint('grants_resource_group').execute();
      await db.schema.alterTable('grants').addUniqueConstraint('grants_rule_identity', ['rule', 'identity']).execute();
      await db.schema.alterTable('grants').addUniqueConstraint('grants_rule_group', ['rule', 'group_name']).execute();
      await db.schema
        .createTable('policy_versions')
        .addColumn('version', 'bigint', (c) => c.primaryKey())
        .addColumn('applied_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('author', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('summary', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('yaml', 'text', (c) => c.notNull())
        .execute();
    },
  },
  // The audit trail: events, sessions and their hash chains (audit/migration.ts).
  '0003_audit': auditMigration,
  // Views and functions a grant's rule trusts: the gateway counts them as
  // themselves rather than as what they reach. Existing grants trust nothing.
  '0004_grant_trust': {
    async up(db: Kysely<any>) {
      await db.schema
        .alterTable('grants')
        .addColumn('trust', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
        .execute();
    },
  },
  // Masks of the policy file, in the file's order (the order the gateway
  // merges them in); an entry's lists and functions are its spec, stored as
  // the wire's Mask in JSON. And the deployment's masking key, made once by
  // whichever replica asks first, so that every gateway hashes alike.
  '0005_masks': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('masks')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('resource', 'text', (c) => c.notNull().references('resources.name'))
        .addColumn('position', 'integer', (c) => c.notNull())
        .addColumn('spec', 'jsonb', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('deployment_keys')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('secret', 'bytea', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
    },
  },
  // Approvals (issue 13): the policy file's rules, in the file's order, each
  // stored as the wire's ApprovalRule in JSON like masks; and the requests
  // gateways open for held statements. A gateway retrying the same held
  // statement of a session while it waits gets the pending request back: the
  // partial unique index makes that hold between replicas too. updated_at is
  // the database's clock, so every replica's watch poll reads changes alike.
  '0006_approvals': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('approval_rules')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('resource', 'text', (c) => c.notNull().references('resources.name'))
        .addColumn('position', 'integer', (c) => c.notNull())
        .addColumn('spec', 'jsonb', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('approval_requests')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('rule', 'text', (c) => c.notNull())
        .addColumn('identity', 'text', (c) => c.notNull())
        .addColumn('resource', 'text', (c) => c.notNull())
        .addColumn('sql', 'text', (c) => c.notNull())
        .addColumn('parameters', 'jsonb', (c) => c.notNull())
        .addColumn('fingerprint', 'text', (c) => c.notNull())
        .addColumn('session_id', 'text', (c) => c.notNull())
        .addColumn('gateway_id', 'text', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('why', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('created_at', 'timestamptz', (c) => c.notNull())
        .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('decisions', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
        .addColumn('approvers', 'jsonb', (c) => c.notNull())
        .addColumn('quorum', 'integer', (c) => c.notNull())
        .addColumn('mode', 'text', (c) => c.notNull())
        .addColumn('approval_ttl_seconds', 'integer', (c) => c.notNull())
        .addColumn('approval_expires_at', 'timestamptz')
        .addColumn('audit_seq', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`clock_timestamp()`))
        .execute();
      await db.schema
        .createIndex('approval_requests_pending')
        .on('approval_requests')
        .columns(['gateway_id', 'session_id', 'fingerprint'])
        .unique()
        .where(sql.ref('state'), '=', 'pending')
        .execute();
      await db.schema.createIndex('approval_requests_updated').on('approval_requests').columns(['gateway_id', 'updated_at']).execute();
      await db.schema.createIndex('approval_requests_consume').on('approval_requests').columns(['fingerprint', 'state']).execute();
      await db.schema.createIndex('approval_requests_state').on('approval_requests').columns(['state', 'expires_at']).execute();
    },
  },
};

const provider: MigrationProvider = { getMigrations: async () => migrations };

export async function migrate(db: Kysely<any>): Promise<void> {
  const { error, results } = await new Migrator({ db, provider }).migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`database migration ${failed ?? ''} failed: ${reason}`);
  }
}
