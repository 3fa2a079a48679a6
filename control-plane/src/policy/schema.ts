// The policy file's shape is control-plane/policy.schema.json, checked by
// ajv: the schema editors use is the validator. This module turns ajv's
// errors into a person's words, each with the place (a path into the file's
// data) to point at; validate.ts maps places to lines.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as AjvModule from 'ajv/dist/2020.js';
import type { ErrorObject, SchemaObject, ValidateFunction } from 'ajv/dist/2020.js';
import { maskColumnProblem } from '../storage/validate-mask.js';
import { trustProblem } from '../storage/validate.js';

type Schema = SchemaObject;

/** The schema, as shipped next to the package (src/policy and dist/policy are both two levels down). */
export const POLICY_SCHEMA: Schema = JSON.parse(readFileSync(new URL('../../policy.schema.json', import.meta.url), 'utf8'));

const defs = POLICY_SCHEMA.$defs as Record<string, Schema>;
const match = defs.identity!.properties.match as Schema;

/** Words for the few places where the generic message would not say why. */
const SAYS = new Map<Schema, Record<string, string>>([
  [match, {
    type: 'must be a mapping of claim: value, e.g. { sub: "repo:acme/app:*" }',
    minProperties: 'needs at least one claim (without one, every token of the issuer would match)',
  }],
  [defs.issuer!.properties.audiences as Schema, { minItems: 'needs at least one audience' }],
  ...[defs.maskColumn!, defs.maskDetector!].map((m): [Schema, Record<string, string>] => [m.properties.char as Schema, { maxLength: 'must be one character' }]),
]);

/** Schemas whose failures another error already speaks for: anyOf branches, propertyNames. */
const spokenFor = new Set<unknown>();
(function walk(s: unknown, inside: boolean): void {
  if (!s || typeof s !== 'object') return;
  if (inside) spokenFor.add(s);
  for (const [k, v] of Object.entries(s)) walk(v, inside || k === 'anyOf' || k === 'propertyNames');
})(POLICY_SCHEMA, false);

let compiled: ValidateFunction | undefined;
function validator(): ValidateFunction {
  if (compiled) return compiled;
  // Loaded on first use: most CLI commands never read a policy file, and ajv takes a while to load.
  const { Ajv2020 } = createRequire(import.meta.url)('ajv/dist/2020.js') as typeof AjvModule;
  // patternErrorMessage is what VS Code and the YAML language server show for a
  // pattern mismatch; here it is the same words.
  const ajv = new Ajv2020({ allErrors: true, verbose: true, allowUnionTypes: true, keywords: ['patternErrorMessage'] });
  compiled = ajv.compile(POLICY_SCHEMA);
  return compiled;
}

export type Segments = string[];

export interface ShapeProblem {
  /** Where to point: a mapping's key (as its last segment), a list item, or the part itself. */
  at: Segments;
  message: string;
}

/** How the file's data shows a place: `rules[1].access`. */
export function label(data: unknown, at: Segments): string {
  let out = '';
  let v: any = data;
  for (const seg of at) {
    out += Array.isArray(v) ? `[${seg}]` : out ? `.${seg}` : seg;
    v = v?.[seg];
  }
  return out;
}

/** Whether the place is an item of a list (rather than a mapping's field). */
const inList = (data: unknown, at: Segments) => Array.isArray(at.slice(0, -1).reduce((v: any, seg) => v?.[seg], data));

const segmentsOf = (pointer: string): Segments =>
  pointer === '' ? [] : pointer.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));

const deref = (s: Schema): Schema => (typeof s.$ref === 'string' ? defs[s.$ref.replace('#/$defs/', '')]! : s);
const keysOf = (s: Schema) => Object.keys(s.properties ?? {}).join(', ');
const plural = (n: number) => (n === 1 ? 'one entry' : `${n} entries`);

export interface ShapeOptions {
  /** The text a scalar was written as (for "quote it" hints); the value itself when unknown. */
  source: (at: Segments) => string | undefined;
}

