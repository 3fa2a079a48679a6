// Errors a caller can act on; the gRPC layer maps `kind` to a status code.
export type ConfigErrorKind = 'invalid' | 'not_found' | 'already_exists' | 'in_use';

export class ConfigError extends Error {
  constructor(
    readonly kind: ConfigErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

export const invalid = (msg: string) => new ConfigError('invalid', msg);
export const notFound = (msg: string) => new ConfigError('not_found', msg);
export const alreadyExists = (msg: string) => new ConfigError('already_exists', msg);
export const inUse = (msg: string) => new ConfigError('in_use', msg);
