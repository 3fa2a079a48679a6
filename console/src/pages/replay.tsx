// One session as a timeline: each statement with its decision and rule,
// rows, duration, error and masked columns. Play shows the events as they
// happened, in real time from the first one (or faster).
import { useEffect, useRef, useState } from 'preact/hooks';
import { duration, offset, when } from '../format.js';
import { useApi } from '../hooks.js';
import type { EventView, Session } from '../types.js';
import { Badge, Failure, Loading } from '../ui.js';

type Decided = Record<string, { state: string; rule: string; decisions: { approver: string; approve: boolean; reason: string; at: string }[] }>;

function EventItem({ e, start, current, approvals }: { e: EventView; start: number; current: boolean; approvals: Decided }) {
  const at = offset(Date.parse(e.time) - start);
  if (e.type !== 'statement') {
    return (
      <li class={`event note ${current ? 'current' : ''}`} data-seq={e.seq}>
        <span class="at">{at}</span>
        <span class="what">{e.summary}</span>
      </li>
    );
  }
  const refused = e.decision === 'refused';
  return (
    <li class={`event statement ${refused ? 'refused' : e.error ? 'failed' : 'ok'} ${current ? 'current' : ''}`} data-seq={e.seq}>
      <span class="at">{at}</span>
      <div class="what">
        <pre class="sql">{e.sql?.trim()}</pre>
        {e.parameters && e.parameters.length > 0 && <div class="muted">parameters: {e.parameters.map((p) => (p === null ? 'NULL' : JSON.stringify(p))).join(', ')}</div>}
        <div class="facts">
          <Badge kind={refused ? 'refused' : 'ok'}>{refused ? 'refused' : 'allowed'}</Badge>
          {e.skipped && <span>skipped: not run after an earlier error</span>}
          {e.rule && <span>rule {e.rule}</span>}
          {e.kind && <span>{e.kind}{e.objects && e.objects.length > 0 ? ` ${e.objects.join(', ')}` : ''}</span>}
          {!refused && e.rows !== undefined && <span>{e.rows} row{e.rows === 1 ? '' : 's'}</span>}
          <span>{duration(e.durationMs)}</span>
        </div>
        {e.approvalId && (
          <div class="held" data-testid="held">
            held by rule {approvals[e.approvalId]?.rule ?? '?'} (approval {e.approvalId}
            {approvals[e.approvalId] ? `, ${approvals[e.approvalId]!.state}` : ''})
            {approvals[e.approvalId]?.decisions.map((d) => (
              <span>
                {' '}
                · {d.approve ? 'approved' : 'denied'} by {d.approver}
                {d.reason ? `: ${d.reason}` : ''}
              </span>
            ))}
          </div>
        )}
        {e.error && (
          <div class={refused ? 'why refused' : 'why failed'}>
            {e.error.sqlstate} {e.error.message}
          </div>
        )}
        {e.masked && e.masked.length > 0 && <div class="masked">masked: {e.masked.join(', ')}</div>}
      </div>
    </li>
  );
}

export function ReplayPage({ id }: { id: string }) {
  // A live session's new statements come in as they are recorded.
  const [live, setLive] = useState(false);
  const s = useApi<{ session: Session; events: EventView[]; approvals: Decided }>(`/api/sessions/${encodeURIComponent(id)}`, live ? 2000 : undefined);
  useEffect(() => setLive(Boolean(s.data?.session.live)), [s.data?.session.live]);
  const [shown, setShown] = useState<number | undefined>(undefined);
  const [speed, setSpeed] = useState(1);
  const [playing, setPlaying] = useState(false);
  const timer = useRef<number | undefined>(undefined);
  const events = s.data?.events ?? [];
  const start = events.length ? Date.parse(events[0]!.time) : 0;

  useEffect(() => () => clearTimeout(timer.current), []);
  useEffect(() => {
    if (!playing) return;
    const next = shown ?? 0;
    if (next >= events.length) {
      setPlaying(false);
      return;
    }
    const gap = next === 0 ? 0 : Date.parse(events[next]!.time) - Date.parse(events[next - 1]!.time);
    timer.current = window.setTimeout(() => setShown(next + 1), Math.max(0, gap / speed));
    return () => clearTimeout(timer.current);
  }, [playing, shown, speed, events]);

  if (s.error && !s.data) return <Failure error={s.error} retry={s.reload} />;
  if (!s.data) return <Loading />;
  const { session } = s.data;
  const visible = shown === undefined ? events : events.slice(0, shown);
  const play = () => {
    if (shown === undefined || shown >= events.length) setShown(0);
    setPlaying(true);
  };
  return (
    <section>
      <p>
        <a href="/sessions">← Sessions</a>
      </p>
      <h1>
        {session.identity} on {session.resource} {session.live && <Badge kind="live">live</Badge>}
      </h1>
      <dl class="facts-grid">
        <dt>Session</dt>
        <dd><code>{session.sessionId}</code></dd>
        <dt>Client</dt>
        <dd>{session.applicationName || '—'} from {session.clientAddress || 'unknown address'}</dd>
        <dt>Started</dt>
        <dd>{when(session.startedAt)}</dd>
        <dt>Ended</dt>
        <dd>{session.endedAt ? `${when(session.endedAt)} (${session.endReason || 'no reason'})` : session.live ? 'still running' : 'no end recorded'}</dd>
        <dt>Statements</dt>
        <dd>{session.statements}, {session.refused} refused, {session.errors} failed <Badge kind={session.outcome}>{session.outcome}</Badge></dd>
        <dt>Path</dt>
        <dd>gateway {session.gateway}, agent {session.agent}</dd>
      </dl>
      <div class="player">
        {playing ? (
          <button type="button" onClick={() => setPlaying(false)}>Pause</button>
        ) : (
          <button type="button" onClick={play} data-testid="play">▶ Play</button>
        )}
        <label>
          Speed
          <select value={String(speed)} onChange={(e) => setSpeed(Number((e.target as HTMLSelectElement).value))}>
            <option value="1">real time</option>
            <option value="2">2×</option>
            <option value="10">10×</option>
            <option value="100">100×</option>
          </select>
        </label>
        {shown !== undefined && (
          <>
            <span class="muted">{Math.min(shown, events.length)} of {events.length} events</span>
            <button type="button" class="link" onClick={() => { setPlaying(false); setShown(undefined); }}>Show all</button>
          </>
        )}
      </div>
      {events.length === 0 ? (
        <p class="muted">No events stored for this session yet.</p>
      ) : (
        <ol class="timeline" data-testid="timeline">
          {visible.map((e, i) => (
            <EventItem e={e} start={start} current={playing && i === visible.length - 1} approvals={s.data!.approvals} />
          ))}
        </ol>
      )}
    </section>
  );
}
