/**
 * Per-line-item bid strategies as data, evaluated OFF the hot path into one typed array the bid path reads.
 *
 * Contract
 * - Compiled once per config (compileStrategies): strategy kind, target, margin and cap per line item, and the
 *   Beta priors resolved from the line item's segment (priors.ts). Nothing here is ever null: a line item
 *   without a strategy is `fixed` at its bid.cpm; a line item without priors gets the built-in ones.
 * - HOT PATH reads `baseBidMicros[li]` (CPM in integer micro-units of the bidder currency; 0 = do not bid) and
 *   calls `finalBidMicros(li, multiplier)` to apply multipliers and the cap. No allocation, no branches on kind.
 * - Feedback (`recordImpression/recordClick/recordConversion`) only bumps counters: O(1), called by the event
 *   handlers (burl / click / conversion). `refresh()` recomputes every base bid from counters + priors; call it
 *   on a timer (every second) and after a burst of feedback. 1,000 line items refresh in ~0.2 ms.
 *
 * Predictions (posterior means, so a new line item starts at its segment's prior and moves with evidence):
 *   pCTR = (clicks + a_ctr) / (impressions + a_ctr + b_ctr)          a = mean x weight, b = (1 - mean) x weight
 *   pCVR = (conversions + a_cvr) / (clicks + a_cvr + b_cvr)           conversions per click
 *   AOV  = (orderValue + mean_ov x weight_ov) / (conversions + weight_ov)
 * Value per mille (the most the advertiser's goal allows paying for 1,000 impressions):
 *   fixed        cpm                                  (no margin: the trader set the price)
 *   target_cpc   target x pCTR x 1000
 *   target_cpa   target x pCTR x pCVR x 1000
 *   target_roas  pCTR x pCVR x AOV x 1000 / target
 * Base bid = floor(value x (1 - minMargin)); the bid sent = min(floor(base x multiplier), maxBidCpm).
 */
import { SegbidError, type ErrorDetail } from '../../common/errors.js';
import type { TargetingExpr } from '../../config/types.js';
import type { SegmentDictionary } from '../../segments/segmentation.js';
import { checkPriors, lineItemSegmentBit, resolvePrior, type ResolvedPrior } from './priors.js';
import type { PriorsDef, StrategyDef } from './schema.js';
import type { SegmentTree } from './segment-tree.js';

export const STRATEGY_FIXED = 0;
export const STRATEGY_TARGET_CPC = 1;
export const STRATEGY_TARGET_CPA = 2;
export const STRATEGY_TARGET_ROAS = 3;
const KIND_CODE = { fixed: STRATEGY_FIXED, target_cpc: STRATEGY_TARGET_CPC, target_cpa: STRATEGY_TARGET_CPA, target_roas: STRATEGY_TARGET_ROAS } as const;

/** What the strategy compiler reads of a line item (a LineItemDef with the strategy fields merged in). */
export interface StrategyLineItemDef {
  id: string;
  bid: { cpm: number };
  targeting?: TargetingExpr;
  strategy?: StrategyDef;
}

export interface StrategyInput {
  lineItems: readonly StrategyLineItemDef[];
  dictionary: SegmentDictionary;
  tree: SegmentTree;
  priors?: PriorsDef;
}

export class StrategyTable {
  readonly size: number;
  readonly ids: readonly string[];
  /** HOT PATH. CPM micro-units before multipliers; 0 = the strategy says do not bid. */
  readonly baseBidMicros: Float64Array;
  /** HOT PATH. Cap after multipliers (CPM micros); +Infinity when none. */
  readonly maxBidMicros: Float64Array;
  /** Value per mille before the margin (CPM micros), for reporting. */
  readonly valueMicros: Float64Array;

  /* compiled strategy */
  readonly kind: Uint8Array;
  /** fixed: CPM micros; cpc/cpa: micros per click/conversion; roas: the ratio. */
  readonly target: Float64Array;
  readonly keep: Float64Array; // 1 - minMargin
  readonly priors: readonly ResolvedPrior[];
  private readonly ctrA: Float64Array;
  private readonly ctrB: Float64Array;
  private readonly cvrA: Float64Array;
  private readonly cvrB: Float64Array;
  private readonly aovPriorMicros: Float64Array;
  private readonly aovWeight: Float64Array;

