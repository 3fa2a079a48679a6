// All reads and writes of the configuration. Every write runs in a
// transaction that also bumps config_version, then tells listeners so the
// watch streams can push a fresh snapshot.
import { randomBytes } from 'node:crypto';
import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import type { Agent, Gateway, Grant, Identity, Issuer, Resource, Snapshot } from '@warden/proto';
import { ConfigError, alreadyExists, inUse, notFound } from './errors.js';
import type { AgentsTable, Database } from './schema.js';
import {
  checkName,
  validateGatewayRegistration,
  validateGrant,
  validateIdentity,
  validateIssuer,
  validateResource,
} from './validate.js';

type Db = Kysely<Database> | Transaction<Database>;

// Bind JSON as text and cast, so pg and PGlite both store exactly this JSON
// (pg would otherwise turn a JS array into a Postgres array literal).
const json = (value: unknown) => sql<string>`cast(cast(${JSON.stringify(value)} as text) as jsonb)`;
const parse = <T>(value: T | string): T => (typeof value === 'string' ? (JSON.parse(value) as T) : value);
const iso = (value: Date | string) => (value instanceof Date ? value : new Date(value)).toISOString();
const toAgent = (r: Selectable<AgentsTable>): Agent => ({
  name: r.name,
  tokenHash: r.token_hash,
  revoked: r.revoked,
  createdAt: iso(r.created_at),
});
const list = (names: string[]) => names.map((n) => `'${n}'`).join(', ');

/** Postgres error codes that mean a constraint caught a concurrent change. */
function constraintError(err: unknown): ConfigError | undefined {
  const code = (err as { code?: string })?.code;
  if (code === '23505') return alreadyExists('that object already exists (changed concurrently); list and retry');
  if (code === '23503') return inUse('a referenced object is missing or still in use (changed concurrently); list and retry');
  return undefined;
}

export type ChangeListener = () => void;

export class Repository {
  private readonly listeners = new Set<ChangeListener>();

  constructor(private readonly db: Kysely<Database>) {}

  /** Called after every committed change. Returns the unsubscribe function. */
  onChange(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async change<T>(fn: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await this.db.transaction().execute(async (trx) => {
        const r = await fn(trx);
        await trx.updateTable('config_version').set({ version: sql`version + 1` }).where('id', '=', 1).execute();
        return r;
      });
    } catch (err) {
      throw constraintError(err) ?? err;
    }
    for (const listener of this.listeners) listener();
    return result;
  }

  async version(db: Db = this.db): Promise<number> {
    const row = await db.selectFrom('config_version').select('version').where('id', '=', 1).executeTakeFirstOrThrow();
    return Number(row.version);
  }

  /** The whole configuration, read consistently in one transaction. */
  async snapshot(): Promise<Snapshot> {
    return this.db
      .transaction()
      .setIsolationLevel('repeatable read')
      .execute(async (trx) => ({
        version: await this.version(trx),
        issuers: await this.issuers(trx),
        identities: await this.identities(trx),
        resources: await trx.selectFrom('resources').selectAll().orderBy('name').execute(),
        grants: await this.grants(trx),
        agents: await this.agents(trx),
        gateways: await this.gateways(trx),
      }));
  }

  private async issuers(db: Db): Promise<Issuer[]> {
    const rows = await db.selectFrom('issuers').selectAll().orderBy('name').execute();
    return rows.map((r) => ({
      name: r.name,
      issuerUrl: r.issuer_url,
      audiences: parse(r.audiences),
      jwksUri: r.jwks_uri,
      jwksJson: r.jwks_json,
      algorithms: parse(r.algorithms),
    }));
  }

  private async identities(db: Db): Promise<Identity[]> {
    const rows = await db.selectFrom('identities').selectAll().orderBy('name').execute();
    return rows.map((r) => ({ ...r, match: parse(r.match), groups: parse(r.groups) }));
  }

  private async grants(db: Db, resource?: string): Promise<Grant[]> {
    let q = db.selectFrom('grants').selectAll().orderBy('resource').orderBy('created_at').orderBy('id');
    if (resource) q = q.where('resource', '=', resource);
    const rows = await q.execute();
    return rows.map((r) => ({ id: r.id, resource: r.resource, identity: r.identity ?? '', group: r.group_name ?? '' }));
  }

