// Helpers for reading libpg-query's JSON parse tree.
import type { PgNode } from '../parser.js';
import type { ObjectRef } from '../types.js';

export type Obj = PgNode;

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

export function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/**
 * Fields holding a node *without* the {Type: …} wrapper whose type matters to
 * a handler, keyed 'ParentType.field'. (RangeVar and RoleSpec are recognised
 * by shape wherever they appear.)
 */
export const FIELD_TYPES: Record<string, string> = {
  'SelectStmt.larg': 'SelectStmt',
  'SelectStmt.rarg': 'SelectStmt',
  'PLAssignStmt.val': 'SelectStmt',
  'AlterRoleSetStmt.setstmt': 'VariableSetStmt',
  'AlterDatabaseSetStmt.setstmt': 'VariableSetStmt',
  'AlterSystemStmt.setstmt': 'VariableSetStmt',
  'CallStmt.funccall': 'FuncCall',
  'AlterDefaultPrivilegesStmt.action': 'GrantStmt',
  'CreateForeignTableStmt.base': 'CreateStmt',
};

/** Splits a node into [type, fields]: wrapped nodes are {Type: {fields}}. */
export function unwrap(v: Obj, hint?: string): [string | undefined, Obj] {
  const keys = Object.keys(v);
  if (keys.length === 1) {
    const k = keys[0]!;
    const c = k.charCodeAt(0);
    const body = v[k];
    // Node type names start with an upper-case letter; fields never do.
    if (c >= 65 && c <= 90 && isObj(body)) return [k, body];
  }
  if (hint) return [hint, v];
  if (typeof v.relname === 'string') return ['RangeVar', v];
  if (typeof v.roletype === 'string') return ['RoleSpec', v];
  return [undefined, v];
}

/** [{String: {sval}}…] → strings. */
export function nameList(v: unknown): string[] {
  const out: string[] = [];
  for (const item of list(v)) {
    if (isObj(item) && isObj(item.String)) out.push(str(item.String.sval) ?? '');
  }
  return out;
}

/** A reference from a name's parts (…, schema, name); undefined for none. */
export function qualified(parts: string[], type: ObjectRef['type']): ObjectRef | undefined {
  if (parts.length === 0) return undefined;
  const ref: ObjectRef = { type, name: parts[parts.length - 1]! };
  if (parts.length >= 2) ref.schema = parts[parts.length - 2]!;
  return ref;
}
