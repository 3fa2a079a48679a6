// One gateway process per outbox: two writers appending to the same segment
// files would interleave and corrupt them. A pid file turns that into an error;
// a pid file left by a killed gateway is taken over.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes `<dir>/lock`; returns the release function. */
export function lockOutbox(dir: string): () => void {
  const file = join(dir, 'lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx', mode: 0o600 });
      let held = true;
      return () => {
        if (held) rmSync(file, { force: true });
        held = false;
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(file, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new Error(`the audit outbox ${dir} is in use by process ${pid}; give each gateway its own --data-dir`);
      }
      rmSync(file, { force: true });
    }
  }
  throw new Error(`could not lock the audit outbox ${dir}`);
}
