// gRPC status errors with a human sentence, and the mapping from storage errors.
import { status } from '@grpc/grpc-js';
import { PolicyInvalidError } from '../policy/validate.js';
import { ConfigError, type ConfigErrorKind } from '../storage/errors.js';

export class StatusError extends Error {
  constructor(
    readonly code: status,
    readonly details: string,
  ) {
    super(details);
    this.name = 'StatusError';
  }
}

const byKind: Record<ConfigErrorKind, status> = {
  invalid: status.INVALID_ARGUMENT,
  not_found: status.NOT_FOUND,
  already_exists: status.ALREADY_EXISTS,
  in_use: status.FAILED_PRECONDITION,
};

/** Known errors keep their sentence; anything else becomes INTERNAL without details. */
export function toStatus(err: unknown): { code: status; details: string; known: boolean } {
  if (err instanceof StatusError) return { code: err.code, details: err.details, known: true };
  if (err instanceof ConfigError) return { code: byKind[err.kind], details: err.message, known: true };
  // One "line:col: message" per line; the CLI puts the file name in front.
  if (err instanceof PolicyInvalidError) return { code: status.INVALID_ARGUMENT, details: err.message, known: true };
  return { code: status.INTERNAL, details: 'internal error in the control plane; see its log', known: false };
}

