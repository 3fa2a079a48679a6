export * from './hub.js';
export * from './upstream.js';
