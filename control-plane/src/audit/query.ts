// Reading the trail: sessions by filter, one session's events, and event
// search (e.g. every DROP by anyone in the last week).
import type { Selectable } from 'kysely';
import { isoOf, type AuditContext } from './context.js';
import type { AuditSessionsTable } from './schema.js';

export interface SessionFilter {
  identity?: string;
  resource?: string;
  since?: string;
  until?: string;
  outcome?: string;
  /** Leave out the sessions of this gateway (the control plane's own approval chains). */
  notGateway?: string;
  limit?: number;
}

export interface SessionSummary {
  sessionId: string;
  identity: string;
  resource: string;
  agent: string;
  gateway: string;
  startedAt: string;
  endedAt: string;
  outcome: 'ok' | 'error' | 'refused';
  statements: number;
  refused: number;
  errors: number;
  clientAddress: string;
  applicationName: string;
  endReason: string;
  events: number;
  linkedSeq: number;
}

export interface EventQuery {
  kind?: string;
  identity?: string;
  resource?: string;
  decision?: string;
  since?: string;
  until?: string;
  text?: string;
  type?: string;
  sessionId?: string;
  limit?: number;
}

const MAX_LIMIT = 10_000;
const limitOf = (n: number | undefined, fallback: number) => Math.min(n && n > 0 ? n : fallback, MAX_LIMIT);

export function outcomeOf(s: { refused: number; errors: number }): SessionSummary['outcome'] {
  return s.refused > 0 ? 'refused' : s.errors > 0 ? 'error' : 'ok';
}

export function toSummary(s: Selectable<AuditSessionsTable>): SessionSummary {
  return {
    sessionId: s.session_id,
    identity: s.identity,
    resource: s.resource,
    agent: s.agent,
    gateway: s.gateway,
    startedAt: isoOf(s.started_at),
    endedAt: s.ended_at ? isoOf(s.ended_at) : '',
    outcome: outcomeOf(s),
    statements: s.statements,
    refused: s.refused,
    errors: s.errors,
    clientAddress: s.client_address ?? '',
    applicationName: s.application_name ?? '',
    endReason: s.end_reason ?? '',
    events: s.events,
    linkedSeq: s.linked_seq,
  };
}

/** Sessions, newest first. */
export async function listSessions(ctx: AuditContext, f: SessionFilter): Promise<SessionSummary[]> {
  let q = ctx.db.selectFrom('audit_sessions').selectAll();
  if (f.identity) q = q.where('identity', '=', f.identity);
  if (f.resource) q = q.where('resource', '=', f.resource);
  if (f.notGateway) q = q.where('gateway', '!=', f.notGateway);
  if (f.since) q = q.where('started_at', '>=', new Date(f.since));
  if (f.until) q = q.where('started_at', '<', new Date(f.until));
  if (f.outcome === 'refused') q = q.where('refused', '>', 0);
  else if (f.outcome === 'error') q = q.where('refused', '=', 0).where('errors', '>', 0);
  else if (f.outcome === 'ok') q = q.where('refused', '=', 0).where('errors', '=', 0);
  const rows = await q.orderBy('started_at', 'desc').orderBy('session_id').limit(limitOf(f.limit, 100)).execute();
  return rows.map(toSummary);
}

/** A session and its events (as recorded) by seq; undefined when unknown. */
export async function getSession(ctx: AuditContext, sessionId: string): Promise<{ session: SessionSummary; events: string[] } | undefined> {
  const s = await ctx.db.selectFrom('audit_sessions').selectAll().where('session_id', '=', sessionId).executeTakeFirst();
  if (!s) return undefined;
  const rows = await ctx.db.selectFrom('audit_events').select('body').where('session_id', '=', sessionId).orderBy('seq').execute();
  return { session: toSummary(s), events: rows.map((r) => r.body) };
}

const likeEscape = (s: string) => s.replace(/[\\%_]/g, (c) => `\\${c}`);

/** Matching events, oldest first (the last `limit` of them). */
export async function searchEvents(ctx: AuditContext, f: EventQuery): Promise<string[]> {
  let q = ctx.db.selectFrom('audit_events').select(['body', 'time', 'id']);
  if (f.kind) {
    const k = f.kind.trim().toUpperCase();
    q = q.where((eb) => eb.or([eb('kind', '=', k), eb('kind', 'like', `${likeEscape(k)} %`)]));
  }
  if (f.identity) q = q.where('identity', '=', f.identity);
  if (f.resource) q = q.where('resource', '=', f.resource);
  if (f.decision) q = q.where('decision', '=', f.decision);
  if (f.type) q = q.where('type', '=', f.type);
  if (f.sessionId) q = q.where('session_id', '=', f.sessionId);
  if (f.since) q = q.where('time', '>=', new Date(f.since));
  if (f.until) q = q.where('time', '<', new Date(f.until));
  if (f.text) q = q.where('sql', 'ilike', `%${likeEscape(f.text)}%`);
  const rows = await q.orderBy('time', 'desc').orderBy('id', 'desc').limit(limitOf(f.limit, 1000)).execute();
  return rows.reverse().map((r) => r.body);
}
