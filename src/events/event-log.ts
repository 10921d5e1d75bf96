/**
 * The append-only event log: every accepted event record, durable, replayable.
 *
 * Contract:
 *   - `EventLog.open({dir, fsync, ...})` starts a NEW segment file in `dir` (never appends to an old one, whose
 *     tail may be torn). `append(record)` frames the record and buffers it; true = taken, false = the log is
 *     failing (the caller counts the event as `log_failed` and carries on: the bidder never stops answering
 *     because of its log). `close()` writes everything buffered and fsyncs: nothing accepted is lost on a clean
 *     shutdown, whatever the fsync policy.
 *   - `replayEventLog(dir, fn)` calls fn for every record of every segment in order, stopping cleanly at a
 *     torn last record of a segment (a crash mid-write) and going on with the next segment.
 *
 * Files: `events-<12-digit sequence>.seg`, each starting with the 8-byte magic `SBEVLOG1`, then frames:
 *
 *   u32le payload length | u32le crc32(payload) | payload (msgpack of one EventRecord)
 *
 * Fsync policies (what a crash can lose, see also README "Event log durability"):
 *   always        each record is written and fdatasync'd before append() returns (slow: one disk flush per
 *                 event, on the event loop). A crash loses nothing that was acknowledged.
 *   interval:<ms> records are buffered, written to the OS and fdatasync'd every <ms> (and written, not synced,
 *                 as soon as `flushBytes` are buffered). A process crash loses up to <ms> of events; an OS crash
 *                 or power cut up to <ms> plus the duration of one fsync.
 *   never         records are written to the OS every `flushMs` (1 s) and only fsync'd on rotation and close().
 *                 A process crash loses up to `flushMs`; an OS crash or power cut whatever the kernel had not
 *                 yet written back (Linux: typically up to ~30 s).
 * In every policy a crash leaves at most one torn record at the end of the active segment; replay stops there.
 *
 * Writes are synchronous (writeSync into the page cache, microseconds for the buffered batch) so the
 * bookkeeping of a failed or partial write stays exact; the slow part of the interval policy, fdatasync, runs
 * off the event loop. On a write error (disk full, I/O error) the log flags itself failed, counts the error,
 * keeps the records that were not written and retries them into a fresh segment at the next flush; events
 * appended while it is failed are refused (false). One process per log directory.
 */
