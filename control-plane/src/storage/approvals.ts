// Approval requests (issue 13): what gateways open for held statements and
// approvers decide. Every change is one conditional UPDATE (or a row-locked
// transaction), so replicas sharing the database never decide, expire or
// consume the same request twice; updated_at is the database's clock, which
// the watch poll (server/approvals.ts) reads changes by.
import { randomBytes } from 'node:crypto';
import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import type { ApprovalDecision, ApprovalRequest, ApprovalRule } from '@warden/proto';
import type { ApprovalRequestsTable, Database } from './schema.js';

export const APPROVAL_STATES = ['pending', 'approved', 'denied', 'expired', 'withdrawn', 'executed'] as const;
export type ApprovalState = (typeof APPROVAL_STATES)[number];

type Row = Selectable<ApprovalRequestsTable>;
type Db = Kysely<Database> | Transaction<Database>;

const json = (value: unknown) => sql<string>`cast(cast(${JSON.stringify(value)} as text) as jsonb)`;
const parse = <T>(value: T | string): T => (typeof value === 'string' ? (JSON.parse(value) as T) : value);
const iso = (value: Date | string) => (value instanceof Date ? value : new Date(value)).toISOString();
const NOW = sql<Date>`clock_timestamp()`;

/** "apr_" and 20 random bytes in base32 (lower case, no padding): 32 characters, easy to copy. */
export function newApprovalId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  const bytes = randomBytes(20);
  let bits = 0;
  let value = 0;
  let out = '';
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return `apr_${out}`;
}

export function toApproval(r: Row): ApprovalRequest {
  return {
    id: r.id,
    rule: r.rule,
    identity: r.identity,
    resource: r.resource,
    sql: r.sql,
    parameters: parse(r.parameters),
    fingerprint: r.fingerprint,
    sessionId: r.session_id,
    gatewayId: r.gateway_id,
    reason: r.reason,
    createdAt: iso(r.created_at),
    expiresAt: iso(r.expires_at),
    state: r.state,
    decisions: parse(r.decisions),
    approvers: parse(r.approvers),
    quorum: r.quorum,
    mode: r.mode,
    approvalExpiresAt: r.approval_expires_at ? iso(r.approval_expires_at) : '',
    why: r.why,
  };
}

/** A request as it was stored, with what the audit record of its latest change needs. */
export interface StoredApproval {
  approval: ApprovalRequest;
  /** The seq of the audit event that records this change (the request's own chain). */
  auditSeq: number;
  /** The database's time of the change, for the watch poll. */
  updatedAt: string;
}

const stored = (r: Row): StoredApproval => ({ approval: toApproval(r), auditSeq: r.audit_seq - 1, updatedAt: iso(r.updated_at) });

/** Why a decision is refused; the service maps it to a status. */
export class DecisionRefused extends Error {
  constructor(
    readonly kind: 'not_found' | 'not_pending' | 'expired' | 'already_decided',
    message: string,
    readonly approval?: ApprovalRequest,
  ) {
    super(message);
  }
}

export interface NewRequest {
  request: ApprovalRequest;
  rule: ApprovalRule;
  now: Date;
}

export class ApprovalStore {
  constructor(private readonly db: Kysely<Database>) {}

