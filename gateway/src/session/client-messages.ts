// The client → server half of the relay. Every Query, Parse and FunctionCall
// is checked by the session's StatementGate; Bind, Execute and Sync are noted
// so each statement can be paired with its result. A refused statement is
// replaced by one that makes the server itself raise the refusal, so the
// client sees exactly what Postgres does after an error: the rest of a
// multi-statement Query skipped, messages up to Sync discarded, an open
// transaction marked failed. A statement that needs approval stops the
// filter at its message (HOLD); once decided, the relay feeds the kept bytes
// again with the Release, which the held message, inspected first, takes.
import type { Decision, StatementGate } from '../policy/index.js';
import type { HeldStatement, Release } from '../approvals/hold.js';
import type { Hold } from '../approvals/rules.js';
import { SqlState, BIND, CLOSE, EXECUTE, FUNCTION_CALL, PARSE, ProtocolError, QUERY, SYNC, bindResultsOffset, parse, query } from '@warden/proto/pgwire';
import { HOLD, MessageFilter, messageTypes, type FilterLimits } from './filter.js';

const INSPECTED = messageTypes(QUERY, PARSE, BIND, EXECUTE, SYNC, FUNCTION_CALL, CLOSE);
import type { ResponseTracker, StatementDecision } from './tracker.js';

/** Between the relay and the inspector, in sessions that may hold statements. */
export interface HoldSwitch {
  /** Set by the inspector when it stopped at a statement that needs approval. */
  held: HeldStatement | null;
  /** Set by the relay before it feeds the kept bytes again; taken by the held message. */
  release: Release | null;
}


/**
 * `auditBlocked` says why audit records cannot be kept now (or undefined):
 * then every statement is refused, as the gate's refusals are, rather than
 * run unrecorded.
 */
