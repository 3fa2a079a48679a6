// What the scope tests (test/scopes.test.ts, test/scope-agreement.test.ts)
// share: a database loaded with test/fixtures/scopes.sql, a whole Warden in
// front of it with test/fixtures/scopes-policy.yaml applied, a way to put
// every row back, and a client that speaks the simple and the extended
// protocol message by message and keeps everything the server sends back
// (rows, COPY data, notices, errors), so a test can look for out-of-scope
// data in all of it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { createDatabase, ROOT, startStack, type Stack, type TestDatabase } from './stack.js';
import { RawClient, serialize, type Message } from './raw-client.js';

export const RESOURCE = 'scopes';
export const FIXTURE_SQL = join(ROOT, 'test/fixtures/scopes.sql');
export const POLICY_FILE = join(ROOT, 'test/fixtures/scopes-policy.yaml');

const ROWS_MARK = '-- @@ rows';

/** The identities of scopes-policy.yaml. */
export type Who = 'scoped-reader' | 'scoped-writer' | 'table-denied' | 'unscoped-reader';

export interface Scopes {
  db: TestDatabase;
  stack: Stack;
  /** Runs the rows part of the fixture again: every row, the sequence, the statistics as loaded. */
  restoreRows(): Promise<void>;
  stop(): Promise<void>;
}

/** A database of the test's own with the fixture, a Warden in front of it, the policy applied and in force. */
export async function startScopes(prefix: string): Promise<Scopes> {
  const sql = readFileSync(FIXTURE_SQL, 'utf8');
  const at = sql.indexOf(ROWS_MARK);
  if (at < 0) throw new Error(`${FIXTURE_SQL} has no '${ROWS_MARK}' line`);
  const rows = sql.slice(at);
  const db = await createDatabase(prefix);
  let stack: Stack | undefined;
  try {
    await db.query(sql);
    stack = await startStack({ upstream: db.url, resource: RESOURCE });
    const applied = await stack.cli('policy', 'apply', '-f', POLICY_FILE);
    if (applied.code !== 0) throw new Error(`policy apply failed (${applied.code}): ${applied.stderr}${applied.stdout}`);
    await untilIdentityConnects(stack, 'scoped-reader');
  } catch (err) {
    await stack?.stop();
    await db.drop();
    throw err;
  }
  const s = stack;
  return {
    db,
    stack: s,
    async restoreRows() {
      // A session left behind by a test must not make the restore hang.
      await db.query(`SET lock_timeout = '20s'`);
      await db.query(rows);
    },
    async stop() {
      await s.stop();
      await db.drop();
    },
  };
}

/** The applied policy reaches the gateway shortly after apply: wait until the identity gets in. */
async function untilIdentityConnects(stack: Stack, who: Who) {
  const deadline = Date.now() + 15_000;
  let last: unknown;
  while (Date.now() < deadline) {
    const c = new pg.Client({ host: stack.host, port: stack.port, user: who, database: RESOURCE, password: await stack.token(who) });
    c.on('error', () => {});
    try {
      await c.connect();
      await c.query('SELECT 1');
      await c.end();
      return;
    } catch (err) {
      last = err;
      await c.end().catch(() => {});
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`${who} could not connect after the policy was applied: ${String(last)}`);
}

/** What one statement got back. */
export interface Outcome {
  /** The statement (or, for a string of several, the string and the statement's place in it). */
  sql: string;
  /** Everything that came back for it as text: rows, COPY data, notices, the error message. */
  text: string;
  rows: number;
  error?: { code: string; message: string };
}

/** bytea values come back as Buffers (node-postgres) or \x hex text: both end up as hex here. */
export function dump(value: unknown): string {
  return JSON.stringify(value, (_k, v) =>
    v && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)
      ? Buffer.from((v as { data: number[] }).data).toString('hex')
      : typeof v === 'bigint'
        ? v.toString()
        : v,
  );
}

/**
 * A session over RawClient: the simple protocol (one Query message, any
 * number of statements) and the extended protocol (Parse/Bind/Describe/
 * Execute/Sync of an unnamed statement), with every row, COPY chunk, notice
 * and error kept per statement.
 */
export class RawSession {
  private constructor(private readonly c: RawClient) {}

  static async open(stack: Stack, who: string, parameters: Record<string, string> = {}): Promise<RawSession> {
    return new RawSession(
      await RawClient.connect({ host: stack.host, port: stack.port, user: who, database: RESOURCE, password: await stack.token(who), parameters }),
    );
  }

