// Test hosts in Linux network namespaces: one bridge in the test's own
// namespace (the "host", which keeps its address on the bridge) and a
// namespace per host, joined to the bridge by a veth pair, all in one /24 of
// 10.0.0.0/8 chosen per run. Names carry a per-run id, so runs never collide;
// destroy() removes everything made, and kills what was started in them.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { sh } from './stack.js';

export type ShResult = Awaited<ReturnType<typeof sh>>;

/** Runs `ip`, throwing with its message when it fails. */
async function ip(...args: string[]): Promise<string> {
  const r = await sh('ip', args);
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')} failed: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

/**
 * Throws, saying why, when network namespaces cannot be made here (not root,
 * no iproute2, a sandbox without CAP_NET_ADMIN): the test must fail, not skip.
 */
export async function requireNetns(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the scale-out test builds network namespaces and must run as root (ip netns add needs CAP_SYS_ADMIN and CAP_NET_ADMIN)');
  const probe = `wd-probe-${randomBytes(3).toString('hex')}`;
  const add = await sh('ip', ['netns', 'add', probe]);
  if (add.code !== 0) throw new Error(`ip netns is not usable here (${add.stderr.trim() || `exit ${add.code}`}); the scale-out test needs it and iproute2`);
  await sh('ip', ['netns', 'del', probe]);
}

export class Host {
  private readonly children = new Set<ChildProcess>();

  constructor(
    /** The namespace's name, as `ip netns` knows it. */
    readonly ns: string,
    /** Its address on the bridge. */
    readonly address: string,
  ) {}

  /** Runs a command in the namespace and waits for it; never throws. */
  exec(cmd: string, args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<ShResult> {
    return sh('ip', ['netns', 'exec', this.ns, cmd, ...args], env, timeoutMs);
  }

  /** Starts a long-running command in the namespace (`ip netns exec` execs it: the pid is the command's). */
  spawn(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Kills what was started here and is still running, and waits for it to exit. */
  async killAll(): Promise<void> {
    await Promise.all([...this.children].map((c) => stop(c, 'SIGKILL')));
  }
}

/** Sends `signal` and resolves once the process has exited. */
export function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

export class Network {
  /** The hosts by the names given to create(). */
  readonly hosts: Record<string, Host> = {};
  private readonly links: string[] = [];

  private constructor(
    readonly id: string,
    readonly bridge: string,
    /** The test process's address on the bridge: what it serves to the namespaces is reached here. */
    readonly address: string,
  ) {}

  /** A bridge and one namespace per name. Cleans up what it made when a step fails. */
  static async create(names: string[]): Promise<Network> {
    await requireNetns();
    const id = randomBytes(3).toString('hex');
    const prefix = await freeSubnet();
    const net = new Network(id, `wdbr${id}`, `${prefix}.1`);
    try {
      await ip('link', 'add', net.bridge, 'type', 'bridge');
      net.links.push(net.bridge);
      await ip('addr', 'add', `${net.address}/24`, 'dev', net.bridge);
      await ip('link', 'set', net.bridge, 'up');
      for (const [i, name] of names.entries()) {
        const host = new Host(`wd-${id}-${name}`, `${prefix}.${i + 2}`);
        const outside = `wd${id}h${i}`;
        const inside = `wd${id}n${i}`;
        await ip('netns', 'add', host.ns);
        net.hosts[name] = host;
        await ip('link', 'add', outside, 'type', 'veth', 'peer', 'name', inside);
        net.links.push(outside);
        await ip('link', 'set', inside, 'netns', host.ns);
        await ip('link', 'set', outside, 'master', net.bridge);
        await ip('link', 'set', outside, 'up');
        await ip('-n', host.ns, 'addr', 'add', `${host.address}/24`, 'dev', inside);
        await ip('-n', host.ns, 'link', 'set', inside, 'up');
        await ip('-n', host.ns, 'link', 'set', 'lo', 'up');
      }
    } catch (err) {
      await net.destroy();
      throw err;
    }
    return net;
  }

  /** Kills what runs in the namespaces, deletes them and the bridge. Safe to call twice. */
  async destroy(): Promise<void> {
    for (const host of Object.values(this.hosts)) {
      await host.killAll();
      await sh('ip', ['netns', 'del', host.ns]);
    }
    // Deleting a namespace deletes its veth ends, and with them their peers; what is left goes here.
    for (const link of this.links.reverse()) await sh('ip', ['link', 'del', link]);
    for (const k of Object.keys(this.hosts)) delete this.hosts[k];
    this.links.length = 0;
  }
}

/** A 10.x.y.0/24 prefix that no route or address on this machine uses yet. */
async function freeSubnet(): Promise<string> {
  const inUse = (await ip('-4', 'route', 'show', 'table', 'all')) + (await ip('-4', 'addr'));
  for (let i = 0; i < 100; i++) {
    const prefix = `10.${randomInt(200, 250)}.${randomInt(0, 256)}`;
    if (!inUse.includes(`${prefix}.`)) return prefix;
  }
  throw new Error('no free 10.x.y.0/24 for the test network');
}

/** Keeps every new inbound connection out of a namespace: only its own (loopback) and replies to what it dialled get in. */
export async function closeInbound(host: Host): Promise<void> {
  const rules = `table inet warden_inbound {
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "lo" accept
    ct state established,related accept
    counter drop comment "inbound connections"
  }
}
`;
  const child = spawn('ip', ['netns', 'exec', host.ns, 'nft', '-f', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  child.stdin.end(rules);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`nft could not load the inbound rules in ${host.ns}: ${err.trim() || `exit ${code}`} (is nftables installed?)`);
}

/** Packets the inbound rule dropped so far. */
export async function droppedInbound(host: Host): Promise<number> {
  const r = await host.exec('nft', ['list', 'chain', 'inet', 'warden_inbound', 'input']);
  const m = /counter packets (\d+)[^\n]*comment "inbound connections"/.exec(r.stdout);
  if (!m) throw new Error(`no inbound counter in ${host.ns}: ${r.stdout}${r.stderr}`);
  return Number(m[1]);
}

/** A started process with its output kept, to wait for what it logs. */
export class Proc {
  private text = '';
  readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    child.stdout?.on('data', (d) => (this.text += d));
    child.stderr?.on('data', (d) => (this.text += d));
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  output(): string {
    return this.text;
  }

  /** Resolves once the output matches `pattern` as often as `times`; rejects when the process exits first or after `ms`. */
  async logged(pattern: RegExp, times = 1, ms = 60_000): Promise<void> {
    const global = new RegExp(pattern.source, `${pattern.flags.replace('g', '')}g`);
    await waitUntil(`${this.name} to log ${pattern} (x${times})`, async () => {
      if (!this.running) throw new Error(`${this.name} exited (${this.child.exitCode ?? this.child.signalCode}):\n${this.text.slice(-4000)}`);
      return (this.text.match(global)?.length ?? 0) >= times;
    }, ms, () => this.text.slice(-4000));
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    return stop(this.child, signal);
  }
}

/** Polls `fn` until it returns something truthy; the error names `what` and adds `context()`. */
export async function waitUntil<T>(what: string, fn: () => Promise<T | undefined | null | false>, ms = 60_000, context?: () => string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${context ? `\n${context()}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface DriverAnswer {
  ok: boolean;
  code?: string;
  message?: string;
  rows?: Array<Record<string, unknown>>;
  pid?: number;
  secret?: number;
}

/** node-postgres clients running in a namespace (pg-driver.mjs), driven from the test. */
export class PgDriver {
  private nextId = 1;
  private readonly waiting = new Map<number, (a: DriverAnswer) => void>();
  private buffer = '';
  /** Connections that broke while idle: name → error. */
  readonly broken = new Map<string, DriverAnswer>();
  readonly proc: Proc;

  constructor(host: Host, script: string) {
    const child = host.spawn(process.execPath, [script], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc = new Proc(`pg driver in ${host.ns}`, child);
    child.stdout!.on('data', (d: Buffer) => {
      this.buffer += d.toString();
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const msg = JSON.parse(this.buffer.slice(0, nl));
        this.buffer = this.buffer.slice(nl + 1);
        if (msg.event === 'error') this.broken.set(msg.name, msg);
        else {
          this.waiting.get(msg.id)?.(msg);
          this.waiting.delete(msg.id);
        }
      }
    });
    child.once('exit', () => {
      for (const resolve of this.waiting.values()) resolve({ ok: false, message: `the pg driver exited:\n${this.proc.output().slice(-2000)}` });
      this.waiting.clear();
    });
  }

  request(req: Record<string, unknown>): Promise<DriverAnswer> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.proc.child.stdin!.write(`${JSON.stringify({ id, ...req })}\n`);
    });
  }

  close(): Promise<void> {
    this.proc.child.stdin!.end();
    return this.proc.exited;
  }
}
