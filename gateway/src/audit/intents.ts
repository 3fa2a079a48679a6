// The journal of statements forwarded and not yet answered. The outbox gets a
// statement's record when its outcome is known; this journal gets, before the
// statement is forwarded, the record it would have if the gateway died first
// (outcome unknown), written at once. It also keeps, for each open session,
// the number its session end would take. A gateway started on the same data
// directory moves what the journal holds into the outbox (recover()): the
// statements whose outcome never came, and an end for each session left
// open. Records whose real one reached the outbox first are dropped by the
// control plane, which keeps the first record of an id.
//
// Records are outbox records (record.ts). The journal is cut when it grows:
// a new file starts with what is still open, right after an outbox write, so
// every record settled by then is in the outbox.
import { closeSync, fsync, ftruncateSync, openSync, readFileSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { AuditEvent } from '@warden/proto';
import { timestampOf } from '@warden/proto/audit';
import type { Logger } from 'pino';
import { encodeRecord, recordAt } from './record.js';

const FILE = /^intents-(\d{10})\.pb$/;
const fileName = (n: number) => `intents-${String(n).padStart(10, '0')}.pb`;

/** A journal this large is cut at the next outbox write. */
const CUT_BYTES = 4 << 20;

/** How often, after a failed write, retry() tries again. */
const RETRY_MS = 1_000;

/** Why a session was ended by a later start rather than by itself. */
export const STOPPED_REASON = 'the gateway stopped with the session open (recorded at its next start)';

/** What an open session's end record needs: its first event, and the last number taken. */
interface OpenSession {
  start: AuditEvent;
  lastSeq: number;
}

export class IntentJournal {
  private fd: number;
  private number: number;
  private size = 0;
  private dirty = false;
  private syncing = false;
  /** Descriptors of cut files, closed once a running fsync is done with them. */
  private retired: number[] = [];
  /** Records of statements forwarded and not yet settled, by event id. */
  private readonly unanswered = new Map<string, Buffer>();
  private readonly open = new Map<string, OpenSession>();
  /** The last write's error, until one succeeds again. */
  writeError: string | undefined;
  private failedAt = 0;

  private constructor(
    private readonly dir: string,
    first: number,
    private readonly log: Logger,
    private readonly cutBytes: number,
  ) {
    this.number = first;
    this.fd = openSync(join(dir, fileName(first)), 'a', 0o600);
  }

  /**
   * Opens the journal in `dir` (the outbox's, under its lock). The records
   * left by an earlier run are handed to `keep` first, to be stored durably
   * (appended to the outbox and written); their files are deleted after.
   */
  static open(dir: string, log: Logger, keep: (records: Buffer[]) => void, cutBytes = CUT_BYTES): IntentJournal {
    const old = readdirSync(dir)
      .map((f) => FILE.exec(f)?.[1])
      .filter((n): n is string => n !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    if (old.length > 0) {
      const records = recover(old.map((n) => readFileSync(join(dir, fileName(n)))), Date.now());
      if (records.length > 0) {
        keep(records);
        log.warn({ records: records.length }, 'recorded the statements and sessions an earlier run left without an outcome or end');
      }
      for (const n of old) rmSync(join(dir, fileName(n)), { force: true });
    }
    return new IntentJournal(dir, (old.at(-1) ?? 0) + 1, log, cutBytes);
  }

  /** A session started: until it ends, a restart gives it an end record. */
  opened(start: AuditEvent): boolean {
    const s = { start, lastSeq: start.seq };
    this.open.set(start.sessionId, s);
    return this.write([encodeRecord(endOf(s))]);
  }

  /**
   * Statements about to be forwarded, as they are recorded if no outcome
   * comes. Written before it returns; false when the write failed (they must
   * not be forwarded then).
   */
  intend(events: AuditEvent[]): boolean {
    const records: Buffer[] = [];
    for (const e of events) {
      const record = encodeRecord(e);
      this.unanswered.set(e.id, record);
      this.took(e);
      records.push(record);
    }
    return this.write(records);
  }

  /**
   * An event of a session went to the outbox. A statement's settles its
   * intent; others that take a number (approvals) are written here too, so a
   * restart knows the number the session's end takes.
   */
  recorded(e: AuditEvent): void {
    const c = e.event?.$case;
    if (c === 'statement') {
      if (!this.unanswered.delete(e.id)) this.took(e);
    } else if (c === 'sessionEnd') this.open.delete(e.sessionId);
    else if (c === 'approval') {
      this.took(e);
      this.write([encodeRecord(e)]);
    }
  }

  /** Whether the journal should be cut at the next outbox write. */
  get due(): boolean {
    return this.size >= this.cutBytes;
  }

  /**
   * Starts a new file with what is still open and deletes the old one. Call
   * only right after an outbox write: everything settled is in the outbox.
   */
  cut(): void {
    const records: Buffer[] = [];
    for (const s of this.open.values()) records.push(encodeRecord(endOf(s)));
    for (const r of this.unanswered.values()) records.push(r);
    const old = this.number;
    const oldFd = this.fd;
    try {
      this.number++;
      this.fd = openSync(join(this.dir, fileName(this.number)), 'a', 0o600);
    } catch (err) {
      this.number = old;
      this.log.warn({ err }, 'cannot start a new statement journal; the old one grows meanwhile');
      return;
    }
    this.size = 0;
    if (!this.write(records)) return; // both files stay; a restart reads both
    if (this.syncing) this.retired.push(oldFd);
    else closeSync(oldFd);
    rmSync(join(this.dir, fileName(old)), { force: true });
  }

  /**
   * After a failed write, at most once a second: writes what the open
   * sessions need again (their end records, the statements unanswered), which
   * tells whether writing works. Statements are refused until it does, so no
   * intent would otherwise try.
   */
  retry(): void {
    if (!this.writeError || Date.now() - this.failedAt < RETRY_MS) return;
    const records: Buffer[] = [];
    for (const s of this.open.values()) records.push(encodeRecord(endOf(s)));
    for (const r of this.unanswered.values()) records.push(r);
    if (records.length === 0) this.writeError = undefined;
    else if (this.write(records)) this.log.warn('writing the statement journal works again');
  }

  /** fsyncs what was written since the last call (power loss; a killed process loses nothing written). */
  sync(): void {
    if (!this.dirty || this.syncing) return;
    this.dirty = false;
    this.syncing = true;
    fsync(this.fd, (err) => {
      this.syncing = false;
      for (const fd of this.retired.splice(0)) closeSync(fd);
      if (err) this.log.warn({ err }, 'fsync of the statement journal failed');
    });
  }

  /** At a clean stop: with nothing open, the journal goes; else it stays for the next start. */
  close(): void {
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    if (this.open.size === 0 && this.unanswered.size === 0) rmSync(join(this.dir, fileName(this.number)), { force: true });
  }

  private took(e: AuditEvent): void {
    const s = this.open.get(e.sessionId);
    if (s && e.seq > s.lastSeq) s.lastSeq = e.seq;
  }

  private write(records: Buffer[]): boolean {
    const data = records.length === 1 ? records[0]! : Buffer.concat(records);
    let written = 0;
    try {
      while (written < data.length) written += writeSync(this.fd, data, written);
    } catch (err) {
      // Half a record would swallow the next one: cut it off again.
      if (written > 0) {
        try {
          ftruncateSync(this.fd, this.size);
        } catch {
          this.size += written; // recover() stops at the damage
        }
      }
      if (!this.writeError) this.log.error({ err }, 'writing the statement journal failed');
      this.writeError = (err as Error).message;
      this.failedAt = Date.now();
      return false;
    }
    this.size += written;
    this.dirty = true;
    this.writeError = undefined;
    return true;
  }
}

/** The end record a session gets if the gateway stops now. */
function endOf(s: OpenSession): AuditEvent {
  const seq = s.lastSeq + 1;
  const { start } = s;
  return {
    ...start,
    id: `${start.sessionId}:${seq}`,
    seq,
    time: timestampOf(Date.now()),
    event: { $case: 'sessionEnd', value: { duration: undefined, bytesIn: 0, bytesOut: 0, statements: 0, reason: STOPPED_REASON } },
  };
}

/**
 * What journals left by a run that stopped say must be recorded: every
 * statement and approval they hold (those already in the outbox are
 * duplicates, dropped by id), and each open session's end, numbered after
 * the last event the journals know of. Damaged tails are cut off.
 */
export function recover(files: Buffer[], now: number): Buffer[] {
  const out: Buffer[] = [];
  const sessions = new Map<string, { last: AuditEvent; lastSeq: number; end?: AuditEvent }>();
  for (const data of files) {
    for (let at = 0, rec = recordAt(data, 0); rec && rec.end <= data.length; at = rec.end, rec = recordAt(data, at)) {
      let e: AuditEvent;
      try {
        e = AuditEvent.decode(data.subarray(rec.start, rec.end));
      } catch {
        continue;
      }
      if (!e.sessionId) continue;
      let s = sessions.get(e.sessionId);
      if (!s) sessions.set(e.sessionId, (s = { last: e, lastSeq: -1 }));
      if (e.event?.$case === 'sessionEnd') {
        if (!s.end || e.seq > s.end.seq) s.end = e;
        continue;
      }
      out.push(data.subarray(at, rec.end));
      if (e.seq > s.lastSeq) {
        s.lastSeq = e.seq;
        s.last = e;
      }
    }
  }
  for (const s of sessions.values()) {
    if (s.end && s.end.seq > s.lastSeq) out.push(encodeRecord(s.end));
    else out.push(encodeRecord({ ...endOf({ start: s.last, lastSeq: s.lastSeq }), time: s.last.time ?? timestampOf(now) }));
  }
  return out;
}
