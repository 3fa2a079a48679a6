// Turning results into the targets verdicts and the printed report.

export const TARGETS = {
  addedP50Us: 100, // added p50 latency at 1 client, µs (at most)
  tpsRatio8: 0.3, // TPS at 8 clients relative to direct (at least) ...
  tpsRatio8Goal: 0.4, // ... on the way to this standing goal
  gatewayCpuUs8: 35, // gateway CPU per statement at 8 clients, µs (at most)
  setupPerSecond: 500, // new sessions per second (at least)
  idleKiB: 64, // KiB per idle session, gateway + agent together (at most)
  peakRssMB: 200, // peak RSS per process while streaming 1 GB, MB (below)
  startRssMB: 400, // VmRSS of `warden start` with the demo database, all processes, MB (below)
  ingestCpuUs: 15, // control plane CPU per stored audit event, µs (at most)
  maskingPct: 30, // masking overhead on the masking query's time through Warden, % (at most)
  soakGrowthPct: 10, // soak: VmRSS growth per process from minute 1 to the end, % (at most)
};

const MB = 1e6;

/** A target line: `value` null means not measured (n/a). */
function verdict(path, name, value, display, target, pass) {
  return { path, name, value, display: value === null ? 'n/a' : display, target, pass: value === null ? null : pass };
}

/**
 * PASS/MISS lines for every Warden row (the full chain and any variants),
 * the memory of `warden start` and the audit ingest.
 * @param {any} results
 */
export function computeTargets(results) {
  const out = [];
  // Every Warden row that was started; figures it could not produce are n/a.
  const wardenIds = results.paths.filter((p) => p.kind === 'warden' && !p.skipped && !(p.error && p.notStarted)).map((p) => p.id);
  for (const id of results.options.only === null ? wardenIds : []) {
    for (const mode of ['simple', 'prepared']) {
      const r1 = results.rows.find((r) => r.path === id && r.mode === mode && r.clients === 1);
      const v = r1?.addedP50Us ?? null;
      out.push({ path: id, name: `added p50 latency, 1 client, ${mode}`, value: v, display: v === null ? 'n/a' : `${sign(v)} µs`, target: `≤ ${TARGETS.addedP50Us} µs`, pass: v === null ? null : v <= TARGETS.addedP50Us });
    }
    for (const mode of ['simple', 'prepared']) {
      const r8 = results.rows.find((r) => r.path === id && r.mode === mode && r.clients === 8);
      const v = r8?.tpsRatio ?? null;
      out.push(verdict(id, `TPS at 8 clients vs direct, ${mode}`, v, `${v?.toFixed(2)} ×`,
        `≥ ${TARGETS.tpsRatio8} × (goal ${TARGETS.tpsRatio8Goal} ×)`, v >= TARGETS.tpsRatio8));
    }
    const gatewayCpu = (/** @type {string} */ mode, /** @type {number} */ clients) =>
      results.rows.find((r) => r.path === id && r.mode === mode && r.clients === clients)?.cpuMicrosPerStatement?.gateway ?? null;
    for (const mode of ['simple', 'prepared']) {
      const v = gatewayCpu(mode, 8);
      out.push(verdict(id, `gateway CPU per statement, 8 clients, ${mode}`, v, `${v?.toFixed(1)} µs`, `≤ ${TARGETS.gatewayCpuUs8} µs`, v <= TARGETS.gatewayCpuUs8));
    }
    for (const clients of [1, 8]) {
      const simple = gatewayCpu('simple', clients);
      const prepared = gatewayCpu('prepared', clients);
      const v = simple === null || prepared === null ? null : simple - prepared;
      out.push(verdict(id, `gateway CPU per statement, ${clients} client${clients > 1 ? 's' : ''}, simple vs prepared`, v,
        `${simple?.toFixed(1)} vs ${prepared?.toFixed(1)} µs`, 'simple ≤ prepared', v <= 0));
    }
    const setup = results.sessionSetup.find((x) => x.path === id && !x.error);
    const setupDirect = results.sessionSetup.find((x) => x.path === 'direct' && !x.error);
    const rate = setup?.perSecond ?? null;
    out.push(verdict(id, `session setup rate${setupDirect ? ` (direct ${setupDirect.perSecond.toFixed(0)}/s)` : ''}`, rate,
      `${rate?.toFixed(0)}/s${setupDirect ? ` = ${(rate / setupDirect.perSecond).toFixed(2)} × direct` : ''}`,
      `≥ ${TARGETS.setupPerSecond}/s`, rate >= TARGETS.setupPerSecond));
    const mem = results.idleMemory.find((m) => m.path === id);
    const kib = mem?.perSessionKiBTotal ?? null;
    out.push({
      path: id,
      name: `memory per idle session, gateway+agent (${mem ? `${mem.opened} sessions` : 'not measured'})`,
      value: kib, display: kib === null ? 'n/a' : `${kib.toFixed(1)} KiB`, target: `≤ ${TARGETS.idleKiB} KiB`,
      pass: kib === null ? null : kib <= TARGETS.idleKiB,
    });
    const st = results.streaming.find((s) => s.path === id);
    for (const proc of ['gateway', 'agent']) {
      const b = st?.peakRssBytes?.[proc] ?? null;
      out.push({
        path: id, name: `peak RSS streaming ${st ? fmtGB(st.bytes) : '1 GB'}, ${proc}`,
        value: b === null ? null : b / MB, display: b === null ? 'n/a' : `${(b / MB).toFixed(1)} MB`, target: `< ${TARGETS.peakRssMB} MB`,
        pass: b === null ? null : b / MB < TARGETS.peakRssMB,
      });
    }
  }
  out.push(...memoryTargets(results.memory));
  out.push(...ingestTargets(results.ingest));
  out.push(...maskingTargets(results.masking));
  out.push(...soakTargets(results.soak));
  return out;
}

