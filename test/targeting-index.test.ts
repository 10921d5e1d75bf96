/**
 * The inverted targeting index of the bid path (decide.ts) rests on targetingRequirement: a user who matches a
 * program holds one of its required bits (soundness), and for an exact requirement, holding one is matching.
 * Checked on random expressions and bitsets against the program itself.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compileTargeting, evalSimple, evalTargeting, simpleForm, targetingRequirement, targetingRequirementIsExact } from '../src/segments/targeting.js';
import type { TargetingExpr } from '../src/config/types.js';
import { targetingExprArbitrary } from './helpers/targeting-arbitrary.js';
import { TargetingIndex } from '../src/bidding/targeting-index.js';

const SEGMENTS = Array.from({ length: 40 }, (_, i) => `s${i}`);
const bitOf = new Map(SEGMENTS.map((s, i) => [s, i * 5] as const)); // spread over 7 words
const WORDS = 7;

const expr = targetingExprArbitrary(SEGMENTS);

/** A user: the segments held, as the bitset a program reads. */
const heldSegments = fc.array(fc.constantFrom(...SEGMENTS), { maxLength: 12 });
function bitsetOf(held: string[]): Uint32Array {
  const bits = new Uint32Array(WORDS);
  for (const id of held) bits[bitOf.get(id)! >>> 5] |= 1 << (bitOf.get(id)! & 31);
  return bits;
}

/** The compiled program of an expression over this file's dictionary. */
const programOf = (e: TargetingExpr | undefined) => compileTargeting(e, bitOf, WORDS, '/t', []);

const holdsOne = (bits: Uint32Array, need: number[]) => need.some((b) => (bits[b >>> 5] & (1 << (b & 31))) !== 0);

describe('targeting requirement (inverted index)', () => {
  it('is sound on any expression and bitset; exact when it says so', () => {
    let exactSeen = 0;
    let restrictedSeen = 0;
    fc.assert(
      fc.property(expr, heldSegments, (e, held) => {
        const bits = bitsetOf(held);
        const program = programOf(e);
        const need = targetingRequirement(program);
        const match = evalTargeting(program, bits);
        if (need !== null) {
          restrictedSeen++;
          if (match) expect(holdsOne(bits, need)).toBe(true);
          if (targetingRequirementIsExact(program)) {
            exactSeen++;
            expect(holdsOne(bits, need)).toBe(match);
          }
        }
      }),
      { numRuns: 3000 },
    );
    // The property is not vacuous: both kinds of programs were drawn.
    expect(restrictedSeen).toBeGreaterThan(300);
    expect(exactSeen).toBeGreaterThan(100);
  });

  it('picks one bit of an `all`, the union of an `any`, and nothing for a `none`', () => {
    const req = (e: TargetingExpr) => targetingRequirement(programOf(e));
    expect(req({ all: ['s1', 's2'] })).toHaveLength(1);
    expect(req({ any: ['s1', 's2'] })).toEqual([5, 10]);
    expect(req({ none: ['s1'] })).toBeNull();
    expect(req({ all: ['s3', { none: ['s1'] }] })).toEqual([15]);
    expect(req({ any: ['s3', { none: ['s1'] }] })).toBeNull();
    expect(targetingRequirement(programOf(undefined))).toBeNull();
  });

  it('a simple form, when a program has one, matches exactly the users the program matches', () => {
    let simpleSeen = 0;
    let otherSeen = 0;
    fc.assert(
      fc.property(expr, heldSegments, (e, held) => {
        const bits = bitsetOf(held);
        const program = programOf(e);
        const simple = simpleForm(program);
        if (simple === null) {
          otherSeen++;
          return;
        }
        simpleSeen++;
        expect(evalSimple(simple, bits)).toBe(evalTargeting(program, bits));
      }),
      { numRuns: 5000 },
    );
    expect(simpleSeen).toBeGreaterThan(1000);
    expect(otherSeen).toBeGreaterThan(100);
  });

  it('reduces the usual shapes to masks, and refuses what masks cannot say', () => {
    const simple = (e: TargetingExpr | undefined) => simpleForm(programOf(e));
    const bitsOf = (m: Uint32Array) => Array.from({ length: WORDS * 32 }, (_, b) => b).filter((b) => (m[b >>> 5] & (1 << (b & 31))) !== 0);
    const s1 = simple({ all: ['s1', { none: ['s2', 's3'] }, { any: ['s4', 's5'] }] })!;
    expect([bitsOf(s1.all), bitsOf(s1.none), bitsOf(s1.any), s1.hasAny]).toEqual([[5], [10, 15], [20, 25], true]);
    const s2 = simple({ none: [{ any: ['s1', 's2'] }, 's3'] })!;
    expect([bitsOf(s2.all), bitsOf(s2.none), s2.hasAny]).toEqual([[], [5, 10, 15], false]);
    expect(simple(undefined)).toEqual(expect.objectContaining({ hasAny: false }));
    expect(simple({ any: ['s1', { all: ['s2', 's3'] }] })).toBeNull(); // a disjunction of a conjunction
    expect(simple({ all: [{ any: ['s1', 's2'] }, { any: ['s3', 's4'] }] })).toBeNull(); // two any-groups
    expect(simple({ none: [{ all: ['s1', 's2'] }] })).toBeNull(); // a negated conjunction
  });

  it('the bid path stage (TargetingIndex.survivors) keeps exactly the candidates whose program matches', () => {
    let kept = 0;
    let dropped = 0;
    fc.assert(
      fc.property(
        fc.array(fc.option(expr, { nil: undefined, freq: 8 }), { minLength: 1, maxLength: 70 }),
        heldSegments,
        fc.integer(),
        (exprs, held, candSeed) => {
          const programs = exprs.map((e) => programOf(e));
          const lineWords = Math.ceil(programs.length / 32);
          const index = new TargetingIndex(programs, WORDS, lineWords);
          const user = bitsetOf(held);
          const cand = new Uint32Array(lineWords);
          // A candidate set from the seed (some line items already out, as after the supply stage).
          let x = candSeed | 1;
          for (let i = 0; i < programs.length; i++) {
            x ^= x << 13;
            x ^= x >>> 17;
            x ^= x << 5;
            if ((x & 3) !== 0) cand[i >>> 5] |= 1 << (i & 31);
          }
          const before = cand.slice();
          const any = index.survivors(cand, user);
          let left = 0;
          for (let i = 0; i < programs.length; i++) {
            const was = (before[i >>> 5] & (1 << (i & 31))) !== 0;
            const is = (cand[i >>> 5] & (1 << (i & 31))) !== 0;
            expect(is).toBe(was && evalTargeting(programs[i], user));
            if (is) left++;
            if (was) (is ? kept++ : dropped++);
          }
          expect(any).toBe(left > 0);
        },
      ),
      { numRuns: 1500 },
    );
    expect(kept).toBeGreaterThan(1000);
    expect(dropped).toBeGreaterThan(1000);
  });
});