import { closeSync, fdatasync, fdatasyncSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import { SegbidError } from '../common/errors.js';
import type { EventRecord } from './types.js';

export const LOG_MAGIC = Buffer.from('SBEVLOG1', 'latin1');
const FRAME_HEADER = 8;
/** No record is anywhere near this; a larger length field means corruption, not a big record. */
const MAX_RECORD_BYTES = 16 * 1024 * 1024;
const SEGMENT_RE = /^events-(\d{12})\.seg$/;

export type FsyncPolicy = { mode: 'always' } | { mode: 'interval'; ms: number } | { mode: 'never' };

/** `always` | `interval:<ms>` | `never`. Throws EVENT_CONFIG_INVALID otherwise. */
export function parseFsyncPolicy(text: string): FsyncPolicy {
  if (text === 'always') return { mode: 'always' };
  if (text === 'never') return { mode: 'never' };
  const m = /^interval:(\d{1,7})$/.exec(text);
  if (m !== null && Number(m[1]) >= 1) return { mode: 'interval', ms: Number(m[1]) };
  throw new SegbidError('EVENT_CONFIG_INVALID', `event log fsync policy "${text}": expected always, interval:<ms> or never`);
}

export interface EventLogOptions {
  dir: string;
  /** Default `interval:1000`. */
  fsync?: FsyncPolicy | string;
  /** Rotate to a new segment once the current one reaches this size. Default 64 MiB. */
  maxSegmentBytes?: number;
  /** Write buffered records to the OS as soon as this many bytes are buffered. Default 256 KiB. */
  flushBytes?: number;
  /** `never` policy: write buffered records to the OS this often. Default 1000 ms. */
  flushMs?: number;
  /** While failing, keep at most this many bytes of records in memory for retry; drop beyond. Default 64 MiB. */
  maxPendingBytes?: number;
  /** Called on each write error (after the status is updated), e.g. to log it. */
  onError?: (error: Error) => void;
}

export interface EventLogStatus {
  /** False while writes fail; records appended meanwhile are refused. */
  ok: boolean;
  lastError: string | null;
  writeErrors: number;
  /** Records appended while the log was failing (kept in memory for retry, not yet durable). */
  failedRecords: number;
  /** Records lost: appended while failing with the retry buffer full, still unwritable at close(), or after close(). */
  droppedRecords: number;
  appended: number;
  segment: string;
  segmentBytes: number;
  pendingBytes: number;
}

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

/** One framed record (header + payload), ready to write. */
export function frameRecord(record: EventRecord): Buffer {
  const payload = packr.pack(record);
  const frame = Buffer.allocUnsafe(FRAME_HEADER + payload.length);
  frame.writeUInt32LE(payload.length, 0);
  frame.writeUInt32LE(crc32(payload), 4);
  payload.copy(frame, FRAME_HEADER);
  return frame;
}

function segmentName(seq: number): string {
  return `events-${String(seq).padStart(12, '0')}.seg`;
}

/** Segment file names of a log directory, oldest first. Throws EVENT_LOG_UNREADABLE if the dir cannot be read. */
/** A file's last modification time, ms (+Infinity when it cannot be read: the caller then reads the file). */
function modifiedOf(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return Infinity;
  }
}

export function listSegments(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    throw new SegbidError('EVENT_LOG_UNREADABLE', `cannot read event log directory ${dir}: ${(e as Error).message}`);
  }
  return names.filter((n) => SEGMENT_RE.test(n)).sort();
}

export class EventLog {
  readonly dir: string;
  readonly policy: FsyncPolicy;
  private readonly maxSegmentBytes: number;
  private readonly flushBytes: number;
  private readonly maxPendingBytes: number;
  private readonly onError: ((error: Error) => void) | undefined;
  private fd = -1;
  private seq: number;
  private segmentPath = '';
  private segmentBytes = 0;
  /** The current segment saw a failed write: its tail may be torn, so the next write opens a new segment. */
  private segmentBroken = false;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes written to the OS since the last fdatasync. */
  private unsynced = 0;
  private syncing = false;
  /** A segment rotated out while an async fdatasync was still running on it: closed when that finishes. */
  private closeAfterSync = -1;
  private syncDone: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly st = { ok: true, lastError: null as string | null, writeErrors: 0, failedRecords: 0, droppedRecords: 0, appended: 0 };

  private constructor(options: EventLogOptions, policy: FsyncPolicy, firstSeq: number) {
    this.dir = options.dir;
    this.policy = policy;
    this.maxSegmentBytes = options.maxSegmentBytes ?? 64 * 1024 * 1024;
    this.flushBytes = options.flushBytes ?? 256 * 1024;
    this.maxPendingBytes = options.maxPendingBytes ?? 64 * 1024 * 1024;
    this.onError = options.onError;
    this.seq = firstSeq;
  }

  /** Opens the log: creates the directory and a new segment. Throws EVENT_LOG_WRITE if it cannot. */
  static open(options: EventLogOptions): EventLog {
    const policy = typeof options.fsync === 'string' ? parseFsyncPolicy(options.fsync) : (options.fsync ?? { mode: 'interval', ms: 1000 });
    try {
      mkdirSync(options.dir, { recursive: true });
    } catch (e) {
      throw new SegbidError('EVENT_LOG_WRITE', `cannot create event log directory ${options.dir}: ${(e as Error).message}`);
    }
    const existing = listSegments(options.dir);
    const last = existing.length ? Number(SEGMENT_RE.exec(existing[existing.length - 1])![1]) : 0;
    const log = new EventLog(options, policy, last + 1);
    try {
      log.openSegment();
    } catch (e) {
      throw new SegbidError('EVENT_LOG_WRITE', `cannot create an event log segment in ${options.dir}: ${(e as Error).message}`);
    }
    const every = policy.mode === 'interval' ? policy.ms : policy.mode === 'never' ? (options.flushMs ?? 1000) : 0;
    if (every > 0) {
      log.timer = setInterval(() => log.tick(), every);
      log.timer.unref(); // the log never keeps a process alive; close() is what flushes at exit
    }
    return log;
  }

