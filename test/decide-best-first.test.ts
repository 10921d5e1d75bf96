/**
 * The decider values and prices an imp's candidates best bound first and stops once no bound left can beat the
 * best offer (src/bidding/decide.ts decideImp). These tests check that the stop never changes the choice: on the
 * 1,000 line item config (every strategy kind, multipliers, first-price shading, deals, budgeted campaigns) and
 * the bench's request mix, a decider that stops early and one that prices every candidate (`exhaustive`) bid the
 * same line items at the same prices through the same deals, or give the same no-bid reason; the exhaustive
 * decider also does without the per-imp creative mask (a candidate without a usable creative dropped unpriced),
 * and asks its budget policy line item by line item (eligible()) where the other makes the same draws in one call
 * (eligibleAll()). Impressions are recorded for some bids, so that the frequency caps drop some candidates too.
 */
import { describe, expect, it } from 'vitest';
import { useLargeConfig } from './helpers/large-config-dir.js';
import { loadDecider } from '../src/bidding/load-decider.js';
import { BidHandler } from '../src/bidding/bid-handler.js';
import { Decision, type BidPolicy, type Decider } from '../src/bidding/decide.js';
import { primaryUserHash, userHash } from '../src/events/bid-context.js';
import { Metrics } from '../src/metrics/metrics.js';
import { NO_BID } from '../src/openrtb/reasons.js';
import { LARGE_MIX_PARAMS, generateRequestMix } from '../bench/request-mix.js';

interface Pair {
  early: Decider;
  full: Decider;
  earlyHandler: BidHandler;
  fullHandler: BidHandler;
}

const large = useLargeConfig('segbid-best-first', 2000);

/** Two deciders of the same config with their own (identical) budget policies; `full` prices everything. */
function pair(nowMs: number): Pair {
  const early = loadDecider(large.configPath);
  const full = loadDecider(large.configPath);
  full.exhaustive = true;
  const earlyHandler = new BidHandler(early, new Metrics({ defaultMetrics: false }));
  const fullHandler = new BidHandler(full, new Metrics({ defaultMetrics: false }));
  earlyHandler.budget!.tick(nowMs);
  fullHandler.budget!.tick(nowMs);
  // The same policy without eligibleAll: the decider falls back to one eligible() call per candidate.
  const inner = fullHandler.budget!;
  const perLineItem: BidPolicy = {
    eligible: (li, t) => inner.eligible(li, t),
    rank: (li, price) => inner.rank(li, price),
    reserve: (li, cost, t) => inner.reserve(li, cost, t),
    get lastReservation() {
      return inner.lastReservation;
    },
  };
  full.policy = perLineItem;
  return { early, full, earlyHandler, fullHandler };
}

function outcome(d: Decision): string {
  if (d.bidCount === 0) return `nobid ${d.reason}`;
  const bids: string[] = [];
  for (let k = 0; k < d.bidCount; k++) bids.push(`imp ${d.impIndex[k]}: ${d.lineItem[k]!.id} @ ${d.priceMicros[k]} deal ${d.dealId[k] ?? '-'}`);
  return bids.join(' | ');
}

