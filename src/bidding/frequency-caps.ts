/**
 * Frequency caps per user per line item and per campaign, over rolling windows ("3 per 1h", "10 per 1d").
 *
 * Contract
 * - Compiled once per config (compileFrequencyCaps -> CapPlan): every line item and campaign with caps becomes
 *   a "capped item" with its caps (window seconds, max); each line item points at its own item and at its
 *   campaign's item (-1 = none).
 * - CapStore is what decide.ts talks to. `check` is on the HOT PATH: synchronous and allocation-free. `record`
 *   is called when an impression is BILLED (burl, or the impression event where the exchange sends no burl), per
 *   the checklist; never on the bid itself. A user key is the 64-bit key hash (hi, lo) of src/segments/key-hash.ts.
 * - InProcessCapStore: a fixed-size, 8-way set-associative table of (user, item) entries, each holding the
 *   item's last `ring` impression times (seconds, newest first). A cap (window, max) is reached when the max-th
 *   most recent impression is inside the window: one array read per cap, exact rolling windows. Memory is fixed at
 *   construction: capacity x (20 + 4 x ring) bytes (ring = largest `max` of the config, at most 64). When a set
 *   is full, the entry whose last impression is oldest is evicted (counted in `evictions`): an evicted user can
 *   see the line item again early, so size `capacity` to the active users x capped items of a cap window.
 *   Worker threads of one process share one table over a SharedArrayBuffer (`sharedBuffer`; a worker's plans
 *   find it through `setSharedCapTable`): any thread may write. Writes (record, mergeTimes, adoptFrom) take a
 *   per-set lock (an Int32 word per set, Atomics; a holder dead for LOCK_STEAL_MS loses it, counted in
 *   `lockSteals`). check() takes no lock: the race accepted is a read during a write of the same set, which sees
 *   the ring before or mid-insert (one impression short for that instant) or, when the write evicts that very
 *   slot, the new owner's keys (the reader's entry is then absent: the user is treated as uncapped once).
 * - Per user, a count of the entries the table holds (userEntries, one Int32 counter per bucket of the user key's
 *   low bits, as many buckets as slots, updated with Atomics when an entry changes owner): a request from a user
 *   with no entry, most of them, costs the bid path one read instead of a probe into a random set per capped
 *   line item (~30 per request on the 1,000 line item config). A counter shared by several users only costs
 *   those probes. The reader's race is the one above: a counter read while its first entry is being written.
 * - mergeTimes(user, item, times) is idempotent (per second, the larger of the two multiplicities): remote
 *   copies (Redis prefetch, a previous config's table) can be merged any number of times without double counting.
 *
 * A shared (Redis) implementation, for several bidders, implements the same interface: `check` cannot wait for
 * the network, so it answers from a local near-cache like this table, which `record` writes through to Redis
 * (e.g. a sorted set per user:item with a TTL of the longest window) and which other bidders' impressions reach
 * by a subscription or by `prefetch` (called by the bid server as soon as a user key is known, before decide).
 */
import type { ErrorDetail } from '../common/errors.js';
import type { CampaignDef, CapStoreSettingsDef, FrequencyCapDef } from './strategies/schema.js';
import { fmix32Masked } from '../segments/key-hash.js';

export interface CapStore {
  /** true = the user is under every cap of the line item and of its campaign (may bid). */
  check(userHi: number, userLo: number, lineItem: number, nowMs: number): boolean;
  /**
   * HOT PATH. check() with the user key as an object (the bid path's one per request): the halves of a 64-bit
   * hash are rarely small integers, and passed as arguments to a call V8 does not inline each becomes a heap
   * number, two per capped line item (~500 bytes a decision on the 1,000 line item config).
   */
  checkUser(user: { readonly hi: number; readonly lo: number }, lineItem: number, nowMs: number): boolean;
  /**
   * HOT PATH, once per request. False when the store holds no impression of the user for any capped item: every
   * check of this user would pass, so the bid path skips them (one read instead of a probe per capped line item).
   * True may be a false positive (another user sharing the counter).
   */
  userMayBeCapped(user: { readonly hi: number; readonly lo: number }): boolean;
  /** One billed impression of the line item for the user (counts for the line item and its campaign). */
  record(userHi: number, userLo: number, lineItem: number, nowMs: number): void;
  /** Optional warm-up hint for stores with a remote back end; the in-process store ignores it. */
  prefetch?(userHi: number, userLo: number): void;
}

