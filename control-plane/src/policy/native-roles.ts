// `warden roles sql`: a SQL script that makes one native Postgres role per
// rule of a resource hold what the rule allows, so that the database itself
// enforces the policy's levels and scopes behind the gateway (the agent runs
// each session in its rule's role; docs/policy.md, "Native roles").
//
// The script decides which objects are in scope when it runs, not when it is
// generated: schemas and tables made since are covered by running it again,
// and a first pass takes away everything the role holds, so privileges the
// policy no longer gives do not linger.

/** What the script needs of a rule (a policy file's rule, or the grants of one). */
export interface NativeRoleRule {
  name: string;
  access: string;
  allowSchemas: readonly string[];
  denySchemas: readonly string[];
  allowTables: readonly string[];
  denyTables: readonly string[];
}

export interface NativeRolesInput {
  resource: string;
  rules: readonly NativeRoleRule[];
  /** Where the rules come from, named in the header ("policy version 3", a file name). */
  source: string;
  /** The agent's login user; default: CURRENT_USER when the script runs. */
  agentUser?: string;
  /** Role names chosen by rule, instead of warden_<rule>. */
  roleNames?: Readonly<Record<string, string>>;
}

export interface NativeRole {
  rule: string;
  role: string;
  access: string;
}

export interface NativeRolesScript {
  sql: string;
  roles: NativeRole[];
  /** The agent config's `ruleRoles` for the resource. */
  ruleRoles: Record<string, string>;
}

export class NativeRolesError extends Error {}

const LEVELS = ['read', 'write', 'ddl', 'admin'];

/** warden_<rule>, with '-' (not allowed unquoted in SQL names) as '_'. */
export function defaultRoleName(rule: string): string {
  return `warden_${rule.replace(/-/g, '_')}`;
}

