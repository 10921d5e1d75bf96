/**
 * The user keys of a bid request, hashed (key-hash.ts) into preallocated arrays, in the order the bid path reads
 * them: user.buyeruid, user.id, user.eids (or user.ext.eids; at most MAX_EIDS sources x MAX_UIDS ids each),
 * device.ifa. One definition of "the user's keys" for the decision (decide.ts ORs their store rows) and for the
 * Redis segment lookup (remote-segments.ts asks Redis for the ones the local store does not know).
 *
 * Keys are hashed as the compiler stores them (key-hash.ts: hashIfa, hashEidKey): a device id, and an eid id in
 * hex (a hashed email, a UUID), match in any case; buyeruid and user.id as sent.
 *
 * Contract: collect() overwrites the previous request's keys (count, hi, lo) and allocates nothing (an upper-case
 * IDFA included: the case is folded inside the hash); reuse one instance per consumer. Values are unsigned 32-bit
 * halves (the store normalises with >>> 0 anyway). The request is validated upstream (user, ext, device are
 * objects when present); null is tolerated all the same.
 */
import { KEY_KIND, hashEidKey, hashIfa, hashKey, keyHash } from './key-hash.js';

/** Caps on what one request may make the bidder hash: a handful of ids is the norm, thousands an attack. */
export const MAX_EIDS = 32;
export const MAX_UIDS = 8;
export const MAX_USER_KEYS = 2 + MAX_EIDS * MAX_UIDS + 1;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

/**
 * Whether a device advertising id names a device: a non-empty string that is not the all-zero id
 * ("00000000-0000-0000-0000-000000000000") that iOS without ATT consent and Android with limited ad tracking
 * send. Taken as a key, that one id would merge every such device into one user (one frequency-cap row, one user
 * in the event tokens): it is no key at all.
 */
export function isDeviceId(ifa: unknown): ifa is string {
  if (typeof ifa !== 'string' || ifa.length === 0) return false;
  for (let i = 0; i < ifa.length; i++) {
    const c = ifa.charCodeAt(i);
    if (c !== 48 && c !== 45) return true; // anything but '0' and '-'
  }
  return false;
}

export class UserKeys {
  count = 0;
  readonly hi = new Uint32Array(MAX_USER_KEYS);
  readonly lo = new Uint32Array(MAX_USER_KEYS);

  /** Hashes the request's keys; returns how many. */
  collect(req: Any): number {
    this.count = 0;
    const user = req.user;
    if (user !== undefined && user !== null) {
      if (typeof user.buyeruid === 'string' && user.buyeruid.length > 0) {
        hashKey(KEY_KIND.buyeruid, user.buyeruid);
        this.push();
      }
      if (typeof user.id === 'string' && user.id.length > 0) {
        hashKey(KEY_KIND.userid, user.id);
        this.push();
      }
      const eids = user.eids !== undefined ? user.eids : user.ext !== undefined && user.ext !== null ? user.ext.eids : undefined;
      if (Array.isArray(eids)) {
        const n = eids.length < MAX_EIDS ? eids.length : MAX_EIDS;
        for (let e = 0; e < n; e++) {
          const eid = eids[e];
          if (eid === null || typeof eid !== 'object' || typeof eid.source !== 'string' || !Array.isArray(eid.uids)) continue;
          const uids = eid.uids as Any[];
          const m = uids.length < MAX_UIDS ? uids.length : MAX_UIDS;
          for (let u = 0; u < m; u++) {
            const uid = uids[u];
            if (uid === null || typeof uid !== 'object' || typeof uid.id !== 'string' || uid.id.length === 0) continue;
            hashEidKey(eid.source, uid.id);
            this.push();
          }
        }
      }
    }
    const device = req.device;
    if (device !== undefined && device !== null && isDeviceId(device.ifa)) {
      hashIfa(device.ifa);
      this.push();
    }
    return this.count;
  }

  private push(): void {
    const k = this.count++;
    this.hi[k] = keyHash.hi;
    this.lo[k] = keyHash.lo;
  }
}
