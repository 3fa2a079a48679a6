// Issue 10: one decision, everywhere. `warden policy check` and the gateway
// must decide a script the same way, statement by statement, with the same
// session state carried from one statement to the next (SET, SET LOCAL,
// RESET, set_config, transactions, savepoints, startup parameters). For each
// script of the table below (none depends on views, user functions or other
// catalog knowledge, which the CLI does not have), the test runs
//   warden policy check --as ID --resource scopes [--set search_path=…] --json "SCRIPT"
// and sends the same script as one simple Query through the gateway, with the
// same parameters in the startup packet, then asserts that both refuse at the
// same statement with the same SQLSTATE, or both allow all of it.
//
// Each script is first run straight against Postgres, which proves it is valid
// SQL there: a refusal the two disagree on is never Postgres' own error.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawSession, RESOURCE, startScopes, type Outcome, type Scopes, type Who } from './support/scopes.js';

let env: Scopes;
/** `warden policy check --json` of every case, run a few at a time before the tests (each is a process of its own). */
const cliResults = new Map<string, { stdout: string; stderr: string; code: number }>();

beforeAll(async () => {
  env = await startScopes('warden_scope_agree');
  const jobs = CASES.flatMap((c) => (c.who ?? READERS).map((who) => ({ c, who })));
  let next = 0;
  await Promise.all(
    Array.from({ length: 6 }, async () => {
      while (next < jobs.length) {
        const { c, who } = jobs[next++]!;
        cliResults.set(keyOf(c, who), await env.stack.cli('policy', 'check', '--as', who, '--resource', RESOURCE, ...setArgs(c.set), '--json', c.script));
      }
    }),
  );
  // About 200 CLI processes: on a busy two-core machine they take longer than the default hook budget.
}, 600_000);

afterAll(async () => {
  await env?.stop();
});

interface Case {
  script: string;
  /** Session parameters: `--set name=value` for the CLI, the startup packet for the gateway. */
  set?: Record<string, string>;
  who?: Who[];
}

const READERS: Who[] = ['scoped-reader', 'table-denied'];

const CASES: Case[] = [
  { script: 'select * from public.secret' },
  { script: 'select * from p.secret' },
  { script: 'select * from secret' },
  { script: 'select * from public.parent' },
  { script: 'select 1; select * from p.secret; select 2' },
  { script: 'set search_path = p; select * from secret' },
  { script: 'set search_path = public; select * from secret' },
  { script: 'set search_path = public; select * from parent' },
  { script: 'set search_path = pg_catalog, public; select * from secret' },
  { script: 'set search_path = public, p; select * from child' },
  { script: 'set search_path = p; reset search_path; select * from parent' },
  { script: 'set search_path = p; set search_path to default; select * from parent' },
  { script: 'begin; set local search_path = p; select * from secret; commit' },
  { script: 'begin; set local search_path = p; commit; select * from parent' },
  { script: 'begin; set search_path = p; rollback; select * from parent' },
  { script: 'begin; set search_path = p; commit; select * from secret' },
  { script: 'begin; savepoint a; set search_path = p; rollback to savepoint a; select * from parent; commit' },
  { script: 'begin; set search_path = p; savepoint a; rollback to savepoint a; select * from secret; commit' },
  { script: 'begin; savepoint a; set search_path = p; release savepoint a; select * from secret; commit' },
  { script: 'begin; set search_path = p; set local search_path = public; commit; select * from secret' },
  { script: 'begin; set local search_path = public; set search_path = p; commit; select * from secret' },
  { script: 'set local search_path = p; select * from secret' },
  { script: "select set_config('search_path', 'p', true); select * from secret" },
  { script: 'prepare q as select * from secret; set search_path = p; execute q' },
  { script: "select set_config('search_path', 'p', false); select * from secret" },
  { script: "select set_config('search_path', 'public', false); select * from parent" },
  { script: "set schema 'p'; select * from secret" },
  { script: 'set search_path = U&"\\0070"; select * from secret' },
  { script: "select set_config('search_path', 'P', false); select * from secret" },
  { script: "select set_config('search_path', ' p ', false); select * from secret" },
  { script: "select 1 where set_config('search_path', 'p', false) is not null; select * from secret" },
  { script: "with x as (select set_config('search_path', 'p', false) as v) select v from x; select * from secret" },
  { script: "select length(upper(set_config('search_path', 'p', false))); select * from secret" },
  { script: "begin; select set_config('search_path', 'p', true); commit; select * from parent" },
  { script: "select set_config('search_path', lower('P'), false); select * from secret" },
  { script: "select table_to_xml('p.secret', true, false, '')" },
  { script: "select table_to_xmlschema('p.secret', true, false, '')" },
  { script: "select query_to_xml('select * from p.secret', true, false, '')" },
  { script: "select schema_to_xml('p', true, false, '')" },
  { script: "select table_to_xml('public.parent', true, false, '')" },
  { script: 'show search_path; select current_schema()' },
  { script: 'select relname from pg_catalog.pg_class limit 1; select table_name from information_schema.tables limit 1' },
  // A write for a read identity: the access level, not the scope (harmless if it ran).
  { script: 'delete from public.parent where false' },
  // The same table names with the search_path given at startup.
  { script: 'select * from secret', set: { search_path: 'p' } },
  { script: 'select * from public.parent', set: { search_path: 'p' } },
  { script: 'select * from parent', set: { search_path: 'public' } },
  // RESET and SET … TO DEFAULT go back to the startup value, not to the server's default.
  { script: 'reset search_path; select * from secret', set: { search_path: 'p' } },
  { script: 'set search_path to default; select * from secret', set: { search_path: 'p' } },
  { script: 'set search_path = public; select * from parent', set: { search_path: 'p' } },
  // Writes, made harmless with WHERE false: Postgres runs each script once directly, and the gateway may let them through.
  { script: 'delete from public.secret where false', who: ['scoped-writer'] },
  { script: 'delete from p.secret where false', who: ['scoped-writer'] },
  { script: 'set search_path = p; delete from secret where false', who: ['scoped-writer'] },
  { script: "select set_config('search_path', 'p', false); update secret set v = v where false", who: ['scoped-writer'] },
  { script: 'begin; set local search_path = p; commit; delete from secret where false', who: ['scoped-writer'] },
  { script: 'insert into public.secret select * from p.secret where false', who: ['scoped-writer'] },
  { script: 'delete from secret where false', set: { search_path: 'p' }, who: ['scoped-writer'] },
];

