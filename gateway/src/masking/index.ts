// Masking of results: what the gateway and `warden policy check` use.
export { masksFor } from './config.js';
export { ColumnMasks, planMasks, sameMasks } from './plan.js';
export { ResultMasking, UnmaskableResult } from './results.js';
export type { ColumnPlan, MaskFunction, MaskPlan, MaskSet } from './types.js';
