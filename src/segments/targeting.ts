/**
 * Targeting expressions compiled to mask programs, once per config. A program is a postfix sequence of
 * (opcode, argument) pairs over precomputed masks; evaluating it reads the user's bitset and a preallocated
 * stack and allocates nothing. Runs of plain segment ids inside all/any/none collapse into one mask test, so
 * the common case `{all:[a,b,c]}` is a single AND-compare per word, and each mask test reads only the words
 * between its first and last non-zero word (precomputed: a few segments of a 256-bit tree touch 1-3 words of 8).
 */
import type { TargetingExpr } from '../config/types.js';
import type { ErrorDetail } from '../common/errors.js';

const OP_ALL = 1; // push (bits & mask) == mask
const OP_ANY = 2; // push (bits & mask) != 0
const OP_NONE = 3; // push (bits & mask) == 0
const OP_AND = 4; // pop n, push their conjunction
const OP_OR = 5; // pop n, push their disjunction
const OP_NOT = 6; // negate the top

export interface TargetingProgram {
  /** (opcode, arg) pairs; empty = matches everyone. */
  readonly code: Int32Array;
  /** masks[m * words .. (m+1) * words) */
  readonly masks: Uint32Array;
  /** Per mask m: its non-zero words are within [ranges[2m], ranges[2m+1]) (empty for an all-zero mask). */
  readonly ranges: Int32Array;
  readonly words: number;
  /** Stack slots the program needs. */
  readonly depth: number;
  /**
   * The program as a conjunction of mask tests, when it is one (a single test, or an AND of tests only: the usual
   * shape, e.g. all of [any of some segments, none of others, ...]): (opcode, mask) pairs, evaluated with an exit
   * at the first test that fails instead of through the stack. null for any other shape.
   */
  readonly conj: Int32Array | null;
}

const MAX_STACK = 256;
const stack = new Uint8Array(MAX_STACK);

export function compileTargeting(
  expr: TargetingExpr | undefined,
  bitOf: ReadonlyMap<string, number>,
  words: number,
  path: string,
  errors: ErrorDetail[],
): TargetingProgram {
  const code: number[] = [];
  const masks: number[] = [];
  let depth = 0;
  let maxDepth = 0;
  const push = () => {
    depth++;
    if (depth > maxDepth) maxDepth = depth;
  };
  const maskOf = (segmentIds: { id: string; path: string }[]): number => {
    const m = masks.length / words;
    for (let w = 0; w < words; w++) masks.push(0);
    for (const { id, path: p } of segmentIds) {
      const bit = bitOf.get(id);
      if (bit === undefined) {
        errors.push({ path: p, message: `unknown segment "${id}"` });
        continue;
      }
      masks[m * words + (bit >>> 5)] |= 1 << (bit & 31);
    }
    return m;
  };
  const emit = (e: TargetingExpr, p: string): void => {
    if (typeof e === 'string') {
      code.push(OP_ALL, maskOf([{ id: e, path: p }]));
      push();
      return;
    }
    const [kind, children] =
      'all' in e ? (['all', e.all] as const) : 'any' in e ? (['any', e.any] as const) : (['none', e.none] as const);
    const leaves: { id: string; path: string }[] = [];
    const nested: { expr: TargetingExpr; path: string }[] = [];
    children.forEach((c, i) => {
      const cp = `${p}/${kind}/${i}`;
      if (typeof c === 'string') leaves.push({ id: c, path: cp });
      else nested.push({ expr: c, path: cp });
    });
    let parts = 0;
    if (leaves.length) {
      // none of leaves == (bits & mask) == 0; nested parts of a `none` are OR-ed then negated below.
      code.push(kind === 'all' ? OP_ALL : kind === 'any' ? OP_ANY : OP_NONE, maskOf(leaves));
      push();
      parts++;
    }
    const before = depth;
    for (const n of nested) {
      emit(n.expr, n.path);
      parts++;
    }
    if (kind === 'none' && nested.length) {
      // none(leaves, nested...) = NONE(leaves) AND NOT(OR(nested...))
      if (nested.length > 1) code.push(OP_OR, nested.length);
      code.push(OP_NOT, 0);
      depth = before + 1;
      parts = leaves.length ? 2 : 1;
    }
    if (parts > 1) {
      code.push(kind === 'any' ? OP_OR : OP_AND, parts);
      depth -= parts - 1;
    } else {
      depth = depth - parts + 1;
    }
  };
  if (expr !== undefined) emit(expr, path);
  if (maxDepth > MAX_STACK) errors.push({ path, message: `targeting nested too deeply (${maxDepth} > ${MAX_STACK})` });
  const maskCount = masks.length / words;
  const ranges = new Int32Array(maskCount * 2);
  for (let m = 0; m < maskCount; m++) {
    let from = 0;
    let to = words;
    while (from < to && masks[m * words + from] === 0) from++;
    while (to > from && masks[m * words + to - 1] === 0) to--;
    ranges[2 * m] = from;
    ranges[2 * m + 1] = to;
  }
  return { code: Int32Array.from(code), masks: Uint32Array.from(masks), ranges, words, depth: maxDepth, conj: conjunctionOf(code) };
}

