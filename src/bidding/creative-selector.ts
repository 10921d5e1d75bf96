/**
 * Segment messages: which creative of a line item speaks to this user, and rotation among the eligible ones.
 *
 * Contract
 * - Compiled once per config (compileCreativeSelector). For each line item whose creatives are tagged with
 *   segments (CreativeDef.segments), a row segment bit -> candidate list; a list is an ordered sequence of
 *   preference TIERS: creatives tagged with the segment itself, then with its parent, grandparent, ..., then the
 *   untagged creatives last. A creative tagged for another branch never appears (a loyal-customer message is
 *   not shown to a prospect). Line items without tags, and users in none of the tagged subtrees, get the
 *   untagged tier only; that list may be EMPTY (every creative is tagged for other segments): pick returns -1.
 *   Memory: one Int32 row of `segments` entries per line item with tagged creatives (1,000 x 256 = 1 MB).
 * - Per request, `prepareUser(userBits)` keeps the user's segment bits for the picks of this request (the
 *   caller's array, read until the next prepareUser). userBits null = no personal data: untagged creatives only.
 *   The user's most specific segment with a list for a line item is the deepest of (user bits AND the row's mask
 *   of segments that have a list), ties: the lower bit (earlier in the segmentation). The mask (rowMask, a few
 *   words a row, 32 KB for 1,000 x 256) is built at load: a pick reads ~8 words instead of one row entry per
 *   segment the user holds, scattered over the 1 MB of rows.
 * - HOT PATH, per (imp, line item): `pick(li, eligible)` takes the list of the user's MOST SPECIFIC segment that
 *   has one for this line item, walks its tiers in order and, in the first tier with an eligible creative,
 *   draws one. `eligible(creativeIndex)` is the caller's format/block check (decide.ts), a function created once
 *   (not per call). Returns a creative index (position in config.creatives) or -1. Allocation-free.
 * - Rotation inside a tier: weighted by the config weights (weight 0 = paused) until every eligible creative of
 *   the tier has `learnAfterImpressions` impressions; then Thompson sampling on CTR, using posterior samples
 *   pre-drawn by `refresh()` (64 per creative) and a precomputed uniform stream (4,096 values, redrawn on
 *   refresh), so the hot path reads arrays and never samples a Beta itself.
 * - Feedback: `recordImpression(creative)`, `recordClick(creative)`: counters; they count at the next refresh().
 */
import { SegbidError } from '../common/errors.js';
import { mulberry32 } from '../common/prng.js';
import type { SegmentDictionary } from '../segments/segmentation.js';
import type { RatePriorDef, RotationSettingsDef } from './strategies/schema.js';
import type { SegmentTree } from './strategies/segment-tree.js';

export interface RotationSettings {
  learnAfterImpressions: number;
  ctrPrior: RatePriorDef;
  seed: number;
}

export const DEFAULT_ROTATION: RotationSettings = {
  learnAfterImpressions: 1000,
  ctrPrior: { mean: 0.001, weight: 1000 },
  seed: 0x5eb1d,
};

export function resolveRotationSettings(def: RotationSettingsDef | undefined): RotationSettings {
  return {
    learnAfterImpressions: def?.learnAfterImpressions ?? DEFAULT_ROTATION.learnAfterImpressions,
    ctrPrior: def?.ctrPrior ?? DEFAULT_ROTATION.ctrPrior,
    seed: def?.seed ?? DEFAULT_ROTATION.seed,
  };
}

/** What the selector reads of creatives and line items (CreativeDef / LineItemDef with `weight` merged in). */
export interface SelectorCreativeDef {
  id: string;
  segments?: string[];
  weight?: number;
}
export interface SelectorLineItemDef {
  id: string;
  creatives: string[];
}

const STREAM = 4096; // uniforms in the random stream (power of two)
const SAMPLES = 64; // posterior samples per creative (power of two)

