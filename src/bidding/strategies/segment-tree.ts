/**
 * The segmentation tree as flat arrays, indexed by segment bit: parent bit (-1 for a root) and depth (0 for a
 * root). Built once per config from the segment dictionary; read by the strategy priors (fallback to the parent
 * segment) and the creative selector (most specific segment). The dictionary checks that parents exist but not
 * that the parent links are acyclic: a cycle is reported here as a config error, by path.
 */
import type { ErrorDetail } from '../../common/errors.js';
import type { SegmentDictionary } from '../../segments/segmentation.js';

export interface SegmentTree {
  /** Number of segments (bits in use). */
  readonly count: number;
  readonly parent: Int32Array;
  readonly depth: Int32Array;
}

export function buildSegmentTree(dictionary: SegmentDictionary, errors: ErrorDetail[], basePath = '/segmentation'): SegmentTree {
  const segments = dictionary.segments;
  const count = segments.length;
  const parent = new Int32Array(count).fill(-1);
  const depth = new Int32Array(count).fill(-1);
  segments.forEach((s, i) => {
    const bit = dictionary.bitOf.get(s.id);
    if (bit !== i) return; // duplicate id: already reported by buildDictionary
    if (s.parent != null) parent[i] = dictionary.bitOf.get(s.parent) ?? -1;
  });
  for (let i = 0; i < count; i++) {
    // Walk up until a node of known depth (or a root); more steps than nodes means a cycle.
    let d = 0;
    let node = i;
    while (node !== -1 && depth[node] === -1 && d <= count) {
      node = parent[node];
      d++;
    }
    if (d > count) {
      errors.push({ path: `${basePath}/segments/${i}/parent`, message: `segment "${segments[i].id}" is its own ancestor (parent cycle)` });
      parent[i] = -1;
      depth[i] = 0;
      continue;
    }
    const base = node === -1 ? -1 : depth[node];
    // Second walk assigns depths top-down along the same path.
    let k = d;
    node = i;
    while (node !== -1 && depth[node] === -1) {
      depth[node] = base + k;
      k--;
      node = parent[node];
    }
  }
  return { count, parent, depth };
}

/** Whether `ancestor` is `bit` itself or one of its ancestors. */
export function isSelfOrAncestor(tree: SegmentTree, ancestor: number, bit: number): boolean {
  for (let node = bit; node !== -1; node = tree.parent[node]) if (node === ancestor) return true;
  return false;
}
