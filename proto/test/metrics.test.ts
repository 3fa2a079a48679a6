import { describe, expect, it } from 'vitest';
import { LeanHistogram, Registry, counterOf, gaugeOf, parseListen, startMetricsServer } from '../src/metrics.js';

describe('--metrics-listen', () => {
  it('takes HOST:PORT, IPv6 in brackets, port 0 to 65535', () => {
    expect(parseListen('0.0.0.0:9471')).toEqual({ host: '0.0.0.0', port: 9471 });
    expect(parseListen(' localhost:0 ')).toEqual({ host: 'localhost', port: 0 });
    expect(parseListen('[::1]:9470')).toEqual({ host: '::1', port: 9470 });
  });

  it('refuses anything else with a sentence naming the flag', () => {
    for (const bad of ['9471', ':9471', '0.0.0.0:', 'host:99999', '::1:9470', 'a b:1', 'host:port']) {
      expect(() => parseListen(bad), bad).toThrow(`--metrics-listen takes HOST:PORT (e.g. 0.0.0.0:9471; port 0 picks a free one), not '${bad}'`);
    }
  });
});

describe('metrics server', () => {
  it('serves /metrics, /healthz, and /readyz as 503 with the reason until ready', async () => {
    const registry = new Registry();
    let count = 0;
    counterOf(registry, 'warden_test_total', 'a test count', () => count);
    gaugeOf(registry, 'warden_test_level', 'a test level', () => 7);
    let why: string | undefined = 'still starting';
    const server = await startMetricsServer({ listen: '127.0.0.1:0', registry, notReady: () => why });
    try {
      const get = async (path: string, method = 'GET') => {
        const res = await fetch(`${server.url}${path}`, { method });
        return [res.status, await res.text()];
      };
      expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
      expect(await get('/healthz')).toEqual([200, 'ok\n']);
      expect(await get('/readyz')).toEqual([503, 'not ready: still starting\n']);
      why = undefined;
      expect(await get('/readyz')).toEqual([200, 'ready\n']);
      count = 3;
      const [status, body] = await get('/metrics');
      expect(status).toBe(200);
      expect(body).toContain('# TYPE warden_test_total counter\nwarden_test_total 3\n');
      expect(body).toContain('warden_test_level 7\n');
      count = 5;
      expect((await get('/metrics'))[1]).toContain('warden_test_total 5\n');
      expect(await get('/other')).toEqual([404, 'not found: try /metrics, /healthz or /readyz\n']);
      expect((await get('/metrics', 'POST'))[0]).toBe(405);
    } finally {
      await server.close();
    }
  });

  it('says which address it could not listen on', async () => {
    const registry = new Registry();
    const first = await startMetricsServer({ listen: '127.0.0.1:0', registry, notReady: () => undefined });
    try {
      await expect(startMetricsServer({ listen: `127.0.0.1:${first.port}`, registry, notReady: () => undefined })).rejects.toThrow(
        `cannot serve metrics on 127.0.0.1:${first.port}: the port is in use`,
      );
    } finally {
      await first.close();
    }
  });
});

describe('LeanHistogram', () => {
  it('reads like a prom-client histogram: cumulative buckets with le, +Inf, sum and count', async () => {
    const registry = new Registry();
    const h = new LeanHistogram(registry, 'warden_test_seconds', 'a test latency', [0.01, 0.1, 1]);
    for (const v of [0.25, 0.01, 0.0625, 0.5, 7]) h.observe(v);
    expect(await registry.metrics()).toBe(
      [
        '# HELP warden_test_seconds a test latency',
        '# TYPE warden_test_seconds histogram',
        'warden_test_seconds_bucket{le="0.01"} 1',
        'warden_test_seconds_bucket{le="0.1"} 2',
        'warden_test_seconds_bucket{le="1"} 4',
        'warden_test_seconds_bucket{le="+Inf"} 5',
        'warden_test_seconds_sum 7.8225',
        'warden_test_seconds_count 5',
        '',
      ].join('\n'),
    );
    await registry.resetMetrics();
    expect(await registry.metrics()).toContain('warden_test_seconds_count 0\n');
  });
});
