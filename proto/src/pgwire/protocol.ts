// Codes and limits of the Postgres frontend/backend protocol (version 3.0)
// that Warden reads or writes itself: the startup-phase request codes, the
// type bytes of the messages it looks at and the authentication request
// codes. Every other message passes through as bytes.

/** First int32 of a StartupMessage for protocol 3.0 (3 << 16); the low 16 bits are the minor version. */
export const PROTOCOL_3_0 = 196608;
// First int32 of the other startup-phase packets, which carry no type byte.
export const SSL_REQUEST = 80877103;
export const GSSENC_REQUEST = 80877104;
export const CANCEL_REQUEST = 80877102;

/** Postgres refuses startup packets above this size; so do we. */
export const MAX_STARTUP_PACKET = 10_000;
/** A password message carries a JWT; real ones stay far below this. */
export const MAX_PASSWORD_MESSAGE = 64 * 1024;

// Type bytes of frontend messages (client → server).
export const PASSWORD_MESSAGE = 0x70; // 'p', also SASLInitialResponse and SASLResponse
export const QUERY = 0x51; // 'Q'
export const PARSE = 0x50; // 'P'
export const BIND = 0x42; // 'B'
export const EXECUTE = 0x45; // 'E'
export const SYNC = 0x53; // 'S'
export const FUNCTION_CALL = 0x46; // 'F'
export const CLOSE = 0x43; // 'C'
export const TERMINATE = 0x58; // 'X'

// Type bytes of backend messages (server → client).
export const AUTHENTICATION = 0x52; // 'R'
export const PARAMETER_STATUS = 0x53; // 'S'
export const BACKEND_KEY_DATA = 0x4b; // 'K'
export const READY_FOR_QUERY = 0x5a; // 'Z'
export const COMMAND_COMPLETE = 0x43; // 'C'
export const DATA_ROW = 0x44; // 'D'
export const EMPTY_QUERY_RESPONSE = 0x49; // 'I'
export const PORTAL_SUSPENDED = 0x73; // 's'
export const ERROR_RESPONSE = 0x45; // 'E'
export const NOTICE_RESPONSE = 0x4e; // 'N'
export const NOTIFICATION_RESPONSE = 0x41; // 'A'
export const ROW_DESCRIPTION = 0x54; // 'T'
export const COPY_OUT_RESPONSE = 0x48; // 'H'
export const COPY_DATA = 0x64; // 'd', both ways
export const NEGOTIATE_PROTOCOL_VERSION = 0x76; // 'v'

/** The int32 that starts the body of an Authentication ('R') message. */
export const AuthRequest = {
  ok: 0,
  kerberosV5: 2,
  cleartextPassword: 3,
  md5Password: 5,
  gss: 7,
  sspi: 9,
  sasl: 10,
  saslContinue: 11,
  saslFinal: 12,
} as const;
