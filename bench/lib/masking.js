// Result masking: what masking two columns of a 100,000-row result costs
// through a Warden chain. One table in the bench database; on each chain a
// policy file with two identities, one under a mask on `email` and
// `card_number` and one without; `SELECT *` (node-postgres, text format) and
// `COPY ... TO STDOUT` (pg-copy-streams) alternating between direct, Warden
// unmasked and Warden masked. A first, untimed round checks that the masked
// identity gets no clear value and the unmasked one gets every value clear.
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { query } from './db.js';
import { cpuSnapshot } from './procstat.js';
import { childEnv, run, sleep, tempDir } from './util.js';
import { REPO_ROOT } from './warden.js';

/** @typedef {import('./paths.js').BenchPath} BenchPath */
/** @typedef {import('./pgbench.js').Conn} Conn */

export const MASK_TABLE = 'bench_pii';
export const MASKED_SUBJECT = 'bench-masked';
export const CLEAR_SUBJECT = 'bench-clear';
/** The mask of the policy file, as written into it. */
export const MASK_COLUMNS = [
  { column: `public.${MASK_TABLE}.card_number`, mask: 'partial', keep: 4 },
  { column: `public.${MASK_TABLE}.email`, mask: 'email' },
];
const CARD_PREFIX = '4539';
const TOKEN_TTL = '2h';
const SNAPSHOT_WAIT_MS = 30_000;
const QUERY_TIMEOUT_MS = 5 * 60 * 1000;
const SELECT_SQL = `SELECT * FROM ${MASK_TABLE}`;
const COPY_SQL = `COPY ${MASK_TABLE} TO STDOUT`;
// Every value as the text the server sent: the client does the same small
// work on every path, and the figures show the wire and the proxies.
const RAW_TYPES = { getTypeParser: () => (/** @type {string} */ v) => v };

const WARDEN_CLI = process.env.WARDEN_BENCH_CLI
  ? path.resolve(process.env.WARDEN_BENCH_CLI)
  : path.join(REPO_ROOT, 'control-plane', 'bin', 'warden.js');

/**
 * The masking table: id, name, email, card_number (16 digits), city,
 * country, amount, created_at, note; about 135 bytes of text per row.
 * Created straight on Postgres as the bench's own user, before the chains
 * start, so their gateways' catalogs have it.
 * @param {Conn} conn  the bench database
 * @param {number} rows
 */
export async function createMaskingTable(conn, rows) {
  await query(conn, `
    CREATE TABLE ${MASK_TABLE} (
      id integer PRIMARY KEY,
      name text NOT NULL,
      email text NOT NULL,
      card_number text NOT NULL,
      city text NOT NULL,
      country char(2) NOT NULL,
      amount numeric(10,2) NOT NULL,
      created_at timestamptz NOT NULL,
      note text
    );
    INSERT INTO ${MASK_TABLE}
    SELECT g,
           'Customer ' || g,
           'customer.' || g || '@mail' || (g % 97) || '.example.com',
           '${CARD_PREFIX}' || lpad(((g::bigint * 7919 + 104729) % 1000000000000)::text, 12, '0'),
           (ARRAY['Lisbon', 'Oslo', 'Nairobi', 'Osaka', 'Lima'])[1 + g % 5],
           (ARRAY['PT', 'NO', 'KE', 'JP', 'PE'])[1 + g % 5],
           round((g % 100000) / 7.0, 2),
           timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute',
           md5(g::text)
    FROM generate_series(1, ${rows}) g;
    ANALYZE ${MASK_TABLE};`);
}

/**
 * A policy file's lines for the bench: local mode's `demo` and its read
 * rule kept, and one more rule for the bench's own identities (from local
 * mode's development issuer).
 * @param {string} resource
 * @param {{ name: string, subjects: string[], access: string }} rule
 * @param {string} writer  the bench module that writes it
 */
export function benchPolicyLines(resource, rule, writer) {
  return [
    `# Written by the Warden benchmark (${writer}).`,
    'version: 1',
    'identities:',
    ...['demo', ...rule.subjects].flatMap((n) => [`  - name: ${n}`, '    issuer: local-dev', `    match: { sub: ${n} }`]),
    'resources:',
    `  - name: ${resource}`,
    '    agent: local',
    'rules:',
    '  - name: demo-read-only',
    `    resource: ${resource}`,
    '    identities: [demo]',
    '    access: read',
    `  - name: ${rule.name}`,
    `    resource: ${resource}`,
    `    identities: [${rule.subjects.join(', ')}]`,
    `    access: ${rule.access}`,
  ];
}

