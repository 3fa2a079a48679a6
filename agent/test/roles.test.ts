// Native roles: the config's role mappings, and the SET ROLE step that ends
// the upstream login (on the machine's Postgres, with roles made here).
import { pino } from 'pino';
import { terminate } from '@warden/proto/pgwire';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AgentContext,
  ConfigError,
  connectUpstream,
  GatewayConnection,
  parseConfig,
  quoteIdent,
  type RelaySession,
  type ResourceConfig,
  sessionRole,
  type UpstreamConnection,
  UpstreamError,
  type UpstreamTarget,
} from '../src/index.js';
import { dataRow, errorFields, FakeGateway, messages, queryMessage, waitFor } from './helpers/fake-gateway.js';
import { MAIN, query, rand } from './helpers/pg.js';

const log = pino({ level: process.env.WARDEN_TEST_LOG ?? 'silent' });
const labels = { agent: 'local', resource: 'shop' };

function base(roles?: unknown, ruleRoles?: unknown): Record<string, any> {
  const shop: Record<string, unknown> = { host: '127.0.0.1', user: 'app', database: 'shop' };
  if (roles !== undefined) shop.roles = roles;
  if (ruleRoles !== undefined) shop.ruleRoles = ruleRoles;
  return { name: 'local', controlPlane: { address: '127.0.0.1:7070' }, enrollmentToken: 'tok', resources: { shop } };
}

function configError(raw: unknown): ConfigError {
  try {
    parseConfig(raw, { env: {} });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('config: roles and ruleRoles', () => {
  it('reads both mappings per resource', () => {
    const { config, warnings } = parseConfig(
      base({ read: 'warden_read', write: 'Warden Write' }, { 'ci-read-only': 'warden_ci_read_only' }),
      { env: {} },
    );
    expect(warnings).toEqual([]);
    expect(config.resources.shop!.roles).toEqual({ read: 'warden_read', write: 'Warden Write' });
    expect(config.resources.shop!.ruleRoles).toEqual({ 'ci-read-only': 'warden_ci_read_only' });
  });

  it('leaves them out when not given', () => {
    const { config } = parseConfig(base(), { env: {} });
    expect(config.resources.shop).not.toHaveProperty('roles');
    expect(config.resources.shop).not.toHaveProperty('ruleRoles');
  });

  it('names the field at fault', () => {
    const cases: Array<[Record<string, any>, string, RegExp]> = [
      [base({ reed: 'x' }), 'resources.shop.roles.reed', /is not an access level \(use read, write, ddl, admin\)/],
      [base({ read: '' }), 'resources.shop.roles.read', /must not be empty/],
      [base({ read: 7 }), 'resources.shop.roles.read', /must be a string/],
      [base(['warden_read']), 'resources.shop.roles', /must be an object, got an array/],
      [base({ read: 'x'.repeat(64) }), 'resources.shop.roles.read', /at most 63 bytes/],
      [base({ read: 'a\0b' }), 'resources.shop.roles.read', /NUL/],
      [base(undefined, { 'ci-read-only': null }), 'resources.shop.ruleRoles.ci-read-only', /must be a string, got null/],
      [base(undefined, 'warden_ci'), 'resources.shop.ruleRoles', /must be an object/],
    ];
    for (const [raw, field, message] of cases) {
      const e = configError(raw);
      expect(e.field, field).toBe(field);
      expect(e.message).toMatch(message);
    }
  });
});

describe('sessionRole', () => {
  const r: ResourceConfig = {
    host: 'h',
    port: 5432,
    database: 'd',
    user: 'u',
    sslmode: 'disable',
    roles: { read: 'warden_read', write: 'warden_write' },
    ruleRoles: { 'ci-read-only': 'warden_ci_read_only' },
  };

  it('takes the rule mapping over the level mapping', () => {
    expect(sessionRole(r, 'read', 'ci-read-only')).toEqual({ name: 'warden_ci_read_only', source: 'rule ci-read-only' });
    expect(sessionRole(r, 'read', 'other-rule')).toEqual({ name: 'warden_read', source: 'access level read' });
    expect(sessionRole(r, 'write', '')).toEqual({ name: 'warden_write', source: 'access level write' });
  });

  it('leaves an unmapped level on the login user', () => {
    expect(sessionRole(r, 'admin', 'admins')).toBeUndefined();
    expect(sessionRole({ ...r, roles: undefined, ruleRoles: undefined }, '', '')).toBeUndefined();
  });

  it('does not take inherited object keys for mappings', () => {
    expect(sessionRole({ ...r, roles: {} , ruleRoles: {} }, 'read', 'constructor')).toBeUndefined();
    expect(sessionRole({ ...r, roles: {}, ruleRoles: { x: 'y' } }, 'toString', '')).toBeUndefined();
  });

  it('fails closed when roles are mapped but the gateway names no level', () => {
    expect(() => sessionRole(r, '', '')).toThrow(/did not say the session's access level/);
    expect(() => sessionRole({ ...r, roles: undefined }, '', 'x')).toThrow(ConfigError);
  });

  it('quotes role names as identifiers', () => {
    expect(quoteIdent('warden_read')).toBe('"warden_read"');
    expect(quoteIdent('a"b')).toBe('"a""b"');
  });
});

/** Runs one simple query on the connection and returns its rows (or its error). */
async function simpleQuery(conn: UpstreamConnection, sql: string): Promise<{ rows: Array<Array<string | null>>; error?: Record<string, string> }> {
  const { socket } = conn;
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    socket.on('error', reject);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      const msgs = messages(Buffer.concat(chunks));
      if (msgs.some((m) => m.type === 'Z')) {
        socket.removeAllListeners('data');
        const e = msgs.find((m) => m.type === 'E');
        resolve({ rows: msgs.filter((m) => m.type === 'D').map((m) => dataRow(m.body)), error: e ? errorFields(e.body) : undefined });
      }
    });
    socket.resume();
    socket.write(queryMessage(sql));
  });
}

