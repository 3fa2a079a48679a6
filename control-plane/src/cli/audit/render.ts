// Text renderings of recorded sessions: the one-line list, the transcript
// used by `sessions show` and `sessions replay`.
import { StatementDecision, type AuditEvent, type AuditSession } from '@warden/proto';
import { formatDuration, msOf, statementResult, summarize } from '@warden/proto/audit';
import { offset } from './time.js';

const INDENT = ' '.repeat(11);

export function sessionHeader(s: AuditSession): string[] {
  const app = s.applicationName ? ` (${s.applicationName})` : '';
  const ended = s.endedAt ? `ended ${s.endedAt}${s.endReason ? ` (${s.endReason})` : ''}` : 'no end recorded';
  return [
    `Session ${s.sessionId}: ${s.identity} on ${s.resource} via agent ${s.agent}, gateway ${s.gateway}`,
    `  from ${s.clientAddress || 'unknown address'}${app}; started ${s.startedAt}, ${ended}`,
    `  ${s.statements} statement(s), ${s.refused} refused, ${s.errors} failed: ${s.outcome}`,
  ];
}

export function sessionDuration(s: AuditSession): string {
  if (!s.endedAt) return 'open';
  return formatDuration(Date.parse(s.endedAt) - Date.parse(s.startedAt));
}

/** The lines for one event of a transcript; `start` is the first event's time in ms. */
export function transcriptLines(e: AuditEvent, start: number): string[] {
  const at = offset(msOf(e.time) - start).padEnd(10);
  if (e.event?.$case !== 'statement') return [`${at} -- ${summarize(e)}`];
  const s = e.event.value;
  const refused = s.decision === StatementDecision.STATEMENT_DECISION_REFUSED;
  const rule = s.rule ? ` by rule ${s.rule}` : '';
  const lines = [`${at} ${s.sql.trim().replace(/\n/g, `\n${INDENT}`)}`];
  if (s.parameters.length) lines.push(`${INDENT}parameters: ${s.parameters.map((p) => (p.value === undefined ? 'NULL' : JSON.stringify(p.value))).join(', ')}`);
  if (refused) lines.push(`${INDENT}REFUSED${rule}: ${s.error?.message ?? 'no reason recorded'}`);
  else lines.push(`${INDENT}allowed${rule} -> ${statementResult(s)}`);
  if (s.maskedColumns.length) lines.push(`${INDENT}masked: ${s.maskedColumns.join(', ')}`);
  return lines;
}

/** Where an event belongs in its session; -1 for auth failures. */
export const seqOf = (e: AuditEvent) => (e.event?.$case === 'authFailure' ? -1 : e.seq);
export const sessionOf = (e: AuditEvent) => (e.event?.$case === 'authFailure' ? '-' : e.sessionId);
