/**
 * Budget and learning state on disk, so that a restart (graceful or a crash) resumes spend, open reservations
 * and what the bidder learned. One directory belongs to one writer (one process, or one worker: `worker-N`).
 *
 * Files in the state directory:
 *   state.snap            the last checkpoint: header "SGBS" | u32 version | u32 crc32(body) | u32 body length,
 *                         then the body (StateImage): the ledger image (Ledger.snapshot(), itself versioned; its
 *                         own crc left at 0, this file's covers it), the campaign and line-item ids it is indexed
 *                         by (the config fingerprint), allocator arm statistics, pacing controller state, strategy
 *                         counters, creative rotation counters and first-price shading curves. Version 2 body:
 *                         u32 skeleton length | skeleton | binaries, where the skeleton is the msgpackr image with
 *                         its big byte arrays (the ledger image, the shading curves: megabytes) replaced by null,
 *                         their lengths and the path of each (keys and indices from the image's root), and those
 *                         arrays follow end to end. Why: msgpackr copied those megabytes through its growing
 *                         buffer at ~1 GB/s (12 ms for 8 MB on the bid thread, every checkpoint); now image()
 *                         copies each once and the write takes them as they are. Version 1 (one msgpackr body,
 *                         binaries inside) is still read.
 *   state.snap.prev       the checkpoint before it (used when state.snap is missing or corrupt).
 *   ledger.journal        FileJournal records (48 bytes, seq-numbered) since state.snap; flushed every second
 *                         by tick() and on close().
 *   ledger.journal.prev   the records between state.snap.prev and state.snap.
 *   ledger.journal.pending  while a periodic checkpoint is being written: the records between state.snap and
 *                         the snapshot being written (ledger.journal then holds the ones after it).
 *
 * Checkpoint after every budget attach and on close: synchronous, at one sequence number: close the journal,
 * write state.snap.tmp (fsync), rename state.snap -> .prev, ledger.journal -> .prev, state.snap.tmp ->
 * state.snap, fsync the directory, open a new journal. A crash at any step leaves a snapshot and the journals that
 * follow it (replay skips records at or below the snapshot's seq, so a journal older than its snapshot is
 * harmless). When ledger.journal.pending is there (a periodic checkpoint failed or is still being written), .prev
 * becomes pending + journal, written whole before any rename (a rare path: it reads both files).
 *
 * Periodic checkpoint (every `snapshotIntervalMs`, from the 1-second tick), so that the bid thread does not wait for
 * the disk: on the thread, close the journal, rename it to ledger.journal.pending, open a new ledger.journal, and
 * encode the image (seq S); then write state.snap.async.tmp and fsync it off the thread (fs promises); back on the
 * thread, rename state.snap -> .prev, ledger.journal.pending -> ledger.journal.prev, the tmp file -> state.snap; the
 * directory's fsync goes off the thread again. A crash before those renames leaves state.snap (S0) and the journals
 * .prev, .pending (S0..S) and ledger.journal (from S), replayed in that order; after any of them, the same as the
 * synchronous checkpoint. A failed write leaves .pending in place (counted, logged); the next checkpoint is then a
 * synchronous one. A synchronous checkpoint while a write is in flight supersedes it: the write's completion only
 * removes its tmp file.
 *
 * Restore (open + initialLedger + attached + start): the newest snapshot that decodes, then the records of
 * ledger.journal.prev, .pending and ledger.journal above its seq (a gap or a record that does not apply stops the
 * replay: what applied before is kept, and it is logged); then the ledger is re-mapped onto the current config by
 * campaign id and line-item id (Ledger.reconfigure), ids no longer configured are dropped with a log line.
 * A corrupt snapshot is rejected (log + segbid_state_snapshot_rejected_total) and the previous one is tried;
 * with none usable, a journal that starts at seq 1 is replayed onto a fresh ledger (journal-only), otherwise
 * the ledger starts empty. Nothing here throws to the caller: a bad state directory never stops the bidder.
 *
 * What a crash (SIGKILL) loses: the journal records not yet flushed, i.e. at most one flush interval (1 s) of
 * ledger changes; learning state (allocator statistics, pacing, strategies, shading) is as of the last
 * checkpoint. A lost settlement under-counts spend by what settled in that second; a lost reservation turns
 * its notices into unknown handles, still booked within the budget (Ledger.bookUnreserved). A power cut can
 * also lose what the kernel had not written back of the journal (it is not fsynced per flush).
 *
 * Not restored: the shading tables' internal "has evidence" flags (private): restored curves keep their factor
 * and decay again once new feedback reaches them; recent-click buckets of the allocator; frequency caps.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, promises as fsp, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { crc32 } from 'node:zlib';
import { Packr, pack, unpack } from 'msgpackr';
import client from 'prom-client';
import type { Logger } from 'pino';
import { SegbidError } from '../common/errors.js';
import { Ledger, OP } from './ledger.js';
import { FileJournal, RECORD_BYTES } from './ledger-journal.js';
import type { BudgetPolicy } from './budget-policy.js';
import type { PacerState } from './pacing.js';
import type { CompiledBudgetPlan } from './types.js';
import type { BiddingPlan } from '../bidding/bidding-plan.js';

export const STATE_VERSION = 2;
/** The first layout (one msgpackr body), still read so that an upgrade restores the state it finds. */
export const STATE_VERSION_1 = 1;
export const STATE_FILES = {
  snapshot: 'state.snap',
  previousSnapshot: 'state.snap.prev',
  journal: 'ledger.journal',
  previousJournal: 'ledger.journal.prev',
  pendingJournal: 'ledger.journal.pending',
} as const;
/** The periodic checkpoint's snapshot while it is written (apart from the synchronous one's state.snap.tmp). */
const ASYNC_TMP = 'state.snap.async.tmp';
export const DEFAULT_SNAPSHOT_INTERVAL_MS = 15_000;
const HEADER_BYTES = 16;
const MAGIC = 'SGBS';

