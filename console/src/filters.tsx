// The filter forms of the list pages: their values live in the address.
import { qs } from './api.js';
import { navigate } from './router.js';

const HOURS: Record<string, number> = { '1h': 1, '24h': 24, '7d': 24 * 7, '30d': 24 * 30 };

/** "24h" → the ISO time 24 hours ago (to the minute, so the address-keyed fetch stays put). */
export function sinceIso(value: string | null): string | undefined {
  if (!value) return undefined;
  const hours = HOURS[value];
  return hours ? new Date(Math.floor(Date.now() / 60_000) * 60_000 - hours * 3600_000).toISOString() : value;
}

/** A submit handler that moves to `path` with the form's filled-in fields as the query. */
export const submitTo = (path: string) => (e: Event) => {
  e.preventDefault();
  const data = new FormData(e.target as HTMLFormElement);
  navigate(`${path}${qs(Object.fromEntries([...data.entries()].map(([k, v]) => [k, String(v).trim()])))}`);
};

/** The identity and resource fields every list filters by. */
export function WhoWhere({ identity, resource }: { identity: string; resource: string }) {
  return (
    <>
      <label>
        Identity <input name="identity" value={identity} placeholder="any" />
      </label>
      <label>
        Resource <input name="resource" value={resource} placeholder="any" />
      </label>
    </>
  );
}

export function SinceSelect({ label, value }: { label: string; value: string }) {
  return (
    <label>
      {label}
      <select name="since" value={value}>
        <option value="">any time</option>
        <option value="1h">last hour</option>
        <option value="24h">last 24 hours</option>
        <option value="7d">last 7 days</option>
        <option value="30d">last 30 days</option>
      </select>
    </label>
  );
}

export function Choice({ label, name, value, options }: { label: string; name: string; value: string; options: [string, string][] }) {
  return (
    <label>
      {label}
      <select name={name} value={value}>
        <option value="">any</option>
        {options.map(([v, text]) => (
          <option value={v}>{text}</option>
        ))}
      </select>
    </label>
  );
}
