/** An error whose message is the whole story: printed as one line, exit code 1. */
export class CliError extends Error {
  constructor(
    message: string,
    /** The gRPC status code, when the error came from the control plane. */
    readonly code?: number,
  ) {
    super(message);
    this.name = 'CliError';
  }
}
