import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compileCampaigns } from '../src/budget/compile.js';
import { ThompsonAllocator, RANK_DRAWS, REASON, applyGuardRails } from '../src/budget/allocator.js';
import type { CampaignDef } from '../src/budget/types.js';

const T0 = Date.parse('2026-03-02T00:00:00Z');

/** A plan with one campaign; arms[k] = segment index of arm k; bids in CPM. */
function plan(arms: number[], options: Partial<CampaignDef> = {}, bidsCpm?: number[]) {
  const ids = arms.map((_, k) => `li-${k}`);
  const def: CampaignDef = {
    id: 'c',
    name: 'c',
    budget: { daily: 100, flight: 1000, flightStart: new Date(T0).toISOString(), flightEnd: new Date(T0 + 10 * 86_400_000).toISOString() },
    kpi: 'roas',
    lineItems: ids,
    ...options,
  };
  return compileCampaigns(
    [def],
    new Map(ids.map((id, k) => [id, k])),
    new Map(ids.map((id, k) => [id, `seg-${arms[k]}`])),
    (bidsCpm ?? arms.map(() => 2)).map((cpm) => Math.round(cpm * 1e6)),
  );
}

function groupShares(a: ThompsonAllocator, arms: number[], groups: number): number[] {
  const out = new Array(groups).fill(0);
  arms.forEach((g, k) => (out[g] += a.share[k]));
  return out;
}

const evidence = fc.record({
  imps: fc.integer({ min: 0, max: 200_000 }),
  ctr: fc.double({ min: 0.0002, max: 0.01, noNaN: true }),
  cvr: fc.double({ min: 0.005, max: 0.1, noNaN: true }),
  basket: fc.double({ min: 10, max: 200, noNaN: true }),
  win: fc.double({ min: 0.05, max: 0.95, noNaN: true }),
  opp: fc.double({ min: 0, max: 100, noNaN: true }),
});

/** Segment guard rails: minimums summing to <= 1, maximums >= minimums, maximums summing to >= 1. */
const railsArb = (groups: number) =>
  fc
    .array(fc.record({ min: fc.double({ min: 0, max: 1, noNaN: true }), span: fc.double({ min: 0, max: 1, noNaN: true }), guarded: fc.boolean() }), { minLength: groups, maxLength: groups })
    .map((rs) => {
      const minSum = rs.reduce((s, r) => s + (r.guarded ? r.min : 0), 0);
      const scale = minSum > 0.95 ? 0.95 / minSum : 1;
      const rails = rs.map((r) => ({ guarded: r.guarded, minShare: r.guarded ? r.min * scale : 0, maxShare: r.guarded ? Math.min(1, r.min * scale + r.span) : 1 }));
      const maxSum = rails.reduce((s, r) => s + r.maxShare, 0);
      if (maxSum < 1) rails[0] = { guarded: rails[0].guarded, minShare: rails[0].minShare, maxShare: 1 };
      return rails;
    });

