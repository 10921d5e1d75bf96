/** Lookalike learning: lift tables, the reach cap on the threshold, and lookalike bits in compiled CRM rows. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { effectiveThreshold, learnLookalike } from '../src/segments/compiler/lookalike.js';
import { SegmentCompiler } from '../src/segments/compiler/segment-compiler.js';
import { validateSegmentation } from '../src/segments/rules-schema.js';
import { RequestSegmenter } from '../src/segments/request-bits.js';
import { KEY_KIND, hashKey, keyHash } from '../src/segments/key-hash.js';
import { mulberry32 } from '../src/common/prng.js';

describe('effectiveThreshold', () => {
  it('is the smallest threshold >= the rule that holds the reach cap', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 200 }), fc.integer({ min: 0, max: 60 }), fc.double({ min: 0.001, max: 1, noNaN: true }), (raw, rule, reach) => {
        const scores = Int32Array.from(raw);
        const t = effectiveThreshold(scores, rule, reach);
        const cap = Math.floor(reach * scores.length + 1e-9);
        const passing = (x: number) => raw.filter((s) => s >= x).length;
        expect(t).toBeGreaterThanOrEqual(rule);
        expect(passing(t)).toBeLessThanOrEqual(cap);
        if (t > rule) expect(passing(t - 1)).toBeGreaterThan(cap);
      }),
      { numRuns: 500 },
    );
  });
});

describe('learnLookalike', () => {
  it('keeps over-represented provider segments with log-lift weights, drops noise and rare ones', () => {
    // 1000 users with 3rd-party data; seed = first 200. "6:hot" on 80% of the seed and 10% of the others,
    // "6:noise" on 30% of everyone, "6:rare" on 3 seed users only.
    const rand = mulberry32(7);
    const start: number[] = [0];
    const ids: number[] = [];
    const seed = (u: number) => u < 200;
    for (let u = 0; u < 1000; u++) {
      if (rand() < (seed(u) ? 0.8 : 0.1)) ids.push(0);
      if (rand() < 0.3) ids.push(1);
      if (u < 3) ids.push(2);
      ids.push(3); // everyone carries "6:all": lift 1
      start.push(ids.length);
    }
    const data = { users: 1000, featStart: Uint32Array.from(start), featIds: Uint32Array.from(ids), vocabulary: ['6:hot', '6:noise', '6:rare', '6:all'] };
    const { table, scores } = learnLookalike('lal', { seed: 's', threshold: 1, reach: 0.5 }, data, seed);
    expect(table.providers).toEqual(['6']);
    expect(table.segmentIds).toEqual(['hot']);
    // lift ~ 0.8 / (0.8*0.2 + 0.1*0.8) = 3.3 -> ln ~ 1.2
    expect(table.weights[0]).toBeGreaterThan(1000);
    expect(table.weights[0]).toBeLessThan(1400);
    expect(table.scoredBase).toBe(1000);
    expect(table.seedSize).toBe(200);
    expect(scores[0] === table.weights[0] || scores[0] === 0).toBe(true);
    expect(table.passing).toBe(Array.from(scores).filter((s) => s >= table.threshold).length);
  });
});

describe('lookalikes through the compiler', () => {
  it('sets the bit for passing non-seed CRM users only, holds the reach, and scores requests the same way', () => {
    const def = validateSegmentation(
      {
        segments: [
          { id: 'seed', name: 'seed', kind: 'crm', rule: { col: 'v', gte: 1 } },
          { id: 'lal', name: 'lal', kind: 'lookalike', rule: { seed: 'seed', threshold: 0.5, reach: 0.15 } },
        ],
      },
      't',
    );
    const c = new SegmentCompiler(def);
    const rand = mulberry32(3);
    const users: { v: number; tp: string }[] = [];
    for (let u = 0; u < 4000; u++) {
      const v = u % 5 === 0 ? 1 : 0;
      const tp = [rand() < (v ? 0.7 : 0.1) ? '6:a' : '', rand() < (v ? 0.6 : 0.1) ? '9:b' : '', rand() < 0.5 ? '6:n' : ''].filter(Boolean).join(';');
      users.push({ v, tp });
      const rec: Record<string, unknown> = { v, tp_segments: tp, buyeruid: `u${u}` };
      c.addRecord(c.columns.map((col) => rec[col]));
    }
    const { store, report } = c.finish('x');
    const t = store.header.lookalikes![0];
    expect(t.segmentIds.sort()).toEqual(['a', 'b']);
    expect(t.passing / t.scoredBase).toBeLessThanOrEqual(0.15);
    const seg = new RequestSegmenter(def, store.header);
    let members = 0;
    users.forEach((u, i) => {
      hashKey(KEY_KIND.buyeruid, `u${i}`);
      const out = new Uint32Array(1);
      store.orInto(keyHash.hi, keyHash.lo, out);
      const inLal = (out[0] & 2) !== 0;
      if (inLal) members++;
      if (u.v === 1) expect(inLal).toBe(false);
      // The bid-time score of the same 3rd-party data agrees with the compiled row.
      const req = { user: { data: u.tp.split(';').filter(Boolean).map((p) => ({ id: p.split(':')[0], segment: [{ id: p.split(':')[1] }] })) } };
      const live = new Uint32Array(1);
      if (u.v === 1) live[0] |= 1;
      seg.orRequestBits(req, 0, live);
      expect((live[0] & 2) !== 0).toBe(inLal);
    });
    expect(members).toBeGreaterThan(0);
    expect(report.segments[1].users).toBe(members);
  });
});
