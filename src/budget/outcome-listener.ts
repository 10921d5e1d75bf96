/**
 * Wires the event pipeline (src/events, OutcomeListener) to the BudgetPolicy: notices settle or release
 * reservations, impressions / clicks / conversions feed the allocator's posteriors.
 *
 * Contract:
 *   - The reservation handle travels inside the bid id: the response builder calls
 *     bidIdWithReservation(bidId, policy.lastReservation) when it serialises a budgeted bid (the token carries
 *     the bid id back), and reservationOf(ctx.bidId) recovers it here (-1 when absent: unbudgeted line items,
 *     or a bid id minted by an older build). A notice whose handle is unknown is still booked, capped at the line
 *     item's bid and at the budget left (Ledger.bookUnreserved).
 *   - Prices from the pipeline are CPMs in micros; one impression costs price / 1000 (rounded to whole micros).
 *   - onWin: the policy's win notice (books in campaigns settled on 'win', shrinks the reservation to the
 *     clearing price and restarts its TTL in campaigns settled on 'billing'). onBill: the billing notice (books in
 *     'billing' campaigns, ignored in 'win' ones, which already booked on the win). The pipeline calls onWin then
 *     onBill for exchanges that bill on the win, which is correct for both modes.
 *   - The clearing price is recorded as the impression's cost for the allocator on the win; onImpression counts
 *     the impression (win rate = impressions / bids, CTR = clicks / impressions).
 */
import type { Attribution, OutcomeContext, OutcomeListener } from '../events/types.js';
import type { BudgetPolicy } from './budget-policy.js';
import { LRUCache } from 'lru-cache';

/** Appends the reservation handle to a bid id: `<bidId>.<handle base 36>` (at most 11 more characters). */
export function bidIdWithReservation(bidId: string, handle: number): string {
  return handle >= 0 ? `${bidId}.${handle.toString(36)}` : bidId;
}

/** The reservation handle carried by a bid id, or -1. */
export function reservationOf(bidId: string): number {
  const dot = bidId.lastIndexOf('.');
  if (dot < 0 || dot === bidId.length - 1) return -1;
  const h = parseInt(bidId.slice(dot + 1), 36);
  return Number.isSafeInteger(h) && h >= 0 ? h : -1;
}

function impressionMicros(cpmMicros: number): number {
  return cpmMicros > 0 ? Math.round(cpmMicros / 1000) : 0;
}

export class BudgetOutcomeListener implements OutcomeListener {
  private readonly policy: BudgetPolicy;
  /**
   * Bids whose impression cost the allocator has: it learns the cost from the first of the win and billing
   * notices, once per bid. From the win only (before), an exchange that sends only `burl` left every arm's cost
   * at zero and the allocator took its impressions for free (the best arm lost its budget to arms without clicks).
   */
  private readonly costed = new LRUCache<string, true>({ max: 200_000 });

  constructor(policy: BudgetPolicy) {
    this.policy = policy;
  }

  onWin(lineItem: number, priceMicros: number, ctx: OutcomeContext): void {
    const cost = impressionMicros(priceMicros);
    this.policy.onWin(reservationOf(ctx.bidId), lineItem, cost, ctx.nowMs);
    this.recordCost(lineItem, cost, ctx.bidId);
  }

  onBill(lineItem: number, priceMicros: number, ctx: OutcomeContext): void {
    const cost = impressionMicros(priceMicros);
    this.policy.onBilling(reservationOf(ctx.bidId), lineItem, cost, ctx.nowMs);
    this.recordCost(lineItem, cost, ctx.bidId);
  }

  private recordCost(lineItem: number, cost: number, bidId: string): void {
    if (bidId !== '' && this.costed.has(bidId)) return;
    if (bidId !== '') this.costed.set(bidId, true);
    this.policy.allocator.recordCost(lineItem, cost);
  }

  onLoss(_lineItem: number, _bidMicros: number, _minToWinMicros: number, _lossReason: number, ctx: OutcomeContext): void {
    this.policy.onLoss(reservationOf(ctx.bidId), ctx.nowMs);
  }

  onImpression(lineItem: number): void {
    this.policy.onImpression(lineItem, 0);
  }

  onClick(lineItem: number, ctx: OutcomeContext): void {
    this.policy.onClick(lineItem, ctx.nowMs);
  }

  onConversion(lineItem: number, valueMicros: number, _attribution: Attribution): void {
    this.policy.onConversion(lineItem, valueMicros);
  }
}
