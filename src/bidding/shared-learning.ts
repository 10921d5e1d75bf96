/**
 * Learning statistics shared by every bidder thread (and, through src/redis/redis-learning.ts, every machine):
 * the strategies' outcome counts, the creative rotation counts, the first-price shading curves and the budget
 * allocator's arm statistics. Each thread learns from the notices it happens to receive; every second it sends
 * what it learned since the last time (a DELTA) to a hub and gets the merged TOTALS back, so every thread decides
 * on the same statistics, one sync period late at most.
 *
 * Contract
 * - A layout names every counter of a (plan, allocator) pair with a stable string (`s|<line item>|imp`,
 *   `c|<creative>|clk`, `h|<line item>|<exchange>|<band floor>|<bin>/<bins>|t`, `a|<line item>|cost`, ...), so
 *   threads (or machines) on different config versions still add up what they share. Its id hashes the names.
 *   A shading curve's bins are one ENTRY of `bins` consecutive fields, named once with `*` for the bin
 *   (`h|li|ex|floor|*` + `/<bins>|t`): a 1,000 line item config has ~650,000 fields but ~50,000 entries, so a
 *   layout is built, hashed and registered in milliseconds, not seconds (the bid thread does it on start and on
 *   every config swap). A field keeps its own name where one is needed (Redis, `total`): the entry's with the bin.
 * - Exactly once: a thread's counts move to the hub only as deltas, each delta leaves the thread once (its base
 *   advances, or the shading shadow is zeroed, when it is taken) and the hub adds it once. Totals REPLACE the
 *   thread's counters: counter = totals + what was learned since the delta left. Strategy, creative and allocator
 *   counters never decay, so their delta is `current - base`. Shading curves decay (half-life) inside
 *   ShadingTable.refresh, so their delta is kept apart: the listener taps each outcome into a shadow table that is
 *   never refreshed; the hub applies the same half-life to its shading totals.
 * - Sparse exchange (worker threads): a delta lists only its non-zero fields (`at`), and the hub answers with the
 *   fields changed since the version of the totals the thread applied last (LearningClient.since, the hub's
 *   `version`, bumped by every merge, decay step and external addition); whole totals when the thread has none in
 *   its layout yet. Fields not listed are what the thread's base already holds.
 * - Config swaps: BidHandler brackets a swap with beforeSwap() (the old objects' delta is queued, in the old
 *   layout) and afterSwap() (the new objects become the base), so nothing learned around a swap is lost or
 *   counted twice. The hub maps every layout onto its own field list by name.
 * - A thread's starting counters (restored by src/budget/state-store.ts, i.e. merged totals of an earlier run) are
 *   a SEED: the hub keeps the larger of seed and totals per field, so N restored workers do not count N times.
 * - Not shared: the allocator's recent-click buckets (the conversion-delay correction): another thread's clicks
 *   count as mature. A thread that dies loses what it learned since its last sync (at most one period).
 * - Everything here is off the hot path (timers, messages); the hot path reads the same arrays as before.
 */
import { createHash } from 'node:crypto';
import type { BiddingPlan } from './bidding-plan.js';
import type { Allocator } from '../budget/allocator.js';
import { ShadingTable } from './shading.js';
import type { LearningTap } from './learning.js';

export const LEARNING_SYNC_MS = 1000;
/** Shading evidence decays in steps at most this often (as ShadingTable does). */
const DECAY_EVERY_MS = 60_000;

export interface LearningSources {
  plan: BiddingPlan;
  allocator: Allocator | null;
}

const S_FIELDS = ['imp', 'clk', 'conv', 'ov'] as const;
const C_FIELDS = ['imp', 'clk'] as const;
const A_FIELDS = ['imp', 'clk', 'conv', 'val', 'cost', 'bids'] as const;

export interface LearningLayout {
  readonly id: string;
  /** Entries in field order: a counter, or a block of `widths[e]` consecutive counters (a curve's bins). */
  readonly names: readonly string[];
  readonly widths: Int32Array;
  /** Per field: the half-life in seconds of a decaying counter (shading), 0 = never decays. */
  readonly halfLifeSec: Float64Array;
  readonly size: number;
  readonly lineItems: number;
  readonly creatives: number;
  readonly shadingCells: number;
  readonly offC: number;
  readonly offH: number;
  readonly offA: number;
}

/**
 * The last layout built, with the inputs it was built from. A config swap that keeps the learning shape (the same
 * line items, creatives, shading keys and arms: most reloads change bids, targeting or creatives' content) reuses
 * it instead of naming every field again (~650,000 names and their SHA-1 on a 1,000 line item config, a third of
 * such a swap's hold of the bid thread). Layouts are never modified after they are built.
 */
