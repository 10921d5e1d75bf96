import { describe, expect, it } from 'vitest';
import { compileCampaigns } from '../src/budget/compile.js';
import { Ledger, SETTLE } from '../src/budget/ledger.js';
import { Pacer, GATE } from '../src/budget/pacing.js';
import { ThompsonAllocator } from '../src/budget/allocator.js';
import { Rng } from '../src/budget/random.js';
import type { CampaignDef } from '../src/budget/types.js';

const DAY = 86_400_000;
const T0 = Date.parse('2026-03-02T00:00:00Z');
const PROFILE = [0.3, 0.2, 0.15, 0.1, 0.1, 0.2, 0.5, 0.9, 1.2, 1.3, 1.3, 1.4, 1.5, 1.4, 1.3, 1.2, 1.3, 1.5, 1.8, 2.0, 1.9, 1.5, 1.0, 0.6];

function plan(options: Partial<CampaignDef> = {}, arms = 3) {
  const ids = Array.from({ length: arms }, (_, k) => `li-${k}`);
  return compileCampaigns(
    [
      {
        id: 'c',
        name: 'c',
        budget: { daily: 50, flight: 1000, flightStart: new Date(T0).toISOString(), flightEnd: new Date(T0 + 5 * DAY).toISOString() },
        kpi: 'cpc',
        lineItems: ids,
        learning: { samples: 64, reallocateSeconds: 30 },
        ...options,
      },
    ],
    new Map(ids.map((id, k) => [id, k])),
    new Map(ids.map((id, k) => [id, `seg-${k}`])),
    ids.map(() => 3e6),
  );
}

/**
 * A synthetic market, one step per second: arm k sees `traffic(t) * rates[k]` opportunities, each passes with
 * its throttle, wins with probability `win`, costs `cost` micros (reserve, then settle or release).
 */
function runDay(p: ReturnType<typeof plan>, traffic: (hour: number) => number, options: { rates: number[]; win: (hour: number) => number; cost: number; seed?: number; share?: number }) {
  const ledger = Ledger.fromPlan(p);
  const pacer = new Pacer(p);
  pacer.share = options.share ?? 1;
  const alloc = new ThompsonAllocator(p, 1);
  const rng = new Rng(options.seed ?? 7);
  const samples: { t: number; gap: number }[] = [];
  let maxSpentPlusReserved = 0;
  for (let s = 0; s < 86_400; s++) {
    const now = T0 + s * 1000;
    pacer.update(now, ledger, alloc);
    alloc.reallocate(now);
    const hour = s / 3600;
    for (let k = 0; k < options.rates.length; k++) {
      const mean = traffic(hour) * options.rates[k];
      const n = Math.floor(mean) + (rng.uniform() < mean - Math.floor(mean) ? 1 : 0);
      for (let i = 0; i < n; i++) {
        pacer.opportunities[k]++;
        if (rng.uniform() >= pacer.throttle[k]) continue;
        pacer.passes[k]++;
        const h = ledger.reserve(0, k, options.cost, now);
        if (h < 0) continue;
        alloc.recordBid(k);
        if (rng.uniform() < options.win(hour)) {
          expect(ledger.settle(h, options.cost, now)).toBe(SETTLE.settled);
          pacer.spentToday[k] += ledger.lastBooked;
          alloc.recordImpression(k, options.cost);
        } else ledger.release(h, now);
      }
    }
    const a = ledger.account(0);
    maxSpentPlusReserved = Math.max(maxSpentPlusReserved, a.day.spent + a.day.reserved);
    if (s % 60 === 0) samples.push({ t: s, gap: Math.abs(a.day.spent - pacer.targetSpend(0, now, ledger)) / a.day.budget });
  }
  ledger.checkInvariant();
  const a = ledger.account(0);
  return { spent: a.day.spent, budget: a.day.budget, meanGap: samples.reduce((x, y) => x + y.gap, 0) / samples.length, maxSpentPlusReserved, pacer, ledger };
}

const diurnal = (hour: number) => PROFILE[Math.min(23, Math.floor(hour))];