function parameterStatuses(initial: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of messages(initial)) {
    if (m.type !== 'S') continue;
    const [k, v] = m.body.toString('utf8').split('\0');
    out[k!] = v!;
  }
  return out;
}

describe('SET ROLE after the upstream login (machine server)', () => {
  const tag = rand();
  const role = `warden_t_${tag}_read`;
  const odd = `warden_t_${tag} "odd"`;
  const member = `warden_t_${tag}_login`;
  const outsider = `warden_t_${tag}_outsider`;
  const superTarget: UpstreamTarget = { ...MAIN, sslmode: 'disable' };

  beforeAll(async () => {
    await query(
      MAIN,
      `CREATE ROLE ${quoteIdent(role)} NOLOGIN; CREATE ROLE ${quoteIdent(odd)} NOLOGIN;
       CREATE ROLE ${quoteIdent(member)} LOGIN; CREATE ROLE ${quoteIdent(outsider)} LOGIN;
       GRANT ${quoteIdent(role)} TO ${quoteIdent(member)};`,
    );
  });
  afterAll(async () => {
    await query(MAIN, `DROP ROLE IF EXISTS ${[role, odd, member, outsider].map(quoteIdent).join(', ')}`);
  });

  async function both(target: UpstreamTarget, name: string, readOnly = false): Promise<[UpstreamConnection, UpstreamConnection]> {
    const plain = await connectUpstream(target, { labels, readOnly });
    const roled = await connectUpstream(target, { labels, readOnly, role: { name, source: 'access level read' } });
    return [plain, roled];
  }

  it('a superuser login: same messages as without a role, is_superuser as the role has it, current_user the role', async () => {
    const [plain, roled] = await both(superTarget, role);
    try {
      const types = (c: UpstreamConnection) => messages(c.initial).map((m) => m.type);
      // SET's CommandComplete and second ReadyForQuery are not the client's.
      expect(types(roled)).toEqual(types(plain));
      const before = parameterStatuses(plain.initial);
      const after = parameterStatuses(roled.initial);
      expect(before.is_superuser).toBe('on');
      expect(after.is_superuser).toBe('off');
      expect(Object.keys(after)).toEqual(Object.keys(before));
      expect({ ...after, is_superuser: 'on' }).toEqual(before);
      expect(roled.serverParameters.is_superuser).toBe('off');
      expect(roled.serverParameters.session_authorization).toBe('postgres');
      const r = await simpleQuery(roled, "SELECT current_user, session_user, current_setting('is_superuser')");
      expect(r.rows).toEqual([[role, 'postgres', 'off']]);
    } finally {
      plain.socket.end(terminate());
      roled.socket.end(terminate());
    }
  });

  it('a member login: the byte stream has the same shape, and the role is in force, read-only too', async () => {
    const [plain, roled] = await both({ ...superTarget, user: member }, role, true);
    try {
      const shape = (c: UpstreamConnection) => messages(c.initial).map((m) => (m.type === 'K' ? 'K' : `${m.type}:${m.body.toString('latin1')}`));
      expect(shape(roled)).toEqual(shape(plain));
      const r = await simpleQuery(roled, "SELECT current_user, session_user, current_setting('default_transaction_read_only')");
      expect(r.rows).toEqual([[role, member, 'on']]);
    } finally {
      plain.socket.end(terminate());
      roled.socket.end(terminate());
    }
  });

  it('quotes the name, so any stored name works', async () => {
    const conn = await connectUpstream(superTarget, { labels, role: { name: odd, source: 'rule odd' } });
    try {
      expect((await simpleQuery(conn, 'SELECT current_user')).rows).toEqual([[odd]]);
    } finally {
      conn.socket.end(terminate());
    }
  });

  it('a missing role fails the open with the server SQLSTATE, the role and what to do', async () => {
    const missing = `warden_t_${tag}_missing`;
    const err = await connectUpstream(superTarget, { labels, role: { name: missing, source: 'rule ci-read-only' } }).then(
      (c) => {
        c.socket.destroy();
        throw new Error('the open unexpectedly worked');
      },
      (e: unknown) => e as UpstreamError,
    );
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err.phase).toBe('role');
    expect(['22023', '42704']).toContain(err.sqlstate);
    expect(err.message).toBe(
      `agent local could not put the session on resource shop in role "${missing}" (mapped from rule ci-read-only): ` +
        `role "${missing}" does not exist; create the role (warden roles sql prints a script for it) and grant it to "postgres", ` +
        'or fix the mapping in the agent config',
    );
  });

  it('a login user that is not a member fails with 42501 and the GRANT to run', async () => {
    const err = await connectUpstream({ ...superTarget, user: outsider }, { labels, role: { name: role, source: 'access level read' } }).then(
      (c) => {
        c.socket.destroy();
        throw new Error('the open unexpectedly worked');
      },
      (e: unknown) => e as UpstreamError,
    );
    expect(err.sqlstate).toBe('42501');
    expect(err.message).toMatch(/in role "warden_t_\w+_read" \(mapped from access level read\): permission denied to set role/);
    expect(err.message).toContain(`GRANT "${role}" TO "${outsider}"`);
  });
});

