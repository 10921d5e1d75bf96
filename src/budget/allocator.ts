/**
 * Test-and-learn allocation across the arms (line items) of each campaign.
 *
 * Contract:
 *   - Feedback (called by the event pipeline / the policy): recordBid(li) when a bid goes out,
 *     recordImpression(li, costMicros) (or recordImpression(li, 0) + recordCost(li, costMicros) when the price
 *     comes with another notice), recordClick(li), recordConversion(li, valueMicros). Counts and integer micro
 *     sums per line item; O(1), no allocation.
 *   - reallocate(nowMs) (off the hot path, on a timer; each campaign every `reallocateMs`) computes, per arm,
 *     `share[li]` (the arm's share of the campaign's spend; the shares of a campaign sum to 1) and
 *     `reason[li]` (REASON: explore | exploit | guard_rail_min | guard_rail_max), and refills the per-request
 *     rank table. It appends to a bounded history that allocationReport() serves as plain JSON.
 *   - rank(li, price) (hot path) answers from the precomputed table: one array read. beginRequest() moves to the
 *     next row of Thompson draws, so the arms of one request are compared on one joint draw.
 *   - The pacer writes what the allocation needs to know about traffic: `opportunityRate[li]` (requests per
 *     second the arm is a candidate for), `targetRate[c]` (the campaign's desired spend rate, micros/s) and
 *     `capacity[li]` (share of that rate the arm can absorb).
 *
 * The model (ThompsonAllocator): Beta-Bernoulli CTR (clicks / impressions), Beta-Bernoulli CVR (conversions /
 * clicks), Gamma-Gamma order value (value per conversion ~ Gamma(k = 2, rate L), L ~ Gamma conjugate prior).
 * Priors are empirical-Bayes, hierarchical along the strategic segmentation: arm -> its segment -> the segment's
 * parent in the tree (siblings pool their evidence) -> the campaign; a segment may instead carry the strategy's
 * own prior (CRM knowledge: basket, conversion rate). Conversion rate and order value are modelled per segment
 * (a property of the audience, pooled over its arms); the creative and the bid strategy move the click rate,
 * the win rate and the cost, per arm. KPI per impression: cpc = CTR, cpa = CTR*CVR, roas = CTR*CVR*value. Win rate
 * (impressions per bid) and cost per impression are point estimates (plenty of data).
 *
 * Allocation = a budget-constrained LP per posterior draw. The arms of a segment compete for the same requests
 * (one bid per imp), so for a draw of the KPI values v_i, each segment's requests go to the arm maximising the
 * expected surplus per bid  win_i * (v_i - lambda * cost_i),  and lambda (the value of a unit of budget) is the
 * smallest for which the spend rate of these choices fits the campaign's desired rate (bisection; the marginal
 * segment is split). This is what makes a high bid win where the audience is worth it and a low bid where it
 * is not. Exploit share = the average LP allocation over K joint draws (Thompson: an arm gets budget in
 * proportion to the probability that it belongs to the best allocation); the exploration share goes evenly
 * (within capacity) to arms with too little evidence (fewer than minImpressions impressions or minClicks
 * clicks), except an arm the posterior already rules out (less than 5% chance of being worth buying at the
 * margin, once it has half the minimum impressions: evidence is not bought where it cannot change the
 * decision); then the guard rails are applied per segment (raise to min, cut to max, renormalise the others), so a
 * strategic segment is never starved whatever the posteriors say. Per request, arms rank by their surplus in
 * one of RANK_DRAWS draws (with that draw's lambda): the same posteriors decide who bids.
 */
import { Rng } from './random.js';
import type { CompiledBudgetPlan, CompiledCampaign, Kpi } from './types.js';

export const REASON = { explore: 0, exploit: 1, guard_rail_min: 2, guard_rail_max: 3 } as const;
export const REASON_NAMES = ['explore', 'exploit', 'guard_rail_min', 'guard_rail_max'] as const;
export type ReasonName = (typeof REASON_NAMES)[number];

/** Draws per arm in the per-request rank table. */
export const RANK_DRAWS = 64;
/** Draws between two yields of a live reallocation (ThompsonAllocator.exploitSteps). */
const STEP_DRAWS = 25;
const HISTORY_MAX = 2000;
/** Order value: shape of the Gamma distribution of value per conversion (coefficient of variation 1/sqrt(2)). */
const VALUE_SHAPE = 2;
const DEFAULT_CTR = 0.001;
const DEFAULT_CVR = 0.02;
const DEFAULT_VALUE_MICROS = 50e6;
/** Recent clicks by 10-minute bucket over 24 hours, per arm (the conversion-delay correction). */
const CLICK_BUCKET_MS = 600_000;
const CLICK_BUCKETS = 144;
/** Below this chance of being worth buying, an arm gets no exploration share. */
const ELIMINATE = 0.05;

export interface ArmReport {
  lineItem: string;
  segment: string;
  share: number;
  reason: ReasonName;
  impressions: number;
  clicks: number;
  conversions: number;
  valueMicros: number;
  costMicros: number;
  /** Posterior means. */
  ctr: number;
  cvr: number;
  orderValueMicros: number;
  /** Posterior mean KPI per unit of cost (cpc: clicks per currency unit; cpa: conversions; roas: value / cost). */
  efficiency: number;
  /** Chance that the arm is worth buying at the campaign's marginal value (Thompson draws). */
  worthChance: number;
}

export interface AllocationEntry {
  t: number;
  campaign: string;
  arms: { lineItem: string; share: number; reason: ReasonName }[];
}

export interface AllocationReport {
  campaigns: {
    id: string;
    kpi: Kpi;
    explorationShare: number;
    reallocatedAt: number;
    /** KPI bought by one more unit of budget at the margin (per currency unit; 0 = traffic-limited). */
    marginalValue: number;
    budgetLimitedShare: number;
    arms: ArmReport[];
  }[];
  history: AllocationEntry[];
}

/** Posterior parameters of one arm, filled by Allocator.posteriors(). */
interface ArmPosterior {
  ctrA: number;
  ctrB: number;
  cvrA: number;
  cvrB: number;
  /** Rate L of the order value ~ Gamma(VALUE_SHAPE, L); L ~ Gamma(valA, rate valB). */
  valA: number;
  valB: number;
  /** Expected cost of one impression, micros (point estimate). */
  cost: number;
  /** Impressions per bid (point estimate). */
  win: number;
}

/**
 * The allocation machinery shared by every strategy (Thompson here; uniform, epsilon-greedy and oracle
 * baselines in the simulator): statistics, exploration fill, guard rails, rank table, report.
 */
