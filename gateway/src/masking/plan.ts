// From where a statement's masked columns flow (lineage) to how its results
// are masked, or why it is refused: only a plain reference to a masked column
// can be masked faithfully; anything computed from one, a filter over one,
// or a copy of one into a table would give its values away.
import type { ResourceCatalog } from '../catalog/types.js';
import type { Reach } from '../policy/reach.js';
import type { StatementInfo } from '../policy/types.js';
import { maskable } from './values.js';
import type { ColumnMask, ColumnPlan, ColumnRef, Lineage, MaskFunction, MaskPlan, MaskSet } from './types.js';

/** The masks of one session, matched against stored column names (with inheritance). */
export class ColumnMasks {
  /** The plan of a statement that reaches no masked column: detectors only. */
  readonly plain: MaskPlan;
  /** Per catalog read: function → the masked table its code reads, or null. */
  private functionReads = new WeakMap<ResourceCatalog, Map<string, string | null>>();

  constructor(
    readonly set: MaskSet,
    readonly catalog: () => ResourceCatalog | undefined,
  ) {
    this.plain = { columns: [], detect: set.detectors.length > 0, scrubMessages: false, masked: [] };
  }

  get empty(): boolean {
    return this.set.columns.length === 0;
  }

  /**
   * The mask on a column. Rows of a child or partition come back through its
   * parent, and a parent's mask covers its children: both ways count.
   */
  find(ref: ColumnRef): ColumnMask | undefined {
    for (const table of this.family(`${ref.schema}.${ref.table}`)) {
      const dot = table.indexOf('.');
      const m = this.match(table.slice(0, dot), table.slice(dot + 1), ref.column);
      if (m) return m;
    }
    return undefined;
  }

  /** The stored column's type; text when the catalog does not say (masks then treat it as text). */
  type(ref: ColumnRef): { type: number; textLike: boolean; typmod?: number } {
    const col = this.catalog()?.columns?.[`${ref.schema}.${ref.table}`]?.find((c) => c.name === ref.column);
    return col ? { type: col.type, textLike: col.textLike, typmod: col.typmod } : { type: 25, textLike: true };
  }

  /**
   * Why a user function's code (its body, and what that calls) may carry
   * masked values, found with `reachOf`; null when it reads none. A
   * function's result is not traced column by column, so one that reads
   * masked data, or whose code Warden cannot read, is refused.
   */
  codeReach(fn: string, paths: ReadonlyArray<string | null>, reachOf: (info: StatementInfo) => Reach): string | null {
    const catalog = this.catalog();
    if (!catalog) return null;
    let memo = this.functionReads.get(catalog);
    if (!memo) this.functionReads.set(catalog, (memo = new Map()));
    // Its body's unqualified names may be placed through the caller's path.
    const key = `${fn}\u0000${paths.join('\u0000')}`;
    let found = memo.get(key);
    if (found === undefined) {
      const dot = fn.indexOf('.');
      const r = reachOf({ access: 'read', kind: 'SELECT', text: '', objects: [{ type: 'function', schema: fn.slice(0, dot), name: fn.slice(dot + 1) }] });
      const t = r.tables.find((x) => this.hasMaskedColumns(x.schema, x.name));
      found = t ? `reads masked columns of ${t.schema}.${t.name} out of Warden's sight` : r.unscoped[0] ? `may read masked columns out of Warden's sight: ${r.unscoped[0]}` : null;
      memo.set(key, found);
    }
    return found;
  }

  /** "schema.table.column (mask rule)" of the table's first masked column, for messages; the table when the catalog lists no column. */
  describeMasked(schema: string, table: string): string {
    for (const c of this.catalog()?.columns?.[`${schema}.${table}`] ?? []) {
      const m = this.find({ schema, table, column: c.name });
      if (m) return `column ${schema}.${table}.${c.name} (mask ${m.rule})`;
    }
    return `columns of ${schema}.${table}`;
  }

  /** Whether any column of the table (or its family) may be masked. */
  hasMaskedColumns(schema: string, table: string): boolean {
    for (const t of this.family(`${schema}.${table}`)) {
      const dot = t.indexOf('.');
      if (this.set.columns.some((c) => tablePart(c.pattern, t.slice(0, dot), t.slice(dot + 1)))) return true;
    }
    return false;
  }

  private match(schema: string, table: string, column: string): ColumnMask | undefined {
    return this.set.columns.find((c) => tablePart(c.pattern, schema, table) && part(c.pattern.split('.')[2], column));
  }

