// One session's policy: decides each Query or Parse text statement by
// statement, carrying the session's state from one statement to the next as
// Postgres will run them (search_path and its transaction semantics, SQL and
// protocol prepared statements), so unqualified names are placed in the
// schema the server will use. The gateway, `warden policy check` and the
// tests all decide through this class.
//
// The hot path stays a lookup: a statement's decision is cached per session
// until something it may depend on changes (the search_path values the
// server may be using, the resource's catalog, the rules).
import type { ApprovalMatcher, Hold } from '../approvals/rules.js';
import type { ResourceCatalog } from '../catalog/types.js';
import { createdRelation } from '../masking/code.js';
import { definedCode } from './code.js';
import { lineage } from '../masking/lineage.js';
import { planMasks, type ColumnMasks } from '../masking/plan.js';
import type { Lineage, MaskPlan } from '../masking/types.js';
import type { ClassificationCache } from './cache.js';
import { classify } from './classify.js';
import { reach, type Reach } from './reach.js';
import type { Decision, Refusal, Rule } from './rules.js';
import { PathMachine, pathEffects, type PathEffect } from './search-path.js';
import { classifySetting } from './settings.js';
import { accessAllows, accessRank, type Access, type Classification, type StatementInfo } from './types.js';

export interface GateContext {
  identity: string;
  resource: string;
  rules: Rule[];
  /** The resource's catalog as the gateway has it now (read on every decision, never awaited). */
  catalog?: () => ResourceCatalog | undefined;
  /** The database may have changed (DDL ran, or a name was not in the catalog): read it again. */
  catalogChanged?: () => void;
  /** The masks the session's results are under, if any. */
  masks?: ColumnMasks;
  /** The approval rules that apply to the session, if any: which allowed statements wait for a human. */
  approvals?: ApprovalMatcher;
  /** `policy check` without a database: assume no schema is named after the login role. */
  assumeNoUserSchema?: boolean;
}

/** search_path when neither a startup parameter nor the catalog says: Postgres' default. */
export const DEFAULT_SEARCH_PATH = '"$user", public';

/** Startup parameters that are the protocol's, not settings. */
const PROTOCOL_PARAMETERS = new Set(['user', 'database', 'options', 'replication']);

interface Prepared {
  classification: Classification;
  /** search_path values executing it would set. */
  targets: Array<string | null>;
  /** A protocol prepared statement under masks: how its results were planned to be masked when it was parsed. */
  mask?: MaskPlan;
}

export class StatementGate {
  private decisions = new WeakMap<Classification, Decision>();
  private top: Rule | undefined;
  private machine: PathMachine | undefined;
  /** search_path values the server may be using now; one value once everything sent is answered. */
  private possible: Array<string | null> = [];
  /** Prepared statements ('P' protocol, 'S' SQL PREPARE): re-resolved by the server when the path changes. */
  private readonly prepared = new Map<string, Prepared>();
  private catalogSeen: ResourceCatalog | undefined;
  private startupPath: string | undefined;
  /** Relations the session created: not in the catalog yet, and holding only what the session put there. */
  private readonly created = new Set<string>();
  /** SQL cursors declared in the session: a FETCH returns the DECLARE's columns, masked the same way. */
  private readonly cursors = new Map<string, MaskPlan>();

  constructor(
    private readonly ctx: GateContext,
    private readonly cache: ClassificationCache,
  ) {
    this.setRules(ctx.rules, ctx.masks);
  }

  /** A new policy version takes effect on the next statement of open sessions. */
  setRules(rules: Rule[], masks: ColumnMasks | undefined): void {
    this.ctx.rules = rules;
    this.ctx.masks = masks;
    this.top = [...rules].sort((a, b) => accessRank(b.access) - accessRank(a.access))[0];
    this.decisions = new WeakMap();
  }

  /** New approval rules (a policy change) take effect on the next statement, like new rules. */
  setApprovals(matcher: ApprovalMatcher | undefined): void {
    this.ctx.approvals = matcher;
    this.decisions = new WeakMap();
  }

