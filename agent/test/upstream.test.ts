// Upstream login against real Postgres: trust on the machine's server,
// md5 / SCRAM / TLS on a throwaway cluster started here.
import { terminate } from '@warden/proto/pgwire';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  connectUpstream,
  md5Password,
  saslprep,
  ScramClient,
  scramStats,
  sendCancelRequest,
  startupParameters,
  type UpstreamConnection,
  UpstreamError,
  type UpstreamTarget,
} from '../src/index.js';
import { dataRow, errorFields, messages, queryMessage } from './helpers/fake-gateway.js';
import { canStartCluster, freePort, MAIN, query, rand, startCluster, type TempCluster } from './helpers/pg.js';

const labels = { agent: 'local', resource: 'shop' };

async function expectFailure(target: UpstreamTarget, opts: Parameters<typeof connectUpstream>[1] = {}): Promise<UpstreamError> {
  try {
    const c = await connectUpstream(target, { labels, ...opts });
    c.socket.destroy();
  } catch (err) {
    expect(err).toBeInstanceOf(UpstreamError);
    return err as UpstreamError;
  }
  throw new Error('login unexpectedly succeeded');
}

/** Runs one simple query on a relayed-style connection and returns the first row. */
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

function close(conn: UpstreamConnection): void {
  conn.socket.end(terminate());
}

describe('startup parameters', () => {
  it('keeps user/database from the config and puts read-only last', () => {
    const p = startupParameters(
      { user: 'app', database: 'shop' },
      {
        user: 'evil',
        Database: 'other',
        replication: 'database',
        application_name: 'ci',
        Default_Transaction_Read_Only: 'off',
        '_pq_.x': '1',
        'bad\0key': 'v',
      },
      true,
    );
    expect(p).toEqual([
      ['user', 'app'],
      ['database', 'shop'],
      ['application_name', 'ci'],
      ['default_transaction_read_only', 'on'],
    ]);
  });
});

describe('scram and md5 primitives', () => {
  it('matches the RFC 7677 SCRAM-SHA-256 test vector', async () => {
    const c = new ScramClient('pencil', { nonce: 'rOprNGfwEbeRWgbNEkqO', username: 'user' });
    expect(c.clientFirst().toString()).toBe('n,,n=user,r=rOprNGfwEbeRWgbNEkqO');
    const final = await c.clientFinal(
      Buffer.from('r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'),
    );
    expect(final.toString()).toBe(
      'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
    );
    expect(() => c.verifyServerFinal(Buffer.from('v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='))).toThrow(/does not match/);
    c.verifyServerFinal(Buffer.from('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='));
    expect(c.verified).toBe(true);
  });

  it('derives the salted password once per password, salt and count', async () => {
    const first = (c: ScramClient, nonce: string, salt: string) => c.clientFinal(Buffer.from(`r=${nonce}srv,s=${salt},i=4096`));
    const before = scramStats.derivations;
    const a = await first(new ScramClient('cached-pw', { nonce: 'n1' }), 'n1', 'c2FsdC1vbmU=');
    const b = await first(new ScramClient('cached-pw', { nonce: 'n1' }), 'n1', 'c2FsdC1vbmU=');
    expect(b.toString()).toBe(a.toString()); // same nonce, same proof
    expect(scramStats.derivations).toBe(before + 1);
    await first(new ScramClient('cached-pw', { nonce: 'n1' }), 'n1', 'c2FsdC10d28='); // another salt
    await first(new ScramClient('other-pw', { nonce: 'n1' }), 'n1', 'c2FsdC1vbmU='); // another password
    expect(scramStats.derivations).toBe(before + 3);
  });

  it('rejects a server nonce that does not extend ours', async () => {
    const c = new ScramClient('pencil', { nonce: 'abc' });
    await expect(c.clientFinal(Buffer.from('r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'))).rejects.toThrow(/nonce/);
  });

  it('md5 and saslprep', () => {
    // md5(md5("secret" + "app") + salt)
    expect(md5Password('app', 'secret', Buffer.from([1, 2, 3, 4]))).toMatch(/^md5[0-9a-f]{32}$/);
    expect(saslprep('plain ascii')).toBe('plain ascii');
    expect(saslprep('I\u00ADX')).toBe('IX');
    expect(saslprep('a\u00A0b')).toBe('a b');
    expect(saslprep('\u2168')).toBe('IX');
    expect(saslprep('a\u0007b')).toBe('a\u0007b'); // prohibited: raw password used
  });
});

