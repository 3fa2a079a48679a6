// Function calls: the maintained table of functions with side effects or
// reach (functions.ts), and SQL text that functions run.
import { lookupFunction, type FunctionRule } from '../functions.js';
import { parseStatements, type ParsedStatement } from '../parser.js';
import { classifySetting, parseBool } from '../settings.js';
import { constant, constInt, constValue } from './constants.js';
import { isOidText, regclassRef } from './names.js';
import { isObj, list, nameList, qualified, str, type Obj } from './tree.js';
import { visitNode, Walk, type Handler } from './walk.js';

/** Nested SQL text (query_to_xml('…')) is followed this many levels deep. */
const MAX_SQL_TEXT_DEPTH = 4;

const SCOPES = "which cannot be checked against the rule's scopes";

/** Classifies SQL text that a function will run (query_to_xml('…') …); its objects, writes and path changes are the statement's. */
function classifySqlText(text: string, fname: string, w: Walk): void {
  if (w.sqlDepth >= MAX_SQL_TEXT_DEPTH) {
    w.raise('admin', `calls ${fname} with SQL text nested too deeply to classify`);
    w.unscope(`${fname} runs SQL text nested too deeply to classify, ${SCOPES}`);
    return;
  }
  let stmts: ParsedStatement[];
  try {
    stmts = parseStatements(text);
  } catch {
    w.raise('admin', `calls ${fname} with SQL text that does not parse`);
    return;
  }
  for (const s of stmts) {
    const sub = new Walk(w.shared, w.sqlDepth + 1, w.planOnly);
    sub.deferred = w.deferred;
    const res = visitNode(s.type, s.node, sub, true);
    if (sub.level !== 'read') {
      const why = sub.reasonText();
      w.raise(sub.level, `calls ${fname}, which runs ${res.kind ?? s.type}${why ? ` (${why})` : ''}`);
    }
    if (sub.escalation) w.escalate();
  }
}

/**
 * The argument in position `i`, also when given in named notation (which
 * Postgres allows only after the positional ones). A named argument whose
 * parameter name is not known is returned as is: not a constant, so the
 * callers fail closed.
 */
function argAt(args: unknown[], i: number, names: readonly string[] | undefined): unknown {
  const a = args[i];
  if (a !== undefined && !(isObj(a) && isObj(a.NamedArgExpr))) return a;
  const name = names?.[i];
  if (name === undefined) return a;
  for (const x of args) if (isObj(x) && isObj(x.NamedArgExpr) && str(x.NamedArgExpr.name) === name) return x.NamedArgExpr.arg;
  return undefined;
}

/** Whether a call has an argument in position `i` (positional or named). */
function hasArg(args: unknown[], i: number, names: readonly string[] | undefined): boolean {
  return argAt(args, i, names) !== undefined;
}

/** A relation named by an argument: an object when it is a constant name, else unscoped. */
function reachRelation(rule: FunctionRule, name: string, args: unknown[], w: Walk): void {
  const i = rule.relationArg!;
  if (!hasArg(args, i, rule.argNames)) return; // the call would fail
  const what = rule.reaches ?? 'reads a table';
  const c = constant(argAt(args, i, rule.argNames), w.shared);
  if (c === undefined) {
    w.unscope(`${name} ${what} named by an expression, ${SCOPES}`);
  } else if (c.kind !== 'string' || isOidText(c.value)) {
    w.unscope(`${name} ${what} named by its oid, ${SCOPES}`);
  } else {
    const ref = regclassRef(c.value);
    if (ref) w.addObject(ref);
    else w.unscope(`${name} ${what} named by text that is not a valid name, ${SCOPES}`);
  }
}

/** A schema named by an argument (type name: the text is the name, as is). */
function reachSchema(rule: FunctionRule, name: string, args: unknown[], w: Walk): void {
  const i = rule.schemaArg!;
  if (!hasArg(args, i, rule.argNames)) return;
  const c = constant(argAt(args, i, rule.argNames), w.shared);
  if (c === undefined) w.unscope(`${name} ${rule.reaches ?? 'reads a schema'} named by an expression, ${SCOPES}`);
  else w.addObject({ type: 'schema', name: c.value });
}

/** set_config(name, value, is_local): the setting's level, and a search_path change. */
function setConfig(args: unknown[], w: Walk): void {
  const setting = constValue(args[0], w.shared);
  if (setting === undefined) {
    // Could be 'role': treat as a possible identity change; could be search_path.
    w.raise('admin', 'calls set_config with a setting name that is not a constant');
    w.escalate();
    w.changePath({ op: 'set', value: undefined, local: false });
    return;
  }
  const value = constValue(args[1], w.shared);
  const verdict = classifySetting(setting, { op: 'set', value });
  w.raise(verdict.level, verdict.reason ? `set_config: ${verdict.reason}` : undefined);
  if (verdict.escalation) {
    w.escalate();
    if (value !== undefined && value.toLowerCase() !== 'none') w.addObject({ type: 'role', name: value });
  }
  // Setting names are case-insensitive, as in classifySetting.
  if (setting.toLowerCase() === 'search_path') {
    const local = constValue(args[2], w.shared);
    // Only a constant true is surely local; otherwise the change may last the session.
    w.changePath({ op: 'set', value, local: local !== undefined && parseBool(local) === true });
  }
}

function applyFunctionRule(rule: FunctionRule, name: string, n: Obj, w: Walk): void {
  const args = list(n.args);
  switch (rule.special) {
    case 'set_config':
      setConfig(args, w);
      break;
    case 'lo_open': {
      const INV_WRITE = 0x20000;
      const mode = constInt(args[1], w.shared);
      if (mode === undefined || (mode & INV_WRITE) !== 0) w.raise(rule.level, `calls ${name}, which ${rule.reason}`);
      break;
    }
    case 'sql_text': {
      if (rule.argCount !== undefined && args.length !== rule.argCount) break;
      for (const i of rule.sqlArgs ?? []) {
        if (!hasArg(args, i, rule.argNames)) continue;
        const text = constValue(argAt(args, i, rule.argNames), w.shared);
        if (text !== undefined) {
          classifySqlText(text, name, w);
        } else {
          w.raise(rule.level, `calls ${name}, which ${rule.reason}`);
          w.unscope(`${name} runs SQL text given by an expression, ${SCOPES}`);
        }
      }
      break;
    }
    default:
      w.raise(rule.level, `calls ${name}, which ${rule.reason}`);
  }
  if (rule.relationArg !== undefined) reachRelation(rule, name, args, w);
  if (rule.schemaArg !== undefined) reachSchema(rule, name, args, w);
  if (rule.unscoped !== undefined) w.unscope(`${name} ${rule.unscoped}`);
}

export const funcCallHandler: Handler = (n, w) => {
  const parts = nameList(n.funcname);
  if (parts.length === 0) return;
  const name = parts[parts.length - 1]!;
  const schema = parts.length >= 2 ? parts[parts.length - 2] : undefined;
  w.addObject(qualified(parts, 'function')!);
  const rule = lookupFunction(name, schema);
  if (rule) applyFunctionRule(rule, name.toLowerCase(), n, w);
  // Arguments, FILTER, ORDER BY and OVER are walked by the caller.
};