/** The caps of a config, as flat arrays. */
export interface CapPlan {
  /** Per line item: its own capped item, -1 = none. */
  readonly lineItemItem: Int32Array;
  /** Per line item: its campaign's capped item, -1 = none. */
  readonly campaignItem: Int32Array;
  /** Per line item: 1 when a cap applies to it (its own item or its campaign's), for the bid path's one read. */
  readonly capped: Uint8Array;
  /** Item i has caps [capStart[i], capStart[i + 1]). */
  readonly capStart: Int32Array;
  readonly capWindowSec: Int32Array;
  readonly capMax: Int32Array;
  /** Per item: its longest window (an entry older than that holds nothing useful). */
  readonly itemHorizonSec: Int32Array;
  /** Ring size: the largest max of any cap (at least 1). */
  readonly ring: number;
  readonly itemNames: readonly string[];
}

export const MAX_CAP_WINDOW_SEC = 30 * 86400;
const UNIT_SEC: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400 };

/** "90m" -> 5400; NaN when malformed. */
export function parseWindow(window: string): number {
  const m = /^([1-9][0-9]{0,6})([smhdw])$/.exec(window);
  return m === null ? NaN : Number(m[1]) * UNIT_SEC[m[2]];
}

export interface CapLineItemDef {
  id: string;
  frequencyCaps?: FrequencyCapDef[];
  campaign?: string;
}

export function compileFrequencyCaps(lineItems: readonly CapLineItemDef[], campaigns: readonly CampaignDef[] | undefined, errors: ErrorDetail[]): CapPlan {
  const capStart = [0];
  const windows: number[] = [];
  const maxes: number[] = [];
  const horizon: number[] = [];
  const names: string[] = [];
  let ring = 1;
  const addItem = (name: string, caps: FrequencyCapDef[], path: string): number => {
    let h = 0;
    caps.forEach((c, j) => {
      const sec = parseWindow(c.window);
      if (!(sec > 0 && sec <= MAX_CAP_WINDOW_SEC)) {
        errors.push({ path: `${path}/${j}/window`, message: `window "${c.window}" must be <n><s|m|h|d|w>, at most 30 days` });
        return;
      }
      if (!(c.max >= 1 && c.max <= 64 && (c.max | 0) === c.max)) {
        errors.push({ path: `${path}/${j}/max`, message: 'max must be an integer 1..64' });
        return;
      }
      windows.push(sec);
      maxes.push(c.max);
      if (c.max > ring) ring = c.max;
      if (sec > h) h = sec;
    });
    capStart.push(windows.length);
    horizon.push(h);
    names.push(name);
    return names.length - 1;
  };
  // -1: a campaign without caps (a budget-only campaign): its line items are not capped through it.
  const campaignItemOf = new Map<string, number>();
  (campaigns ?? []).forEach((c, i) => {
    if (campaignItemOf.has(c.id)) errors.push({ path: `/campaigns/${i}/id`, message: `duplicate campaign id "${c.id}"` });
    else campaignItemOf.set(c.id, c.frequencyCaps.length > 0 ? addItem(`campaign:${c.id}`, c.frequencyCaps, `/campaigns/${i}/frequencyCaps`) : -1);
  });
  // A line item belongs to a campaign by naming it (`campaign`) or by being listed in its `lineItems` (as a
  // budgeted campaign lists them): either link applies the campaign's caps. Before, only the first did, so a
  // campaign written as the README shows it (lineItems + frequencyCaps) capped nobody.
  const listedIn = new Map<string, string>();
  (campaigns ?? []).forEach((c) => {
    for (const id of c.lineItems ?? []) if (!listedIn.has(id)) listedIn.set(id, c.id);
  });
  const lineItemItem = new Int32Array(lineItems.length).fill(-1);
  const campaignItem = new Int32Array(lineItems.length).fill(-1);
  lineItems.forEach((li, i) => {
    if (li.frequencyCaps !== undefined && li.frequencyCaps.length > 0) lineItemItem[i] = addItem(`lineItem:${li.id}`, li.frequencyCaps, `/lineItems/${i}/frequencyCaps`);
    const listed = listedIn.get(li.id);
    if (li.campaign !== undefined && listed !== undefined && listed !== li.campaign) {
      errors.push({ path: `/lineItems/${i}/campaign`, message: `names campaign "${li.campaign}" but campaign "${listed}" lists it` });
    }
    const campaign = li.campaign ?? listed;
    if (campaign !== undefined) {
      const item = campaignItemOf.get(campaign);
      if (item === undefined) errors.push({ path: `/lineItems/${i}/campaign`, message: `unknown campaign "${campaign}"` });
      else campaignItem[i] = item;
    }
  });
  const capped = Uint8Array.from(lineItemItem, (own, i) => (own >= 0 || campaignItem[i] >= 0 ? 1 : 0));
  return {
    lineItemItem,
    campaignItem,
    capped,
    capStart: Int32Array.from(capStart),
    capWindowSec: Int32Array.from(windows),
    capMax: Int32Array.from(maxes),
    itemHorizonSec: Int32Array.from(horizon),
    ring,
    itemNames: names,
  };
}

