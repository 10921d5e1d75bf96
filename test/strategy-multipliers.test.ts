import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileMultipliers, MultiplierContext, type MultiplierLineItemDef } from '../src/bidding/multipliers.js';
import type { MultipliersDef } from '../src/bidding/strategies/schema.js';
import type { ErrorDetail } from '../src/common/errors.js';
import { TREE, bitsOf, segmentation } from './cases-strategy/helpers.js';

interface Case {
  name: string;
  multipliers: MultipliersDef;
  request: Record<string, unknown>;
  now?: string;
  user?: string[] | null;
  expect?: number;
  errors?: string[];
}
const cases = (JSON.parse(readFileSync(new URL('./cases-strategy/multipliers.json', import.meta.url), 'utf8')) as { cases: Case[] }).cases;
const { dictionary } = segmentation(TREE);

describe('multipliers (cases-strategy/multipliers.json)', () => {
  for (const c of cases) {
    it(c.name, () => {
      const errors: ErrorDetail[] = [];
      const items: MultiplierLineItemDef[] = [{ id: 'with', multipliers: c.multipliers }, { id: 'without' }];
      const table = compileMultipliers(items, dictionary, errors);
      if (c.errors) {
        expect(errors.map((e) => e.path)).toEqual(c.errors);
        return;
      }
      expect(errors).toEqual([]);
      const ctx = new MultiplierContext(table);
      const user = c.user === null ? null : bitsOf(dictionary, c.user ?? []);
      table.fillContext(ctx, c.request, Date.parse(c.now ?? '2025-03-01T12:00:00Z'), user);
      expect(table.multiplierFor(0, ctx)).toBeCloseTo(c.expect!, 12);
      expect(table.multiplierFor(1, ctx)).toBe(1);
      // The bound the decider prices candidates by (best first) holds for this request, and is exact without factors.
      expect(table.multiplierFor(0, ctx)).toBeLessThanOrEqual(table.upper[0]);
      expect(table.upper[1]).toBe(1);
    });
  }
});

describe('multiplier tables', () => {
  it('a list shared by many line items is stored once', () => {
    const errors: ErrorDetail[] = [];
    const list = Array.from({ length: 5000 }, (_, i) => `site${i}.example`);
    const items: MultiplierLineItemDef[] = Array.from({ length: 1000 }, (_, i) => ({ id: `li${i}`, multipliers: { domains: [{ list, factor: 1 + (i % 5) / 10 }] } }));
    const table = compileMultipliers(items, dictionary, errors);
    expect(errors).toEqual([]);
    expect(table.listWords).toBe(1);
    expect(table.domainLists.size).toBe(5000);
    const ctx = new MultiplierContext(table);
    table.fillContext(ctx, { site: { domain: 'site42.example' } }, 0, null);
    expect(table.multiplierFor(3, ctx)).toBeCloseTo(1.3, 12);
  });

  it('marks line items whose factors need personal data', () => {
    const table = compileMultipliers(
      [{ id: 'a', multipliers: { countries: { FRA: 1.1 } } }, { id: 'b', multipliers: { crmTiers: [{ segment: 'loyal', factor: 1.2 }] } }, { id: 'c' }],
      dictionary,
      [],
    );
    expect([0, 1, 2].map((i) => table.usesPersonalData(i))).toEqual([false, true, false]);
  });

  it('hot path: 1,000 line items x 1 request well under a microsecond each', () => {
    const items: MultiplierLineItemDef[] = Array.from({ length: 1000 }, (_, i) => ({
      id: `li${i}`,
      multipliers:
        i % 2 === 0
          ? { countries: { FRA: 1.1, DEU: 0.9 }, deviceTypes: { '4': 1.2 }, dayParts: { ranges: [{ from: 8, to: 20, factor: 1.1 }] }, crmTiers: [{ segment: 'loyal', factor: 1.3 }] }
          : undefined,
    }));
    const table = compileMultipliers(items, dictionary, []);
    const ctx = new MultiplierContext(table);
    const user = bitsOf(dictionary, ['loyal']);
    const req = { site: { domain: 'news.example' }, device: { devicetype: 4, geo: { country: 'FRA' } } };
    let sum = 0;
    const run = (rounds: number): number => {
      const t0 = process.hrtime.bigint();
      for (let r = 0; r < rounds; r++) {
        table.fillContext(ctx, req, 1_740_000_000_000 + r, user);
        for (let li = 0; li < 1000; li++) sum += table.multiplierFor(li, ctx);
      }
      return Number(process.hrtime.bigint() - t0) / rounds / 1000;
    };
    run(200); // warm-up
    const ns = run(2000);
    console.log(`[measure] multiplierFor: ${ns.toFixed(1)} ns per line item (half of them with 4 dimensions)`);
    expect(sum).toBeGreaterThan(0);
    expect(ns).toBeLessThan(1000);
  });
});
