// The `warden` command on commander: one subcommand per Command of
// commands/*.ts, those named "issuers add" and the like under a group command
// ("issuers"), plus `warden completion`.
import { Help, type Command as Commander } from 'commander';
import { CliCommand, makeOption, packageVersion, parseCommandLine, withConfigFile, withConventions } from '@warden/proto/cli';
import { optionSpec, type OptionName, type OptionRef } from './args.js';
import { agentCommands } from './commands/agents.js';
import { approvalCommands } from './commands/approvals.js';
import { auditCommands } from './commands/audit.js';
import { configCommands } from './commands/config.js';
import { policyCommands } from './commands/policy.js';
import { rolesCommands } from './commands/roles.js';
import { serveCommand } from './commands/serve.js';
import { startCommand } from './commands/start.js';
import { tokenCommand } from './commands/token.js';
import { SHELLS, completionScript, type Shell } from './completion.js';
import { Context, type Command, type Values } from './context.js';

export const VERSION = packageVersion(new URL('../../package.json', import.meta.url));

/** What each group of commands is about, for the lists of commands. */
const GROUPS: Record<string, string> = {
  issuers: 'trusted token issuers',
  identities: 'identities: which tokens are who',
  resources: 'databases served by agents',
  grants: 'who may use a resource, and how',
  policy: 'policy as code: apply, diff, history, check',
  roles: "native Postgres roles that back a resource's rules",
  sessions: 'recorded sessions',
  audit: 'the audit trail',
  approvals: 'held statements: list, show, approve, deny',
  agents: 'agent enrollment',
  gateways: 'the gateways',
};

const completionCommand: Command = {
  name: 'completion',
  summary: 'print a shell completion script',
  usage: 'bash|zsh',
  details: 'bash: source <(warden completion bash), e.g. in ~/.bashrc\nzsh:  source <(warden completion zsh) after compinit, or save it as _warden in a directory of $fpath',
  argument: { name: 'SHELL', description: 'the shell', choices: SHELLS },
  options: [],
  async run(ctx) {
    process.stdout.write(completionScript(ctx.arg() as Shell, COMMANDS, GROUPS));
  },
};

const COMMANDS: Command[] = [
  startCommand,
  serveCommand,
  ...configCommands,
  ...policyCommands,
  ...rolesCommands,
  ...auditCommands,
  ...approvalCommands,
  ...agentCommands,
  tokenCommand,
  completionCommand,
];

const PROGRAM_HELP = `
Commands that talk to the control plane take --control-plane HOST:PORT (env WARDEN_CONTROL_PLANE,
default 127.0.0.1:7070), --data-dir DIR (env WARDEN_DATA_DIR, default .warden: the admin token is
read from DIR/admin-token unless WARDEN_ADMIN_TOKEN is set), --ca FILE and --json.
See warden COMMAND --help for the options of each command.`;

const optionName = (ref: OptionRef): OptionName => (typeof ref === 'string' ? ref : ref[0]);

/** "issuers add <NAME>" for the list of every command. */
function leafTerm(cmd: Commander): string {
  const args = cmd.registeredArguments.map((a) => (a.required ? `<${a.name()}>` : `[${a.name()}]`));
  return [(cmd as CliCommand).path().replace(/^\S+ /, ''), ...args].join(' ');
}

function leaves(cmd: Commander): Commander[] {
  return cmd.commands.flatMap((c) => (c.commands.length > 0 ? leaves(c) : [c]));
}

const sentence = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);

function define(parent: CliCommand, spec: Command, done: (code: number) => void): void {
  const cmd = (parent.command(spec.name.split(' ').at(-1)!) as CliCommand)
    .summary(spec.summary)
    .description([sentence(spec.summary), spec.details].filter(Boolean).join('\n\n'))
    .usage(spec.usage);
  if (spec.argument) {
    const { name, description, optional, choices, missing, excess } = spec.argument;
    cmd.argument(optional ? `[${name}]` : `<${name}>`, description);
    if (choices) cmd.registeredArguments.at(-1)!.choices(choices);
    cmd.argumentMessages = { missing, excess };
  }
  const options = spec.options.map((ref) => {
    const option = makeOption(optionSpec(ref));
    cmd.addOption(option);
    return { name: optionName(ref), key: option.attributeName() };
  });
  cmd.action(async () => {
    const values: Values = {};
    for (const { name, key } of options) values[name] = cmd.getOptionValue(key) as Values[OptionName];
    const argument = cmd.processedArgs[0] as string | undefined;
    done((await spec.run(new Context(spec.name, values, argument, process.env))) ?? 0);
  });
  if (spec.configFile) withConfigFile(cmd);
  // After the options, so that --version and --help close the list.
  withConventions(cmd, VERSION);
}

/** The `warden` program; `done` receives the exit code of the command that ran. */
export function program(done: (code: number) => void): CliCommand {
  const root = withConventions(new CliCommand('warden'), VERSION)
    .description('Warden: least privilege between non-human identities and Postgres.')
    .usage('COMMAND [options]')
    .addHelpText('after', PROGRAM_HELP);
  const groups = new Map<string, CliCommand>();
  for (const spec of COMMANDS) {
    const [first, second] = spec.name.split(' ') as [string, string | undefined];
    let parent = root;
    if (second !== undefined) {
      let group = groups.get(first);
      if (!group) {
        group = withConventions(root.command(first) as CliCommand, VERSION)
          .description(sentence(GROUPS[first] ?? ''))
          .usage('COMMAND [options]')
          .helpCommand(false);
        groups.set(first, group);
      }
      parent = group;
    }
    define(parent, spec, done);
  }
  // The program's help lists every command with its argument, as they are
  // typed (the suggestions for a mistyped command still come from the groups).
  root.configureHelp({
    formatHelp(this: Help, cmd: Commander, helper: Help) {
      const listing: Help = Object.create(helper);
      listing.visibleCommands = (c) => [...leaves(c), ...helper.visibleCommands(c).filter((h) => h.name() === 'help')];
      listing.subcommandTerm = (c) => (c.name() === 'help' ? helper.subcommandTerm(c) : leafTerm(c));
      return Help.prototype.formatHelp.call(this, cmd, listing);
    },
  });
  return root;
}

/** Runs one CLI invocation and returns the exit code. */
export async function runCli(argv: string[]): Promise<number> {
  let code = 0;
  const usageError = await parseCommandLine(
    program((c) => (code = c)),
    argv,
    1,
  );
  return usageError ?? code;
}
