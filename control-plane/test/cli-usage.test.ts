// The command lines of the three programs as real processes: --version and
// --help on every program and command, usage errors, options from the
// environment, and the shell completion scripts of `warden completion`.
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { program } from '../src/cli/run.js';
import { type CliResult, cleanEnv, tempDir } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BINS = {
  warden: join(ROOT, 'control-plane/bin/warden.js'),
  'warden-gateway': join(ROOT, 'gateway/bin/warden-gateway.js'),
  'warden-agent': join(ROOT, 'agent/bin/warden-agent.js'),
} as const;
type Program = keyof typeof BINS;

const versionOf = (pkg: string) => (JSON.parse(readFileSync(join(ROOT, pkg, 'package.json'), 'utf8')) as { version: string }).version;

function run(bin: Program, args: string[], env: NodeJS.ProcessEnv = cleanEnv()): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BINS[bin], ...args], { env }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** Runs warden once per argument list, a few processes at a time. */
async function runAll(argLists: string[][]): Promise<CliResult[]> {
  const results: CliResult[] = [];
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < argLists.length; i = next++) results[i] = await run('warden', argLists[i]!);
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  return results;
}

/** Every command that runs something, with the words that name it: ['issuers', 'add'], ['token']. */
function leaves(cmd: Command, path: string[] = []): { path: string[]; cmd: Command }[] {
  return cmd.commands.flatMap((c) => (c.commands.length > 0 ? leaves(c, [...path, c.name()]) : [{ path: [...path, c.name()], cmd: c }]));
}

const WARDEN = program(() => {});
const COMMANDS = leaves(WARDEN);
const GROUPS = WARDEN.commands.filter((c) => c.commands.length > 0).map((c) => c.name());

/** The option's line in --help: its flags, then a description on the same line. */
const optionLine = (help: string, long: string) => help.split('\n').find((l) => new RegExp(`^ {2}(-\\w, )?${long}( <[^>]+>)? +\\S`).test(l));

describe('--version', () => {
  it('prints the package version on all three programs', async () => {
    for (const [bin, pkg] of [['warden', 'control-plane'], ['warden-gateway', 'gateway'], ['warden-agent', 'agent']] as const) {
      for (const flag of ['--version', '-V']) {
        expect(await run(bin, [flag]), `${bin} ${flag}`).toEqual({ code: 0, stdout: `${versionOf(pkg)}\n`, stderr: '' });
      }
    }
  });

  it('prints it on every warden command and group', async () => {
    const version = `${versionOf('control-plane')}\n`;
    const paths = [...COMMANDS.map((c) => c.path), ...GROUPS.map((g) => [g])];
    const results = await runAll(paths.map((path) => [...path, '--version']));
    results.forEach((r, i) => expect(r, paths[i]!.join(' ')).toEqual({ code: 0, stdout: version, stderr: '' }));
  }, 300_000);
});

