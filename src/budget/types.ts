/**
 * Budget, pacing and test-and-learn configuration: the trader-facing `campaigns` array (validated by
 * src/budget/schema.ts, compiled by src/budget/compile.ts) and the compiled plan the hot path reads.
 *
 * Contract:
 *   - A campaign groups line items ("arms" of the test-and-learn allocator) under one budget. A line item belongs
 *     to at most one campaign; a line item in no campaign is not budgeted (it always bids, ranked by price).
 *   - Money is written in units of the bidder currency and compiled to integer micro-units (1 unit = 1e6).
 *   - Guard rails are keyed by segment id: an arm belongs to the segment its line item targets (the integrator's
 *     `segmentOfLineItem`, see `leafSegmentOf`), and a segment's share of the campaign budget stays within
 *     [minShare, maxShare] whatever the learning says.
 */

export type Kpi = 'cpc' | 'cpa' | 'roas';
export type PacingCurveKind = 'even' | 'traffic';
export type SettleOn = 'win' | 'billing';

export interface GuardRailDef {
  /** Lowest share of the campaign budget the segment gets (0-1): a strategic segment is never starved. */
  minShare: number;
  /** Highest share (0-1). */
  maxShare: number;
}

/**
 * What the strategy already knows about a segment (CRM analysis, past campaigns): the centre of the allocator's
 * prior for the segment, worth `confidence` observations (conversions for cvr, orders for orderValue, clicks for
 * ctr). Evidence takes over as it accumulates. Absent: the campaign's own pooled figures, weakly.
 */
export interface SegmentPriorDef {
  ctr?: number;
  cvr?: number;
  /** Mean order value, currency units. */
  orderValue?: number;
  /** Default 5. */
  confidence?: number;
}

export interface CampaignBudgetDef {
  /** Daily cap in currency units. Absent: the flight budget left, spread over the days left. */
  daily?: number;
  /** Total budget of the flight, currency units. */
  flight: number;
  /** ISO 8601 instants; the flight is [flightStart, flightEnd). */
  flightStart: string;
  flightEnd: string;
}

export interface PacingDef {
  /** `even`: the same spend every minute of the day. `traffic`: shaped by the hourly traffic profile. */
  curve: PacingCurveKind;
  /**
   * 24 non-negative hourly weights (hour 0 = midnight of the campaign's day) for `traffic`. Absent: the profile
   * observed on the previous days (opportunities per hour), even on the first day.
   */
  hourlyProfile?: number[];
  /** Offset of the campaign's day from UTC, minutes (e.g. 60 for CET). Days roll over at local midnight. */
  utcOffsetMinutes?: number;
  /** Time the controller takes to close a spend gap, seconds (the P term). Default 900. */
  catchUpSeconds?: number;
}

export interface LearningDef {
  /** An arm with fewer impressions than this is still "exploring". Default 2000. */
  minImpressions?: number;
  /** An arm with fewer clicks than this is still "exploring". Default 5. */
  minClicks?: number;
  /** Thompson samples per reallocation (share = probability of being in the best allocation). Default 400. */
  samples?: number;
  /** Seconds between reallocations. Default 5. */
  reallocateSeconds?: number;
  /**
   * Mean delay from click to conversion, minutes (exponential). Recent clicks have not had time to convert:
   * they count in the conversion rate only in proportion to the chance they would have by now. 0 = off.
   * Default 60.
   */
  conversionDelayMinutes?: number;
}

