// The metrics port of the three programs: Prometheus metrics (prom-client)
// on /metrics, /healthz (the process is alive) and /readyz (it can serve), on
// an HTTP listener of its own (--metrics-listen, WARDEN_METRICS_LISTEN).
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';

export { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** --metrics-listen defaults: one port per program, so they can share a host. */
export const DEFAULT_METRICS_LISTEN = {
  controlPlane: '0.0.0.0:9470',
  gateway: '0.0.0.0:9471',
  agent: '0.0.0.0:9472',
} as const;

/** The --metrics-listen option, alike in every program. */
export const metricsListenOption = (fallback: string) => ({
  flags: '--metrics-listen <HOST:PORT>',
  description: 'HTTP listener for /metrics, /healthz and /readyz',
  env: 'WARDEN_METRICS_LISTEN',
  default: fallback,
});

/** Seconds, for histograms of request-like latencies (0.5 ms to 30 s). */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** A registry with prom-client's default process metrics (CPU, memory, event loop lag, GC). */
export function newRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** host and port of a HOST:PORT listen address ([::1]:9470 for IPv6); throws a sentence naming `flag`. */
export function parseListen(text: string, flag = '--metrics-listen'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`${flag} takes HOST:PORT (e.g. 0.0.0.0:9471; port 0 picks a free one), not '${text}'`);
  return { host: m[1] ?? m[2]!, port };
}

export interface MetricsServerOptions {
  listen: string;
  registry: Registry;
  /** Why the process cannot serve yet (/readyz answers 503 with it), or undefined when it can. */
  notReady(): string | undefined;
}

export interface MetricsServer {
  readonly port: number;
  /** e.g. http://127.0.0.1:9471 (a wildcard host shown as 127.0.0.1). */
  readonly url: string;
  close(): Promise<void>;
}

export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const { host, port } = parseListen(opts.listen);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const text = (code: number, body: string) => {
      res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end(`${body}\n`);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'only GET');
    if (path === '/healthz') return text(200, 'ok');
    if (path === '/readyz') {
      const why = opts.notReady();
      return why === undefined ? text(200, 'ready') : text(503, `not ready: ${why}`);
    }
    if (path === '/metrics') {
      opts.registry.metrics().then(
        (body) => {
          res.writeHead(200, { 'content-type': opts.registry.contentType });
          res.end(body);
        },
        (err: Error) => text(500, `metrics failed: ${err.message}`),
      );
      return;
    }
    text(404, 'not found: try /metrics, /healthz or /readyz');
  });
  // Scrapers keep connections open; they must not hold up a shutdown.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(`cannot serve metrics on ${opts.listen}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.message}`)),
    );
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as { port: number }).port;
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return {
    port: bound,
    url: `http://${shown}:${bound}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A counter whose value is a count kept elsewhere (a plain number on the hot path), read at each scrape. */
export function counterOf(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** A gauge read at each scrape. */
export function gaugeOf(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

/** Seconds, for lags that may grow during an outage (10 ms to 30 min). */
export const LAG_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];

/**
 * A histogram without labels for a hot path: observe() is a bucket search and
 * three additions. prom-client's Histogram allocates and hashes a label set
 * on every observe (about 300 ns a call here, against about 10).
 */
export class LeanHistogram {
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;

  constructor(
    registry: Registry,
    readonly name: string,
    readonly help: string,
    private readonly buckets: readonly number[],
  ) {
    this.counts = new Float64Array(buckets.length + 1);
    registry.registerMetric(this as unknown as Metric);
  }

  observe(value: number): void {
    const b = this.buckets;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }

  /** What the registry formats: cumulative buckets, then sum and count. */
  get() {
    const values: { value: number; labels: Record<string, string | number>; metricName: string }[] = [];
    let cumulative = 0;
    this.buckets.forEach((le, i) => {
      cumulative += this.counts[i]!;
      values.push({ value: cumulative, labels: { le }, metricName: `${this.name}_bucket` });
    });
    values.push({ value: this.count, labels: { le: '+Inf' }, metricName: `${this.name}_bucket` });
    values.push({ value: this.sum, labels: {}, metricName: `${this.name}_sum` });
    values.push({ value: this.count, labels: {}, metricName: `${this.name}_count` });
    return { name: this.name, help: this.help, type: 'histogram' as const, aggregator: 'sum' as const, values };
  }
}