/** The (opcode, mask) pairs of a program made of mask tests only, or of mask tests and one AND of them all. */
function conjunctionOf(code: readonly number[]): Int32Array | null {
  const n = code.length / 2;
  if (n === 0) return null;
  let tests = n;
  if (code[2 * (n - 1)] === OP_AND) {
    tests = n - 1;
    if (code[2 * (n - 1) + 1] !== tests) return null;
  } else if (n !== 1) return null;
  for (let k = 0; k < tests; k++) if (code[2 * k] > OP_NONE) return null;
  return Int32Array.from(code.slice(0, 2 * tests));
}

/** Evaluates a compiled program against a user's bitset. Allocation-free. */
export function evalTargeting(p: TargetingProgram, bits: Uint32Array): boolean {
  const conj = p.conj;
  if (conj !== null) return evalConjunction(p, conj, bits);
  const code = p.code;
  if (code.length === 0) return true;
  const masks = p.masks;
  const ranges = p.ranges;
  const words = p.words;
  let sp = 0;
  for (let pc = 0; pc < code.length; pc += 2) {
    const op = code[pc];
    const arg = code[pc + 1];
    if (op <= OP_NONE) {
      const base = arg * words;
      const to = ranges[2 * arg + 1];
      let result = 1;
      if (op === OP_ALL) {
        for (let w = ranges[2 * arg]; w < to; w++) {
          const m = masks[base + w];
          // `& m` is a signed int32; m from the Uint32Array is unsigned: compare as int32 or bit 31 never matches.
          if ((bits[w] & m) !== (m | 0)) { result = 0; break; }
        }
      } else {
        let any = 0;
        for (let w = ranges[2 * arg]; w < to; w++) {
          if ((bits[w] & masks[base + w]) !== 0) { any = 1; break; }
        }
        result = op === OP_ANY ? any : 1 - any;
      }
      stack[sp++] = result;
    } else if (op === OP_NOT) {
      stack[sp - 1] = 1 - stack[sp - 1];
    } else {
      let acc = op === OP_AND ? 1 : 0;
      for (let i = sp - arg; i < sp; i++) acc = op === OP_AND ? acc & stack[i] : acc | stack[i];
      sp -= arg;
      stack[sp++] = acc;
    }
  }
  return stack[0] === 1;
}

/** evalTargeting of a conjunction (TargetingProgram.conj): false at the first mask test that fails. */
function evalConjunction(p: TargetingProgram, conj: Int32Array, bits: Uint32Array): boolean {
  const masks = p.masks;
  const ranges = p.ranges;
  const words = p.words;
  for (let k = 0; k < conj.length; k += 2) {
    const op = conj[k];
    const m = conj[k + 1];
    const base = m * words;
    const to = ranges[2 * m + 1];
    if (op === OP_ALL) {
      for (let w = ranges[2 * m]; w < to; w++) {
        const mask = masks[base + w] | 0; // int32, as `bits[w] & mask` is (bit 31 would never compare equal)
        if ((bits[w] & mask) !== mask) return false;
      }
    } else {
      let hit = 0;
      for (let w = ranges[2 * m]; w < to; w++) hit |= bits[w] & masks[base + w];
      if ((hit !== 0) !== (op === OP_ANY)) return false;
    }
  }
  return true;
}