/** The policy file: local mode's `demo` kept, two bench identities, one mask. */
function policyYaml(/** @type {string} */ resource, /** @type {boolean} */ withMasks) {
  const lines = benchPolicyLines(resource, { name: 'bench-read', subjects: [CLEAR_SUBJECT, MASKED_SUBJECT], access: 'read' }, 'bench/lib/masking.js');
  if (withMasks) {
    lines.push('masks:', '  - name: bench-pii', `    resource: ${resource}`, `    identities: [${MASKED_SUBJECT}]`, '    columns:');
    for (const c of MASK_COLUMNS) {
      lines.push(`      - { ${Object.entries(c).map(([k, v]) => `${k}: ${v}`).join(', ')} }`);
    }
  }
  return lines.join('\n') + '\n';
}

/**
 * The data dir of a chain started by `warden start`: the agent runs with
 * `--config <data-dir>/agent.json` (read from /proc, like procstat.js).
 * @param {BenchPath} p
 */
export function chainDataDir(p) {
  const agent = p.pids.agent;
  const argv = readFileSync(`/proc/${agent}/cmdline`, 'utf8').split('\0');
  const i = argv.indexOf('--config');
  if (i < 0 || !argv[i + 1]) throw new Error(`${p.id}: the agent (pid ${agent}) has no --config: ${argv.join(' ')}`);
  return path.dirname(argv[i + 1]);
}

/**
 * Runs the `warden` CLI against a chain's control plane; throws on failure.
 * @param {{ dataDir: string, controlPlane: string }} chain
 * @param {string[]} args
 */
export async function wardenCli(chain, args) {
  const res = await run(process.execPath, [WARDEN_CLI, ...args], {
    cwd: REPO_ROOT,
    env: childEnv({ WARDEN_DATA_DIR: chain.dataDir, WARDEN_CONTROL_PLANE: chain.controlPlane }),
    timeoutMs: 60_000,
  });
  if (res.code !== 0) throw new Error(`warden ${args.slice(0, 2).join(' ')} failed (${res.signal ?? `exit ${res.code}`}): ${(res.stderr || res.stdout).trim()}`);
  return res.stdout;
}

/**
 * Apply the bench's policy to a chain and return connection parameters for
 * its two identities. A control plane that does not know `masks` yet gets
 * the file without them (the masked run then shows clear values, and the
 * check says so).
 * @param {BenchPath} p
 * @param {(msg: string) => void} log
 */
export async function prepareChain(p, log) {
  const dataDir = chainDataDir(p);
  const ready = JSON.parse(await readFile(path.join(dataDir, 'ready.json'), 'utf8'));
  const chain = { dataDir, controlPlane: String(ready.controlPlane) };
  const base = await p.conn();
  const dir = await tempDir('warden-bench-masking-');
  const file = path.join(dir, 'policy.yaml');
  /** @type {string | null} */
  let masksRejected = null;
  await writeFile(file, policyYaml(base.database, true));
  let applied;
  try {
    applied = await wardenCli(chain, ['policy', 'apply', '-f', file, '--author', 'warden-bench']);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    if (!/mask/i.test(msg)) throw err;
    masksRejected = msg.split('\n').slice(0, 3).join(' ');
    log(`${p.id}: the control plane refused the masks (${masksRejected}); applying the policy without them`);
    await writeFile(file, policyYaml(base.database, false));
    applied = await wardenCli(chain, ['policy', 'apply', '-f', file, '--author', 'warden-bench']);
  }
  const token = async (/** @type {string} */ sub) => {
    const out = await wardenCli(chain, ['token', '--sub', sub, '--ttl', TOKEN_TTL]);
    const jwt = out.split(/\s+/).find((w) => /^[\w-]+\.[\w-]+\.[\w-]+$/.test(w));
    if (!jwt) throw new Error(`warden token printed no JWT: ${out.slice(0, 200)}`);
    return jwt;
  };
  /** @type {Conn} */
  const masked = { ...base, user: MASKED_SUBJECT, password: await token(MASKED_SUBJECT) };
  /** @type {Conn} */
  const clear = { ...base, user: CLEAR_SUBJECT, password: await token(CLEAR_SUBJECT) };
  // The new snapshot reaches the gateway shortly after the apply.
  const deadline = Date.now() + SNAPSHOT_WAIT_MS;
  // A catalog read before the table existed is read again on a name it
  // lacks, so the masked identity's query may need a second try.
  for (const conn of [clear, masked]) {
    for (;;) {
      try {
        await query(conn, `SELECT * FROM ${MASK_TABLE} LIMIT 1`);
        break;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`${p.id}: ${conn.user} cannot read ${MASK_TABLE} ${SNAPSHOT_WAIT_MS / 1000} s after the policy apply: ${err instanceof Error ? err.message : err}`);
        await sleep(250);
      }
    }
  }
  return { masked, clear, masksRejected, applied: applied.trim().split('\n').pop() ?? '' };
}

