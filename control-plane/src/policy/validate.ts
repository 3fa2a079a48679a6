// Reads and checks a policy file (format in docs/policy.md). Three passes,
// each reporting every problem it finds with the line and column of the
// offending node: YAML syntax, then the shape of each part, then references
// between parts. The CLI runs it for quick feedback; the control plane runs
// it again before applying, and only its verdict counts.
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, type Document, type Node, type Pair } from 'yaml';
import type { Identity, Issuer, Resource } from '@warden/proto';
import { ConfigError } from '../storage/errors.js';
import {
  NAME,
  SCHEMA_ENTRY,
  TABLE_ENTRY,
  checkGroup,
  trustProblem,
  validateIdentity,
  validateIssuer,
  validateResource,
} from '../storage/validate.js';
import {
  ACCESS_LEVELS,
  ALGORITHMS,
  POLICY_FORMAT_VERSION,
  SHAPES,
  type AccessLevel,
  type Policy,
  type PolicyProblem,
  type PolicyRule,
  type ShapeName,
} from './model.js';

export interface ValidateOptions {
  /**
   * Issuers that identities may name without the file declaring them: the
   * `local-dev` issuer that local mode manages, when the store has it.
   */
  externalIssuers?: readonly string[];
}

export type ValidateResult = { ok: true; policy: Policy } | { ok: false; problems: PolicyProblem[] };

/** Thrown by the strict variant; carries every problem. */
export class PolicyInvalidError extends Error {
  constructor(readonly problems: PolicyProblem[]) {
    super(problems.map((p) => `${p.line}:${p.col}: ${p.message}`).join('\n'));
    this.name = 'PolicyInvalidError';
  }
}

/** A field's value and the node to point at when it is wrong (the key, like compilers do). */
interface Field {
  value: Node | null;
  at: Node;
}

const NAME_RULE = "use 1-63 lowercase letters, digits, '-' or '_'";

class Checker {
  readonly problems: PolicyProblem[] = [];

  constructor(
    private readonly doc: Document,
    readonly lines: LineCounter,
  ) {}

  fail(node: Node | null | undefined, message: string): void {
    const offset = node?.range?.[0] ?? 0;
    const { line, col } = this.lines.linePos(offset);
    this.problems.push({ line, col, message });
  }

  resolve(node: unknown): Node | null {
    if (isAlias(node)) return (node.resolve(this.doc) as Node | undefined) ?? null;
    return (node as Node | null) ?? null;
  }

  /** The fields of a mapping; unknown keys and missing required ones are reported. */
  fields(node: Node | null, at: Node, path: string, shape: ShapeName): Map<string, Field> | undefined {
    const { keys, required } = SHAPES[shape];
    if (!isMap(node)) {
      const what = path || 'the policy file';
      this.fail(node ?? at, `${what} must be a mapping of ${keys.join(', ')}`);
      return undefined;
    }
    const out = new Map<string, Field>();
    for (const pair of node.items as Pair<unknown, unknown>[]) {
      const key = this.resolve(pair.key);
      const name = isScalar(key) ? String(key.value) : undefined;
      const where = key ?? node;
      if (name === undefined) {
        this.fail(where, `${path || 'the policy file'} has a key that is not a plain name`);
        continue;
      }
      if (!(keys as readonly string[]).includes(name)) {
        const full = path ? `${path}.${name}` : name;
        this.fail(where, `${full} is not a known field; use ${keys.join(', ')}`);
        continue;
      }
      out.set(name, { value: this.resolve(pair.value), at: where });
    }
    for (const name of required) {
      if (!out.has(name)) this.fail(node, `${path ? `${path}.` : ''}${name} is required`);
    }
    return out;
  }

