// warden approvals list | show | approve | deny (docs/policy.md, "Approvals").
// Decisions take a person's token (--token or WARDEN_TOKEN), never the admin
// token; list and show fall back to the admin token. The token is only ever
// sent to the control plane, never printed.
import type { ApprovalRequest } from '@warden/proto';
import { CLIENT_OPTIONS, type Command, type Context } from '../context.js';
import { CliError } from '../errors.js';
import { cell, json, table } from '../output.js';

const OPTIONS = [...CLIENT_OPTIONS, 'token'] as const;
const TOKEN_HINT = '(your token comes from --token or WARDEN_TOKEN; local mode: WARDEN_TOKEN=$(warden token --sub NAME --group dba))';

/** A person's token, or for reads the admin token when none is given. */
function personToken(ctx: Context, what: string): string | undefined {
  const token = (ctx.opt('token') ?? ctx.env.WARDEN_TOKEN ?? '').trim();
  if (token) return token;
  if (what === 'read') return undefined;
  throw new CliError(`${what} needs your token as an approver: pass --token TOKEN or set WARDEN_TOKEN (local mode: export WARDEN_TOKEN=$(warden token --sub alice --group dba))`);
}

function call<T>(ctx: Context, token: string | undefined, fn: Parameters<Context['withAdmin']>[0] extends (c: infer C) => unknown ? (c: C) => Promise<T> : never): Promise<T> {
  return token ? ctx.withToken(token, fn, TOKEN_HINT) : ctx.withAdmin(fn);
}

/** "in 14 min", "3 min ago". */
function relative(iso: string, now = Date.now()): string {
  if (!iso) return '';
  const s = Math.round((Date.parse(iso) - now) / 1000);
  const a = Math.abs(s);
  const text = a < 120 ? `${a} s` : a < 7200 ? `${Math.round(a / 60)} min` : `${Math.round(a / 3600)} h`;
  return s >= 0 ? `in ${text}` : `${text} ago`;
}

const approvals = (a: ApprovalRequest) => a.decisions.filter((d) => d.approve).map((d) => d.approver);
const progress = (a: ApprovalRequest) => {
  const by = approvals(a);
  return `${by.length} of ${a.quorum}${by.length ? ` (${by.join(', ')})` : ''}`;
};
const oneLine = (sql: string, max = 60) => {
  const flat = sql.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
};
/** When it matters next: the request's end while pending, the approval's end once approved. */
const expiry = (a: ApprovalRequest) =>
  a.state === 'pending' ? `${a.expiresAt} (${relative(a.expiresAt)})` : a.state === 'approved' ? `${a.approvalExpiresAt} (${relative(a.approvalExpiresAt)})` : '';

export function showApproval(a: ApprovalRequest): string {
  const rows: [string, string][] = [
    ['state', a.state],
    ['identity', `${a.identity} on ${a.resource}`],
    ['rule', `${a.rule}${a.why ? `: ${a.why}` : ''} (mode ${a.mode})`],
    ['statement', a.sql],
    ...(a.parameters.length ? [['parameters', a.parameters.map((p, i) => `$${i + 1}=${p.value === undefined ? 'NULL' : JSON.stringify(p.value)}`).join(' ')] as [string, string]] : []),
    ...(a.reason ? [['reason', a.reason] as [string, string]] : []),
    ['approvers', a.approvers.join(', ')],
    ['approvals', progress(a)],
    ...a.decisions.filter((d) => !d.approve).map((d): [string, string] => ['denied by', `${d.approver}: ${d.reason}`]),
    ['requested', `${a.createdAt} (session ${a.sessionId})`],
    ...(a.state === 'pending' ? [['expires', expiry(a)] as [string, string]] : []),
    ...(a.state === 'approved' ? [['valid until', expiry(a)] as [string, string]] : []),
  ];
  const lines = [a.id, ...rows.map(([k, v]) => `  ${k.padEnd(11)} ${v.replace(/\n/g, '\n              ')}`)];
  if (a.state === 'pending') lines.push('', `Approve: warden approvals approve ${a.id}`, `Deny:    warden approvals deny ${a.id} --reason TEXT`);
  return lines.join('\n');
}