describe('upstream login on the machine server (trust)', () => {
  const target: UpstreamTarget = { ...MAIN, sslmode: 'disable' };

  it('logs in, captures the backend key and stops at ReadyForQuery', async () => {
    const conn = await connectUpstream(target, { labels, parameters: { application_name: 'warden-agent-test' } });
    try {
      const msgs = messages(conn.initial);
      expect(msgs.length).toBeGreaterThan(2);
      expect(msgs[msgs.length - 1]!.type).toBe('Z');
      expect(msgs.some((m) => m.type === 'S')).toBe(true);
      expect(msgs.filter((m) => m.type === 'K')).toHaveLength(1);
      expect(msgs.some((m) => m.type === 'R')).toBe(false); // AuthenticationOk itself is not forwarded
      expect(conn.backendKey?.processId).toBeGreaterThan(0);
      expect(conn.serverParameters.application_name).toBe('warden-agent-test');
      expect(conn.socket.isPaused()).toBe(true);
      const r = await simpleQuery(conn, 'SELECT pg_backend_pid()::text, current_setting(\'application_name\')');
      expect(r.rows).toEqual([[String(conn.backendKey!.processId), 'warden-agent-test']]);
    } finally {
      close(conn);
    }
  });

  it('opens read-only sessions when asked, even if the client asks otherwise', async () => {
    const conn = await connectUpstream(target, {
      labels,
      readOnly: true,
      parameters: { default_transaction_read_only: 'off', options: '-c default_transaction_read_only=off' },
    });
    try {
      const r = await simpleQuery(conn, `CREATE TEMP TABLE t_${rand()} (x int)`);
      expect(r.error?.C).toBe('25006');
    } finally {
      close(conn);
    }
  });

  it('passes 3D000 through for a missing database', async () => {
    const err = await expectFailure({ ...target, database: `warden_missing_${rand()}` });
    expect(err.sqlstate).toBe('3D000');
    expect(err.message).toMatch(/^agent local could not log in to resource shop upstream as role postgres: database "warden_missing_\w+" does not exist/);
  });

  it('reports a refused connection with the resource and address', async () => {
    const port = await freePort();
    const err = await expectFailure({ ...target, port });
    expect(err.sqlstate).toBe('08006');
    expect(err.message).toBe(`agent local could not connect to resource shop upstream 127.0.0.1:${port}: connection refused (is Postgres running and listening there?)`);
  });

  it('sslmode require against a server with ssl off gives a clear error', async () => {
    const err = await expectFailure({ ...target, sslmode: 'require' });
    expect(err.sqlstate).toBe('08006');
    expect(err.message).toBe(
      'agent local could not connect to resource shop upstream 127.0.0.1:5432: the server does not accept TLS connections (sslmode=require)',
    );
  });

  it('times out on a server that never answers', async () => {
    const net = await import('node:net');
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as import('node:net').AddressInfo).port;
    try {
      const err = await expectFailure({ ...target, port }, { timeoutMs: 300 });
      expect(err.message).toMatch(/could not log in to resource shop upstream as role postgres: timed out after 0.3 s/);
    } finally {
      silent.close();
    }
  });

  it('sendCancelRequest interrupts a running query', async () => {
    const conn = await connectUpstream(target, { labels });
    try {
      const running = simpleQuery(conn, 'SELECT pg_sleep(30)');
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      await sendCancelRequest(target, conn.backendKey!);
      const r = await running;
      expect(r.error?.C).toBe('57014');
      expect(Date.now() - t0).toBeLessThan(10_000);
    } finally {
      close(conn);
    }
  });
});