export class CreativeSelector {
  readonly creativeIds: readonly string[];
  readonly settings: RotationSettings;
  readonly weight: Float64Array;
  readonly impressions: Float64Array;
  readonly clicks: Float64Array;
  /* lists: list l = tiers [listTier[l], listTier[l + 1]); tier t = members [tierStart[t], tierStart[t + 1]) */
  private readonly members: Int32Array;
  private readonly tierStart: Int32Array;
  private readonly listTier: Int32Array;
  /** Per line item: list for users in no tagged subtree (the untagged tier). */
  private readonly defaultList: Int32Array;
  /** Per line item: row index into `rows` (-1 = no tagged creatives), rows[row * segments + bit] = list or -1. */
  private readonly rowOf: Int32Array;
  private readonly rows: Int32Array;
  private readonly segmentCount: number;
  private readonly depth: Int32Array;
  /* per request */
  /** rowMask[row * maskWords + w]: bit b set iff rows[row * segments + b] >= 0 (the segment has a list). */
  private readonly rowMask: Uint32Array;
  private readonly maskWords: number;
  /** The user bits of the request being decided (prepareUser); null = no personal data. */
  private user: Uint32Array | null = null;
  /* rotation */
  private readonly scratch: Int32Array;
  private readonly samples: Float32Array;
  private readonly stream: Float64Array;
  private cursor = 0;
  private readonly rng: () => number;

  constructor(parts: {
    creativeIds: readonly string[];
    settings: RotationSettings;
    weight: Float64Array;
    members: Int32Array;
    tierStart: Int32Array;
    listTier: Int32Array;
    defaultList: Int32Array;
    rowOf: Int32Array;
    rows: Int32Array;
    segmentCount: number;
    depth: Int32Array;
    maxTier: number;
  }) {
    this.creativeIds = parts.creativeIds;
    this.settings = parts.settings;
    this.weight = parts.weight;
    this.members = parts.members;
    this.tierStart = parts.tierStart;
    this.listTier = parts.listTier;
    this.defaultList = parts.defaultList;
    this.rowOf = parts.rowOf;
    this.rows = parts.rows;
    this.segmentCount = parts.segmentCount;
    this.depth = parts.depth;
    this.maskWords = (parts.segmentCount + 31) >>> 5;
    const rowCount = parts.segmentCount === 0 ? 0 : parts.rows.length / parts.segmentCount;
    this.rowMask = new Uint32Array(Math.max(1, rowCount * this.maskWords));
    for (let r = 0; r < rowCount; r++) {
      for (let b = 0; b < parts.segmentCount; b++) {
        if (parts.rows[r * parts.segmentCount + b] >= 0) this.rowMask[r * this.maskWords + (b >>> 5)] |= 1 << (b & 31);
      }
    }
    this.scratch = new Int32Array(Math.max(1, parts.maxTier));
    const n = parts.creativeIds.length;
    this.impressions = new Float64Array(n);
    this.clicks = new Float64Array(n);
    this.samples = new Float32Array(n * SAMPLES);
    this.stream = new Float64Array(STREAM);
    this.rng = mulberry32(parts.settings.seed);
    this.refresh();
  }

  /** Once per request: the user's segment bits (kept by reference until the next call). null = no personal data. */
  prepareUser(userBits: Uint32Array | null): void {
    this.user = userBits;
  }

  /** The list for this line item and the prepared user (exposed for tests and the dashboard). */
  listFor(li: number): number {
    const row = this.rowOf[li];
    const user = this.user;
    if (row >= 0 && user !== null) {
      const depth = this.depth;
      const mask = this.rowMask;
      const base = row * this.maskWords;
      const words = user.length < this.maskWords ? user.length : this.maskWords;
      let best = -1;
      let bestDepth = -1;
      for (let w = 0; w < words; w++) {
        let x = user[w] & mask[base + w];
        while (x !== 0) {
          const low = x & -x;
          const bit = (w << 5) + 31 - Math.clz32(low);
          x ^= low;
          // Strictly deeper only: on equal depth the lower bit, met first, stays.
          if (depth[bit] > bestDepth) {
            bestDepth = depth[bit];
            best = bit;
          }
        }
      }
      if (best >= 0) return this.rows[row * this.segmentCount + best];
    }
    return this.defaultList[li];
  }