  get status(): EventLogStatus {
    return { ...this.st, segment: this.segmentPath, segmentBytes: this.segmentBytes, pendingBytes: this.pendingBytes };
  }

  /**
   * Buffers one record. True = taken on a healthy log. False = the log is failing (count the event as
   * log_failed): the record is still kept in memory and written when the disk comes back, unless the retry
   * buffer is full (then it is dropped and counted in droppedRecords).
   */
  append(record: EventRecord): boolean {
    if (this.closed) {
      this.st.droppedRecords++;
      return false;
    }
    const healthy = this.st.ok;
    if (!healthy && this.pendingBytes >= this.maxPendingBytes) {
      this.st.failedRecords++;
      this.st.droppedRecords++;
      return false;
    }
    const frame = frameRecord(record);
    this.pending.push(frame);
    this.pendingBytes += frame.length;
    this.st.appended++;
    if (!healthy) {
      // No write attempt per event while failing, except under `always` (which has no timer and is slow anyway):
      // the timer retries.
      if (this.policy.mode === 'always' && this.writePending() && this.syncNow()) return true;
      this.st.failedRecords++;
      return false;
    }
    if (this.policy.mode === 'always') {
      // Durable before the caller answers: the acknowledged event survives any crash.
      const ok = this.writePending() && this.syncNow();
      if (!ok) this.st.failedRecords++;
      return ok;
    }
    if (this.pendingBytes >= this.flushBytes && !this.writePending()) {
      this.st.failedRecords++;
      return false;
    }
    return true;
  }

  /** Writes buffered records to the OS (no fsync). False on a write error (the status says which). */
  flush(): boolean {
    return this.writePending();
  }

  /** Writes buffered records and fdatasyncs them, synchronously. */
  sync(): boolean {
    return this.writePending() && this.syncNow();
  }

  /** Flushes and fsyncs everything, then closes. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this.syncing) await new Promise<void>((resolve) => (this.syncDone = resolve));
    if (!this.writePending() && this.pending.length > 0) {
      // The disk is still failing at shutdown: what is left cannot be kept anywhere, so it is counted and said.
      const lost = this.pending.length;
      this.st.droppedRecords += lost;
      this.pending = [];
      this.pendingBytes = 0;
      if (this.onError !== undefined) this.onError(new Error(`event log closed while failing: ${lost} records could not be written and are lost`));
    }
    if (this.fd >= 0) {
      try {
        fsyncSync(this.fd);
      } catch (e) {
        this.fail(e as Error);
      }
      closeQuietly(this.fd);
      this.fd = -1;
    }
  }

  /** Timer: write what is buffered; under `interval`, fdatasync off the event loop. */
  private tick(): void {
    if (this.closed) return;
    if (!this.writePending()) return;
    if (this.policy.mode !== 'interval' || this.unsynced === 0 || this.syncing || this.fd < 0) return;
    const fd = this.fd;
    this.syncing = true;
    this.unsynced = 0;
    fdatasync(fd, (err) => {
      this.syncing = false;
      if (err) this.fail(err);
      if (this.closeAfterSync === fd) {
        closeQuietly(fd);
        this.closeAfterSync = -1;
      }
      const done = this.syncDone;
      this.syncDone = null;
      if (done !== null) done();
    });
  }

