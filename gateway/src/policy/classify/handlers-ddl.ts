// Handlers for DDL, privileges and server administration, and the objects
// that such statements name.
import type { Access, ObjectRef } from '../types.js';
import { constValue } from './constants.js';
import { isObj, list, nameList, qualified, str, unwrap, type Obj } from './tree.js';
import type { Handler, Walk } from './walk.js';

const OBJECT_LABELS: Record<string, string> = {
  OBJECT_ACCESS_METHOD: 'ACCESS METHOD',
  OBJECT_AMOP: 'OPERATOR FAMILY',
  OBJECT_AMPROC: 'OPERATOR FAMILY',
  OBJECT_DEFACL: 'DEFAULT PRIVILEGES',
  OBJECT_DOMCONSTRAINT: 'DOMAIN',
  OBJECT_TABCONSTRAINT: 'TABLE',
  OBJECT_EVENT_TRIGGER: 'EVENT TRIGGER',
  OBJECT_FDW: 'FOREIGN DATA WRAPPER',
  OBJECT_FOREIGN_SERVER: 'SERVER',
  OBJECT_FOREIGN_TABLE: 'FOREIGN TABLE',
  OBJECT_LARGEOBJECT: 'LARGE OBJECT',
  OBJECT_MATVIEW: 'MATERIALIZED VIEW',
  OBJECT_OPCLASS: 'OPERATOR CLASS',
  OBJECT_OPFAMILY: 'OPERATOR FAMILY',
  OBJECT_PARAMETER_ACL: 'PARAMETER',
  OBJECT_PUBLICATION_NAMESPACE: 'PUBLICATION',
  OBJECT_PUBLICATION_REL: 'PUBLICATION',
  OBJECT_STATISTIC_EXT: 'STATISTICS',
  OBJECT_TSCONFIGURATION: 'TEXT SEARCH CONFIGURATION',
  OBJECT_TSDICTIONARY: 'TEXT SEARCH DICTIONARY',
  OBJECT_TSPARSER: 'TEXT SEARCH PARSER',
  OBJECT_TSTEMPLATE: 'TEXT SEARCH TEMPLATE',
  OBJECT_USER_MAPPING: 'USER MAPPING',
};

export function objectLabel(t: string | undefined): string {
  if (!t) return 'OBJECT';
  return OBJECT_LABELS[t] ?? t.replace(/^OBJECT_/, '').replace(/_/g, ' ');
}

/** Object types whose creation, change or removal is server administration. */
export const ADMIN_OBJECT_TYPES = new Set([
  'OBJECT_ROLE',
  'OBJECT_DATABASE',
  'OBJECT_TABLESPACE',
  'OBJECT_SUBSCRIPTION',
  'OBJECT_PUBLICATION',
  'OBJECT_PUBLICATION_NAMESPACE',
  'OBJECT_PUBLICATION_REL',
  'OBJECT_FDW',
  'OBJECT_FOREIGN_SERVER',
  'OBJECT_USER_MAPPING',
  'OBJECT_EVENT_TRIGGER',
  'OBJECT_LANGUAGE',
  'OBJECT_ACCESS_METHOD',
  'OBJECT_PARAMETER_ACL',
]);

const RELATION_TYPES = new Set([
  'OBJECT_TABLE',
  'OBJECT_VIEW',
  'OBJECT_MATVIEW',
  'OBJECT_SEQUENCE',
  'OBJECT_INDEX',
  'OBJECT_FOREIGN_TABLE',
]);

const FUNCTION_TYPES = new Set(['OBJECT_FUNCTION', 'OBJECT_PROCEDURE', 'OBJECT_ROUTINE', 'OBJECT_AGGREGATE']);

const ON_TABLE_TYPES = new Set(['OBJECT_POLICY', 'OBJECT_TRIGGER', 'OBJECT_RULE', 'OBJECT_TABCONSTRAINT', 'OBJECT_COLUMN']);

/** A function DDL names (rather than calls). */
function namedFunction(parts: string[]): ObjectRef | undefined {
  const ref = qualified(parts, 'function');
  if (ref) ref.named = true;
  return ref;
}

