/**
 * The ledger's append-only journal: every state change (reserve, settle, release, expire, adjust, book) as a
 * fixed 48-byte record, so that restore = last snapshot + replay of the records after it.
 *
 * Record (little endian): f64 seq | u8 op | 3 pad | i32 campaign | i32 tag | 4 pad | f64 handle | f64 amount |
 * f64 nowMs. `seq` is the ledger's sequence number after the change; a snapshot stores the seq it contains, and
 * replay skips records at or below it, so a crash between "snapshot written" and "journal rotated" is harmless.
 *
 * Appending copies into a preallocated buffer (no allocation on the hot path); flush() writes the buffer out
 * (the server calls it on its 1-second tick, and a full buffer flushes itself). What a crash loses is the
 * unflushed tail: at most one flush interval of changes. Lost reservations are harmless (their notices become
 * unknown handles, booked by bookUnreserved within the budget); lost settlements under-count spend by at most
 * what was settled in that interval (bounded by the interval's pacing rate).
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { SegbidError } from '../common/errors.js';
import { Ledger, writeSnapshotFile, type LedgerJournalSink } from './ledger.js';

export const RECORD_BYTES = 48;

export class FileJournal implements LedgerJournalSink {
  private readonly ledger: Ledger;
  private readonly path: string;
  private fd: number;
  private readonly buf: Buffer;
  private used = 0;
  /** Write failures (disk full...): counted, never thrown on the hot path; the caller alarms on it. */
  writeErrors = 0;

  constructor(ledger: Ledger, path: string, bufferRecords = 4096) {
    this.ledger = ledger;
    this.path = path;
    this.fd = openSync(path, 'a');
    this.buf = Buffer.alloc(bufferRecords * RECORD_BYTES);
    ledger.journal = this;
  }

  append(op: number, campaign: number, tag: number, handle: number, amount: number, nowMs: number): void {
    if (this.used + RECORD_BYTES > this.buf.length) this.flush();
    const b = this.buf;
    const o = this.used;
    b.writeDoubleLE(this.ledger.seq, o);
    b.writeUInt8(op, o + 8);
    b.writeInt32LE(campaign, o + 12);
    b.writeInt32LE(tag, o + 16);
    b.writeDoubleLE(handle, o + 24);
    b.writeDoubleLE(amount, o + 32);
    b.writeDoubleLE(nowMs, o + 40);
    this.used = o + RECORD_BYTES;
  }

  /** Writes buffered records to the file. */
  flush(): void {
    if (this.used === 0) return;
    try {
      let off = 0;
      while (off < this.used) off += writeSync(this.fd, this.buf, off, this.used - off);
    } catch {
      this.writeErrors++;
    }
    this.used = 0;
  }

  /**
   * Snapshot + rotation: flush, write the snapshot atomically, then start an empty journal (the old one is
   * renamed aside, `.prev`, for forensics). Replay tolerates a crash at any point of this sequence.
   */
  checkpoint(snapshotPath: string): void {
    this.flush();
    fsyncSync(this.fd);
    writeSnapshotFile(snapshotPath, this.ledger.snapshot());
    closeSync(this.fd);
    renameSync(this.path, `${this.path}.prev`);
    this.fd = openSync(this.path, 'a');
  }

  close(): void {
    this.flush();
    closeSync(this.fd);
    if (this.ledger.journal === this) this.ledger.journal = null;
  }
}

/**
 * Replays journal records with seq above the ledger's onto it. Throws SegbidError LEDGER_JOURNAL when a record
 * does not apply (a journal that belongs to another snapshot). A torn last record (crash mid-write) is ignored.
 * Returns the number of records applied.
 */
export function replayJournal(ledger: Ledger, image: Buffer): number {
  let applied = 0;
  const whole = image.length - (image.length % RECORD_BYTES);
  for (let o = 0; o < whole; o += RECORD_BYTES) {
    const seq = image.readDoubleLE(o);
    if (seq <= ledger.seq) continue;
    if (seq !== ledger.seq + 1) {
      throw new SegbidError('LEDGER_JOURNAL', `journal record ${o / RECORD_BYTES}: seq ${seq}, ledger expects ${ledger.seq + 1} (a gap)`);
    }
    const ok = ledger.applyRecord(
      image.readUInt8(o + 8),
      image.readInt32LE(o + 12),
      image.readInt32LE(o + 16),
      image.readDoubleLE(o + 24),
      image.readDoubleLE(o + 32),
      image.readDoubleLE(o + 40),
    );
    if (!ok) throw new SegbidError('LEDGER_JOURNAL', `journal record ${o / RECORD_BYTES} (seq ${seq}) does not apply to the snapshot`);
    applied++;
  }
  return applied;
}

/** Loads snapshot (if any) + journal (if any). A missing snapshot starts from `fresh()`. */
export function recoverLedger(snapshotPath: string, journalPath: string, fresh: () => Ledger): Ledger {
  const ledger = existsSync(snapshotPath) ? Ledger.restore(readFileSync(snapshotPath)) : fresh();
  if (existsSync(journalPath)) replayJournal(ledger, readFileSync(journalPath));
  ledger.checkInvariant();
  return ledger;
}
