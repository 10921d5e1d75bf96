/**
 * The compiled segment store: user-key hashes -> fixed-width segment bitset rows, in typed arrays.
 *
 * File layout (little endian):
 *   0  "SGBS" magic            4  u32 format version      8  u32 header length H     12  u32 crc32(header+payload)
 *   16 header (msgpackr: words, rowCount, capacity, segment ids, userCount, createdAt), zero-padded to 8 bytes
 *   then four arrays, each u32: slotRow[capacity] (row+1, 0 = empty slot), slotHi[capacity], slotLo[capacity],
 *   rows[rowCount * words].
 * The hash table is open addressing with linear probing, capacity a power of two. Loading maps the arrays over
 * the file buffer: nothing is parsed per user. Several keys of one user (buyeruid, ifa, eids) share one row.
 */
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { pack, unpack } from 'msgpackr';
import { SegbidError } from '../common/errors.js';
import type { SegmentDictionary } from './segmentation.js';

export const STORE_MAGIC = 0x53424753; // "SGBS" read as u32 LE
export const STORE_FORMAT_VERSION = 1;

export interface StoreHeader {
  words: number;
  rowCount: number;
  capacity: number;
  segments: string[];
  userCount: number;
  keyCount: number;
  createdAt: string;
}

export class SegmentStore {
  readonly header: StoreHeader;
  readonly words: number;
  private readonly mask: number;
  private readonly slotRow: Uint32Array;
  private readonly slotHi: Uint32Array;
  private readonly slotLo: Uint32Array;
  private readonly rows: Uint32Array;
  /** Bytes held by the arrays (for the resident-bytes-per-user figure). */
  readonly byteLength: number;

  constructor(header: StoreHeader, slotRow: Uint32Array, slotHi: Uint32Array, slotLo: Uint32Array, rows: Uint32Array) {
    this.header = header;
    this.words = header.words;
    this.mask = header.capacity - 1;
    this.slotRow = slotRow;
    this.slotHi = slotHi;
    this.slotLo = slotLo;
    this.rows = rows;
    this.byteLength = slotRow.byteLength * 3 + rows.byteLength;
  }

  static empty(words: number, segments: string[]): SegmentStore {
    const header: StoreHeader = { words, rowCount: 0, capacity: 1, segments, userCount: 0, keyCount: 0, createdAt: '' };
    return new SegmentStore(header, new Uint32Array(1), new Uint32Array(1), new Uint32Array(1), new Uint32Array(0));
  }

  /**
   * ORs the row of the key (hi, lo) into `out` (length >= words). Returns false for an unknown key.
   * Allocation-free; at load factor <= 0.5 the expected probe count is about 1.5.
   */
  orInto(hi: number, lo: number, out: Uint32Array): boolean {
    const mask = this.mask;
    let slot = lo & mask;
    for (;;) {
      const row = this.slotRow[slot];
      if (row === 0) return false;
      if (this.slotLo[slot] === lo && this.slotHi[slot] === hi) {
        const words = this.words;
        const base = (row - 1) * words;
        for (let w = 0; w < words; w++) out[w] |= this.rows[base + w];
        return true;
      }
      slot = (slot + 1) & mask;
    }
  }
}

/** Collects users in memory, then writes a store file. (The streaming CRM compiler builds on the same table.) */
export class SegmentStoreBuilder {
  private readonly words: number;
  private readonly segments: string[];
  private rows: Uint32Array;
  private rowCount = 0;
  private keyHi: number[] = [];
  private keyLo: number[] = [];
  private keyRow: number[] = [];

  constructor(dictionary: SegmentDictionary) {
    this.words = dictionary.words;
    this.segments = dictionary.segments.map((s) => s.id);
    this.rows = new Uint32Array(1024 * this.words);
  }

  /** Adds a user with its segment bits; returns the row index. Keys are added with addKey (hashes). */
  addUser(bits: Iterable<number>): number {
    if ((this.rowCount + 1) * this.words > this.rows.length) {
      const grown = new Uint32Array(this.rows.length * 2);
      grown.set(this.rows);
      this.rows = grown;
    }
    const base = this.rowCount * this.words;
    for (const bit of bits) this.rows[base + (bit >>> 5)] |= 1 << (bit & 31);
    return this.rowCount++;
  }

  addKey(row: number, hi: number, lo: number): void {
    this.keyHi.push(hi >>> 0);
    this.keyLo.push(lo >>> 0);
    this.keyRow.push(row);
  }

