/**
 * The targeting stage of the bid path: which candidate line items the user's segment bits match.
 *
 * Contract: built once per decider from the line items' compiled programs (indexed like config.lineItems);
 * `survivors(candidates, userBits)` clears the candidates whose targeting the user does not match and returns
 * whether any is left. Allocation-free; reads only typed arrays except for the rare program that has no simple
 * form.
 *
 * Three precomputed structures, cheapest first:
 *   - an inverted index: for each segment bit, the line items whose targeting needs it among a set of which the
 *     user must hold one (targetingRequirement), stored sparse (bit b's non-zero words are entries
 *     [indexStart[b], indexStart[b + 1]) of indexWord / indexMask: a segment is needed by a handful of line items,
 *     so its row has a few non-zero words). The user's bits OR their entries into `reach`; `always` holds the line
 *     items with no such set. A candidate outside reach cannot match: a thousand line items cost a few dozen ORs.
 *   - `exact`: line items whose index entry is their whole targeting (a segment, or any of some): a hit is a
 *     match, nothing is evaluated.
 *   - the simple forms (targeting.ts simpleForm: all / any / none masks) of every other line item that has one,
 *     side by side (line item i at i * words, read only over its non-zero words [simpleFrom, simpleTo)): a reached
 *     line item is tested against contiguous memory instead of its own program's three scattered arrays. The
 *     programs without a simple form run evalTargeting.
 */
import { evalTargeting, simpleForm, targetingRequirement, targetingRequirementIsExact, type TargetingProgram } from '../segments/targeting.js';

export class TargetingIndex {
  private readonly programs: readonly TargetingProgram[];
  private readonly indexStart: Int32Array;
  private readonly indexWord: Int32Array;
  private readonly indexMask: Int32Array;
  private readonly always: Uint32Array;
  private readonly reach: Uint32Array;
  private readonly exact: Uint32Array;
  private readonly simple: Uint32Array;
  private readonly simpleAll: Uint32Array;
  private readonly simpleAny: Uint32Array;
  private readonly simpleNone: Uint32Array;
  private readonly simpleHasAny: Uint8Array;
  private readonly simpleFrom: Uint8Array;
  private readonly simpleTo: Uint8Array;

  /** `userWords`: words of a user's bitset (the dictionary's); `lineWords`: words of a line-item bitset. */
  constructor(programs: readonly TargetingProgram[], userWords: number, lineWords: number) {
    const n = programs.length;
    const segmentBits = userWords * 32;
    this.programs = programs;
    this.always = new Uint32Array(lineWords);
    this.reach = new Uint32Array(lineWords);
    this.exact = new Uint32Array(lineWords);
    this.simple = new Uint32Array(lineWords);
    this.simpleAll = new Uint32Array(n * userWords);
    this.simpleAny = new Uint32Array(n * userWords);
    this.simpleNone = new Uint32Array(n * userWords);
    this.simpleHasAny = new Uint8Array(n);
    this.simpleFrom = new Uint8Array(n);
    this.simpleTo = new Uint8Array(n);
    const dense = new Uint32Array(segmentBits * lineWords); // while building; kept sparse below
    for (let i = 0; i < n; i++) {
      const p = programs[i];
      const word = i >>> 5;
      const bit = 1 << (i & 31);
      const need = targetingRequirement(p);
      if (need === null) this.always[word] |= bit;
      else for (const b of need) if (b < segmentBits) dense[b * lineWords + word] |= bit;
      if (need !== null && targetingRequirementIsExact(p)) this.exact[word] |= bit;
      const s = p.words === userWords ? simpleForm(p) : null;
      if (s === null) continue;
      this.simple[word] |= bit;
      this.simpleAll.set(s.all, i * userWords);
      this.simpleAny.set(s.any, i * userWords);
      this.simpleNone.set(s.none, i * userWords);
      this.simpleHasAny[i] = s.hasAny ? 1 : 0;
      let from = 0;
      let to = userWords;
      while (from < to && (s.all[from] | s.any[from] | s.none[from]) === 0) from++;
      while (to > from && (s.all[to - 1] | s.any[to - 1] | s.none[to - 1]) === 0) to--;
      this.simpleFrom[i] = from;
      this.simpleTo[i] = to;
    }
    let entries = 0;
    for (let k = 0; k < dense.length; k++) if (dense[k] !== 0) entries++;
    this.indexStart = new Int32Array(segmentBits + 1);
    this.indexWord = new Int32Array(entries);
    this.indexMask = new Int32Array(entries);
    let e = 0;
    for (let b = 0; b < segmentBits; b++) {
      this.indexStart[b] = e;
      for (let w = 0; w < lineWords; w++) {
        const m = dense[b * lineWords + w];
        if (m === 0) continue;
        this.indexWord[e] = w;
        this.indexMask[e++] = m;
      }
    }
    this.indexStart[segmentBits] = e;
  }

  /** Clears the candidates the user does not match (`user`: the request's bits). False when none is left. */
  survivors(cand: Uint32Array, user: Uint32Array): boolean {
    const reach = this.reach;
    reach.set(this.always);
    const start = this.indexStart;
    const word = this.indexWord;
    const mask = this.indexMask;
    const uw = user.length;
    for (let w = 0; w < uw; w++) {
      let y = user[w];
      while (y !== 0) {
        const low = y & -y;
        const bit = (w << 5) + 31 - Math.clz32(low);
        y ^= low;
        for (let e = start[bit], end = start[bit + 1]; e < end; e++) reach[word[e]] |= mask[e];
      }
    }
    const exact = this.exact;
    const simple = this.simple;
    const sAll = this.simpleAll;
    const sAny = this.simpleAny;
    const sNone = this.simpleNone;
    let any = 0;
    for (let w = 0; w < cand.length; w++) {
      let x = (cand[w] &= reach[w]) & ~exact[w];
      while (x !== 0) {
        const low = x & -x;
        const i = (w << 5) + 31 - Math.clz32(low);
        x ^= low;
        if ((simple[w] & low) !== 0) {
          // all bits held, no excluded bit held, one of the any-group held (when there is one)
          let ok = true;
          let anyHit = this.simpleHasAny[i] === 0;
          for (let k = this.simpleFrom[i], to = this.simpleTo[i], base = i * uw; k < to; k++) {
            const u = user[k];
            const a = sAll[base + k];
            if ((u & a) !== (a | 0) || (u & sNone[base + k]) !== 0) {
              ok = false;
              break;
            }
            if ((u & sAny[base + k]) !== 0) anyHit = true;
          }
          if (!ok || !anyHit) cand[w] &= ~low;
        } else if (!evalTargeting(this.programs[i], user)) cand[w] &= ~low;
      }
      any |= cand[w];
    }
    return any !== 0;
  }
}
