// One line per audit event, for the gateway log and the `warden` CLI, e.g.
//   ci-deploy SELECT FROM public.orders on shop-prod: 42 rows, 3 ms
import type { AuditEvent, StatementEvent } from './events.js';

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
export function statementHead(e: StatementEvent): string {
  const kind = e.kind ?? e.command ?? firstWords(e.sql);
  const objects = e.objects ?? [];
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
export function statementResult(e: StatementEvent): string {
  const time = formatDuration(e.durationMs);
  if (e.decision === 'refused') {
    // The refusal message repeats identity, statement and rule; the rule alone says why.
    if (e.rule) return `refused by rule ${e.rule}, ${time}`;
    return `refused${e.error ? ` (${e.error.message})` : ''}, ${time}`;
  }
  if (e.error) return `error ${e.error.sqlstate} ${e.error.message}, ${time}`;
  if (e.rows !== undefined) return `${plural(e.rows, 'row')}, ${time}`;
  return `${e.command ?? 'done'}, ${time}`;
}

export function summarize(e: AuditEvent): string {
  switch (e.type) {
    case 'statement':
      return `${e.identity} ${statementHead(e)} on ${e.resource}: ${statementResult(e)}`;
    case 'session.start': {
      const app = e.applicationName ? ` (${e.applicationName})` : '';
      return `${e.identity} connected to ${e.resource} from ${e.clientAddress}${app}${e.readOnly ? ', read-only' : ''}`;
    }
    case 'session.end':
      return `${e.identity} left ${e.resource} after ${plural(e.statements, 'statement')}, ${formatDuration(e.durationMs)} (${e.reason})`;
    case 'auth.failure':
      return `authentication failed from ${e.clientAddress}${e.resource ? ` for ${e.resource}` : ''}: ${e.sqlstate} ${e.message}`;
  }
}
