// Values of constant expressions in the parse tree.
import { isObj, str, unwrap } from './tree.js';

/**
 * Where reads of numeric constants are counted: a decision that read a number
 * must not be shared between texts that differ only in numbers
 * (Classification.readsNumbers).
 */
export interface NumberReads {
  numbersRead: number;
}

/** A constant's value as text, and what kind of literal it was. */
export interface Constant {
  value: string;
  kind: 'string' | 'number' | 'boolean' | 'bits';
}

function num(reads: NumberReads, value: string | undefined): Constant | undefined {
  reads.numbersRead++;
  return value === undefined ? undefined : { value, kind: 'number' };
}

/** The constant a node is (through casts); undefined when it is not a constant, or is NULL. */
export function constant(v: unknown, reads: NumberReads): Constant | undefined {
  if (!isObj(v)) return undefined;
  const [type, n] = unwrap(v);
  switch (type) {
    case 'TypeCast':
      return constant(n.arg, reads);
    case 'String':
      return { value: str(n.sval) ?? '', kind: 'string' };
    case 'Integer':
      return num(reads, String(typeof n.ival === 'number' ? n.ival : 0));
    case 'Float':
      return num(reads, str(n.fval));
    case 'Boolean':
      return { value: n.boolval === true ? 'true' : 'false', kind: 'boolean' };
    case 'A_Const':
      break;
    default:
      return undefined;
  }
  if (n.isnull === true) return undefined;
  if (isObj(n.sval)) return { value: str(n.sval.sval) ?? '', kind: 'string' };
  if (isObj(n.ival)) return num(reads, String(typeof n.ival.ival === 'number' ? n.ival.ival : 0));
  if (isObj(n.fval)) return num(reads, str(n.fval.fval));
  if (isObj(n.boolval)) return { value: n.boolval.boolval === true ? 'true' : 'false', kind: 'boolean' };
  if (isObj(n.bsval)) {
    const bits = str(n.bsval.bsval);
    return bits === undefined ? undefined : { value: bits, kind: 'bits' };
  }
  return undefined;
}

/** The value of a constant expression, as text; undefined when not a constant. */
export function constValue(v: unknown, reads: NumberReads): string | undefined {
  return constant(v, reads)?.value;
}

export function constInt(v: unknown, reads: NumberReads): number | undefined {
  const s = constValue(v, reads);
  if (s === undefined || !/^-?\d+$/.test(s.trim())) return undefined;
  return Number(s);
}

/** Whether a NULL constant appears anywhere in a subtree. */
export function containsNull(v: unknown): boolean {
  if (Array.isArray(v)) return v.some(containsNull);
  if (!isObj(v)) return false;
  if (isObj(v.A_Const) && v.A_Const.isnull === true) return true;
  for (const k of Object.keys(v)) {
    const c = v[k];
    if (typeof c === 'object' && c !== null && containsNull(c)) return true;
  }
  return false;
}
