/**
 * The compiled segment store: user-key hashes -> fixed-width segment bitset rows, in typed arrays.
 *
 * File layout, format version 5 (little endian; the layout of 3, see STORE_FORMAT_VERSION for what changed):
 *   0  "SGBS" magic            4  u32 format version      8  u32 header length H     12  u32 crc32(header+payload)
 *   16 header (msgpackr, see StoreHeader), zero-padded to 8 bytes
 *   then slots: u32[capacity * 3] = (lo, hi, row + 1) per slot (row + 1 = 0: empty slot),
 *        rows:  u32[rowCount * words] = the DISTINCT segment rows,
 *        fingerprints: u8[capacity] = fingerprintOf(hi) of the slot's key, 0 for an empty slot.
 *
 * Why this layout (version 1: three separate slot arrays, power-of-two capacity at load <= 0.5, one row per
 * user): to hold 1M users x 256 segments in <= 64 bytes a user and answer in a few hundred nanoseconds.
 *   - rows are deduplicated: users with the same segments share one row (the zero row, "known, no segment",
 *     is typically the biggest group), so a row costs words*4 bytes per DISTINCT combination, not per user;
 *   - the key table's capacity is any integer (load factor <= MAX_LOAD, not "next power of two", which wasted
 *     up to half the table); the home slot is a multiply-shift of `lo` ("fastrange", see slotOf);
 *   - probes scan the fingerprint bytes (1 byte a slot, 13x smaller than the slots, so mostly in cache) and
 *     read a 12-byte slot only on a fingerprint match (1 in 255 for a foreign key): an unknown user, the common
 *     case in RTB traffic, usually costs no access to the big arrays at all. That is also why the load factor
 *     can be 0.8 (long probe runs are short byte scans);
 *   - slot fields are interleaved so a match reads one cache line, not three.
 * Loading maps the arrays over the file buffer; the only per-load work is the CRC, one scan of the slots
 * that proves every row index is in range, every fingerprint agrees with its slot, and at least one slot is
 * empty (a probe always terminates), and one more that builds the key filter (SegmentStore.filter: a blocked
 * Bloom filter, in memory only, that turns most unknown keys away before the probe). Several keys of one user (buyeruid, ifa, eids) share one row.
 *
 * Tried and measured (1M users, interleaved rounds in one process, hash + orInto): a layout whose probed 4-byte
 * entries held a key tag plus the row index (no fingerprint bytes), so a known user's key check and row read are
 * independent loads: known-only lookups ~17% faster, unknown-only ~30% slower (the probed array is 4x the
 * fingerprint bytes, which stay in cache), a 50% mix even. Unknown users dominate RTB traffic: v3 stays.
 *
 * The header also carries the compile's per-segment volumes (segmentUsers, segmentActivable, crmUsers; aligned
 * with `segments`; absent in stores built without the compiler, ignored by older readers) for the compile
 * report and the brief.
 *
 * remoteRow (the bid server's Redis path, src/segments/remote-segments.ts): while it is set, a key the file
 * store does not know answers with that row instead: the async branch sets it around one synchronous decision
 * for a user found in Redis, so decide.ts reads the remote row through the same orInto as a local one. null
 * otherwise; reading it costs one field load on the miss path only.
 */
