// The statement journal (audit/intents.ts): what a gateway that died leaves
// for its next start, and what cutting the journal keeps.
import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditEvent, StatementDecision, StatementProtocol } from '@warden/proto';
import { timestampOf } from '@warden/proto/audit';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IntentJournal, STOPPED_REASON } from '../src/audit/intents.js';
import { recordAt } from '../src/audit/record.js';

const log = pino({ level: 'silent' });
let dir: string;
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'warden-intents-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const head = (session: string, seq: number) => ({
  id: `${session}:${seq}`,
  time: timestampOf(1_000 + seq),
  gateway: 'g',
  sessionId: session,
  seq,
  identity: 'job',
  resource: 'shop',
  agent: 'a',
});
const start = (session: string): AuditEvent => ({
  ...head(session, 0),
  event: { $case: 'sessionStart', value: { claims: {}, groups: [], clientAddress: '127.0.0.1:1', readOnly: false } },
});
const statement = (session: string, seq: number, outcome: string): AuditEvent => ({
  ...head(session, seq),
  event: {
    $case: 'statement',
    value: {
      sql: `INSERT ${seq}`,
      parameters: [],
      protocol: StatementProtocol.STATEMENT_PROTOCOL_SIMPLE,
      decision: StatementDecision.STATEMENT_DECISION_ALLOWED,
      objects: [],
      maskedColumns: [],
      skipped: false,
      error: { sqlstate: '08006', message: outcome },
    },
  },
});
const end = (session: string, seq: number): AuditEvent => ({
  ...head(session, seq),
  event: { $case: 'sessionEnd', value: { bytesIn: 0, bytesOut: 0, statements: 0, reason: 'client disconnected' } },
});

/** Opens the journal in `dir` as a restart does: what it hands over, decoded. */
function reopen(): { journal: IntentJournal; kept: AuditEvent[] } {
  const kept: AuditEvent[] = [];
  const journal = IntentJournal.open(dir, log, (records) => {
    for (const r of records) {
      const at = recordAt(r, 0)!;
      kept.push(AuditEvent.decode(r.subarray(at.start, at.end)));
    }
  });
  return { journal, kept };
}

const summary = (events: AuditEvent[]) => events.map((e) => `${e.id} ${e.event?.$case}`).sort();

describe('the statement journal', () => {
  it('after a crash: the statements forwarded, and an end numbered after the last event, for each session left open', () => {
    const { journal } = reopen();
    journal.opened(start('s1'));
    journal.opened(start('s2'));
    expect(journal.intend([statement('s1', 1, 'unknown'), statement('s1', 2, 'unknown'), statement('s2', 1, 'unknown')])).toBe(true);
    journal.recorded(statement('s1', 1, 'done')); // its outcome reached the outbox
    journal.recorded(statement('s2', 1, 'done'));
    journal.recorded(end('s2', 2)); // s2 ended by itself
    // The process dies here: no close.

    const { kept } = reopen();
    expect(summary(kept)).toEqual(['s1:1 statement', 's1:2 statement', 's1:3 sessionEnd', 's2:1 statement', 's2:2 sessionEnd'].sort());
    const s1end = kept.find((e) => e.id === 's1:3')!;
    expect(s1end.event?.$case === 'sessionEnd' && s1end.event.value.reason).toBe(STOPPED_REASON);
    // s2's own end, already in the outbox, has the same id: the control plane keeps the first.
    // The files are gone once handed over; a new one starts.
    expect(readdirSync(dir).filter((f) => f.startsWith('intents-'))).toHaveLength(1);
  });

  it('an approval moves the number the session end takes', () => {
    const { journal } = reopen();
    journal.opened(start('s1'));
    journal.recorded({ ...head('s1', 1), event: { $case: 'approval', value: { approvalId: 'x', state: 'requested', rule: 'r', sql: 'DROP', why: '', decisions: [] } } });
    const { kept } = reopen();
    expect(summary(kept)).toEqual(['s1:1 approval', 's1:2 sessionEnd']);
  });

  it('a session opened and idle gets its end at 1', () => {
    const { journal } = reopen();
    journal.opened(start('s1'));
    const { kept } = reopen();
    expect(summary(kept)).toEqual(['s1:1 sessionEnd']);
  });

  it('cutting keeps what is open only: unanswered statements, and the end each open session would take', () => {
    const { journal } = reopen();
    journal.opened(start('open'));
    journal.opened(start('gone'));
    journal.intend([statement('open', 1, 'unknown'), statement('open', 2, 'unknown'), statement('gone', 1, 'unknown')]);
    journal.recorded(statement('open', 1, 'done'));
    journal.recorded(statement('gone', 1, 'done'));
    journal.recorded(end('gone', 2));
    journal.cut();
    const { kept } = reopen();
    expect(summary(kept)).toEqual(['open:2 statement', 'open:3 sessionEnd']);
  });

  it('after a cut, an open session with nothing unanswered still gets its end after its last number', () => {
    const { journal } = reopen();
    journal.opened(start('s1'));
    journal.intend([statement('s1', 1, 'unknown'), statement('s1', 2, 'unknown')]);
    journal.recorded(statement('s1', 1, 'done'));
    journal.recorded(statement('s1', 2, 'done'));
    journal.cut();
    const { kept } = reopen();
    expect(summary(kept)).toEqual(['s1:3 sessionEnd']);
  });

  it('a clean stop with nothing open leaves no journal; with a session open it stays', () => {
    const first = reopen().journal;
    first.opened(start('s1'));
    first.recorded(end('s1', 1));
    first.close();
    expect(readdirSync(dir)).toEqual([]);
    const second = reopen().journal;
    second.opened(start('s2'));
    second.close();
    expect(summary(reopen().kept)).toEqual(['s2:1 sessionEnd']);
  });

  it('half a record at the end (a crash mid-write) is left out, the rest kept', () => {
    const { journal } = reopen();
    journal.opened(start('s1'));
    journal.intend([statement('s1', 1, 'unknown')]);
    const file = readdirSync(dir).find((f) => f.startsWith('intents-'))!;
    appendFileSync(join(dir, file), Buffer.from([0x1a, 0x40, 0x0a]));
    expect(summary(reopen().kept)).toEqual(['s1:1 statement', 's1:2 sessionEnd']);
  });
});
