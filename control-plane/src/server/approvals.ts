// The approval RPCs of ControlPlaneService (issue 13). Gateways (gateway
// token) open, withdraw, watch and consume requests; approvers are people
// whose token a trusted issuer signed, verified by the gateway's own code
// against the current snapshot's issuers. Each change is recorded in the
// control plane's audit store as an ApprovalEvent of the request's own chain
// (gateway "control-plane", session = the request id).
import { status, type Metadata, type ServerUnaryCall, type ServerWritableStream, type sendUnaryData } from '@grpc/grpc-js';
import {
  Snapshot,
  readBearer,
  type ApprovalDecision,
  type ApprovalRequest,
  type ControlPlaneServiceServer,
  type WatchApprovalsRequest,
} from '@warden/proto';
import { AuthError, TokenVerifier, compileAuthConfig, mapIdentity, type AuthConfig } from '@warden/gateway/auth';
import type { Logger } from 'pino';
import type { ApprovalWebhooks } from '../approvals/webhook.js';
import type { AuditStore } from '../audit/store.js';
import { APPROVAL_STATES, DecisionRefused, type ApprovalStore, type StoredApproval } from '../storage/approvals.js';
import { checkName } from '../storage/validate.js';
import { ConfigError } from '../storage/errors.js';
import type { Authenticator } from './auth.js';
import type { SnapshotHub } from './hub.js';
import { secretEquals } from './secrets.js';
import { StatusError, toStatus } from './status.js';

export type ApprovalMethods = Pick<
  ControlPlaneServiceServer,
  'requestApproval' | 'withdrawApproval' | 'watchApprovals' | 'consumeApproval' | 'listApprovals' | 'getApproval' | 'decideApproval'
>;

/** The control plane's own chain in the audit store. */
export const AUDIT_SOURCE = 'control-plane';
const MAX_SQL = 100_000;
const MAX_PARAMETERS = 10_000;
const MAX_REASON = 1000;
const DEFAULT_LIST = 100;
const MAX_LIST = 1000;

const invalid = (msg: string) => new StatusError(status.INVALID_ARGUMENT, msg);
const denied = (msg: string) => new StatusError(status.PERMISSION_DENIED, msg);

/** Who is calling an approver RPC: a person, or the admin token (reads only). */
export type Caller = { admin: true } | { admin: false; person: string; groups: string[]; identity?: string };

/** Verifies people's tokens against the current snapshot's issuers, as gateways do. */
export class ApproverAuth {
  private readonly verifier = new TokenVerifier();
  private config: AuthConfig = compileAuthConfig(Snapshot.create());
  private version = -1;

  constructor(
    private readonly auth: { adminToken: string; gatewayToken: string },
    private readonly hub: SnapshotHub,
  ) {}

  async caller(md: Metadata, adminAllowed: boolean): Promise<Caller> {
    const token = readBearer(md);
    if (!token) throw new StatusError(status.UNAUTHENTICATED, "missing credentials: send 'authorization: Bearer <your token>'");
    if (secretEquals(token, this.auth.adminToken)) {
      if (adminAllowed) return { admin: true };
      throw denied("the admin token cannot decide approvals: a person decides, with a token of a trusted issuer (local mode: warden token --sub NAME --group GROUP)");
    }
    if (secretEquals(token, this.auth.gatewayToken)) throw denied('the gateway token cannot list or decide approvals; use a person\'s token');
    const snapshot = await this.hub.latest();
    if (snapshot.version !== this.version) {
      this.config = compileAuthConfig(snapshot);
      this.verifier.update(this.config);
      this.version = snapshot.version;
    }
    let verified;
    try {
      verified = await this.verifier.verify(token);
    } catch (err) {
      if (err instanceof AuthError) throw new StatusError(status.UNAUTHENTICATED, `your token is not accepted: ${err.message}`);
      throw err;
    }
    const person = verified.claims.sub;
    if (typeof person !== 'string' || person === '') throw new StatusError(status.UNAUTHENTICATED, 'your token has no sub claim: an approver is a named person');
    const claimed = Array.isArray(verified.claims.groups) ? verified.claims.groups.filter((g): g is string => typeof g === 'string' && g !== '') : [];
    let identity: string | undefined;
    let groups = claimed;
    try {
      // A token that maps to an identity brings that identity's groups (mapIdentity puts both together).
      const p = mapIdentity(this.config, verified);
      identity = p.identity;
      groups = p.groups;
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
    }
    return { admin: false, person, groups: [...new Set(groups)], identity };
  }
}