  private syncNow(): boolean {
    if (this.fd < 0) return false;
    try {
      fdatasyncSync(this.fd);
      this.unsynced = 0;
      return true;
    } catch (e) {
      this.fail(e as Error);
      return false;
    }
  }

  private openSegment(): void {
    for (;;) {
      const path = join(this.dir, segmentName(this.seq));
      try {
        // 'wx': never reuse a file, even if two processes were wrongly pointed at the same directory.
        this.fd = openSync(path, 'wx');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
          this.seq++;
          continue;
        }
        throw e;
      }
      try {
        if (writeSync(this.fd, LOG_MAGIC) !== LOG_MAGIC.length) throw new Error(`short write of the segment header of ${path}`);
      } catch (e) {
        // Disk full at the first write: a segment without its magic would be skipped whole at replay (and one
        // empty file per retry would pile up during an outage), so it is removed and the next attempt reuses the name.
        closeQuietly(this.fd);
        this.fd = -1;
        try {
          unlinkSync(path);
        } catch {
          // left behind empty: replay reads it as an empty torn segment, no record is lost
        }
        throw e;
      }
      this.segmentPath = path;
      break;
    }
    this.seq++;
    this.segmentBytes = LOG_MAGIC.length;
    this.segmentBroken = false;
    if (this.policy.mode !== 'never') {
      // The new file's directory entry must be durable too, or a power cut can lose the whole segment.
      let dirFd = -1;
      try {
        dirFd = openSync(this.dir, 'r');
        fsyncSync(dirFd);
      } catch {
        // Some filesystems refuse fsync on directories; the data fsyncs still hold.
      } finally {
        if (dirFd >= 0) closeSync(dirFd);
      }
    }
  }

  /** Ends the current segment: synced once whatever the policy (a finished segment is never touched again). */
  private rotate(): void {
    const old = this.fd;
    this.fd = -1;
    if (old >= 0) {
      try {
        fdatasyncSync(old);
      } catch (e) {
        this.fail(e as Error);
      }
      if (this.syncing) this.closeAfterSync = old;
      else closeQuietly(old);
    }
    this.unsynced = 0;
    this.openSegment();
  }

  /** Writes all pending frames. On error keeps the frames not fully written and breaks the segment. */
  private writePending(): boolean {
    if (this.pending.length === 0) return true;
    try {
      if (this.fd < 0 || this.segmentBroken) this.rotate();
    } catch (e) {
      this.fail(e as Error);
      return false;
    }
    const data = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending, this.pendingBytes);
    let written = 0;
    try {
      while (written < data.length) written += writeSync(this.fd, data, written, data.length - written);
    } catch (e) {
      // Frames wholly written stay in the segment (replay reads them); the rest, including a frame cut in
      // the middle, is kept for a fresh segment, so nothing is lost nor written twice.
      let keepFrom = 0;
      let offset = 0;
      while (keepFrom < this.pending.length && offset + this.pending[keepFrom].length <= written) offset += this.pending[keepFrom++].length;
      this.pending = this.pending.slice(keepFrom);
      this.pendingBytes -= offset;
      this.segmentBytes += written;
      this.segmentBroken = true;
      this.fail(e as Error);
      return false;
    }
    this.pending = [];
    this.pendingBytes = 0;
    this.segmentBytes += written;
    this.unsynced += written;
    if (!this.st.ok) {
      this.st.ok = true;
      this.st.lastError = null;
    }
    if (this.segmentBytes >= this.maxSegmentBytes) {
      try {
        this.rotate();
      } catch (e) {
        this.fail(e as Error);
      }
    }
    return true;
  }

  private fail(error: Error): void {
    this.st.ok = false;
    this.st.writeErrors++;
    this.st.lastError = error.message;
    if (this.onError !== undefined) this.onError(error);
  }
}

/** Closing a segment we are done with must not throw over the error that made us leave it. */
function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already reported through the write/fsync error, if any
  }
}

export type SegmentEnd = 'clean' | 'torn' | 'corrupt';

