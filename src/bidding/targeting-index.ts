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
 *     [indexStart[b], indexStart[b + 1]) of `index`, (word, mask) pairs: a segment is needed by a handful of
 *     line items, so its row has a few non-zero words). The user's bits OR their entries into `reach`; `always`
 *     holds the line items with no such set. A candidate outside reach cannot match: a thousand line items cost a few dozen ORs.
 *   - `exact`: line items whose index entry is their whole targeting (a segment, or any of some): a hit is a
 *     match, nothing is evaluated.
 *   - the simple forms (targeting.ts simpleForm: all / any / none masks) of every other line item that has one,
 *     packed: only its non-zero words, each as four int32 side by side (word, all, any, none), line item i's at
 *     [simpleStart[i], simpleStart[i + 1]). A reached line item is tested against one or two entries of one
 *     cache line (1.7 words on average on the 1,000 line item config), instead of its program's three scattered
 *     arrays or three dense per-line-item rows. The programs without a simple form run evalTargeting.
 */
import { evalTargeting, simpleForm, targetingRequirement, targetingRequirementIsExact, type TargetingProgram } from '../segments/targeting.js';

export class TargetingIndex {
  private readonly programs: readonly TargetingProgram[];
  private readonly indexStart: Int32Array;
  /** (line-item word, mask) pairs of the inverted index; bit b's at [indexStart[b], indexStart[b + 1]). */
  private readonly index: Int32Array;
  private readonly always: Uint32Array;
  private readonly reach: Uint32Array;
  private readonly exact: Uint32Array;
  private readonly simple: Uint32Array;
  /** (word, all, any, none) per non-zero word of each simple form; line item i's at [simpleStart[i], simpleStart[i + 1]). */
  private readonly simpleEntries: Int32Array;
  private readonly simpleStart: Int32Array;
  private readonly simpleHasAny: Uint8Array;

  /** `userWords`: words of a user's bitset (the dictionary's); `lineWords`: words of a line-item bitset. */
  constructor(programs: readonly TargetingProgram[], userWords: number, lineWords: number) {
    const n = programs.length;
    const segmentBits = userWords * 32;
    this.programs = programs;
    this.always = new Uint32Array(lineWords);
    this.reach = new Uint32Array(lineWords);
    this.exact = new Uint32Array(lineWords);
    this.simple = new Uint32Array(lineWords);
    this.simpleHasAny = new Uint8Array(n);
    this.simpleStart = new Int32Array(n + 1);
    const packed: number[] = [];
    const dense = new Uint32Array(segmentBits * lineWords); // while building; kept sparse below
    for (let i = 0; i < n; i++) {
      const p = programs[i];
      const word = i >>> 5;
      const bit = 1 << (i & 31);
      const need = targetingRequirement(p);
      if (need === null) this.always[word] |= bit;
      else for (const b of need) if (b < segmentBits) dense[b * lineWords + word] |= bit;
      if (need !== null && targetingRequirementIsExact(p)) this.exact[word] |= bit;
      this.simpleStart[i] = packed.length;
      const s = p.words === userWords ? simpleForm(p) : null;
      if (s === null) continue;
      this.simple[word] |= bit;
      this.simpleHasAny[i] = s.hasAny ? 1 : 0;
      for (let k = 0; k < userWords; k++) {
        if ((s.all[k] | s.any[k] | s.none[k]) !== 0) packed.push(k, s.all[k] | 0, s.any[k] | 0, s.none[k] | 0);
      }
    }
    this.simpleStart[n] = packed.length;
    this.simpleEntries = Int32Array.from(packed);
    let entries = 0;
    for (let k = 0; k < dense.length; k++) if (dense[k] !== 0) entries++;
    this.indexStart = new Int32Array(segmentBits + 1);
    this.index = new Int32Array(2 * entries);
    let e = 0;
    for (let b = 0; b < segmentBits; b++) {
      this.indexStart[b] = e;
      for (let w = 0; w < lineWords; w++) {
        const m = dense[b * lineWords + w];
        if (m === 0) continue;
        this.index[e++] = w;
        this.index[e++] = m;
      }
    }
    this.indexStart[segmentBits] = e;
  }

  /** Clears the candidates the user does not match (`user`: the request's bits). False when none is left. */
  survivors(cand: Uint32Array, user: Uint32Array): boolean {
    const reach = this.reach;
    reach.set(this.always);
    const start = this.indexStart;
    const index = this.index;
    const uw = user.length;
    for (let w = 0; w < uw; w++) {
      let y = user[w];
      while (y !== 0) {
        const low = y & -y;
        const bit = (w << 5) + 31 - Math.clz32(low);
        y ^= low;
        for (let e = start[bit], end = start[bit + 1]; e < end; e += 2) reach[index[e]] |= index[e + 1];
      }
    }
    const exact = this.exact;
    const simple = this.simple;
    const entries = this.simpleEntries;
    const entryStart = this.simpleStart;
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
          for (let e = entryStart[i], end = entryStart[i + 1]; e < end; e += 4) {
            const u = user[entries[e]];
            const a = entries[e + 1];
            if ((u & a) !== a || (u & entries[e + 3]) !== 0) {
              ok = false;
              break;
            }
            if ((u & entries[e + 2]) !== 0) anyHit = true;
          }
          if (!ok || !anyHit) cand[w] &= ~low;
        } else if (!evalTargeting(this.programs[i], user)) cand[w] &= ~low;
      }
      any |= cand[w];
    }
    return any !== 0;
  }
}
