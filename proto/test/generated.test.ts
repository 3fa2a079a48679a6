// The generated stubs are checked in; regenerating them must change nothing,
// or a .proto edit was committed without its stubs.
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)],
  );
}

it('buf generate reproduces the checked-in stubs exactly', () => {
  const out = mkdtempSync(join(tmpdir(), 'warden-gen-'));
  try {
    execFileSync(join(ROOT, 'node_modules/.bin/buf'), ['generate', '-o', out], { cwd: ROOT, stdio: 'pipe' });
    const fresh = join(out, 'proto/src/gen');
    const checkedIn = join(ROOT, 'proto/src/gen');
    const names = (d: string) => files(d).map((f) => relative(d, f)).sort();
    expect(names(fresh)).toEqual(names(checkedIn));
    for (const name of names(fresh)) {
      expect(readFileSync(join(fresh, name), 'utf8'), `${name} is stale: run npm run generate`).toBe(readFileSync(join(checkedIn, name), 'utf8'));
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