describe.skipIf(!canStartCluster())('upstream login with passwords and TLS (throwaway cluster)', () => {
  let cluster: TempCluster;
  const md5User = `warden_agent_md5_${rand()}`;
  const scramUser = `warden_agent_scram_${rand()}`;
  const md5Pass = `md5-Secret-${rand()}`;
  const scramPass = `scram-Secret-${rand()}`;
  let md5Target: UpstreamTarget;
  let scramTarget: UpstreamTarget;

  beforeAll(async () => {
    cluster = await startCluster();
    await query(
      cluster.superuser,
      `SET password_encryption = 'md5';
       CREATE ROLE ${md5User} LOGIN PASSWORD '${md5Pass}';
       SET password_encryption = 'scram-sha-256';
       CREATE ROLE ${scramUser} LOGIN PASSWORD '${scramPass}';`,
    );
    const rows = await query<{ rolname: string; kind: string }>(
      cluster.superuser,
      `SELECT rolname, left(rolpassword, 6) AS kind FROM pg_authid WHERE rolname IN ($1, $2)`,
      [md5User, scramUser],
    );
    const kinds = Object.fromEntries(rows.map((r) => [r.rolname, r.kind]));
    expect(kinds[md5User]).toMatch(/^md5/);
    expect(kinds[scramUser]).toBe('SCRAM-');
    md5Target = { host: cluster.host, port: cluster.port, database: 'postgres', user: md5User, password: md5Pass, sslmode: 'disable' };
    scramTarget = { ...md5Target, user: scramUser, password: scramPass };
  }, 120_000);

  afterAll(() => cluster?.stop());

  async function whoami(target: UpstreamTarget): Promise<Array<string | null>> {
    const conn = await connectUpstream(target, { labels });
    try {
      const r = await simpleQuery(conn, 'SELECT current_user::text, (SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid())');
      return r.rows[0]!;
    } finally {
      close(conn);
    }
  }

  it('md5: good password', async () => {
    expect(await whoami(md5Target)).toEqual([md5User, 'false']);
  });

  it('SCRAM-SHA-256: good password', async () => {
    expect(await whoami(scramTarget)).toEqual([scramUser, 'false']);
  });

  it('wrong passwords fail with a message that names the role but not the password', async () => {
    for (const t of [
      { ...md5Target, password: `wrong-${md5Pass}` },
      { ...scramTarget, password: `wrong-${scramPass}` },
    ]) {
      const err = await expectFailure(t);
      expect(err.sqlstate).toBe('08006');
      expect(err.message).toBe(
        `agent local could not log in to resource shop upstream as role ${t.user}: password authentication failed for user "${t.user}"`,
      );
      expect(err.message).not.toContain(t.password!);
      expect(err.message).not.toContain('Secret');
    }
  });

  it('a server asking for a password when none is configured', async () => {
    const err = await expectFailure({ ...scramTarget, password: undefined });
    expect(err.message).toMatch(/asked for a password \(SCRAM-SHA-256\) but none is configured/);
  });

  it('sslmode require encrypts without checking the certificate', async () => {
    expect(await whoami({ ...scramTarget, sslmode: 'require' })).toEqual([scramUser, 'true']);
    expect(await whoami({ ...md5Target, sslmode: 'require' })).toEqual([md5User, 'true']);
  });

  it('sslmode verify-full checks the chain and the host name', async () => {
    expect(await whoami({ ...scramTarget, sslmode: 'verify-full', sslrootcert: cluster.caFile })).toEqual([scramUser, 'true']);
    expect(await whoami({ ...scramTarget, host: 'localhost', sslmode: 'verify-full', sslrootcert: cluster.caFile })).toEqual([
      scramUser,
      'true',
    ]);

    const wrongCa = await expectFailure({ ...scramTarget, sslmode: 'verify-full', sslrootcert: cluster.otherCaFile });
    expect(wrongCa.message).toMatch(
      /^agent local could not connect to resource shop upstream 127.0.0.1:\d+: TLS certificate verification failed \(sslmode=verify-full, sslrootcert given\)/,
    );
    const systemCa = await expectFailure({ ...scramTarget, sslmode: 'verify-full' });
    expect(systemCa.message).toMatch(/TLS certificate verification failed/);
    // require + sslrootcert verifies the chain (like libpq's verify-ca)
    const requireWrongCa = await expectFailure({ ...scramTarget, sslmode: 'require', sslrootcert: cluster.otherCaFile });
    expect(requireWrongCa.message).toMatch(/TLS certificate verification failed/);
  });

  it('cancel requests travel over TLS when the resource uses it', async () => {
    const target: UpstreamTarget = { ...scramTarget, sslmode: 'verify-full', sslrootcert: cluster.caFile };
    const conn = await connectUpstream(target, { labels });
    try {
      const running = simpleQuery(conn, 'SELECT pg_sleep(30)');
      await new Promise((r) => setTimeout(r, 300));
      await sendCancelRequest(target, conn.backendKey!);
      expect((await running).error?.C).toBe('57014');
    } finally {
      close(conn);
    }
  });
});
