// warden policy apply | diff | history | check (format in docs/policy.md)
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { status } from '@grpc/grpc-js';
import type { ApprovalRule, Grant, Identity, Mask, Resource } from '@warden/proto';
import { DEV_ISSUER_NAME } from '../../local/dev-issuer.js';
import { formatProblem, parseProblem, type PolicyProblem } from '../../policy/model.js';
import { CheckError, checkScript, type CheckLine, type CheckResult } from '../../policy/check.js';
import { grantsOfRule } from '../../policy/state.js';
import { validatePolicy } from '../../policy/validate.js';
import { CliError } from '../errors.js';
import { CLIENT_OPTIONS, type Command, type Context } from '../context.js';
import { cell, json, table } from '../output.js';

function readPolicyFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(code === 'ENOENT' ? `policy file ${path} does not exist` : `cannot read policy file ${path}: ${(err as Error).message}`);
  }
}

function fileOption(ctx: Context): string {
  const file = ctx.opt('file');
  if (!file) throw new CliError(`warden ${ctx.command} needs -f FILE (the policy file)`);
  return file;
}

function printProblems(ctx: Context, file: string, problems: PolicyProblem[]): number {
  if (ctx.json) ctx.print(json({ file, errors: problems }));
  else for (const p of problems) ctx.note(formatProblem(p, file));
  return 1;
}

/**
 * Sends the file to ApplyPolicy. Validation errors from the control plane
 * (one "line:col: message" per line) are printed with the file name in front.
 */
async function sendPolicy(ctx: Context, dryRun: boolean) {
  const file = fileOption(ctx);
  const yaml = readPolicyFile(file);
  const author = ctx.opt('author') ?? safeUser();
  try {
    return { file, result: await ctx.withAdmin((c) => c.call((x) => x.applyPolicy, { yaml, author, dryRun })) };
  } catch (err) {
    if (err instanceof CliError && err.code === status.INVALID_ARGUMENT) {
      const problems = err.message.split('\n').map(parseProblem);
      if (problems.every((p): p is PolicyProblem => p !== undefined)) return { file, problems };
    }
    throw err;
  }
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return '';
  }
}

