// SCRAM-SHA-256 client (RFC 5802 / RFC 7677) as Postgres speaks it: no
// channel binding ("n,,"), the user name left empty (the server takes it from
// the startup message), and the server's final signature checked so that a
// server which does not know the password cannot pass for the real one.
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';

export const SCRAM_MECHANISM = 'SCRAM-SHA-256';

export class ScramError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScramError';
  }
}

// RFC 4013 SASLprep, to the extent Postgres applies it. Postgres leaves ASCII
// passwords untouched and falls back to the raw bytes when a password holds
// a prohibited character, so an approximation only matters for unusual
// non-ASCII passwords (the Unicode 3.2 "unassigned" check is not done).
const MAP_TO_SPACE = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/gu;
const MAP_TO_NOTHING = /[\u00AD\u034F\u1806\u180B-\u180D\u200B-\u200D\u2060\uFE00-\uFE0F\uFEFF]/gu;
const PROHIBITED =
  /[\u0000-\u001F\u007F-\u009F\u0340\u0341\u06DD\u070F\u180E\u200C-\u200F\u2028-\u202E\u2060-\u2063\u206A-\u206F\u2FF0-\u2FFB\uD800-\uDFFF\uE000-\uF8FF\uFDD0-\uFDEF\uFFF9-\uFFFF\u{1D173}-\u{1D17A}\u{E0001}\u{E0020}-\u{E007F}\u{F0000}-\u{10FFFF}]|[\u{1FFFE}\u{1FFFF}\u{2FFFE}\u{2FFFF}\u{3FFFE}\u{3FFFF}\u{4FFFE}\u{4FFFF}\u{5FFFE}\u{5FFFF}\u{6FFFE}\u{6FFFF}\u{7FFFE}\u{7FFFF}\u{8FFFE}\u{8FFFF}\u{9FFFE}\u{9FFFF}\u{AFFFE}\u{AFFFF}\u{BFFFE}\u{BFFFF}\u{CFFFE}\u{CFFFF}\u{DFFFE}\u{DFFFF}\u{EFFFE}\u{EFFFF}]/u;
const RAND_AL = /[\u05BE\u05C0\u05C3\u05D0-\u05F4\u0608\u060B\u060D\u061B-\u064A\u066D-\u066F\u0671-\u06D5\u06E5\u06E6\u06EE\u06EF\u06FA-\u0710\u0712-\u072F\u074D-\u07A5\u07B1-\u07EA\u07F4\u07F5\u07FA-\u0815\uFB1D\uFB1F-\uFB28\uFB2A-\uFD3D\uFD50-\uFDFC\uFE70-\uFEFC]/u;
const L_CAT = /\p{L}/u;

/** SASLprep as Postgres uses it: the prepared string, or the input unchanged when it cannot be prepared. */
export function saslprep(password: string): string {
  if (/^[\x00-\x7F]*$/.test(password)) return password;
  const mapped = password.replace(MAP_TO_NOTHING, '').replace(MAP_TO_SPACE, ' ').normalize('NFKC');
  if (mapped === '' || PROHIBITED.test(mapped)) return password;
  if (RAND_AL.test(mapped)) {
    const chars = [...mapped];
    const hasL = chars.some((ch) => L_CAT.test(ch) && !RAND_AL.test(ch));
    if (hasL || !RAND_AL.test(chars[0]!) || !RAND_AL.test(chars[chars.length - 1]!)) return password;
  }
  return mapped;
}