describe('pacing', () => {
  it('follows a traffic-shaped target over a day and spends the budget, without overspending', () => {
    const p = plan({ pacing: { curve: 'traffic', hourlyProfile: PROFILE } });
    // Capacity ~3x the budget: 1.5 opportunities/s on average x 40% win x 3000 micros = 156 a day, budget 50.
    const r = runDay(p, diurnal, { rates: [0.6, 0.5, 0.4], win: () => 0.4, cost: 3000 });
    expect(r.spent).toBeLessThanOrEqual(r.budget);
    expect(r.maxSpentPlusReserved).toBeLessThanOrEqual(r.budget);
    expect(r.spent / r.budget).toBeGreaterThan(0.98);
    expect(r.meanGap).toBeLessThan(0.03);
  });

  it('converges with an even curve when the win rate shifts during the day (the integral absorbs the bias)', () => {
    const p = plan({ pacing: { curve: 'even', catchUpSeconds: 600 } });
    const r = runDay(p, diurnal, { rates: [0.6, 0.5, 0.4], win: (h) => (h < 12 ? 0.5 : 0.2), cost: 3000 });
    expect(r.spent).toBeLessThanOrEqual(r.budget);
    expect(r.spent / r.budget).toBeGreaterThan(0.97);
    // Even pacing over a diurnal curve: the night cannot keep up, so the gap is larger, but bounded.
    expect(r.meanGap).toBeLessThan(0.08);
  });

  it('several processes, each with its part of the traffic, pace toward their part of the day (Pacer.share)', () => {
    const p = plan({ pacing: { curve: 'traffic', hourlyProfile: PROFILE } });
    // Two bidders behind one load balancer: each sees half the opportunities.
    const half = { rates: [0.3, 0.25, 0.2], win: () => 0.4, cost: 3000 };
    const a = runDay(p, diurnal, { ...half, share: 0.5, seed: 11 });
    const b = runDay(p, diurnal, { ...half, share: 0.5, seed: 12 });
    const together = a.spent + b.spent;
    expect(together).toBeLessThanOrEqual(a.budget);
    expect(together / a.budget).toBeGreaterThan(0.97);
    expect(a.meanGap).toBeLessThan(0.03);
    // Without the share, each chases the whole curve with half the traffic: together far ahead of the curve.
    const greedy = runDay(p, diurnal, { ...half, seed: 11 });
    expect(greedy.spent / a.budget).toBeGreaterThan(0.9);
  });

  it('opens fully when traffic is short, and does not wind up', () => {
    const p = plan({ pacing: { curve: 'traffic', hourlyProfile: PROFILE } });
    // Capacity ~0.6x the budget (31 a day for 50).
    const r = runDay(p, diurnal, { rates: [0.12, 0.1, 0.08], win: () => 0.4, cost: 3000 });
    expect(r.spent).toBeLessThan(r.budget);
    for (let k = 0; k < 3; k++) expect(r.pacer.throttle[k]).toBe(1);
  });

  it('computes target curves: even, traffic-shaped, clipped to the flight', () => {
    const ledger = Ledger.fromPlan(plan());
    const even = new Pacer(plan());
    expect(even.targetFraction(0, T0 + DAY / 2)).toBeCloseTo(0.5, 9);
    const shaped = new Pacer(plan({ pacing: { curve: 'traffic', hourlyProfile: PROFILE } }));
    const total = PROFILE.reduce((a, x) => a + x, 0);
    expect(shaped.targetFraction(0, T0 + 6 * 3_600_000)).toBeCloseTo(PROFILE.slice(0, 6).reduce((a, x) => a + x, 0) / total, 9);
    expect(shaped.targetFraction(0, T0 + DAY - 1)).toBeCloseTo(1, 6);
    // A flight that starts at noon: the first day's curve runs from noon to midnight.
    const late = new Pacer(plan({ budget: { daily: 50, flight: 300, flightStart: new Date(T0 + DAY / 2).toISOString(), flightEnd: new Date(T0 + 3 * DAY).toISOString() } }));
    expect(late.targetFraction(0, T0 + DAY / 2)).toBe(0);
    expect(late.targetFraction(0, T0 + 18 * 3_600_000)).toBeCloseTo(0.5, 9);
    void ledger;
  });

  it('gates: paused, out of flight, exhausted, segment at its guard-rail maximum', () => {
    const p = plan({ guardRails: { 'seg-0': { minShare: 0, maxShare: 0.3 } } });
    const ledger = Ledger.fromPlan(p);
    const pacer = new Pacer(p);
    pacer.update(T0 - 1000, ledger, null);
    expect(pacer.gate[0]).toBe(GATE.out_of_flight);
    expect(pacer.throttle[0]).toBe(0);
    pacer.update(T0 + 1000, ledger, null);
    expect(pacer.gate[0]).toBe(GATE.open);
    // Segment 0 spent 30% of the day's budget: capped until tomorrow.
    const h = ledger.reserve(0, 0, 15_000_000, T0 + 2000);
    ledger.settle(h, 15_000_000, T0 + 2000);
    pacer.spentToday[0] += 15_000_000;
    pacer.update(T0 + 3000, ledger, null);
    expect(pacer.gate[0]).toBe(GATE.guard_rail_max);
    expect(pacer.throttle[0]).toBe(0);
    expect(pacer.gate[1]).toBe(GATE.open);
    pacer.paused[0] = 1;
    pacer.update(T0 + 4000, ledger, null);
    expect(pacer.gate[1]).toBe(GATE.paused);
    pacer.paused[0] = 0;
    const h2 = ledger.reserve(0, 1, 35_000_000, T0 + 5000);
    ledger.settle(h2, 35_000_000, T0 + 5000);
    pacer.update(T0 + 6000, ledger, null);
    expect(pacer.gate[1]).toBe(GATE.exhausted);
    // Next day: open again, the segment's spend starts over.
    pacer.update(T0 + DAY + 1000, ledger, null);
    expect(pacer.gate[0]).toBe(GATE.open);
    expect(pacer.spentToday[0]).toBe(0);
  });
});
