import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SHADING, isotonic, resolveShadingSettings, ShadingTable } from '../src/bidding/shading.js';
import { SegbidError } from '../src/common/errors.js';
import { mulberry32 } from '../src/common/prng.js';

const V = 10_000_000; // a $10 CPM value
const T0 = 1_740_000_000_000;

function table(ids = ['a', 'b'], exchanges = ['xchg-1', 'xchg-2']): ShadingTable {
  return new ShadingTable(ids, resolveShadingSettings({ exchanges }));
}

describe('first-price shading', () => {
  it('before feedback the factor is the optimum of the prior curve', () => {
    const t = table();
    // Prior P(win | r) = logistic(12 (r - 0.7)); (1 - r) P is highest at the 0.775 bin centre of 20 bins.
    let best = 0;
    let bestR = 0;
    for (let k = 0; k < 20; k++) {
      const r = (k + 0.5) / 20;
      const s = (1 - r) / (1 + Math.exp(-12 * (r - 0.7)));
      if (s > best) [best, bestR] = [s, r];
    }
    expect(bestR).toBeCloseTo(0.775, 10);
    const key = t.keyOf(0, t.exchangeIndex('xchg-1'), 0);
    expect(t.factor[key]).toBeCloseTo(0.775, 10);
    expect(t.shade(key, V, 0, 1)).toBe(7_750_000);
  });

  it('at=2 (second price) bids the true value', () => {
    const t = table();
    const key = t.keyOf(1, 0, 500_000);
    expect(t.shade(key, V, 500_000, 2)).toBe(V);
    expect(t.shade(key, V + 0.7, 500_000, 2)).toBe(V);
  });

  it('never below the floor: the floor when the value covers it, else no bid', () => {
    const t = table();
    const key = t.keyOf(0, 0, 9_000_000);
    expect(t.shade(key, V, 9_000_000, 1)).toBe(9_000_000);
    expect(t.shade(key, 8_000_000, 9_000_000, 1)).toBe(-1);
    expect(t.shade(key, 8_000_000, 9_000_000, 2)).toBe(-1);
    expect(t.shade(key, 0, 0, 1)).toBe(-1);
  });

  it('never above the value, never below the floor, always an integer (property)', () => {
    const t = table();
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100_000_000 }), fc.integer({ min: 0, max: 100_000_000 }), fc.constantFrom(1, 2), (value, floor, at) => {
        const bid = t.shade(t.keyOf(0, 0, floor), value, floor, at);
        if (value < floor) return bid === -1;
        return Number.isInteger(bid) && bid <= value && bid >= floor;
      }),
    );
  });

  it('learns a cheap market from min-to-win feedback: the competition bids 30-50 % of our value', () => {
    const t = table();
    const key = t.keyOf(0, 0, 0);
    const rnd = mulberry32(7);
    for (let i = 0; i < 3000; i++) {
      const minToWin = V * (0.3 + 0.2 * rnd());
      const bid = t.shade(key, V, 0, 1);
      t.recordOutcome(key, bid, V, bid >= minToWin, minToWin);
    }
    t.refresh(T0);
    // P(win) reaches 1 at r = 0.5: the best bin is the first one past it.
    expect(t.factor[key]).toBeCloseTo(0.525, 10);
    expect(t.winRate(key, 0.2)).toBeLessThan(0.05);
    expect(t.winRate(key, 0.6)).toBeGreaterThan(0.95);
    // Other keys are untouched.
    expect(t.factor[t.keyOf(1, 0, 0)]).toBeCloseTo(0.775, 10);
  });

  it('moves with win/loss feedback alone: losing at the shaded bid raises it, winning everywhere keeps it', () => {
    const losing = table();
    const key = losing.keyOf(0, 1, 0);
    const before = losing.factor[key];
    for (let i = 0; i < 200; i++) losing.recordOutcome(key, before * V, V, false);
    losing.refresh(T0);
    expect(losing.factor[key]).toBeGreaterThan(before);
    expect(losing.winRate(key, before)).toBeLessThan(0.1);

    const winning = table();
    for (let i = 0; i < 200; i++) winning.recordOutcome(key, before * V, V, true);
    winning.refresh(T0);
    expect(winning.winRate(key, before)).toBeGreaterThan(0.95);
    expect(winning.factor[key]).toBeLessThanOrEqual(before);
  });

  it('evidence decays back to the prior', () => {
    const t = table();
    const key = t.keyOf(0, 0, 0);
    for (let i = 0; i < 100; i++) t.recordOutcome(key, 0.775 * V, V, false);
    t.refresh(T0);
    expect(t.factor[key]).toBeGreaterThan(0.775);
    t.refresh(T0 + 30 * 3600_000); // 30 half-lives later
    expect(t.factor[key]).toBeCloseTo(0.775, 10);
  });

  it('bounded key space: unknown exchanges share "other", floors fall into configured bands', () => {
    const t = new ShadingTable(['a', 'b', 'c'], resolveShadingSettings({ exchanges: ['x1'], floorBandsCpm: [1, 0.5] }));
    expect(t.keys).toBe(3 * 2 * 3);
    expect(t.exchangeIndex('x1')).toBe(0);
    expect(t.exchangeIndex('never-seen')).toBe(1);
    expect(t.exchangeIndex(undefined)).toBe(1);
    expect(t.keyOf(0, 0, 0)).toBe(0);
    expect(t.keyOf(0, 0, 499_999)).toBe(0);
    expect(t.keyOf(0, 0, 500_000)).toBe(1);
    expect(t.keyOf(0, 0, 2_000_000)).toBe(2);
    expect(t.keyOf(2, 1, 2_000_000)).toBe(17);
    expect(DEFAULT_SHADING.floorBandsCpm.length + 1).toBe(5);
  });

  it('learned curves survive a config reload by line item id', () => {
    const old = table(['a', 'b']);
    const key = old.keyOf(1, 0, 0);
    for (let i = 0; i < 100; i++) old.recordOutcome(key, 0.775 * V, V, false);
    old.refresh(T0);
    const next = table(['b']);
    next.adoptFrom(old);
    expect(next.factor[next.keyOf(0, 0, 0)]).toBe(old.factor[key]);
  });

  it('prices from the context layout exactly as from the key layout, after feedback, decay and a reload (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 }), (seed) => {
        const rand = mulberry32(seed);
        const ids = ['a', 'b', 'c', 'd'];
        const settings = resolveShadingSettings({ exchanges: ['x1', 'x2'], floorBandsCpm: [0.5, 1, 2] });
        const t = new ShadingTable(ids, settings);
        for (let i = 0; i < 300; i++) {
          const key = Math.floor(rand() * t.keys);
          t.recordOutcome(key, Math.floor(rand() * V), V, rand() < 0.4, rand() < 0.5 ? Math.floor(rand() * V) : -1);
        }
        t.refresh(T0);
        if (rand() < 0.5) t.refresh(T0 + Math.floor(rand() * 30) * 3600_000);
        const reloaded = new ShadingTable(['c', 'x', 'a'], settings);
        reloaded.adoptFrom(t);
        // The usual reload, the same line items in the same order (copied whole): the same tables as the source.
        const same = new ShadingTable(ids, settings);
        same.adoptFrom(t);
        expect(Array.from(same.factor)).toEqual(Array.from(t.factor));
        expect(Array.from(same.trials)).toEqual(Array.from(t.trials));
        expect(Array.from(same.wins)).toEqual(Array.from(t.wins));
        for (const table of [t, reloaded, same]) {
          for (let li = 0; li < table.lineItemIds.length; li++) {
            for (let ex = 0; ex < table.exchangeCount; ex++) {
              for (const floorCpm of [0, 0.7, 1.5, 3]) {
                const floor = floorCpm * 1e6;
                const value = Math.floor(rand() * 5 * V);
                const viaKey = table.shade(table.keyOf(li, ex, floor), value, floor, 1);
                expect(table.price(li, ex, floor, 1, value, 1)).toBe(viaKey);
                expect(table.priceInBand(li, ex, table.bandOf(floor), floor, value, 1)).toBe(viaKey);
              }
            }
          }
        }
      }),
      { numRuns: 40 },
    );
  });

  it('bad feedback is a typed error', () => {
    const t = table();
    expect(() => t.recordOutcome(-1, 1, 1, true)).toThrow(SegbidError);
    expect(() => t.recordOutcome(t.keys, 1, 1, true)).toThrow(SegbidError);
    expect(() => t.recordOutcome(0, 1, 0, true)).toThrow(/positive value/);
  });

  it('isotonic regression pools violators', () => {
    const p = Float64Array.from([0.1, 0.5, 0.3, 0.2, 0.9]);
    const w = Float64Array.from([1, 1, 1, 1, 1]);
    isotonic(p, w, new Int32Array(5), 5);
    expect([...p].map((x) => +x.toFixed(6))).toEqual([0.1, 1 / 3, 1 / 3, 1 / 3, 0.9].map((x) => +x.toFixed(6)));
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 30 }), (xs) => {
        const q = Float64Array.from(xs);
        isotonic(q, new Float64Array(xs.length).fill(1), new Int32Array(xs.length), xs.length);
        for (let i = 1; i < q.length; i++) if (q[i] < q[i - 1] - 1e-12) return false;
        return Math.abs(q.reduce((a, b) => a + b, 0) - xs.reduce((a, b) => a + b, 0)) < 1e-9; // mean preserved
      }),
    );
  });

  it('refresh of a full table (1,000 line items x 5 exchanges x 5 bands) stays in milliseconds', () => {
    const ids = Array.from({ length: 1000 }, (_, i) => `li${i}`);
    const t = new ShadingTable(ids, resolveShadingSettings({ exchanges: ['a', 'b', 'c', 'd'] }));
    expect(t.keys).toBe(25_000);
    for (let k = 0; k < t.keys; k += 3) t.recordOutcome(k, 7_000_000, V, k % 2 === 0, 6_000_000);
    const t0 = process.hrtime.bigint();
    t.refresh(T0);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(`[measure] ShadingTable.refresh, ${t.keys} keys (1/3 with new feedback): ${ms.toFixed(1)} ms; table ${(t.keys * t.bins * 8 + t.keys * 9) / 1e6} MB`);
    expect(ms).toBeLessThan(500);
  });
});
