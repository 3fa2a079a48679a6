// `warden start`: the control plane in process, a demo database (unless an
// upstream is given), then the gateway and one agent as child processes.
// Returns the exit code once everything is stopped again.
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { newRegistry, startMetricsServer } from '@warden/proto/metrics';
import { createLogger } from '../logger.js';
import { startControlPlane, type ControlPlane } from '../server/start.js';
import { lockDirectory } from '../storage/dir-lock.js';
import { checkName } from '../storage/validate.js';
import { nativeRolesSql, rulesOfGrants } from '../policy/native-roles.js';
import { parseUpstreamUrl, writeAgentConfig, type UpstreamSettings } from './agent-config.js';
import { banner } from './banner.js';
import { describeExit, spawnChild, type Child } from './children.js';
import { DEMO_DATABASE, DEMO_USER, startDemoDatabase, type DemoDatabase } from './demo-db.js';
import { ensureDevKey, publicJwks, signDevToken } from './dev-issuer.js';
import { initPGliteDirs } from './pglite-init.js';
import { pickFreePort, resolvePort } from './ports.js';
import { waitUntilReady } from './readiness.js';
import { DEMO_IDENTITY, LOCAL_AGENT, ensureLocalAgent, seedLocalConfig } from './seed-config.js';

const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;

export interface LocalOptions {
  dataDir: string;
  upstream?: string;
  resource: string;
  gatewayPort: number;
  controlPlanePort: number;
  /** The web console's port (0: a free one). */
  consolePort: number;
  tunnelPort: number;
  demoPort: number;
  readyFile?: string;
  databaseUrl?: string;
  /** Audit events through NATS JetStream; straight to the control plane without it. */
  natsUrl?: string;
  /** URLs told of each new approval request, and their body format. */
  approvalWebhooks?: string[];
  approvalWebhookFormat?: 'json' | 'slack';
  /** The gateway's --record-parameters (full, redacted or none). */
  recordParameters?: string;
  /** The agent's upstream role per access level and per rule (--role, --rule-role). */
  roles?: Record<string, string>;
  ruleRoles?: Record<string, string>;
  /** One log level for the three processes (default: WARDEN_LOG_LEVEL, else info). */
  logLevel?: string;
  /** Their log format; local mode writes readable lines unless json is asked for. */
  logFormat?: string;
  env: NodeJS.ProcessEnv;
}

export interface ReadyInfo {
  dataDir: string;
  resource: string;
  controlPlane: string;
  /** The web console's URL. */
  console: string;
  gateway: { host: string; port: number; pid: number };
  tunnel: string;
  agent: { pid: number };
  demoDatabase?: { host: string; port: number };
  /** Each process's metrics address; /metrics, /healthz and /readyz are under it. */
  metrics: { controlPlane: string; gateway: string; agent: string };
}

/** Entry scripts of the sibling workspaces; overridable for development and tests. */
function childScripts(env: NodeJS.ProcessEnv): { gateway: string; agent: string } {
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  return {
    gateway: env.WARDEN_GATEWAY_BIN || join(root, 'gateway/bin/warden-gateway.js'),
    agent: env.WARDEN_AGENT_BIN || join(root, 'agent/bin/warden-agent.js'),
  };
}

/**
 * Children get the caller's environment minus every Warden secret they do not
 * need, and minus the variables that would set gateway or agent options (a CA
 * or token file meant for a deployed gateway, an options file): local mode
 * sets those by flags.
 */
function childEnv(env: NodeJS.ProcessEnv, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const k of ['WARDEN_ADMIN_TOKEN', 'WARDEN_ENROLLMENT_TOKEN', 'WARDEN_DATABASE_URL', 'WARDEN_UPSTREAM_URL', 'WARDEN_CONTROL_PLANE_CA', 'WARDEN_AGENT_CONFIG', 'WARDEN_CONFIG_FILE']) {
    delete out[k];
  }
  for (const k of Object.keys(out)) if (k.startsWith('WARDEN_GATEWAY_')) delete out[k];
  return { ...out, ...extra };
}

