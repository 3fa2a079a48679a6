// The deployment files (Dockerfile, deploy/compose, deploy/k8s, deploy/systemd)
// against the real programs. No container engine runs on these machines, so
// the image is never built here; instead:
// - the Dockerfile's runtime stage, carried out from its own COPY and npm
//   lines in a directory, runs the programs on production dependencies only;
// - every flag, environment variable and options-file key the files give a
//   Warden program appears in that program's --help (the built CLIs, run);
// - the agent configurations they ship pass the agent's own parser;
// - the compose file has the services, networks and healthchecks described
//   in it, and Debian's docker-compose accepts it (`docker-compose config`,
//   which needs no engine; the docker client here has no compose plugin);
// - `kubectl kustomize` renders every kustomization, and the objects have the
//   kinds, names, ports and references expected;
// - systemd-analyze verifies the units, which run the installed package;
// - the image's healthcheck script and the secrets script do what they say.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { parseConfig } from '../agent/src/config.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const WARDEN = join(ROOT, 'control-plane/bin/warden.js');

/** What a deployment file runs: `warden control-plane`, the gateway, the agent, or `warden` admin commands. */
type Program = 'warden control-plane' | 'warden-gateway' | 'warden-agent' | 'warden';
const HELP_COMMANDS: Record<Program, string[][]> = {
  'warden control-plane': [[WARDEN, 'control-plane', '--help']],
  'warden-gateway': [[join(ROOT, 'gateway/bin/warden-gateway.js'), '--help']],
  'warden-agent': [[join(ROOT, 'agent/bin/warden-agent.js'), '--help']],
  warden: [
    [WARDEN, '--help'],
    [WARDEN, 'agents', 'list', '--help'],
  ],
};

interface Help {
  flags: Set<string>;
  env: Set<string>;
}

/** What one deployment file gives one program. */
interface Usage {
  source: 'compose' | 'kubernetes' | 'systemd' | 'image';
  where: string;
  program: Program;
  flags: string[];
  env: string[];
  /** Keys of the options file (--config-file), each a long option name. */
  optionKeys: string[];
}

const cleanEnv = (): NodeJS.ProcessEnv => Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WARDEN_')));

function helpOf(program: Program): Help {
  const text = HELP_COMMANDS[program].map((args) => execFileSync(process.execPath, args, { encoding: 'utf8', env: cleanEnv() })).join('\n');
  return { flags: new Set(text.match(/--[a-z][a-z0-9-]*/g) ?? []), env: new Set(text.match(/\bWARDEN_[A-Z0-9_]+/g) ?? []) };
}

function programOf(argv: readonly string[], where: string): Program {
  const name = basename(argv[0] ?? '').replace(/\.js$/, '');
  if (name === 'warden') return argv[1] === 'control-plane' ? 'warden control-plane' : 'warden';
  if (name === 'warden-gateway' || name === 'warden-agent') return name;
  throw new Error(`${where}: runs no Warden program: ${argv.join(' ')}`);
}

const flagsOf = (argv: readonly string[]) => argv.filter((a) => a.startsWith('--')).map((a) => a.split('=')[0]!);
const flagValue = (argv: readonly string[], flag: string) => argv[argv.indexOf(flag) + 1];
const envKeys = (text: string) => [...text.matchAll(/^\s*(WARDEN_[A-Z0-9_]+)=/gm)].map((m) => m[1]!);
const keysOf = (yamlText: string) => Object.keys((parseYaml(yamlText) as Record<string, unknown> | null) ?? {});

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 127) : 0, stdout, stderr });
    });
  });
}

