import { describe, expect, it } from 'vitest';
import { compileCampaigns } from '../src/budget/compile.js';
import { BudgetPolicy, impressionMicrosFromCpm } from '../src/budget/budget-policy.js';
import { UNLIMITED_POLICY, type BidPolicy } from '../src/bidding/decide.js';
import type { CampaignDef } from '../src/budget/types.js';
import { SegbidError } from '../src/common/errors.js';
import { BudgetOutcomeListener, bidIdWithReservation, reservationOf } from '../src/budget/outcome-listener.js';
import type { OutcomeContext } from '../src/events/types.js';
import { loadDecider } from '../src/bidding/load-decider.js';
import { BidHandler } from '../src/bidding/bid-handler.js';
import { Metrics } from '../src/metrics/metrics.js';
import { startLearningTimers } from '../src/bidding/learning.js';
import { useLargeConfig } from './helpers/large-config-dir.js';

const DAY = 86_400_000;
const T0 = Date.parse('2026-03-02T00:00:00Z');

/** Line items 0-2 are arms of campaign "c" (bid 2 CPM = 2000 micros an impression); 3 is not budgeted. */
function setup(options: Partial<CampaignDef> = {}) {
  const ids = ['li-0', 'li-1', 'li-2', 'li-free'];
  const plan = compileCampaigns(
    [
      {
        id: 'c',
        name: 'c',
        budget: { daily: 0.01, flight: 1, flightStart: new Date(T0).toISOString(), flightEnd: new Date(T0 + 10 * DAY).toISOString() },
        kpi: 'cpc',
        lineItems: ['li-0', 'li-1', 'li-2'],
        learning: { samples: 32 },
        ...options,
      },
    ],
    new Map(ids.map((id, k) => [id, k])),
    new Map([['li-0', 'a'], ['li-1', 'a'], ['li-2', 'b']]),
    [2e6, 2e6, 2e6, 1e6],
  );
  return { plan, policy: new BudgetPolicy(plan, { seed: 3 }) };
}

