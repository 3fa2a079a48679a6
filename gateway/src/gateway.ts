// Wires the gateway together: configuration from the control plane, token
// authentication, the agent tunnel and the Postgres listener.
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type Server as NetServer } from 'node:net';
import { createSecureContext } from 'node:tls';
import { readFileSync } from 'node:fs';
import { ControlPlaneServiceClient, channelCredentials, grpcTarget, keepaliveOptions, type Snapshot } from '@warden/proto';
import { SqlState, errorResponse } from '@warden/proto/pgwire';
import type { Registry } from '@warden/proto/metrics';
import type { Logger } from 'pino';
import { ControlPlaneApprovals } from './approvals/client.js';
import { explainRows } from './approvals/explain.js';
import { ApprovalMatcher, approvalRulesFor } from './approvals/rules.js';
import { DEFAULT_LOGIN_LIMITS, LoginLimiter, TokenVerifier, authorize, compileAuthConfig, mapIdentity, type AuthConfig, type LoginLimits } from './auth/index.js';
import { CatalogStore, fetchCatalog } from './catalog/index.js';
import { ConfigWatch } from './config/watch.js';
import { masksFor } from './masking/config.js';
import { ColumnMasks } from './masking/plan.js';
import { ClassificationCache, StatementGate, rulesFor } from './policy/index.js';
import type { AuditSink } from './audit/events.js';
import { authFailureEvent } from './session/recorder.js';
import { Refusal, Session, type Admission, type ParameterRecording } from './session/index.js';
import { AddressSlots, type SlotLimits } from './auth/slots.js';
import { MemoryBudget } from './session/filter.js';
import { AuditTally, observeAudit, registerGatewayMetrics, type OutboxStats } from './metrics/index.js';
import { AgentHub, CancelKeys } from './tunnel/index.js';

export interface GatewayOptions {
  id: string;
  /** Postgres listener, host:port. */
  listen: string;
  /** Tunnel listener for agents, host:port. */
  tunnelListen: string;
  /** Tunnel address as agents reach it; defaults to tunnelListen. */
  tunnelAdvertise?: string;
  /** host:port of the control plane, or several replicas' separated by commas (the first that answers is used). */
  controlPlane: string;
  controlPlaneCa?: string;
  gatewayToken: string;
  /** Certificate for clients (SSLRequest); without it, clients get 'N'. */
  tls?: { cert: string; key: string };
  tunnelTls?: { cert: string; key: string };
  /** Local mode: tokens may travel without TLS from loopback addresses. */
  local?: boolean;
  log: Logger;
  /** Where sessions hand their audit events; its stats(), when it has one, feed the outbox metrics. */
  audit: AuditSink & OutboxStats;
  /** How Bind parameters are recorded in the audit trail (default full). */
  parameterRecording?: ParameterRecording;
  /** Where the last configuration is kept, to serve from it when restarted while the control plane is away. */
  configCache?: string;
  /** Failed logins allowed per address and login name before logins are refused for the rest of the window. */
  loginLimits?: LoginLimits;
  /** Bounds on connections, sessions and statements (DEFAULT_CONNECTION_LIMITS for what is not given). */
  limits?: Partial<ConnectionLimits>;
  /** Where the gateway's metrics are registered; none are kept without it. */
  metrics?: Registry;
}

export interface ConnectionLimits {
  /** Connections still logging in (not yet admitted), per source address and in all. */
  loggingIn: SlotLimits;
  /** Sessions (admitted connections), per source address and in all. */
  sessions: SlotLimits;
  /** Links on the tunnel port that have not said HELLO yet, per source address and in all. */
  waitingLinks: SlotLimits;
  /** Milliseconds from connect to logged in. */
  loginTimeoutMs: number;
  /** A session idle this long (no client bytes, nothing running or held) is ended with 57P05; 0: never. */
  idleSessionMs: number;
  /** Largest statement read; larger ones end the session with 54000. */
  maxStatementBytes: number;
  /** Memory for large inspected messages still arriving, all sessions together; past it, 53200. */
  statementMemory: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  loggingIn: { perAddress: 64, total: 1024 },
  sessions: { perAddress: 0, total: 10_000 },
  waitingLinks: { perAddress: 32, total: 256 },
  loginTimeoutMs: 60_000,
  idleSessionMs: 0,
  maxStatementBytes: 1 << 20,
  statementMemory: 256 << 20,
};

export interface RunningGateway {
  port: number;
  tunnelPort: number;
  /** Why the gateway cannot serve yet (for /readyz), or undefined once it has its configuration. */
  notReady(): string | undefined;
  close(): Promise<void>;
}

