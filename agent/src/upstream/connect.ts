// Opening an upstream Postgres session: TCP, TLS per sslmode, the startup
// message and authentication (trust, cleartext, md5, SCRAM-SHA-256). The
// result is the socket, positioned just after AuthenticationOk, plus the bytes
// the server sent from there up to and including ReadyForQuery (forwarded to
// the client) and the backend key used for cancellation. When the session has
// a native role, the login ends with SET ROLE (see assumeRole).
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import type { SslMode } from '../config.js';
import { md5Password, SCRAM_MECHANISM, ScramClient, ScramError } from './scram.js';
import {
  type BackendMessage,
  MessageReader,
  parseCStringList,
  parseFields,
  passwordMessage,
  saslInitialResponse,
  saslResponse,
  sslRequest,
  startupMessage,
} from './wire.js';

/** Where and how to reach the upstream; the password is resolved by the caller. */
export interface UpstreamTarget {
  host: string;
  port: number;
  database: string;
  user: string;
  password?: string;
  sslmode: SslMode;
  /** PEM file with the CA(s) trusted for the server certificate. */
  sslrootcert?: string;
}

/** Names used in error messages. */
export interface UpstreamLabels {
  agent: string;
  resource: string;
}

export interface ConnectOptions {
  labels?: UpstreamLabels;
  /** Startup parameters from the client (application_name, DateStyle, ...). */
  parameters?: Record<string, string>;
  readOnly?: boolean;
  /** Upstream role to SET ROLE to right after the login; the session fails without it. */
  role?: { name: string; source: string };
  /** Whole connect + login budget. Default 15 s. */
  timeoutMs?: number;
}

export interface BackendKey {
  processId: number;
  secretKey: Buffer;
}

export interface UpstreamConnection {
  /** Paused, with no listeners of ours left; the caller resumes it. */
  socket: net.Socket;
  /** Bytes after AuthenticationOk: ParameterStatus…, BackendKeyData, ReadyForQuery (and anything after). */
  initial: Buffer;
  backendKey?: BackendKey;
  /** ParameterStatus values reported during login. */
  serverParameters: Record<string, string>;
}

export type UpstreamPhase = 'connect' | 'login' | 'role';

/** A failure a person can act on; `message` is safe to show the client (never holds the password). */
export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly sqlstate: string,
    readonly phase: UpstreamPhase,
    /** The bare reason, without the agent/resource preamble. */
    readonly reason: string,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

export const CONNECTION_FAILURE = '08006';
/** Upstream SQLSTATEs that mean the same to the client as they do to us. */
const PASS_THROUGH_SQLSTATES = new Set(['3D000', '53300', '57P03']);

const DEFAULT_TIMEOUT_MS = 15_000;

/** Removes the password from a text that might echo it (defence in depth). */
export function redact(text: string, secret: string | undefined): string {
  if (!secret || secret.length < 3) return text;
  return text.split(secret).join('[redacted]');
}

/** Startup key/values: user and database from the config, the client's other parameters, read-only last. */
export function startupParameters(
  target: Pick<UpstreamTarget, 'user' | 'database'>,
  parameters: Record<string, string> = {},
  readOnly = false,
): Array<[string, string]> {
  const out: Array<[string, string]> = [
    ['user', target.user],
    ['database', target.database],
  ];
  for (const [k, v] of Object.entries(parameters)) {
    const lk = k.toLowerCase();
    if (lk === 'user' || lk === 'database' || lk === 'replication') continue;
    // Protocol extensions were negotiated between the client and the gateway, not here.
    if (lk.startsWith('_pq_.')) continue;
    if (readOnly && lk === 'default_transaction_read_only') continue;
    if (k === '' || k.includes('\0') || typeof v !== 'string' || v.includes('\0')) continue;
    out.push([k, v]);
  }
  // Startup GUCs are applied after `options` and in order, so this one wins.
  if (readOnly) out.push(['default_transaction_read_only', 'on']);
  return out;
}