let lastLayout: { key: string; layout: LearningLayout } | null = null;

/** Everything learningLayout reads, as one string (the field lists are constants of this module). */
function layoutKey(src: LearningSources): string {
  const { plan, allocator } = src;
  const sh = plan.shading;
  return JSON.stringify([
    plan.strategies.ids,
    plan.selector.creativeIds,
    sh.settings.exchanges,
    sh.settings.floorBandsCpm,
    sh.settings.halfLifeSec,
    sh.bins,
    sh.keys,
    sh.lineItemIds,
    allocator?.plan.lineItemIds ?? [],
  ]);
}

export function learningLayout(src: LearningSources): LearningLayout {
  const key = layoutKey(src);
  if (lastLayout !== null && lastLayout.key === key) return lastLayout.layout;
  const layout = buildLearningLayout(src);
  lastLayout = { key, layout };
  return layout;
}

function buildLearningLayout(src: LearningSources): LearningLayout {
  const { plan, allocator } = src;
  const names: string[] = [];
  const widths: number[] = [];
  const scalar = (name: string) => {
    names.push(name);
    widths.push(1);
  };
  const ids = plan.strategies.ids;
  for (const id of ids) for (const f of S_FIELDS) scalar(`s|${id}|${f}`);
  const offC = names.length;
  for (const id of plan.selector.creativeIds) for (const f of C_FIELDS) scalar(`c|${id}|${f}`);
  const offH = names.length;
  const sh = plan.shading;
  const exchanges = [...sh.settings.exchanges, 'other'];
  const bandFloors = [0, ...sh.settings.floorBandsCpm];
  const K = sh.bins;
  // Trials of every cell, then wins of every cell (cell = key * bins + bin, as in ShadingTable): one entry per
  // key and kind, its K bins consecutive.
  for (const kind of ['t', 'w']) {
    for (const li of sh.lineItemIds) {
      for (const ex of exchanges) {
        for (const floor of bandFloors) {
          names.push(`h|${li}|${ex}|${floor}|${BIN}/${K}|${kind}`);
          widths.push(K);
        }
      }
    }
  }
  const shadingCells = sh.keys * K;
  const offA = offH + 2 * shadingCells;
  const aIds = allocator?.plan.lineItemIds ?? [];
  for (const id of aIds) for (const f of A_FIELDS) scalar(`a|${id}|${f}`);
  const size = offA + aIds.length * A_FIELDS.length;
  const halfLifeSec = new Float64Array(size);
  halfLifeSec.fill(sh.settings.halfLifeSec, offH, offA);
  const id = createHash('sha1').update(names.join('\n')).digest('hex').slice(0, 16);
  return { id, names, widths: Int32Array.from(widths), halfLifeSec, size, lineItems: ids.length, creatives: plan.selector.creativeIds.length, shadingCells, offC, offH, offA };
}

/** The bin placeholder of a block entry's name. */
const BIN = '*';
const CELL = /^(.*)\|(\d+)\/(\d+)\|([a-z])$/;

/** The name of field `k` of an entry (the entry's own name when it is a single counter). */
export function fieldNameOf(entry: string, width: number, k: number): string {
  if (width === 1 && k === 0) return entry;
  const at = entry.lastIndexOf(`|${BIN}/`);
  return entry.slice(0, at + 1) + k + entry.slice(at + 2);
}

/** A field name inside a block entry: the entry's name and the field's offset; null for any other name. */
function cellOf(name: string): { entry: string; k: number; width: number } | null {
  const m = CELL.exec(name);
  if (m === null) return null;
  const k = Number(m[2]);
  const width = Number(m[3]);
  if (!(k < width)) return null;
  return { entry: `${m[1]}|${BIN}/${m[3]}|${m[4]}`, k, width };
}

/** One thread's learning since its last sync, in the layout it was learned in. */
export interface LearningBatch {
  layout: string;
  /** Sent with the first batch of a layout (and again when the hub says it does not know it). */
  names?: readonly string[];
  /** Fields per entry of `names` (absent: one each). */
  widths?: Int32Array;
  halfLifeSec?: Float64Array;
  /** Dense: one value per field of the layout. With `at`: the values of fields at[j] only (the others are 0). */
  delta: Float64Array;
  at?: Int32Array;
  /**
   * A thread's counters as it started (restored from a state directory, src/budget/state-store.ts): already
   * merged totals of an earlier run, so the hub takes the larger of it and its own totals (never the sum).
   */
  seed?: Float64Array;
}