/** Checks the data against the schema; no problems when it fits. */
export function shapeProblems(data: unknown, opts: ShapeOptions): ShapeProblem[] {
  const validate = validator();
  if (validate(data)) return [];
  const errors = (validate.errors ?? []).filter((e) => !spokenFor.has(e.parentSchema));
  // "x is required" reads before "x needs at least one of …" at the same place.
  errors.sort((a, b) => Number(a.keyword === 'anyOf') - Number(b.keyword === 'anyOf'));
  const out: ShapeProblem[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    const at = segmentsOf(e.instancePath);
    // One problem per value: a string that breaks its pattern and its length is one mistake.
    if (!['required', 'additionalProperties', 'propertyNames', 'anyOf'].includes(e.keyword)) {
      if (seen.has(e.instancePath)) continue;
      seen.add(e.instancePath);
    }
    const problem = describe(e, at, data, errors, opts);
    if (problem) out.push(problem);
  }
  return out;
}

function describe(e: ErrorObject, at: Segments, data: unknown, all: ErrorObject[], opts: ShapeOptions): ShapeProblem | undefined {
  const parent = e.parentSchema as Schema;
  const where = label(data, at);
  const what = where || 'the policy file';
  const said = SAYS.get(parent)?.[e.keyword];
  const value = e.data;
  const shown = () => opts.source(at) ?? String(value);
  const p = e.params as Record<string, any>;
  const field = (name: string) => (where ? `${where}.${name}` : name);
  switch (e.keyword) {
    case 'required':
      return { at, message: `${field(p.missingProperty)} is required` };
    case 'additionalProperties':
      return { at: [...at, p.additionalProperty], message: `${field(p.additionalProperty)} is not a known field; use ${keysOf(parent)}` };
    case 'propertyNames':
      return { at: [...at, p.propertyName], message: `${what} has an invalid key '${p.propertyName}': ${parent.propertyNames.patternErrorMessage}` };
    case 'anyOf': {
      // The idiom "one of these fields": say which, unless one of them is there and wrong.
      const names: string[] = parent.anyOf.flatMap((b: Schema) => b.required ?? []);
      const concerns = (o: ErrorObject) => names.some((n) => `${o.instancePath}/`.startsWith(`${e.instancePath}/${n}/`));
      if (all.some((o) => o !== e && concerns(o))) return undefined;
      return { at, message: `${what} needs at least one of ${names.join(' or ')}` };
    }
    case 'type': {
      if (value === null) return { at, message: `${what} needs a value` };
      if (said) return { at, message: `${what} ${said}` };
      const types = [p.type].flat();
      const scalar = typeof value !== 'object';
      if (types.includes('object')) return { at, message: `${what} must be a mapping${parent.properties ? ` of ${keysOf(parent)}` : ''}` };
      if (types.includes('array')) {
        const items = parent.items && deref(parent.items);
        const hint = scalar && items?.type !== 'object' ? ` (write [${shown()}])` : '';
        return { at, message: `${what} must be a list${hint}` };
      }
      // A field's number or true is most likely meant as text; a list item's is just wrong.
      const hint = types.includes('string') && scalar && at.length > 0 && !inList(data, at) ? ` (quote it: "${shown()}")` : '';
      return { at, message: `${what} must be ${types.includes('string') ? 'a string' : types.join(' or ')}${hint}` };
    }
    case 'enum': {
      // YAML's bare null stands for the value 'null' where both are allowed: name it once.
      const allowed = [...new Set((p.allowedValues as unknown[]).map(String))].join(', ');
      // A list item's path is only an index, so name the value.
      if (inList(data, at) && typeof value !== 'object') return { at, message: `${what} '${value}' is not supported; use one of ${allowed}` };
      return { at, message: `${what} must be one of ${allowed}` };
    }
    case 'const':
      return { at, message: `${what} must be ${JSON.stringify(p.allowedValue)}` };
    case 'pattern':
      if (parent === defs.trustEntry) return { at, message: `${what} ${trustProblem(String(value))}` };
      if (parent === defs.maskColumnEntry) return { at, message: `${what} ${maskColumnProblem(String(value))}` };
      return { at, message: `${what} '${value}' is invalid: ${parent.patternErrorMessage ?? `it must match ${p.pattern}`}` };
    case 'minLength':
      return { at, message: `${what} ${p.limit === 1 ? 'must not be empty' : `must be at least ${p.limit} characters`}` };
    case 'maxLength':
      return { at, message: `${what} ${said ?? `is longer than ${p.limit} characters`}` };
    case 'minimum':
    case 'maximum':
      return { at, message: `${what} must be from ${parent.minimum} to ${parent.maximum}` };
    case 'minItems':
    case 'minProperties':
      return { at, message: `${what} ${said ?? `needs at least ${plural(p.limit)}`}` };
    default:
      return { at, message: `${what} ${e.message}` };
  }
}
