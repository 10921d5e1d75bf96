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

  it('keeps the recent clicks\' maturity, and does not carry an arm\'s spend into another campaign', () => {
    const path = budgetedDemo(1000, 5);
    const handler = new BidHandler(loadDecider(path), new Metrics({ defaultMetrics: false }));
    const before = handler.budget!;
    const arms = Array.from(before.plan.campaigns[0].arms);
    const now = Date.now();
    const delay = 3600_000;
    // 100 clicks a minute old: most are too young to have converted yet.
    const [stay, move] = [arms[0], arms[1]];
    for (let i = 0; i < 100; i++) before.onClick(stay, now - 60_000);
    before.pacer.spentToday[move] = 60_000_000;
    before.pacer.spentToday[stay] = 5_000_000;
    const mature = (p: typeof before, li: number) => (p.allocator as unknown as { matureClicks(li: number, d: number, n: number): number }).matureClicks(li, delay, now);
    const matureBefore = mature(before, stay);
    // Ages are counted in 10-minute buckets: a minute-old click is 0.5 or 1.5 buckets old (8 or 22 of 100 mature).
    expect(matureBefore).toBeLessThan(25);

    // The arm `move` goes to a campaign of its own.
    const doc = JSON.parse(readFileSync(path, 'utf8'));
    const moved = before.plan.lineItemIds[move];
    const shared = doc.campaigns[0];
    shared.lineItems = shared.lineItems.filter((id: string) => id !== moved);
    doc.campaigns.push({ ...shared, id: 'other', name: 'Other', lineItems: [moved] });
    handler.swap(deciderFromDocument(doc, dirname(path), path));
    const after = handler.budget!;
    const stayNow = after.plan.lineItemIds.indexOf(before.plan.lineItemIds[stay]);
    const moveNow = after.plan.lineItemIds.indexOf(moved);
    expect(after.allocator.clicks[stayNow]).toBe(100);
    expect(mature(after, stayNow)).toBeCloseTo(matureBefore, 6);
    expect(after.pacer.spentToday[stayNow]).toBe(5_000_000);
    expect(after.plan.campaigns[after.plan.campaignOf[moveNow]].id).toBe('other');
    expect(after.pacer.spentToday[moveNow]).toBe(0);
  });
});