function writeReadyFile(file: string, info: ReadyInfo): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(info, null, 2)}\n`);
  renameSync(tmp, file);
}

/** Free ports for the children, distinct from each other. */
async function childPorts(gatewayPort: number, tunnelPort: number): Promise<[number, number]> {
  const gateway = await resolvePort(HOST, gatewayPort, '--gateway-port');
  let tunnel = await resolvePort(HOST, tunnelPort, '--tunnel-port');
  while (tunnel === gateway) {
    if (tunnelPort !== 0) throw new Error('--gateway-port and --tunnel-port must differ');
    tunnel = await pickFreePort(HOST);
  }
  return [gateway, tunnel];
}

/** Free loopback ports for the gateway's and the agent's metrics, apart from `taken`. */
async function metricsPorts(taken: number[]): Promise<[number, number]> {
  const picked: number[] = [];
  while (picked.length < 2) {
    const port = await pickFreePort(HOST);
    if (!taken.includes(port) && !picked.includes(port)) picked.push(port);
  }
  return [picked[0]!, picked[1]!];
}

export async function runLocal(opts: LocalOptions): Promise<number> {
  const { dataDir, env } = opts;
  const say = (line: string) => process.stderr.write(`${line}\n`);
  checkName('resource', opts.resource);
  const upstream: UpstreamSettings | undefined = opts.upstream ? parseUpstreamUrl(opts.upstream) : undefined;
  const logDir = join(dataDir, 'logs');
  mkdirSync(logDir, { recursive: true, mode: 0o700 });
  const unlock = lockDirectory(join(dataDir, 'local'));

  const abort = new AbortController();
  const children: Child[] = [];
  const cleanup: (() => Promise<void>)[] = [];
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));

  let stopping = false;
  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    abort.abort();
    await Promise.all(children.map((c) => c.stop(STOP_GRACE_MS)));
    for (const fn of cleanup.reverse()) await fn().catch((err) => say(`warning: ${(err as Error).message}`));
    unlock();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    resolveDone(code);
  };
  const onSignal = () => {
    if (!stopping) {
      say('Stopping Warden…');
      void shutdown(0);
      return;
    }
    // A second Ctrl+C: do not wait for the grace period.
    say('Killing the child processes.');
    for (const c of children) void c.stop(0);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    say(`Starting Warden local mode in ${dataDir}…`);
    const key = await ensureDevKey(dataDir);
    const [gatewayPort, tunnelPort] = await childPorts(opts.gatewayPort, opts.tunnelPort);
    if (opts.controlPlanePort !== 0) await resolvePort(HOST, opts.controlPlanePort, '--control-plane-port');
    if (opts.consolePort !== 0) await resolvePort(HOST, opts.consolePort, '--console-port');
    if (!upstream && opts.demoPort !== 0) await resolvePort(HOST, opts.demoPort, '--demo-port');

    // Fresh embedded databases are made by a short-lived child (pglite-init.ts).
    await initPGliteDirs([...(opts.databaseUrl ? [] : [join(dataDir, 'db')]), ...(upstream ? [] : [join(dataDir, 'demo')])]);

    // The control plane's metrics are served from this process, the children's from theirs.
    const registry = newRegistry();
    let cpUp = false;
    const cpMetrics = await startMetricsServer({ listen: `${HOST}:0`, registry, notReady: () => (cpUp ? undefined : 'the store is not open yet') });
    cleanup.push(() => cpMetrics.close());
    const [gatewayMetricsPort, agentMetricsPort] = await metricsPorts([gatewayPort, tunnelPort, opts.controlPlanePort, opts.demoPort, cpMetrics.port]);
    const logFormat = opts.logFormat ?? 'pretty';
    const logging = ['--log-format', logFormat, ...(opts.logLevel ? ['--log-level', opts.logLevel] : [])];

    const cp: ControlPlane = await startControlPlane({
      listen: `${HOST}:${opts.controlPlanePort}`,
      dataDir,
      databaseUrl: opts.databaseUrl,
      adminToken: env.WARDEN_ADMIN_TOKEN || undefined,
      gatewayToken: env.WARDEN_GATEWAY_TOKEN || undefined,
      logger: createLogger({ file: join(logDir, 'control-plane.log'), level: opts.logLevel, format: logFormat }),
      metrics: registry,
      natsUrl: opts.natsUrl,
      approvalWebhooks: opts.approvalWebhooks,
      approvalWebhookFormat: opts.approvalWebhookFormat,
      // People sign in through the development issuer's page (console/dev-sign-in.ts).
      console: { listen: `${HOST}:${opts.consolePort}`, devIssuerKey: key },
    });
    cleanup.push(() => cp.close());
    cpUp = true;

    let demo: DemoDatabase | undefined;
    if (!upstream) {
      demo = await startDemoDatabase(join(dataDir, 'demo'), HOST, opts.demoPort);
      cleanup.push(() => demo!.close());
    }
    const target: UpstreamSettings = upstream ?? {
      host: demo!.host,
      port: demo!.port,
      database: DEMO_DATABASE,
      user: DEMO_USER,
      sslmode: 'disable',
    };

    const seeded = await seedLocalConfig(cp.repo, {
      resource: opts.resource,
      jwksJson: publicJwks(key),
      description: demo ? 'demo shop (PGlite, local mode)' : `${target.host}:${target.port}/${target.database}`,
      demo: !!demo,
    });
    if (seeded.warning) say(`warning: ${seeded.warning}`);
    // The demo database backs the gateway with native roles made from the
    // rules in force (docs/policy.md, "Native roles"); --role and
    // --rule-role add to or replace that mapping.
    const ruleRoles: Record<string, string> = {};
    if (demo) {
      try {
        const { rules } = rulesOfGrants((await cp.repo.snapshot()).grants, opts.resource);
        if (!demo.rolePerClient) {
          say('warning: the demo database cannot keep a role per client, so it runs without native roles');
        } else if (rules.length > 0) {
          const script = nativeRolesSql({ resource: opts.resource, rules, source: 'the rules in force', agentUser: DEMO_USER });
          await demo.exec(script.sql);
          Object.assign(ruleRoles, script.ruleRoles);
        }
      } catch (err) {
        say(`warning: the demo database runs without native roles: ${(err as Error).message}`);
      }
    }
    Object.assign(ruleRoles, opts.ruleRoles);
    if (Object.keys(opts.roles ?? {}).length > 0) target.roles = { ...opts.roles };
    if (Object.keys(ruleRoles).length > 0) target.ruleRoles = ruleRoles;
    const tokenFile = join(dataDir, 'agent-token');
    await ensureLocalAgent(cp.repo, tokenFile);
    const agentConfig = join(dataDir, 'agent.json');
    writeAgentConfig(agentConfig, {
      name: LOCAL_AGENT,
      controlPlane: { address: cp.address },
      enrollmentTokenFile: tokenFile,
      resources: { [opts.resource]: target },
    });

    const scripts = childScripts(env);
    for (const [what, path] of Object.entries(scripts)) {
      if (!existsSync(path)) throw new Error(`the ${what} is not available: ${path} is missing (run \`npm run build\`)`);
    }
    const tunnel = `${HOST}:${tunnelPort}`;
    const watch = (child: Child) => {
      children.push(child);
      void child.exited.then((exit) => {
        if (stopping) return;
        say(`error: the ${child.name} ${describeExit(exit)} unexpectedly; see ${child.logFile}`);
        void shutdown(1);
      });
      return child;
    };
    const gateway = watch(
      spawnChild(
        'gateway',
        [
          scripts.gateway,
          '--id', 'local',
          '--listen', `${HOST}:${gatewayPort}`,
          '--tunnel-listen', tunnel,
          '--tunnel-advertise', tunnel,
          '--control-plane', cp.address,
          '--local',
          '--data-dir', join(dataDir, 'gateway'),
          ...(opts.natsUrl ? ['--nats', opts.natsUrl] : []),
          ...(opts.recordParameters ? ['--record-parameters', opts.recordParameters] : []),
          '--metrics-listen', `${HOST}:${gatewayMetricsPort}`,
          ...logging,
        ],
        childEnv(env, { WARDEN_GATEWAY_TOKEN: cp.gatewayToken }),
        join(logDir, 'gateway.log'),
      ),
    );
    const agent = watch(spawnChild('agent', [scripts.agent, '--config', agentConfig, '--metrics-listen', `${HOST}:${agentMetricsPort}`, ...logging], childEnv(env), join(logDir, 'agent.log')));

    const mint = () => signDevToken(key, { sub: DEMO_IDENTITY, ttlSeconds: 3600 });
    await waitUntilReady(
      { host: HOST, port: gatewayPort, database: opts.resource, user: DEMO_IDENTITY, password: mint },
      READY_TIMEOUT_MS,
      abort.signal,
    );

    const info: ReadyInfo = {
      dataDir,
      resource: opts.resource,
      controlPlane: cp.address,
      console: cp.consoleUrl!,
      gateway: { host: HOST, port: gatewayPort, pid: gateway.pid },
      tunnel,
      agent: { pid: agent.pid },
      ...(demo ? { demoDatabase: { host: demo.host, port: demo.port } } : {}),
      metrics: { controlPlane: cpMetrics.url, gateway: `http://${HOST}:${gatewayMetricsPort}`, agent: `http://${HOST}:${agentMetricsPort}` },
    };
    if (opts.readyFile) writeReadyFile(opts.readyFile, info);
    // A token only for a terminal: written to a file, it would outlive the screen it was meant for.
    const token = process.stdout.isTTY ? await mint() : undefined;
    process.stdout.write(
      `${banner({ ...info, storage: cp.storage, demo: info.demoDatabase, upstream, token, demoRules: seeded.policyVersion === 0, nativeRoles: target })}\n`,
    );
  } catch (err) {
    if (!stopping) {
      say(`error: ${(err as Error).message}`);
      say(`Logs are in ${logDir}/ (control-plane.log, gateway.log, agent.log).`);
      void shutdown(1);
    }
  }
  return done;
}