  /** The table, its ancestors and its descendants. */
  private family(key: string): string[] {
    const c = this.catalog();
    const out = [key];
    if (!c) return out;
    const walk = (k: string, edges: Record<string, string[]> | undefined) => {
      for (const next of edges?.[k] ?? []) {
        if (out.includes(next) || out.length > 64) continue;
        out.push(next);
        walk(next, edges);
      }
    };
    walk(key, c.children);
    walk(key, c.parents);
    return out;
  }
}

function part(pattern: string | undefined, name: string): boolean {
  return pattern === '*' || pattern === name;
}

function tablePart(pattern: string, schema: string, table: string): boolean {
  const [s, t] = pattern.split('.');
  return part(s, schema) && part(t, table);
}

const name = (c: ColumnRef) => `${c.schema}.${c.table}.${c.column}`;

/** Strongest first: when one output may carry several masked columns (UNION ALL), it gets the mask that shows least. */
const STRENGTH: Record<MaskFunction['fn'], number> = { null: 0, redact: 1, hash: 2, email: 3, partial: 4 };

export type PlanResult = { plan: MaskPlan } | { refusal: string };

/**
 * How a statement's results are masked. `scrub`: the statement reaches a
 * table with masked columns, so server messages may echo their values.
 */
export function planMasks(l: Lineage, masks: ColumnMasks, scrub: boolean, withoutCatalog = false): PlanResult {
  const col = (c: ColumnRef) => {
    const m = masks.find(c);
    return `masked column ${name(c)}${m ? ` (mask ${m.rule})` : ''}`;
  };
  // Without the database (policy check), `*` cannot be expanded; the gateway, which has the catalog, masks what it finds.
  const unknown = withoutCatalog ? l.opaque.filter((o) => o.why.startsWith('cannot expand * ')) : [];
  for (const o of l.opaque) if (!unknown.includes(o)) return { refusal: `follow ${o.why}: it reaches ${col(o.column)}` };
  for (const w of l.written) return { refusal: `copy the values of ${col(w.column)} into ${w.into}` };
  if (masks.set.predicates === 'refuse') {
    for (const p of l.predicates) return { refusal: `use ${col(p.column)} in ${p.where}, which would tell its values; the mask entry may allow it with predicates: allow` };
  }
  const columns: Array<ColumnPlan | null> = [];
  const masked: string[] = [];
  for (const out of l.outputs ?? []) {
    const derived = out.derived[0];
    if (derived) return { refusal: `return an expression over ${col(derived)}: only the column itself can be masked, so select it plainly` };
    let best: { ref: ColumnRef; mask: ColumnMask } | undefined;
    for (const ref of out.direct) {
      const mask = masks.find(ref);
      if (mask && (!best || STRENGTH[mask.mask.fn] < STRENGTH[best.mask.mask.fn])) best = { ref, mask };
    }
    if (!best) {
      columns.push(null);
      continue;
    }
    const type = masks.type(best.ref);
    let fn = best.mask.mask;
    if (!maskable(fn, type.type, type.textLike)) {
      if (masks.set.onInvalid === 'refuse') {
        return { refusal: `return ${col(best.ref)}: its ${fn.fn} mask cannot give a value of the column's type, and the mask entry says to refuse` };
      }
      fn = { fn: 'null' };
    }
    const plan: ColumnPlan = { mask: fn, type: type.type, textLike: type.textLike, column: name(best.ref), rule: best.mask.rule };
    if (type.typmod !== undefined) plan.typmod = type.typmod;
    columns.push(plan);
    masked.push(name(best.ref));
  }
  const plan: MaskPlan = {
    columns: masked.length ? columns : [],
    detect: masks.set.detectors.length > 0,
    scrubMessages: scrub,
    masked: [...new Set(masked)],
  };
  if (unknown.length) plan.unknown = [...new Set(unknown.map((o) => `${o.column.schema}.${o.column.table}`))];
  if (l.copy) plan.copy = l.copy;
  if (l.cursor?.binary) plan.binary = true;
  return { plan };
}

/** Whether two mask sets mask alike (a policy version that changes nothing for a session leaves it be). */
export function sameMasks(a: MaskSet | undefined, b: MaskSet | undefined): boolean {
  if (!a || !b) return a === b;
  const text = (m: MaskSet) => JSON.stringify({ ...m, key: Buffer.from(m.key).toString('hex') });
  return text(a) === text(b);
}
