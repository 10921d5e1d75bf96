/**
 * A config swap keeps the budgets' learning and pacing (BudgetPolicy.adoptFrom), without a state dir: a trader
 * pausing one line item of a campaign must not restart the other arms' test-and-learn evidence or their pacing.
 * In process: a BidHandler on the budgeted demo (every demo line item an arm of one campaign), evidence and spend
 * given to the allocator and the pacer, then a swap to the same document with one line item paused.
 */
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BidHandler } from '../src/bidding/bid-handler.js';
import { deciderFromDocument, loadDecider } from '../src/bidding/load-decider.js';
import { Metrics } from '../src/metrics/metrics.js';
import { budgetedDemo } from './helpers/budget-drive.js';

describe('a config swap keeps the budgets\' learning and pacing', () => {
  it('carries each arm\'s evidence and today\'s spend over by id, the paused arm aside', () => {
    const path = budgetedDemo(1000, 5);
    const handler = new BidHandler(loadDecider(path), new Metrics({ defaultMetrics: false }));
    const before = handler.budget!;
    const ids = before.plan.lineItemIds;
    const arms = Array.from(before.plan.campaigns[0].arms);
    expect(arms.length).toBeGreaterThan(2);
    // Evidence and spend per arm, different for each.
    arms.forEach((li, k) => {
      for (let i = 0; i < 10 * (k + 1); i++) before.onImpression(li, 2000 + k);
      for (let i = 0; i <= k; i++) before.onClick(li, Date.now());
      before.onConversion(li, 5_000_000 * (k + 1));
      before.pacer.spentToday[li] = 1000 * (k + 1);
    });
    const seen = (p: typeof before, id: string) => {
      const li = p.plan.lineItemIds.indexOf(id);
      return { impressions: p.allocator.impressions[li], clicks: p.allocator.clicks[li], conversions: p.allocator.conversions[li], cost: p.allocator.costMicros[li], spentToday: p.pacer.spentToday[li] };
    };
    const expected = new Map(arms.map((li) => [ids[li], seen(before, ids[li])] as const));

    const doc = JSON.parse(readFileSync(path, 'utf8'));
    const paused = doc.lineItems[0].id as string;
    doc.lineItems[0].active = false;
    handler.swap(deciderFromDocument(doc, dirname(path), path));
    const after = handler.budget!;
    expect(after).not.toBe(before);
    let kept = 0;
    for (const [id, was] of expected) {
      if (id === paused || !after.plan.lineItemIds.includes(id)) continue;
      expect(seen(after, id), id).toEqual(was);
      expect(was.impressions).toBeGreaterThan(0);
      kept++;
    }
    expect(kept).toBeGreaterThan(1);
  });
});