describe('SET ROLE through a session opened by a gateway', () => {
  const tag = rand();
  const readRole = `warden_t_${tag}_r`;
  const ruleRole = `warden_t_${tag}_rule`;
  let gw: FakeGateway;
  let conn: GatewayConnection;
  let ctx: AgentContext;

  beforeAll(async () => {
    await query(MAIN, `CREATE ROLE ${quoteIdent(readRole)} NOLOGIN; CREATE ROLE ${quoteIdent(ruleRole)} NOLOGIN`);
    gw = await new FakeGateway().start();
    ctx = {
      agentName: 'local',
      token: `enroll-${rand()}`,
      version: 'test',
      log,
      sessions: new Map<string, RelaySession>(),
      closeGraceMs: 3_000,
      resources: {
        shop: {
          ...MAIN,
          sslmode: 'disable',
          roles: { read: readRole, write: `warden_t_${tag}_missing` },
          ruleRoles: { 'ci-read-only': ruleRole },
        },
      },
    };
    conn = new GatewayConnection(ctx, { address: gw.address, backoff: { baseMs: 50, capMs: 500 } });
    conn.start();
    await waitFor(() => conn.connected, 5_000, 'connected');
  });
  afterAll(async () => {
    await conn?.stop({ closeSessions: true });
    await gw?.stop();
    // Sessions may still be closing; DROP ROLE fails while one runs in it.
    await waitFor(() => ctx.sessions.size === 0, 10_000, 'sessions to end').catch(() => undefined);
    await query(MAIN, `DROP ROLE IF EXISTS ${quoteIdent(readRole)}, ${quoteIdent(ruleRole)}`);
  });

  async function currentUser(open: { access?: string; rule?: string }): Promise<string | null> {
    const c = await gw.control();
    const id = `s-${rand()}`;
    c.open({ sessionId: id, ...open });
    const s = await gw.session(id);
    await waitFor(() => messages(s.data).some((m) => m.type === 'Z'), 10_000, 'login');
    const n = s.data.length;
    s.send(queryMessage('SELECT current_user'));
    const row = await waitFor(() => messages(s.data.subarray(n)).find((m) => m.type === 'D'), 10_000, 'a row');
    s.end();
    return dataRow(row.body)[0]!;
  }

  it('runs the session in the role of its rule, else of its level', async () => {
    expect(await currentUser({ access: 'read', rule: 'ci-read-only' })).toBe(ruleRole);
    expect(await currentUser({ access: 'read', rule: 'another' })).toBe(readRole);
    expect(await currentUser({ access: 'admin', rule: 'admins' })).toBe('postgres');
  });

  it('FAILED, never a relayed session, when the role cannot be set or chosen', async () => {
    const c = await gw.control();
    const cases = [
      { open: { access: 'write', rule: 'writers' }, sqlstate: /^(22023|42704)$/, message: /in role "warden_t_\w+_missing" \(mapped from access level write\): role .* does not exist/ },
      { open: {}, sqlstate: /^08006$/, message: /cannot choose the role for resource shop: .*did not say the session's access level/ },
    ];
    for (const k of cases) {
      const id = `s-${rand()}`;
      c.open({ sessionId: id, ...k.open });
      const s = await gw.session(id);
      expect(s.frames).toHaveLength(1);
      const f = s.first;
      expect(f?.$case).toBe('failed');
      if (f?.$case !== 'failed') continue;
      expect(f.value.sqlstate).toMatch(k.sqlstate);
      expect(f.value.message).toMatch(k.message);
      expect(s.data.length).toBe(0);
    }
  });
});
