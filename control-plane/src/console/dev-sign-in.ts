// Local mode's development issuer, as an OpenID provider for the console: a
// page that picks a name and groups (anyone at this machine may be anyone),
// codes bound to the PKCE challenge, and a token endpoint that signs an ID
// token with the development issuer's key (local/dev-issuer.ts).
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SignJWT, createLocalJWKSet, importJWK, type JWK } from 'jose';
import { DEV_ISSUER_NAME, DEV_ISSUER_URL, publicJwks } from '../local/dev-issuer.js';
import { s256, type Provider, type TokenAnswer } from './oidc.js';

export const DEV_CLIENT_ID = 'warden-console';
const CODE_TTL_MS = 60_000;

interface Code {
  sub: string;
  groups: string[];
  redirectUri: string;
  challenge: string;
  nonce: string;
  expiresAt: number;
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const GROUP_CHOICES = ['viewers', 'approvers', 'admins'];

export class DevSignIn {
  private readonly codes = new Map<string, Code>();

  constructor(
    private readonly key: JWK,
    /** The console's own callback; the only redirect this provider makes. */
    private readonly callbackOf: (req: IncomingMessage) => string,
  ) {}

  provider(base: string): Provider {
    const keys = createLocalJWKSet(JSON.parse(publicJwks(this.key)));
    return {
      name: DEV_ISSUER_NAME,
      issuer: DEV_ISSUER_URL,
      clientId: DEV_CLIENT_ID,
      endpoints: async () => ({ authorization: `${base}/dev-issuer/authorize`, token: `${base}/dev-issuer/token` }),
      keys: async () => keys,
      // In process: the console need not reach its own public address (a proxy, a certificate it does not trust).
      redeem: (form) => this.exchange(form),
    };
  }

  /** GET /dev-issuer/authorize: the page. */
  page(req: IncomingMessage, res: ServerResponse, query: URLSearchParams, error = ''): void {
    const hidden = ['client_id', 'redirect_uri', 'state', 'nonce', 'code_challenge', 'code_challenge_method']
      .map((k) => `<input type="hidden" name="${k}" value="${esc(query.get(k) ?? '')}">`)
      .join('');
    const boxes = GROUP_CHOICES.map((g) => `<label><input type="checkbox" name="group" value="${g}"${query.getAll('group').includes(g) ? ' checked' : ''}> ${g}</label>`).join(' ');
    const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in: Warden development issuer</title>
<style>body{font:16px system-ui,sans-serif;max-width:30rem;margin:3rem auto;padding:0 1rem;color:#1c2430}label{display:block;margin:.6rem 0}
input[type=text]{width:100%;padding:.5rem;font:inherit;box-sizing:border-box}button{padding:.6rem 1.2rem;font:inherit;background:#1f5fbf;color:#fff;border:0;border-radius:4px}
.note{color:#555;font-size:.9rem}.error{color:#a40000}</style></head><body>
<h1>Warden development issuer</h1>
<p class="note">Local mode only: sign in as any name with any groups. Groups ${GROUP_CHOICES.join(', ')} hold the console's roles unless the policy file's <code>console:</code> section says otherwise; approval rules name their own approver groups.</p>
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/dev-issuer/authorize">${hidden}
<label>Name <input type="text" name="sub" autocomplete="username" required value="${esc(query.get('sub') ?? '')}"></label>
<fieldset><legend>Groups</legend>${boxes}
<label>Other groups, comma-separated <input type="text" name="groups" value="${esc(query.get('groups') ?? '')}" placeholder="dba, sre"></label></fieldset>
<p><button type="submit">Sign in</button></p></form></body></html>`;
    res.writeHead(error ? 400 : 200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(html);
  }

  /** POST /dev-issuer/authorize: the form, answered with a redirect carrying a code. */
  authorize(req: IncomingMessage, res: ServerResponse, form: URLSearchParams): void {
    const sub = (form.get('sub') ?? '').trim();
    const groups = [...form.getAll('group'), ...(form.get('groups') ?? '').split(',')].map((g) => g.trim()).filter(Boolean);
    const redirectUri = form.get('redirect_uri') ?? '';
    if (redirectUri !== this.callbackOf(req) || form.get('client_id') !== DEV_CLIENT_ID) {
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' }).end('This sign-in page only answers the Warden console it belongs to: start again from the console.');
      return;
    }
    if (form.get('code_challenge_method') !== 'S256' || !form.get('code_challenge')) {
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' }).end('PKCE with S256 is required: start again from the console.');
      return;
    }
    if (!/^[A-Za-z0-9._@-]{1,63}$/.test(sub)) {
      return this.page(req, res, form, 'A name is 1-63 letters, digits, ".", "_", "@" or "-".');
    }
    const code = randomBytes(24).toString('base64url');
    this.codes.set(code, { sub, groups: [...new Set(groups)], redirectUri, challenge: form.get('code_challenge')!, nonce: form.get('nonce') ?? '', expiresAt: Date.now() + CODE_TTL_MS });
    const to = new URL(redirectUri);
    to.searchParams.set('code', code);
    to.searchParams.set('state', form.get('state') ?? '');
    res.writeHead(303, { location: to.toString(), 'cache-control': 'no-store' }).end();
  }

  /** POST /dev-issuer/token. */
  async token(res: ServerResponse, form: URLSearchParams): Promise<void> {
    const { status, body } = await this.exchange(form);
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
  }

  /** A code (once) and its PKCE verifier for an ID token, as a token endpoint answers. */
  async exchange(form: URLSearchParams): Promise<TokenAnswer> {
    const fail = (error: string, description: string): TokenAnswer => ({ status: 400, body: { error, error_description: description } });
    const code = this.codes.get(form.get('code') ?? '');
    this.codes.delete(form.get('code') ?? '');
    if (form.get('grant_type') !== 'authorization_code') return fail('unsupported_grant_type', 'only authorization_code');
    if (!code || code.expiresAt < Date.now()) return fail('invalid_grant', 'unknown, used or expired code');
    if (form.get('redirect_uri') !== code.redirectUri || form.get('client_id') !== DEV_CLIENT_ID) return fail('invalid_grant', 'redirect_uri or client_id differs');
    if (s256(form.get('code_verifier') ?? '') !== code.challenge) return fail('invalid_grant', 'the code verifier does not match the challenge');
    const now = Math.floor(Date.now() / 1000);
    const idToken = await new SignJWT({ groups: code.groups, nonce: code.nonce, preferred_username: code.sub })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT', ...(this.key.kid ? { kid: this.key.kid } : {}) })
      .setIssuer(DEV_ISSUER_URL)
      .setAudience(DEV_CLIENT_ID)
      .setSubject(code.sub)
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(await importJWK(this.key, 'ES256'));
    return { status: 200, body: { id_token: idToken, token_type: 'Bearer', expires_in: 600 } };
  }
}
