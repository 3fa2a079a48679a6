// WatchGateways on the control plane: the list of gateways to dial, kept in
// sync by starting and stopping GatewayConnections. While the control plane
// is unreachable the current connections stay as they are; the list is also
// kept on disk, so an agent restarted during the outage dials them again.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  type ChannelCredentials,
  type ClientReadableStream,
  status as GrpcStatus,
  type ServiceError,
} from '@grpc/grpc-js';
import { bearer, ControlPlaneServiceClient, type Gateway, type GatewayList, grpcTarget, keepaliveOptions, type LinkOptions } from '@warden/proto';
import type { Logger } from 'pino';
import { errorSummary } from '../session.js';
import { type BackoffOptions, DEFAULT_BACKOFF, RetryTimer } from '@warden/proto';
import { type AgentContext, GatewayConnection } from './connection.js';

export interface GatewayWatcherOptions {
  /** host:port of the control plane, or several replicas' separated by commas. */
  address: string;
  credentials: ChannelCredentials;
  /** TLS for the gateways' tunnel listeners (when `ca` is set). */
  gatewayTls?: { ca?: string };
  backoff?: BackoffOptions;
  /** Backoff for the gateway connections (defaults to `backoff`). */
  gatewayBackoff?: BackoffOptions;
  healthyAfterMs?: number;
  /** Window and keepalive settings of the links (tests). */
  link?: LinkOptions;
  /** Where the last gateway list is kept (JSON), to dial from it when started while the control plane is away. */
  listFile?: string;
}

export class GatewayWatcher {
  private readonly client: ControlPlaneServiceClient;
  private readonly log: Logger;
  private readonly backoff: BackoffOptions;
  private call: ClientReadableStream<GatewayList> | undefined;
  private readonly retries: RetryTimer;
  private stopped = false;
  /** Live gateway connections by tunnel address. */
  readonly gateways = new Map<string, GatewayConnection>();
  /** Number of lists received (for tests and logs). */
  updates = 0;

  constructor(
    private readonly ctx: AgentContext,
    private readonly opts: GatewayWatcherOptions,
  ) {
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF;
    this.retries = new RetryTimer(() => this.watch(), this.backoff);
    this.log = ctx.log.child({ controlPlane: opts.address });
    this.client = new ControlPlaneServiceClient(grpcTarget(opts.address), opts.credentials, {
      ...keepaliveOptions,
      'grpc.initial_reconnect_backoff_ms': this.backoff.baseMs,
      'grpc.max_reconnect_backoff_ms': this.backoff.capMs,
    });
  }

  start(): void {
    if (this.stopped || this.call || this.retries.pending) return;
    if (this.updates === 0 && this.gateways.size === 0) this.applyKept();
    this.watch();
  }

  /** Dials the gateways of the list kept from the last run, if any; the control plane's list replaces it when it comes. */
  private applyKept(): void {
    if (!this.opts.listFile) return;
    let text: string;
    try {
      text = readFileSync(this.opts.listFile, 'utf8');
    } catch {
      return; // first start: nothing kept yet
    }
    try {
      const kept = JSON.parse(text) as Gateway[];
      if (!Array.isArray(kept)) throw new Error('not a list');
      this.log.info({ file: this.opts.listFile, gateways: kept.length }, 'dialling the gateways kept from the last run until the control plane answers');
      this.apply(kept.filter((g) => typeof g?.tunnelAddress === 'string').map((g) => ({ id: String(g.id ?? ''), tunnelAddress: g.tunnelAddress, lastSeen: '' })));
    } catch (err) {
      this.log.warn({ file: this.opts.listFile, err: errorSummary(err) }, 'the kept gateway list does not read; waiting for the control plane');
    }
  }

