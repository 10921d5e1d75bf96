/**
 * One notice dedupe for every worker thread of `segbid serve --workers N`: the kernel spreads connections over
 * the workers, so an exchange's retry of a notice often reaches another worker than the first copy. Each worker
 * keeps its own dedupe window (event-handler.ts, with the record's fingerprint for telling a retry from a replay);
 * this table says whether ANY worker accepted the same (bid id, kind) within its window, so the retry is counted
 * once: once in the KPIs, once in the event log, once in the budget.
 *
 * Contract
 * - `SharedDedupe.create(slots)` (main thread) allocates a SharedArrayBuffer; each worker wraps the same buffer
 *   (`new SharedDedupe(buffer)`), passed in workerData.
 * - `claim(key, nowSec, untilSec)`: true when the key was not held by a live entry (the caller goes on and counts
 *   the notice), false when another claim of it is still within its window (a duplicate). Lock-free: a slot's
 *   64-bit key is taken with Atomics.compareExchange, so two workers claiming one key at once see one winner.
 * - Keys are a 62-bit hash of (bid id, kind) (two 32-bit lanes, key-hash.ts): two different notices share a key with
 *   probability ~2^-62 per pair. An expired slot is reused in place. Open addressing, PROBE slots from the
 *   key's home; when all are live (a table too small for the traffic) the claim succeeds without a slot (counted
 *   in `full`): the per-worker window still dedupes a retry that comes back to the same worker. Two workers
 *   claiming the same new key in the same microseconds may both take a slot (each its own): counted twice, as
 *   before this table; the exchange's retries come milliseconds apart at least.
 */

import { hashBegin, hashEnd, hashFeed, keyHash } from '../segments/key-hash.js';

const PROBE = 16;

export class SharedDedupe {
  readonly buffer: SharedArrayBuffer;
  private readonly keys: BigInt64Array;
  private readonly until: Int32Array;
  private readonly mask: number;
  /** Claims that found no free slot among PROBE (this thread). */
  full = 0;

  /** A table of `slots` (rounded up to a power of two) entries: 12 bytes each. */
  static create(slots: number): SharedDedupe {
    let n = 1024;
    while (n < slots) n *= 2;
    return new SharedDedupe(new SharedArrayBuffer(n * 12));
  }

  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    const n = buffer.byteLength / 12;
    this.keys = new BigInt64Array(buffer, 0, n);
    this.until = new Int32Array(buffer, n * 8, n);
    this.mask = n - 1;
  }

  claim(key: bigint, nowSec: number, untilSec: number): boolean {
    const home = Number(key & BigInt(this.mask));
    // First the key's own slot, if it has one along its probe window (keys are never removed, only replaced when
    // expired: an empty slot ends the window). Taking an earlier expired slot first would miss a live claim
    // further on.
    for (let p = 0; p < PROBE; p++) {
      const i = (home + p) & this.mask;
      const cur = Atomics.load(this.keys, i);
      if (cur === 0n) break;
      if (cur === key) {
        if (Atomics.load(this.until, i) >= nowSec) return false; // a live claim: a duplicate
        Atomics.store(this.until, i, untilSec); // this key's old claim expired: a new one
        return true;
      }
    }
    // Then a free slot: empty, or another key's expired claim.
    for (let p = 0; p < PROBE; p++) {
      const i = (home + p) & this.mask;
      for (;;) {
        const cur = Atomics.load(this.keys, i);
        if (cur === key) {
          if (Atomics.load(this.until, i) >= nowSec) return false; // a live claim: a duplicate
          Atomics.store(this.until, i, untilSec); // this key's old claim expired: a new one
          return true;
        }
        if (cur !== 0n && Atomics.load(this.until, i) >= nowSec) break; // another key's live slot: probe on
        // Empty or expired: take it (unless another worker took it first; then look at what it holds).
        if (Atomics.compareExchange(this.keys, i, cur, key) === cur) {
          Atomics.store(this.until, i, untilSec);
          return true;
        }
      }
    }
    this.full++;
    return true;
  }
}

/** The table key of a notice: a non-zero 62-bit hash of (bid id, kind), the segment store's key hash (key-hash.ts). */
export function dedupeKey(bidId: string, kind: string): bigint {
  hashBegin(0);
  hashFeed(bidId);
  hashFeed(kind);
  hashEnd();
  const key = (BigInt(keyHash.hi & 0x3fffffff) << 32n) | BigInt(keyHash.lo);
  return key === 0n ? 1n : key;
}
