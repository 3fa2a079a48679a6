// ControlPlaneService: admin CRUD plus the two watch streams.
import { status, type ServerUnaryCall, type ServerWritableStream, type sendUnaryData } from '@grpc/grpc-js';
import type {
  ControlPlaneServiceServer,
  GatewayList,
  Snapshot,
  WatchConfigRequest,
  WatchGatewaysRequest,
} from '@warden/proto';
import type { Logger } from 'pino';
import type { Repository } from '../storage/repository.js';
import type { Authenticator } from './auth.js';
import type { SnapshotHub } from './hub.js';
import type { AgentPresence } from './presence.js';
import { hashEquals, newToken, sha256Hex } from './secrets.js';
import { toStatus } from './status.js';

/**
 * The RPCs this service implements. grpc-js answers any other method of
 * ControlPlaneService (added to the contract for another component) with
 * UNIMPLEMENTED, so the contract can grow ahead of this implementation.
 */
export type ImplementedMethods = Pick<
  ControlPlaneServiceServer,
  | 'watchConfig'
  | 'watchGateways'
  | 'getSnapshot'
  | 'putIssuer'
  | 'deleteIssuer'
  | 'putIdentity'
  | 'deleteIdentity'
  | 'putResource'
  | 'deleteResource'
  | 'createGrant'
  | 'deleteGrant'
  | 'enrollAgent'
  | 'revokeAgent'
  | 'applyPolicy'
  | 'getPolicyHistory'
>;

export interface ServiceDeps {
  repo: Repository;
  hub: SnapshotHub;
  auth: Authenticator;
  log: Logger;
  /** Told when an agent's stream opens and ends (the console shows it). */
  presence?: AgentPresence;
}

/** One open watch stream; `end` is idempotent. */
interface OpenStream {
  end(code?: status, details?: string): void;
}

export class ControlPlaneService {
  private readonly streams = new Set<OpenStream>();

  constructor(private readonly deps: ServiceDeps) {}

  /** Ends every watch stream, e.g. on shutdown so clients reconnect elsewhere. */
  endAllStreams(code: status, details: string): void {
    for (const s of [...this.streams]) s.end(code, details);
  }

  implementation(): ImplementedMethods {
    const { repo, hub } = this.deps;
    const admin = this.admin.bind(this);
    return {
      watchConfig: (call) => void this.watchConfig(call),
      watchGateways: (call) => void this.watchGateways(call),
      getSnapshot: admin('GetSnapshot', () => hub.latest()),
      putIssuer: admin('PutIssuer', (r) => repo.putIssuer(r), (r) => r.name),
      deleteIssuer: admin('DeleteIssuer', async (r) => (await repo.deleteIssuer(r.name), {}), (r) => r.name),
      putIdentity: admin('PutIdentity', (r) => repo.putIdentity(r), (r) => r.name),
      deleteIdentity: admin('DeleteIdentity', async (r) => (await repo.deleteIdentity(r.name), {}), (r) => r.name),
      putResource: admin('PutResource', (r) => repo.putResource(r), (r) => r.name),
      deleteResource: admin('DeleteResource', async (r) => (await repo.deleteResource(r.name), {}), (r) => r.name),
      createGrant: admin('CreateGrant', (r) => repo.createGrant(r), (r) => r.resource),
      deleteGrant: admin('DeleteGrant', async (r) => (await repo.deleteGrant(r.id), {}), (r) => r.id),
      enrollAgent: admin(
        'EnrollAgent',
        async (r) => {
          // The token leaves this function once, in the response; only its hash is stored.
          const token = newToken('wdn_agent_');
          const agent = await repo.enrollAgent(r.name, sha256Hex(token));
          return { agent, token };
        },
        (r) => r.name,
      ),
      revokeAgent: admin('RevokeAgent', async (r) => (await repo.revokeAgent(r.name), {}), (r) => r.name),
      applyPolicy: admin(
        'ApplyPolicy',
        async (r) => {
          const out = await repo.applyPolicy({ yaml: r.yaml, author: r.author, dryRun: r.dryRun });
          if (out.applied) this.deps.log.info({ policyVersion: out.version, author: r.author, changes: out.lines.length }, 'policy applied');
          return { version: out.version, change: { lines: out.lines } };
        },
        (r) => (r.dryRun ? 'dry run' : r.author || 'apply'),
      ),
      getPolicyHistory: admin('GetPolicyHistory', async () => ({ versions: await repo.policyHistory() })),
    };
  }

