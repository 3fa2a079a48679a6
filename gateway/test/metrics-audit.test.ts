// The gateway's audit-derived metrics: the sink decorator counts each event
// and hands it on, passes every other member of the sink through (including
// ones it does not know), and the outbox tells its depth and oldest age.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StatementDecision, StatementProtocol, type AuditEvent } from '@warden/proto';
import { Registry } from '@warden/proto/metrics';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Outbox } from '../src/audit/outbox.js';
import type { AuditSink } from '../src/audit/events.js';
import { AuditTally, authFailureReason, observeAudit } from '../src/metrics/index.js';

const at = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 });

function event(seq: number, e: AuditEvent['event'], time = Date.now()): AuditEvent {
  return { id: `s:${seq}`, time: at(time), gateway: 'gw', sessionId: 's', seq, identity: 'ci', resource: 'shop', agent: 'local', event: e };
}

const statement = (seq: number, kind: string | undefined, decision: StatementDecision, ms = 2) =>
  event(seq, {
    $case: 'statement',
    value: {
      sql: 'SELECT 1',
      parameters: [],
      protocol: StatementProtocol.STATEMENT_PROTOCOL_SIMPLE,
      decision,
      kind,
      objects: [],
      duration: { seconds: 0, nanos: ms * 1e6 },
      error: undefined,
      maskedColumns: [],
    },
  });
const start = (seq: number) => event(seq, { $case: 'sessionStart', value: { claims: undefined, groups: [], clientAddress: '127.0.0.1:1', readOnly: false } });
const end = (seq: number) => event(seq, { $case: 'sessionEnd', value: { duration: undefined, bytesIn: 0, bytesOut: 0, statements: 0, reason: 'client' } });
const authFailure = (sqlstate: string) => event(0, { $case: 'authFailure', value: { clientAddress: '127.0.0.1:1', sqlstate, message: 'no' } });

/** A sink as a class, with state behind `this`, and a member the decorator has never heard of. */
class RecordingSink implements AuditSink {
  readonly events: AuditEvent[] = [];
  readonly intended: string[] = [];
  label = 'recording';
  private pending: (() => void)[] = [];
  publish(e: AuditEvent): void {
    this.events.push(e);
  }
  afterWrite(fn: () => void): void {
    this.pending.push(fn);
  }
  blocked(): string | undefined {
    return this.events.length > 100 ? 'full' : undefined;
  }
  intend(what: string): number {
    this.intended.push(what);
    return this.intended.length;
  }
  stats() {
    return { pendingBytes: this.events.length * 10 };
  }
  runPending(): number {
    const n = this.pending.length;
    this.pending.splice(0).forEach((fn) => fn());
    return n;
  }
}

async function text(registry: Registry): Promise<string> {
  return registry.metrics();
}

