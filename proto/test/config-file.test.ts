import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CliCommand, makeOption, parseCommandLine, withConfigFile, withConventions } from '../src/cli.js';

// Environment variables of the test program only, so that nothing else in the process reads them.
const ENV = ['WARDEN_TEST_LISTEN', 'WARDEN_TEST_MODE', 'WARDEN_CONFIG_FILE'] as const;

interface Run {
  code: number | undefined;
  values: Record<string, unknown>;
  sources: Record<string, string | undefined>;
  stderr: string;
}

/** A program like warden-gateway: no subcommands, no action of its own. */
function gatewayLike(): CliCommand {
  const program = new CliCommand('test-gateway')
    .addOption(makeOption({ flags: '--listen <HOST:PORT>', description: 'listener', env: 'WARDEN_TEST_LISTEN', default: '0.0.0.0:15432' }))
    .addOption(makeOption({ flags: '--tunnel-listen <HOST:PORT>', description: 'agents', default: '0.0.0.0:7443' }))
    .addOption(makeOption({ flags: '--mode <MODE>', description: 'mode', env: 'WARDEN_TEST_MODE', default: 'full', choices: ['full', 'none'] }))
    .addOption(makeOption({ flags: '--hook <URL>', description: 'hooks (repeatable)', repeatable: true }))
    .addOption(makeOption({ flags: '--json', description: 'json' }))
    .addOption(makeOption({ flags: '--local', description: 'unsafe', commandLineOnly: true }));
  return withConventions(withConfigFile(program), '1.0.0');
}

async function run(argv: string[], env: Partial<Record<(typeof ENV)[number], string>> = {}): Promise<Run> {
  const program = gatewayLike();
  let stderr = '';
  program.configureOutput({ writeErr: (s) => (stderr += s), writeOut: () => {} });
  Object.assign(process.env, env);
  try {
    const code = await parseCommandLine(program, argv, 2);
    const names = ['listen', 'tunnelListen', 'mode', 'hook', 'json', 'local'];
    return {
      code,
      values: program.opts(),
      sources: Object.fromEntries(names.map((n) => [n, program.getOptionValueSource(n)])),
      stderr,
    };
  } finally {
    for (const k of ENV) delete process.env[k];
  }
}