/** Where a script stops: the index of the first failed statement and its SQLSTATE, or none. */
interface Verdict {
  refusedAt: number | null;
  sqlstate: string | null;
  statements: number;
}

function verdictOf(outcomes: Outcome[]): Verdict {
  const at = outcomes.findIndex((o) => o.error);
  return { refusedAt: at < 0 ? null : at, sqlstate: at < 0 ? null : outcomes[at]!.error!.code, statements: outcomes.length };
}

function describeOutcomes(outcomes: Outcome[]): string {
  return outcomes.map((o, i) => `  ${i + 1}. ${o.error ? `ERROR ${o.error.code}: ${o.error.message}` : `ok (${o.rows} rows)`}`).join('\n');
}

const setArgs = (set: Record<string, string> = {}) => Object.entries(set).flatMap(([k, v]) => ['--set', `${k}=${v}`]);
const keyOf = (c: Case, who: Who) => JSON.stringify([c.script, c.set ?? {}, who]);

describe('policy check and the gateway decide every script the same way', () => {
  for (const c of CASES) {
    for (const who of c.who ?? READERS) {
      const label = `${c.set ? `[${Object.entries(c.set).map(([k, v]) => `${k}=${v}`).join(' ')}] ` : ''}${c.script} [${who}]`;
      it(label, async () => {
        // Valid SQL on Postgres itself, statement by statement, with the same startup parameters.
        const direct = await RawSession.direct(env.db, c.set);
        let postgresOut: Outcome[];
        try {
          postgresOut = await direct.simple(c.script);
        } finally {
          await direct.end();
        }
        expect(postgresOut.filter((o) => o.error), `the script must run on Postgres:\n${describeOutcomes(postgresOut)}`).toEqual([]);
        const statements = postgresOut.length;

        // The CLI.
        const cli = cliResults.get(keyOf(c, who))!;
        expect(cli.code, `warden policy check failed:\n${cli.stderr}${cli.stdout}`).toBe(0);
        const report = JSON.parse(cli.stdout) as { statements: Array<{ decision: string; sqlstate?: string; statement: string }> };
        expect(report.statements, `policy check must report each of the ${statements} statements`).toHaveLength(statements);
        for (const s of report.statements) {
          expect(['allowed', 'refused']).toContain(s.decision);
          expect(typeof s.statement).toBe('string');
          if (s.decision === 'refused') expect(s.sqlstate).toMatch(/^[0-9A-Z]{5}$/);
        }
        const firstRefused = report.statements.findIndex((s) => s.decision === 'refused');
        const cliVerdict = {
          refusedAt: firstRefused < 0 ? null : firstRefused,
          sqlstate: firstRefused < 0 ? null : report.statements[firstRefused]!.sqlstate ?? null,
        };

        // The gateway: the same script as one Query message, the same parameters at startup.
        let gatewayOut: Outcome[];
        try {
          const s = await RawSession.open(env.stack, who, c.set ?? {});
          try {
            gatewayOut = await s.simple(c.script);
          } finally {
            await s.end();
          }
        } catch (err) {
          throw new Error(`the gateway did not take the connection (${label}): ${String(err)}`);
        }
        const gw = verdictOf(gatewayOut);
        const explain = `policy check:\n${report.statements.map((s, i) => `  ${i + 1}. ${s.decision}${s.sqlstate ? ` ${s.sqlstate}` : ''}: ${s.statement}`).join('\n')}\ngateway:\n${describeOutcomes(gatewayOut)}`;
        expect({ refusedAt: gw.refusedAt, sqlstate: gw.sqlstate }, `policy check and the gateway disagree:\n${explain}`).toEqual(cliVerdict);
        if (gw.refusedAt === null) expect(gw.statements, explain).toBe(statements);
      });
    }
  }
});