export interface CampaignDef {
  id: string;
  name: string;
  budget: CampaignBudgetDef;
  kpi: Kpi;
  /** Share of the budget kept for arms with too little evidence (0-0.5). Default 0.15. */
  explorationShare?: number;
  guardRails?: Record<string, GuardRailDef>;
  /** Prior knowledge per segment id (see SegmentPriorDef). */
  priors?: Record<string, SegmentPriorDef>;
  /** Line item ids: the arms. */
  lineItems: string[];
  pacing?: PacingDef;
  /** Which notice books the spend: the win notice (nurl) or the billing notice (burl). Default `win`. */
  settle?: SettleOn;
  /** How long a reservation waits for its notice before it is released, ms. Default 120000. */
  reservationTtlMs?: number;
  /** A paused campaign does not bid; its open reservations still settle. */
  paused?: boolean;
  learning?: LearningDef;
  /**
   * Budget slice, currency units, a process leases at a time when several share the campaign (--workers N or
   * --redis): the overspend bound is one slice per process. Default: 1% of the daily budget (of the flight
   * budget per flight day without a daily cap), at least two impressions at the highest arm bid.
   */
  leaseSlice?: number;
}

export const CAMPAIGN_DEFAULTS = {
  explorationShare: 0.15,
  settle: 'win' as SettleOn,
  reservationTtlMs: 120_000,
  catchUpSeconds: 900,
  minImpressions: 2000,
  minClicks: 5,
  samples: 400,
  reallocateSeconds: 5,
  priorConfidence: 5,
  conversionDelayMinutes: 60,
} as const;

export const MICROS = 1_000_000;
export const DAY_MS = 86_400_000;

/** A segment of a campaign's arms, with its guard rail (0 and 1 when the campaign sets none). */
export interface CompiledGroup {
  readonly segmentId: string;
  readonly minShare: number;
  readonly maxShare: number;
  readonly guarded: boolean;
  /** The strategy's prior for the segment (0 = none) and its weight in observations. */
  readonly priorCtr: number;
  readonly priorCvr: number;
  readonly priorValueMicros: number;
  readonly priorConfidence: number;
}

export interface CompiledCampaign {
  readonly index: number;
  readonly id: string;
  readonly name: string;
  readonly kpi: Kpi;
  /** Integer micro-units; dailyMicros = -1 when the campaign has no daily cap. */
  readonly dailyMicros: number;
  readonly flightMicros: number;
  readonly flightStartMs: number;
  readonly flightEndMs: number;
  readonly explorationShare: number;
  /** Line-item indices of the arms, in config order. */
  readonly arms: Int32Array;
  /** Group (segment) index of each arm, parallel to `arms`. */
  readonly armGroup: Int32Array;
  readonly groups: readonly CompiledGroup[];
  /**
   * Parent of each group in the segmentation tree, as an index into `parents` (-1: no parent). Sibling segments
   * pool their evidence for each other's priors (prospects learn from prospects, customers from customers).
   */
  readonly groupParent: Int32Array;
  readonly parents: readonly string[];
  readonly curve: PacingCurveKind;
  /** 24 weights summing to 1, or null (even, or traffic learned from observation). */
  readonly hourlyProfile: Float64Array | null;
  readonly utcOffsetMs: number;
  readonly catchUpSeconds: number;
  readonly settle: SettleOn;
  readonly reservationTtlMs: number;
  readonly paused: boolean;
  readonly minImpressions: number;
  readonly minClicks: number;
  readonly samples: number;
  readonly reallocateMs: number;
  /** Mean click-to-conversion delay, ms (0 = no correction). */
  readonly conversionDelayMs: number;
  /** Budget slice leased at a time when processes share the campaign (CampaignDef.leaseSlice), micros. */
  readonly leaseSliceMicros?: number;
}

/** The compiled plan, indexed by line-item index (the compiled config's `index`). */
export interface CompiledBudgetPlan {
  readonly campaigns: readonly CompiledCampaign[];
  /** Number of line items in the compiled config (the length of every per-line-item array). */
  readonly lineItemCount: number;
  /** Line item ids by index, so that state kept across reloads (ledger, posteriors) is re-mapped by id. */
  readonly lineItemIds: readonly string[];
  /** Campaign index of each line item, -1 = not budgeted. */
  readonly campaignOf: Int32Array;
  /** Group index (within its campaign) of each line item, -1 = not budgeted. */
  readonly groupOf: Int32Array;
  /** Bid of each line item in micros per impression (CPM micros / 1000, rounded up): the most one imp costs. */
  readonly maxCostMicros: Float64Array;
}
