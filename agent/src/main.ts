// warden-agent --config FILE (or WARDEN_AGENT_CONFIG): JSON logs on stdout,
// SIGTERM/SIGINT close every session and exit 0.
import { dirname, join, resolve } from 'node:path';
import { CliCommand, makeOption, parseCommandLine, withConfigFile, withConventions } from '@warden/proto/cli';
import { createLogger, logFormatOption, logLevelOption, type Logger } from '@warden/proto/log';
import { DEFAULT_METRICS_LISTEN, metricsListenOption, newRegistry, startMetricsServer, type MetricsServer } from '@warden/proto/metrics';
import { Agent } from './agent.js';
import { ConfigError, loadConfig } from './config.js';
import { agentNotReady } from './metrics.js';
import { VERSION } from './version.js';

const STOP_TIMEOUT_MS = 10_000;

async function main(): Promise<void> {
  const program = new CliCommand('warden-agent')
    .description('The Warden agent: runs next to the database, dials out to the gateways, logs in upstream and relays sessions.')
    .usage('--config FILE')
    .addOption(makeOption({ flags: '-c, --config <FILE>', description: 'the agent config file (JSON; format in docs/processes.md)', env: 'WARDEN_AGENT_CONFIG' }))
    .addOption(
      makeOption({
        flags: '--state-dir <DIR>',
        description: "where the agent keeps its last gateway list, to dial it when started while the control plane is away (default: the config file's directory)",
        env: 'WARDEN_AGENT_STATE_DIR',
      }),
    )
    .addOption(makeOption(metricsListenOption(DEFAULT_METRICS_LISTEN.agent)))
    .addOption(makeOption(logLevelOption))
    .addOption(makeOption(logFormatOption()));
  withConventions(withConfigFile(program), VERSION);
  const stop = await parseCommandLine(program, process.argv.slice(2), 2);
  if (stop !== undefined) {
    process.exitCode = stop;
    return;
  }
  const opts = program.opts<{ config?: string; stateDir?: string; metricsListen: string; logLevel?: string; logFormat?: string }>();
  let log: Logger;
  try {
    log = createLogger({ name: 'warden-agent', level: opts.logLevel, format: opts.logFormat });
  } catch (err) {
    console.error(`error: ${(err as Error).message}`);
    process.exitCode = 2;
    return;
  }
  const { config: file, stateDir } = opts;
  if (!file) {
    log.fatal('no config file given: pass --config FILE or set WARDEN_AGENT_CONFIG');
    process.exitCode = 2;
    return;
  }

  let agent: Agent;
  let metrics: MetricsServer;
  try {
    const { config, warnings } = loadConfig(file);
    for (const w of warnings) log.warn(w);
    const registry = newRegistry();
    agent = new Agent(config, { log, gatewayListFile: join(stateDir ?? dirname(resolve(file)), `${config.name}.gateways.json`), metrics: registry });
    metrics = await startMetricsServer({ listen: opts.metricsListen, registry, notReady: () => agentNotReady(agent) });
    log.info({ url: metrics.url }, 'metrics on /metrics, health on /healthz and /readyz');
  } catch (err) {
    if (err instanceof ConfigError) log.fatal({ field: err.field }, err.message);
    else log.fatal({ err: { message: (err as Error).message } }, 'could not start the agent');
    process.exitCode = 1;
    return;
  }

  process.on('uncaughtException', (err) => {
    // Keep running: one broken session must not take the others down.
    log.error({ err: { message: err.message, stack: err.stack } }, 'uncaught exception');
  });
  process.on('unhandledRejection', (reason) => {
    log.error({ err: { message: String(reason) } }, 'unhandled rejection');
  });

  let signalled = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (signalled) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(0);
    }
    signalled = true;
    log.info({ signal, sessions: agent.context.sessions.size }, 'stopping');
    const force = setTimeout(() => {
      log.warn('sessions did not close in time; exiting');
      process.exit(0);
    }, STOP_TIMEOUT_MS);
    force.unref();
    agent.stop().then(
      async () => {
        await metrics.close();
        log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err: { message: String(err) } }, 'error while stopping');
        process.exit(0);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);

  agent.start();
}

await main();