  /** `createdAt` is part of the header; pass a fixed value for byte-identical (deterministic) output. */
  build(createdAt = new Date().toISOString()): SegmentStore {
    const keyCount = this.keyRow.length;
    let capacity = 2;
    while (capacity < keyCount * 2) capacity *= 2;
    const mask = capacity - 1;
    const slotRow = new Uint32Array(capacity);
    const slotHi = new Uint32Array(capacity);
    const slotLo = new Uint32Array(capacity);
    let stored = 0;
    for (let k = 0; k < keyCount; k++) {
      const hi = this.keyHi[k];
      const lo = this.keyLo[k];
      let slot = lo & mask;
      while (slotRow[slot] !== 0 && !(slotHi[slot] === hi && slotLo[slot] === lo)) slot = (slot + 1) & mask;
      if (slotRow[slot] === 0) stored++;
      slotRow[slot] = this.keyRow[k] + 1; // a repeated key keeps its last row
      slotHi[slot] = hi;
      slotLo[slot] = lo;
    }
    const header: StoreHeader = {
      words: this.words,
      rowCount: this.rowCount,
      capacity,
      segments: this.segments,
      userCount: this.rowCount,
      keyCount: stored,
      createdAt,
    };
    return new SegmentStore(header, slotRow, slotHi, slotLo, this.rows.slice(0, this.rowCount * this.words));
  }
}

function toBytes(a: Uint32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Serialises a store (the arrays are reached through a tiny accessor to keep them private elsewhere). */
export function encodeStore(store: SegmentStore): Buffer {
  const s = store as unknown as { slotRow: Uint32Array; slotHi: Uint32Array; slotLo: Uint32Array; rows: Uint32Array };
  const headerBytes = pack(store.header);
  const headerPadded = Math.ceil((16 + headerBytes.length) / 8) * 8 - 16;
  const prefix = Buffer.alloc(16 + headerPadded);
  prefix.writeUInt32LE(STORE_MAGIC, 0);
  prefix.writeUInt32LE(STORE_FORMAT_VERSION, 4);
  prefix.writeUInt32LE(headerBytes.length, 8);
  headerBytes.copy(prefix, 16);
  const parts = [prefix.subarray(16), toBytes(s.slotRow), toBytes(s.slotHi), toBytes(s.slotLo), toBytes(s.rows)];
  let crc = 0;
  for (const p of parts) crc = crc32(p, crc);
  prefix.writeUInt32LE(crc >>> 0, 12);
  return Buffer.concat([prefix, ...parts.slice(1)]);
}

/** Writes atomically (temp file + rename) so a reader never sees a half-written store. */
export function writeStore(path: string, store: SegmentStore): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, encodeStore(store));
  renameSync(tmp, path);
}

/** Decodes and verifies a store image. Throws SegbidError STORE_CORRUPT / STORE_VERSION. */
export function decodeStore(file: Buffer, source = 'segment store'): SegmentStore {
  if (file.length < 16) throw new SegbidError('STORE_CORRUPT', `${source}: truncated (${file.length} bytes, no header)`);
  if (file.readUInt32LE(0) !== STORE_MAGIC) throw new SegbidError('STORE_CORRUPT', `${source}: not a segbid segment store (bad magic)`);
  const version = file.readUInt32LE(4);
  if (version !== STORE_FORMAT_VERSION) {
    throw new SegbidError('STORE_VERSION', `${source}: format version ${version}, this bidder reads version ${STORE_FORMAT_VERSION}`);
  }
  const headerLength = file.readUInt32LE(8);
  const headerPadded = Math.ceil((16 + headerLength) / 8) * 8;
  if (headerPadded > file.length) throw new SegbidError('STORE_CORRUPT', `${source}: truncated inside the header`);
  const expectedCrc = file.readUInt32LE(12);
  const actualCrc = crc32(file.subarray(16)) >>> 0;
  let header: StoreHeader;
  try {
    header = unpack(file.subarray(16, 16 + headerLength)) as StoreHeader;
  } catch {
    throw new SegbidError('STORE_CORRUPT', `${source}: unreadable header`);
  }
  const { words, rowCount, capacity } = header ?? ({} as StoreHeader);
  const valid =
    Number.isInteger(words) && words > 0 && Number.isInteger(rowCount) && rowCount >= 0 &&
    Number.isInteger(capacity) && capacity > 0 && (capacity & (capacity - 1)) === 0 && Array.isArray(header.segments);
  if (!valid) throw new SegbidError('STORE_CORRUPT', `${source}: header fields out of range`);
  const expectedLength = headerPadded + 4 * (3 * capacity + rowCount * words);
  if (file.length !== expectedLength) {
    throw new SegbidError('STORE_CORRUPT', `${source}: ${file.length} bytes, expected ${expectedLength} (truncated or padded)`);
  }
  if (actualCrc !== expectedCrc) throw new SegbidError('STORE_CORRUPT', `${source}: checksum mismatch`);
  // Typed arrays need 4-byte alignment; a pooled small Buffer may not have it, so copy only then.
  const aligned = file.byteOffset % 8 === 0 ? file : Buffer.from(file);
  const base = aligned.byteOffset + headerPadded;
  const view = (offsetWords: number, length: number) => new Uint32Array(aligned.buffer, base + offsetWords * 4, length);
  return new SegmentStore(
    header,
    view(0, capacity),
    view(capacity, capacity),
    view(2 * capacity, capacity),
    view(3 * capacity, rowCount * words),
  );
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
}
