import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileStrategies, type StrategyLineItemDef, StrategyTable } from '../src/bidding/strategies/strategy-table.js';
import type { PriorsDef } from '../src/bidding/strategies/schema.js';
import { SegbidError, type ErrorDetail } from '../src/common/errors.js';
import { TREE, segmentation } from './cases-strategy/helpers.js';

interface Case {
  name: string;
  priors?: PriorsDef | null;
  lineItem: StrategyLineItemDef;
  feedback?: { impressions?: number; clicks?: number; conversions?: number; orderValue?: number };
  multiplier?: number;
  expect: {
    baseBidMicros?: number;
    finalBidMicros?: number;
    valueMicros?: number;
    predictedCtr?: number;
    predictedCvr?: number;
    priorSource?: Partial<Record<'ctr' | 'cvr' | 'orderValue', string>>;
    errors?: string[];
  };
}
const file = JSON.parse(readFileSync(new URL('./cases-strategy/strategies.json', import.meta.url), 'utf8')) as { priors: PriorsDef; cases: Case[] };

function compile(lineItems: StrategyLineItemDef[], priors: PriorsDef | undefined): { table: StrategyTable; errors: ErrorDetail[] } {
  const { dictionary, tree } = segmentation(TREE);
  const errors: ErrorDetail[] = [];
  const table = compileStrategies({ lineItems, dictionary, tree, priors }, errors);
  return { table, errors };
}

describe('strategies (cases-strategy/strategies.json)', () => {
  for (const c of file.cases) {
    it(c.name, () => {
      const priors = c.priors === null ? undefined : (c.priors ?? file.priors);
      const { table, errors } = compile([c.lineItem], priors);
      if (c.expect.errors) {
        expect(errors.map((e) => e.path).sort()).toEqual([...c.expect.errors].sort());
        return;
      }
      expect(errors).toEqual([]);
      const f = c.feedback ?? {};
      if (f.impressions) table.recordImpression(0, f.impressions);
      if (f.clicks) table.recordClick(0, f.clicks);
      for (let i = 0; i < (f.conversions ?? 0); i++) table.recordConversion(0, ((f.orderValue ?? 0) * 1e6) / (f.conversions ?? 1));
      table.refresh();
      const e = c.expect;
      if (e.baseBidMicros !== undefined) expect(Math.abs(table.baseBidMicros[0] - e.baseBidMicros)).toBeLessThanOrEqual(1);
      if (e.valueMicros !== undefined) expect(Math.abs(table.valueMicros[0] - e.valueMicros)).toBeLessThanOrEqual(1);
      if (e.finalBidMicros !== undefined) expect(Math.abs(table.finalBidMicros(0, c.multiplier ?? 1) - e.finalBidMicros)).toBeLessThanOrEqual(1);
      if (e.predictedCtr !== undefined) expect(table.predictedCtr(0)).toBeCloseTo(e.predictedCtr, 10);
      if (e.predictedCvr !== undefined) expect(table.predictedCvr(0)).toBeCloseTo(e.predictedCvr, 10);
      if (e.priorSource) expect(table.priors[0].source).toMatchObject(e.priorSource);
      expect(Number.isInteger(table.baseBidMicros[0])).toBe(true);
    });
  }
});

describe('strategy table', () => {
  const cpc: StrategyLineItemDef = { id: 'cpc', bid: { cpm: 1 }, targeting: 'loyal', strategy: { type: 'target_cpc', target: 1, maxBidCpm: 50 } };
  const fixed: StrategyLineItemDef = { id: 'fixed', bid: { cpm: 2 } };

  it('a new line item starts at its prior and converges to its observed CTR', () => {
    const { table } = compile([cpc], file.priors);
    expect(table.baseBidMicros[0]).toBe(4_000_000); // customers ctr 0.4 %
    table.recordImpression(0, 1_000_000);
    table.recordClick(0, 10_000); // 1 % observed, evidence 1000x the prior weight
    table.refresh();
    expect(table.baseBidMicros[0]).toBeGreaterThan(9_900_000);
    expect(table.baseBidMicros[0]).toBeLessThanOrEqual(10_000_000);
  });

  it('decay lets the prior weigh again', () => {
    const { table } = compile([cpc], file.priors);
    table.recordImpression(0, 100_000);
    table.recordClick(0, 1000);
    table.refresh();
    const before = table.baseBidMicros[0];
    table.decay(0.01);
    table.refresh();
    expect(table.baseBidMicros[0]).toBeLessThan(before);
    expect(table.baseBidMicros[0]).toBeGreaterThan(4_000_000);
    expect(() => table.decay(2)).toThrow(SegbidError);
  });

  it('feedback with a bad index or amount is a typed error', () => {
    const { table } = compile([cpc], file.priors);
    const code = (f: () => void) => {
      try {
        f();
      } catch (e) {
        return (e as SegbidError).code;
      }
      return null;
    };
    expect(code(() => table.recordImpression(1))).toBe('FEEDBACK_INVALID');
    expect(code(() => table.recordClick(-1))).toBe('FEEDBACK_INVALID');
    expect(code(() => table.recordConversion(0, Number.NaN))).toBe('FEEDBACK_INVALID');
    expect(code(() => table.recordImpression(0, -5))).toBe('FEEDBACK_INVALID');
  });

  it('counters survive a config reload by line item id', () => {
    const { table: old } = compile([fixed, cpc], file.priors);
    old.recordImpression(1, 50_000);
    old.recordClick(1, 500);
    old.refresh();
    const { table: next } = compile([cpc], file.priors);
    next.adoptCounters(old);
    expect(next.impressions[0]).toBe(50_000);
    expect(next.baseBidMicros[0]).toBe(old.baseBidMicros[1]);
  });

  it('refresh of 1,000 line items is cheap (off the hot path, but every second)', () => {
    const items: StrategyLineItemDef[] = Array.from({ length: 1000 }, (_, i) =>
      i % 4 === 0 ? { id: `f${i}`, bid: { cpm: 1 + (i % 7) } } : { id: `c${i}`, bid: { cpm: 1 }, targeting: 'loyal-high-value', strategy: { type: i % 4 === 1 ? 'target_cpc' : i % 4 === 2 ? 'target_cpa' : 'target_roas', target: 2, maxBidCpm: 20 } },
    );
    const { table, errors } = compile(items, file.priors);
    expect(errors).toEqual([]);
    for (let i = 0; i < 1000; i++) table.recordImpression(i, 1000 + i);
    const t0 = process.hrtime.bigint();
    for (let k = 0; k < 100; k++) table.refresh();
    const perRefreshUs = Number(process.hrtime.bigint() - t0) / 100 / 1000;
    console.log(`[measure] StrategyTable.refresh, 1,000 line items: ${perRefreshUs.toFixed(1)} us`);
    expect(perRefreshUs).toBeLessThan(5000);
    for (let i = 0; i < 1000; i++) expect(Number.isInteger(table.baseBidMicros[i]) && table.baseBidMicros[i] >= 0).toBe(true);
  });
});
