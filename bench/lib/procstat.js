// CPU time and resident memory of other processes, read from /proc.
import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

let clkTck = 0;

/** Clock ticks per second (`getconf CLK_TCK`, normally 100). */
export function clockTicks() {
  if (!clkTck) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/**
 * utime + stime of a process in seconds, or null when it is gone.
 * Fields 14 and 15 of /proc/PID/stat; the command name (field 2) may hold
 * spaces, so count from the closing parenthesis.
 * @param {number} pid
 */
export function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state), so field N is rest[N - 3].
    const utime = Number(rest[14 - 3]);
    const stime = Number(rest[15 - 3]);
    return (utime + stime) / clockTicks();
  } catch {
    return null;
  }
}

/**
 * VmRSS of a process in bytes, or null when it is gone.
 * @param {number} pid
 */
export function rssBytes(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * CPU seconds of several named processes.
 * @param {Record<string, number>} pids
 * @returns {Record<string, number | null>}
 */
export function cpuSnapshot(pids) {
  /** @type {Record<string, number | null>} */
  const out = {};
  for (const [name, pid] of Object.entries(pids)) out[name] = cpuSeconds(pid);
  return out;
}

/**
 * Sample VmRSS of named processes every `intervalMs` until stop() is called;
 * stop() returns the peak and last value of each.
 * @param {Record<string, number>} pids
 * @param {number} [intervalMs]
 */
export function startRssSampler(pids, intervalMs = 50) {
  /** @type {Record<string, { peak: number, first: number | null, samples: number }>} */
  const stats = {};
  for (const name of Object.keys(pids)) stats[name] = { peak: 0, first: null, samples: 0 };
  const sample = () => {
    for (const [name, pid] of Object.entries(pids)) {
      const rss = rssBytes(pid);
      if (rss === null) continue;
      const s = stats[name];
      if (s.first === null) s.first = rss;
      if (rss > s.peak) s.peak = rss;
      s.samples++;
    }
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return stats;
    },
  };
}

/**
 * A process and all its descendants (children of every thread, from
 * /proc/PID/task/TID/children), parents first; processes gone meanwhile are
 * left out.
 * @param {number} pid
 * @returns {number[]}
 */
export function processTree(pid) {
  const out = [];
  const visit = (/** @type {number} */ p) => {
    /** @type {string[]} */
    let tids;
    try {
      tids = readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    out.push(p);
    for (const tid of tids) {
      let kids = '';
      try {
        kids = readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8');
      } catch { /* thread gone */ }
      for (const k of kids.split(' ').filter(Boolean)) visit(Number(k));
    }
  };
  visit(pid);
  return out;
}

/**
 * Proportional set size in bytes (shared pages such as the node binary's
 * split among the processes that map them), or null when gone.
 * @param {number} pid
 */
export function pssBytes(pid) {
  try {
    const m = /^Pss:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * The command line of a process, arguments joined by spaces ('' when gone).
 * @param {number} pid
 */
export function commandLine(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    return '';
  }
}
