// Time arguments of the audit commands: "24h", "7d", "30m" back from now, or
// an ISO 8601 time.
import { CliError } from '../errors.js';

const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

export function parseTime(text: string | undefined, name: string, now = new Date()): string {
  if (text === undefined || text === '') return '';
  const rel = /^(\d+)([smhdw])$/.exec(text.trim());
  if (rel) return new Date(now.getTime() - Number(rel[1]) * UNITS[rel[2]!]!).toISOString();
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new CliError(`--${name} '${text}' must be a duration back from now (30m, 24h, 7d, 2w) or an ISO time (2024-05-01T12:00:00Z)`);
  return new Date(t).toISOString();
}

/** "real" = 1, "fast" = no waiting (Infinity), or a speed-up factor such as 2 or 0.5. */
export function parseSpeed(text: string | undefined): number {
  if (text === undefined || text === 'fast') return Infinity;
  if (text === 'real') return 1;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new CliError(`--speed must be real, fast or a factor such as 2 (twice as fast)`);
  return n;
}

/** "+1.234s" from the session's first event. */
export function offset(ms: number): string {
  return `+${(ms / 1000).toFixed(3)}s`;
}