export const DEFAULT_CAP_CAPACITY = 1 << 18;
const WAYS = 8;
/** A set lock held this long belongs to a dead thread (a write holds it for well under a microsecond). */
const LOCK_STEAL_MS = 100;

/** Set by a worker thread: the shared buffer a plan's cap table lays over, or undefined (a private table). */
type SharedCapTableProvider = (plan: CapPlan, capacity: number) => SharedArrayBuffer | undefined;
let sharedCapTable: SharedCapTableProvider | null = null;

/** Worker threads of a cluster call this once: every cap store built afterwards in this thread asks `provider`. */
export function setSharedCapTable(provider: SharedCapTableProvider | null): void {
  sharedCapTable = provider;
}


export class InProcessCapStore implements CapStore {
  readonly plan: CapPlan;
  readonly capacity: number;
  readonly ring: number;
  /** Entries evicted while still holding impressions inside their horizon. */
  evictions = 0;
  /** Set locks taken over from a thread that held them longer than LOCK_STEAL_MS (shared tables only). */
  lockSteals = 0;
  /** The memory the table lies in (a SharedArrayBuffer when shared between threads). */
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  /** One lock word per set, only over a SharedArrayBuffer (a private table has one writer). */
  private readonly locks: Int32Array | null;
  /** mergeTimes scratch: the remote times, newest first, and the merged ring. */
  private readonly remoteScratch: Uint32Array;
  private readonly mergeScratch: Uint32Array;
  private readonly groupMask: number;
  private readonly keyHi: Int32Array;
  private readonly keyLo: Int32Array;
  /** item + 1; 0 = empty slot. */
  private readonly keyItem: Int32Array;
  /** Time of the last impression (seconds), for eviction. */
  private readonly last: Uint32Array;
  /** Entries held per user bucket (userBucket): 0 = no user of the bucket has any (see the contract). */
  private readonly userEntries: Int32Array;
  private readonly userMask: number;
  /**
   * Impression times per entry, seconds since the epoch, NEWEST FIRST (0 = none). Kept sorted on insert because
   * billing notices arrive late and out of order; only the `ring` most recent are kept, which is all any cap reads.
   */
  private readonly times: Uint32Array;

