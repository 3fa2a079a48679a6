// Several control-plane replicas behind one gRPC channel: "cp1:7070,cp2:7070"
// becomes a target whose resolver returns every replica (each name looked up
// again at every re-resolution), and gRPC's default pick_first policy uses the
// first that answers, moving to another when it goes away.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { experimental, Metadata, status } from '@grpc/grpc-js';

const SCHEME = 'warden-list';

/** One address: host:port, IPv6 in brackets. */
export interface HostPort {
  host: string;
  port: number;
}

/**
 * The replicas in a comma-separated list of host:port ("cp1:7070, cp2:7070").
 * Throws an Error naming the entry that is not host:port.
 */
export function parseAddressList(list: string): HostPort[] {
  const entries = list.split(',').map((s) => s.trim()).filter(Boolean);
  if (entries.length === 0) throw new Error('no address given: use host:port, or several separated by commas');
  return entries.map((entry) => {
    const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(entry);
    const port = m ? Number(m[3]) : NaN;
    if (!m || port < 1 || port > 65535) throw new Error(`address '${entry}' is not host:port`);
    return { host: (m[1] ?? m[2])!, port };
  });
}

/**
 * The gRPC target for a control-plane address or a comma-separated list of
 * them. One address is passed on as it is (gRPC resolves it). With TLS, gRPC checks every
 * replica's certificate against the first address's host name.
 */
export function grpcTarget(addresses: string): string {
  if (!addresses.includes(',')) return addresses.trim();
  const list = parseAddressList(addresses);
  if (list.length === 1) return format(list[0]!);
  registerListResolver();
  return `${SCHEME}:${list.map(format).join(',')}`;
}

const format = (a: HostPort) => (isIP(a.host) === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`);

let registered = false;
function registerListResolver(): void {
  if (registered) return;
  registered = true;
  experimental.registerResolver(SCHEME, ListResolver);
}

/** Resolves each listed address (host names through the system resolver), in the list's order. */
class ListResolver implements experimental.Resolver {
  private generation = 0;
  private pending = false;

  constructor(
    private readonly target: experimental.GrpcUri,
    private readonly listener: experimental.ResolverListener,
  ) {}

  updateResolution(): void {
    if (this.pending) return;
    this.pending = true;
    const generation = this.generation;
    void resolveAll(this.target.path).then((result) => {
      this.pending = false;
      // Never called synchronously, and not after destroy().
      if (generation === this.generation) this.listener(result, {}, null, '');
    });
  }

  destroy(): void {
    this.generation++;
    this.pending = false;
  }

  static getDefaultAuthority(target: experimental.GrpcUri): string {
    return target.path.split(',')[0]!;
  }
}

async function resolveAll(path: string): Promise<experimental.StatusOr<experimental.Endpoint[]>> {
  const failures: string[] = [];
  const endpoints: experimental.Endpoint[] = [];
  let list: HostPort[];
  try {
    list = parseAddressList(path);
  } catch (err) {
    return unavailable((err as Error).message);
  }
  for (const { host, port } of list) {
    try {
      const found = isIP(host) ? [{ address: host }] : await lookup(host, { all: true });
      endpoints.push({ addresses: found.map((f) => ({ host: f.address, port })) });
    } catch (err) {
      failures.push(`${host}: ${(err as Error).message}`);
    }
  }
  if (endpoints.length === 0) return unavailable(`no control plane address could be resolved (${failures.join('; ')})`);
  return experimental.statusOrFromValue(endpoints);
}

function unavailable(details: string): experimental.StatusOr<experimental.Endpoint[]> {
  return experimental.statusOrFromError({ code: status.UNAVAILABLE, details, metadata: new Metadata() });
}
