/**
 * Which line items may bid when the privacy verdict forbids personal data.
 *
 * Contract
 * - Compiled once per config: a line-item bitset (same layout as SupplyTables: `words` 32-bit words) of the line
 *   items that NEED personal data. When a request's verdict says personalData=false, the bid path clears those
 *   bits from its candidates (one AND-NOT per word) and builds the user's bits from contextual signals only.
 * - A line item needs personal data when
 *     (a) its targeting names a personal segment ANYWHERE, including under `none`: without the user's data an
 *         exclusion ("prospects: none of customers") cannot be checked, and bidding would reach the excluded; or
 *     (b) it has a frequency cap (its own or its campaign's): a cap cannot be checked nor counted without a user
 *         key, and counting impressions per user is itself processing personal data.
 *   Multipliers from CRM tiers / lookalike bands do NOT block a line item: they just do not apply (factor 1).
 * - A segment is personal when its kind is crm, third_party or lookalike; `contextual` is not; a `group` is
 *   personal when any segment below it is (a group of CRM segments is a CRM audience).
 */
import type { TargetingExpr } from '../config/types.js';
import type { SegmentDictionary } from '../segments/segmentation.js';
import type { SegmentTree } from '../bidding/strategies/segment-tree.js';

/** Per segment bit: 1 = personal data. */
export function personalSegments(dictionary: SegmentDictionary, tree: SegmentTree): Uint8Array {
  const personal = new Uint8Array(tree.count);
  dictionary.segments.forEach((s, i) => {
    if (dictionary.bitOf.get(s.id) !== i) return;
    if (s.kind === 'crm' || s.kind === 'third_party' || s.kind === 'lookalike') {
      // The segment and every group above it.
      for (let node = i; node !== -1; node = tree.parent[node]) {
        if (node === i || dictionary.segments[node].kind === 'group') personal[node] = 1;
      }
    }
  });
  return personal;
}

function mentionsPersonal(expr: TargetingExpr | undefined, bitOf: ReadonlyMap<string, number>, personal: Uint8Array): boolean {
  if (expr === undefined) return false;
  if (typeof expr === 'string') {
    const bit = bitOf.get(expr);
    return bit !== undefined && personal[bit] === 1;
  }
  const children = 'all' in expr ? expr.all : 'any' in expr ? expr.any : expr.none;
  return children.some((c) => mentionsPersonal(c, bitOf, personal));
}

export interface PersonalDataLineItem {
  targeting?: TargetingExpr;
}

/**
 * The bitset of line items that need personal data. `capped(li)` says whether a line item has a frequency cap
 * (`capPlan.capped[li] === 1` with the CapPlan of frequency-caps.ts).
 */
export function compilePersonalDataMask(
  lineItems: readonly PersonalDataLineItem[],
  dictionary: SegmentDictionary,
  tree: SegmentTree,
  words: number,
  capped: (li: number) => boolean,
): Uint32Array {
  const personal = personalSegments(dictionary, tree);
  const mask = new Uint32Array(words);
  lineItems.forEach((li, i) => {
    if (mentionsPersonal(li.targeting, dictionary.bitOf, personal) || capped(i)) mask[i >>> 5] |= 1 << (i & 31);
  });
  return mask;
}
