import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compileCreativeSelector, resolveRotationSettings, sampleBeta, type SelectorCreativeDef, type SelectorLineItemDef } from '../src/bidding/creative-selector.js';
import { SegbidError } from '../src/common/errors.js';
import { mulberry32 } from '../src/common/prng.js';
import { TREE, bitsOf, segmentation } from './cases-strategy/helpers.js';

const creatives: SelectorCreativeDef[] = [
  { id: 'generic' },
  { id: 'loyal-msg', segments: ['loyal'] },
  { id: 'lhv-msg', segments: ['loyal-high-value'], weight: 3 },
  { id: 'lhv-msg-b', segments: ['loyal-high-value'], weight: 1 },
  { id: 'risk-msg', segments: ['at-risk'] },
  { id: 'customers-msg', segments: ['customers'] },
  { id: 'prospect-msg', segments: ['prospects'] },
  { id: 'paused', segments: ['loyal-high-value'], weight: 0 },
];
const C = Object.fromEntries(creatives.map((c, i) => [c.id, i]));
const lineItems: SelectorLineItemDef[] = [
  { id: 'all', creatives: creatives.map((c) => c.id) },
  { id: 'untagged-only', creatives: ['generic'] },
  { id: 'tagged-only', creatives: ['loyal-msg', 'risk-msg'] },
];
const { dictionary, tree } = segmentation(TREE);
const ALL = () => true;

function selector(seed = 1, learnAfterImpressions = 1000) {
  return compileCreativeSelector(lineItems, creatives, dictionary, tree, resolveRotationSettings({ seed, learnAfterImpressions }));
}
function tiersFor(li: number, user: string[] | null): string[][] {
  const s = selector();
  s.prepareUser(user === null ? null : bitsOf(dictionary, user));
  return s.listCreatives(s.listFor(li)).map((tier) => tier.map((c) => creatives[c].id));
}

describe('creative selector: segment messages', () => {
  it("the user's most specific segment first, then its parents, untagged last", () => {
    expect(tiersFor(0, ['loyal-high-value'])).toEqual([['lhv-msg', 'lhv-msg-b', 'paused'], ['loyal-msg'], ['customers-msg'], ['generic']]);
  });

  it('the deepest segment wins over a shallower one', () => {
    expect(tiersFor(0, ['prospects', 'loyal-high-value', 'customers'])[0]).toEqual(['lhv-msg', 'lhv-msg-b', 'paused']);
  });

  it('an untagged segment falls back to its tagged ancestors', () => {
    expect(tiersFor(0, ['lal-top10'])).toEqual([['prospect-msg'], ['generic']]);
    expect(tiersFor(0, ['recent-30d'])).toEqual([['customers-msg'], ['generic']]);
  });

  it('equal depth: the segment declared first', () => {
    expect(tiersFor(0, ['at-risk', 'loyal'])[0]).toEqual(['loyal-msg']);
  });

  it('no segment, or no personal data: untagged creatives only', () => {
    expect(tiersFor(0, [])).toEqual([['generic']]);
    expect(tiersFor(0, null)).toEqual([['generic']]);
    expect(tiersFor(1, ['loyal-high-value'])).toEqual([['generic']]);
  });

  it('a line item with only tagged creatives does not bid for users outside their segments', () => {
    const s = selector();
    s.prepareUser(bitsOf(dictionary, ['news-context']));
    expect(s.pick(2, ALL)).toBe(-1);
    s.prepareUser(bitsOf(dictionary, ['at-risk']));
    expect(s.pick(2, ALL)).toBe(C['risk-msg']);
    s.prepareUser(bitsOf(dictionary, ['loyal-high-value']));
    expect(s.pick(2, ALL)).toBe(C['loyal-msg']);
  });

  it('format/block checks are the caller\'s: ineligible tiers are skipped in order', () => {
    const s = selector();
    s.prepareUser(bitsOf(dictionary, ['loyal-high-value']));
    expect(s.pick(0, (c) => c !== C['lhv-msg'] && c !== C['lhv-msg-b'])).toBe(C['loyal-msg']);
    expect(s.pick(0, (c) => c === C.generic)).toBe(C.generic);
    expect(s.pick(0, () => false)).toBe(-1);
  });
});

