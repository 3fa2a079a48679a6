// Reads and checks a policy file (format in docs/policy.md), reporting every
// problem with the line and column of the offending node: YAML syntax, then
// the shape against policy.schema.json (schema.ts), then what a schema cannot
// say: the store's own rules for each part, unique names and references
// between parts. The CLI runs it for quick feedback; the control plane runs
// it again before applying, and only its verdict counts.
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, type Document, type Node } from 'yaml';
import type { ApprovalRule, Identity, Issuer, Mask, Resource } from '@warden/proto';
import { ConfigError } from '../storage/errors.js';
import { DEFAULT_REQUEST_TTL, durationSeconds, showDuration, validateApprovalRule } from '../storage/validate-approval.js';
import { maskFunctionOf, maskRegexProblem, maskSettingsProblems, validateMask, type MaskSettings } from '../storage/validate-mask.js';
import { validateIdentity, validateIssuer, validateResource } from '../storage/validate.js';
import { POLICY_FORMAT_VERSION, type AccessLevel, type Policy, type PolicyProblem, type PolicyRule } from './model.js';
import { label, shapeProblems, type Segments } from './schema.js';

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

/** Places in the YAML document, found by the path the data has there. */
class Places {
  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  private resolve(node: unknown): Node | null {
    if (isAlias(node)) return (node.resolve(this.doc) as Node | undefined) ?? null;
    return (node as Node | null) ?? null;
  }

  /**
   * The node to point at (a mapping's key, like compilers do, or a list's
   * item; the nearest part found when the path goes no further), and the
   * value's node.
   */
  private walk(at: Segments): { point: Node | null; value: Node | null } {
    let value = this.resolve(this.doc.contents);
    let point = value;
    for (const seg of at) {
      if (isMap(value)) {
        const pair = value.items.find((p) => {
          const key = this.resolve(p.key);
          return isScalar(key) && String(key.value) === seg;
        });
        if (!pair) return { point, value: null };
        point = this.resolve(pair.key) ?? value;
        value = this.resolve(pair.value);
      } else if (isSeq(value)) {
        value = this.resolve(value.items[Number(seg)]);
        point = value ?? point;
      } else return { point, value: null };
    }
    return { point, value };
  }

  pos(at: Segments): { line: number; col: number } {
    return this.lines.linePos(this.walk(at).point?.range?.[0] ?? 0);
  }

  /** A scalar as written, e.g. `4.20` rather than 4.2. */
  source(at: Segments): string | undefined {
    const { value } = this.walk(at);
    return isScalar(value) && typeof value.source === 'string' ? value.source : undefined;
  }
}

type Raw = Record<string, any>;
const isObject = (v: unknown): v is Raw => typeof v === 'object' && v !== null && !Array.isArray(v);
const uniq = (xs: string[] | null | undefined) => [...new Set(xs ?? [])];

/** One mapping of a top-level list, with where it is. */
interface Part {
  v: Raw;
  at: Segments;
  path: string;
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
  const data: unknown = doc.toJS();
  if (data === null || data === undefined) {
    return { ok: false, problems: [{ line: 1, col: 1, message: `the policy file is empty; it needs at least version: ${POLICY_FORMAT_VERSION}` }] };
  }
  const places = new Places(doc, lines);
  const problems: PolicyProblem[] = [];
  const fail = (at: Segments, message: string) => problems.push({ ...places.pos(at), message });

  const shape = shapeProblems(data, { source: (at) => places.source(at) });
  for (const p of shape) fail(p.at, p.message);
  // Parts (and fields) with a shape problem are left out of the checks below: it is reported already.
  const bad = new Set(shape.map((p) => p.at.join('/')));
  const sound = (at: Segments) => ![...bad].some((b) => `${b}/`.startsWith(`${at.join('/')}/`));
  const fieldOk = (part: Part, ...field: string[]) => sound([...part.at, ...field]);

  const top = isObject(data) ? data : {};
  const parts = (key: string): Part[] =>
    (Array.isArray(top[key]) ? (top[key] as unknown[]) : []).flatMap((v, i) =>
      isObject(v) ? [{ v, at: [key, String(i)], path: label(data, [key, String(i)]) }] : [],
    );
  const named = (key: string) => parts(key).filter((p) => typeof p.v.name === 'string' && fieldOk(p, 'name'));