/** Reads (write = false) or writes the never-decaying counters (strategies, creatives, allocator) of `src`. */
function counters(src: LearningSources, layout: LearningLayout, v: Float64Array, write: boolean): void {
  const st = src.plan.strategies;
  const sArrays = [st.impressions, st.clicks, st.conversions, st.orderValueMicros];
  for (let li = 0; li < layout.lineItems; li++) {
    for (let f = 0; f < 4; f++) {
      if (write) sArrays[f][li] = v[li * 4 + f];
      else v[li * 4 + f] = sArrays[f][li];
    }
  }
  const sel = src.plan.selector;
  for (let c = 0; c < layout.creatives; c++) {
    const i = layout.offC + c * 2;
    if (write) {
      sel.impressions[c] = v[i];
      sel.clicks[c] = v[i + 1];
    } else {
      v[i] = sel.impressions[c];
      v[i + 1] = sel.clicks[c];
    }
  }
  const a = src.allocator;
  if (a === null) return;
  const aArrays = [a.impressions, a.clicks, a.conversions, a.valueMicros, a.costMicros, a.bids];
  const n = (layout.size - layout.offA) / A_FIELDS.length;
  for (let li = 0; li < n; li++) {
    for (let f = 0; f < A_FIELDS.length; f++) {
      const i = layout.offA + li * A_FIELDS.length + f;
      if (write) aArrays[f][li] = v[i];
      else v[i] = aArrays[f][li];
    }
  }
}

/** A set of shading keys with the list of its members in insertion order (both preallocated for every key). */
class KeySet {
  private readonly flag: Uint8Array;
  readonly list: Int32Array;
  size = 0;
  constructor(keys: number) {
    this.flag = new Uint8Array(keys);
    this.list = new Int32Array(keys);
  }
  add(key: number): void {
    if (this.flag[key] !== 0) return;
    this.flag[key] = 1;
    this.list[this.size++] = key;
  }
  clear(): void {
    for (let i = 0; i < this.size; i++) this.flag[this.list[i]] = 0;
    this.size = 0;
  }
}

/**
 * A thread's side: takes deltas, applies totals. `sources` returns the objects currently serving (the plan of
 * the current decider, the allocator of the current budget policy).
 */
export class LearningClient implements LearningTap {
  private readonly sources: () => LearningSources;
  private bound!: LearningSources;
  private layout!: LearningLayout;
  /**
   * Counter sections: the values as of the last delta taken or totals applied. Shading section: the hub's totals
   * as last applied (a sparse apply rebuilds a changed curve from them).
   */
  private base!: Float64Array;
  private current!: Float64Array;
  /** Shading outcomes since the last delta, never decayed. */
  private shadow!: ShadingTable;
  private readonly queued: LearningBatch[] = [];
  /** A delta array handed back by recycle() (same-thread sync), reused by the next takeDelta. */
  private spare: Float64Array | null = null;
  /** Reused by syncInProcess for the totals (a large config has ~650,000 fields: 5 MB a second otherwise). */
  private totalsScratch: Float64Array | null = null;
  /**
   * Sparse exchange (worker threads, see startWorkerLearning): deltas carry only the non-zero fields, the shading
   * section only for the keys with outcomes since the last delta (`touched`), and totals come back as the fields
   * the hub changed since `appliedVersion`. A curve-heavy config (650,000 fields) then moves kilobytes a second,
   * not 10 MB of structured clones and two passes over every field on the bid thread.
   */
  sparse = false;
  /** Shading keys with outcomes since the last delta; and, while applying sparse totals, the keys they change. */
  private touched!: KeySet;
  private changedKeys!: KeySet;
  /** Hub version of the totals last applied (-1: none yet in this layout: the next totals come whole). */
  private appliedVersion = -1;
  private sparseAt = new Int32Array(4096);
  private sparseVal = new Float64Array(4096);
  private readonly announced = new Set<string>();
  /** Batches taken, totals applied, and rebinds noticed without a swap bracket (inexact: see rebind). */
  readonly stats = { batches: 0, applied: 0, stale: 0, unbracketedSwaps: 0 };