/** Names of the soak's processes in the report. */
const SOAK_NAMES = { gateway: 'gateway', agent: 'agent', controlPlane: 'control plane' };

/**
 * Memory flat in the soak, per process: growth from minute 1 to the end at
 * most soakGrowthPct. A run with any error, lost session or unchecked write
 * misses every target whatever the memory did.
 * @param {any} s  results.soak
 */
function soakTargets(s) {
  if (!s) return [];
  const clean = s.errors === 0 && s.openAtEnd === s.sessions && s.writesChecked;
  const why = clean ? '' : ` (${s.errors} errors, ${s.openAtEnd}/${s.sessions} open at the end${s.writesChecked ? '' : ', writes not all stored'})`;
  return s.processes.map((/** @type {any} */ p) => verdict(`soak ${SOAK_NAMES[p.name] ?? p.name}`,
    `memory flat: VmRSS growth from minute 1 to the end, ${s.sessions} sessions, ${fmtMinutes(s.minutes)}`, p.growthPct,
    `${sign1(p.growthPct)} % (${sign1(p.growthBytes / MB)} MB)${why}`, `≤ ${TARGETS.soakGrowthPct} %, 0 errors`,
    clean && p.growthPct <= TARGETS.soakGrowthPct));
}

const sign1 = (/** @type {number} */ v) => `${v >= 0 ? '+' : ''}${v?.toFixed(1)}`;
const fmtMinutes = (/** @type {number} */ m) => `${Number.isInteger(m) ? m : m.toFixed(1)} min`;

/**
 * The soak: sessions, statements, errors, and VmRSS per process.
 * @param {any} s  results.soak
 */
function soakSection(s) {
  if (!s) return [];
  const lines = ['', `Soak: ${s.sessions} sessions through the Warden chain (production topology) held open for ${fmtMinutes(s.minutes)}, ` +
    `each running a SELECT and an UPDATE of its own row every ${s.periodSeconds} s (node-postgres, ${s.clientProcesses} client processes); ` +
    `VmRSS sampled every ${s.sampleSeconds} s`];
  lines.push(`  on ${s.server}`);
  lines.push(`  sessions opened in ${s.openSeconds.toFixed(1)} s, ${s.openAtEnd} of ${s.sessions} still open at the end; ` +
    `${s.statements.toLocaleString('en-US')} statements (${s.reads.toLocaleString('en-US')} reads, ${s.writes.toLocaleString('en-US')} writes) in ${s.runSeconds.toFixed(0)} s = ` +
    `${s.statementsPerSecond.toFixed(0)}/s, ${s.errors} errors, ${s.late} late ticks`);
  lines.push(`  writes stored in the table: ${s.writesStored.toLocaleString('en-US')} (${s.writesChecked ? 'all of them' : `CHECK FAILED: the clients counted ${s.writes}`})` +
    (s.auditEventsStored != null ? `; audit events stored by the control plane: ${s.auditEventsStored.toLocaleString('en-US')}` : ''));
  for (const e of s.firstErrors ?? []) lines.push(`  error: ${e.split('\n')[0]}`);
  const base = s.processes[0]?.baselineSeconds ?? 60;
  lines.push(table(['process', `RSS at ${base === 60 ? 'minute 1' : `${base.toFixed(0)} s`} MB`, 'at the end MB', 'peak MB', 'growth MB', 'growth %'],
    s.processes.map((/** @type {any} */ p) => [SOAK_NAMES[p.name] ?? p.name, f(p.minute1Bytes / MB, 1), f(p.endBytes / MB, 1), f(p.peakBytes / MB, 1),
      sign1(p.growthBytes / MB), sign1(p.growthPct)]), 1));
  lines.push(`  minute 1: mean of the samples within ±15 s of it; the end: mean of the last 30 s; peak: the largest sample. MB = 10⁶ bytes.`);
  return lines;
}