export abstract class Allocator {
  readonly plan: CompiledBudgetPlan;
  /* feedback, per line item (integer counts and micro sums, exact in float64) */
  readonly impressions: Float64Array;
  readonly clicks: Float64Array;
  readonly conversions: Float64Array;
  readonly valueMicros: Float64Array;
  readonly costMicros: Float64Array;
  /** Bids sent (successful reservations), for the win rate. */
  readonly bids: Float64Array;
  private readonly clickBucket: Float64Array;
  private readonly clickBucketId: Float64Array;
  /* traffic, written by the pacer */
  readonly opportunityRate: Float64Array;
  readonly targetRate: Float64Array;
  /* outputs, per campaign */
  /** Mean lambda of the last reallocation: KPI per micro of budget at the margin (0: traffic, not budget, binds). */
  readonly lambda: Float64Array;
  /** Share of the last reallocation's draws in which the budget (not the traffic) was the limit. */
  readonly budgetLimited: Float64Array;
  private lambdaAcc = 0;
  private limitedAcc = 0;
  /**
   * Per campaign: the part of its spend the last reallocation gave to exploration (at most its explorationShare;
   * 1 before the first, when every arm shares evenly on no evidence). An arm labelled `explore` holds its
   * exploration part and its exploitation part together: this is the campaign's total of the former.
   */
  readonly explored: Float64Array;
  /* outputs, per line item */
  readonly share: Float64Array;
  readonly reason: Uint8Array;
  /** Posterior-mean efficiency relative to the campaign's mean (1 = average): a deterministic order of arms. */
  readonly priority: Float64Array;
  /** Written by the pacer: share of the campaign's desired rate the arm can absorb; Infinity = unknown. */
  readonly capacity: Float64Array;
  /**
   * rank table: rankTable[j * lineItems + li], a price-like score (see rank()); written through setRank. One
   * row per draw: a request reads one draw for many line items, side by side.
   */
  private readonly rankTable: Float64Array;
  private draw = 0;
  /** The live reallocation round in progress (reallocationSlice), null when none; its slice time so far. */
  private live: Generator<void, void, void> | null = null;
  private liveSpentMs = 0;
  /** draw x lineItems: where the current draw's row starts. */
  private drawRow = 0;
  /**
   * The budgeted line items sorted by each draw's rank, highest first (rankOrder): one view per draw over one
   * buffer, sorted on first use after a change of the table (rankVersion, bumped by setRank). A request then
   * walks its candidates best rank first instead of keying each one (src/bidding/decide.ts).
   */
  private readonly orderRows: Int32Array[];
  private readonly orderVersion: Float64Array;
  private rankVersion = 0;
  /** Per campaign, the rankVersion of its last setRank: a row sorted after it keeps its arms' order. */
  private readonly campaignRankVersion: Float64Array;
  /** Scratch of rankOrder's repair: the arms whose campaign changed, and the row's others in order. */
  private readonly changedArms: Int32Array;
  private readonly keptArms: Int32Array;
  /** The budgeted line items, ascending: what each order row is sorted from. */
  private readonly armList: Int32Array;
  /** Scratch of rankOrder's sort: the rank being sorted by, per line item (NaN stored as -Infinity). */
  private readonly sortKey: Float64Array;
  private readonly byRankDesc: (a: number, b: number) => number;
  protected readonly rng: Rng;
  private readonly lastRun: Float64Array;
  private readonly history: AllocationEntry[] = [];
  private historyNext = 0;
  /* scratch, sized for the biggest campaign */
  protected readonly post: ArmPosterior[];
  protected readonly meanEff: Float64Array;
  /** Posterior-mean KPI per impression of each arm (after posteriors()). */
  protected readonly meanValue: Float64Array;
  /**
   * Chance that each arm is worth buying at the margin (its draws above lambda x its cost), from the last
   * exploitShares; 1 when the strategy does not estimate it. Exploration skips arms below ELIMINATE: evidence is
   * not bought on an arm the posterior already rules out (the guard rails still protect strategic segments).
   */
  protected readonly worth: Float64Array;
  /** The same, per line item, as of the last reallocation (for the report). */
  readonly worthOf: Float64Array;
  /** Segment-level posterior parameters and the current draw, sized for the campaign with most segments. */
  protected groupPost: { ctr: Float64Array; cvrA: Float64Array; cvrB: Float64Array; valA: Float64Array; valB: Float64Array; cvrDraw: Float64Array; valDraw: Float64Array };
  private lpScratch = new Float64Array(64);
  private lpChoice = new Int32Array(64);

  constructor(plan: CompiledBudgetPlan, seed = 1) {
    this.plan = plan;
    const n = plan.lineItemCount;
    this.impressions = new Float64Array(n);
    this.clicks = new Float64Array(n);
    this.conversions = new Float64Array(n);
    this.valueMicros = new Float64Array(n);
    this.costMicros = new Float64Array(n);
    this.bids = new Float64Array(n);
    this.clickBucket = new Float64Array(n * CLICK_BUCKETS);
    this.clickBucketId = new Float64Array(n * CLICK_BUCKETS).fill(-1);
    this.opportunityRate = new Float64Array(n);
    this.targetRate = new Float64Array(plan.campaigns.length);
    this.lambda = new Float64Array(plan.campaigns.length);
    this.budgetLimited = new Float64Array(plan.campaigns.length);
    this.explored = new Float64Array(plan.campaigns.length).fill(1);
    this.share = new Float64Array(n);
    this.reason = new Uint8Array(n);
    this.priority = new Float64Array(n).fill(1);
    this.capacity = new Float64Array(n).fill(Infinity);
    this.rankTable = new Float64Array(n * RANK_DRAWS);
    const arms: number[] = [];
    for (let li = 0; li < n; li++) if (plan.campaignOf[li] >= 0) arms.push(li);
    this.armList = Int32Array.from(arms);
    const orders = new Int32Array(RANK_DRAWS * arms.length);
    this.orderRows = Array.from({ length: RANK_DRAWS }, (_, j) => orders.subarray(j * arms.length, (j + 1) * arms.length));
    this.orderVersion = new Float64Array(RANK_DRAWS).fill(-1);
    this.campaignRankVersion = new Float64Array(plan.campaigns.length);
    this.changedArms = new Int32Array(arms.length);
    this.keptArms = new Int32Array(arms.length);
    this.sortKey = new Float64Array(n);
    const key = this.sortKey;
    this.byRankDesc = (a, b) => (rankedBefore(key, a, b) ? -1 : rankedBefore(key, b, a) ? 1 : 0);
    this.rng = new Rng(seed);
    this.lastRun = new Float64Array(plan.campaigns.length).fill(-Infinity);
    let maxArms = 0;
    for (const c of plan.campaigns) maxArms = Math.max(maxArms, c.arms.length);
    this.post = Array.from({ length: maxArms }, () => ({ ctrA: 1, ctrB: 1, cvrA: 1, cvrB: 1, valA: 1, valB: 1, cost: 1, win: 0.3 }));
    this.meanEff = new Float64Array(maxArms);
    this.meanValue = new Float64Array(maxArms);
    this.worth = new Float64Array(maxArms).fill(1);
    this.worthOf = new Float64Array(n).fill(1);
    let maxGroups = 1;
    for (const c of plan.campaigns) maxGroups = Math.max(maxGroups, c.groups.length);
    this.lpScratch = new Float64Array(maxGroups);
    const gf = () => new Float64Array(maxGroups);
    this.groupPost = { ctr: gf(), cvrA: gf(), cvrB: gf(), valA: gf(), valB: gf(), cvrDraw: gf(), valDraw: gf() };
    this.lpChoice = new Int32Array(maxGroups);
    // Before any evidence: even shares, price ranking (rank table = the arm's own bid).
    for (const c of plan.campaigns) {
      for (let k = 0; k < c.arms.length; k++) {
        const li = c.arms[k];
        this.share[li] = 1 / c.arms.length;
        this.reason[li] = REASON.explore;
        for (let j = 0; j < RANK_DRAWS; j++) this.setRank(li, j, plan.maxCostMicros[li] * 1000);
      }
    }
  }

