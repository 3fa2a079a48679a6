// The command-line conventions of the three programs (warden, warden-gateway,
// warden-agent), on commander: --version and --help on every command, options
// that fall back to an environment variable, repeatable options, and usage
// errors as one line that names the command and where its help is.
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option, type ErrorOptions } from 'commander';

/** The version in a package.json, e.g. `packageVersion(new URL('../package.json', import.meta.url))`. */
export function packageVersion(packageJson: URL): string {
  try {
    const pkg = JSON.parse(readFileSync(packageJson, 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export interface OptionSpec {
  /** e.g. '--listen <HOST:PORT>', '-f, --file <FILE>', '--json' */
  flags: string;
  /** One line for --help. */
  description: string;
  /** The environment variable that gives the value when the flag is not given. */
  env?: string;
  default?: string;
  /** How the default reads in --help when it is not the value itself, e.g. "host name". */
  defaultDescription?: string;
  /** May be given several times; the values collect in a list, in order (say so in the description). */
  repeatable?: boolean;
  /** The only values it takes; any other is a usage error naming them. */
  choices?: readonly string[];
}

export function makeOption(spec: OptionSpec): Option {
  const option = new Option(spec.flags, spec.description);
  if (spec.env) option.env(spec.env);
  if (spec.default !== undefined) option.default(spec.default, spec.defaultDescription);
  if (spec.choices) option.choices(spec.choices);
  if (spec.repeatable) option.argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]);
  return option;
}

/** What a command says, instead of the general sentence, when its argument is missing or there are too many. */
export interface ArgumentMessages {
  /** e.g. 'needs the SQL to check' (after "warden policy check "). */
  missing?: string;
  excess?: string;
}

/**
 * A commander command whose usage errors read as one line that names the
 * command: "warden issuers list does not take --sub (see warden issuers list --help)".
 */
export class CliCommand extends Command {
  argumentMessages: ArgumentMessages = {};

  override createCommand(name?: string): CliCommand {
    return new CliCommand(name);
  }

  /** The command as typed, e.g. "warden issuers add". */
  path(): string {
    const names: string[] = [];
    for (let c: Command | null = this; c; c = c.parent) names.unshift(c.name());
    return names.join(' ');
  }

  override error(message: string, options?: ErrorOptions): never {
    return super.error(`error: ${this.explain(message.replace(/^error: /, ''), options?.code)}`, options);
  }

  private explain(message: string, code: string | undefined): string {
    const path = this.path();
    const seeHelp = `(see ${path} --help)`;
    // commander's own suggestion, "(Did you mean --resource?)", kept on the same line.
    const similar = /\(Did you mean ([^?]+)\?\)/.exec(message)?.[1];
    const hint = similar ? `; did you mean ${similar}?` : '';
    const quoted = /'([^']*)'/.exec(message)?.[1] ?? '';
    switch (code) {
      case 'commander.unknownOption':
        return this.commands.length > 0
          ? `${path} does not take ${quoted}${hint}; options go after the command ${seeHelp}`
          : `${path} does not take ${quoted}${hint} ${seeHelp}`;
      case 'commander.unknownCommand': {
        const name = this.args[0] ?? '';
        if (!this.parent) return `unknown command '${name}'${hint} ${seeHelp}`;
        return `unknown subcommand '${name}' for ${path}: use one of ${this.commands.map((c) => c.name()).join(', ')}`;
      }
      case 'commander.missingArgument':
        return `${path} ${this.argumentMessages.missing ?? `needs ${quoted}`}`;
      case 'commander.excessArguments': {
        if (this.argumentMessages.excess) return `${path} ${this.argumentMessages.excess}`;
        const expected = this.registeredArguments.map((a) => a.name());
        if (expected.length === 0) return `${path} takes no argument '${this.args[0] ?? ''}'`;
        return `${path} takes ${expected.length === 1 ? `one ${expected[0]}` : `${expected.length} arguments`}, got: ${this.args.join(' ')}`;
      }
      case 'commander.optionMissingArgument':
        return `${path}: ${quoted} needs a value ${seeHelp}`;
      case 'commander.invalidArgument': {
        const either = (choices: string) => choices.replace(/, ([^,]*)$/, ' or $1');
        const argument = /value '([^']*)' is invalid for argument '([^']*)'\. Allowed choices are (.*)\.$/.exec(message);
        if (argument) return `${path} takes ${either(argument[3]!)} as ${argument[2]}, not '${argument[1]}'`;
        const option = /option '(-[^ ']+)[^']*' argument '([^']*)' is invalid\. Allowed choices are (.*)\.$/.exec(message);
        if (option) return `${path}: ${option[1]} takes ${either(option[3]!)}, not '${option[2]}' ${seeHelp}`;
        return `${path}: ${message}`;
      }
      default:
        return message;
    }
  }
}

/** Gives a command the shared conventions: -V/--version, -h/--help, usage errors thrown as CommanderError. */
export function withConventions<T extends Command>(command: T, version: string): T {
  command
    .version(version, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'print this help')
    .exitOverride()
    .showSuggestionAfterError(true);
  return command;
}

/**
 * Parses the command line and runs the chosen command's action. Returns the
 * exit code when the parse ended the run (0 after --help or --version,
 * `usageExitCode` after a usage error, whose message commander has printed),
 * or undefined when the program goes on. Errors of the actions pass through.
 */
export async function parseCommandLine(program: Command, argv: readonly string[], usageExitCode: number): Promise<number | undefined> {
  try {
    await program.parseAsync(argv, { from: 'user' });
    return undefined;
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    return err.exitCode === 0 ? 0 : usageExitCode;
  }
}