type Listener = (s: StoredApproval) => void;

/**
 * Tells each gateway's WatchApprovals streams about changes of its requests:
 * at once for changes made here, and by a poll of the table every ~200 ms
 * (one for all streams) for changes made by other replicas and for expiry.
 * The poll re-reads a window of recent changes, so a change whose commit
 * lagged behind its timestamp is still seen; what was sent already is known
 * by its audit seq, which every change increments.
 */
export class ApprovalWatcher {
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly streams = new Set<() => void>();
  private readonly sent = new Map<string, { seq: number; at: number }>();
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private watermark?: Date;
  private ticks = 0;
  private closed = false;

  constructor(
    private readonly store: ApprovalStore,
    private readonly onExpired: (s: StoredApproval) => void,
    private readonly log: Logger,
    private readonly intervalMs = 200,
    private readonly windowMs = 10_000,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.running ??= this.tick().finally(() => (this.running = undefined));
    }, this.intervalMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
    for (const end of [...this.streams]) end();
    this.listeners.clear();
  }

  /** Registers a stream's end, called on close so gateways reconnect to another replica. */
  track(end: () => void): () => void {
    this.streams.add(end);
    return () => this.streams.delete(end);
  }

  subscribe(gateway: string, fn: Listener): () => void {
    let set = this.listeners.get(gateway);
    if (!set) this.listeners.set(gateway, (set = new Set()));
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0) this.listeners.delete(gateway);
    };
  }

  /** A change, made here or seen by the poll; each is passed on once. */
  publish(s: StoredApproval): void {
    const last = this.sent.get(s.approval.id);
    if (last && last.seq >= s.auditSeq) return;
    this.sent.set(s.approval.id, { seq: s.auditSeq, at: Date.now() });
    for (const fn of this.listeners.get(s.approval.gatewayId) ?? []) fn(s);
  }

  private async tick(): Promise<void> {
    if (this.closed) return;
    try {
      // Expiry every second is soon enough: requests live for minutes.
      if (this.ticks++ % Math.max(1, Math.round(1000 / this.intervalMs)) === 0) {
        for (const s of await this.store.expire(new Date())) {
          this.onExpired(s);
          this.publish(s);
        }
      }
      if (this.listeners.size === 0) return;
      const now = await this.store.dbNow();
      const since = new Date(Math.min(now.getTime(), this.watermark?.getTime() ?? now.getTime()) - this.windowMs);
      for (const s of await this.store.changedSince([...this.listeners.keys()], since)) this.publish(s);
      this.watermark = now;
      const forget = Date.now() - 6 * this.windowMs;
      for (const [id, v] of this.sent) if (v.at < forget) this.sent.delete(id);
    } catch (err) {
      this.log.warn({ err }, 'approval watch poll failed; retrying');
    }
  }
}

export interface ApprovalDeps {
  store: ApprovalStore;
  hub: SnapshotHub;
  auth: Authenticator;
  approvers: ApproverAuth;
  watcher: ApprovalWatcher;
  audit?: AuditStore;
  webhooks?: ApprovalWebhooks;
  log: Logger;
  now?: () => Date;
}

/** The audit state of a request's state: "pending" is recorded as "requested". */
const auditState = (s: StoredApproval, created: boolean) => (created ? 'requested' : s.approval.state);

/** Records a change in the control plane's own audit chain; a failure is logged, never the caller's problem. */
export function recordChange(deps: Pick<ApprovalDeps, 'audit' | 'log'>, s: StoredApproval, created = false): void {
  if (!deps.audit) return;
  const a = s.approval;
  const ms = new Date().getTime();
  deps.audit
    .ingest([
      {
        id: `${a.id}:${s.auditSeq}`,
        time: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 },
        gateway: AUDIT_SOURCE,
        sessionId: a.id,
        seq: s.auditSeq,
        identity: a.identity,
        resource: a.resource,
        agent: '',
        event: {
          $case: 'approval',
          value: { approvalId: a.id, state: auditState(s, created), rule: a.rule, sql: a.sql, why: a.why, decisions: a.decisions },
        },
      },
    ])
    .catch((err) => deps.log.warn({ err, approval: a.id }, 'cannot record an approval change in the audit trail'));
}

function text(value: string, what: string, max: number, required = true): string {
  if (required && value.trim() === '') throw invalid(`${what} is required`);
  if (value.length > max) throw invalid(`${what} is longer than ${max} characters`);
  return value;
}

