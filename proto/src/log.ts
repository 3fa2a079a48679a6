// The one logger setup of the three programs: pino JSON lines (or, with
// format pretty, one readable line an entry, for local mode), the level from
// --log-level or WARDEN_LOG_LEVEL (default info), the format from
// --log-format or WARDEN_LOG_FORMAT (default json), the same redaction everywhere. Secrets are
// never passed to the logger; redaction is a second line of defence in case
// an object carrying one slips through.
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { destination as pinoDestination, pino, type DestinationStream, type Logger } from 'pino';
import pinoPretty from 'pino-pretty';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export const REDACTED_PATHS = ['token', 'password', 'authorization', '*.token', '*.password', '*.authorization'];

export interface LoggerOptions {
  /** The program, as the `name` of every line. */
  name: string;
  /** File to append to (created owner-only); stdout when absent. */
  file?: string;
  /** Overrides WARDEN_LOG_LEVEL. */
  level?: string;
  /** Overrides WARDEN_LOG_FORMAT: json (default) or pretty. */
  format?: string;
  /**
   * Buffer writes (8 KiB, flushed every second and at exit) instead of one
   * write() a line: for the gateway, which logs per statement.
   */
  buffered?: boolean;
  /** Where WARDEN_LOG_LEVEL is read from (tests); process.env by default. */
  env?: NodeJS.ProcessEnv;
}

/** --log-level and --log-format, alike in every program (checked by createLogger, as the variables are). */
export const logLevelOption = {
  flags: '--log-level <LEVEL>',
  description: `log level: ${LOG_LEVELS.join(', ')} (default info)`,
  env: 'WARDEN_LOG_LEVEL',
};
export const logFormatOption = (fallback: LogFormat = 'json') => ({
  flags: '--log-format <FORMAT>',
  description: `log lines as json or pretty (readable) (default ${fallback})`,
  env: 'WARDEN_LOG_FORMAT',
});

/** The level asked for: `level`, else WARDEN_LOG_LEVEL, else info. Throws on a level pino does not know. */
export function logLevel(level: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const chosen = (level ?? env.WARDEN_LOG_LEVEL ?? '').trim().toLowerCase() || 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(chosen)) {
    throw new Error(`--log-level (WARDEN_LOG_LEVEL) takes one of ${LOG_LEVELS.join(', ')}, not '${level ?? env.WARDEN_LOG_LEVEL}'`);
  }
  return chosen;
}

/** The format asked for: `format`, else WARDEN_LOG_FORMAT, else json. Throws on any other. */
export function logFormat(format: string | undefined, env: NodeJS.ProcessEnv = process.env): LogFormat {
  const chosen = (format ?? env.WARDEN_LOG_FORMAT ?? '').trim().toLowerCase() || 'json';
  if (!(LOG_FORMATS as readonly string[]).includes(chosen)) {
    throw new Error(`--log-format (WARDEN_LOG_FORMAT) takes json or pretty, not '${format ?? env.WARDEN_LOG_FORMAT}'`);
  }
  return chosen as LogFormat;
}

export function createLogger(opts: LoggerOptions): Logger {
  const level = logLevel(opts.level, opts.env);
  const format = logFormat(opts.format, opts.env);
  if (opts.file) {
    // Create the file owner-only first; pino would use the umask.
    mkdirSync(dirname(opts.file), { recursive: true, mode: 0o700 });
    closeSync(openSync(opts.file, 'a', 0o600));
  }
  const dest = opts.file ?? 1;
  const destination = opts.buffered
    ? pinoDestination({ dest, append: true, sync: false, minLength: 8 * 1024 })
    : pinoDestination({ dest, append: true, sync: true });
  if (opts.buffered) {
    setInterval(() => destination.flush(), 1_000).unref();
    process.once('exit', () => {
      try {
        destination.flushSync();
      } catch {
        // Nothing more can be done at exit.
      }
    });
  }
  // Pretty lines are made in this thread (no worker) and written to the same destination.
  const formatted: DestinationStream =
    format === 'pretty' ? pinoPretty({ destination, colorize: false, singleLine: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }) : destination;
  const stream = opts.buffered ? errorsAtOnce(formatted, destination) : formatted;
  return pino({ name: opts.name, level, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } }, stream);
}

/** pino's number for the error level. */
const ERROR_LEVEL = 50;

/**
 * A buffered stream that writes errors (and what was buffered before them)
 * at once: an alert such as "audit cannot record" must be in the log when it
 * happens, not a second or, under a flood, minutes later.
 */
function errorsAtOnce(stream: DestinationStream, destination: ReturnType<typeof pinoDestination>): DestinationStream {
  // pino sets lastLevel before each write on a stream that asks for its metadata.
  const s = {
    [Symbol.for('pino.metadata')]: true,
    lastLevel: 0,
    write(line: string) {
      stream.write(line);
      if (s.lastLevel < ERROR_LEVEL) return;
      // With a write in flight, a synchronous one could interleave with it: flush() follows it instead.
      if ((destination as unknown as { _writing: boolean })._writing) return destination.flush();
      try {
        destination.flushSync();
      } catch {
        // Not open yet: the periodic flush writes it.
      }
    },
    // logger.flush() reaches the destination through this.
    flush: (cb?: (err?: Error) => void) => destination.flush(cb),
  };
  return s;
}

/** A logger that drops everything (tests, library use). */
export const silentLogger = (): Logger => pino({ level: 'silent' });
