// Child processes of local mode (gateway, agent): output appended to a log
// file, and a stop that escalates from SIGTERM to SIGKILL.
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

export interface Child {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** Settles when the process is gone, for whatever reason. */
  readonly exited: Promise<ChildExit>;
  stop(graceMs?: number): Promise<ChildExit>;
}

export function spawnChild(name: string, args: string[], env: NodeJS.ProcessEnv, logFile: string): Child {
  const fd = openSync(logFile, 'a', 0o600);
  let proc;
  try {
    proc = spawn(process.execPath, args, { stdio: ['ignore', fd, fd], env });
  } finally {
    // The child holds its own copy of the descriptor.
    closeSync(fd);
  }
  const exited = new Promise<ChildExit>((resolve) => {
    proc.once('exit', (code, signal) => resolve({ code, signal }));
    proc.once('error', (error) => resolve({ code: null, signal: null, error }));
  });
  let gone = false;
  void exited.then(() => (gone = true));

  const stop = async (graceMs = 5000): Promise<ChildExit> => {
    if (!gone) {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (!gone) proc.kill('SIGKILL');
      }, graceMs);
      await exited;
      clearTimeout(timer);
    }
    return exited;
  };
  return { name, pid: proc.pid ?? -1, logFile, exited, stop };
}

export function describeExit(e: ChildExit): string {
  if (e.error) return `could not run: ${e.error.message}`;
  if (e.signal) return `killed by ${e.signal}`;
  return `exited with code ${e.code}`;
}