describe('--help', () => {
  it('lists every warden command with its argument', async () => {
    const help = await run('warden', ['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: warden COMMAND \[options\]\n/);
    for (const { path, cmd } of COMMANDS) {
      const args = cmd.registeredArguments.map((a) => (a.required ? `<${a.name()}>` : `[${a.name()}]`));
      expect(help.stdout, path.join(' ')).toMatch(new RegExp(`^ {2}${[...path, ...args].join(' ').replace(/[[\]]/g, '\\$&')} +\\S`, 'm'));
    }
    expect(COMMANDS.map((c) => c.path.join(' '))).toEqual(expect.arrayContaining(['issuers add', 'grants add', 'policy check', 'audit retention', 'token', 'completion']));
  });

  it('names every option of every warden command, each with a description', async () => {
    const results = await runAll(COMMANDS.map(({ path }) => [...path, '--help']));
    COMMANDS.forEach(({ path, cmd }, i) => {
      const { code, stdout } = results[i]!;
      const what = path.join(' ');
      expect(code, what).toBe(0);
      expect(stdout, what).toMatch(new RegExp(`^Usage: warden ${what} `));
      for (const long of [...cmd.options.map((o) => o.long!), '--help']) expect(optionLine(stdout, long), `${what} ${long}`).toBeDefined();
    });
  }, 300_000);

  it('shows the options that were missing from grants add, and the environment variables', async () => {
    const { stdout } = await run('warden', ['grants', 'add', '--help']);
    for (const long of ['--resource', '--identity', '--group', '--access', '--allow-schema', '--deny-schema', '--allow-table', '--deny-table', '--trust', '--json']) {
      expect(optionLine(stdout, long), long).toBeDefined();
    }
    expect(stdout).toContain('env: WARDEN_CONTROL_PLANE)');
    expect(stdout).toContain('env: WARDEN_DATA_DIR)');
    const groups = await run('warden', ['issuers', '--help']);
    expect(groups.code).toBe(0);
    expect(groups.stdout).toMatch(/^ {2}add \[options\] <NAME> +\S/m);
    expect(await run('warden', ['help', 'issuers'])).toEqual(groups);
  });

  it('names every option of warden-gateway and warden-agent, with their environment variables', async () => {
    const gateway = await run('warden-gateway', ['--help']);
    expect(gateway.code).toBe(0);
    expect(gateway.stdout).toMatch(/^Usage: warden-gateway \[options\]\n/);
    const flags = ['--id', '--listen', '--tunnel-listen', '--tunnel-advertise', '--control-plane', '--control-plane-ca', '--gateway-token-file'];
    flags.push('--tls-cert', '--tls-key', '--tunnel-tls-cert', '--tunnel-tls-key', '--local', '--nats', '--data-dir', '--version', '--help');
    for (const long of flags) expect(optionLine(gateway.stdout, long), long).toBeDefined();
    const flat = gateway.stdout.replace(/\s+/g, ' ');
    for (const env of ['WARDEN_CONTROL_PLANE)', 'WARDEN_NATS_URL)', 'WARDEN_GATEWAY_DATA_DIR)', 'WARDEN_GATEWAY_TOKEN', 'WARDEN_GATEWAY_LISTEN)']) {
      expect(flat).toContain(env);
    }

    const agent = await run('warden-agent', ['-h']);
    expect(agent.code).toBe(0);
    expect(agent.stdout).toMatch(/^Usage: warden-agent --config FILE\n/);
    expect(optionLine(agent.stdout, '--config')).toMatch(/^ {2}-c, --config <FILE>/);
    expect(agent.stdout.replace(/\s+/g, ' ')).toContain('env: WARDEN_AGENT_CONFIG)');
  });

  it('refuses a control-plane list with an entry that is not host:port, and a replica count out of range', async () => {
    const gateway = await run('warden-gateway', ['--control-plane', '10.0.0.1:7070,cp2'], { ...cleanEnv(), WARDEN_GATEWAY_TOKEN: 't' });
    expect(gateway.code).toBe(2);
    expect(gateway.stderr).toContain("error: --control-plane: address 'cp2' is not host:port");
    const dir = tempDir('warden-replicas-');
    const replicas = await run('warden', ['control-plane', '--data-dir', dir.path, '--nats', 'nats://127.0.0.1:1', '--audit-stream-replicas', '7']);
    expect(replicas.code).not.toBe(0);
    expect(replicas.stderr).toContain("--audit-stream-replicas takes a number from 1 to 5, not '7'");
    const alone = await run('warden', ['control-plane', '--data-dir', dir.path, '--audit-stream-replicas', '3']);
    expect(alone.code).not.toBe(0);
    expect(alone.stderr).toContain('--audit-stream-replicas goes with --nats');
    dir.remove();
  });

  it('goes to stderr with exit code 1 when warden is given no command', async () => {
    const none = await run('warden', []);
    expect(none.code).toBe(1);
    expect(none.stdout).toBe('');
    expect(none.stderr).toMatch(/^Usage: warden COMMAND/);
    const group = await run('warden', ['grants']);
    expect(group.code).toBe(1);
    expect(group.stderr).toMatch(/^Usage: warden grants COMMAND/);
  });
});

describe('usage errors', () => {
  it('are one line naming the command, exit code 1 for warden', async () => {
    const cases: [string[], string][] = [
      [['grants', 'add', '--resorce', 'x'], 'error: warden grants add does not take --resorce; did you mean --resource? (see warden grants add --help)\n'],
      [['--json', 'issuers', 'list'], 'error: warden does not take --json; options go after the command (see warden --help)\n'],
      [['token', '--sub'], 'error: warden token: --sub <NAME> needs a value (see warden token --help)\n'],
      [['issuers', 'list', 'extra'], "error: warden issuers list takes no argument 'extra'\n"],
      [['issuers', 'remove', 'a', 'b'], 'error: warden issuers remove takes one NAME, got: a b\n'],
      [['policy', 'check', '--as', 'x', '--resource', 'y'], 'error: warden policy check needs the SQL to check, e.g. "DELETE FROM orders"\n'],
      [['audit', 'retention', 'clear'], "error: warden audit retention takes set as ACTION, not 'clear'\n"],
      [['completion', 'fish'], "error: warden completion takes bash or zsh as SHELL, not 'fish'\n"],
      [['issuer', 'list'], "error: unknown command 'issuer'; did you mean issuers? (see warden --help)\n"],
    ];
    for (const [args, stderr] of cases) expect(await run('warden', args), args.join(' ')).toEqual({ code: 1, stdout: '', stderr });
  });

  it('exit with code 2 for warden-gateway and warden-agent', async () => {
    expect(await run('warden-gateway', ['--bogus'])).toEqual({ code: 2, stdout: '', stderr: 'error: warden-gateway does not take --bogus (see warden-gateway --help)\n' });
    expect(await run('warden-gateway', ['--listen'])).toEqual({
      code: 2,
      stdout: '',
      stderr: 'error: warden-gateway: --listen <HOST:PORT> needs a value (see warden-gateway --help)\n',
    });
    expect(await run('warden-gateway', ['serve'])).toEqual({ code: 2, stdout: '', stderr: "error: warden-gateway takes no argument 'serve'\n" });
    expect(await run('warden-gateway', ['--record-parameters', 'some'])).toEqual({
      code: 2,
      stdout: '',
      stderr: "error: warden-gateway: --record-parameters takes full, redacted or none, not 'some' (see warden-gateway --help)\n",
    });
    expect(await run('warden-agent', ['--conifg', 'x.json'])).toEqual({
      code: 2,
      stdout: '',
      stderr: 'error: warden-agent does not take --conifg; did you mean --config? (see warden-agent --help)\n',
    });
  });
});

describe('options from the environment', () => {
  let dir: ReturnType<typeof tempDir>;
  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(() => dir.remove());

  it('takes --data-dir from WARDEN_DATA_DIR, and the flag wins over it', async () => {
    const other = join(dir.path, 'other');
    const fromEnv = await run('warden', ['token', '--sub', 'x'], cleanEnv({ WARDEN_DATA_DIR: dir.path }));
    expect(fromEnv.code).toBe(1);
    expect(fromEnv.stderr).toContain(`no development issuer key at ${join(dir.path, 'dev-issuer.jwk')}`);
    const flag = await run('warden', ['token', '--sub', 'x', '--data-dir', other], cleanEnv({ WARDEN_DATA_DIR: dir.path }));
    expect(flag.stderr).toContain(`no development issuer key at ${join(other, 'dev-issuer.jwk')}`);
  });

  it('takes the agent config from WARDEN_AGENT_CONFIG, and says when there is none', async () => {
    const file = join(dir.path, 'agent.json');
    writeFileSync(file, '{}');
    const fromEnv = await run('warden-agent', [], cleanEnv({ WARDEN_AGENT_CONFIG: file }));
    expect(fromEnv.code).toBe(1);
    expect(JSON.parse(fromEnv.stdout.trim().split('\n').pop()!).msg).toMatch(/config/);
    const none = await run('warden-agent', []);
    expect(none.code).toBe(2);
    expect(JSON.parse(none.stdout.trim()).msg).toBe('no config file given: pass --config FILE or set WARDEN_AGENT_CONFIG');
  });

  it('reads WARDEN_LOG_LEVEL in all three programs', async () => {
    const bad = 'loud';
    const message = `error: --log-level (WARDEN_LOG_LEVEL) takes one of fatal, error, warn, info, debug, trace, silent, not '${bad}'\n`;
    const token = join(dir.path, 'gateway-token');
    writeFileSync(token, 'not-a-real-token');
    const runs = {
      warden: await run('warden', ['control-plane', '--data-dir', join(dir.path, 'cp')], cleanEnv({ WARDEN_LOG_LEVEL: bad })),
      'warden-gateway': await run('warden-gateway', ['--data-dir', dir.path, '--gateway-token-file', token], cleanEnv({ WARDEN_LOG_LEVEL: bad })),
      'warden-agent': await run('warden-agent', [], cleanEnv({ WARDEN_LOG_LEVEL: bad })),
    };
    for (const [bin, r] of Object.entries(runs)) {
      expect(r.stderr, bin).toContain(message);
      expect(r.code, bin).not.toBe(0);
    }
    // A level above the line's drops it: the agent's complaint about its missing config is a fatal.
    expect(await run('warden-agent', [], cleanEnv({ WARDEN_LOG_LEVEL: 'silent' }))).toEqual({ code: 2, stdout: '', stderr: '' });
  });

  it('takes --log-level and --log-format (or WARDEN_LOG_FORMAT) in all three programs, with the same message for a bad value', async () => {
    const token = join(dir.path, 'gateway-token');
    writeFileSync(token, 'not-a-real-token');
    const programs = [
      ['warden', ['control-plane', '--data-dir', join(dir.path, 'cp')]],
      ['warden-gateway', ['--data-dir', dir.path, '--gateway-token-file', token]],
      ['warden-agent', []],
    ] as const;
    for (const [bin, args] of programs) {
      const level = await run(bin, [...args, '--log-level', 'loud'], cleanEnv());
      expect(level.stderr, bin).toContain("error: --log-level (WARDEN_LOG_LEVEL) takes one of fatal, error, warn, info, debug, trace, silent, not 'loud'\n");
      const format = await run(bin, [...args], cleanEnv({ WARDEN_LOG_FORMAT: 'text' }));
      expect(format.stderr, bin).toContain("error: --log-format (WARDEN_LOG_FORMAT) takes json or pretty, not 'text'\n");
      expect(format.code, bin).not.toBe(0);
    }
    // The flag wins over the variable: silent drops the agent's fatal complaint about its missing config.
    expect(await run('warden-agent', ['--log-level', 'silent'], cleanEnv({ WARDEN_LOG_LEVEL: 'debug' }))).toEqual({ code: 2, stdout: '', stderr: '' });
  });

  it('stops warden-gateway with code 2 and a pointer to its help when it has no gateway token', async () => {
    expect(await run('warden-gateway', ['--data-dir', dir.path])).toEqual({
      code: 2,
      stdout: '',
      stderr: 'error: warden-gateway has no gateway token: set WARDEN_GATEWAY_TOKEN or pass --gateway-token-file (see warden-gateway --help)\n',
    });
  });
});

const has = (tool: string) => {
  try {
    execFileSync(tool, ['-c', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

describe('warden completion', () => {
  let dir: ReturnType<typeof tempDir>;
  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(() => dir.remove());

  async function script(shell: 'bash' | 'zsh'): Promise<string> {
    const res = await run('warden', ['completion', shell]);
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    const file = join(dir.path, `warden.${shell}`);
    writeFileSync(file, res.stdout);
    return file;
  }

  it('prints a bash script that bash accepts and that completes commands, subcommands, options and files', async () => {
    const file = await script('bash');
    execFileSync('bash', ['-n', file]);
    writeFileSync(join(dir.path, 'policy.yaml'), '');
    const complete = (...words: string[]) =>
      execFileSync('bash', ['-c', `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _warden; printf '%s\\n' "\${COMPREPLY[@]}"`, 'bash', file, ...words], {
        cwd: dir.path,
        encoding: 'utf8',
      })
        .split('\n')
        .filter(Boolean);
    expect(complete('warden', 'gr')).toEqual(['grants']);
    expect(complete('warden', 'issuers', '')).toEqual(['list', 'add', 'remove']);
    expect(complete('warden', 'grants', 'add', '--deny')).toEqual(['--deny-schema', '--deny-table']);
    expect(complete('warden', 'policy', 'apply', '-f', 'pol')).toEqual(['policy.yaml']);
    expect(complete('warden', 'grants', 'add', '--resource', '')).toEqual([]);
    expect(complete('warden', 'start', '--record-parameters', 're')).toEqual(['redacted']);
    expect(complete('warden', 'completion', '')).toEqual(['bash', 'zsh', '--help', '--version']);
    expect(complete('warden', 'token', '--sub', 'x', '--t')).toEqual(['--ttl']);
    expect(complete('warden', 'help', 'to')).toEqual(['token']);
  });

  it.skipIf(!has('zsh'))('prints a zsh script that zsh accepts and that offers commands and options with descriptions', async () => {
    const file = await script('zsh');
    execFileSync('zsh', ['-n', file]);
    // The completion functions stand in for zsh's: they print what would be offered.
    const offered = (current: number, ...words: string[]) =>
      execFileSync(
        'zsh',
        [
          '-fc',
          'compdef() { :; }; _describe() { local n=${@[-1]}; print -rl -- ${(P)n}; }; _files() { print FILES; }; _message() { print MESSAGE; }; _values() { shift; print -rl -- "$@"; }; ' +
            'source "$1"; shift; CURRENT=$1; shift; words=("$@"); _warden',
          'zsh',
          file,
          String(current),
          ...words,
        ],
        { encoding: 'utf8' },
      )
        .split('\n')
        .filter(Boolean);
    expect(offered(2, 'warden', '')).toContainEqual('issuers:trusted token issuers');
    expect(offered(3, 'warden', 'issuers', '')).toEqual([
      'list:list the trusted token issuers',
      'add:trust the tokens of an issuer (replaces the issuer if NAME exists)',
      'remove:stop trusting an issuer',
    ]);
    expect(offered(4, 'warden', 'grants', 'add', '')).toContainEqual('--deny-table:not table T (schema.table, or table for that name in any schema) (repeatable)');
    expect(offered(5, 'warden', 'policy', 'apply', '-f', '')).toEqual(['FILES']);
    expect(offered(5, 'warden', 'grants', 'add', '--resource', '')).toEqual(['MESSAGE']);
    expect(offered(4, 'warden', 'start', '--record-parameters', '')).toEqual(['full', 'redacted', 'none']);
  });
});
