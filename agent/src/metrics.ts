// The agent's metrics: its links to the gateways, the sessions on them,
// window stalls, and how long the upstream takes to answer.
import { linkCounters } from '@warden/proto';
import { Gauge, LATENCY_BUCKETS, LeanHistogram, counterOf, gaugeOf, type Registry } from '@warden/proto/metrics';
import type { Agent } from './agent.js';

/** The histogram sessions report upstream latency to (SessionContext.upstreamLatency). */
export function upstreamLatencyHistogram(registry: Registry): LeanHistogram {
  return new LeanHistogram(registry, 'warden_upstream_latency_seconds', "Time from forwarding a client's bytes upstream to the database's first answer byte", LATENCY_BUCKETS);
}

export function registerAgentMetrics(registry: Registry, agent: Agent): void {
  new Gauge({
    name: 'warden_gateway_links',
    help: 'Links of this agent to each gateway: 1 while connected and welcomed, 0 while dialling',
    labelNames: ['gateway'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [address, g] of agent.watcher.gateways) this.set({ gateway: address }, g.connected ? 1 : 0);
    },
  });
  gaugeOf(registry, 'warden_link_channels', 'Sessions relayed now (one channel each)', () => agent.context.sessions.size);
  counterOf(registry, 'warden_link_window_stalls_total', "Times a channel used up the peer's window and paused its reader", () => linkCounters.windowStalls);
}

/** Why the agent cannot serve (for /readyz): no gateway has welcomed it yet. */
export function agentNotReady(agent: Agent): string | undefined {
  for (const g of agent.watcher.gateways.values()) if (g.connected) return undefined;
  return agent.watcher.gateways.size === 0 ? 'no gateway known yet (is the control plane reachable?)' : 'no link to a gateway is up';
}