  constructor(sources: () => LearningSources) {
    this.sources = sources;
    this.bind();
    // What the thread starts with (a restored state) goes to the hub as a seed, not as a delta.
    const L = this.layout;
    const seed = new Float64Array(L.size);
    seed.set(this.base.subarray(0, L.offH), 0);
    seed.set(this.base.subarray(L.offA), L.offA);
    const sh = this.bound.plan.shading;
    for (let k = 0; k < L.shadingCells; k++) {
      seed[L.offH + k] = sh.trials[k];
      seed[L.offH + L.shadingCells + k] = sh.wins[k];
    }
    if (seed.some((x) => x !== 0)) {
      this.announced.add(L.id);
      this.queued.push({ layout: L.id, names: L.names, widths: L.widths, halfLifeSec: L.halfLifeSec, delta: new Float64Array(L.size), seed });
    }
  }

  get layoutId(): string {
    return this.layout.id;
  }

  /** The hub version the next sparse totals should build on (-1: send them whole). */
  get since(): number {
    return this.appliedVersion;
  }

  /** LearningTap: a first-price outcome the listener just recorded on `shading` (the current plan's). */
  shadingOutcome(shading: ShadingTable, key: number, bidMicros: number, valueMicros: number, won: boolean, minToWinMicros: number): void {
    if (shading !== this.bound.plan.shading) return;
    this.shadow.recordOutcome(key, bidMicros, valueMicros, won, minToWinMicros);
    this.touched.add(key);
  }

  /** Before a config swap: queue what the serving objects learned (their layout leaves with them). */
  beforeSwap(): void {
    this.queued.push(this.takeDelta());
  }

  /** After a config swap: the new objects (with whatever they adopted) are the base from now on. */
  afterSwap(): void {
    this.bind();
  }

  /** Everything learned since the last call, oldest layout first. */
  collect(): LearningBatch[] {
    const now = this.sources();
    if (now.plan !== this.bound.plan || now.allocator !== this.bound.allocator) {
      // Swapped without the bracket (a caller other than BidHandler.swap): what was learned between the swap and
      // now is taken as the new base and stays local until the next totals replace it.
      this.stats.unbracketedSwaps++;
      this.queued.push(this.takeDelta());
      this.bind();
    }
    const out = this.queued.splice(0);
    out.push(this.takeDelta());
    this.stats.batches += out.length;
    return out;
  }

  /**
   * Same-thread sync only (syncInProcess): the hub has added these batches in this thread, so the next delta may
   * reuse one of their arrays. A worker's batches leave as structured clones and are not handed back.
   */
  recycle(batches: readonly LearningBatch[]): void {
    for (const b of batches) if (b.seed === undefined && b.delta.length === this.layout.size) this.spare = b.delta;
  }

  /** A totals buffer of the current layout's size, reused from one same-thread sync to the next. */
  scratchTotals(): Float64Array {
    if (this.totalsScratch === null || this.totalsScratch.length !== this.layout.size) this.totalsScratch = new Float64Array(this.layout.size);
    return this.totalsScratch;
  }

  /** The hub did not know these layouts: announce them again with the next batch. */
  forget(layouts: readonly string[]): void {
    for (const l of layouts) this.announced.delete(l);
  }

  /**
   * Totals for a layout from the hub (they include every delta this thread has sent). False when the thread has
   * moved to another layout since (the next sync brings the right ones).
   */
  apply(layoutId: string, totals: Float64Array, at?: Int32Array, version = -1): boolean {
    const L = this.layout;
    if (layoutId !== L.id || (at === undefined ? totals.length !== L.size : at.length !== totals.length) || (version >= 0 && version < this.appliedVersion)) {
      this.stats.stale++;
      return false;
    }
    if (at !== undefined) {
      if (this.appliedVersion < 0) {
        // Changes since a version this layout never had: not enough to rebuild from; the next totals come whole.
        this.stats.stale++;
        return false;
      }
      this.applySparse(totals, at);
      this.appliedVersion = version;
      this.stats.applied++;
      return true;
    }
    this.appliedVersion = version;
    const cur = this.current;
    counters(this.bound, L, cur, false);
    for (let i = 0; i < L.offH; i++) cur[i] = totals[i] + (cur[i] - this.base[i]);
    for (let i = L.offA; i < L.size; i++) cur[i] = totals[i] + (cur[i] - this.base[i]);
    counters(this.bound, L, cur, true);
    this.base.set(totals);
    this.applyShading(totals);
    this.stats.applied++;
    return true;
  }