  /**
   * `shared`: lay the table over this buffer (from `InProcessCapStore.sharedBuffer`, same plan and capacity), so
   * the worker threads of one process see one table (writes lock their set; see the contract). Without it, the
   * provider of `setSharedCapTable` is asked; else the table is private.
   */
  constructor(plan: CapPlan, settings?: CapStoreSettingsDef, shared?: SharedArrayBuffer) {
    const capacity = InProcessCapStore.capacityOf(settings);
    this.plan = plan;
    this.capacity = capacity;
    this.ring = plan.ring;
    this.groupMask = capacity / WAYS - 1;
    const bytes = InProcessCapStore.bytesFor(plan, capacity);
    if (shared === undefined && sharedCapTable !== null) shared = sharedCapTable(plan, capacity);
    if (shared !== undefined && shared.byteLength !== bytes) throw new RangeError(`shared cap table is ${shared.byteLength} bytes, expected ${bytes}`);
    const buf = shared ?? new ArrayBuffer(bytes);
    this.buffer = buf;
    this.locks = shared !== undefined ? new Int32Array(shared, capacity * (16 + 4 * plan.ring), capacity / WAYS) : null;
    this.remoteScratch = new Uint32Array(plan.ring);
    this.mergeScratch = new Uint32Array(plan.ring);
    this.keyHi = new Int32Array(buf, 0, capacity);
    this.keyLo = new Int32Array(buf, 4 * capacity, capacity);
    this.keyItem = new Int32Array(buf, 8 * capacity, capacity);
    this.last = new Uint32Array(buf, 12 * capacity, capacity);
    this.times = new Uint32Array(buf, 16 * capacity, capacity * plan.ring);
    this.userEntries = new Int32Array(buf, capacity * (16 + 4 * plan.ring) + (capacity / WAYS) * 4, capacity);
    this.userMask = capacity - 1;
  }

  /** A power of two, and at least one set. */
  static capacityOf(settings?: CapStoreSettingsDef): number {
    return Math.max(WAYS, 2 ** Math.ceil(Math.log2(settings?.capacity ?? DEFAULT_CAP_CAPACITY)));
  }

  static bytesFor(plan: CapPlan, capacity: number): number {
    return capacity * (16 + 4 * plan.ring) + (capacity / WAYS) * 4 + capacity * 4; // + a lock word per set, userEntries
  }

  /** A zeroed SharedArrayBuffer to hand to every worker's store (postMessage shares it, it is not copied). */
  static sharedBuffer(plan: CapPlan, settings?: CapStoreSettingsDef): SharedArrayBuffer {
    return new SharedArrayBuffer(InProcessCapStore.bytesFor(plan, InProcessCapStore.capacityOf(settings)));
  }

  /** Bytes held by the table (fixed at construction). */
  get bytes(): number {
    return InProcessCapStore.bytesFor(this.plan, this.capacity);
  }

  check(userHi: number, userLo: number, lineItem: number, nowMs: number): boolean {
    return this.checkHash(userHi | 0, userLo | 0, lineItem, nowMs);
  }

  checkUser(user: { readonly hi: number; readonly lo: number }, lineItem: number, nowMs: number): boolean {
    return this.checkHash(user.hi | 0, user.lo | 0, lineItem, nowMs);
  }

  userMayBeCapped(user: { readonly hi: number; readonly lo: number }): boolean {
    return this.userEntries[this.userBucket(user.lo)] !== 0;
  }

  /** The user's counter in userEntries: the key hash's low bits (setOf mixes the item in; this must not). */
  private userBucket(lo: number): number {
    return lo & this.userMask;
  }

  private checkHash(userHi: number, userLo: number, lineItem: number, nowMs: number): boolean {
    const own = this.plan.lineItemItem[lineItem];
    const camp = this.plan.campaignItem[lineItem];
    if (own < 0 && camp < 0) return true;
    const now = Math.floor(nowMs / 1000);
    if (own >= 0 && !this.underCaps(userHi, userLo, own, now)) return false;
    return camp < 0 || this.underCaps(userHi, userLo, camp, now);
  }

  record(userHi: number, userLo: number, lineItem: number, nowMs: number): void {
    const now = Math.floor(nowMs / 1000);
    const own = this.plan.lineItemItem[lineItem];
    const camp = this.plan.campaignItem[lineItem];
    if (own >= 0) this.lockedRecord(userHi | 0, userLo | 0, own, now);
    if (camp >= 0) this.lockedRecord(userHi | 0, userLo | 0, camp, now);
  }