/** Reference evaluator on segment ids, for tests: the obvious recursive reading of the expression. */
export function evalTargetingNaive(e: TargetingExpr | undefined, has: (segmentId: string) => boolean): boolean {
  if (e === undefined) return true;
  if (typeof e === 'string') return has(e);
  if ('all' in e) return e.all.every((c) => evalTargetingNaive(c, has));
  if ('any' in e) return e.any.some((c) => evalTargetingNaive(c, has));
  return !e.none.some((c) => evalTargetingNaive(c, has));
}

/**
 * A necessary condition of a compiled program, for the inverted index of the bid path (decide.ts): the bits of
 * which the user must have at least one for the program to match, or null when no such set can be derived (the
 * program matches everyone, or its match can rest on an absence: `none`, `not`). Sound, not exact: a user who
 * has one of the bits may still not match, so the program is evaluated anyway; a user who has none of them
 * never matches. `all` of several parts keeps the smallest requirement (`rarity(bit)` ranks bits: lower = rarer,
 * e.g. the segment's volume; a single bit of an `all` mask is a requirement on its own).
 */
/**
 * True when targetingRequirement(p) is exact, not only necessary: the program is "the user has one of these
 * bits" (a single `any` of segments, or a single segment), so a hit in the index is a match, with no evaluation.
 */
export function targetingRequirementIsExact(p: TargetingProgram): boolean {
  const code = p.code;
  if (code.length !== 2) return false;
  if (code[0] === OP_ANY) return true;
  if (code[0] !== OP_ALL) return false;
  let bits = 0;
  for (let i = code[1] * p.words; i < (code[1] + 1) * p.words; i++) bits += popcount(p.masks[i]);
  return bits === 1;
}

function popcount(x: number): number {
  let n = 0;
  for (let v = x >>> 0; v !== 0; v &= v - 1) n++;
  return n;
}

export function targetingRequirement(p: TargetingProgram, rarity: (bit: number) => number = (bit) => -bit): number[] | null {
  const code = p.code;
  if (code.length === 0) return null;
  const words = p.words;
  const reqs: (number[] | null)[] = [];
  const bitsOf = (m: number): number[] => {
    const out: number[] = [];
    for (let w = 0; w < words; w++) {
      const x = p.masks[m * words + w];
      for (let b = 0; b < 32; b++) if ((x >>> b) & 1) out.push(w * 32 + b);
    }
    return out;
  };
  const cost = (r: number[]): number => r.reduce((s, bit) => s + 1 + 1e-9 * rarity(bit), 0);
  for (let pc = 0; pc < code.length; pc += 2) {
    const op = code[pc];
    const arg = code[pc + 1];
    if (op === OP_ALL) {
      const bits = bitsOf(arg);
      // An empty `all` mask always holds; otherwise each of its bits is required: keep the rarest one.
      reqs.push(bits.length === 0 ? null : [bits.reduce((best, b) => (rarity(b) < rarity(best) ? b : best))]);
    } else if (op === OP_ANY) {
      const bits = bitsOf(arg);
      // `any` of nothing never holds: an empty requirement (nobody matches) is still sound.
      reqs.push(bits);
    } else if (op === OP_NONE || op === OP_NOT) {
      if (op === OP_NOT) reqs.pop();
      reqs.push(null);
    } else {
      const parts = reqs.splice(reqs.length - arg, arg);
      if (op === OP_AND) {
        let best: number[] | null = null;
        for (const r of parts) if (r !== null && (best === null || cost(r) < cost(best))) best = r;
        reqs.push(best);
      } else {
        let union: number[] | null = [];
        for (const r of parts) {
          if (r === null) {
            union = null;
            break;
          }
          union.push(...r);
        }
        reqs.push(union === null ? null : [...new Set(union)].sort((a, b) => a - b));
      }
    }
  }
  return reqs.length === 1 ? reqs[0] : null;
}

/**
 * A program reduced to three masks, for the bid path's flat evaluation (decide.ts): it matches when
 * `(bits & all) == all`, `(bits & none) == 0` and, when `hasAny`, `(bits & any) != 0`. Null when the program is
 * not of that shape (a disjunction of conjunctions, two separate `any` groups, a negated conjunction...).
 * Why: the bid path evaluates every reached line item whose index hit is not exact. Evaluating its program
 * means loading that line item's own three typed arrays, scattered over the heap (a cache miss each); the masks
 * of every simple line item sit side by side in one array instead. Most real targeting has this shape:
 * a segment, all of some, any of some, minus an exclusion list, and each combined with the others by `all`.
 */