  /* ------------------------------------------------------------ feedback (event pipeline) */

  private budgeted(li: number): boolean {
    return li >= 0 && li < this.plan.lineItemCount && this.plan.campaignOf[li] >= 0;
  }

  /** A bid went out (the policy calls it on each successful reservation). */
  recordBid(li: number): void {
    if (this.budgeted(li)) this.bids[li]++;
  }

  recordImpression(li: number, costMicros: number): void {
    if (!this.budgeted(li)) return;
    this.impressions[li]++;
    if (costMicros > 0) this.costMicros[li] += Math.round(costMicros);
  }

  /** Cost of an impression known apart from it (the win notice's clearing price; see outcome-listener.ts). */
  recordCost(li: number, costMicros: number): void {
    if (this.budgeted(li) && costMicros > 0) this.costMicros[li] += Math.round(costMicros);
  }

  /**
   * A click; with its time, it also enters the recent-click buckets that correct the conversion rate for clicks
   * too young to have converted yet (without a time the click counts as mature).
   */
  recordClick(li: number, nowMs = NaN): void {
    if (!this.budgeted(li)) return;
    this.clicks[li]++;
    if (!(nowMs > 0)) return;
    const bucket = Math.floor(nowMs / CLICK_BUCKET_MS);
    const slot = li * CLICK_BUCKETS + (bucket % CLICK_BUCKETS);
    if (this.clickBucketId[slot] !== bucket) {
      this.clickBucketId[slot] = bucket;
      this.clickBucket[slot] = 0;
    }
    this.clickBucket[slot]++;
  }

  /** Takes over `previous`'s recent-click buckets of arm `from` as arm `li`'s (a config swap, by line-item id). */
  adoptRecentClicks(li: number, previous: Allocator, from: number): void {
    const to = li * CLICK_BUCKETS;
    const at = from * CLICK_BUCKETS;
    this.clickBucket.set(previous.clickBucket.subarray(at, at + CLICK_BUCKETS), to);
    this.clickBucketId.set(previous.clickBucketId.subarray(at, at + CLICK_BUCKETS), to);
  }

  /**
   * Clicks of arm li that count in its conversion rate at nowMs: each recent click weighs the chance that it
   * would have converted by now, 1 - exp(-age / mean delay) (the buckets cover the last 24 hours).
   */
  protected matureClicks(li: number, delayMs: number, nowMs: number): number {
    const clicks = this.clicks[li];
    if (!(delayMs > 0) || !(nowMs > 0)) return clicks;
    const now = Math.floor(nowMs / CLICK_BUCKET_MS);
    let young = 0;
    for (let b = 0; b < CLICK_BUCKETS; b++) {
      const slot = li * CLICK_BUCKETS + b;
      const id = this.clickBucketId[slot];
      const n = this.clickBucket[slot];
      if (n === 0 || id > now || now - id >= CLICK_BUCKETS) continue;
      const ageMs = (now - id + 0.5) * CLICK_BUCKET_MS;
      young += n * Math.exp(-ageMs / delayMs);
    }
    return Math.max(0, clicks - young);
  }

  recordConversion(li: number, valueMicros: number): void {
    if (!this.budgeted(li)) return;
    this.conversions[li]++;
    if (valueMicros > 0) this.valueMicros[li] += Math.round(valueMicros);
  }

  /* ------------------------------------------------------------ hot path */

  /** Next joint draw: call once per request (BudgetPolicy does it when the request clock changes). */
  beginRequest(): void {
    this.draw = this.draw + 1 === RANK_DRAWS ? 0 : this.draw + 1;
    this.drawRow = this.draw * this.plan.lineItemCount;
  }

  /**
   * Rank of an arm for the current request: the campaign's mean bid scaled by the arm's sampled efficiency
   * relative to the campaign's mean. Within a campaign arms compare on sampled value per cost (not on price:
   * that is what the learning is for); across campaigns and against unbudgeted line items (ranked by price) the
   * score stays on a price scale.
   */
  rank(li: number, priceMicros: number): number {
    if (li < 0 || li >= this.plan.lineItemCount || this.plan.campaignOf[li] < 0) return priceMicros;
    return this.rankTable[this.drawRow + li];
  }