  /**
   * Totals of the fields the hub changed since the last applied version (the others are what `base` holds): the
   * counters as in apply(), and the shading keys with a changed cell rebuilt from base + shadow.
   */
  private applySparse(totals: Float64Array, at: Int32Array): void {
    const L = this.layout;
    const cur = this.current;
    const base = this.base;
    counters(this.bound, L, cur, false);
    const K = this.bound.plan.shading.bins;
    const changed = this.changedKeys;
    for (let j = 0; j < at.length; j++) {
      const i = at[j];
      const v = totals[j];
      if (i < L.offH || i >= L.offA) cur[i] = v + (cur[i] - base[i]);
      else changed.add(Math.floor(((i - L.offH) % L.shadingCells) / K));
      base[i] = v;
    }
    counters(this.bound, L, cur, true);
    for (let m = 0; m < changed.size; m++) this.setCurve(changed.list[m], base);
    changed.clear();
  }

  private applyShading(totals: Float64Array): void {
    const sh = this.bound.plan.shading;
    const K = sh.bins;
    const cells = this.layout.shadingCells;
    const tOff = this.layout.offH;
    const wOff = tOff + cells;
    for (let key = 0; key < sh.keys; key++) {
      const base = key * K;
      let changed = false;
      for (let k = base; k < base + K; k++) {
        const t = totals[tOff + k] + this.shadow.trials[k];
        const w = totals[wOff + k] + this.shadow.wins[k];
        if (Math.abs(t - sh.trials[k]) > 1e-6 * (1 + t) || Math.abs(w - sh.wins[k]) > 1e-6 * (1 + w)) {
          changed = true;
          break;
        }
      }
      if (changed) this.setCurve(key, totals);
    }
  }

  /** Key `key` of the serving shading table := `totals` (a layout-ordered array) + what the shadow holds since. */
  private setCurve(key: number, totals: Float64Array): void {
    const sh = this.bound.plan.shading;
    const K = sh.bins;
    const tOff = this.layout.offH;
    const wOff = tOff + this.layout.shadingCells;
    // The table recomputes a key's factor only once it has seen an outcome there: record a neutral one (its
    // counts are overwritten just below) so the next refresh() draws the curve from the merged counts.
    sh.recordOutcome(key, 0, 1, false, -1);
    for (let k = key * K; k < key * K + K; k++) {
      sh.trials[k] = totals[tOff + k] + this.shadow.trials[k];
      sh.wins[k] = totals[wOff + k] + this.shadow.wins[k];
    }
  }

  private bind(): void {
    this.bound = this.sources();
    this.layout = learningLayout(this.bound);
    this.base = new Float64Array(this.layout.size);
    this.current = new Float64Array(this.layout.size);
    counters(this.bound, this.layout, this.base, false);
    const sh = this.bound.plan.shading;
    this.shadow = new ShadingTable(sh.lineItemIds, sh.settings);
    this.touched = new KeySet(sh.keys);
    this.changedKeys = new KeySet(sh.keys);
    this.appliedVersion = -1;
  }

  private takeDelta(): LearningBatch {
    const L = this.layout;
    const batch = this.sparse ? this.takeSparseDelta() : this.takeDenseDelta();
    if (this.announced.has(L.id)) return batch;
    this.announced.add(L.id);
    batch.names = L.names;
    batch.widths = L.widths;
    batch.halfLifeSec = L.halfLifeSec;
    return batch;
  }

  private takeDenseDelta(): LearningBatch {
    const L = this.layout;
    // Every field is written below (both counter sections, then the whole shading section): a spare needs no zeroing.
    const delta = this.spare !== null && this.spare.length === L.size ? this.spare : new Float64Array(L.size);
    this.spare = null;
    const cur = this.current;
    counters(this.bound, L, cur, false);
    for (let i = 0; i < L.offH; i++) delta[i] = cur[i] - this.base[i];
    for (let i = L.offA; i < L.size; i++) delta[i] = cur[i] - this.base[i];
    this.base.set(cur.subarray(0, L.offH), 0);
    this.base.set(cur.subarray(L.offA), L.offA);
    delta.set(this.shadow.trials, L.offH);
    delta.set(this.shadow.wins, L.offH + L.shadingCells);
    this.shadow.trials.fill(0);
    this.shadow.wins.fill(0);
    this.touched.clear();
    return { layout: L.id, delta };
  }

