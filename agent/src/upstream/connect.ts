// Opening an upstream Postgres session: TCP, TLS per sslmode, the startup
// message and authentication (trust, cleartext, md5, SCRAM-SHA-256). The
// result is the socket, positioned just after AuthenticationOk, plus the bytes
// the server sent from there up to and including ReadyForQuery (forwarded to
// the client) and the backend key used for cancellation. When the session has
// a native role, the login ends with SET ROLE (see assumeRole).
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import {
  AUTHENTICATION,
  AuthRequest,
  BACKEND_KEY_DATA,
  type BackendKey,
  COMMAND_COMPLETE,
  ERROR_RESPONSE,
  type Message,
  MessageReader,
  NEGOTIATE_PROTOCOL_VERSION,
  NOTICE_RESPONSE,
  type NoticeFields,
  PARAMETER_STATUS,
  parameterStatus,
  parseBackendKeyData,
  parseCStringList,
  parseErrorResponse,
  parseParameterStatus,
  passwordMessage,
  PgError,
  ProtocolError,
  query,
  READY_FOR_QUERY,
  saslInitialResponse,
  saslResponse,
  SqlState,
  sslRequest,
  startupMessage,
} from '@warden/proto/pgwire';
import type { SslMode } from '../config.js';
import { md5Password, SCRAM_MECHANISM, ScramClient, ScramError } from './scram.js';

export type { BackendKey };

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
export class UpstreamError extends PgError {
  constructor(
    message: string,
    sqlstate: string,
    readonly phase: UpstreamPhase,
    /** The bare reason, without the agent/resource preamble. */
    readonly reason: string,
  ) {
    super(sqlstate, message);
    this.name = 'UpstreamError';
  }
}

