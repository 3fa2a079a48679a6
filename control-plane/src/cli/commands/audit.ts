// warden sessions list | show | replay, warden audit search | verify | retention
import { setTimeout as sleep } from 'node:timers/promises';
import { eventRecord, isoOf, msOf, summarize } from '@warden/proto/audit';
import { seqOf, sessionDuration, sessionHeader, sessionOf, transcriptLines } from '../audit/render.js';
import { parseSpeed, parseTime } from '../audit/time.js';
import { CLIENT_OPTIONS, type Command, type Context } from '../context.js';
import { CliError } from '../errors.js';
import { json, table } from '../output.js';

function limit(ctx: Context): number {
  const text = ctx.opt('limit');
  if (text === undefined) return 0;
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new CliError('--limit must be a positive whole number');
  return n;
}

const fetchSession = (ctx: Context, sessionId: string) => ctx.withAdmin((c) => c.call((x) => x.getSession, { sessionId }));

/** "2024-05-01T12:00:00.000Z" → "2024-05-01 12:00:00" */
const shortTime = (iso: string) => iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');

export const auditCommands: Command[] = [
  {
    name: 'sessions list',
    summary: 'list the recorded sessions, newest first',
    usage: '[--identity I] [--resource R] [--since 24h|ISO] [--until ISO] [--outcome ok|error|refused] [--limit N] [--json]',
    options: [
      ...CLIENT_OPTIONS,
      ['identity', 'only the sessions of this identity'],
      ['resource', 'only the sessions on this resource'],
      'since',
      'until',
      'outcome',
      'limit',
    ],
    async run(ctx) {
      const { sessions } = await ctx.withAdmin((c) =>
        c.call((x) => x.listSessions, {
          identity: ctx.opt('identity') ?? '',
          resource: ctx.opt('resource') ?? '',
          since: parseTime(ctx.opt('since'), 'since'),
          until: parseTime(ctx.opt('until'), 'until'),
          outcome: ctx.opt('outcome') ?? '',
          limit: limit(ctx),
        }),
      );
      if (ctx.json) return ctx.print(json(sessions));
      if (sessions.length === 0) return ctx.print('No sessions.');
      ctx.print(
        table(
          ['SESSION', 'STARTED', 'IDENTITY', 'RESOURCE', 'STATEMENTS', 'OUTCOME', 'DURATION'],
          sessions.map((s) => [s.sessionId, shortTime(s.startedAt), s.identity, s.resource, String(s.statements), s.outcome, sessionDuration(s)]),
        ),
      );
    },
  },
  {
    name: 'sessions show',
    summary: 'a session and a one-line summary of each of its events',
    usage: 'ID [--json]',
    argument: { name: 'ID', description: 'the session' },
    options: CLIENT_OPTIONS,
    async run(ctx) {
      const res = await fetchSession(ctx, ctx.arg());
      const events = res.events;
      if (ctx.json) return ctx.print(json({ session: res.session, events: events.map(eventRecord) }));
      ctx.print([...sessionHeader(res.session!), '', ...events.map((e) => `${shortTime(isoOf(e.time))}  ${summarize(e)}`)].join('\n'));
    },
  },
  {
    name: 'sessions replay',
    summary: 'a session as a transcript: statements, decisions and results in order',
    usage: 'ID [--speed real|fast|N]',
    argument: { name: 'ID', description: 'the session' },
    options: [...CLIENT_OPTIONS, 'speed'],
    async run(ctx) {
      const speed = parseSpeed(ctx.opt('speed'));
      const res = await fetchSession(ctx, ctx.arg());
      const events = [...res.events].sort((a, b) => seqOf(a) - seqOf(b));
      if (ctx.json) return ctx.print(json({ session: res.session, events: events.map(eventRecord) }));
      ctx.print(`${sessionHeader(res.session!).join('\n')}\n`);
      const start = events.length > 0 ? msOf(events[0]!.time) : 0;
      let previous = start;
      for (const e of events) {
        const at = msOf(e.time);
        if (Number.isFinite(speed) && at > previous) await sleep((at - previous) / speed);
        previous = Math.max(previous, at);
        ctx.print(transcriptLines(e, start).join('\n'));
      }
      if (res.session!.linkedSeq + 1 < res.session!.events) ctx.note('note: some events of this session have not arrived yet; the transcript has gaps');
    },
  },
  {
    name: 'audit search',
    summary: 'find audit events',
    usage:
      '[--kind DROP] [--identity I] [--resource R] [--decision allowed|refused] [--since 7d] [--until ISO]\n' +
      '                           [--text SUBSTRING] [--type statement|session.start|session.end|auth.failure] [--limit N] [--json]',
    options: [
      ...CLIENT_OPTIONS,
      'kind',
      ['identity', 'only the events of this identity'],
      ['resource', 'only the events on this resource'],
      'decision',
      'since',
      'until',
      'text',
      'type',
      'limit',
    ],
    async run(ctx) {
      const { events } = await ctx.withAdmin((c) =>
        c.call((x) => x.searchAudit, {
          kind: ctx.opt('kind') ?? '',
          identity: ctx.opt('identity') ?? '',
          resource: ctx.opt('resource') ?? '',
          decision: ctx.opt('decision') ?? '',
          since: parseTime(ctx.opt('since'), 'since'),
          until: parseTime(ctx.opt('until'), 'until'),
          text: ctx.opt('text') ?? '',
          type: ctx.opt('type') ?? '',
          sessionId: '',
          limit: limit(ctx),
        }),
      );
      if (ctx.json) return ctx.print(json(events.map(eventRecord)));
      if (events.length === 0) return ctx.print('No matching events.');
      ctx.print(events.map((e) => `${shortTime(isoOf(e.time))}  ${sessionOf(e)}  ${summarize(e)}`).join('\n'));
    },
  },
  {
    name: 'audit verify',
    summary: 'recompute the session and daily hash chains',
    usage: '[--json]',
    details: 'Exit code 1 when a record was edited, reordered or deleted.',
    options: CLIENT_OPTIONS,
    async run(ctx) {
      const report = await ctx.withAdmin((c) => c.call((x) => x.verifyAudit, {}));
      if (ctx.json) {
        ctx.print(json(report));
        return report.ok ? 0 : 1;
      }
      const scope = `${report.sessions} session(s), ${report.events} event(s), ${report.days} closed day(s)`;
      for (const w of report.warnings) ctx.note(`warning: ${w}`);
      if (report.ok) {
        ctx.print(`Audit trail intact: ${scope}.`);
        if (report.headDay) ctx.print(`Daily chain head: ${report.headDay} ${report.headHash}`);
        return 0;
      }
      ctx.print(`Audit trail TAMPERED: ${report.problems.length} problem(s) in ${scope}:`);
      for (const p of report.problems) {
        const where = p.sessionId ? `session ${p.sessionId}${p.seq >= 0 ? ` seq ${p.seq}` : ''}` : `day ${p.day}`;
        ctx.print(`  ${p.kind.padEnd(9)} ${where}: ${p.detail}`);
      }
      return 1;
    },
  },
  {
    name: 'audit retention',
    summary: 'show or set how many days of sessions are kept',
    usage: '[set --days N] [--json]',
    details: '0 days keeps them forever; the control plane deletes older days as they expire.',
    argument: { name: 'ACTION', description: 'set: change the retention to --days', optional: true, choices: ['set'], excess: 'takes at most set: use warden audit retention [set --days N]' },
    options: [...CLIENT_OPTIONS, 'days'],
    async run(ctx) {
      const sub = ctx.argument;
      const daysText = ctx.opt('days');
      if (sub === 'set' && daysText === undefined) throw new CliError('warden audit retention set needs --days N');
      if (sub !== 'set' && daysText !== undefined) throw new CliError('to change the retention: warden audit retention set --days N');
      let res;
      if (sub === 'set') {
        const days = Number(daysText);
        if (!Number.isInteger(days) || days < 0) throw new CliError('--days must be a whole number of days (0 keeps everything)');
        res = await ctx.withAdmin((c) => c.call((x) => x.setRetention, { days }));
      } else {
        res = await ctx.withAdmin((c) => c.call((x) => x.getRetention, {}));
      }
      if (ctx.json) return ctx.print(json(res));
      ctx.print(res.days === 0 ? 'Audit sessions are kept forever.' : `Audit sessions are kept for ${res.days} day(s).`);
    },
  },
];
