// Recorded sessions, newest first, filtered by identity, resource, outcome
// and time; live ones are marked. Filters live in the address, so a
// filtered list can be shared.
import { qs } from '../api.js';
import { ago, duration, when } from '../format.js';
import { useApi } from '../hooks.js';
import { Choice, SinceSelect, WhoWhere, sinceIso, submitTo } from '../filters.js';
import { useLocation } from '../router.js';
import type { Session } from '../types.js';
import { Badge, Empty, Failure, Loading, Table } from '../ui.js';

export function SessionsPage() {
  const { query } = useLocation();
  const f = { identity: query.get('identity') ?? '', resource: query.get('resource') ?? '', outcome: query.get('outcome') ?? '', since: query.get('since') ?? '' };
  const list = useApi<{ sessions: Session[] }>(`/api/sessions${qs({ identity: f.identity, resource: f.resource, outcome: f.outcome, since: sinceIso(f.since) })}`, 5000);
  const filtered = Object.values(f).some(Boolean);
  return (
    <section>
      <h1>Sessions</h1>
      <form class="filters" onSubmit={submitTo('/sessions')}>
        <WhoWhere identity={f.identity} resource={f.resource} />
        <Choice label="Outcome" name="outcome" value={f.outcome} options={[['ok', 'ok'], ['refused', 'refused'], ['error', 'error']]} />
        <SinceSelect label="Started" value={f.since} />
        <button type="submit">Filter</button>
        {filtered && (
          <a href="/sessions" class="clear">
            Clear
          </a>
        )}
      </form>
      {list.error && <Failure error={list.error} retry={list.reload} />}
      {!list.data && !list.error && <Loading />}
      {list.data?.sessions.length === 0 &&
        (filtered ? (
          <Empty title="No session matches these filters">
            <p>Widen the time range or clear the filters.</p>
          </Empty>
        ) : (
          <Empty title="No sessions recorded yet">
            <p>
              Connect through the gateway, e.g. <code>PGPASSWORD=$(npx warden token --sub demo) psql "host=127.0.0.1 port=15432 dbname=shop user=demo sslmode=disable"</code>; the session appears here
              while it runs.
            </p>
          </Empty>
        ))}
      {list.data && list.data.sessions.length > 0 && (
        <Table heads={['Started', 'Identity', 'Resource', 'Client', 'Statements', 'Outcome', 'Length']} testid="sessions">
            {list.data.sessions.map((s) => (
              <tr data-session={s.sessionId}>
                <td>
                  <a href={`/sessions/${encodeURIComponent(s.sessionId)}`} title={when(s.startedAt)}>
                    {ago(s.startedAt)}
                  </a>
                  {s.live && <Badge kind="live">live</Badge>}
                </td>
                <td>{s.identity}</td>
                <td>{s.resource}</td>
                <td>
                  {s.applicationName || '—'} <span class="muted">{s.clientAddress}</span>
                </td>
                <td>
                  {s.statements}
                  {s.refused > 0 && <span class="muted"> ({s.refused} refused)</span>}
                </td>
                <td>
                  <Badge kind={s.outcome}>{s.outcome}</Badge>
                </td>
                <td>{s.endedAt ? duration(Date.parse(s.endedAt) - Date.parse(s.startedAt)) : s.live ? 'running' : 'no end recorded'}</td>
              </tr>
            ))}
        </Table>
      )}
    </section>
  );
}
