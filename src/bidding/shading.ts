/**
 * First-price bid shading learned from win/loss feedback.
 *
 * Contract
 * - One win-rate curve per key = (line item, exchange, floor band), in a FIXED table sized at construction:
 *   lineItems x (exchanges + "other") x floor bands. Unknown exchanges share "other": the key space is bounded by
 *   the config, never by traffic. Per key: `bins` counters of bids and wins over the bid/value ratio r in (0, 1].
 * - `refresh(nowMs)` (off the hot path, every second): decays old evidence (half-life), blends each touched
 *   key's counts with the prior, makes the curve non-decreasing (pool-adjacent-violators) and stores the optimal
 *   shading factor r* = argmax_r (1 - r) x P(win | r), floored at `minFactor`. Until feedback exists a key's
 *   factor is the prior's optimum (P(win | r) logistic, midpoint 0.7 by default).
 * - HOT PATH: `price(li, exchange, floorMicros, respRate, valueMicros, at)`, or `priceInBand` with the floor
 *   band (`bandOf`, a few comparisons) found once per imp: one multiply, reading the factor from the table laid
 *   out by (exchange, floor band) context. at=1 returns the shaded bid, never above the value and never below the
 *   floor (the floor itself when the optimum is under it and the value covers it; -1 = no bid when the value is
 *   under the floor). at=2 (and any other auction type) returns the true value (no shading). Allocation-free.
 *   `keyOf` + `shade(key, ...)` give the same price by key (feedback, tests).
 * - Feedback: `recordOutcome(key, bidMicros, valueMicros, won, minToWinMicros)`. The value at bid time is needed
 *   because the curve is over bid/value (the integrator carries it, or the ratio, in the notice URL). With a
 *   min-to-win price (lurl/nurl `${AUCTION_MIN_TO_WIN}`) the whole curve learns (every ratio above
 *   minToWin/value would have won, every ratio below would have lost); without it only the bin of the bid does.
 *
 * Money is integer micro-units (CPM micros); ratios are plain floats.
 */
import { SegbidError } from '../common/errors.js';
import type { ShadingSettingsDef } from './strategies/schema.js';

export const OTHER_EXCHANGE = 'other';

export interface ShadingSettings {
  exchanges: readonly string[];
  floorBandsCpm: readonly number[];
  bins: number;
  prior: { midpoint: number; slope: number; weight: number };
  halfLifeSec: number;
  minFactor: number;
}

export const DEFAULT_SHADING: ShadingSettings = {
  exchanges: [],
  floorBandsCpm: [0.5, 1, 2, 5],
  bins: 20,
  prior: { midpoint: 0.7, slope: 12, weight: 5 },
  halfLifeSec: 3600,
  minFactor: 0.3,
};

export function resolveShadingSettings(def: ShadingSettingsDef | undefined): ShadingSettings {
  return {
    exchanges: def?.exchanges ?? DEFAULT_SHADING.exchanges,
    floorBandsCpm: [...(def?.floorBandsCpm ?? DEFAULT_SHADING.floorBandsCpm)].sort((a, b) => a - b),
    bins: def?.bins ?? DEFAULT_SHADING.bins,
    prior: { ...DEFAULT_SHADING.prior, ...def?.prior },
    halfLifeSec: def?.halfLifeSec ?? DEFAULT_SHADING.halfLifeSec,
    minFactor: def?.minFactor ?? DEFAULT_SHADING.minFactor,
  };
}

/** Decay is applied at most this often, so refresh() stays cheap when called every second. */
const DECAY_EVERY_MS = 60_000;

export class ShadingTable {
  readonly settings: ShadingSettings;
  readonly lineItemIds: readonly string[];
  readonly exchangeCount: number;
  readonly bandCount: number;
  readonly keys: number;
  readonly bins: number;
  /** Shading factor per key, in [minFactor, 1]. Written through setFactor only (see factorByContext). */
  readonly factor: Float64Array;
  /**
   * HOT PATH: the same factors laid out by context, [(exchange x bands + band) x lineItems + li]: a request
   * prices many line items on one exchange and one floor band, so their factors sit side by side instead of one
   * cache line apart each (key order puts a line item's exchanges and bands together).
   */
  private readonly factorByContext: Float64Array;
  private readonly lineItems: number;
  /** Floor band upper edges, CPM micros. */
  private readonly bandEdges: Float64Array;
  private readonly exchangeIndexOf: ReadonlyMap<string, number>;
  /** Prior P(win) at each bin centre. */
  readonly priorCurve: Float64Array;
  private readonly priorFactor: number;
  /** Per key x bin: bids and wins seen (decayed). */
  readonly trials: Float32Array;
  readonly wins: Float32Array;
  /** 1 = new feedback since the last refresh; 2 = has (decaying) evidence. */
  private readonly state: Uint8Array;
  /* refresh scratch */
  private readonly p: Float64Array;
  private readonly w: Float64Array;
  private readonly blockEnd: Int32Array;
  private lastDecayMs = -1;