/** Checks an agent configuration with the agent's own parser; the files it names are stood in for by one readable file. */
function checkAgentConfig(json: string, where: string): void {
  const dir = mkdtempSync(join(tmpdir(), 'warden-deploy-agent-'));
  try {
    const standIn = join(dir, 'secret');
    writeFileSync(standIn, 'x\n');
    const raw = JSON.parse(json) as Record<string, any>;
    const named: string[] = [];
    const replace = (obj: Record<string, any> | undefined, key: string) => {
      if (obj?.[key] === undefined) return;
      named.push(obj[key] as string);
      obj[key] = standIn;
    };
    replace(raw.controlPlane, 'ca');
    replace(raw, 'enrollmentTokenFile');
    replace(raw.gatewayTls, 'ca');
    for (const r of Object.values((raw.resources ?? {}) as Record<string, Record<string, any>>)) {
      replace(r, 'passwordFile');
      replace(r, 'sslrootcert');
    }
    const { config, warnings } = parseConfig(raw, { env: {} });
    expect(warnings, where).toEqual([]);
    expect(Object.keys(config.resources).length, where).toBeGreaterThan(0);
    for (const path of named) expect(path, `${where}: files are named by absolute paths`).toMatch(/^\//);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- the files, read once ----

interface ComposeService {
  image?: string;
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  env_file?: string[];
  volumes?: string[];
  networks?: string[] | Record<string, unknown>;
  ports?: string[];
  secrets?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test?: string[]; disable?: boolean };
  profiles?: string[];
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  networks: Record<string, { internal?: boolean } | null>;
  secrets: Record<string, { file: string }>;
}

const COMPOSE_DIR = join(DEPLOY, 'compose');
const compose = parseYaml(readFileSync(join(COMPOSE_DIR, 'compose.yaml'), 'utf8'), { merge: true }) as ComposeFile;
const networksOf = (s: ComposeService): string[] => (Array.isArray(s.networks) ? s.networks : Object.keys(s.networks ?? {}));
const membersOf = (network: string) =>
  Object.entries(compose.services)
    .filter(([, s]) => networksOf(s).includes(network))
    .map(([name]) => name)
    .sort();

/** The host file compose.yaml mounts at `containerPath` in `service`. */
function composeMount(service: ComposeService, containerPath: string): string {
  const mount = (service.volumes ?? []).map((v) => v.split(':')).find(([, target]) => target === containerPath);
  if (!mount) throw new Error(`compose.yaml mounts nothing at ${containerPath}`);
  return join(COMPOSE_DIR, mount[0]!);
}

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: any;
  data?: Record<string, string>;
}

let secretsDir: string;
let k8sCopy: string;
const renders: Record<string, K8sObject[]> = {};
const helps = {} as Record<Program, Help>;

beforeAll(async () => {
  for (const program of Object.keys(HELP_COMMANDS) as Program[]) helps[program] = helpOf(program);
  // Secrets as an operator makes them, for the compose file and the example overlays.
  secretsDir = mkdtempSync(join(tmpdir(), 'warden-deploy-secrets-'));
  execFileSync('sh', [join(DEPLOY, 'make-secrets.sh')], { env: { ...process.env, WARDEN_SECRETS_DIR: secretsDir }, stdio: 'pipe' });
  writeFileSync(join(secretsDir, 'enrollment-token'), 'made-by-warden-agents-enroll\n');
  k8sCopy = mkdtempSync(join(tmpdir(), 'warden-deploy-k8s-'));
  cpSync(join(DEPLOY, 'k8s'), k8sCopy, { recursive: true });
  for (const overlay of ['example', 'example-agent']) cpSync(secretsDir, join(k8sCopy, 'overlays', overlay, 'secrets'), { recursive: true });
  for (const dir of ['base', 'agent', 'overlays/example', 'overlays/example-agent']) {
    const r = await run('kubectl', ['kustomize', join(k8sCopy, dir)]);
    if (r.code === 127) throw new Error('kubectl is not installed: the Kubernetes manifests are rendered with `kubectl kustomize`');
    if (r.code !== 0) throw new Error(`kubectl kustomize deploy/k8s/${dir} failed: ${r.stderr}`);
    renders[dir] = parseAllDocuments(r.stdout).map((d) => d.toJS() as K8sObject);
  }
}, 120_000);

afterAll(() => {
  for (const dir of [secretsDir, k8sCopy]) if (dir) rmSync(dir, { recursive: true, force: true });
});

// ---- usages: what each file gives each program ----

function composeUsages(): Usage[] {
  const usages: Usage[] = [];
  for (const [name, s] of Object.entries(compose.services)) {
    if (s.image !== 'warden:local') continue;
    const argv = [...(s.entrypoint ?? []), ...(s.command ?? [])];
    const where = `compose.yaml service ${name}`;
    const env = Object.keys(s.environment ?? {}).filter((k) => k.startsWith('WARDEN_'));
    for (const file of s.env_file ?? []) env.push(...envKeys(readFileSync(join(secretsDir, basename(file)), 'utf8')));
    const optionsFile = flagValue(argv, '--config-file');
    const optionKeys = argv.includes('--config-file') ? keysOf(readFileSync(composeMount(s, optionsFile!), 'utf8')) : [];
    usages.push({ source: 'compose', where, program: programOf(argv, where), flags: flagsOf(argv), env, optionKeys });
  }
  return usages;
}

const workloads = (objects: K8sObject[]) => objects.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet');
const find = (objects: K8sObject[], kind: string, prefix: string) => objects.find((o) => o.kind === kind && (o.metadata.name === prefix || o.metadata.name.startsWith(`${prefix}-`)));

function k8sUsages(objects: K8sObject[], render: string): Usage[] {
  const usages: Usage[] = [];
  for (const w of workloads(objects)) {
    const pod = w.spec.template.spec;
    for (const c of pod.containers as any[]) {
      if (!String(c.image).includes('warden')) continue;
      const where = `deploy/k8s/${render} ${w.kind} ${w.metadata.name}`;
      const argv: string[] = c.args;
      const env = (c.env ?? []).map((e: { name: string }) => e.name).filter((n: string) => n.startsWith('WARDEN_'));
      for (const from of c.envFrom ?? []) {
        const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === from.secretRef.name);
        if (secret) env.push(...Object.keys(secret.data ?? {}));
      }
      const optionsPath = (c.env ?? []).find((e: { name: string }) => e.name === 'WARDEN_CONFIG_FILE')?.value as string | undefined;
      const optionKeys = optionsPath ? keysOf(configMapFile(objects, pod, c, optionsPath)) : [];
      usages.push({ source: 'kubernetes', where, program: programOf(argv, where), flags: flagsOf(argv), env, optionKeys });
    }
  }
  return usages;
}

/** The text of the file at `path` in container `c`, from the ConfigMap mounted there. */
function configMapFile(objects: K8sObject[], pod: any, c: any, path: string): string {
  const mount = (c.volumeMounts as { name: string; mountPath: string }[]).find((m) => m.mountPath === dirname(path));
  const volume = (pod.volumes as any[]).find((v) => v.name === mount?.name);
  const map = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === volume?.configMap?.name);
  const text = map?.data?.[basename(path)];
  if (text === undefined) throw new Error(`no ConfigMap file at ${path} in ${c.name}`);
  return text;
}

const UNITS = ['warden-control-plane.service', 'warden-gateway.service', 'warden-agent.service'];

function systemdUsages(): Usage[] {
  return UNITS.map((unit) => {
    const text = readFileSync(join(DEPLOY, 'systemd', unit), 'utf8');
    const argv = /^ExecStart=(.*)$/m.exec(text)![1]!.split(/\s+/);
    const where = `deploy/systemd/${unit}`;
    const optionKeys = keysOf(readFileSync(join(DEPLOY, 'systemd', basename(flagValue(argv, '--config-file')!)), 'utf8'));
    const env = [...text.matchAll(/^EnvironmentFile=-?(.*)$/gm)]
      .map((m) => join(DEPLOY, 'systemd', `${basename(m[1]!)}.example`))
      .filter((f) => existsSync(f))
      .flatMap((f) => envKeys(readFileSync(f, 'utf8')));
    return { source: 'systemd' as const, where, program: programOf(argv.slice(1), where), flags: flagsOf(argv), env, optionKeys };
  });
}

