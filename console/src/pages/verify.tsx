// The audit trail's hash chains, checked now (as `warden audit verify`).
import { when } from '../format.js';
import { useApi } from '../hooks.js';
import { Badge, Failure, Loading } from '../ui.js';

interface Report {
  ok: boolean;
  sessions: number;
  events: number;
  days: number;
  problems: { kind: string; sessionId: string; seq: number; day: string; detail: string }[];
  warnings: string[];
  headDay: string;
  headHash: string;
  checkedAt: string;
  tookMs: number;
}

export function VerifyPage() {
  const r = useApi<Report>('/api/audit/verify');
  if (r.error && !r.data) return <Failure error={r.error} retry={r.reload} />;
  if (!r.data) return <Loading />;
  const v = r.data;
  return (
    <section>
      <h1>Audit chain</h1>
      <p data-testid="verify-status">
        {v.ok ? <Badge kind="ok">intact</Badge> : <Badge kind="refused">problems found</Badge>} {v.sessions} sessions, {v.events} events and {v.days} closed days checked{' '}
        {when(v.checkedAt)} ({v.tookMs} ms).
      </p>
      {v.headDay && (
        <p class="muted">
          Daily chain head: {v.headDay} <code>{v.headHash.slice(0, 16)}…</code>
        </p>
      )}
      <button type="button" onClick={r.reload} disabled={r.loading}>
        Check again
      </button>
      {v.problems.length > 0 && (
        <>
          <h2>Problems</h2>
          <ul class="problems">
            {v.problems.map((p) => (
              <li>
                {p.kind}{p.sessionId ? ` in session ${p.sessionId}` : ""}{p.day ? ` on ${p.day}` : ""}: {p.detail}
              </li>
            ))}
          </ul>
        </>
      )}
      {v.warnings.length > 0 && (
        <>
          <h2>Worth a look</h2>
          <ul>
            {v.warnings.map((w) => (
              <li>{w}</li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}