/** Learned state of the bidding plan, by line-item / creative id. */
export interface LearningImage {
  /** line item id -> [impressions, clicks, conversions, orderValueMicros] */
  strategies: Record<string, number[]>;
  /** creative id -> [impressions, clicks] */
  creatives: Record<string, number[]>;
  /**
   * Curves are only comparable in the same key space (exchanges, floor bands, bins): `shape` says which. The line
   * items with evidence (`ids`) and their curves end to end in that order: per line item exchanges x bands x bins
   * float32 trials and wins, exchanges x bands float64 factors (three byte arrays, not three per line item: a
   * checkpoint copies and frames three arrays instead of thousands). Images of state version 1 have `lineItems`
   * instead (the same curves by line item id), still read.
   */
  shading: {
    shape: string;
    ids?: string[];
    trials?: Uint8Array;
    wins?: Uint8Array;
    factor?: Uint8Array;
    lineItems?: Record<string, { trials: Uint8Array; wins: Uint8Array; factor: Uint8Array }>;
  };
}

export interface StateImage {
  savedAtMs: number;
  /** sha256 (16 hex) of the sorted campaign and line-item ids of the budget plan. */
  fingerprint: string;
  /** Campaign ids and line-item ids in the ledger's index space (its campaign numbers and reservation tags). */
  campaigns: string[];
  lineItems: string[];
  ledger: Uint8Array | null;
  /** line item id -> [impressions, clicks, conversions, valueMicros, costMicros, bids] */
  allocator: Record<string, number[]> | null;
  pacer: PacerState | null;
  learning: LearningImage | null;
}

export interface StateStoreOptions {
  dir: string;
  logger: Logger;
  snapshotIntervalMs?: number;
}

/** Counters for metrics and tests. */
export interface StateStats {
  /** Where the ledger came from at start: snapshot, previous snapshot, journal only, or empty. */
  restoredFrom: 'snapshot' | 'previous_snapshot' | 'journal' | 'empty';
  journalRecordsReplayed: number;
  snapshotsRejected: number;
  snapshotsWritten: number;
  snapshotFailures: number;
  journalWriteErrors: number;
  lastSnapshotMs: number;
  lastSnapshotSeconds: number;
  lastSnapshotBytes: number;
}

export function fingerprintOf(campaigns: readonly string[], lineItems: readonly string[]): string {
  const h = createHash('sha256');
  h.update(JSON.stringify([[...campaigns].sort(), [...lineItems].sort()]));
  return h.digest('hex').slice(0, 16);
}

/** Frames a state image: header (magic, version, crc32, length) + body (version 2, see the module comment). */
export function encodeState(image: StateImage): Buffer {
  return Buffer.concat(encodeStateParts(image));
}

/**
 * The parts of encodeState, written one after the other (joining them would copy megabytes again): the header,
 * the skeleton's length and the skeleton, then the image's byte arrays themselves, not copied. So the image's
 * byte arrays must not change once it is built: image() gives copies (the ledger's snapshot, exportLearning's
 * curves), which a background write may hold after the bid thread has moved on.
 */
export function encodeStateParts(image: StateImage): Buffer[] {
  const { bare, binaries, paths } = splitBinaries(image);
  const skeleton = skeletonPackr.pack([bare, binaries.map((b) => b.byteLength), paths]);
  const skeletonLength = Buffer.alloc(4);
  skeletonLength.writeUInt32LE(skeleton.length, 0);
  const parts = [skeletonLength, skeleton];
  // Empty arrays are left out: they add no byte, and zlib's crc32 of a buffer without memory (a zero-length
  // ArrayBuffer) returns 0 instead of the running value.
  for (const b of binaries) if (b.byteLength > 0) parts.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  let crc = 0;
  let length = 0;
  for (const part of parts) {
    crc = crc32(part, crc);
    length += part.length;
  }
  const head = Buffer.alloc(HEADER_BYTES);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt32LE(STATE_VERSION, 4);
  head.writeUInt32LE(crc >>> 0, 8);
  head.writeUInt32LE(length, 12);
  return [head, ...parts];
}

/** The skeleton's packer: plain msgpack maps (the skeleton's big objects are maps keyed by ids; unpack reads both). */
const skeletonPackr = new Packr({ useRecords: false });

/**
 * The image with null at the places of its big byte arrays (the ledger's image, the three arrays of shading
 * curves), and those arrays with their paths. Only the objects on those paths are copied (shallow): the maps of
 * counters keyed by id go to msgpackr as they are. A byte array anywhere else (the per-line-item curves of a
 * version 1 image loaded at start, carried until start() imports them) is small and stays in the skeleton,
 * which msgpackr writes with its bytes.
 */