/** ObjectRefs for an object named in DDL (DROP, COMMENT, GRANT, ALTER … OWNER…). */
function objectRefFor(objtype: string | undefined, v: unknown, w: Walk): ObjectRef | ObjectRef[] | undefined {
  if (!isObj(v)) return undefined;
  const [type, n] = unwrap(v);
  switch (type) {
    case 'RangeVar': {
      const name = str(n.relname);
      return name ? qualified([...(str(n.schemaname) ? [str(n.schemaname)!] : []), name], 'table') : undefined;
    }
    case 'ObjectWithArgs': {
      const parts = nameList(n.objname);
      if (objtype && FUNCTION_TYPES.has(objtype)) return namedFunction(parts);
      return parts.length ? { type: 'other', name: parts.join('.') } : undefined;
    }
    case 'TypeName':
      return qualified(nameList(n.names), 'other');
    case 'String': {
      const s = str(n.sval);
      if (s === undefined) return undefined;
      if (objtype === 'OBJECT_SCHEMA') return { type: 'schema', name: s };
      if (objtype === 'OBJECT_DATABASE') return { type: 'database', name: s };
      if (objtype === 'OBJECT_ROLE') return { type: 'role', name: s };
      return { type: 'other', name: s };
    }
    case 'List': {
      const parts = nameList(n.items);
      if (objtype && RELATION_TYPES.has(objtype)) return qualified(parts, 'table');
      if (objtype && FUNCTION_TYPES.has(objtype)) return namedFunction(parts);
      // Objects that live on a table (DROP POLICY p ON s.t → [s, t, p]): the
      // table, then the object itself.
      if (objtype && ON_TABLE_TYPES.has(objtype) && parts.length >= 2) {
        return [qualified(parts.slice(0, -1), 'table')!, { type: 'other', name: parts[parts.length - 1]! }];
      }
      return parts.length ? { type: 'other', name: parts.join('.') } : undefined;
    }
    case 'Integer':
      w.shared.numbersRead++;
      return { type: 'other', name: `large object ${typeof n.ival === 'number' ? n.ival : 0}` };
    default:
      return undefined;
  }
}

export function addObjects(w: Walk, objtype: string | undefined, items: unknown): void {
  for (const item of list(items)) {
    const ref = objectRefFor(objtype, item, w);
    if (Array.isArray(ref)) for (const r of ref) w.addObject(r);
    else if (ref) w.addObject(ref);
  }
}

const UNTRUSTED_LANGUAGES = /^(c|internal|pl.*u)$/;

export const createFunctionHandler: Handler = (n, w) => {
  const proc = n.is_procedure === true;
  const what = proc ? 'PROCEDURE' : 'FUNCTION';
  const ref = namedFunction(nameList(n.funcname));
  if (ref) w.addObject(ref);
  let language: string | undefined;
  let definer = false;
  for (const opt of list(n.options)) {
    const d = isObj(opt) && isObj(opt.DefElem) ? opt.DefElem : undefined;
    if (!d) continue;
    if (d.defname === 'language') language = constValue(d.arg, w.shared)?.toLowerCase();
    if (d.defname === 'security' && constValue(d.arg, w.shared) === 'true') definer = true;
  }
  if (language !== undefined && UNTRUSTED_LANGUAGES.test(language)) {
    w.raise('admin', `language ${language} is untrusted: its code runs with the server's own access to the machine`);
  }
  w.raise('ddl', `defines code that runs later, whenever the ${what.toLowerCase()} is called`);
  if (definer) w.raise('ddl', "SECURITY DEFINER: it will run with its owner's privileges");
  return { kind: `CREATE ${what}` };
};

/** A handler for statements whose level and kind are fixed. */
export function fixed(level: Access, kind: string | ((n: Obj) => string), reason?: string, objects?: (n: Obj, w: Walk) => void): Handler {
  return (n, w) => {
    w.raise(level, reason);
    objects?.(n, w);
    return { kind: typeof kind === 'string' ? kind : kind(n) };
  };
}

export const dbObject = (n: Obj, w: Walk): void => {
  const db = str(n.dbname);
  if (db) w.addObject({ type: 'database', name: db });
};

export const otherObject =
  (field: string) =>
  (n: Obj, w: Walk): void => {
    const name = str(n[field]);
    if (name) w.addObject({ type: 'other', name });
  };

export const SERVER_ADMIN = 'server administration';

