/**
 * Budgets inside the real decision: a campaign over the demo line items, driven through BidHandler (parse,
 * decide, reserve, respond) and settled by win notices through the event handler. Outstanding reservations plus
 * spend never exceed the budget, even if every open bid wins; once the budget is committed, bidding stops.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { BidHandler } from '../src/bidding/bid-handler.js';
import { deciderFromDocument } from '../src/bidding/load-decider.js';
import { Metrics } from '../src/metrics/metrics.js';
import { DEMO_CONFIG, DEMO_DIR } from '../src/common/paths.js';
import { ensureDemoStore } from '../src/fixtures/ensure-demo.js';
import { demoUserId } from '../src/fixtures/demo.js';

function handlerWithCampaign(budget: number): BidHandler {
  ensureDemoStore();
  const doc = JSON.parse(readFileSync(DEMO_CONFIG, 'utf8'));
  const now = Date.now();
  doc.campaigns = [
    {
      id: 'spring',
      name: 'Spring',
      budget: { daily: budget, flight: budget, flightStart: new Date(now - 3600_000).toISOString(), flightEnd: new Date(now + 86400_000).toISOString() },
      kpi: 'roas',
      lineItems: ['li-run-of-network', 'li-loyal-display'],
      pacing: { curve: 'even', catchUpSeconds: 10 },
      settle: 'win',
    },
  ];
  // Only the campaign's arms bid, so every bid is budgeted.
  for (const li of doc.lineItems) if (!doc.campaigns[0].lineItems.includes(li.id)) li.active = false;
  const decider = deciderFromDocument(doc, DEMO_DIR, 'budget-test');
  return new BidHandler(decider, new Metrics({ defaultMetrics: false }));
}

function request(i: number) {
  return JSON.stringify({
    id: `b-${i}`,
    site: { domain: 'news.example' },
    cur: ['USD'],
    imp: [{ id: '1', banner: { format: [{ w: 300, h: 250 }] } }],
    user: { buyeruid: demoUserId(i) },
  });
}

describe('budgets in the decision', () => {
  // The pacer learns each arm's capacity from the opportunities it sees between ticks (every second in the
  // server): the test drives traffic in rounds with a real tick between them.
  const tick = async (handler: BidHandler) => {
    await new Promise((r) => setTimeout(r, 1100));
    handler.budget!.tick(Date.now());
  };

  it('never commits more than the budget, and stops bidding once it is committed', async () => {
    const handler = handlerWithCampaign(0.01); // 10,000 micros: a handful of impressions at CPM 0.5-4
    const budget = handler.budget!;
    expect(budget).not.toBeNull();
    let bids = 0;
    let refusedForBudget = 0;
    for (let i = 0; i < 3000; i++) {
      if (i % 600 === 599) await tick(handler);
      const r = handler.handle(request(i));
      if (r.status === 200) bids++;
      else if (r.reason === 'budget_exhausted' || r.reason === 'paced') refusedForBudget++;
      const a = budget.ledger.account(0);
      expect(a.flight.spent + a.flight.reserved).toBeLessThanOrEqual(10_000);
      expect(a.day.spent + a.day.reserved).toBeLessThanOrEqual(10_000);
      budget.ledger.checkInvariant();
    }
    expect(bids).toBeGreaterThan(0);
    expect(refusedForBudget).toBeGreaterThan(0);
  });

  it('settles a reservation from the win notice of the bid (price from ${AUCTION_PRICE})', async () => {
    const handler = handlerWithCampaign(10);
    const budget = handler.budget!;
    let bid: { nurl: string } | null = null;
    for (let i = 0; i < 3000 && bid === null; i++) {
      if (i % 500 === 499) await tick(handler);
      const r = handler.handle(request(i));
      if (r.status === 200) bid = JSON.parse(r.body).seatbid[0].bid[0];
    }
    expect(bid).not.toBeNull();
    const reservedBefore = budget.ledger.account(0).flight.reserved;
    expect(reservedBefore).toBeGreaterThan(0);
    const url = new URL(bid!.nurl.replaceAll('${AUCTION_PRICE}', '0.30').replace(/\$\{[A-Z_]+\}/g, ''));
    const r = handler.events.handle({ method: 'GET', path: url.pathname, query: url.search.slice(1) }, Date.now());
    expect(r.status).toBe(204);
    const after = budget.ledger.account(0);
    expect(after.flight.spent).toBe(300); // CPM 0.30 -> 300 micros for one impression
    expect(after.flight.reserved).toBeLessThan(reservedBefore);
    budget.ledger.checkInvariant();
  });
});
