/**
 * Closes the learning loop of the decision: outcomes from the event pipeline (src/events) feed the strategy
 * rates (CTR, CVR, order values), the creative rotation, the first-price shading curves and the frequency
 * caps of the plan currently serving; timers refresh the hot-path tables from them, off the hot path.
 *
 * The token's `arm` field carries the shading context of a bid: bit 15 = first-price auction, bits 0-14 = the
 * floor in hundredths of a CPM (bidder currency), so a win or a loss lands on the curve the bid was priced on.
 */
import type { OutcomeContext, OutcomeListener } from '../events/types.js';
import type { Decider } from './decide.js';
import type { ShadingTable } from './shading.js';
import type { InProcessCapStore } from './frequency-caps.js';
import { LIVE_REALLOCATION_BUDGET_MS, LIVE_REALLOCATION_SLICE_MS } from '../budget/budget-policy.js';

/**
 * Observers of what the listener records, for state shared beyond this thread (src/bidding/shared-learning.ts,
 * src/redis/redis-caps.ts). Called after the local record, synchronously; they must not throw.
 */
export interface LearningTap {
  shadingOutcome?(shading: ShadingTable, key: number, bidMicros: number, valueMicros: number, won: boolean, minToWinMicros: number): void;
  capRecorded?(caps: InProcessCapStore, userHi: number, userLo: number, lineItem: number, nowMs: number, bidId: string): void;
}

export const ARM_FIRST_PRICE = 0x8000;
const ARM_FLOOR_MASK = 0x7fff;

/** Packs the shading context of a bid into the token's arm field. */
export function shadingArm(firstPrice: boolean, floorMicrosBidderCurrency: number): number {
  const centi = Math.min(ARM_FLOOR_MASK, Math.ceil(floorMicrosBidderCurrency / 10_000));
  return (firstPrice ? ARM_FIRST_PRICE : 0) | centi;
}

/** Loss reason 102: lost to a higher bid (the only loss that says something about price). */
const LOST_TO_HIGHER_BID = 102;

export class LearningListener implements OutcomeListener {
  private readonly current: () => Decider;
  readonly taps: LearningTap[] = [];

  constructor(current: () => Decider) {
    this.current = current;
  }

  private shadingOutcome(lineItem: number, ctx: OutcomeContext, won: boolean, minToWinMicros: number): void {
    if ((ctx.arm & ARM_FIRST_PRICE) === 0 || ctx.bidMicros <= 0) return;
    const shading = this.current().plan.shading;
    const key = shading.keyOf(lineItem, shading.exchangeIndex(ctx.exchange || undefined), (ctx.arm & ARM_FLOOR_MASK) * 10_000);
    // The value behind the bid: the bid over the factor it was shaded with (the factor moves slowly).
    const factor = shading.factor[key] > 0 ? shading.factor[key] : 1;
    shading.recordOutcome(key, ctx.bidMicros, ctx.bidMicros / factor, won, minToWinMicros);
    for (const tap of this.taps) tap.shadingOutcome?.(shading, key, ctx.bidMicros, ctx.bidMicros / factor, won, minToWinMicros);
  }

  onWin(lineItem: number, _priceMicros: number, ctx: OutcomeContext): void {
    this.shadingOutcome(lineItem, ctx, true, -1);
  }

  onLoss(lineItem: number, _bidMicros: number, minToWinMicros: number, lossReason: number, ctx: OutcomeContext): void {
    if (lossReason === LOST_TO_HIGHER_BID) this.shadingOutcome(lineItem, ctx, false, minToWinMicros);
  }

  onBill(lineItem: number, _priceMicros: number, ctx: OutcomeContext): void {
    const plan = this.current().plan;
    plan.strategies.recordImpression(lineItem);
    if (ctx.creative >= 0) plan.selector.recordImpression(ctx.creative);
    // Frequency is booked on the billable event (OpenRTB: burl), per user key hash of the bid.
    if (plan.anyCaps && ctx.user.length === 16) {
      const hi = parseInt(ctx.user.slice(0, 8), 16) >>> 0;
      const lo = parseInt(ctx.user.slice(8), 16) >>> 0;
      plan.caps.record(hi, lo, lineItem, ctx.nowMs);
      for (const tap of this.taps) tap.capRecorded?.(plan.caps, hi, lo, lineItem, ctx.nowMs, ctx.bidId);
    }
  }

  onImpression(_lineItem: number, _ctx: OutcomeContext): void {
    // Impressions are booked on the billing notice (onBill); the pixel only measures rendering.
  }

  onClick(lineItem: number, ctx: OutcomeContext): void {
    const plan = this.current().plan;
    plan.strategies.recordClick(lineItem);
    if (ctx.creative >= 0) plan.selector.recordClick(ctx.creative);
  }

  onConversion(lineItem: number, valueMicros: number): void {
    this.current().plan.strategies.recordConversion(lineItem, valueMicros);
  }
}

/**
 * Refreshes the hot-path tables from the learned counters, off the hot path: budgets (pacing, allocation) and
 * strategies and shading every second, creative rotation every 10 s.
 */
export function startLearningTimers(current: () => Decider): () => void {
  let ticks = 0;
  let stopped = false;
  // The test-and-learn reallocation in slices of at most LIVE_REALLOCATION_SLICE_MS, one per turn of the event
  // loop (setImmediate: after the I/O the loop has polled), for as long as the round started by the tick lasts.
  // A policy replaced meanwhile (config swap) is left: its next use finishes its round (Allocator.finishLive).
  let slicing: LivePolicy | null = null; // the policy whose round a chain of slices is running
  const slice = (policy: LivePolicy, nowMs: number) => {
    const more = !stopped && current().policy === policy && policy.reallocationSlice!(nowMs, LIVE_REALLOCATION_SLICE_MS, 8, LIVE_REALLOCATION_BUDGET_MS);
    if (more) setImmediate(slice, policy, nowMs);
    else if (slicing === policy) slicing = null;
  };
  const timer = setInterval(() => {
    const decider = current();
    const plan = decider.plan;
    const now = Date.now();
    // Budgets: expire reservations, re-run the pacing controller, reallocate the test-and-learn shares.
    const policy = decider.policy as LivePolicy;
    if (policy.reallocationSlice !== undefined) {
      policy.tick?.(now, 0);
      // A round still running (a starved event loop) goes on; the next one starts at a later tick.
      if (slicing !== policy) {
        slicing = policy;
        slice(policy, now);
      }
    } else {
      policy.tick?.(now, 8, LIVE_REALLOCATION_BUDGET_MS);
    }
    plan.strategies.refresh();
    plan.shading.refresh(now);
    if (++ticks % 10 === 0) plan.selector.refresh();
  }, 1000);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}

/** What the learning timers call on a decider's policy (BudgetPolicy; other policies have neither). */
interface LivePolicy {
  tick?: (nowMs: number, maxReallocations?: number, budgetMs?: number) => void;
  reallocationSlice?: (nowMs: number, sliceMs: number, maxReallocations: number, budgetMs: number) => boolean;
}
