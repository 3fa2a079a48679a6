// Turns what happens in one session into audit events, numbered in order.
import type { AuditSink, SessionStartEvent } from '../audit/events.js';
import { decodeParameters } from '../wire/index.js';
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

  private base() {
    const seq = this.seq++;
    return { ...this.ctx, id: `${this.ctx.sessionId}:${seq}`, seq, time: new Date().toISOString() };
  }

  start(details: Omit<SessionStartEvent, keyof RecorderContext | 'id' | 'seq' | 'time' | 'type'>): void {
    this.sink.publish({ ...this.base(), type: 'session.start', ...details });
  }

  statement(s: TrackedStatement, now: number): void {
    // Statements the server skipped after an earlier error never ran; only refusals are worth a record.
    if (s.skipped && !s.refusal) return;
    this.statements++;
    const info = s.info;
    this.sink.publish({
      ...this.base(),
      type: 'statement',
      sql: s.sql,
      parameters: s.parameters && this.parameters !== 'none' ? this.decode(s.parameters) : undefined,
      protocol: s.protocol,
      decision: s.refusal ? 'refused' : 'allowed',
      rule: s.rule,
      access: info?.access,
      kind: info?.kind,
      objects: info?.objects.filter((o) => o.type !== 'function').map((o) => (o.schema ? `${o.schema}.${o.name}` : o.name)),
      command: s.command,
      rows: s.rows,
      durationMs: Math.round((now - s.startedAt) * 1000) / 1000,
      error: s.refusal ? { sqlstate: s.refusal.sqlstate, message: s.refusal.message } : s.error,
    });
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
