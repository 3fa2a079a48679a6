// The admin side of ControlPlaneService as promises, with errors turned into
// one readable sentence.
import { status, type CallOptions, type ClientUnaryCall, type Metadata, type ServiceError } from '@grpc/grpc-js';
import { ControlPlaneServiceClient, bearer, channelCredentials, grpcTarget } from '@warden/proto';
import { CliError } from './errors.js';

type Unary<Req, Res> = (
  req: Req,
  md: Metadata,
  opts: Partial<CallOptions>,
  cb: (err: ServiceError | null, res: Res) => void,
) => ClientUnaryCall;

const TIMEOUT_MS = 10_000;

/** grpc-js wraps socket errors in long text; keep the part a person can act on. */
function reason(details: string): string {
  const code = /\b(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ECONNRESET)\b/.exec(details)?.[1];
  const words: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ENOTFOUND: 'unknown host',
    EAI_AGAIN: 'host name lookup failed',
    ETIMEDOUT: 'connection timed out',
    EHOSTUNREACH: 'host unreachable',
    ECONNRESET: 'connection reset',
  };
  if (code) return words[code]!;
  return details.replace(/\s*Resolution note:.*$/s, '').trim() || 'unavailable';
}

export class AdminClient {
  private readonly client: ControlPlaneServiceClient;

  constructor(
    private readonly address: string,
    private readonly token: string,
    ca?: string,
    /**
     * Where a person's token comes from, said when it is not accepted. Without
     * it the token is the admin token, and every refusal says where that is.
     */
    private readonly personHint?: string,
  ) {
    this.client = new ControlPlaneServiceClient(grpcTarget(address), channelCredentials({ ca }));
  }

  close(): void {
    this.client.close();
  }

  /** Calls one admin method, e.g. `call(c => c.putIssuer, issuer)`. */
  call<Req, Res>(pick: (c: ControlPlaneServiceClient) => Unary<Req, Res>, req: Req): Promise<Res> {
    const method = pick(this.client).bind(this.client);
    return new Promise((resolve, reject) => {
      method(req, bearer(this.token), { deadline: Date.now() + TIMEOUT_MS }, (err, res) =>
        err ? reject(this.describe(err)) : resolve(res),
      );
    });
  }

  private describe(err: ServiceError): CliError {
    switch (err.code) {
      case status.UNAVAILABLE:
        return new CliError(
          `cannot reach the control plane at ${this.address} (${reason(err.details)}); is it running? Set --control-plane or WARDEN_CONTROL_PLANE`,
        );
      case status.DEADLINE_EXCEEDED:
        return new CliError(`the control plane at ${this.address} did not answer within ${TIMEOUT_MS / 1000} s`);
      case status.UNAUTHENTICATED:
      case status.PERMISSION_DENIED:
        // A person refused (not an approver, their own request) is told why, and nothing about tokens.
        if (this.personHint !== undefined) return new CliError(err.code === status.UNAUTHENTICATED ? `${err.details} ${this.personHint}` : err.details, err.code);
        return new CliError(`${err.details} (the admin token comes from WARDEN_ADMIN_TOKEN or <data-dir>/admin-token)`);
      default:
        return new CliError(err.details || err.message, err.code);
    }
  }
}
