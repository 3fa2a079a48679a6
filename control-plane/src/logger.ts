// JSON logs (pino), written synchronously so nothing is lost on exit (the
// control plane logs little). Secrets are never passed to the logger; redaction is a
// second line of defence in case an object carrying one slips through.
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import pino, { type Logger } from 'pino';

export type { Logger };

export interface LoggerOptions {
  /** File to append to; stdout when absent. */
  file?: string;
  level?: string;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  if (opts.file) {
    // Create the file owner-only first; pino would use the umask.
    mkdirSync(dirname(opts.file), { recursive: true, mode: 0o700 });
    closeSync(openSync(opts.file, 'a', 0o600));
  }
  const destination = opts.file
    ? pino.destination({ dest: opts.file, append: true, sync: true })
    : pino.destination({ dest: 1, sync: true });
  return pino(
    {
      name: 'warden-control-plane',
      level: opts.level ?? process.env.WARDEN_LOG_LEVEL ?? 'info',
      redact: {
        paths: ['token', 'password', 'authorization', '*.token', '*.password', '*.authorization'],
        censor: '[redacted]',
      },
    },
    destination,
  );
}

/** A logger that drops everything (tests, library use). */
export const silentLogger = (): Logger => pino({ level: 'silent' });