function splitBinaries(image: StateImage): { bare: StateImage; binaries: Uint8Array[]; paths: string[][] } {
  const binaries: Uint8Array[] = [];
  const paths: string[][] = [];
  const bare: StateImage = { ...image };
  if (image.ledger !== null) {
    binaries.push(image.ledger);
    paths.push(['ledger']);
    bare.ledger = null;
  }
  const shading = image.learning?.shading;
  if (image.learning && shading) {
    const curves: Record<string, unknown> = { ...shading };
    for (const key of ['trials', 'wins', 'factor'] as const) {
      const bytes = shading[key];
      if (!(bytes instanceof Uint8Array)) continue;
      binaries.push(bytes);
      paths.push(['learning', 'shading', key]);
      curves[key] = null; // the place holder the reader puts the bytes back at
    }
    bare.learning = { ...image.learning, shading: curves as LearningImage['shading'] };
  }
  return { bare, binaries, paths };
}

/** The inverse of splitBinaries: puts each binary back at its path, where the skeleton must hold a null. */
function putBinaries(root: unknown, binaries: Uint8Array[], paths: unknown[]): void {
  if (paths.length !== binaries.length) throw new Error('binary paths and lengths differ');
  paths.forEach((path, i) => {
    if (!Array.isArray(path) || path.length === 0) throw new Error('bad binary path');
    let at = root;
    for (let j = 0; j < path.length - 1; j++) at = childOf(at, path[j]);
    const last = path[path.length - 1];
    if (childOf(at, last) !== null) throw new Error('binary path does not end at a place holder');
    (at as Record<string | number, unknown>)[last as string | number] = binaries[i];
  });
}

function childOf(container: unknown, key: unknown): unknown {
  if (Array.isArray(container) && Number.isInteger(key) && (key as number) >= 0 && (key as number) < container.length) return container[key as number];
  if (container !== null && typeof container === 'object' && !Array.isArray(container) && typeof key === 'string' && Object.hasOwn(container, key)) {
    return (container as Record<string, unknown>)[key];
  }
  throw new Error('bad binary path');
}

/** Reads a framed state image; throws SegbidError LEDGER_SNAPSHOT_CORRUPT saying why. */
export function decodeState(buf: Buffer): StateImage {
  const bad = (why: string) => new SegbidError('LEDGER_SNAPSHOT_CORRUPT', `state snapshot: ${why}`);
  if (buf.length < HEADER_BYTES || buf.toString('latin1', 0, 4) !== MAGIC) throw bad('bad magic');
  const version = buf.readUInt32LE(4);
  if (version !== STATE_VERSION && version !== STATE_VERSION_1) throw bad(`version ${version}, expected ${STATE_VERSION}`);
  const body = buf.subarray(HEADER_BYTES);
  if (body.length !== buf.readUInt32LE(12)) throw bad(`truncated: ${body.length} of ${buf.readUInt32LE(12)} body bytes`);
  if ((crc32(body) >>> 0) !== buf.readUInt32LE(8)) throw bad('checksum mismatch');
  let s: StateImage;
  try {
    s = version === STATE_VERSION_1 ? (unpack(body) as StateImage) : unpackVersion2(body);
  } catch {
    throw bad('unreadable body');
  }
  if (s === null || typeof s !== 'object' || !Array.isArray(s.campaigns) || !Array.isArray(s.lineItems) || typeof s.fingerprint !== 'string') {
    throw bad('missing fields');
  }
  if (s.ledger !== null && !(s.ledger instanceof Uint8Array)) throw bad('ledger image is not bytes');
  return s;
}

/** A version 2 body: the skeleton, then the binaries it lists (views of `body`). Throws when inconsistent. */
function unpackVersion2(body: Buffer): StateImage {
  const skeletonLength = body.readUInt32LE(0);
  const parts = unpack(body.subarray(4, 4 + skeletonLength)) as unknown;
  if (!Array.isArray(parts) || parts.length !== 3 || !Array.isArray(parts[1]) || !Array.isArray(parts[2])) throw new Error('bad skeleton');
  const binaries: Uint8Array[] = [];
  let offset = 4 + skeletonLength;
  for (const length of parts[1] as unknown[]) {
    if (!Number.isInteger(length) || (length as number) < 0 || offset + (length as number) > body.length) throw new Error('bad binary length');
    binaries.push(body.subarray(offset, offset + (length as number)));
    offset += length as number;
  }
  if (offset !== body.length) throw new Error('trailing bytes');
  putBinaries(parts[0], binaries, parts[2] as unknown[]);
  return parts[0] as StateImage;
}

/** Replays journal images (oldest first) onto a ledger; stops at a gap or a record that does not apply. */
function replayJournals(
  ledger: Ledger,
  images: readonly Buffer[],
  onBooked: (campaign: number, tag: number, booked: number, nowMs: number) => void,
): { applied: number; stopped: string | null } {
  let applied = 0;
  for (const image of images) {
    const whole = image.length - (image.length % RECORD_BYTES); // a torn last record (crash mid-write) is ignored
    for (let o = 0; o < whole; o += RECORD_BYTES) {
      const seq = image.readDoubleLE(o);
      if (seq <= ledger.seq) continue;
      if (seq !== ledger.seq + 1) return { applied, stopped: `gap: record seq ${seq}, ledger at ${ledger.seq}` };
      const op = image.readUInt8(o + 8);
      const nowMs = image.readDoubleLE(o + 40);
      let ok: boolean;
      try {
        ok = ledger.applyRecord(op, image.readInt32LE(o + 12), image.readInt32LE(o + 16), image.readDoubleLE(o + 24), image.readDoubleLE(o + 32), nowMs);
      } catch {
        ok = false; // a record from another ledger (indices out of range): same as one that does not apply
      }
      if (!ok) return { applied, stopped: `record seq ${seq} (op ${op}) does not apply` };
      applied++;
      if ((op === OP.settle || op === OP.book) && ledger.lastBooked > 0) onBooked(ledger.lastCampaign, ledger.lastTag, ledger.lastBooked, nowMs);
    }
  }
  return { applied, stopped: null };
}

