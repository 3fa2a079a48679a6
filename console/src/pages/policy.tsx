// Policy: the version in force, its history, the difference between two
// versions, and a box that checks a statement with the gateway's own code
// (the same as `warden policy check`).
import { diffLines } from 'diff';
import { useEffect, useState } from 'preact/hooks';
import { api, ApiFailure } from '../api.js';
import { when } from '../format.js';
import { useApi } from '../hooks.js';
import { Badge, Empty, Failure, Loading, Table } from '../ui.js';

interface PolicyInfo {
  inForce: number;
  configVersion: number;
  versions: { version: number; appliedAt: string; author: string; summary: string }[];
  identities: string[];
  resources: string[];
}

interface CheckLine {
  statement: string;
  decision: 'allowed' | 'refused';
  rule?: string;
  ruleAccess?: string;
  message: string;
  masked?: { position: number; column: string; mask: string; rule: string }[];
  held?: { rule: string; why: string; approvers: string[]; quorum: number; mode: string };
}

function Diff({ from, to }: { from: number; to: number }) {
  const [texts, setTexts] = useState<[string, string]>();
  const [error, setError] = useState<ApiFailure>();
  useEffect(() => {
    setTexts(undefined);
    const yamlOf = (v: number) => (v === 0 ? Promise.resolve('') : api<{ yaml: string }>(`/api/policy/versions/${v}`).then((r) => r.yaml));
    Promise.all([yamlOf(from), yamlOf(to)]).then(([a, b]) => setTexts([a, b]), setError);
  }, [from, to]);
  if (error) return <Failure error={error} />;
  if (!texts) return <Loading />;
  const parts = diffLines(texts[0], texts[1]);
  if (parts.every((p) => !p.added && !p.removed)) return <p class="muted">The two versions are the same file.</p>;
  return (
    <pre class="diff" data-testid="diff">
      {parts.map((p) =>
        p.value
          .replace(/\n$/, '')
          .split('\n')
          .map((line) => <div class={p.added ? 'add' : p.removed ? 'del' : 'same'}>{`${p.added ? '+' : p.removed ? '-' : ' '} ${line}`}</div>),
      )}
    </pre>
  );
}

function Check({ info }: { info: PolicyInfo }) {
  const [as, setAs] = useState(info.identities[0] ?? '');
  const [resource, setResource] = useState(info.resources[0] ?? '');
  const [sql, setSql] = useState('DELETE FROM orders');
  const [lines, setLines] = useState<CheckLine[]>();
  const [error, setError] = useState<string>();
  const run = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    try {
      setLines((await api<{ statements: CheckLine[] }>('/api/policy/check', { method: 'POST', body: { as, resource, sql } })).statements);
    } catch (err) {
      setLines(undefined);
      setError((err as ApiFailure).message);
    }
  };
  if (info.identities.length === 0 || info.resources.length === 0) {
    return <p class="muted">There is no identity or resource to check as yet: define them in the policy file.</p>;
  }
  return (
    <form class="check" onSubmit={run}>
      <div class="filters">
        <label>
          As identity
          <select value={as} onChange={(e) => setAs((e.target as HTMLSelectElement).value)}>
            {info.identities.map((i) => (
              <option>{i}</option>
            ))}
          </select>
        </label>
        <label>
          On resource
          <select value={resource} onChange={(e) => setResource((e.target as HTMLSelectElement).value)}>
            {info.resources.map((r) => (
              <option>{r}</option>
            ))}
          </select>
        </label>
      </div>
      <textarea aria-label="SQL to check" rows={3} value={sql} onInput={(e) => setSql((e.target as HTMLTextAreaElement).value)} />
      <button type="submit">Check</button>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {lines && (
        <ul class="check-result" data-testid="check-result">
          {lines.map((l) => (
            <li>
              <Badge kind={l.decision === 'refused' ? 'refused' : 'ok'}>{l.decision}</Badge> {l.decision === 'refused' ? l.message : `${l.message} — rule ${l.rule} (${l.ruleAccess})`}
              {l.masked?.map((m) => (
                <div class="masked">
                  masked: column {m.position} ({m.column}) with {m.mask} — mask {m.rule}
                </div>
              ))}
              {l.held && (
                <div class="muted">
                  held for approval (rule {l.held.rule}: {l.held.why}) by {l.held.quorum} of groups {l.held.approvers.join(', ')}
                </div>
              )}
            </li>
          ))}
        </ul>
      )}
    </form>
  );
}

function VersionSelect({ label, value, versions, onChange }: { label: string; value: number; versions: PolicyInfo['versions']; onChange: (v: number) => void }) {
  return (
    <label>
      {label}
      <select value={String(value)} onChange={(e) => onChange(Number((e.target as HTMLSelectElement).value))}>
        <option value="0">(none: before the first)</option>
        {versions.map((v) => (
          <option value={String(v.version)}>
            {v.version}: {v.summary.slice(0, 60)}
          </option>
        ))}
      </select>
    </label>
  );
}

export function PolicyPage() {
  const p = useApi<PolicyInfo>('/api/policy');
  const [pair, setPair] = useState<[number, number]>();
  if (p.error && !p.data) return <Failure error={p.error} retry={p.reload} />;
  if (!p.data) return <Loading />;
  const { versions, inForce } = p.data;
  const newest = versions[0]?.version ?? 0;
  const shown = pair ?? (newest > 0 ? [Math.max(0, newest - 1), newest] : undefined);
  return (
    <section>
      <h1>Policy</h1>
      <p>
        {inForce > 0 ? (
          <>
            Version <strong data-testid="in-force">{inForce}</strong> is in force (configuration version {p.data.configVersion}).
          </>
        ) : (
          <>No policy file has been applied: the configuration comes from commands (and local mode's demo rules), version {p.data.configVersion}.</>
        )}
      </p>
      <h2>Check a statement</h2>
      <p class="muted">What the gateway would do, and which rule decides, with the rules in force. Nothing runs.</p>
      <Check info={p.data} />
      <h2>History</h2>
      {versions.length === 0 ? (
        <Empty title="No versions yet">
          <p>
            Apply a policy file with <code>npx warden policy apply -f policy.yaml</code>; each apply is a version listed here.
          </p>
        </Empty>
      ) : (
        <Table heads={['Version', 'Applied', 'Author', 'Changes', 'Compare']}>
            {versions.map((v) => (
              <tr>
                <td>
                  {v.version} {v.version === inForce && <Badge kind="ok">in force</Badge>}
                </td>
                <td>{when(v.appliedAt)}</td>
                <td>{v.author || '—'}</td>
                <td>{v.summary}</td>
                <td>
                  <button type="button" class="link" onClick={() => setPair([v.version - 1, v.version])}>
                    diff with {v.version - 1 || 'nothing'}
                  </button>
                </td>
              </tr>
            ))}
        </Table>
      )}
      {shown && (
        <>
          <h2>Differences</h2>
          <div class="filters">
            <VersionSelect label="From version" value={shown[0]} versions={versions} onChange={(v) => setPair([v, shown[1]])} />
            <VersionSelect label="To version" value={shown[1]} versions={versions} onChange={(v) => setPair([shown[0], v])} />
          </div>
          <Diff from={shown[0]} to={shown[1]} />
        </>
      )}
    </section>
  );
}