  /* observed outcomes (fed by events) */
  readonly impressions: Float64Array;
  readonly clicks: Float64Array;
  readonly conversions: Float64Array;
  readonly orderValueMicros: Float64Array;

  constructor(ids: readonly string[], priors: readonly ResolvedPrior[]) {
    const n = ids.length;
    this.size = n;
    this.ids = ids;
    this.priors = priors;
    this.baseBidMicros = new Float64Array(n);
    this.maxBidMicros = new Float64Array(n).fill(Infinity);
    this.valueMicros = new Float64Array(n);
    this.kind = new Uint8Array(n);
    this.target = new Float64Array(n);
    this.keep = new Float64Array(n).fill(1);
    this.ctrA = new Float64Array(n);
    this.ctrB = new Float64Array(n);
    this.cvrA = new Float64Array(n);
    this.cvrB = new Float64Array(n);
    this.aovPriorMicros = new Float64Array(n);
    this.aovWeight = new Float64Array(n);
    this.impressions = new Float64Array(n);
    this.clicks = new Float64Array(n);
    this.conversions = new Float64Array(n);
    this.orderValueMicros = new Float64Array(n);
    priors.forEach((p, i) => {
      this.ctrA[i] = p.ctr.mean * p.ctr.weight;
      this.ctrB[i] = (1 - p.ctr.mean) * p.ctr.weight;
      this.cvrA[i] = p.cvr.mean * p.cvr.weight;
      this.cvrB[i] = (1 - p.cvr.mean) * p.cvr.weight;
      if (p.orderValue !== null) {
        this.aovPriorMicros[i] = p.orderValue.mean * 1e6;
        this.aovWeight[i] = p.orderValue.weight;
      }
    });
  }

  /** HOT PATH. The bid for one line item after multipliers and the cap, in CPM micros (integer). */
  finalBidMicros(li: number, multiplier: number): number {
    const b = Math.floor(this.baseBidMicros[li] * multiplier);
    const cap = this.maxBidMicros[li];
    return b < cap ? b : cap;
  }

  predictedCtr(li: number): number {
    return (this.clicks[li] + this.ctrA[li]) / (this.impressions[li] + this.ctrA[li] + this.ctrB[li]);
  }

  /** Conversions per click. */
  predictedCvr(li: number): number {
    return (this.conversions[li] + this.cvrA[li]) / (this.clicks[li] + this.cvrA[li] + this.cvrB[li]);
  }

  /** Expected order value per conversion, micros; 0 without any prior or conversion. */
  expectedOrderValueMicros(li: number): number {
    const w = this.conversions[li] + this.aovWeight[li];
    return w > 0 ? (this.orderValueMicros[li] + this.aovPriorMicros[li] * this.aovWeight[li]) / w : 0;
  }

  recordImpression(li: number, count = 1): void {
    this.check(li, count);
    this.impressions[li] += count;
  }

  recordClick(li: number, count = 1): void {
    this.check(li, count);
    this.clicks[li] += count;
  }

  /** One conversion, with its order value (currency micros; 0 when unknown, e.g. a lead). */
  recordConversion(li: number, orderValueMicros = 0): void {
    this.check(li, orderValueMicros);
    this.conversions[li] += 1;
    this.orderValueMicros[li] += orderValueMicros;
  }

  /** Bumped by refresh(): a reader caching values derived from baseBidMicros (the decider's bounds) redoes them. */
  version = 0;

  /** Recomputes every base bid from counters and priors. Off the hot path; allocation-free. */
  refresh(): void {
    this.version++;
    for (let li = 0; li < this.size; li++) {
      let value: number;
      switch (this.kind[li]) {
        case STRATEGY_TARGET_CPC:
          value = this.target[li] * this.predictedCtr(li) * 1000;
          break;
        case STRATEGY_TARGET_CPA:
          value = this.target[li] * this.predictedCtr(li) * this.predictedCvr(li) * 1000;
          break;
        case STRATEGY_TARGET_ROAS:
          value = (this.predictedCtr(li) * this.predictedCvr(li) * this.expectedOrderValueMicros(li) * 1000) / this.target[li];
          break;
        default:
          value = this.target[li];
      }
      this.valueMicros[li] = value;
      const base = Math.floor(value * this.keep[li]);
      const cap = this.maxBidMicros[li];
      // The cap also bounds the base, so that a multiplier below 1 scales from a capped bid.
      this.baseBidMicros[li] = base < cap ? base : cap;
    }
  }