describe('best-first pricing of an imp', () => {
  it('chooses what pricing every candidate chooses, on the 1,000 line item config and the bench mix', () => {
    const start = Date.parse('2026-06-01T12:00:00Z');
    const { early, full, earlyHandler, fullHandler } = pair(start);
    const budgeted = earlyHandler.budget!.plan.campaignOf;
    const adomains = [...new Set(early.config.creatives.flatMap((c) => c.adomain))];
    const closedDeals = new Set<number>();
    const requests = generateRequestMix({ ...LARGE_MIX_PARAMS, count: 500, seed: 20261127 }).map((b, i) => {
      const req = JSON.parse(b) as { imp: { pmp?: { private_auction?: number; deals?: { bidfloor?: number; at?: number }[] } }[] };
      // The mix's deal floors are above most line items' values; every other request gets cheap deals, half of
      // them private, half of them second price, so that deals win too (their bound is the unshaded value).
      if (i % 10 === 3 && req.imp.some((imp) => imp.pmp?.deals !== undefined)) {
        // Private deals that exclude this seat, every creative blocked by the advertiser block list: pricing never
        // looks at a creative (the deals are closed to the seat, the open auction too), so the reason is the
        // deals', not the creatives' (the creative mask must say the same).
        (req as { badv?: string[] }).badv = adomains;
        for (const imp of req.imp) {
          if (imp.pmp === undefined) continue;
          imp.pmp.private_auction = 1;
          for (const deal of imp.pmp.deals ?? []) (deal as { wseat?: string[] }).wseat = ['another-seat'];
        }
        closedDeals.add(i);
      } else if (i % 2 === 0) {
        for (const imp of req.imp) {
          if (imp.pmp === undefined) continue;
          if (i % 4 === 0) imp.pmp.private_auction = 1;
          for (const deal of imp.pmp.deals ?? []) {
            deal.bidfloor = 0.2;
            if (i % 8 < 4) deal.at = 2;
          }
        }
      }
      return req;
    });
    const a = new Decision();
    const b = new Decision();
    let bids = 0;
    let budgetedWins = 0;
    let openWins = 0;
    let dealWins = 0;
    let blocked = 0;
    let capped = 0;
    let recorded = 0;
    let capReached = 0;
    let closedDealNoBids = 0;
    // Simulated seconds of traffic with a budget tick after each: pacing opens the budgeted line items' throttles
    // once it has seen their opportunities, so their price-independent ranks compete with the others' prices.
    const perSecond = 150;
    const walkVersions = new Set<number>();
    const walkOrders = new Set<string>();
    for (let second = 0; second < 12; second++) {
      for (let j = 0; j < perSecond; j++) {
        const i = second * perSecond + j;
        const t = start + second * 1000 + j * 6; // one clock per request, the same for both deciders
        const req = requests[i % requests.length];
        early.decide(req, t, a);
        full.decide(req, t, b);
        expect(outcome(a), `request ${i}`).toBe(outcome(b));
        if (closedDeals.has(i % requests.length) && a.bidCount === 0 && a.reason === NO_BID.deal_mismatch) closedDealNoBids++;
        if (a.bidCount === 0 && a.reason === NO_BID.creative_blocked) blocked++;
        if (a.bidCount === 0 && a.reason === NO_BID.frequency_capped) capped++;
        if (a.bidCount > 0 && i % 3 === 0 && early.verdict.personalData) {
          // A billed impression of the first bid, in both deciders' cap stores.
          primaryUserHash(req as Parameters<typeof primaryUserHash>[0]);
          if (userHash.hi !== 0 || userHash.lo !== 0) {
            const li = a.lineItem[0]!.index;
            // Three at once on a capped line item, so that caps (3 or 5 an hour) are reached within the run.
            const times = early.plan.capPlan.capped[li] === 1 ? 3 : 1;
            for (let k = 0; k < times; k++) {
              early.plan.caps.record(userHash.hi, userHash.lo, li, t);
              full.plan.caps.record(userHash.hi, userHash.lo, li, t);
              recorded++;
            }
            if (!early.plan.caps.check(userHash.hi, userHash.lo, li, t)) capReached++; // its next request drops it
          }
        }
        {
          // Strategy feedback for both, spread over the line items (the CPC / CPA / ROAS base bids move at each
          // refresh below, and with them the order of the walk's price-ranked list).
          const li = (i * 37) % early.config.lineItems.length;
          for (const plan of [early.plan, full.plan]) {
            plan.strategies.recordImpression(li, 200);
            for (let c = 0; c < li % 4; c++) plan.strategies.recordClick(li);
            if (li % 3 === 0) plan.strategies.recordConversion(li, 60e6);
          }
        }
        for (let k = 0; k < a.bidCount; k++) {
          bids++;
          if (budgeted[a.lineItem[k]!.index] >= 0) budgetedWins++;
          else openWins++;
          if (a.dealId[k] !== null) dealWins++;
        }
      }
      earlyHandler.budget!.tick(start + (second + 1) * 1000);
      fullHandler.budget!.tick(start + (second + 1) * 1000);
      early.plan.strategies.refresh();
      full.plan.strategies.refresh();
      const walk = early as unknown as { walkVersion: number; walkPriced: Int32Array };
      walkVersions.add(walk.walkVersion);
      walkOrders.add(walk.walkPriced.join(','));
    }
    // The walk's price-ranked list was rebuilt after the refreshes (white box: the strategies version it is for).
    expect(walkVersions.size).toBeGreaterThan(8);
    expect(walkOrders.size).toBeGreaterThan(3); // and its order changed
    // The comparison means something only if the mix exercises both kinds of rank bound and the deal path.
    expect(bids).toBeGreaterThan(900);
    expect(budgetedWins).toBeGreaterThan(50);
    expect(openWins).toBeGreaterThan(50);
    expect(dealWins).toBeGreaterThan(0);
    // No-bids where the block lists rule out every creative: the per-imp creative mask at work.
    expect(blocked).toBeGreaterThan(20);
    expect(recorded).toBeGreaterThan(100);
    expect(capReached).toBeGreaterThan(10);
    expect(closedDealNoBids).toBeGreaterThan(0);
    // The same draws, counted the same: pacing sees the same opportunities through either gate.
    const e = earlyHandler.budget!;
    const f = fullHandler.budget!;
    expect(Array.from(e.pacer.opportunities)).toEqual(Array.from(f.pacer.opportunities));
    expect(Array.from(e.refusals)).toEqual(Array.from(f.refusals));
    expect(e.refusals.reduce((x, y) => x + y, 0)).toBeGreaterThan(0);
    console.log(`[measure] best-first equivalence: ${bids} bids, ${blocked} creative-blocked and ${capped} frequency-capped no-bids, ${recorded} impressions recorded (${capReached} reaching a cap)`);
  });
});

describe('the per-line-item gates', () => {
  it('note their reasons in line item order (the reason of the last line item dropped is kept)', () => {
    // White box: lineItemGates runs caps, pacing and the strategy bound as three passes and notes each reason with
    // the last line item it dropped; a loop over the line items noting as it goes keeps the reason of the last one.
    const d = loadDecider(large.configPath) as unknown as {
      deepest: number;
      deepestReason: number;
      noteGates(lastCapped: number, lastPaced: number, lastNoBid: number): void;
    };
    const run = (capped: number, paced: number, noBid: number): number => {
      d.deepest = 0;
      d.deepestReason = NO_BID.none;
      d.noteGates(capped, paced, noBid);
      return d.deepestReason;
    };
    expect(run(7, 3, -1)).toBe(NO_BID.frequency_capped);
    expect(run(3, 7, -1)).toBe(NO_BID.paced);
    expect(run(3, 7, 9)).toBe(NO_BID.strategy_no_bid);
    expect(run(12, 7, 9)).toBe(NO_BID.frequency_capped);
    expect(run(-1, 40, 2)).toBe(NO_BID.paced);
    expect(run(-1, -1, -1)).toBe(NO_BID.none);
  });
});