  /**
   * Opens a request, or returns the pending one of the same gateway, session
   * and statement: a gateway that asks again (a retried RPC) gets one request.
   */
  async create({ request: r, rule, now }: NewRequest): Promise<{ created: boolean; stored: StoredApproval }> {
    const existing = () =>
      this.db
        .selectFrom('approval_requests')
        .selectAll()
        .where('gateway_id', '=', r.gatewayId)
        .where('session_id', '=', r.sessionId)
        .where('fingerprint', '=', r.fingerprint)
        .where('state', '=', 'pending')
        .executeTakeFirst();
    const found = await existing();
    if (found) return { created: false, stored: stored(found) };
    try {
      const row = await this.db
        .insertInto('approval_requests')
        .values({
          id: newApprovalId(),
          rule: rule.name,
          identity: r.identity,
          resource: r.resource,
          sql: r.sql,
          parameters: json(r.parameters),
          fingerprint: r.fingerprint,
          session_id: r.sessionId,
          gateway_id: r.gatewayId,
          reason: r.reason,
          why: r.why,
          created_at: now,
          expires_at: new Date(now.getTime() + rule.requestTtlSeconds * 1000),
          state: 'pending',
          decisions: json([]),
          approvers: json(rule.approvers),
          quorum: rule.quorum,
          mode: rule.mode,
          approval_ttl_seconds: rule.approvalTtlSeconds,
          approval_expires_at: null,
          audit_seq: 1,
          updated_at: NOW,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      return { created: true, stored: stored(row) };
    } catch (err) {
      // Another replica opened the same request a moment ago (the partial unique index).
      if ((err as { code?: string }).code !== '23505') throw err;
      const again = await existing();
      if (!again) throw err;
      return { created: false, stored: stored(again) };
    }
  }

  async get(id: string): Promise<ApprovalRequest | undefined> {
    const row = await this.db.selectFrom('approval_requests').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toApproval(row);
  }

  /** Newest first; `approvers`, when given, keeps the requests any of these groups may decide. */
  async list(f: { state?: string; limit: number; approvers?: string[] }): Promise<ApprovalRequest[]> {
    let q = this.db.selectFrom('approval_requests').selectAll().orderBy('created_at', 'desc').orderBy('id');
    if (f.state) q = q.where('state', '=', f.state);
    const rows = await q.execute();
    const out: ApprovalRequest[] = [];
    for (const row of rows) {
      const a = toApproval(row);
      if (f.approvers && !a.approvers.some((g) => f.approvers!.includes(g))) continue;
      out.push(a);
      if (out.length >= f.limit) break;
    }
    return out;
  }

  /** pending -> withdrawn, for the request's own gateway; undefined when it is not pending (or not its). */
  async withdraw(id: string): Promise<StoredApproval | undefined> {
    const row = await this.db
      .updateTable('approval_requests')
      .set({ state: 'withdrawn', updated_at: NOW, audit_seq: sql`audit_seq + 1` })
      .where('id', '=', id)
      .where('state', '=', 'pending')
      .returningAll()
      .executeTakeFirst();
    return row && stored(row);
  }

  /** Pending requests past their expiry become expired; returns them. Safe from several replicas at once. */
  async expire(now: Date): Promise<StoredApproval[]> {
    const rows = await this.db
      .updateTable('approval_requests')
      .set({ state: 'expired', updated_at: NOW, audit_seq: sql`audit_seq + 1` })
      .where('state', '=', 'pending')
      .where('expires_at', '<=', now)
      .returningAll()
      .execute();
    return rows.map(stored);
  }

  /**
   * Records one person's decision. Approvals count once per person; at the
   * quorum of distinct approvers the request is approved, and one denial
   * denies it. Refused with DecisionRefused; `check` may refuse too (with its
   * own error) once the current request is known, or complete the decision.
   */
  async decide(
    id: string,
    decision: ApprovalDecision,
    now: Date,
    check: (current: ApprovalRequest) => Partial<ApprovalDecision> | void,
  ): Promise<{ stored: StoredApproval; expiredNow: boolean }> {
    const outcome = await this.db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom('approval_requests').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
      if (!row) throw new DecisionRefused('not_found', `no approval request '${id}'`);
      const current = toApproval(row);
      decision = { ...decision, ...check(current) };
      if (current.state === 'pending' && new Date(current.expiresAt) <= now) {
        const expired = await this.setState(trx, id, { state: 'expired' });
        return { stored: expired, expiredNow: true };
      }
      if (current.state !== 'pending') throw new DecisionRefused('not_pending', `approval request ${id} is ${current.state}, not pending`, current);
      if (current.decisions.some((d) => d.approver === decision.approver)) {
        throw new DecisionRefused('already_decided', `${decision.approver} has already decided on ${id}`, current);
      }
      const decisions = [...current.decisions, decision];
      const approvers = new Set(decisions.filter((d) => d.approve).map((d) => d.approver));
      const state = !decision.approve ? 'denied' : approvers.size >= current.quorum ? 'approved' : 'pending';
      const approvalExpires = state === 'approved' ? new Date(now.getTime() + row.approval_ttl_seconds * 1000) : null;
      return { stored: await this.setState(trx, id, { state, decisions, approvalExpires }), expiredNow: false };
    });
    return outcome;
  }

  private async setState(
    trx: Db,
    id: string,
    change: { state: string; decisions?: ApprovalDecision[]; approvalExpires?: Date | null },
  ): Promise<StoredApproval> {
    const row = await trx
      .updateTable('approval_requests')
      .set({
        state: change.state,
        ...(change.decisions ? { decisions: json(change.decisions) } : {}),
        ...(change.approvalExpires ? { approval_expires_at: change.approvalExpires } : {}),
        updated_at: NOW,
        audit_seq: sql`audit_seq + 1`,
      })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return stored(row);
  }

  /**
   * Retry mode: the approved request for exactly this statement, still valid,
   * becomes executed and is returned; undefined when there is none. Each
   * candidate is claimed by an UPDATE conditional on its state, so among
   * concurrent callers (any replica) exactly one gets it.
   */
  async consume(c: { identity: string; resource: string; fingerprint: string }, now: Date): Promise<StoredApproval | undefined> {
    const candidates = await this.db
      .selectFrom('approval_requests')
      .select('id')
      .where('fingerprint', '=', c.fingerprint)
      .where('identity', '=', c.identity)
      .where('resource', '=', c.resource)
      .where('state', '=', 'approved')
      .where('approval_expires_at', '>', now)
      .orderBy('created_at')
      .execute();
    for (const { id } of candidates) {
      const row = await this.db
        .updateTable('approval_requests')
        .set({ state: 'executed', updated_at: NOW, audit_seq: sql`audit_seq + 1` })
        .where('id', '=', id)
        .where('state', '=', 'approved')
        .where('approval_expires_at', '>', now)
        .returningAll()
        .executeTakeFirst();
      if (row) return stored(row);
    }
    return undefined;
  }

  /** Requests of these gateways changed at or after `since` (the database's clock). */
  async changedSince(gateways: string[], since: Date): Promise<StoredApproval[]> {
    if (gateways.length === 0) return [];
    const rows = await this.db
      .selectFrom('approval_requests')
      .selectAll()
      .where('gateway_id', 'in', gateways)
      .where('updated_at', '>=', since)
      .orderBy('updated_at')
      .execute();
    return rows.map(stored);
  }

  /** What a gateway's new watch stream starts with: its pending requests and those changed lately. */
  async current(gateway: string, since: Date): Promise<StoredApproval[]> {
    const rows = await this.db
      .selectFrom('approval_requests')
      .selectAll()
      .where('gateway_id', '=', gateway)
      .where((eb) => eb.or([eb('state', '=', 'pending'), eb('updated_at', '>=', since)]))
      .orderBy('updated_at')
      .execute();
    return rows.map(stored);
  }

  /** The database's clock, which updated_at is in. */
  async dbNow(): Promise<Date> {
    const r = await sql<{ now: Date | string }>`select clock_timestamp() as now`.execute(this.db);
    return new Date(r.rows[0]!.now);
  }
}