import { closeSync, openSync, readFileSync, readSync, renameSync, writeSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { pack, unpack } from 'msgpackr';
import { SegbidError } from '../common/errors.js';
import { GrowableU32 } from './growable.js';
import { hashKey, keyHash } from './key-hash.js';
import type { SegmentDictionary } from './segmentation.js';
import type { SegmentDef } from '../config/types.js';

export const STORE_MAGIC = 0x53424753; // "SGBS" read as u32 LE
/**
 * 5: the layout of 3, with device ids and hex eid ids hashed case-folded (key-hash.ts). A store of 3 holds an
 * upper-case IDFA or hashed email as it was written, which the bidder no longer looks up (it folds the request's
 * keys): such a user would silently go unknown, so a store of 3 is refused (STORE_VERSION) and must be compiled
 * again, not read. 4 was the key-tag layout measured and dropped (see below; stores of it may linger from that
 * time): skipped, so that none of them reads as this format.
 */
export const STORE_FORMAT_VERSION = 5;
/** Highest load factor of the key table (probe runs are scanned in the fingerprint bytes, see above). */
export const MAX_LOAD = 0.8;

/**
 * A lookalike scoring table, learned by the compiler (src/segments/compiler/lookalike.ts) and carried in the
 * store header so that the bidder scores unknown users with exactly the table the CRM rows were scored with.
 * Scores are integers (milli log-lift) so that a sum does not depend on the order of the request's data.
 */
export interface LookalikeTable {
  /** The lookalike segment id and its seed (a crm segment id). */
  segment: string;
  seed: string;
  /** Feature i is provider segment (providers[i], segmentIds[i]) with integer weight weights[i] (> 0). */
  providers: string[];
  segmentIds: string[];
  weights: number[];
  /** Effective threshold (milli units): a user is a lookalike when the sum of its weights >= threshold. */
  threshold: number;
  /** The rule's threshold (milli) and reach, as configured. */
  ruleThreshold: number;
  reach: number;
  /** Learning volumes: scored base (CRM users with 3rd-party data), seed users in it, users passing. */
  scoredBase: number;
  seedSize: number;
  passing: number;
}

/** Per-segment volumes of the compile (aligned with StoreHeader.segments, i.e. indexed by bit). */
export interface StoreVolumes {
  /** CRM users read by the compiler. */
  crmUsers?: number;
  /** Members of each segment (compiled membership: crm, lookalike, third-party from the CRM, their groups). */
  segmentUsers?: number[];
  /** Of those, members with at least one bidder key (reachable through the store). */
  segmentActivable?: number[];
}

export interface StoreHeader extends StoreVolumes {
  words: number;
  /** Distinct rows in the file (not users: rows are shared). */
  rowCount: number;
  /** Slots of the key table (any integer >= 1; more than the keys). */
  capacity: number;
  segments: string[];
  /**
   * Per bit, a hash of the segment's definition when the store was compiled (segmentDefinitionHash: kind,
   * parent, rule; not the name). Absent in stores compiled before it existed (then only the ids are checked).
   */
  segmentHashes?: string[];
  /** Users reachable through at least one key (users added without keys are not stored). */
  userCount: number;
  keyCount: number;
  createdAt: string;
  /** Lookalike scoring tables (absent in stores without lookalike segments). */
  lookalikes?: LookalikeTable[];
}

const TWO_POW_MINUS_32 = 2.3283064365386963e-10;

/**
 * Home slot of a key: floor(lo * capacity / 2^32). Part of the format; the product is < 2^64 and rounding
 * keeps it below capacity * 2^32, so the result is always < capacity and identical on every IEEE machine.
 */
export function slotOf(lo: number, capacity: number): number {
  return Math.floor((lo >>> 0) * capacity * TWO_POW_MINUS_32);
}

/** Fingerprint of a key in its slot: the top byte of `hi`, never 0 (0 marks an empty slot). Part of the format. */
export function fingerprintOf(hi: number): number {
  return hi >>> 24 || 1;
}

/** Bits of the in-memory key filter per key (SegmentStore.filter): ~1.5% false positives with 5 bits set. */
const FILTER_BITS_PER_KEY = 10;

/**
 * First word of the filter block of a key: its `lo` spread over the blocks, as its home slot is over the table
 * (slotOf). So the keys, read in slot order, fill the blocks in order: building the filter streams through it
 * instead of one cache miss per key (10M users: 3.5 s of load with the block taken from `hi`). The bits within
 * the block come from the other bits of the key (see mayHold).
 */
function filterBlockOf(lo: number, blocks: number): number {
  return Math.floor((lo >>> 0) * blocks * TWO_POW_MINUS_32) * 16;
}

/** Sets bit (x mod 512) of the filter block starting at word b. */
function setFilterBit(f: Int32Array, b: number, x: number): void {
  f[b + ((x & 511) >>> 5)] |= 1 << x; // a shift count is taken mod 32
}

/** Bit (x mod 512) of the filter block starting at word b, as 0 or 1. */
function filterBit(f: Int32Array, b: number, x: number): number {
  return (f[b + ((x & 511) >>> 5)] >>> x) & 1;
}

export class SegmentStore {
  readonly header: StoreHeader;
  readonly words: number;
  readonly capacity: number;
  private readonly slots: Uint32Array;
  private readonly rows: Uint32Array;
  private readonly fingerprints: Uint8Array;
  /**
   * A blocked Bloom filter of the keys, built at load (not stored: the file format is unchanged): blocks of 512
   * bits (16 words, one cache line), FILTER_BITS_PER_KEY bits a key, 5 bits set per key in the block chosen by
   * `lo` (filterBlockOf). rowOf asks it first: an unknown key (most of RTB traffic) is answered from one cache
   * line and a few bit tests (a false positive, ~1.5% of them, goes on to the probe), instead of a probe run to
   * the next empty slot (12 slots on average at load 0.8, with the branch at its end mispredicted). No false
   * negatives: every key of the table is in it.
   */
  private readonly filter: Int32Array;
  private readonly filterBlocks: number;
  /** Bytes held by the arrays (for the resident-bytes-per-user figure; the filter included). */
  readonly byteLength: number;
  /** See the module comment: the row of a user found in Redis, for one synchronous decision; else null. */
  remoteRow: Uint32Array | null = null;

  /** The arrays must have been validated (decodeStore) or built (SegmentStoreBuilder). */
  constructor(header: StoreHeader, slots: Uint32Array, rows: Uint32Array, fingerprints: Uint8Array) {
    this.header = header;
    this.words = header.words;
    this.capacity = header.capacity;
    this.slots = slots;
    this.rows = rows;
    this.fingerprints = fingerprints;
    let keys = 0;
    for (let slot = 0; slot < fingerprints.length; slot++) if (fingerprints[slot] !== 0) keys++;
    this.filterBlocks = Math.max(1, Math.ceil((keys * FILTER_BITS_PER_KEY) / 512));
    this.filter = new Int32Array(this.filterBlocks * 16);
    for (let slot = 0; slot < fingerprints.length; slot++) {
      if (fingerprints[slot] === 0) continue;
      const lo = slots[slot * 3];
      const hi = slots[slot * 3 + 1];
      const b = filterBlockOf(lo, this.filterBlocks);
      const f = this.filter;
      // The key's five bits, as mayHold reads them.
      setFilterBit(f, b, lo);
      setFilterBit(f, b, lo >>> 9);
      setFilterBit(f, b, hi);
      setFilterBit(f, b, hi >>> 9);
      setFilterBit(f, b, hi >>> 18);
    }
    this.byteLength = slots.byteLength + rows.byteLength + fingerprints.byteLength + this.filter.byteLength;
  }

  static empty(words: number, segments: string[]): SegmentStore {
    const header: StoreHeader = { words, rowCount: 0, capacity: 1, segments, userCount: 0, keyCount: 0, createdAt: '' };
    return new SegmentStore(header, new Uint32Array(3), new Uint32Array(0), new Uint8Array(1));
  }

  /**
   * ORs the row of the key (hi, lo) into `out` (length >= words). Returns false for an unknown key (unless
   * remoteRow is set: see the module comment). Allocation-free; terminates because the table always has an
   * empty slot.
   */
  orInto(hi: number, lo: number, out: Uint32Array): boolean {
    const row = this.rowOf(hi, lo);
    if (row < 0) return this.remoteRow !== null && this.orRemote(out);
    const words = this.words;
    const rows = this.rows;
    const base = row * words;
    for (let w = 0; w < words; w++) out[w] |= rows[base + w];
    return true;
  }

  private orRemote(out: Uint32Array): boolean {
    const row = this.remoteRow!;
    const words = row.length < this.words ? row.length : this.words;
    for (let w = 0; w < words; w++) out[w] |= row[w];
    return true;
  }

  /** Distinct row index of a key, or -1 (the file store only: remoteRow does not apply). Allocation-free. */
  rowOf(hi: number, lo: number): number {
    hi >>>= 0;
    lo >>>= 0;
    if (!this.mayHold(hi, lo)) return -1;
    const fingerprints = this.fingerprints;
    const capacity = this.capacity;
    const fp = hi >>> 24 || 1;
    let slot = Math.floor(lo * capacity * TWO_POW_MINUS_32);
    for (;;) {
      const f = fingerprints[slot];
      if (f === 0) return -1;
      if (f === fp) {
        const i = slot * 3;
        if (this.slots[i] === lo && this.slots[i + 1] === hi) return this.slots[i + 2] - 1;
      }
      if (++slot === capacity) slot = 0;
    }
  }

  /**
   * The key filter's answer (see `filter`): false = the key is not in the table; true = it may be (every key is,
   * and ~1.5% of the others). Allocation-free.
   */
  mayHold(hi: number, lo: number): boolean {
    // The key's five bits (9-bit slices of lo and hi, as the build sets them): one missing, not a key of the table.
    const f = this.filter;
    const b = filterBlockOf(lo, this.filterBlocks);
    const bits = filterBit(f, b, lo) & filterBit(f, b, lo >>> 9) & filterBit(f, b, hi) & filterBit(f, b, hi >>> 9) & filterBit(f, b, hi >>> 18);
    return bits !== 0;
  }

  /** A view (no copy) of distinct row `row`. */
  rowWords(row: number): Uint32Array {
    return this.rows.subarray(row * this.words, (row + 1) * this.words);
  }

  /** Calls fn for every stored key, in slot order (offline: Redis export, benches, tests). */
  forEachKey(fn: (hi: number, lo: number, row: number) => void): void {
    const slots = this.slots;
    for (let s = 0; s < this.capacity; s++) {
      const row = slots[s * 3 + 2];
      if (row !== 0) fn(slots[s * 3 + 1], slots[s * 3], row - 1);
    }
  }
}

/** FNV-style mix of a row's words, for row deduplication at build time. */
function hashRow(rows: Uint32Array, base: number, words: number): number {
  let h = 0x811c9dc5 ^ words;
  for (let w = 0; w < words; w++) {
    h = Math.imul(h ^ rows[base + w], 0x01000193);
    h ^= h >>> 15;
  }
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  return (h ^ (h >>> 13)) >>> 0;
}

/** What resolveKeys() found: which users the store serves, and the keys given to more than one user. */
export interface KeyResolution {
  /** Per user: 1 when at least one of its keys is its own in the store (the last user it was added for), else 0. */
  served: Uint8Array;
  /** Keys added for more than one user: each keeps the last one's row. */
  duplicateKeys: number;
  /** Users with keys, every one of them added again for a later user: the store does not hold them. */
  supersededUsers: number;
}

/**
 * Collects users, then builds a store. Keys, rows and key->row links live in growable typed arrays (about 12
 * bytes a key + words*4 bytes a user while building), so the compiler scales to millions of users.
 *
 * A key added for several users keeps the LAST one's row (a CRM export's later record is the user's current
 * state). resolveKeys() settles that before build() (the compiler asks it first, to count only the users the
 * store serves); build() does it itself otherwise. No user or key may be added after it; build() once.
 */
export class SegmentStoreBuilder {
  private readonly words: number;
  private readonly segments: string[];
  private readonly segmentHashes: string[] | null;
  private rows: Uint32Array;
  private rowCount = 0;
  private readonly keyHi = new GrowableU32(4096);
  private readonly keyLo = new GrowableU32(4096);
  private readonly keyRow = new GrowableU32(4096);
  /** The key table once resolved: (lo, hi, index of the key's last addition + 1) per slot, as the file's slots. */
  private resolvedSlots: Uint32Array | null = null;
  private resolution: KeyResolution | null = null;
  private built = false;

  constructor(dictionary: Pick<SegmentDictionary, 'words'> & { segments: readonly ({ id: string } & Partial<SegmentDef>)[] }) {
    this.words = dictionary.words;
    this.segments = dictionary.segments.map((s) => s.id);
    this.segmentHashes = dictionary.segments.every((s) => s.kind !== undefined) ? dictionary.segments.map((s) => segmentDefinitionHash(s as SegmentDef)) : null;
    this.rows = new Uint32Array(1024 * this.words);
  }

  get userCount(): number {
    return this.rowCount;
  }

  get keyCount(): number {
    return this.keyRow.length;
  }

  /** Adds a user with its segment bits; returns the row index. Keys are added with addKey (hashes). */
  addUser(bits: Iterable<number>): number {
    const row = this.addEmptyUser();
    const base = row * this.words;
    for (const bit of bits) this.rows[base + (bit >>> 5)] |= 1 << (bit & 31);
    return row;
  }

  /** Adds a user whose row is the first `words` words of `row` (copied). */
  addUserRow(row: Uint32Array): number {
    const r = this.addEmptyUser();
    this.rows.set(row.subarray(0, this.words), r * this.words);
    return r;
  }

  private addEmptyUser(): number {
    if (this.resolution !== null) throw new Error('SegmentStoreBuilder: a user added after resolveKeys');
    if ((this.rowCount + 1) * this.words > this.rows.length) {
      const grown = new Uint32Array(this.rows.length * 2);
      grown.set(this.rows);
      this.rows = grown;
    }
    return this.rowCount++;
  }

  /** Sets a bit in a user's row after the fact (lookalike bits are known only after learning). */
  setBit(row: number, bit: number): void {
    this.rows[row * this.words + (bit >>> 5)] |= 1 << (bit & 31);
  }

  hasBit(row: number, bit: number): boolean {
    return (this.rows[row * this.words + (bit >>> 5)] & (1 << (bit & 31))) !== 0;
  }

  /** The w-th word of a user's row. */
  rowWord(row: number, w: number): number {
    return this.rows[row * this.words + w];
  }

  addKey(row: number, hi: number, lo: number): void {
    if (this.resolution !== null) throw new Error('SegmentStoreBuilder: a key added after resolveKeys');
    this.keyHi.push(hi >>> 0);
    this.keyLo.push(lo >>> 0);
    this.keyRow.push(row);
  }

  /**
   * Settles repeated keys: the key table, each key with the index of its last addition (the table build() writes,
   * in the same slots), which users keep a key of their own, and the counts. Once; later calls return the same.
   */
  resolveKeys(): KeyResolution {
    if (this.resolution !== null) return this.resolution;
    const keyCount = this.keyRow.length;
    const keyHi = this.keyHi.data;
    const keyLo = this.keyLo.data;
    const keyRow = this.keyRow.data;
    const capacity = Math.max(keyCount + 1, Math.ceil(keyCount / MAX_LOAD));
    const slots = new Uint32Array(capacity * 3);
    const repeated = new Uint8Array(capacity); // 1 once the slot's key was added for a second user
    let duplicateKeys = 0;
    for (let k = 0; k < keyCount; k++) {
      const hi = keyHi[k];
      const lo = keyLo[k];
      let slot = slotOf(lo, capacity);
      while (slots[slot * 3 + 2] !== 0 && !(slots[slot * 3] === lo && slots[slot * 3 + 1] === hi)) {
        if (++slot === capacity) slot = 0;
      }
      const previous = slots[slot * 3 + 2];
      // The same key twice for one user (an id map listing a value twice) is no duplicate.
      if (previous !== 0 && keyRow[previous - 1] !== keyRow[k] && repeated[slot] === 0) {
        repeated[slot] = 1;
        duplicateKeys++;
      }
      slots[slot * 3] = lo;
      slots[slot * 3 + 1] = hi;
      slots[slot * 3 + 2] = k + 1;
    }
    const users = this.rowCount;
    const served = new Uint8Array(users);
    const keyed = new Uint8Array(users);
    for (let k = 0; k < keyCount; k++) keyed[keyRow[k]] = 1;
    for (let s = 0; s < capacity; s++) {
      const k = slots[s * 3 + 2];
      if (k !== 0) served[keyRow[k - 1]] = 1;
    }
    let supersededUsers = 0;
    for (let u = 0; u < users; u++) if (keyed[u] === 1 && served[u] === 0) supersededUsers++;
    this.resolvedSlots = slots;
    this.resolution = { served, duplicateKeys, supersededUsers };
    return this.resolution;
  }

  /** Calls fn with the index (in addKey order) of the last addition of every distinct key. After resolveKeys(). */
  forEachFinalKey(fn: (key: number) => void): void {
    const slots = this.resolvedSlots;
    if (slots === null) throw new Error('SegmentStoreBuilder: forEachFinalKey before resolveKeys (or after build)');
    for (let s = 2; s < slots.length; s += 3) if (slots[s] !== 0) fn(slots[s] - 1);
  }

  /**
   * `createdAt` is part of the header; pass a fixed value for byte-identical (deterministic) output.
   * `extra` adds header fields (lookalike tables, volumes). Users without any key are not reachable and not stored,
   * nor are users whose every key was added again for a later user (see resolveKeys).
   */
  build(createdAt = new Date().toISOString(), extra: Pick<StoreHeader, 'lookalikes'> & StoreVolumes = {}): SegmentStore {
    if (this.built) throw new Error('SegmentStoreBuilder: build() once (it turns the key table into the store)');
    const { served } = this.resolveKeys();
    const slots = this.resolvedSlots!;
    this.built = true;
    const words = this.words;
    const users = this.rowCount;
    const keyCount = this.keyRow.length;
    const keyRow = this.keyRow.data;
    // 1. Deduplicate the rows of the users the store serves, in order of first use (deterministic).
    const distinctOf = new Uint32Array(users); // user row -> distinct row + 1 (0 = not yet seen)
    let tableSize = 16;
    while (tableSize < keyCount * 2) tableSize *= 2;
    const table = new Uint32Array(tableSize); // distinct row + 1
    const tableMask = tableSize - 1;
    const distinct = new GrowableU32(Math.min(users, 4096) * words + words);
    let distinctCount = 0;
    for (let k = 0; k < keyCount; k++) {
      const user = keyRow[k];
      if (distinctOf[user] !== 0 || served[user] === 0) continue;
      const base = user * words;
      let t = hashRow(this.rows, base, words) & tableMask;
      for (;;) {
        const d = table[t];
        if (d === 0) {
          distinct.reserve((distinctCount + 1) * words);
          distinct.data.set(this.rows.subarray(base, base + words), distinctCount * words);
          distinct.length = (distinctCount + 1) * words;
          table[t] = ++distinctCount;
          distinctOf[user] = distinctCount;
          break;
        }
        let same = true;
        const dBase = (d - 1) * words;
        for (let w = 0; w < words && same; w++) same = distinct.data[dBase + w] === this.rows[base + w];
        if (same) {
          distinctOf[user] = d;
          break;
        }
        t = (t + 1) & tableMask;
      }
    }
    // 2. The key table (resolved): each slot's last addition becomes its user's distinct row.
    const capacity = slots.length / 3;
    const fingerprints = new Uint8Array(capacity);
    let stored = 0;
    for (let slot = 0; slot < capacity; slot++) {
      const k = slots[slot * 3 + 2];
      if (k === 0) continue;
      stored++;
      slots[slot * 3 + 2] = distinctOf[keyRow[k - 1]]; // a repeated key keeps its last user's row
      fingerprints[slot] = fingerprintOf(slots[slot * 3 + 1]);
    }
    this.resolvedSlots = null; // it holds rows now, not key indices (and belongs to the store)
    let reachable = 0;
    for (let u = 0; u < users; u++) if (distinctOf[u] !== 0) reachable++;
    const header: StoreHeader = {
      words,
      rowCount: distinctCount,
      capacity,
      segments: this.segments,
      ...(this.segmentHashes !== null ? { segmentHashes: this.segmentHashes } : {}),
      userCount: reachable,
      keyCount: stored,
      createdAt,
      ...(extra.lookalikes && extra.lookalikes.length > 0 ? { lookalikes: extra.lookalikes } : {}),
      ...(extra.crmUsers !== undefined ? { crmUsers: extra.crmUsers } : {}),
      ...(extra.segmentUsers ? { segmentUsers: extra.segmentUsers } : {}),
      ...(extra.segmentActivable ? { segmentActivable: extra.segmentActivable } : {}),
    };
    return new SegmentStore(header, slots, distinct.data.slice(0, distinctCount * words), fingerprints);
  }
}

function toBytes(a: Uint32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** The file as a list of buffers (prefix with header, slots, rows, fingerprints), CRC filled in; no big copy. */
function encodeParts(store: SegmentStore): Buffer[] {
  const s = store as unknown as { slots: Uint32Array; rows: Uint32Array; fingerprints: Uint8Array };
  const headerBytes = pack(store.header);
  const headerPadded = Math.ceil((16 + headerBytes.length) / 8) * 8 - 16;
  const prefix = Buffer.alloc(16 + headerPadded);
  prefix.writeUInt32LE(STORE_MAGIC, 0);
  prefix.writeUInt32LE(STORE_FORMAT_VERSION, 4);
  prefix.writeUInt32LE(headerBytes.length, 8);
  headerBytes.copy(prefix, 16);
  const parts = [prefix, toBytes(s.slots), toBytes(s.rows), Buffer.from(s.fingerprints.buffer, s.fingerprints.byteOffset, s.fingerprints.byteLength)];
  let crc = crc32(prefix.subarray(16));
  // Empty parts are skipped: Node 20's crc32(view of an empty ArrayBuffer, crc) answers 0, not crc.
  for (let i = 1; i < parts.length; i++) if (parts[i].length > 0) crc = crc32(parts[i], crc);
  prefix.writeUInt32LE(crc >>> 0, 12);
  return parts;
}

/** Serialises a store into one buffer. */
export function encodeStore(store: SegmentStore): Buffer {
  return Buffer.concat(encodeParts(store));
}

/** Writes atomically (temp file + rename) so a reader never sees a half-written store. Returns the byte size. */
export function writeStore(path: string, store: SegmentStore): number {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  let size = 0;
  try {
    for (const part of encodeParts(store)) {
      for (let off = 0; off < part.length; ) off += writeSync(fd, part, off, part.length - off);
      size += part.length;
    }
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  return size;
}

/** Decodes and verifies a store image. Throws SegbidError STORE_CORRUPT / STORE_VERSION. */
export function decodeStore(file: Buffer, source = 'segment store'): SegmentStore {
  if (file.length < 16) throw new SegbidError('STORE_CORRUPT', `${source}: truncated (${file.length} bytes, no header)`);
  if (file.readUInt32LE(0) !== STORE_MAGIC) throw new SegbidError('STORE_CORRUPT', `${source}: not a segbid segment store (bad magic)`);
  const version = file.readUInt32LE(4);
  if (version !== STORE_FORMAT_VERSION) {
    throw new SegbidError(
      'STORE_VERSION',
      `${source}: format version ${version}, this bidder reads version ${STORE_FORMAT_VERSION} (recompile it with \`segbid compile\`)`,
    );
  }
  const headerLength = file.readUInt32LE(8);
  const headerPadded = Math.ceil((16 + headerLength) / 8) * 8;
  if (headerPadded > file.length) throw new SegbidError('STORE_CORRUPT', `${source}: truncated inside the header`);
  const expectedCrc = file.readUInt32LE(12);
  let header: StoreHeader;
  try {
    header = unpack(file.subarray(16, 16 + headerLength)) as StoreHeader;
  } catch {
    throw new SegbidError('STORE_CORRUPT', `${source}: unreadable header`);
  }
  const { words, rowCount, capacity } = header ?? ({} as StoreHeader);
  const valid =
    Number.isInteger(words) && words > 0 && words <= 128 && Number.isInteger(rowCount) && rowCount >= 0 &&
    Number.isInteger(capacity) && capacity > 0 && capacity < 2 ** 31 && Array.isArray(header.segments) &&
    (header.lookalikes === undefined || Array.isArray(header.lookalikes));
  if (!valid) throw new SegbidError('STORE_CORRUPT', `${source}: header fields out of range`);
  const expectedLength = headerPadded + 4 * (3 * capacity + rowCount * words) + capacity;
  if (file.length !== expectedLength) {
    throw new SegbidError('STORE_CORRUPT', `${source}: ${file.length} bytes, expected ${expectedLength} (truncated or padded)`);
  }
  if (crc32(file.subarray(16)) >>> 0 !== expectedCrc) throw new SegbidError('STORE_CORRUPT', `${source}: checksum mismatch`);
  // Typed arrays need 4-byte alignment; a pooled small Buffer may not have it, so copy only then.
  const aligned = file.byteOffset % 8 === 0 ? file : Buffer.from(file);
  const base = aligned.byteOffset + headerPadded;
  const slots = new Uint32Array(aligned.buffer, base, capacity * 3);
  const rows = new Uint32Array(aligned.buffer, base + capacity * 12, rowCount * words);
  const fingerprints = new Uint8Array(aligned.buffer, base + capacity * 12 + rowCount * words * 4, capacity);
  // A CRC catches accidents, not a crafted file: prove the probe loop terminates, rows are in range and the
  // fingerprints describe the slots (else a key would be unreachable, or an empty slot read as taken).
  let empty = false;
  for (let s = 0; s < capacity; s++) {
    const row = slots[s * 3 + 2];
    const f = fingerprints[s];
    if (row === 0) {
      empty = true;
      if (f !== 0) throw new SegbidError('STORE_CORRUPT', `${source}: slot ${s} is empty but has a fingerprint`);
    } else if (row > rowCount) {
      throw new SegbidError('STORE_CORRUPT', `${source}: slot ${s} points past the rows`);
    } else if (f !== fingerprintOf(slots[s * 3 + 1])) {
      throw new SegbidError('STORE_CORRUPT', `${source}: slot ${s} fingerprint does not match its key`);
    }
  }
  if (!empty) throw new SegbidError('STORE_CORRUPT', `${source}: key table has no empty slot`);
  return new SegmentStore(header, slots, rows, fingerprints);
}

export function readStore(path: string): SegmentStore {
  let file: Buffer;
  try {
    file = readFileSync(path);
  } catch (e) {
    throw new SegbidError('STORE_UNREADABLE', `segment store ${path}: ${(e as Error).message}`);
  }
  return decodeStore(file, `segment store ${path}`);
}

/** Reads only the format version of a store file (its first 8 bytes), or null when unreadable / not a store. */
export function peekStoreVersion(path: string): number | null {
  try {
    const fd = openSync(path, 'r');
    try {
      const b = Buffer.alloc(8);
      if (readSync(fd, b, 0, 8, 0) < 8 || b.readUInt32LE(0) !== STORE_MAGIC) return null;
      return b.readUInt32LE(4);
    } finally {
      closeSync(fd);
    }
  } catch {
    return null;
  }
}

/** Checks that the store speaks the same dictionary as the config (same segment ids at the same bits). */
export function checkStoreMatches(store: SegmentStore, dictionary: SegmentDictionary): void {
  const ids = dictionary.segments.map((s) => s.id);
  if (store.words !== dictionary.words) {
    throw new SegbidError('STORE_MISMATCH', `segment store is ${store.words * 32} bits wide, the segmentation ${dictionary.words * 32}`);
  }
  const storeIds = store.header.segments;
  for (let i = 0; i < ids.length; i++) {
    if (storeIds[i] !== undefined && storeIds[i] !== ids[i]) {
      throw new SegbidError('STORE_MISMATCH', `segment store bit ${i} is "${storeIds[i]}", the segmentation says "${ids[i]}"`);
    }
  }
  // The same ids are not enough: a segment whose kind, parent or rule changed has other members (and group bits)
  // than the store holds for it.
  const hashes = store.header.segmentHashes;
  if (hashes !== undefined) {
    for (let i = 0; i < ids.length && i < hashes.length; i++) {
      if (hashes[i] !== segmentDefinitionHash(dictionary.segments[i])) {
        throw new SegbidError('STORE_MISMATCH', `segment "${ids[i]}" changed (kind, parent or rule) since the segment store was compiled: recompile it (segbid compile)`);
      }
    }
  }
}

/**
 * A short hash of what decides a segment's members in a store: its kind, parent and rule (not its name). Keys in
 * sorted order, so the same definition written in another order hashes the same.
 */
export function segmentDefinitionHash(s: SegmentDef): string {
  const canonical = (v: unknown): string => {
    if (Array.isArray(v)) return '[' + v.map(canonical).join(',') + ']';
    if (v !== null && typeof v === 'object') {
      return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canonical((v as Record<string, unknown>)[k])).join(',') + '}';
    }
    return JSON.stringify(v) ?? 'null';
  };
  // The store's own 64-bit key hash (key-hash.ts), under a kind no user key has.
  hashKey(0, canonical({ kind: s.kind, parent: s.parent ?? null, rule: s.rule ?? null }));
  return keyHash.hi.toString(16).padStart(8, '0') + keyHash.lo.toString(16).padStart(8, '0');
}