  private takeSparseDelta(): LearningBatch {
    const L = this.layout;
    counters(this.bound, L, this.current, false);
    // The counter sections, before and after the shading section (which comes from the touched keys below).
    let n = this.pushChanges(0, L.offH, 0);
    n = this.pushChanges(L.offA, L.size, n);
    const K = this.bound.plan.shading.bins;
    const trials = this.shadow.trials;
    const wins = this.shadow.wins;
    for (let t = 0; t < this.touched.size; t++) {
      const key = this.touched.list[t];
      for (let k = key * K; k < key * K + K; k++) {
        if (trials[k] !== 0) n = this.push(n, L.offH + k, trials[k]);
        if (wins[k] !== 0) n = this.push(n, L.offH + L.shadingCells + k, wins[k]);
        trials[k] = 0;
        wins[k] = 0;
      }
    }
    this.touched.clear();
    return { layout: L.id, at: this.sparseAt.slice(0, n), delta: this.sparseVal.slice(0, n) };
  }

  /** Appends the counters of [from, to) that moved since the base (and advances the base); returns the count. */
  private pushChanges(from: number, to: number, n: number): number {
    const cur = this.current;
    const base = this.base;
    for (let i = from; i < to; i++) {
      const d = cur[i] - base[i];
      if (d === 0) continue;
      n = this.push(n, i, d);
      base[i] = cur[i];
    }
    return n;
  }

  /** Appends (field, value) to the sparse scratch, growing it; returns the new count. */
  private push(n: number, field: number, value: number): number {
    if (n === this.sparseAt.length) {
      this.sparseAt = grown(this.sparseAt, new Int32Array(n * 2));
      this.sparseVal = grown(this.sparseVal, new Float64Array(n * 2));
    }
    this.sparseAt[n] = field;
    this.sparseVal[n] = value;
    return n + 1;
  }
}

/**
 * The merged statistics (main thread of a cluster, or the single bidder itself): fields by name, deltas added
 * once, shading fields decayed with their half-life. With `trackUnpushed`, it also keeps what was added locally
 * and not yet pushed to Redis.
 */
export class LearningHub {
  /** Entries by name: a counter, or a block of consecutive fields (a curve's bins); see learningLayout. */
  private readonly entryNames: string[] = [];
  private readonly entryStart: number[] = [];
  private readonly entryWidth: number[] = [];
  private readonly index = new Map<string, number>();
  /** Fields in use, and per field its entry. */
  private size = 0;
  private fieldEntry = new Int32Array(1024);
  private totals = new Float64Array(1024);
  private halfLife = new Float64Array(1024);
  private unpushed: Float64Array | null = null;
  /** Per known layout: its field i -> hub field. */
  private readonly layouts = new Map<string, Int32Array>();
  private lastDecayMs = -1;
  /** Per field: what seeds raised the totals by since the last Redis pull (that evidence is in Redis already). */
  private readonly seeded = new Map<number, number>();
  /** Whether evidence from elsewhere (addExternal: another machine, through Redis) was ever added. */
  private external = false;
  /** Bumped by every change (merge, decay, external evidence); changedAt[f] = the version of f's last change. */
  private version = 0;
  private changedAt = new Float64Array(1024);
  readonly stats = { batches: 0, unknownLayouts: 0 };

  trackUnpushed(): void {
    if (this.unpushed === null) this.unpushed = new Float64Array(this.totals.length);
  }

  get fields(): number {
    return this.size;
  }

  /** Adds the batches; returns the layouts it does not know (their deltas are dropped: resend with names). */
  merge(batches: readonly LearningBatch[]): string[] {
    const unknown: string[] = [];
    // (this.changedAt is read through `this`: registering a layout below may grow it.)
    const v = ++this.version;
    for (const b of batches) {
      let map = this.layouts.get(b.layout);
      if (map === undefined && b.names !== undefined) map = this.register(b.layout, b.names, b.widths, b.halfLifeSec);
      if (map === undefined) {
        this.stats.unknownLayouts++;
        unknown.push(b.layout);
        continue;
      }
      const seed = b.seed;
      if (seed !== undefined) {
        for (let i = 0; i < Math.min(seed.length, map.length); i++) {
          const f = map[i];
          if (seed[i] > this.totals[f]) {
            this.seeded.set(f, (this.seeded.get(f) ?? 0) + seed[i] - this.totals[f]);
            this.totals[f] = seed[i];
            this.changedAt[f] = v;
          }
        }
      }
      const d = b.delta;
      const at = b.at;
      const n = at !== undefined ? Math.min(d.length, at.length) : Math.min(d.length, map.length);
      for (let j = 0; j < n; j++) {
        const x = d[j];
        if (x === 0) continue;
        const i = at !== undefined ? at[j] : j;
        if (!(i >= 0 && i < map.length)) continue;
        const f = map[i];
        this.totals[f] += x;
        this.changedAt[f] = v;
        if (this.unpushed !== null) this.unpushed[f] += x;
      }
      this.stats.batches++;
    }
    return unknown;
  }