  private async agents(db: Db): Promise<Agent[]> {
    const rows = await db.selectFrom('agents').selectAll().orderBy('name').execute();
    return rows.map(toAgent);
  }

  async gateways(db: Db = this.db): Promise<Gateway[]> {
    const rows = await db.selectFrom('gateways').selectAll().orderBy('id').execute();
    return rows.map((r) => ({ id: r.id, tunnelAddress: r.tunnel_address, lastSeen: iso(r.last_seen) }));
  }

  async getAgent(name: string): Promise<Agent | undefined> {
    const row = await this.db.selectFrom('agents').selectAll().where('name', '=', name).executeTakeFirst();
    return row && toAgent(row);
  }

  // ---- issuers ------------------------------------------------------------

  /** Creates or replaces an issuer. */
  async putIssuer(input: Issuer): Promise<Issuer> {
    const i = validateIssuer(input);
    const row = {
      issuer_url: i.issuerUrl,
      audiences: json(i.audiences),
      jwks_uri: i.jwksUri,
      jwks_json: i.jwksJson,
      algorithms: json(i.algorithms),
    };
    await this.change((trx) =>
      trx
        .insertInto('issuers')
        .values({ name: i.name, ...row })
        .onConflict((oc) => oc.column('name').doUpdateSet(row))
        .execute(),
    );
    return i;
  }

  async deleteIssuer(name: string): Promise<void> {
    checkName('issuer', name);
    await this.change(async (trx) => {
      const users = await trx.selectFrom('identities').select('name').where('issuer', '=', name).execute();
      if (users.length > 0) {
        throw inUse(`issuer '${name}' is used by identities ${list(users.map((u) => u.name))}; remove them first`);
      }
      const res = await trx.deleteFrom('issuers').where('name', '=', name).executeTakeFirst();
      if (res.numDeletedRows === 0n) throw notFound(`issuer '${name}' does not exist`);
    });
  }

  // ---- identities ---------------------------------------------------------

  /** Creates or replaces an identity; its issuer must exist. */
  async putIdentity(input: Identity): Promise<Identity> {
    const i = validateIdentity(input);
    const row = { issuer: i.issuer, match: json(i.match), groups: json(i.groups) };
    await this.change(async (trx) => {
      const issuer = await trx.selectFrom('issuers').select('name').where('name', '=', i.issuer).executeTakeFirst();
      if (!issuer) throw notFound(`issuer '${i.issuer}' does not exist; add it first`);
      await trx
        .insertInto('identities')
        .values({ name: i.name, ...row })
        .onConflict((oc) => oc.column('name').doUpdateSet(row))
        .execute();
    });
    return i;
  }

  async deleteIdentity(name: string): Promise<void> {
    checkName('identity', name);
    await this.change(async (trx) => {
      const grants = await trx.selectFrom('grants').select('id').where('identity', '=', name).execute();
      if (grants.length > 0) {
        throw inUse(`identity '${name}' still has grants ${list(grants.map((g) => g.id))}; remove them first`);
      }
      const res = await trx.deleteFrom('identities').where('name', '=', name).executeTakeFirst();
      if (res.numDeletedRows === 0n) throw notFound(`identity '${name}' does not exist`);
    });
  }

  // ---- resources ----------------------------------------------------------

  /**
   * Creates or replaces a resource. The agent need not be enrolled yet: the
   * usual order is to declare the database, then enroll the agent next to it.
   */
  async putResource(input: Resource): Promise<Resource> {
    const r = validateResource(input);
    await this.change((trx) =>
      trx
        .insertInto('resources')
        .values(r)
        .onConflict((oc) => oc.column('name').doUpdateSet({ agent: r.agent, description: r.description }))
        .execute(),
    );
    return r;
  }

  async deleteResource(name: string): Promise<void> {
    checkName('resource', name);
    await this.change(async (trx) => {
      const grants = await trx.selectFrom('grants').select('id').where('resource', '=', name).execute();
      if (grants.length > 0) {
        throw inUse(`resource '${name}' still has grants ${list(grants.map((g) => g.id))}; remove them first`);
      }
      const res = await trx.deleteFrom('resources').where('name', '=', name).executeTakeFirst();
      if (res.numDeletedRows === 0n) throw notFound(`resource '${name}' does not exist`);
    });
  }

