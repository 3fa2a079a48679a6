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

// Message type bytes the gateway acts on. From the client:
export const PASSWORD_MESSAGE = 0x70; // 'p'
export const QUERY = 0x51; // 'Q'
export const PARSE = 0x50; // 'P'
export const BIND = 0x42; // 'B'
export const EXECUTE = 0x45; // 'E'
export const SYNC = 0x53; // 'S'
export const FUNCTION_CALL = 0x46; // 'F'
export const CLOSE = 0x43; // 'C' (from the client; CommandComplete from the server)
// From the server:
export const COMMAND_COMPLETE = 0x43; // 'C'
export const EMPTY_QUERY_RESPONSE = 0x49; // 'I'
export const PORTAL_SUSPENDED = 0x73; // 's'
export const ERROR_RESPONSE = 0x45; // 'E'
export const READY_FOR_QUERY = 0x5a; // 'Z'
export const BACKEND_KEY_DATA = 0x4b; // 'K'
export const NOTIFICATION_RESPONSE = 0x41; // 'A'

/** SQLSTATEs the gateway raises itself. */
export const SqlState = {
  invalidPassword: '28P01',
  invalidAuthorization: '28000',
  invalidCatalogName: '3D000',
  insufficientPrivilege: '42501',
  connectionFailure: '08006',
  protocolViolation: '08P01',
  featureNotSupported: '0A000',
  internalError: 'XX000',
} as const;
