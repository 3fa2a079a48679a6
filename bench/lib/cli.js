// Command line of the benchmark.
import { splitArgs } from './util.js';

/** Name of the row with local mode's embedded defaults ("warden+embedded"). */
export const EMBEDDED_VARIANT = 'embedded';
/** Steps that `--only` runs alone. */
const ONLY_STEPS = ['masking', 'memory', 'ingest', 'soak'];

export const USAGE = `Usage: npm run bench -- [options]
       node bench/run.js [options]

  --duration SECONDS     pgbench -T per run (default 15; --quick: 5)
  --quick                short runs (5 s, 1 s warm-up) for a fast look
  --json FILE            also write all figures as JSON to FILE
  --rounds N             repeat every path x mode x clients run N times,
                         path order rotated each time (default 1)
  --warmup SECONDS       pgbench warm-up per path before measuring (default 3; --quick: 1)
  --scale N              pgbench -i scale factor (default 10)
  --sessions N           idle sessions for the memory figure (default 1000).
                         When the machine's Postgres cannot take them, the
                         session measurements run on a Postgres cluster of
                         the bench's own (initdb into a temp dir)
  --setup-conns N        connections opened and closed for the setup rate
                         (default 500, after 10 untimed ones)
  --stream-rows N        rows of 1,000 bytes streamed by COPY (default 1048576, ~1 GB)
  --no-pgbouncer         leave out the PgBouncer rows
  --no-pipe              leave out the node-pipe rows (two bare Node.js relays
                         where the gateway and the agent stand)
  --no-warden            leave out the Warden rows
  --no-embedded          leave out the "warden+embedded" row (local mode's
                         defaults: PGlite store, audit over IngestAudit)
  --no-masking           leave out the masking measurement
  --no-memory            leave out the memory of \`warden start\` with its
                         demo database
  --no-ingest            leave out the audit ingest rows
  --only STEP            only one step: masking (no PgBouncer, no node-pipe,
                         no session, pgbench or streaming runs), memory
                         (\`warden start\` with the demo database) or ingest
                         (audit events into the embedded store and Postgres)
                         or soak (sessions held open with statements flowing
                         while the memory of the gateway, the agent and the
                         control plane is sampled; runs only this way)
  --soak-sessions N      sessions held open in the soak (default 1000)
  --soak-minutes M       length of the soak (default 10; --quick: 2)
  --soak-interval S      seconds between one session's read+write pairs
                         (default 2, so 1000 sessions run ~1000 statements/s)
  --ingest-events N      audit events stored per store (default 100000)
  --masking-reps N       timed queries per path and kind in the masking
                         measurement (default 15; --quick: 5)
  --masking-rows N       rows of the masking table (default 100000)
  --nats URL             send the production rows' audit events to this NATS
                         server instead of a nats-server of each chain's own
                         (the stream WARDEN_AUDIT and the consumer
                         warden-control-plane have fixed names: nothing else
                         may consume them there during the run)
  --warden-args "ARGS"   extra options for \`warden start\` on the Warden row
                         (or env WARDEN_BENCH_ARGS)
  --warden-variant NAME=ARGS
                         add a row "warden+NAME": a second chain started with
                         extra options ARGS (repeatable; or env
                         WARDEN_BENCH_VARIANTS="name=args;name2=args"); in
                         the production topology like the Warden row
  -h, --help             this text
`;

/**
 * @typedef {object} Options
 * @property {string | null} json
 * @property {number} duration
 * @property {boolean} quick
 * @property {number} rounds
 * @property {number} warmup
 * @property {number} scale
 * @property {number} sessions
 * @property {number} setupConns
 * @property {number} streamRows
 * @property {boolean} pgbouncer
 * @property {boolean} pipe
 * @property {boolean} warden
 * @property {boolean} embedded
 * @property {boolean} masking
 * @property {boolean} memory
 * @property {boolean} ingest
 * @property {'masking' | 'memory' | 'ingest' | 'soak' | null} only
 * @property {number} soakSessions
 * @property {number} soakMinutes
 * @property {number} soakInterval
 * @property {number} maskingReps
 * @property {number} maskingRows
 * @property {number} ingestEvents
 * @property {string | null} nats
 * @property {string[]} wardenArgs
 * @property {{ name: string, args: string[] }[]} wardenVariants
 * @property {boolean} help
 */

/**
 * @param {string[]} argv
 * @param {Record<string, string | undefined>} env
 * @returns {Options}
 */