describe('options file (--config-file)', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
  const file = (name: string, text: string): string => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-config-file-'));
    dirs.push(dir);
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  it('gives the values the flags and environment do not, over the defaults', async () => {
    const f = file('gw.yaml', 'tunnel-listen: 0.0.0.0:8443\nmode: none\nhook: [http://a, http://b]\njson: true\n');
    const r = await run(['--config-file', f]);
    expect(r.code).toBeUndefined();
    expect(r.values).toMatchObject({ listen: '0.0.0.0:15432', tunnelListen: '0.0.0.0:8443', mode: 'none', hook: ['http://a', 'http://b'], json: true });
    expect(r.sources).toMatchObject({ listen: 'default', tunnelListen: 'config', mode: 'config', hook: 'config', json: 'config' });
  });

  it('ranks flag over environment over file over default', async () => {
    const f = file('gw.yaml', 'listen: 10.0.0.1:1\nmode: none\ntunnel-listen: 10.0.0.1:3\n');
    const fileOnly = await run(['--config-file', f]);
    expect(fileOnly.values).toMatchObject({ listen: '10.0.0.1:1', mode: 'none' });

    const envOverFile = await run(['--config-file', f], { WARDEN_TEST_LISTEN: '10.0.0.2:2' });
    expect(envOverFile.values).toMatchObject({ listen: '10.0.0.2:2', tunnelListen: '10.0.0.1:3' });
    expect(envOverFile.sources.listen).toBe('env');

    const flagOverAll = await run(['--config-file', f, '--listen', '10.0.0.3:3', '--mode', 'full'], { WARDEN_TEST_LISTEN: '10.0.0.2:2', WARDEN_TEST_MODE: 'none' });
    expect(flagOverAll.values).toMatchObject({ listen: '10.0.0.3:3', mode: 'full', tunnelListen: '10.0.0.1:3' });
    expect(flagOverAll.sources).toMatchObject({ listen: 'cli', mode: 'cli', tunnelListen: 'config' });

    const noFile = await run([]);
    expect(noFile.values).toMatchObject({ listen: '0.0.0.0:15432', mode: 'full', tunnelListen: '0.0.0.0:7443' });
  });

  it('a repeatable flag replaces the list from the file instead of adding to it', async () => {
    const f = file('gw.yaml', 'hook: [http://a, http://b]\n');
    expect((await run(['--config-file', f, '--hook', 'http://c'])).values.hook).toEqual(['http://c']);
    expect((await run(['--config-file', file('one.yaml', 'hook: http://only\n')])).values.hook).toEqual(['http://only']);
  });

  it('is named by WARDEN_CONFIG_FILE too, and reads JSON', async () => {
    const f = file('gw.json', '{ "tunnel-listen": "0.0.0.0:9443", "mode": "none" }');
    const r = await run([], { WARDEN_CONFIG_FILE: f });
    expect(r.code).toBeUndefined();
    expect(r.values).toMatchObject({ tunnelListen: '0.0.0.0:9443', mode: 'none' });
  });

  it('takes a number where an option takes text, and an empty file as no options', async () => {
    expect((await run(['--config-file', file('n.yaml', 'listen: 5432\n')])).values.listen).toBe('5432');
    const empty = await run(['--config-file', file('empty.yaml', '# nothing yet\n')]);
    expect(empty.code).toBeUndefined();
    expect(empty.values.listen).toBe('0.0.0.0:15432');
  });

  it('refuses an unknown key, naming the key and the file', async () => {
    const f = file('gw.yaml', 'listen: 0.0.0.0:5432\ntunel-listen: 0.0.0.0:7443\n');
    const r = await run(['--config-file', f]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`error: ${f}: test-gateway has no option 'tunel-listen' (keys are the long option names, see test-gateway --help)\n`);
    // Camel case and the file's own option are not option names either.
    expect((await run(['--config-file', file('c.yaml', 'tunnelListen: x\n')])).stderr).toContain("has no option 'tunnelListen'");
    expect((await run(['--config-file', file('s.yaml', 'config-file: other.yaml\n')])).stderr).toContain("has no option 'config-file'");
  });

  it('refuses values of the wrong shape or outside the choices', async () => {
    const cases: [string, string][] = [
      ['mode: some\n', "mode takes full or none, not 'some'"],
      ['listen: [a, b]\n', 'listen takes one value, not a list'],
      ['listen: true\n', 'listen takes text or a number, not true'],
      ['listen: { host: a }\n', 'listen takes text or a number, not {"host":"a"}'],
      ['json: "yes"\n', 'json is a switch: true or false, not "yes"'],
      ['hook: [http://a, 3, null]\n', 'hook takes text or a list of texts, not null'],
    ];
    for (const [text, message] of cases) {
      const f = file('gw.yaml', text);
      const r = await run(['--config-file', f]);
      expect(r.code, text).toBe(2);
      expect(r.stderr, text).toBe(`error: ${f}: ${message}\n`);
    }
  });

  it('refuses an option that is for the command line only', async () => {
    const f = file('gw.yaml', 'local: true\n');
    const r = await run(['--config-file', f]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`error: ${f}: local is taken from the command line only (--local), not from an options file\n`);
    expect((await run(['--local'])).values.local).toBe(true);
  });

  it('says what is wrong with a file that is missing, not YAML, or not a mapping', async () => {
    const missing = join(tmpdir(), 'warden-no-such-options-file.yaml');
    expect((await run(['--config-file', missing])).stderr).toBe(`error: cannot read the options file ${missing}: no such file\n`);
    const broken = file('b.yaml', 'listen: a\nmode: [\n');
    const r = await run(['--config-file', broken]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`^error: the options file ${broken} is not valid YAML or JSON \\(line \\d\\): `));
    const duplicate = file('d.yaml', 'listen: a\nlisten: b\n');
    expect((await run(['--config-file', duplicate])).stderr).toContain('is not valid YAML or JSON (line 2)');
    const list = file('l.yaml', '- listen\n');
    expect((await run(['--config-file', list])).stderr).toBe(`error: the options file ${list} must be a mapping of option names to values, e.g. "listen: 0.0.0.0:5432"\n`);
  });

  it('serves a subcommand with an action (warden control-plane): the action sees the values', async () => {
    const f = file('cp.yaml', 'listen: 0.0.0.0:7070\n');
    const root = withConventions(new CliCommand('test'), '1.0.0');
    let seen: unknown;
    const sub = (root.command('serve') as CliCommand)
      .addOption(makeOption({ flags: '--listen <HOST:PORT>', description: 'listener', default: '127.0.0.1:7070' }))
      .action(function () {
        seen = this.opts().listen;
      });
    withConventions(withConfigFile(sub as CliCommand), '1.0.0');
    expect(await parseCommandLine(root, ['serve', '--config-file', f], 2)).toBeUndefined();
    expect(seen).toBe('0.0.0.0:7070');
  });
});
