// Stores audit events, idempotently: the event id is the key, so a re-sent
// event (outbox retry, NATS redelivery) is stored once. Events of a session
// may arrive in any order; each is linked into the session's hash chain as
// soon as its predecessor is stored, which makes the chain the same whatever
// the arrival order. A session whose chain reaches session.end is sealed into
// today's daily chain (see seal.ts). What is stored of an event, and hashed,
// is its JSON form as canonical JSON (chain.ts).
//
// A batch is one transaction of a handful of statements whatever the number
// of events and sessions in it: the sessions' rows are locked and read in one
// query, the events inserted in one, the sessions updated in one. Rows travel
// as one JSON parameter (json_to_recordset): JSON.stringify is native, and
// the SQL text stays the same from batch to batch. This is the control
// plane's hot path: a statement per event or per session cost it ~20 times
// the CPU.
import { StatementDecision, type AuditEvent } from '@warden/proto';
import { isoOf as timeOf } from '@warden/proto/audit';
import { CompiledQuery, type Selectable } from 'kysely';
import { GENESIS, dayOf, eventBody, linkHash } from './chain.js';
import { eventColumns, type EventColumns } from './columns.js';
import { isoOf, type AuditContext, type AuditTrx } from './context.js';
import type { AuditSessionsTable } from './schema.js';
import { checkEvent } from './validate.js';

export interface IngestResult {
  stored: number;
  duplicates: number;
  invalid: number;
}

interface EventRow extends EventColumns {
  body: string;
  prev_hash: string | null;
  hash: string | null;
  day: string | null;
}

type SessionRow = Selectable<AuditSessionsTable>;

/** Events that failed to decode are undefined: counted as invalid. */
export async function ingestEvents(ctx: AuditContext, raw: ReadonlyArray<AuditEvent | undefined>): Promise<IngestResult> {
  const result: IngestResult = { stored: 0, duplicates: 0, invalid: 0 };
  const seen = new Set<string>();
  const failures: AuditEvent[] = [];
  const bySession = new Map<string, AuditEvent[]>();
  for (const value of raw) {
    const checked = checkEvent(value);
    if ('error' in checked) {
      result.invalid++;
      ctx.log.warn({ id: value?.id, reason: checked.error }, 'skipped an invalid audit event');
      continue;
    }
    const e = checked.event;
    if (seen.has(e.id)) {
      result.duplicates++;
      continue;
    }
    seen.add(e.id);
    if (e.event?.$case === 'authFailure') failures.push(e);
    else {
      const list = bySession.get(e.sessionId);
      if (list) list.push(e);
      else bySession.set(e.sessionId, [e]);
    }
  }
  if (seen.size === 0) return result;

  await ctx.db.transaction().execute(async (trx) => {
    const now = ctx.now();
    const today = dayOf(now);
    const sessions = await lockSessions(trx, bySession, now);
    const rows = failures.map((e) => eventRow(e, today));
    const plans = [...sessions.values()].map((s) => planChain(s, bySession.get(s.session_id)!, rows));
    const inserted = new Set((await query<{ id: string }>(trx, INSERT_EVENTS, [json(rows)])).map((r) => r.id));
    result.stored += inserted.size;
    result.duplicates += rows.length - inserted.size;

    const gaps = plans.filter((p) => p.waiting && p.events.some((e) => inserted.has(e.id)));
    if (gaps.length > 0) await linkWaiting(trx, gaps);
    const updates = plans.flatMap((p) => sessionUpdate(p, inserted, now, today));
    if (updates.length > 0) await query(trx, UPDATE_SESSIONS, [json(updates)]);
  });
  return result;
}

// ---------------------------------------------------------------- statements

const query = async <R>(trx: AuditTrx, text: string, params: unknown[]): Promise<R[]> =>
  (await trx.executeQuery<R>(CompiledQuery.raw(text, params))).rows;

/**
 * Rows as one JSON parameter. JSON.stringify writes a lone UTF-16 surrogate
 * (JSON lines of older gateways may hold one) as an escape that Postgres
 * refuses; it becomes U+FFFD, as it would as a text parameter.
 */
function json(rows: unknown[]): string {
  const text = JSON.stringify(rows);
  return text.includes('\\ud') ? text.replace(LONE_SURROGATE, '$1\\ufffd') : text;
}

// An escape \udXXX not itself escaped (an even number of backslashes before it).
const LONE_SURROGATE = /(?<!\\)((?:\\\\)*)\\ud[89a-f][0-9a-f]{2}/g;

const SESSION_COLUMNS = `session_id, gateway, identity, resource, agent, started_at, ended_at, client_address, application_name,
  end_reason, events, statements, refused, errors, end_seq, linked_seq, head_hash, last_event_at, sealed_day, sealed_seq, sealed_hash`;

