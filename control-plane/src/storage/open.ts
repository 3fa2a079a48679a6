// Opens the control-plane database: Postgres when a URL is given, otherwise
// embedded PGlite under the data directory. Migrations run on every open.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { lockDirectory } from './dir-lock.js';
import { migrate } from './migrations.js';
import { PGliteDialect } from './pglite-dialect.js';
import { Repository } from './repository.js';
import type { Database } from './schema.js';

export interface StorageOptions {
  /** postgres://… ; when absent, PGlite in `<dataDir>/db`. */
  databaseUrl?: string;
  dataDir?: string;
}

export interface Storage {
  readonly kind: 'postgres' | 'pglite';
  /** Where the data lives, without credentials (for logs and banners). */
  readonly location: string;
  readonly db: Kysely<Database>;
  readonly repo: Repository;
  close(): Promise<void>;
}

/** A connection URL safe to print: the password is replaced. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable database URL)';
  }
}

export async function openStorage(opts: StorageOptions): Promise<Storage> {
  if (opts.databaseUrl) return openPostgres(opts.databaseUrl);
  if (!opts.dataDir) throw new Error('either a database URL or a data directory is needed');
  return openPGlite(join(opts.dataDir, 'db'));
}

async function openPostgres(url: string): Promise<Storage> {
  const location = redactUrl(url);
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  // An idle client losing its connection must not crash the process; the pool replaces it.
  pool.on('error', () => {});
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  try {
    await sql`select 1`.execute(db);
  } catch (err) {
    await db.destroy();
    throw new Error(`cannot connect to the database at ${location}: ${(err as Error).message}`);
  }
  return finish('postgres', location, db, async () => {});
}

/**
 * PGlite's startup options for an embedded database in a long-running
 * process: Postgres' default 128 MB of shared buffers (all touched at start)
 * would be most of the process's memory; 16 MB hold the working set here.
 */
export function embeddedPGliteOptions(): { startParams: string[] } {
  return { startParams: [...PGlite.defaultStartParams, '-c', 'shared_buffers=16MB'] };
}

async function openPGlite(dir: string): Promise<Storage> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const unlock = lockDirectory(dir);
  try {
    const pglite = await PGlite.create(dir, embeddedPGliteOptions());
    const db = new Kysely<Database>({ dialect: new PGliteDialect(pglite) });
    return await finish('pglite', dir, db, async () => unlock());
  } catch (err) {
    unlock();
    throw err;
  }
}

async function finish(
  kind: Storage['kind'],
  location: string,
  db: Kysely<Database>,
  after: () => Promise<void>,
): Promise<Storage> {
  try {
    await migrate(db);
  } catch (err) {
    await db.destroy();
    throw err;
  }
  const repo = new Repository(db);
  let closed: Promise<void> | undefined;
  return {
    kind,
    location,
    db,
    repo,
    close: () => (closed ??= db.destroy().then(after)),
  };
}