  // The store's own rules for each part whose shape is right.
  const storeCheck = <T>(part: Part, fn: () => T): T | undefined => {
    try {
      return fn();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      fail(part.at, `${part.path}: ${err.message}`);
      return undefined;
    }
  };
  const whole = (key: string) => parts(key).filter((p) => sound(p.at));
  const issuers = whole('issuers').map((p) =>
    storeCheck(p, () =>
      validateIssuer({
        name: p.v.name,
        issuerUrl: p.v.issuer_url,
        audiences: uniq(p.v.audiences),
        jwksUri: p.v.jwks_uri ?? '',
        jwksJson: (p.v.jwks_json ?? '').trim(),
        algorithms: uniq(p.v.algorithms),
      }),
    ),
  );
  const identities = whole('identities').map((p) =>
    storeCheck(p, () =>
      validateIdentity({
        name: p.v.name,
        issuer: p.v.issuer,
        match: Object.entries(p.v.match as Record<string, string>).map(([claim, value]) => ({ claim, value })),
        groups: uniq(p.v.groups),
      }),
    ),
  );
  const resources = whole('resources').map((p) =>
    storeCheck(p, () => validateResource({ name: p.v.name, agent: p.v.agent, description: p.v.description ?? '' })),
  );

  // Names are unique within their kind; a second use is reported where it is.
  for (const [key, kind] of [['issuers', 'issuer'], ['identities', 'identity'], ['resources', 'resource'], ['rules', 'rule'], ['masks', 'mask'], ['approvals', 'approval']] as const) {
    const first = new Map<string, Part>();
    for (const p of named(key)) {
      const earlier = first.get(p.v.name);
      if (!earlier) first.set(p.v.name, p);
      else fail([...p.at, 'name'], `${p.path}.name: ${kind} '${p.v.name}' is already defined at ${earlier.path} (line ${places.pos([...earlier.at, 'name']).line})`);
    }
  }

  // References. A name that is there but invalid is reported at its definition, not at each use.
  const declared = named('issuers').map((p) => p.v.name as string);
  const issuerNames = new Set([...declared, ...(opts.externalIssuers ?? [])]);
  for (const p of parts('identities')) {
    if (typeof p.v.issuer !== 'string' || !fieldOk(p, 'issuer') || issuerNames.has(p.v.issuer)) continue;
    const known = declared.length ? `; issuers here: ${declared.join(', ')}` : '; the file declares no issuers';
    fail([...p.at, 'issuer'], `${p.path}.issuer '${p.v.issuer}' is not an issuer in this file${known}`);
  }
  const namesOf = (key: string) => new Set(parts(key).map((p) => p.v.name));
  const resourceNames = namesOf('resources');
  const identityNames = namesOf('identities');
  for (const p of parts('rules')) {
    if (typeof p.v.resource === 'string' && fieldOk(p, 'resource') && !resourceNames.has(p.v.resource)) {
      fail([...p.at, 'resource'], `${p.path}.resource '${p.v.resource}' is not a resource in this file`);
    }
    const seen = new Set<string>();
    (Array.isArray(p.v.identities) ? (p.v.identities as unknown[]) : []).forEach((name, i) => {
      if (typeof name !== 'string' || seen.has(name) || !fieldOk(p, 'identities', String(i))) return;
      seen.add(name);
      if (!identityNames.has(name)) fail([...p.at, 'identities', String(i)], `${p.path}.identities: '${name}' is not an identity in this file`);
    });
  }

  const masks = checkMasks(parts('masks'), {
    resourceNames,
    identityNames,
    fail,
    fieldOk,
    sound,
    storeCheck,
    label: (at) => label(data, at),
  });
  const approvals = checkApprovals(parts('approvals'), {
    resourceNames,
    identityNames,
    fail,
    fieldOk,
    sound,
    storeCheck,
    label: (at) => label(data, at),
  });

