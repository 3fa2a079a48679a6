// warden roles sql: the native Postgres roles that back a resource's rules
// (docs/policy.md, "Native roles").
import { readFileSync } from 'node:fs';
import { DEV_ISSUER_NAME } from '../../local/dev-issuer.js';
import { formatProblem } from '../../policy/model.js';
import { type NativeRoleRule, NativeRolesError, nativeRolesSql, rulesOfGrants } from '../../policy/native-roles.js';
import { validatePolicy } from '../../policy/validate.js';
import { CLIENT_OPTIONS, type Command, type Context } from '../context.js';
import { CliError } from '../errors.js';
import { json } from '../output.js';

/** `--rule-role RULE=ROLE ...` (also taken by `warden start`). */
export function parseNamePairs(items: readonly string[], option: string, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const at = item.indexOf('=');
    const key = at > 0 ? item.slice(0, at) : '';
    const value = at > 0 ? item.slice(at + 1) : '';
    if (!key || !value) throw new CliError(`--${option} takes ${what}=ROLE, got '${item}'`);
    if (Object.hasOwn(out, key)) throw new CliError(`--${option} names ${what.toLowerCase()} ${key} twice`);
    out[key] = value;
  }
  return out;
}

/** The resource's rules, from FILE or from the control plane's configuration. */
async function rulesOf(ctx: Context, resource: string): Promise<{ rules: NativeRoleRule[]; source: string }> {
  const file = ctx.opt('file');
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new CliError(`cannot read policy file ${file}: ${(err as Error).message}`);
    }
    const checked = validatePolicy(text, { externalIssuers: [DEV_ISSUER_NAME] });
    if (!checked.ok) throw new CliError(checked.problems.map((p) => formatProblem(p, file)).join('\n'));
    if (!checked.policy.resources.some((r) => r.name === resource)) {
      throw new CliError(`resource '${resource}' is not defined in ${file}`);
    }
    return { rules: checked.policy.rules.filter((r) => r.resource === resource), source: file };
  }
  const snap = await ctx.withAdmin((c) => c.call((x) => x.getSnapshot, {}));
  const source = snap.policyVersion ? `policy version ${snap.policyVersion}` : `configuration version ${snap.version}`;
  if (!snap.resources.some((r) => r.name === resource)) throw new CliError(`resource '${resource}' is not defined in ${source}`);
  const { rules, unnamed } = rulesOfGrants(snap.grants, resource);
  if (unnamed.length) {
    ctx.note(
      `note: grants ${unnamed.join(', ')} were made with \`warden grants add\` and belong to no rule; they get no role here ` +
        '(map their access level with "roles" in the agent config, or put them in a policy file)',
    );
  }
  return { rules, source };
}

export const rolesCommands: Command[] = [
  {
    name: 'roles sql',
    summary: "print the SQL that makes native Postgres roles hold what a resource's rules allow",
    usage: '--resource R [-f POLICY_FILE] [--agent-user NAME] [--rule-role RULE=ROLE ...]',
    details:
      'An idempotent script: one NOLOGIN role per rule of R, holding what the rule allows, and the agent\n' +
      'config that maps the rules to them; roles are named warden_<rule> unless --rule-role says.\n' +
      "Rules come from the control plane's current configuration, or from POLICY_FILE without applying it.",
    options: [
      ...CLIENT_OPTIONS,
      ['resource', 'the resource whose rules get roles'],
      ['file', 'a policy file to take the rules from, instead of the control plane'],
      'agent-user',
      'rule-role',
    ],
    async run(ctx) {
      const resource = ctx.opt('resource');
      if (!resource) throw new CliError('warden roles sql needs --resource R');
      const roleNames = parseNamePairs(ctx.many('rule-role'), 'rule-role', 'RULE');
      const { rules, source } = await rulesOf(ctx, resource);
      let script;
      try {
        script = nativeRolesSql({ resource, rules, source, agentUser: ctx.opt('agent-user') || undefined, roleNames });
      } catch (err) {
        if (err instanceof NativeRolesError) throw new CliError(err.message);
        throw err;
      }
      if (ctx.json) return ctx.print(json({ resource, source, roles: script.roles, ruleRoles: script.ruleRoles, sql: script.sql }));
      process.stdout.write(script.sql);
    },
  },
];