export function clientMessages(
  gate: StatementGate,
  tracker: ResponseTracker,
  holds?: HoldSwitch,
  auditBlocked?: () => string | undefined,
  limits?: FilterLimits,
): MessageFilter {
  /** A refusal in the gate's place when audit cannot record, as an approval's denial is given. */
  const unrecordable = (): Release | null => {
    const why = auditBlocked?.();
    return why ? { index: 0, refusal: { sqlstate: SqlState.diskFull, message: `warden: statements are refused while the audit trail cannot record them: ${why}`, rule: '' } } : null;
  };
  // Prepared statements whose Parse was refused: their Binds lose their parameters.
  const refused = new Set<string>();
  // Prepared statements that needed approval: an approval covers one Bind (its parameters), so the next one is held again.
  const approvedOnce = new Map<string, { hold: Hold; sql: string; binds: number }>();

  const inspect = (type: number, msg: Buffer): Buffer | null => {
    switch (type) {
      case QUERY: {
        const sql = msg.toString('utf8', 5, msg.length - 1);
        const decision = gate.check(sql);
        // Audit that cannot record refuses first; a release being fed again is taken either way.
        let release: Release | null = unrecordable();
        if (holds) {
          const released = holds.release;
          holds.release = null;
          release ??= released;
          if (!release && holdAt(decision, holds, sql)) return HOLD;
        }
        const statements = decide(decision, sql, release);
        tracker.query(statements);
        const last = statements[statements.length - 1]!;
        if (!last.refusal) return null;
        // Statements before the refused one run, as they would before a server error.
        const before = statements.slice(0, -1).map((s) => s.sql);
        return query([...before, raise(last.refusal.sqlstate, last.refusal.message, release?.refusal ? null : undefined)].join(';\n'));
      }
      case PARSE: {
        const nameEnd = cstringEnd(msg, 5);
        const sqlEnd = cstringEnd(msg, nameEnd + 1);
        const name = msg.toString('utf8', 5, nameEnd);
        const sql = msg.toString('utf8', nameEnd + 1, sqlEnd);
        const decision = gate.check(sql, { name });
        // Audit that cannot record refuses first; a release being fed again is taken either way.
        let release: Release | null = unrecordable();
        if (holds) {
          const released = holds.release;
          holds.release = null;
          release ??= released;
          if (!release && holdAt(decision, holds, sql, name)) return HOLD;
        }
        const statements = decide(decision, sql, release);
        const refusal = statements.find((s) => s.refusal)?.refusal;
        const only = statements.length === 1 ? statements[0]! : undefined;
        tracker.parse(name, { sql, info: only?.info, rule: statements[0]!.rule, refusal, effects: only?.effects, mask: only?.mask, approvalId: release?.approvalId });
        const held = decision.holds?.[0];
        if (held && !refusal) approvedOnce.set(name, { hold: held, sql, binds: 0 });
        else approvedOnce.delete(name);
        if (!refusal) {
          refused.delete(name);
          return null;
        }
        refused.add(name);
        return parse(name, raise(refusal.sqlstate, refusal.message, release?.refusal ? null : undefined));
      }
      case BIND: {
        const portalEnd = cstringEnd(msg, 5);
        const stmtEnd = cstringEnd(msg, portalEnd + 1);
        const statement = msg.toString('utf8', portalEnd + 1, stmtEnd);
        const portal = msg.toString('utf8', 5, portalEnd);
        const blocked = unrecordable();
        if (blocked?.refusal) {
          // A statement prepared earlier would run unrecorded: its portal gets one that raises instead, as a denied approval's does.
          tracker.parse('', { sql: statement, rule: '', refusal: { ...blocked.refusal, index: 0 } });
          tracker.bind(portal, '', msg.subarray(stmtEnd + 1));
          return Buffer.concat([parse('', raise(blocked.refusal.sqlstate, blocked.refusal.message, null)), stripParameters(msg, stmtEnd, '')]);
        }
        const once = holds ? approvedOnce.get(statement) : undefined;
        if (once && ++once.binds > 1) {
          // A second execution of an approved statement, with parameters of its own: it needs an approval of its own.
          const release = holds!.release;
          holds!.release = null;
          if (!release) {
            once.binds--;
            holds!.held = { hold: once.hold, sql: once.sql, statement: withoutTerminator(once.sql), index: 0, parse: statement };
            return HOLD;
          }
          if (release.refusal) {
            // The portal is bound to a statement that raises the outcome, as a refused Parse would.
            tracker.parse('', { sql: once.sql, rule: release.refusal.rule, refusal: { ...release.refusal, index: 0 } });
            tracker.bind(portal, '', msg.subarray(stmtEnd + 1));
            return Buffer.concat([parse('', raise(release.refusal.sqlstate, release.refusal.message, null)), stripParameters(msg, stmtEnd, '')]);
          }
          tracker.bind(portal, statement, msg.subarray(stmtEnd + 1), release.approvalId);
          return null;
        }
        tracker.bind(portal, statement, msg.subarray(stmtEnd + 1));
        return refused.has(statement) ? stripParameters(msg, stmtEnd) : null;
      }
      case EXECUTE:
        tracker.execute(msg.toString('utf8', 5, cstringEnd(msg, 5)));
        return null;
      case SYNC:
        tracker.sync();
        return null;
      case CLOSE:
        // Close 'S': the server forgets the prepared statement, so it is no longer re-resolved after a path change.
        if (msg[5] === 0x53) {
          const name = msg.toString('utf8', 6, cstringEnd(msg, 6));
          gate.closed(name);
          approvedOnce.delete(name);
          tracker.closeStatement(name);
        } else tracker.closePortal(msg.toString('utf8', 6, cstringEnd(msg, 6)));
        return null;
      case FUNCTION_CALL: {
        const refusal = gate.checkFunctionCall() ?? undefined;
        tracker.query([{ sql: '-- FunctionCall message', refusal }]);
        return refusal ? query(raise(refusal.sqlstate, refusal.message)) : null;
      }
      default:
        return null;
    }
  };
  return new MessageFilter(INSPECTED, inspect, limits);
}

/** Reports the first statement that needs approval (before any refused one); true when there is one. */
function holdAt(decision: Decision, holds: HoldSwitch, sql: string, parse?: string): boolean {
  const list = decision.holds;
  if (!list) return false;
  const limit = decision.refusal ? Math.min(decision.refusal.index, list.length) : list.length;
  for (let i = 0; i < limit; i++) {
    const hold = list[i];
    if (hold) {
      const c = decision.classification;
      const statement = c.ok && c.statements.length > 1 ? c.statements[i]!.text : withoutTerminator(sql);
      holds.held = { hold, sql, statement, index: i, parse };
      return true;
    }
  }
  return false;
}

