/**
 * BudgetPolicy: the BidPolicy (src/bidding/decide.ts) that puts budgets, pacing and test-and-learn into the
 * decision. It owns a Ledger, an Allocator and a Pacer, and wires the event notices into them.
 *
 * Hot path (allocation-free, answers from precomputed typed arrays):
 *   eligible(li, now)  budgeted line item: count the opportunity, draw u ~ U[0,1), pass iff u < throttle[li].
 *                      eligibleAll(bits, now): the same for every set bit, in ascending order, in one loop over
 *                      the budgeted ones (a word-AND with their bitset passes the others).
 *                      The throttle folds every gate: paused, out of flight, budget exhausted, segment at its
 *                      guard-rail max (all 0), the pacing rate and the arm's allocation share. Only a refusal
 *                      looks further, to count its reason.
 *   rank(li, price)    the allocator's Thompson draw for this request: the arm's expected surplus per bid in
 *                      that draw, on a price scale (one array read).
 *   reserve(li, cost)  ledger reservation of one impression's cost (rounded up to whole micros); the handle is
 *                      left in `lastReservation` for the caller to carry in the event URLs.
 * Unbudgeted line items (in no campaign) always pass, rank by price, reserve nothing (lastReservation = -1).
 *
 * Off the hot path: tick(now) every second (expire reservations, pacing step, reallocation when due);
 * onWin / onBilling / onLoss / onImpression / onClick / onConversion from the event pipeline.
 * Settlement: a campaign with settle 'win' books spend on the win notice and ignores billing notices; one with
 * settle 'billing' shrinks the reservation to the clearing price on the win notice and books on the billing
 * notice. A notice with an unknown handle books at most the line item's bid (see Ledger.bookUnreserved).
 *
 * Proposed extension of BidPolicy (implemented here as a superset, see BudgetBidPolicy): the Decider may call
 * beginRequest(nowMs) once per request (so that rank() compares arms on one joint draw; without it the policy
 * detects a new request by a change of nowMs in eligible()), and after a successful reserve() reads
 * lastReservation and carries it to the bid id (outcome-listener.ts: bidIdWithReservation); the event pipeline's
 * BudgetOutcomeListener hands it back to onWin / onBilling / onLoss.
 */
import type { BidPolicy } from '../bidding/decide.js';
import { Ledger, RESERVE_FAIL, SETTLE } from './ledger.js';
import { REASON_NAMES, ThompsonAllocator, type Allocator } from './allocator.js';
import type { BudgetReport, BudgetSample } from './budget-report.js';
import { GATE, GATE_NAMES, Pacer } from './pacing.js';
import type { CompiledBudgetPlan } from './types.js';

export interface BudgetBidPolicy extends BidPolicy {
  /** Handle of the reservation made by the last successful reserve(); -1 when the line item is not budgeted. */
  readonly lastReservation: number;
  /** Start of a request (optional for the caller: a change of nowMs in eligible() means the same). */
  beginRequest(nowMs: number): void;
}

/**
 * Wall time the live tick may spend starting campaign reallocations (the bid thread waits meanwhile): with 20
 * campaigns of 25 arms due every 5 s, the most overdue get reallocated first and a campaign waits a few
 * seconds longer than its period, instead of every request waiting for all of them.
 */
export const LIVE_REALLOCATION_BUDGET_MS = 4;
/** The longest the live timer's reallocation holds the bid thread at once (BudgetPolicy.reallocationSlice). */
export const LIVE_REALLOCATION_SLICE_MS = 0.5;

export const REFUSAL_NAMES = [
  'paused',
  'out_of_flight',
  'budget_exhausted',
  'guard_rail_max',
  'pacing',
  'allocation',
  'reserve_day_budget',
  'reserve_flight_budget',
  'reserve_out_of_flight',
  'reserve_table_full',
  'reserve_invalid',
  'reserve_lease',
] as const;
export type RefusalName = (typeof REFUSAL_NAMES)[number];
const NR = REFUSAL_NAMES.length;
const R_PACING = 4;
const R_ALLOCATION = 5;
/** gate code -> refusal index */
const GATE_REFUSAL = [R_PACING, 0, 1, 2, 3];
/** -RESERVE_FAIL code -> refusal index */
const RESERVE_REFUSAL = [0, 6, 7, 8, 9, 10, 11];

/** `${AUCTION_PRICE}` (a CPM, currency units) -> the price of one impression in integer micros. */
export function impressionMicrosFromCpm(cpm: number): number {
  return Number.isFinite(cpm) && cpm > 0 ? Math.round(cpm * 1000) : 0;
}