  get ceiling(): Access | undefined {
    return this.top?.access;
  }

  /** The name of the rule that sets the ceiling: the agent maps it to a native role. */
  get ceilingRule(): string | undefined {
    return this.top?.name;
  }

  /** The session's search_path when it is known for certain (one value, nothing unanswered changing it); null otherwise. */
  get searchPath(): string | null {
    const paths = this.paths();
    return paths.length === 1 ? (paths[0] ?? null) : null;
  }

  /**
   * Checks the client's startup parameters, which are settings like any SET:
   * one above the identity's level is refused. search_path among them is the
   * path the session starts with.
   */
  startup(parameters: Readonly<Record<string, string>>): Refusal | null {
    for (const [raw, value] of Object.entries(parameters)) {
      const name = raw.toLowerCase();
      if (PROTOCOL_PARAMETERS.has(name)) continue;
      const verdict = classifySetting(name, { op: 'set', value });
      if (!accessAllows(this.top?.access ?? 'read', verdict.level) || verdict.escalation) {
        const r = this.refusal(0, `set ${name} at connection time`);
        return { ...r, message: `${r.message}${verdict.reason ? ` (${verdict.reason})` : ''}` };
      }
      if (name === 'search_path') this.startupPath = value;
    }
    return null;
  }

  /** The current search_path values; the machine starts lazily, once the catalog can tell the default. */
  private paths(): Array<string | null> {
    const catalog = this.ctx.catalog?.();
    if (catalog !== this.catalogSeen) {
      this.catalogSeen = catalog;
      this.decisions = new WeakMap();
    }
    if (!this.machine) {
      // Without a catalog the gateway cannot know the role's default path (null) until one arrives.
      const initial = this.startupPath ?? catalog?.searchPath ?? (this.ctx.catalog ? null : DEFAULT_SEARCH_PATH);
      this.machine = new PathMachine(initial);
      this.possible = [initial];
    } else if (catalog && this.machine.learnInitial(catalog.searchPath)) {
      this.setPossible(this.possible.map((p) => p ?? catalog.searchPath));
    }
    return this.possible;
  }

  /** Decides every statement of a Query string (or a Parse text) in order, up to the first refused one. */
  check(sql: string, parse?: { name: string }): Decision {
    const classification = this.cache.get(sql);
    const paths = this.paths();
    let decision = this.decisions.get(classification);
    if (!decision) {
      decision = this.decide(classification, paths, parse !== undefined);
      if (decision.cacheable) this.decisions.set(classification, decision);
    }
    if (!decision.refusal) this.note(decision, parse);
    return decision;
  }

  /** The FunctionCall message calls a function by oid, outside SQL: admin only. */
  checkFunctionCall(): Refusal | null {
    if (this.top?.access === 'admin') return null;
    return this.refusal(0, 'call functions through the FunctionCall protocol message');
  }

  /** For `policy check`: the decided text ran as its own query, allowed statements succeeding and a refused one failing. */
  assumeRan(decision: Decision): void {
    if (!this.machine) return;
    for (const fx of decision.effects) this.settled(fx, true);
    if (decision.refusal) this.settled(undefined, false);
    this.ready(this.machine.status(), true);
  }

  /** A protocol prepared statement was closed (Close 'S'). */
  closed(name: string): void {
    this.prepared.delete(`P${name}`);
  }

  // Outcomes, in the order the server answered.

  /** A statement the gateway let through ran (ok) or failed. */
  settled(effects: readonly PathEffect[] | undefined, ok: boolean, info?: StatementInfo): void {
    if (ok && info && (info.access === 'ddl' || info.access === 'admin')) this.ctx.catalogChanged?.();
    if (!this.machine) return;
    if (ok) this.machine.succeeded(effects ?? []);
    else this.machine.failed();
  }

