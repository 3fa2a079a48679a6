// The JetStream stream that carries audit events from gateways to the control
// plane. Both sides ensure it exists, so either may start first. The NATS
// client is loaded only to ensure it: the `warden` CLI loads
// @warden/proto/audit for its summaries, at every command's start.
import type { JetStreamManager, StreamConfig } from 'nats';
import type { AuditEvent } from '../gen/warden/v1/warden.js';

export const AUDIT_STREAM = 'WARDEN_AUDIT';
export const AUDIT_SUBJECTS = 'warden.audit.>';
/** The control plane's durable consumer. */
export const AUDIT_CONSUMER = 'warden-control-plane';

export interface AuditStreamLimits {
  /**
   * JetStream drops a message whose id it saw within this window. Re-sends
   * later than that (a gateway restarted after a long outage) are caught by the
   * control plane's insert, which is idempotent on the event id.
   */
  duplicateWindowMs: number;
  /** Messages the control plane never consumed are dropped after this. */
  maxAgeMs: number;
  /**
   * Copies JetStream keeps of each message (1 to 5, at most the cluster's
   * size). Unset: a new stream gets 1 and an existing one keeps its count, so
   * a gateway that does not say never undoes what the control plane set.
   */
  replicas?: number;
}

export const DEFAULT_STREAM_LIMITS: AuditStreamLimits = {
  duplicateWindowMs: 2 * 60_000,
  maxAgeMs: 14 * 86_400_000,
};

const PLAIN_TOKEN = /^[A-Za-z0-9_-]+$/;

/** Encodes a name as one subject token: `.`, `*`, `>`, spaces and the like would split or widen the subject. */
export function subjectToken(name: string | undefined): string {
  // '=' alone stands for "none"; escapes are always '=' plus two hex digits, so it cannot collide.
  if (!name) return '=';
  if (PLAIN_TOKEN.test(name)) return name;
  let out = '';
  for (const byte of Buffer.from(name, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_-]/.test(c) ? c : `=${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** warden.audit.<resource>.<identity>; auth failures have no identity. */
export function auditSubject(event: AuditEvent): string {
  return auditSubjectOf(event.resource, event.event?.$case === 'authFailure' ? undefined : event.identity);
}

/** The subject from its parts, for callers that have them without the decoded event. */
export function auditSubjectOf(resource: string, identity: string | undefined): string {
  return `warden.audit.${subjectToken(resource)}.${subjectToken(identity)}`;
}

const isNotFound = (err: unknown) => /not found/i.test((err as Error)?.message ?? '');

/** Creates the stream, or brings its subjects and limits up to date. */
export async function ensureAuditStream(jsm: JetStreamManager, limits: AuditStreamLimits = DEFAULT_STREAM_LIMITS): Promise<void> {
  const { DiscardPolicy, RetentionPolicy, StorageType, nanos } = await import('nats');
  const wanted: Partial<StreamConfig> = {
    subjects: [AUDIT_SUBJECTS],
    duplicate_window: nanos(limits.duplicateWindowMs),
    max_age: nanos(limits.maxAgeMs),
    ...(limits.replicas === undefined ? {} : { num_replicas: limits.replicas }),
  };
  try {
    const info = await jsm.streams.info(AUDIT_STREAM);
    const c = info.config;
    const same =
      c.subjects?.length === 1 &&
      c.subjects[0] === AUDIT_SUBJECTS &&
      c.duplicate_window === wanted.duplicate_window &&
      c.max_age === wanted.max_age &&
      (wanted.num_replicas === undefined || c.num_replicas === wanted.num_replicas);
    if (!same) await jsm.streams.update(AUDIT_STREAM, { ...c, ...wanted });
  } catch (err) {
    if (!isNotFound(err)) throw err;
    try {
      await jsm.streams.add({
        name: AUDIT_STREAM,
        ...wanted,
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
        discard: DiscardPolicy.Old,
      });
    } catch (addErr) {
      // Another gateway or the control plane created it at the same moment.
      if (!/already in use/i.test((addErr as Error).message)) throw addErr;
    }
  }
}
