// Small helpers shared by the benchmark modules: child processes, ports,
// temp dirs and a cleanup registry that also runs on Ctrl+C and errors.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Environment for child processes without any PG* variables from the caller,
 * so every connection parameter comes from the bench itself.
 * @param {Record<string, string | undefined>} [extra]
 */
export function childEnv(extra = {}) {
  /** @type {Record<string, string>} */
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('PG')) env[k] = v;
  }
  for (const [k, v] of Object.entries(extra)) {
    if (v !== undefined) env[k] = v;
  }
  return env;
}

/** Children still running that must be stopped if the bench is interrupted. */
const running = new Set();

/**
 * Run a command to completion, capturing stdout and stderr.
 * @param {string} cmd
 * @param {string[]} args
 * @param {{ env?: Record<string,string>, cwd?: string, stdout?: 'pipe' | 'ignore', timeoutMs?: number }} [opts]
 * @returns {Promise<{ code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }>}
 */
export function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env ?? childEnv(),
      cwd: opts.cwd,
      stdio: ['ignore', opts.stdout ?? 'pipe', 'pipe'],
    });
    running.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : null;
    child.on('error', (err) => {
      running.delete(child);
      if (timer) clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      running.delete(child);
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Like run(), but rejects with the command's stderr when it fails. */
export async function runOk(cmd, args, opts = {}) {
  const res = await run(cmd, args, opts);
  if (res.code !== 0) {
    const tail = (res.stderr || res.stdout).trim().split('\n').slice(-15).join('\n');
    throw new Error(`${cmd} ${args.join(' ')} failed (${res.signal ?? `exit ${res.code}`}):\n${tail}`);
  }
  return res;
}

/** Kill the short-lived commands started through run() (used on Ctrl+C). */
export function killRunning() {
  for (const child of running) child.kill('SIGTERM');
}

/** Does `cmd` resolve to an executable on PATH (or /usr/sbin, /sbin)? */
export async function which(cmd) {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/local/sbin']);
  const { access, constants } = await import('node:fs/promises');
  for (const dir of dirs) {
    if (!dir) continue;
    const p = path.join(dir, cmd);
    try {
      await access(p, constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return null;
}

/** A free TCP port on 127.0.0.1 (closed again before returning). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolve once something accepts TCP connections on host:port. */
export async function waitForPort(host, port, timeoutMs, isAlive = () => true) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive()) throw new Error(`process exited before listening on ${host}:${port}`);
    const ok = await new Promise((resolve) => {
      const sock = net.connect({ host, port });
      sock.once('connect', () => { sock.destroy(); resolve(true); });
      sock.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms`);
}

/** Is the process with this pid still there (and not a zombie)? */
export function pidAlive(pid) {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return true;
}

// ---------------------------------------------------------------- cleanup

/** @type {{ label: string, fn: () => unknown }[]} */
const cleanups = [];
/** @type {Promise<void> | null} */
let cleaning = null;

/**
 * Register a cleanup step; steps run last-registered first, once.
 * @returns {() => void} removes the step again (when already done by hand)
 */
export function onCleanup(label, fn) {
  const entry = { label, fn };
  cleanups.push(entry);
  return () => {
    const i = cleanups.indexOf(entry);
    if (i >= 0) cleanups.splice(i, 1);
  };
}

/** Run all cleanup steps (idempotent; errors are printed, not thrown). */
export function cleanupAll() {
  if (!cleaning) {
    cleaning = (async () => {
      while (cleanups.length) {
        const { label, fn } = /** @type {{label: string, fn: () => unknown}} */ (cleanups.pop());
        try {
          await fn();
        } catch (err) {
          process.stderr.write(`cleanup "${label}" failed: ${err instanceof Error ? err.message : err}\n`);
        }
      }
    })();
  }
  return cleaning;
}

/** A fresh temp dir, removed at cleanup. */
export async function tempDir(prefix) {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  onCleanup(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A random lowercase suffix for names. */
export function randomSuffix(n = 8) {
  const chars = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let s = '';
  for (let i = 0; i < n; i++) s += chars[Math.floor(Math.random() * chars.length)];
  return s;
}

/**
 * Split a shell-like argument string: whitespace separates, single and
 * double quotes group, backslash escapes the next character.
 * @param {string} s
 */
export function splitArgs(s) {
  /** @type {string[]} */
  const out = [];
  let cur = '';
  let has = false;
  /** @type {string | null} */
  let quote = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < s.length) cur += s[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      has = true;
    } else if (c === '\\' && i + 1 < s.length) {
      cur += s[++i];
      has = true;
    } else if (/\s/.test(c)) {
      if (has) out.push(cur);
      cur = '';
      has = false;
    } else {
      cur += c;
      has = true;
    }
  }
  if (quote) throw new Error(`unterminated quote in: ${s}`);
  if (has) out.push(cur);
  return out;
}