/** A SQL string literal (standard_conforming_strings, the default since 9.1). */
export function sqlString(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

const textArray = (items: readonly string[]) => (items.length ? `ARRAY[${items.map(sqlString).join(', ')}]` : 'ARRAY[]::text[]');

function checkRoleName(name: string, rule: string): void {
  if (name === '' || name.includes('\0')) throw new NativeRolesError(`the role name for rule ${rule} is empty or holds a NUL character`);
  if (Buffer.byteLength(name, 'utf8') > 63) {
    throw new NativeRolesError(
      `the role name ${JSON.stringify(name)} for rule ${rule} is longer than Postgres' 63 bytes; choose one with --rule-role ${rule}=NAME`,
    );
  }
}

function scopeText(r: NativeRoleRule): string {
  const parts: string[] = [];
  parts.push(r.allowSchemas.length ? `schemas ${r.allowSchemas.join(', ')}` : 'every schema');
  if (r.denySchemas.length) parts.push(`except schemas ${r.denySchemas.join(', ')}`);
  if (r.allowTables.length) parts.push(`only tables ${r.allowTables.join(', ')}`);
  if (r.denyTables.length) parts.push(`never tables ${r.denyTables.join(', ')}`);
  return parts.join(', ');
}

const WHAT: Record<string, string> = {
  read: 'SELECT on tables, views and sequences; USAGE on schemas',
  write: 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE on tables and views; SELECT, USAGE, UPDATE on sequences; USAGE on schemas',
  ddl: 'all privileges on tables, views and sequences; USAGE and CREATE on schemas',
  admin: 'all privileges on tables, views and sequences; USAGE and CREATE on schemas',
};

// Runs once per rule. Written as a function of this session only (pg_temp),
// so the logic is read once and each rule is one reviewable call.
const SYNC_FUNCTION = `CREATE OR REPLACE FUNCTION pg_temp.warden_sync_role(
  role_name text, access_level text,
  allow_schemas text[], deny_schemas text[], allow_tables text[], deny_tables text[],
  creators text[]
) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  r oid := (SELECT oid FROM pg_roles WHERE rolname = role_name);
  can_write boolean := access_level IN ('write', 'ddl', 'admin');
  can_ddl boolean := access_level IN ('ddl', 'admin');
  table_privs text := CASE WHEN can_ddl THEN 'ALL' WHEN can_write THEN 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE' ELSE 'SELECT' END;
  seq_privs text := CASE WHEN can_ddl THEN 'ALL' WHEN can_write THEN 'SELECT, USAGE, UPDATE' ELSE 'SELECT' END;
  schema_privs text := CASE WHEN can_ddl THEN 'USAGE, CREATE' ELSE 'USAGE' END;
  s record;
  o record;
  creator text;
BEGIN
  -- 1. Take away what the role holds. Memberships in other roles first
  --    (pg_read_all_data and the like would reach past every scope).
  FOR o IN SELECT g.rolname AS granted, b.rolname AS grantor
           FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles b ON b.oid = m.grantor
           WHERE m.member = r LOOP
    EXECUTE format('REVOKE %I FROM %I GRANTED BY %I', o.granted, role_name, o.grantor);
  END LOOP;
  -- Then privileges on every schema that is not a system one, looked up now
  -- so that schemas made since the last run count too. Objects the role owns
  -- (made by a ddl session) keep their owner's rights.
  FOR s IN SELECT n.oid, n.nspname, n.nspowner, n.nspacl FROM pg_namespace n
           WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)' LOOP
    IF s.nspowner <> r AND EXISTS (SELECT FROM aclexplode(s.nspacl) a WHERE a.grantee = r) THEN
      EXECUTE format('REVOKE ALL ON SCHEMA %I FROM %I', s.nspname, role_name);
    END IF;
    FOR o IN SELECT c.relname, c.relkind FROM pg_class c
             WHERE c.relnamespace = s.oid AND c.relowner <> r
               AND (EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = r)
                    OR EXISTS (SELECT FROM pg_attribute t, aclexplode(t.attacl) a WHERE t.attrelid = c.oid AND a.grantee = r)) LOOP
      -- Revoking on the table revokes its column privileges as well.
      EXECUTE format('REVOKE ALL ON %s %I.%I FROM %I', CASE WHEN o.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, s.nspname, o.relname, role_name);
    END LOOP;
    FOR o IN SELECT p.oid::regprocedure AS routine FROM pg_proc p
             WHERE p.pronamespace = s.oid AND p.proowner <> r AND EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = r) LOOP
      EXECUTE format('REVOKE ALL ON ROUTINE %s FROM %I', o.routine, role_name);
    END LOOP;
  END LOOP;
  FOR o IN SELECT pg_get_userbyid(d.defaclrole) AS creator, n.nspname, d.defaclobjtype AS kind FROM pg_default_acl d
           LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
           WHERE EXISTS (SELECT FROM aclexplode(d.defaclacl) a WHERE a.grantee = r) LOOP
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I %s REVOKE ALL ON %s FROM %I', o.creator,
      CASE WHEN o.nspname IS NULL THEN '' ELSE format('IN SCHEMA %I', o.nspname) END,
      CASE o.kind WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES'
                  WHEN 'n' THEN 'SCHEMAS' WHEN 'L' THEN 'LARGE OBJECTS' END, role_name);
  END LOOP;

  -- 2. Grant what the rule allows now, on the schemas in its scope.
  FOR s IN SELECT n.oid, n.nspname, n.nspowner FROM pg_namespace n
           WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
             AND (cardinality(allow_schemas) = 0 OR n.nspname = ANY (allow_schemas))
             AND NOT n.nspname = ANY (deny_schemas) LOOP
    IF s.nspowner <> r THEN
      EXECUTE format('GRANT %s ON SCHEMA %I TO %I', schema_privs, s.nspname, role_name);
    END IF;
    -- Tables as "schema.table" or "table" (any schema), as the gateway reads
    -- them; a sequence that belongs to a table (serial, identity) follows it.
    FOR o IN SELECT c.relname, c.relkind FROM pg_class c
             LEFT JOIN pg_depend d ON c.relkind = 'S' AND d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
             LEFT JOIN pg_class t ON t.oid = d.refobjid
             WHERE c.relnamespace = s.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND c.relowner <> r
               AND (cardinality(allow_tables) = 0
                    OR s.nspname || '.' || coalesce(t.relname, c.relname) = ANY (allow_tables)
                    OR coalesce(t.relname, c.relname) = ANY (allow_tables))
               AND NOT (s.nspname || '.' || coalesce(t.relname, c.relname) = ANY (deny_tables)
                        OR coalesce(t.relname, c.relname) = ANY (deny_tables)) LOOP
      EXECUTE format('GRANT %s ON %s %I.%I TO %I', CASE WHEN o.relkind = 'S' THEN seq_privs ELSE table_privs END,
        CASE WHEN o.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, s.nspname, o.relname, role_name);
    END LOOP;
    -- Functions and procedures of the schema, except SECURITY DEFINER ones,
    -- which run with their owner's rights. (PUBLIC's default EXECUTE is not
    -- this script's to take away.)
    FOR o IN SELECT p.oid::regprocedure AS routine FROM pg_proc p
             WHERE p.pronamespace = s.oid AND p.prokind IN ('f', 'p') AND NOT p.prosecdef AND p.proowner <> r LOOP
      EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO %I', o.routine, role_name);
    END LOOP;
    -- Tables made later in this schema by these creators follow, unless the
    -- rule lists its tables (a new table is not on the list). A new table
    -- named in deny_tables would get them too: run the script again after
    -- migrations.
    IF cardinality(allow_tables) = 0 THEN
      FOR creator IN SELECT DISTINCT x FROM unnest(creators) x WHERE x <> role_name LOOP
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT %s ON TABLES TO %I', creator, s.nspname, table_privs, role_name);
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT %s ON SEQUENCES TO %I', creator, s.nspname, seq_privs, role_name);
      END LOOP;
    END IF;
  END LOOP;
END
$fn$`;

/**
 * The rules of a resource from the grants of a configuration snapshot: a rule
 * is one grant per identity and group, all with its name and scopes. Grants
 * made with `warden grants add` belong to no rule; their ids are returned.
 */
export function rulesOfGrants(
  grants: readonly (Omit<NativeRoleRule, 'name'> & { id: string; resource: string; rule: string })[],
  resource: string,
): { rules: NativeRoleRule[]; unnamed: string[] } {
  const rules = new Map<string, NativeRoleRule>();
  const unnamed: string[] = [];
  for (const g of grants) {
    if (g.resource !== resource) continue;
    if (!g.rule) unnamed.push(g.id);
    else if (!rules.has(g.rule)) {
      const { allowSchemas, denySchemas, allowTables, denyTables } = g;
      rules.set(g.rule, { name: g.rule, access: g.access || 'read', allowSchemas, denySchemas, allowTables, denyTables });
    }
  }
  return { rules: [...rules.values()], unnamed };
}

/** The script for the rules of one resource. */
export function nativeRolesSql(input: NativeRolesInput): NativeRolesScript {
  const { resource } = input;
  // By name, so the script is the same whether the rules come from a file or the control plane.
  const rules = [...input.rules].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (rules.length === 0) throw new NativeRolesError(`resource ${resource} has no rules in ${input.source}`);
  const names = input.roleNames ?? {};
  for (const rule of Object.keys(names)) {
    if (!rules.some((r) => r.name === rule)) {
      throw new NativeRolesError(`there is no rule ${rule} on resource ${resource} in ${input.source} (rules: ${rules.map((r) => r.name).join(', ')})`);
    }
  }
  const roles: NativeRole[] = [];
  const taken = new Map<string, string>();
  for (const r of rules) {
    const access = r.access || 'read';
    if (!LEVELS.includes(access)) throw new NativeRolesError(`rule ${r.name} has an unknown access level ${JSON.stringify(access)}`);
    const role = Object.hasOwn(names, r.name) ? names[r.name]! : defaultRoleName(r.name);
    checkRoleName(role, r.name);
    const other = taken.get(role);
    if (other !== undefined) {
      throw new NativeRolesError(`rules ${other} and ${r.name} would both get role ${role}; give one another name with --rule-role ${r.name}=NAME`);
    }
    taken.set(role, r.name);
    roles.push({ rule: r.name, role, access });
  }
  const agentUser = input.agentUser ? sqlString(input.agentUser) : 'current_user';
  const creators = [
    'current_user',
    agentUser,
    ...roles.filter((x) => x.access === 'ddl' || x.access === 'admin').map((x) => sqlString(x.role)),
  ];
  const roleList = textArray(roles.map((x) => x.role));

  const out: string[] = [];
  out.push(
    `-- Native Postgres roles for Warden resource ${resource}, from ${input.source}.`,
    '-- Made by `warden roles sql` (docs/policy.md, "Native roles"). Review it, then run it',
    "-- on the resource's database as a superuser, e.g.: psql -v ON_ERROR_STOP=1 -f roles.sql",
    '--',
    '-- Safe to run again: each run first takes away everything these roles hold',
    '-- in this database, then grants what the policy allows now. Run it again',
    '-- after a policy change (a table moved to deny loses its grant) and after',
    '-- migrations that add schemas or tables.',
    '--',
    '-- What GRANT cannot give: altering or dropping existing objects needs their',
    '-- ownership, and admin statements (roles, VACUUM, server functions) need',
    '-- role attributes; ddl and admin roles get CREATE and every privilege on',
    '-- objects, not ownership.',
    '--',
  );
  for (const x of roles) {
    const r = rules.find((y) => y.name === x.rule)!;
    out.push(`-- rule ${x.rule} (${x.access}) -> role ${x.role}: ${WHAT[x.access]}; ${scopeText(r)}`);
  }
  out.push('', 'BEGIN;', '');
  out.push(
    '-- The roles: NOLOGIN, no attributes; only the agent becomes them, with SET ROLE.',
    '-- (A DO block, since CREATE ROLE has no IF NOT EXISTS.)',
    'DO $$',
    'DECLARE',
    '  r text;',
    'BEGIN',
    `  FOREACH r IN ARRAY ${roleList} LOOP`,
    '    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN',
    "      EXECUTE format('CREATE ROLE %I NOLOGIN', r);",
    '    ELSIF EXISTS (SELECT FROM pg_roles WHERE rolname = r',
    '                  AND (rolsuper OR rolcanlogin OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls)) THEN',
    "      EXECUTE format('ALTER ROLE %I NOSUPERUSER NOLOGIN NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS', r);",
    '    END IF;',
    '  END LOOP;',
    'END',
    '$$;',
    '',
    `${SYNC_FUNCTION};`,
    '',
    '-- One call per rule. creators: roles whose tables made later are covered by',
    "-- default privileges (this script's runner, the agent's login user, and the",
    '-- ddl and admin roles, which own what their sessions create).',
  );
  for (const x of roles) {
    const r = rules.find((y) => y.name === x.rule)!;
    out.push(
      `SELECT pg_temp.warden_sync_role(`,
      `  role_name => ${sqlString(x.role)}, access_level => ${sqlString(x.access)},  -- rule ${x.rule}`,
      `  allow_schemas => ${textArray(r.allowSchemas)},  -- empty: every schema but the system ones`,
      `  deny_schemas => ${textArray(r.denySchemas)},`,
      `  allow_tables => ${textArray(r.allowTables)},  -- empty: every table of those schemas`,
      `  deny_tables => ${textArray(r.denyTables)},`,
      `  creators => ARRAY[${creators.join(', ')}]);`,
    );
  }
  out.push(
    '',
    'DROP FUNCTION pg_temp.warden_sync_role(text, text, text[], text[], text[], text[], text[]);',
    '',
    "-- The agent's login user must be a member of each role to SET ROLE to it.",
    input.agentUser
      ? `-- The agent logs in as ${input.agentUser} (--agent-user).`
      : '-- Without --agent-user this is CURRENT_USER, the role running this script:',
    ...(input.agentUser ? [] : ["-- right when it runs as the agent's login user, wrong otherwise."]),
    '-- PostgreSQL 16 and later: SET TRUE allows SET ROLE, INHERIT FALSE keeps the',
    "-- roles' privileges out of the login user's own sessions. Before 16 a",
    "-- member inherits them when its role has INHERIT; they are a subset of",
    "-- what a login user that owns the objects has anyway.",
    'DO $$',
    'DECLARE',
    `  agent_user text := ${agentUser};`,
    '  r text;',
    'BEGIN',
    `  FOREACH r IN ARRAY ${roleList} LOOP`,
    "    IF current_setting('server_version_num')::int >= 160000 THEN",
    "      EXECUTE format('GRANT %I TO %I WITH INHERIT FALSE, SET TRUE', r, agent_user);",
    "    ELSIF NOT pg_has_role(agent_user, r, 'MEMBER') THEN",
    "      EXECUTE format('GRANT %I TO %I', r, agent_user);",
    '    END IF;',
    '  END LOOP;',
    'END',
    '$$;',
    '',
    'COMMIT;',
    '',
  );
  const ruleRoles = Object.fromEntries(roles.map((x) => [x.rule, x.role]));
  const snippet = JSON.stringify({ ruleRoles }, null, 2).split('\n').slice(1, -1);
  out.push(
    `-- The agent's config (docs/processes.md), in resources.${JSON.stringify(resource)}:`,
    ...snippet.map((l) => `--${l}`),
  );
  return { sql: `${out.join('\n')}\n`, roles, ruleRoles };
}
