// What a command declares (its name, help, argument and options) and what it
// gets when it runs: the parsed options, its argument, and the admin client
// built from the connection options.
import { join, resolve } from 'node:path';
import type { ArgumentMessages } from '@warden/proto/cli';
import { readSecretFile } from '../server/secrets.js';
import { DEFAULT_CONTROL_PLANE, type OptionName, type OptionRef } from './args.js';
import { AdminClient } from './client.js';
import { CliError } from './errors.js';

export interface Command {
  /** e.g. "issuers add" */
  name: string;
  /** One line for the list of commands. */
  summary: string;
  /** What follows the command's name in "Usage:", e.g. "NAME --issuer-url URL --audience A [options]". */
  usage: string;
  /** More for --help, below the summary. */
  details?: string;
  /** The one positional argument, if the command takes one; `choices` are all the values it may have. */
  argument?: { name: string; description: string; optional?: boolean; choices?: readonly string[] } & ArgumentMessages;
  options: readonly OptionRef[];
  /** Its options may also come from an options file (--config-file), as for the long-running programs. */
  configFile?: boolean;
  run(ctx: Context): Promise<number | void>;
}

/** Options of every command that talks to a running control plane. */
export const CLIENT_OPTIONS = ['control-plane', 'data-dir', 'ca', 'json'] as const;

export type Values = Partial<Record<OptionName, string | string[] | boolean>>;

export class Context {
  constructor(
    readonly command: string,
    readonly values: Values,
    /** The positional argument, when the command takes one and it was given. */
    readonly argument: string | undefined,
    readonly env: NodeJS.ProcessEnv,
  ) {}

  get json(): boolean {
    return this.values.json === true;
  }

  get dataDir(): string {
    return resolve(this.opt('data-dir') ?? '.warden');
  }

  opt(name: OptionName): string | undefined {
    return this.values[name] as string | undefined;
  }

  many(name: OptionName): string[] {
    return (this.values[name] as string[] | undefined) ?? [];
  }

  /** The argument of a command that requires one (commander has checked it is there). */
  arg(): string {
    return this.argument!;
  }

  print(text: string): void {
    process.stdout.write(`${text}\n`);
  }

  note(text: string): void {
    process.stderr.write(`${text}\n`);
  }

  /** Runs `fn` with an admin client and always closes it. */
  async withAdmin<T>(fn: (client: AdminClient) => Promise<T>): Promise<T> {
    return this.withToken(this.adminToken(), fn);
  }

  /** Runs `fn` with a client that sends `token` (a person's, for approvals; refusals then speak for themselves). */
  async withToken<T>(token: string, fn: (client: AdminClient) => Promise<T>, hint?: string): Promise<T> {
    const address = this.opt('control-plane') ?? DEFAULT_CONTROL_PLANE;
    const client = new AdminClient(address, token, this.opt('ca'), hint);
    try {
      return await fn(client);
    } finally {
      client.close();
    }
  }

  private adminToken(): string {
    const fromEnv = this.env.WARDEN_ADMIN_TOKEN?.trim();
    if (fromEnv) return fromEnv;
    const file = join(this.dataDir, 'admin-token');
    const fromFile = readSecretFile(file);
    if (fromFile) return fromFile;
    throw new CliError(`no admin token: set WARDEN_ADMIN_TOKEN, or point --data-dir (WARDEN_DATA_DIR) at the control plane's data directory (looked for ${file})`);
  }
}