const SELECT_SESSIONS = `select ${SESSION_COLUMNS} from audit_sessions where session_id = any($1::text[]) order by session_id`;
// Locks in session id order, so two control planes never wait on each other's locks in a cycle.
const LOCK_SESSIONS = `${SELECT_SESSIONS} for update`;

const INSERT_SESSIONS = `insert into audit_sessions (session_id, gateway, identity, resource, agent, started_at, head_hash, last_event_at)
  select session_id, gateway, identity, resource, agent, started_at, '${GENESIS}', last_event_at
  from json_to_recordset($1::json) as x(session_id text, gateway text, identity text, resource text, agent text, started_at timestamptz, last_event_at timestamptz)
  order by session_id
  on conflict (session_id) do nothing
  returning ${SESSION_COLUMNS}`;

const INSERT_EVENTS = `insert into audit_events (id, session_id, seq, type, time, gateway, identity, resource, kind, decision, rule, sql, body, prev_hash, hash, day)
  select id, session_id, seq, type, time, gateway, identity, resource, kind, decision, rule, sql, body, prev_hash, hash, day
  from json_to_recordset($1::json) as x(id text, session_id text, seq integer, type text, time timestamptz, gateway text, identity text,
    resource text, kind text, decision text, rule text, sql text, body text, prev_hash text, hash text, day text)
  on conflict do nothing
  returning id`;

// Events stored after each session's chain head, in chain order.
const SELECT_WAITING = `select e.id, e.session_id, e.seq, e.body
  from audit_events e join json_to_recordset($1::json) as h(session_id text, linked_seq integer)
    on e.session_id = h.session_id and e.seq > h.linked_seq
  order by e.session_id, e.seq`;

const SET_HASHES = `update audit_events e set prev_hash = x.prev_hash, hash = x.hash
  from json_to_recordset($1::json) as x(id text, prev_hash text, hash text)
  where e.id = x.id`;

const UPDATE_SESSIONS = `update audit_sessions s set
    events = x.events, statements = x.statements, refused = x.refused, errors = x.errors,
    started_at = x.started_at, last_event_at = x.last_event_at,
    client_address = x.client_address, application_name = x.application_name,
    ended_at = x.ended_at, end_reason = x.end_reason, end_seq = x.end_seq,
    linked_seq = x.linked_seq, head_hash = x.head_hash,
    sealed_day = x.sealed_day, sealed_seq = x.sealed_seq, sealed_hash = x.sealed_hash
  from json_to_recordset($1::json) as x(session_id text, events integer, statements integer, refused integer, errors integer,
    started_at timestamptz, last_event_at timestamptz, client_address text, application_name text, ended_at timestamptz,
    end_reason text, end_seq integer, linked_seq integer, head_hash text, sealed_day text, sealed_seq integer, sealed_hash text)
  where s.session_id = x.session_id`;

// ---------------------------------------------------------------- steps

/** Added to the columns' object rather than spread into a new one: this runs for every event. */
function eventRow(e: AuditEvent, day: string | null): EventRow {
  const row = eventColumns(e) as EventRow;
  row.body = eventBody(e, row.time);
  row.prev_hash = null;
  row.hash = null;
  row.day = day;
  return row;
}

/** The batch's sessions, locked; those seen for the first time are created. */
async function lockSessions(trx: AuditTrx, bySession: Map<string, AuditEvent[]>, now: Date): Promise<Map<string, SessionRow>> {
  const out = new Map<string, SessionRow>();
  if (bySession.size === 0) return out;
  const ids = [...bySession.keys()].sort();
  // PGlite's single session runs one transaction at a time: nothing to lock against.
  const lock = (trx.getExecutor().adapter as { singleSession?: boolean }).singleSession ? SELECT_SESSIONS : LOCK_SESSIONS;
  for (const s of await query<SessionRow>(trx, lock, [ids])) out.set(s.session_id, s);
  const fresh = ids.filter((id) => !out.has(id));
  if (fresh.length === 0) return out;
  const rows = fresh.map((id) => {
    const events = bySession.get(id)!;
    const first = events[0]!;
    return { session_id: id, gateway: first.gateway, identity: first.identity, resource: first.resource, agent: first.agent, started_at: earliest(events), last_event_at: now.toISOString() };
  });
  for (const s of await query<SessionRow>(trx, INSERT_SESSIONS, [json(rows)])) out.set(s.session_id, s);
  // Created meanwhile by another control plane's transaction, which has committed by now.
  const raced = fresh.filter((id) => !out.has(id));
  if (raced.length > 0) for (const s of await query<SessionRow>(trx, lock, [raced])) out.set(s.session_id, s);
  return out;
}

const earliest = (events: AuditEvent[]) => events.map((e) => timeOf(e.time)).sort()[0]!;

interface ChainPlan {
  session: SessionRow;
  events: AuditEvent[];
  /** Events stored after the head wait for a missing one: link from the table after inserting. */
  waiting: boolean;
  chain: { linked_seq: number; head_hash: string };
}