/**
 * One decision per statement, up to and including the first refused one. A
 * release of a held statement refuses it in the gate's place (denied) or
 * marks it with its approval.
 */
function decide(decision: Decision, sql: string, release: Release | null): StatementDecision[] {
  const c = decision.classification;
  let r = decision.refusal;
  if (release?.refusal && (!r || release.index < r.index)) {
    const { sqlstate, message, rule } = release.refusal;
    r = { sqlstate, message, rule, index: c.ok ? Math.min(release.index, Math.max(c.statements.length - 1, 0)) : 0 };
  }
  if (!c.ok) return [{ sql, rule: r?.rule ?? decision.rule, refusal: r ?? undefined }];
  const last = r ? r.index : c.statements.length - 1;
  const out: StatementDecision[] = [];
  for (let i = 0; i <= last; i++) {
    const info = c.statements[i]!;
    // A classification found by shape carries the text it was made from, so one statement is recorded as sent.
    const text = c.statements.length === 1 ? withoutTerminator(sql) : info.text;
    out.push(r && i === r.index ? { sql: text, info, rule: r.rule, refusal: r } : { sql: text, info, rule: decision.rule, effects: decision.effects[i], mask: decision.masks?.[i] });
  }
  if (release?.approvalId && out[release.index] && !out[release.index]!.refusal) out[release.index]!.approvalId = release.approvalId;
  // An empty query string still gets one (empty) answer.
  return out.length ? out : [{ sql, rule: decision.rule }];
}

/** The text without trailing blanks and semicolons, as the parser cuts a statement. */
function withoutTerminator(sql: string): string {
  let end = sql.length;
  while (end > 0 && isTerminator(sql.charCodeAt(end - 1))) end--;
  return end === sql.length ? sql : sql.slice(0, end);
}

function isTerminator(c: number): boolean {
  return c === 0x3b /* ; */ || c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

function cstringEnd(msg: Buffer, from: number): number {
  const end = msg.indexOf(0, from);
  if (end < 0) throw new ProtocolError(`malformed ${String.fromCharCode(msg[0]!)} message`);
  return end;
}

const REFUSAL_HINT = 'Ask a Warden admin for a rule that allows it, or run it as an identity that has one.';

/** SQL that makes the server raise `message` with `sqlstate` (and `hint`; null: none, as for an approval's outcome). */
export function raise(sqlstate: string, message: string, hint: string | null = REFUSAL_HINT): string {
  const text = dollarQuote(message);
  const withHint = hint === null ? '' : `, HINT = ${dollarQuote(hint)}`;
  return dollarQuote(`BEGIN RAISE EXCEPTION USING ERRCODE = '${sqlstate}', MESSAGE = ${text}${withHint}; END`, 'DO ');
}

function dollarQuote(text: string, prefix = ''): string {
  let n = 0;
  while (text.includes(`$w${n}$`)) n++;
  return `${prefix}$w${n}$${text}$w${n}$`;
}

/**
 * A Bind for a refused statement: same portal, statement (or `statement`)
 * and result formats, no parameters (the replacement statement takes none,
 * and raises on Execute).
 */
function stripParameters(msg: Buffer, stmtEnd: number, statement?: string): Buffer {
  const pos = stmtEnd + 1 + bindResultsOffset(msg.subarray(stmtEnd + 1));
  const portalEnd = msg.indexOf(0, 5);
  const names = statement === undefined ? msg.subarray(5, stmtEnd + 1) : Buffer.concat([msg.subarray(5, portalEnd + 1), Buffer.from(`${statement}\0`)]);
  const results = msg.subarray(pos);
  const out = Buffer.allocUnsafe(5 + names.length + 4 + results.length);
  out[0] = BIND;
  out.writeInt32BE(out.length - 1, 1);
  names.copy(out, 5);
  out.writeInt32BE(0, 5 + names.length); // no parameter formats, no parameters
  results.copy(out, 9 + names.length);
  return out;
}
