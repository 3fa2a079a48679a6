// Starts the control plane: storage, secrets, gRPC server. Used by
// `warden control-plane`, by local mode and by tests.
import { join } from 'node:path';
import { Server, status } from '@grpc/grpc-js';
import { ControlPlaneServiceService, keepaliveOptions, serverCredentials, type ServerTls } from '@warden/proto';
import type { Registry } from '@warden/proto/metrics';
import type { Logger } from 'pino';
import { ingestMetrics } from './metrics.js';
import { silentLogger } from '../logger.js';
import { openStorage, type Storage } from '../storage/open.js';
import type { Repository } from '../storage/repository.js';
import { Authenticator } from './auth.js';
import { SnapshotHub } from './hub.js';
import { loadOrCreateSecret } from './secrets.js';
import { ControlPlaneService } from './service.js';
import { AuditConsumer } from '../audit/consumer.js';
import { AuditStore, startMaintenance, type AuditStoreOptions } from '../audit/store.js';
import { auditMethods } from './audit-service.js';
import { ApprovalWebhooks, type WebhookFormat } from '../approvals/webhook.js';
import { ApprovalStore } from '../storage/approvals.js';
import { ApprovalWatcher, ApproverAuth, approvalActions, approvalMethods, recordChange } from './approvals.js';
import { AgentPresence } from './presence.js';
import { startConsole, type ConsoleOptions, type ConsoleServer } from '../console/server.js';

export const DEFAULT_LISTEN = '127.0.0.1:7070';

export interface ControlPlaneOptions {
  /** host:port; port 0 picks a free one. Default 127.0.0.1:7070. */
  listen?: string;
  /** Holds admin-token, gateway-token and (without databaseUrl) the PGlite database. Default `.warden`. */
  dataDir?: string;
  databaseUrl?: string;
  /** An already opened store (the caller keeps ownership and closes it). */
  storage?: Storage;
  tls?: ServerTls;
  /** Override the token files (e.g. from WARDEN_ADMIN_TOKEN / WARDEN_GATEWAY_TOKEN). */
  adminToken?: string;
  gatewayToken?: string;
  logger?: Logger;
  /** How often to look for changes made by other replicas; 0 disables. Default 5000. */
  pollIntervalMs?: number;
  /** NATS with JetStream: consume the gateways' audit events from WARDEN_AUDIT. */
  natsUrl?: string;
  /** Copies JetStream keeps of each audit message (1 to 5; at most the NATS cluster's size). */
  auditStreamReplicas?: number;
  /** Audit clock and sealing timings (tests); maintenance runs every `maintenanceIntervalMs` (default 60 s). */
  audit?: AuditStoreOptions & { maintenanceIntervalMs?: number };
  /** URLs told of each new approval request (docs/policy.md, "Approvals"). */
  approvalWebhooks?: readonly string[];
  /** Body format of every webhook; by default Slack's for hooks.slack.com, JSON otherwise. */
  approvalWebhookFormat?: WebhookFormat;
  /** How long one webhook delivery is retried (ms). Default 10 minutes. */
  approvalWebhookGiveUpMs?: number;
  /** How often WatchApprovals looks for changes made by other replicas, and expiry (ms). Default 200. */
  approvalPollMs?: number;
  /** Where the control plane's metrics are registered; none are kept without it. */
  metrics?: Registry;
  /** The web console on a port of its own (TLS with `tls`); none without. */
  console?: Pick<ConsoleOptions, 'listen' | 'devIssuerKey' | 'assetsDir' | 'publicUrl' | 'env'>;
}

export interface ControlPlane {
  /** host:port actually bound. */
  readonly address: string;
  readonly port: number;
  readonly adminToken: string;
  readonly gatewayToken: string;
  readonly storage: Storage;
  readonly repo: Repository;
  readonly audit: AuditStore;
  readonly approvals: ApprovalStore;
  /** The console's URL, when it runs. */
  readonly consoleUrl?: string;
  close(): Promise<void>;
}