describe('creative selector: most specific segment, property', () => {
  // Random trees (several words of bits), random tags, random users: the lists equal a reference built from the
  // definitions (the user's segments deepest first, ties in segmentation order; the first under a tagged subtree).
  const treeArb = fc.integer({ min: 1, max: 80 }).chain((n) =>
    fc.record({
      parents: fc.tuple(...Array.from({ length: n }, (_, i) => (i === 0 ? fc.constant(-1) : fc.integer({ min: -1, max: i - 1 })))),
      creatives: fc.array(fc.array(fc.nat({ max: n - 1 }), { maxLength: 2 }), { minLength: 1, maxLength: 8 }),
      lineItems: fc.array(fc.array(fc.nat({ max: 7 }), { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 4 }),
      users: fc.array(fc.option(fc.array(fc.nat({ max: n - 1 }), { maxLength: 12 }), { nil: null }), { minLength: 1, maxLength: 6 }),
    }),
  );
  it('listFor equals the reference', () => {
    fc.assert(
      fc.property(treeArb, (t) => {
        const n = t.parents.length;
        const ids = t.parents.map((_, i) => `s${i}`);
        const def = {
          width: Math.max(32, Math.ceil(n / 32) * 32),
          segments: t.parents.map((p, i) => ({ id: ids[i], name: ids[i], parent: p < 0 ? null : ids[p], kind: 'crm' as const })),
        };
        const { dictionary: dict, tree: tr, errors } = segmentation(def);
        expect(errors).toEqual([]);
        const crs: SelectorCreativeDef[] = t.creatives.map((segs, i) => ({ id: `c${i}`, segments: segs.map((b) => ids[b]) }));
        const lis: SelectorLineItemDef[] = t.lineItems.map((cs, i) => ({ id: `li${i}`, creatives: [...new Set(cs.filter((c) => c < crs.length))].map((c) => `c${c}`) }));
        const sel = compileCreativeSelector(lis, crs, dict, tr);
        for (const user of t.users) {
          sel.prepareUser(user === null ? null : bitsOf(dict, user.map((b) => ids[b])));
          lis.forEach((li, l) => {
            const own = li.creatives.map((id) => Number(id.slice(1)));
            const untagged = own.filter((c) => crs[c].segments!.length === 0);
            const tagged = (bit: number) => own.filter((c) => crs[c].segments!.includes(ids[bit]));
            const chain = (bit: number) => {
              const out: number[] = [];
              for (let b = bit; b !== -1; b = tr.parent[b]) out.push(b);
              return out;
            };
            const order = [...new Set(user ?? [])].sort((a, b) => tr.depth[b] - tr.depth[a] || a - b);
            const chosen = order.find((bit) => chain(bit).some((b) => tagged(b).length > 0));
            const expected: number[][] = [];
            if (chosen !== undefined) {
              const seen = new Set<number>();
              for (const b of chain(chosen)) {
                const tier = tagged(b).filter((c) => !seen.has(c));
                tier.forEach((c) => seen.add(c));
                if (tier.length > 0) expected.push(tier);
              }
            }
            if (untagged.length > 0) expected.push(untagged);
            expect(sel.listCreatives(sel.listFor(l))).toEqual(expected);
          });
        }
      }),
      { numRuns: 300, seed: 20261127 },
    );
  });
});

describe('creative selector: rotation', () => {
  it('weighted rotation follows the config weights (3:1, weight 0 paused) with a seeded stream', () => {
    const s = selector(42);
    s.prepareUser(bitsOf(dictionary, ['loyal-high-value']));
    const counts = new Map<number, number>();
    const n = 100_000;
    for (let i = 0; i < n; i++) {
      if (i % 4096 === 0) s.refresh(); // fresh uniforms, as the timer would
      const c = s.pick(0, ALL);
      counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    expect(counts.get(C.paused)).toBeUndefined();
    expect((counts.get(C['lhv-msg']) ?? 0) / n).toBeCloseTo(0.75, 1);
    expect(Math.abs((counts.get(C['lhv-msg']) ?? 0) / n - 0.75)).toBeLessThan(0.01);
    expect(Math.abs((counts.get(C['lhv-msg-b']) ?? 0) / n - 0.25)).toBeLessThan(0.01);
  });

  it('the same seed gives the same sequence', () => {
    const seq = () => {
      const s = selector(9);
      s.prepareUser(bitsOf(dictionary, ['loyal-high-value']));
      return Array.from({ length: 50 }, () => s.pick(0, ALL));
    };
    expect(seq()).toEqual(seq());
  });

  it('learned rotation (Thompson on CTR) once every eligible creative has enough impressions', () => {
    const s = selector(3, 1000);
    s.recordImpression(C['lhv-msg'], 5000);
    s.recordClick(C['lhv-msg'], 5); // 0.1 %
    s.recordImpression(C['lhv-msg-b'], 5000);
    s.recordClick(C['lhv-msg-b'], 40); // 0.8 %
    s.refresh();
    s.prepareUser(bitsOf(dictionary, ['loyal-high-value']));
    let b = 0;
    for (let i = 0; i < 10_000; i++) if (s.pick(0, ALL) === C['lhv-msg-b']) b++;
    expect(b / 10_000).toBeGreaterThan(0.95); // despite its weight of 1 vs 3

    // A creative under the threshold puts the tier back on weighted rotation (it must get its chance).
    const t = selector(3, 1000);
    t.recordImpression(C['lhv-msg'], 5000);
    t.recordClick(C['lhv-msg'], 5);
    t.recordImpression(C['lhv-msg-b'], 10);
    t.refresh();
    t.prepareUser(bitsOf(dictionary, ['loyal-high-value']));
    let a = 0;
    for (let i = 0; i < 10_000; i++) if (t.pick(0, ALL) === C['lhv-msg']) a++;
    expect(Math.abs(a / 10_000 - 0.75)).toBeLessThan(0.03);
  });

  it('Beta samples have the right mean', () => {
    const rng = mulberry32(5);
    let sum = 0;
    for (let i = 0; i < 20_000; i++) sum += sampleBeta(3, 7, rng);
    expect(sum / 20_000).toBeCloseTo(0.3, 2);
    let small = 0;
    for (let i = 0; i < 20_000; i++) small += sampleBeta(0.5, 0.5, rng);
    expect(small / 20_000).toBeCloseTo(0.5, 1);
  });

  it('counters carry over a reload by creative id; bad feedback is a typed error', () => {
    const old = selector();
    old.recordImpression(C['lhv-msg'], 10);
    const next = compileCreativeSelector([{ id: 'x', creatives: ['lhv-msg'] }], [{ id: 'lhv-msg', segments: ['loyal-high-value'] }], dictionary, tree);
    next.adoptCounters(old);
    expect(next.impressions[0]).toBe(10);
    expect(() => old.recordClick(99)).toThrow(SegbidError);
    expect(() => old.recordImpression(0, -1)).toThrow(SegbidError);
  });

  it('refresh of 1,000 creatives (64 posterior draws each) stays off the hot path in milliseconds', () => {
    const many = Array.from({ length: 1000 }, (_, i) => ({ id: `c${i}` }));
    const s = compileCreativeSelector([{ id: 'li', creatives: many.map((c) => c.id) }], many, dictionary, tree);
    for (let i = 0; i < 1000; i++) {
      s.recordImpression(i, 10_000 + i);
      s.recordClick(i, 10 + (i % 50));
    }
    const t0 = process.hrtime.bigint();
    s.refresh();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(`[measure] CreativeSelector.refresh, 1,000 creatives: ${ms.toFixed(1)} ms`);
    expect(ms).toBeLessThan(2000);
  });

  it('hot path cost', () => {
    const s = selector();
    const user = bitsOf(dictionary, ['loyal-high-value', 'prospects', 'news-context']);
    let sum = 0;
    const rounds = 200_000;
    s.prepareUser(user);
    for (let i = 0; i < 50_000; i++) sum += s.pick(0, ALL); // warm-up
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < rounds; i++) {
      if ((i & 63) === 0) s.prepareUser(user);
      sum += s.pick(0, ALL);
    }
    const ns = Number(process.hrtime.bigint() - t0) / rounds;
    console.log(`[measure] CreativeSelector.pick (3-creative tier, weighted): ${ns.toFixed(0)} ns`);
    expect(sum).toBeGreaterThan(0);
    expect(ns).toBeLessThan(2000);
  });
});
