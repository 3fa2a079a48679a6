// The login limits: failed logins counted per address and per login name in
// fixed windows, refusals past the limit counted and reported in sums.
import { describe, expect, it } from 'vitest';
import { LoginLimiter } from '../src/auth/limiter.js';

function limiter(perAddress: number, perName: number) {
  let t = 1_000_000;
  const l = new LoginLimiter({ perAddress, perName, windowMs: 60_000 }, () => t);
  return { l, advance: (ms: number) => (t += ms) };
}

describe('LoginLimiter', () => {
  it('refuses an address once it has failed the limit within the window, and lets it in again after', () => {
    const { l, advance } = limiter(3, 0);
    expect([l.failed('10.0.0.1', 'ci'), l.failed('10.0.0.1', 'ci'), l.failed('10.0.0.1', 'ci')]).toEqual([false, false, true]);
    expect(l.admit('10.0.0.1', 'ci')).toEqual({ by: 'address', key: '10.0.0.1', retryInS: 60 });
    advance(45_000);
    expect(l.admit('10.0.0.1', 'other')).toEqual({ by: 'address', key: '10.0.0.1', retryInS: 15 });
    // Other addresses are not touched.
    expect(l.admit('10.0.0.2', 'ci')).toBeUndefined();
    advance(15_000);
    expect(l.admit('10.0.0.1', 'ci')).toBeUndefined();
  });

  it('refuses a login name failed from many addresses', () => {
    const { l } = limiter(0, 2);
    l.failed('10.0.0.1', 'deployer');
    l.failed('10.0.0.2', 'deployer');
    expect(l.admit('10.0.0.3', 'deployer')).toMatchObject({ by: 'name', key: 'deployer' });
    expect(l.admit('10.0.0.3', 'reader')).toBeUndefined();
    expect(l.admit('10.0.0.3', undefined)).toBeUndefined();
  });

  it('reports each limit in force once per report with the refusals since the last, then drops ended windows', () => {
    const { l, advance } = limiter(1, 0);
    l.failed('10.0.0.9', 'x');
    for (let i = 0; i < 4; i++) l.admit('10.0.0.9', 'x');
    expect(l.report()).toEqual([{ by: 'address', key: '10.0.0.9', failures: 1, refused: 4 }]);
    expect(l.report()).toEqual([]);
    l.admit('10.0.0.9', 'x');
    advance(60_000);
    expect(l.report()).toEqual([{ by: 'address', key: '10.0.0.9', failures: 1, refused: 1 }]);
    expect(l.admit('10.0.0.9', 'x')).toBeUndefined();
  });

  it('with limits of 0 counts and refuses nothing', () => {
    const { l } = limiter(0, 0);
    for (let i = 0; i < 100; i++) expect(l.failed('10.0.0.1', 'ci')).toBe(false);
    expect(l.admit('10.0.0.1', 'ci')).toBeUndefined();
  });

  it('keeps at most 100,000 windows however many addresses fail', () => {
    const { l } = limiter(5, 0);
    for (let i = 0; i < 100_500; i++) l.failed(`a${i}`, undefined);
    expect((l as unknown as { windows: Map<string, unknown> }).windows.size).toBe(100_000);
  });
});