function splitHostPort(listen: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(listen);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !m[1] || port > 65535) throw new Error(`listen address '${listen}' must be host:port`);
  return { host: m[1], port };
}

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = opts.logger ?? silentLogger();
  const dataDir = opts.dataDir ?? '.warden';
  const { host } = splitHostPort(opts.listen ?? DEFAULT_LISTEN);

  const secret = (label: string, file: string, prefix: string, given?: string) => {
    const s = loadOrCreateSecret({ label, file: join(dataDir, file), prefix, given });
    if (s.origin === 'generated') log.info({ file: join(dataDir, file) }, `generated the ${label}`);
    if (s.looseMode) log.warn({ file: join(dataDir, file) }, `${file} is readable by other users; chmod 600 it`);
    return s.value;
  };
  const adminToken = secret('admin token', 'admin-token', 'wdn_admin_', opts.adminToken);
  const gatewayToken = secret('gateway token', 'gateway-token', 'wdn_gw_', opts.gatewayToken);
  if (adminToken === gatewayToken) throw new Error('the admin token and the gateway token must differ');

  const ownsStorage = !opts.storage;
  const storage = opts.storage ?? (await openStorage({ databaseUrl: opts.databaseUrl, dataDir }));
  const hub = new SnapshotHub(storage.repo, log, opts.pollIntervalMs ?? 5000);
  const auth = new Authenticator(adminToken, gatewayToken);
  const presence = new AgentPresence();
  const service = new ControlPlaneService({
    repo: storage.repo,
    hub,
    auth,
    log,
    presence,
  });
  const server = new Server(keepaliveOptions);
  const audit = new AuditStore(storage.db, {
    ...opts.audit,
    log: log.child({ component: 'audit' }),
    onIngest: opts.metrics ? ingestMetrics(opts.metrics) : undefined,
  });
  const approvals = new ApprovalStore(storage.db);
  const approvalLog = log.child({ component: 'approvals' });
  const webhooks = new ApprovalWebhooks({
    urls: opts.approvalWebhooks ?? [],
    format: opts.approvalWebhookFormat,
    giveUpAfterMs: opts.approvalWebhookGiveUpMs,
    log: approvalLog,
  });
  const watcher = new ApprovalWatcher(approvals, (s) => recordChange({ audit, log: approvalLog }, s), approvalLog, opts.approvalPollMs ?? 200);
  server.addService(ControlPlaneServiceService, {
    ...service.implementation(),
    ...auditMethods(audit, auth, log),
    ...approvalMethods({
      store: approvals,
      hub,
      auth,
      approvers: new ApproverAuth({ adminToken, gatewayToken }, hub),
      watcher,
      audit,
      webhooks,
      log: approvalLog,
    }),
  });
  watcher.start();
  const stopMaintenance = startMaintenance(audit, opts.audit?.maintenanceIntervalMs ?? 60_000);
  const consumer = opts.natsUrl
    ? new AuditConsumer({ url: opts.natsUrl, streamReplicas: opts.auditStreamReplicas, ingest: (events) => audit.ingest(events), log: log.child({ component: 'audit-consumer' }) })
    : undefined;

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(opts.listen ?? DEFAULT_LISTEN, serverCredentials(opts.tls), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
  } catch (err) {
    hub.close();
    await watcher.close();
    await stopMaintenance();
    if (ownsStorage) await storage.close();
    throw new Error(`cannot listen on ${opts.listen ?? DEFAULT_LISTEN}: ${(err as Error).message}`);
  }
  let consoleServer: ConsoleServer | undefined;
  if (opts.console) {
    try {
      consoleServer = await startConsole({
        ...opts.console,
        tls: opts.tls,
        repo: storage.repo,
        hub,
        audit,
        approvals: approvalActions({ store: approvals, watcher, audit, log: approvalLog }),
        presence,
        log: log.child({ component: 'console' }),
      });
    } catch (err) {
      server.forceShutdown();
      hub.close();
      await watcher.close();
      await stopMaintenance();
      if (ownsStorage) await storage.close();
      throw err;
    }
  }
  const address = `${host}:${port}`;
  log.info({ address, storage: storage.kind, location: storage.location, tls: Boolean(opts.tls) }, 'control plane listening');

  let closing: Promise<void> | undefined;
  consumer?.start();
  const close = async () => {
    await consoleServer?.close();
    hub.close();
    await watcher.close();
    await webhooks.close();
    await consumer?.stop();
    await stopMaintenance();
    service.endAllStreams(status.UNAVAILABLE, 'the control plane is shutting down');
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, 3000);
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    if (ownsStorage) await storage.close();
    log.info('control plane stopped');
  };

  return {
    address,
    port,
    adminToken,
    gatewayToken,
    storage,
    repo: storage.repo,
    audit,
    approvals,
    consoleUrl: consoleServer?.url,
    close: () => (closing ??= close()),
  };
}
