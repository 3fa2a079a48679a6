// Dispatch of `warden <command> [subcommand] ...`.
import { allowOnly, parse } from './args.js';
import { agentCommands } from './commands/agents.js';
import { auditCommands } from './commands/audit.js';
import { configCommands } from './commands/config.js';
import { policyCommands } from './commands/policy.js';
import { rolesCommands } from './commands/roles.js';
import { serveCommand } from './commands/serve.js';
import { startCommand } from './commands/start.js';
import { tokenCommand } from './commands/token.js';
import { Context, type Command } from './context.js';
import { CliError } from './errors.js';

const COMMANDS: Command[] = [startCommand, serveCommand, ...configCommands, ...policyCommands, ...rolesCommands, ...auditCommands, ...agentCommands, tokenCommand];

const GLOBAL_HELP = `Global options for commands that talk to the control plane:
  --control-plane HOST:PORT   (WARDEN_CONTROL_PLANE, default 127.0.0.1:7070)
  --data-dir DIR              (WARDEN_DATA_DIR, default .warden; admin token read from DIR/admin-token
                               unless WARDEN_ADMIN_TOKEN is set)
  --ca FILE                   CA certificate for a TLS control plane
  --json                      JSON output`;

export function usage(): string {
  return ['Usage:', ...COMMANDS.map((c) => `  ${c.usage.split('\n')[0]}`), '', GLOBAL_HELP].join('\n');
}

function find(positionals: string[]): { command?: Command; rest: string[] } {
  const [first = '', second = ''] = positionals;
  const two = COMMANDS.find((c) => c.name === `${first} ${second}`);
  if (two) return { command: two, rest: positionals.slice(2) };
  const one = COMMANDS.find((c) => c.name === first);
  if (one) return { command: one, rest: positionals.slice(1) };
  const subs = COMMANDS.filter((c) => c.name.startsWith(`${first} `)).map((c) => c.name.split(' ')[1]);
  if (subs.length > 0) {
    const what = second ? `unknown subcommand '${second}' for` : 'missing subcommand for';
    throw new CliError(`${what} warden ${first}: use one of ${subs.join(', ')}`);
  }
  throw new CliError(`unknown command '${first}' (see warden --help)`);
}

/** Runs one CLI invocation and returns the exit code. */
export async function runCli(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { values, positionals } = parse(argv);
  if (positionals.length === 0 || positionals[0] === 'help') {
    const asked = values.help === true || positionals[0] === 'help';
    (asked ? process.stdout : process.stderr).write(`${usage()}\n`);
    return asked ? 0 : 1;
  }
  const { command, rest } = find(positionals);
  if (!command) throw new CliError('unreachable');
  if (values.help) {
    process.stdout.write(`Usage: ${command.usage}\n`);
    return 0;
  }
  allowOnly(values, command.options, command.name);
  return (await command.run(new Context(command.name, values, rest, env))) ?? 0;
}