function float32Of(u: unknown, length: number): Float32Array | null {
  if (!(u instanceof Uint8Array) || u.byteLength !== length * 4) return null;
  const ab = new ArrayBuffer(u.byteLength);
  new Uint8Array(ab).set(u);
  return new Float32Array(ab);
}

function float64Of(u: unknown, length: number): Float64Array | null {
  if (!(u instanceof Uint8Array) || u.byteLength !== length * 8) return null;
  const ab = new ArrayBuffer(u.byteLength);
  new Uint8Array(ab).set(u);
  return new Float64Array(ab);
}

const finiteCounts = (v: unknown, n: number): v is number[] => Array.isArray(v) && v.length >= n && v.every((x) => typeof x === 'number' && Number.isFinite(x) && x >= 0);

export class BudgetStateStore {
  readonly dir: string;
  readonly snapshotIntervalMs: number;
  readonly stats: StateStats = {
    restoredFrom: 'empty',
    journalRecordsReplayed: 0,
    snapshotsRejected: 0,
    snapshotsWritten: 0,
    snapshotFailures: 0,
    journalWriteErrors: 0,
    lastSnapshotMs: NaN,
    lastSnapshotSeconds: 0,
    lastSnapshotBytes: 0,
  };
  private readonly logger: Logger;
  /** The snapshot read at open (null: none usable) and its ledger after journal replay (not yet handed out). */
  private loaded: StateImage | null = null;
  private loadedLedger: Ledger | null = null;
  /** Journal images read at open, for a journal-only recovery once the plan is known. */
  private journals: Buffer[] = [];
  /** Spend replayed from the journal that belongs to today, by line-item id (pacer.spentToday). */
  private replayedToday = new Map<string, number>();
  private firstAttach = true;
  private policy: BudgetPolicy | null = null;
  private journal: FileJournal | null = null;
  private currentPlan: (() => BiddingPlan) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastAttemptMs = 0;
  private closed = false;
  /** Bumped by every checkpoint: a periodic write that completes under another number was superseded. */
  private checkpointNumber = 0;
  /** A periodic checkpoint's write is in flight. */
  private writing = false;
  /** Settles when the periodic write in flight (if any) has completed (tests, shutdown). */
  settled: Promise<void> = Promise.resolve();

  private constructor(options: StateStoreOptions) {
    this.dir = options.dir;
    this.logger = options.logger;
    this.snapshotIntervalMs = Math.max(1000, options.snapshotIntervalMs ?? DEFAULT_SNAPSHOT_INTERVAL_MS);
  }

  private path(name: string): string {
    return join(this.dir, name);
  }

  /** Reads the state directory (creating it). Never throws for its content: a bad snapshot is logged and skipped. */
  static open(options: StateStoreOptions): BudgetStateStore {
    const store = new BudgetStateStore(options);
    mkdirSync(options.dir, { recursive: true });
    store.load(Date.now());
    return store;
  }

  private load(nowMs: number): void {
    for (const name of [STATE_FILES.snapshot, STATE_FILES.previousSnapshot]) {
      const file = this.path(name);
      if (!existsSync(file)) continue;
      try {
        const image = decodeState(readFileSync(file));
        // decodeState has checked the file's CRC, which covers the ledger image (written without its own).
        const ledger = image.ledger === null ? null : Ledger.restore(Buffer.from(image.ledger.buffer, image.ledger.byteOffset, image.ledger.byteLength), true);
        if (ledger !== null && ledger.campaignCount !== image.campaigns.length) {
          throw new SegbidError('LEDGER_SNAPSHOT_CORRUPT', `state snapshot: ${ledger.campaignCount} ledger campaigns, ${image.campaigns.length} campaign ids`);
        }
        this.loaded = image;
        this.loadedLedger = ledger;
        this.stats.restoredFrom = name === STATE_FILES.snapshot ? 'snapshot' : 'previous_snapshot';
        break;
      } catch (e) {
        this.stats.snapshotsRejected++;
        this.logger.error({ file, err: (e as Error).message }, 'state snapshot rejected; trying the previous state');
      }
    }
    for (const name of [STATE_FILES.previousJournal, STATE_FILES.pendingJournal, STATE_FILES.journal]) {
      const file = this.path(name);
      try {
        if (existsSync(file)) this.journals.push(readFileSync(file));
      } catch (e) {
        this.logger.error({ file, err: (e as Error).message }, 'ledger journal unreadable; skipped');
      }
    }
    if (this.loadedLedger !== null) {
      const ledger = this.loadedLedger;
      const ids = this.loaded!.lineItems;
      const replay = replayJournals(ledger, this.journals, (c, tag, booked, t) => this.noteReplayed(ledger, c, ids[tag], booked, t, nowMs));
      this.afterReplay(replay);
      this.journals = [];
    }
  }

  private noteReplayed(ledger: Ledger, c: number, lineItemId: string | undefined, booked: number, recordMs: number, nowMs: number): void {
    if (lineItemId === undefined || ledger.dayOf(c, recordMs) !== ledger.dayOf(c, nowMs)) return;
    this.replayedToday.set(lineItemId, (this.replayedToday.get(lineItemId) ?? 0) + booked);
  }

  private afterReplay(replay: { applied: number; stopped: string | null }): void {
    this.stats.journalRecordsReplayed = replay.applied;
    if (replay.stopped !== null) this.logger.error({ dir: this.dir, applied: replay.applied, why: replay.stopped }, 'ledger journal replay stopped; later records are lost');
  }

