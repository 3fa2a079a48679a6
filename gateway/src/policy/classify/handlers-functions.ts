// Function calls: the maintained table of functions with side effects or
// reach (functions.ts), and SQL text that functions run.
import { lookupFunction, type FunctionRule } from '../functions.js';
import { parseStatements, type ParsedStatement } from '../parser.js';
import { classifySetting } from '../settings.js';
import { constInt, constValue } from './constants.js';
import { regclassRef } from './names.js';
import { list, nameList, qualified, type Obj } from './tree.js';
import { visitNode, Walk, type Handler } from './walk.js';

/** Nested SQL text (query_to_xml('…')) is followed this many levels deep. */
const MAX_SQL_TEXT_DEPTH = 4;

/** Classifies SQL text that a function will run (query_to_xml('…') …). */
function classifySqlText(text: string, fname: string, w: Walk): void {
  if (w.sqlDepth >= MAX_SQL_TEXT_DEPTH) {
    w.raise('admin', `calls ${fname} with SQL text nested too deeply to classify`);
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
    const sub = new Walk(w.shared, w.sqlDepth + 1);
    const res = visitNode(s.type, s.node, sub, true);
    if (sub.level !== 'read') {
      const why = sub.reasonText();
      w.raise(sub.level, `calls ${fname}, which runs ${res.kind ?? s.type}${why ? ` (${why})` : ''}`);
    }
    if (sub.escalation) w.escalate();
  }
}

function applyFunctionRule(rule: FunctionRule, name: string, n: Obj, w: Walk): void {
  const args = list(n.args);
  switch (rule.special) {
    case 'set_config': {
      const setting = constValue(args[0], w.shared);
      if (setting === undefined) {
        // Could be 'role': treat as a possible identity change.
        w.raise('admin', 'calls set_config with a setting name that is not a constant');
        w.escalate();
        return;
      }
      const value = constValue(args[1], w.shared);
      const verdict = classifySetting(setting, { op: 'set', value });
      w.raise(verdict.level, verdict.reason ? `set_config: ${verdict.reason}` : undefined);
      if (verdict.escalation) {
        w.escalate();
        if (value !== undefined && value.toLowerCase() !== 'none') w.addObject({ type: 'role', name: value });
      }
      return;
    }
    case 'lo_open': {
      const INV_WRITE = 0x20000;
      const mode = constInt(args[1], w.shared);
      if (mode === undefined || (mode & INV_WRITE) !== 0) w.raise(rule.level, `calls ${name}, which ${rule.reason}`);
      return;
    }
    case 'sql_text': {
      if (rule.argCount !== undefined && args.length !== rule.argCount) return;
      for (const i of rule.sqlArgs ?? []) {
        if (i >= args.length) continue;
        const text = constValue(args[i], w.shared);
        if (text === undefined) w.raise(rule.level, `calls ${name}, which ${rule.reason}`);
        else classifySqlText(text, name, w);
      }
      return;
    }
    default: {
      w.raise(rule.level, `calls ${name}, which ${rule.reason}`);
      if (rule.sequenceArg !== undefined) {
        const text = constValue(args[rule.sequenceArg], w.shared);
        const ref = text !== undefined ? regclassRef(text) : undefined;
        if (ref) w.addObject(ref);
      }
    }
  }
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