  /** HOT PATH. A creative index for this line item and the prepared user, or -1 when no listed creative is eligible. */
  pick(li: number, eligible: (creative: number) => boolean): number {
    const list = this.listFor(li);
    const scratch = this.scratch;
    for (let t = this.listTier[list], tEnd = this.listTier[list + 1]; t < tEnd; t++) {
      let n = 0;
      let total = 0;
      let learned = true;
      for (let m = this.tierStart[t], mEnd = this.tierStart[t + 1]; m < mEnd; m++) {
        const c = this.members[m];
        const w = this.weight[c];
        if (w <= 0 || !eligible(c)) continue;
        scratch[n++] = c;
        total += w;
        if (this.impressions[c] < this.settings.learnAfterImpressions) learned = false;
      }
      if (n === 0) continue;
      if (n === 1) return scratch[0];
      const u = this.stream[this.cursor];
      this.cursor = (this.cursor + 1) & (STREAM - 1); // stays a small integer however long the process runs
      if (learned) {
        // Thompson: one joint draw from the independent posteriors (the same sample slot for every creative).
        const slot = Math.floor(u * SAMPLES);
        let best = scratch[0];
        let bestSample = -1;
        for (let i = 0; i < n; i++) {
          const s = this.samples[scratch[i] * SAMPLES + slot];
          if (s > bestSample) {
            bestSample = s;
            best = scratch[i];
          }
        }
        return best;
      }
      let x = u * total;
      for (let i = 0; i < n - 1; i++) {
        x -= this.weight[scratch[i]];
        if (x < 0) return scratch[i];
      }
      return scratch[n - 1];
    }
    return -1;
  }

  /** Creative indices of a list, tier by tier (allocates: tests and dashboards only). */
  listCreatives(list: number): number[][] {
    const out: number[][] = [];
    for (let t = this.listTier[list]; t < this.listTier[list + 1]; t++) out.push([...this.members.subarray(this.tierStart[t], this.tierStart[t + 1])]);
    return out;
  }

  recordImpression(creative: number, count = 1): void {
    this.check(creative, count);
    this.impressions[creative] += count;
  }

  recordClick(creative: number, count = 1): void {
    this.check(creative, count);
    this.clicks[creative] += count;
  }

  /** Redraws posterior samples and the uniform stream. Off the hot path (allocation-free, ~64 Beta draws per creative). */
  refresh(): void {
    const { mean, weight } = this.settings.ctrPrior;
    const a0 = mean * weight;
    const b0 = (1 - mean) * weight;
    for (let c = 0; c < this.impressions.length; c++) {
      const imps = this.impressions[c];
      const clicks = Math.min(this.clicks[c], imps);
      const a = clicks + a0;
      const b = imps - clicks + b0;
      for (let s = 0; s < SAMPLES; s++) this.samples[c * SAMPLES + s] = sampleBeta(a, b, this.rng);
    }
    for (let i = 0; i < STREAM; i++) this.stream[i] = this.rng();
    this.cursor = 0;
  }

  /** Carries creative counters over from the previous config's selector, by creative id. */
  adoptCounters(previous: CreativeSelector): void {
    const byId = new Map<string, number>();
    previous.creativeIds.forEach((id, i) => byId.set(id, i));
    this.creativeIds.forEach((id, i) => {
      const j = byId.get(id);
      if (j === undefined) return;
      this.impressions[i] = previous.impressions[j];
      this.clicks[i] = previous.clicks[j];
    });
    this.refresh();
  }

  private check(creative: number, count: number): void {
    if (!(creative >= 0 && creative < this.creativeIds.length && (creative | 0) === creative)) {
      throw new SegbidError('FEEDBACK_INVALID', `creative index ${creative} out of range 0..${this.creativeIds.length - 1}`);
    }
    if (!(count >= 0 && Number.isFinite(count))) throw new SegbidError('FEEDBACK_INVALID', `feedback count ${count} is not a finite non-negative number`);
  }
}