/** The image's healthcheck reads the metrics address as every program takes it. */
const healthcheckUsages = (): Usage[] =>
  (['warden control-plane', 'warden-gateway', 'warden-agent'] as const).map((program) => ({
    source: 'image' as const,
    where: 'deploy/docker/healthcheck.mjs',
    program,
    flags: ['--metrics-listen', '--config-file'],
    env: ['WARDEN_METRICS_LISTEN', 'WARDEN_CONFIG_FILE'],
    optionKeys: ['metrics-listen'],
  }));

describe('deployment files against the real programs', () => {
  it('give only flags, environment variables and options-file keys that the programs list in --help', () => {
    const usages = [
      ...composeUsages(),
      ...k8sUsages(renders['overlays/example']!, 'overlays/example'),
      ...k8sUsages(renders['overlays/example-agent']!, 'overlays/example-agent'),
      ...systemdUsages(),
      ...healthcheckUsages(),
    ];
    // Every program is deployed by compose, Kubernetes and systemd alike.
    const sources = (program: Program) => [...new Set(usages.filter((u) => u.program === program).map((u) => u.source))].sort();
    for (const program of ['warden control-plane', 'warden-gateway', 'warden-agent'] as const) {
      expect(sources(program), program).toEqual(['compose', 'image', 'kubernetes', 'systemd']);
    }
    // compose: control plane, two gateways, agent, admin; Kubernetes: control plane, gateways, agent.
    expect(usages.length).toBe(5 + 3 + 3 + 3);
    const unknown: string[] = [];
    for (const u of usages) {
      const help = helps[u.program];
      for (const f of u.flags) if (!help.flags.has(f)) unknown.push(`${u.where}: ${u.program} has no flag ${f}`);
      for (const e of u.env) if (!help.env.has(e)) unknown.push(`${u.where}: ${u.program} does not read ${e}`);
      for (const k of u.optionKeys) if (!help.flags.has(`--${k}`)) unknown.push(`${u.where}: options-file key '${k}' is no option of ${u.program}`);
    }
    expect(unknown).toEqual([]);
  });

  it('ship agent configurations that the agent accepts without a warning', () => {
    checkAgentConfig(readFileSync(composeMount(compose.services.agent!, '/etc/warden/agent.json'), 'utf8'), 'compose agent.json');
    checkAgentConfig(readFileSync(join(DEPLOY, 'k8s/agent/options/agent.json'), 'utf8'), 'deploy/k8s/agent/options/agent.json');
    checkAgentConfig(readFileSync(join(DEPLOY, 'agent.example.json'), 'utf8'), 'deploy/agent.example.json');
  });
});

