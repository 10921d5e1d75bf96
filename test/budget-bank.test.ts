/**
 * The budget bank (src/budget/bank.ts): real ledgers leasing from a real BankBook (the main thread's authority;
 * redis-bank.ts runs the same rules in Lua, see budget-redis.test.ts). Lease, renew ahead of need, give back on
 * close, the ledger invariant with grants, the authority down, totals lost (epochs), a dead client reclaimed,
 * and a fast-check property over random interleavings of leases and spends across three clients.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BankBook, BookTransport, LeaseBank, LocalBank, genBaseFor } from '../src/budget/bank.js';
import { Ledger, RESERVE_FAIL, SETTLE } from '../src/budget/ledger.js';
import { compileCampaigns } from '../src/budget/compile.js';
import { ThreadBankHost, ThreadBankTransport, ownerOfHandle } from '../src/budget/bank-threads.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CampaignDef, CompiledBudgetPlan } from '../src/budget/types.js';

const T0 = Date.parse('2026-03-02T10:00:00Z');

function plan(flight: number, slice: number, daily: number = flight): CompiledBudgetPlan {
  const def: CampaignDef = {
    id: 'camp',
    name: 'Camp',
    budget: { flight, daily, flightStart: '2026-03-01T00:00:00Z', flightEnd: '2026-03-31T00:00:00Z' },
    kpi: 'cpc',
    lineItems: ['li'],
    leaseSlice: slice,
  };
  return compileCampaigns([def], new Map([['li', 0]]), new Map(), [5_000_000]);
}

/** Lets the bank's pending promise callbacks run. */
const settle = () => new Promise((r) => setImmediate(r));

interface Client {
  ledger: Ledger;
  bank: LeaseBank;
}

function client(name: string, p: CompiledBudgetPlan, transport: BookTransport, clock: { now: number }, index = 0): Client {
  const ledger = new Ledger(Ledger.termsOf(p), 64, 1 << 16, genBaseFor(index));
  const bank = new LeaseBank(transport, { client: name, genBase: genBaseFor(index), timer: false, now: () => clock.now, heartbeatMs: 1000 });
  bank.attach(ledger, p);
  return { ledger, bank };
}

describe('LocalBank', () => {
  it('leaves the whole budget to the one process (grant Infinity)', () => {
    const p = plan(1, 0.1);
    const ledger = Ledger.fromPlan(p);
    new LocalBank().attach();
    expect(ledger.grantOf(0)).toBe(Infinity);
    expect(ledger.reserve(0, 0, 900_000, T0)).toBeGreaterThanOrEqual(0);
    expect(ledger.reserve(0, 0, 200_000, T0)).toBe(RESERVE_FAIL.day_budget);
  });
});