function describeSocketError(err: unknown, target: UpstreamTarget): string {
  const e = err as NodeJS.ErrnoException;
  switch (e?.code) {
    case 'ECONNREFUSED':
      return 'connection refused (is Postgres running and listening there?)';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `host name ${target.host} could not be resolved`;
    case 'ETIMEDOUT':
      return 'connection timed out';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'host unreachable';
    case 'ECONNRESET':
      return 'connection reset by the server';
    case 'EPIPE':
      return 'connection closed by the server';
    default:
      break;
  }
  if (e?.code && /CERT|SELF_SIGNED|UNABLE_TO|ALTNAME|VERIFY/.test(e.code)) {
    return `TLS certificate verification failed (sslmode=${target.sslmode}${target.sslrootcert ? ', sslrootcert given' : ''}): ${e.message}`;
  }
  if (e?.code?.startsWith('ERR_SSL') || /ssl|tls/i.test(e?.message ?? '')) {
    return `TLS handshake failed (sslmode=${target.sslmode}): ${e.message}`;
  }
  return e?.message ? e.message : String(err);
}

/** Turns socket events into awaitable messages during the login. */
class LoginReader {
  private readonly reader = new MessageReader();
  private wake: (() => void) | undefined;
  private failure: unknown;
  private closed = false;
  private readonly onData = (chunk: Buffer): void => {
    this.reader.push(chunk);
    this.wake?.();
  };
  private readonly onError = (err: Error): void => {
    this.failure ??= err;
    this.wake?.();
  };
  private readonly onClose = (): void => {
    this.closed = true;
    this.wake?.();
  };

  constructor(private readonly socket: net.Socket) {
    socket.on('data', this.onData);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  async next(): Promise<BackendMessage> {
    for (;;) {
      const m = this.reader.next();
      if (m) return m;
      if (this.failure) throw this.failure;
      if (this.closed) throw Object.assign(new Error('the server closed the connection during login'), { code: 'EPIPE' });
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
  }

  /** Stops listening and pauses the socket; returns bytes received but not consumed. */
  detach(): Buffer {
    this.socket.pause();
    this.socket.off('data', this.onData);
    this.socket.off('error', this.onError);
    this.socket.off('close', this.onClose);
    return this.reader.rest();
  }
}

function tcpConnect(target: UpstreamTarget): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: target.host, port: target.port });
    const onError = (err: Error): void => {
      socket.destroy();
      reject(err);
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 30_000);
      resolve(socket);
    });
  });
}

class TlsRefused extends Error {}