  /** Wraps an admin handler: checks the admin token, maps errors, logs the outcome (never the payload). */
  private admin<Req, Res>(method: string, fn: (req: Req) => Promise<Res>, target?: (req: Req) => string) {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      const fields = { method, target: target?.(call.request), peer: call.getPeer() };
      const run = async () => {
        this.deps.auth.admin(call.metadata);
        return fn(call.request);
      };
      run().then(
        (res) => {
          this.deps.log[method.startsWith('Get') ? 'debug' : 'info'](fields, 'admin call');
          callback(null, res);
        },
        (err) => {
          const s = toStatus(err);
          if (s.known) this.deps.log.info({ ...fields, code: status[s.code], reason: s.details }, 'admin call refused');
          else this.deps.log.error({ ...fields, err }, 'admin call failed');
          callback({ code: s.code, details: s.details, message: s.details });
        },
      );
    };
  }

  /** Registers a stream so it can be ended from outside, and cleans up on client cancel. */
  private open<Req, Res>(call: ServerWritableStream<Req, Res>, onEnd: (byClient: boolean) => void): OpenStream {
    let ended = false;
    const finish = (byClient: boolean) => {
      if (ended) return false;
      ended = true;
      this.streams.delete(stream);
      onEnd(byClient);
      return true;
    };
    const stream: OpenStream = {
      end: (code, details) => {
        if (!finish(false)) return;
        if (code === undefined || code === status.OK) call.end();
        else call.emit('error', { code, details });
      },
    };
    this.streams.add(stream);
    call.on('cancelled', () => finish(true));
    return stream;
  }

  private refuse<Req, Res>(call: ServerWritableStream<Req, Res>, method: string, err: unknown): void {
    const s = toStatus(err);
    if (s.known) this.deps.log.info({ method, peer: call.getPeer(), code: status[s.code], reason: s.details }, 'watch refused');
    else this.deps.log.error({ method, peer: call.getPeer(), err }, 'watch failed');
    call.emit('error', { code: s.code === status.INTERNAL ? status.UNAVAILABLE : s.code, details: s.details });
  }

  private async watchConfig(call: ServerWritableStream<WatchConfigRequest, Snapshot>): Promise<void> {
    const { repo, hub, auth, log } = this.deps;
    const { gatewayId, tunnelAddress } = call.request;
    let maskKey: Buffer;
    try {
      auth.gateway(call.metadata);
      await repo.registerGateway(gatewayId, tunnelAddress);
      maskKey = await repo.maskKey();
    } catch (err) {
      return this.refuse(call, 'WatchConfig', err);
    }
    if (call.cancelled) return;
    const fields = { gateway: gatewayId, tunnel: tunnelAddress, peer: call.getPeer() };
    log.info(fields, 'gateway connected');

    let sent = -1;
    const send = (snapshot: Snapshot) => {
      if (snapshot.version <= sent) return;
      sent = snapshot.version;
      // The masking key goes to gateways only: snapshots themselves (GetSnapshot) never carry it.
      call.write({ ...snapshot, maskKey });
    };
    const unsubscribe = hub.subscribe(send);
    const stream = this.open(call, (byClient) => {
      unsubscribe();
      if (!byClient) return;
      log.info(fields, 'gateway disconnected');
      repo.touchGateway(gatewayId).catch((err) => log.warn({ err, gateway: gatewayId }, 'cannot record last_seen'));
    });
    try {
      send(await hub.latest());
    } catch {
      stream.end(status.UNAVAILABLE, 'the configuration store is unavailable; retry');
    }
  }

  private async watchGateways(call: ServerWritableStream<WatchGatewaysRequest, GatewayList>): Promise<void> {
    const { repo, hub, auth, log } = this.deps;
    const name = call.request.agentName;
    let tokenHash: string;
    try {
      tokenHash = await auth.agent(call.metadata, name, repo);
    } catch (err) {
      return this.refuse(call, 'WatchGateways', err);
    }
    if (call.cancelled) return;
    const fields = { agent: name, peer: call.getPeer() };
    log.info(fields, 'agent connected');
    this.deps.presence?.connected(name);

    let sent = -1;
    const onSnapshot = (snapshot: Snapshot) => {
      // Every snapshot re-checks the enrollment, so a revocation cuts the stream at once.
      const agent = snapshot.agents.find((a) => a.name === name);
      if (!agent || agent.revoked || !hashEquals(agent.tokenHash, tokenHash)) {
        const why = agent && !agent.revoked ? `the enrollment token of agent '${name}' was replaced` : `agent '${name}' has been revoked`;
        log.info({ ...fields, reason: why }, 'agent stream ended');
        stream.end(status.PERMISSION_DENIED, why);
        return;
      }
      if (snapshot.version <= sent) return;
      sent = snapshot.version;
      call.write({ gateways: snapshot.gateways });
    };
    const unsubscribe = hub.subscribe(onSnapshot);
    const stream = this.open(call, (byClient) => {
      unsubscribe();
      this.deps.presence?.disconnected(name);
      if (byClient) log.info(fields, 'agent disconnected');
    });
    try {
      onSnapshot(await hub.latest());
    } catch {
      stream.end(status.UNAVAILABLE, 'the configuration store is unavailable; retry');
    }
  }
}
