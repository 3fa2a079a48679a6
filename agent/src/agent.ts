// The agent as a whole: the gateway watch on the control plane, a connection
// per gateway, and the sessions they open.
import { channelCredentials } from '@warden/proto';
import type { Registry } from '@warden/proto/metrics';
import type { Logger } from 'pino';
import { registerAgentMetrics, upstreamLatencyHistogram } from './metrics.js';
import type { AgentConfig } from './config.js';
import type { RelaySession } from './session.js';
import type { BackoffOptions } from '@warden/proto';
import type { AgentContext } from './tunnel/connection.js';
import { GatewayWatcher } from './tunnel/gateways.js';
import { VERSION } from './version.js';

export interface AgentOptions {
  log: Logger;
  backoff?: BackoffOptions;
  loginTimeoutMs?: number;
  /** Where the last gateway list is kept (see GatewayWatcher). */
  gatewayListFile?: string;
  /** Where the agent's metrics are registered; none are kept without it. */
  metrics?: Registry;
}

export class Agent {
  readonly context: AgentContext;
  readonly watcher: GatewayWatcher;
  private stopping: Promise<void> | undefined;

  constructor(
    readonly config: AgentConfig,
    opts: AgentOptions,
  ) {
    this.context = {
      agentName: config.name,
      token: config.enrollmentToken,
      resources: config.resources,
      log: opts.log,
      version: VERSION,
      sessions: new Map<string, RelaySession>(),
      loginTimeoutMs: opts.loginTimeoutMs,
      upstreamLatency: opts.metrics ? upstreamLatencyHistogram(opts.metrics) : undefined,
    };
    this.watcher = new GatewayWatcher(this.context, {
      address: config.controlPlane.address,
      credentials: channelCredentials({ ca: config.controlPlane.ca }),
      gatewayTls: config.gatewayTls,
      backoff: opts.backoff,
      listFile: opts.gatewayListFile,
    });
    if (opts.metrics) registerAgentMetrics(opts.metrics, this);
  }

  start(): void {
    this.context.log.info(
      {
        agent: this.config.name,
        version: VERSION,
        controlPlane: this.config.controlPlane.address,
        resources: Object.keys(this.config.resources),
      },
      'agent starting',
    );
    this.watcher.start();
  }

  /** Stops dialling and ends every session (CancelRequest, Terminate, close). Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.watcher.stop();
      // Sessions whose gateway was already dropped from the list.
      const rest = [...this.context.sessions.values()];
      for (const s of rest) s.shutdown();
      await Promise.all(rest.map((s) => s.done));
    })();
    return this.stopping;
  }
}
