/**
 * 64-bit hashes of user keys, computed as two independent 32-bit lanes without allocating (no BigInt, no
 * concatenated strings, no returned tuple): the result is left in `keyHash.hi` / `keyHash.lo`.
 *
 * Each key kind has its own seed, so a buyeruid and an ifa with the same text are different keys. The compiler
 * and the bidder must use this same function: it is part of the segment store format (STORE_FORMAT_VERSION).
 */
export const KEY_KIND = {
  buyeruid: 1,
  userid: 2,
  ifa: 3,
  eid: 4,
  crm: 5,
} as const;
export type KeyKind = keyof typeof KEY_KIND;

export const keyHash = { hi: 0, lo: 0 };

/** murmur3's 32-bit finaliser: a full avalanche of one word (as an int32). */
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** murmur3's 32-bit finaliser, unsigned. */
export function fmix32(h: number): number {
  return mix32(h) >>> 0;
}

/**
 * fmix32(h) & mask, for table indices (mask < 2^30). Why apart: a uint32 above 2^30 that leaves a function not
 * inlined is a fresh heap number; an index under the mask never is (the frequency-cap probe runs per line item).
 */
export function fmix32Masked(h: number, mask: number): number {
  return mix32(h) & mask;
}

let laneA = 0;
let laneB = 0;

/** Starts a hash for a key of the given kind. */
export function hashBegin(kind: number): void {
  laneA = Math.imul(kind, 0x9e3779b1) ^ 0x811c9dc5;
  laneB = Math.imul(kind, 0x85ebca77) ^ 0x27d4eb2f;
}

/** Feeds a string (UTF-16 code units) into the running hash; a separator keeps ("ab","c") != ("a","bc"). */
export function hashFeed(s: string): void {
  let a = laneA;
  let b = laneB;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  laneA = Math.imul(a ^ 0xff, 0x01000193);
  laneB = Math.imul(b ^ 0xff, 0x5bd1e995) ^ s.length;
}

/** Finishes the hash into keyHash.hi / keyHash.lo. */
export function hashEnd(): void {
  keyHash.hi = fmix32(laneA ^ (laneB >>> 7));
  keyHash.lo = fmix32(laneB + Math.imul(laneA, 0x27d4eb2d));
}

/** Convenience for one-string keys. */
export function hashKey(kind: number, value: string): void {
  hashBegin(kind);
  hashFeed(value);
  hashEnd();
}