  /* ------------------------------------------------------------ BudgetStateHooks (BidHandler) */

  /** The restored ledger, re-mapped onto `plan` by campaign and line-item id; null: start fresh. Once only. */
  initialLedger(plan: CompiledBudgetPlan): Ledger | null {
    const nowMs = Date.now();
    const campaignIds = plan.campaigns.map((c) => c.id);
    let ledger = this.loadedLedger;
    this.loadedLedger = null;
    let oldLineItems: readonly string[] = this.loaded?.lineItems ?? plan.lineItemIds;
    if (ledger === null && this.journals.length > 0) {
      // Journal only: usable when it starts from an empty ledger (seq 1); assumed to be this config's indices.
      const first = this.journals.find((j) => j.length >= RECORD_BYTES);
      if (first !== undefined && first.readDoubleLE(0) === 1) {
        const fresh = Ledger.fromPlan(plan);
        oldLineItems = plan.lineItemIds;
        this.afterReplay(replayJournals(fresh, this.journals, (c, tag, booked, t) => this.noteReplayed(fresh, c, oldLineItems[tag], booked, t, nowMs)));
        ledger = fresh;
        this.stats.restoredFrom = 'journal';
      } else if (first !== undefined) {
        this.logger.error({ dir: this.dir }, 'no usable state snapshot and the journal does not start from empty: ledger starts empty');
      }
      this.journals = [];
    }
    if (ledger === null) {
      if (this.stats.restoredFrom !== 'journal') this.stats.restoredFrom = this.loaded === null ? 'empty' : this.stats.restoredFrom;
      return null;
    }
    const oldCampaigns = this.loaded?.campaigns ?? campaignIds;
    const droppedCampaigns = oldCampaigns.filter((id) => !campaignIds.includes(id));
    const known = new Set(plan.lineItemIds);
    const droppedLineItems = oldLineItems.filter((id) => !known.has(id));
    if (droppedCampaigns.length > 0 || droppedLineItems.length > 0) {
      this.logger.warn({ campaigns: droppedCampaigns, lineItems: droppedLineItems }, 'state: ids no longer configured, their budget state is dropped');
    }
    const newIndex = new Map(plan.lineItemIds.map((id, i) => [id, i] as const));
    try {
      ledger.reconfigure(Ledger.termsOf(plan), oldLineItems.map((id) => newIndex.get(id) ?? -1));
      ledger.checkInvariant();
    } catch (e) {
      this.logger.error({ err: (e as Error).message }, 'restored ledger does not fit the config: ledger starts empty');
      this.stats.restoredFrom = 'empty';
      return null;
    }
    this.logger.info(
      { from: this.stats.restoredFrom, seq: ledger.seq, journalRecords: this.stats.journalRecordsReplayed, openReservations: ledger.openReservations(), fingerprint: this.loaded?.fingerprint },
      'budget ledger restored',
    );
    return ledger;
  }

  /**
   * After each attach: the first one loads the saved allocator and pacer state; a later one (a config swap,
   * including the config manager's start-up swap) has them already (BudgetPolicy.adoptFrom, by id, the same id
   * rule as the ledger). Every attach checkpoints (the indices changed).
   */
  attached(policy: BudgetPolicy | null): void {
    try {
      if (this.firstAttach && policy !== null) {
        this.importPolicyState(policy, this.loaded?.allocator ?? null, this.loaded?.pacer ?? null, Date.now());
      }
    } catch (e) {
      // A snapshot that decodes but holds odd shapes: the ledger is kept, the learning starts over.
      this.logger.error({ err: (e as Error).message }, 'state: allocator/pacing state not restored');
    }
    if (this.firstAttach && policy === null && this.loaded?.ledger) {
      this.logger.warn({ campaigns: this.loaded.campaigns }, 'state: the config has no campaigns any more, the saved ledger is dropped');
    }
    this.firstAttach = false;
    this.policy = policy;
    this.checkpoint(Date.now());
  }

  private importPolicyState(policy: BudgetPolicy, allocator: Record<string, number[]> | null, pacer: PacerState | null, nowMs: number): void {
    const plan = policy.plan;
    if (allocator !== null) {
      const stats: Record<string, number[]> = {};
      for (const [id, v] of Object.entries(allocator)) if (finiteCounts(v, 6)) stats[id] = v;
      policy.allocator.importStats(stats);
      for (let li = 0; li < plan.lineItemCount; li++) {
        const v = stats[plan.lineItemIds[li]];
        if (v !== undefined && plan.campaignOf[li] >= 0) policy.allocator.bids[li] = Math.round(v[5]);
      }
    }
    // Pacing: today's spend per arm is the snapshot's (when it is from today) plus what the journal replayed.
    const saved = pacer ?? { campaigns: {}, lineItems: {} };
    const state: PacerState = { campaigns: {}, lineItems: {} };
    const today = new Set<string>();
    for (const camp of plan.campaigns) {
      const day = policy.ledger.dayOf(camp.index, nowMs);
      const s = saved.campaigns?.[camp.id];
      if (s !== undefined && s !== null && s.day === day) {
        state.campaigns[camp.id] = s;
        today.add(camp.id);
      } else {
        // Another day: keep what outlives a day (profile, pause); the controller restarts at today.
        state.campaigns[camp.id] = { day, integral: 0, paused: s?.paused ?? 0, hourCounts: new Array(24).fill(0), learned: s?.learned ?? [], learnedDays: s?.learnedDays ?? 0 };
      }
      for (const li of camp.arms) {
        const id = plan.lineItemIds[li];
        const v = saved.lineItems?.[id];
        const rates = finiteCounts(v, 4) ? v : [0, 0, 0, 0];
        const spent = (today.has(camp.id) ? rates[0] : 0) + (this.replayedToday.get(id) ?? 0);
        state.lineItems[id] = [spent, rates[1], rates[2], rates[3]];
      }
    }
    policy.pacer.importState(state);
    this.replayedToday.clear();
  }