  // ---- grants -------------------------------------------------------------

  async createGrant(input: Grant): Promise<Grant> {
    const g = validateGrant(input);
    const id = `g_${randomBytes(6).toString('hex')}`;
    await this.change(async (trx) => {
      const resource = await trx.selectFrom('resources').select('name').where('name', '=', g.resource).executeTakeFirst();
      if (!resource) throw notFound(`resource '${g.resource}' does not exist`);
      if (g.identity) {
        const identity = await trx.selectFrom('identities').select('name').where('name', '=', g.identity).executeTakeFirst();
        if (!identity) throw notFound(`identity '${g.identity}' does not exist`);
      }
      const subject = g.identity ? `identity '${g.identity}'` : `group '${g.group}'`;
      const existing = (await this.grants(trx, g.resource)).find((x) =>
        g.identity ? x.identity === g.identity : x.group === g.group,
      );
      if (existing) throw alreadyExists(`${subject} already has grant ${existing.id} on resource '${g.resource}'`);
      await trx
        .insertInto('grants')
        .values({ id, resource: g.resource, identity: g.identity || null, group_name: g.group || null })
        .execute();
    });
    return { id, ...g };
  }

  async deleteGrant(id: string): Promise<void> {
    await this.change(async (trx) => {
      const res = await trx.deleteFrom('grants').where('id', '=', id).executeTakeFirst();
      if (res.numDeletedRows === 0n) throw notFound(`grant '${id}' does not exist`);
    });
  }

  // ---- agents -------------------------------------------------------------

  /**
   * Records a new enrollment. A revoked agent may be enrolled again (that is
   * how a lost token is replaced); an active one must be revoked first.
   */
  async enrollAgent(name: string, tokenHash: string): Promise<Agent> {
    checkName('agent', name);
    return this.change(async (trx) => {
      const current = await trx.selectFrom('agents').select('revoked').where('name', '=', name).executeTakeFirst();
      if (current && !current.revoked) {
        throw alreadyExists(`agent '${name}' is already enrolled; revoke it first to issue a new token`);
      }
      const row = await trx
        .insertInto('agents')
        .values({ name, token_hash: tokenHash, revoked: false, created_at: new Date() })
        .onConflict((oc) => oc.column('name').doUpdateSet({ token_hash: tokenHash, revoked: false, created_at: new Date() }))
        .returningAll()
        .executeTakeFirstOrThrow();
      return toAgent(row);
    });
  }

  /** Revoking twice is not an error: the agent stays revoked. */
  async revokeAgent(name: string): Promise<void> {
    checkName('agent', name);
    await this.change(async (trx) => {
      const res = await trx.updateTable('agents').set({ revoked: true }).where('name', '=', name).executeTakeFirst();
      if (res.numUpdatedRows === 0n) throw notFound(`agent '${name}' is not enrolled`);
    });
  }

  // ---- gateways -----------------------------------------------------------

  /**
   * Records that a gateway is up at `tunnelAddress`. Only a new gateway or a
   * moved tunnel address is a config change (agents must learn about it); a
   * plain reconnect just refreshes last_seen.
   */
  async registerGateway(id: string, tunnelAddress: string): Promise<void> {
    validateGatewayRegistration(id, tunnelAddress);
    const known = await this.db.selectFrom('gateways').select('tunnel_address').where('id', '=', id).executeTakeFirst();
    if (known?.tunnel_address === tunnelAddress) return this.touchGateway(id);
    const row = { tunnel_address: tunnelAddress, last_seen: new Date() };
    await this.change((trx) =>
      trx
        .insertInto('gateways')
        .values({ id, ...row })
        .onConflict((oc) => oc.column('id').doUpdateSet(row))
        .execute(),
    );
  }

  /** Refreshes last_seen without a version bump. */
  async touchGateway(id: string): Promise<void> {
    await this.db.updateTable('gateways').set({ last_seen: new Date() }).where('id', '=', id).execute();
  }
}
