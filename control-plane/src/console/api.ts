// The console's JSON API under /api: what each page reads, and the few
// actions (decide an approval, check a statement). Each route names the
// least console role it needs; the server checks sign-in, role and CSRF
// before a handler runs (server.ts).
import { status } from '@grpc/grpc-js';
import type { Snapshot } from '@warden/proto';
import { AUDIT_EVENT_TYPES } from '@warden/proto/audit';
import { AuthError, compileAuthConfig, mapIdentity } from '@warden/gateway/auth';
import type { AuditStore } from '../audit/store.js';
import { CheckError, checkScript } from '../policy/check.js';
import type { ConsoleRole } from '../policy/console.js';
import { AUDIT_SOURCE, type approvalActions, type Caller } from '../server/approvals.js';
import type { SnapshotHub } from '../server/hub.js';
import type { AgentPresence } from '../server/presence.js';
import { StatusError } from '../server/status.js';
import type { Repository } from '../storage/repository.js';
import type { SignIn } from './sessions.js';
import { viewsOf } from './views.js';

export interface ApiDeps {
  repo: Repository;
  hub: SnapshotHub;
  audit: AuditStore;
  approvals: ReturnType<typeof approvalActions>;
  presence?: AgentPresence;
}

export interface ApiRequest {
  signIn: SignIn;
  params: string[];
  query: URLSearchParams;
  body: Record<string, unknown>;
}

export interface Route {
  method: 'GET' | 'POST';
  path: RegExp;
  role: ConsoleRole;
  handle(req: ApiRequest): Promise<unknown>;
}

/** A refusal the pages show as it is, with its HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const HTTP_OF: Partial<Record<status, number>> = {
  [status.INVALID_ARGUMENT]: 400,
  [status.UNAUTHENTICATED]: 401,
  [status.PERMISSION_DENIED]: 403,
  [status.NOT_FOUND]: 404,
  [status.FAILED_PRECONDITION]: 409,
  [status.ALREADY_EXISTS]: 409,
};

/** The services' errors as HTTP ones; anything else is the server's fault. */
export function apiErrorOf(err: unknown): ApiError | undefined {
  if (err instanceof ApiError) return err;
  if (err instanceof StatusError) return new ApiError(HTTP_OF[err.code] ?? 500, err.details);
  if (err instanceof CheckError) return new ApiError(400, err.message);
  if (err instanceof RangeError) return new ApiError(400, err.message);
  return undefined;
}

const bad = (msg: string) => new ApiError(400, msg);

function time(q: URLSearchParams, name: string): string | undefined {
  const v = q.get(name);
  if (!v) return undefined;
  if (Number.isNaN(Date.parse(v))) throw bad(`${name} '${v}' is not a time (ISO 8601, e.g. 2026-05-01T00:00:00Z)`);
  return new Date(v).toISOString();
}

function oneOf(q: URLSearchParams, name: string, allowed: readonly string[]): string | undefined {
  const v = q.get(name);
  if (!v) return undefined;
  if (!allowed.includes(v)) throw bad(`${name} must be one of ${allowed.join(', ')}`);
  return v;
}

function limit(q: URLSearchParams, fallback: number, max: number): number {
  const v = q.get('limit');
  if (!v) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw bad('limit must be a positive whole number');
  return Math.min(n, max);
}

const str = (body: Record<string, unknown>, name: string): string => (typeof body[name] === 'string' ? (body[name] as string) : '');

/**
 * A signed-in person as the approvals service knows callers: when their
 * token's claims match an identity, that identity too (and its groups), so
 * nobody approves a request of the identity they are, as with `warden
 * approvals` and a person's token.
 */
export function callerOf(s: SignIn, snapshot: Snapshot): Caller {
  const issuer = snapshot.issuers.find((i) => i.name === s.person.issuer);
  const who: Caller = { admin: false, person: s.person.name, groups: s.person.groups };
  if (!issuer) return who;
  try {
    const p = mapIdentity(compileAuthConfig(snapshot), { issuer, claims: s.person.claims });
    return { ...who, identity: p.identity, groups: [...new Set([...s.person.groups, ...p.groups])] };
  } catch (err) {
    if (err instanceof AuthError) return who;
    throw err;
  }
}

const HOUR = 3600_000;

