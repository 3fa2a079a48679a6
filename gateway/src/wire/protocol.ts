// Constants of the Postgres frontend/backend protocol (version 3.0) that the
// gateway itself reads or writes. Everything else passes through as bytes.

/** First int32 of startup-phase packets that carry no message type byte. */
export const PROTOCOL_3_0 = 196608;
export const SSL_REQUEST = 80877103;
export const GSSENC_REQUEST = 80877104;
export const CANCEL_REQUEST = 80877102;

/** Postgres refuses startup packets above this size; so do we. */
export const MAX_STARTUP_PACKET = 10_000;
/** A password message carries a JWT; real ones stay far below this. */
export const MAX_PASSWORD_MESSAGE = 64 * 1024;

// Message type bytes.
export const PASSWORD_MESSAGE = 0x70; // 'p'
export const TERMINATE = 0x58; // 'X'
export const BACKEND_KEY_DATA = 0x4b; // 'K'
export const READY_FOR_QUERY = 0x5a; // 'Z'
export const ERROR_RESPONSE = 0x45; // 'E'

/** SQLSTATEs the gateway raises itself. */
export const SqlState = {
  invalidPassword: '28P01',
  invalidAuthorization: '28000',
  invalidCatalogName: '3D000',
  insufficientPrivilege: '42501',
  connectionFailure: '08006',
  protocolViolation: '08P01',
  featureNotSupported: '0A000',
  tooManyConnections: '53300',
  adminShutdown: '57P01',
  internalError: 'XX000',
} as const;