  if (problems.length > 0) {
    const unique = problems.filter((p, i) => problems.findIndex((q) => q.line === p.line && q.col === p.col && q.message === p.message) === i);
    return { ok: false, problems: unique.sort((a, b) => a.line - b.line || a.col - b.col) };
  }
  return {
    ok: true,
    policy: {
      version: POLICY_FORMAT_VERSION,
      issuers: issuers as Issuer[],
      identities: identities as Identity[],
      resources: resources as Resource[],
      rules: parts('rules').map(({ v }): PolicyRule => ({
        name: v.name,
        resource: v.resource,
        identities: uniq(v.identities),
        groups: uniq(v.groups),
        access: (v.access ?? 'read') as AccessLevel,
        allowSchemas: uniq(v.schemas?.allow),
        denySchemas: uniq(v.schemas?.deny),
        allowTables: uniq(v.tables?.allow),
        denyTables: uniq(v.tables?.deny),
        trust: uniq(v.trust),
      })),
      masks: masks as Mask[],
      approvals: approvals as ApprovalRule[],
    },
  };
}

/** A column's or detector's function as written; a bare `mask: null` is YAML's null, meaning the function null. */
const settings = (e: Raw): MaskSettings => ({ mask: e.mask ?? 'null', keep: e.keep, text: e.text, char: e.char });

interface MaskChecks {
  resourceNames: Set<unknown>;
  identityNames: Set<unknown>;
  fail: (at: Segments, message: string) => void;
  fieldOk: (part: Part, ...field: string[]) => boolean;
  sound: (at: Segments) => boolean;
  storeCheck: <T>(part: Part, fn: () => T) => T | undefined;
  /** How the file's data shows a place: masks[0].columns[1].keep. */
  label: (at: Segments) => string;
}

/** A mask's or approval rule's resource and the identities its lists name must be in the file. */
function checkReferences(p: Part, c: MaskChecks, fail: (field: string[], message: string) => void, lists: string[][]): void {
  const at = (...field: string[]) => c.label([...p.at, ...field]);
  if (typeof p.v.resource === 'string' && c.fieldOk(p, 'resource') && !c.resourceNames.has(p.v.resource)) {
    fail(['resource'], `${at('resource')} '${p.v.resource}' is not a resource in this file`);
  }
  for (const field of lists) {
    const list = field.reduce((v: any, k) => (isObject(v) ? v[k] : undefined), p.v);
    const seen = new Set<string>();
    (Array.isArray(list) ? (list as unknown[]) : []).forEach((name, i) => {
      if (typeof name !== 'string' || seen.has(name) || !c.fieldOk(p, ...field, String(i))) return;
      seen.add(name);
      if (!c.identityNames.has(name)) fail([...field, String(i)], `${at(...field)}: '${name}' is not an identity in this file`);
    });
  }
}

/**
 * The masks' references and what the schema cannot say (which settings
 * belong to which function, regular expressions), each at its node; then
 * the store's own check of every entry found sound, which also fills in the
 * defaults.
 */
