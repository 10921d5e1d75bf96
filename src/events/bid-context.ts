/**
 * What the response builder needs to fill a token (src/events/token.ts) from a decision, computed cheaply:
 * the config epoch, the deal index, the most specific matched segment, the user key hash and the exchange.
 *
 * Contract: pure functions over a CompiledConfig / bid request; per-config tables are computed once and cached
 * in WeakMaps (a config is immutable and swapped whole). Nothing here throws on request content.
 */
import type { CompiledConfig, CompiledLineItem } from '../config/compile.js';
import type { SegmentDictionary } from '../segments/segmentation.js';
import { KEY_KIND, hashIfa, hashKey, keyHash } from '../segments/key-hash.js';
import { isDeviceId } from '../segments/user-keys.js';
import { NO_DEAL, NO_SEGMENT, hash32 } from './token.js';

const epochs = new WeakMap<CompiledConfig, number>();

/**
 * A 16-bit fingerprint of what token indices point at: line item ids, creative ids, segment ids and each line
 * item's deal list, in order. Two configs with the same ids in the same order share an epoch (a bid price or
 * budget change does not invalidate tokens); any reorder, insert or removal changes it.
 */
export function configEpoch(config: CompiledConfig): number {
  let e = epochs.get(config);
  if (e === undefined) {
    const parts: string[] = [];
    for (const li of config.lineItems) parts.push('L' + li.id + '\u0001' + [...li.deals].join('\u0002'));
    for (const c of config.creatives) parts.push('C' + c.id);
    for (const s of config.dictionary.segments) parts.push('S' + s.id);
    const h = hash32(parts.join('\u0000'));
    e = (h ^ (h >>> 16)) & 0xffff;
    epochs.set(config, e);
  }
  return e;
}

const dealLists = new WeakMap<CompiledLineItem, readonly string[]>();

/** The deal list of a line item in config order (the token's deal index points into it). */
export function dealList(li: CompiledLineItem): readonly string[] {
  let list = dealLists.get(li);
  if (list === undefined) {
    list = [...li.deals];
    dealLists.set(li, list);
  }
  return list;
}

/** Index of a deal in the line item's deal list; NO_DEAL for the open auction or an unknown deal. */
export function dealIndex(li: CompiledLineItem, dealId: string | null): number {
  if (dealId === null) return NO_DEAL;
  const i = dealList(li).indexOf(dealId);
  return i < 0 ? NO_DEAL : i;
}

const depths = new WeakMap<SegmentDictionary, Int16Array>();

/** Depth of each segment bit in the segmentation tree (roots 0). */
function segmentDepths(dictionary: SegmentDictionary): Int16Array {
  let d = depths.get(dictionary);
  if (d === undefined) {
    const segs = dictionary.segments;
    d = new Int16Array(segs.length);
    for (let i = 0; i < segs.length; i++) {
      let depth = 0;
      let p = segs[i].parent ?? null;
      while (p !== null && depth < 32) {
        depth++;
        const bit = dictionary.bitOf.get(p);
        p = bit === undefined ? null : (segs[bit].parent ?? null);
      }
      d[i] = depth;
    }
    depths.set(dictionary, d);
  }
  return d;
}

/**
 * The user's most specific matched segment: the set bit deepest in the segmentation tree (ties: the lowest
 * bit, i.e. the first declared). NO_SEGMENT (-1) when no bit is set. `restrict` (optional, same width) limits
 * the choice, e.g. to the segments the line item targets.
 */
export function mostSpecificSegment(dictionary: SegmentDictionary, userBits: Uint32Array, restrict?: Uint32Array): number {
  const depth = segmentDepths(dictionary);
  let best = NO_SEGMENT;
  let bestDepth = -1;
  for (let w = 0; w < userBits.length; w++) {
    let x = restrict === undefined ? userBits[w] : userBits[w] & restrict[w];
    while (x !== 0) {
      const low = x & -x;
      const bit = (w << 5) + 31 - Math.clz32(low);
      x ^= low;
      const dd = bit < depth.length ? depth[bit] : 0;
      if (dd > bestDepth) {
        bestDepth = dd;
        best = bit;
      }
    }
  }
  return best;
}

/* The request as far as this module reads it. */
interface RequestLike {
  user?: { buyeruid?: unknown; id?: unknown };
  device?: { ifa?: unknown };
  ext?: { exchange?: unknown };
  source?: { ext?: { exchange?: unknown; schain?: SchainLike }; schain?: SchainLike };
}
interface SchainLike {
  nodes?: { asi?: unknown }[];
}

/** Output of primaryUserHash (reused, like key-hash's keyHash). */
export const userHash = { hi: 0, lo: 0 };

/**
 * Hash of the user's primary key, the one conversions are matched on: buyeruid, else user.id, else device.ifa
 * (each hashed with its own kind, as in the segment store: a device id in any case is one user, for frequency
 * caps and attribution as for segments). 0/0 when the request carries none.
 */
export function primaryUserHash(req: RequestLike): void {
  const user = req.user;
  const device = req.device;
  if (user !== undefined && typeof user.buyeruid === 'string' && user.buyeruid.length > 0) hashKey(KEY_KIND.buyeruid, user.buyeruid);
  else if (user !== undefined && typeof user.id === 'string' && user.id.length > 0) hashKey(KEY_KIND.userid, user.id);
  else if (device !== undefined && isDeviceId(device.ifa)) hashIfa(device.ifa); // any case, as the store
  else {
    userHash.hi = 0;
    userHash.lo = 0;
    return;
  }
  userHash.hi = keyHash.hi;
  userHash.lo = keyHash.lo;
}

/**
 * The exchange a request came from: `ext.exchange`, `source.ext.exchange`, else the first supply-chain node.
 * Reads extension objects validate.ts does not check (exchanges put anything in `ext`), so every step is
 * type-checked here: a null or a string where an object is expected means "not said", never a throw.
 */
export function exchangeName(req: RequestLike): string {
  const ext = req.ext;
  if (typeof ext === 'object' && ext !== null && typeof ext.exchange === 'string') return ext.exchange;
  const source = req.source;
  if (typeof source !== 'object' || source === null) return '';
  const sext = source.ext;
  const sourceExt = typeof sext === 'object' && sext !== null ? sext : undefined;
  if (sourceExt !== undefined && typeof sourceExt.exchange === 'string') return sourceExt.exchange;
  const schain = source.schain ?? sourceExt?.schain;
  const nodes = typeof schain === 'object' && schain !== null ? schain.nodes : undefined;
  const first = Array.isArray(nodes) ? nodes[0] : undefined;
  return typeof first === 'object' && first !== null && typeof first.asi === 'string' ? first.asi : '';
}

/** Configured exchange names <-> token exchange index (1-based; 0 = other). At most 255 exchanges. */
export class ExchangeTable {
  readonly names: readonly string[];
  private readonly index = new Map<string, number>();

  constructor(names: readonly string[]) {
    this.names = names.slice(0, 255);
    this.names.forEach((n, i) => this.index.set(n, i + 1));
  }

  indexOf(name: string): number {
    return this.index.get(name) ?? 0;
  }

  nameOf(index: number): string | null {
    return index >= 1 && index <= this.names.length ? this.names[index - 1] : null;
  }

  /** Token index of a request's exchange (0 = other). */
  ofRequest(req: RequestLike): number {
    return this.indexOf(exchangeName(req));
  }
}
