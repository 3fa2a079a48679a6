// Open-file limits, which bound how many sessions the bench can hold open.
//
// Node raises its own soft RLIMIT_NOFILE to the hard limit at startup, so the
// bench, `warden start`, the gateway and the agent (all Node) each get the
// hard limit they inherit, and PgBouncer inherits the bench's raised soft
// limit. Only the hard limit of the shell the bench runs from matters.
import { readFileSync } from 'node:fs';

/** Descriptors kept free for everything but the sessions (logs, pipes, pools). */
export const FD_HEADROOM = 256;

/**
 * Soft and hard "Max open files" of a process (Infinity for unlimited), or
 * null when it is gone.
 * @param {number | 'self'} pid
 * @returns {{ soft: number, hard: number } | null}
 */
export function openFilesLimit(pid = 'self') {
  try {
    const text = readFileSync(`/proc/${pid}/limits`, 'utf8');
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
    if (!m) return null;
    const num = (/** @type {string} */ s) => (s === 'unlimited' ? Infinity : Number(s));
    return { soft: num(m[1]), hard: num(m[2]) };
  } catch {
    return null;
  }
}

/**
 * Descriptors a path's busiest process needs for `sessions` open sessions:
 * PgBouncer holds a client and a server socket per session; the gateway a
 * client socket each (the tunnel is one link), the agent a Postgres socket
 * each; the bench a client socket each.
 * @param {number} sessions
 * @param {'direct' | 'pgbouncer' | 'warden'} kind
 */
export function descriptorsNeeded(sessions, kind) {
  return (kind === 'pgbouncer' ? 2 : 1) * sessions + FD_HEADROOM;
}

/**
 * The most sessions a process with this limit can hold on a path of `kind`.
 * @param {{ soft: number } | null} limit
 * @param {'direct' | 'pgbouncer' | 'warden'} kind
 */
export function sessionsAllowed(limit, kind) {
  if (!limit || limit.soft === Infinity) return Infinity;
  return Math.max(1, Math.floor((limit.soft - FD_HEADROOM) / (kind === 'pgbouncer' ? 2 : 1)));
}
