// Masks what the server sends back for the statement it is answering: its
// rows (DataRow, in the text or binary format the client asked for), its
// COPY … TO STDOUT data, and the notices and errors that may echo values.
// A row of a statement whose plan masks nothing is passed on undecoded.
import { bindResultFormats } from '@warden/proto/pgwire';
import { CopyMasker } from './copy.js';
import { compileDetectors } from './detectors.js';
import type { ColumnMasks } from './plan.js';
import { RowMasker, rowDescriptionInfo } from './rows.js';
import { scrubMessage } from './scrub.js';
import type { ColumnPlan, MaskPlan } from './types.js';

/** What the relay knows about the statement being answered. */
export interface AnsweredStatement {
  mask?: MaskPlan;
  protocol: 'simple' | 'extended';
  /** Extended protocol: the Bind message after the statement name, whose tail has the result formats. */
  parameters?: Buffer;
  /** Set here: the masker of this statement's rows or COPY data. */
  masker?: unknown;
}

/** The result could not be masked with certainty: the session must end rather than show it. */
export class UnmaskableResult extends Error {}

export class ResultMasking {
  private readonly detectors: ReturnType<typeof compileDetectors> | undefined;
  /** The last RowDescription, and the statement being answered when it came. */
  private described: { formats: number[]; types: number[]; plan: MaskPlan | undefined; for: AnsweredStatement | undefined } | undefined;

  constructor(
    private readonly masks: ColumnMasks,
    private readonly current: () => AnsweredStatement | undefined,
  ) {
    this.detectors = masks.set.detectors.length ? compileDetectors(masks.set.detectors, masks.set.key) : undefined;
  }

  /**
   * A RowDescription: the formats and types of the rows that follow. Its
   * table oids and column numbers are checked against the plan, so a
   * masked column the statement's text did not show is masked anyway.
   */
  rowDescription(msg: Buffer): void {
    const s = this.current();
    const info = rowDescriptionInfo(msg);
    const plan = this.withDescribedMasks(s?.mask, info.tableOids, info.attnums, info.types);
    this.described = { formats: info.formats, types: info.types, plan, for: s };
    if (s && s.protocol === 'simple') {
      s.masker = undefined;
      // So the audit event lists what the RowDescription added.
      if (plan) s.mask = plan;
    }
  }

  dataRow(msg: Buffer): Buffer | null {
    const s = this.current();
    if (!s) return null;
    let masker = s.masker as RowMasker | null | undefined;
    if (masker === undefined) {
      // A RowDescription that came while this statement was answered describes its rows (simple protocol, or Describe before Execute).
      const described = this.described?.for === s ? this.described : undefined;
      const simple = s.protocol === 'simple';
      const plan = simple ? (described?.plan ?? s.mask) : s.mask;
      masker = s.masker = needsWork(plan)
        ? new RowMasker(plan!, this.masks.set, this.detectors, simple ? (described?.formats ?? []) : s.parameters && s.parameters.length >= 2 ? bindResultFormats(s.parameters) : [], described?.types)
        : null;
    }
    if (masker === null) return null;
    try {
      return masker.dataRow(msg);
    } catch (err) {
      throw new UnmaskableResult((err as Error).message);
    }
  }

  /** CopyOutResponse: COPY … TO STDOUT starts; its overall format is in the message. */
  copyOut(msg: Buffer): void {
    const s = this.current();
    if (!s) return;
    const plan = s.mask;
    if (!needsWork(plan)) {
      s.masker = null;
      return;
    }
    if (!plan!.copy) throw new UnmaskableResult('a COPY whose format Warden did not see');
    s.masker = new CopyMasker(plan!, this.masks.set, this.detectors, msg[5]!);
  }

  copyData(msg: Buffer): Buffer | null {
    const masker = this.current()?.masker;
    if (!(masker instanceof CopyMasker)) return null;
    try {
      return masker.data(msg);
    } catch (err) {
      throw new UnmaskableResult((err as Error).message);
    }
  }

  /** NoticeResponse or ErrorResponse: the fields that echo row values are withheld when the statement reaches masked columns. */
  message(msg: Buffer): Buffer | null {
    const withhold = this.current()?.mask?.scrubMessages ?? false;
    if (!withhold && !this.detectors) return null;
    return scrubMessage(msg, this.detectors, withhold);
  }

  /** The plan, with the masks of columns the RowDescription names but the plan left clear. */
  private withDescribedMasks(plan: MaskPlan | undefined, oids: number[], attnums: number[], types: number[]): MaskPlan | undefined {
    if (this.masks.empty) return plan;
    const catalog = this.masks.catalog();
    let columns: Array<ColumnPlan | null> | undefined;
    for (let i = 0; i < oids.length; i++) {
      if (!oids[i] || plan?.columns[i]) continue;
      const table = catalog?.relationOids?.[oids[i]!];
      if (!table) continue;
      const dot = table.indexOf('.');
      const ref = { schema: table.slice(0, dot), table: table.slice(dot + 1), column: '' };
      const col = catalog!.columns?.[table]?.find((c) => c.attnum === attnums[i]);
      if (!col) continue;
      ref.column = col.name;
      const m = this.masks.find(ref);
      if (!m) continue;
      columns ??= plan?.columns.length ? [...plan.columns] : new Array<ColumnPlan | null>(oids.length).fill(null);
      columns[i] = { mask: m.mask, type: types[i] ?? col.type, textLike: col.textLike, column: `${table}.${col.name}`, rule: m.rule };
    }
    if (!columns) return plan;
    const base = plan ?? this.masks.plain;
    return { ...base, columns, masked: [...new Set([...base.masked, ...columns.filter((c) => c).map((c) => c!.column)])] };
  }
}

function needsWork(plan: MaskPlan | undefined): boolean {
  return plan !== undefined && (plan.columns.length > 0 || plan.detect);
}