/** @param {Conn} conn */
async function connect(conn) {
  const client = new pg.Client({ ...conn, ssl: false, connectionTimeoutMillis: 30_000, types: RAW_TYPES });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/**
 * `SELECT *` with node-postgres, rows as arrays of text.
 * @param {pg.Client} client
 */
async function selectAll(client) {
  // query_timeout per query: on the client it would also time the COPY
  // streams, which never report their end to node-postgres.
  const res = await client.query(/** @type {pg.QueryArrayConfig} */ ({ text: SELECT_SQL, rowMode: 'array', query_timeout: QUERY_TIMEOUT_MS }));
  return { rows: /** @type {string[][]} */ (res.rows), fields: res.fields.map((f) => f.name) };
}

/**
 * `COPY ... TO STDOUT` with pg-copy-streams; the bytes, and the text when kept.
 * @param {pg.Client} client
 * @param {boolean} keep
 */
async function copyOut(client, keep) {
  const stream = client.query(copyStreams.to(COPY_SQL));
  let bytes = 0;
  /** @type {Buffer[]} */
  const chunks = [];
  for await (const chunk of stream) {
    bytes += chunk.length;
    if (keep) chunks.push(chunk);
  }
  return { bytes, text: keep ? Buffer.concat(chunks).toString('utf8') : null };
}

const median = (/** @type {number[]} */ xs) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/**
 * The untimed first round: every variant once, checked against direct.
 * @param {{ id: string, path: string, variant: string, client: pg.Client }[]} variants
 * @param {number} rows
 * @param {(msg: string) => void} log
 */
async function verify(variants, rows, log) {
  const direct = variants.find((v) => v.variant === 'direct');
  if (!direct) throw new Error('no direct variant');
  const base = await selectAll(direct.client);
  const col = (/** @type {string} */ name) => {
    const i = base.fields.indexOf(name);
    if (i < 0) throw new Error(`${MASK_TABLE} has no column ${name}`);
    return i;
  };
  const [iId, iEmail, iCard, iName] = ['id', 'email', 'card_number', 'name'].map(col);
  /** @type {Map<string, string[]>} */
  const clearById = new Map(base.rows.map((r) => [r[iId], r]));
  if (clearById.size !== rows) throw new Error(`direct returned ${clearById.size} rows, not ${rows}`);
  const baseCopy = await copyOut(direct.client, false);
  /** @type {Record<string, any>} */
  const checks = {};
  for (const v of variants) {
    if (v === direct) continue;
    try {
      checks[v.id] = await check(v);
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      checks[v.id] = { ok: false, error };
      log(`masking: ${v.id}: ${error}`);
    }
  }
  return { bytesPerRow: baseCopy.bytes / rows, copyBytes: baseCopy.bytes, checks };

  /**
   * What one result shows of the two columns, row by row against direct.
   * @param {string[][]} got
   */
  function tally(got) {
    const t = { rows: got.length, missing: 0, emailClear: 0, cardClear: 0, cardDigits: 0, otherDiffer: 0 };
    for (const r of got) {
      const c = clearById.get(r[iId]);
      if (!c) { t.missing++; continue; }
      if (r[iEmail] === c[iEmail]) t.emailClear++;
      if (r[iCard] === c[iCard]) t.cardClear++;
      // More than the last four digits of a card number in clear.
      if (/\d{5,}/.test(r[iCard] ?? '')) t.cardDigits++;
      if (r[iName] !== c[iName]) t.otherDiffer++;
    }
    return t;
  }

  /** @param {typeof variants[number]} v */
  async function check(v) {
    const got = await selectAll(v.client);
    const select = tally(got.rows);
    // COPY text: one line per row, columns in table order (as SELECT *),
    // tab-separated; no value of the table needs escaping.
    const copyText = (await copyOut(v.client, true)).text ?? '';
    const copy = tally(copyText.split('\n').filter((l) => l !== '').map((l) => l.split('\t')));
    const sample = got.rows.slice(0, 2).map((r) => ({ email: r[iEmail], card_number: r[iCard] }));
    const whole = (/** @type {typeof select} */ t) => t.rows === rows && t.missing === 0 && t.otherDiffer === 0;
    // Masked: not one clear value in either column, in either query.
    // Unmasked: every value clear, as direct sent it.
    const ok = whole(select) && whole(copy) && (v.variant === 'masked'
      ? [select, copy].every((t) => t.emailClear === 0 && t.cardClear === 0 && t.cardDigits === 0)
      : [select, copy].every((t) => t.emailClear === rows && t.cardClear === rows));
    log(`masking: ${v.id}: clear e-mails / card numbers of ${rows}: SELECT ${select.emailClear} / ${select.cardClear}, ` +
      `COPY ${copy.emailClear} / ${copy.cardClear}; first row ${JSON.stringify(sample[0])}${ok ? '' : ' — CHECK FAILED'}`);
    return { ok, select, copy, sample };
  }
}

/**
 * The masking measurement on every given chain; the table must exist
 * (createMaskingTable) before the chains start, as a deployment's tables
 * exist before its gateway reads the catalog.
 * @param {object} o
 * @param {BenchPath} o.direct
 * @param {BenchPath[]} o.chains  Warden chains (their policy is replaced)
 * @param {number} o.rows   rows of the table
 * @param {number} o.reps   timed queries per variant and kind
 * @param {(msg: string) => void} o.log
 * @param {() => void} o.stopIfInterrupted
 */
export async function measureMasking({ direct, chains, rows, reps, log, stopIfInterrupted }) {
  const out = {
    table: MASK_TABLE, rows, reps, columns: MASK_COLUMNS, select: SELECT_SQL, copy: COPY_SQL,
    bytesPerRow: null, copyBytes: null,
    /** @type {any[]} */ chains: [],
    /** @type {any[]} */ figures: [],
    /** @type {any[]} */ overhead: [],
  };
  const directConn = await direct.conn();

  /** @type {{ id: string, path: string, variant: 'direct' | 'unmasked' | 'masked', client: pg.Client, pids: Record<string, number> }[]} */
  const variants = [];
  const clients = [];
  try {
    const dc = await connect(directConn);
    clients.push(dc);
    variants.push({ id: 'direct', path: 'direct', variant: 'direct', client: dc, pids: {} });
    for (const p of chains) {
      stopIfInterrupted();
      /** @type {any} */
      const entry = { path: p.id };
      out.chains.push(entry);
      try {
        log(`masking: applying the bench policy to ${p.id} ...`);
        const prep = await prepareChain(p, log);
        entry.policy = prep.applied;
        entry.masksRejected = prep.masksRejected;
        const cc = await connect(prep.clear);
        clients.push(cc);
        const mc = await connect(prep.masked);
        clients.push(mc);
        variants.push({ id: `${p.id} unmasked`, path: p.id, variant: 'unmasked', client: cc, pids: p.pids });
        variants.push({ id: `${p.id} masked`, path: p.id, variant: 'masked', client: mc, pids: p.pids });
      } catch (err) {
        entry.error = err instanceof Error ? err.message : String(err);
        log(`masking: ${p.id} left out: ${entry.error}`);
      }
    }

    log('masking: first round, untimed: checking what each identity gets ...');
    const checked = await verify(variants, rows, log);
    out.bytesPerRow = checked.bytesPerRow;
    out.copyBytes = checked.copyBytes;
    for (const entry of out.chains) {
      if (entry.error) continue;
      entry.unmaskedCheck = checked.checks[`${entry.path} unmasked`];
      entry.maskedCheck = checked.checks[`${entry.path} masked`];
      // A refused query leaves nothing to compare: the chain is left out.
      const failed = [['unmasked', entry.unmaskedCheck], ['masked', entry.maskedCheck]].find(([, c]) => c?.error);
      if (failed) {
        entry.error = `the ${failed[0]} query failed: ${failed[1].error}`;
        for (let i = variants.length - 1; i >= 0; i--) if (variants[i].path === entry.path) variants.splice(i, 1);
        continue;
      }
      // Masked for the verdict only when the masked identity saw no clear
      // value and the unmasked one saw them all.
      entry.masked = Boolean(entry.maskedCheck?.ok && entry.unmaskedCheck?.ok);
    }

    /** @type {Map<string, { ms: number[], cpu: Record<string, number | null>[] }>} */
    const samples = new Map();
    const kinds = /** @type {const} */ (['select', 'copy']);
    for (let rep = 0; rep < reps; rep++) {
      for (const kind of kinds) {
        // Rotate the order every round so drift hits every variant alike.
        const k = rep % variants.length;
        for (const v of [...variants.slice(k), ...variants.slice(0, k)]) {
          stopIfInterrupted();
          const before = cpuSnapshot(v.pids);
          const t0 = process.hrtime.bigint();
          if (kind === 'select') {
            const r = await selectAll(v.client);
            if (r.rows.length !== rows) throw new Error(`${v.id}: SELECT returned ${r.rows.length} rows, not ${rows}`);
          } else {
            await copyOut(v.client, false);
          }
          const ms = Number(process.hrtime.bigint() - t0) / 1e6;
          const after = cpuSnapshot(v.pids);
          /** @type {Record<string, number | null>} */
          const cpu = {};
          for (const name of Object.keys(v.pids)) {
            const a = after[name];
            const b = before[name];
            cpu[name] = a !== null && b !== null ? a - b : null;
          }
          const key = `${v.id}|${kind}`;
          if (!samples.has(key)) samples.set(key, { ms: [], cpu: [] });
          samples.get(key)?.ms.push(ms);
          samples.get(key)?.cpu.push(cpu);
        }
      }
      log(`masking: round ${rep + 1}/${reps}: ` + variants.map((v) => `${v.id} ${samples.get(`${v.id}|select`)?.ms.at(-1)?.toFixed(0)} ms`).join(', '));
    }

    for (const v of variants) {
      for (const kind of kinds) {
        const s = samples.get(`${v.id}|${kind}`);
        if (!s) continue;
        /** @type {Record<string, number | null>} */
        const cpuPerQueryMs = {};
        for (const name of Object.keys(v.pids)) {
          const xs = s.cpu.map((c) => c[name]);
          cpuPerQueryMs[name] = xs.some((x) => x === null || x === undefined) ? null : (xs.reduce((a, b) => a + /** @type {number} */ (b), 0) / xs.length) * 1000;
        }
        out.figures.push({ path: v.path, variant: v.variant, kind, medianMs: median(s.ms), minMs: Math.min(...s.ms), samplesMs: s.ms, cpuPerQueryMs });
      }
    }
    for (const entry of out.chains) {
      if (entry.error) continue;
      for (const kind of kinds) {
        const fig = (/** @type {string} */ variant) => out.figures.find((x) => x.path === entry.path && x.variant === variant && x.kind === kind);
        const un = fig('unmasked');
        const ma = fig('masked');
        const di = out.figures.find((x) => x.path === 'direct' && x.kind === kind);
        if (!un || !ma) continue;
        out.overhead.push({
          path: entry.path, kind,
          directMs: di?.medianMs ?? null, unmaskedMs: un.medianMs, maskedMs: ma.medianMs,
          overheadPct: ((ma.medianMs - un.medianMs) / un.medianMs) * 100,
          gatewayCpuMs: { unmasked: un.cpuPerQueryMs.gateway ?? null, masked: ma.cpuPerQueryMs.gateway ?? null },
          agentCpuMs: { unmasked: un.cpuPerQueryMs.agent ?? null, masked: ma.cpuPerQueryMs.agent ?? null },
          masked: entry.masked,
        });
      }
    }
  } finally {
    await Promise.allSettled(clients.map((c) => c.end()));
  }
  return out;
}