  /** ReadyForQuery; `idle` when nothing sent is still unanswered: the path is known again. */
  ready(status: string, idle: boolean): void {
    if (!this.machine) return;
    this.machine.ready(status);
    if (!idle) return;
    const values = new Set<string | null>([this.machine.current]);
    for (const p of this.prepared.values()) for (const t of p.targets) values.add(t);
    this.setPossible([...values]);
  }

  private setPossible(values: Array<string | null>): void {
    if (values.length === this.possible.length && values.every((v) => this.possible.includes(v))) return;
    this.possible = values;
    this.decisions = new WeakMap();
  }

  /** Remembers what an allowed text will do: prepared statements, and the paths it may set. */
  private note(decision: Decision, parse: { name: string } | undefined): void {
    const c = decision.classification;
    if (!c.ok) return;
    const added: Array<string | null> = [];
    for (const [i, s] of c.statements.entries()) {
      if (s.kind === 'PREPARE' && s.preparedName !== undefined) {
        this.prepared.set(`S${s.preparedName}`, { classification: { ok: true, statements: [s] }, targets: targetsOf(s, this.machine?.initial ?? null) });
      } else if (s.kind === 'DEALLOCATE') {
        if (s.preparedName !== undefined) this.prepared.delete(`S${s.preparedName}`);
        else for (const k of [...this.prepared.keys()]) if (k.startsWith('S')) this.prepared.delete(k);
      }
      for (const e of decision.effects[i] ?? []) {
        if (e.op === 'set') added.push(e.value);
        else if (e.op === 'reset') added.push(this.machine?.initial ?? null);
      }
    }
    if (parse) {
      const targets = c.statements.length === 1 ? targetsOf(c.statements[0]!, this.machine?.initial ?? null) : [];
      this.prepared.set(`P${parse.name}`, { classification: c, targets, mask: decision.masks?.[0] });
      added.push(...targets);
    }
    const grown = added.filter((v) => !this.possible.includes(v));
    if (grown.length) this.setPossible([...this.possible, ...grown]);
  }

