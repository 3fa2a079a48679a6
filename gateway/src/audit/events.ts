// Where a session hands its audit events. The events are the proto's
// AuditEvent messages (proto/warden/v1/warden.proto); their JSON form and
// summaries are in @warden/proto/audit.
import type { AuditEvent } from '@warden/proto';

export type { AuditEvent };

/** Must never block or throw: the hot path calls it. */
export interface AuditSink {
  publish(event: AuditEvent): void;
  /**
   * Runs `fn` once what was published so far is written (at once when nothing
   * waits). The session hands results to the client through it, so no client
   * sees a result whose record could still be lost, and events published in
   * one turn of the event loop cost one write.
   */
  afterWrite?(fn: () => void): void;
  /**
   * Writes, before it returns, the records these statements get if the
   * gateway stops before their outcome is known; the session forwards them
   * only after. False when that write failed: they must not be forwarded.
   */
  intend?(events: AuditEvent[]): boolean;
  /** Why events cannot be recorded now (outbox full, disk failing), or undefined; statements are refused meanwhile. */
  blocked?(): string | undefined;
}