function checkMasks(masks: Part[], c: MaskChecks): (Mask | undefined)[] {
  return masks.map((p) => {
    let clean = true;
    const fail = (field: string[], message: string) => {
      clean = false;
      c.fail([...p.at, ...field], message);
    };
    const at = (...field: string[]) => c.label([...p.at, ...field]);
    checkReferences(p, c, fail, [['identities'], ['exempt', 'identities']]);
    for (const list of ['columns', 'detectors']) {
      (Array.isArray(p.v[list]) ? (p.v[list] as unknown[]) : []).forEach((e, i) => {
        // Each check needs only its own fields sound: a bad column name does not hide a misplaced keep.
        const ok = (...fields: string[]) => fields.every((f) => c.fieldOk(p, list, String(i), f));
        if (!isObject(e) || !c.fieldOk(p, list, String(i), 'mask')) return;
        for (const [field, message] of maskSettingsProblems(settings(e))) {
          if (ok(field)) fail([list, String(i), field], `${at(list, String(i), field)} ${message}`);
        }
        if (list !== 'detectors' || !ok('detector', 'pattern')) return;
        if (e.detector === 'regex' && e.pattern === undefined) fail([list, String(i), 'detector'], `${at(list, String(i))} needs a pattern for detector regex`);
        else if (e.detector !== 'regex' && e.pattern !== undefined) {
          fail([list, String(i), 'pattern'], `${at(list, String(i), 'pattern')} is only for detector regex, not ${e.detector}`);
        } else if (typeof e.pattern === 'string') {
          const problem = maskRegexProblem(e.pattern);
          if (problem) fail([list, String(i), 'pattern'], `${at(list, String(i), 'pattern')} ${problem}`);
        }
      });
    }
    if (!clean || !c.sound(p.at)) return undefined;
    const v = p.v;
    return c.storeCheck(p, () =>
      validateMask({
        name: v.name,
        resource: v.resource,
        identities: uniq(v.identities),
        groups: uniq(v.groups),
        exemptIdentities: uniq(v.exempt?.identities),
        exemptGroups: uniq(v.exempt?.groups),
        columns: ((v.columns ?? []) as Raw[]).map((e) => ({ pattern: e.column, mask: maskFunctionOf(settings(e)) })),
        detectors: ((v.detectors ?? []) as Raw[]).map((e) => ({ detector: e.detector, pattern: e.pattern ?? '', mask: maskFunctionOf(settings(e)) })),
        predicates: v.predicates ?? 'refuse',
        // `null` written bare is YAML's null: the value 'null' here.
        onInvalid: v.on_invalid ?? 'null',
      }),
    );
  });
}

/**
 * The approval rules' references and durations, each at its node; then the
 * store's own check of every rule found sound, which fills in the defaults.
 */
function checkApprovals(rules: Part[], c: MaskChecks): (ApprovalRule | undefined)[] {
  return rules.map((p) => {
    let clean = true;
    const fail = (field: string[], message: string) => {
      clean = false;
      c.fail([...p.at, ...field], message);
    };
    const at = (...field: string[]) => c.label([...p.at, ...field]);
    checkReferences(p, c, fail, [['identities']]);
    const seconds: Record<string, number> = {};
    for (const field of ['request_ttl', 'approval_ttl', 'wait_timeout']) {
      const v = p.v[field];
      if (v === undefined || v === null || !c.fieldOk(p, field)) continue;
      const s = durationSeconds(v);
      if (s === undefined) fail([field], `${at(field)} '${v}' is invalid: give a duration from 1s to 7d, such as 30s, 15m, 1h or 1d`);
      else seconds[field] = s;
    }
    if (seconds.wait_timeout !== undefined && (p.v.mode ?? 'wait') === 'retry') {
      fail(['wait_timeout'], `${at('wait_timeout')} is only for mode wait: in mode retry the client does not wait`);
    } else if (seconds.wait_timeout !== undefined && seconds.wait_timeout > (seconds.request_ttl ?? DEFAULT_REQUEST_TTL)) {
      const ttl = showDuration(seconds.request_ttl ?? DEFAULT_REQUEST_TTL);
      fail(['wait_timeout'], `${at('wait_timeout')} (${showDuration(seconds.wait_timeout)}) must be at most request_ttl (${ttl}): the request ends then`);
    }
    if (!clean || !c.sound(p.at)) return undefined;
    const v = p.v;
    return c.storeCheck(p, () =>
      validateApprovalRule({
        name: v.name,
        resource: v.resource,
        identities: uniq(v.identities),
        groups: uniq(v.groups),
        kinds: uniq(v.kinds),
        objects: uniq(v.objects),
        withoutWhere: v.without_where === true,
        rowsOver: v.rows_over ?? 0,
        approvers: uniq(v.approvers),
        quorum: v.quorum ?? 1,
        requestTtlSeconds: seconds.request_ttl ?? 0,
        approvalTtlSeconds: seconds.approval_ttl ?? 0,
        mode: v.mode ?? 'wait',
        waitTimeoutSeconds: seconds.wait_timeout ?? 0,
      }),
    );
  });
}

/** Like validatePolicy, but throws PolicyInvalidError. */
export function parsePolicy(text: string, opts: ValidateOptions = {}): Policy {
  const r = validatePolicy(text, opts);
  if (!r.ok) throw new PolicyInvalidError(r.problems);
  return r.policy;
}
