// The control plane's metrics: the audit events it stores and how late they
// arrive (ingest lag: now minus the event's time, when it is stored).
import type { AuditEvent } from '@warden/proto';
import { Counter, LAG_BUCKETS, LeanHistogram, type Registry } from '@warden/proto/metrics';
import type { IngestResult } from '../audit/ingest.js';

/** The AuditStore's onIngest hook that feeds the metrics. */
export function ingestMetrics(registry: Registry): (events: ReadonlyArray<AuditEvent | undefined>, result: IngestResult) => void {
  const lag = new LeanHistogram(registry, 'warden_audit_ingest_lag_seconds', 'Seconds from an audit event at the gateway to its ingestion by the control plane', LAG_BUCKETS);
  const events = new Counter({
    name: 'warden_audit_events_ingested_total',
    help: 'Audit events received by the control plane, by result: stored, duplicate (sent again) or invalid',
    labelNames: ['result'],
    registers: [registry],
  });
  return (batch, result) => {
    const now = Date.now();
    for (const e of batch) {
      const t = e?.time;
      if (t) lag.observe(Math.max(0, now - (t.seconds * 1000 + t.nanos / 1e6)) / 1000);
    }
    events.inc({ result: 'stored' }, result.stored);
    events.inc({ result: 'duplicate' }, result.duplicates);
    events.inc({ result: 'invalid' }, result.invalid);
  };
}