describe('LeaseBank on a BankBook', () => {
  it('leases a slice at attach, refuses beyond it, renews ahead of need and gives back on close', async () => {
    const p = plan(1, 0.1); // 1 000 000 micros, slices of 100 000
    const book = new BankBook();
    const transport = new BookTransport(book, () => clock.now);
    const clock = { now: T0 };
    const a = client('a', p, transport, clock);
    expect(a.ledger.grantOf(0)).toBe(0); // nothing before the bank answers: never spend what is not granted
    expect(a.ledger.reserve(0, 0, 1000, T0)).toBe(RESERVE_FAIL.lease);
    await settle();
    expect(a.ledger.grantOf(0)).toBe(100_000);
    expect(book.totals('camp')!.granted).toBe(100_000);
    // Spend 60% of the slice: under the low-water mark (half a slice) the next tick asks for the next one.
    const h = a.ledger.reserve(0, 0, 60_000, T0);
    expect(h).toBeGreaterThanOrEqual(0);
    expect(a.ledger.reserve(0, 0, 50_000, T0)).toBe(RESERVE_FAIL.lease);
    expect(a.ledger.settle(h, 55_000, T0)).toBe(SETTLE.settled);
    clock.now += 100;
    a.bank.tick();
    await settle();
    expect(a.ledger.grantOf(0)).toBe(200_000);
    // The heartbeat reports the settled spend.
    clock.now += 1000;
    a.bank.tick();
    await settle();
    expect(book.totals('camp')!.spent).toBe(55_000);
    a.ledger.checkInvariant();
    // Close: an open reservation stays counted; the rest goes back.
    const open = a.ledger.reserve(0, 0, 10_000, clock.now);
    expect(open).toBeGreaterThanOrEqual(0);
    await a.bank.close();
    expect(book.totals('camp')!.granted).toBe(55_000 + 10_000);
    expect(a.ledger.grantOf(0)).toBe(65_000);
    expect(a.ledger.reserve(0, 0, 1, clock.now)).toBe(RESERVE_FAIL.lease);
    a.ledger.checkInvariant();
  });

  it('never grants more than the flight budget across clients, nor a day more than the daily cap', async () => {
    const clock = { now: T0 };
    const book = new BankBook();
    const transport = new BookTransport(book, () => clock.now);
    const p = plan(1, 0.3, 0.5); // flight 1 000 000, daily 500 000, slices 300 000
    const clients = [client('a', p, transport, clock, 0), client('b', p, transport, clock, 1), client('c', p, transport, clock, 2)];
    await settle();
    const grants = clients.map((c) => c.ledger.grantOf(0));
    expect(grants.reduce((s, g) => s + g, 0)).toBe(500_000); // 300 000 + 200 000 + 0: the day is full
    expect(book.totals('camp')!.granted).toBe(500_000);
    // Next day: the rest of the flight, never beyond it.
    clock.now += 86_400_000;
    for (const c of clients) {
      const held = c.ledger.grantOf(0) - c.ledger.flightSpentOf(0) - c.ledger.reservedOf(0);
      if (held > 0) c.ledger.bookUnreserved(0, 0, held, clock.now); // spend everything held
      c.bank.tick();
    }
    await settle();
    for (let i = 0; i < 3; i++) {
      clock.now += 1000;
      for (const c of clients) {
        const held = c.ledger.grantOf(0) - c.ledger.flightSpentOf(0) - c.ledger.reservedOf(0);
        if (held > 0) c.ledger.bookUnreserved(0, 0, held, clock.now);
        c.bank.tick();
      }
      await settle();
    }
    expect(book.totals('camp')!.granted).toBe(1_000_000);
    expect(clients.reduce((s, c) => s + c.ledger.grantOf(0), 0)).toBe(1_000_000);
    const spent = clients.reduce((s, c) => s + c.ledger.flightSpentOf(0), 0);
    expect(spent).toBeGreaterThanOrEqual(700_000); // the rest is held, unspent
    expect(spent).toBeLessThanOrEqual(1_000_000);
    for (const c of clients) c.ledger.checkInvariant();
  });

  it('keeps spending only what it holds while the bank is down, and recovers by itself', async () => {
    const clock = { now: T0 };
    const book = new BankBook();
    const transport = new BookTransport(book, () => clock.now);
    const a = client('a', plan(1, 0.1), transport, clock);
    await settle();
    transport.down = true;
    let booked = 0;
    for (let i = 0; i < 50; i++) {
      const h = a.ledger.reserve(0, 0, 5000, clock.now);
      if (h >= 0) {
        a.ledger.settle(h, 5000, clock.now);
        booked += 5000;
      }
      clock.now += 100;
      a.bank.tick();
      await settle();
    }
    expect(booked).toBe(100_000); // exactly the slice held when the bank went away
    expect(a.bank.status().failures).toBeGreaterThan(0);
    transport.down = false;
    clock.now += 2000;
    a.bank.tick();
    await settle();
    expect(a.ledger.grantOf(0)).toBe(200_000); // the next slice, by itself
    expect(a.bank.status().campaigns[0].totalSpentMicros).toBe(100_000);
  });

  it('re-seeds lost totals from the most any client saw (a Redis restart without persistence)', async () => {
    const clock = { now: T0 };
    const book = new BankBook();
    const transport = new BookTransport(book, () => clock.now);
    const p = plan(1, 0.2);
    const a = client('a', p, transport, clock, 0);
    const b = client('b', p, transport, clock, 1);
    await settle();
    expect(book.totals('camp')!.granted).toBe(400_000);
    // b heartbeats last, so it saw the whole 400 000; a saw 200 000.
    clock.now += 1000;
    b.bank.tick();
    await settle();
    const epoch = book.totals('camp')!.epoch;
    book.clear();
    // a spends its slice and asks first: the new epoch starts at what a saw (200 000, stale) and grants
    // nothing until every live client had a heartbeat to re-assert what it saw; b raises it to 400 000.
    a.ledger.bookUnreserved(0, 0, 200_000, clock.now);
    clock.now += 100;
    a.bank.tick();
    await settle();
    expect(book.totals('camp')!.epoch).not.toBe(epoch);
    expect(book.totals('camp')!.granted).toBe(200_000);
    expect(a.ledger.grantOf(0)).toBe(200_000);
    clock.now += 1000;
    b.bank.tick();
    await settle();
    expect(book.totals('camp')!.granted).toBe(400_000);
    // After the hold, leasing resumes on the re-seeded total.
    for (let i = 0; i < 6; i++) {
      clock.now += 1000;
      a.ledger.bookUnreserved(0, 0, a.ledger.grantOf(0) - a.ledger.flightSpentOf(0), clock.now);
      b.ledger.bookUnreserved(0, 0, b.ledger.grantOf(0) - b.ledger.flightSpentOf(0), clock.now);
      a.bank.tick();
      b.bank.tick();
      await settle();
    }
    expect(a.ledger.grantOf(0)).toBeGreaterThan(200_000);
    // Everything the clients ever held together stays within the budget: nothing was granted twice.
    expect(a.ledger.grantOf(0) + b.ledger.grantOf(0)).toBe(1_000_000);
    expect(book.totals('camp')!.granted).toBe(1_000_000);
  });

  it('reclaims what a dead client held unspent', async () => {
    const clock = { now: T0 };
    const book = new BankBook();
    const transport = new BookTransport(book, () => clock.now);
    const a = client('a', plan(1, 0.1), transport, clock);
    await settle();
    a.ledger.bookUnreserved(0, 0, 30_000, clock.now);
    clock.now += 1000;
    a.bank.tick(); // reports 30 000 (and, under the low-water mark, takes the next slice)
    await settle();
    const granted = book.totals('camp')!.granted;
    expect(book.reclaim('a', () => a.ledger.dayOf(0, clock.now))).toBe(granted - 30_000);
    expect(book.totals('camp')!.granted).toBe(30_000);
  });

  it('mints disjoint handles per client, so a notice reaching another client is unknown there', () => {
    const p = plan(1, 0.1);
    const x = new Ledger(Ledger.termsOf(p), 64, 1 << 16, genBaseFor(0));
    const y = new Ledger(Ledger.termsOf(p), 64, 1 << 16, genBaseFor(1));
    const hx = x.reserve(0, 0, 1000, T0);
    const hy = y.reserve(0, 0, 1000, T0);
    expect(hx).not.toBe(hy);
    expect(y.settle(hx, 1000, T0)).toBe(SETTLE.unknown);
    expect(y.describe(hy)).toBe('open');
  });
});