describe('Dockerfile', () => {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const stages = text.split(/^FROM /m).slice(1);

  it('builds on Node 20 slim in two stages, the runtime with production dependencies only, as a numeric non-root user', () => {
    expect(/^ARG NODE_IMAGE=(.*)$/m.exec(text)?.[1]).toBe('node:20-slim');
    expect(stages.map((s) => s.split('\n')[0])).toEqual(['${NODE_IMAGE} AS build', '${NODE_IMAGE} AS runtime']);
    expect(stages[0]).toMatch(/^RUN npx tsc -b$/m);
    expect(stages[1]).toMatch(/^RUN npm install --omit=dev /m);
    expect(stages[1]).not.toMatch(/typescript|tsc/);
    const user = /^USER (\d+):(\d+)$/m.exec(stages[1]!);
    expect(Number(user?.[1])).toBeGreaterThan(0);
  });

  it('puts warden, warden-gateway and warden-agent on the PATH, each linked to a bin the image copies', () => {
    const links = [...text.matchAll(/ln -s \/opt\/warden\/(\S+) \/usr\/local\/bin\/(\S+)/g)].map((m) => [m[2], m[1]]);
    expect(Object.fromEntries(links)).toEqual({
      warden: 'control-plane/bin/warden.js',
      'warden-gateway': 'gateway/bin/warden-gateway.js',
      'warden-agent': 'agent/bin/warden-agent.js',
    });
    for (const [, target] of links) {
      expect(statSync(join(ROOT, target!)).mode & 0o111, `${target} is executable`).not.toBe(0);
      expect(text).toContain(`COPY --from=build /src/${dirname(target!)} ${dirname(target!)}`);
    }
  });

  it('copies only what exists and what .dockerignore lets through', () => {
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() && !l.startsWith('#'))
      .map((p) => new RegExp(`^${p.replace(/\*\*\//g, '(.*/)?').replace(/\./g, '\\.').replace(/(?<!\.)\*/g, '[^/]*')}(/.*)?$`));
    const sources = [...text.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(' '));
    expect(sources.length).toBeGreaterThan(10);
    for (const source of sources) {
      expect(existsSync(join(ROOT, source)), source).toBe(true);
      expect(
        ignore.some((re) => re.test(source)),
        `${source} is excluded by .dockerignore`,
      ).toBe(false);
    }
  });

  it('assembles, without an engine, a runtime stage that runs the three programs and the healthcheck on production dependencies only', async () => {
    // The runtime stage's own COPY and `npm install` lines, carried out in a
    // directory that stands for /opt/warden; `--from=build` copies take this
    // checkout's build.
    const runtime = stages[1]!.split('\n');
    const opt = mkdtempSync(join(tmpdir(), 'warden-deploy-runtime-'));
    try {
      let installs = 0;
      for (const line of runtime) {
        const fromBuild = /^COPY --from=build \/src\/(\S+) (\S+)$/.exec(line);
        const copy = /^COPY (?!--)(.+) (\S+)$/.exec(line);
        if (fromBuild) {
          cpSync(join(ROOT, fromBuild[1]!), join(opt, fromBuild[2]!.endsWith('/') ? join(fromBuild[2]!, basename(fromBuild[1]!)) : fromBuild[2]!), { recursive: true });
        } else if (copy) {
          for (const source of copy[1]!.split(' ')) cpSync(join(ROOT, source), join(opt, copy[2]!.endsWith('/') ? join(copy[2]!, basename(source)) : copy[2]!), { recursive: true });
        } else if (line.startsWith('RUN npm install')) {
          // Only the install: the stage's `npm cache clean` would empty this machine's cache.
          const args = line.slice('RUN npm '.length).split(' && ')[0]!.split(' ');
          const r = await run('npm', [...args, '--prefer-offline', '--prefix', opt]);
          expect(r.code, r.stderr).toBe(0);
          installs++;
        }
      }
      expect(installs).toBe(1);
      // Production dependencies only: none of the build's tools.
      for (const dev of ['typescript', 'vitest', 'testcontainers', 'ts-proto', '@bufbuild/buf']) expect(existsSync(join(opt, 'node_modules', dev)), dev).toBe(false);
      const links = [...text.matchAll(/ln -s \/opt\/warden\/(\S+) \/usr\/local\/bin\/(\S+)/g)].map((m) => [m[2]!, m[1]!] as const);
      expect(links.length).toBe(3);
      for (const [name, target] of links) {
        const help = await run(process.execPath, [join(opt, target), '--help'], cleanEnv());
        expect(help.code, `${name}: ${help.stderr}`).toBe(0);
        expect(help.stdout, name).toContain(`Usage: ${name} `);
      }
      // warden loads its server, storage and local-mode modules only when a command needs them: they resolve too.
      const lazy = ['control-plane/dist/server/start.js', 'control-plane/dist/local/run.js', 'control-plane/dist/logger.js', 'control-plane/dist/approvals/webhook.js'];
      // A module in the stage's root, so that 'nats' (imported lazily by the gateway and control plane) resolves from there.
      const check = join(opt, 'lazy-imports.mjs');
      writeFileSync(check, `for (const m of ${JSON.stringify(lazy.map((m) => `./${m}`))}) await import(m);\nawait import('nats');\n`);
      const loaded = await run(process.execPath, [check], cleanEnv());
      expect(loaded, loaded.stderr).toMatchObject({ code: 0, stderr: '' });
      // The healthcheck script resolves @warden/proto from the stage's node_modules.
      const script = await run(process.execPath, [join(opt, 'deploy/docker/healthcheck.mjs'), String(process.pid)], cleanEnv());
      expect(script).toMatchObject({ code: 1, stderr: expect.stringContaining(`process ${process.pid} runs no Warden program`) });
    } finally {
      rmSync(opt, { recursive: true, force: true });
    }
  }, 180_000);

  it('checks health with the healthcheck script it copies', () => {
    expect(text).toMatch(/^HEALTHCHECK .* CMD \["node", "\/opt\/warden\/deploy\/docker\/healthcheck\.mjs"\]$/m);
    expect(text).toContain('COPY deploy/docker/healthcheck.mjs deploy/docker/');
  });
});

