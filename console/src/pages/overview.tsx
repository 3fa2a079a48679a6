// At a glance: counts, and statements and refusals over time per identity.
import { useApi } from '../hooks.js';
import type { Overview } from '../types.js';
import { Empty, Failure, Loading } from '../ui.js';

function Bars({ statements, refused, bucketMinutes, since }: { statements: number[]; refused: number[]; bucketMinutes: number; since: string }) {
  const max = Math.max(1, ...statements);
  const w = 8;
  const h = 48;
  const start = Date.parse(since);
  return (
    <svg class="bars" viewBox={`0 0 ${statements.length * w} ${h}`} preserveAspectRatio="none" role="img" aria-label="statements and refusals over time">
      {statements.map((n, i) => {
        const at = new Date(start + i * bucketMinutes * 60_000).toLocaleString();
        const sh = (n / max) * h;
        const rh = ((refused[i] ?? 0) / max) * h;
        return (
          <g>
            <title>{`${at}: ${n} statements, ${refused[i] ?? 0} refused`}</title>
            <rect x={i * w + 1} y={h - sh} width={w - 2} height={sh} class="ok" />
            <rect x={i * w + 1} y={h - rh} width={w - 2} height={rh} class="refused" />
          </g>
        );
      })}
    </svg>
  );
}

export function OverviewPage() {
  const o = useApi<Overview>('/api/overview?hours=24', 10_000);
  if (o.error && !o.data) return <Failure error={o.error} retry={o.reload} />;
  if (!o.data) return <Loading />;
  const { counts, identities } = o.data;
  const tiles: [string, number, string][] = [
    ['Sessions (24 h)', counts.sessions, '/sessions'],
    ['Live now', counts.live, '/sessions'],
    ['Statements (24 h)', counts.statements, '/audit?type=statement'],
    ['Refused (24 h)', counts.refused, '/audit?decision=refused'],
    ['Pending approvals', counts.pendingApprovals, '/approvals'],
  ];
  return (
    <section>
      <h1>Overview</h1>
      <div class="tiles">
        {tiles.map(([label, n, href]) => (
          <a class="tile" href={href} data-testid={`count-${label}`}>
            <span class="n">{n}</span>
            <span>{label}</span>
          </a>
        ))}
      </div>
      <h2>Statements and refusals per identity, last 24 hours</h2>
      {identities.length === 0 ? (
        <Empty title="No statements in the last 24 hours">
          <p>Connect through the gateway (the command <code>npm start</code> printed) and run a query; it shows up here within seconds.</p>
        </Empty>
      ) : (
        <table class="chart-table">
          <thead>
            <tr>
              <th>Identity</th>
              <th>Statements</th>
              <th>Refused</th>
              <th class="wide">Per hour (<span class="key ok">statements</span> <span class="key refused">refused</span>)</th>
            </tr>
          </thead>
          <tbody>
            {identities.map((i) => (
              <tr>
                <td>
                  <a href={`/sessions?identity=${encodeURIComponent(i.identity)}`}>{i.identity}</a>
                </td>
                <td>{i.statements.reduce((a, b) => a + b, 0)}</td>
                <td>{i.refused.reduce((a, b) => a + b, 0)}</td>
                <td class="wide">
                  <Bars statements={i.statements} refused={i.refused} bucketMinutes={o.data!.bucketMinutes} since={o.data!.since} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
