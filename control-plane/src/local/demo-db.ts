// The demo database: PGlite on disk, served over the Postgres wire protocol
// by pglite-socket.
//
// pglite-socket 0.2.x accepts `maxConnections` clients (its default is 1; more
// are answered with "Too many connections" and closed). They all share ONE
// PGlite session: queries are queued and run one at a time, a transaction
// keeps the session until it ends, and session state (SET, prepared
// statements, temp tables) is shared. Startup parameters, user, database and
// password are ignored (every client is "postgres" on database "postgres"),
// and CancelRequest is ignored. Good enough for a demo, not for a load test.
// The one exception is the session's role: demo-roles.ts keeps one per client.
import { mkdirSync } from 'node:fs';
import type { PGlite as PGliteType } from '@electric-sql/pglite';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { lockDirectory } from '../storage/dir-lock.js';
import { PerClientRoles } from './demo-roles.js';
import { seedDemo } from './demo-seed.js';

/** Enough for a few psql sessions plus the agent's readiness check. */
export const DEMO_MAX_CONNECTIONS = 8;
export const DEMO_DATABASE = 'postgres';
export const DEMO_USER = 'postgres';
/**
 * The demo's few rows need next to no cache: 1 MB of shared buffers, where
 * Postgres' default 128 MB would be touched whole at start (about 25 MB less
 * resident than with the control plane store's 16 MB).
 */
const DEMO_PGLITE_OPTIONS = { startParams: [...PGlite.defaultStartParams, '-c', 'shared_buffers=1MB'] };

export interface DemoDatabase {
  host: string;
  port: number;
  /** True when this start created and filled the tables. */
  seeded: boolean;
  /** False when each client's SET ROLE holds for all of them (pglite-socket not as expected). */
  rolePerClient: boolean;
  /** Runs a script (several statements) on the database, outside the wire server. */
  exec(sql: string): Promise<void>;
  close(): Promise<void>;
}

export async function startDemoDatabase(dir: string, host: string, port: number): Promise<DemoDatabase> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const unlock = lockDirectory(dir);
  let db: PGliteType | undefined;
  try {
    db = await PGlite.create(dir, DEMO_PGLITE_OPTIONS);
    const seeded = await seedDemo(db);
    const roles = new PerClientRoles(db);
    const server = new PGLiteSocketServer({ db: roles.db, host, port, maxConnections: DEMO_MAX_CONNECTIONS });
    const rolePerClient = roles.attach(server);
    await server.start();
    // The server reports the bound port only through its connection string.
    const bound = Number(server.getServerConn().split(':').pop());
    const pg = db;
    let closed: Promise<void> | undefined;
    return {
      host,
      port: bound,
      seeded,
      rolePerClient,
      exec: async (sql) => {
        await pg.exec(sql);
      },
      close: () =>
        (closed ??= (async () => {
          await server.stop();
          await pg.close();
          unlock();
        })()),
    };
  } catch (err) {
    await db?.close().catch(() => {});
    unlock();
    throw err;
  }
}