  private decide(c: Classification, start: ReadonlyArray<string | null>, isParse: boolean): Decision {
    if (!c.ok) {
      if (this.top?.access === 'admin') return { refusal: null, classification: c, rule: this.top.name, effects: [], cacheable: true };
      return {
        classification: c,
        effects: [],
        cacheable: true,
        refusal: {
          sqlstate: '42601',
          index: 0,
          rule: this.top?.name,
          message: `warden: could not parse the statement, and statements Warden cannot parse are refused below admin access: ${c.error}`,
        },
      };
    }
    const effects: PathEffect[][] = [];
    let cacheable = true;
    let decidingRule: string | undefined;
    let masks: Array<MaskPlan | undefined> | undefined;
    let holds: Array<Hold | undefined> | undefined;
    // Without rules nothing is held, and the matcher is not asked.
    const approvals = this.ctx.approvals && !this.ctx.approvals.empty ? this.ctx.approvals : undefined;
    // Statements of one text run in order, each only if the ones before it succeeded.
    const sim = this.machine ? this.machine.clone() : undefined;
    // With nothing unanswered the simulation starts from the server's own state and is exact.
    const exact = sim !== undefined && start.length === 1 && start[0] === sim.current;
    let paths: Array<string | null> = [...start];
    // SQL PREPARE and DEALLOCATE earlier in the same text (null: deallocated).
    const local = new Map<string, Prepared | null>();
    for (let i = 0; i < c.statements.length; i++) {
      const s = c.statements[i]!;
      if (s.escalation) {
        const r = this.refusal(i, s.kind, s);
        return { classification: c, effects, cacheable, masks, holds, rule: decidingRule, refusal: { ...r, message: `${r.message}; changing the session's role is never allowed through Warden` } };
      }
      let target: StatementInfo = s;
      if (s.kind === 'EXECUTE' || s.kind === 'PREPARE' || s.kind === 'DEALLOCATE') cacheable = false;
      if (s.kind === 'EXECUTE' && s.preparedName !== undefined) {
        const key = `S${s.preparedName}`;
        const p = local.has(key) ? local.get(key) : this.prepared.get(key);
        if (p?.classification.ok) target = executed(s, p.classification.statements[0]!);
        // Every PREPARE passes the gateway: one it has not seen will fail upstream, or is a route it cannot judge.
        else target = { ...s, unscoped: `EXECUTE of prepared statement "${s.preparedName}", which Warden has not seen prepared` };
      } else if (s.kind === 'PREPARE' && s.preparedName !== undefined) {
        local.set(`S${s.preparedName}`, { classification: { ok: true, statements: [s] }, targets: targetsOf(s, this.machine?.initial ?? null) });
      } else if (s.kind === 'DEALLOCATE') {
        if (s.preparedName !== undefined) local.set(`S${s.preparedName}`, null);
        else for (const k of [...this.prepared.keys(), ...local.keys()]) if (k.startsWith('S')) local.set(k, null);
      }
      const verdict = this.statement(target, paths);
      if (verdict.refusal) return { classification: c, effects, cacheable, masks, holds, rule: decidingRule, refusal: { ...this.refusal(i, verdict.refusal, s), reach: verdict.reach } };
      decidingRule ??= verdict.rule;
      if (this.ctx.masks) {
        if (MASK_STATEFUL.has(s.kind)) cacheable = false;
        const text = target !== s && s.kind === 'EXECUTE' ? preparedText(s, local, this.prepared) : s.text;
        const m = this.maskPlan(s, text, verdict, paths);
        if ('refusal' in m) {
          const r = this.refusal(i, m.refusal, s);
          return { classification: c, effects, cacheable, masks, holds, rule: decidingRule, refusal: { ...r, rule: verdict.rule, message: `warden: ${this.ctx.identity} on ${this.ctx.resource} may not ${m.refusal}`, reach: verdict.reach } };
        }
        (masks ??= [])[i] = m.plan;
      }
      const fx = s.kind === 'PREPARE' ? [] : pathEffects(s.kind, s.text, s.pathChanges, isDefinite(s));
      if (s.kind === 'EXECUTE' && target !== s) fx.push(...pathEffects(target.kind, target.text, target.pathChanges, false));
      if (verdict.reach?.losesPath) fx.push({ op: 'set', value: null, local: false, maybe: true });
      effects.push(fx);
      // A path change must not turn a statement prepared earlier into a route around the scopes.
      // A Parse's effects happen when it is executed, at a time the text cannot tell.
      const next = isParse
        ? nextPaths(paths, undefined, [], targetsOf(s, this.machine?.initial ?? null), start, false)
        : nextPaths(paths, sim, fx, [], start, exact);
      if (next !== paths) {
        // This depends on the prepared statements of the moment, which the cache does not key.
        cacheable = false;
        const broken = this.brokenPrepared(next, local);
        if (broken) {
          const r = this.refusal(i, 'change search_path', s);
          const why = `: prepared statement "${broken.name}" would then reach ${broken.what}; DEALLOCATE or close it first`;
          return { classification: c, effects, cacheable, masks, holds, rule: decidingRule, refusal: { ...r, message: r.message.replace(/ \(rule: [^)]*\)$|$/, (m) => `${why}${m}`) } };
        }
        paths = next;
      }
      if (approvals) {
        // An EXECUTE is held as what it runs: its PREPARE's text and reach. A rule's trust in code is for its scopes, not for holds.
        const text = target !== s && s.kind === 'EXECUTE' ? preparedText(s, local, this.prepared) : s.text;
        (holds ??= [])[i] = approvals.match(target, text, verdict.shared);
      }
    }
    return { refusal: null, classification: c, rule: decidingRule, effects, cacheable, masks, holds };
  }

  /**
   * How an allowed statement's results are masked, or why it is refused:
   * the statement's own text says where masked columns flow; code that runs
   * unseen (functions, triggers, policies) and the statistics catalogs must
   * not reach them at all.
   */
  private maskPlan(s: StatementInfo, text: string, verdict: { rule?: string; reach?: Reach }, paths: ReadonlyArray<string | null>): { plan?: MaskPlan } | { refusal: string } {
    const masks = this.ctx.masks!;
    const r = verdict.reach;
    const catalog = this.catalogSeen;
    const reaches = !masks.empty && r !== undefined && r.tables.some((t) => masks.hasMaskedColumns(t.schema, t.name));
    if (!masks.empty) {
      const refusal = this.unseenRoute(s, text, r, reaches, paths, verdict.rule);
      if (refusal) return { refusal };
    }
    const cursorKind = s.kind === 'FETCH' || s.kind === 'DECLARE CURSOR';
    if (!reaches && !cursorKind && !(masks.set.detectors.length && s.kind.startsWith('COPY'))) return { plan: masks.plain };
    let l: Lineage;
    try {
      l = lineage(text, {
        catalog,
        paths,
        isMasked: (ref) => masks.find(ref) !== undefined,
        maskedTable: (schema, table) => masks.hasMaskedColumns(schema, table),
        assumeNoUserSchema: this.ctx.assumeNoUserSchema,
      });
    } catch (err) {
      // Fail closed: a statement whose flow cannot be followed is not run under masks.
      return { refusal: `${describe(s)}: Warden could not follow where its masked columns flow (${(err as Error).message})` };
    }
    if (l.fetch) {
      if (!l.fetch.returnsRows) return {};
      const plan = this.cursors.get(l.fetch.name);
      if (plan) return { plan };
      if (masks.empty) return { plan: masks.plain };
      return { refusal: `FETCH from cursor "${l.fetch.name}", which Warden has not seen declared, so it cannot tell which of its columns are masked` };
    }
    const result = planMasks(l, masks, reaches, !this.ctx.catalog);
    // PREPARE returns no rows (EXECUTE is planned when it runs), but what it would refuse is refused now.
    if ('plan' in result && s.kind === 'PREPARE') return { plan: { ...masks.plain, scrubMessages: reaches } };
    // COPY TO a file or a program writes the rows where masking cannot reach them.
    if ('plan' in result && result.plan.masked.length && (s.kind === 'COPY TO FILE' || s.kind === 'COPY TO PROGRAM')) {
      return { refusal: `${s.kind} with masked column ${result.plan.masked[0]}: only COPY TO STDOUT can be masked` };
    }
    if ('plan' in result && l.cursor) this.cursors.set(l.cursor.name, result.plan);
    return result;
  }

  /**
   * Routes by which masked values could leave without passing through a
   * statement's result columns: code Warden cannot follow column by
   * column (functions, DO blocks, rules), stored queries a masked identity
   * defines, catalogs with values of every table, and relations the
   * catalog does not know yet (a view made a moment ago may read anything).
   */
  private unseenRoute(s: StatementInfo, text: string, r: Reach | undefined, reaches: boolean, paths: ReadonlyArray<string | null>, rule: string | undefined): string | undefined {
    const masks = this.ctx.masks!;
    const catalog = this.catalogSeen;
    if (this.ctx.catalog && !catalog && s.objects.some((o) => o.type === 'table' || o.type === 'function')) {
      return `${describe(s)} while the resource's catalog cannot be read: masking needs it to know which columns a statement returns; retry shortly`;
    }
    if (r?.dataCatalogs.length) return `read ${r.dataCatalogs[0]}: it may show masked values`;
    const reachOf = (info: StatementInfo) => reach(info, { catalog, paths, assumeNoUserSchema: this.ctx.assumeNoUserSchema });
    const code = CODE_KINDS.has(s.kind) ? definedCode(text) : undefined;
    if (code) {
      const what = s.kind === 'DO' ? 'run a DO block' : `${s.kind.toLowerCase()} ${describe(s).slice(s.kind.length + 1)}`;
      if ('unreadable' in code) return `${what} under masks: ${code.unreadable}, so Warden cannot tell whether it reads masked columns`;
      for (const body of code.texts) {
        const c = classify(body);
        if (!c.ok) return `${what} under masks: its code does not parse`;
        const t = c.statements.flatMap((x) => reachOf(x).tables).find((x) => masks.hasMaskedColumns(x.schema, x.name));
        if (t) return `${what} whose code reads masked columns of ${t.schema}.${t.name}, out of Warden's sight`;
      }
    }
    // What a CREATE makes is new, and holds only what the session puts there.
    if (s.kind.startsWith('CREATE ') || s.kind === 'SELECT INTO') {
      const made = createdRelation(text);
      if (made) this.created.add(made);
    }
    if (catalog && r) {
      for (const t of r.tables) {
        const key = `${t.schema}.${t.name}`;
        if (catalog.relations[key] || this.created.has(t.name)) continue;
        if (Date.now() - catalog.fetchedAt > 1000) this.ctx.catalogChanged?.();
        return `read ${key}, which is not in the resource's catalog yet, so masking cannot tell what it returns; retry in a moment`;
      }
    }
    if (!r) return undefined;
    const trust = this.ctx.rules.find((x) => x.name === rule)?.trust ?? [];
    for (const f of r.functions) {
      const key = `${f.schema}.${f.name}`;
      if (trust.includes(key)) continue;
      const why = masks.codeReach(key, paths, reachOf);
      if (why) return `call ${key}${f.via ? ` (through ${f.via})` : ''}, which ${why}`;
    }
    if (!reaches) return undefined;
    // Changing a table with masked columns (renaming it or them, a generated column over one) would move values out from under their masks.
    if (CHANGES_TABLE.test(s.kind)) {
      const t = r.tables.find((x) => !x.via && masks.hasMaskedColumns(x.schema, x.name));
      if (t) return `${s.kind.toLowerCase()} on ${t.schema}.${t.name}: a change there could move its masked ${masks.describeMasked(t.schema, t.name)} out from under the mask`;
    }
    if (STORED_QUERIES.has(s.kind)) {
      const t = r.tables.find((x) => masks.hasMaskedColumns(x.schema, x.name))!;
      return `${s.kind.toLowerCase()} over masked columns of ${t.schema}.${t.name}: what it stores would run out of Warden's sight`;
    }
    const ruled = r.tables.find((t) => t.via?.startsWith('a rule on') && masks.hasMaskedColumns(t.schema, t.name));
    if (ruled) return `${describe(s)}: ${ruled.via} reads masked columns of ${ruled.schema}.${ruled.name}, out of Warden's sight`;
    return undefined;
  }

  /** One statement against the rules, under the given search_path values. */
  /** `reach` is the deciding rule's (trusted code counts as itself); `shared` follows all code, for approval holds. */
  private statement(s: StatementInfo, paths: ReadonlyArray<string | null>): { rule?: string; refusal?: string; reach?: Reach; shared?: Reach } {
    const catalog = this.catalogSeen;
    const shared = reach(s, { catalog, paths, assumeNoUserSchema: this.ctx.assumeNoUserSchema });
    // A relation the catalog does not know was made after it was read: read it again for the next statements.
    // (At most once a second, so names that exist nowhere cannot keep the agent busy.)
    if (catalog && shared.unknown && Date.now() - catalog.fetchedAt > 1000) this.ctx.catalogChanged?.();
    let first: string | undefined;
    for (const rule of this.ctx.rules) {
      const r = rule.trust?.length ? reach(s, { catalog, paths, trusted: new Set(rule.trust), assumeNoUserSchema: this.ctx.assumeNoUserSchema }) : shared;
      if (!accessAllows(rule.access, r.level)) {
        first ??= r.reason ? `${describe(s)} (${r.reason})` : describe(s);
        continue;
      }
      const v = violation(rule, r);
      if (v === undefined) return { rule: rule.name, reach: r, shared };
      first ??= `${s.kind} ${v}`;
    }
    return { refusal: first ?? describe(s), reach: shared };
  }

  /** A prepared statement that the new path values would let out of scope. */
  private brokenPrepared(paths: ReadonlyArray<string | null>, local: ReadonlyMap<string, Prepared | null>): { name: string; what: string } | undefined {
    const all = new Map<string, Prepared | null>([...this.prepared, ...local]);
    for (const [key, p] of all) {
      if (!p?.classification.ok) continue;
      for (const s of p.classification.statements) {
        const v = this.statement(s, paths);
        if (v.refusal) return { name: key.slice(1) || '(unnamed)', what: v.refusal.replace(/^\S+ /, '') };
        // Its rows are masked as planned at Parse: the new path must not move its names onto other columns.
        if (p.mask && this.ctx.masks) {
          const m = this.maskPlan(s, s.text, v, paths);
          if ('refusal' in m || JSON.stringify(m.plan?.columns) !== JSON.stringify(p.mask.columns)) {
            return { name: key.slice(1) || '(unnamed)', what: 'other columns than it was masked for' };
          }
        }
      }
    }
    return undefined;
  }

  private refusal(index: number, what: string, s?: StatementInfo): Refusal {
    const { identity, resource } = this.ctx;
    const access = this.top?.access ?? 'no access';
    const rule = this.top?.name;
    const why = s?.reason && what === describe(s) ? ` (${s.reason})` : '';
    return {
      sqlstate: '42501',
      index,
      statement: s,
      rule,
      message: `warden: ${identity} (${access}) may not ${what} on ${resource}${why}${rule ? ` (rule: ${rule})` : ''}`,
    };
  }
}

