// Printing helpers: aligned tables for people, JSON for scripts.
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export const json = (value: unknown) => JSON.stringify(value, null, 2);

/** Empty cells show as '-' so columns stay readable. */
export const cell = (value: string | undefined) => (value ? value : '-');
