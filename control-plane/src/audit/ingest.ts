// Stores audit events, idempotently: the event id is the key, so a re-sent
// event (outbox retry, NATS redelivery) is stored once. Events of a session
// may arrive in any order; each is linked into the session's hash chain as
// soon as its predecessor is stored, which makes the chain the same whatever
// the arrival order. A session whose chain reaches session.end is sealed into
// today's daily chain (see seal.ts). What is stored of an event, and hashed,
// is its JSON form as canonical JSON (chain.ts).
import { StatementDecision, type AuditEvent, type SessionEnd, type SessionStart, type Statement } from '@warden/proto';
import { eventRecord, isoOf as timeOf } from '@warden/proto/audit';
import { GENESIS, canonicalJson, dayOf, linkHash } from './chain.js';
import { eventColumns } from './columns.js';
import { isoOf, type AuditContext, type AuditTrx } from './context.js';
import { checkEvent } from './validate.js';

export interface IngestResult {
  stored: number;
  duplicates: number;
  invalid: number;
}

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
    else bySession.set(e.sessionId, [...(bySession.get(e.sessionId) ?? []), e]);
  }
  if (seen.size === 0) return result;

  await ctx.db.transaction().execute(async (trx) => {
    const today = dayOf(ctx.now());
    for (const e of failures) {
      const stored = await insertEvent(trx, e, today);
      stored ? result.stored++ : result.duplicates++;
    }
    // Sessions in a fixed order, so two control planes never wait on each other's locks in a cycle.
    for (const id of [...bySession.keys()].sort()) {
      const n = await ingestSession(ctx, trx, id, bySession.get(id)!, today);
      result.stored += n;
      result.duplicates += bySession.get(id)!.length - n;
    }
  });
  return result;
}

async function insertEvent(trx: AuditTrx, e: AuditEvent, day: string | null): Promise<boolean> {
  const row = await trx
    .insertInto('audit_events')
    .values({ ...eventColumns(e), body: canonicalJson(eventRecord(e)), day })
    .onConflict((oc) => oc.doNothing())
    .returning('id')
    .executeTakeFirst();
  return row !== undefined;
}

async function ingestSession(ctx: AuditContext, trx: AuditTrx, sessionId: string, events: AuditEvent[], today: string): Promise<number> {
  const first = events[0]!;
  const earliest = events.map((e) => timeOf(e.time)).sort()[0]!;
  // The row lock serializes everything that touches this session's chain.
  const lock = () => trx.selectFrom('audit_sessions').selectAll().where('session_id', '=', sessionId).forUpdate().executeTakeFirst();
  let s = await lock();
  if (!s) {
    await trx
      .insertInto('audit_sessions')
      .values({
        session_id: sessionId,
        gateway: first.gateway,
        identity: first.identity,
        resource: first.resource,
        agent: first.agent,
        started_at: earliest,
        head_hash: GENESIS,
        last_event_at: ctx.now(),
      })
      .onConflict((oc) => oc.column('session_id').doNothing())
      .execute();
    s = (await lock())!;
  }

  // Usually every stored event is linked already (seq 0…linked_seq, no gaps), so the
  // events that continue the chain get their hashes as they are inserted: no
  // duplicate can be among them, since nothing after the head is stored.
  const nothingWaiting = s.events === s.linked_seq + 1;
  const rows = [...events].sort((a, b) => a.seq - b.seq).map((e) => ({ ...eventColumns(e), body: canonicalJson(eventRecord(e)), day: null }));
  let chain = { linked_seq: s.linked_seq, head_hash: s.head_hash };
  if (nothingWaiting) {
    for (const row of rows) {
      if (row.seq! <= chain.linked_seq) continue; // a re-sent event, stored and linked before
      if (row.seq !== chain.linked_seq + 1) break;
      const hash = linkHash(chain.head_hash, row.body);
      Object.assign(row, { prev_hash: chain.head_hash, hash });
      chain = { linked_seq: row.seq, head_hash: hash };
    }
  }
  const inserted = await trx.insertInto('audit_events').values(rows).onConflict((oc) => oc.doNothing()).returning('id').execute();
  const ids = new Set(inserted.map((r) => r.id));
  const stored = events.filter((e) => ids.has(e.id));
  if (stored.length === 0) return 0;
  if (!nothingWaiting) chain = await link(trx, sessionId, s.linked_seq, s.head_hash);

  const statements: Statement[] = [];
  let start: { at: string; value: SessionStart } | undefined;
  let end: { at: string; seq: number; value: SessionEnd } | undefined;
  for (const e of stored) {
    if (e.event?.$case === 'statement') statements.push(e.event.value);
    else if (e.event?.$case === 'sessionStart') start ??= { at: timeOf(e.time), value: e.event.value };
    else if (e.event?.$case === 'sessionEnd') end ??= { at: timeOf(e.time), seq: e.seq, value: e.event.value };
  }
  const sealed = s.sealed_day !== null;
  // started_at orders the daily chain, so it stays fixed once the session is sealed.
  const startedAt = sealed ? isoOf(s.started_at) : start ? start.at : [isoOf(s.started_at), earliest].sort()[0]!;
  const refused = (x: Statement) => x.decision === StatementDecision.STATEMENT_DECISION_REFUSED;
  const update = {
    events: s.events + stored.length,
    statements: s.statements + statements.length,
    refused: s.refused + statements.filter(refused).length,
    errors: s.errors + statements.filter((x) => !refused(x) && x.error).length,
    started_at: startedAt,
    last_event_at: ctx.now(),
    ...(start ? { client_address: start.value.clientAddress, application_name: start.value.applicationName ?? null } : {}),
    ...(end ? { ended_at: end.at, end_reason: end.value.reason, end_seq: end.seq } : {}),
    ...chain,
  };
  const endSeq = end ? end.seq : s.end_seq;
  const complete = endSeq !== null && update.linked_seq >= endSeq;
  const seal = !sealed && complete ? { sealed_day: today, sealed_seq: update.linked_seq, sealed_hash: update.head_hash } : {};
  await trx.updateTable('audit_sessions').set({ ...update, ...seal }).where('session_id', '=', sessionId).execute();
  return stored.length;
}

/** Links every stored event that now follows the chain head without a gap. */
async function link(trx: AuditTrx, sessionId: string, linkedSeq: number, headHash: string) {
  const waiting = await trx
    .selectFrom('audit_events')
    .select(['id', 'seq', 'body'])
    .where('session_id', '=', sessionId)
    .where('seq', '>', linkedSeq)
    .orderBy('seq')
    .execute();
  let seq = linkedSeq;
  let head = headHash;
  for (const row of waiting) {
    if (row.seq !== seq + 1) break;
    const hash = linkHash(head, row.body);
    await trx.updateTable('audit_events').set({ prev_hash: head, hash }).where('id', '=', row.id).execute();
    seq = row.seq;
    head = hash;
  }
  return { linked_seq: seq, head_hash: head };
}