function hmac(key: Buffer, data: string | Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

function pbkdf2Async(password: string, salt: Buffer, iterations: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pbkdf2(Buffer.from(password, 'utf8'), salt, iterations, 32, 'sha256', (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/**
 * SaltedPassword by (password, salt, iterations). Postgres sends a role the
 * same salt and count at every login, and the PBKDF2 behind it (4,096 rounds
 * by default) is most of a login's CPU; the agent logs in for every client
 * session, so it derives each once. The agent holds the passwords anyway.
 */
const salted = new Map<string, Buffer>();
const MAX_SALTED = 256;
/** PBKDF2 derivations made (cache misses); for tests. */
export const scramStats = { derivations: 0 };

async function saltedPassword(password: string, salt: Buffer, iterations: number): Promise<Buffer> {
  const key = `${iterations}:${salt.toString('base64')}:${sha256(Buffer.from(password, 'utf8')).toString('base64')}`;
  const known = salted.get(key);
  if (known) return known;
  scramStats.derivations++;
  const derived = await pbkdf2Async(password, salt, iterations);
  if (salted.size >= MAX_SALTED) salted.delete(salted.keys().next().value as string);
  salted.set(key, derived);
  return derived;
}

function attributes(msg: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of msg.split(',')) {
    const eq = part.indexOf('=');
    if (eq === 1) out.set(part[0]!, part.slice(2));
  }
  return out;
}

/** One SCRAM-SHA-256 exchange. Call in order: clientFirst, clientFinal, verifyServerFinal. */
export class ScramClient {
  private readonly clientNonce: string;
  private readonly clientFirstBare: string;
  private serverSignature?: Buffer;
  private done = false;

  /**
   * `username` stays empty for Postgres, which takes the user from the
   * startup message; `nonce` is for test vectors only.
   */
  constructor(
    private readonly password: string,
    opts: { nonce?: string; username?: string } = {},
  ) {
    this.clientNonce = opts.nonce ?? randomBytes(18).toString('base64');
    const user = (opts.username ?? '').replace(/=/g, '=3D').replace(/,/g, '=2C');
    this.clientFirstBare = `n=${user},r=${this.clientNonce}`;
  }

  clientFirst(): Buffer {
    return Buffer.from(`n,,${this.clientFirstBare}`, 'utf8');
  }

  /** Takes the server-first-message, returns the client-final-message. */
  async clientFinal(serverFirstData: Buffer): Promise<Buffer> {
    const serverFirst = serverFirstData.toString('utf8');
    const attrs = attributes(serverFirst);
    const nonce = attrs.get('r');
    const saltB64 = attrs.get('s');
    const iterText = attrs.get('i');
    if (!nonce || saltB64 === undefined || !iterText) {
      throw new ScramError('malformed SCRAM server-first-message');
    }
    if (!nonce.startsWith(this.clientNonce) || nonce.length === this.clientNonce.length) {
      throw new ScramError('the server\'s SCRAM nonce does not extend the client nonce');
    }
    const iterations = Number(iterText);
    if (!Number.isInteger(iterations) || iterations < 1 || iterations > 10_000_000) {
      throw new ScramError(`unacceptable SCRAM iteration count ${iterText}`);
    }
    const salt = Buffer.from(saltB64, 'base64');
    if (salt.length === 0) throw new ScramError('empty SCRAM salt');

    const key = await saltedPassword(saslprep(this.password), salt, iterations);
    const clientKey = hmac(key, 'Client Key');
    const storedKey = sha256(clientKey);
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const proof = xor(clientKey, hmac(storedKey, authMessage));
    this.serverSignature = hmac(hmac(key, 'Server Key'), authMessage);
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'utf8');
  }

  /** Checks the server-final-message; throws unless the server proved it knows the password. */
  verifyServerFinal(serverFinalData: Buffer): void {
    if (!this.serverSignature) throw new ScramError('SCRAM server-final-message before server-first-message');
    const attrs = attributes(serverFinalData.toString('utf8'));
    const err = attrs.get('e');
    if (err !== undefined) throw new ScramError(`the server rejected the SCRAM exchange: ${err}`);
    const v = attrs.get('v');
    if (v === undefined) throw new ScramError('malformed SCRAM server-final-message');
    const got = Buffer.from(v, 'base64');
    if (got.length !== this.serverSignature.length || !timingSafeEqual(got, this.serverSignature)) {
      throw new ScramError('the server\'s SCRAM signature does not match: it may not be the real server');
    }
    this.done = true;
  }

  get verified(): boolean {
    return this.done;
  }
}

/** md5 password response: "md5" + md5hex(md5hex(password + user) + salt). */
export function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5').update(password + user, 'utf8').digest('hex');
  const outer = createHash('md5').update(Buffer.concat([Buffer.from(inner, 'utf8'), salt])).digest('hex');
  return `md5${outer}`;
}