  /* ------------------------------------------------------------ running */

  /**
   * Restores the learned state of the bidding plan (strategies, creatives, shading) and starts the 1-second
   * timer (journal flush, periodic checkpoint). `current` gives the plan serving now.
   */
  start(current: () => BiddingPlan): void {
    try {
      if (this.loaded?.learning) this.importLearning(current(), this.loaded.learning);
    } catch (e) {
      this.logger.error({ err: (e as Error).message }, 'state: learning state (strategies, creatives, shading) not restored');
    }
    this.currentPlan = current;
    this.loaded = null;
    this.timer = setInterval(() => this.tick(Date.now()), 1000);
    this.timer.unref();
  }

  /** Every second: the journal goes to the file; a checkpoint when one is due. */
  tick(nowMs: number): void {
    if (this.closed) return;
    if (this.journal !== null) this.journal.flush();
    if (nowMs - this.lastAttemptMs >= this.snapshotIntervalMs && !this.writing) this.checkpointInBackground(nowMs);
  }

  /** Journal write errors so far (all journals of this store). */
  journalWriteErrors(): number {
    return this.stats.journalWriteErrors + (this.journal?.writeErrors ?? 0);
  }

  private image(nowMs: number): StateImage {
    const policy = this.policy;
    const plan = policy?.plan ?? null;
    const campaigns = plan === null ? [] : plan.campaigns.map((c) => c.id);
    const lineItems = plan === null ? [] : [...plan.lineItemIds];
    return {
      savedAtMs: nowMs,
      fingerprint: fingerprintOf(campaigns, lineItems),
      campaigns,
      lineItems,
      ledger: policy === null ? null : policy.ledger.snapshot(false), // the state file's CRC covers it
      allocator: policy === null ? null : allocatorStats(policy),
      pacer: policy === null ? null : policy.pacer.exportState(),
      // Until start() has put the saved learning into the live plan, the saved one is what is current.
      learning: this.currentPlan !== null ? exportLearning(this.currentPlan()) : (this.loaded?.learning ?? null),
    };
  }