describe('compose file', () => {
  it('runs the whole deployment', () => {
    expect(Object.keys(compose.services).sort()).toEqual(
      ['agent', 'control-plane', 'control-plane-db', 'gateway-1', 'gateway-2', 'nats-1', 'nats-2', 'nats-3', 'sample-db', 'warden'].sort(),
    );
    const program = (name: string) => programOf(compose.services[name]!.command!, name);
    expect(program('control-plane')).toBe('warden control-plane');
    expect(program('gateway-1')).toBe('warden-gateway');
    expect(program('gateway-2')).toBe('warden-gateway');
    expect(program('agent')).toBe('warden-agent');
    expect(compose.services.warden!.profiles).toEqual(['admin']);
  });

  it('keeps the sample database on a network that only the agent shares, and lets the agent reach gateways and control plane only by dialling out', () => {
    expect(membersOf('vpc')).toEqual(['agent', 'sample-db']);
    expect(networksOf(compose.services['sample-db']!)).toEqual(['vpc']);
    expect(networksOf(compose.services.agent!).sort()).toEqual(['uplink', 'vpc']);
    expect(membersOf('uplink')).toEqual(['agent', 'control-plane', 'gateway-1', 'gateway-2']);
    expect(membersOf('backplane')).toEqual(['control-plane', 'control-plane-db', 'gateway-1', 'gateway-2', 'nats-1', 'nats-2', 'nats-3', 'warden']);
    expect(membersOf('edge')).toEqual(['gateway-1', 'gateway-2']);
    for (const n of ['vpc', 'uplink', 'backplane']) expect(compose.networks[n]?.internal, n).toBe(true);
    // Only the gateways publish a port; the agent listens on loopback only (its metrics).
    const published = Object.entries(compose.services).filter(([, s]) => s.ports?.length);
    expect(Object.fromEntries(published.map(([n, s]) => [n, s.ports]))).toEqual({ 'gateway-1': ['15432:15432'], 'gateway-2': ['15433:15432'] });
    const agentOptions = parseYaml(readFileSync(composeMount(compose.services.agent!, '/etc/warden/agent.yaml'), 'utf8')) as Record<string, string>;
    expect(agentOptions['metrics-listen']).toMatch(/^127\.0\.0\.1:/);
    // The agent dials the names the gateways advertise and the control plane it is given.
    const agentJson = JSON.parse(readFileSync(composeMount(compose.services.agent!, '/etc/warden/agent.json'), 'utf8'));
    expect(agentJson.controlPlane.address).toBe('control-plane:7070');
    expect(compose.services['gateway-1']!.environment!.WARDEN_GATEWAY_TUNNEL_ADVERTISE).toBe('gateway-1:7443');
    expect(compose.services['gateway-2']!.environment!.WARDEN_GATEWAY_TUNNEL_ADVERTISE).toBe('gateway-2:7443');
    expect(agentJson.resources.shop.host).toBe('sample-db');
  });

  it('has a healthcheck on every long-running service, and starts each after what it needs is healthy', () => {
    for (const [name, s] of Object.entries(compose.services)) {
      if (s.profiles) continue;
      expect(s.healthcheck?.test?.length, name).toBeGreaterThan(1);
      if (s.image === 'warden:local') expect(s.healthcheck!.test).toEqual(['CMD', 'node', '/opt/warden/deploy/docker/healthcheck.mjs']);
    }
    const after = (name: string) => Object.entries(compose.services[name]!.depends_on ?? {}).map(([d, c]) => `${d}:${c.condition}`).sort();
    expect(after('control-plane')).toEqual(['control-plane-db', 'nats-1', 'nats-2', 'nats-3'].map((d) => `${d}:service_healthy`));
    expect(after('gateway-1')).toEqual(['control-plane:service_healthy']);
    expect(after('agent')).toEqual(['gateway-1', 'gateway-2', 'sample-db'].map((d) => `${d}:service_healthy`));
  });

  it('clusters three NATS nodes with JetStream, each routing to all three', () => {
    for (const n of ['nats-1', 'nats-2', 'nats-3']) {
      const argv = compose.services[n]!.command!;
      expect(argv).toContain('--jetstream');
      expect(flagValue(argv, '--name')).toBe(n);
      expect(flagValue(argv, '--routes')).toBe('nats://nats-1:6222,nats://nats-2:6222,nats://nats-3:6222');
    }
    for (const file of ['control-plane.yaml', 'gateway.yaml']) {
      expect((parseYaml(readFileSync(join(COMPOSE_DIR, file), 'utf8')) as Record<string, string>).nats, file).toBe('nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222');
    }
  });

  it('takes every secret from a file deploy/make-secrets.sh makes', () => {
    const made = new Set(readdirSync(secretsDir));
    for (const [name, s] of Object.entries(compose.secrets)) {
      expect(made.has(basename(s.file)), `${name}: ${s.file}`).toBe(true);
    }
    const cpEnv = readFileSync(join(secretsDir, 'control-plane.env'), 'utf8');
    expect(envKeys(cpEnv).sort()).toEqual(['WARDEN_ADMIN_TOKEN', 'WARDEN_DATABASE_URL', 'WARDEN_GATEWAY_TOKEN']);
    expect(cpEnv).toContain('@control-plane-db:5432/warden');
    // The gateways read the token the control plane is given.
    expect(cpEnv).toContain(`WARDEN_GATEWAY_TOKEN=${readFileSync(join(secretsDir, 'gateway-token'), 'utf8').trim()}\n`);
  });

  it("is accepted by Debian's docker-compose (config needs no engine)", async () => {
    // The docker client on these machines has no compose plugin: `docker compose` is not a command.
    const r = await run('docker-compose', ['-f', join(COMPOSE_DIR, 'compose.yaml'), 'config'], { ...process.env, WARDEN_SECRETS_DIR: secretsDir });
    if (r.code === 127) throw new Error('docker-compose is not installed: apt-get install docker-compose');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const resolved = parseYaml(r.stdout) as ComposeFile;
    expect(Object.keys(resolved.services).length).toBe(Object.keys(compose.services).length);
    expect(resolved.secrets.gateway_token!.file).toBe(join(secretsDir, 'gateway-token'));
  });
});

