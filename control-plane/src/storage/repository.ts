// All reads and writes of the configuration. Every write runs in a
// transaction that also bumps config_version, then tells listeners so the
// watch streams can push a fresh snapshot.
import { randomBytes } from 'node:crypto';
import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import type { Agent, ApprovalRule, Gateway, Grant, Identity, Issuer, Mask, PolicyVersion, Resource, Snapshot } from '@warden/proto';
import { DEV_ISSUER_NAME } from '../local/dev-issuer.js';
import { diffConsoleSettings } from '../policy/console.js';
import { diffStates, grantsOfRule, stateFromPolicy, stateFromStore, summarize } from '../policy/state.js';
import { PolicyInvalidError, validatePolicy } from '../policy/validate.js';
import { ConfigError, alreadyExists, inUse, invalid, notFound } from './errors.js';
import type { AgentsTable, ApprovalRuleSpec, Database, MaskSpec } from './schema.js';
import { validateMask } from './validate-mask.js';
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

const sameList = (a: string[], b: string[]) => {
  const sb = [...b].sort();
  return a.length === b.length && [...a].sort().every((x, i) => x === sb[i]);
};
const sameScopes = (a: Omit<Grant, 'id'>, b: Omit<Grant, 'id'>) =>
  sameList(a.allowSchemas, b.allowSchemas) &&
  sameList(a.denySchemas, b.denySchemas) &&
  sameList(a.allowTables, b.allowTables) &&
  sameList(a.denyTables, b.denyTables) &&
  sameList(a.trust, b.trust);

const grantRow = (g: Grant) => ({
  id: g.id,
  resource: g.resource,
  identity: g.identity || null,
  group_name: g.group || null,
  access: g.access || 'read',
  rule: g.rule || null,
  allow_schemas: json(g.allowSchemas),
  deny_schemas: json(g.denySchemas),
  allow_tables: json(g.allowTables),
  deny_tables: json(g.denyTables),
  trust: json(g.trust ?? []),
});

const maskRow = (m: Mask, position: number) => {
  const { name, resource, ...spec } = m;
  return { name, resource, position, spec: json(spec satisfies MaskSpec) };
};

const approvalRow = (r: ApprovalRule, position: number) => {
  const { name, resource, ...spec } = r;
  return { name, resource, position, spec: json(spec satisfies ApprovalRuleSpec) };
};

/** Bytes of the deployment's masking key. */
export const MASK_KEY_BYTES = 32;

/**
 * A policy file replaces every issuer (but the managed ones it does not
 * declare), identity, resource and grant; what it leaves alone (managed
 * issuers, agents, gateways) refers to none of those. So whatever the file
 * removes, whatever referred to it goes too, and the diff lists both. This
 * check keeps that reasoning honest should either side grow: it refuses when
 * an object that stays would refer to one that goes.
 */
function checkOutsideReferences(
  current: { issuers: Issuer[] },
  policy: { issuers: Issuer[]; identities: Identity[]; resources: Resource[] },
  grants: Grant[],
  kept: readonly string[],
  masks: Mask[],
  approvals: ApprovalRule[] = [],
): void {
  const issuers = new Set([...policy.issuers.map((i) => i.name), ...kept]);
  const removedIssuers = new Set(current.issuers.map((i) => i.name).filter((n) => !issuers.has(n)));
  for (const id of policy.identities) {
    if (!issuers.has(id.issuer)) {
      const why = removedIssuers.has(id.issuer) ? 'which the file would remove' : 'which does not exist';
      throw inUse(`identity '${id.name}' would refer to issuer '${id.issuer}', ${why}; declare the issuer in the file`);
    }
  }
  const resources = new Set(policy.resources.map((r) => r.name));
  const identities = new Set(policy.identities.map((i) => i.name));
  for (const g of grants) {
    if (!resources.has(g.resource)) throw inUse(`rule '${g.rule}' would refer to resource '${g.resource}', which would not exist`);
    if (g.identity && !identities.has(g.identity)) {
      throw inUse(`rule '${g.rule}' would refer to identity '${g.identity}', which would not exist`);
    }
  }
  for (const m of masks) {
    if (!resources.has(m.resource)) throw inUse(`mask '${m.name}' would refer to resource '${m.resource}', which would not exist`);
    const missing = [...m.identities, ...m.exemptIdentities].find((i) => !identities.has(i));
    if (missing) throw inUse(`mask '${m.name}' would refer to identity '${missing}', which would not exist`);
  }
  for (const r of approvals) {
    if (!resources.has(r.resource)) throw inUse(`approval '${r.name}' would refer to resource '${r.resource}', which would not exist`);
    const missing = r.identities.find((i) => !identities.has(i));
    if (missing) throw inUse(`approval '${r.name}' would refer to identity '${missing}', which would not exist`);
  }
}