export interface BudgetPolicyOptions {
  ledger?: Ledger;
  allocator?: Allocator;
  /** Seed of the throttle draws and of the allocator's sampler. */
  seed?: number;
  /** Called at the end of tick() (e.g. FileJournal.flush). */
  afterTick?: () => void;
}

export class BudgetPolicy implements BudgetBidPolicy {
  readonly plan: CompiledBudgetPlan;
  readonly ledger: Ledger;
  readonly allocator: Allocator;
  readonly pacer: Pacer;
  /** Refusals per line item and reason: refusals[li * REFUSAL_NAMES.length + reason]. */
  readonly refusals: Float64Array;
  lastReservation = -1;
  /** Notices ignored because the campaign does not settle on them (billing notices of win-settled ones...). */
  ignoredNotices = 0;
  private lastRequestMs = NaN;
  /**
   * The xorshift32 state, in a typed slot: a uint32 stored into an object field is a fresh heap number whenever it
   * is above 2^30 (half the draws), one allocation per budgeted line item per request; a typed array holds it raw.
   */
  private readonly rngState = new Uint32Array(1);
  /** The budgeted line items (in a campaign) as a bitset: eligibleAll passes the others with one word-AND. */
  private readonly budgetedMask: Uint32Array;
  private readonly afterTick: (() => void) | null;

  constructor(plan: CompiledBudgetPlan, options: BudgetPolicyOptions = {}) {
    this.plan = plan;
    this.ledger = options.ledger ?? Ledger.fromPlan(plan);
    this.allocator = options.allocator ?? new ThompsonAllocator(plan, options.seed ?? 1);
    this.pacer = new Pacer(plan);
    this.refusals = new Float64Array(plan.lineItemCount * NR);
    this.budgetedMask = new Uint32Array(Math.ceil(plan.lineItemCount / 32));
    for (let li = 0; li < plan.lineItemCount; li++) if (plan.campaignOf[li] >= 0) this.budgetedMask[li >>> 5] |= 1 << (li & 31);
    this.rngState[0] = ((options.seed ?? 1) * 0x9e3779b1) >>> 0 || 0x2545f491;
    this.afterTick = options.afterTick ?? null;
  }

  /* ---------------------------------------------------------------- hot path */

  beginRequest(nowMs: number): void {
    this.lastRequestMs = nowMs;
    this.allocator.beginRequest();
  }

  eligible(lineItem: number, nowMs: number): boolean {
    if (nowMs !== this.lastRequestMs) this.beginRequest(nowMs);
    const plan = this.plan;
    if (lineItem < 0 || lineItem >= plan.lineItemCount || plan.campaignOf[lineItem] < 0) return true;
    return this.draw(lineItem);
  }

  eligibleAll(candidates: Uint32Array, nowMs: number): number {
    if (nowMs !== this.lastRequestMs) this.beginRequest(nowMs);
    const budgeted = this.budgetedMask;
    const words = candidates.length < budgeted.length ? candidates.length : budgeted.length;
    let lastRefused = -1;
    for (let w = 0; w < words; w++) {
      let x = candidates[w] & budgeted[w];
      while (x !== 0) {
        const low = x & -x;
        const li = (w << 5) + 31 - Math.clz32(low);
        x ^= low;
        if (!this.draw(li)) {
          candidates[w] &= ~low;
          lastRefused = li;
        }
      }
    }
    return lastRefused;
  }

  /** A budgeted line item's opportunity: counted, then the throttle draw; a refusal is counted with its reason. */
  private draw(lineItem: number): boolean {
    const pacer = this.pacer;
    pacer.opportunities[lineItem]++;
    // xorshift32: a uniform draw with no allocation and no call.
    let x = this.rngState[0];
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rngState[0] = x;
    const u = this.rngState[0] / 4294967296;
    if (u < pacer.throttle[lineItem]) {
      pacer.passes[lineItem]++;
      return true;
    }
    const gate = pacer.gate[lineItem];
    const reason = gate !== GATE.open ? GATE_REFUSAL[gate] : u < pacer.campaignGate[lineItem] ? R_ALLOCATION : R_PACING;
    this.refusals[lineItem * NR + reason]++;
    return false;
  }

  rank(lineItem: number, priceMicros: number): number {
    return this.allocator.rank(lineItem, priceMicros);
  }

  /** BidPolicy: the budgeted line items rank by their draw, whatever the price; the others by price. */
  get priceFreeMask(): Uint32Array {
    return this.budgetedMask;
  }

  /** BidPolicy: the budgeted line items by this request's rank, highest first (the allocator's sorted draw). */
  rankOrder(nowMs: number): Int32Array {
    if (nowMs !== this.lastRequestMs) this.beginRequest(nowMs);
    return this.allocator.rankOrder();
  }

