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
 * @property {number} [controlPlanePid]  Warden: the control plane's process (its CPU is measured
 *   next to the gateway's and agent's, not its memory)
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

/**
 * The processes whose CPU time a pgbench run charges to the path: its pids
 * and, for Warden, the control plane (which stores the audit events).
 * @param {BenchPath} p
 * @returns {Record<string, number>}
 */
export function cpuPids(p) {
  return p.controlPlanePid ? { ...p.pids, controlPlane: p.controlPlanePid } : p.pids;
}
