// The web console's HTTP(S) server, on a port of its own: the built pages
// (console/dist), sign-in (/auth/*, and /dev-issuer/* in local mode) and the
// JSON API (/api/*). People sign in with OIDC; the admin token opens nothing
// here.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServerTls } from '@warden/proto';
import type { JWK } from 'jose';
import type { Logger } from 'pino';
import { DEV_ISSUER_NAME } from '../local/dev-issuer.js';
import { CONSOLE_ROLES, consoleSettingsOf, roleOf, type ConsoleRole, type ConsoleSettings } from '../policy/console.js';
import { ApiError, apiErrorOf, routes, type ApiDeps } from './api.js';
import { DevSignIn } from './dev-sign-in.js';
import { PendingLogins, SignInError, authorizationUrl, discoveredProvider, finishSignIn, type Provider } from './oidc.js';
import { SESSION_COOKIE, SignIns, cookie, readCookies, type SignIn } from './sessions.js';

const LOGIN_COOKIE = 'warden_console_login';
const LOOPBACK_HOST = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/i;
const MAX_BODY = 256 * 1024;

export interface ConsoleOptions extends ApiDeps {
  /** host:port; port 0 picks a free one. */
  listen: string;
  tls?: ServerTls;
  /** Local mode: the development issuer's key, for its sign-in page. */
  devIssuerKey?: JWK;
  /** Where the built pages are; default console/dist of this repository. */
  assetsDir?: string;
  /** The URL people reach the console at, when a proxy is in front; default from the request. */
  publicUrl?: string;
  /** Environment to read issuers' client secrets from (client_secret_env). */
  env?: NodeJS.ProcessEnv;
  log: Logger;
}

export interface ConsoleServer {
  /** http(s)://host:port */
  readonly url: string;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
};

export const defaultAssetsDir = () => fileURLToPath(new URL('../../../console/dist/', import.meta.url));

function sendJson(res: ServerResponse, code: number, body: unknown, headers: Record<string, string | string[]> = {}): void {
  res.writeHead(code, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...SECURITY_HEADERS, ...headers }).end(JSON.stringify(body));
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((ok, fail) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        fail(new ApiError(413, `the request body is larger than ${MAX_BODY / 1024} KiB`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => ok(Buffer.concat(chunks).toString('utf8')));
    req.on('error', fail);
  });
}

