/**
 * The segment store format: round trips (every key of every row survives encode/decode), deduplicated rows,
 * and clean SegbidError codes for corrupt, truncated and wrong-version files.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { crc32 } from 'node:zlib';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  STORE_FORMAT_VERSION,
  SegmentStore,
  SegmentStoreBuilder,
  checkStoreMatches,
  decodeStore,
  encodeStore,
  fingerprintOf,
  peekStoreVersion,
  readStore,
  writeStore,
} from '../src/segments/segment-store.js';
import { SegbidError } from '../src/common/errors.js';
import { buildDictionary } from '../src/segments/segmentation.js';
import type { SegmentationDef } from '../src/config/types.js';
import { KEY_KIND, hashKey, keyHash } from '../src/segments/key-hash.js';

function dictionary(words: number) {
  return { words, segments: Array.from({ length: words * 32 }, (_, i) => ({ id: `s${i}` })) };
}

function expectCode(fn: () => unknown, code: string, message?: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SegbidError);
    expect((e as SegbidError).code).toBe(code);
    if (message) expect((e as Error).message).toMatch(message);
    return;
  }
  throw new Error(`expected SegbidError ${code}`);
}

const u32 = fc.integer({ min: 0, max: 0xffffffff });

describe('segment store round trip', () => {
  it('encode/decode preserves the row of every key, unknown keys stay unknown', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.record({ keys: fc.array(fc.tuple(u32, u32), { minLength: 0, maxLength: 3 }), bits: fc.array(fc.integer({ min: 0, max: 127 }), { maxLength: 6 }) }), { maxLength: 60 }),
        fc.array(fc.tuple(u32, u32), { maxLength: 10 }),
        (words, users, probes) => {
          const builder = new SegmentStoreBuilder(dictionary(words));
          const expected = new Map<string, Uint32Array>();
          for (const u of users) {
            const row = builder.addUser(u.bits.filter((b) => b < words * 32));
            const bits = new Uint32Array(words);
            for (const b of u.bits) if (b < words * 32) bits[b >>> 5] |= 1 << (b & 31);
            for (const [hi, lo] of u.keys) {
              builder.addKey(row, hi, lo);
              expected.set(`${hi}:${lo}`, bits); // a repeated key keeps its last user
            }
          }
          const store = decodeStore(encodeStore(builder.build('2026-01-01T00:00:00.000Z')));
          expect(store.header.keyCount).toBe(expected.size);
          for (const [key, bits] of expected) {
            const [hi, lo] = key.split(':').map(Number);
            const out = new Uint32Array(words);
            expect(store.orInto(hi, lo, out)).toBe(true);
            expect(Array.from(out)).toEqual(Array.from(bits));
          }
          for (const [hi, lo] of probes) {
            if (expected.has(`${hi}:${lo}`)) continue;
            const out = new Uint32Array(words);
            expect(store.orInto(hi, lo, out)).toBe(false);
            expect(out.every((w) => w === 0)).toBe(true);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('shares one row between users with the same segments and skips users without keys', () => {
    const builder = new SegmentStoreBuilder(dictionary(8));
    for (let i = 0; i < 1000; i++) {
      const row = builder.addUser(i % 3 === 0 ? [1, 200] : [5]);
      if (i % 10 !== 9) builder.addKey(row, i, i * 7919);
    }
    const store = builder.build();
    expect(store.header.rowCount).toBe(2);
    expect(store.header.userCount).toBe(900);
    // Slots (12 bytes) and fingerprints (1) per slot, the two distinct rows, and the key filter (10 bits a key, in
    // 64-byte blocks).
    expect(store.byteLength).toBe(store.capacity * 13 + 2 * 8 * 4 + Math.ceil((900 * 10) / 512) * 64);
    const out = new Uint32Array(8);
    expect(store.orInto(3, 3 * 7919, out)).toBe(true);
    expect(out[0]).toBe(1 << 1);
    expect(out[6]).toBe(1 << 8);
  });

  it('a key added for several users keeps the last one; a user left without a key of its own is not stored', () => {
    const builder = new SegmentStoreBuilder(dictionary(1));
    const first = builder.addUser([1]); // keys 1 and 2, both added again below: superseded
    builder.addKey(first, 1, 1);
    builder.addKey(first, 2, 2);
    const second = builder.addUser([2]); // key 1 again, and 3 of its own
    builder.addKey(second, 1, 1);
    builder.addKey(second, 3, 3);
    const third = builder.addUser([3]); // key 2 again, twice (the same user twice is no duplicate)
    builder.addKey(third, 2, 2);
    builder.addKey(third, 2, 2);
    expect(builder.resolveKeys()).toEqual({ served: Uint8Array.from([0, 1, 1]), duplicateKeys: 2, supersededUsers: 1 });
    const finals: number[] = [];
    builder.forEachFinalKey((k) => finals.push(k));
    expect(finals.sort()).toEqual([2, 3, 5]);
    const store = decodeStore(encodeStore(builder.build('t')));
    expect([store.header.userCount, store.header.keyCount, store.header.rowCount]).toEqual([2, 3, 2]);
    const rowOf = (k: number) => {
      const out = new Uint32Array(1);
      store.orInto(k, k, out);
      return out[0];
    };
    expect([rowOf(1), rowOf(2), rowOf(3)]).toEqual([1 << 2, 1 << 3, 1 << 2]);
    expect(() => builder.addKey(first, 9, 9)).toThrow(/after resolveKeys/);
    expect(() => builder.build('t')).toThrow(/once/);
  });

  it('writes atomically and reads back; an empty store answers unknown', () => {
    const dir = mkdtempSync(join(tmpdir(), 'segbid-store-'));
    try {
      const builder = new SegmentStoreBuilder(dictionary(2));
      builder.addKey(builder.addUser([3, 40]), 11, 22);
      const path = join(dir, 'a.store');
      const size = writeStore(path, builder.build('x'));
      expect(readFileSync(path).length).toBe(size);
      expect(peekStoreVersion(path)).toBe(STORE_FORMAT_VERSION);
      const out = new Uint32Array(2);
      expect(readStore(path).orInto(11, 22, out)).toBe(true);
      expect(Array.from(out)).toEqual([1 << 3, 1 << 8]);
      expect(SegmentStore.empty(2, []).orInto(11, 22, out)).toBe(false);
      expect(decodeStore(encodeStore(SegmentStore.empty(2, ['a']))).orInto(1, 2, out)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('segment store key filter', () => {
  it('holds every key (no false negatives) and turns away most others, after a round trip through the file', () => {
    const builder = new SegmentStoreBuilder(dictionary(8));
    const keys: [number, number][] = [];
    for (let i = 0; i < 40_000; i++) {
      const row = builder.addUser([i % 256]);
      hashKey(KEY_KIND.buyeruid, `user-${i}`);
      keys.push([keyHash.hi, keyHash.lo]);
      builder.addKey(row, keyHash.hi, keyHash.lo);
    }
    const dir = mkdtempSync(join(tmpdir(), 'segbid-filter-'));
    try {
      const path = join(dir, 'segments.store');
      writeStore(path, builder.build());
      const store = readStore(path);
      const out = new Uint32Array(8);
      keys.forEach(([hi, lo], i) => {
        expect(store.mayHold(hi, lo)).toBe(true);
        out.fill(0);
        expect(store.orInto(hi, lo, out)).toBe(true);
        expect(out[(i % 256) >>> 5]).toBe((1 << (i % 32)) >>> 0);
      });
      let held = 0;
      for (let i = 0; i < 40_000; i++) {
        hashKey(KEY_KIND.buyeruid, `stranger-${i}`);
        if (store.mayHold(keyHash.hi, keyHash.lo)) held++;
        expect(store.orInto(keyHash.hi, keyHash.lo, out)).toBe(false);
      }
      expect(held / 40_000).toBeLessThan(0.03); // ~1.5% at 10 bits a key
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('segment store rejects bad files', () => {
  function sample(): Buffer {
    const builder = new SegmentStoreBuilder(dictionary(2));
    for (let i = 0; i < 50; i++) builder.addKey(builder.addUser([i % 7]), i, i * 31 + 5);
    return encodeStore(builder.build('2026-01-01T00:00:00.000Z'));
  }
  function refreshCrc(file: Buffer): void {
    file.writeUInt32LE(crc32(file.subarray(16)) >>> 0, 12);
  }
  function payloadStart(file: Buffer): number {
    return Math.ceil((16 + file.readUInt32LE(8)) / 8) * 8;
  }

  it('truncated files: STORE_CORRUPT', () => {
    const file = sample();
    expectCode(() => decodeStore(file.subarray(0, 10)), 'STORE_CORRUPT', /truncated/);
    expectCode(() => decodeStore(file.subarray(0, 20)), 'STORE_CORRUPT', /truncated/);
    expectCode(() => decodeStore(file.subarray(0, file.length - 4)), 'STORE_CORRUPT', /expected/);
    expectCode(() => decodeStore(Buffer.concat([file, Buffer.alloc(8)])), 'STORE_CORRUPT', /expected/);
  });

  it('flipped bytes: STORE_CORRUPT (checksum)', () => {
    fc.assert(
      fc.property(fc.nat(), fc.integer({ min: 1, max: 255 }), (at, xor) => {
        const file = Buffer.from(sample());
        const i = 16 + (at % (file.length - 16));
        file[i] ^= xor;
        expect(() => decodeStore(file)).toThrow(SegbidError);
        try {
          decodeStore(file);
        } catch (e) {
          expect((e as SegbidError).code).toBe('STORE_CORRUPT');
        }
      }),
      { numRuns: 100 },
    );
  });

  it('bad magic: STORE_CORRUPT; other version: STORE_VERSION', () => {
    const file = Buffer.from(sample());
    file.writeUInt32LE(0x12345678, 0);
    expectCode(() => decodeStore(file), 'STORE_CORRUPT', /magic/);
    // 3: the last format before hex keys were folded to lower case (its device ids would not match).
    for (const version of [1, 2, 3, 4, 0xffff]) {
      const other = Buffer.from(sample());
      other.writeUInt32LE(version, 4);
      expectCode(() => decodeStore(other), 'STORE_VERSION', new RegExp(`version ${version}`));
    }
  });

  it('a crafted file with a valid checksum cannot make lookups loop or read past the rows', () => {
    const file = Buffer.from(sample());
    const start = payloadStart(file);
    // slot 0 row index past the rows
    const past = Buffer.from(file);
    new Uint32Array(past.buffer, past.byteOffset + start, 3)[2] = 1000;
    refreshCrc(past);
    expectCode(() => decodeStore(past), 'STORE_CORRUPT', /past the rows/);
    // every slot taken (fingerprints kept consistent): a miss would probe forever
    const store = decodeStore(file);
    const full = Buffer.from(file);
    const slots = new Uint32Array(full.buffer, full.byteOffset + start, store.capacity * 3);
    const fpStart = start + store.capacity * 12 + store.header.rowCount * store.words * 4;
    for (let s = 0; s < store.capacity; s++) {
      if (slots[s * 3 + 2] === 0) {
        slots[s * 3 + 2] = 1;
        full[fpStart + s] = fingerprintOf(slots[s * 3 + 1]);
      }
    }
    refreshCrc(full);
    expectCode(() => decodeStore(full), 'STORE_CORRUPT', /no empty slot/);
    // a fingerprint that does not match its key would hide the key
    const wrongFp = Buffer.from(file);
    const taken = Array.from({ length: store.capacity }, (_, s) => s).find((s) => wrongFp[fpStart + s] !== 0)!;
    wrongFp[fpStart + taken] ^= 0x80;
    refreshCrc(wrongFp);
    expectCode(() => decodeStore(wrongFp), 'STORE_CORRUPT', /fingerprint/);
  });

  it('unreadable header and unreadable path', () => {
    const file = Buffer.from(sample());
    file.fill(0xc1, 16, 24); // 0xc1 is never valid msgpack
    refreshCrc(file);
    expectCode(() => decodeStore(file), 'STORE_CORRUPT');
    expectCode(() => readStore('/nonexistent/segbid.store'), 'STORE_UNREADABLE');
  });
});

describe('segment store volumes and the remote row', () => {
  it('carries the per-segment volumes in the header', () => {
    const builder = new SegmentStoreBuilder(dictionary(1));
    builder.addKey(builder.addUser([0, 3]), 1, 2);
    const store = decodeStore(encodeStore(builder.build('t', { crmUsers: 10, segmentUsers: [4, 0, 0, 7], segmentActivable: [1, 0, 0, 2] })));
    expect(store.header.crmUsers).toBe(10);
    expect(store.header.segmentUsers).toEqual([4, 0, 0, 7]);
    expect(store.header.segmentActivable).toEqual([1, 0, 0, 2]);
  });

  it('remoteRow answers for keys the file does not know, only while it is set', () => {
    const builder = new SegmentStoreBuilder(dictionary(2));
    builder.addKey(builder.addUser([1]), 5, 6);
    const store = decodeStore(encodeStore(builder.build('t')));
    store.remoteRow = new Uint32Array([0, 1 << 4]);
    const out = new Uint32Array(2);
    expect(store.orInto(5, 6, out)).toBe(true); // a local key keeps its local row
    expect(Array.from(out)).toEqual([1 << 1, 0]);
    out.fill(0);
    expect(store.orInto(9, 9, out)).toBe(true);
    expect(Array.from(out)).toEqual([0, 1 << 4]);
    expect(store.rowOf(9, 9)).toBe(-1); // the file store's own answer is unchanged
    store.remoteRow = null;
    out.fill(0);
    expect(store.orInto(9, 9, out)).toBe(false);
    expect(Array.from(out)).toEqual([0, 0]);
  });
});

describe('a store and a segmentation that changed since it was compiled', () => {
  const seg = (over: Record<string, unknown> = {}) => ({
    segments: [
      { id: 'customers', name: 'Customers', kind: 'group' },
      { id: 'gold', name: 'Gold', kind: 'crm', parent: 'customers', rule: { col: 'tier', eq: 'gold' } },
      { id: 'young', name: 'Young', kind: 'crm', rule: { col: 'age', lt: 30 } },
      ...(over.extra ? [over.extra] : []),
    ].map((s) => (s.id === over.id ? { ...s, ...(over.with as object) } : s)),
  });
  const dict = (def: ReturnType<typeof seg>) => buildDictionaryForTest(def);
  const store = new SegmentStoreBuilder(dict(seg())).build();

  it('keeps the definitions in the file (a store read back is checked the same)', () => {
    const back = decodeStore(encodeStore(store));
    expect(back.header.segmentHashes).toEqual(store.header.segmentHashes);
    expect(back.header.segmentHashes).toHaveLength(3);
    expect(() => checkStoreMatches(back, dict(seg({ id: 'gold', with: { parent: null } })))).toThrow(/"gold" changed/);
  });

  it('is accepted when only names changed', () => {
    expect(() => checkStoreMatches(store, dict(seg({ id: 'gold', with: { name: 'Gold members' } })))).not.toThrow();
    expect(() => checkStoreMatches(store, dict(seg({ id: 'gold', with: { rule: { eq: 'gold', col: 'tier' } } })))).not.toThrow(); // key order
  });

  it.each([
    ['a kind', { id: 'gold', with: { kind: 'contextual', rule: { domains: ['gold.example'] } } }],
    ['a parent', { id: 'gold', with: { parent: null } }],
    ['a rule', { id: 'gold', with: { rule: { col: 'tier', eq: 'silver' } } }],
    ['a crm segment turned into a group', { id: 'young', with: { kind: 'group', rule: undefined } }],
  ])('is refused (STORE_MISMATCH, naming the segment) when %s changed', (_what, over) => {
    let error: unknown = null;
    try {
      checkStoreMatches(store, dict(seg(over)));
    } catch (e) {
      error = e;
    }
    expect((error as SegbidError).code).toBe('STORE_MISMATCH');
    expect((error as SegbidError).message).toContain(`"${(over as { id: string }).id}"`);
  });
});

function buildDictionaryForTest(def: { segments: Record<string, unknown>[] }) {
  const errors: { path: string; message: string }[] = [];
  const d = buildDictionary(def as unknown as SegmentationDef, '/segmentation', errors);
  expect(errors).toEqual([]);
  return d;
}
