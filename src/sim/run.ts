/**
 * One simulated day for one (strategy, seed): a synthetic population in a real segment store, an exchange
 * sending OpenRTB requests drawn from it along a diurnal curve, first- and second-price auctions against a
 * market price per segment, and the feedback events with their delays:
 *   win notice   ~0.3 s (lognormal), 0.1% stragglers 2.5-10 min late (beyond the reservation TTL)
 *   loss notice  sent for 85% of lost bids, ~0.3 s
 *   impression   97% of wins render, ~1.5 s after the win
 *   click        hidden CTR of the arm, 3-60 s after the impression
 *   conversion   hidden CVR of the segment, exponential delay (mean 40 min); order value Gamma(2) around the
 *                segment's mean basket
 * The bidder is the REAL code: config schema + compiler, segment store, Decider, BudgetPolicy (ledger, pacer,
 * allocator); only the allocator strategy changes between runs. Everything is driven by the simulated clock.
 *
 * Traffic per hour deviates from the nominal curve (lognormal noise per hour and seed); the campaign paces on the
 * nominal curve, as a trader would on yesterday's.
 *
 * Measured: the exchange's charges (every won impression's clearing price, notice or not) against the day's
 * budget = spend and overspend; pacing error = mean over the day (each minute) of |charges so far - target
 * curve| / budget; conversions, value and ROAS of the day's impressions (conversions after midnight included).
 */
import { Ajv } from 'ajv';
import { validateConfigDocument } from '../config/load.js';
import { compileConfig } from '../config/compile.js';
import { SegmentStoreBuilder } from '../segments/segment-store.js';
import { KEY_KIND, hashKey, keyHash } from '../segments/key-hash.js';
import { campaignsSchema } from '../budget/schema.js';
import { compileCampaigns, parentsOfSegmentation, segmentsOfLineItems } from '../budget/compile.js';
import { BudgetPolicy } from '../budget/budget-policy.js';
import { Rng } from '../budget/random.js';
import { SegbidError } from '../common/errors.js';
import { EV, EventQueue } from './event-queue.js';
import { SimBidder } from './bidder.js';
import { makeAllocator, type StrategyName } from './baselines.js';
import type { ArmReport } from '../budget/allocator.js';
import { HOURLY_TRAFFIC, MARKET_SIGMA, SEGMENTS, UNKNOWN_TRAFFIC, type Scenario } from './scenario.js';

const DAY = 86_400_000;
const USERS_PER_SEGMENT_SHARE = 400_000;

export interface RunResult {
  strategy: StrategyName;
  seed: number;
  budgetMicros: number;
  /** What the exchange charged (sum of clearing prices of all won impressions). */
  chargedMicros: number;
  /** What the ledger booked. */
  bookedMicros: number;
  overspendMicros: number;
  overrunMicros: number;
  lateSettles: number;
  expired: number;
  pacingError: number;
  requests: number;
  bids: number;
  wins: number;
  impressions: number;
  clicks: number;
  conversions: number;
  valueMicros: number;
  /** Expected value of the impressions bought (hidden value per impression x impressions): no outcome noise. */
  expectedValueMicros: number;
  /** Charged spend per segment, micros. */
  segmentSpend: Record<string, number>;
  /** Time series, one point every 10 minutes: cumulative charges, target, segment share of the allocator. */
  series: { t: number; charged: number; target: number; expected: number; shares: Record<string, number> }[];
  /** Allocator shares per arm, every 10 minutes (for the arm chart). */
  armShares: { t: number; shares: number[] }[];
  armIds: string[];
  refusals: Record<string, number>;
  /** The allocator's view of every arm at the end of the day (posterior means, evidence, share). */
  finalArms: ArmReport[];
  decideCalls: number;
  wallMs: number;
}

export interface Prepared {
  scenario: Scenario;
  userIds: string[][];
}

/** Builds the population once per scenario: users per segment, with their keys. */
export function preparePopulation(scenario: Scenario): Prepared {
  const userIds = SEGMENTS.map((seg) => Array.from({ length: Math.round(seg.traffic * USERS_PER_SEGMENT_SHARE) }, (_, n) => `u-${seg.id}-${n.toString(36)}`));
  return { scenario, userIds };
}

function lognormal(rng: Rng, median: number, sigma: number): number {
  return median * Math.exp(sigma * rng.normal());
}