export type ChangeListener = () => void;

/**
 * Issuers a policy file leaves alone unless it declares them: local mode
 * keeps `local-dev` in step with its key file.
 */
export const MANAGED_ISSUERS: readonly string[] = [DEV_ISSUER_NAME];

/** Policy files bigger than this are refused (gRPC's default message limit is 4 MiB). */
export const MAX_POLICY_BYTES = 1024 * 1024;

/** How many bytes of policy files one GetPolicyHistory answer carries at most. */
export const HISTORY_YAML_BUDGET = 3 * 1024 * 1024;

export interface ApplyPolicyInput {
  yaml: string;
  author: string;
  dryRun: boolean;
}

export interface ApplyPolicyOutcome {
  /** The policy version now in force (the new one when applied). */
  version: number;
  lines: string[];
  /** False for a dry run, and when nothing would change. */
  applied: boolean;
}

export class Repository {
  private readonly listeners = new Set<ChangeListener>();
  private maskKeyRead?: Promise<Buffer>;

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
        policyVersion: await this.policyVersion(trx),
        issuers: await this.issuers(trx),
        identities: await this.identities(trx),
        resources: await trx.selectFrom('resources').selectAll().orderBy('name').execute(),
        grants: await this.grants(trx),
        agents: await this.agents(trx),
        gateways: await this.gateways(trx),
        masks: await this.masks(trx),
        // Only gateways get the key, on their watch stream (server/service.ts).
        maskKey: Buffer.alloc(0),
        approvalRules: await this.approvalRules(trx),
      }));
  }

  /** Approval rules in the order the policy file gave them. */
  private async approvalRules(db: Db): Promise<ApprovalRule[]> {
    const rows = await db.selectFrom('approval_rules').selectAll().orderBy('position').orderBy('name').execute();
    return rows.map((r) => ({ name: r.name, resource: r.resource, ...parse(r.spec) }));
  }

  /** Mask entries in the order the policy file gave them. */
  private async masks(db: Db): Promise<Mask[]> {
    const rows = await db.selectFrom('masks').selectAll().orderBy('position').orderBy('name').execute();
    return rows.map((r) => ({ name: r.name, resource: r.resource, ...parse(r.spec) }));
  }

  /**
   * The deployment's HMAC key for the hash mask function: made on first use
   * and kept in the database, so every replica (and every restart) hands
   * gateways the same key. Never logged or printed.
   */
  maskKey(): Promise<Buffer> {
    this.maskKeyRead ??= this.readMaskKey().catch((err) => {
      this.maskKeyRead = undefined;
      throw err;
    });
    return this.maskKeyRead;
  }

  private async readMaskKey(): Promise<Buffer> {
    // Replicas starting together race here; the first insert wins and all read it.
    await this.db
      .insertInto('deployment_keys')
      .values({ name: 'mask', secret: randomBytes(MASK_KEY_BYTES) })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
    const row = await this.db.selectFrom('deployment_keys').select('secret').where('name', '=', 'mask').executeTakeFirstOrThrow();
    return Buffer.from(row.secret);
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
    return rows.map((r) => ({
      id: r.id,
      resource: r.resource,
      identity: r.identity ?? '',
      group: r.group_name ?? '',
      access: r.access,
      rule: r.rule ?? '',
      allowSchemas: parse(r.allow_schemas),
      denySchemas: parse(r.deny_schemas),
      allowTables: parse(r.allow_tables),
      denyTables: parse(r.deny_tables),
      trust: parse(r.trust),
    }));
  }

  /** Version of the policy file last applied; 0 when none was. */
  async policyVersion(db: Db = this.db): Promise<number> {
    const row = await db
      .selectFrom('policy_versions')
      .select((eb) => eb.fn.max('version').as('v'))
      .executeTakeFirst();
    return Number(row?.v ?? 0);
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
      const masks = (await this.masks(trx)).filter((m) => m.identities.includes(name) || m.exemptIdentities.includes(name));
      if (masks.length > 0) throw inUse(`identity '${name}' is named by masks ${list(masks.map((m) => m.name))}; remove it there first`);
      const approvals = (await this.approvalRules(trx)).filter((r) => r.identities.includes(name));
      if (approvals.length > 0) throw inUse(`identity '${name}' is named by approvals ${list(approvals.map((r) => r.name))}; remove it there first`);
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
      const masks = await trx.selectFrom('masks').select('name').where('resource', '=', name).orderBy('name').execute();
      if (masks.length > 0) throw inUse(`resource '${name}' still has masks ${list(masks.map((m) => m.name))}; remove them first`);
      const approvals = await trx.selectFrom('approval_rules').select('name').where('resource', '=', name).orderBy('name').execute();
      if (approvals.length > 0) throw inUse(`resource '${name}' still has approvals ${list(approvals.map((r) => r.name))}; remove them first`);
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
      // A subject may hold several grants on a resource (say read everywhere
      // and write on one table); the same grant twice is a mistake.
      const same = (x: Grant) =>
        (g.identity ? x.identity === g.identity : x.group === g.group) &&
        (g.rule ? x.rule === g.rule : !x.rule && x.access === g.access && sameScopes(x, g));
      const existing = (await this.grants(trx, g.resource)).find(same);
      if (existing) throw alreadyExists(`${subject} already has grant ${existing.id} on resource '${g.resource}'`);
      await trx.insertInto('grants').values(grantRow({ id, ...g })).execute();
    });
    return { id, ...g };
  }

  async deleteGrant(id: string): Promise<void> {
    await this.change(async (trx) => {
      const res = await trx.deleteFrom('grants').where('id', '=', id).executeTakeFirst();
      if (res.numDeletedRows === 0n) throw notFound(`grant '${id}' does not exist`);
    });
  }

  // ---- masks --------------------------------------------------------------

  /**
   * Creates or replaces a mask entry; its resource and the identities it
   * names must exist. A new entry goes after the others, a replaced one keeps
   * its place.
   */
  async putMask(input: Mask): Promise<Mask> {
    const m = validateMask(input);
    await this.change(async (trx) => {
      const resource = await trx.selectFrom('resources').select('name').where('name', '=', m.resource).executeTakeFirst();
      if (!resource) throw notFound(`resource '${m.resource}' does not exist`);
      const named = [...new Set([...m.identities, ...m.exemptIdentities])];
      if (named.length > 0) {
        const found = new Set((await trx.selectFrom('identities').select('name').where('name', 'in', named).execute()).map((r) => r.name));
        const missing = named.find((n) => !found.has(n));
        if (missing) throw notFound(`identity '${missing}' does not exist`);
      }
      const current = await trx.selectFrom('masks').select('position').where('name', '=', m.name).executeTakeFirst();
      const last = await trx.selectFrom('masks').select((eb) => eb.fn.max('position').as('p')).executeTakeFirst();
      const row = maskRow(m, current?.position ?? Number(last?.p ?? -1) + 1);
      await trx
        .insertInto('masks')
        .values(row)
        .onConflict((oc) => oc.column('name').doUpdateSet({ resource: row.resource, spec: row.spec }))
        .execute();
    });
    return m;
  }

  async deleteMask(name: string): Promise<void> {
    checkName('mask', name);
    await this.change(async (trx) => {
      const res = await trx.deleteFrom('masks').where('name', '=', name).executeTakeFirst();
      if (res.numDeletedRows === 0n) throw notFound(`mask '${name}' does not exist`);
    });
  }

  // ---- policy files -------------------------------------------------------

  /**
   * Validates a policy file against the store and, unless it is a dry run or
   * changes nothing, replaces issuers (but the managed ones the file does not
   * declare), identities, resources, grants, masks and approval rules with its contents in one
   * transaction, records the new policy version and bumps the config version.
   */
  async applyPolicy(input: ApplyPolicyInput): Promise<ApplyPolicyOutcome> {
    if (Buffer.byteLength(input.yaml, 'utf8') > MAX_POLICY_BYTES) {
      throw invalid(`the policy file is larger than ${MAX_POLICY_BYTES / 1024} KiB`);
    }
    const author = input.author.trim();
    if (author.length > 200 || /[\u0000-\u001f\u007f]/.test(author)) {
      throw invalid('the author must be at most 200 characters without control characters');
    }
    let outcome: ApplyPolicyOutcome;
    try {
      outcome = await this.db.transaction().execute(async (trx) => {
        // Appliers queue here, so each compares against the state it replaces.
        if (!input.dryRun) {
          await trx.selectFrom('config_version').select('version').where('id', '=', 1).forUpdate().execute();
        }
        const current = {
          issuers: await this.issuers(trx),
          identities: await this.identities(trx),
          resources: await trx.selectFrom('resources').selectAll().orderBy('name').execute(),
          grants: await this.grants(trx),
          masks: await this.masks(trx),
          approvals: await this.approvalRules(trx),
        };
        const managed = current.issuers.map((i) => i.name).filter((n) => MANAGED_ISSUERS.includes(n));
        const checked = validatePolicy(input.yaml, { externalIssuers: managed });
        if (!checked.ok) throw new PolicyInvalidError(checked.problems);
        const policy = checked.policy;
        const kept = managed.filter((n) => !policy.issuers.some((i) => i.name === n));
        const inForce = await this.policyVersion(trx);
        // The console's settings live only in the file: compare with the file in force.
        const lines = [...diffStates(stateFromStore(current, kept), stateFromPolicy(policy)), ...diffConsoleSettings(await this.policyYaml(inForce, trx), input.yaml)];
        // Re-applying the file in force is not a new version; the first apply always is.
        if (input.dryRun || (lines.length === 0 && inForce > 0)) return { version: inForce, lines, applied: false };

        const grants = policy.rules.flatMap(grantsOfRule);
        checkOutsideReferences(current, policy, grants, kept, policy.masks, policy.approvals);
        await trx.deleteFrom('approval_rules').execute();
        await trx.deleteFrom('masks').execute();
        await trx.deleteFrom('grants').execute();
        await trx.deleteFrom('identities').execute();
        await trx.deleteFrom('resources').execute();
        let issuers = trx.deleteFrom('issuers');
        if (kept.length > 0) issuers = issuers.where('name', 'not in', kept);
        await issuers.execute();
        for (const i of policy.issuers) {
          await trx
            .insertInto('issuers')
            .values({
              name: i.name,
              issuer_url: i.issuerUrl,
              audiences: json(i.audiences),
              jwks_uri: i.jwksUri,
              jwks_json: i.jwksJson,
              algorithms: json(i.algorithms),
            })
            .execute();
        }
        for (const i of policy.identities) {
          await trx.insertInto('identities').values({ name: i.name, issuer: i.issuer, match: json(i.match), groups: json(i.groups) }).execute();
        }
        for (const r of policy.resources) await trx.insertInto('resources').values(r).execute();
        for (const g of grants) await trx.insertInto('grants').values(grantRow(g)).execute();
        for (const [i, m] of policy.masks.entries()) await trx.insertInto('masks').values(maskRow(m, i)).execute();
        for (const [i, r] of policy.approvals.entries()) await trx.insertInto('approval_rules').values(approvalRow(r, i)).execute();
        const version = inForce + 1;
        await trx
          .insertInto('policy_versions')
          .values({ version, applied_at: new Date(), author, summary: summarize(lines), yaml: input.yaml })
          .execute();
        await trx.updateTable('config_version').set({ version: sql`version + 1` }).where('id', '=', 1).execute();
        return { version, lines, applied: true };
      });
    } catch (err) {
      const code = (err as { code?: string })?.code;
      if (code === '23503') {
        throw inUse('the policy would remove something that configuration outside the file still refers to (changed concurrently?); run warden policy diff and retry');
      }
      throw constraintError(err) ?? err;
    }
    if (outcome.applied) for (const listener of this.listeners) listener();
    return outcome;
  }

  /** The file of policy version `version` as applied; '' when there is none. */
  async policyYaml(version: number, db: Db = this.db): Promise<string> {
    if (version <= 0) return '';
    const row = await db.selectFrom('policy_versions').select('yaml').where('version', '=', version).executeTakeFirst();
    return row?.yaml ?? '';
  }

  /**
   * Applied policy versions, newest first. The files ride along as long as
   * they fit in `yamlBudget` bytes together (gRPC clients take 4 MiB per
   * message by default); older entries then come without theirs.
   */
  async policyHistory(yamlBudget = HISTORY_YAML_BUDGET): Promise<PolicyVersion[]> {
    const rows = await this.db.selectFrom('policy_versions').selectAll().orderBy('version', 'desc').execute();
    let left = yamlBudget;
    return rows.map((r) => {
      const size = Buffer.byteLength(r.yaml, 'utf8');
      const fits = size <= left;
      if (fits) left -= size;
      else left = 0;
      return { version: Number(r.version), appliedAt: iso(r.applied_at), author: r.author, summary: r.summary, yaml: fits ? r.yaml : '' };
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
