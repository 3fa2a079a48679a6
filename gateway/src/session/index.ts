export * from './session.js';
export type { ParameterRecording } from './recorder.js';
