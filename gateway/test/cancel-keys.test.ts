// The gateway's cancel keys: what a CancelRequest matches here, and how many
// unknown keys it relays to the agents (an unauthenticated client must not
// make the gateway flood them).
import { describe, expect, it } from 'vitest';
import { CancelKeys, secretBytes } from '../src/tunnel/cancel-keys.js';

function session() {
  return { cancels: 0, cancel() { this.cancels++; } };
}

describe('cancel keys', () => {
  it('a session keeps one key; only the exact pair cancels it; a released key matches nothing', () => {
    const relayed: Array<[number, Buffer]> = [];
    const keys = new CancelKeys({ relay: (pid, secret) => relayed.push([pid, secret]) });
    const s = session();
    const key = keys.issue(s);
    expect(keys.issue(s)).toEqual(key);
    expect(key.pid).toBeGreaterThan(0);

    expect(keys.cancel(key.pid, key.secret ^ 1, 'a')).toBe(false);
    expect(keys.cancel(key.pid + 1, key.secret, 'a')).toBe(false);
    expect(s.cancels).toBe(0);
    // Not ours (or not quite): the agents are asked, with the secret as the client sent it.
    expect(relayed).toEqual([
      [key.pid, secretBytes(key.secret ^ 1)],
      [key.pid + 1, secretBytes(key.secret)],
    ]);

    expect(keys.cancel(key.pid, key.secret, 'a')).toBe(true);
    expect(s.cancels).toBe(1);
    expect(relayed).toHaveLength(2);

    keys.release(s);
    expect(keys.size).toBe(0);
    expect(keys.cancel(key.pid, key.secret, 'a')).toBe(false);
    expect(s.cancels).toBe(1);
  });

  it('relays at most a burst per client address, and at most a burst in all', () => {
    let relayed = 0;
    const keys = new CancelKeys({ relay: () => relayed++, perAddress: { burst: 3, perSecond: 0.001 }, total: { burst: 5, perSecond: 0.001 } });
    for (let i = 0; i < 10; i++) keys.cancel(1000 + i, i, '192.0.2.1');
    expect(relayed).toBe(3);
    for (let i = 0; i < 10; i++) keys.cancel(2000 + i, i, '192.0.2.2');
    expect(relayed).toBe(5);
    // Keys of this gateway are never limited.
    const s = session();
    const key = keys.issue(s);
    for (let i = 0; i < 10; i++) expect(keys.cancel(key.pid, key.secret, '192.0.2.1')).toBe(true);
    expect(s.cancels).toBe(10);
  });
});