  /**
   * The budgeted line items in descending order of their rank for the current request (the draw rank() reads),
   * NaN ranks last; ties by line item. Valid until the next beginRequest. Brought up to date here on the first
   * request of a draw after the table changed: a reallocation rewrites one campaign's arms, so the row keeps the
   * order of the others and merges the changed ones in (a few microseconds for 500 line items; a full sort,
   * ~70 µs, only on first use or when more than a quarter of the arms changed).
   */
  rankOrder(): Int32Array {
    const j = this.draw;
    const row = this.orderRows[j];
    const since = this.orderVersion[j];
    if (since === this.rankVersion) return row;
    const key = this.sortKey;
    const table = this.rankTable;
    const base = this.drawRow;
    const arms = this.armList;
    for (let k = 0; k < arms.length; k++) {
      const r = table[base + arms[k]];
      key[arms[k]] = r === r ? r : -Infinity;
    }
    this.orderVersion[j] = this.rankVersion;
    if (since < 0) {
      row.set(arms);
      row.sort(this.byRankDesc);
      return row;
    }
    const campaignOf = this.plan.campaignOf;
    const changedSince = this.campaignRankVersion;
    const changed = this.changedArms;
    const kept = this.keptArms;
    let nc = 0;
    let nk = 0;
    for (let k = 0; k < row.length; k++) {
      const li = row[k];
      if (changedSince[campaignOf[li]] > since) changed[nc++] = li;
      else kept[nk++] = li;
    }
    if (nc * 4 > row.length) {
      row.sort(this.byRankDesc);
      return row;
    }
    // Insertion sort of the few changed arms, then one merge with the others (already in order).
    for (let a = 1; a < nc; a++) {
      const li = changed[a];
      let b = a - 1;
      while (b >= 0 && rankedBefore(key, li, changed[b])) {
        changed[b + 1] = changed[b];
        b--;
      }
      changed[b + 1] = li;
    }
    let c = 0;
    let k = 0;
    for (let out = 0; out < row.length; out++) {
      if (k >= nk || (c < nc && rankedBefore(key, changed[c], kept[k]))) row[out] = changed[c++];
      else row[out] = kept[k++];
    }
    return row;
  }

  /** Draw j of an arm's rank (reallocation, off the hot path). */
  protected setRank(li: number, j: number, score: number): void {
    this.rankTable[j * this.plan.lineItemCount + li] = score;
    this.rankVersion++;
    const c = this.plan.campaignOf[li];
    if (c >= 0) this.campaignRankVersion[c] = this.rankVersion;
  }

  /* ------------------------------------------------------------ reallocation */

  /**
   * Reallocates the campaigns whose period has elapsed (all of them with force), the most overdue first, at
   * most `maxCampaigns` per call and, with `budgetMs`, no new campaign once that much wall time has passed (at
   * least one always runs): with many campaigns the server spreads the work over its ticks instead of blocking
   * the event loop (about a millisecond per campaign of a dozen arms at 400 draws, 3-5 ms at 25 arms; measured on
   * the 1,000 line item bench config, 8 campaigns in one tick held the bid thread 23-39 ms).
   */
  reallocate(nowMs: number, force = false, maxCampaigns = Infinity, budgetMs = Infinity): void {
    this.finishLive();
    const due = this.dueCampaigns(nowMs, force, maxCampaigns, budgetMs);
    const t0 = budgetMs < Infinity ? performance.now() : 0;
    for (let i = 0; i < due.length && i < maxCampaigns; i++) {
      if (i > 0 && budgetMs < Infinity && performance.now() - t0 >= budgetMs) break;
      this.lastRun[due[i].index] = nowMs;
      this.reallocateCampaign(due[i], nowMs);
    }
  }

  /** The campaigns due at nowMs (every one with force), the most overdue first when not all may run. */
  private dueCampaigns(nowMs: number, force: boolean, maxCampaigns: number, budgetMs: number): CompiledCampaign[] {
    const due = this.plan.campaigns.filter((c) => force || nowMs - this.lastRun[c.index] >= c.reallocateMs);
    if (due.length > maxCampaigns || (budgetMs < Infinity && due.length > 1)) due.sort((a, b) => this.lastRun[a.index] - this.lastRun[b.index]);
    return due;
  }

  /**
   * The live timer's reallocate(), in slices of at most about `sliceMs` (the bid thread answers requests between
   * two): the same campaigns in the same order, no new campaign once `budgetMs` of slice time has gone into this
   * round (at least one runs), the same draws. One campaign of 25 arms at 400 draws is 2-5 ms of work, which a
   * request arriving meanwhile used to wait for whole. Returns true while the round has work left (call again
   * soon), false once it is done. Anything else that reallocates or reads the allocation's scratch state
   * (reallocate, allocationReport) first finishes the round in progress.
   */
  reallocationSlice(nowMs: number, sliceMs: number, maxCampaigns = Infinity, budgetMs = Infinity): boolean {
    if (this.live === null) {
      this.liveSpentMs = 0;
      this.live = this.liveRound(nowMs, maxCampaigns, budgetMs);
    }
    const t0 = performance.now();
    let done = false;
    do done = this.live.next().done === true;
    while (!done && performance.now() - t0 < sliceMs);
    this.liveSpentMs += performance.now() - t0;
    if (done) this.live = null;
    return !done;
  }

  /** True while a live round (reallocationSlice) is in progress. */
  get reallocating(): boolean {
    return this.live !== null;
  }

  /** Runs the live round in progress, if any, to its end. */
  finishLive(): void {
    const live = this.live;
    if (live === null) return;
    this.live = null;
    while (live.next().done !== true);
  }

  private *liveRound(nowMs: number, maxCampaigns: number, budgetMs: number): Generator<void, void, void> {
    const due = this.dueCampaigns(nowMs, false, maxCampaigns, budgetMs);
    for (let i = 0; i < due.length && i < maxCampaigns; i++) {
      if (i > 0 && this.liveSpentMs >= budgetMs) return;
      this.lastRun[due[i].index] = nowMs;
      yield* this.reallocateCampaignSteps(due[i], nowMs);
    }
  }

  lastReallocation(c: number): number {
    return this.lastRun[c];
  }

  private reallocateCampaign(c: CompiledCampaign, nowMs: number): void {
    const steps = this.reallocateCampaignSteps(c, nowMs);
    while (steps.next().done !== true);
  }

