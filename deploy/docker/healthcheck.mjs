#!/usr/bin/env node
// The image's HEALTHCHECK: GET /healthz on the metrics port of the Warden
// program the container runs, exit 0 when it answers 200, else 1.
// Usage: healthcheck.mjs [PID] (default 1, the container's first process).
// The address is found as the program finds it: --metrics-listen on its
// command line, else WARDEN_METRICS_LISTEN, else metrics-listen in its options
// file (--config-file or WARDEN_CONFIG_FILE), else the program's default.
import { readFileSync } from 'node:fs';
import { readOptionsFile } from '@warden/proto/cli';

const DEFAULT_METRICS_PORT = { warden: 9470, 'warden-gateway': 9471, 'warden-agent': 9472 };

const pid = process.argv[2] ?? '1';
let args;
try {
  args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
} catch {
  console.error(`no process ${pid}`);
  process.exit(1);
}
const program = args
  .map((a) => /(?:^|\/)(warden|warden-gateway|warden-agent)(?:\.js)?$/.exec(a)?.[1])
  .find((name) => name !== undefined);
if (!program) {
  console.error(`process ${pid} runs no Warden program: ${args.join(' ')}`);
  process.exit(1);
}

/** The value of a flag given as `--flag VALUE` or `--flag=VALUE`. */
function flag(name) {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === name) return args[i + 1];
    if (args[i].startsWith(`${name}=`)) return args[i].slice(name.length + 1);
  }
  return undefined;
}

function fromOptionsFile() {
  const file = flag('--config-file') ?? process.env.WARDEN_CONFIG_FILE;
  if (!file) return undefined;
  const value = readOptionsFile(file)['metrics-listen'];
  return value === undefined ? undefined : String(value);
}

const address = flag('--metrics-listen') ?? process.env.WARDEN_METRICS_LISTEN ?? fromOptionsFile() ?? `:${DEFAULT_METRICS_PORT[program]}`;
const split = /^(.*):(\d+)$/.exec(address);
if (!split) {
  console.error(`metrics address '${address}' is not HOST:PORT`);
  process.exit(1);
}
// A wildcard listener is reached on loopback.
const host = split[1].replace(/^\[|\]$/g, '');
const target = ['', '0.0.0.0', '::'].includes(host) ? '127.0.0.1' : host;
const url = `http://${target.includes(':') ? `[${target}]` : target}:${split[2]}/healthz`;
try {
  const res = await fetch(url, { signal: AbortSignal.timeout(4000) });
  if (res.status !== 200) {
    console.error(`${url}: ${res.status} ${(await res.text()).slice(0, 200)}`);
    process.exit(1);
  }
} catch (err) {
  console.error(`${url}: ${err.cause?.message ?? err.message}`);
  process.exit(1);
}