export const policyCommands: Command[] = [
  {
    name: 'policy apply',
    summary: "replace issuers, identities, resources and grants with a policy file's",
    usage: '-f FILE [--author NAME]',
    details: 'Prints the changes and the new policy version.',
    options: [...CLIENT_OPTIONS, 'file', 'author'],
    async run(ctx) {
      const sent = await sendPolicy(ctx, false);
      if (sent.problems) return printProblems(ctx, sent.file, sent.problems);
      const { version, change } = sent.result;
      const lines = change?.lines ?? [];
      if (ctx.json) return ctx.print(json({ version, changes: lines }));
      if (lines.length === 0) return ctx.print(`No changes; policy version ${version} stays in force.`);
      ctx.print([...lines, `Applied policy version ${version}.`].join('\n'));
    },
  },
  {
    name: 'policy diff',
    summary: 'what applying a policy file would change; stores nothing',
    usage: '-f FILE',
    options: [...CLIENT_OPTIONS, 'file'],
    async run(ctx) {
      const sent = await sendPolicy(ctx, true);
      if (sent.problems) return printProblems(ctx, sent.file, sent.problems);
      const lines = sent.result.change?.lines ?? [];
      if (ctx.json) return ctx.print(json({ policyVersion: sent.result.version, changes: lines }));
      ctx.print(lines.length ? lines.join('\n') : 'no changes');
    },
  },
  {
    name: 'policy history',
    summary: 'the applied policy versions, newest first',
    usage: '[--show VERSION]',
    options: [...CLIENT_OPTIONS, 'show'],
    async run(ctx) {
      const show = ctx.opt('show');
      const wanted = show === undefined ? undefined : Number(show);
      if (show !== undefined && !(Number.isInteger(wanted) && wanted! > 0)) {
        throw new CliError(`--show takes a version number, e.g. --show 3 (got '${show}')`);
      }
      const { versions } = await ctx.withAdmin((c) => c.call((x) => x.getPolicyHistory, {}));
      if (wanted !== undefined) {
        const v = versions.find((x) => x.version === wanted);
        if (!v) {
          const have = versions.length ? `versions 1-${versions[0]!.version} exist` : 'no policy file has been applied yet';
          throw new CliError(`there is no policy version ${wanted}; ${have}`);
        }
        if (!v.yaml) {
          throw new CliError(
            `policy version ${wanted} is too old to come with the history (the newer files fill the answer); it is in the policy_versions table of the control plane's database`,
          );
        }
        if (ctx.json) return ctx.print(json(v));
        process.stdout.write(v.yaml.endsWith('\n') ? v.yaml : `${v.yaml}\n`);
        return;
      }
      if (ctx.json) return ctx.print(json(versions.map(({ yaml: _yaml, ...rest }) => rest)));
      if (versions.length === 0) return ctx.print('No policy versions: no policy file has been applied yet.');
      ctx.print(table(['VERSION', 'APPLIED', 'AUTHOR', 'SUMMARY'], versions.map((v) => [String(v.version), v.appliedAt, cell(v.author), v.summary])));
    },
  },
  {
    name: 'policy check',
    summary: 'what the gateway would do with a SQL script, and which rule decides; runs nothing',
    usage: '--as IDENTITY --resource R [--group G ...] [--set NAME=VALUE ...] [-f FILE] "SQL SCRIPT"',
    details:
      'The statements are decided in order, in one session. Rules come from the control plane\'s current\n' +
      'configuration, or from FILE without applying it. Views and functions are judged by their names only:\n' +
      'the gateway also follows what they reach in the database. Output columns that would be masked are\n' +
      'listed under the statement; SELECT * needs the database to expand, so name the columns to see them.\n' +
      'A statement an approval rule would hold says who could approve it; a rule over N rows depends on\n' +
      "Postgres' estimate, which policy check cannot ask.",
    argument: {
      name: 'SQL',
      description: 'the SQL script, quoted as one argument',
      missing: 'needs the SQL to check, e.g. "DELETE FROM orders"',
      excess: 'takes the SQL as one argument: quote it',
    },
    options: [
      ...CLIENT_OPTIONS,
      'as',
      ['resource', 'the resource the session is on'],
      ['group', 'a group to count the identity in, besides its own'],
      ['file', 'a policy file to take the rules from, instead of the control plane'],
      'set',
    ],
    async run(ctx) {
      const sql = ctx.arg();
      const as = ctx.opt('as');
      if (!as) throw new CliError('warden policy check needs --as IDENTITY');
      const resourceName = ctx.opt('resource');
      if (!resourceName) throw new CliError('warden policy check needs --resource R');

      let identities: Identity[];
      let resources: Resource[];
      let grants: Grant[];
      let masks: Mask[];
      let approvals: ApprovalRule[];
      let source: string;
      const file = ctx.opt('file');
      if (file) {
        const checked = validatePolicy(readPolicyFile(file), { externalIssuers: [DEV_ISSUER_NAME] });
        if (!checked.ok) return printProblems(ctx, file, checked.problems);
        ({ identities, resources } = checked.policy);
        grants = checked.policy.rules.flatMap(grantsOfRule);
        masks = checked.policy.masks;
        approvals = (checked.policy as { approvals?: ApprovalRule[] }).approvals ?? [];
        source = file;
      } else {
        const snap = await ctx.withAdmin((c) => c.call((x) => x.getSnapshot, {}));
        ({ identities, resources, grants, masks, approvalRules: approvals } = snap);
        source = snap.policyVersion ? `policy version ${snap.policyVersion}` : `configuration version ${snap.version}`;
      }
      const groupsWanted = ctx.many('group');
      const parameters: Record<string, string> = {};
      for (const kv of ctx.many('set')) {
        const eq = kv.indexOf('=');
        if (eq <= 0) throw new CliError(`--set takes NAME=VALUE, as a client's startup parameter (got '${kv}')`);
        parameters[kv.slice(0, eq)] = kv.slice(eq + 1);
      }
      let checked: CheckResult;
      try {
        checked = await checkScript({ identities, resources, grants, masks, approvals, source }, { as, resource: resourceName, groups: groupsWanted, parameters, sql });
      } catch (err) {
        if (err instanceof CheckError) throw new CliError(err.message);
        throw err;
      }
      const { identity, groups, statements: lines } = checked;
      const firstRefused = lines.findIndex((l) => l.decision === 'refused');
      if (ctx.json) {
        return ctx.print(json({ identity, resource: resourceName, groups, source, statements: lines }));
      }
      for (const l of lines) {
        ctx.print(l.decision === 'refused' ? `refused: ${l.message}` : `allowed: ${l.message} — rule ${l.rule} (${l.ruleAccess})`);
        for (const m of l.masked ?? []) ctx.print(`  masked: column ${m.position} (${m.column}) with ${m.mask} — mask ${m.rule}`);
        for (const t of l.maskingUnknown ?? []) ctx.print(`  masked: the masked columns of ${t} that * returns (listing them needs the database)`);
        if (l.held) ctx.print(`  ${heldLine(l.held)}`);
      }
      if (firstRefused >= 0 && firstRefused < lines.length - 1) {
        ctx.note(
          `note: sent as one query string, statements after statement ${firstRefused + 1} would not run: the gateway stops at the first refused statement`,
        );
      }
    },
  },
];

/**
 * "held: needs approval (rule R: WHY) by 1 of groups dba, ops; mode wait"; a
 * hold that depends on the estimate does not say "held": it may well not be.
 */
function heldLine(h: NonNullable<CheckLine['held']>): string {
  const head = h.estimate ? `needs approval if Postgres estimates over ${h.estimate.rowsOver} rows (policy check cannot ask the database)` : 'held: needs approval';
  return `${head} (rule ${h.rule}: ${h.why}) by ${h.quorum} of groups ${h.approvers.join(', ') || '(none)'}; mode ${h.mode}`;
}