  /**
   * Merges impression times (seconds since the epoch, any order, 0 = none) known elsewhere (Redis, another
   * table) into the user's entry for a capped item: per second, the larger of the local and the remote count
   * is kept, so merging the same times again changes nothing. Off the hot path; allocation-free.
   */
  mergeTimes(userHi: number, userLo: number, item: number, times: ArrayLike<number>, count = times.length): void {
    if (!(item >= 0 && item < this.plan.itemNames.length)) return;
    const hi = userHi | 0;
    const lo = userLo | 0;
    const R = this.ring;
    // The newest R remote times, newest first (insertion sort: R <= 64).
    const remote = this.remoteScratch;
    let n = 0;
    for (let k = 0; k < count; k++) {
      const t = times[k] >>> 0;
      if (t === 0) continue;
      if (n === R && t <= remote[R - 1]) continue;
      let i = n < R ? n++ : R - 1;
      while (i > 0 && remote[i - 1] < t) {
        remote[i] = remote[i - 1];
        i--;
      }
      remote[i] = t;
    }
    if (n === 0) return;
    const set = this.setOf(hi, lo, item) / WAYS;
    this.lock(set);
    try {
      let slot = this.find(hi, lo, item);
      if (slot < 0) slot = this.allocate(hi, lo, item, remote[0]);
      const base = slot * R;
      const local = this.times;
      const out = this.mergeScratch;
      let i = 0;
      let j = 0;
      let m = 0;
      while (m < R) {
        const a = i < R ? local[base + i] : 0;
        const b = j < n ? remote[j] : 0;
        if (a === 0 && b === 0) break;
        if (a > b) {
          out[m++] = a;
          i++;
        } else if (b > a) {
          out[m++] = b;
          j++;
        } else {
          out[m++] = a; // the same impression second on both sides: counted once per pair
          i++;
          j++;
        }
      }
      for (let k = 0; k < R; k++) local[base + k] = k < m ? out[k] : 0;
      if (m > 0 && out[0] > this.last[slot]) this.last[slot] = out[0];
    } finally {
      this.unlock(set);
    }
  }

  /** The capped item of a line item or campaign by name (`lineItem:<id>`, `campaign:<id>`), -1 when absent. */
  itemOf(name: string): number {
    return this.plan.itemNames.indexOf(name);
  }

  /** Impressions of the user for a capped item within the last `windowSec` (tests, dashboard). */
  count(userHi: number, userLo: number, item: number, windowSec: number, nowMs: number): number {
    const slot = this.find(userHi | 0, userLo | 0, item);
    if (slot < 0) return 0;
    const now = Math.floor(nowMs / 1000);
    let n = 0;
    for (let k = 0; k < this.ring; k++) {
      const t = this.times[slot * this.ring + k];
      if (t !== 0 && t > now - windowSec) n++;
    }
    return n;
  }

  /**
   * Carries the impressions of the previous config's store over, matching capped items by name (line item or
   * campaign id), so that a config reload does not reset every user's caps. Off the hot path: O(capacity).
   */
  adoptFrom(previous: InProcessCapStore): void {
    // Worker threads swapping to a config with the same cap table keep it whole: nothing to carry.
    if (previous.buffer === this.buffer) return;
    const itemOf = new Map<string, number>();
    this.plan.itemNames.forEach((name, i) => itemOf.set(name, i));
    const R = previous.ring;
    for (let slot = 0; slot < previous.capacity; slot++) {
      const tag = previous.keyItem[slot];
      if (tag === 0) continue;
      const item = itemOf.get(previous.plan.itemNames[tag - 1]);
      if (item === undefined) continue;
      // A merge, not a replay: every worker of a cluster adopts from the same old table into the same new one.
      this.mergeTimes(previous.keyHi[slot], previous.keyLo[slot], item, previous.times.subarray(slot * R, slot * R + R));
    }
  }

  clear(): void {
    this.keyItem.fill(0);
    this.times.fill(0);
    this.userEntries.fill(0);
    this.evictions = 0;
  }