describe('Kubernetes manifests (kubectl kustomize)', () => {
  const names = (objects: K8sObject[]) => objects.map((o) => `${o.kind}/${o.metadata.name.replace(/-[a-z0-9]{10}$/, '')}`).sort();
  const portsOf = (objects: K8sObject[], kind: string, name: string) =>
    Object.fromEntries((find(objects, kind, name)!.spec.template.spec.containers[0].ports as { name: string; containerPort: number }[]).map((p) => [p.name, p.containerPort]));

  it('renders the public side: control plane, gateways, NATS', () => {
    const base = renders.base!;
    expect(names(base)).toEqual(
      [
        'ConfigMap/warden-options',
        'Deployment/warden-control-plane',
        'PodDisruptionBudget/warden-control-plane',
        'PodDisruptionBudget/warden-gateway',
        'Service/nats',
        'Service/warden-control-plane',
        'Service/warden-gateway',
        'Service/warden-gateway-tunnel',
        'StatefulSet/nats',
        'StatefulSet/warden-gateway',
      ].sort(),
    );
    expect(portsOf(base, 'Deployment', 'warden-control-plane')).toEqual({ grpc: 7070, metrics: 9470 });
    expect(portsOf(base, 'StatefulSet', 'warden-gateway')).toEqual({ postgres: 15432, tunnel: 7443, metrics: 9471 });
    expect(find(base, 'Deployment', 'warden-control-plane')!.spec.replicas).toBe(2);
    expect(find(base, 'StatefulSet', 'warden-gateway')!.spec.replicas).toBe(2);
    expect(find(base, 'StatefulSet', 'nats')!.spec.replicas).toBe(3);
    const gatewayService = find(base, 'Service', 'warden-gateway')!;
    expect(gatewayService.spec.type).toBe('LoadBalancer');
    expect(gatewayService.spec.ports[0]).toEqual({ name: 'postgres', port: 5432, targetPort: 'postgres' });
    expect(find(base, 'Service', 'warden-gateway-tunnel')!.spec.clusterIP).toBe('None');
    for (const pdb of base.filter((o) => o.kind === 'PodDisruptionBudget')) expect(pdb.spec.minAvailable).toBe(1);
    // Each gateway advertises the tunnel name its StatefulSet pod has, which the certificate's wildcard covers.
    const env = find(base, 'StatefulSet', 'warden-gateway')!.spec.template.spec.containers[0].env as { name: string; value?: string }[];
    expect(env.find((e) => e.name === 'WARDEN_GATEWAY_TUNNEL_ADVERTISE')?.value).toBe('$(POD_NAME).warden-gateway-tunnel.$(POD_NAMESPACE).svc:7443');
  });

  it('renders the agent for the private cluster, with no way in but its metrics port', () => {
    const agent = renders.agent!;
    expect(names(agent)).toEqual(['ConfigMap/warden-agent-options', 'Deployment/warden-agent', 'NetworkPolicy/warden-agent', 'Service/warden-agent-metrics']);
    expect(portsOf(agent, 'Deployment', 'warden-agent')).toEqual({ metrics: 9472 });
    const policy = find(agent, 'NetworkPolicy', 'warden-agent')!;
    expect(policy.spec.policyTypes).toEqual(['Ingress']);
    expect(policy.spec.ingress).toEqual([{ ports: [{ port: 'metrics', protocol: 'TCP' }] }]);
  });

  it('gives the example overlays their Secrets, ServiceMonitors, namespace and image, and every reference resolves', () => {
    const expected: Record<string, { namespace: string; secrets: Record<string, string[]>; monitors: string[] }> = {
      'overlays/example': {
        namespace: 'warden',
        secrets: {
          'warden-control-plane': ['WARDEN_ADMIN_TOKEN', 'WARDEN_DATABASE_URL', 'WARDEN_GATEWAY_TOKEN'],
          'warden-gateway-token': ['gateway-token'],
          'warden-tls': ['ca.crt', 'control-plane.crt', 'control-plane.key', 'gateway.crt', 'gateway.key'],
        },
        monitors: ['warden-control-plane', 'warden-gateway'],
      },
      'overlays/example-agent': { namespace: 'warden-agent', secrets: { 'warden-agent': ['ca.crt', 'db-password', 'enrollment-token'] }, monitors: ['warden-agent'] },
    };
    for (const [render, want] of Object.entries(expected)) {
      const objects = renders[render]!;
      for (const o of objects) if (o.kind !== 'Namespace') expect(o.metadata.namespace, `${render} ${o.kind}/${o.metadata.name}`).toBe(want.namespace);
      for (const [secret, keys] of Object.entries(want.secrets)) expect(Object.keys(find(objects, 'Secret', secret)?.data ?? {}).sort(), secret).toEqual(keys);
      const monitors = objects.filter((o) => o.kind === 'ServiceMonitor');
      expect(monitors.map((m) => m.metadata.name).sort()).toEqual(want.monitors);
      for (const m of monitors) {
        // Each scrapes a Service that has the port it names.
        const services = objects.filter((o) => o.kind === 'Service' && Object.entries(m.spec.selector.matchLabels).every(([k, v]) => o.metadata.labels?.[k] === v));
        expect(services.some((s) => s.spec.ports.some((p: { name: string }) => p.name === m.spec.endpoints[0].port)), m.metadata.name).toBe(true);
      }
      for (const w of workloads(objects)) {
        const pod = w.spec.template.spec;
        const refs = [
          ...(pod.volumes ?? []).flatMap((v: any) => (v.secret ? [['Secret', v.secret.secretName]] : v.configMap ? [['ConfigMap', v.configMap.name]] : [])),
          ...pod.containers.flatMap((c: any) => (c.envFrom ?? []).map((f: any) => ['Secret', f.secretRef.name])),
        ] as [string, string][];
        for (const [kind, name] of refs) expect(objects.some((o) => o.kind === kind && o.metadata.name === name), `${w.metadata.name} -> ${kind}/${name}`).toBe(true);
        for (const c of pod.containers) {
          if (c.name !== 'nats') expect(c.image, w.metadata.name).toBe('registry.example.com/warden:0.1.0');
          // Probes and the metrics port agree with the options file's metrics-listen.
          const ports = Object.fromEntries((c.ports as { name: string; containerPort: number }[]).map((p) => [p.name, p.containerPort]));
          for (const probe of [c.livenessProbe, c.readinessProbe].filter(Boolean)) expect(ports[probe.httpGet.port], `${c.name} probe port`).toBeDefined();
          const optionsPath = (c.env ?? []).find((e: { name: string }) => e.name === 'WARDEN_CONFIG_FILE')?.value;
          if (optionsPath) {
            const options = parseYaml(configMapFile(objects, pod, c, optionsPath)) as Record<string, string>;
            expect(Number(options['metrics-listen']!.split(':').at(-1)), c.name).toBe(ports.metrics);
            expect(c.readinessProbe.httpGet.path).toBe('/readyz');
            expect(c.livenessProbe.httpGet.path).toBe('/healthz');
          }
        }
        if (w.metadata.name !== 'nats') expect(pod.securityContext.runAsNonRoot, w.metadata.name).toBe(true);
      }
    }
  });
});