export function runDay(prepared: Prepared, strategy: StrategyName, seed: number): RunResult {
  const wallStart = performance.now();
  const { scenario, userIds } = prepared;
  // --- the bidder's configuration, through the real schema and compilers
  const loaded = validateConfigDocument(structuredClone(scenario.config), process.cwd(), 'sim');
  const config = compileConfig(loaded);
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validCampaigns = ajv.compile(campaignsSchema);
  if (!validCampaigns([scenario.campaign])) throw new SegbidError('CONFIG_INVALID', `sim campaign: ${ajv.errorsText(validCampaigns.errors)}`);
  const plan = compileCampaigns(
    [scenario.campaign],
    new Map(config.lineItems.map((l) => [l.id, l.index])),
    segmentsOfLineItems(scenario.config.lineItems),
    config.lineItems.map((l) => l.bidMicros),
    parentsOfSegmentation(scenario.segmentation),
  );
  // --- the segment store of the synthetic population
  const builder = new SegmentStoreBuilder(config.dictionary);
  SEGMENTS.forEach((seg, s) => {
    const bits = [config.dictionary.bitOf.get(seg.parent)!, config.dictionary.bitOf.get(seg.id)!];
    for (const uid of userIds[s]) {
      const row = builder.addUser(bits);
      hashKey(KEY_KIND.buyeruid, uid);
      builder.addKey(row, keyHash.hi, keyHash.lo);
    }
  });
  const store = builder.build('2026-01-01T00:00:00.000Z');
  // --- hidden truth per line item
  const armOf = new Map(scenario.arms.map((a) => [a.lineItem, a]));
  const n = config.lineItems.length;
  const armCtr = new Float64Array(n);
  const armSeg = new Int32Array(n);
  const truth = new Float64Array(n);
  for (const li of config.lineItems) {
    const arm = armOf.get(li.id)!;
    armCtr[li.index] = arm.ctr;
    armSeg[li.index] = SEGMENTS.indexOf(arm.segment);
    truth[li.index] = arm.ctr * arm.segment.cvr * arm.segment.orderValue * 1e6;
  }
  const policy = new BudgetPolicy(plan, { allocator: makeAllocator(strategy, plan, truth, seed), seed });
  const bidder = new SimBidder(config, store, policy);
  const ledger = policy.ledger;

  // --- the exchange
  const market = new Rng(seed * 7919 + 17); // the same market draws for every strategy of a seed
  const feedback = new Rng(seed * 104729 + 3);
  const queue = new EventQueue();
  const req = {
    id: 'sim',
    at: 1,
    tmax: 150,
    cur: ['USD'],
    imp: [{ id: '1', banner: { w: 300, h: 250 }, bidfloor: 0.3, bidfloorcur: 'USD', secure: 1 }],
    site: { id: 'site-1', domain: 'news.example', page: 'https://news.example/' },
    device: { devicetype: 2, ua: 'Mozilla/5.0', geo: { country: 'FRA' } },
    user: { buyeruid: '' },
  };
  // Today's traffic is not yesterday's: each hour's volume deviates from the nominal curve the trader paces on
  // (lognormal, sigma 0.2), so the controller has to correct, not just follow.
  const hourNoise = Array.from({ length: 24 }, () => Math.exp(0.2 * market.normal()));
  const cumTraffic: number[] = [];
  let acc = 0;
  for (const s of SEGMENTS) cumTraffic.push((acc += s.traffic));
  const trafficSum = acc + UNKNOWN_TRAFFIC;
  const profileSum = HOURLY_TRAFFIC.reduce((a, x) => a + x, 0);

  const result: RunResult = {
    strategy,
    seed,
    budgetMicros: plan.campaigns[0].dailyMicros,
    chargedMicros: 0,
    bookedMicros: 0,
    overspendMicros: 0,
    overrunMicros: 0,
    lateSettles: 0,
    expired: 0,
    pacingError: 0,
    requests: 0,
    bids: 0,
    wins: 0,
    impressions: 0,
    clicks: 0,
    conversions: 0,
    valueMicros: 0,
    expectedValueMicros: 0,
    segmentSpend: Object.fromEntries(SEGMENTS.map((s) => [s.id, 0])),
    series: [],
    armShares: [],
    armIds: Array.from(plan.campaigns[0].arms, (li) => plan.lineItemIds[li]),
    refusals: {},
    finalArms: [],
    decideCalls: 0,
    wallMs: 0,
  };
  const segSpend = new Float64Array(SEGMENTS.length);

  const deliver = (until: number) => {
    while (queue.peekTime() <= until) {
      queue.pop();
      const li = queue.lineItem;
      switch (queue.k) {
        case EV.win:
          policy.onWin(queue.h, li, queue.a, queue.t);
          break;
        case EV.loss:
          policy.onLoss(queue.h, queue.t);
          break;
        case EV.impression:
          policy.onImpression(li, queue.a);
          break;
        case EV.click:
          policy.onClick(li, queue.t);
          break;
        case EV.conversion:
          policy.onConversion(li, queue.a);
          break;
      }
    }
  };

  const dayStart = scenario.dayStartMs;
  const dayEnd = dayStart + DAY;
  const budget = result.budgetMicros;
  let errorSum = 0;
  let errorCount = 0;
  let nextTick = dayStart;
  let nextSample = dayStart;
  let t = dayStart;
  const perSecondAvg = scenario.requestsPerDay / 86400;
  const shares = policy.allocator.share;
  const campaign = plan.campaigns[0];
  let endOfDayArms: ArmReport[] = [];

  for (;;) {
    // Next request: a Poisson process whose rate follows the hourly curve.
    const hour = Math.min(23, Math.floor((t - dayStart) / 3_600_000));
    const rate = (perSecondAvg * HOURLY_TRAFFIC[hour] * hourNoise[hour] * 24) / profileSum; // requests per second
    t += (-Math.log(1 - market.uniform()) / rate) * 1000;
    while (nextTick <= t && nextTick < dayEnd + 3_600_000) {
      deliver(nextTick);
      policy.tick(nextTick);
      if (nextTick >= nextSample && nextTick <= dayEnd) {
        const target = policy.pacer.targetSpend(0, Math.min(nextTick, dayEnd - 1), ledger);
        if (nextTick < dayEnd) {
          errorSum += Math.abs(result.chargedMicros - target) / budget;
          errorCount++;
        }
        if ((nextTick - dayStart) % 600_000 === 0) {
          const segShare: Record<string, number> = {};
          for (let k = 0; k < campaign.arms.length; k++) {
            const seg = campaign.groups[campaign.armGroup[k]].segmentId;
            segShare[seg] = (segShare[seg] ?? 0) + shares[campaign.arms[k]];
          }
          result.series.push({ t: (nextTick - dayStart) / 3_600_000, charged: result.chargedMicros, target, expected: result.expectedValueMicros, shares: segShare });
          result.armShares.push({ t: (nextTick - dayStart) / 3_600_000, shares: Array.from(campaign.arms, (li) => shares[li]) });
        }
        nextSample += 60_000;
      }
      if (nextTick === dayEnd - 1000) endOfDayArms = policy.allocator.allocationReport(0).campaigns[0].arms;
      nextTick += 1000;
    }
    if (t >= dayEnd) break;
    deliver(t);
    result.requests++;
    // The user: a segment by traffic share, then a user of it (or an unknown cookie).
    const r = market.uniform() * trafficSum;
    let s = 0;
    while (s < cumTraffic.length && r >= cumTraffic[s]) s++;
    if (s < SEGMENTS.length) {
      const users = userIds[s];
      req.user.buyeruid = users[Math.floor(market.uniform() * users.length)];
    } else {
      req.user.buyeruid = `unknown-${Math.floor(market.uniform() * 1e9)}`;
    }
    req.at = market.uniform() < 0.7 ? 1 : 2;
    const floor = 0.3 + 0.5 * market.uniform();
    req.imp[0].bidfloor = Math.round(floor * 100) / 100;
    // The competition, drawn whether or not we bid (same market for every strategy of a seed).
    const competitor = s < SEGMENTS.length ? lognormal(market, SEGMENTS[s].marketCpm, MARKET_SIGMA) : 0;
    const noticeDraw = market.uniform();
    if (!bidder.bid(req, t)) continue;
    result.bids++;
    const li = bidder.lineItem;
    const bidCpm = bidder.priceMicros / 1e6;
    const handle = bidder.handle;
    const seg = SEGMENTS[armSeg[li]];
    if (bidCpm <= competitor) {
      if (noticeDraw < 0.85) queue.push(t + lognormal(feedback, 300, 1), EV.loss, li, handle, 0);
      continue;
    }
    // Won: the exchange charges the clearing price, notice or not.
    const payCpm = req.at === 1 ? bidCpm : Math.max(competitor, req.imp[0].bidfloor);
    const cost = Math.round(payCpm * 1000); // micros per impression
    result.wins++;
    result.chargedMicros += cost;
    segSpend[armSeg[li]] += cost;
    const straggler = feedback.uniform() < 0.001;
    const winDelay = straggler ? 150_000 + feedback.uniform() * 450_000 : lognormal(feedback, 300, 1);
    queue.push(t + winDelay, EV.win, li, handle, cost);
    if (feedback.uniform() >= 0.97) continue; // not rendered
    const tImp = t + 1000 + feedback.uniform() * 1000;
    result.impressions++;
    result.expectedValueMicros += truth[li];
    queue.push(tImp, EV.impression, li, -1, cost);
    if (feedback.uniform() >= armCtr[li]) continue;
    const tClick = tImp + 3000 + feedback.uniform() * 57_000;
    result.clicks++;
    queue.push(tClick, EV.click, li, -1, 0);
    if (feedback.uniform() >= seg.cvr) continue;
    const value = Math.round(((feedback.gamma(2) * seg.orderValue) / 2) * 1e6);
    result.conversions++;
    result.valueMicros += value;
    queue.push(tClick - Math.log(1 - feedback.uniform()) * 2_400_000, EV.conversion, li, -1, value);
  }
  // After midnight: the notices still in flight arrive (no new requests); the ledger then expires the rest.
  deliver(dayEnd + 3_600_000);
  policy.tick(dayEnd + 3_600_000);
  ledger.checkInvariant();

  const account = ledger.account(0);
  result.bookedMicros = account.flight.spent;
  result.overrunMicros = account.overrunMicros;
  result.lateSettles = account.counters.lateSettles;
  result.expired = account.counters.expired;
  result.overspendMicros = Math.max(0, result.chargedMicros - budget);
  result.pacingError = errorCount > 0 ? errorSum / errorCount : 0;
  SEGMENTS.forEach((sg, i) => (result.segmentSpend[sg.id] = segSpend[i]));
  result.refusals = policy.refusalTotals();
  result.finalArms = endOfDayArms;
  result.decideCalls = bidder.decideCalls;
  result.wallMs = performance.now() - wallStart;
  return result;
}
