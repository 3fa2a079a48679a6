// What every command gets: parsed options, the rest of the positionals, and
// the admin client built from the global options.
import { join, resolve } from 'node:path';
import { readSecretFile } from '../server/secrets.js';
import { list, str1, type OptionName, type Values } from './args.js';
import { AdminClient } from './client.js';
import { CliError } from './errors.js';

export const DEFAULT_CONTROL_PLANE = '127.0.0.1:7070';

export interface Command {
  /** e.g. "issuers add" */
  name: string;
  usage: string;
  options: readonly OptionName[];
  run(ctx: Context): Promise<number | void>;
}

/** Options of every command that talks to a running control plane. */
export const CLIENT_OPTIONS = ['control-plane', 'data-dir', 'ca', 'json'] as const;

export class Context {
  constructor(
    readonly command: string,
    readonly values: Values,
    readonly args: string[],
    readonly env: NodeJS.ProcessEnv,
  ) {}

  get json(): boolean {
    return this.values.json === true;
  }

  get dataDir(): string {
    return resolve(str1(this.values, 'data-dir') ?? this.env.WARDEN_DATA_DIR ?? '.warden');
  }

  opt(name: OptionName): string | undefined {
    return str1(this.values, name);
  }

  many(name: OptionName): string[] {
    return list(this.values, name);
  }

  /** The single positional argument the command needs, e.g. NAME. */
  arg(label: string): string {
    if (this.args.length !== 1) {
      throw new CliError(
        this.args.length === 0 ? `warden ${this.command} needs ${label}` : `warden ${this.command} takes one ${label}, got: ${this.args.join(' ')}`,
      );
    }
    return this.args[0]!;
  }

  noArgs(): void {
    if (this.args.length > 0) throw new CliError(`warden ${this.command} takes no argument '${this.args[0]}'`);
  }

  print(text: string): void {
    process.stdout.write(`${text}\n`);
  }

  note(text: string): void {
    process.stderr.write(`${text}\n`);
  }

  /** Runs `fn` with an admin client and always closes it. */
  async withAdmin<T>(fn: (client: AdminClient) => Promise<T>): Promise<T> {
    const address = this.opt('control-plane') ?? this.env.WARDEN_CONTROL_PLANE ?? DEFAULT_CONTROL_PLANE;
    const client = new AdminClient(address, this.adminToken(), this.opt('ca'));
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