  /**
   * One campaign's reallocation, yielding between groups of draws (exploitSteps): the scratch state it fills
   * (posteriors, worth, lambda...) is the allocator's, so one runs at a time (finishLive).
   */
  private *reallocateCampaignSteps(c: CompiledCampaign, nowMs: number): Generator<void, void, void> {
    const arms = c.arms;
    const n = arms.length;
    if (n === 0) return;
    this.posteriors(c, nowMs);
    let meanEff = 0;
    for (let k = 0; k < n; k++) meanEff += this.meanEff[k];
    meanEff = meanEff / n || 1;
    for (let k = 0; k < n; k++) this.priority[arms[k]] = this.meanEff[k] / meanEff;

    const exploit = new Float64Array(n);
    this.lambdaAcc = 0;
    this.limitedAcc = 0;
    this.worth.fill(1);
    yield* this.exploitSteps(c, exploit);
    this.lambda[c.index] = this.lambdaAcc;
    for (let k = 0; k < n; k++) this.worthOf[arms[k]] = this.worth[k];
    this.budgetLimited[c.index] = this.limitedAcc;
    const explore = new Float64Array(n);
    const exploreUsed = this.exploreShares(c, explore);
    const shares = new Float64Array(n);
    let total = 0;
    for (let k = 0; k < n; k++) total += exploit[k];
    for (let k = 0; k < n; k++) shares[k] = explore[k] + (1 - exploreUsed) * (total > 0 ? exploit[k] / total : 1 / n);
    const reasons = new Uint8Array(n);
    for (let k = 0; k < n; k++) reasons[k] = explore[k] > 0 ? REASON.explore : REASON.exploit;
    const unrailed = shares.slice();
    applyGuardRails(c, shares, reasons, this.guardRailWeights(c));
    // What exploration holds once the rails have clamped the groups (they keep the proportions inside a group).
    let explored = 0;
    for (let k = 0; k < n; k++) if (explore[k] > 0 && unrailed[k] > 0) explored += (explore[k] * shares[k]) / unrailed[k];
    this.explored[c.index] = Math.min(exploreUsed, explored);
    for (let k = 0; k < n; k++) {
      this.share[arms[k]] = shares[k];
      this.reason[arms[k]] = reasons[k];
    }
    this.fillRankTable(c);
    this.remember(c, nowMs);
  }

  /** Exploration: split the campaign's exploration share evenly over under-evidenced arms, within capacity. */
  protected exploreShares(c: CompiledCampaign, out: Float64Array): number {
    const arms = c.arms;
    const n = arms.length;
    let budget = c.explorationShare;
    const want = new Uint8Array(n);
    let count = 0;
    for (let k = 0; k < n; k++) {
      // An arm is ruled out only on some evidence of its own (half the minimum), never on priors alone.
      const ruledOut = this.worth[k] < ELIMINATE && this.impressions[arms[k]] >= c.minImpressions / 2;
      if (this.isExploring(c, arms[k]) && !ruledOut) {
        want[k] = 1;
        count++;
      }
    }
    // Even split with water-filling: an arm that cannot absorb its part leaves it to the others.
    while (count > 0 && budget > 1e-12) {
      const part = budget / count;
      let saturated = 0;
      for (let k = 0; k < n; k++) {
        if (!want[k]) continue;
        const room = this.capacity[arms[k]] - out[k];
        if (room <= part) {
          out[k] += Math.max(0, room);
          budget -= Math.max(0, room);
          want[k] = 0;
          count--;
          saturated++;
        }
      }
      if (saturated === 0) {
        for (let k = 0; k < n; k++) if (want[k]) out[k] += part;
        budget = 0;
      }
    }
    return c.explorationShare - budget;
  }

  /** How a segment raised to its minimum spreads it over its arms (posterior-mean efficiency by default). */
  protected guardRailWeights(c: CompiledCampaign): Float64Array {
    return this.meanEff.subarray(0, c.arms.length);
  }

  /** Whether an arm still needs evidence. */
  protected isExploring(c: CompiledCampaign, li: number): boolean {
    return this.impressions[li] < c.minImpressions || this.clicks[li] < c.minClicks;
  }

  /** Fills `out` (parallel to c.arms) with exploit weights (any scale; normalised by the caller). */
  protected abstract exploitShares(c: CompiledCampaign, out: Float64Array): void;

  /** exploitShares in steps (a live reallocation yields between them); by default one. */
  protected *exploitSteps(c: CompiledCampaign, out: Float64Array): Generator<void, void, void> {
    this.exploitShares(c, out);
  }

  /** Fills the rank table rows of the campaign's arms (after exploitShares). */
  protected abstract fillRankTable(c: CompiledCampaign): void;