  /** A string value; `undefined` (and a problem) when it is something else. */
  string(f: Field | undefined, path: string): string | undefined {
    if (!f) return undefined;
    const v = f.value;
    if (isScalar(v) && typeof v.value === 'string') return v.value;
    if (!v || (isScalar(v) && v.value === null)) this.fail(f.at, `${path} needs a value`);
    else if (isScalar(v)) this.fail(f.at, `${path} must be a string (quote it: "${String(v.source ?? v.value)}")`);
    else this.fail(f.at, `${path} must be a string`);
    return undefined;
  }

  name(f: Field | undefined, path: string): string | undefined {
    const s = this.string(f, path);
    if (s === undefined) return undefined;
    if (!NAME.test(s)) {
      this.fail(f!.at, `${path} '${s}' is invalid: ${NAME_RULE}`);
      return undefined;
    }
    return s;
  }

  /**
   * A list of strings; an absent or empty (null) field is an empty list. Each
   * item is checked with `item`, which returns an error message or nothing.
   */
  strings(f: Field | undefined, path: string, item?: (s: string) => string | undefined): { values: string[]; nodes: Node[] } {
    const values: string[] = [];
    const nodes: Node[] = [];
    if (!f || !f.value || (isScalar(f.value) && f.value.value === null)) return { values, nodes };
    if (!isSeq(f.value)) {
      const hint = isScalar(f.value) ? ` (write [${String(f.value.value)}])` : '';
      this.fail(f.at, `${path} must be a list${hint}`);
      return { values, nodes };
    }
    f.value.items.forEach((raw, i) => {
      const node = this.resolve(raw);
      const where = node ?? f.value!;
      if (!isScalar(node) || typeof node.value !== 'string') {
        this.fail(where, `${path}[${i}] must be a string`);
        return;
      }
      const problem = item?.(node.value);
      if (problem) {
        this.fail(where, `${path}[${i}] ${problem}`);
        return;
      }
      if (!values.includes(node.value)) {
        values.push(node.value);
        nodes.push(node);
      }
    });
    return { values, nodes };
  }

  /** A list of mappings (issuers, identities, …); absent or null is empty. */
  list(f: Field | undefined, path: string): { node: Node; path: string }[] {
    if (!f || !f.value || (isScalar(f.value) && f.value.value === null)) return [];
    if (!isSeq(f.value)) {
      this.fail(f.at, `${path} must be a list`);
      return [];
    }
    return f.value.items.map((raw, i) => {
      const node = this.resolve(raw) ?? f.value!;
      return { node, path: `${path}[${i}]` };
    });
  }
}

const nameProblem = (s: string) => (NAME.test(s) ? undefined : `'${s}' is invalid: ${NAME_RULE}`);
const groupProblem = (s: string) => {
  try {
    checkGroup(s);
    return undefined;
  } catch {
    return `'${s}' is invalid: it must be non-empty, without surrounding spaces or control characters`;
  }
};
const schemaProblem = (s: string) => (SCHEMA_ENTRY.test(s) ? undefined : `'${s}' is invalid: give a schema name without dots or spaces`);
const tableProblem = (s: string) =>
  TABLE_ENTRY.test(s) ? undefined : `'${s}' is invalid: give schema.table, or table for that name in any schema`;
const algProblem = (s: string) =>
  (ALGORITHMS as readonly string[]).includes(s) ? undefined : `'${s}' is not supported; use one of ${ALGORITHMS.join(', ')}`;

/** Runs one of the store's validators, pointing its complaint at `node`. */
function storeCheck<T>(c: Checker, node: Node, path: string, fn: () => T): T | undefined {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    c.fail(node, `${path}: ${err.message}`);
    return undefined;
  }
}

interface Named<T> {
  value: T;
  path: string;
  nameAt: Node;
  node: Node;
}