/**
 * VmRSS of `warden start` with its demo database, all processes together.
 * @param {any} m  results.memory
 */
function memoryTargets(m) {
  if (!m) return [];
  const mb = m.totalRssBytes == null ? null : m.totalRssBytes / MB;
  return [verdict('warden start (demo)', `VmRSS of all its processes${m.processes ? ` (${m.processes.length})` : ''}, demo database`, mb,
    `${mb?.toFixed(1)} MB`, `< ${TARGETS.startRssMB} MB`, mb < TARGETS.startRssMB)];
}

/**
 * Control plane CPU per stored audit event, per store. A store whose verify
 * failed misses the target whatever its CPU.
 * @param {any} ing  results.ingest
 */
function ingestTargets(ing) {
  if (!ing) return [];
  return ing.rows.map((/** @type {any} */ r) => {
    const v = r.error ? null : r.cpuMicrosPerEvent;
    return verdict(`control plane (${r.store})`, `CPU per stored audit event, ${(r.events ?? ing.events).toLocaleString('en-US')} events`, v,
      `${v?.toFixed(1)} µs${r.verified ? '' : ' (verify failed)'}`, `≤ ${TARGETS.ingestCpuUs} µs`, r.verified && v <= TARGETS.ingestCpuUs);
  });
}

/**
 * Masking overhead per chain and query kind. A chain whose masked run
 * returned clear values (or whose unmasked run did not) is a MISS whatever
 * the timing: it measured some other path than masking.
 * @param {any} m  results.masking
 */
function maskingTargets(m) {
  if (!m) return [];
  const out = [];
  const kinds = { select: 'SELECT *, node-postgres', copy: 'COPY TO STDOUT' };
  for (const c of m.chains ?? []) {
    for (const [kind, what] of Object.entries(kinds)) {
      const o = m.overhead.find((x) => x.path === c.path && x.kind === kind);
      const v = o?.overheadPct ?? null;
      const name = `masking overhead, ${what}, ${m.rows.toLocaleString('en-US')} rows`;
      if (c.error || v === null) {
        out.push({ path: c.path, name, value: null, display: 'n/a', target: `≤ ${TARGETS.maskingPct} %`, pass: null });
      } else {
        out.push({
          path: c.path, name, value: v, display: `${sign(v)} %${c.masked ? '' : ' (check failed)'}`, target: `≤ ${TARGETS.maskingPct} %`,
          pass: c.masked && v <= TARGETS.maskingPct,
        });
      }
    }
  }
  return out;
}

function sign(v) {
  return `${v >= 0 ? '+' : ''}${Math.round(v)}`;
}

function fmtGB(bytes) {
  return `${(bytes / 1e9).toFixed(2)} GB`;
}

/**
 * Left-aligned first columns, right-aligned numbers.
 * @param {string[]} header
 * @param {string[][]} rows
 * @param {number} leftCols
 */
