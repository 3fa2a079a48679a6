// Bearer secrets: generation, hashing, constant-time comparison, and the
// token files kept in the data directory.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export const newToken = (prefix: string) => `${prefix}${randomBytes(32).toString('base64url')}`;

export const sha256Hex = (value: string) => createHash('sha256').update(value, 'utf8').digest('hex');

/**
 * Compares two secrets without leaking where they differ. Hashing first makes
 * both sides the same length, which timingSafeEqual requires.
 */
export function secretEquals(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a, 'utf8').digest();
  const hb = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(ha, hb);
}

/** Compares two sha256 hex digests in constant time. */
export function hashEquals(a: string, b: string): boolean {
  const ba = Buffer.from(a, 'hex');
  const bb = Buffer.from(b, 'hex');
  return ba.length === 32 && bb.length === 32 && timingSafeEqual(ba, bb);
}

export interface SecretSource {
  /** Value given by the operator (environment); wins over the file. */
  given?: string;
  file: string;
  prefix: string;
  /** Human name for messages, e.g. "admin token". */
  label: string;
}

export interface LoadedSecret {
  value: string;
  origin: 'given' | 'file' | 'generated';
  /** Set when the file is readable by group or others. */
  looseMode?: boolean;
}

/** The given secret, else the file's content, else a new one written with mode 0600. */
export function loadOrCreateSecret(src: SecretSource): LoadedSecret {
  if (src.given !== undefined) {
    if (src.given.trim().length < 16) throw new Error(`the ${src.label} must be at least 16 characters long`);
    return { value: src.given.trim(), origin: 'given' };
  }
  const existing = readSecretFile(src.file);
  if (existing !== undefined) {
    if (existing.length < 16) throw new Error(`${src.file} must hold the ${src.label} (at least 16 characters)`);
    return { value: existing, origin: 'file', looseMode: (statSync(src.file).mode & 0o077) !== 0 };
  }
  const value = newToken(src.prefix);
  mkdirSync(dirname(src.file), { recursive: true, mode: 0o700 });
  try {
    writeFileSync(src.file, `${value}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Another process created it first: use theirs.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateSecret(src);
    throw err;
  }
  return { value, origin: 'generated' };
}

export function readSecretFile(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Writes a file only its owner can read, replacing any previous one. A fresh
 * temp file plus rename guarantees mode 0600 even when the old file was looser.
 */
export function writeSecretFile(file: string, content: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode: 0o600, flag: 'w' });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}