function name(kind: string, value: string): string {
  try {
    return checkName(kind, value);
  } catch (err) {
    throw invalid((err as ConfigError).message);
  }
}

/** "dba" or "dba or sre". */
const orList = (xs: string[]) => (xs.length <= 1 ? xs.join('') : `${xs.slice(0, -1).join(', ')} or ${xs[xs.length - 1]}`);

/**
 * What approvers may do, for a caller already identified: by the RPCs below
 * (a person's bearer token) and by the web console (a signed-in person).
 */
export function approvalActions(deps: Pick<ApprovalDeps, 'store' | 'watcher' | 'audit' | 'log' | 'now'>) {
  const { store, log } = deps;
  const now = deps.now ?? (() => new Date());
  return {
    async list(who: Caller, stateFilter: string, limitWanted: number): Promise<ApprovalRequest[]> {
      const state = stateFilter || 'pending';
      if (state !== 'all' && !(APPROVAL_STATES as readonly string[]).includes(state)) {
        throw invalid(`state must be one of ${[...APPROVAL_STATES, 'all'].join(', ')}`);
      }
      const limit = Math.min(limitWanted || DEFAULT_LIST, MAX_LIST);
      return store.list({ state: state === 'all' ? undefined : state, limit, approvers: who.admin ? undefined : who.groups });
    },

    async get(who: Caller, id: string): Promise<ApprovalRequest> {
      const a = await store.get(id);
      // One answer for "none" and "not yours", so ids cannot be probed.
      if (!a || !visible(who, a)) throw new StatusError(status.NOT_FOUND, `no approval request '${id}' that you may see`);
      return a;
    },

    async decide(who: Caller, id: string, approve: boolean, reasonText: string): Promise<ApprovalRequest> {
      if (who.admin) throw denied('the admin token cannot decide approvals');
      const reason = text(reasonText, 'a reason', MAX_REASON, !approve);
      if (!approve && reason.trim() === '') throw invalid('a denial needs a reason');
      const { stored, expiredNow } = await store
        .decide(id, { approver: who.person, groups: [], approve, reason, at: now().toISOString() }, now(), (a) => {
          const groups = a.approvers.filter((g) => who.groups.includes(g));
          const verb = approve ? 'approve' : 'deny';
          if (groups.length === 0) {
            throw denied(`${who.person} may not ${verb} ${a.id}: they are not in an approver group (${a.approvers.join(', ')}) of rule ${a.rule}`);
          }
          // A requester never decides its own statement, even when it is also an approver.
          if (who.person === a.identity || who.identity === a.identity) {
            throw denied(`${who.person} may not ${verb} ${a.id}: it is their own request (identity ${a.identity})`);
          }
          return { groups };
        })
        .catch((err) => {
          if (!(err instanceof DecisionRefused)) throw err;
          if (err.kind === 'not_found') throw new StatusError(status.NOT_FOUND, err.message);
          if (err.kind === 'already_decided') throw denied(`${who.person} has already decided on ${id}; each approver decides once`);
          const a = err.approval!;
          const by = a.decisions.filter((d) => d.approve === (a.state === 'approved')).map((d) => d.approver);
          throw new StatusError(status.FAILED_PRECONDITION, `approval request ${a.id} is ${a.state}${by.length && (a.state === 'approved' || a.state === 'denied') ? ` (by ${by.join(', ')})` : ''}, not pending`);
        });
      recordChange(deps, stored);
      deps.watcher.publish(stored);
      if (expiredNow) throw new StatusError(status.FAILED_PRECONDITION, `approval request ${id} expired at ${stored.approval.expiresAt}`);
      log.info({ approval: id, approver: who.person, approve, state: stored.approval.state }, 'approval decided');
      return stored.approval;
    },
  };
}

/** The approvers' view of one request, or why they may not see it. */
const visible = (who: Caller, a: ApprovalRequest) => who.admin || a.approvers.some((g) => who.groups.includes(g)) || who.person === a.identity || who.identity === a.identity;

