import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileFrequencyCaps, InProcessCapStore, parseWindow, type CapLineItemDef } from '../src/bidding/frequency-caps.js';
import type { CampaignDef } from '../src/bidding/strategies/schema.js';
import type { ErrorDetail } from '../src/common/errors.js';
import { KEY_KIND, hashKey, keyHash } from '../src/segments/key-hash.js';

interface Case {
  name: string;
  lineItems: CapLineItemDef[];
  campaigns?: CampaignDef[];
  events?: { t: number; op: 'record' | 'check'; user: string; li: number; expect?: boolean }[];
  errors?: string[];
}
const cases = (JSON.parse(readFileSync(new URL('./cases-strategy/frequency-caps.json', import.meta.url), 'utf8')) as { cases: Case[] }).cases;
const T0 = 1_740_000_000_000;

function user(id: string): [number, number] {
  hashKey(KEY_KIND.buyeruid, id);
  return [keyHash.hi, keyHash.lo];
}

describe('frequency caps (cases-strategy/frequency-caps.json)', () => {
  for (const c of cases) {
    it(c.name, () => {
      const errors: ErrorDetail[] = [];
      const plan = compileFrequencyCaps(c.lineItems, c.campaigns, errors);
      if (c.errors) {
        expect(errors.map((e) => e.path)).toEqual(c.errors);
        return;
      }
      expect(errors).toEqual([]);
      const store = new InProcessCapStore(plan, { capacity: 1024 });
      (c.events ?? []).forEach((e, i) => {
        const [hi, lo] = user(e.user);
        const now = T0 + e.t * 1000;
        if (e.op === 'record') store.record(hi, lo, e.li, now);
        else {
          expect(store.check(hi, lo, e.li, now), `event ${i} at t=${e.t}`).toBe(e.expect);
          // The bid path's form (the user key as an object) answers the same.
          expect(store.checkUser({ hi, lo }, e.li, now), `event ${i} at t=${e.t} (checkUser)`).toBe(e.expect);
          // The bid path skips a user's checks when the store says it holds none of its impressions: never for a
          // capped user.
          if (e.expect === false) expect(store.userMayBeCapped({ hi, lo }), `event ${i} at t=${e.t} (userMayBeCapped)`).toBe(true);
        }
      });
    });
  }
});