  private underCaps(hi: number, lo: number, item: number, now: number): boolean {
    const slot = this.find(hi, lo, item);
    if (slot < 0) return true;
    const base = slot * this.ring;
    const p = this.plan;
    for (let c = p.capStart[item], end = p.capStart[item + 1]; c < end; c++) {
      // The max-th most recent impression: if it is inside the window, `max` impressions are.
      const t = this.times[base + p.capMax[c] - 1];
      if (t !== 0 && t > now - p.capWindowSec[c]) return false;
    }
    return true;
  }

  private setOf(hi: number, lo: number, item: number): number {
    return fmix32Masked(hi ^ Math.imul(lo, 0x9e3779b1) ^ Math.imul(item + 1, 0x85ebca77), this.groupMask) * WAYS;
  }

  private find(hi: number, lo: number, item: number): number {
    const base = this.setOf(hi, lo, item);
    const tag = item + 1;
    for (let i = base; i < base + WAYS; i++) {
      if (this.keyItem[i] === tag && this.keyHi[i] === hi && this.keyLo[i] === lo) return i;
    }
    return -1;
  }

  private lockedRecord(hi: number, lo: number, item: number, now: number): void {
    const set = this.setOf(hi, lo, item) / WAYS;
    this.lock(set);
    try {
      this.recordItem(hi, lo, item, now);
    } finally {
      this.unlock(set);
    }
  }

  private lock(set: number): void {
    const locks = this.locks;
    if (locks === null || Atomics.compareExchange(locks, set, 0, 1) === 0) return;
    const deadline = Date.now() + LOCK_STEAL_MS;
    for (;;) {
      // Sleep up to 1 ms on the word rather than spin: the holder may be descheduled (2 cores, N threads).
      Atomics.wait(locks, set, 1, 1);
      if (Atomics.compareExchange(locks, set, 0, 1) === 0) return;
      if (Date.now() > deadline) {
        this.lockSteals++;
        return; // the word stays 1: ours now
      }
    }
  }

  private unlock(set: number): void {
    const locks = this.locks;
    if (locks === null) return;
    Atomics.store(locks, set, 0);
    Atomics.notify(locks, set, 1);
  }

  private recordItem(hi: number, lo: number, item: number, now: number): void {
    let slot = this.find(hi, lo, item);
    if (slot < 0) slot = this.allocate(hi, lo, item, now);
    const base = slot * this.ring;
    const times = this.times;
    // Insertion into the newest-first array; an impression older than every kept one (full ring) is dropped.
    let i = base + this.ring - 1;
    if (times[i] !== 0 && times[i] >= now) return;
    while (i > base && (times[i - 1] === 0 || times[i - 1] < now)) {
      times[i] = times[i - 1];
      i--;
    }
    times[i] = now;
    if (now > this.last[slot]) this.last[slot] = now;
  }

  /** A free slot of the set, else one whose impressions all left their horizon, else the least recent one. */
  private allocate(hi: number, lo: number, item: number, now: number): number {
    const base = this.setOf(hi, lo, item);
    let victim = -1;
    let victimLast = Infinity;
    let expired = -1;
    for (let i = base; i < base + WAYS; i++) {
      if (this.keyItem[i] === 0) {
        victim = i;
        expired = i;
        break;
      }
      const horizon = this.plan.itemHorizonSec[this.keyItem[i] - 1];
      if (expired < 0 && this.last[i] <= now - horizon) expired = i;
      if (this.last[i] < victimLast) {
        victimLast = this.last[i];
        victim = i;
      }
    }
    const slot = expired >= 0 ? expired : victim;
    if (expired < 0) this.evictions++;
    // Counted for the new owner before its key is written, uncounted for the old one (see userEntries).
    Atomics.add(this.userEntries, this.userBucket(lo), 1);
    if (this.keyItem[slot] !== 0) Atomics.sub(this.userEntries, this.userBucket(this.keyLo[slot]), 1);
    this.keyHi[slot] = hi;
    this.keyLo[slot] = lo;
    this.keyItem[slot] = item + 1;
    this.last[slot] = now;
    this.times.fill(0, slot * this.ring, slot * this.ring + this.ring);
    return slot;
  }
}