describe('the main-thread bank (--workers N)', () => {
  it('answers workers by message, persists its book in stateDir and starts from it again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'segbid-bank-'));
    const clock = { now: T0 };
    const host = new ThreadBankHost({ stateDir: dir, now: () => clock.now });
    // The worker's transport and the host wired as the cluster wires them (postMessage both ways).
    const transport: ThreadBankTransport = new ThreadBankTransport((m) => queueMicrotask(() => host.handle(m, (r) => transport.onMessage(r))));
    const p = plan(1, 0.1);
    const ledger = new Ledger(Ledger.termsOf(p), 64, 1 << 16, genBaseFor(8));
    const bank = new LeaseBank(transport, { client: 'w1.0.run', genBase: genBaseFor(8), timer: false, now: () => clock.now });
    bank.attach(ledger, p);
    await settle();
    expect(ledger.grantOf(0)).toBe(100_000);
    const h = ledger.reserve(0, 0, 5000, clock.now);
    expect(ownerOfHandle(h)).toBe(1); // worker 1's generation range: a notice elsewhere is forwarded here
    host.close(); // persists
    const again = new ThreadBankHost({ stateDir: dir, now: () => clock.now });
    expect(again.book.totals('camp')!.granted).toBe(100_000); // a restart does not hand the budget out again
    again.close();
  });
});