describe('in-process cap store', () => {
  const plan = compileFrequencyCaps([{ id: 'li0', frequencyCaps: [{ window: '1h', max: 2 }] }], undefined, []);

  it('parses windows', () => {
    expect(parseWindow('90m')).toBe(5400);
    expect(parseWindow('7d')).toBe(604800);
    expect(parseWindow('2w')).toBe(1209600);
    expect(parseWindow('1y')).toBeNaN();
    expect(parseWindow('0h')).toBeNaN();
  });

  it('memory is fixed; when full the least recently seen entries are evicted', () => {
    const store = new InProcessCapStore(plan, { capacity: 64 });
    const bytes = store.bytes;
    for (let u = 0; u < 5000; u++) {
      const [hi, lo] = user(`user-${u}`);
      store.record(hi, lo, 0, T0 + u * 100);
      store.record(hi, lo, 0, T0 + u * 100);
    }
    expect(store.bytes).toBe(bytes);
    expect(store.capacity).toBe(64);
    expect(store.evictions).toBeGreaterThan(4000);
    // The most recent user of every set is still there (and capped); the first ones were evicted (allowed again).
    const [hi, lo] = user('user-4999');
    expect(store.check(hi, lo, 0, T0 + 4999 * 100 + 1000)).toBe(false);
    const [h0, l0] = user('user-0');
    expect(store.check(h0, l0, 0, T0 + 4999 * 100 + 1000)).toBe(true);
  });

  it('entries past their horizon are reused before live ones are evicted', () => {
    const store = new InProcessCapStore(plan, { capacity: 8 }); // one set of 8
    for (let u = 0; u < 8; u++) {
      const [hi, lo] = user(`old-${u}`);
      store.record(hi, lo, 0, T0);
    }
    const [hi, lo] = user('new');
    store.record(hi, lo, 0, T0 + 2 * 3600_000);
    expect(store.evictions).toBe(0);
  });

  it('keys differ by both hash lanes and by item', () => {
    const two = compileFrequencyCaps(
      [
        { id: 'a', frequencyCaps: [{ window: '1h', max: 1 }] },
        { id: 'b', frequencyCaps: [{ window: '1h', max: 1 }] },
      ],
      undefined,
      [],
    );
    const store = new InProcessCapStore(two, { capacity: 1024 });
    store.record(1, 2, 0, T0);
    expect(store.check(1, 2, 0, T0)).toBe(false);
    expect(store.check(1, 3, 0, T0)).toBe(true);
    expect(store.check(4, 2, 0, T0)).toBe(true);
    expect(store.check(1, 2, 1, T0)).toBe(true);
    expect(store.count(1, 2, 0, 3600, T0)).toBe(1);
  });

  it('caps survive a config reload (items matched by line item / campaign id)', () => {
    const old = new InProcessCapStore(compileFrequencyCaps([{ id: 'x' }, { id: 'li0', frequencyCaps: [{ window: '1h', max: 2 }] }], undefined, []), { capacity: 64 });
    const [hi, lo] = user('u1');
    old.record(hi, lo, 1, T0);
    old.record(hi, lo, 1, T0 + 1000);
    expect(old.check(hi, lo, 1, T0 + 2000)).toBe(false);
    const next = new InProcessCapStore(plan, { capacity: 64 });
    next.adoptFrom(old);
    expect(next.check(hi, lo, 0, T0 + 2000)).toBe(false);
    expect(next.check(hi, lo, 0, T0 + 3600_000)).toBe(true);
  });

  it('counts the entries per user bucket through eviction, merges, adoption and clear', () => {
    // White box: userEntries must equal, per bucket, the slots whose owner falls in it, or a user with
    // impressions could be skipped (a count too low) or the filter would decay (too high).
    const two = compileFrequencyCaps(
      [
        { id: 'a', frequencyCaps: [{ window: '1h', max: 1 }] },
        { id: 'b', frequencyCaps: [{ window: '1d', max: 3 }] },
      ],
      undefined,
      [],
    );
    type Inside = { keyItem: Int32Array; keyLo: Int32Array; userEntries: Int32Array; userMask: number };
    const expectCounts = (store: InProcessCapStore) => {
      const inside = store as unknown as Inside;
      const expected = new Int32Array(inside.userEntries.length);
      for (let slot = 0; slot < inside.keyItem.length; slot++) if (inside.keyItem[slot] !== 0) expected[inside.keyLo[slot] & inside.userMask]++;
      expect(Array.from(inside.userEntries)).toEqual(Array.from(expected));
    };
    const store = new InProcessCapStore(two, { capacity: 64 });
    const [fh, fl] = user('fresh');
    expect(store.userMayBeCapped({ hi: fh, lo: fl })).toBe(false);
    let t = T0;
    for (let u = 0; u < 3000; u++) {
      const [hi, lo] = user(`churn-${u % 700}`);
      t += 37_000; // entries of item a leave their 1h horizon, those of b stay a day: both reuse paths
      store.record(hi, lo, u % 2, t);
      expect(store.userMayBeCapped({ hi, lo })).toBe(true);
      if (u % 500 === 0) expectCounts(store);
    }
    expect(store.evictions).toBeGreaterThan(0);
    expectCounts(store);
    const [mh, ml] = user('merged');
    store.mergeTimes(mh, ml, 1, [Math.floor(t / 1000)]);
    expect(store.userMayBeCapped({ hi: mh, lo: ml })).toBe(true);
    expectCounts(store);
    const next = new InProcessCapStore(two, { capacity: 128 });
    next.adoptFrom(store);
    expectCounts(next);
    expect(next.userMayBeCapped({ hi: mh, lo: ml })).toBe(true);
    store.clear();
    expectCounts(store);
    expect(store.userMayBeCapped({ hi: mh, lo: ml })).toBe(false);
  });

  it('worker threads can share one table over a SharedArrayBuffer', () => {
    const buffer = InProcessCapStore.sharedBuffer(plan, { capacity: 64 });
    const writer = new InProcessCapStore(plan, { capacity: 64 }, buffer);
    const reader = new InProcessCapStore(plan, { capacity: 64 }, buffer);
    const [hi, lo] = user('shared');
    writer.record(hi, lo, 0, T0);
    writer.record(hi, lo, 0, T0 + 1);
    expect(reader.check(hi, lo, 0, T0 + 2)).toBe(false);
    expect(() => new InProcessCapStore(plan, { capacity: 128 }, buffer)).toThrow(RangeError);
  });

  it('check is cheap', () => {
    const store = new InProcessCapStore(plan, { capacity: 1 << 16 });
    const his = new Int32Array(1000);
    const los = new Int32Array(1000);
    for (let u = 0; u < 1000; u++) {
      [his[u], los[u]] = user(`u${u}`);
      store.record(his[u], los[u], 0, T0);
    }
    let allowed = 0;
    const run = (rounds: number): number => {
      const t0 = process.hrtime.bigint();
      for (let r = 0; r < rounds; r++) for (let u = 0; u < 1000; u++) if (store.check(his[u], los[u], 0, T0 + 1000)) allowed++;
      return Number(process.hrtime.bigint() - t0) / rounds / 1000;
    };
    run(100); // warm-up
    const ns = run(1000);
    console.log(`[measure] InProcessCapStore.check (1,000 users, 64k-entry table): ${ns.toFixed(0)} ns`);
    expect(allowed).toBe(1100 * 1000);
    expect(ns).toBeLessThan(2000);
  });
});
