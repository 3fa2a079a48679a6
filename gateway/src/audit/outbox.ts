// The gateway's durable outbox of audit events: an append-only log of records
// split into numbered segment files, plus a cursor file saying how far the
// transport has confirmed delivery. Events appended in one turn of the event
// loop are written together once the turn is done, and a session hands a
// result to its client only after that write (afterWrite); a write into the
// page cache survives the process being killed, and fsyncs are batched for
// power loss. So whatever a client saw is sent after a crash or a transport
// outage. Fully delivered segments are deleted.
//
// A record is one event as a field of AuditBatch (record.ts): any run of
// records is an AuditBatch, which the transports send as written, reading only
// each event's head (id, resource, identity), not decoding the event.
import {
  closeSync,
  fsync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { AuditEvent } from '@warden/proto';
import { eventFromRecord } from '@warden/proto/audit';
import type { Logger } from 'pino';
import { lockOutbox } from './lock.js';
import { encodeRecord, recordAt, recordHead, type RecordHead } from './record.js';

export interface OutboxLimits {
  /** A new segment is started once the current one is this large. */
  segmentBytes: number;
  /** Undelivered bytes beyond which new events are dropped (and said so, loudly). */
  maxBytes: number;
  /** How often written data is fsynced. */
  fsyncMs: number;
  /** Once everything is delivered and the current segment is this large, it is replaced by an empty one. */
  compactBytes: number;
}

export const DEFAULT_OUTBOX_LIMITS: OutboxLimits = {
  segmentBytes: 8 << 20,
  maxBytes: 1 << 30,
  fsyncMs: 100,
  compactBytes: 1 << 20,
};

/** Where an entry ends: the cursor value that acknowledges it. */
export interface Position {
  segment: number;
  offset: number;
}

/** An undelivered record, as read back. */
export class OutboxEntry {
  constructor(
    /** The record as stored: an AuditBatch holding the event. */
    readonly record: Buffer,
    /** Where the event starts in the record. */
    private readonly bodyAt: number,
    /** The event's id, resource and identity. */
    readonly head: RecordHead,
    readonly end: Position,
    private decoded?: AuditEvent,
  ) {}

  /** The whole event, decoded when first asked for (the transports do not). */
  get event(): AuditEvent {
    return (this.decoded ??= AuditEvent.decode(this.record.subarray(this.bodyAt)));
  }
}

const SEGMENT = /^(\d{10})\.pb$/;
const segmentName = (n: number) => `${String(n).padStart(10, '0')}.pb`;
const CURSOR = 'cursor.json';
/** What versions before the protobuf records wrote: JSON lines, and their cursor. */
const LEGACY_SEGMENT = /^(\d{10})\.jsonl$/;
const legacyName = (n: number) => `${String(n).padStart(10, '0')}.jsonl`;
const LEGACY_CURSOR = 'acked.json';
const READ_CHUNK = 256 << 10;
/** The share of maxBytes from which statements are refused; the rest is for those under way. */
const BLOCKED_AT = 0.95;
const LOUD_EVERY_MS = 10_000;
const CURSOR_SAVE_MS = 1_000;
const EMPTY: Buffer = Buffer.alloc(0);

export class Outbox {
  private readonly sizes = new Map<number, number>();
  private cursor: Position;
  private head: number;
  private fd: number;
  private dirty = false;
  private cursorDirty = false;
  private cursorSavedAt = 0;
  private syncing = false;
  private closeAfterSync: number[] = [];
  private readonly timer: NodeJS.Timeout;
  private waiters: (() => void)[] = [];
  private dropped = 0;
  private lastLoud = 0;
  /** The last write's error, until a write succeeds again. */
  private writeError: string | undefined;
  private closed = false;
  /** Set with closed, once the queue has been written for the last time. */
  private closedFd = false;
  /** Records appended in this event-loop turn, written together. */
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private flushScheduled = false;
  private waitingForWrite: (() => void)[] = [];
  private readonly unlock: () => void;
  /**
   * Where this process's own records begin. Those before it, left by an
   * earlier run, are decoded whole before they are sent (one damaged on disk
   * would make a whole batch undecodable downstream); our own are not.
   */
  private readonly ownFrom: Position;

  private constructor(
    readonly dir: string,
    private readonly limits: OutboxLimits,
    private readonly log: Logger,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.unlock = lockOutbox(dir);
    const segments = readdirSync(dir)
      .map((f) => SEGMENT.exec(f)?.[1])
      .filter((n): n is string => n !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    for (const n of segments) this.sizes.set(n, statSync(join(dir, segmentName(n))).size);
    this.head = segments.at(-1) ?? 1;
    this.repairTail();
    this.cursor = this.loadCursor(segments[0] ?? this.head);
    this.dropBefore(this.cursor.segment);
    this.fd = openSync(join(dir, segmentName(this.head)), 'a+', 0o600);
    if (!this.sizes.has(this.head)) this.sizes.set(this.head, 0);
    this.ownFrom = { segment: this.head, offset: this.sizes.get(this.head)! };
    this.timer = setInterval(() => this.sync(), limits.fsyncMs);
    this.timer.unref();
    this.migrateJsonLines();
  }

  static open(dir: string, log: Logger, limits: Partial<OutboxLimits> = {}): Outbox {
    return new Outbox(dir, { ...DEFAULT_OUTBOX_LIMITS, ...limits }, log);
  }

  /**
   * Stores one event; one that records no statement run (`mayUseReserve`
   * false: a refusal) not into the last 5 %, kept for the statements under
   * way, which a client retrying refused statements would otherwise use up.
   * Never throws: a full outbox drops the event with an error log; when the
   * disk fails, events wait in memory (up to a segment's size, then they are
   * dropped too) and are written once it works again. The events of a turn
   * are written together by flush() once it is done (readers flush first, to
   * see them): a write per event was one of the gateway's largest costs.
   */
  append(event: AuditEvent, mayUseReserve = true): boolean {
    if (this.closed) return this.drop('the outbox is closed');
    const data = encodeRecord(event);
    const limit = mayUseReserve ? this.limits.maxBytes : this.limits.maxBytes * BLOCKED_AT;
    if (this.pendingBytes() + this.queuedBytes + data.length > limit) {
      return this.drop(`the outbox holds ${this.pendingBytes()} undelivered bytes (limit ${this.limits.maxBytes})`);
    }
    // While writes fail, what waits in memory is bounded too (statements are refused meanwhile: what comes is not theirs).
    if (this.writeError && this.queuedBytes + data.length > this.limits.segmentBytes) {
      return this.drop(`writing the outbox failed (${this.writeError}) and ${this.queuedBytes} bytes wait in memory`);
    }
    this.queue.push(data);
    this.queuedBytes += data.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    return true;
  }

  /**
   * Stores records as they are (what an earlier run left in the statement
   * journal), written and fsynced before it returns, whatever the limits:
   * they are the record of statements that may have run. Throws when they
   * could not be written.
   */
  keep(records: Buffer[]): void {
    for (const r of records) {
      this.queue.push(r);
      this.queuedBytes += r.length;
    }
    this.flush();
    if (this.writeError) throw new Error(`cannot write the audit outbox in ${this.dir}: ${this.writeError}`);
    fsyncSync(this.fd);
  }

  /** Whether records appended are waiting for this turn's write. */
  get writing(): boolean {
    return this.queue.length > 0;
  }

  /**
   * Why new statements must not run now, or undefined: the outbox is closed,
   * its last write failed, or it is nearly full (the last 5 % are kept for the
   * events of statements already under way). Audit does not fail open: the
   * gateway refuses statements while this says why.
   */
  blocked(): string | undefined {
    let why: string | undefined;
    if (this.closed) why = 'the audit outbox is closed';
    else if (this.writeError) why = `writing the audit outbox failed (${this.writeError})`;
    else if (this.pendingBytes() + this.queuedBytes >= this.limits.maxBytes * BLOCKED_AT) {
      why = `the audit outbox is full (${this.pendingBytes()} undelivered bytes, limit ${this.limits.maxBytes}); check the audit transport (NATS or the control plane)`;
    }
    return why;
  }

  /**
   * Runs `fn` once every event appended so far is written: at once when none
   * waits, else right after this turn's single write. The gateway hands
   * results to clients this way, so a turn's events cost one write however
   * many sessions answered in it, and no client sees a result before its
   * record is written. Runs `fn` even if the write failed (which is logged).
   */
  afterWrite(fn: () => void): void {
    if (this.queue.length === 0 || this.closedFd) fn();
    else this.waitingForWrite.push(fn);
  }

  /** Writes the events appended in this turn now; readers call it so they see them. */
  flush(): void {
    this.flushScheduled = false;
    this.write();
    if (this.waitingForWrite.length === 0) return;
    const waiting = this.waitingForWrite;
    this.waitingForWrite = [];
    for (const fn of waiting) fn();
  }

  private write(): void {
    if (this.queue.length === 0 || this.closedFd) return;
    const data = this.queue.length === 1 ? this.queue[0]! : Buffer.concat(this.queue, this.queuedBytes);
    let written = 0;
    try {
      if (this.sizes.get(this.head)! >= this.limits.segmentBytes) this.rollOver();
      while (written < data.length) written += writeSync(this.fd, data, written);
      this.sizes.set(this.head, this.sizes.get(this.head)! + data.length);
      this.dirty = true;
    } catch (err) {
      // Half a record would swallow the next one: cut it off again.
      if (written > 0) {
        try {
          ftruncateSync(this.fd, this.sizes.get(this.head)!);
        } catch {
          // repairTail() cleans up at the next start
        }
      }
      // Kept and written again (the periodic sync retries): they may be the records of statements that ran.
      // New statements are refused meanwhile (blocked()), so what waits here is bounded by those under way.
      this.queue = [data];
      if (!this.writeError) this.log.error({ err, dir: this.dir }, 'writing the audit outbox failed; the events are kept in memory and written again when it works');
      this.writeError = (err as Error).message;
      return;
    }
    this.queue = [];
    this.queuedBytes = 0;
    if (this.writeError) this.log.warn({ dir: this.dir }, 'writing the audit outbox works again; the events kept meanwhile are written');
    this.writeError = undefined;
    if (this.dropped > 0) {
      this.log.warn({ dropped: this.dropped }, 'audit outbox accepts events again; the dropped events are missing from the audit trail');
      this.dropped = 0;
    }
    this.wake();
  }

  /** Up to `max` undelivered entries (and about `maxBytes`, at least one), oldest first, starting at the cursor. */
  read(max: number, maxBytes = 1 << 20): OutboxEntry[] {
    this.flush();
    const out: OutboxEntry[] = [];
    let bytes = 0;
    let pos = { ...this.cursor };
    // Bytes of pos.segment from offset chunkAt on, read ahead.
    let chunk = EMPTY;
    let chunkAt = 0;
    while (out.length < max && bytes < maxBytes) {
      const size = this.sizes.get(pos.segment) ?? 0;
      if (pos.offset >= size) {
        if (pos.segment >= this.head) break;
        pos = { segment: pos.segment + 1, offset: 0 };
        chunk = EMPTY;
        chunkAt = 0;
        continue;
      }
      let at = pos.offset - chunkAt;
      let rec = recordAt(chunk, at);
      if (rec === undefined || (rec && rec.end > chunk.length)) {
        // Read on from here: a chunk, or the whole record when it is longer.
        chunk = this.readAt(pos, Math.min(size - pos.offset, Math.max(READ_CHUNK, rec ? rec.end - at : 0)));
        chunkAt = pos.offset;
        at = 0;
        rec = recordAt(chunk, 0);
        // Only whole records are ever counted in a segment's size: one that runs past it is damage.
        if (!rec || rec.end > chunk.length) rec = null;
      }
      if (rec === null) {
        // Nothing after bytes that are no record can be found again: skip the rest of the segment, for good.
        if (out.length > 0) break;
        this.log.error({ dir: this.dir, at: pos }, 'skipping the unreadable rest of an audit outbox segment');
        pos = { segment: pos.segment, offset: size };
        this.ack(pos);
        continue;
      }
      const end = { segment: pos.segment, offset: chunkAt + rec.end };
      const head = recordHead(chunk, rec.start, rec.end);
      const earlier = head !== undefined && before(pos, this.ownFrom);
      const event = earlier ? decodeOrNot(chunk.subarray(rec.start, rec.end)) : undefined;
      if (head && (!earlier || event)) {
        const record = chunk.subarray(at, rec.end);
        out.push(new OutboxEntry(record, rec.start - at, head, end, event));
        bytes += record.length;
      } else if (out.length === 0) {
        this.log.error({ dir: this.dir, at: end }, 'skipping a corrupt record in the audit outbox');
        this.ack(end); // skip a corrupt record for good
      }
      pos = end;
    }
    return out;
  }

  /** Marks everything up to `pos` as delivered; deletes segments that are done. */
  ack(pos: Position): void {
    if (pos.segment < this.cursor.segment || (pos.segment === this.cursor.segment && pos.offset <= this.cursor.offset)) return;
    this.cursor = { ...pos };
    // Fully delivered: start a fresh segment so the old one can go (keeps the files small).
    if (this.pendingBytes() === 0 && this.sizes.get(this.head)! >= this.limits.compactBytes && !this.closed) {
      this.rollOver();
      this.cursor = { segment: this.head, offset: 0 };
    }
    // Saved with the periodic sync rather than per batch (a write and a rename each
    // time); after a crash, what was delivered since is sent again and dropped by id.
    this.cursorDirty = true;
    if (this.cursor.segment > this.firstSegment()) {
      this.saveCursor();
      this.dropBefore(this.cursor.segment);
    }
  }

  /** Bytes written but not yet delivered. */
  pendingBytes(): number {
    let total = 0;
    for (const [n, size] of this.sizes) if (n >= this.cursor.segment) total += size;
    return total - this.cursor.offset;
  }

  /**
   * For metrics: undelivered bytes, and how long ago the oldest undelivered
   * event happened (by its time). Reads that one record back, so it is for a
   * scrape now and then, not for the hot path.
   */
  stats(): { pendingBytes: number; oldestPendingMs?: number } {
    if (this.closed) return { pendingBytes: this.pendingBytes() };
    const time = this.read(1, 1)[0]?.event.time;
    const pendingBytes = this.pendingBytes();
    if (!time || pendingBytes === 0) return { pendingBytes };
    return { pendingBytes, oldestPendingMs: Math.max(0, Date.now() - (time.seconds * 1000 + Math.floor(time.nanos / 1e6))) };
  }

  /** Resolves at the next append (or at once when entries are waiting). */
  waitForData(): Promise<void> {
    this.flush();
    if (this.pendingBytes() > 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Releases everyone in waitForData (new data, or a reader stopping). */
  wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    waiters.forEach((w) => w());
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    if (this.cursorDirty) this.saveCursor();
    this.closed = true;
    this.closedFd = true;
    clearInterval(this.timer);
    this.wake();
    fsyncQuiet(this.fd);
    if (this.syncing) this.closeAfterSync.push(this.fd);
    else closeSync(this.fd);
    this.unlock();
  }

  private drop(reason: string): false {
    this.dropped++;
    const now = Date.now();
    if (now - this.lastLoud >= LOUD_EVERY_MS) {
      this.lastLoud = now;
      this.log.error({ dropped: this.dropped, dir: this.dir }, `AUDIT EVENTS ARE BEING DROPPED: ${reason}; check the audit transport (NATS or the control plane)`);
    }
    return false;
  }


  private readAt(pos: Position, length: number): Buffer {
    const buf = Buffer.alloc(length);
    const fd = pos.segment === this.head ? this.fd : openSync(join(this.dir, segmentName(pos.segment)), 'r');
    try {
      let got = 0;
      while (got < length) {
        const n = readSync(fd, buf, got, length - got, pos.offset + got);
        if (n === 0) break;
        got += n;
      }
      return buf.subarray(0, got);
    } finally {
      if (fd !== this.fd) closeSync(fd);
    }
  }

  private rollOver(): void {
    // The new segment first: when it cannot be opened (EMFILE, ENOSPC), the current one stays in use.
    const fd = openSync(join(this.dir, segmentName(this.head + 1)), 'a+', 0o600);
    fsyncQuiet(this.fd);
    // A periodic fsync may still be running on this descriptor: close it when that is done.
    if (this.syncing) this.closeAfterSync.push(this.fd);
    else closeSync(this.fd);
    this.head++;
    this.fd = fd;
    this.sizes.set(this.head, 0);
    this.dirty = false;
  }

  /** A crash mid-write (power loss) can leave half a record at the end; it was never acknowledged to anyone. */
  private repairTail(): void {
    const size = this.sizes.get(this.head);
    if (!size) return;
    const file = join(this.dir, segmentName(this.head));
    const data = readFileSync(file);
    let keep = 0;
    for (let rec = recordAt(data, 0); rec && rec.end <= data.length; rec = recordAt(data, keep)) keep = rec.end;
    if (keep === size) return;
    truncateSync(file, keep);
    this.sizes.set(this.head, keep);
    this.log.warn({ file, dropped: size - keep }, 'removed an unfinished record from the audit outbox');
  }

  /**
   * Versions that wrote JSON lines (`*.jsonl`, cursor `acked.json`) leave
   * their undelivered events behind: they are appended as records, once,
   * then the old files go. A crash in between only sends some events twice,
   * which the control plane absorbs.
   */
  private migrateJsonLines(): void {
    const old = readdirSync(this.dir)
      .map((f) => LEGACY_SEGMENT.exec(f)?.[1])
      .filter((n): n is string => n !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    if (old.length === 0) return;
    let cursor: Position = { segment: old[0]!, offset: 0 };
    try {
      const c = JSON.parse(readFileSync(join(this.dir, LEGACY_CURSOR), 'utf8')) as Position;
      if (Number.isInteger(c.segment) && Number.isInteger(c.offset) && c.offset >= 0) cursor = c;
    } catch {
      // No cursor: everything is sent again; duplicates are harmless.
    }
    let moved = 0;
    let skipped = 0;
    for (const n of old) {
      if (n < cursor.segment) continue;
      const text = readFileSync(join(this.dir, legacyName(n)));
      let start = n === cursor.segment ? Math.min(cursor.offset, text.length) : 0;
      // A last line without its newline was never complete.
      for (let nl = text.indexOf(10, start); nl >= 0; start = nl + 1, nl = text.indexOf(10, start)) {
        let event: AuditEvent | undefined;
        try {
          event = eventFromRecord(JSON.parse(text.subarray(start, nl).toString('utf8')));
        } catch {
          // counted below
        }
        if (event?.id && this.append(event)) moved++;
        else skipped++;
        if (this.queuedBytes >= this.limits.segmentBytes) this.flush();
      }
    }
    this.flush();
    fsyncQuiet(this.fd);
    for (const n of old) rmSync(join(this.dir, legacyName(n)), { force: true });
    rmSync(join(this.dir, LEGACY_CURSOR), { force: true });
    this.log.info({ dir: this.dir, moved, skipped }, 'moved the undelivered events of an older outbox (JSON lines) into the current format');
  }

  private loadCursor(first: number): Position {
    let saved: Position | undefined;
    try {
      const c = JSON.parse(readFileSync(join(this.dir, CURSOR), 'utf8')) as Position;
      if (Number.isInteger(c.segment) && Number.isInteger(c.offset) && c.offset >= 0) saved = c;
    } catch {
      // No cursor yet (or unreadable): deliver everything; duplicates are harmless.
    }
    if (!saved || saved.segment < first) return { segment: first, offset: 0 };
    const size = this.sizes.get(saved.segment);
    // A cursor past the data it names cannot be trusted: re-send that segment.
    if (size === undefined || saved.offset > size) return { segment: saved.segment, offset: 0 };
    return saved;
  }

  private saveCursor(): void {
    this.cursorDirty = false;
    this.cursorSavedAt = Date.now();
    const tmp = join(this.dir, `${CURSOR}.tmp`);
    try {
      writeFileSync(tmp, JSON.stringify(this.cursor), { mode: 0o600 });
      renameSync(tmp, join(this.dir, CURSOR));
    } catch (err) {
      // Not fatal: at worst delivered events are sent again after a restart.
      this.log.warn({ err, dir: this.dir }, 'cannot save the audit outbox cursor');
    }
  }

  private dropBefore(segment: number): void {
    for (const n of [...this.sizes.keys()]) {
      if (n >= segment || n === this.head) continue;
      rmSync(join(this.dir, segmentName(n)), { force: true });
      this.sizes.delete(n);
    }
  }

  private firstSegment(): number {
    let first = this.head;
    for (const n of this.sizes.keys()) if (n < first) first = n;
    return first;
  }

  private sync(): void {
    if (this.writeError) this.flush();
    // The cursor at most once a second (a write and a rename each time, on the gateway's thread); after a crash, that much more is re-sent and dropped by id.
    if (this.cursorDirty && !this.closed && Date.now() - this.cursorSavedAt >= CURSOR_SAVE_MS) this.saveCursor();
    if (!this.dirty || this.syncing || this.closed) return;
    this.dirty = false;
    this.syncing = true;
    fsync(this.fd, (err) => {
      this.syncing = false;
      for (const fd of this.closeAfterSync.splice(0)) closeSync(fd);
      if (err && !this.closed) this.log.warn({ err }, 'fsync of the audit outbox failed');
    });
  }
}

const before = (a: Position, b: Position) => a.segment < b.segment || (a.segment === b.segment && a.offset < b.offset);

/** The event of `bytes`, or undefined when they do not decode. */
function decodeOrNot(bytes: Buffer): AuditEvent | undefined {
  try {
    return AuditEvent.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Synchronous, for roll-over and close only: rare, and the data must be on disk before the file is left. */
function fsyncQuiet(fd: number): void {
  try {
    fsyncSync(fd);
  } catch {
    // Nothing useful to do; the periodic sync logs disk errors.
  }
}