  /**
   * Posterior parameters (this.post[k]) and posterior-mean efficiencies (this.meanEff[k]) of the campaign's
   * arms, with hierarchical empirical-Bayes priors: campaign pool -> segment pool -> arm.
   */
  protected posteriors(c: CompiledCampaign, nowMs = NaN): void {
    const arms = c.arms;
    const n = arms.length;
    const g = c.groups.length;
    // K: clicks (for click rates); M: mature clicks, those old enough to have converted (for conversion rates).
    let I = 0, K = 0, M = 0, V = 0, S = 0;
    const gI = new Float64Array(g), gK = new Float64Array(g), gM = new Float64Array(g), gV = new Float64Array(g), gS = new Float64Array(g);
    for (let k = 0; k < n; k++) {
      const li = arms[k];
      const grp = c.armGroup[k];
      const imps = this.impressions[li], clk = Math.min(this.clicks[li], imps), conv = Math.min(this.conversions[li], clk);
      const mature = Math.min(clk, Math.max(conv, this.matureClicks(li, c.conversionDelayMs, nowMs)));
      I += imps;
      K += clk;
      M += mature;
      V += conv;
      S += this.valueMicros[li];
      gI[grp] += imps;
      gK[grp] += clk;
      gM[grp] += mature;
      gV[grp] += conv;
      gS[grp] += this.valueMicros[li];
    }
    // Campaign level, with a weak default so that an empty campaign still has proper priors.
    const mCtr = (K + DEFAULT_CTR * 2000) / (I + 2000);
    const mCvr = (V + DEFAULT_CVR * 50) / (M + 50);
    const mVal = (S + DEFAULT_VALUE_MICROS) / (V + 1);
    // Parent level (the segmentation tree): the pooled evidence of sibling segments, shrunk to the campaign
    // with a weight of 2 clicks / 2 conversions / 1 order.
    const P = c.parents.length;
    const pI = new Float64Array(P), pK = new Float64Array(P), pM = new Float64Array(P), pV = new Float64Array(P), pS = new Float64Array(P);
    for (let j = 0; j < g; j++) {
      const par = c.groupParent[j];
      if (par < 0) continue;
      pI[par] += gI[j];
      pK[par] += gK[j];
      pM[par] += gM[j];
      pV[par] += gV[j];
      pS[par] += gS[j];
    }
    const parCtr = Float64Array.from(pI, (x, q) => (pK[q] + 2) / (x + 2 / mCtr));
    const parCvr = Float64Array.from(pM, (x, q) => (pV[q] + 2) / (x + 2 / mCvr));
    const parVal = Float64Array.from(pV, (x, q) => (pS[q] + mVal) / (x + 1));
    const gp = this.groupPost;
    for (let j = 0; j < g; j++) {
      const gr = c.groups[j];
      const conf = gr.priorConfidence;
      const par = c.groupParent[j];
      const baseCtr = par >= 0 ? parCtr[par] : mCtr;
      const baseCvr = par >= 0 ? parCvr[par] : mCvr;
      const baseVal = par >= 0 ? parVal[par] : mVal;
      // Segment CTR (the centre of its arms' priors): the trader's prior, else the tree's, worth 2 clicks.
      const ctrP = gr.priorCtr > 0 ? gr.priorCtr : baseCtr;
      const ctrW = gr.priorCtr > 0 ? conf : 2;
      gp.ctr[j] = (gK[j] + ctrW) / (gI[j] + ctrW / ctrP);
      // Segment conversion rate, Beta: the trader's prior worth `conf` conversions, else the tree's worth 2.
      const cvrP = gr.priorCvr > 0 ? gr.priorCvr : baseCvr;
      const cvrW = gr.priorCvr > 0 ? conf : 2;
      gp.cvrA[j] = cvrW + gV[j];
      gp.cvrB[j] = Math.max(cvrW / cvrP - cvrW, 1e-3) + gM[j] - gV[j];
      // Segment order value: value ~ Gamma(VALUE_SHAPE, rate L), L ~ Gamma(valA, valB), prior mean valP.
      const valP = gr.priorValueMicros > 0 ? gr.priorValueMicros : baseVal;
      const valW = gr.priorValueMicros > 0 ? conf : 1;
      gp.valA[j] = VALUE_SHAPE * valW + VALUE_SHAPE * gV[j];
      gp.valB[j] = (valP * (VALUE_SHAPE * valW - 1)) / VALUE_SHAPE + gS[j];
    }
    for (let k = 0; k < n; k++) {
      const li = arms[k];
      const grp = c.armGroup[k];
      const p = this.post[k];
      const imps = this.impressions[li], clk = Math.min(this.clicks[li], imps);
      // Arm CTR: prior worth 2 clicks centred on its segment (creatives and bids move it).
      p.ctrA = 2 + clk;
      p.ctrB = Math.max(2 / gp.ctr[grp] - 2, 1e-3) + imps - clk;
      // Conversion rate and order value are the segment's (pooled over its arms: a property of the audience).
      p.cvrA = gp.cvrA[grp];
      p.cvrB = gp.cvrB[grp];
      p.valA = gp.valA[grp];
      p.valB = gp.valB[grp];
      // Cost: the bid's impression cost is the prior (20 impressions' worth), observed costs take over.
      const bidCost = this.plan.maxCostMicros[li] > 0 ? this.plan.maxCostMicros[li] : 1000;
      p.cost = (this.costMicros[li] + 20 * 0.8 * bidCost) / (imps + 20);
      // Win rate: impressions per bid, with a prior worth 10 bids at 30%.
      p.win = Math.min(1, (Math.min(imps, this.bids[li]) + 3) / (this.bids[li] + 10));
      const m = this.means(k);
      this.meanValue[k] = kpiPerImpression(c.kpi, m.ctr, m.cvr, m.value);
      this.meanEff[k] = this.meanValue[k] / p.cost;
    }
  }

  /**
   * One joint posterior draw of every arm's KPI per impression into v (after posteriors()): each segment's
   * conversion rate and order value are drawn once and shared by its arms, each arm's CTR is drawn apart.
   */
  protected drawValues(c: CompiledCampaign, v: Float64Array): void {
    const rng = this.rng;
    const gp = this.groupPost;
    const kpi = c.kpi;
    for (let j = 0; j < c.groups.length; j++) {
      gp.cvrDraw[j] = kpi === 'cpc' ? 1 : rng.beta(gp.cvrA[j], gp.cvrB[j]);
      gp.valDraw[j] = kpi === 'roas' ? VALUE_SHAPE / (rng.gamma(gp.valA[j]) / gp.valB[j]) : 1;
    }
    for (let k = 0; k < c.arms.length; k++) {
      const p = this.post[k];
      const grp = c.armGroup[k];
      v[k] = rng.beta(p.ctrA, p.ctrB) * gp.cvrDraw[grp] * gp.valDraw[grp];
    }
  }

  /** Posterior means of arm k (after posteriors()). */
  protected means(k: number): { ctr: number; cvr: number; value: number } {
    const p = this.post[k];
    return { ctr: p.ctrA / (p.ctrA + p.ctrB), cvr: p.cvrA / (p.cvrA + p.cvrB), value: (VALUE_SHAPE * p.valB) / (p.valA - 1) };
  }

  /**
   * Traffic of the campaign's segments for the LP (after posteriors()): segRate[g] = requests per second the
   * segment's arms are candidates for (the largest opportunity rate among its arms), and the desired spend rate.
   * Unobserved segments get 1% of the busiest one (they are explored anyway); with no traffic seen at all, 1 each.
   */
  protected traffic(c: CompiledCampaign, segRate: Float64Array): number {
    segRate.fill(0);
    let busiest = 0;
    for (let k = 0; k < c.arms.length; k++) {
      const g = c.armGroup[k];
      const r = this.opportunityRate[c.arms[k]];
      if (r > segRate[g]) segRate[g] = r;
      if (r > busiest) busiest = r;
    }
    for (let g = 0; g < segRate.length; g++) if (!(segRate[g] > 0)) segRate[g] = busiest > 0 ? busiest * 0.01 : 1;
    const u = this.targetRate[c.index];
    if (u > 1e-3) return u;
    // Before the pacer has spoken, or while it holds spend (ahead of its curve): the daily budget over a day.
    const days = Math.max(1, (c.flightEndMs - c.flightStartMs) / 86_400_000);
    return (c.dailyMicros >= 0 ? c.dailyMicros : c.flightMicros / days) / 86400;
  }

  /**
   * The LP of one draw: values v[k] (KPI per impression) -> adds weight x (each arm's share of the spend) into
   * out; returns lambda (KPI per micro of budget; 0 when traffic, not budget, is the limit).
   */
  protected lpFill(c: CompiledCampaign, v: Float64Array, segRate: Float64Array, u: number, out: Float64Array, weight: number, choice: Int32Array): number {
    const lambda = this.lpSolve(c, v, segRate, u, out, weight, choice);
    this.lambdaAcc += weight * lambda;
    if (lambda > 0) this.limitedAcc += weight;
    return lambda;
  }

