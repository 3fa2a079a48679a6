// The audit events the gateway emits. They are plain JSON objects: the
// gateway publishes them to NATS JetStream, the control plane stores them.

interface EventBase {
  /** Unique id; also the JetStream message id, so a re-sent event is stored once. */
  id: string;
  time: string;
  gateway: string;
}

interface SessionScoped extends EventBase {
  sessionId: string;
  /** Position of the event in its session, from 0 (session.start). */
  seq: number;
  identity: string;
  resource: string;
  agent: string;
}

export interface SessionStartEvent extends SessionScoped {
  type: 'session.start';
  /** The claims that mapped the token to the identity (never the token). */
  claims: Record<string, unknown>;
  groups: string[];
  clientAddress: string;
  applicationName?: string;
  user?: string;
  access?: string;
  readOnly: boolean;
}

export interface StatementEvent extends SessionScoped {
  type: 'statement';
  sql: string;
  /** Parameters of the extended protocol, after redaction. */
  parameters?: Array<string | null>;
  /** 'simple' for Query messages, 'extended' for Parse/Bind/Execute. */
  protocol: 'simple' | 'extended';
  decision: 'allowed' | 'refused';
  rule?: string;
  access?: string;
  kind?: string;
  objects?: string[];
  approvalId?: string;
  masking?: string[];
  /** From CommandComplete, e.g. "SELECT 42" → command SELECT, rows 42. */
  command?: string;
  rows?: number;
  durationMs: number;
  /** Set when the statement failed (upstream error or Warden's refusal). */
  error?: { sqlstate: string; message: string };
  /** A bounded sample of result rows as the client saw them (masked), for replay. */
  sample?: { columns: string[]; rows: Array<Array<string | null>> };
}

export interface SessionEndEvent extends SessionScoped {
  type: 'session.end';
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
  statements: number;
  reason: string;
}

export interface AuthFailureEvent extends EventBase {
  type: 'auth.failure';
  clientAddress: string;
  resource?: string;
  sqlstate: string;
  message: string;
}

export type AuditEvent = SessionStartEvent | StatementEvent | SessionEndEvent | AuthFailureEvent;

/** Where the session hands its events. Must never block or throw: the hot path calls it. */
export interface AuditSink {
  publish(event: AuditEvent): void;
  /**
   * Runs `fn` once what was published so far is written (at once when nothing
   * waits). The session hands results to the client through it, so no client
   * sees a result whose record could still be lost, and events published in
   * one turn of the event loop cost one write.
   */
  afterWrite?(fn: () => void): void;
}