/** DDL that changes a table's names, columns or the code run on its rows. */
const CHANGES_TABLE = /^(ALTER |CREATE (UNIQUE )?INDEX|CREATE TRIGGER|CREATE STATISTICS)/;

/** Statements whose code (a body, a block) runs out of the gate's sight: only they are parsed again for it. */
const CODE_KINDS = new Set(['DO', 'CREATE FUNCTION', 'CREATE PROCEDURE']);

/** Statements that store a query the server runs later, where masking cannot follow it. */
const STORED_QUERIES = new Set(['CREATE VIEW', 'CREATE RULE', 'CREATE POLICY', 'ALTER POLICY']);

/** Statements whose masking depends on cursors declared earlier in the session. */
const MASK_STATEFUL = new Set(['DECLARE CURSOR', 'FETCH']);

/** The PREPARE text an EXECUTE runs, for lineage (its reach was checked already). */
function preparedText(exec: StatementInfo, local: ReadonlyMap<string, Prepared | null>, prepared: ReadonlyMap<string, Prepared>): string {
  const key = `S${exec.preparedName}`;
  const p = local.has(key) ? local.get(key) : prepared.get(key);
  return p?.classification.ok ? p.classification.statements[0]!.text : exec.text;
}

/** EXECUTE of a SQL prepared statement: its own parameters, and the prepared statement's reach. */
function executed(exec: StatementInfo, prepared: StatementInfo): StatementInfo {
  const info: StatementInfo = { ...prepared, kind: 'EXECUTE', text: exec.text, objects: [...prepared.objects, ...exec.objects] };
  if (accessRank(exec.access) > accessRank(info.access) && !exec.reason?.startsWith('EXECUTE runs')) info.access = exec.access;
  // Operators in EXECUTE's own parameters run too.
  if (exec.operators) info.operators = [...new Set([...(prepared.operators ?? []), ...exec.operators])];
  return info;
}

