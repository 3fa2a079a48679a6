// Text renderings of recorded sessions: the one-line list, the transcript
// used by `sessions show` and `sessions replay`.
import type { AuditEvent, StatementEvent } from '@warden/gateway/audit/events';
import { formatDuration, statementResult, summarize } from '@warden/gateway/audit/summary';
import type { AuditSession } from '@warden/proto';
import { offset } from './time.js';

const INDENT = ' '.repeat(11);
const MAX_SAMPLE_ROWS = 10;
const MAX_CELL = 40;

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

const clip = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

function sampleTable(sample: NonNullable<StatementEvent['sample']>): string[] {
  const rows = sample.rows.slice(0, MAX_SAMPLE_ROWS).map((r) => r.map((c) => (c === null ? 'NULL' : clip(c, MAX_CELL))));
  const widths = sample.columns.map((c, i) => Math.max(clip(c, MAX_CELL).length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  const out = [line(sample.columns.map((c) => clip(c, MAX_CELL))), ...rows.map(line)];
  if (sample.rows.length > MAX_SAMPLE_ROWS) out.push(`(${sample.rows.length - MAX_SAMPLE_ROWS} more sampled rows)`);
  return out;
}

/** The lines for one event of a transcript; `start` is the first event's time in ms. */
export function transcriptLines(e: AuditEvent, start: number): string[] {
  const at = offset(Date.parse(e.time) - start).padEnd(10);
  if (e.type !== 'statement') return [`${at} -- ${summarize(e)}`];
  const decision = e.decision === 'refused' ? 'REFUSED' : 'allowed';
  const rule = e.rule ? ` by rule ${e.rule}` : '';
  const lines = [`${at} ${e.sql.trim().replace(/\n/g, `\n${INDENT}`)}`];
  if (e.parameters?.length) lines.push(`${INDENT}parameters: ${e.parameters.map((p) => (p === null ? 'NULL' : JSON.stringify(p))).join(', ')}`);
  if (e.decision === 'refused') lines.push(`${INDENT}${decision}${rule}: ${e.error?.message ?? 'no reason recorded'}`);
  else lines.push(`${INDENT}${decision}${rule} -> ${statementResult(e)}`);
  if (e.sample && e.sample.columns.length > 0) lines.push(...sampleTable(e.sample).map((l) => `${INDENT}${l}`));
  return lines;
}

export const parseEvents = (json: string[]) => json.map((j) => JSON.parse(j) as AuditEvent);
