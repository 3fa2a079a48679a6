export * from './keys.js';
export * from './session.js';
