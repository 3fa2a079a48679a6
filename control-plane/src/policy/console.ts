// The policy file's parts for the web console: which groups hold which
// console role (`console:`), and which issuers people sign in with (an
// issuer's `client_id` and `client_secret_env`). The store keeps them in the
// applied file itself, so they are read back from the version in force.
import { parse } from 'yaml';

export const CONSOLE_ROLES = ['viewers', 'approvers', 'admins'] as const;
export type ConsoleRole = (typeof CONSOLE_ROLES)[number];

export interface SignInIssuer {
  name: string;
  issuerUrl: string;
  clientId: string;
  /** The control plane's environment variable holding the client secret; '' for a public client. */
  clientSecretEnv: string;
}

export interface ConsoleSettings {
  roles: Record<ConsoleRole, string[]>;
  signIn: SignInIssuer[];
}

/** Without a `console:` section, groups named like the roles hold them. */
export const DEFAULT_ROLES: Record<ConsoleRole, string[]> = { viewers: ['viewers'], approvers: ['approvers'], admins: ['admins'] };

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);

/** The settings of a validated policy file; '' (no file applied) gives the defaults. */
export function consoleSettingsOf(yamlText: string): ConsoleSettings {
  const doc = (yamlText ? parse(yamlText) : undefined) as Record<string, unknown> | undefined;
  const section = doc?.console as Record<string, unknown> | undefined;
  const roles = section
    ? { viewers: strings(section.viewers), approvers: strings(section.approvers), admins: strings(section.admins) }
    : { ...DEFAULT_ROLES };
  const issuers = Array.isArray(doc?.issuers) ? (doc.issuers as Record<string, unknown>[]) : [];
  const signIn = issuers
    .filter((i) => typeof i.client_id === 'string' && i.client_id !== '')
    .map((i) => ({
      name: String(i.name),
      issuerUrl: String(i.issuer_url),
      clientId: String(i.client_id),
      clientSecretEnv: typeof i.client_secret_env === 'string' ? i.client_secret_env : '',
    }));
  return { roles, signIn };
}

/** The strongest role any of `groups` holds; undefined when none. */
export function roleOf(roles: ConsoleSettings['roles'], groups: readonly string[]): ConsoleRole | undefined {
  for (const r of [...CONSOLE_ROLES].reverse()) if (roles[r].some((g) => groups.includes(g))) return r;
  return undefined;
}

/** Change lines for `warden policy diff`, in its format ("~ console admins: [a] -> [b]"). */
export function diffConsoleSettings(before: string, after: string): string[] {
  const a = consoleSettingsOf(before);
  const b = consoleSettingsOf(after);
  const lines: string[] = [];
  const list = (xs: string[]) => `[${xs.join(', ')}]`;
  for (const r of CONSOLE_ROLES) {
    if (list(a.roles[r]) !== list(b.roles[r])) lines.push(`~ console ${r}: ${list(a.roles[r])} -> ${list(b.roles[r])}`);
  }
  const show = (s?: SignInIssuer) => (s ? `client ${s.clientId}${s.clientSecretEnv ? ` (secret in $${s.clientSecretEnv})` : ''}` : 'none');
  for (const name of new Set([...a.signIn, ...b.signIn].map((s) => s.name))) {
    const x = a.signIn.find((s) => s.name === name);
    const y = b.signIn.find((s) => s.name === name);
    if (show(x) !== show(y)) lines.push(`~ console sign-in with ${name}: ${show(x)} -> ${show(y)}`);
  }
  return lines;
}