export function routes(deps: ApiDeps): Route[] {
  const { repo, hub, audit, approvals } = deps;
  const db = audit.ctx.db;

  /** Sessions without an end that have not been sealed as abandoned: still running. */
  async function liveIds(ids: string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const rows = await db.selectFrom('audit_sessions').select('session_id').where('session_id', 'in', ids).where('ended_at', 'is', null).where('sealed_day', 'is', null).execute();
    return new Set(rows.map((r) => r.session_id));
  }

  return [
    {
      method: 'GET',
      path: /^\/api\/overview$/,
      role: 'viewers',
      async handle({ query }) {
        const hours = Math.min(Math.max(Number(query.get('hours') ?? 24) || 24, 1), 24 * 14);
        const now = Date.now();
        const bucketMs = hours <= 48 ? HOUR : 24 * HOUR;
        const since = new Date(Math.floor((now - hours * HOUR) / bucketMs) * bucketMs + bucketMs);
        const rows = await db
          .selectFrom('audit_events')
          .select(['identity', 'time', 'decision'])
          .where('type', '=', 'statement')
          .where('time', '>=', since)
          .orderBy('time', 'desc')
          .limit(100_000)
          .execute();
        const buckets = Math.ceil((now - since.getTime()) / bucketMs);
        const byIdentity = new Map<string, { statements: number[]; refused: number[] }>();
        let statements = 0;
        let refused = 0;
        for (const r of rows) {
          const who = r.identity ?? '';
          let s = byIdentity.get(who);
          if (!s) byIdentity.set(who, (s = { statements: Array(buckets).fill(0), refused: Array(buckets).fill(0) }));
          const i = Math.min(buckets - 1, Math.floor((new Date(r.time).getTime() - since.getTime()) / bucketMs));
          s.statements[i]!++;
          statements++;
          if (r.decision === 'refused') {
            s.refused[i]!++;
            refused++;
          }
        }
        const clientSessions = db.selectFrom('audit_sessions').select((eb) => eb.fn.countAll<string>().as('n')).where('gateway', '!=', AUDIT_SOURCE);
        const sessions = await clientSessions.where('started_at', '>=', since).executeTakeFirst();
        const live = await clientSessions.where('ended_at', 'is', null).where('sealed_day', 'is', null).executeTakeFirst();
        const pending = await approvals.list({ admin: true }, 'pending', 1000);
        return {
          since: since.toISOString(),
          bucketMinutes: bucketMs / 60_000,
          counts: { sessions: Number(sessions?.n ?? 0), live: Number(live?.n ?? 0), statements, refused, pendingApprovals: pending.length },
          identities: [...byIdentity.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([identity, s]) => ({ identity, ...s })),
        };
      },
    },
    {
      method: 'GET',
      path: /^\/api\/sessions$/,
      role: 'viewers',
      async handle({ query }) {
        const sessions = await audit.listSessions({
          identity: query.get('identity') || undefined,
          resource: query.get('resource') || undefined,
          outcome: oneOf(query, 'outcome', ['ok', 'error', 'refused']),
          since: time(query, 'since'),
          until: time(query, 'until'),
          // Approval requests keep chains of their own in the trail; the approvals page shows them.
          notGateway: AUDIT_SOURCE,
          limit: limit(query, 100, 1000),
        });
        const live = await liveIds(sessions.filter((s) => !s.endedAt).map((s) => s.sessionId));
        return { sessions: sessions.map((s) => ({ ...s, live: live.has(s.sessionId) })) };
      },
    },
    {
      method: 'GET',
      path: /^\/api\/sessions\/([^/]+)$/,
      role: 'viewers',
      async handle({ params }) {
        const found = await audit.getSession(params[0]!);
        if (!found) throw new ApiError(404, `no recorded session '${params[0]}'`);
        const live = await liveIds([found.session.sessionId]);
        const events = viewsOf(found.events);
        // Who let each held statement run (or refused it), beside the statement.
        const decided: Record<string, { state: string; rule: string; decisions: { approver: string; approve: boolean; reason: string; at: string }[] }> = {};
        for (const id of new Set(events.flatMap((e) => (e.approvalId ? [e.approvalId] : [])))) {
          const a = await approvals.get({ admin: true }, id).catch(() => undefined);
          if (a) decided[id] = { state: a.state, rule: a.rule, decisions: a.decisions.map(({ approver, approve, reason, at }) => ({ approver, approve, reason, at })) };
        }
        return { session: { ...found.session, live: live.has(found.session.sessionId) }, events, approvals: decided };
      },
    },
    {
      method: 'GET',
      path: /^\/api\/audit$/,
      role: 'viewers',
      async handle({ query }) {
        const events = await audit.search({
          kind: query.get('kind') || undefined,
          identity: query.get('identity') || undefined,
          resource: query.get('resource') || undefined,
          decision: oneOf(query, 'decision', ['allowed', 'refused']),
          type: oneOf(query, 'type', AUDIT_EVENT_TYPES),
          text: query.get('text') || undefined,
          since: time(query, 'since'),
          until: time(query, 'until'),
          limit: limit(query, 200, 2000),
        });
        return { events: viewsOf(events) };
      },
    },
    {
      method: 'GET',
      path: /^\/api\/audit\/verify$/,
      role: 'admins',
      async handle() {
        const started = Date.now();
        const v = await audit.verify();
        return { ...v, checkedAt: new Date().toISOString(), tookMs: Date.now() - started };
      },
    },
    {
      method: 'GET',
      path: /^\/api\/approvals$/,
      role: 'approvers',
      async handle({ signIn, query }) {
        return { approvals: await approvals.list(callerOf(signIn, await hub.latest()), query.get('state') ?? 'pending', limit(query, 100, 1000)) };
      },
    },
    {
      method: 'POST',
      path: /^\/api\/approvals\/([^/]+)\/(approve|deny)$/,
      role: 'approvers',
      async handle({ signIn, params, body }) {
        return { approval: await approvals.decide(callerOf(signIn, await hub.latest()), params[0]!, params[1] === 'approve', str(body, 'reason')) };
      },
    },
    {
      method: 'GET',
      path: /^\/api\/policy$/,
      role: 'admins',
      async handle() {
        const snap = await hub.latest();
        const versions = (await repo.policyHistory(0)).map(({ yaml: _y, ...v }) => v);
        return {
          inForce: snap.policyVersion,
          configVersion: snap.version,
          versions,
          identities: snap.identities.map((i) => i.name),
          resources: snap.resources.map((r) => r.name),
        };
      },
    },
    {
      method: 'GET',
      path: /^\/api\/policy\/versions\/(\d+)$/,
      role: 'admins',
      async handle({ params }) {
        const version = Number(params[0]);
        const yaml = await repo.policyYaml(version);
        if (!yaml) throw new ApiError(404, `no policy version ${version}`);
        return { version, yaml };
      },
    },
    {
      method: 'POST',
      path: /^\/api\/policy\/check$/,
      role: 'admins',
      async handle({ body }) {
        const sql = str(body, 'sql');
        const as = str(body, 'as');
        const resource = str(body, 'resource');
        if (!as || !resource) throw bad('choose an identity and a resource to check as');
        if (sql.length > 100_000) throw bad('the SQL is longer than 100,000 characters');
        const groups = Array.isArray(body.groups) ? body.groups.filter((g): g is string => typeof g === 'string' && g !== '') : [];
        const snap = await hub.latest();
        const source = snap.policyVersion ? `policy version ${snap.policyVersion}` : `configuration version ${snap.version}`;
        const result = await checkScript(
          { identities: snap.identities, resources: snap.resources, grants: snap.grants, masks: snap.masks, approvals: snap.approvalRules, source },
          { as, resource, groups, parameters: {}, sql },
        );
        return { ...result, resource, source };
      },
    },
    {
      method: 'GET',
      path: /^\/api\/inventory$/,
      role: 'viewers',
      async handle() {
        const snap = await hub.latest();
        const gateways = await repo.gateways();
        return {
          resources: snap.resources.map((r) => ({ name: r.name, agent: r.agent, description: r.description })),
          identities: snap.identities.map((i) => ({ name: i.name, issuer: i.issuer, groups: i.groups })),
          agents: snap.agents.map((a) => ({
            name: a.name,
            revoked: a.revoked,
            enrolledAt: a.createdAt,
            ...(deps.presence?.of(a.name) ?? { connected: false, lastContact: '' }),
          })),
          gateways: gateways.map((g) => ({ id: g.id, tunnelAddress: g.tunnelAddress, lastSeen: g.lastSeen })),
        };
      },
    },
  ];
}
