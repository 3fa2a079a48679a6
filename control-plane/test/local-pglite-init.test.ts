// Fresh embedded databases are made by a child process, so the memory
// initdb leaves behind is not kept by the long-running `warden start`.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, describe, expect, it } from 'vitest';
import { initPGliteDirs, pgliteDirExists } from '../src/local/pglite-init.js';
import { tempDir } from './helpers.js';

const made: { remove(): void }[] = [];
/** A temp dir removed after the tests. */
function scratch(): string {
  const d = tempDir();
  made.push(d);
  return d.path;
}
afterAll(() => made.forEach((d) => d.remove()));

describe('initPGliteDirs', () => {
  it('creates fresh data directories that open as Postgres, and leaves no lock behind', async () => {
    const root = scratch();
    const dirs = [join(root, 'db'), join(root, 'demo')];
    expect(dirs.map(pgliteDirExists)).toEqual([false, false]);
    await initPGliteDirs(dirs);
    expect(dirs.map(pgliteDirExists)).toEqual([true, true]);
    expect(dirs.map((d) => existsSync(`${d}.lock`))).toEqual([false, false]);
    const db = await PGlite.create(dirs[0]);
    try {
      expect((await db.query<{ n: number }>('SELECT 1 + 1 AS n')).rows).toEqual([{ n: 2 }]);
    } finally {
      await db.close();
    }
  }, 120_000);

  it('leaves an existing directory alone', async () => {
    const dir = join(scratch(), 'db');
    await initPGliteDirs([dir]);
    const db = await PGlite.create(dir);
    await db.exec('CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)');
    await db.close();
    await initPGliteDirs([dir]);
    const again = await PGlite.create(dir);
    try {
      expect((await again.query('SELECT x FROM kept')).rows).toEqual([{ x: 7 }]);
    } finally {
      await again.close();
    }
  }, 120_000);

  it('says which directory it could not create', async () => {
    const root = scratch();
    writeFileSync(join(root, 'file'), 'not a directory');
    await expect(initPGliteDirs([join(root, 'file', 'db')])).rejects.toThrow(/could not create the embedded database in .*file\/db/);
  }, 60_000);
});
