// Resident memory of other processes (the gateway, the agent), sampled from
// /proc while a test drives them, for assertions that memory stays bounded.
import { readFileSync } from 'node:fs';

export const MiB = 1024 * 1024;

/** Current resident set size of a process, in bytes (Linux /proc). */
export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

export interface RssReport {
  /** RSS when sampling started. */
  start: number;
  /** Highest RSS seen while sampling. */
  peak: number;
  samples: number;
}

/**
 * Samples the RSS of each named process every `intervalMs` until stop().
 * The first sample is taken at once, so `start` is the baseline.
 */
export function sampleRss<K extends string>(pids: Record<K, number>, intervalMs = 100) {
  const reports = {} as Record<K, RssReport>;
  const names = Object.keys(pids) as K[];
  for (const name of names) {
    const rss = rssOf(pids[name]);
    reports[name] = { start: rss, peak: rss, samples: 1 };
  }
  const sample = () => {
    for (const name of names) {
      const r = reports[name];
      const rss = rssOf(pids[name]);
      if (rss > r.peak) r.peak = rss;
      r.samples++;
    }
  };
  const timer = setInterval(sample, intervalMs);
  return {
    /** The reports so far (live objects). */
    reports,
    stop(): Record<K, RssReport> {
      clearInterval(timer);
      sample();
      return reports;
    },
  };
}

/** "gateway 120 → 135 MiB peak (+15)" for assertion messages. */
export function describeRss(name: string, r: RssReport): string {
  const mib = (n: number) => (n / MiB).toFixed(1);
  return `${name} RSS ${mib(r.start)} MiB at start, ${mib(r.peak)} MiB peak (+${mib(r.peak - r.start)}) over ${r.samples} samples`;
}