export function parseArgs(argv, env = process.env) {
  /** @type {Record<string, string>} */
  const given = {};
  const variants = [];
  let quick = false;
  let help = false;
  let pgbouncer = true;
  let pipe = true;
  let warden = true;
  let embedded = true;
  let masking = true;
  let memory = true;
  let ingest = true;
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value = null;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const take = () => {
      if (value !== null) return value;
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    switch (arg) {
      case '--quick': quick = true; break;
      case '--no-pgbouncer': pgbouncer = false; break;
      case '--no-pipe': pipe = false; break;
      case '--no-warden': warden = false; break;
      case '--no-embedded': embedded = false; break;
      case '--no-masking': masking = false; break;
      case '--no-memory': memory = false; break;
      case '--no-ingest': ingest = false; break;
      case '-h': case '--help': help = true; break;
      case '--warden-variant': variants.push(parseVariant(take())); break;
      case '--json': case '--duration': case '--rounds': case '--warmup': case '--scale':
      case '--sessions': case '--setup-conns': case '--stream-rows': case '--warden-args': case '--nats':
      case '--only': case '--masking-reps': case '--masking-rows': case '--ingest-events':
      case '--soak-sessions': case '--soak-minutes': case '--soak-interval':
        given[arg.slice(2)] = take();
        break;
      default:
        throw new Error(`unknown option ${argv[i]}\n\n${USAGE}`);
    }
  }
  if (env.WARDEN_BENCH_VARIANTS) {
    for (const spec of env.WARDEN_BENCH_VARIANTS.split(';')) if (spec.trim()) variants.push(parseVariant(spec.trim()));
  }
  const num = (name, dflt, min) => {
    if (given[name] === undefined) return dflt;
    const n = Number(given[name]);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min}`);
    return n;
  };
  const only = given.only ?? null;
  if (only !== null && !ONLY_STEPS.includes(only)) throw new Error(`--only takes ${ONLY_STEPS.join(', ')}, not ${only}`);
  if ((only === 'masking' && !masking) || (only === 'memory' && !memory) || (only === 'ingest' && !ingest)) {
    throw new Error(`--only ${only} and --no-${only} contradict each other`);
  }
  const names = new Set([EMBEDDED_VARIANT]);
  for (const v of variants) {
    if (v.name === EMBEDDED_VARIANT) throw new Error(`warden variant name "${EMBEDDED_VARIANT}" is the bench's own row (leave it out with --no-embedded)`);
    if (names.has(v.name)) throw new Error(`warden variant "${v.name}" given twice`);
    names.add(v.name);
  }
  return {
    json: given.json ?? null,
    duration: Math.round(num('duration', quick ? 5 : 15, 1)),
    quick,
    rounds: Math.round(num('rounds', 1, 1)),
    warmup: Math.round(num('warmup', quick ? 1 : 3, 0)),
    scale: Math.round(num('scale', 10, 1)),
    sessions: Math.round(num('sessions', 1000, 1)),
    setupConns: Math.round(num('setup-conns', 500, 1)),
    streamRows: Math.round(num('stream-rows', 1048576, 1)),
    pgbouncer,
    pipe,
    warden,
    embedded,
    masking,
    memory,
    ingest,
    only: /** @type {'masking' | 'memory' | 'ingest' | 'soak' | null} */ (only),
    soakSessions: Math.round(num('soak-sessions', 1000, 1)),
    soakMinutes: num('soak-minutes', quick ? 2 : 10, 0.1),
    soakInterval: num('soak-interval', 2, 0.05),
    maskingReps: Math.round(num('masking-reps', quick ? 5 : 15, 1)),
    maskingRows: Math.round(num('masking-rows', 100_000, 1)),
    ingestEvents: Math.round(num('ingest-events', 100_000, 1)),
    nats: given.nats ?? null,
    wardenArgs: splitArgs(given['warden-args'] ?? env.WARDEN_BENCH_ARGS ?? ''),
    wardenVariants: variants,
    help,
  };
}

function parseVariant(spec) {
  const eq = spec.indexOf('=');
  const name = eq < 0 ? spec : spec.slice(0, eq);
  if (!/^[a-z0-9][a-z0-9_-]*$/i.test(name)) throw new Error(`bad warden variant name "${name}" (want NAME=ARGS)`);
  return { name, args: splitArgs(eq < 0 ? '' : spec.slice(eq + 1)) };
}