export async function startConsole(opts: ConsoleOptions): Promise<ConsoleServer> {
  const { log } = opts;
  const m = /^(.*):(\d+)$/.exec(opts.listen);
  if (!m || !m[1]) throw new Error(`console listen address '${opts.listen}' must be host:port`);
  const host = m[1].replace(/^\[(.*)\]$/, '$1');
  const assets = resolve(opts.assetsDir ?? defaultAssetsDir());
  if (!existsSync(join(assets, 'index.html'))) {
    throw new Error(`the console's pages are not built: ${join(assets, 'index.html')} is missing (run \`npm run build\`, or \`npm install\` at the repository's root)`);
  }
  const scheme = opts.tls ? 'https' : 'http';
  // Behind a proxy that ends TLS, the public address says whether browsers use https.
  const secure = Boolean(opts.tls) || /^https:/i.test(opts.publicUrl ?? '');
  const signIns = new SignIns();
  const pending = new PendingLogins();
  const api = routes(opts);
  const baseOf = (req: IncomingMessage) => opts.publicUrl?.replace(/\/$/, '') ?? `${scheme}://${req.headers.host ?? opts.listen}`;
  const callbackOf = (req: IncomingMessage) => `${baseOf(req)}/auth/callback`;
  const dev = opts.devIssuerKey ? new DevSignIn(opts.devIssuerKey, callbackOf) : undefined;

  // The console's settings come from the policy file in force, read again when it changes.
  let settings: { version: number; value: ConsoleSettings } | undefined;
  const currentSettings = async (): Promise<ConsoleSettings> => {
    const version = (await opts.hub.latest()).policyVersion;
    if (settings?.version !== version) settings = { version, value: consoleSettingsOf(await opts.repo.policyYaml(version)) };
    return settings.value;
  };
  const discovered = new Map<string, Provider>();
  const providers = async (req: IncomingMessage): Promise<Provider[]> => {
    const out: Provider[] = dev ? [dev.provider(baseOf(req))] : [];
    for (const s of (await currentSettings()).signIn) {
      const key = `${s.name} ${s.issuerUrl} ${s.clientId} ${s.clientSecretEnv}`;
      let p = discovered.get(key);
      if (!p) discovered.set(key, (p = discoveredProvider({ ...s, clientSecret: s.clientSecretEnv ? (opts.env ?? process.env)[s.clientSecretEnv] : undefined })));
      out.push(p);
    }
    return out;
  };
  const roleFor = async (s: SignIn): Promise<ConsoleRole | undefined> => roleOf((await currentSettings()).roles, s.person.groups);

  const signInPage = (res: ServerResponse, status: number, message: string) => {
    res.writeHead(status, { location: `/?signin=${encodeURIComponent(message)}`, 'cache-control': 'no-store' }).end();
  };

  async function auth(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    if (url.pathname === '/auth/login' && req.method === 'GET') {
      const name = url.searchParams.get('issuer') ?? '';
      const provider = (await providers(req)).find((p) => p.name === name);
      if (!provider) return signInPage(res, 303, `no issuer '${name}' to sign in with`);
      const p = pending.start(provider, callbackOf(req), url.searchParams.get('return') ?? '/');
      res
        .writeHead(303, {
          location: await authorizationUrl(p),
          'set-cookie': cookie(LOGIN_COOKIE, p.state, { secure, maxAgeSec: 600, path: '/auth' }),
          'cache-control': 'no-store',
        })
        .end();
      return;
    }
    if (url.pathname === '/auth/callback' && req.method === 'GET') {
      const state = url.searchParams.get('state') ?? '';
      // The state must be the one this browser started with: a login link from elsewhere signs nobody in.
      const p = state && readCookies(req).get(LOGIN_COOKIE) === state ? pending.take(state) : undefined;
      if (!p) return signInPage(res, 303, 'the sign-in expired or was started in another browser; sign in again');
      const error = url.searchParams.get('error');
      if (error) return signInPage(res, 303, `issuer ${p.provider.name} refused the sign-in: ${url.searchParams.get('error_description') ?? error}`);
      const person = await finishSignIn(p, url.searchParams.get('code') ?? '');
      const s = signIns.create(person);
      log.info({ person: person.name, issuer: person.issuer, groups: person.groups }, 'console sign-in');
      res
        .writeHead(303, {
          location: p.returnTo,
          'set-cookie': [cookie(SESSION_COOKIE, s.id, { secure, maxAgeSec: signIns.ttlSeconds }), cookie(LOGIN_COOKIE, '', { secure, maxAgeSec: 0, path: '/auth' })],
          'cache-control': 'no-store',
        })
        .end();
      return;
    }
    sendJson(res, 404, { error: 'no such page' });
  }

  async function apiCall(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    if (req.headers.authorization) {
      // Tokens (the admin token above all) open nothing here: people sign in.
      return sendJson(res, 401, { error: 'the console takes no bearer tokens (the admin token is not a way in): sign in in the browser', signIn: true });
    }
    if (url.pathname === '/api/auth/providers' && req.method === 'GET') {
      return sendJson(res, 200, { providers: (await providers(req)).map((p) => ({ name: p.name, local: p.name === DEV_ISSUER_NAME && Boolean(dev) })) });
    }
    const s = signIns.of(req);
    if (!s) return sendJson(res, 401, { error: 'you are not signed in (or your sign-in expired): sign in again', signIn: true });
    const write = req.method !== 'GET' && req.method !== 'HEAD';
    if (write && !signIns.csrfOk(s, req)) {
      return sendJson(res, 403, { error: 'this request lacks the CSRF token of your sign-in: reload the page and try again' });
    }
    const role = await roleFor(s);
    if (url.pathname === '/api/me' && req.method === 'GET') {
      return sendJson(res, 200, { name: s.person.name, display: s.person.display, issuer: s.person.issuer, groups: s.person.groups, role: role ?? null, csrf: s.csrf, roles: (await currentSettings()).roles });
    }
    if (url.pathname === '/api/auth/logout' && req.method === 'POST') {
      signIns.end(s);
      return sendJson(res, 200, { ok: true }, { 'set-cookie': cookie(SESSION_COOKIE, '', { secure, maxAgeSec: 0 }) });
    }
    for (const r of api) {
      const m = r.path.exec(url.pathname);
      if (!m || r.method !== req.method) continue;
      const rank = (x?: ConsoleRole) => (x ? CONSOLE_ROLES.indexOf(x) : -1);
      if (rank(role) < rank(r.role)) {
        const has = role ? `your role is ${role}` : 'you hold no console role';
        const roles = (await currentSettings()).roles[r.role];
        return sendJson(res, 403, {
          error: `this needs the console role ${r.role} (groups ${roles.join(', ') || 'none'}); ${has} (groups ${s.person.groups.join(', ') || 'none'}). Ask an admin to add you to one of those groups.`,
          needs: r.role,
        });
      }
      let body: Record<string, unknown> = {};
      if (write) {
        const text = await readBody(req);
        try {
          body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
        } catch {
          throw new ApiError(400, 'the request body is not JSON');
        }
      }
      const out = await r.handle({ signIn: s, params: m.slice(1).map(decodeURIComponent), query: url.searchParams, body });
      return sendJson(res, 200, out);
    }
    sendJson(res, 404, { error: `no API ${req.method} ${url.pathname}` });
  }

  async function devIssuer(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    if (!dev) return sendJson(res, 404, { error: 'the development issuer exists in local mode only' });
    if (url.pathname === '/dev-issuer/authorize' && req.method === 'GET') return dev.page(req, res, url.searchParams);
    if (url.pathname === '/dev-issuer/authorize' && req.method === 'POST') return dev.authorize(req, res, new URLSearchParams(await readBody(req)));
    if (url.pathname === '/dev-issuer/token' && req.method === 'POST') return dev.token(res, new URLSearchParams(await readBody(req)));
    sendJson(res, 404, { error: 'no such page' });
  }

  function staticFile(req: IncomingMessage, res: ServerResponse, url: URL): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: 'method not allowed' });
    const wanted = normalize(decodeURIComponent(url.pathname)).replace(/^(\.\.[/\\])+/, '');
    let file = join(assets, wanted);
    // Page addresses (/sessions/ID) are the app's own: they get index.html.
    if (!file.startsWith(assets) || !existsSync(file) || statSync(file).isDirectory()) file = join(assets, 'index.html');
    const immutable = wanted.startsWith('/assets/');
    res
      .writeHead(200, {
        'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
        'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
        ...SECURITY_HEADERS,
      })
      .end(req.method === 'HEAD' ? undefined : readFileSync(file));
  }

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://console.invalid');
    // Local mode lets anyone sign in as anyone: only at a loopback name, so
    // a web page whose own name resolves to 127.0.0.1 cannot use it.
    if (dev && !LOOPBACK_HOST.test(req.headers.host ?? '')) {
      return sendJson(res, 421, { error: 'the local console answers at 127.0.0.1, localhost or [::1] only' });
    }
    const route = url.pathname.startsWith('/api/')
      ? apiCall
      : url.pathname.startsWith('/auth/')
        ? auth
        : url.pathname.startsWith('/dev-issuer/')
          ? devIssuer
          : async (q: IncomingMessage, r: ServerResponse, u: URL) => staticFile(q, r, u);
    route(req, res, url).catch((err) => {
      if (err instanceof SignInError) {
        log.info({ reason: err.message }, 'console sign-in failed');
        return signInPage(res, 303, err.message);
      }
      const known = apiErrorOf(err);
      if (!known) log.error({ err, path: url.pathname }, 'console request failed');
      if (res.headersSent) return res.destroy();
      sendJson(res, known?.status ?? 500, { error: known?.message ?? 'the console failed to answer; the control plane log says why' });
    });
  };

  const server: Server = opts.tls ? createHttpsServer({ cert: readFileSync(opts.tls.cert), key: readFileSync(opts.tls.key) }, handler) : createHttpServer(handler);
  const port = await new Promise<number>((ok, fail) => {
    server.once('error', (err) => fail(new Error(`cannot listen on ${opts.listen} for the console: ${err.message}`)));
    server.listen({ host, port: Number(m[2]) }, () => ok((server.address() as { port: number }).port));
  });
  const shownHost = host.includes(':') ? `[${host}]` : host;
  const url = `${scheme}://${shownHost === '0.0.0.0' ? '127.0.0.1' : shownHost}:${port}`;
  log.info({ url }, 'console listening');
  if (!secure && !LOOPBACK_HOST.test(shownHost)) {
    log.warn({ url }, 'the console is served without TLS beyond loopback: sign-in cookies travel in clear; give the control plane --tls-cert and --tls-key, or put it behind a proxy that ends TLS and pass --console-url https://…');
  }
  return {
    url,
    close: () =>
      new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      }),
  };
}