function parseIssuer(c: Checker, node: Node, path: string): Named<Issuer> | undefined {
  const f = c.fields(node, node, path, 'issuer');
  if (!f) return undefined;
  const name = c.name(f.get('name'), `${path}.name`);
  const issuerUrl = c.string(f.get('issuer_url'), `${path}.issuer_url`);
  const before = c.problems.length;
  const audiences = c.strings(f.get('audiences'), `${path}.audiences`, (s) => (s.trim() ? undefined : 'must not be empty'));
  if (f.has('audiences') && audiences.values.length === 0 && c.problems.length === before) {
    c.fail(f.get('audiences')!.at, `${path}.audiences needs at least one audience`);
  }
  const jwksUri = f.has('jwks_uri') ? c.string(f.get('jwks_uri'), `${path}.jwks_uri`) : '';
  const jwksJson = f.has('jwks_json') ? c.string(f.get('jwks_json'), `${path}.jwks_json`) : '';
  const algorithms = c.strings(f.get('algorithms'), `${path}.algorithms`, algProblem);
  if (name === undefined) return undefined;
  const raw = { name, issuerUrl: issuerUrl ?? '', audiences: audiences.values, jwksUri: jwksUri ?? '', jwksJson: (jwksJson ?? '').trim(), algorithms: algorithms.values };
  // Parts with problems still take part in the reference checks, so one run reports everything.
  const whole = issuerUrl !== undefined && jwksUri !== undefined && jwksJson !== undefined && audiences.values.length > 0;
  const issuer = (whole && storeCheck(c, node, path, () => validateIssuer(raw))) || raw;
  return { value: issuer, path, nameAt: f.get('name')!.at, node };
}

function parseIdentity(c: Checker, node: Node, path: string): (Named<Identity> & { issuerAt?: Node }) | undefined {
  const f = c.fields(node, node, path, 'identity');
  if (!f) return undefined;
  const name = c.name(f.get('name'), `${path}.name`);
  const issuer = c.name(f.get('issuer'), `${path}.issuer`);
  const groups = c.strings(f.get('groups'), `${path}.groups`, groupProblem);
  const match: { claim: string; value: string }[] = [];
  const m = f.get('match');
  let matchOk = false;
  if (m) {
    if (!isMap(m.value)) {
      c.fail(m.at, `${path}.match must be a mapping of claim: value, e.g. { sub: "repo:acme/app:*" }`);
    } else if (m.value.items.length === 0) {
      c.fail(m.at, `${path}.match needs at least one claim (without one, every token of the issuer would match)`);
    } else {
      matchOk = true;
      for (const pair of m.value.items as Pair<unknown, unknown>[]) {
        const key = c.resolve(pair.key);
        const claim = isScalar(key) ? String(key.value) : '';
        const where = key ?? m.value;
        if (!claim || /\s/.test(claim)) {
          c.fail(where, `${path}.match has an invalid claim name '${claim}': it must be non-empty without spaces`);
          matchOk = false;
          continue;
        }
        const value = c.string({ value: c.resolve(pair.value), at: where }, `${path}.match.${claim}`);
        if (value === undefined) {
          matchOk = false;
          continue;
        }
        if (value.slice(0, -1).includes('*')) {
          c.fail(where, `${path}.match.${claim} '${value}': '*' is only allowed at the end, as a prefix wildcard`);
          matchOk = false;
          continue;
        }
        match.push({ claim, value });
      }
    }
  }
  if (name === undefined) return undefined;
  const raw = { name, issuer: issuer ?? '', match, groups: groups.values };
  const identity = (issuer !== undefined && matchOk && storeCheck(c, node, path, () => validateIdentity(raw))) || raw;
  return { value: identity, path, nameAt: f.get('name')!.at, node, issuerAt: issuer === undefined ? undefined : f.get('issuer')!.at };
}