export function approvalMethods(deps: ApprovalDeps): ApprovalMethods {
  const { store, hub, auth, approvers, watcher, log } = deps;
  const now = deps.now ?? (() => new Date());
  const changed = (s: StoredApproval, created = false) => {
    recordChange(deps, s, created);
    watcher.publish(s);
    return s.approval;
  };

  const handle =
    <Req, Res>(method: string, fn: (req: Req, md: Metadata) => Promise<Res>) =>
    (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      fn(call.request, call.metadata).then(
        (res) => callback(null, res),
        (err) => {
          const s = toStatus(err);
          if (s.known) log.info({ method, peer: call.getPeer(), code: status[s.code], reason: s.details }, 'approval call refused');
          else log.error({ method, peer: call.getPeer(), err }, 'approval call failed');
          callback({ code: s.code, details: s.details, message: s.details });
        },
      );
    };

  const actions = approvalActions(deps);

  return {
    requestApproval: handle('RequestApproval', async (r, md) => {
      auth.gateway(md);
      const rule = (await hub.latest()).approvalRules.find((x) => x.name === r.rule);
      if (!rule) throw invalid(`approval rule '${r.rule}' does not exist (the policy in force has ${orList((await hub.latest()).approvalRules.map((x) => x.name)) || 'none'})`);
      name('identity', r.identity);
      name('resource', r.resource);
      if (r.resource !== rule.resource) throw invalid(`approval rule '${rule.name}' is for resource '${rule.resource}', not '${r.resource}'`);
      text(r.sql, 'sql', MAX_SQL);
      text(r.fingerprint, 'fingerprint', 200);
      text(r.sessionId, 'session_id', 200);
      text(r.gatewayId, 'gateway_id', 200);
      text(r.reason, 'reason', MAX_REASON, false);
      text(r.why, 'why', MAX_REASON, false);
      if (r.parameters.length > MAX_PARAMETERS) throw invalid(`a statement has at most ${MAX_PARAMETERS} parameters`);
      const { created, stored } = await store.create({ request: r, rule, now: now() });
      if (!created) return stored.approval;
      log.info({ approval: stored.approval.id, rule: rule.name, identity: r.identity, resource: r.resource, gateway: r.gatewayId }, 'approval requested');
      deps.webhooks?.announce(stored.approval);
      return changed(stored, true);
    }),

    withdrawApproval: handle('WithdrawApproval', async (r, md) => {
      auth.gateway(md);
      const s = await store.withdraw(r.id);
      if (s) {
        log.info({ approval: r.id }, 'approval withdrawn');
        return changed(s);
      }
      const current = await store.get(r.id);
      if (!current) throw new StatusError(status.NOT_FOUND, `no approval request '${r.id}'`);
      throw new StatusError(status.FAILED_PRECONDITION, `approval request ${r.id} is ${current.state}, not pending`);
    }),

    consumeApproval: handle('ConsumeApproval', async (r, md) => {
      auth.gateway(md);
      const s = await store.consume({ identity: r.identity, resource: r.resource, fingerprint: r.fingerprint }, now());
      if (!s) throw new StatusError(status.NOT_FOUND, `no valid approval of this statement for identity '${r.identity}' on resource '${r.resource}'`);
      log.info({ approval: s.approval.id, session: r.sessionId }, 'approval consumed');
      return changed(s);
    }),

    watchApprovals: (call: ServerWritableStream<WatchApprovalsRequest, ApprovalRequest>) => {
      const gateway = call.request.gatewayId;
      try {
        auth.gateway(call.metadata);
        text(gateway, 'gateway_id', 200);
      } catch (err) {
        const s = toStatus(err);
        call.emit('error', { code: s.code, details: s.details });
        return;
      }
      let open = true;
      const unsubscribe = watcher.subscribe(gateway, (s) => {
        if (open) call.write(s.approval);
      });
      const untrack = watcher.track(() => {
        if (!open) return;
        stop();
        call.emit('error', { code: status.UNAVAILABLE, details: 'the control plane is shutting down' });
      });
      const stop = () => {
        open = false;
        unsubscribe();
        untrack();
      };
      call.on('cancelled', stop);
      call.on('close', stop);
      // A (re)connected gateway first learns where its requests stand.
      store.current(gateway, new Date(now().getTime() - 60_000)).then(
        (rows) => {
          if (open) for (const s of rows) call.write(s.approval);
        },
        (err) => log.warn({ err, gateway }, 'cannot read the approvals of a gateway that connected'),
      );
    },

    listApprovals: handle('ListApprovals', async (r, md) => ({ approvals: await actions.list(await approvers.caller(md, true), r.state, r.limit) })),

    getApproval: handle('GetApproval', async (r, md) => actions.get(await approvers.caller(md, true), r.id)),

    decideApproval: handle('DecideApproval', async (r, md) => actions.decide(await approvers.caller(md, false), r.id, r.approve, r.reason)),
  };
}

export type { ApprovalDecision };
