// The gateway's metrics besides the audit-derived ones (audit.ts): decision
// cache, agent links and channels, the audit outbox, the configuration in
// force. All are read at scrape time from the objects that keep them.
import { linkCounters } from '@warden/proto';
import { Gauge, counterOf, gaugeOf, type Registry } from '@warden/proto/metrics';
import type { ClassificationCache } from '../policy/cache.js';
import type { AgentHub } from '../tunnel/hub.js';

export { AuditTally, authFailureReason, observeAudit } from './audit.js';

/** What a sink that keeps an outbox can tell (ClosableAuditSink.stats). */
export interface OutboxStats {
  stats?(): { pendingBytes: number; oldestPendingMs?: number };
}

export interface GatewaySources {
  cache: ClassificationCache;
  hub: AgentHub;
  audit: OutboxStats;
  /** The configuration in force: its version and when it was received (ms), if any yet. */
  config(): { version: number; receivedAt: number } | undefined;
}

export function registerGatewayMetrics(registry: Registry, s: GatewaySources): void {
  counterOf(registry, 'warden_decision_cache_hits_total', 'Statements whose classification came from the decision cache', () => s.cache.hits);
  counterOf(registry, 'warden_decision_cache_misses_total', 'Statements classified anew (parsed)', () => s.cache.misses);
  gaugeOf(registry, 'warden_decision_cache_entries', 'Classifications held by the decision cache', () => s.cache.size);

  new Gauge({
    name: 'warden_agent_links',
    help: 'Links from agents to this gateway, by agent',
    labelNames: ['agent'],
    registers: [registry],
    collect() {
      this.reset();
      for (const l of s.hub.connections()) if (!l.closed) this.inc({ agent: l.agent });
    },
  });
  gaugeOf(registry, 'warden_link_channels', 'Sessions open as channels on the agent links', () =>
    s.hub.connections().reduce((n, l) => n + (l.closed ? 0 : l.sessions), 0),
  );
  counterOf(registry, 'warden_link_window_stalls_total', "Times a channel used up the peer's window and paused its reader", () => linkCounters.windowStalls);

  gaugeOf(registry, 'warden_audit_outbox_bytes', 'Audit event bytes in the outbox not yet delivered (to NATS or the control plane)', () => s.audit.stats?.().pendingBytes ?? 0);
  gaugeOf(
    registry,
    'warden_audit_outbox_age_seconds',
    'Age of the oldest audit event not yet delivered, 0 when all are: the audit publish lag',
    () => (s.audit.stats?.().oldestPendingMs ?? 0) / 1000,
  );

  gaugeOf(registry, 'warden_config_version', 'Version of the configuration snapshot in force (0: none yet)', () => s.config()?.version ?? 0);
  gaugeOf(registry, 'warden_config_age_seconds', 'Seconds since the configuration in force was received (NaN: none yet)', () => {
    const c = s.config();
    return c ? (Date.now() - c.receivedAt) / 1000 : NaN;
  });
}