export async function startGateway(opts: GatewayOptions): Promise<RunningGateway> {
  const log = opts.log;
  const limits = { ...DEFAULT_CONNECTION_LIMITS, ...opts.limits };
  const verifier = new TokenVerifier();
  let auth: AuthConfig | null = null;
  let grants: Snapshot['grants'] = [];
  let masks: { list: Snapshot['masks']; key: Uint8Array } = { list: [], key: new Uint8Array() };
  let approvalRules: Snapshot['approvalRules'] = [];
  // A session with no approval rule gets no matcher: its gate does not ask.
  const matcherFor = (resource: string, identity: string, groups: string[]) => {
    const list = approvalRulesFor(approvalRules, resource, identity, groups);
    return list.length ? new ApprovalMatcher(list) : undefined;
  };
  const classifications = new ClassificationCache();
  const sessions = new Set<Session>();
  let agentHashes = new Map<string, Buffer>();
  let config: { version: number; receivedAt: number } | undefined;
  // Metrics of statements, sessions and logins are read off the audit events on their way to the sink.
  const tally = opts.metrics ? new AuditTally(opts.metrics) : undefined;
  const audit = tally ? observeAudit(opts.audit, tally) : opts.audit;

  // Keys this gateway did not issue may belong to a session on another gateway: the agents know.
  const keys = new CancelKeys({ relay: (pid, secret) => hub.cancelByKey(pid, secret) });
  const hub = new AgentHub((name, token) => {
    const expected = agentHashes.get(name);
    if (!expected) return false;
    return timingSafeEqual(expected, createHash('sha256').update(token).digest());
  }, log.child({ component: 'tunnel' }), { keys, maxWaitingLinks: limits.waitingLinks.total, maxWaitingLinksPerAddress: limits.waitingLinks.perAddress });

  const onSnapshot = (snapshot: Snapshot) => {
    config = { version: snapshot.version, receivedAt: Date.now() };
    auth = compileAuthConfig(snapshot);
    for (const warning of auth.warnings) log.warn({ version: snapshot.version }, warning);
    verifier.update(auth);
    agentHashes = new Map(
      snapshot.agents.filter((a) => !a.revoked).map((a) => [a.name, Buffer.from(a.tokenHash, 'hex')]),
    );
    hub.revokeUnless((name) => agentHashes.has(name));
    grants = snapshot.grants;
    masks = { list: snapshot.masks, key: snapshot.maskKey };
    approvalRules = snapshot.approvalRules;
    for (const s of sessions) {
      const a = s.admission;
      if (a) {
        s.setPolicy(rulesFor(grants, a.resource, a.identity, a.groups), masksFor(masks.list, masks.key, a.resource, a.identity, a.groups));
        a.gate.setApprovals(matcherFor(a.resource, a.identity, a.groups));
      }
    }
  };

  // What each resource's database contains, read through its agent: names
  // are placed and views, functions, triggers and keys followed with it.
  const catalogs = new CatalogStore(
    async (resource) => {
      const agent = auth?.resourcesByName.get(resource)?.agent;
      if (!agent) throw new Error(`resource ${resource} is not configured`);
      const upstream = await hub.open(agent, { resource, parameters: { application_name: 'warden catalog' }, readOnly: true, access: 'read', rule: '' });
      return fetchCatalog(upstream);
    },
    { log: log.child({ component: 'catalog' }) },
  );

  if (opts.metrics) registerGatewayMetrics(opts.metrics, { cache: classifications, hub, audit: opts.audit, config: () => config });

  const tunnelPort = await hub.listen(opts.tunnelListen, opts.tunnelTls);
  const advertise = opts.tunnelAdvertise ?? opts.tunnelListen.replace(/:0$/, `:${tunnelPort}`);

  const cpClient = new ControlPlaneServiceClient(grpcTarget(opts.controlPlane), channelCredentials({ ca: opts.controlPlaneCa }), keepaliveOptions);
  const watch = new ConfigWatch(cpClient, opts.gatewayToken, { gatewayId: opts.id, tunnelAddress: advertise }, log.child({ component: 'config' }), opts.configCache);
  watch.onUpdate(onSnapshot);
  watch.start();
  // One decision stream for the gateway: a decision made anywhere reaches the session holding the statement.
  const approvals = new ControlPlaneApprovals(cpClient, opts.gatewayToken, opts.id, log.child({ component: 'approvals' }));
  approvals.start();
  const explain = (resource: string, agent: string, sql: string, searchPath: string | null) =>
    explainRows(
      () => hub.open(agent, { resource, parameters: { application_name: 'warden estimate' }, readOnly: true, access: 'read', rule: '' }),
      sql,
      searchPath,
      5_000,
    );

  const admit = async (token: string, resource: string): Promise<Admission> => {
    const config = auth;
    if (!config) throw new Refusal(SqlState.connectionFailure, 'the gateway has not received its configuration from the control plane yet; retry shortly');
    // An AuthError is a PgError: the session refuses with its SQLSTATE and hint as they are.
    const verified = await verifier.verify(token);
    const who = mapIdentity(config, verified);
    const target = authorize(config, resource, who);
    const rules = rulesFor(grants, resource, who.identity, who.groups);
    // The first session of a resource waits for its catalog (a failed read is tried once more); without one the gate judges without it.
    await catalogs.ensureOrRetry(resource);
    const maskSet = masksFor(masks.list, masks.key, resource, who.identity, who.groups);
    const catalog = () => catalogs.get(resource);
    const columnMasks = maskSet ? new ColumnMasks(maskSet, catalog) : undefined;
    const gate = new StatementGate(
      {
        identity: who.identity,
        resource,
        rules,
        catalog,
        catalogChanged: () => catalogs.invalidate(resource),
        masks: columnMasks,
        approvals: matcherFor(resource, who.identity, who.groups),
      },
      classifications,
    );
    return {
      identity: who.identity,
      groups: who.groups,
      resource,
      agent: target.agent,
      readOnly: gate.ceiling === 'read',
      gate,
      masks: columnMasks,
      claims: verified.claims,
    };
  };

  const tls = opts.tls
    ? createSecureContext({ cert: readFileSync(opts.tls.cert), key: readFileSync(opts.tls.key) })
    : undefined;
  const sessionLog = log.child({ component: 'session' });
  const logins = new LoginLimiter(opts.loginLimits ?? DEFAULT_LOGIN_LIMITS);
  // What the login limits refused, in sums: one log line and one audit record per limited address or name and report.
  const reportLimits = setInterval(() => {
    for (const r of logins.report()) {
      const who = r.by === 'address' ? `from ${r.key}` : `as ${r.key}`;
      const message = `login limit: ${r.refused} logins ${who} refused after ${r.failures} failed within ${logins.limits.windowMs / 1000} s`;
      log.warn({ limit: r.by, key: r.key, refused: r.refused, failures: r.failures }, message);
      // One event for many refusals: counted by their number, not as one.
      opts.audit.publish(authFailureEvent(opts.id, r.by === 'address' ? r.key : '', undefined, { sqlstate: SqlState.rejectedConnection, message }));
      tally?.authFailed(SqlState.rejectedConnection, r.refused);
    }
  }, Math.min(10_000, logins.limits.windowMs));
  reportLimits.unref();
  const loggingIn = new AddressSlots(limits.loggingIn, 'still logging in');
  const inSession = new AddressSlots(limits.sessions, 'in a session');
  const statementMemory = new MemoryBudget(limits.statementMemory);
  const idleSweep = limits.idleSessionMs > 0 ? setInterval(() => {
    for (const s of sessions) s.idleCheck(limits.idleSessionMs);
  }, Math.min(1_000, limits.idleSessionMs)) : undefined;
  idleSweep?.unref();
  const server: NetServer = createServer((socket) => {
    const address = socket.remoteAddress ?? '';
    const slot = loggingIn.take(address);
    if ('refused' in slot) {
      socket.on('error', () => {});
      socket.end(errorResponse({ severity: 'FATAL', code: SqlState.tooManyConnections, message: slot.refused }));
      return;
    }
    const session = new Session(socket, {
      handshakeOver: slot.release,
      log: sessionLog,
      keys,
      tls,
      allowPlaintext: (addr) => !!opts.local && isLoopback(addr),
      admit,
      openUpstream: async (a, parameters) => {
        const held = inSession.take(address);
        if ('refused' in held) throw new Refusal(SqlState.tooManyConnections, held.refused);
        socket.once('close', held.release);
        try {
          return await hub.open(a.agent, { resource: a.resource, parameters, readOnly: a.readOnly, access: a.gate.ceiling, rule: a.gate.ceilingRule });
        } catch (err) {
          held.release();
          throw err;
        }
      },
      authTimeoutMs: limits.loginTimeoutMs,
      maxStatementBytes: limits.maxStatementBytes,
      statementMemory,
      logins,
      audit,
      gatewayId: opts.id,
      parameterRecording: opts.parameterRecording ?? 'full',
      approvals: { client: approvals, explain },
      cancels: keys,
    });
    sessions.add(session);
    socket.once('close', () => sessions.delete(session));
  });
  const [host, portText] = splitHostPort(opts.listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(portText), host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  log.info({ port, tunnelPort, advertise, local: !!opts.local, tls: !!tls }, 'gateway listening');

  return {
    port,
    tunnelPort,
    notReady: () => (auth ? undefined : 'no configuration from the control plane yet'),
    async close() {
      watch.stop();
      approvals.stop();
      clearInterval(reportLimits);
      clearInterval(idleSweep);
      catalogs.close();
      server.close();
      // As Postgres tells its clients at a shutdown, so they reconnect (through another gateway).
      for (const s of sessions) s.refuse(new Refusal(SqlState.adminShutdown, 'warden: the gateway is shutting down; reconnect'));
      await hub.close();
      cpClient.close();
    },
  };
}

export function splitHostPort(address: string): [string, string] {
  const i = address.lastIndexOf(':');
  if (i < 0) throw new Error(`address ${address} needs the form host:port`);
  return [address.slice(0, i).replace(/^\[|\]$/g, ''), address.slice(i + 1)];
}

function isLoopback(addr: string | undefined): boolean {
  return !!addr && (addr.startsWith('127.') || addr === '::1' || addr.startsWith('::ffff:127.'));
}
