// Shared test helpers: temp dirs, a throwaway Postgres database, gRPC calls as
// promises, and a reader that turns a server stream into awaitable events.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClientReadableStream, ServiceError } from '@grpc/grpc-js';
import pg from 'pg';
import { ConfigError } from '../src/storage/errors.js';
import { openStorage, type Storage } from '../src/storage/open.js';

export const WARDEN_BIN = fileURLToPath(new URL('../bin/warden.js', import.meta.url));
export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

export function tempDir(prefix = 'warden-cp-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

const PG = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' };

/** A fresh database on the local Postgres, dropped by `drop()`. */
export async function createTestDatabase(): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = `warden_cp_test_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client(PG);
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  return {
    name,
    url: `postgres://${PG.user}@${PG.host}:${PG.port}/${name}`,
    async drop() {
      const c = new pg.Client(PG);
      await c.connect();
      try {
        await c.query(`drop database if exists ${name} with (force)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** A unary call as a promise: `unary<Snapshot>((cb) => client.getSnapshot({}, md, cb))`. */
export function unary<Res>(invoke: (cb: (err: ServiceError | null, res: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    invoke((err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** Awaits the rejection of a promise and returns the gRPC error. */
export async function grpcError(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error('expected the call to fail');
}

/** Messages and the final error of a server stream, as promises in arrival order. */
export function reader<T>(stream: ClientReadableStream<T>) {
  const queue: T[] = [];
  let waiting: ((v: T) => void) | undefined;
  let error: ServiceError | undefined;
  let onError: ((e: ServiceError) => void) | undefined;
  stream.on('data', (msg: T) => {
    if (waiting) {
      const w = waiting;
      waiting = undefined;
      w(msg);
    } else queue.push(msg);
  });
  stream.on('error', (e: ServiceError) => {
    error = e;
    onError?.(e);
  });
  return {
    next(): Promise<T> {
      if (queue.length > 0) return Promise.resolve(queue.shift()!);
      return new Promise((resolve) => (waiting = resolve));
    },
    /** The next message matching `pred`, skipping others. */
    async until(pred: (msg: T) => boolean): Promise<T> {
      for (;;) {
        const msg = await this.next();
        if (pred(msg)) return msg;
      }
    },
    ended(): Promise<ServiceError> {
      if (error) return Promise.resolve(error);
      return new Promise((resolve) => (onError = resolve));
    },
    cancel: () => stream.cancel(),
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The environment minus anything Warden reads, so tests do not depend on the caller's shell. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('WARDEN_')) env[k] = v;
  return { ...env, ...extra };
}

/** Runs bin/warden.js as a real process (asynchronously: the server under test shares our event loop). */
export function runWarden(args: string[], env: NodeJS.ProcessEnv = cleanEnv(), cwd?: string): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [WARDEN_BIN, ...args], { env, cwd }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The ConfigError a call rejects with; fails the test when it rejects otherwise or not at all. */
export async function configError(p: Promise<unknown>): Promise<ConfigError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

/** Storage on one backend: PGlite in a temp directory, or a throwaway Postgres database. */
export async function openTestStorage(kind: 'pglite' | 'postgres'): Promise<{ storage: Storage; options: { dataDir?: string; databaseUrl?: string }; cleanup(): Promise<void> }> {
  if (kind === 'pglite') {
    const dir = tempDir();
    const options = { dataDir: dir.path };
    return { storage: await openStorage(options), options, cleanup: async () => dir.remove() };
  }
  const db = await createTestDatabase();
  const options = { databaseUrl: db.url };
  return { storage: await openStorage(options), options, cleanup: () => db.drop() };
}
