import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, logFormat, logLevel } from '../src/log.js';

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
    expect(() => logLevel(undefined, { WARDEN_LOG_LEVEL: 'verbose' })).toThrow(/--log-level \(WARDEN_LOG_LEVEL\) takes one of .* not 'verbose'/);
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

  it('writes an error at once even when buffered, with what was buffered before it', async () => {
    const f = file();
    const log = createLogger({ name: 'gw', file: f, buffered: true, env: {} });
    await new Promise<void>((resolve) => log.flush(() => resolve())); // the file is open
    log.info('before');
    expect(readFileSync(f, 'utf8')).toBe('');
    log.child({ component: 'audit' }).error('AUDIT CANNOT RECORD');
    expect(lines(f).map((l) => l.msg)).toEqual(['before', 'AUDIT CANNOT RECORD']);
  });

  it('takes the format from WARDEN_LOG_FORMAT, json by default, an explicit format first', () => {
    expect(logFormat(undefined, {})).toBe('json');
    expect(logFormat(undefined, { WARDEN_LOG_FORMAT: 'Pretty' })).toBe('pretty');
    expect(logFormat('json', { WARDEN_LOG_FORMAT: 'pretty' })).toBe('json');
    expect(() => logFormat('text', {})).toThrow("--log-format (WARDEN_LOG_FORMAT) takes json or pretty, not 'text'");
    expect(() => createLogger({ name: 'x', level: 'loud' })).toThrow(/--log-level \(WARDEN_LOG_LEVEL\) takes one of fatal, .* not 'loud'/);
  });

  it('writes one readable line an entry in the pretty format, secrets still redacted', async () => {
    const f = file();
    const log = createLogger({ name: 'local', file: f, format: 'pretty', env: {} });
    log.debug('dropped at info');
    log.info({ port: 5432, token: 'eyJ.secret' }, 'listening');
    log.warn('careful');
    await new Promise((r) => setTimeout(r, 200));
    const out = readFileSync(f, 'utf8').trim().split('\n');
    expect(out).toHaveLength(2);
    expect(out[0]).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(local\): listening \{"port":5432,"token":"\[redacted\]"\}$/);
    expect(out[1]).toMatch(/ WARN \(local\): careful$/);
  });
});