  constructor(lineItemIds: readonly string[], settings: ShadingSettings = DEFAULT_SHADING) {
    this.settings = settings;
    this.lineItemIds = lineItemIds;
    this.exchangeCount = settings.exchanges.length + 1;
    this.bandCount = settings.floorBandsCpm.length + 1;
    this.bins = settings.bins;
    this.keys = lineItemIds.length * this.exchangeCount * this.bandCount;
    this.bandEdges = Float64Array.from(settings.floorBandsCpm, (c) => Math.round(c * 1e6));
    const ex = new Map<string, number>();
    settings.exchanges.forEach((e, i) => ex.set(e, i));
    this.exchangeIndexOf = ex;
    const K = this.bins;
    this.priorCurve = new Float64Array(K);
    for (let k = 0; k < K; k++) {
      const r = (k + 0.5) / K;
      this.priorCurve[k] = 1 / (1 + Math.exp(-settings.prior.slope * (r - settings.prior.midpoint)));
    }
    this.p = new Float64Array(K);
    this.w = new Float64Array(K);
    this.blockEnd = new Int32Array(K);
    this.priorFactor = this.optimum(this.priorCurve);
    this.factor = new Float64Array(this.keys).fill(this.priorFactor);
    this.factorByContext = new Float64Array(this.keys).fill(this.priorFactor);
    this.lineItems = lineItemIds.length;
    this.trials = new Float32Array(this.keys * K);
    this.wins = new Float32Array(this.keys * K);
    this.state = new Uint8Array(this.keys);
  }

  /** Once per request: the exchange's index; unknown (or absent) -> "other". */
  exchangeIndex(name: string | undefined): number {
    if (name === undefined) return this.exchangeCount - 1;
    const i = this.exchangeIndexOf.get(name);
    return i === undefined ? this.exchangeCount - 1 : i;
  }

  /** HOT PATH. Key of (line item, exchange index, floor in CPM micros). */
  keyOf(li: number, exchange: number, floorMicros: number): number {
    return (li * this.exchangeCount + exchange) * this.bandCount + this.bandOf(floorMicros);
  }

  /** HOT PATH. The floor band of a floor in CPM micros (bidder currency): the same for every line item. */
  bandOf(floorMicros: number): number {
    let band = 0;
    const edges = this.bandEdges;
    while (band < edges.length && floorMicros >= edges[band]) band++;
    return band;
  }

  /**
   * HOT PATH. price() with the floor band already known (bandOf(floorMicros x respRate)), reading the factor
   * from its context row. The price never decreases as the value grows (see shade), so the price at the most a
   * line item's value can be bounds its price.
   */
  priceInBand(li: number, exchange: number, band: number, floorMicros: number, valueMicros: number, at: number): number {
    return shadeWith(this.factorByContext, (exchange * this.bandCount + band) * this.lineItems + li, valueMicros, floorMicros, at);
  }

  /** A line item's factors, in key order (exchanges x bands), as `factor` holds them (restore, reload). */
  setLineItemFactors(li: number, factors: ArrayLike<number>): void {
    const per = this.exchangeCount * this.bandCount;
    for (let k = 0; k < per; k++) this.setFactor(li * per + k, factors[k]);
  }

  private setFactor(key: number, f: number): void {
    this.factor[key] = f;
    const perLineItem = this.exchangeCount * this.bandCount;
    const li = Math.floor(key / perLineItem);
    this.factorByContext[(key - li * perLineItem) * this.lineItems + li] = f;
  }

  /**
   * HOT PATH. shade() for a line item on an exchange over a floor in micros of the response currency; the curve
   * is keyed by the floor in the bidder currency (floor x respRate), as the win and loss feedback records it.
   */
  price(li: number, exchange: number, floorMicros: number, respRate: number, valueMicros: number, at: number): number {
    return this.priceInBand(li, exchange, this.bandOf(floorMicros * respRate), floorMicros, valueMicros, at);
  }

  /**
   * HOT PATH. The price to bid (CPM micros, integer) for a value (the most this impression is worth to us,
   * after strategy, multipliers and caps), or -1 for no bid. `at` is the auction type of the imp/deal.
   */
  shade(key: number, valueMicros: number, floorMicros: number, at: number): number {
    return shadeWith(this.factor, key, valueMicros, floorMicros, at);
  }