  /**
   * Writes a checkpoint now (see the contract for the order of the steps). Returns false when it failed
   * (logged and counted; the journal goes on in the same file, so nothing is lost by a failure).
   */
  checkpoint(nowMs: number): boolean {
    this.lastAttemptMs = nowMs;
    this.checkpointNumber++; // a periodic write in flight is superseded
    const start = performance.now();
    this.closeJournal();
    let ok = false;
    try {
      const parts = encodeStateParts(this.image(nowMs));
      const bytes = byteLengthOf(parts);
      const snap = this.path(STATE_FILES.snapshot);
      const tmp = `${snap}.tmp`;
      const fd = openSync(tmp, 'w');
      try {
        for (const part of parts) {
          let off = 0;
          while (off < part.length) off += writeSync(fd, part, off, part.length - off);
        }
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      const journal = this.path(STATE_FILES.journal);
      const pending = this.path(STATE_FILES.pendingJournal);
      if (existsSync(pending)) {
        // .prev must hold every record after state.snap (soon .prev): pending, then journal. Written whole first;
        // the two files are removed once it is in place (their records are all in .prev by then).
        const joined = `${this.path(STATE_FILES.previousJournal)}.tmp`;
        writeFileSync(joined, Buffer.concat([readFileSync(pending), existsSync(journal) ? readFileSync(journal) : Buffer.alloc(0)]));
        this.install(tmp, joined, bytes, nowMs);
        unlinkSync(pending);
        if (existsSync(journal)) unlinkSync(journal);
      } else {
        this.install(tmp, journal, bytes, nowMs);
      }
      ok = true;
    } catch (e) {
      this.failed(e);
    } finally {
      if (this.policy !== null && !this.closed) this.openJournal(this.policy.ledger);
    }
    this.stats.lastSnapshotSeconds = (performance.now() - start) / 1000;
    return ok;
  }

  /**
   * The periodic checkpoint (see the contract): the journal rotation and the image on the bid thread, the write
   * and its fsync off it. Falls back to the synchronous checkpoint when a previous write left .pending behind.
   */
  checkpointInBackground(nowMs: number): void {
    if (this.closed || this.writing) return;
    const pending = this.path(STATE_FILES.pendingJournal);
    if (existsSync(pending)) {
      this.checkpoint(nowMs);
      return;
    }
    this.lastAttemptMs = nowMs;
    const number = ++this.checkpointNumber;
    const start = performance.now();
    let parts: Buffer[];
    try {
      this.closeJournal();
      const journal = this.path(STATE_FILES.journal);
      if (existsSync(journal)) renameSync(journal, pending);
      parts = encodeStateParts(this.image(nowMs));
    } catch (e) {
      // The records stay in .pending (if the rename happened), which the next checkpoint takes in.
      this.failed(e);
      return;
    } finally {
      if (this.journal === null && this.policy !== null && !this.closed) this.openJournal(this.policy.ledger);
    }
    const blockedMs = performance.now() - start;
    const tmp = this.path(ASYNC_TMP);
    this.writing = true;
    this.settled = writeDurably(tmp, parts).then(
      () => {
        this.writing = false;
        if (number !== this.checkpointNumber) {
          removeQuietly(tmp); // a synchronous checkpoint came after this image
          return;
        }
        const t0 = performance.now();
        try {
          this.install(tmp, pending, byteLengthOf(parts), nowMs, false);
        } catch (e) {
          this.failed(e);
          return undefined;
        } finally {
          this.stats.lastSnapshotSeconds = (blockedMs + performance.now() - t0) / 1000;
        }
        // The directory's fsync (the renames made durable) goes to the thread pool too: until it is done, a crash
        // finds what a crash before the renames finds (or after some of them: either way, the journals cover it).
        return syncDirInBackground(this.dir);
      },
      (e: unknown) => {
        this.writing = false;
        removeQuietly(tmp);
        this.failed(e);
      },
    );
  }

  /** Flushes and closes the journal (its write errors are kept in the stats); the ledger then has none. */
  private closeJournal(): void {
    if (this.journal === null) return;
    this.journal.close();
    this.stats.journalWriteErrors += this.journal.writeErrors;
    this.journal = null;
  }

  /**
   * The last steps of both checkpoints, once the snapshot `tmp` is durable: state.snap -> .prev, `journal`
   * (the records since state.snap) -> ledger.journal.prev, `tmp` -> state.snap, the directory fsynced.
   */
  private install(tmp: string, journal: string, bytes: number, nowMs: number, syncDirNow = true): void {
    const snap = this.path(STATE_FILES.snapshot);
    if (existsSync(snap)) renameSync(snap, this.path(STATE_FILES.previousSnapshot));
    if (existsSync(journal)) renameSync(journal, this.path(STATE_FILES.previousJournal));
    renameSync(tmp, snap);
    if (syncDirNow) syncDir(this.dir);
    this.stats.snapshotsWritten++;
    this.stats.lastSnapshotMs = nowMs;
    this.stats.lastSnapshotBytes = bytes;
  }

  private failed(e: unknown): void {
    this.stats.snapshotFailures++;
    this.logger.error({ dir: this.dir, err: (e as Error).message }, 'state snapshot failed; the journal keeps every change');
  }

  private openJournal(ledger: Ledger): void {
    try {
      this.journal = new FileJournal(ledger, this.path(STATE_FILES.journal));
    } catch (e) {
      this.stats.journalWriteErrors++;
      ledger.journal = null;
      this.logger.error({ dir: this.dir, err: (e as Error).message }, 'ledger journal cannot be opened; changes are kept by snapshots only');
    }
  }

  /** Final flush and checkpoint (clean shutdown). Idempotent. */
  close(): void {
    if (this.closed) return;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.closed = true; // checkpoint() does not reopen the journal
    this.checkpoint(Date.now());
  }

  private importLearning(plan: BiddingPlan, learning: LearningImage): void {
    const st = plan.strategies;
    const strategies = learning.strategies ?? {};
    st.ids.forEach((id, i) => {
      const v = strategies[id];
      if (!finiteCounts(v, 4)) return;
      [st.impressions[i], st.clicks[i], st.conversions[i], st.orderValueMicros[i]] = v;
    });
    st.refresh();
    const sel = plan.selector;
    const creatives = learning.creatives ?? {};
    sel.creativeIds.forEach((id, i) => {
      const v = creatives[id];
      if (!finiteCounts(v, 2)) return;
      [sel.impressions[i], sel.clicks[i]] = v;
    });
    sel.refresh();
    const sh = plan.shading;
    const shading = learning.shading;
    if (shading && shading.shape === shadingShape(plan)) {
      const per = sh.exchangeCount * sh.bandCount;
      const K = sh.bins;
      const restore = (li: number, trials: Float32Array | null, wins: Float32Array | null, factor: Float64Array | null) => {
        if (trials === null || wins === null || factor === null) return;
        sh.trials.set(trials, li * per * K);
        sh.wins.set(wins, li * per * K);
        sh.setLineItemFactors(li, factor);
      };
      if (Array.isArray(shading.ids)) {
        const { ids, trials, wins, factor } = shading;
        const curve = per * K * 4;
        const ok = trials instanceof Uint8Array && wins instanceof Uint8Array && factor instanceof Uint8Array &&
          trials.byteLength === ids.length * curve && wins.byteLength === ids.length * curve && factor.byteLength === ids.length * per * 8;
        if (ok) {
          const indexOf = new Map(sh.lineItemIds.map((id, li) => [id, li] as const));
          ids.forEach((id, j) => {
            const li = indexOf.get(id);
            if (li === undefined) return;
            restore(li, float32Of(trials.subarray(j * curve, (j + 1) * curve), per * K), float32Of(wins.subarray(j * curve, (j + 1) * curve), per * K), float64Of(factor.subarray(j * per * 8, (j + 1) * per * 8), per));
          });
        }
      } else {
        sh.lineItemIds.forEach((id, li) => {
          const saved = shading.lineItems?.[id];
          if (saved === undefined || saved === null) return;
          restore(li, float32Of(saved.trials, per * K), float32Of(saved.wins, per * K), float64Of(saved.factor, per));
        });
      }
    }
  }
}

/** Arm statistics by line-item id: [impressions, clicks, conversions, valueMicros, costMicros, bids]. */
function allocatorStats(policy: BudgetPolicy): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  const a = policy.allocator;
  const plan = policy.plan;
  for (let li = 0; li < plan.lineItemCount; li++) {
    if (plan.campaignOf[li] < 0) continue;
    out[plan.lineItemIds[li]] = [a.impressions[li], a.clicks[li], a.conversions[li], a.valueMicros[li], a.costMicros[li], a.bids[li]];
  }
  return out;
}

