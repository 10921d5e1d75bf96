import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ledger, RESERVE_FAIL, SETTLE, writeSnapshotFile, type CampaignTerms } from '../src/budget/ledger.js';
import { FileJournal, recoverLedger, replayJournal } from '../src/budget/ledger-journal.js';
import { SegbidError } from '../src/common/errors.js';
import { crc32 } from 'node:zlib';
import { pack, unpack } from 'msgpackr';

const DAY = 86_400_000;
/** Property runs (FC_RUNS=5000 for a longer search). */
const RUNS = Number(process.env.FC_RUNS ?? 300);
const T0 = Date.parse('2026-03-02T00:00:00Z');

function terms(overrides: Partial<CampaignTerms> = {}): CampaignTerms[] {
  return [
    { id: 'a', dailyMicros: 50_000, flightMicros: 120_000, flightStartMs: T0, flightEndMs: T0 + 3 * DAY, reservationTtlMs: 60_000, utcOffsetMs: 0, ...overrides },
    { id: 'b', dailyMicros: -1, flightMicros: 90_000, flightStartMs: T0, flightEndMs: T0 + 3 * DAY, reservationTtlMs: 30_000, utcOffsetMs: 3_600_000 },
  ];
}

/** A random operation on the ledger. Handles are picked by index among those ever issued (stale ones too). */
type Op =
  | { k: 'reserve'; c: number; amount: number; dt: number }
  | { k: 'settle'; h: number; frac: number; over: number; dt: number }
  | { k: 'release'; h: number; dt: number }
  | { k: 'expire'; dt: number }
  | { k: 'adjust'; h: number; frac: number; dt: number }
  | { k: 'book'; c: number; amount: number; dt: number }
  | { k: 'garbage'; dt: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ k: fc.constant('reserve' as const), c: fc.integer({ min: 0, max: 1 }), amount: fc.integer({ min: 1, max: 9000 }), dt: fc.integer({ min: 0, max: 20_000 }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('settle' as const), h: fc.nat(), frac: fc.double({ min: 0, max: 1, noNaN: true }), over: fc.integer({ min: 0, max: 5 }), dt: fc.integer({ min: 0, max: 20_000 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('release' as const), h: fc.nat(), dt: fc.integer({ min: 0, max: 20_000 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('expire' as const), dt: fc.integer({ min: 0, max: 9 * 3_600_000 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('adjust' as const), h: fc.nat(), frac: fc.double({ min: 0, max: 1, noNaN: true }), dt: fc.integer({ min: 0, max: 20_000 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('book' as const), c: fc.integer({ min: 0, max: 1 }), amount: fc.integer({ min: 0, max: 9000 }), dt: fc.integer({ min: 0, max: 20_000 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('garbage' as const), dt: fc.constant(0) }) },
);

/** Applies ops, checking the invariant and the no-overspend bounds after each one. Returns the clock. */
function run(ledger: Ledger, ops: Op[], handles: number[], startMs = T0): number {
  let now = startMs;
  for (const op of ops) {
    now += op.dt;
    const pick = (i: number) => (handles.length === 0 ? 12345 : handles[i % handles.length]);
    switch (op.k) {
      case 'reserve': {
        const before = ledger.remainingOf(op.c);
        const h = ledger.reserve(op.c, 7, op.amount, now);
        if (h >= 0) {
          handles.push(h);
          expect(ledger.amountOf(h)).toBe(op.amount);
        } else if (h === RESERVE_FAIL.day_budget || h === RESERVE_FAIL.flight_budget) {
          expect(op.amount).toBeGreaterThan(before < 0 ? 0 : ledger.remainingOf(op.c));
        }
        break;
      }
      case 'settle': {
        const h = pick(op.h);
        const wasOpen = ledger.isOpen(h);
        const amount = ledger.amountOf(h);
        const actual = Math.floor(amount * op.frac) + op.over * 1000;
        const spentBefore = ledger.flightSpentOf(0) + ledger.flightSpentOf(1);
        const code = ledger.settle(h, actual, now);
        const booked = ledger.flightSpentOf(0) + ledger.flightSpentOf(1) - spentBefore;
        // Settling never books more than was reserved, nor more than the notice says.
        expect(booked).toBeLessThanOrEqual(Math.min(actual, amount));
        expect(booked).toBe(ledger.lastBooked);
        if (wasOpen) {
          expect(code).toBe(SETTLE.settled);
          expect(booked).toBe(Math.min(actual, amount));
        } else expect(code).not.toBe(SETTLE.settled);
        break;
      }
      case 'release':
        ledger.release(pick(op.h), now);
        break;
      case 'expire':
        ledger.expire(now);
        break;
      case 'adjust': {
        const h = pick(op.h);
        ledger.adjust(h, Math.floor(ledger.amountOf(h) * op.frac), now);
        break;
      }
      case 'book':
        ledger.bookUnreserved(op.c, 3, op.amount, now);
        break;
      case 'garbage':
        expect(ledger.settle(-1, 10, now)).toBe(SETTLE.unknown);
        expect(ledger.settle(Number.NaN, 10, now)).toBe(SETTLE.unknown);
        expect(ledger.release(2 ** 60)).toBe(false);
        expect(ledger.reserve(0, 1, 1.5, now)).toBe(RESERVE_FAIL.invalid);
        expect(ledger.reserve(5, 1, 10, now)).toBe(RESERVE_FAIL.invalid);
        break;
    }
    ledger.checkInvariant();
    for (let c = 0; c < 2; c++) {
      const a = ledger.account(c);
      // Never overspend, even if every open reservation wins at its full amount.
      expect(a.flight.spent + a.flight.reserved).toBeLessThanOrEqual(a.flight.budget);
      expect(a.day.spent + a.day.reserved).toBeLessThanOrEqual(a.day.budget);
      expect(a.flight.budget).toBe(c === 0 ? 120_000 : 90_000);
      if (c === 0) expect(a.day.budget).toBeLessThanOrEqual(Math.max(50_000, a.day.reserved));
    }
  }
  return now;
}

/** Comparable state: accounts without the refusal counters (not journaled) + the state of every handle. */
function stateOf(ledger: Ledger, handles: number[]): unknown {
  const accounts = [0, 1].map((c) => {
    const a = ledger.account(c);
    const { refusedDay: _d, refusedFlight: _f, duplicates: _u, ...counters } = a.counters;
    return { ...a, counters };
  });
  return { accounts, handles: handles.map((h) => [ledger.describe(h), ledger.amountOf(h)]) };
}

describe('budget ledger', () => {
  it('holds its invariant and never overspends under random interleavings', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 300 }), (ops) => {
        run(new Ledger(terms(), 4), ops, []);
      }),
      { numRuns: RUNS },
    );
  });

  it('reserves only within both the day and the flight remainders', () => {
    const ledger = new Ledger(terms());
    const h1 = ledger.reserve(0, 0, 30_000, T0 + 1000);
    expect(h1).toBeGreaterThanOrEqual(0);
    expect(ledger.reserve(0, 0, 20_001, T0 + 1000)).toBe(RESERVE_FAIL.day_budget);
    const h2 = ledger.reserve(0, 0, 20_000, T0 + 1000);
    expect(h2).toBeGreaterThanOrEqual(0);
    expect(ledger.remainingOf(0)).toBe(0);
    // Every open reservation wins at its full amount: exactly the budget, not a micro more.
    expect(ledger.settle(h1, 30_000, T0 + 2000)).toBe(SETTLE.settled);
    expect(ledger.settle(h2, 25_000, T0 + 2000)).toBe(SETTLE.settled); // above the reservation: capped
    expect(ledger.account(0).day.spent).toBe(50_000);
    expect(ledger.overrunOf(0)).toBe(5_000);
    expect(ledger.settle(h1, 30_000, T0 + 3000)).toBe(SETTLE.duplicate);
    // Next day: the daily cap again, but the flight has only 70k left.
    expect(ledger.reserve(0, 0, 50_000, T0 + DAY + 10)).toBeGreaterThanOrEqual(0);
    expect(ledger.reserve(0, 0, 1, T0 + DAY + 10)).toBe(RESERVE_FAIL.day_budget);
    expect(ledger.reserve(0, 0, 1, T0 - 1)).toBe(RESERVE_FAIL.out_of_flight);
    expect(ledger.reserve(0, 0, 1, T0 + 3 * DAY)).toBe(RESERVE_FAIL.out_of_flight);
    ledger.checkInvariant();
  });

  it('spreads a flight budget without a daily cap over the days left', () => {
    const ledger = new Ledger(terms());
    ledger.roll(1, T0 + 1000); // campaign b: UTC+1, so its first local day is 23 hours of flight: 3 local days started
    const b = ledger.account(1);
    expect(b.day.budget).toBe(Math.ceil(90_000 / 4));
  });

  it('expires reservations after their TTL, and books a late win within the budget left', () => {
    const ledger = new Ledger(terms());
    const h = ledger.reserve(0, 4, 40_000, T0 + 1000);
    expect(ledger.expire(T0 + 60_999)).toBe(0);
    expect(ledger.isOpen(h)).toBe(true);
    expect(ledger.expire(T0 + 61_000)).toBe(1);
    expect(ledger.describe(h)).toBe('expired');
    expect(ledger.account(0).day.reserved).toBe(0);
    // The freed budget is taken by another bid...
    const h2 = ledger.reserve(0, 4, 30_000, T0 + 62_000);
    expect(h2).toBeGreaterThanOrEqual(0);
    // ...then the late win arrives: only the 20k still free are booked, the rest is overrun (bounded by 40k).
    expect(ledger.settle(h, 40_000, T0 + 70_000)).toBe(SETTLE.late);
    expect(ledger.lastBooked).toBe(20_000);
    expect(ledger.lastTag).toBe(4);
    expect(ledger.overrunOf(0)).toBe(20_000);
    expect(ledger.account(0).counters.lateSettles).toBe(1);
    ledger.checkInvariant();
    expect(ledger.account(0).day.spent + ledger.account(0).day.reserved).toBe(50_000);
  });

  it('restarts a billing-settled reservation on its win, and re-opens an expired one when affordable', () => {
    const ledger = new Ledger(terms());
    const h = ledger.reserve(0, 1, 5_000, T0);
    expect(ledger.adjust(h, 3_000, T0 + 50_000)).toBe(true);
    expect(ledger.account(0).day.reserved).toBe(3_000);
    expect(ledger.expire(T0 + 70_000)).toBe(0); // its TTL restarted at the win
    expect(ledger.expire(T0 + 110_000)).toBe(1);
    expect(ledger.adjust(h, 2_500, T0 + 120_000)).toBe(true); // a (late) win on the tombstone: re-opened
    expect(ledger.account(0).day.reserved).toBe(2_500);
    expect(ledger.settle(h, 2_500, T0 + 130_000)).toBe(SETTLE.settled);
    expect(ledger.account(0).day.spent).toBe(2_500);
    ledger.checkInvariant();
  });

  it('grows its reservation table and refuses when full', () => {
    const ledger = new Ledger([{ ...terms()[0], dailyMicros: 1e9, flightMicros: 1e9 }], 2, 8);
    const hs: number[] = [];
    for (let i = 0; i < 8; i++) hs.push(ledger.reserve(0, 0, 10, T0));
    expect(hs.every((h) => h >= 0)).toBe(true);
    expect(ledger.reserve(0, 0, 10, T0)).toBe(RESERVE_FAIL.table_full);
    expect(ledger.release(hs[3], T0)).toBe(true);
    const h = ledger.reserve(0, 0, 10, T0);
    expect(h).toBeGreaterThanOrEqual(0);
    expect(ledger.describe(hs[3])).toBe('unknown'); // its slot was reused: the old handle is stale
    ledger.checkInvariant();
  });

  it('throws a typed error when the invariant is broken', () => {
    const ledger = new Ledger(terms());
    ledger.reserve(0, 0, 100, T0);
    (ledger as unknown as { reserved: Float64Array }).reserved[0] = 99;
    try {
      ledger.checkInvariant();
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(SegbidError);
      expect((e as SegbidError).code).toBe('LEDGER_INVARIANT');
    }
  });

  it('snapshot -> restore gives the same state, mid-flight reservations included, and evolves identically', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 120 }), fc.array(opArb, { maxLength: 120 }), (before, after) => {
        const live = new Ledger(terms(), 4);
        const handles: number[] = [];
        const now = run(live, before, handles);
        const restored = Ledger.restore(live.snapshot());
        expect(stateOf(restored, handles)).toEqual(stateOf(live, handles));
        expect(restored.snapshot().equals(live.snapshot())).toBe(true);
        const h1 = handles.slice();
        const h2 = handles.slice();
        run(live, after, h1, now);
        run(restored, after, h2, now);
        expect(h2).toEqual(h1);
        expect(stateOf(restored, h1)).toEqual(stateOf(live, h1));
      }),
      { numRuns: Math.ceil(RUNS / 3) },
    );
  });

  it('rejects a corrupt snapshot with a typed error', () => {
    const image = new Ledger(terms()).snapshot();
    image[image.length - 3] ^= 0xff;
    expect(() => Ledger.restore(image)).toThrow(expect.objectContaining({ code: 'LEDGER_SNAPSHOT_CORRUPT' }));
    expect(() => Ledger.restore(Buffer.from('nope'))).toThrow(expect.objectContaining({ code: 'LEDGER_SNAPSHOT_CORRUPT' }));
  });

  /** Frames a body as snapshot() frames it: magic, version, crc32 of the body. */
  const framed = (version: number, body: Buffer) => {
    const head = Buffer.alloc(12);
    head.write('SGBL', 0, 'latin1');
    head.writeUInt32LE(version, 4);
    head.writeUInt32LE(crc32(body) >>> 0, 8);
    return Buffer.concat([head, body]);
  };

  it('restores a version 1 image (one msgpackr body), as written before the version 2 layout', () => {
    const live = new Ledger(terms(), 4);
    const handles: number[] = [];
    run(live, [{ k: 'reserve', c: 0, amount: 700, dt: 0 }, { k: 'reserve', c: 1, amount: 300, dt: 10 }, { k: 'reserve', c: 0, amount: 900, dt: 10 }, { k: 'settle', h: 0, frac: 0.5, over: 0, dt: 10 }], handles);
    expect(live.openReservations()).toBe(2);
    // The version 1 writer: every array as bytes inside one msgpackr map (src/budget/ledger.ts before version 2).
    const l = live as unknown as Record<string, ArrayBufferView | number | unknown>;
    const u8 = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    const names = ['dayIndex', 'dayBudget', 'daySpent', 'flightBudget', 'flightSpent', 'reserved', 'overrun', 'openCount', 'counters', 'gen', 'state', 'slotCampaign', 'slotTag', 'amount', 'created', 'expires', 'queue'];
    const v1 = framed(1, pack({ terms: l.terms, seq: l.seq, capacity: l.capacity, maxCapacity: l.maxCapacity, ...Object.fromEntries(names.map((n) => [n, u8(l[n] as ArrayBufferView)])), qHead: l.qHead, qCount: l.qCount }));
    const restored = Ledger.restore(v1);
    expect(stateOf(restored, handles)).toEqual(stateOf(live, handles));
    expect(restored.snapshot().equals(live.snapshot())).toBe(true);
    expect(live.snapshot().readUInt32LE(4)).toBe(2);
  });

  it('an image without its own checksum (framed in a checksummed state file) restores only when the caller vouches', () => {
    const live = new Ledger(terms(), 4);
    run(live, [{ k: 'reserve', c: 0, amount: 700, dt: 0 }, { k: 'reserve', c: 1, amount: 300, dt: 10 }], []);
    const unchecked = live.snapshot(false);
    expect(unchecked.readUInt32LE(8)).toBe(0);
    expect(() => Ledger.restore(unchecked)).toThrow(expect.objectContaining({ code: 'LEDGER_SNAPSHOT_CORRUPT' }));
    expect(Ledger.restore(unchecked, true).snapshot().equals(live.snapshot())).toBe(true);
  });

  it('rejects a version 2 image whose array list does not fit its bytes', () => {
    const good = new Ledger(terms(), 4).snapshot();
    const metaLength = good.readUInt32LE(12);
    const meta = unpack(good.subarray(16, 16 + metaLength)) as { lengths: number[] };
    const arrays = good.subarray(16 + metaLength);
    const rebuilt = (m: object, bytes: Buffer) => {
      const p = pack(m);
      const len = Buffer.alloc(4);
      len.writeUInt32LE(p.length, 0);
      return framed(2, Buffer.concat([len, p, bytes]));
    };
    expect(Ledger.restore(rebuilt(meta, arrays)).snapshot().equals(good)).toBe(true); // the control
    const longer = { ...meta, lengths: meta.lengths.map((n, i) => (i === 0 ? n + 8 : n)) };
    const shorter = { ...meta, lengths: meta.lengths.map((n, i) => (i === 0 ? n - 8 : n)) };
    const wrongArray = { ...meta, lengths: [...meta.lengths.slice(0, 9), meta.lengths[9] + 4, ...meta.lengths.slice(10)] };
    for (const bad of [rebuilt(longer, arrays), rebuilt(shorter, arrays), rebuilt(wrongArray, Buffer.concat([arrays, Buffer.alloc(4)])), rebuilt({ ...meta, fields: 'x' }, arrays)]) {
      expect(() => Ledger.restore(bad)).toThrow(expect.objectContaining({ code: 'LEDGER_SNAPSHOT_CORRUPT' }));
    }
  });

  it('recovers after a crash from the last snapshot plus the journal', () => {
    const dir = mkdtempSync(join(tmpdir(), 'segbid-ledger-'));
    try {
      fc.assert(
        fc.property(fc.array(opArb, { maxLength: 80 }), fc.array(opArb, { maxLength: 80 }), fc.boolean(), (before, after, rotate) => {
          const snap = join(dir, 'ledger.snap');
          const jpath = join(dir, `ledger-${Math.random().toString(36).slice(2)}.journal`);
          rmSync(snap, { force: true });
          const live = new Ledger(terms(), 4);
          const journal = new FileJournal(live, jpath, 3);
          const handles: number[] = [];
          let now = run(live, before, handles);
          if (rotate) journal.checkpoint(snap);
          else writeSnapshotFile(snap, live.snapshot()); // crash between snapshot and rotation: old records stay
          now = run(live, after, handles, now);
          journal.flush(); // what the 1-second tick does; then the process dies
          const recovered = recoverLedger(snap, jpath, () => new Ledger(terms(), 4));
          // Day roll-overs are lazy and not journaled: a pure function of (state, clock), redone on next use.
          for (const l of [live, recovered]) for (let c = 0; c < 2; c++) l.roll(c, now);
          expect(stateOf(recovered, handles)).toEqual(stateOf(live, handles));
          expect(recovered.seq).toBe(live.seq);
          journal.close();
          // Replaying the same journal twice is a no-op (records at or below the ledger's seq are skipped).
          expect(replayJournal(recovered, readFileSync(jpath))).toBe(0);
        }),
        { numRuns: Math.ceil(RUNS / 5) },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps spend and reservations across a reload, by campaign id', () => {
    const ledger = new Ledger(terms());
    const h = ledger.reserve(0, 2, 10_000, T0);
    ledger.settle(ledger.reserve(0, 2, 5_000, T0), 5_000, T0);
    const hb = ledger.reserve(1, 0, 1_000, T0);
    // Reload: campaign b removed, a's budget cut below what is committed, a new campaign c.
    ledger.reconfigure([{ ...terms()[0], flightMicros: 12_000 }, { ...terms()[0], id: 'c' }], [5, 6, 7]);
    expect(ledger.campaignId(0)).toBe('a');
    expect(ledger.account(0).flight.budget).toBe(15_000); // never below spent + reserved
    expect(ledger.account(0).flight.remaining).toBe(0);
    expect(ledger.isOpen(h)).toBe(true);
    expect(ledger.describe(hb)).toBe('unknown');
    expect(ledger.settle(h, 9_000, T0 + 1)).toBe(SETTLE.settled);
    expect(ledger.lastTag).toBe(7);
    ledger.checkInvariant();
  });
});