describe('property: random interleavings of leases and spends across three clients', () => {
  type Op =
    | { k: 'reserve'; c: number; amount: number }
    | { k: 'settle'; c: number; pick: number; price: number }
    | { k: 'release'; c: number; pick: number }
    | { k: 'tick'; c: number; dt: number }
    | { k: 'down'; on: boolean }
    | { k: 'lose' }
    | { k: 'close'; c: number };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ k: fc.constant('reserve' as const), c: fc.nat(2), amount: fc.integer({ min: 1, max: 60_000 }) }),
    fc.record({ k: fc.constant('settle' as const), c: fc.nat(2), pick: fc.nat(50), price: fc.integer({ min: 0, max: 70_000 }) }),
    fc.record({ k: fc.constant('release' as const), c: fc.nat(2), pick: fc.nat(50) }),
    fc.record({ k: fc.constant('tick' as const), c: fc.nat(2), dt: fc.integer({ min: 0, max: 1500 }) }),
    fc.record({ k: fc.constant('down' as const), on: fc.boolean() }),
    fc.record({ k: fc.constant('close' as const), c: fc.nat(2) }),
  );

  it('never breaks a ledger invariant, never grants beyond the budget, never spends beyond it', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 120 }), fc.integer({ min: 1, max: 4 }), async (ops, budgetTenths) => {
        const clock = { now: T0 };
        const book = new BankBook();
        const transport = new BookTransport(book, () => clock.now);
        const flight = budgetTenths * 100_000;
        const p = plan(flight / 1e6, 0.05);
        const clients = [0, 1, 2].map((i) => client(`c${i}`, p, transport, clock, i));
        const open: number[][] = [[], [], []];
        const closed = [false, false, false];
        await settle();
        for (const o of ops) {
          if (o.k === 'reserve') {
            const h = clients[o.c].ledger.reserve(0, 0, o.amount, clock.now);
            if (h >= 0) open[o.c].push(h);
          } else if (o.k === 'settle' || o.k === 'release') {
            const list = open[o.c];
            if (list.length === 0) continue;
            const h = list.splice(o.pick % list.length, 1)[0];
            if (o.k === 'settle') clients[o.c].ledger.settle(h, o.price, clock.now);
            else clients[o.c].ledger.release(h, clock.now);
          } else if (o.k === 'tick') {
            clock.now += o.dt;
            clients[o.c].bank.tick();
          } else if (o.k === 'down') {
            transport.down = o.on;
          } else if (o.k === 'close') {
            if (!closed[o.c]) {
              closed[o.c] = true;
              await clients[o.c].bank.close();
            }
          }
          await settle();
          let committed = 0;
          for (const c of clients) {
            c.ledger.checkInvariant();
            expect(c.ledger.flightSpentOf(0) + c.ledger.reservedOf(0)).toBeLessThanOrEqual(c.ledger.grantOf(0));
            committed += c.ledger.flightSpentOf(0) + c.ledger.reservedOf(0);
          }
          expect(committed).toBeLessThanOrEqual(flight);
          expect(book.totals('camp')!.granted).toBeLessThanOrEqual(flight);
          // What the clients hold was granted: the authority's total covers it (nothing double-granted).
          const held = clients.reduce((s, c, i) => s + (closed[i] ? c.ledger.flightSpentOf(0) + c.ledger.reservedOf(0) : c.ledger.grantOf(0)), 0);
          expect(held).toBeLessThanOrEqual(book.totals('camp')!.granted + 0);
        }
      }),
      { numRuns: 150 },
    );
  });
});