function parseResource(c: Checker, node: Node, path: string): Named<Resource> | undefined {
  const f = c.fields(node, node, path, 'resource');
  if (!f) return undefined;
  const name = c.name(f.get('name'), `${path}.name`);
  const agent = c.name(f.get('agent'), `${path}.agent`);
  const description = f.has('description') ? c.string(f.get('description'), `${path}.description`) : '';
  if (name === undefined) return undefined;
  const raw = { name, agent: agent ?? '', description: description ?? '' };
  const resource = (agent !== undefined && description !== undefined && storeCheck(c, node, path, () => validateResource(raw))) || raw;
  return { value: resource, path, nameAt: f.get('name')!.at, node };
}

interface ParsedRule extends Named<PolicyRule> {
  /** Unset when the resource field itself has a problem (already reported). */
  resourceAt?: Node;
  identityNodes: Node[];
}

function parseScope(c: Checker, f: Field | undefined, path: string, check: (s: string) => string | undefined) {
  if (!f || !f.value || (isScalar(f.value) && f.value.value === null)) return { allow: [], deny: [] };
  const s = c.fields(f.value, f.at, path, 'scope');
  if (!s) return { allow: [], deny: [] };
  return { allow: c.strings(s.get('allow'), `${path}.allow`, check).values, deny: c.strings(s.get('deny'), `${path}.deny`, check).values };
}

function parseRule(c: Checker, node: Node, path: string): ParsedRule | undefined {
  const f = c.fields(node, node, path, 'rule');
  if (!f) return undefined;
  const name = c.name(f.get('name'), `${path}.name`);
  const resource = c.name(f.get('resource'), `${path}.resource`);
  const subjectProblems = c.problems.length;
  const identities = c.strings(f.get('identities'), `${path}.identities`, nameProblem);
  const groups = c.strings(f.get('groups'), `${path}.groups`, groupProblem);
  // Bad entries are reported as such, not as "no subjects" too.
  const noSubjects = identities.values.length === 0 && groups.values.length === 0 && c.problems.length === subjectProblems;
  if (noSubjects) c.fail(node, `${path} needs at least one of identities or groups`);
  let access: AccessLevel = 'read';
  const a = f.get('access');
  if (a) {
    const v = a.value;
    if (isScalar(v) && typeof v.value === 'string' && (ACCESS_LEVELS as readonly string[]).includes(v.value)) {
      access = v.value as AccessLevel;
    } else {
      c.fail(a.at, `${path}.access must be one of ${ACCESS_LEVELS.join(', ')}`);
    }
  }
  const schemas = parseScope(c, f.get('schemas'), `${path}.schemas`, schemaProblem);
  const tables = parseScope(c, f.get('tables'), `${path}.tables`, tableProblem);
  const trust = c.strings(f.get('trust'), `${path}.trust`, trustProblem);
  if (name === undefined) return undefined;
  return {
    value: {
      name,
      resource: resource ?? '',
      identities: identities.values,
      groups: groups.values,
      access,
      allowSchemas: schemas.allow,
      denySchemas: schemas.deny,
      allowTables: tables.allow,
      denyTables: tables.deny,
      trust: trust.values,
    },
    path,
    nameAt: f.get('name')!.at,
    node,
    resourceAt: resource === undefined ? undefined : f.get('resource')!.at,
    identityNodes: identities.nodes,
  };
}

/** Reports a second use of a name, pointing at the later one. */
function unique<T extends { name: string }>(c: Checker, items: Named<T>[], kind: string): void {
  const seen = new Map<string, Named<T>>();
  for (const item of items) {
    const first = seen.get(item.value.name);
    if (first) {
      const { line } = c.lines.linePos(first.nameAt.range?.[0] ?? 0);
      c.fail(item.nameAt, `${item.path}.name: ${kind} '${item.value.name}' is already defined at ${first.path} (line ${line})`);
    } else seen.set(item.value.name, item);
  }
}

