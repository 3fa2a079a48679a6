// What the console's pages get for audit events: one flat JSON shape per
// event, built from the stored record with the same summaries the CLI prints.
import { StatementDecision, type AuditEvent } from '@warden/proto';
import { durationMs, eventFromRecord, eventType, msOf, summarize } from '@warden/proto/audit';

export interface EventView {
  id: string;
  sessionId: string;
  seq: number;
  type: string;
  time: string;
  identity: string;
  resource: string;
  /** The CLI's one-line summary. */
  summary: string;
  sql?: string;
  parameters?: (string | null)[];
  kind?: string;
  objects?: string[];
  decision?: 'allowed' | 'refused';
  rule?: string;
  rows?: number;
  command?: string;
  durationMs?: number;
  error?: { sqlstate: string; message: string };
  masked?: string[];
  approvalId?: string;
  /** The server skipped it after an earlier error: it did not run. */
  skipped?: boolean;
  /** Approval events: the request's state and who decided. */
  approval?: { state: string; why: string; decisions: { approver: string; approve: boolean; reason: string }[] };
}

export function eventView(e: AuditEvent): EventView {
  const base: EventView = {
    id: e.id,
    sessionId: e.sessionId,
    seq: e.seq,
    type: eventType(e) ?? 'unknown',
    time: new Date(msOf(e.time)).toISOString(),
    identity: e.identity,
    resource: e.resource,
    summary: summarize(e),
  };
  const ev = e.event;
  if (ev?.$case === 'statement') {
    const s = ev.value;
    return {
      ...base,
      sql: s.sql,
      parameters: s.parameters.map((p) => p.value ?? null),
      kind: s.kind ?? s.command,
      objects: s.objects,
      decision: s.decision === StatementDecision.STATEMENT_DECISION_REFUSED ? 'refused' : 'allowed',
      rule: s.rule,
      rows: s.rows,
      command: s.command,
      durationMs: durationMs(s.duration),
      ...(s.error ? { error: { sqlstate: s.error.sqlstate, message: s.error.message } } : {}),
      masked: s.maskedColumns,
      approvalId: s.approvalId,
      ...(s.skipped ? { skipped: true } : {}),
    };
  }
  if (ev?.$case === 'approval') {
    const a = ev.value;
    return {
      ...base,
      sql: a.sql,
      rule: a.rule,
      approvalId: a.approvalId,
      approval: { state: a.state, why: a.why, decisions: a.decisions.map((d) => ({ approver: d.approver, approve: d.approve, reason: d.reason })) },
    };
  }
  return base;
}

/** Stored bodies as views; an unreadable one is left out (warden audit verify names it). */
export function viewsOf(bodies: string[]): EventView[] {
  return bodies.flatMap((body) => {
    try {
      const e = eventFromRecord(JSON.parse(body));
      return e ? [eventView(e)] : [];
    } catch {
      return [];
    }
  });
}
