/** Compiled targeting programs (mask tests) agree with the naive recursive reading on any expression and bitset. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compileTargeting, evalTargeting, evalTargetingNaive } from '../src/segments/targeting.js';
import { targetingExprArbitrary } from './helpers/targeting-arbitrary.js';
import type { TargetingExpr } from '../src/config/types.js';

const SEGMENTS = Array.from({ length: 70 }, (_, i) => `s${i}`);
const bitOf = new Map(SEGMENTS.map((s, i) => [s, i * 3] as const)); // spread over 7 words

const expr = targetingExprArbitrary(SEGMENTS);

describe('targeting programs', () => {
  it('evalTargeting === evalTargetingNaive', () => {
    const words = 7;
    fc.assert(
      fc.property(expr, fc.uint32Array({ minLength: words, maxLength: words }), fc.double({ min: 0, max: 1, noNaN: true }), (e, raw, density) => {
        // Sparse and dense bitsets both: mask the random words down by `density`.
        const bits = new Uint32Array(words);
        for (let w = 0; w < words; w++) bits[w] = density < 0.5 ? raw[w] & (raw[(w + 1) % words] | 0) & 0x11111111 : raw[w];
        const errors: { path: string; message: string }[] = [];
        const program = compileTargeting(e, bitOf, words, '/t', errors);
        expect(errors).toEqual([]);
        const has = (id: string) => {
          const b = bitOf.get(id)!;
          return (bits[b >>> 5] & (1 << (b & 31))) !== 0;
        };
        expect(evalTargeting(program, bits)).toBe(evalTargetingNaive(e, has));
      }),
      { numRuns: 2000 },
    );
  });

  it('a conjunction of mask tests is evaluated as one (early exit), and agrees with the stack program', () => {
    const words = 7;
    const conjunctions = fc.array(
      fc.record({ kind: fc.constantFrom('all', 'any', 'none'), ids: fc.uniqueArray(fc.constantFrom(...SEGMENTS), { minLength: 1, maxLength: 4 }) }),
      { minLength: 1, maxLength: 4 },
    );
    let fast = 0;
    fc.assert(
      fc.property(conjunctions, fc.uint32Array({ minLength: words, maxLength: words }), (parts, raw) => {
        const e = { all: parts.map((p) => ({ [p.kind]: p.ids }) as TargetingExpr) };
        const program = compileTargeting(e, bitOf, words, '/t', []);
        if (program.conj !== null) fast++;
        const stackOnly = { ...program, conj: null };
        const bits = Uint32Array.from(raw, (x, w) => x & raw[(w + 3) % words]);
        const has = (id: string) => (bits[bitOf.get(id)! >>> 5] & (1 << (bitOf.get(id)! & 31))) !== 0;
        expect(evalTargeting(program, bits)).toBe(evalTargetingNaive(e, has));
        expect(evalTargeting(program, bits)).toBe(evalTargeting(stackOnly, bits));
      }),
      { numRuns: 1000 },
    );
    expect(fast).toBe(1000); // every one of these has the fast form
    expect(compileTargeting({ any: ['s1', { all: ['s2', 's3'] }] }, bitOf, words, '/t', []).conj).toBeNull();
    expect(compileTargeting('s4', bitOf, words, '/t', []).conj).not.toBeNull();
  });

  it('an absent expression matches everyone', () => {
    const program = compileTargeting(undefined, bitOf, 7, '/t', []);
    expect(evalTargeting(program, new Uint32Array(7))).toBe(true);
  });
});
