/**
 * The allocator learns each impression's cost once, from the first of the win and billing notices of its bid
 * (src/budget/outcome-listener.ts). From the win only, an exchange that sends only `burl` left every arm's cost at
 * zero: the allocator took those impressions for free and moved budget to the arms without clicks.
 */
import { describe, expect, it } from 'vitest';
import { BudgetOutcomeListener } from '../src/budget/outcome-listener.js';
import type { BudgetPolicy } from '../src/budget/budget-policy.js';
import type { OutcomeContext } from '../src/events/types.js';

function listener() {
  const costs: [number, number][] = [];
  // Only what the listener calls; the ledger side is tested with the real policy elsewhere (budget-integration).
  const policy = {
    onWin: () => {},
    onBilling: () => {},
    allocator: { recordCost: (li: number, micros: number) => costs.push([li, micros]) },
  } as unknown as BudgetPolicy;
  return { l: new BudgetOutcomeListener(policy), costs };
}
const ctx = (bidId: string) => ({ bidId, nowMs: 1 }) as OutcomeContext;

describe('the impression cost the allocator learns', () => {
  it('comes from the billing notice when the exchange sends no win notice', () => {
    const { l, costs } = listener();
    l.onBill(3, 2_500_000, ctx('b1'));
    expect(costs).toEqual([[3, 2500]]);
  });
  it('is counted once per bid, whichever notice comes first', () => {
    const { l, costs } = listener();
    l.onWin(3, 2_000_000, ctx('b1'));
    l.onBill(3, 2_000_000, ctx('b1'));
    l.onBill(4, 1_000_000, ctx('b2'));
    l.onWin(4, 1_000_000, ctx('b2'));
    expect(costs).toEqual([
      [3, 2000],
      [4, 1000],
    ]);
  });
});