  /** The totals in a layout's order (null when the layout is unknown), into `into` when it has the right size. */
  totalsFor(layoutId: string, into?: Float64Array): Float64Array | null {
    const map = this.layouts.get(layoutId);
    if (map === undefined) return null;
    const out = into !== undefined && into.length === map.length ? into : new Float64Array(map.length);
    for (let i = 0; i < map.length; i++) out[i] = this.totals[map[i]];
    return out;
  }

  /**
   * For a thread that applied this hub's totals as of `since` (LearningClient.since): the fields of the layout
   * changed after it, as (layout field index, total) pairs, and the version they bring the thread to. Whole totals
   * (no `at`) when `since` < 0, and when most fields changed (a decay step): then a dense array is smaller.
   */
  totalsSince(layoutId: string, since: number): { totals: Float64Array; at?: Int32Array; version: number } | null {
    const map = this.layouts.get(layoutId);
    if (map === undefined) return null;
    if (since < 0) return { totals: this.totalsFor(layoutId)!, version: this.version };
    const changed = this.changedAt;
    let n = 0;
    for (let i = 0; i < map.length; i++) if (changed[map[i]] > since) n++;
    if (n > map.length / 3) return { totals: this.totalsFor(layoutId)!, version: this.version };
    const at = new Int32Array(n);
    const totals = new Float64Array(n);
    let j = 0;
    for (let i = 0; i < map.length; i++) {
      const f = map[i];
      if (changed[f] <= since) continue;
      at[j] = i;
      totals[j++] = this.totals[f];
    }
    return { totals, at, version: this.version };
  }

  /**
   * For a hub fed by a single client (the single-threaded bidder, syncInProcess): true while it knows the client's
   * layout and no evidence from elsewhere. Its totals are then that client's own counters (across config swaps too:
   * the new plan adopts the old one's counters by id, as the hub adds them by name), so handing them back changes
   * nothing.
   */
  mirrors(layoutId: string): boolean {
    return !this.external && this.layouts.has(layoutId);
  }

  /** A field's total by its name (tests, reports); 0 when unknown. */
  total(name: string): number {
    const f = this.find(name);
    return f < 0 ? 0 : this.totals[f];
  }

  /** Applies the half-life to decaying fields, in steps of at least a minute (as ShadingTable does). */
  decay(nowMs: number): void {
    if (this.lastDecayMs < 0) {
      this.lastDecayMs = nowMs;
      return;
    }
    const dt = (nowMs - this.lastDecayMs) / 1000;
    if (dt * 1000 < DECAY_EVERY_MS) return;
    this.lastDecayMs = nowMs;
    const version = ++this.version;
    for (let i = 0; i < this.size; i++) {
      const h = this.halfLife[i];
      if (h > 0 && this.totals[i] !== 0) {
        const v = this.totals[i] * Math.pow(0.5, dt / h);
        this.totals[i] = v < 1e-6 ? 0 : v;
        this.changedAt[i] = version;
      }
    }
  }

  /**
   * For Redis: the locally added amounts not yet pushed, as whole numbers by field name (HINCRBY); the
   * fractions stay for a later push. Taking them clears them.
   */
  takeUnpushed(): Map<string, number> {
    const out = new Map<string, number>();
    const u = this.unpushed;
    if (u === null) return out;
    for (let i = 0; i < this.size; i++) {
      const whole = Math.trunc(u[i]);
      if (whole === 0) continue;
      out.set(this.fieldName(i), whole);
      u[i] -= whole;
    }
    return out;
  }

  /** Puts back amounts taken by takeUnpushed that could not be pushed. */
  returnUnpushed(amounts: ReadonlyMap<string, number>): void {
    if (this.unpushed === null) return;
    for (const [name, x] of amounts) this.unpushed[this.fieldByName(name)] += x;
  }

  /**
   * Evidence learned elsewhere (another machine): added to the totals, never pushed back; the part a seed already
   * brought in (a restored state is what Redis held before the restart) is not added again.
   */
  addExternal(name: string, amount: number): void {
    if (amount === 0 || !Number.isFinite(amount)) return;
    this.external = true;
    const f = this.fieldByName(name);
    this.changedAt[f] = ++this.version;
    const seeded = this.seeded.get(f);
    if (seeded !== undefined && amount > 0) {
      const covered = Math.min(seeded, amount);
      amount -= covered;
      this.seeded.delete(f);
    }
    this.totals[f] += amount;
  }