describe('test-and-learn allocator', () => {
  it('guard rails keep the whole budget when a segment holds only denormal shares (fast-check counterexample)', () => {
    // Segments 0..3, arms [0,1,2,3,2]; segment 2 is railed at exactly 5e-10 and holds ~1e-315: scaling those shares
    // in proportion underflowed to 0 and 5e-10 of the budget went nowhere.
    const p = plan([0, 1, 2, 3, 2], { guardRails: { 'seg-2': { minShare: 5e-10, maxShare: 5e-10 } } });
    const c = p.campaigns[0];
    const shares = Float64Array.from([0.0099009901, 0, 1.4e-315, 0.9900990099, 1.4e-315]);
    applyGuardRails(c, shares, new Uint8Array(5), new Float64Array(5));
    expect(shares.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 10);
    expect(shares[2] + shares[4]).toBeCloseTo(5e-10, 18);
  });

  it('respects the guard rails of every segment, for random posteriors and traffic', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }).chain((groups) =>
          fc.tuple(
            fc.constant(groups),
            fc.array(fc.integer({ min: 0, max: groups - 1 }), { minLength: groups, maxLength: 12 }),
            railsArb(groups),
            fc.array(evidence, { minLength: 12, maxLength: 12 }),
            fc.double({ min: 0, max: 0.5, noNaN: true }),
            fc.double({ min: 0, max: 5000, noNaN: true }),
            fc.integer({ min: 1, max: 1000 }),
          ),
        ),
        ([groups, armGroups, rails, ev, explore, targetRate, seed]) => {
          // Every segment has at least one arm (guard rails may only name segments that have arms).
          const arms = [...Array.from({ length: groups }, (_, g) => g), ...armGroups].slice(0, Math.max(groups, armGroups.length));
          const guardRails: CampaignDef['guardRails'] = {};
          rails.forEach((r, g) => {
            if (r.guarded) guardRails[`seg-${g}`] = { minShare: r.minShare, maxShare: r.maxShare };
          });
          const p = plan(arms, { guardRails, explorationShare: explore, learning: { samples: 32, minImpressions: 1000, minClicks: 3 } });
          const a = new ThompsonAllocator(p, seed);
          arms.forEach((_, k) => {
            const e = ev[k];
            a.bids[k] = Math.round(e.imps / e.win);
            a.impressions[k] = e.imps;
            a.costMicros[k] = e.imps * 1500;
            a.clicks[k] = Math.round(e.imps * e.ctr);
            a.conversions[k] = Math.round(a.clicks[k] * e.cvr);
            a.valueMicros[k] = Math.round(a.conversions[k] * e.basket * 1e6);
            a.opportunityRate[k] = e.opp;
          });
          a.targetRate[0] = targetRate;
          a.reallocate(T0, true);
          let sum = 0;
          arms.forEach((_, k) => {
            expect(a.share[k]).toBeGreaterThanOrEqual(0);
            sum += a.share[k];
          });
          expect(sum).toBeCloseTo(1, 9);
          const gs = groupShares(a, arms, groups);
          p.campaigns[0].groups.forEach((g) => {
            const j = Number(g.segmentId.slice(4));
            expect(gs[j]).toBeGreaterThanOrEqual(g.minShare - 1e-9);
            expect(gs[j]).toBeLessThanOrEqual(g.maxShare + 1e-9);
          });
          // The report is plain JSON.
          const report = a.allocationReport();
          expect(JSON.parse(JSON.stringify(report))).toEqual(report);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('gives the exploration share to the arms with too little evidence', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.01, max: 0.5, noNaN: true }), fc.array(fc.boolean(), { minLength: 2, maxLength: 10 }), fc.integer({ min: 1, max: 99 }), (explore, learning, seed) => {
        if (!learning.includes(true)) learning[0] = true;
        const arms = learning.map((_, k) => k % 3);
        const p = plan(arms, { explorationShare: explore, learning: { samples: 32, minImpressions: 1000, minClicks: 5 } });
        const a = new ThompsonAllocator(p, seed);
        learning.forEach((young, k) => {
          a.impressions[k] = young ? 10 : 50_000;
          a.bids[k] = a.impressions[k] * 3;
          a.clicks[k] = young ? 0 : 100;
          a.conversions[k] = young ? 0 : 4;
          a.valueMicros[k] = a.conversions[k] * 50e6;
          a.costMicros[k] = a.impressions[k] * 1500;
          a.opportunityRate[k] = 50;
        });
        a.targetRate[0] = 10;
        a.reallocate(T0, true);
        const young = learning.filter((y) => y).length;
        let exploreSum = 0;
        learning.forEach((y, k) => {
          if (!y) return;
          expect(a.reason[k]).toBe(REASON.explore);
          expect(a.share[k]).toBeGreaterThanOrEqual(explore / young - 1e-9);
          exploreSum += a.share[k];
        });
        expect(exploreSum).toBeGreaterThanOrEqual(explore - 1e-9);
      }),
      { numRuns: 100 },
    );
  });

  it('never starves a segment with a minimum share, even one whose arms look worthless', () => {
    const arms = [0, 0, 1];
    const p = plan(arms, { explorationShare: 0, guardRails: { 'seg-1': { minShare: 0.2, maxShare: 1 } }, learning: { samples: 64, minImpressions: 0, minClicks: 0 } });
    const a = new ThompsonAllocator(p, 3);
    for (let k = 0; k < 3; k++) {
      a.impressions[k] = 100_000;
      a.bids[k] = 200_000;
      a.costMicros[k] = 100_000 * 2000;
      a.clicks[k] = k === 2 ? 20 : 500;
      a.conversions[k] = k === 2 ? 0 : 40;
      a.valueMicros[k] = a.conversions[k] * 80e6;
      a.opportunityRate[k] = 100;
    }
    a.targetRate[0] = 20; // budget-limited: 100 req/s x 0.5 x 2000 micros = 100000/s available
    a.reallocate(T0, true);
    expect(a.share[2]).toBeCloseTo(0.2, 9);
    expect(a.reason[2]).toBe(REASON.guard_rail_min);
    expect(a.share[0] + a.share[1]).toBeCloseTo(0.8, 9);
  });

  it('concentrates on the arm that is clearly best, and ranks it first on most requests', () => {
    const arms = [0, 1, 2];
    const p = plan(arms, { explorationShare: 0, learning: { samples: 200, minImpressions: 0, minClicks: 0 } });
    const a = new ThompsonAllocator(p, 5);
    for (let k = 0; k < 3; k++) {
      a.impressions[k] = 400_000;
      a.bids[k] = 800_000;
      a.costMicros[k] = 400_000 * 1600;
      a.clicks[k] = 1200;
      a.conversions[k] = k === 1 ? 120 : 24;
      a.valueMicros[k] = a.conversions[k] * 70e6;
      a.opportunityRate[k] = 1000;
    }
    a.targetRate[0] = 100; // far below what any one segment can spend: the budget, not the traffic, binds
    a.reallocate(T0, true);
    expect(a.share[1]).toBeGreaterThan(0.95);
    let first = 0;
    for (let r = 0; r < RANK_DRAWS; r++) {
      a.beginRequest();
      if (a.rank(1, 2e6) > a.rank(0, 2e6) && a.rank(1, 2e6) > a.rank(2, 2e6)) first++;
    }
    expect(first).toBeGreaterThan(0.9 * RANK_DRAWS);
  });

  it('bids high where budget is plentiful and low where it is scarce (the LP on win rate and cost)', () => {
    // One segment, two bid strategies with the same creative: low wins 34% at 2.56, high wins 77% at 4.3.
    const arms = [0, 0];
    const p = plan(arms, { explorationShare: 0, learning: { samples: 100, minImpressions: 0, minClicks: 0 } }, [2.56, 4.8]);
    const a = new ThompsonAllocator(p, 9);
    const win = [0.34, 0.77];
    const cost = [2560, 4300];
    for (let k = 0; k < 2; k++) {
      a.bids[k] = 300_000;
      a.impressions[k] = Math.round(300_000 * win[k]);
      a.costMicros[k] = a.impressions[k] * cost[k];
      a.clicks[k] = Math.round(a.impressions[k] * 0.004);
      a.conversions[k] = Math.round(a.clicks[k] * 0.07);
      a.valueMicros[k] = a.conversions[k] * 110e6;
      a.opportunityRate[k] = 10; // 10 requests/s: high spends 33k micros/s, low 8.7k
    }
    a.targetRate[0] = 1e6; // plenty of budget: value per request decides -> the high bid
    a.reallocate(T0, true);
    expect(a.share[1]).toBeGreaterThan(0.9);
    a.targetRate[0] = 5_000; // scarce: value per unit of budget decides -> the low bid
    a.reallocate(T0 + 1, true);
    expect(a.share[0]).toBeGreaterThan(0.9);
  });

  it('a reallocation time budget starts at least one campaign per call, the most overdue first, and none after it', () => {
    const ids = Array.from({ length: 6 }, (_, k) => `li-${k}`);
    const defs: CampaignDef[] = [0, 1, 2].map((c) => ({
      id: `c${c}`,
      name: `c${c}`,
      budget: { daily: 100, flight: 1000, flightStart: new Date(T0).toISOString(), flightEnd: new Date(T0 + 10 * 86_400_000).toISOString() },
      kpi: 'roas',
      lineItems: ids.slice(2 * c, 2 * c + 2),
      learning: { samples: 16, reallocateSeconds: 5 },
    }));
    const p = compileCampaigns(defs, new Map(ids.map((id, k) => [id, k])), new Map(ids.map((id, k) => [id, `seg-${k}`])), ids.map(() => 2_000_000));
    const a = new ThompsonAllocator(p, 1);
    a.reallocate(T0, true);
    expect([0, 1, 2].map((c) => a.lastReallocation(c))).toEqual([T0, T0, T0]);
    // A budget already spent: one campaign per call, the most overdue first.
    a.reallocate(T0 + 5000, false, Infinity, 0);
    expect([0, 1, 2].map((c) => a.lastReallocation(c))).toEqual([T0 + 5000, T0, T0]);
    a.reallocate(T0 + 6000, false, Infinity, 0);
    a.reallocate(T0 + 7000, false, Infinity, 0);
    expect([0, 1, 2].map((c) => a.lastReallocation(c))).toEqual([T0 + 5000, T0 + 6000, T0 + 7000]);
    // No budget: every due campaign in one call.
    a.reallocate(T0 + 20_000);
    expect([0, 1, 2].map((c) => a.lastReallocation(c))).toEqual([T0 + 20_000, T0 + 20_000, T0 + 20_000]);
  });

  it('keeps a bounded allocation history and answers rank() for unbudgeted line items by price', () => {
    const p = plan([0, 1], { learning: { samples: 16, reallocateSeconds: 1 } });
    const a = new ThompsonAllocator(p, 1);
    for (let i = 0; i < 2100; i++) a.reallocate(T0 + i * 1000);
    expect(a.allocationHistory().length).toBe(2000);
    expect(a.allocationHistory()[0].t).toBe(T0 + 100 * 1000);
    expect(a.allocationReport(5).history.length).toBe(5);
    expect(a.rank(-1, 1234)).toBe(1234);
    expect(a.rank(99, 1234)).toBe(1234);
  });

  it('does not count clicks too young to have converted in the conversion rate', () => {
    const make = (delayMinutes: number) => {
      const a = new ThompsonAllocator(plan([0], { learning: { samples: 16, conversionDelayMinutes: delayMinutes } }), 1);
      a.impressions[0] = 50_000;
      a.bids[0] = 100_000;
      for (let i = 0; i < 200; i++) a.recordClick(0, T0 - 6 * 3_600_000); // old clicks: mature
      for (let i = 0; i < 200; i++) a.recordClick(0, T0 - 60_000); // a minute ago: mostly unconverted yet
      for (let i = 0; i < 10; i++) a.recordConversion(0, 80e6);
      a.reallocate(T0, true);
      return a.allocationReport().campaigns[0].arms[0].cvr;
    };
    const corrected = make(60);
    const naive = make(0);
    expect(naive).toBeLessThan(0.03); // ~12 / 450: the young clicks dilute it
    expect(corrected).toBeGreaterThan(0.038); // ~12 / 290: they weigh about 1 - exp(-15 min / 60 min) (10-minute buckets)
  });

  it('pools sibling segments of the segmentation tree, and starts from the strategy\'s priors', () => {
    const ids = ['a1', 'b1', 'c1'];
    const p = compileCampaigns(
      [{ id: 'c', name: 'c', budget: { daily: 100, flight: 1000, flightStart: new Date(T0).toISOString(), flightEnd: new Date(T0 + 10 * 86_400_000).toISOString() }, kpi: 'roas', lineItems: ids, priors: { 'seg-c': { cvr: 0.08, orderValue: 120, confidence: 50 } } }],
      new Map(ids.map((id, k) => [id, k])),
      new Map([['a1', 'seg-a'], ['b1', 'seg-b'], ['c1', 'seg-c']]),
      [2e6, 2e6, 2e6],
      new Map([['seg-a', 'prospects'], ['seg-b', 'prospects'], ['seg-c', 'customers']]),
    );
    expect(Array.from(p.campaigns[0].groupParent)).toEqual([0, 0, 1]);
    const a = new ThompsonAllocator(p, 1);
    // Segment a converts badly (2 in 400 clicks); b has no evidence yet: its prior leans on its sibling a.
    a.impressions[0] = 200_000;
    a.clicks[0] = 400;
    a.conversions[0] = 2;
    a.valueMicros[0] = 2 * 60e6;
    a.reallocate(T0, true);
    const arms = a.allocationReport().campaigns[0].arms;
    expect(arms[1].cvr).toBeLessThan(0.02);
    expect(arms[2].cvr).toBeCloseTo(0.08, 2);
    expect(arms[2].orderValueMicros / 1e6).toBeCloseTo(120, -1);
  });
});

