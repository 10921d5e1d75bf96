/**
 * The segment dictionary: segment ids of the strategic segmentation tree mapped to bit indices of a
 * fixed-width bitset. Built once per segmentation; the store header carries the same dictionary and is
 * checked against it on load, so a bit always means the same segment on both sides.
 */
import type { SegmentDef, SegmentationDef } from '../config/types.js';
import type { ErrorDetail } from '../common/errors.js';

export interface SegmentDictionary {
  /** Bitset width in 32-bit words. */
  readonly words: number;
  readonly segments: readonly SegmentDef[];
  readonly bitOf: ReadonlyMap<string, number>;
}

export function buildDictionary(def: SegmentationDef, basePath: string, errors: ErrorDetail[]): SegmentDictionary {
  const bitOf = new Map<string, number>();
  const width = def.width ?? Math.max(32, Math.ceil(def.segments.length / 32) * 32);
  def.segments.forEach((s, i) => {
    if (bitOf.has(s.id)) errors.push({ path: `${basePath}/segments/${i}/id`, message: `duplicate segment id "${s.id}"` });
    else bitOf.set(s.id, i);
  });
  def.segments.forEach((s, i) => {
    if (s.parent != null && !bitOf.has(s.parent)) {
      errors.push({ path: `${basePath}/segments/${i}/parent`, message: `unknown parent segment "${s.parent}"` });
    }
  });
  if (def.segments.length > width) {
    errors.push({ path: `${basePath}/width`, message: `${def.segments.length} segments do not fit in ${width} bits` });
  }
  return { words: width >>> 5, segments: def.segments, bitOf };
}