export const approvalCommands: Command[] = [
  {
    name: 'approvals list',
    summary: 'list approval requests (pending ones by default)',
    usage: '[--state S] [--token TOKEN] [--json]',
    details:
      'With your token (--token or WARDEN_TOKEN), the requests you may decide; with the admin token, all.\n\n' +
      'Examples:\n' +
      '  export WARDEN_TOKEN=$(warden token --sub alice --group dba)   # local mode\n' +
      '  warden approvals list\n' +
      '  warden approvals list --state all --json',
    options: [...OPTIONS, 'state', 'limit'],
    async run(ctx) {
      const state = ctx.opt('state') ?? '';
      const limit = ctx.opt('limit') ? Number(ctx.opt('limit')) : 0;
      if (!Number.isInteger(limit) || limit < 0) throw new CliError('--limit must be a whole number');
      const { approvals: list } = await call(ctx, personToken(ctx, 'read'), (c) => c.call((x) => x.listApprovals, { state, limit }));
      if (ctx.json) return ctx.print(json(list));
      if (list.length === 0) return ctx.print(`No ${state && state !== 'all' ? state : state === 'all' ? '' : 'pending '}approval requests.`.replace('  ', ' '));
      ctx.print(
        table(
          ['ID', 'STATE', 'IDENTITY', 'RESOURCE', 'WHY', 'APPROVALS', 'EXPIRES', 'STATEMENT'],
          list.map((a) => [a.id, a.state, a.identity, a.resource, cell(a.why), progress(a), cell(relative(a.state === 'approved' ? a.approvalExpiresAt : a.state === 'pending' ? a.expiresAt : '')), oneLine(a.sql)]),
        ),
      );
    },
  },
  {
    name: 'approvals show',
    summary: 'show one approval request: the statement, why it is held, who decided',
    usage: 'ID [--token TOKEN] [--json]',
    details: 'Examples:\n  warden approvals show apr_…\n  warden approvals show apr_… --json',
    argument: { name: 'ID', description: 'the request (apr_…)' },
    options: OPTIONS,
    async run(ctx) {
      const a = await call(ctx, personToken(ctx, 'read'), (c) => c.call((x) => x.getApproval, { id: ctx.arg() }));
      ctx.print(ctx.json ? json(a) : showApproval(a));
    },
  },
  {
    name: 'approvals approve',
    summary: 'approve a held statement, as yourself (your token)',
    usage: 'ID [--reason TEXT] [--token TOKEN]',
    details:
      'Counts once per person; the statement may run when the rule\'s quorum of people has approved.\n' +
      'Nobody approves their own request.\n\n' +
      'Examples:\n' +
      '  export WARDEN_TOKEN=$(warden token --sub alice --group dba)   # local mode\n' +
      '  warden approvals approve apr_… --reason "checked the migration"',
    argument: { name: 'ID', description: 'the request (apr_…)' },
    options: [...OPTIONS, 'reason'],
    async run(ctx) {
      await decide(ctx, true);
    },
  },
  {
    name: 'approvals deny',
    summary: 'deny a held statement, with a reason the client sees',
    usage: 'ID --reason TEXT [--token TOKEN]',
    details: 'Examples:\n  warden approvals deny apr_… --reason "not during the sale"',
    argument: { name: 'ID', description: 'the request (apr_…)' },
    options: [...OPTIONS, ['reason', 'why (required): the client sees it in its error']],
    async run(ctx) {
      if (!ctx.opt('reason')?.trim()) throw new CliError('deny needs --reason TEXT: the client sees it in its error');
      await decide(ctx, false);
    },
  },
];

async function decide(ctx: Context, approve: boolean): Promise<void> {
  const id = ctx.arg();
  const token = personToken(ctx, approve ? 'approve' : 'deny')!;
  const a = await ctx.withToken(token, (c) => c.call((x) => x.decideApproval, { id, approve, reason: ctx.opt('reason') ?? '' }), TOKEN_HINT);
  if (ctx.json) return ctx.print(json(a));
  if (a.state === 'approved') ctx.print(`Approved ${a.id}: ${progress(a)}; the statement may run until ${a.approvalExpiresAt}.`);
  else if (a.state === 'denied') ctx.print(`Denied ${a.id}; the client is told: ${ctx.opt('reason')}`);
  else ctx.print(`Your approval of ${a.id} is recorded: ${progress(a)}; it waits for ${a.quorum - approvals(a).length} more.`);
}