/** Parses and checks a policy file's text. */
export function validatePolicy(text: string, opts: ValidateOptions = {}): ValidateResult {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((e) => {
        const { line, col } = lines.linePos(e.pos[0]);
        return { line, col, message: `YAML: ${e.message}` };
      }),
    };
  }
  const c = new Checker(doc, lines);
  const root = c.resolve(doc.contents);
  if (!root || (isScalar(root) && root.value === null)) {
    return { ok: false, problems: [{ line: 1, col: 1, message: `the policy file is empty; it needs at least version: ${POLICY_FORMAT_VERSION}` }] };
  }
  const top = c.fields(root, root, '', 'policy');
  if (!top) return { ok: false, problems: c.problems };

  const v = top.get('version');
  if (v && !(isScalar(v.value) && v.value.value === POLICY_FORMAT_VERSION)) {
    c.fail(v.at, `version must be ${POLICY_FORMAT_VERSION}`);
  }

  // Shape pass: every part on its own.
  const issuers = c.list(top.get('issuers'), 'issuers').map((x) => parseIssuer(c, x.node, x.path));
  const identities = c.list(top.get('identities'), 'identities').map((x) => parseIdentity(c, x.node, x.path));
  const resources = c.list(top.get('resources'), 'resources').map((x) => parseResource(c, x.node, x.path));
  const rules = c.list(top.get('rules'), 'rules').map((x) => parseRule(c, x.node, x.path));
  const ok = <T>(xs: (T | undefined)[]) => xs.filter((x): x is T => x !== undefined);

  // Reference pass, on the parts that passed the shape pass.
  const is = ok(issuers);
  const ids = ok(identities);
  const rs = ok(resources);
  const rus = ok(rules);
  unique(c, is, 'issuer');
  unique(c, ids, 'identity');
  unique(c, rs, 'resource');
  unique(c, rus, 'rule');

  const issuerNames = new Set([...is.map((i) => i.value.name), ...(opts.externalIssuers ?? [])]);
  const fileIssuers = is.map((i) => i.value.name);
  for (const id of ids) {
    if (id.issuerAt && !issuerNames.has(id.value.issuer)) {
      const known = fileIssuers.length ? `; issuers here: ${fileIssuers.join(', ')}` : '; the file declares no issuers';
      c.fail(id.issuerAt!, `${id.path}.issuer '${id.value.issuer}' is not an issuer in this file${known}`);
    }
  }
  // A name that is there but invalid is reported at its definition, not at each use.
  const namesIn = (f: Field | undefined) => {
    const seq = f?.value;
    if (!isSeq(seq)) return new Set<string>();
    return new Set(
      seq.items.map((item) => {
        const m = c.resolve(item);
        const n = isMap(m) ? m.get('name') : undefined;
        return typeof n === 'string' ? n : '';
      }),
    );
  };
  const resourceNames = namesIn(top.get('resources'));
  const identityNames = namesIn(top.get('identities'));
  for (const rule of rus) {
    if (rule.resourceAt && !resourceNames.has(rule.value.resource)) {
      c.fail(rule.resourceAt, `${rule.path}.resource '${rule.value.resource}' is not a resource in this file`);
    }
    rule.value.identities.forEach((name, i) => {
      if (!identityNames.has(name)) c.fail(rule.identityNodes[i], `${rule.path}.identities: '${name}' is not an identity in this file`);
    });
  }

  if (c.problems.length > 0) {
    const problems = [...c.problems].sort((a, b) => a.line - b.line || a.col - b.col);
    return { ok: false, problems };
  }
  return {
    ok: true,
    policy: {
      version: POLICY_FORMAT_VERSION,
      issuers: is.map((x) => x.value),
      identities: ids.map((x) => x.value),
      resources: rs.map((x) => x.value),
      rules: rus.map((x) => x.value),
    },
  };
}

/** Like validatePolicy, but throws PolicyInvalidError. */
export function parsePolicy(text: string, opts: ValidateOptions = {}): Policy {
  const r = validatePolicy(text, opts);
  if (!r.ok) throw new PolicyInvalidError(r.problems);
  return r.policy;
}
