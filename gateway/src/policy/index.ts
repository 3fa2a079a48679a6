// Statement classification: Postgres' parser → access level + objects.
export { classify, classifyStatement, overallAccess, HANDLED_NODE_TYPES } from './classify.js';
export { parseStatements, SqlParseError, parserStats } from './parser.js';
export type { ParsedStatement, PgNode } from './parser.js';
export { ClassificationCache, DecisionCache, DEFAULT_CACHE_ENTRIES, DEFAULT_CACHE_ENTRY_CHARS } from './cache.js';
export { statementShape } from './shape.js';
export type { ClassificationCacheOptions, ClassificationCacheStats } from './cache.js';
export {
  lookupFunction,
  SIDE_EFFECT_FUNCTIONS,
  SIDE_EFFECT_FUNCTION_PREFIXES,
  SIDE_EFFECT_QUALIFIED_FUNCTIONS,
} from './functions.js';
export type { FunctionRule } from './functions.js';
export { classifySetting, isHarmlessSetting, HARMLESS_SETTINGS } from './settings.js';
export type { SettingChange, SettingVerdict } from './settings.js';
export { ACCESS_LEVELS, accessAllows, accessRank, maxAccess } from './types.js';
export type { Access, Classification, ObjectRef, StatementInfo } from './types.js';
export { rulesFor } from './rules.js';
export type { Decision, Refusal as PolicyRefusal, Rule } from './rules.js';
export { StatementGate, DEFAULT_SEARCH_PATH, describe, isScoped, violation } from './gate.js';
export type { GateContext } from './gate.js';
export { reach } from './reach.js';
export { dataCatalog, isSystemSchema } from './catalogs.js';
export type { Reach, ReachContext, ReachedTable } from './reach.js';
export { PathMachine, parseSearchPath, pathEffects } from './search-path.js';
export type { PathEffect } from './search-path.js';
