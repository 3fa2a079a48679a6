// Generated gRPC messages and service definitions (see buf.gen.yaml).
export * from './gen/warden/v1/warden.js';
export * from './grpc.js';
export * from './backoff.js';
export * from './link/index.js';
export * from './grpc-target.js';