  reserve(lineItem: number, costMicros: number, nowMs: number): boolean {
    const plan = this.plan;
    const c = lineItem >= 0 && lineItem < plan.lineItemCount ? plan.campaignOf[lineItem] : -1;
    if (c < 0) {
      this.lastReservation = -1;
      return true;
    }
    // Conservative: a fraction of a micro is reserved as a whole micro.
    const h = this.ledger.reserve(c, lineItem, Math.ceil(costMicros), nowMs);
    if (h >= 0) {
      this.lastReservation = h;
      this.allocator.bids[lineItem]++; // win rate = impressions / bids
      return true;
    }
    this.lastReservation = -1;
    this.refusals[lineItem * NR + RESERVE_REFUSAL[-h]]++;
    return false;
  }

  /* ---------------------------------------------------------------- timer */

  /**
   * Every second: expire reservations, pacing step, reallocation of the campaigns that are due (at most
   * `maxReallocations` of them per tick, and none started after `reallocationBudgetMs` of wall time, at least
   * one; the others wait for the next tick, most overdue first). The live timer passes a budget
   * (LIVE_REALLOCATION_BUDGET_MS); the simulator does not, so its runs do not depend on the machine's speed.
   */
  tick(nowMs: number, maxReallocations = 8, reallocationBudgetMs = Infinity): void {
    this.ledger.expire(nowMs);
    this.pacer.update(nowMs, this.ledger, this.allocator);
    // 0: the caller reallocates in slices (reallocationSlice); a round in progress goes on.
    if (maxReallocations > 0) this.allocator.reallocate(nowMs, false, maxReallocations, reallocationBudgetMs);
    if (this.afterTick !== null) this.afterTick();
  }

  /**
   * The live timer's reallocation, in slices (Allocator.reallocationSlice): after tick(now, 0), call it until it
   * returns false, giving the event loop a turn between calls.
   */
  reallocationSlice(nowMs: number, sliceMs: number, maxReallocations: number, budgetMs: number): boolean {
    return this.allocator.reallocationSlice(nowMs, sliceMs, maxReallocations, budgetMs);
  }

  /** Runtime pause (ops API). Takes effect at the next tick. Returns false for an unknown campaign. */
  pause(campaignId: string, paused: boolean): boolean {
    const camp = this.plan.campaigns.find((c) => c.id === campaignId);
    if (camp === undefined) return false;
    this.pacer.paused[camp.index] = paused ? 1 : 0;
    return true;
  }

  /* ---------------------------------------------------------------- notices */

  private settleOn(lineItem: number): 'win' | 'billing' | null {
    const c = lineItem >= 0 && lineItem < this.plan.lineItemCount ? this.plan.campaignOf[lineItem] : -1;
    return c < 0 ? null : this.plan.campaigns[c].settle;
  }

  /** Win notice: `priceMicros` = clearing price of one impression (impressionMicrosFromCpm). */
  onWin(handle: number, lineItem: number, priceMicros: number, nowMs: number): void {
    const mode = this.settleOn(lineItem);
    if (mode === 'win') this.book(handle, lineItem, priceMicros, nowMs);
    else if (mode === 'billing') this.ledger.adjust(handle, Math.round(priceMicros), nowMs);
  }

  /** Billing notice (burl). */
  onBilling(handle: number, lineItem: number, priceMicros: number, nowMs: number): void {
    if (this.settleOn(lineItem) === 'billing') this.book(handle, lineItem, priceMicros, nowMs);
    else this.ignoredNotices++;
  }

  onLoss(handle: number, nowMs: number): void {
    this.ledger.release(handle, nowMs);
  }

  private book(handle: number, lineItem: number, priceMicros: number, nowMs: number): void {
    const price = Math.round(priceMicros);
    const code = this.ledger.settle(handle, price, nowMs);
    if (code === SETTLE.settled || code === SETTLE.late) {
      const tag = this.ledger.lastTag;
      if (tag >= 0 && tag < this.plan.lineItemCount) this.pacer.spentToday[tag] += this.ledger.lastBooked;
    } else if (code === SETTLE.unknown) {
      const c = this.plan.campaignOf[lineItem];
      const cap = this.plan.maxCostMicros[lineItem];
      const booked = this.ledger.bookUnreserved(c, lineItem, price < cap ? price : cap, nowMs);
      this.pacer.spentToday[lineItem] += booked;
    }
  }

  onImpression(lineItem: number, costMicros: number): void {
    this.allocator.recordImpression(lineItem, costMicros);
  }

  /** A click; its time lets the allocator discount clicks too young to have converted yet. */
  onClick(lineItem: number, nowMs = NaN): void {
    this.allocator.recordClick(lineItem, nowMs);
  }

