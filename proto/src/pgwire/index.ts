// The Postgres frontend/backend protocol as Warden speaks it, shared by the
// gateway, the agent and the tests (`@warden/proto/pgwire`), in the manner of
// node-postgres' pg-protocol: messages are plain data, one reader cuts a byte
// stream into them, parsers read the few Warden looks inside, one serializer
// writes the ones it sends.
export * from './protocol.js';
export * from './errors.js';
export * from './reader.js';
export * from './messages.js';
export * from './serializer.js';