export interface SegmentReadResult {
  records: number;
  end: SegmentEnd;
  /** Byte offset where reading stopped. */
  offset: number;
}

const unpackr = new Packr({ useRecords: false, mapsAsObjects: true });

/**
 * Reads the frames of one segment's bytes. Stops at the first frame that is incomplete or whose CRC fails
 * while it reaches the end of the file (`torn`: a crash mid-write), or at damage followed by more data
 * (`corrupt`: frames cannot be resynchronised reliably, the rest of the segment is skipped).
 */
export function readSegment(buf: Buffer, onRecord: (record: EventRecord) => void): SegmentReadResult {
  let records = 0;
  if (buf.length < LOG_MAGIC.length) return { records, end: buf.length === 0 || LOG_MAGIC.subarray(0, buf.length).equals(buf) ? 'torn' : 'corrupt', offset: 0 };
  if (!buf.subarray(0, LOG_MAGIC.length).equals(LOG_MAGIC)) return { records, end: 'corrupt', offset: 0 };
  let off = LOG_MAGIC.length;
  while (off < buf.length) {
    if (buf.length - off < FRAME_HEADER) return { records, end: 'torn', offset: off };
    const len = buf.readUInt32LE(off);
    const crc = buf.readUInt32LE(off + 4);
    // A zero length is never written: it is the zero-filled tail a crash can leave after an extended file.
    if (len === 0) return { records, end: isZero(buf, off) ? 'torn' : 'corrupt', offset: off };
    if (len > MAX_RECORD_BYTES) return { records, end: 'corrupt', offset: off };
    const start = off + FRAME_HEADER;
    if (start + len > buf.length) return { records, end: 'torn', offset: off };
    const payload = buf.subarray(start, start + len);
    if (crc32(payload) !== crc) return { records, end: start + len === buf.length ? 'torn' : 'corrupt', offset: off };
    let record: EventRecord;
    try {
      record = unpackr.unpack(payload) as EventRecord;
    } catch {
      return { records, end: 'corrupt', offset: off };
    }
    onRecord(record);
    records++;
    off = start + len;
  }
  return { records, end: 'clean', offset: off };
}

function isZero(buf: Buffer, from: number): boolean {
  for (let i = from; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

export interface ReplayStats {
  segments: number;
  records: number;
  /** Segments that ended in a torn record (normal after a crash, at most one per crash). */
  tornSegments: number;
  /** Segments with damage before their end (the rest of such a segment is skipped). */
  corruptSegments: number;
  bytes: number;
}

export interface ReplayOptions {
  /** Only the segments written to since then (file mtime: a segment's records are all older than its last write). */
  modifiedSinceMs?: number;
  /** Segments left out by name (those a replay checkpoint covers). */
  skip?: (segment: string) => boolean;
}

/** Replays every record of every segment in `dir` (see ReplayOptions), oldest first. Throws EVENT_LOG_UNREADABLE on I/O errors. */
export function replayEventLog(dir: string, onRecord: (record: EventRecord) => void, options: ReplayOptions = {}): ReplayStats {
  const stats: ReplayStats = { segments: 0, records: 0, tornSegments: 0, corruptSegments: 0, bytes: 0 };
  const since = options.modifiedSinceMs ?? -Infinity;
  for (const name of listSegments(dir)) {
    if (options.skip !== undefined && options.skip(name)) continue;
    if (since > -Infinity && modifiedOf(join(dir, name)) < since) continue;
    let buf: Buffer;
    try {
      buf = readFileSync(join(dir, name));
    } catch (e) {
      throw new SegbidError('EVENT_LOG_UNREADABLE', `cannot read event log segment ${name}: ${(e as Error).message}`);
    }
    const r = readSegment(buf, onRecord);
    stats.segments++;
    stats.records += r.records;
    stats.bytes += buf.length;
    if (r.end === 'torn') stats.tornSegments++;
    if (r.end === 'corrupt') stats.corruptSegments++;
  }
  return stats;
}
