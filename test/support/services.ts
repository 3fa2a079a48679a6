// Makes sure the services the tests need are reachable before any test runs:
// Postgres and NATS from the environment (defaulting to the machine's own on
// 127.0.0.1); when one is down and a Docker engine is present, testcontainers
// starts it; otherwise the run stops with a message saying how to provide it.
import { execFileSync } from 'node:child_process';
import { connect } from 'node:net';

const PG_URL = process.env.WARDEN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const NATS_URL = process.env.WARDEN_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port, timeout: 2000 });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
    s.once('timeout', () => (s.destroy(), resolve(false)));
  });
}

function dockerAvailable(): boolean {
  try {
    execFileSync('docker', ['info'], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

type Stop = () => Promise<unknown>;

export default async function setup({ provide }: { provide?: (k: string, v: unknown) => void } = {}) {
  const stops: Stop[] = [];
  const pg = new URL(PG_URL);
  let pgUrl = PG_URL;
  let natsUrl = NATS_URL;
  if (!(await reachable(pg.hostname, Number(pg.port || 5432)))) {
    if (!dockerAvailable()) {
      throw new Error(
        `Postgres is not reachable at ${pg.host}. Start it (on Debian: pg_ctlcluster --skip-systemctl-redirect 15 main start), ` +
          'point WARDEN_TEST_PG_URL at one, or run a Docker engine so the tests can start one with testcontainers.',
      );
    }
    const { GenericContainer } = await import('testcontainers');
    const c = await new GenericContainer('postgres:16')
      .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust' })
      .withExposedPorts(5432)
      .start();
    pgUrl = `postgres://postgres@${c.getHost()}:${c.getMappedPort(5432)}/postgres`;
    stops.push(() => c.stop());
  }
  const nats = new URL(NATS_URL);
  if (!(await reachable(nats.hostname, Number(nats.port || 4222)))) {
    if (!dockerAvailable()) {
      throw new Error(
        `NATS is not reachable at ${nats.host}. Start it with JetStream (nats-server -js), point WARDEN_TEST_NATS_URL at one, ` +
          'or run a Docker engine so the tests can start one with testcontainers.',
      );
    }
    const { GenericContainer } = await import('testcontainers');
    const c = await new GenericContainer('nats:2').withCommand(['-js']).withExposedPorts(4222).start();
    natsUrl = `nats://${c.getHost()}:${c.getMappedPort(4222)}`;
    stops.push(() => c.stop());
  }
  process.env.WARDEN_TEST_PG_URL = pgUrl;
  process.env.WARDEN_TEST_NATS_URL = natsUrl;
  // Every gateway, agent and control plane a test starts serves its metrics on a port of its own, never the fixed defaults.
  process.env.WARDEN_METRICS_LISTEN ??= '127.0.0.1:0';
  provide?.('pgUrl', pgUrl);
  provide?.('natsUrl', natsUrl);
  return async () => {
    for (const stop of stops) await stop();
  };
}