describe('the audit sink decorator', () => {
  it('hands every event on and passes every other member through, bound to the sink', () => {
    const sink = new RecordingSink();
    const observed = observeAudit(sink, new AuditTally(new Registry()));
    const e = statement(1, 'SELECT', StatementDecision.STATEMENT_DECISION_ALLOWED);
    observed.publish(e);
    expect(sink.events).toEqual([e]);
    let ran = 0;
    observed.afterWrite!(() => ran++);
    expect(sink.runPending()).toBe(1);
    expect(ran).toBe(1);
    expect(observed.blocked!()).toBeUndefined();
    // A member added to the sink later (the lead's `intend`) needs no change here.
    expect(observed.intend('DELETE')).toBe(1);
    expect(sink.intended).toEqual(['DELETE']);
    expect(observed.stats()).toEqual({ pendingBytes: 10 });
    expect(observed.label).toBe('recording');
    expect('intend' in observed).toBe(true);
    // The same bound function each time: afterWrite is fetched per statement.
    expect(observed.afterWrite).toBe(observed.afterWrite);
  });

  it('counts sessions, statements by decision and kind, durations and refused logins by reason', async () => {
    const registry = new Registry();
    const observed = observeAudit(new RecordingSink(), new AuditTally(registry));
    observed.publish(start(0));
    observed.publish(start(0));
    observed.publish(statement(1, 'SELECT', StatementDecision.STATEMENT_DECISION_ALLOWED, 3));
    observed.publish(statement(2, 'SELECT', StatementDecision.STATEMENT_DECISION_ALLOWED, 3));
    observed.publish(statement(3, 'DROP TABLE', StatementDecision.STATEMENT_DECISION_REFUSED, 1));
    observed.publish(statement(4, undefined, StatementDecision.STATEMENT_DECISION_REFUSED, 1));
    observed.publish(end(5));
    observed.publish(authFailure('28P01'));
    observed.publish(authFailure('28P01'));
    observed.publish(authFailure('08004'));
    observed.publish(event(9, { $case: 'approval', value: { approvalId: 'a', state: 'requested', rule: 'r', sql: 'x', why: '', decisions: [] } }));
    const out = await text(registry);
    for (const line of [
      'warden_sessions_open 1',
      'warden_sessions_total 2',
      'warden_statements_total{decision="allowed",kind="SELECT"} 2',
      'warden_statements_total{decision="refused",kind="DROP TABLE"} 1',
      'warden_statements_total{decision="refused",kind="unknown"} 1',
      'warden_statement_duration_seconds_bucket{le="0.001"} 2',
      'warden_statement_duration_seconds_bucket{le="0.005"} 4',
      'warden_statement_duration_seconds_count 4',
      'warden_auth_failures_total{reason="invalid_password"} 2',
      'warden_auth_failures_total{reason="rejected_connection"} 1',
    ]) {
      expect(out).toContain(`\n${line}\n`);
    }
    expect(out).not.toContain('decision="allowed",kind="DROP TABLE"');
  });

  it('folds statement kinds past the 256th into "other", so a label set cannot grow without bound', () => {
    const tally = new AuditTally(new Registry());
    for (let i = 0; i < 300; i++) tally.record(statement(i, `KIND ${i}`, StatementDecision.STATEMENT_DECISION_ALLOWED));
    expect(tally.statements.size).toBe(257);
    expect(tally.statements.get('other')).toEqual([0, 44, 0]);
  });

  it('names refused logins by their SQLSTATE', () => {
    expect(authFailureReason('28000')).toBe('invalid_authorization');
    expect(authFailureReason('28P01')).toBe('invalid_password');
    expect(authFailureReason('3D000')).toBe('invalid_catalog_name');
    expect(authFailureReason('53300')).toBe('too_many_connections');
    expect(authFailureReason('42P99')).toBe('42P99');
    expect(authFailureReason('<script>')).toBe('unknown');
  });
});

describe('outbox stats', () => {
  it('give the undelivered bytes and the age of the oldest undelivered event, nothing once delivered', () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-outbox-stats-'));
    const outbox = Outbox.open(dir, pino({ level: 'silent' }));
    try {
      expect(outbox.stats()).toEqual({ pendingBytes: 0 });
      outbox.append(statement(1, 'SELECT', StatementDecision.STATEMENT_DECISION_ALLOWED, 1));
      const old = outbox.stats();
      expect(old.pendingBytes).toBeGreaterThan(0);
      expect(old.oldestPendingMs).toBeGreaterThanOrEqual(0);
      const later = event(2, statement(2, 'SELECT', StatementDecision.STATEMENT_DECISION_ALLOWED).event, Date.now() + 60_000);
      outbox.append(later);
      const [first, second] = outbox.read(10);
      expect(second).toBeDefined();
      outbox.ack(first!.end);
      // Only the event from a minute ahead is left: it is not older than now.
      expect(outbox.stats()).toEqual({ pendingBytes: outbox.pendingBytes(), oldestPendingMs: 0 });
      outbox.ack(second!.end);
      expect(outbox.stats()).toEqual({ pendingBytes: 0 });
    } finally {
      outbox.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('measure the age from the event time', () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-outbox-stats-'));
    const outbox = Outbox.open(dir, pino({ level: 'silent' }));
    try {
      outbox.append(event(1, start(1).event, Date.now() - 5_000));
      expect(outbox.stats().oldestPendingMs).toBeGreaterThanOrEqual(5_000);
    } finally {
      outbox.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
