// One line per audit event, for the gateway log and the `warden` CLI, e.g.
//   ci-deploy SELECT FROM public.orders on shop-prod: 42 rows, 3 ms
import { StatementDecision, type AuditEvent, type Statement } from '../gen/warden/v1/warden.js';
import { durationMs } from './record.js';

// The word that reads naturally between a statement kind and its objects.
const PREPOSITION: Record<string, string> = {
  SELECT: 'FROM',
  'SELECT INTO': 'FROM',
  DELETE: 'FROM',
  'COPY TO': 'FROM',
  INSERT: 'INTO',
  'COPY FROM': 'INTO',
  MERGE: 'INTO',
};

export function formatDuration(ms: number): string {
  if (ms < 10) return `${Math.round(ms * 10) / 10} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${Math.round(ms / 100) / 10} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** What the statement was, without its full text: kind and objects, or the first words of the SQL. */
export function statementHead(s: Statement): string {
  const kind = s.kind ?? s.command ?? firstWords(s.sql);
  const objects = s.objects;
  if (objects.length === 0) return kind;
  const shown = objects.length > 3 ? [...objects.slice(0, 3), `+${objects.length - 3}`] : objects;
  const word = PREPOSITION[kind];
  return `${kind} ${word ? `${word} ` : ''}${shown.join(', ')}`;
}

function firstWords(sql: string): string {
  const words = sql.trim().split(/\s+/).slice(0, 2).join(' ').toUpperCase();
  return words.length > 0 ? words.replace(/;$/, '') : '(empty)';
}

/** The outcome part of a statement line: rows, refusal or error, and time. */
export function statementResult(s: Statement): string {
  const time = formatDuration(durationMs(s.duration));
  if (s.decision === StatementDecision.STATEMENT_DECISION_REFUSED) {
    // The refusal message repeats identity, statement and rule; the rule alone says why.
    if (s.rule) return `refused by rule ${s.rule}, ${time}`;
    return `refused${s.error ? ` (${s.error.message})` : ''}, ${time}`;
  }
  if (s.skipped) return 'skipped: not run after an earlier error';
  if (s.error) return `error ${s.error.sqlstate} ${s.error.message}, ${time}`;
  if (s.rows !== undefined) return `${plural(s.rows, 'row')}, ${time}`;
  return `${s.command ?? 'done'}, ${time}`;
}

export function summarize(e: AuditEvent): string {
  switch (e.event?.$case) {
    case 'statement':
      return `${e.identity} ${statementHead(e.event.value)} on ${e.resource}: ${statementResult(e.event.value)}`;
    case 'sessionStart': {
      const s = e.event.value;
      const app = s.applicationName ? ` (${s.applicationName})` : '';
      return `${e.identity} connected to ${e.resource} from ${s.clientAddress}${app}${s.readOnly ? ', read-only' : ''}`;
    }
    case 'sessionEnd': {
      const s = e.event.value;
      return `${e.identity} left ${e.resource} after ${plural(s.statements, 'statement')}, ${formatDuration(durationMs(s.duration))} (${s.reason})`;
    }
    case 'authFailure': {
      const f = e.event.value;
      return `authentication failed from ${f.clientAddress}${e.resource ? ` for ${e.resource}` : ''}: ${f.sqlstate} ${f.message}`;
    }
    case 'approval': {
      const a = e.event.value;
      const by = a.decisions.map((d) => `${d.approve ? 'approved' : 'denied'} by ${d.approver}${d.reason ? ` (${d.reason})` : ''}`).join(', ');
      return `${e.identity}'s ${a.why || 'statement'} on ${e.resource}: approval ${a.approvalId} ${a.state}${by ? `, ${by}` : ''}`;
    }
    case undefined:
      return `event ${e.id} of no known type`;
  }
}
