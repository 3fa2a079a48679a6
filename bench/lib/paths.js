// The connection paths under test share one shape, so every measurement
// treats direct, PgBouncer, the bare relays and Warden alike.

/**
 * @typedef {object} BenchPath
 * @property {string} id        'direct' | 'pgbouncer' | 'node-pipe' | 'warden' | 'warden+<variant>'
 * @property {string} label
 * @property {'direct' | 'pgbouncer' | 'pipe' | 'warden'} kind
 * @property {string} [note]
 * @property {string} [version]
 * @property {string[]} [extraArgs]
 * @property {string[]} [topologyArgs]  Warden: the options that set storage and audit transport
 * @property {() => Promise<import('./pgbench.js').Conn>} conn  connection parameters (Warden: fresh token when needed)
 * @property {Record<string, number>} pids  processes whose CPU and memory are measured
 * @property {() => Promise<void>} [releaseServers]  PgBouncer: close its idle server connections
 * @property {() => Promise<number>} [storedAuditEvents]  Warden on Postgres: audit events its control plane stored
 * @property {() => Promise<void>} stop
 */

/**
 * Straight to Postgres over TCP.
 * @param {import('./pgbench.js').Conn} conn
 * @returns {BenchPath}
 */
export function directPath(conn) {
  return {
    id: 'direct',
    label: 'direct',
    kind: 'direct',
    note: `postgres ${conn.host}:${conn.port}`,
    conn: async () => conn,
    pids: {},
    stop: async () => {},
  };
}