/** An allocator whose rank table the test writes directly (what a reallocation does through setRank). */
class RankWriter extends ThompsonAllocator {
  write(li: number, j: number, score: number): void {
    this.setRank(li, j, score);
  }
}

describe('the exploration part (Allocator.explored, the console\'s exploration total)', () => {
  it('is what the exploring arms hold once the guard rails have clamped their segment', () => {
    // Arm 0 has no evidence (it explores) in a segment capped at 2 %; arms 1 and 2 are well known.
    const p = plan([0, 1, 2], { explorationShare: 0.15, guardRails: { 'seg-0': { minShare: 0, maxShare: 0.02 } }, learning: { samples: 32, minImpressions: 1000, minClicks: 3 } });
    const a = new ThompsonAllocator(p, 7);
    expect(a.explored[0]).toBe(1); // before any reallocation: even shares on no evidence
    for (const k of [1, 2]) {
      a.bids[k] = 20_000;
      a.impressions[k] = 10_000;
      a.costMicros[k] = 10_000 * 1500;
      a.clicks[k] = 50;
      a.conversions[k] = 5;
      a.valueMicros[k] = 5 * 60_000_000;
    }
    a.capacity.fill(1);
    a.reallocate(T0, true);
    expect(a.share[0]).toBeLessThanOrEqual(0.02 + 1e-9);
    expect(a.explored[0]).toBeGreaterThan(0);
    expect(a.explored[0]).toBeLessThanOrEqual(a.share[0] + 1e-9); // not the 15 % asked for
  });
});

