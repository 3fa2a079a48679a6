// Signed-in people: a random session id in an HttpOnly cookie, the person's
// name, groups and console role kept here (in memory: a restart of the
// control plane signs everyone out), and a CSRF token the pages send back in
// a header with every state-changing request.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { ConsoleRole } from '../policy/console.js';
import { secretEquals } from '../server/secrets.js';

export const SESSION_COOKIE = 'warden_console';
export const CSRF_HEADER = 'x-csrf-token';
const DEFAULT_TTL_MS = 8 * 3600_000;

export interface Person {
  /** The name approvals and the audit trail record: the token's sub. */
  name: string;
  /** A friendlier label (e-mail, preferred_username) when the token has one. */
  display: string;
  issuer: string;
  groups: string[];
  /** The ID token's claims, to tell which identity (if any) the person also is. */
  claims: Record<string, unknown>;
}

export interface SignIn {
  id: string;
  person: Person;
  csrf: string;
  expiresAt: number;
}

const token = () => randomBytes(32).toString('base64url');

/** Cookie header → name/value pairs (first occurrence wins). */
export function readCookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const k = part.slice(0, eq).trim();
    if (!out.has(k)) out.set(k, decodeURIComponent(part.slice(eq + 1).trim()));
  }
  return out;
}

/** A Set-Cookie value: HttpOnly, SameSite=Lax (the issuer's redirect back is a top-level GET), Secure over TLS. */
export function cookie(name: string, value: string, opts: { secure: boolean; maxAgeSec?: number; path?: string }): string {
  const parts = [`${name}=${encodeURIComponent(value)}`, `Path=${opts.path ?? '/'}`, 'HttpOnly', 'SameSite=Lax'];
  if (opts.secure) parts.push('Secure');
  if (opts.maxAgeSec !== undefined) parts.push(`Max-Age=${opts.maxAgeSec}`);
  return parts.join('; ');
}

export class SignIns {
  private readonly byId = new Map<string, SignIn>();

  constructor(
    private readonly ttlMs = DEFAULT_TTL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  create(person: Person): SignIn {
    this.sweep();
    const s: SignIn = { id: token(), person, csrf: token(), expiresAt: this.now() + this.ttlMs };
    this.byId.set(s.id, s);
    return s;
  }

  /** The sign-in a request's cookie names, if it is current. */
  of(req: IncomingMessage): SignIn | undefined {
    const id = readCookies(req).get(SESSION_COOKIE);
    const s = id ? this.byId.get(id) : undefined;
    if (!s) return undefined;
    if (s.expiresAt <= this.now()) {
      this.byId.delete(s.id);
      return undefined;
    }
    return s;
  }

  /** A state-changing request must carry the sign-in's CSRF token in a header (a form on another site cannot set one). */
  csrfOk(s: SignIn, req: IncomingMessage): boolean {
    const sent = req.headers[CSRF_HEADER];
    return typeof sent === 'string' && secretEquals(sent, s.csrf);
  }

  end(s: SignIn): void {
    this.byId.delete(s.id);
  }

  get ttlSeconds(): number {
    return Math.floor(this.ttlMs / 1000);
  }

  private sweep(): void {
    const t = this.now();
    for (const [id, s] of this.byId) if (s.expiresAt <= t) this.byId.delete(id);
  }
}

export type { ConsoleRole };
