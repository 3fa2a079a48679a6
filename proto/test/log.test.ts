import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, logLevel } from '../src/log.js';

describe('logger setup', () => {
  const dirs: string[] = [];
  const file = () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-log-'));
    dirs.push(dir);
    return join(dir, 'sub', 'x.log');
  };
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
  const lines = (f: string) => readFileSync(f, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

  it('takes the level from WARDEN_LOG_LEVEL, info by default, an explicit level first', () => {
    expect(logLevel(undefined, {})).toBe('info');
    expect(logLevel(undefined, { WARDEN_LOG_LEVEL: 'DEBUG ' })).toBe('debug');
    expect(logLevel('warn', { WARDEN_LOG_LEVEL: 'debug' })).toBe('warn');
    expect(() => logLevel(undefined, { WARDEN_LOG_LEVEL: 'verbose' })).toThrow(/WARDEN_LOG_LEVEL takes one of .* not 'verbose'/);
  });

  it('writes JSON lines at the chosen level, owner-only, secrets redacted', () => {
    const f = file();
    const log = createLogger({ name: 'test', file: f, env: { WARDEN_LOG_LEVEL: 'warn' } });
    log.info('dropped');
    log.warn({ token: 'eyJ.secret', auth: { password: 'hunter2' } }, 'kept');
    const out = lines(f);
    expect(out.map((l) => l.msg)).toEqual(['kept']);
    expect(out[0]).toMatchObject({ name: 'test', token: '[redacted]', auth: { password: '[redacted]' } });
    expect(statSync(f).mode & 0o777).toBe(0o600);
  });

  it('buffers when asked and still writes everything on flush', () => {
    const f = file();
    const log = createLogger({ name: 'gw', file: f, buffered: true, env: { WARDEN_LOG_LEVEL: 'debug' } });
    log.debug('one');
    log.info('two');
    log.flush();
    return new Promise<void>((resolve) =>
      setTimeout(() => {
        expect(lines(f).map((l) => l.msg)).toEqual(['one', 'two']);
        resolve();
      }, 200),
    );
  });
});
