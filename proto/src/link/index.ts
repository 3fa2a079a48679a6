// The agent link: one multiplexed connection per agent per gateway that
// carries every session between them (see docs/processes.md).
export * from './frames.js';
export * from './codec.js';
export * from './writer.js';
export * from './reader.js';
export * from './channel.js';
export * from './link.js';
export * from './transport.js';