describe('rank order (the decider walks budgeted candidates by it)', () => {
  it('lists the budgeted line items by this draw\'s rank, highest first, after any sequence of rank rewrites', () => {
    // 6 campaigns of 10 arms, interleaved with 20 unbudgeted line items (indices 0, 4, 8...).
    const campaigns = 6;
    const perCampaign = 10;
    const ids: string[] = [];
    const armsOf: number[][] = Array.from({ length: campaigns }, () => []);
    for (let i = 0, arm = 0; i < campaigns * perCampaign + 20; i++) {
      ids.push(`li-${i}`);
      if (i % 4 === 0 && i / 4 < 20) continue;
      armsOf[arm % campaigns].push(i);
      arm++;
    }
    const defs: CampaignDef[] = armsOf.map((arms, c) => ({
      id: `c${c}`,
      name: `c${c}`,
      budget: { daily: 100, flight: 1000, flightStart: new Date(T0).toISOString(), flightEnd: new Date(T0 + 86_400_000).toISOString() },
      kpi: 'cpc',
      lineItems: arms.map((i) => ids[i]),
    }));
    const compiled = compileCampaigns(defs, new Map(ids.map((id, i) => [id, i])), new Map(ids.map((id, i) => [id, `seg-${i % 7}`])), ids.map(() => 2e6));
    const a = new RankWriter(compiled, 7);
    const budgeted = armsOf.flat().sort((x, y) => x - y);
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    // Few distinct values, so that ties (broken by line item) are common; NaN sorts last.
    const score = () => (rand() < 0.05 ? NaN : Math.floor(rand() * 20) * 1000);
    const expected = () => {
      const key = (li: number) => {
        const r = a.rank(li, 0);
        return r === r ? r : -Infinity;
      };
      return [...budgeted].sort((x, y) => key(y) - key(x) || (key(x) === key(y) ? x - y : 0));
    };
    let checked = 0;
    for (let step = 0; step < 200; step++) {
      // Rewrite one campaign (a reallocation), sometimes two, sometimes every one (more than a quarter: full sort).
      const which = step % 17 === 0 ? armsOf.map((_, c) => c) : step % 5 === 0 ? [step % campaigns, (step + 1) % campaigns] : [Math.floor(rand() * campaigns)];
      for (const c of which) for (const li of armsOf[c]) for (let j = 0; j < RANK_DRAWS; j++) a.write(li, j, score());
      const requests = 1 + Math.floor(rand() * 2 * RANK_DRAWS);
      for (let r = 0; r < requests; r++) {
        a.beginRequest();
        expect([...a.rankOrder()]).toEqual(expected());
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(RANK_DRAWS * 100);
  });
});

describe('live reallocation in slices (the bid thread answers requests between them)', () => {
  /** 4 campaigns of 12 arms over 4 segments, with evidence that differs by arm. */
  function evidenced(seed: number): ThompsonAllocator {
    const ids = Array.from({ length: 48 }, (_, i) => `li-${i}`);
    const defs: CampaignDef[] = [0, 1, 2, 3].map((c) => ({
      id: `c${c}`,
      name: `c${c}`,
      budget: { daily: 100, flight: 1000, flightStart: new Date(T0).toISOString(), flightEnd: new Date(T0 + 10 * 86_400_000).toISOString() },
      kpi: 'roas',
      lineItems: ids.slice(c * 12, c * 12 + 12),
      learning: { samples: 300, minImpressions: 1000, minClicks: 5 },
    }));
    const p = compileCampaigns(defs, new Map(ids.map((id, i) => [id, i])), new Map(ids.map((id, i) => [id, `seg-${i % 4}`])), ids.map((_, i) => 1e6 + i * 50_000));
    const a = new ThompsonAllocator(p, seed);
    for (let li = 0; li < 48; li++) {
      a.impressions[li] = 2_000 + li * 700;
      a.bids[li] = 2 * a.impressions[li];
      a.costMicros[li] = a.impressions[li] * (1200 + li * 10);
      a.clicks[li] = 5 + (li % 7) * 9;
      a.conversions[li] = li % 3;
      a.valueMicros[li] = a.conversions[li] * 60e6;
      a.opportunityRate[li] = 50 + li;
    }
    for (let c = 0; c < 4; c++) a.targetRate[c] = 400 + c * 300;
    return a;
  }
  const state = (a: ThompsonAllocator) => {
    // Every draw's ranks, whichever draw the allocator is at (requests move it): the rows, sorted.
    const rows: string[] = [];
    for (let j = 0; j < RANK_DRAWS; j++) {
      a.beginRequest();
      rows.push(Array.from({ length: 48 }, (_, li) => a.rank(li, 0)).join(','));
    }
    return { share: [...a.share], reason: [...a.reason], priority: [...a.priority], ranks: rows.sort(), report: a.allocationReport().campaigns };
  };

  it('gives what one reallocate() call gives, in many slices, with requests read between them', () => {
    const whole = evidenced(11);
    whole.reallocate(T0);
    const sliced = evidenced(11);
    let slices = 0;
    // A slice of 0 ms runs one step (25 draws of one campaign): the round takes many calls.
    while (sliced.reallocationSlice(T0, 0)) {
      slices++;
      expect(sliced.reallocating).toBe(true);
      sliced.beginRequest();
      sliced.rankOrder(); // what a request reads meanwhile: the table of the previous allocation
    }
    expect(sliced.reallocating).toBe(false);
    expect(slices).toBeGreaterThan(4 * (300 / 25) - 2);
    expect(state(sliced)).toEqual(state(whole));
  });

  it('is finished first by whatever else reallocates or reads the allocation', () => {
    const whole = evidenced(12);
    whole.reallocate(T0);
    const reported = evidenced(12);
    expect(reported.reallocationSlice(T0, 0)).toBe(true);
    expect(reported.reallocationSlice(T0, 0)).toBe(true);
    // The report computes posteriors in the scratch state the round is using: it finishes the round first.
    const report = reported.allocationReport();
    expect(reported.reallocating).toBe(false);
    expect(report.campaigns).toEqual(whole.allocationReport().campaigns);
    const forced = evidenced(12);
    forced.reallocationSlice(T0, 0);
    forced.reallocate(T0 + 1); // finishes the round at T0, then finds nothing due
    expect(state(forced)).toEqual(state(whole));
  });

  it('stops starting campaigns once its budget of slice time is spent (at least one runs)', () => {
    const a = evidenced(13);
    while (a.reallocationSlice(T0, 0, Infinity, 0));
    const ran = [0, 1, 2, 3].filter((c) => a.lastReallocation(c) === T0);
    expect(ran.length).toBe(1);
    while (a.reallocationSlice(T0 + 10, 0, Infinity, Infinity));
    expect([0, 1, 2, 3].every((c) => a.lastReallocation(c) >= T0)).toBe(true);
  });
});