  /**
   * Feedback of one first-price bid: `won` or lost, and the minimum price that would have won when the exchange
   * says (`minToWinMicros` > 0), else -1. Off the hot path: bumps counters; the curve moves at the next refresh.
   */
  recordOutcome(key: number, bidMicros: number, valueMicros: number, won: boolean, minToWinMicros = -1): void {
    if (!(key >= 0 && key < this.keys && (key | 0) === key)) throw new SegbidError('FEEDBACK_INVALID', `shading key ${key} out of range 0..${this.keys - 1}`);
    if (!(valueMicros > 0 && bidMicros >= 0 && Number.isFinite(valueMicros) && Number.isFinite(bidMicros))) {
      throw new SegbidError('FEEDBACK_INVALID', `shading outcome needs a positive value and a non-negative bid (got ${bidMicros} / ${valueMicros})`);
    }
    const K = this.bins;
    const base = key * K;
    if (minToWinMicros > 0 && Number.isFinite(minToWinMicros)) {
      // Every bin whose ratio would have reached minToWin is a (counterfactual) win, every other a loss.
      const threshold = minToWinMicros / valueMicros;
      for (let k = 0; k < K; k++) {
        this.trials[base + k] += 1;
        if ((k + 0.5) / K >= threshold) this.wins[base + k] += 1;
      }
    } else {
      const r = bidMicros / valueMicros;
      let k = Math.floor(r * K);
      if (k >= K) k = K - 1;
      if (k < 0) k = 0;
      this.trials[base + k] += 1;
      if (won) this.wins[base + k] += 1;
    }
    this.state[key] = 1;
  }

  /** Decays evidence and recomputes the factor of every key with new (or decaying) evidence. Off the hot path. */
  refresh(nowMs: number): void {
    const K = this.bins;
    let decay = 1;
    if (this.lastDecayMs < 0) this.lastDecayMs = nowMs;
    else if (nowMs - this.lastDecayMs >= DECAY_EVERY_MS) {
      decay = Math.pow(0.5, (nowMs - this.lastDecayMs) / 1000 / this.settings.halfLifeSec);
      this.lastDecayMs = nowMs;
    }
    for (let key = 0; key < this.keys; key++) {
      const s = this.state[key];
      if (s === 0) continue;
      if (decay < 1) {
        let total = 0;
        for (let k = key * K, end = k + K; k < end; k++) {
          this.trials[k] *= decay;
          this.wins[k] *= decay;
          total += this.trials[k];
        }
        if (total < 1e-3) {
          // Evidence has faded away: back to the prior, and skip this key until new feedback.
          this.trials.fill(0, key * K, key * K + K);
          this.wins.fill(0, key * K, key * K + K);
          this.state[key] = 0;
          this.setFactor(key, this.priorFactor);
          continue;
        }
      } else if (s === 2) continue; // nothing new, nothing decayed
      this.setFactor(key, this.curveOptimum(key));
      this.state[key] = 2;
    }
  }

  /** Win probability of a key at ratio r, as the last refresh would see it (for dashboards and tests). */
  winRate(key: number, r: number): number {
    this.curve(key);
    let k = Math.floor(r * this.bins);
    if (k >= this.bins) k = this.bins - 1;
    return this.p[k < 0 ? 0 : k];
  }

  /**
   * Dashboard view of one line item (read-only, off the hot path): the mean shading factor (bid / value) of its
   * keys, weighted by each key's decayed feedback so that the (exchange, floor band) curves it actually bids on
   * dominate; the prior's factor while none has feedback. `trials` is that feedback's weight (bin counts: an
   * outcome with a min-to-win price counts in every bin).
   */
  lineItemFactor(li: number): { factor: number; trials: number } {
    const per = this.exchangeCount * this.bandCount;
    if (!(li >= 0 && li < this.lineItemIds.length)) return { factor: this.priorFactor, trials: 0 };
    const K = this.bins;
    let weighted = 0;
    let total = 0;
    for (let key = li * per, end = key + per; key < end; key++) {
      if (this.state[key] === 0) continue; // no feedback: no weight (and most keys of a big table have none)
      let t = 0;
      for (let k = key * K, e = k + K; k < e; k++) t += this.trials[k];
      weighted += t * this.factor[key];
      total += t;
    }
    return total > 0 ? { factor: weighted / total, trials: total } : { factor: this.priorFactor, trials: 0 };
  }

