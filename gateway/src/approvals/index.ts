// Just-in-time approval of risky statements: which statements a session's
// rules hold, and Postgres' row estimate for the rules that need one.
export { ApprovalMatcher, afterEstimate, approvalRulesFor } from './rules.js';
export type { Hold } from './rules.js';
export { explainRows } from './explain.js';