/**
 * Adds the session's events to `rows`. Usually every stored event is linked
 * already (seq 0…linked_seq, no gaps), so the events that continue the chain
 * get their hashes as they are inserted: no duplicate can be among them,
 * since nothing after the head is stored.
 */
function planChain(s: SessionRow, events: AuditEvent[], rows: EventRow[]): ChainPlan {
  const waiting = s.events !== s.linked_seq + 1;
  let chain = { linked_seq: s.linked_seq, head_hash: s.head_hash };
  let linking = !waiting;
  const sorted = [...events].sort((a, b) => a.seq - b.seq);
  for (const e of sorted) {
    const row = eventRow(e, null);
    rows.push(row);
    if (!linking || e.seq <= chain.linked_seq) continue; // a re-sent event, stored and linked before
    if (e.seq !== chain.linked_seq + 1) {
      linking = false; // a gap: what follows waits for the missing event
      continue;
    }
    const hash = linkHash(chain.head_hash, row.body);
    row.prev_hash = chain.head_hash;
    row.hash = hash;
    chain = { linked_seq: e.seq, head_hash: hash };
  }
  return { session: s, events: sorted, waiting, chain };
}

/** Links every stored event that now follows its session's chain head without a gap. */
async function linkWaiting(trx: AuditTrx, plans: ChainPlan[]): Promise<void> {
  const heads = plans.map((p) => ({ session_id: p.session.session_id, linked_seq: p.session.linked_seq }));
  const stored = await query<{ id: string; session_id: string; seq: number; body: string }>(trx, SELECT_WAITING, [json(heads)]);
  const bySession = new Map<string, typeof stored>();
  for (const r of stored) {
    const list = bySession.get(r.session_id);
    if (list) list.push(r);
    else bySession.set(r.session_id, [r]);
  }
  const hashes: { id: string; prev_hash: string; hash: string }[] = [];
  for (const p of plans) {
    let { linked_seq: seq, head_hash: head } = p.session;
    for (const row of bySession.get(p.session.session_id) ?? []) {
      if (row.seq !== seq + 1) break;
      const hash = linkHash(head, row.body);
      hashes.push({ id: row.id, prev_hash: head, hash });
      seq = row.seq;
      head = hash;
    }
    p.chain = { linked_seq: seq, head_hash: head };
  }
  if (hashes.length > 0) await query(trx, SET_HASHES, [json(hashes)]);
}

const refused = (x: { decision: StatementDecision }) => x.decision === StatementDecision.STATEMENT_DECISION_REFUSED;

/** The session's row after the batch, or nothing when none of its events was new. */
function sessionUpdate(p: ChainPlan, inserted: Set<string>, now: Date, today: string) {
  const s = p.session;
  let stored = 0;
  let statements = 0;
  let refusedCount = 0;
  let errors = 0;
  let start: { at: string; clientAddress: string; applicationName: string | null } | undefined;
  let end: { at: string; seq: number; reason: string } | undefined;
  for (const e of p.events) {
    if (!inserted.has(e.id)) continue;
    stored++;
    const ev = e.event!;
    if (ev.$case === 'statement') {
      statements++;
      if (refused(ev.value)) refusedCount++;
      else if (ev.value.error) errors++;
    } else if (ev.$case === 'sessionStart') {
      start ??= { at: timeOf(e.time), clientAddress: ev.value.clientAddress, applicationName: ev.value.applicationName ?? null };
    } else if (ev.$case === 'sessionEnd') {
      end ??= { at: timeOf(e.time), seq: e.seq, reason: ev.value.reason };
    }
  }
  if (stored === 0) return [];
  const sealed = s.sealed_day !== null;
  // started_at orders the daily chain, so it stays fixed once the session is sealed.
  const startedAt = sealed ? isoOf(s.started_at) : start ? start.at : [isoOf(s.started_at), earliest(p.events)].sort()[0]!;
  const endSeq = end ? end.seq : s.end_seq;
  const complete = endSeq !== null && p.chain.linked_seq >= endSeq;
  const seal = !sealed && complete;
  const time = (t: Date | string | null) => (t === null ? null : isoOf(t));
  return [
    {
      session_id: s.session_id,
      events: s.events + stored,
      statements: s.statements + statements,
      refused: s.refused + refusedCount,
      errors: s.errors + errors,
      started_at: startedAt,
      last_event_at: now.toISOString(),
      client_address: start ? start.clientAddress : s.client_address,
      application_name: start ? start.applicationName : s.application_name,
      ended_at: end ? end.at : time(s.ended_at),
      end_reason: end ? end.reason : s.end_reason,
      end_seq: endSeq,
      linked_seq: p.chain.linked_seq,
      head_hash: p.chain.head_hash,
      sealed_day: seal ? today : s.sealed_day,
      sealed_seq: seal ? p.chain.linked_seq : s.sealed_seq,
      sealed_hash: seal ? p.chain.head_hash : s.sealed_hash,
    },
  ];
}
