export * from './protocol.js';
export * from './reader.js';
export * from './serializer.js';
export * from './startup.js';
export * from './parameters.js';