  onConversion(lineItem: number, valueMicros: number): void {
    this.allocator.recordConversion(lineItem, valueMicros);
  }

  /**
   * A config swap's new policy takes over the previous one's learning and pacing, by line-item and campaign id:
   * the allocator's evidence (impressions, clicks, conversions, value, cost, bids per arm) and the pacer's state
   * (today's spend per arm, rate estimates, controller integral, hourly profile, pauses). The ledger is carried
   * over apart (BidHandler.attachBudget). Without this a trader pausing one line item restarted every arm's
   * learning and pacing (the state store carried them only when a state dir was set). Call before the first tick.
   */
  adoptFrom(previous: BudgetPolicy): void {
    const stats: Record<string, number[]> = {};
    const before = previous.plan;
    const a = previous.allocator;
    const was = new Map<string, number>();
    for (let li = 0; li < before.lineItemCount; li++) {
      if (before.campaignOf[li] < 0) continue;
      const id = before.lineItemIds[li];
      was.set(id, li);
      stats[id] = [a.impressions[li], a.clicks[li], a.conversions[li], a.valueMicros[li], a.costMicros[li]];
    }
    this.allocator.importStats(stats);
    const pacing = previous.pacer.exportState();
    for (let li = 0; li < this.plan.lineItemCount; li++) {
      const c = this.plan.campaignOf[li];
      const from = was.get(this.plan.lineItemIds[li]);
      if (c < 0 || from === undefined) continue;
      this.allocator.bids[li] = a.bids[from];
      // Recent clicks, so that the conversion rate keeps discounting the clicks too young to have converted.
      this.allocator.adoptRecentClicks(li, a, from);
      // Today's spend of an arm moved to another campaign was booked on the other's account: not carried.
      if (before.campaigns[before.campaignOf[from]].id !== this.plan.campaigns[c].id) delete pacing.lineItems[this.plan.lineItemIds[li]];
    }
    this.pacer.importState(pacing);
  }

  /* ---------------------------------------------------------------- reports */

  /** Refusals by reason, all line items (for metrics: one counter per reason). */
  refusalTotals(): Record<RefusalName, number> {
    const out = {} as Record<RefusalName, number>;
    REFUSAL_NAMES.forEach((name, r) => {
      let s = 0;
      for (let li = 0; li < this.plan.lineItemCount; li++) s += this.refusals[li * NR + r];
      out[name] = s;
    });
    return out;
  }

  /**
   * The ops view (GET /admin/budget): per campaign the ledger account, pacing state and per-arm throttle, gate and
   * share; with `allocation`, the allocator's report (it finishes a live reallocation round first: up to tens of
   * ms of this thread on a large config, so a cluster asks one worker for it, once its round is over).
   */
  report(nowMs: number, allocation = true): BudgetReport {
    return {
      campaigns: this.plan.campaigns.map((c) => ({
        id: c.id,
        name: c.name,
        account: this.ledger.account(c.index),
        targetSpendMicros: Math.round(this.pacer.targetSpend(c.index, nowMs, this.ledger)),
        desiredRateMicrosPerSec: Math.round(this.pacer.desiredRate[c.index]),
        arms: Array.from(c.arms, (li) => ({
          lineItem: this.plan.lineItemIds[li],
          throttle: Math.round(this.pacer.throttle[li] * 1e4) / 1e4,
          gate: GATE_NAMES[this.pacer.gate[li]],
          share: Math.round(this.allocator.share[li] * 1e4) / 1e4,
          spentTodayMicros: this.pacer.spentToday[li],
          capacityMicrosPerSec: Math.round(this.pacer.capacityRate[li]),
        })),
      })),
      refusals: this.refusalTotals(),
      allocation: allocation ? this.allocator.allocationReport() : null,
    };
  }

  /** What the console's history records (src/admin/history.ts): reads only, no posterior computed. */
  sample(nowMs: number): BudgetSample {
    return {
      campaigns: this.plan.campaigns.map((c) => ({
        id: c.id,
        name: c.name,
        dayIndex: this.ledger.dayIndexOf(c.index),
        dayBudgetMicros: this.ledger.dayBudgetOf(c.index),
        spentMicros: this.ledger.daySpentOf(c.index),
        targetMicros: Math.round(this.pacer.targetSpend(c.index, nowMs, this.ledger)),
        exploration: this.allocator.explored[c.index],
        arms: Array.from(c.arms, (li, k) => ({
          lineItem: this.plan.lineItemIds[li],
          segment: c.groups[c.armGroup[k]].segmentId,
          share: this.allocator.share[li],
          reason: REASON_NAMES[this.allocator.reason[li]],
        })),
      })),
    };
  }
}

export { RESERVE_FAIL };