  /** Multiplies every counter by `factor` (0..1): older evidence weighs less, the prior weighs relatively more. */
  decay(factor: number): void {
    if (!(factor >= 0 && factor <= 1)) throw new SegbidError('FEEDBACK_INVALID', `decay factor ${factor} is not in [0, 1]`);
    for (let li = 0; li < this.size; li++) {
      this.impressions[li] *= factor;
      this.clicks[li] *= factor;
      this.conversions[li] *= factor;
      this.orderValueMicros[li] *= factor;
    }
  }

  /** Carries the counters of line items with the same id over from the table of the previous config. */
  adoptCounters(previous: StrategyTable): void {
    const byId = new Map<string, number>();
    previous.ids.forEach((id, i) => byId.set(id, i));
    this.ids.forEach((id, i) => {
      const j = byId.get(id);
      if (j === undefined) return;
      this.impressions[i] = previous.impressions[j];
      this.clicks[i] = previous.clicks[j];
      this.conversions[i] = previous.conversions[j];
      this.orderValueMicros[i] = previous.orderValueMicros[j];
    });
    this.refresh();
  }

  private check(li: number, amount: number): void {
    if (!(li >= 0 && li < this.size && (li | 0) === li)) throw new SegbidError('FEEDBACK_INVALID', `line item index ${li} out of range 0..${this.size - 1}`);
    if (!(amount >= 0 && Number.isFinite(amount))) throw new SegbidError('FEEDBACK_INVALID', `feedback amount ${amount} for line item ${this.ids[li]} is not a finite non-negative number`);
  }
}

/**
 * Compiles the strategies of a config. Errors are pushed to `errors` by path (the caller throws CONFIG_INVALID
 * with every error of the config at once); the table returned is refreshed and ready.
 */
export function compileStrategies(input: StrategyInput, errors: ErrorDetail[]): StrategyTable {
  const { lineItems, dictionary, tree, priors } = input;
  checkPriors(priors, dictionary.bitOf, errors);
  const segmentIds = dictionary.segments.map((s) => s.id);
  const resolved = lineItems.map((def, i) => {
    const bit = lineItemSegmentBit(def.strategy?.segment, def.targeting, dictionary.bitOf, tree, `/lineItems/${i}/strategy/segment`, errors);
    return resolvePrior(bit, priors, tree, segmentIds);
  });
  const table = new StrategyTable(
    lineItems.map((d) => d.id),
    resolved,
  );
  lineItems.forEach((def, i) => {
    const s = def.strategy ?? { type: 'fixed' as const };
    const path = `/lineItems/${i}/strategy`;
    const kind = KIND_CODE[s.type];
    table.kind[i] = kind;
    if (s.maxBidCpm !== undefined) table.maxBidMicros[i] = Math.round(s.maxBidCpm * 1e6);
    if (kind === STRATEGY_FIXED) {
      if (s.target !== undefined) errors.push({ path: `${path}/target`, message: 'a fixed strategy has no target (set cpm)' });
      if (s.minMargin !== undefined) errors.push({ path: `${path}/minMargin`, message: 'minMargin needs a value-based strategy (target_cpc, target_cpa, target_roas)' });
      table.target[i] = Math.round((s.cpm ?? def.bid.cpm) * 1e6);
      return;
    }
    if (s.cpm !== undefined) errors.push({ path: `${path}/cpm`, message: `${s.type} computes its CPM; cpm is for fixed strategies` });
    if (s.target === undefined || !(s.target > 0)) errors.push({ path: `${path}/target`, message: `${s.type} needs a positive target` });
    if (s.maxBidCpm === undefined) errors.push({ path: `${path}/maxBidCpm`, message: `${s.type} needs maxBidCpm (a guard rail against a bad estimate)` });
    table.target[i] = kind === STRATEGY_TARGET_ROAS ? (s.target ?? 1) : Math.round((s.target ?? 0) * 1e6);
    table.keep[i] = 1 - (s.minMargin ?? 0);
    if (kind === STRATEGY_TARGET_ROAS && resolved[i].orderValue === null) {
      errors.push({ path, message: 'target_roas needs an orderValue prior (priors.segments of its segment or a parent, or priors.global)' });
    }
  });
  table.refresh();
  return table;
}
