// The frames of the agent link: one TCP (or TLS) connection per agent per
// gateway that carries every session between them. Each frame is a 9-byte
// header and a payload:
//
//   u32 payload length | u8 type | u32 channel | payload
//
// (big endian). Channel 0 is the link itself; the gateway numbers sessions
// from 1. Structured payloads are the protobuf messages of warden.proto;
// DATA carries raw Postgres wire bytes, cut anywhere.
import { AgentHello } from '../gen/warden/v1/warden.js';

export const HEADER_SIZE = 9;

/** Version byte in HELLO and WELCOME; a gateway refuses other versions. */
export const LINK_VERSION = 1;

/** Largest payload a peer may send; larger frames end the link as garbage. */
export const MAX_PAYLOAD = 1024 * 1024;

/** DATA payloads are cut to at most this size so channels interleave fairly. */
export const MAX_DATA = 64 * 1024;

/**
 * Default receive window of a channel, in bytes: how much DATA a peer may
 * send before credit comes back. Each side announces its own (HELLO,
 * WELCOME); a channel's initial send credit is the peer's window.
 */
export const DEFAULT_WINDOW = 256 * 1024;

export const FrameType = {
  /** agent → gateway, channel 0: version, receive window, enrollment token and AgentHello. */
  HELLO: 1,
  /** gateway → agent, channel 0: the HELLO was accepted; version and receive window. */
  WELCOME: 2,
  /** either way, channel 0: why the link is being closed (UTF-8). */
  ERROR: 3,
  /** gateway → agent: OpenSession; the frame's channel becomes the session's. */
  OPEN: 4,
  /** agent → gateway: upstream login done; DATA follows. */
  READY: 5,
  /** agent → gateway: SessionFailed; the channel is over. */
  FAILED: 6,
  /** either way: raw Postgres wire bytes. */
  DATA: 7,
  /** either way: u32 more bytes of DATA the sender of WINDOW will accept. */
  WINDOW: 8,
  /** either way: the channel is over; an optional UTF-8 reason marks an abnormal end. */
  CLOSE: 9,
  /**
   * gateway → agent: send a CancelRequest for the channel's backend.
   * agent → gateway: the client's CancelRequest reached the agent through
   * another gateway (CANCEL_KEY); a statement the gateway holds is withdrawn.
   */
  CANCEL: 10,
  /** either way, channel 0: keepalive; the peer echoes the payload in PONG. */
  PING: 11,
  PONG: 12,
  /** either way, channel 0: open no new channels on this link; live ones go on. */
  GOAWAY: 13,
  /**
   * gateway → agent, channel 0: a client's CancelRequest for a key this
   * gateway did not issue (u32 process id, then the secret); the agent
   * cancels the session whose OpenSession carried that key, if any.
   * Only sent to agents whose HELLO lists LINK_FEATURE_CANCEL_KEY.
   */
  CANCEL_KEY: 14,
} as const;

/** AgentHello feature: the agent understands CANCEL_KEY. */
export const LINK_FEATURE_CANCEL_KEY = 'cancel-key';

/** Longest cancel secret a CANCEL_KEY may carry (protocol 3.2 allows keys up to 256 bytes). */
export const MAX_CANCEL_SECRET = 256;

const NAMES: Record<number, string> = Object.fromEntries(Object.entries(FrameType).map(([k, v]) => [v, k]));

export function frameTypeName(type: number): string {
  return NAMES[type] ?? `unknown(${type})`;
}

export function isKnownFrameType(type: number): boolean {
  return type >= FrameType.HELLO && type <= FrameType.CANCEL_KEY;
}

/** A peer broke the framing or the protocol: the link is closed with an ERROR frame. */
export class LinkProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LinkProtocolError';
  }
}

export interface Hello {
  version: number;
  /** Bytes of DATA the agent accepts per channel before it returns credit. */
  window: number;
  token: string;
  hello: AgentHello;
}

/** Smallest receive window a peer may announce. */
export const MIN_WINDOW = 1024;

function checkWindow(window: number): number {
  if (window < MIN_WINDOW) throw new LinkProtocolError(`a window of ${window} bytes is below the minimum of ${MIN_WINDOW}`);
  return window;
}

/** HELLO payload: u8 version, u32 receive window, u16 token length, token (UTF-8), AgentHello. */
export function encodeHello(
  token: string,
  hello: Omit<AgentHello, 'features'> & { features?: string[] },
  window = DEFAULT_WINDOW,
  version = LINK_VERSION,
): Buffer {
  const tok = Buffer.from(token, 'utf8');
  if (tok.length > 0xffff) throw new Error('enrollment token too long');
  const msg = AgentHello.encode({ ...hello, features: hello.features ?? [] }).finish();
  const out = Buffer.allocUnsafe(7 + tok.length + msg.length);
  out[0] = version;
  out.writeUInt32BE(window, 1);
  out.writeUInt16BE(tok.length, 5);
  tok.copy(out, 7);
  out.set(msg, 7 + tok.length);
  return out;
}

export function decodeHello(payload: Buffer): Hello {
  if (payload.length < 1) throw new LinkProtocolError('HELLO too short');
  const version = payload[0]!;
  // Another version may lay the rest out differently: the caller refuses it by version.
  if (version !== LINK_VERSION) return { version, window: 0, token: '', hello: { agentName: '', version: '', resources: [], features: [] } };
  if (payload.length < 7) throw new LinkProtocolError('HELLO too short');
  const n = payload.readUInt16BE(5);
  if (7 + n > payload.length) throw new LinkProtocolError('HELLO token length beyond the frame');
  let hello: AgentHello;
  try {
    hello = AgentHello.decode(payload.subarray(7 + n));
  } catch {
    throw new LinkProtocolError('HELLO carries an invalid AgentHello');
  }
  return { version, window: checkWindow(payload.readUInt32BE(1)), token: payload.toString('utf8', 7, 7 + n), hello };
}

/** WELCOME payload: u8 version, u32 receive window of the gateway. */
export function encodeWelcome(window = DEFAULT_WINDOW): Buffer {
  const out = Buffer.allocUnsafe(5);
  out[0] = LINK_VERSION;
  out.writeUInt32BE(window, 1);
  return out;
}

export function decodeWelcome(payload: Buffer): { version: number; window: number } {
  if (payload.length < 5) throw new LinkProtocolError('WELCOME too short');
  return { version: payload[0]!, window: checkWindow(payload.readUInt32BE(1)) };
}

/** CANCEL_KEY payload: u32 process id, then the secret key (4 to 256 bytes). */
export function encodeCancelKey(pid: number, secret: Buffer): Buffer {
  if (secret.length < 4 || secret.length > MAX_CANCEL_SECRET) throw new Error(`a cancel secret of ${secret.length} bytes is out of range`);
  const out = Buffer.allocUnsafe(4 + secret.length);
  out.writeUInt32BE(pid >>> 0, 0);
  secret.copy(out, 4);
  return out;
}

export function decodeCancelKey(payload: Buffer): { pid: number; secret: Buffer } {
  const n = payload.length - 4;
  if (n < 4 || n > MAX_CANCEL_SECRET) throw new LinkProtocolError(`CANCEL_KEY with a secret of ${Math.max(n, 0)} bytes`);
  return { pid: payload.readUInt32BE(0), secret: payload.subarray(4) };
}
