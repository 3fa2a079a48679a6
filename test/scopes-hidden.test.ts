// Issue 10, end to end: functions a statement runs without naming them. A
// user operator, an aggregate's support function, and a table's column
// default, generated column, CHECK constraint or index expression each run
// a function of public that reads p.secret. For identities scoped to schema
// public (scopes-hidden-policy.yaml), over the simple and the extended
// protocol, each route is refused and no TOPSECRET comes back (rows,
// notices, errors); harmless operators, aggregates and defaults in public
// stay allowed. Each route is also run straight against Postgres (in a
// rolled-back transaction) to prove it does give p.secret away there.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, ROOT, startStack, type Stack, type TestDatabase } from './support/stack.js';

const RESOURCE = 'scopes';
const FIXTURE = join(ROOT, 'test/fixtures/scopes-hidden.sql');
const POLICY = join(ROOT, 'test/fixtures/scopes-hidden-policy.yaml');
const MARKER = /TOPSECRET/i;

type Who = 'scoped-reader' | 'scoped-writer';
type Mode = 'simple' | 'extended';

interface Outcome {
  text: string;
  error?: { code: string; message: string };
}

let db: TestDatabase;
let stack: Stack;

async function connect(who: Who | 'direct'): Promise<{ client: pg.Client; notices: string[] }> {
  const client =
    who === 'direct'
      ? new pg.Client({ connectionString: db.url })
      : new pg.Client({ host: stack.host, port: stack.port, user: who, database: RESOURCE, password: await stack.token(who) });
  const notices: string[] = [];
  client.on('notice', (n) => notices.push(`${n.message} ${n.detail ?? ''}`));
  client.on('error', () => {});
  await client.connect();
  return { client, notices };
}

/** Runs the statements in order, stopping at the first error; everything that came back, as text. */
async function run(who: Who | 'direct', mode: Mode, statements: string[]): Promise<Outcome> {
  const { client, notices } = await connect(who);
  const out: Outcome = { text: '' };
  try {
    for (const sql of statements) {
      try {
        // node-postgres speaks the extended protocol when asked, or when given parameters.
        const r = await client.query(mode === 'extended' ? ({ text: sql, queryMode: 'extended' } as pg.QueryConfig) : sql);
        out.text += `${JSON.stringify(r.rows)}\n`;
      } catch (err) {
        const e = err as { code?: string; message?: string };
        out.error = { code: String(e.code), message: String(e.message) };
        out.text += `ERROR ${e.message}\n`;
        break;
      }
    }
  } finally {
    out.text += notices.join('\n');
    await client.end().catch(() => {});
  }
  return out;
}

/** The applied policy reaches the gateway shortly after apply: wait until the identity gets in. */
async function untilConnects(who: Who): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const { client } = await connect(who);
      await client.query('select 1');
      await client.end();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

interface Route {
  name: string;
  sql: string;
  /** Default: both. A reader is refused any write by its level alone. */
  who?: Who[];
}

const BOTH: Who[] = ['scoped-reader', 'scoped-writer'];
const WRITER: Who[] = ['scoped-writer'];

const ROUTES: Route[] = [
  { name: 'a user operator, unqualified', sql: 'select id <<< id from public.t' },
  { name: 'a user operator in OPERATOR(public.<<<) syntax', sql: 'select 1 operator(public.<<<) 2' },
  { name: 'a user operator in a CTE', sql: 'with s as (select 1 <<< 2 as x) select x from s' },
  { name: "a user aggregate's transition function", sql: 'select public.leakagg(id) from public.t' },
  { name: 'a user aggregate, unqualified', sql: 'select leakagg(id) from public.t' },
  { name: 'a column default', sql: 'insert into public.copied (id) values (1) returning v', who: WRITER },
  { name: 'a column default, through INSERT … DEFAULT VALUES in a CTE', sql: 'with x as (insert into public.copied (id) values (2) returning v) select v from x', who: WRITER },
  { name: 'a generated column', sql: 'insert into public.generated (id) values (1) returning g', who: WRITER },
  { name: 'a CHECK constraint', sql: 'insert into public.checked values (1)', who: WRITER },
  { name: 'an index expression', sql: 'insert into public.indexed values (2)', who: WRITER },
  { name: 'an index expression, on UPDATE', sql: 'update public.indexed set id = id + 10', who: WRITER },
];