/** SET and RESET change the path for certain; set_config inside a query may run any number of times, or never. */
function isDefinite(s: StatementInfo): boolean {
  return s.kind.startsWith('SET') || s.kind.startsWith('RESET') || s.kind === 'DISCARD ALL';
}

/** The path values executing `s` later would set. */
function targetsOf(s: StatementInfo, initial: string | null): Array<string | null> {
  return (s.pathChanges ?? []).map((c) => (c.op === 'reset' ? initial : (c.value ?? null)));
}

/** The path values the next statement of the same text may see. */
function nextPaths(
  paths: Array<string | null>,
  sim: PathMachine | undefined,
  fx: PathEffect[],
  later: Array<string | null>,
  start: ReadonlyArray<string | null>,
  exact: boolean,
): Array<string | null> {
  if (!fx.length && !later.length) return paths;
  if (sim) sim.succeeded(fx);
  const out = new Set<string | null>();
  const definite = fx.some((e) => (e.op === 'set' && !e.maybe) || e.op === 'reset');
  if (!definite) for (const p of paths) out.add(p);
  for (const e of fx) if (e.op === 'set') out.add(e.value);
  if (sim) out.add(sim.current);
  // A transaction end or savepoint rollback returns to a value that only an exact simulation can tell.
  if (fx.some((e) => e.op === 'commit' || e.op === 'rollback' || e.op === 'rollback to')) {
    if (exact) {
      out.clear();
      out.add(sim!.current);
    } else for (const p of [...paths, ...start]) out.add(p);
  }
  for (const t of later) out.add(t);
  return [...out];
}