  private keep(list: readonly Gateway[]): void {
    const file = this.opts.listFile;
    if (!file) return;
    try {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(`${file}.tmp`, JSON.stringify(list.map((g) => ({ id: g.id, tunnelAddress: g.tunnelAddress }))), { mode: 0o600 });
      renameSync(`${file}.tmp`, file);
    } catch (err) {
      this.log.warn({ file, err: errorSummary(err) }, 'could not keep the gateway list on disk; a restart during a control plane outage would dial nothing');
    }
  }

  /** Stops watching and stops every gateway connection, ending their sessions. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.retries.cancel();
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.client.close();
    const all = [...this.gateways.values()];
    this.gateways.clear();
    await Promise.all(all.map((g) => g.stop({ closeSessions: true })));
  }

  /** Applies a gateway list: dial new addresses, stop those no longer listed. */
  apply(list: readonly Gateway[]): void {
    const wanted = new Map<string, Gateway>();
    for (const g of list) {
      const addr = g.tunnelAddress.trim();
      if (!addr) {
        this.log.warn({ gatewayId: g.id }, 'gateway without a tunnel address ignored');
        continue;
      }
      if (!wanted.has(addr)) wanted.set(addr, g);
    }
    for (const [addr, conn] of this.gateways) {
      if (!wanted.has(addr)) {
        this.log.info({ gateway: addr }, 'gateway removed; no longer dialling it');
        this.gateways.delete(addr);
        // Sessions already open through it run to their end.
        void conn.stop().catch(() => undefined);
      }
    }
    for (const [addr, g] of wanted) {
      if (this.gateways.has(addr)) continue;
      this.log.info({ gateway: addr, gatewayId: g.id }, 'dialling gateway');
      const conn = new GatewayConnection(this.ctx, {
        address: addr,
        id: g.id,
        tls: this.opts.gatewayTls,
        backoff: this.opts.gatewayBackoff ?? this.backoff,
        healthyAfterMs: this.opts.healthyAfterMs,
        link: this.opts.link,
      });
      this.gateways.set(addr, conn);
      conn.start();
    }
  }

  private watch(): void {
    if (this.stopped) return;
    const startedAt = Date.now();
    let heard = false;
    let call: ClientReadableStream<GatewayList>;
    try {
      call = this.client.watchGateways({ agentName: this.ctx.agentName }, bearer(this.ctx.token));
    } catch (err) {
      this.log.error({ err: errorSummary(err) }, 'could not start WatchGateways');
      this.scheduleRetry();
      return;
    }
    this.call = call;
    call.on('data', (list: GatewayList) => {
      if (!heard) this.log.info('watching the gateway list');
      heard = true;
      this.updates++;
      try {
        this.apply(list.gateways);
        this.keep(list.gateways);
      } catch (err) {
        this.log.error({ err: errorSummary(err) }, 'could not apply the gateway list');
      }
    });
    let over = false;
    const onOver = (err?: ServiceError): void => {
      if (over) return;
      over = true;
      if (this.call !== call) return;
      this.call = undefined;
      if (this.stopped) return;
      if (heard || Date.now() - startedAt >= (this.opts.healthyAfterMs ?? 10_000)) this.retries.reset();
      if (err?.code === GrpcStatus.UNAUTHENTICATED || err?.code === GrpcStatus.PERMISSION_DENIED) {
        this.log.error(
          { code: err.code, details: err.details },
          'the control plane rejected this agent (check the enrollment token and the agent name)',
        );
      } else {
        // Say it loudly the first time and now and then, not at every retry.
        const attempt = this.retries.attempt;
        const level = attempt === 0 || attempt % 10 === 0 ? 'warn' : 'debug';
        this.log[level](
          { code: err?.code, details: err?.details, gateways: this.gateways.size, attempt },
          'gateway watch ended; keeping the current gateways and retrying',
        );
      }
      this.scheduleRetry();
    };
    call.on('error', (err: ServiceError) => onOver(err));
    call.on('end', () => onOver());
    call.on('status', (s: { code: number }) => {
      if (s.code === GrpcStatus.OK) onOver();
    });
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    this.retries.schedule();
  }
}