  /** Straight to Postgres (no Warden), for checking that a route is valid SQL that reaches the data. */
  static async direct(db: TestDatabase, parameters: Record<string, string> = {}): Promise<RawSession> {
    const url = new URL(db.url);
    return new RawSession(
      await RawClient.connect({ host: url.hostname, port: Number(url.port || 5432), user: decodeURIComponent(url.username), database: db.name, parameters }),
    );
  }

  /**
   * One Query message; one Outcome per statement that ran or failed
   * (statements after an error do not run). `copyIn`: the data to send if
   * the server asks for COPY data (otherwise the COPY is failed with CopyFail).
   */
  async simple(sql: string, copyIn?: string): Promise<Outcome[]> {
    this.c.send(serialize.query(sql));
    return this.collect((i) => (sql.includes(';') ? `${sql}  [statement ${i + 1}]` : sql), copyIn);
  }

  /** Parse/Bind/Describe/Execute/Sync of one unnamed statement with text parameters. */
  async extended(sql: string, params: unknown[] = []): Promise<Outcome[]> {
    return this.pipeline([{ sql, params }]);
  }

  /** Parse of a named statement, then Sync. */
  async parseNamed(name: string, sql: string): Promise<Outcome[]> {
    this.c.send(serialize.parse({ name, text: sql, types: [] }), serialize.sync());
    return this.collect(() => `Parse ${name}: ${sql}`);
  }

  /** Bind/Describe/Execute/Sync of a named statement, made by Parse or by SQL PREPARE. */
  async executeNamed(name: string, params: unknown[] = []): Promise<Outcome[]> {
    const values = params.map((p) => (p === null || p === undefined ? null : String(p)));
    this.c.send(serialize.bind({ statement: name, values }), serialize.describe({ type: 'P' }), serialize.execute({}), serialize.sync());
    return this.collect(() => `Bind/Execute ${name}`);
  }

  /** Parse/Bind/Describe/Execute of each statement (unnamed), all before one Sync: a pipeline. */
  async pipeline(statements: Array<{ sql: string; params?: unknown[] }>): Promise<Outcome[]> {
    const messages: Buffer[] = [];
    for (const { sql, params = [] } of statements) {
      const values = params.map((p) => (p === null || p === undefined ? null : String(p)));
      messages.push(serialize.parse({ text: sql, types: [] }), serialize.bind({ values }), serialize.describe({ type: 'P' }), serialize.execute({}));
    }
    this.c.send(...messages, serialize.sync());
    return this.collect((i) => statements[i]?.sql ?? '(after the pipeline)');
  }

  async end(): Promise<void> {
    await this.c.end().catch(() => {});
  }

  private async collect(label: (index: number) => string, copyIn?: string): Promise<Outcome[]> {
    const out: Outcome[] = [];
    let cur: Outcome = { sql: label(0), text: '', rows: 0 };
    const close = () => {
      out.push(cur);
      cur = { sql: label(out.length), text: '', rows: 0 };
    };
    for (;;) {
      const m: Message = await this.c.next(30_000);
      switch (m.name) {
        case 'dataRow':
          cur.rows++;
          cur.text += `${dump(m.fields)}\n`;
          break;
        case 'copyData':
          cur.text += (m.chunk as Buffer).toString('utf8');
          break;
        case 'copyInResponse':
          if (copyIn === undefined) this.c.send(serialize.copyFail('the scope tests send no COPY data here'));
          else this.c.send(serialize.copyData(Buffer.from(copyIn, 'utf8')), serialize.copyDone());
          break;
        case 'notice':
          cur.text += `NOTICE ${String(m.message)} ${String(m.detail ?? '')}\n`;
          break;
        case 'commandComplete':
        case 'emptyQuery':
          close();
          break;
        case 'error':
          cur.error = { code: String(m.code), message: String(m.message) };
          cur.text += `ERROR ${String(m.message)} ${String(m.detail ?? '')}\n`;
          close();
          break;
        case 'readyForQuery':
          if (cur.text || cur.rows) out.push(cur);
          return out;
        default:
          break;
      }
    }
  }
}

/** "startup failed: 42501 message" (RawClient's wording) into a refusal-like Outcome. */
export function startupFailure(sql: string, err: unknown): Outcome {
  const text = err instanceof Error ? err.message : String(err);
  const m = /startup failed: (\S+) (.*)$/s.exec(text);
  return { sql: `(connect) ${sql}`, text, rows: 0, error: { code: m?.[1] ?? 'connect', message: m?.[2] ?? text } };
}