  /** Carries learned curves over from the previous config's table (same exchanges, bands and bins), by line item id. */
  adoptFrom(previous: ShadingTable): void {
    const same =
      previous.bins === this.bins &&
      sameValues(previous.settings.exchanges, this.settings.exchanges) &&
      sameValues(previous.bandEdges, this.bandEdges);
    if (!same) return; // different key spaces: start again from the prior
    if (sameValues(previous.lineItemIds, this.lineItemIds)) {
      // The usual reload (the same line items in the same order): every table is the previous one, copied whole.
      this.trials.set(previous.trials);
      this.wins.set(previous.wins);
      this.factor.set(previous.factor);
      this.factorByContext.set(previous.factorByContext);
      this.state.set(previous.state);
      return;
    }
    const per = this.exchangeCount * this.bandCount;
    const byId = new Map<string, number>();
    previous.lineItemIds.forEach((id, i) => byId.set(id, i));
    this.lineItemIds.forEach((id, i) => {
      const j = byId.get(id);
      if (j === undefined) return;
      const K = this.bins;
      this.trials.set(previous.trials.subarray(j * per * K, (j + 1) * per * K), i * per * K);
      this.wins.set(previous.wins.subarray(j * per * K, (j + 1) * per * K), i * per * K);
      this.setLineItemFactors(i, previous.factor.subarray(j * per, (j + 1) * per));
      for (let k = 0; k < per; k++) this.state[i * per + k] = previous.state[j * per + k];
    });
  }

  /** Fills this.p with the key's monotone curve. */
  private curve(key: number): void {
    const K = this.bins;
    const pw = this.settings.prior.weight;
    const p = this.p;
    const w = this.w;
    for (let k = 0; k < K; k++) {
      const t = this.trials[key * K + k];
      p[k] = (this.wins[key * K + k] + pw * this.priorCurve[k]) / (t + pw);
      w[k] = t + pw;
    }
    isotonic(p, w, this.blockEnd, K);
  }

  private curveOptimum(key: number): number {
    this.curve(key);
    return this.optimum(this.p);
  }

  /** argmax over bin centres of (1 - r) x P(win | r), at least minFactor. */
  private optimum(p: Float64Array): number {
    const K = this.bins;
    let best = 1;
    let bestSurplus = -1;
    for (let k = 0; k < K; k++) {
      const r = (k + 0.5) / K;
      const s = (1 - r) * p[k];
      if (s > bestSurplus) {
        bestSurplus = s;
        best = r;
      }
    }
    return best < this.settings.minFactor ? this.settings.minFactor : best;
  }
}

/**
 * Weighted pool-adjacent-violators: makes p non-decreasing in place (a higher bid never wins less often).
 * `blockEnd` is scratch of length >= n. Allocation-free.
 */
export function isotonic(p: Float64Array, w: Float64Array, blockEnd: Int32Array, n: number): void {
  // Blocks are kept as a stack: block b spans [start, blockEnd[b]) with value p[start] and weight w[start].
  let blocks = 0;
  for (let i = 0; i < n; i++) {
    let start = i;
    let value = p[i];
    let weight = w[i];
    while (blocks > 0) {
      const prevStart = blocks > 1 ? blockEnd[blocks - 2] : 0;
      if (p[prevStart] <= value) break;
      // The previous block is higher than this one: pool them into their weighted mean.
      const pw = w[prevStart];
      value = (p[prevStart] * pw + value * weight) / (pw + weight);
      weight += pw;
      start = prevStart;
      blocks--;
    }
    p[start] = value;
    w[start] = weight;
    blockEnd[blocks++] = i + 1;
  }
  // Expand block values over their spans.
  let s = 0;
  for (let b = 0; b < blocks; b++) {
    const e = blockEnd[b];
    for (let i = s + 1; i < e; i++) p[i] = p[s];
    s = e;
  }
}

/** shade() with the factor at factors[index], read only for a first-price auction. Never decreases as the value grows. */
function shadeWith(factors: Float64Array, index: number, valueMicros: number, floorMicros: number, at: number): number {
  const value = Math.floor(valueMicros);
  if (value <= 0 || value < floorMicros) return -1;
  if (at !== 1) return value; // second price (default): bidding the true value is optimal
  let bid = Math.floor(value * factors[index]);
  if (bid < floorMicros) bid = Math.ceil(floorMicros); // the value covers the floor (checked above)
  return bid > value ? value : bid;
}

/** Same length, same elements in the same order (===). */
function sameValues<T>(a: ArrayLike<T>, b: ArrayLike<T>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
