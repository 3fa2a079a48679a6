// Announces new approval requests by webhook (docs/policy.md, "Approvals"):
// a plain JSON POST, or a Slack-compatible {"text": …} body for Slack's
// incoming webhooks. Delivery runs in the background with backoff for a
// bounded time, so an RPC never waits on a slow or dead receiver.
import { Backoff, type ApprovalRequest, type BackoffOptions } from '@warden/proto';
import type { Logger } from 'pino';
import { silentLogger } from '../logger.js';

export type WebhookFormat = 'json' | 'slack';

export interface WebhookOptions {
  urls: readonly string[];
  /** Format of every URL; by default Slack's for hooks.slack.com URLs and JSON for the others. */
  format?: WebhookFormat;
  log?: Logger;
  /** How long to keep retrying one delivery. Default 10 minutes. */
  giveUpAfterMs?: number;
  /** Per attempt. Default 10 s. */
  timeoutMs?: number;
  backoff?: BackoffOptions;
}

/** What each announcement says about how to decide. */
export const approveCommand = (id: string) => `warden approvals approve ${id}`;

export function formatFor(url: string, format?: WebhookFormat): WebhookFormat {
  if (format) return format;
  try {
    return new URL(url).hostname === 'hooks.slack.com' ? 'slack' : 'json';
  } catch {
    return 'json';
  }
}

/** The request's lines for people, shared by the Slack text. */
function summary(a: ApprovalRequest): string {
  const sql = a.sql.length > 500 ? `${a.sql.slice(0, 497)}...` : a.sql;
  return [
    `Approval needed: ${a.identity} on ${a.resource} (rule ${a.rule}${a.why ? `: ${a.why}` : ''})`,
    '```',
    sql,
    '```',
    ...(a.reason ? [`Reason given: ${a.reason}`] : []),
    `Approvers: ${a.approvers.join(', ')}; ${a.quorum} approval${a.quorum === 1 ? '' : 's'} needed before ${a.expiresAt}`,
    `Approve: \`${approveCommand(a.id)}\`  Deny: \`warden approvals deny ${a.id} --reason TEXT\``,
  ].join('\n');
}

export function webhookBody(a: ApprovalRequest, format: WebhookFormat): string {
  if (format === 'slack') return JSON.stringify({ text: summary(a) });
  return JSON.stringify({ type: 'approval.requested', approval: a, approve: approveCommand(a.id) });
}

export class ApprovalWebhooks {
  private readonly log: Logger;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly abort = new AbortController();

  constructor(private readonly opts: WebhookOptions) {
    this.log = opts.log ?? silentLogger();
  }

  get enabled(): boolean {
    return this.opts.urls.length > 0;
  }

  /** Starts delivering the request to every URL; returns at once. */
  announce(a: ApprovalRequest): void {
    for (const url of this.opts.urls) {
      const p = this.deliver(url, a).finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    }
  }

  /** Stops retrying and waits for attempts in progress (shutdown, tests). */
  async close(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled([...this.inFlight]);
  }

  /** Waits until every delivery started so far has succeeded or given up (tests). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
  }

  private async deliver(url: string, a: ApprovalRequest): Promise<void> {
    const body = webhookBody(a, formatFor(url, this.opts.format));
    const deadline = Date.now() + (this.opts.giveUpAfterMs ?? 600_000);
    const backoff = new Backoff(this.opts.backoff ?? { baseMs: 500, capMs: 30_000 });
    // Only the URL's origin is logged: the path of a Slack webhook is its secret.
    const where = safeOrigin(url);
    for (;;) {
      let problem: string;
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'warden-control-plane' },
          body,
          signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.opts.timeoutMs ?? 10_000)]),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) {
          this.log.info({ approval: a.id, webhook: where, attempts: backoff.attempt + 1 }, 'approval webhook delivered');
          return;
        }
        problem = `HTTP ${res.status}`;
        // A 4xx other than 408/429 will not get better by retrying.
        if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
          this.log.warn({ approval: a.id, webhook: where, problem }, 'approval webhook refused the request; not retrying');
          return;
        }
      } catch (err) {
        problem = (err as Error).message;
      }
      if (this.abort.signal.aborted) return;
      const delay = backoff.next();
      if (Date.now() + delay > deadline) {
        this.log.warn({ approval: a.id, webhook: where, problem, attempts: backoff.attempt }, 'approval webhook failed; gave up');
        return;
      }
      this.log.debug({ approval: a.id, webhook: where, problem, retryInMs: delay }, 'approval webhook failed; retrying');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        this.abort.signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
      });
      if (this.abort.signal.aborted) return;
    }
  }
}

function safeOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid URL)';
  }
}

/** The URLs given on the command line and in WARDEN_APPROVAL_WEBHOOKS (comma-separated), checked. */
export function webhookUrls(flags: readonly string[], env: string | undefined): string[] {
  const all = [...flags, ...(env ?? '').split(',')].map((u) => u.trim()).filter(Boolean);
  for (const u of all) {
    let parsed: URL;
    try {
      parsed = new URL(u);
    } catch {
      throw new Error('an approval webhook is not a URL: give http://… or https://…');
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error(`approval webhook ${parsed.origin} must be an http or https URL`);
  }
  return [...new Set(all)];
}
