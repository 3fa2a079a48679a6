// Audit search: events by statement kind, identity, resource, decision,
// text and time, newest last (as the CLI's `warden audit search`).
import { qs } from '../api.js';
import { when } from '../format.js';
import { useApi } from '../hooks.js';
import { Choice, SinceSelect, WhoWhere, sinceIso, submitTo } from '../filters.js';
import { useLocation } from '../router.js';
import type { EventView } from '../types.js';
import { Badge, Empty, Failure, Loading, Table } from '../ui.js';

const FIELDS = ['kind', 'identity', 'resource', 'decision', 'type', 'text', 'since'] as const;

export function AuditPage() {
  const { query } = useLocation();
  const f = Object.fromEntries(FIELDS.map((k) => [k, query.get(k) ?? ''])) as Record<(typeof FIELDS)[number], string>;
  const res = useApi<{ events: EventView[] }>(`/api/audit${qs({ ...f, since: sinceIso(f.since) })}`);
  return (
    <section>
      <h1>Audit search</h1>
      <form class="filters" onSubmit={submitTo('/audit')}>
        <label>
          Statement kind <input name="kind" value={f.kind} placeholder="DROP, DELETE…" />
        </label>
        <label>
          Text in SQL <input name="text" value={f.text} placeholder="orders" />
        </label>
        <WhoWhere identity={f.identity} resource={f.resource} />
        <Choice label="Decision" name="decision" value={f.decision} options={[['allowed', 'allowed'], ['refused', 'refused']]} />
        <Choice
          label="Event"
          name="type"
          value={f.type}
          options={[['statement', 'statement'], ['session.start', 'session start'], ['session.end', 'session end'], ['auth.failure', 'failed sign-in'], ['approval', 'approval']]}
        />
        <SinceSelect label="When" value={f.since} />
        <button type="submit">Search</button>
      </form>
      {res.error && <Failure error={res.error} retry={res.reload} />}
      {!res.data && !res.error && <Loading />}
      {res.data?.events.length === 0 && (
        <Empty title="Nothing matches">
          <p>Statement kinds match by prefix (DROP finds DROP TABLE); text matches anywhere in the SQL. Widen the time range or clear a field.</p>
        </Empty>
      )}
      {res.data && res.data.events.length > 0 && (
        <Table heads={['When', 'Event', 'Decision', 'Session']} testid="audit-results">
            {res.data.events.map((e) => (
              <tr>
                <td>{when(e.time)}</td>
                <td>
                  <div>{e.summary}</div>
                  {e.sql && <pre class="sql small">{e.sql.trim()}</pre>}
                </td>
                <td>{e.decision && <Badge kind={e.decision === 'refused' ? 'refused' : 'ok'}>{e.decision}</Badge>}</td>
                <td>{e.sessionId && e.type !== 'auth.failure' && e.type !== 'approval' ? <a href={`/sessions/${encodeURIComponent(e.sessionId)}`}>replay</a> : '—'}</td>
              </tr>
            ))}
        </Table>
      )}
    </section>
  );
}
