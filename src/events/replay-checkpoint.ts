/**
 * The replay checkpoint of an event log directory: what its event handler held (KPIs, notice and conversion dedupe
 * windows, the attribution touches), saved at a clean shutdown, so that the next start loads it and replays only
 * the segments written since, instead of the whole log (about 80,000 records a second: a day of a busy bidder's
 * notices is minutes of start).
 *
 * File `<dir>/replay-checkpoint.msgpack` (msgpackr), written to a temporary file, fsynced and renamed: a crash
 * while writing leaves the previous one. It lists the segments it covers with their sizes. A log never appends to
 * an old segment (EventLog opens a new one at each start), so a covered segment stays as it was.
 *
 * Contract: readCheckpoint returns null (the caller replays everything) when there is no file, when it cannot be
 * read or is of another version, or when a covered segment is still there with another size (not the file it was).
 * A covered segment that is gone was archived: its records stay counted through the checkpoint. After a crash the
 * checkpoint of the last clean shutdown still holds, and the segments written since are replayed on top of it.
 * The KPIs it holds are as they were counted: a segmentation tree or `kpis` section changed since shapes only what
 * is replayed on top (delete the file to recount the whole log under the new config).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pack, unpack } from 'msgpackr';
import { writeSnapshotFile } from '../budget/ledger.js';
import type { KpiImage } from './kpis.js';
import type { TouchImage } from './attribution.js';
import { listSegments } from './event-log.js';

export const CHECKPOINT_FILE = 'replay-checkpoint.msgpack';
const VERSION = 1;

/** A notice dedupe entry: what the first notice said (price, loss reason) and until when it counts, ms. */
export interface DedupeImageEntry {
  fp: string;
  until: number;
}

/** What an event handler saves (EventHandler.checkpointState) and loads back (loadCheckpointState). */
export interface HandlerImage {
  kpis: KpiImage;
  /** Notice dedupe entries still in their window, least recently used first. */
  dedupe: [string, DedupeImageEntry][];
  /** Conversion dedupe keys and when each was accepted (ms), least recently used first. */
  conversions: [string, number][];
  touches: TouchImage;
}

interface CheckpointFile {
  v: number;
  /** When it was written, ms. */
  at: number;
  /** The segments whose records it holds, with their sizes in bytes. */
  segments: [string, number][];
  state: HandlerImage;
}

export interface Checkpoint {
  at: number;
  state: HandlerImage;
  /** Covered segments: a replay on top of the checkpoint skips them. */
  covered: ReadonlySet<string>;
}

/** Saves `state` as covering every segment now in `dir` (call once the log is closed). */
export function writeCheckpoint(dir: string, state: HandlerImage, nowMs: number): void {
  const segments: [string, number][] = listSegments(dir).map((name) => [name, statSync(join(dir, name)).size]);
  const file: CheckpointFile = { v: VERSION, at: nowMs, segments, state };
  writeSnapshotFile(join(dir, CHECKPOINT_FILE), pack(file));
}

/** The checkpoint of `dir`, or null when there is none usable (see the contract above). */
export function readCheckpoint(dir: string): Checkpoint | null {
  const path = join(dir, CHECKPOINT_FILE);
  if (!existsSync(path)) return null;
  let file: CheckpointFile;
  try {
    file = unpack(readFileSync(path)) as CheckpointFile;
  } catch {
    return null;
  }
  if (file === null || typeof file !== 'object' || file.v !== VERSION || !Array.isArray(file.segments) || typeof file.state !== 'object') return null;
  for (const [name, size] of file.segments) {
    const p = join(dir, name);
    if (existsSync(p) && statSync(p).size !== size) return null;
  }
  return { at: file.at, state: file.state, covered: new Set(file.segments.map(([name]) => name)) };
}
