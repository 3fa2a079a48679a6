// Reads a process's /metrics (Prometheus text format) into samples by their
// series, e.g. 'warden_statements_total{decision="allowed",kind="SELECT"}'.
export type Samples = Map<string, number>;

export function parseMetrics(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

export async function scrape(base: string): Promise<Samples> {
  const res = await fetch(`${base}/metrics`);
  if (res.status !== 200) throw new Error(`${base}/metrics answered ${res.status}`);
  return parseMetrics(await res.text());
}

/** The metric names that have at least one sample (histogram series keep their _bucket, _sum, _count). */
export const sampleNames = (s: Samples): Set<string> => new Set([...s.keys()].map((k) => k.replace(/\{.*$/, '')));

/** A series' value, 0 when absent (a labelled counter has no sample until it first counts). */
export const valueOf = (s: Samples, series: string): number => s.get(series) ?? 0;