export interface SimpleTargeting {
  all: Uint32Array;
  any: Uint32Array;
  hasAny: boolean;
  none: Uint32Array;
}

/** A conjunction while the program is read: all bits, none bits, the any-groups (each a mask). */
interface Conjunction {
  all: Uint32Array;
  none: Uint32Array;
  anys: Uint32Array[];
}

export function simpleForm(p: TargetingProgram): SimpleTargeting | null {
  const words = p.words;
  const code = p.code;
  const zero = () => new Uint32Array(words);
  const maskOf = (m: number) => p.masks.slice(m * words, (m + 1) * words);
  const bitCount = (mask: Uint32Array) => mask.reduce((n, x) => n + popcount(x), 0);
  const isEmpty = (c: Conjunction) => bitCount(c.all) === 0 && bitCount(c.none) === 0 && c.anys.length === 0;
  /** The conjunction as "one of these bits" when it is one (a single bit, or a single any-group), else null. */
  const asDisjunction = (c: Conjunction): Uint32Array | null => {
    if (bitCount(c.none) !== 0) return null;
    if (c.anys.length === 0 && bitCount(c.all) === 1) return c.all;
    if (c.anys.length === 1 && bitCount(c.all) === 0) return c.anys[0];
    return null;
  };
  const stackOf: Conjunction[] = [];
  for (let pc = 0; pc < code.length; pc += 2) {
    const op = code[pc];
    const arg = code[pc + 1];
    if (op === OP_ALL) stackOf.push({ all: maskOf(arg), none: zero(), anys: [] });
    else if (op === OP_ANY) {
      // `any` of nothing never holds: not expressible as masks (an empty any-group would mean "always").
      if (bitCount(maskOf(arg)) === 0) return null;
      stackOf.push({ all: zero(), none: zero(), anys: [maskOf(arg)] });
    } else if (op === OP_NONE) stackOf.push({ all: zero(), none: maskOf(arg), anys: [] });
    else if (op === OP_AND) {
      const parts = stackOf.splice(stackOf.length - arg, arg);
      const c: Conjunction = { all: zero(), none: zero(), anys: [] };
      for (const part of parts) {
        for (let w = 0; w < words; w++) {
          c.all[w] |= part.all[w];
          c.none[w] |= part.none[w];
        }
        c.anys.push(...part.anys);
      }
      stackOf.push(c);
    } else if (op === OP_OR) {
      const parts = stackOf.splice(stackOf.length - arg, arg);
      const union = zero();
      for (const part of parts) {
        const d = isEmpty(part) ? null : asDisjunction(part);
        if (d === null) return null;
        for (let w = 0; w < words; w++) union[w] |= d[w];
      }
      stackOf.push({ all: zero(), none: zero(), anys: [union] });
    } else if (op === OP_NOT) {
      const top = stackOf.pop()!;
      const d = isEmpty(top) ? null : asDisjunction(top);
      if (d === null) return null;
      stackOf.push({ all: zero(), none: d, anys: [] });
    } else return null;
  }
  if (stackOf.length > 1) return null;
  const c = stackOf[0] ?? { all: zero(), none: zero(), anys: [] };
  // Two any-groups could each be satisfied by a different bit: not one mask test.
  if (c.anys.length > 1) return null;
  return { all: c.all, any: c.anys[0] ?? zero(), hasAny: c.anys.length === 1, none: c.none };
}

/** Evaluates a simple form (reference for tests; decide.ts inlines the same test over its flat arrays). */
export function evalSimple(s: SimpleTargeting, bits: Uint32Array): boolean {
  let anyHit = !s.hasAny;
  for (let w = 0; w < s.all.length; w++) {
    const u = bits[w] ?? 0;
    if ((u & s.all[w]) !== (s.all[w] | 0) || (u & s.none[w]) !== 0) return false;
    if ((u & s.any[w]) !== 0) anyHit = true;
  }
  return anyHit;
}
