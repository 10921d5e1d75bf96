/**
 * 64-bit hashes of user keys, computed as two independent 32-bit lanes without allocating (no BigInt, no
 * concatenated strings, no returned tuple): the result is left in `keyHash.hi` / `keyHash.lo`.
 *
 * Each key kind has its own seed, so a buyeruid and an ifa with the same text are different keys. The compiler
 * and the bidder must use this same function: it is part of the segment store format (STORE_FORMAT_VERSION).
 *
 * Case, per kind of key (hashIfa, hashEidKey; the compiler and the bid path both hash through them):
 *   - device.ifa: folded to lower case. It is a UUID (IDFA written upper case, GAID lower case, exchanges pass
 *     either on) whose case carries nothing; the rare non-UUID device id folds too, harmlessly;
 *   - an eid's id: folded when it is hex (isHexId: a hashed email, a UUID), kept as is otherwise (base64 ids,
 *     ID5, UID2 tokens: their case is part of them). The source is kept as is;
 *   - buyeruid, user.id, CRM ids: opaque, kept as is (a buyeruid is our own cookie id echoed back verbatim).
 * The folding happens inside the hash (hashFeedFolded), so the bid path never allocates a lower-case copy,
 * whatever case the exchange sends. The frequency-cap and attribution user (src/events/bid-context.ts
 * primaryUserHash) and a conversion postback's user hash through the same functions: one device, one user.
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

/**
 * hashFeed of the ASCII lower case of s, without building it (A-Z read as a-z; nothing else changes, so a hex
 * id hashes the same as its lower-case text: keys stored lower case before folding existed are unchanged).
 */
export function hashFeedFolded(s: string): void {
  let a = laneA;
  let b = laneB;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) c |= 32;
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

/**
 * Whether an id is hex, so that its case means nothing: only hex digits and dashes, at least 32 digits (an md5,
 * sha1 or sha256 digest, a UUID). Shorter or other ids are opaque. A random base62 id of 32 characters uses only
 * these 23 symbols once in ~10^14: folding an opaque id by mistake is not a practical risk. Allocation-free.
 */
export function isHexId(id: string): boolean {
  let digits = 0;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if ((c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70)) digits++;
    else if (c !== 45) return false;
  }
  return digits >= 32;
}

/** The key of a device advertising id (device.ifa), folded to lower case (see the module comment). */
export function hashIfa(ifa: string): void {
  hashBegin(KEY_KIND.ifa);
  hashFeedFolded(ifa);
  hashEnd();
}

/** The key of an eid uid (user.eids[].source + uids[].id): a hex id folded to lower case, any other as is. */
export function hashEidKey(source: string, id: string): void {
  hashBegin(KEY_KIND.eid);
  hashFeed(source);
  if (isHexId(id)) hashFeedFolded(id);
  else hashFeed(id);
  hashEnd();
}