describe('budget policy', () => {
  it('implements BidPolicy', () => {
    const { policy } = setup();
    const p: BidPolicy = policy;
    expect(typeof p.eligible).toBe('function');
    expect(UNLIMITED_POLICY.reserve(0, 1, 0)).toBe(true);
  });

  it('eligibleAll makes the draws and the counts of eligible() on each set bit, in ascending order', () => {
    const bulk = setup().policy;
    const single = setup().policy;
    const throttles = [0.3, 0.7, 0, 1];
    for (const p of [bulk, single]) {
      p.tick(T0);
      throttles.forEach((t, li) => (p.pacer.throttle[li] = t));
    }
    let rng = 7;
    for (let r = 0; r < 500; r++) {
      rng = (Math.imul(rng, 1103515245) + 12345) >>> 0;
      const bits = (rng >>> 8) & 0b11111; // line item 4 is outside the plan: always let through
      const now = T0 + 1000 + r;
      const candidates = new Uint32Array([bits]);
      const lastRefused = bulk.eligibleAll(candidates, now);
      let passed = 0;
      let expectedLast = -1;
      for (let li = 0; li < 5; li++) {
        if ((bits & (1 << li)) === 0) continue;
        if (single.eligible(li, now)) passed |= 1 << li;
        else expectedLast = li;
      }
      expect(candidates[0], `request ${r}`).toBe(passed);
      expect(lastRefused, `request ${r}`).toBe(expectedLast);
    }
    expect(Array.from(bulk.pacer.opportunities)).toEqual(Array.from(single.pacer.opportunities));
    expect(Array.from(bulk.pacer.passes)).toEqual(Array.from(single.pacer.passes));
    expect(Array.from(bulk.refusals)).toEqual(Array.from(single.refusals));
    expect(bulk.refusals.reduce((a, b) => a + b, 0)).toBeGreaterThan(100);
    expect(bulk.pacer.passes.reduce((a, b) => a + b, 0)).toBeGreaterThan(100);
  });

  it('lets unbudgeted line items through, ranked by price, with no reservation', () => {
    const { policy } = setup();
    policy.tick(T0);
    for (let i = 0; i < 100; i++) expect(policy.eligible(3, T0 + i)).toBe(true);
    expect(policy.rank(3, 1234)).toBe(1234);
    expect(policy.reserve(3, 1000, T0)).toBe(true);
    expect(policy.lastReservation).toBe(-1);
    expect(policy.eligible(99, T0)).toBe(true);
  });

  it('refuses before the first tick, outside the flight and when paused, and counts why', () => {
    const { policy } = setup();
    expect(policy.eligible(0, T0)).toBe(false); // no tick yet: the controller has not looked at the ledger
    policy.tick(T0 - 5000);
    expect(policy.eligible(0, T0 - 4000)).toBe(false);
    expect(policy.refusalTotals().out_of_flight).toBe(1);
    expect(policy.pause('c', true)).toBe(true);
    expect(policy.pause('nope', true)).toBe(false);
    policy.tick(T0 + 1000);
    expect(policy.eligible(1, T0 + 1500)).toBe(false);
    expect(policy.refusalTotals().paused).toBe(1);
    policy.pause('c', false);
    policy.tick(T0 + 2000);
    let passed = 0;
    for (let i = 0; i < 1000; i++) if (policy.eligible(0, T0 + 2000 + i)) passed++;
    expect(passed).toBeGreaterThan(0);
    const t = policy.refusalTotals();
    expect(passed + t.pacing + t.allocation).toBe(1001); // + the call before the first tick
  });

  it('reserves through the ledger, settles on the win notice, and refuses what the budget cannot pay', () => {
    const { policy } = setup();
    policy.tick(T0);
    // Daily budget 0.01 = 10000 micros: five impressions at 2000.
    const handles: number[] = [];
    for (let i = 0; i < 5; i++) {
      expect(policy.reserve(i % 3, 2000, T0 + 10)).toBe(true);
      handles.push(policy.lastReservation);
    }
    expect(policy.reserve(0, 2000, T0 + 10)).toBe(false);
    expect(policy.lastReservation).toBe(-1);
    expect(policy.refusalTotals().reserve_day_budget).toBe(1);
    // Wins at 1.5 CPM: 1500 each; a loss frees its reservation.
    policy.onWin(handles[0], 0, impressionMicrosFromCpm(1.5), T0 + 20);
    policy.onWin(handles[0], 0, impressionMicrosFromCpm(1.5), T0 + 21); // duplicate notice: ignored
    policy.onLoss(handles[1], T0 + 22);
    policy.onBilling(handles[2], 2, 2000, T0 + 23); // win-settled campaign: billing notices are ignored
    expect(policy.ignoredNotices).toBe(1);
    const a = policy.ledger.account(0);
    expect(a.day.spent).toBe(1500);
    expect(a.day.reserved).toBe(6000);
    expect(policy.pacer.spentToday[0]).toBe(1500);
    expect(policy.reserve(1, 2000, T0 + 30)).toBe(true); // 10000 - 1500 - 6000 = 2500 left
    expect(policy.reserve(1, 2000, T0 + 30)).toBe(false);
    policy.ledger.checkInvariant();
  });

  it('books a notice with an unknown handle, capped at the line item bid and at the budget left', () => {
    const { policy } = setup();
    policy.tick(T0);
    policy.onWin(123456789, 2, 999_999, T0 + 10);
    expect(policy.ledger.account(0).day.spent).toBe(2000); // capped at one impression of the 2 CPM bid
    expect(policy.ledger.account(0).counters.unknownBooked).toBe(1);
    expect(policy.pacer.spentToday[2]).toBe(2000);
    for (let i = 0; i < 10; i++) policy.onWin(-1, 2, 2000, T0 + 20);
    expect(policy.ledger.account(0).day.spent).toBe(10000); // never beyond the budget
    expect(policy.ledger.overrunOf(0)).toBe(12000);
    policy.tick(T0 + 1000);
    expect(policy.eligible(2, T0 + 1001)).toBe(false);
    expect(policy.refusalTotals().budget_exhausted).toBe(1);
  });

  it('settles billing-settled campaigns on the billing notice', () => {
    const { policy } = setup({ settle: 'billing' });
    policy.tick(T0);
    expect(policy.reserve(0, 2000, T0)).toBe(true);
    const h = policy.lastReservation;
    policy.onWin(h, 0, 1200, T0 + 10);
    expect(policy.ledger.account(0).day).toMatchObject({ spent: 0, reserved: 1200 });
    policy.onBilling(h, 0, 1200, T0 + 5000);
    expect(policy.ledger.account(0).day).toMatchObject({ spent: 1200, reserved: 0 });
  });

  it('expires reservations on tick, and feeds the allocator', () => {
    const { policy } = setup({ reservationTtlMs: 10_000 });
    policy.tick(T0);
    expect(policy.reserve(0, 2000, T0)).toBe(true);
    policy.tick(T0 + 9_000);
    expect(policy.ledger.account(0).day.reserved).toBe(2000);
    policy.tick(T0 + 11_000);
    expect(policy.ledger.account(0).day.reserved).toBe(0);
    expect(policy.allocator.bids[0]).toBe(1);
    policy.onImpression(0, 1500);
    policy.onClick(0);
    policy.onConversion(0, 30e6);
    expect([policy.allocator.impressions[0], policy.allocator.clicks[0], policy.allocator.conversions[0]]).toEqual([1, 1, 1]);
    const report = policy.report(T0 + 12_000);
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
    expect(report.campaigns[0].arms.map((a) => a.lineItem)).toEqual(['li-0', 'li-1', 'li-2']);
  });

  it('compares the arms of one request on one joint draw', () => {
    const { policy } = setup();
    policy.tick(T0);
    policy.allocator.reallocate(T0, true);
    policy.beginRequest(T0 + 1);
    const r1 = [policy.rank(0, 2e6), policy.rank(1, 2e6), policy.rank(2, 2e6)];
    expect([policy.rank(0, 2e6), policy.rank(1, 2e6), policy.rank(2, 2e6)]).toEqual(r1);
    // A new request clock moves to the next draw.
    policy.eligible(0, T0 + 2);
    expect([policy.rank(0, 2e6), policy.rank(1, 2e6), policy.rank(2, 2e6)]).not.toEqual(r1);
  });

  it('rejects invalid campaign definitions with every error by path', () => {
    try {
      compileCampaigns(
        [
          {
            id: 'c',
            name: 'c',
            budget: { daily: 20, flight: 10, flightStart: '2026-03-02T00:00:00Z', flightEnd: '2026-03-01T00:00:00Z' },
            kpi: 'roas',
            lineItems: ['li-0', 'li-0', 'nope'],
            guardRails: { a: { minShare: 0.7, maxShare: 0.5 }, zzz: { minShare: 0.5, maxShare: 1 } },
            priors: { zzz: { cvr: 0.1 } },
          },
        ],
        new Map([['li-0', 0]]),
        new Map([['li-0', 'a']]),
      );
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(SegbidError);
      const paths = (e as SegbidError).details.map((d) => d.path);
      expect(paths).toEqual(
        expect.arrayContaining([
          '/campaigns/0/budget/flightEnd',
          '/campaigns/0/budget/daily',
          '/campaigns/0/lineItems/1',
          '/campaigns/0/lineItems/2',
          '/campaigns/0/guardRails/a/minShare',
          '/campaigns/0/guardRails/zzz',
          '/campaigns/0/guardRails',
          '/campaigns/0/priors/zzz',
        ]),
      );
    }
  });

  it('takes the event pipeline\'s outcomes through the bid id that carries the reservation', () => {
    const { policy } = setup();
    policy.tick(T0);
    expect(policy.reserve(0, 2000, T0)).toBe(true);
    const bidId = bidIdWithReservation('abc123-0', policy.lastReservation);
    expect(reservationOf(bidId)).toBe(policy.lastReservation);
    expect(reservationOf('abc123-0')).toBe(-1);
    expect(reservationOf('abc.')).toBe(-1);
    const ctx = (nowMs: number): OutcomeContext => ({ lineItemId: 'li-0', bidId, arm: 0, segmentBit: -1, creative: 0, bidMicros: 2e6, exchange: 'x', dealId: null, nowMs, user: '' });
    const l = new BudgetOutcomeListener(policy);
    l.onWin(0, 1_500_000, ctx(T0 + 10)); // CPM 1.5 -> 1500 micros an impression
    l.onBill(0, 1_500_000, ctx(T0 + 11)); // win-settled campaign: already booked
    l.onImpression(0);
    l.onClick(0, ctx(T0 + 12));
    l.onConversion(0, 40e6, 'click');
    expect(policy.ledger.account(0).day).toMatchObject({ spent: 1500, reserved: 0 });
    expect([policy.allocator.impressions[0], policy.allocator.costMicros[0], policy.allocator.clicks[0], policy.allocator.conversions[0]]).toEqual([1, 1500, 1, 1]);
    expect(policy.reserve(1, 2000, T0 + 20)).toBe(true);
    const lost = bidIdWithReservation('abc124-0', policy.lastReservation);
    l.onLoss(1, 2e6, -1, -1, { ...ctx(T0 + 30), bidId: lost });
    expect(policy.ledger.account(0).day.reserved).toBe(0);
  });
});

