// Statement, session and login metrics, read off the audit events the
// sessions publish: a decorator of the AuditSink counts each event and hands
// it on, so the session code knows nothing of metrics. The counts are plain
// numbers (no label hashing per statement); prom-client reads them at scrape.
import { StatementDecision, type AuditEvent } from '@warden/proto';
import { Counter, Gauge, LATENCY_BUCKETS, LeanHistogram, type Registry } from '@warden/proto/metrics';
import { SqlState } from '@warden/proto/pgwire';
import type { AuditSink } from '../audit/events.js';

/** Statement kinds come from the SQL grammar, a bounded set; past this many, the rest count as "other". */
const MAX_KINDS = 256;

const DECISIONS = ['unspecified', 'allowed', 'refused'] as const;

// "28P01" -> "invalid_password", from the names the gateway gives its SQLSTATEs.
const REASONS = new Map(Object.entries(SqlState).map(([name, code]) => [code as string, name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)]));

/** The reason label of a refused login: the SQLSTATE's name (invalid_authorization, rejected_connection…), or the code itself. */
export function authFailureReason(sqlstate: string): string {
  return REASONS.get(sqlstate) ?? (/^[0-9A-Z]{5}$/.test(sqlstate) ? sqlstate : 'unknown');
}

export class AuditTally {
  sessionsOpen = 0;
  sessionsTotal = 0;
  /** Per statement kind, counts by decision (indexed as DECISIONS). */
  readonly statements = new Map<string, number[]>();
  readonly authFailures = new Map<string, number>();
  private readonly durations: LeanHistogram;

  constructor(registry: Registry) {
    const tally = this;
    new Gauge({
      name: 'warden_sessions_open',
      help: 'Client sessions admitted and not yet ended',
      registers: [registry],
      collect() {
        this.set(tally.sessionsOpen);
      },
    });
    new Counter({
      name: 'warden_sessions_total',
      help: 'Client sessions admitted',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(tally.sessionsTotal);
      },
    });
    new Counter({
      name: 'warden_statements_total',
      help: 'Statements decided, by decision (allowed, refused) and kind (SELECT, DROP TABLE…)',
      labelNames: ['decision', 'kind'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [kind, counts] of tally.statements) {
          counts.forEach((n, i) => n > 0 && this.inc({ decision: DECISIONS[i], kind }, n));
        }
      },
    });
    this.durations = new LeanHistogram(
      registry,
      'warden_statement_duration_seconds',
      'Statement time at the gateway, from the client message to the statement done (refused ones included)',
      LATENCY_BUCKETS,
    );
    new Counter({
      name: 'warden_auth_failures_total',
      help: 'Logins refused, by reason (the SQLSTATE the client got, by name)',
      labelNames: ['reason'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [reason, n] of tally.authFailures) this.inc({ reason }, n);
      },
    });
  }

  record(event: AuditEvent): void {
    const e = event.event;
    if (!e) return;
    switch (e.$case) {
      case 'statement': {
        const s = e.value;
        let counts = this.statements.get(s.kind ?? 'unknown');
        if (counts === undefined) counts = this.kindRow(s.kind ?? 'unknown');
        const d = s.decision;
        counts[d === StatementDecision.STATEMENT_DECISION_ALLOWED || d === StatementDecision.STATEMENT_DECISION_REFUSED ? d : 0]!++;
        if (s.duration) this.durations.observe(s.duration.seconds + s.duration.nanos / 1e9);
        return;
      }
      case 'sessionStart':
        this.sessionsOpen++;
        this.sessionsTotal++;
        return;
      case 'sessionEnd':
        this.sessionsOpen--;
        return;
      case 'authFailure':
        this.authFailed(e.value.sqlstate, 1);
        return;
    }
  }

  /** Counts `n` refused logins (the login limits report theirs in sums, one event for many). */
  authFailed(sqlstate: string, n: number): void {
    const reason = authFailureReason(sqlstate);
    this.authFailures.set(reason, (this.authFailures.get(reason) ?? 0) + n);
  }

  private kindRow(kind: string): number[] {
    const key = this.statements.size < MAX_KINDS ? kind : 'other';
    let row = this.statements.get(key);
    if (!row) this.statements.set(key, (row = [0, 0, 0]));
    return row;
  }
}

/**
 * `sink`, with every published event counted by `tally` first. Every other
 * member the sink has when wrapped passes through (afterWrite, blocked,
 * stats, and any the sink interface gains): methods bound to the sink, other
 * properties read from it. A plain object rather than a Proxy: afterWrite
 * and blocked are called per statement, and a Proxy's trap costs each call.
 */
export function observeAudit<S extends AuditSink>(sink: S, tally: AuditTally): S {
  const observed: Record<PropertyKey, unknown> = {};
  for (const key of memberKeys(sink)) {
    const value: unknown = (sink as Record<PropertyKey, unknown>)[key];
    if (typeof value === 'function') observed[key] = value.bind(sink);
    else Object.defineProperty(observed, key, { get: () => (sink as Record<PropertyKey, unknown>)[key], enumerable: true });
  }
  observed.publish = (event: AuditEvent): void => {
    try {
      tally.record(event);
    } catch {
      // Metrics must never cost an audit event.
    }
    sink.publish(event);
  };
  return observed as S;
}

/** The names of an object's own and inherited members (a class instance's methods included), Object's own left out. */
function memberKeys(o: object): Set<PropertyKey> {
  const keys = new Set<PropertyKey>();
  for (let p: object | null = o; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Reflect.ownKeys(p)) if (k !== 'constructor') keys.add(k);
  }
  return keys;
}
