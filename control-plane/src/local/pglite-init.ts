// Creating a PGlite data directory runs initdb, a WebAssembly program of its
// own. Its compiled code and memory stay in the process that ran it (freed
// late or kept by the allocator): about 500 MB on the first start of
// `warden start`, which is long-lived. So a fresh directory is made by a
// short-lived child process, and `warden start` only opens it.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { lockDirectory } from '../storage/dir-lock.js';
import { embeddedPGliteOptions } from '../storage/open.js';

const HERE = fileURLToPath(import.meta.url);
// The compiled script, also when this module runs from its TypeScript source (tests).
const SCRIPT = fileURLToPath(new URL('../../dist/local/pglite-init.js', import.meta.url));
const INIT_TIMEOUT_MS = 120_000;

/** Does `dir` already hold a PGlite (Postgres) data directory? */
export function pgliteDirExists(dir: string): boolean {
  return existsSync(join(dir, 'PG_VERSION'));
}

/** Runs initdb for each directory not yet made, in a child process. */
export async function initPGliteDirs(dirs: string[]): Promise<void> {
  const fresh = dirs.filter((d) => !pgliteDirExists(d));
  if (fresh.length === 0) return;
  await new Promise<void>((done, fail) => {
    execFile(process.execPath, [SCRIPT, ...fresh], { timeout: INIT_TIMEOUT_MS }, (err, _stdout, stderr) => {
      if (err) fail(new Error(`could not create the embedded database in ${fresh.join(', ')}: ${stderr.trim() || err.message}`));
      else done();
    });
  });
}

async function initHere(dirs: string[]): Promise<void> {
  for (const dir of dirs) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const unlock = lockDirectory(dir);
    try {
      const db = await PGlite.create(dir, embeddedPGliteOptions());
      await db.close();
    } finally {
      unlock();
    }
  }
}

if (process.argv[1] && resolve(process.argv[1]) === HERE) {
  initHere(process.argv.slice(2)).then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}
