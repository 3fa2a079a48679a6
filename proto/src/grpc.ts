// Small helpers shared by every gRPC caller and server of the Warden services:
// credentials from optional PEM files and the bearer-token metadata convention.
import { readFileSync } from 'node:fs';
import { ChannelCredentials, Metadata, ServerCredentials } from '@grpc/grpc-js';

export interface ClientTls {
  /** PEM file of the CA that signed the server's certificate. */
  ca?: string;
}

export interface ServerTls {
  cert: string;
  key: string;
}

/** TLS when a CA file is given, plaintext otherwise (loopback, tests). */
export function channelCredentials(tls?: ClientTls): ChannelCredentials {
  return tls?.ca ? ChannelCredentials.createSsl(readFileSync(tls.ca)) : ChannelCredentials.createInsecure();
}

export function serverCredentials(tls?: ServerTls): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(null, [
    { cert_chain: readFileSync(tls.cert), private_key: readFileSync(tls.key) },
  ]);
}

export function bearer(token: string, extra: Record<string, string> = {}): Metadata {
  const md = new Metadata();
  md.set('authorization', `Bearer ${token}`);
  for (const [k, v] of Object.entries(extra)) md.set(k, v);
  return md;
}

export function readBearer(md: Metadata): string | undefined {
  const v = md.get('authorization')[0];
  if (typeof v !== 'string' || !v.startsWith('Bearer ')) return undefined;
  return v.slice(7);
}

/** Keepalives so a dead peer is noticed in seconds, not at the next write. */
export const keepaliveOptions = {
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
} as const;