/** SSLRequest, then the TLS handshake per sslmode. */
async function startTls(raw: net.Socket, target: UpstreamTarget): Promise<tls.TLSSocket> {
  const answer = await new Promise<Buffer>((resolve, reject) => {
    const cleanup = (): void => {
      raw.off('data', onData);
      raw.off('error', onError);
      raw.off('close', onClose);
    };
    const onData = (b: Buffer): void => {
      cleanup();
      resolve(b);
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onClose = (): void => {
      cleanup();
      reject(Object.assign(new Error('the server closed the connection after SSLRequest'), { code: 'EPIPE' }));
    };
    raw.on('data', onData);
    raw.on('error', onError);
    raw.on('close', onClose);
    raw.write(sslRequest());
  });
  const first = String.fromCharCode(answer[0]!);
  if (first === 'N') throw new TlsRefused(`the server does not accept TLS connections (sslmode=${target.sslmode})`);
  if (first !== 'S') throw new TlsRefused('the server answered the TLS request with an unexpected reply');
  // Anything after the 'S' arrived unencrypted and could be injected: refuse it.
  if (answer.length !== 1) throw new TlsRefused('the server sent unencrypted data after accepting TLS');

  const ca = target.sslrootcert ? await readFile(target.sslrootcert) : undefined;
  const verify = target.sslmode === 'verify-full' || ca !== undefined;
  const options: tls.ConnectionOptions = {
    socket: raw,
    host: target.host,
    rejectUnauthorized: verify,
    minVersion: 'TLSv1.2',
  };
  if (!net.isIP(target.host)) options.servername = target.host;
  if (ca) options.ca = ca;
  // require + sslrootcert: check the chain but not the name (libpq's verify-ca behaviour).
  if (target.sslmode === 'require') options.checkServerIdentity = () => undefined;

  return new Promise((resolve, reject) => {
    const sock = tls.connect(options);
    const onError = (err: Error): void => {
      sock.destroy();
      reject(err);
    };
    sock.once('error', onError);
    sock.once('secureConnect', () => {
      sock.off('error', onError);
      // Errors surface on the TLS socket; never let the wrapped one crash the process.
      raw.on('error', () => undefined);
      resolve(sock);
    });
  });
}

/** A connected transport (TCP, then TLS when sslmode asks for it). Used for logins and CancelRequests. */
export async function openTransport(target: UpstreamTarget): Promise<net.Socket> {
  const raw = await tcpConnect(target);
  if (target.sslmode === 'disable') return raw;
  try {
    return await startTls(raw, target);
  } catch (err) {
    raw.destroy();
    throw err;
  }
}

class LoginFailure extends Error {
  constructor(
    readonly reason: string,
    readonly sqlstate: string = CONNECTION_FAILURE,
    readonly phase: UpstreamPhase = 'login',
  ) {
    super(reason);
  }
}

/** SET ROLE's operand: a quoted identifier, so the name is taken exactly as configured. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A simple Query message. */
function queryMessage(sql: string): Buffer {
  const body = Buffer.from(`${sql}\0`, 'utf8');
  const out = Buffer.alloc(5 + body.length);
  out[0] = 0x51; // 'Q'
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function parameterStatus(name: string, value: string): Buffer {
  const body = Buffer.from(`${name}\0${value}\0`, 'utf8');
  const out = Buffer.alloc(5 + body.length);
  out[0] = 0x53; // 'S'
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

/** What to tell the operator when SET ROLE fails, by SQLSTATE. */
function roleAdvice(sqlstate: string, role: string, user: string): string {
  const q = quoteIdent(role);
  if (sqlstate === '42501') {
    return `grant the role to the agent's login user (GRANT ${q} TO ${quoteIdent(user)}; on PostgreSQL 16 and later add WITH SET TRUE), or fix the mapping in the agent config`;
  }
  if (sqlstate === '22023' || sqlstate === '42704') {
    return `create the role (warden roles sql prints a script for it) and grant it to ${quoteIdent(user)}, or fix the mapping in the agent config`;
  }
  return 'check the role and the mapping in the agent config';
}

/**
 * Right after the login's ReadyForQuery: SET ROLE, and its answer consumed
 * here so that nothing of it reaches the client. ParameterStatus messages it
 * causes (is_superuser, when the login user is a superuser) are folded into
 * the login's own: the client sees one login whose reported values match the
 * session it gets, as if it had logged in as the role. Any error fails the
 * session: it is never relayed without its role.
 */
async function assumeRole(
  reader: LoginReader,
  socket: net.Socket,
  role: { name: string; source: string },
  user: string,
  initial: Buffer[],
): Promise<void> {
  socket.write(queryMessage(`SET ROLE ${quoteIdent(role.name)}`));
  const changed: Array<[string, string]> = [];
  let completed = false;
  for (;;) {
    const msg = await reader.next();
    switch (msg.type) {
      case 'C':
        completed = true;
        break;
      case 'S': {
        const [k, v] = parseCStringList(msg.body);
        if (k !== undefined) changed.push([k, v ?? '']);
        break;
      }
      case 'N':
        break; // a notice about our own SET is not the client's business
      case 'E': {
        const f = parseFields(msg.body);
        const sqlstate = f.C ?? CONNECTION_FAILURE;
        const what = [f.M ?? 'the server reported an error', f.D ? `(${f.D})` : ''].filter(Boolean).join(' ');
        throw new LoginFailure(`${what}; ${roleAdvice(sqlstate, role.name, user)}`, sqlstate, 'role');
      }
      case 'Z':
        if (!completed) throw new LoginFailure('SET ROLE ended without completing', CONNECTION_FAILURE, 'role');
        if (msg.body[0] !== 0x49) throw new LoginFailure('SET ROLE left a transaction open', CONNECTION_FAILURE, 'role');
        mergeParameterStatus(initial, changed);
        return;
      default:
        throw new LoginFailure(`unexpected message '${msg.type}' from the server in answer to SET ROLE`, CONNECTION_FAILURE, 'role');
    }
  }
}

/** Replaces the login's ParameterStatus of each changed name in place; a new name goes before BackendKeyData. */
function mergeParameterStatus(initial: Buffer[], changed: ReadonlyArray<readonly [string, string]>): void {
  for (const [name, value] of changed) {
    const msg = parameterStatus(name, value);
    const at = initial.findIndex((m) => m[0] === 0x53 && parseCStringList(m.subarray(5))[0] === name);
    if (at >= 0) {
      initial[at] = msg;
      continue;
    }
    let before = initial.findIndex((m) => m[0] === 0x4b || m[0] === 0x5a); // 'K' or 'Z'
    if (before < 0) before = initial.length;
    initial.splice(before, 0, msg);
  }
}

async function login(
  socket: net.Socket,
  target: UpstreamTarget,
  params: Array<[string, string]>,
  role?: { name: string; source: string },
): Promise<UpstreamConnection> {
  const reader = new LoginReader(socket);
  let scram: ScramClient | undefined;
  let authenticated = false;
  const initial: Buffer[] = [];
  const serverParameters: Record<string, string> = {};
  let backendKey: BackendKey | undefined;
  const needPassword = (method: string): string => {
    if (target.password === undefined || target.password === '') {
      throw new LoginFailure(
        `the server asked for a password (${method}) but none is configured (set "password" or "passwordFile")`,
      );
    }
    return target.password;
  };

  try {
    socket.write(startupMessage(params));
    for (;;) {
      const msg = await reader.next();
      if (msg.type === 'E') {
        const f = parseFields(msg.body);
        const code = f.C ?? CONNECTION_FAILURE;
        const sqlstate = PASS_THROUGH_SQLSTATES.has(code) ? code : CONNECTION_FAILURE;
        const reason = [f.M ?? 'the server reported an error', f.D ? `(${f.D})` : ''].filter(Boolean).join(' ');
        throw new LoginFailure(reason, sqlstate);
      }
      if (authenticated) {
        initial.push(msg.raw);
        if (msg.type === 'K' && msg.body.length >= 8) {
          backendKey = { processId: msg.body.readInt32BE(0), secretKey: Buffer.from(msg.body.subarray(4)) };
        } else if (msg.type === 'S') {
          const [k, v] = parseCStringList(msg.body);
          if (k !== undefined) serverParameters[k] = v ?? '';
        } else if (msg.type === 'Z') {
          if (role) {
            await assumeRole(reader, socket, role, target.user, initial);
            // The values the client will see, after the merge.
            for (const m of initial) {
              if (m[0] !== 0x53) continue;
              const [k, v] = parseCStringList(m.subarray(5));
              if (k !== undefined) serverParameters[k] = v ?? '';
            }
          }
          const rest = reader.detach();
          if (rest.length > 0) initial.push(rest);
          return { socket, initial: Buffer.concat(initial), backendKey, serverParameters };
        }
        continue;
      }
      if (msg.type === 'N' || msg.type === 'v') continue; // notices, NegotiateProtocolVersion
      if (msg.type !== 'R' || msg.body.length < 4) {
        throw new LoginFailure(`unexpected message '${msg.type}' from the server during authentication`);
      }
      const code = msg.body.readInt32BE(0);
      switch (code) {
        case 0: // AuthenticationOk
          if (scram && !scram.verified) {
            throw new LoginFailure('the server skipped the SCRAM server signature: it may not be the real server');
          }
          authenticated = true;
          break;
        case 3: // cleartext
          socket.write(passwordMessage(needPassword('cleartext')));
          break;
        case 5: {
          if (msg.body.length < 8) throw new LoginFailure('malformed md5 authentication request');
          const salt = msg.body.subarray(4, 8);
          socket.write(passwordMessage(md5Password(target.user, needPassword('md5'), salt)));
          break;
        }
        case 10: {
          const mechanisms = parseCStringList(msg.body.subarray(4));
          if (!mechanisms.includes(SCRAM_MECHANISM)) {
            throw new LoginFailure(`the server offers no supported SASL mechanism (offered: ${mechanisms.join(', ')})`);
          }
          scram = new ScramClient(needPassword('SCRAM-SHA-256'));
          socket.write(saslInitialResponse(SCRAM_MECHANISM, scram.clientFirst()));
          break;
        }
        case 11:
          if (!scram) throw new LoginFailure('unexpected SASLContinue from the server');
          socket.write(saslResponse(await scram.clientFinal(msg.body.subarray(4))));
          break;
        case 12:
          if (!scram) throw new LoginFailure('unexpected SASLFinal from the server');
          scram.verifyServerFinal(msg.body.subarray(4));
          break;
        case 2:
        case 7:
        case 9:
          throw new LoginFailure('the server asked for Kerberos/GSSAPI/SSPI authentication, which the agent does not support');
        default:
          throw new LoginFailure(`the server asked for an unsupported authentication method (code ${code})`);
      }
    }
  } catch (err) {
    reader.detach();
    if (err instanceof ScramError) throw new LoginFailure(err.message);
    throw err;
  }
}

/**
 * Opens and authenticates an upstream session. Rejects with an UpstreamError
 * whose message names the agent, resource and role and never the password.
 */
export async function connectUpstream(target: UpstreamTarget, options: ConnectOptions = {}): Promise<UpstreamConnection> {
  const labels = options.labels ?? { agent: 'agent', resource: `${target.host}:${target.port}` };
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const params = startupParameters(target, options.parameters, options.readOnly);
  let socket: net.Socket | undefined;
  let phase: UpstreamPhase = 'connect';
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;

  const fail = (phase: UpstreamPhase, reason: string, sqlstate = CONNECTION_FAILURE): UpstreamError => {
    const safe = redact(reason, target.password);
    const head =
      phase === 'connect'
        ? `agent ${labels.agent} could not connect to resource ${labels.resource} upstream ${target.host}:${target.port}`
        : phase === 'login'
          ? `agent ${labels.agent} could not log in to resource ${labels.resource} upstream as role ${target.user}`
          : `agent ${labels.agent} could not put the session on resource ${labels.resource} in role ${quoteIdent(options.role?.name ?? '')} (mapped from ${options.role?.source ?? 'the config'})`;
    return new UpstreamError(`${head}: ${safe}`, sqlstate, phase, safe);
  };

  const attempt = (async () => {
    const s = await openTransport(target);
    if (timedOut) {
      s.destroy();
      throw new Error('timed out');
    }
    socket = s;
    phase = 'login';
    return login(socket, target, params, options.role);
  })();
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(new Error('timeout'));
    }, timeoutMs);
  });
  try {
    return await Promise.race([attempt, timeout]);
  } catch (err) {
    socket?.destroy();
    // Whatever the attempt does after a timeout must not surface as an unhandled rejection.
    attempt.then(
      (c) => c.socket.destroy(),
      () => undefined,
    );
    if (timedOut) throw fail(phase, `timed out after ${Math.round(timeoutMs / 100) / 10} s`);
    if (err instanceof LoginFailure) throw fail(err.phase, err.reason, err.sqlstate);
    if (err instanceof TlsRefused) throw fail('connect', err.message);
    throw fail(phase, describeSocketError(err, target));
  } finally {
    if (timer) clearTimeout(timer);
  }
}