function shadingShape(plan: BiddingPlan): string {
  const s = plan.shading.settings;
  return JSON.stringify([s.exchanges, s.floorBandsCpm, s.bins]);
}

/**
 * The bidding plan's learned counters and curves by id (line items with no shading evidence are left out), copied:
 * the image may be written after the bid thread has moved on (encodeStateParts does not copy).
 */
export function exportLearning(plan: BiddingPlan): LearningImage {
  const st = plan.strategies;
  const strategies: Record<string, number[]> = {};
  st.ids.forEach((id, i) => (strategies[id] = [st.impressions[i], st.clicks[i], st.conversions[i], st.orderValueMicros[i]]));
  const sel = plan.selector;
  const creatives: Record<string, number[]> = {};
  sel.creativeIds.forEach((id, i) => (creatives[id] = [sel.impressions[i], sel.clicks[i]]));
  const sh = plan.shading;
  const per = sh.exchangeCount * sh.bandCount;
  const K = sh.bins;
  // Which line items have evidence: trials are counts >= 0 (decayed by factors in (0, 1]), so "some trial > 0" is
  // "some bit set", tested four floats per step on their bits.
  const bits = new Uint32Array(sh.trials.buffer, sh.trials.byteOffset, sh.trials.length);
  const curve = per * K;
  const ids: string[] = [];
  const kept: number[] = [];
  sh.lineItemIds.forEach((id, li) => {
    let any = 0;
    const end = (li + 1) * curve;
    let k = li * curve;
    for (; k + 4 <= end && any === 0; k += 4) any = bits[k] | bits[k + 1] | bits[k + 2] | bits[k + 3];
    for (; k < end && any === 0; k++) any = bits[k];
    if (any === 0) return;
    ids.push(id);
    kept.push(li);
  });
  const trials = new Float32Array(kept.length * curve);
  const wins = new Float32Array(kept.length * curve);
  const factor = new Float64Array(kept.length * per);
  kept.forEach((li, j) => {
    trials.set(sh.trials.subarray(li * curve, (li + 1) * curve), j * curve);
    wins.set(sh.wins.subarray(li * curve, (li + 1) * curve), j * curve);
    factor.set(sh.factor.subarray(li * per, (li + 1) * per), j * per);
  });
  const bytes = (a: Float32Array | Float64Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return { strategies, creatives, shading: { shape: shadingShape(plan), ids, trials: bytes(trials), wins: bytes(wins), factor: bytes(factor) } };
}

function byteLengthOf(parts: readonly Buffer[]): number {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}

/** Removes a leftover file; never throws (a cleanup that fails leaves a file the next write truncates). */
function removeQuietly(path: string): void {
  try {
    rmSync(path, { force: true });
  } catch {
    /* kept: harmless */
  }
}

/** Writes a file and fsyncs it, off the event loop (libuv's thread pool). */
async function writeDurably(path: string, parts: readonly Buffer[]): Promise<void> {
  const fh = await fsp.open(path, 'w');
  try {
    for (const part of parts) await fh.writeFile(part); // whole, from the handle's current position
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsync of a directory, so that the renames are durable too (best effort: not every platform allows it). */
function syncDir(dir: string): void {
  let fd = -1;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    /* not supported here: the renames are still atomic */
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

/** syncDir off the event loop (best effort likewise). */
async function syncDirInBackground(dir: string): Promise<void> {
  try {
    const fh = await fsp.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    /* not supported here: the renames are still atomic */
  }
}

/** Prometheus view of a store (the cluster sums counters over workers; the age takes the stalest worker). */
export function registerStateMetrics(store: BudgetStateStore, registry: client.Registry): void {
  const registers = [registry];
  new client.Gauge({
    name: 'segbid_state_snapshot_age_seconds',
    help: 'Seconds since the last successful state snapshot (budget ledger and learning state); -1 before the first',
    registers,
    aggregator: 'max',
    collect() {
      const t = store.stats.lastSnapshotMs;
      this.set(Number.isNaN(t) ? -1 : Math.max(0, (Date.now() - t) / 1000));
    },
  });
  new client.Gauge({
    name: 'segbid_state_snapshot_duration_seconds',
    help: 'Time the last state checkpoint held the event loop (image, journal rotation, renames; the periodic one writes and fsyncs off it)',
    registers,
    aggregator: 'max',
    collect() {
      this.set(store.stats.lastSnapshotSeconds);
    },
  });
  const counter = (name: string, help: string, read: () => number) => {
    let reported = 0;
    new client.Counter({
      name,
      help,
      registers,
      collect() {
        const v = read();
        if (v > reported) this.inc(v - reported);
        reported = v;
      },
    });
  };
  counter('segbid_state_snapshot_failures_total', 'State snapshots that could not be written (the journal keeps the changes)', () => store.stats.snapshotFailures);
  counter('segbid_state_snapshot_rejected_total', 'State snapshots rejected at start (corrupt, truncated, other version)', () => store.stats.snapshotsRejected);
  counter('segbid_state_journal_write_errors_total', 'Ledger journal writes that failed (disk full...)', () => store.journalWriteErrors());
  new client.Gauge({
    name: 'segbid_state_journal_records_replayed',
    help: 'Ledger journal records replayed on top of the snapshot at start',
    registers,
    collect() {
      this.set(store.stats.journalRecordsReplayed);
    },
  });
}