  private lpSolve(c: CompiledCampaign, v: Float64Array, segRate: Float64Array, u: number, out: Float64Array, weight: number, choice: Int32Array): number {
    const n = c.arms.length;
    const G = c.groups.length;
    const post = this.post;
    const full = this.lpChoose(c, v, segRate, 0, choice);
    if (!(full > 0)) {
      for (let k = 0; k < n; k++) out[k] += weight / n;
      return 0;
    }
    if (full <= u) {
      // Traffic-limited: every segment bids with its most valuable arm; shares in proportion to spend.
      for (let g = 0; g < G; g++) if (choice[g] >= 0) out[choice[g]] += (weight * segRate[g] * post[choice[g]].win * post[choice[g]].cost) / full;
      return 0;
    }
    // Budget-limited: bisection on lambda for the smallest value whose spend fits u (24 halvings: 6e-8 of the
    // range, far below the noise of any estimate here).
    let lo = 0;
    let hi = 0;
    for (let k = 0; k < n; k++) hi = Math.max(hi, v[k] / post[k].cost);
    for (let it = 0; it < 24; it++) {
      const mid = (lo + hi) / 2;
      if (this.lpChoose(c, v, segRate, mid, choice) > u) lo = mid;
      else hi = mid;
    }
    // Split the margin: theta of the (over-spending) choice at lo, the rest of the choice at hi.
    const spendLo = this.lpChoose(c, v, segRate, lo, choice);
    const lowChoice = this.lpChoice;
    for (let g = 0; g < G; g++) lowChoice[g] = choice[g];
    const spendHi = this.lpChoose(c, v, segRate, hi, choice);
    const theta = spendLo > spendHi ? (u - spendHi) / (spendLo - spendHi) : 0;
    for (let g = 0; g < G; g++) {
      const kl = lowChoice[g];
      const kh = choice[g];
      if (kl >= 0) out[kl] += (weight * theta * segRate[g] * post[kl].win * post[kl].cost) / u;
      if (kh >= 0) out[kh] += (weight * (1 - theta) * segRate[g] * post[kh].win * post[kh].cost) / u;
    }
    return hi;
  }

  /** Each segment's best arm at budget price lambda (choice[g], -1 = sits out); returns their spend rate. */
  private lpChoose(c: CompiledCampaign, v: Float64Array, segRate: Float64Array, lambda: number, choice: Int32Array): number {
    const G = c.groups.length;
    const best = this.lpScratch;
    for (let g = 0; g < G; g++) {
      choice[g] = -1;
      best[g] = 0;
    }
    const post = this.post;
    for (let k = 0; k < c.arms.length; k++) {
      const p = post[k];
      const sur = p.win * (v[k] - lambda * p.cost);
      const g = c.armGroup[k];
      if (sur > best[g]) {
        best[g] = sur;
        choice[g] = k;
      }
    }
    let spend = 0;
    for (let g = 0; g < G; g++) if (choice[g] >= 0) spend += segRate[g] * post[choice[g]].win * post[choice[g]].cost;
    return spend;
  }

  /** Expected surplus per bid of arm k for value v and budget price lambda (the per-request rank). */
  protected surplus(k: number, v: number, lambda: number): number {
    const p = this.post[k];
    return p.win * (v - lambda * p.cost);
  }

  /** A positive scale turning surpluses into price-like ranks: campaign mean bid / mean expected value per bid. */
  protected rankScale(c: CompiledCampaign): number {
    let price = 0;
    let value = 0;
    for (let k = 0; k < c.arms.length; k++) {
      price += this.plan.maxCostMicros[c.arms[k]] * 1000;
      value += this.post[k].win * this.meanValue[k];
    }
    return value > 0 ? price / value : 1;
  }

  private remember(c: CompiledCampaign, nowMs: number): void {
    const entry: AllocationEntry = {
      t: nowMs,
      campaign: c.id,
      arms: Array.from(c.arms, (li) => ({ lineItem: this.plan.lineItemIds[li], share: round6(this.share[li]), reason: REASON_NAMES[this.reason[li]] })),
    };
    if (this.history.length < HISTORY_MAX) this.history.push(entry);
    else this.history[this.historyNext] = entry;
    this.historyNext = (this.historyNext + 1) % HISTORY_MAX;
  }

  /** Allocation history, oldest first (bounded ring). */
  allocationHistory(): AllocationEntry[] {
    if (this.history.length < HISTORY_MAX) return this.history.slice();
    return [...this.history.slice(this.historyNext), ...this.history.slice(0, this.historyNext)];
  }

  /** The ops API view: current shares, reasons, evidence and posterior means, plus the history. Plain JSON. */
  allocationReport(historyLimit = 200): AllocationReport {
    this.finishLive(); // posteriors() below overwrites the scratch state a live round is using
    const campaigns = this.plan.campaigns.map((c) => {
      this.posteriors(c, this.lastRun[c.index]);
      const arms: ArmReport[] = Array.from(c.arms, (li, k) => {
        const m = this.means(k);
        return {
          lineItem: this.plan.lineItemIds[li],
          segment: c.groups[c.armGroup[k]].segmentId,
          share: round6(this.share[li]),
          reason: REASON_NAMES[this.reason[li]],
          impressions: this.impressions[li],
          clicks: this.clicks[li],
          conversions: this.conversions[li],
          valueMicros: this.valueMicros[li],
          costMicros: this.costMicros[li],
          ctr: round6(m.ctr),
          cvr: round6(m.cvr),
          orderValueMicros: Math.round(m.value),
          efficiency: round6(this.meanEff[k] * (c.kpi === 'roas' ? 1 : 1e6)),
          worthChance: round6(this.worthOf[li]),
        };
      });
      return {
        id: c.id,
        kpi: c.kpi,
        explorationShare: c.explorationShare,
        reallocatedAt: this.lastRun[c.index],
        marginalValue: round6(this.lambda[c.index] * (c.kpi === 'roas' ? 1 : 1e6)),
        budgetLimitedShare: round6(this.budgetLimited[c.index]),
        arms,
      };
    });
    const history = this.allocationHistory();
    return { campaigns, history: history.slice(Math.max(0, history.length - historyLimit)) };
  }

  /** Evidence by line item id (persisted across restarts and reloads by the caller). */
  exportStats(): Record<string, [number, number, number, number, number]> {
    const out: Record<string, [number, number, number, number, number]> = {};
    for (let li = 0; li < this.plan.lineItemCount; li++) {
      if (this.plan.campaignOf[li] < 0) continue;
      out[this.plan.lineItemIds[li]] = [this.impressions[li], this.clicks[li], this.conversions[li], this.valueMicros[li], this.costMicros[li]];
    }
    return out;
  }

