/**
 * Segment priors: the Beta priors (CTR, CVR) and the order-value prior a line item starts from, resolved once
 * per config. Each field is looked up independently: the line item's segment, then its parent, grandparent...,
 * then `priors.global`, then the built-in defaults below (none for the order value: a target_roas line item
 * whose chain has no order-value prior is a config error, because no default value in any currency is sensible).
 *
 * The segment of a line item is `strategy.segment` when given, else derived from its targeting:
 *   "seg"                      -> seg
 *   { all: ["a", "b", ...] }   -> the deepest plain segment id among the direct children (the narrowest audience)
 *   { any: ["a", "b", ...] }   -> the deepest common ancestor of the plain ids (a prior that covers all of them)
 *   anything else / none      -> no segment: the global prior
 */
import type { TargetingExpr } from '../../config/types.js';
import type { ErrorDetail } from '../../common/errors.js';
import type { PriorsDef, RatePriorDef, SegmentPriorDef, ValuePriorDef } from './schema.js';
import type { SegmentTree } from './segment-tree.js';

/** Built-in CTR prior: 0.1 %, worth 1,000 impressions. */
export const DEFAULT_CTR_PRIOR: RatePriorDef = { mean: 0.001, weight: 1000 };
/** Built-in conversion-per-click prior: 1 %, worth 100 clicks. */
export const DEFAULT_CVR_PRIOR: RatePriorDef = { mean: 0.01, weight: 100 };

export interface ResolvedPrior {
  ctr: RatePriorDef;
  cvr: RatePriorDef;
  orderValue: ValuePriorDef | null;
  /** Where each field came from, for the dashboard and the tests: a segment id, "global" or "default". */
  source: { ctr: string; cvr: string; orderValue: string };
}

/** The segment bit a line item's predictions are seeded from, or -1. */
export function lineItemSegmentBit(
  explicit: string | undefined,
  targeting: TargetingExpr | undefined,
  bitOf: ReadonlyMap<string, number>,
  tree: SegmentTree,
  path: string,
  errors: ErrorDetail[],
): number {
  if (explicit !== undefined) {
    const bit = bitOf.get(explicit);
    if (bit === undefined) errors.push({ path, message: `unknown segment "${explicit}"` });
    return bit ?? -1;
  }
  if (targeting === undefined) return -1;
  if (typeof targeting === 'string') return bitOf.get(targeting) ?? -1; // unknown ids are reported by targeting.ts
  if ('all' in targeting) {
    let best = -1;
    for (const c of targeting.all) {
      if (typeof c !== 'string') continue;
      const bit = bitOf.get(c);
      if (bit !== undefined && (best === -1 || tree.depth[bit] > tree.depth[best])) best = bit;
    }
    return best;
  }
  if ('any' in targeting) {
    let common = -2; // -2: nothing seen yet
    for (const c of targeting.any) {
      if (typeof c !== 'string') return -1; // a nested expression: no single audience to seed from
      const bit = bitOf.get(c);
      if (bit === undefined) return -1;
      common = common === -2 ? bit : commonAncestor(tree, common, bit);
      if (common === -1) return -1;
    }
    return common < 0 ? -1 : common;
  }
  return -1;
}

function commonAncestor(tree: SegmentTree, a: number, b: number): number {
  while (a !== -1 && b !== -1 && a !== b) {
    if (tree.depth[a] >= tree.depth[b]) a = tree.parent[a];
    else b = tree.parent[b];
  }
  return a === b ? a : -1;
}

/** Resolves the prior of one segment bit (-1 = no segment). */
export function resolvePrior(bit: number, priors: PriorsDef | undefined, tree: SegmentTree, segmentIds: readonly string[]): ResolvedPrior {
  const pick = <K extends keyof SegmentPriorDef>(field: K): { value: SegmentPriorDef[K] | undefined; source: string } => {
    for (let node = bit; node !== -1; node = tree.parent[node]) {
      const p = priors?.segments?.[segmentIds[node]];
      if (p !== undefined && p[field] !== undefined) return { value: p[field], source: segmentIds[node] };
    }
    const g = priors?.global?.[field];
    return g !== undefined ? { value: g, source: 'global' } : { value: undefined, source: 'default' };
  };
  const ctr = pick('ctr');
  const cvr = pick('cvr');
  const ov = pick('orderValue');
  return {
    ctr: (ctr.value as RatePriorDef | undefined) ?? DEFAULT_CTR_PRIOR,
    cvr: (cvr.value as RatePriorDef | undefined) ?? DEFAULT_CVR_PRIOR,
    orderValue: (ov.value as ValuePriorDef | undefined) ?? null,
    source: { ctr: ctr.source, cvr: cvr.source, orderValue: ov.value === undefined ? 'none' : ov.source },
  };
}

/** Checks that every segment id used as a key of `priors.segments` exists. */
export function checkPriors(priors: PriorsDef | undefined, bitOf: ReadonlyMap<string, number>, errors: ErrorDetail[]): void {
  for (const id of Object.keys(priors?.segments ?? {})) {
    if (!bitOf.has(id)) errors.push({ path: `/priors/segments/${id}`, message: `unknown segment "${id}"` });
  }
}
