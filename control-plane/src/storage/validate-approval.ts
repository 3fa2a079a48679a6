// Input checks for approval rules (format in docs/policy.md, "Approvals").
// The policy file's validation reports the same problems at their line; the
// store checks again so that nothing else can put an invalid rule in force.
import type { ApprovalRule } from '@warden/proto';
import { invalid } from './errors.js';
import { checkGroup, checkName } from './validate.js';

export const APPROVAL_MODES = ['wait', 'retry'] as const;
export const DEFAULT_REQUEST_TTL = 15 * 60;
export const DEFAULT_APPROVAL_TTL = 60 * 60;
export const DEFAULT_WAIT_TIMEOUT = 10 * 60;
export const MAX_DURATION = 7 * 86400;
export const MAX_QUORUM = 10;

const KIND = /^[A-Z]+( [A-Z]+)*$/;
const TABLE = /^([^.\s\x00-\x1f\x7f]{1,63}\.)?[^.\s\x00-\x1f\x7f]{1,63}$/;

/** Seconds of "30s", "15m", "1h", "1d" or a number of seconds, as the CLI's --ttl reads them; undefined when invalid. */
export function durationSeconds(value: string | number): number | undefined {
  const m = /^([1-9][0-9]*)([smhd]?)$/.exec(String(value).trim());
  if (!m) return undefined;
  const seconds = Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return seconds <= MAX_DURATION ? seconds : undefined;
}

/** "90s" -> "1m30s"; the policy diff and the CLI show durations this way. */
export function showDuration(seconds: number): string {
  const parts: string[] = [];
  let left = seconds;
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60]] as const) {
    if (left >= size) {
      parts.push(`${Math.floor(left / size)}${unit}`);
      left %= size;
    }
  }
  if (left > 0 || parts.length === 0) parts.push(`${left}s`);
  return parts.join('');
}

const unique = <T>(xs: T[]) => [...new Set(xs)];

/** Checks an approval rule and returns its stored form (defaults filled in, lists without duplicates). */
export function validateApprovalRule(r: ApprovalRule): ApprovalRule {
  checkName('approval', r.name);
  checkName('resource', r.resource);
  const what = `approval '${r.name}'`;
  const kinds = unique(r.kinds);
  for (const k of kinds) if (!KIND.test(k)) throw invalid(`${what}: kind '${k}' is invalid: give upper-case words, such as ALTER TABLE or DROP`);
  const objects = unique(r.objects);
  for (const o of objects) if (!TABLE.test(o)) throw invalid(`${what}: object '${o}' is invalid: give schema.table, or table for that name in any schema`);
  if (kinds.length === 0 && !r.withoutWhere && !r.rowsOver) throw invalid(`${what} needs at least one of kinds, without_where or rows_over`);
  if (!Number.isSafeInteger(r.rowsOver) || r.rowsOver < 0) throw invalid(`${what}: rows_over must be a positive whole number`);
  const approvers = unique(r.approvers.map(checkGroup));
  if (approvers.length === 0) throw invalid(`${what} needs at least one approver group`);
  const quorum = r.quorum || 1;
  if (!Number.isInteger(quorum) || quorum < 1 || quorum > MAX_QUORUM) throw invalid(`${what}: quorum must be from 1 to ${MAX_QUORUM}`);
  const seconds = (field: string, v: number, fallback: number) => {
    const s = v || fallback;
    if (!Number.isInteger(s) || s < 1 || s > MAX_DURATION) throw invalid(`${what}: ${field} must be from 1s to 7d`);
    return s;
  };
  const requestTtl = seconds('request_ttl', r.requestTtlSeconds, DEFAULT_REQUEST_TTL);
  const mode = r.mode || 'wait';
  if (!(APPROVAL_MODES as readonly string[]).includes(mode)) throw invalid(`${what}: mode '${mode}' is not supported; use one of ${APPROVAL_MODES.join(', ')}`);
  // A client cannot usefully wait past the request's own end; the default shrinks to fit a short request_ttl.
  const waitTimeout = seconds('wait_timeout', r.waitTimeoutSeconds, Math.min(DEFAULT_WAIT_TIMEOUT, requestTtl));
  if (waitTimeout > requestTtl) {
    throw invalid(`${what}: wait_timeout (${showDuration(waitTimeout)}) must be at most request_ttl (${showDuration(requestTtl)})`);
  }
  return {
    name: r.name,
    resource: r.resource,
    identities: unique(r.identities.map((x) => checkName('identity', x))),
    groups: unique(r.groups.map(checkGroup)),
    kinds,
    objects,
    withoutWhere: r.withoutWhere,
    rowsOver: r.rowsOver,
    approvers,
    quorum,
    requestTtlSeconds: requestTtl,
    approvalTtlSeconds: seconds('approval_ttl', r.approvalTtlSeconds, DEFAULT_APPROVAL_TTL),
    mode,
    waitTimeoutSeconds: waitTimeout,
  };
}
