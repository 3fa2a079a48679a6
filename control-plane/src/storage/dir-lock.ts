// PGlite data directories must only be opened by one process at a time; a pid
// file next to the directory turns a second opener into a clear error instead
// of a corrupted database.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';

// Locks held by this process. A lock file carrying our own pid but not listed
// here is stale: containers often restart a crashed process under the same pid.
const held = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes `<dir>.lock`; returns the function that releases it. */
export function lockDirectory(dir: string): () => void {
  const file = `${resolve(dir)}.lock`;
  if (held.has(file)) throw new Error(`${dir} is already open in this process`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx', mode: 0o600 });
      held.add(file);
      return () => {
        if (held.delete(file)) rmSync(file, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(file, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new Error(`${dir} is in use by another Warden process (pid ${pid}); if that process is not Warden, remove ${file}`);
      }
      rmSync(file, { force: true });
    }
  }
  throw new Error(`could not lock ${dir}`);
}