/** What the rule forbids in `r`, as "p.secret (through view public.v)"; undefined when nothing. */
export function violation(rule: Rule, r: Reach): string | undefined {
  const definer = r.definers.find((d) => !rule.trust?.includes(d));
  if (definer) return `SECURITY DEFINER function ${definer} (it runs with its owner's privileges: the rule must trust it by name)`;
  if (!isScoped(rule)) return undefined;
  for (const t of r.tables) {
    if (!tableInScope(rule, t.schema, t.name)) return `${t.schema}.${t.name}${t.via ? ` (through ${t.via})` : ''}`;
  }
  for (const s of r.schemas) {
    if (!schemaInScope(rule, s) || rule.allowTables.length || rule.denyTables.some((e) => e.startsWith(`${s}.`) || !e.includes('.'))) return `schema ${s} as a whole`;
  }
  for (const f of r.functions) if (!schemaInScope(rule, f.schema)) return `${f.schema}.${f.name}${f.via ? ` (through ${f.via})` : ''}`;
  for (const o of r.operators) if (!schemaInScope(rule, o.schema)) return `operator ${o.schema}.${o.name}${o.via ? ` (through ${o.via})` : ''}`;
  if (r.unplaced.length) return `${r.unplaced[0]}; qualify the name with its schema`;
  if (r.unscoped.length) return `what the rule's scopes cannot place: ${r.unscoped[0]}`;
  if (r.dataCatalogs.length) return r.dataCatalogs[0];
  return undefined;
}

export function isScoped(rule: Rule): boolean {
  return rule.allowSchemas.length > 0 || rule.denySchemas.length > 0 || rule.allowTables.length > 0 || rule.denyTables.length > 0;
}

function schemaInScope(rule: Rule, schema: string): boolean {
  if (rule.denySchemas.includes(schema)) return false;
  return rule.allowSchemas.length === 0 || rule.allowSchemas.includes(schema);
}

function tableInScope(rule: Rule, schema: string, table: string): boolean {
  if (!schemaInScope(rule, schema)) return false;
  const matches = (entry: string) => {
    const dot = entry.indexOf('.');
    return dot < 0 ? entry === table : entry.slice(0, dot) === schema && entry.slice(dot + 1) === table;
  };
  if (rule.denyTables.some(matches)) return false;
  return rule.allowTables.length === 0 || rule.allowTables.some(matches);
}

/** "DROP TABLE public.orders", "SELECT FROM public.orders" */
export function describe(s: StatementInfo): string {
  const objects = s.objects.filter((o) => o.type !== 'function').map((o) => (o.schema ? `${o.schema}.${o.name}` : o.name));
  return objects.length ? `${s.kind} ${objects.join(', ')}` : s.kind;
}