describe('systemd units', () => {
  it('run the installed package with node, never npx, with an options file and an environment file', async () => {
    for (const unit of UNITS) {
      const text = readFileSync(join(DEPLOY, 'systemd', unit), 'utf8');
      expect(text, unit).not.toMatch(/npx/);
      const argv = /^ExecStart=(.*)$/m.exec(text)![1]!.split(/\s+/);
      expect(argv[0]).toBe('/usr/bin/node');
      // /opt/warden/X is this repository's X, installed.
      const bin = argv[1]!;
      expect(bin.startsWith('/opt/warden/'), unit).toBe(true);
      expect(existsSync(join(ROOT, bin.slice('/opt/warden/'.length))), bin).toBe(true);
      expect(flagValue(argv, '--config-file'), unit).toMatch(/^\/etc\/warden\/[a-z-]+\.yaml$/);
      expect(text, unit).toMatch(/^EnvironmentFile=-?\/etc\/warden\/[a-z-]+\.env$/m);
      expect(text, unit).toMatch(/^User=warden$/m);
    }
    const r = await run('systemd-analyze', ['verify', ...UNITS.map((u) => join(DEPLOY, 'systemd', u))]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});

/** A port that was free a moment ago (the programs take HOST:PORT, and the healthcheck must know it). */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

describe('image healthcheck script', () => {
  let server: Server;
  let status = 200;
  let port: number;
  const children: ChildProcess[] = [];
  const dirs: string[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      res.statusCode = req.url === '/healthz' ? status : 404;
      res.end(req.url === '/healthz' ? 'ok' : 'not found');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    for (const c of children) c.kill();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    await new Promise((resolve) => server.close(resolve));
  });

  /** A process whose command line reads like a Warden program's, as PID 1 of a container would. */
  async function fakeProgram(args: string[]): Promise<number> {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 60000)', ...args], { stdio: 'ignore' });
    children.push(child);
    await new Promise((resolve) => child.once('spawn', resolve));
    return child.pid!;
  }
  const check = (pid: number, env: NodeJS.ProcessEnv = cleanEnv()) => run(process.execPath, [join(DEPLOY, 'docker/healthcheck.mjs'), String(pid)], env);

  it('asks /healthz at --metrics-listen of the process, and fails when it does not answer 200', async () => {
    const pid = await fakeProgram(['/usr/local/bin/warden-gateway', '--metrics-listen', `0.0.0.0:${port}`]);
    status = 200;
    expect(await check(pid)).toMatchObject({ code: 0, stderr: '' });
    status = 503;
    const failing = await check(pid);
    expect(failing.code).toBe(1);
    expect(failing.stderr).toContain(`http://127.0.0.1:${port}/healthz: 503`);
  });

  it('takes the address from WARDEN_METRICS_LISTEN, then from the options file', async () => {
    status = 200;
    const plain = await fakeProgram(['/usr/local/bin/warden-agent']);
    expect((await check(plain, { ...cleanEnv(), WARDEN_METRICS_LISTEN: `127.0.0.1:${port}` })).code).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), 'warden-deploy-health-'));
    dirs.push(dir);
    const options = join(dir, 'agent.yaml');
    writeFileSync(options, `metrics-listen: 127.0.0.1:${port}\n`);
    const withFile = await fakeProgram(['/opt/warden/agent/bin/warden-agent.js', `--config-file=${options}`]);
    expect(await check(withFile)).toMatchObject({ code: 0, stderr: '' });
    // Nothing listens where the file points: unhealthy.
    writeFileSync(options, 'metrics-listen: 127.0.0.1:1\n');
    expect((await check(withFile)).code).toBe(1);
  });

  it('finds a real gateway healthy through the metrics port of its options file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-deploy-gateway-'));
    dirs.push(dir);
    const metricsPort = await freePort();
    const options = join(dir, 'gateway.yaml');
    // Nothing answers at the control plane: /healthz answers all the same (the process is up), /readyz would not.
    writeFileSync(
      options,
      ['listen: 127.0.0.1:0', 'tunnel-listen: 127.0.0.1:0', 'control-plane: 127.0.0.1:1', `data-dir: ${join(dir, 'data')}`, `metrics-listen: 127.0.0.1:${metricsPort}`].join('\n'),
    );
    const gateway = spawn(process.execPath, [join(ROOT, 'gateway/bin/warden-gateway.js'), '--config-file', options], {
      env: { ...cleanEnv(), WARDEN_GATEWAY_TOKEN: 'deploy-test-token', WARDEN_LOG_LEVEL: 'silent' },
      stdio: 'ignore',
    });
    children.push(gateway);
    let result = await check(gateway.pid!);
    // Until its metrics server listens, the check fails; wait for it, a bounded number of tries.
    for (let i = 0; i < 100 && result.code !== 0 && gateway.exitCode === null; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      result = await check(gateway.pid!);
    }
    expect(gateway.exitCode).toBeNull();
    expect(result).toMatchObject({ code: 0, stderr: '' });
    gateway.kill();
    await new Promise((resolve) => gateway.once('exit', resolve));
    // Stopped: the same command line finds nothing at that port.
    const after = await check(await fakeProgram(['/usr/local/bin/warden-gateway', '--config-file', options]));
    expect(after.code).toBe(1);
    expect(after.stderr).toContain(`http://127.0.0.1:${metricsPort}/healthz: connect ECONNREFUSED`);
  });

  it('says so when the process runs no Warden program', async () => {
    const pid = await fakeProgram(['something-else']);
    const r = await check(pid);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`process ${pid} runs no Warden program`);
  });
});

