// Input checks for mask entries (format in docs/policy.md, "Masks"). The
// policy file's validation reports the same problems at their line; the
// store checks again so that nothing else can put an invalid mask in force.
import type { Mask, MaskFunction } from '@warden/proto';
import { invalid } from './errors.js';
import { checkGroup, checkName } from './validate.js';

export const MASK_FUNCTIONS = ['redact', 'partial', 'hash', 'email', 'null'] as const;
export const DETECTORS = ['card', 'email', 'phone', 'iban', 'ssn', 'regex'] as const;
export const MASK_PREDICATES = ['refuse', 'allow'] as const;
export const MASK_ON_INVALID = ['null', 'refuse'] as const;

/** partial keeps this many characters unless told otherwise. */
export const DEFAULT_KEEP = 4;
export const MAX_KEEP = 64;
export const MAX_REDACT_TEXT = 200;
export const MAX_REGEX = 1000;

// One part of "schema.table.column": a name as Postgres stores an unquoted
// identifier (lower case), or * for any.
const PART = '(\\*|[a-z_][a-z0-9_$]{0,62})';
export const MASK_COLUMN = new RegExp(`^${PART}\\.${PART}\\.${PART}$`);

/** Why a column pattern is invalid, or undefined when it is fine. */
export function maskColumnProblem(pattern: string): string | undefined {
  if (MASK_COLUMN.test(pattern)) return undefined;
  const hint =
    pattern.split('.').length !== 3
      ? 'schema.table.column, each part a name or *'
      : /[A-Z]/.test(pattern)
        ? 'schema.table.column in lower case, as Postgres stores unquoted names'
        : 'schema.table.column, each part * or 1-63 of a-z, 0-9, _ or $ (not starting with a digit or $)';
  return `'${pattern}' is invalid: give ${hint}`;
}

/**
 * Why a regex detector's pattern is unusable, or undefined. The gateway
 * replaces every match, so a pattern that can match nothing at all would
 * match between every two characters.
 */
export function maskRegexProblem(pattern: string): string | undefined {
  let re: RegExp;
  try {
    re = new RegExp(pattern, 'g');
  } catch (err) {
    return `'${pattern}' is not a valid JavaScript regular expression (${(err as Error).message})`;
  }
  if (re.test('')) return `'${pattern}' matches the empty string; it must match at least one character`;
  return undefined;
}

/** A mask function as the file writes it: the function and its settings, unset ones undefined. */
export interface MaskSettings {
  mask: string;
  keep?: number;
  text?: string;
  char?: string;
}

/** The settings that do not belong to the function, each with why: [field, message]. */
export function maskSettingsProblems(s: MaskSettings): [field: 'keep' | 'text' | 'char', message: string][] {
  const out: [field: 'keep' | 'text' | 'char', message: string][] = [];
  const only = (field: 'keep' | 'text' | 'char', fn: string) => {
    if (s[field] !== undefined && s.mask !== fn) out.push([field, `is only for mask ${fn}, not ${s.mask}`]);
  };
  only('keep', 'partial');
  only('char', 'partial');
  only('text', 'redact');
  return out;
}

/** The stored form of a file's function: keep filled in for partial, unset settings empty. */
export function maskFunctionOf(s: MaskSettings): MaskFunction {
  return {
    fn: s.mask,
    keep: s.mask === 'partial' ? (s.keep ?? DEFAULT_KEEP) : 0,
    text: s.text ?? '',
    char: s.char ?? '',
  };
}

const oneOf = (what: string, value: string, allowed: readonly string[]) => {
  if (!allowed.includes(value)) throw invalid(`${what} '${value}' is not supported; use one of ${allowed.join(', ')}`);
  return value;
};

function checkFunction(where: string, f: MaskFunction | undefined): MaskFunction {
  if (!f) throw invalid(`${where} needs a mask function`);
  const fn = oneOf(`${where}: mask`, f.fn, MASK_FUNCTIONS);
  const settings: MaskSettings = {
    mask: fn,
    keep: f.keep || undefined,
    text: f.text || undefined,
    char: f.char || undefined,
  };
  const [wrong] = maskSettingsProblems(settings);
  if (wrong) throw invalid(`${where}: ${wrong[0]} ${wrong[1]}`);
  if (settings.keep !== undefined && !(Number.isInteger(settings.keep) && settings.keep >= 1 && settings.keep <= MAX_KEEP)) {
    throw invalid(`${where}: keep must be from 1 to ${MAX_KEEP}`);
  }
  if (settings.char !== undefined && [...settings.char].length !== 1) throw invalid(`${where}: char must be one character`);
  if (settings.text !== undefined && (settings.text.length > MAX_REDACT_TEXT || /[\u0000-\u001f\u007f]/.test(settings.text))) {
    throw invalid(`${where}: text must be at most ${MAX_REDACT_TEXT} characters without control characters`);
  }
  return maskFunctionOf(settings);
}

const unique = <T>(xs: T[]) => [...new Set(xs)];

/** Checks a mask entry and returns its stored form (defaults filled in, lists without duplicates). */
export function validateMask(m: Mask): Mask {
  checkName('mask', m.name);
  checkName('resource', m.resource);
  const what = `mask '${m.name}'`;
  const names = (xs: string[]) => unique(xs.map((x) => checkName('identity', x)));
  const groups = (xs: string[]) => unique(xs.map(checkGroup));
  if (m.columns.length === 0 && m.detectors.length === 0) throw invalid(`${what} needs at least one column or detector`);
  const columns = m.columns.map((c, i) => {
    const problem = maskColumnProblem(c.pattern);
    if (problem) throw invalid(`${what} columns[${i}] ${problem}`);
    return { pattern: c.pattern, mask: checkFunction(`${what} columns[${i}]`, c.mask) };
  });
  const detectors = m.detectors.map((d, i) => {
    const where = `${what} detectors[${i}]`;
    const detector = oneOf(`${where}: detector`, d.detector, DETECTORS);
    if (detector === 'regex') {
      if (!d.pattern) throw invalid(`${where}: detector regex needs a pattern`);
      if (d.pattern.length > MAX_REGEX) throw invalid(`${where}: pattern is longer than ${MAX_REGEX} characters`);
      const problem = maskRegexProblem(d.pattern);
      if (problem) throw invalid(`${where}: pattern ${problem}`);
    } else if (d.pattern) throw invalid(`${where}: pattern is only for detector regex, not ${detector}`);
    return { detector, pattern: d.pattern, mask: checkFunction(where, d.mask) };
  });
  return {
    name: m.name,
    resource: m.resource,
    identities: names(m.identities),
    groups: groups(m.groups),
    exemptIdentities: names(m.exemptIdentities),
    exemptGroups: groups(m.exemptGroups),
    columns,
    detectors,
    predicates: oneOf(`${what}: predicates`, m.predicates || 'refuse', MASK_PREDICATES),
    onInvalid: oneOf(`${what}: on_invalid`, m.onInvalid || 'null', MASK_ON_INVALID),
  };
}