  /** After a Redis pull: the seeds have been reconciled with what Redis holds. */
  clearSeeds(): void {
    this.seeded.clear();
  }

  private register(layoutId: string, names: readonly string[], widths: Int32Array | undefined, halfLifeSec: Float64Array | undefined): Int32Array {
    let size = 0;
    for (let e = 0; e < names.length; e++) size += widths?.[e] ?? 1;
    const map = new Int32Array(size);
    let i = 0;
    for (let e = 0; e < names.length; e++) {
      const width = widths?.[e] ?? 1;
      const start = this.entry(names[e], width);
      for (let k = 0; k < width; k++, i++) {
        map[i] = start + k;
        // A half-life of 0 = not known yet: the first layout naming the field with one sets it.
        const h = halfLifeSec?.[i] ?? 0;
        if (h > 0 && this.halfLife[start + k] === 0) this.halfLife[start + k] = h;
      }
    }
    this.layouts.set(layoutId, map);
    return map;
  }

  /** The first field of an entry, created (zeroed, half-life unknown) when new. */
  private entry(name: string, width: number): number {
    const e = this.index.get(name);
    if (e !== undefined && this.entryWidth[e] === width) return this.entryStart[e];
    // A name reused with another width cannot happen with learningLayout's names (a block's name carries its
    // width); should it, the new entry takes the name and the old fields keep their totals, unnamed.
    const start = this.size;
    while (this.size + width > this.totals.length) this.grow();
    this.size += width;
    const id = this.entryNames.length;
    this.entryNames.push(name);
    this.entryStart.push(start);
    this.entryWidth.push(width);
    this.index.set(name, id);
    this.fieldEntry.fill(id, start, start + width);
    return start;
  }

  /** The field a name denotes (an entry's counter, or a bin of a block), or -1. */
  private find(name: string): number {
    const e = this.index.get(name);
    if (e !== undefined) return this.entryWidth[e] === 1 ? this.entryStart[e] : -1;
    const cell = cellOf(name);
    if (cell === null) return -1;
    const b = this.index.get(cell.entry);
    return b !== undefined && this.entryWidth[b] === cell.width ? this.entryStart[b] + cell.k : -1;
  }

  /** As find, creating the field when new (a bin creates its whole block, as a local layout would). */
  private fieldByName(name: string): number {
    const f = this.find(name);
    if (f >= 0) return f;
    const cell = cellOf(name);
    return cell !== null ? this.entry(cell.entry, cell.width) + cell.k : this.entry(name, 1);
  }

  private fieldName(f: number): string {
    const e = this.fieldEntry[f];
    return fieldNameOf(this.entryNames[e], this.entryWidth[e], f - this.entryStart[e]);
  }

  private grow(): void {
    const n = this.totals.length * 2;
    this.totals = grown(this.totals, new Float64Array(n));
    this.halfLife = grown(this.halfLife, new Float64Array(n));
    this.fieldEntry = grown(this.fieldEntry, new Int32Array(n));
    this.changedAt = grown(this.changedAt, new Float64Array(n));
    if (this.unpushed !== null) this.unpushed = grown(this.unpushed, new Float64Array(n));
  }
}

/** `into` (a larger array of the same kind) with `from` copied to its start. */
function grown<T extends Float64Array | Int32Array>(from: T, into: T): T {
  into.set(from);
  return into;
}

/**
 * One sync of a thread with a hub in the same thread (the single-threaded bidder: the hub serves this client
 * only). While the hub only mirrors the client (nothing from Redis; see mirrors()), the totals are not handed back:
 * they are the client's own counters, and applying them is a pass over every field (~650,000 on a 1,000 line
 * item config, ~5 ms of the bid thread every second). The shading curves then decay in the client's own table.
 */
export function syncInProcess(client: LearningClient, hub: LearningHub, nowMs: number): void {
  const batches = client.collect();
  client.forget(hub.merge(batches));
  client.recycle(batches);
  hub.decay(nowMs);
  if (hub.mirrors(client.layoutId)) return;
  const totals = hub.totalsFor(client.layoutId, client.scratchTotals());
  if (totals !== null) client.apply(client.layoutId, totals);
}

/** The single-threaded bidder's sync timer (a cluster's runs over worker messages instead). */
export function startInProcessLearningSync(client: LearningClient, hub: LearningHub, everyMs = LEARNING_SYNC_MS): () => void {
  const timer = setInterval(() => syncInProcess(client, hub, Date.now()), everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
