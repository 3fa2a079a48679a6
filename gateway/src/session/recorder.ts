// Turns what happens in one session into audit events, numbered in order.
import type { AuditSink, SessionStartEvent, StatementEvent } from '../audit/events.js';
import type { StatementInfo } from '../policy/index.js';
import { decodeParameters } from '@warden/proto/pgwire';
import type { TrackedStatement } from './tracker.js';

/** How Bind parameters appear in the audit record. */
export type ParameterRecording = 'full' | 'redact' | 'none';

export interface RecorderContext {
  gateway: string;
  sessionId: string;
  identity: string;
  resource: string;
  agent: string;
}

export class SessionRecorder {
  private seq = 0;
  private statements = 0;

  constructor(
    private readonly sink: AuditSink,
    private readonly ctx: RecorderContext,
    private readonly parameters: ParameterRecording,
  ) {}

  /** The fields every event of this session carries, written out: spreads cost on the per-statement path. */
  private base() {
    const c = this.ctx;
    const seq = this.seq++;
    return { gateway: c.gateway, sessionId: c.sessionId, identity: c.identity, resource: c.resource, agent: c.agent, id: `${c.sessionId}:${seq}`, seq, time: new Date().toISOString() };
  }

  start(details: Omit<SessionStartEvent, keyof RecorderContext | 'id' | 'seq' | 'time' | 'type'>): void {
    this.sink.publish({ ...this.base(), type: 'session.start', ...details });
  }

  statement(s: TrackedStatement, now: number): void {
    // Statements the server skipped after an earlier error never ran; only refusals are worth a record.
    if (s.skipped && !s.refusal) return;
    this.statements++;
    const info = s.info;
    const event = this.base() as StatementEvent;
    event.type = 'statement';
    event.sql = s.sql;
    if (s.parameters && this.parameters !== 'none') event.parameters = this.decode(s.parameters);
    event.protocol = s.protocol;
    event.decision = s.refusal ? 'refused' : 'allowed';
    if (s.rule !== undefined) event.rule = s.rule;
    if (info) {
      event.access = info.access;
      event.kind = info.kind;
      event.objects = objectNames(info);
    }
    if (s.command !== undefined) event.command = s.command;
    if (s.rows !== undefined) event.rows = s.rows;
    event.durationMs = Math.round((now - s.startedAt) * 1000) / 1000;
    const error = s.refusal ? { sqlstate: s.refusal.sqlstate, message: s.refusal.message } : s.error;
    if (error) event.error = error;
    this.sink.publish(event);
  }

  end(details: { durationMs: number; bytesIn: number; bytesOut: number; reason: string }): void {
    this.sink.publish({ ...this.base(), type: 'session.end', statements: this.statements, ...details });
  }

  private decode(raw: Buffer): Array<string | null> | undefined {
    try {
      const values = decodeParameters(raw);
      return this.parameters === 'redact' ? values.map((v) => (v === null ? null : '<redacted>')) : values;
    } catch {
      return undefined; // A malformed Bind fails upstream; the statement is still recorded.
    }
  }
}

/** The tables a statement touches, as "schema.name"; computed once per (shared, cached) classification. */
const names = new WeakMap<StatementInfo, string[]>();
function objectNames(info: StatementInfo): string[] {
  let list = names.get(info);
  if (!list) {
    list = info.objects.filter((o) => o.type !== 'function').map((o) => (o.schema ? `${o.schema}.${o.name}` : o.name));
    names.set(info, list);
  }
  return list;
}