/** Must be allowed, and give what they compute. */
const HARMLESS: Array<Route & { expect: RegExp }> = [
  { name: 'a harmless operator', sql: 'select 1 &+& 2 as n', expect: /"n":3/ },
  { name: 'a harmless operator, qualified', sql: 'select 1 operator(public.&+&) 2 as n', expect: /"n":3/ },
  { name: 'a harmless aggregate', sql: 'select public.total(id) as n from public.t', expect: /"n":3/ },
  { name: 'reading tables with defaults, checks and indexes', sql: 'select * from public.copied, public.generated, public.checked, public.indexed', expect: /^\[\]/ },
];

beforeAll(async () => {
  db = await createDatabase('warden_hidden');
  try {
    await db.query(readFileSync(FIXTURE, 'utf8'));
    stack = await startStack({ upstream: db.url, resource: RESOURCE });
    const applied = await stack.cli('policy', 'apply', '-f', POLICY);
    if (applied.code !== 0) throw new Error(`policy apply failed (${applied.code}): ${applied.stderr}${applied.stdout}`);
    await untilConnects('scoped-reader');
    await untilConnects('scoped-writer');
  } catch (err) {
    await stack?.stop();
    await db.drop();
    throw err;
  }
});

afterAll(async () => {
  await stack?.stop();
  await db?.drop();
});

describe('the routes are live: straight against Postgres they give p.secret away', () => {
  for (const route of ROUTES) {
    it(route.name, async () => {
      const r = await run('direct', 'simple', ['begin', route.sql, 'rollback']);
      expect(r.error, r.text).toBeUndefined();
      expect(r.text).toMatch(MARKER);
    });
  }
});

describe('functions a statement does not name are refused for identities scoped to public', () => {
  for (const mode of ['simple', 'extended'] as const) {
    for (const route of ROUTES) {
      for (const who of route.who ?? BOTH) {
        it(`${route.name} (${who}, ${mode})`, async () => {
          const r = await run(who, mode, ['begin', route.sql, 'rollback']);
          expect(r.error?.code, r.text).toBe('42501');
          expect(r.error?.message).toMatch(/^warden: /);
          expect(r.text).not.toMatch(MARKER);
        });
      }
    }
  }

  it('an operator in a schema out of scope is refused even when its function is harmless', async () => {
    const r = await run('scoped-reader', 'simple', ['select 1 operator(p.&+&) 2']);
    expect(r.error?.code).toBe('42501');
    expect(r.error?.message).toContain('operator p.&+&');
  });

  it('nothing was written into public', async () => {
    const n = await db.query(
      'select (select count(*) from public.copied) + (select count(*) from public.generated) + (select count(*) from public.checked) as n',
    );
    expect(Number(n.rows[0].n)).toBe(0);
    expect((await db.query('select id from public.indexed')).rows).toEqual([{ id: 1 }]);
  });
});

describe('harmless operators, aggregates and defaults in public stay allowed', () => {
  for (const mode of ['simple', 'extended'] as const) {
    for (const route of HARMLESS) {
      for (const who of BOTH) {
        it(`${route.name} (${who}, ${mode})`, async () => {
          const r = await run(who, mode, [route.sql]);
          expect(r.error, r.text).toBeUndefined();
          expect(r.text).toMatch(route.expect);
        });
      }
    }
    it(`a harmless default (scoped-writer, ${mode})`, async () => {
      const r = await run('scoped-writer', mode, ['begin', 'insert into public.harmless (id) values (1) returning n', 'rollback']);
      expect(r.error, r.text).toBeUndefined();
      expect(r.text).toMatch(/"n":3/);
    });
  }
});
