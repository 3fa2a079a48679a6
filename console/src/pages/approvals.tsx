// The approvals inbox: pending requests appear by themselves (polled every
// two seconds); approve or deny with a reason; decided ones show who decided.
import { useState } from 'preact/hooks';
import { api, ApiFailure } from '../api.js';
import { ago, until, when } from '../format.js';
import { useApi } from '../hooks.js';
import type { Approval, Me } from '../types.js';
import { Badge, Empty, Failure, Loading } from '../ui.js';

function Decide({ a, me, done }: { a: Approval; me: Me; done: () => void }) {
  const [reason, setReason] = useState('');
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const mine = a.approvers.some((g) => me.groups.includes(g));
  const decide = async (verb: 'approve' | 'deny') => {
    setBusy(true);
    setError(undefined);
    try {
      await api(`/api/approvals/${encodeURIComponent(a.id)}/${verb}`, { method: 'POST', body: { reason } });
      done();
    } catch (e) {
      setError((e as ApiFailure).message);
    } finally {
      setBusy(false);
    }
  };
  if (!mine) return <p class="muted">Approvers: group {a.approvers.join(' or ')}; you are not in one of them.</p>;
  return (
    <div class="decide">
      <input aria-label="Reason" placeholder="Reason (needed to deny)" value={reason} onInput={(e) => setReason((e.target as HTMLInputElement).value)} />
      <button type="button" disabled={busy} onClick={() => decide('approve')}>
        Approve
      </button>
      <button type="button" class="danger" disabled={busy} onClick={() => decide('deny')}>
        Deny
      </button>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}

function Card({ a, me, reload }: { a: Approval; me: Me; reload: () => void }) {
  const ok = a.decisions.filter((d) => d.approve).length;
  return (
    <article class={`approval ${a.state}`} data-approval={a.id}>
      <header>
        <strong>{a.identity}</strong> on <strong>{a.resource}</strong>: {a.why || 'held statement'} <Badge kind={a.state}>{a.state}</Badge>
      </header>
      <pre class="sql">{a.sql}</pre>
      <p class="muted">
        Rule {a.rule} · {ok} of {Math.max(1, a.quorum)} approvals · asked {ago(a.createdAt)}
        {a.state === 'pending' ? ` · expires in ${until(a.expiresAt)}` : ''}
        {a.reason ? ` · client's reason: ${a.reason}` : ''}
      </p>
      {a.decisions.length > 0 && (
        <ul class="decisions">
          {a.decisions.map((d) => (
            <li>
              {d.approve ? 'Approved' : 'Denied'} by <strong>{d.approver}</strong> {when(d.at)}
              {d.reason ? `: ${d.reason}` : ''}
            </li>
          ))}
        </ul>
      )}
      {a.state === 'pending' && <Decide a={a} me={me} done={reload} />}
    </article>
  );
}

export function ApprovalsPage({ me }: { me: Me }) {
  const pending = useApi<{ approvals: Approval[] }>('/api/approvals?state=pending', 2000);
  const recent = useApi<{ approvals: Approval[] }>('/api/approvals?state=all&limit=20', 5000);
  const reload = () => {
    pending.reload();
    recent.reload();
  };
  if (pending.error && !pending.data) return <Failure error={pending.error} retry={reload} />;
  if (!pending.data) return <Loading />;
  const decided = (recent.data?.approvals ?? []).filter((a) => a.state !== 'pending');
  return (
    <section>
      <h1>Approvals</h1>
      <h2>Waiting ({pending.data.approvals.length})</h2>
      {pending.data.approvals.length === 0 ? (
        <Empty title="Nothing waits for you">
          <p>
            Statements held by an approval rule whose approver groups include yours ({me.groups.join(', ') || 'none'}) appear here by themselves. Approval rules
            are in the policy file's <code>approvals</code> section.
          </p>
        </Empty>
      ) : (
        <div data-testid="pending">
          {pending.data.approvals.map((a) => (
            <Card a={a} me={me} reload={reload} />
          ))}
        </div>
      )}
      <h2>Recently decided</h2>
      {decided.length === 0 ? (
        <p class="muted">None yet.</p>
      ) : (
        <div data-testid="decided">
          {decided.map((a) => (
            <Card a={a} me={me} reload={reload} />
          ))}
        </div>
      )}
    </section>
  );
}
