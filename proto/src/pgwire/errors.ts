// The errors of the wire module. PgError is the one error type that carries
// a SQLSTATE: whatever the gateway or the agent ends a session with is a
// PgError (or a subclass), so callers tell it apart with instanceof. A
// ProtocolError is a byte stream that breaks the protocol.

/** SQLSTATEs Warden raises itself or acts on. */
export const SqlState = {
  invalidPassword: '28P01',
  invalidAuthorization: '28000',
  invalidCatalogName: '3D000',
  insufficientPrivilege: '42501',
  connectionFailure: '08006',
  rejectedConnection: '08004',
  protocolViolation: '08P01',
  featureNotSupported: '0A000',
  internalError: 'XX000',
  invalidParameterValue: '22023',
  undefinedObject: '42704',
  tooManyConnections: '53300',
  cannotConnectNow: '57P03',
  idleSessionTimeout: '57P05',
  adminShutdown: '57P01',
  programLimitExceeded: '54000',
  outOfMemory: '53200',
  diskFull: '53100',
  configurationLimitExceeded: '53400',
} as const;

/** An error a Postgres client should see as an ErrorResponse with this SQLSTATE. */
export class PgError extends Error {
  /** For the ErrorResponse HINT field: extra advice; the message is complete without it. */
  readonly hint?: string;
  /** For the ErrorResponse DETAIL field. */
  readonly detail?: string;

  constructor(
    readonly sqlstate: string,
    message: string,
    options?: { hint?: string; detail?: string; cause?: unknown },
  ) {
    // No `cause` property at all unless one is given.
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    if (options?.hint !== undefined) this.hint = options.hint;
    if (options?.detail !== undefined) this.detail = options.detail;
  }
}

/** Bytes that are not a valid protocol message. */
export class ProtocolError extends Error {}