export const CONNECTION_FAILURE: string = SqlState.connectionFailure;
/** Upstream SQLSTATEs that mean the same to the client as they do to us. */
const PASS_THROUGH_SQLSTATES = new Set<string>([SqlState.invalidCatalogName, SqlState.tooManyConnections, SqlState.cannotConnectNow]);
/** No login message comes near this; a larger length means the stream is not Postgres. */
const MAX_LOGIN_MESSAGE = 64 * 1024 * 1024;

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

  async next(): Promise<Message> {
    for (;;) {
      let m: Message | null;
      try {
        m = this.reader.nextTyped(MAX_LOGIN_MESSAGE);
      } catch (err) {
        throw err instanceof ProtocolError ? new ProtocolError(`${err.message} from the server`) : err;
      }
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
    return this.reader.drain();
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

class LoginFailure extends PgError {
  constructor(
    readonly reason: string,
    sqlstate: string = CONNECTION_FAILURE,
    readonly phase: UpstreamPhase = 'login',
  ) {
    super(sqlstate, reason);
  }
}

/** An ErrorResponse from the server as one line: its message, then its detail in parentheses. */
function serverReason(f: NoticeFields): string {
  return [f.message ?? 'the server reported an error', f.detail ? `(${f.detail})` : ''].filter(Boolean).join(' ');
}

/** A message type byte as the letter the protocol documentation names it by. */
const letter = (type: number) => String.fromCharCode(type);

/** SET ROLE's operand: a quoted identifier, so the name is taken exactly as configured. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** What to tell the operator when SET ROLE fails, by SQLSTATE. */
function roleAdvice(sqlstate: string, role: string, user: string): string {
  const q = quoteIdent(role);
  if (sqlstate === SqlState.insufficientPrivilege) {
    return `grant the role to the agent's login user (GRANT ${q} TO ${quoteIdent(user)}; on PostgreSQL 16 and later add WITH SET TRUE), or fix the mapping in the agent config`;
  }
  if (sqlstate === SqlState.invalidParameterValue || sqlstate === SqlState.undefinedObject) {
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
  socket.write(query(`SET ROLE ${quoteIdent(role.name)}`));
  const changed: Array<[string, string]> = [];
  let completed = false;
  for (;;) {
    const msg = await reader.next();
    switch (msg.type) {
      case COMMAND_COMPLETE:
        completed = true;
        break;
      case PARAMETER_STATUS: {
        const p = parseParameterStatus(msg.body);
        if (p) changed.push([p.name, p.value]);
        break;
      }
      case NOTICE_RESPONSE:
        break; // a notice about our own SET is not the client's business
      case ERROR_RESPONSE: {
        const f = parseErrorResponse(msg.body);
        const sqlstate = f.code ?? CONNECTION_FAILURE;
        throw new LoginFailure(`${serverReason(f)}; ${roleAdvice(sqlstate, role.name, user)}`, sqlstate, 'role');
      }
      case READY_FOR_QUERY:
        if (!completed) throw new LoginFailure('SET ROLE ended without completing', CONNECTION_FAILURE, 'role');
        if (msg.body[0] !== 0x49) throw new LoginFailure('SET ROLE left a transaction open', CONNECTION_FAILURE, 'role');
        mergeParameterStatus(initial, changed);
        return;
      default:
        throw new LoginFailure(`unexpected message '${letter(msg.type)}' from the server in answer to SET ROLE`, CONNECTION_FAILURE, 'role');
    }
  }
}

/** Replaces the login's ParameterStatus of each changed name in place; a new name goes before BackendKeyData. */
function mergeParameterStatus(initial: Buffer[], changed: ReadonlyArray<readonly [string, string]>): void {
  for (const [name, value] of changed) {
    const msg = parameterStatus(name, value);
    const at = initial.findIndex((m) => m[0] === PARAMETER_STATUS && parseParameterStatus(m.subarray(5))?.name === name);
    if (at >= 0) {
      initial[at] = msg;
      continue;
    }
    let before = initial.findIndex((m) => m[0] === BACKEND_KEY_DATA || m[0] === READY_FOR_QUERY);
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
      if (msg.type === ERROR_RESPONSE) {
        const f = parseErrorResponse(msg.body);
        const code = f.code ?? CONNECTION_FAILURE;
        throw new LoginFailure(serverReason(f), PASS_THROUGH_SQLSTATES.has(code) ? code : CONNECTION_FAILURE);
      }
      if (authenticated) {
        initial.push(msg.raw);
        if (msg.type === BACKEND_KEY_DATA) {
          backendKey = parseBackendKeyData(msg.body) ?? backendKey;
        } else if (msg.type === PARAMETER_STATUS) {
          const p = parseParameterStatus(msg.body);
          if (p) serverParameters[p.name] = p.value;
        } else if (msg.type === READY_FOR_QUERY) {
          if (role) {
            await assumeRole(reader, socket, role, target.user, initial);
            // The values the client will see, after the merge.
            for (const m of initial) {
              if (m[0] !== PARAMETER_STATUS) continue;
              const p = parseParameterStatus(m.subarray(5));
              if (p) serverParameters[p.name] = p.value;
            }
          }
          const rest = reader.detach();
          if (rest.length > 0) initial.push(rest);
          return { socket, initial: Buffer.concat(initial), backendKey, serverParameters };
        }
        continue;
      }
      if (msg.type === NOTICE_RESPONSE || msg.type === NEGOTIATE_PROTOCOL_VERSION) continue;
      if (msg.type !== AUTHENTICATION || msg.body.length < 4) {
        throw new LoginFailure(`unexpected message '${letter(msg.type)}' from the server during authentication`);
      }
      const code = msg.body.readInt32BE(0);
      switch (code) {
        case AuthRequest.ok:
          if (scram && !scram.verified) {
            throw new LoginFailure('the server skipped the SCRAM server signature: it may not be the real server');
          }
          authenticated = true;
          break;
        case AuthRequest.cleartextPassword:
          socket.write(passwordMessage(needPassword('cleartext')));
          break;
        case AuthRequest.md5Password: {
          if (msg.body.length < 8) throw new LoginFailure('malformed md5 authentication request');
          const salt = msg.body.subarray(4, 8);
          socket.write(passwordMessage(md5Password(target.user, needPassword('md5'), salt)));
          break;
        }
        case AuthRequest.sasl: {
          const mechanisms = parseCStringList(msg.body.subarray(4));
          if (!mechanisms.includes(SCRAM_MECHANISM)) {
            throw new LoginFailure(`the server offers no supported SASL mechanism (offered: ${mechanisms.join(', ')})`);
          }
          scram = new ScramClient(needPassword('SCRAM-SHA-256'));
          socket.write(saslInitialResponse(SCRAM_MECHANISM, scram.clientFirst()));
          break;
        }
        case AuthRequest.saslContinue:
          if (!scram) throw new LoginFailure('unexpected SASLContinue from the server');
          socket.write(saslResponse(await scram.clientFinal(msg.body.subarray(4))));
          break;
        case AuthRequest.saslFinal:
          if (!scram) throw new LoginFailure('unexpected SASLFinal from the server');
          scram.verifyServerFinal(msg.body.subarray(4));
          break;
        case AuthRequest.kerberosV5:
        case AuthRequest.gss:
        case AuthRequest.sspi:
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