/** Compiles candidate lists. Unknown creative or segment ids are reported by src/config/compile.ts; skipped here. */
export function compileCreativeSelector(
  lineItems: readonly SelectorLineItemDef[],
  creatives: readonly SelectorCreativeDef[],
  dictionary: SegmentDictionary,
  tree: SegmentTree,
  settings: RotationSettings = DEFAULT_ROTATION,
): CreativeSelector {
  const creativeIndex = new Map<string, number>();
  creatives.forEach((c, i) => {
    if (!creativeIndex.has(c.id)) creativeIndex.set(c.id, i);
  });
  const weight = Float64Array.from(creatives, (c) => c.weight ?? 1);
  const segCount = tree.count;
  const members: number[] = [];
  const tierStart: number[] = [0];
  const listTier: number[] = [0];
  const addList = (tiers: number[][]): number => {
    for (const t of tiers) {
      if (t.length === 0) continue;
      members.push(...t);
      tierStart.push(members.length);
    }
    listTier.push(tierStart.length - 1);
    return listTier.length - 2;
  };
  let maxTier = 1;
  const defaultList = new Int32Array(lineItems.length);
  const rowOf = new Int32Array(lineItems.length).fill(-1);
  const rows: number[] = [];
  lineItems.forEach((li, i) => {
    const own = li.creatives.map((id) => creativeIndex.get(id)).filter((c): c is number => c !== undefined);
    const untagged = own.filter((c) => (creatives[c].segments ?? []).length === 0);
    const taggedBy = new Map<number, number[]>();
    for (const c of own) {
      for (const s of creatives[c].segments ?? []) {
        const bit = dictionary.bitOf.get(s);
        if (bit === undefined) continue;
        const list = taggedBy.get(bit);
        if (list === undefined) taggedBy.set(bit, [c]);
        else if (!list.includes(c)) list.push(c);
      }
    }
    maxTier = Math.max(maxTier, untagged.length, ...[...taggedBy.values()].map((l) => l.length));
    defaultList[i] = addList([untagged]);
    // No tags: every user gets the untagged creatives. All tagged and the user in none of their subtrees: the
    // default list is empty and the line item does not bid for that user (a message never goes to the wrong segment).
    if (taggedBy.size === 0) return;
    const row = new Array<number>(segCount).fill(-1);
    for (let bit = 0; bit < segCount; bit++) {
      const tiers: number[][] = [];
      const seen = new Set<number>();
      for (let node = bit; node !== -1; node = tree.parent[node]) {
        const tagged = taggedBy.get(node);
        if (tagged === undefined) continue;
        const tier = tagged.filter((c) => !seen.has(c));
        tier.forEach((c) => seen.add(c));
        tiers.push(tier);
      }
      if (tiers.length === 0) continue; // not under any tagged segment: the default list applies
      row[bit] = addList([...tiers, untagged]);
    }
    rowOf[i] = rows.length / segCount;
    rows.push(...row);
  });
  return new CreativeSelector({
    creativeIds: creatives.map((c) => c.id),
    settings,
    weight,
    members: Int32Array.from(members),
    tierStart: Int32Array.from(tierStart),
    listTier: Int32Array.from(listTier),
    defaultList,
    rowOf,
    rows: Int32Array.from(rows),
    segmentCount: segCount,
    depth: tree.depth,
    maxTier,
  });
}

/* ---- Beta sampling (off the hot path): Marsaglia-Tsang gamma, Box-Muller normal. */

function sampleNormal(rng: () => number): number {
  let u = rng();
  while (u <= 1e-12) u = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}

function sampleGamma(shape: number, rng: () => number): number {
  if (shape < 1) {
    let u = rng();
    while (u <= 1e-12) u = rng();
    return sampleGamma(shape + 1, rng) * Math.pow(u, 1 / shape);
  }
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = sampleNormal(rng);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = rng();
    if (u < 1 - 0.0331 * x * x * x * x) return d * v;
    if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

export function sampleBeta(a: number, b: number, rng: () => number): number {
  const x = sampleGamma(a, rng);
  const y = sampleGamma(b, rng);
  return x + y > 0 ? x / (x + y) : 0.5;
}