export function table(header, rows, leftCols = 1) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i] ?? '').length)));
  const line = (cells) => cells.map((c, i) => (i < leftCols ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

const f = (v, digits = 0) => (v === null || v === undefined || Number.isNaN(v) ? '-' : v.toFixed(digits));

/**
 * The whole printed report.
 * @param {any} results
 */
export function formatReport(results) {
  const o = results.options;
  const lines = [];
  lines.push('');
  lines.push(`Warden benchmark — ${results.timestamp}, node ${results.node}, ${results.machine.cores} cores, git ${results.git.commit?.slice(0, 12) ?? 'unknown'}${results.git.dirty ? ' (dirty)' : ''}`);
  lines.push(o.only
    ? `PostgreSQL ${results.postgres.version} on 127.0.0.1:5432, the ${o.only} measurement only (--only ${o.only})`
    : `PostgreSQL ${results.postgres.version} on 127.0.0.1:5432, pgbench -S -s ${o.scale}, -T ${o.duration} s, ${o.rounds} round(s), warm-up ${o.warmup} s per path`);
  // The load at the start is others' work (the bench has done nothing yet).
  const load = results.machine.loadavgStart?.[0];
  if (load > results.machine.cores * 0.5) {
    lines.push(`WARNING: 1-min load average was ${load.toFixed(1)} on ${results.machine.cores} cores before the bench started. Other work was running, so the figures are noisy.`);
  }
  const listPaths = (/** @type {any[]} */ entries) => {
    for (const p of entries) {
      const state = p.skipped ? `SKIPPED: ${p.skipped}` : p.error ? `FAILED: ${p.error.split('\n')[0]}` :
        (p.note ?? '') + (p.auditEventsStored != null ? `; ${p.auditEventsStored} audit events stored by the end` : '');
      lines.push(`  ${p.id.padEnd(16)} ${state}`);
    }
  };
  listPaths(results.paths);
  const ss = results.sessionServer;
  const ownServer = ss?.kind === 'own';
  if (ownServer) {
    lines.push(`Session measurements (idle memory, setup rate) on PostgreSQL ${ss.version} of the bench's own, ${ss.host}:${ss.port}, ` +
      `max_connections=${ss.maxConnections}, because ${ss.reason}; every path started against it:`);
    listPaths(results.sessionPaths);
  }
  if (o.only === null) lines.push(...measuredSections(results));
  lines.push(...memorySection(results.memory));
  lines.push(...ingestSection(results.ingest));
  lines.push(...maskingSection(results.masking));
  lines.push(...soakSection(results.soak));

  lines.push('');
  lines.push('Targets');
  if (!results.targets.length) {
    const why = results.paths.filter((p) => p.kind === 'warden').map((p) => `${p.id}: ${(p.skipped ?? p.error ?? '').split('\n')[0]}`).join('; ');
    lines.push(`  n/a: no Warden row ran${why ? ` (${why})` : ''}`);
  }
  else {
    lines.push(table(['path', 'figure', 'value', 'target', 'result'], results.targets.map((t) => [
      t.path, t.name, t.display, t.target, t.pass === null ? 'n/a' : t.pass ? 'PASS' : 'MISS',
    ]), 2));
  }
  return lines.join('\n');
}

/**
 * The pgbench, session setup, streaming and idle-memory sections.
 * @param {any} results
 */
function measuredSections(results) {
  const o = results.options;
  const ownServer = results.sessionServer?.kind === 'own';
  const lines = [];
  lines.push('');
  lines.push('pgbench -S (TPS without initial connection time; latency from the per-transaction log, 1 client only)');
  const header = ['path', 'mode', 'clients', 'TPS', '×direct', 'p50 µs', 'p99 µs', '+p50 µs', '+p99 µs', 'proxy CPU µs', 'agent', 'control plane'];
  const rows = results.rows.map((r) => [
    r.path, r.mode, String(r.clients),
    r.error ? 'error' : f(r.tps, 1),
    r.tpsRatio === null ? '-' : `${r.tpsRatio.toFixed(2)}×`,
    f(r.p50Us), f(r.p99Us),
    r.path === 'direct' || r.addedP50Us === null ? '-' : sign(r.addedP50Us),
    r.path === 'direct' || r.addedP99Us === null ? '-' : sign(r.addedP99Us),
    f(r.cpuMicrosPerStatement?.gateway ?? r.cpuMicrosPerStatement?.pgbouncer ?? null, 1),
    f(r.cpuMicrosPerStatement?.agent ?? null, 1),
    f(r.cpuMicrosPerStatement?.controlPlane ?? null, 1),
  ]);
  lines.push(table(header, rows, 2));
  lines.push('CPU: CPU µs per statement (utime + stime over the run / transactions) of the gateway (or PgBouncer; node-pipe: first relay),');
  lines.push('the agent (second relay) and the control plane (`warden start`, which stores the audit events).');
  lines.push(`8 clients use -j 2. PgBouncer pool_mode=${results.pgbouncerPoolMode} (needed for -M prepared with PgBouncer < 1.21).`);
  const rowErrors = new Map();
  for (const r of results.rows.filter((x) => x.error)) if (!rowErrors.has(r.path)) rowErrors.set(r.path, r.error.split('\n')[0]);
  for (const [p, e] of rowErrors) lines.push(`  ${p}: ${e}`);

  lines.push('');
  lines.push(`Session setup: ${o.setupConns} connections opened and closed, ${results.sessionSetup[0]?.parallel ?? 4} in parallel (node-postgres; Warden: token check + upstream login)` +
    (ownServer ? `, on the bench's own Postgres` : ''));
  lines.push(table(['path', 'conn/s', '×direct', 'p50 ms', 'p99 ms', 'failed'], results.sessionSetup.map((s) => {
    const d = results.sessionSetup.find((x) => x.path === 'direct');
    return [s.path, f(s.perSecond, 1), d ? `${(s.perSecond / d.perSecond).toFixed(2)}×` : '-', f(s.connectP50Ms, 2), f(s.connectP99Ms, 2), String(s.failures)];
  })));
  for (const s of results.sessionSetup.filter((x) => x.error)) lines.push(`  ${s.path}: ${s.error}`);

  lines.push('');
  const rowsStreamed = results.streaming[0]?.bytes;
  lines.push(`Streaming: psql COPY of ${rowsStreamed ? fmtGB(rowsStreamed) : '-'} to /dev/null, VmRSS sampled every 50 ms`);
  lines.push(table(['path', 'seconds', 'MB/s', '×direct', 'peak RSS (MB)'], results.streaming.map((s) => {
    const d = results.streaming.find((x) => x.path === 'direct');
    const peaks = Object.entries(s.peakRssBytes ?? {}).map(([k, v]) => `${k} ${(v / MB).toFixed(1)}`).join(', ');
    return [s.path, s.error ? 'error' : f(s.seconds, 2), f(s.mbPerSecond, 1), d && s.mbPerSecond ? `${(s.mbPerSecond / d.mbPerSecond).toFixed(2)}×` : '-', peaks || '-'];
  })));
  for (const s of results.streaming.filter((x) => x.error)) lines.push(`  ${s.path}: ${s.error.split('\n')[0]}`);

  lines.push('');
  lines.push('Memory per idle session (VmRSS growth with the sessions open, after SELECT 1 on each)' +
    (ownServer ? `, on the bench's own Postgres` : ''));
  if (!results.idleMemory.length) lines.push('  not measured (no Warden or PgBouncer row)');
  else {
    lines.push(table(['path', 'sessions', 'KiB/session: gateway', 'agent', 'pgbouncer', 'together', 'RSS before → after (MB)'], results.idleMemory.map((m) => {
      const rss = Object.keys(m.perSessionKiB).map((k) => `${k} ${f(m.rssBeforeBytes[k] / MB, 1)} → ${f(m.rssAfterBytes[k] / MB, 1)}`).join(', ');
      const noisy = m.rssSettled === false || (m.perSessionKiBTotal ?? 0) < 0;
      return [m.path, String(m.opened), f(m.perSessionKiB.gateway ?? null, 1), f(m.perSessionKiB.agent ?? null, 1), f(m.perSessionKiB.pgbouncer ?? null, 1),
        f(m.perSessionKiBTotal, 1) + (noisy ? ' (noisy)' : ''), rss];
    }), 1));
    if (results.idleMemory.some((m) => m.rssSettled === false || (m.perSessionKiBTotal ?? 0) < 0)) {
      lines.push('  (noisy): RSS was still moving for reasons other than the sessions');
    }
    for (const m of results.idleMemory.filter((x) => x.error)) lines.push(`  ${m.path}: stopped early at ${m.opened}: ${m.error}`);
  }
  if (results.idleMemoryNote) lines.push(`  note: ${results.idleMemoryNote}`);
  return lines;
}

/**
 * Memory of `warden start` with its demo database, per process.
 * @param {any} m  results.memory
 */
function memorySection(m) {
  if (!m) return [];
  const lines = ['', 'Memory of `warden start` as a new user runs it (fresh data dir, demo database, ports 0), once settled'];
  if (m.error) {
    lines.push(`  not measured: ${m.error.split('\n')[0]}`);
    return lines;
  }
  const rows = m.processes.map((/** @type {any} */ p) => [p.name, String(p.pid), f(p.rssBytes / MB, 1), p.pssBytes === null ? '-' : f(p.pssBytes / MB, 1)]);
  rows.push(['all together', '', f(m.totalRssBytes / MB, 1), m.totalPssBytes === null ? '-' : f(m.totalPssBytes / MB, 1)]);
  lines.push(table(['process', 'pid', 'VmRSS MB', 'PSS MB'], rows, 2));
  lines.push(`Ready after ${m.readySeconds.toFixed(1)} s; read ${m.settleSeconds.toFixed(1)} s later${m.settled ? '' : ' (had not settled)'}. ` +
    'PSS splits shared pages (the node binary) among the processes; the target is on VmRSS.');
  return lines;
}

/**
 * Audit ingest into each store: rate, CPU per event, check.
 * @param {any} ing  results.ingest
 */
function ingestSection(ing) {
  if (!ing) return [];
  const lines = ['', `Audit ingest: ${ing.events.toLocaleString('en-US')} synthetic events per store into \`warden control-plane\` (embedded: IngestAudit; postgres: NATS JetStream), then verify`];
  lines.push(table(['store', 'events', 'seconds', 'events/s', 'CPU µs/event', 'peak RSS MB', 'verified'], ing.rows.map((/** @type {any} */ r) => r.error
    ? [r.store, '-', '-', '-', '-', '-', 'error']
    : [r.store, String(r.events), f(r.seconds, 1), f(r.eventsPerSecond, 0), f(r.cpuMicrosPerEvent, 1), f(r.peakRssMB, 0), r.verified ? 'yes' : `NO: ${r.detail}`])));
  for (const r of ing.rows.filter((/** @type {any} */ x) => x.error)) lines.push(`  ${r.store}: ${r.error.split('\n')[0]}`);
  return lines;
}

/**
 * The masking section: median time per query, overhead, CPU per query.
 * @param {any} m  results.masking
 */
function maskingSection(m) {
  if (!m) return [];
  const lines = [''];
  const size = m.bytesPerRow ? `, ${m.bytesPerRow.toFixed(0)} bytes/row as COPY text` : '';
  lines.push(`Masking: ${m.rows?.toLocaleString('en-US')} rows of ${m.table ?? 'bench_pii'}${size}; ` +
    (m.columns ? `mask on ${m.columns.map((c) => `${c.column.split('.').pop()} (${c.mask})`).join(' and ')}; ` : '') +
    `median of ${m.reps} queries each, order rotated`);
  if (m.error) {
    lines.push(`  not measured: ${m.error.split('\n')[0]}`);
    return lines;
  }
  const what = { select: 'SELECT *', copy: 'COPY' };
  const rows = [];
  for (const kind of ['select', 'copy']) {
    const d = m.figures.find((x) => x.path === 'direct' && x.kind === kind);
    if (d) rows.push(['direct', what[kind], f(d.medianMs, 1), '-', '-', '-']);
    for (const o of m.overhead.filter((x) => x.kind === kind)) {
      rows.push([`${o.path} unmasked`, what[kind], f(o.unmaskedMs, 1), '-', f(o.gatewayCpuMs.unmasked, 1), f(o.agentCpuMs.unmasked, 1)]);
      rows.push([`${o.path} masked`, what[kind], f(o.maskedMs, 1), `${sign(o.overheadPct)} %`, f(o.gatewayCpuMs.masked, 1), f(o.agentCpuMs.masked, 1)]);
    }
  }
  lines.push(table(['path', 'query', 'median ms', 'masking', 'gateway CPU ms', 'agent CPU ms'], rows, 2));
  lines.push('masking: masked vs unmasked median, in % of unmasked. CPU: mean CPU ms per query of the process.');
  for (const c of m.chains) {
    if (c.error) { lines.push(`  ${c.path}: not measured: ${c.error.split('\n')[0]}`); continue; }
    const mc = c.maskedCheck;
    const uc = c.unmaskedCheck;
    const seen = mc?.sample?.[0] ? `; masked row: ${mc.sample[0].card_number}, ${mc.sample[0].email}` : '';
    const n = (/** @type {any} */ ch) => `SELECT ${ch?.select?.emailClear ?? '?'} / ${ch?.select?.cardClear ?? '?'}, COPY ${ch?.copy?.emailClear ?? '?'} / ${ch?.copy?.cardClear ?? '?'}`;
    lines.push(`  ${c.path}: ${c.masked ? 'masking checked' : 'CHECK FAILED'}: clear e-mails / card numbers of ${m.rows}, masked identity: ${n(mc)}; ` +
      `unmasked identity: ${n(uc)}${seen}`);
    if (c.masksRejected) lines.push(`    the control plane refused the policy's masks: ${c.masksRejected}`);
  }
  return lines;
}
