// The masks one session is under: the policy file's mask entries (from the
// control plane's snapshot) that name the session's identity or one of its
// groups on its resource, merged into one MaskSet.
import type { Mask, MaskFunction as WireMaskFunction } from '@warden/proto';
import type { ColumnMask, DetectorKind, DetectorMask, MaskFunction, MaskSet } from './types.js';

/** The control plane fills keep in for partial; this covers snapshots that lack it. */
const DEFAULT_KEEP = 4;

/** The wire's flat function as the gateway's; unset settings (empty, 0) stay out. */
function maskFunction(f: WireMaskFunction | undefined): MaskFunction {
  switch (f?.fn) {
    case 'redact':
      return f.text ? { fn: 'redact', text: f.text } : { fn: 'redact' };
    case 'partial':
      return f.char ? { fn: 'partial', keep: f.keep || DEFAULT_KEEP, char: f.char } : { fn: 'partial', keep: f.keep || DEFAULT_KEEP };
    case 'hash':
    case 'email':
    case 'null':
      return { fn: f.fn };
    default:
      // A function this gateway does not know (a newer control plane): the safest mask there is.
      return { fn: 'null' };
  }
}

/** Whether an entry names the session: by identity or group, or everyone when it names nobody. */
function applies(m: Mask, identity: string, groups: readonly string[]): boolean {
  if (m.exemptIdentities.includes(identity) || m.exemptGroups.some((g) => groups.includes(g))) return false;
  if (m.identities.length === 0 && m.groups.length === 0) return true;
  return m.identities.includes(identity) || m.groups.some((g) => groups.includes(g));
}

/**
 * The merged masks of the entries that apply to `identity` (with `groups`)
 * on `resource`, in the entries' order, each mask naming its entry as
 * `rule`; undefined when none applies. Predicates are refused, and invalid
 * values refuse the statement, as soon as one entry says so: the strictest
 * entry wins.
 */
export function masksFor(
  masks: readonly Mask[],
  key: Uint8Array,
  resource: string,
  identity: string,
  groups: readonly string[],
): MaskSet | undefined {
  const mine = masks.filter((m) => m.resource === resource && applies(m, identity, groups));
  if (mine.length === 0) return undefined;
  const columns: ColumnMask[] = [];
  const detectors: DetectorMask[] = [];
  for (const m of mine) {
    for (const c of m.columns) columns.push({ pattern: c.pattern, mask: maskFunction(c.mask), rule: m.name });
    for (const d of m.detectors) {
      const detector: DetectorMask = { detector: d.detector as DetectorKind, mask: maskFunction(d.mask), rule: m.name };
      if (d.detector === 'regex') detector.pattern = d.pattern;
      detectors.push(detector);
    }
  }
  return {
    columns,
    detectors,
    // Empty is the default (refuse / null), as in the proto contract.
    predicates: mine.every((m) => m.predicates === 'allow') ? 'allow' : 'refuse',
    onInvalid: mine.some((m) => m.onInvalid === 'refuse') ? 'refuse' : 'null',
    key: Buffer.from(key),
  };
}
