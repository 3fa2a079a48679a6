export * from './cancel-keys.js';
export * from './hub.js';
export * from './upstream.js';