describe('the live learning timer (src/bidding/learning.ts startLearningTimers)', () => {
  const large = useLargeConfig('segbid-live-realloc', 500);

  it('reallocates the due campaigns in slices, giving the event loop a turn between them', async () => {
    const handler = new BidHandler(loadDecider(large.configPath), new Metrics({ defaultMetrics: false }));
    const policy = handler.budget!;
    const campaigns = policy.plan.campaigns.length;
    const before = Array.from({ length: campaigns }, (_, c) => policy.allocator.lastReallocation(c));
    // Attaching ran one whole tick (8 campaigns); the timer's rounds take the others, a few a second.
    expect(before.filter((t) => t === -Infinity).length).toBeGreaterThan(0);
    let calls = 0;
    let turns = 0;
    const slice = policy.reallocationSlice.bind(policy);
    policy.reallocationSlice = (...args) => {
      calls++;
      return slice(...args);
    };
    const loop = setInterval(() => turns++, 0); // counts turns of the event loop while the rounds run
    const stop = startLearningTimers(() => handler.current);
    await new Promise((r) => setTimeout(r, 2300));
    stop();
    clearInterval(loop);
    const after = Array.from({ length: campaigns }, (_, c) => policy.allocator.lastReallocation(c));
    const reallocated = after.filter((t, c) => t !== before[c]).length;
    expect(reallocated).toBeGreaterThanOrEqual(2); // two ticks, at least one campaign each
    // Each campaign is many slices (16 steps of 25 draws at 400 samples), not one call.
    expect(calls).toBeGreaterThan(reallocated * 2);
    expect(turns).toBeGreaterThan(10);
    await new Promise((r) => setTimeout(r, 50));
    expect(policy.allocator.reallocating).toBe(false);
  }, 20_000);

  it('a config swap reallocates every campaign in slices after it returns, to the allocation of one call', async () => {
    const sliced = new BidHandler(loadDecider(large.configPath), new Metrics({ defaultMetrics: false }));
    const whole = new BidHandler(loadDecider(large.configPath), new Metrics({ defaultMetrics: false }));
    sliced.swap(loadDecider(large.configPath));
    whole.swap(loadDecider(large.configPath));
    const a = sliced.budget!.allocator;
    const b = whole.budget!.allocator;
    // The swap returned with the new policy's round under way (one slice run), not done.
    expect(a.reallocating).toBe(true);
    b.finishLive(); // the reference: the same round run to its end at once
    let turns = 0;
    while (a.reallocating) {
      await new Promise((r) => setImmediate(r));
      turns++;
    }
    expect(turns).toBeGreaterThan(3);
    const campaigns = sliced.budget!.plan.campaigns.length;
    const ran = (x: typeof a) => Array.from({ length: campaigns }, (_, c) => x.lastReallocation(c) !== -Infinity);
    expect(ran(a)).toEqual(ran(b));
    expect(ran(a).every(Boolean)).toBe(true); // every campaign (a new allocator has run none), not 8 as one call did
    expect(Array.from(a.share)).toEqual(Array.from(b.share));
  }, 20_000);
});