describe('deploy/make-secrets.sh', () => {
  const openssl = (args: string[]) => execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

  it('makes certificates signed by its CA for the names given, readable by the containers, and keeps them when run again', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'warden-deploy-certs-')), 'secrets');
    try {
      const env = { ...process.env, WARDEN_SECRETS_DIR: dir, WARDEN_GATEWAY_NAMES: 'DNS:*.warden-gateway-tunnel.warden.svc,DNS:gw.example.com' };
      execFileSync('sh', [join(DEPLOY, 'make-secrets.sh')], { env, stdio: 'pipe' });
      for (const cert of ['gateway.crt', 'control-plane.crt']) expect(openssl(['verify', '-CAfile', join(dir, 'ca.crt'), join(dir, cert)])).toContain(': OK');
      expect(openssl(['x509', '-in', join(dir, 'gateway.crt'), '-noout', '-ext', 'subjectAltName'])).toContain('DNS:*.warden-gateway-tunnel.warden.svc, DNS:gw.example.com');
      expect(openssl(['x509', '-in', join(dir, 'control-plane.crt'), '-noout', '-ext', 'subjectAltName'])).toContain('DNS:control-plane');
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(statSync(join(dir, 'gateway.key')).mode & 0o777).toBe(0o644);
      expect(statSync(join(dir, 'ca.key')).mode & 0o077).toBe(0);
      const token = readFileSync(join(dir, 'gateway-token'), 'utf8');
      expect(token).toMatch(/^[0-9a-f]{64}\n$/);
      const cert = readFileSync(join(dir, 'gateway.crt'), 'utf8');
      execFileSync('sh', [join(DEPLOY, 'make-secrets.sh')], { env, stdio: 'pipe' });
      expect(readFileSync(join(dir, 'gateway-token'), 'utf8')).toBe(token);
      expect(readFileSync(join(dir, 'gateway.crt'), 'utf8')).toBe(cert);
    } finally {
      rmSync(dirname(dir), { recursive: true, force: true });
    }
  });
});

describe('options files in the real programs', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'warden-deploy-options-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const runBin = (bin: string, args: string[], env: Record<string, string> = {}) => run(process.execPath, [join(ROOT, bin), ...args], { ...cleanEnv(), ...env });

  it('stop each program on a key it does not have, naming the key and the file', async () => {
    const bad = file('bad.yaml', 'tunel-listen: 0.0.0.0:7443\n');
    const cases: [string, string[], string, number][] = [
      ['gateway/bin/warden-gateway.js', [], 'warden-gateway', 2],
      ['agent/bin/warden-agent.js', [], 'warden-agent', 2],
      ['control-plane/bin/warden.js', ['control-plane'], 'warden control-plane', 1],
    ];
    for (const [bin, args, name, code] of cases) {
      const r = await runBin(bin, [...args, '--config-file', bad]);
      expect(r, name).toMatchObject({ code, stdout: '' });
      expect(r.stderr, name).toBe(`error: ${bad}: ${name} has no option 'tunel-listen' (keys are the long option names, see ${name} --help)\n`);
      // Named by the environment, the same.
      expect((await runBin(bin, args, { WARDEN_CONFIG_FILE: bad })).stderr, name).toContain(`${bad}: ${name} has no option 'tunel-listen'`);
    }
  });

  it("give the agent its config file, below the environment and a flag", async () => {
    const options = file('agent.yaml', `config: ${join(dir, 'from-file.json')}\n`);
    const fromFile = await runBin('agent/bin/warden-agent.js', ['--config-file', options]);
    expect(fromFile.code).toBe(1);
    expect(fromFile.stdout).toContain(`cannot read config file ${join(dir, 'from-file.json')}`);
    const fromEnv = await runBin('agent/bin/warden-agent.js', ['--config-file', options], { WARDEN_AGENT_CONFIG: join(dir, 'from-env.json') });
    expect(fromEnv.stdout).toContain(`cannot read config file ${join(dir, 'from-env.json')}`);
    const fromFlag = await runBin('agent/bin/warden-agent.js', ['--config-file', options, '--config', join(dir, 'from-flag.json')], { WARDEN_AGENT_CONFIG: join(dir, 'from-env.json') });
    expect(fromFlag.stdout).toContain(`cannot read config file ${join(dir, 'from-flag.json')}`);
  });

  it('give the control plane its options (warden control-plane)', async () => {
    // Only one of the pair: the command itself refuses, so the value came through.
    const options = file('cp.yaml', `tls-cert: ${join(dir, 'cp.crt')}\n`);
    const r = await runBin('control-plane/bin/warden.js', ['control-plane', '--config-file', options]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--tls-cert and --tls-key go together');
  });
});

describe("README's Deploy section", () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Deploy\n');
  const next = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, next === -1 ? undefined : next);

  it('runs only warden commands and flags that exist', async () => {
    expect(start).toBeGreaterThan(0);
    const lines = [...section.matchAll(/^warden[ck] (.*?)(?: >.*)?$/gm)].map((m) => m[1]!.split(/\s+/));
    expect(lines.length).toBeGreaterThanOrEqual(5);
    for (const words of lines) {
      const firstFlag = words.findIndex((w) => w.startsWith('-'));
      const command = (firstFlag === -1 ? words : words.slice(0, firstFlag)).slice(0, 2);
      const help = await run(process.execPath, [WARDEN, ...command, '--help'], cleanEnv());
      expect(help.code, words.join(' ')).toBe(0);
      for (const flag of flagsOf(words)) expect(help.stdout, `${words.join(' ')}: ${flag}`).toContain(flag);
    }
  });

  it('sets only the variables deploy/make-secrets.sh reads', () => {
    const script = readFileSync(join(DEPLOY, 'make-secrets.sh'), 'utf8');
    const set = [...section.matchAll(/^(WARDEN_[A-Z_]+)=/gm)].map((m) => m[1]!);
    expect(new Set(set)).toEqual(new Set(['WARDEN_SECRETS_DIR', 'WARDEN_CONTROL_PLANE_NAMES', 'WARDEN_GATEWAY_NAMES', 'WARDEN_DATABASE_HOST']));
    for (const name of set) expect(script, name).toContain(`\${${name}:-`);
  });
});