  importStats(stats: Record<string, readonly number[]>): void {
    for (let li = 0; li < this.plan.lineItemCount; li++) {
      const s = stats[this.plan.lineItemIds[li]];
      if (s === undefined || this.plan.campaignOf[li] < 0) continue;
      [this.impressions[li], this.clicks[li], this.conversions[li], this.valueMicros[li], this.costMicros[li]] = s.map((x) => (Number.isFinite(x) && x >= 0 ? Math.round(x) : 0));
    }
  }
}

/** rankOrder's order: a higher key first, then the lower line item. */
function rankedBefore(key: Float64Array, a: number, b: number): boolean {
  return key[a] > key[b] || (key[a] === key[b] && a < b);
}

export function kpiPerImpression(kpi: Kpi, ctr: number, cvr: number, value: number): number {
  return kpi === 'cpc' ? ctr : kpi === 'cpa' ? ctr * cvr : ctr * cvr * value;
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

/**
 * Clamps segment (group) shares into [minShare, maxShare] and renormalises the free groups, keeping the
 * proportions inside each group. A starved group raised to its minimum gets it spread by `weight` (posterior
 * mean efficiency), so the minimum goes to the segment's most promising arms. Marks arms of clamped groups with
 * guard_rail_min / guard_rail_max. Exported for the baselines and tests.
 */
export function applyGuardRails(c: CompiledCampaign, shares: Float64Array, reasons: Uint8Array, weight: Float64Array): void {
  const g = c.groups.length;
  const n = c.arms.length;
  if (g === 0) return;
  const total = new Float64Array(g);
  for (let k = 0; k < n; k++) total[c.armGroup[k]] += shares[k];
  // Targets t_j = clamp(alpha * x_j, min_j, max_j) with alpha such that they sum to 1: the closest to the current
  // proportions that fits the rails. x_j gets a tiny floor so that a starved group can still be raised; the sum
  // is continuous and non-decreasing in alpha, from sum(min) <= 1 to sum(max) >= 1 (checked at compile time).
  const x = Float64Array.from(total, (t) => t + 1e-12);
  const target = new Float64Array(g);
  const fill = (alpha: number) => {
    let sum = 0;
    for (let j = 0; j < g; j++) {
      const gr = c.groups[j];
      target[j] = Math.min(gr.maxShare, Math.max(gr.minShare, alpha * x[j]));
      sum += target[j];
    }
    return sum;
  };
  let lo = -60;
  let hi = 60;
  for (let it = 0; it < 200 && hi - lo > 1e-13; it++) {
    const mid = (lo + hi) / 2;
    if (fill(Math.exp(mid)) < 1) lo = mid;
    else hi = mid;
  }
  const sum = fill(Math.exp(hi));
  // Remove the last rounding residue from a group that has room for it.
  const residue = 1 - sum;
  for (let j = 0; j < g && Math.abs(residue) > 0; j++) {
    const gr = c.groups[j];
    const next = target[j] + residue;
    if (next >= gr.minShare && next <= gr.maxShare && next >= 0) {
      target[j] = next;
      break;
    }
  }
  for (let j = 0; j < g; j++) {
    const from = total[j];
    const to = target[j];
    if (Math.abs(to - from) < 1e-12) continue;
    const gr = c.groups[j];
    const mark = to > from && to <= gr.minShare + 1e-12 ? REASON.guard_rail_min : to < from && to >= gr.maxShare - 1e-12 ? REASON.guard_rail_max : -1;
    // Scaled in proportion only from a total that carries precision: a denormal total (shares ~1e-315) would
    // underflow to 0 and lose the target's mass; below 1e-12 the group is refilled by weight instead.
    const proportional = from > 1e-12;
    let wsum = 0;
    if (!proportional) for (let k = 0; k < n; k++) if (c.armGroup[k] === j) wsum += Math.max(weight[k], 0) + 1e-12;
    for (let k = 0; k < n; k++) {
      if (c.armGroup[k] !== j) continue;
      shares[k] = Math.max(0, proportional ? (shares[k] * to) / from : (to * (Math.max(weight[k], 0) + 1e-12)) / wsum);
      if (mark >= 0) reasons[k] = mark;
    }
  }
}

/**
 * The default allocator: Thompson sampling over the posteriors above. Exploit share = average LP allocation
 * over `samples` joint draws; rank table = the surpluses of the first RANK_DRAWS draws (each with its lambda).
 */
export class ThompsonAllocator extends Allocator {
  protected exploitShares(c: CompiledCampaign, out: Float64Array): void {
    const steps = this.exploitSteps(c, out);
    while (steps.next().done !== true);
  }

  /** The draws, yielding every STEP_DRAWS of them (about 0.2 ms at 25 arms). */
  protected override *exploitSteps(c: CompiledCampaign, out: Float64Array): Generator<void, void, void> {
    const n = c.arms.length;
    const v = new Float64Array(n);
    const segRate = new Float64Array(c.groups.length);
    const choice = new Int32Array(c.groups.length);
    const u = this.traffic(c, segRate);
    const K = c.samples;
    const draws = Math.max(K, RANK_DRAWS);
    if (this.lastRanks.length < n * RANK_DRAWS) this.lastRanks = new Float64Array(n * RANK_DRAWS);
    this.worth.fill(0);
    for (let s = 0; s < draws; s++) {
      this.drawValues(c, v);
      const lambda = this.lpFill(c, v, segRate, u, out, s < K ? 1 / K : 0, choice);
      if (s < RANK_DRAWS) for (let k = 0; k < n; k++) this.lastRanks[k * RANK_DRAWS + s] = this.surplus(k, v[k], lambda);
      // (1e-6: the marginal arm, bought in part, sits at lambda within the bisection's precision.)
      if (s < K) for (let k = 0; k < n; k++) if (v[k] >= lambda * this.post[k].cost * (1 - 1e-6)) this.worth[k] += 1 / K;
      if ((s + 1) % STEP_DRAWS === 0) yield;
    }
  }

  /** Surpluses of the first RANK_DRAWS draws of the last exploitShares, per arm. */
  private lastRanks: Float64Array = new Float64Array(0);

  protected fillRankTable(c: CompiledCampaign): void {
    const scale = this.rankScale(c);
    for (let k = 0; k < c.arms.length; k++) {
      for (let j = 0; j < RANK_DRAWS; j++) this.setRank(c.arms[k], j, this.lastRanks[k * RANK_DRAWS + j] * scale);
    }
  }
}
