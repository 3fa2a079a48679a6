// The control plane's logger: the shared setup of @warden/proto/log, written
// synchronously so nothing is lost on exit (the control plane logs little).
import { createLogger as createSharedLogger, type Logger } from '@warden/proto/log';

export { silentLogger } from '@warden/proto/log';
export type { Logger };

export interface LoggerOptions {
  /** File to append to; stdout when absent. */
  file?: string;
  level?: string;
  /** json (default) or pretty; WARDEN_LOG_FORMAT otherwise. */
  format?: string;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  return createSharedLogger({ name: 'warden-control-plane', ...opts });
}
