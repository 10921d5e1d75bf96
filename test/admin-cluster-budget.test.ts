/**
 * Budgets and the console's curves of a bidder with two worker threads (`serve --workers 2`, a real process):
 * each worker spends from its own ledger; GET /admin/budget and GET /admin/history must report the bidder's
 * spend, the sum of the workers', checked against what the exchange was billed (the win prices of the notices
 * this test sent), and the main thread's bank book must have granted at least that. The merge rules themselves
 * are checked on hand-made reports (mergeBudgetReports, mergeBudgetSamples). Needs dist/ (npm test builds it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { raw } from './helpers/bidder.js';
import { auctionOn, budgetedDemo, newTally, serve, stop, type Serving } from './helpers/budget-drive.js';
import { mergeBudgetReports, mergeBudgetSamples, type BudgetReport, type BudgetSample } from '../src/budget/budget-report.js';

/* JSON answers of the admin API. */
type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const READ = 'read-token-cluster-budget-0123';
let bidder: Serving;

beforeAll(async () => {
  // A flight far from exhausted (1,000 USD), leased in slices of 5 USD; curves sampled every 200 ms.
  bidder = await serve(budgetedDemo(1000, 5), ['--workers', '2', '--history-every-sec', '0.2'], { SEGBID_ADMIN_TOKENS: `read:${READ}` });
}, 30_000);
afterAll(async () => {
  if (bidder) await stop(bidder);
});

async function admin(path: string): Promise<{ status: number; json: Json }> {
  const r = await raw(bidder.adminPort, { method: 'GET', path, headers: { authorization: `Bearer ${READ}` } });
  return { status: r.status, json: r.text ? JSON.parse(r.text) : null };
}

async function until<T>(what: string, probe: () => Promise<T | null | undefined | false>, ms = 12_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const last = <T>(a: T[]): T => a[a.length - 1];

describe('budgets with --workers 2', () => {
  it('reports the spend of both workers summed, in /admin/budget and in /admin/history', async () => {
    // A read asks both workers and waits for their answers.
    const first = await admin('/admin/budget');
    expect(first.status).toBe(200);
    expect(first.json.workers).toEqual({ reporting: 2, of: 2 });
    expect(first.json.campaigns[0].account.day.spent).toBe(0);

    // Auctions on fresh connections (the kernel spreads them over both workers), each won at its bid price.
    const tally = newTally();
    await until('the workers to open the arms and bid', async () => (await auctionOn(bidder, tally)) > 0 && tally.bids >= 1, 15_000);
    for (let i = 0; i < 60; i++) await auctionOn(bidder, tally);
    expect(tally.errors).toBe(0);
    expect(tally.noticeRefused).toBe(0);
    expect(tally.bids).toBeGreaterThan(10);

    const budget = await until('/admin/budget to show every win', async () => {
      const r = await admin('/admin/budget');
      expect(r.status).toBe(200);
      return r.json.campaigns[0]?.account.day.spent === tally.spentMicros && r.json.workers.reporting === 2 ? r.json : null;
    });
    const c = budget.campaigns[0];
    expect(c.id).toBe('shared');
    expect(c.name).toBe('Shared budget');
    expect(c.account.flight.spent).toBe(tally.spentMicros);
    expect(c.account.day.remaining).toBe(c.account.day.budget - tally.spentMicros - c.account.day.reserved);
    expect(c.account.counters.settled).toBeGreaterThanOrEqual(tally.bids);
    // Each worker paces toward half the curve: their targets sum to the campaign's.
    expect(c.targetSpendMicros).toBeGreaterThan(0);
    expect(c.arms.map((a: Json) => a.lineItem).length).toBeGreaterThan(1);
    expect(c.arms.reduce((s: number, a: Json) => s + a.spentTodayMicros, 0)).toBe(tally.spentMicros);
    expect(budget.allocation.campaigns[0].id).toBe('shared');
    // The main thread's bank granted the workers at least what they spent, and knows what they reported.
    const book = budget.bank.campaigns.find((b: Json) => b.id === 'shared');
    expect(book.grantedMicros).toBeGreaterThanOrEqual(tally.spentMicros);
    expect(book.spentMicros).toBeLessThanOrEqual(tally.spentMicros);

    const history = await until('/admin/history to show every win', async () => {
      const r = await admin('/admin/history');
      const h = r.json?.campaigns?.find((x: Json) => x.id === 'shared');
      return r.status === 200 && h !== undefined && last(h.spentMicros) === tally.spentMicros ? r.json : null;
    });
    const h = history.campaigns.find((x: Json) => x.id === 'shared');
    expect(h.name).toBe('Shared budget');
    expect(h.dayBudgetMicros).toBe(c.account.day.budget);
    expect(last(h.targetMicros as number[])).toBeGreaterThan(0);
    // The arms' shares, averaged over the workers, still split the campaign.
    const shares = h.arms.map((a: Json) => last(a.share as number[]));
    expect(shares.reduce((s: number, x: number) => s + x, 0)).toBeCloseTo(1, 2);
    // Bids and wins per line item come from the workers' KPIs, summed.
    const bids = history.lineItems.reduce((s: number, l: Json) => s + (last(l.bids as (number | null)[]) ?? 0), 0);
    expect(bids).toBeGreaterThanOrEqual(tally.bids);
  }, 60_000);
});

describe('merging workers\' budget reports', () => {
  const account = (spent: number, reserved: number, settled: number) => ({
    id: 'c',
    day: { index: 20_000, budget: 1000, spent, reserved, remaining: 1000 - spent - reserved },
    flight: { budget: 5000, spent, reserved, remaining: 5000 - spent - reserved },
    openReservations: reserved > 0 ? 1 : 0,
    overrunMicros: 0,
    counters: { reserved: settled, settled, released: 0, expired: 0, lateSettles: 0, duplicates: 0, unknownBooked: 0, refusedDay: 0, refusedFlight: 0 },
  });
  const report = (spent: number, reserved: number, throttle: number, gate: string, refusals: number): BudgetReport =>
    ({
      campaigns: [
        {
          id: 'c',
          name: 'C',
          account: account(spent, reserved, spent / 10),
          targetSpendMicros: 300,
          desiredRateMicrosPerSec: 2,
          arms: [
            { lineItem: 'a', throttle, gate, share: 0.25, spentTodayMicros: spent / 2, capacityMicrosPerSec: 1 },
            { lineItem: 'b', throttle: 1, gate: 'open', share: 0.75, spentTodayMicros: spent / 2, capacityMicrosPerSec: 1 },
          ],
        },
      ],
      refusals: { budget_exhausted: refusals } as BudgetReport['refusals'],
      allocation: { campaigns: [], history: [] },
    }) as BudgetReport;

  it('sums money and rates, averages fractions, keeps the gate most workers report', () => {
    const m = mergeBudgetReports([report(100, 10, 0.5, 'exhausted', 3), report(200, 0, 1, 'open', 4), report(60, 20, 0, 'exhausted', 0)]);
    const c = m.campaigns[0];
    expect(c.account.day).toEqual({ index: 20_000, budget: 1000, spent: 360, reserved: 30, remaining: 610 });
    expect(c.account.flight.remaining).toBe(5000 - 360 - 30);
    expect(c.account.counters.settled).toBe(36);
    expect(c.account.openReservations).toBe(2);
    expect(c.targetSpendMicros).toBe(900);
    expect(c.desiredRateMicrosPerSec).toBe(6);
    expect(c.arms[0]).toEqual({ lineItem: 'a', throttle: 0.5, gate: 'exhausted', share: 0.25, spentTodayMicros: 180, capacityMicrosPerSec: 3 });
    expect((m.refusals as Record<string, number>).budget_exhausted).toBe(7);
  });

  it('adds only the spend of the newest day (a worker that has not rolled its day yet adds none of yesterday\'s)', () => {
    const today = report(100, 10, 1, 'open', 0);
    const yesterday = report(900, 0, 1, 'open', 0);
    yesterday.campaigns[0].account.day.index = 19_999;
    const m = mergeBudgetReports([yesterday, today]);
    expect(m.campaigns[0].account.day).toEqual({ index: 20_000, budget: 1000, spent: 100, reserved: 10, remaining: 890 });
    // No worker has ticked a new campaign yet (NaN days): its figures are summed as they are.
    const fresh = [report(0, 0, 0, 'open', 0), report(0, 5, 0, 'open', 0)];
    for (const r of fresh) r.campaigns[0].account.day.index = NaN;
    expect(mergeBudgetReports(fresh).campaigns[0].account.day.reserved).toBe(5);
    const sample = (dayIndex: number, spentMicros: number): BudgetSample => ({
      campaigns: [{ id: 'x', name: 'X', dayIndex, dayBudgetMicros: 10, spentMicros, targetMicros: 1, exploration: 0.1 * spentMicros, arms: [] }],
    });
    const s = mergeBudgetSamples([sample(20_000, 3), sample(19_999, 9), sample(20_000, 4)]);
    expect(s.campaigns[0]).toMatchObject({ dayIndex: 20_000, spentMicros: 7, targetMicros: 2 });
    expect(s.campaigns[0].exploration).toBeCloseTo((0.3 + 0.9 + 0.4) / 3, 12); // the workers' mean
  });

  it('reports one worker\'s allocation with the workers\' mean share per arm', () => {
    const withAllocation = report(100, 0, 1, 'open', 0);
    withAllocation.allocation = {
      campaigns: [{ id: 'c', kpi: 'cpc', explorationShare: 0.1, reallocatedAt: 0, marginalValue: 0, budgetLimitedShare: 0, arms: [{ lineItem: 'a', segment: 's', share: 0.25, reason: 'exploit' } as never] }],
      history: [],
    };
    const other = report(100, 0, 1, 'open', 0);
    other.allocation = null;
    other.campaigns[0].arms[0].share = 0.35;
    const m = mergeBudgetReports([withAllocation, other]);
    expect(m.campaigns[0].arms[0].share).toBe(0.3);
    expect(m.allocation!.campaigns[0].arms[0]).toMatchObject({ lineItem: 'a', share: 0.3, reason: 'exploit' });
  });

  it('matches campaigns and arms by id, in first-seen order', () => {
    const a: BudgetSample = { campaigns: [{ id: 'x', name: 'X', dayIndex: 1, dayBudgetMicros: 10, spentMicros: 1, targetMicros: 2, arms: [{ lineItem: 'l1', segment: 's', share: 0.2, reason: 'explore' }] }] };
    const b: BudgetSample = {
      campaigns: [
        { id: 'y', name: 'Y', dayIndex: 1, dayBudgetMicros: 5, spentMicros: 4, targetMicros: 4, arms: [] },
        { id: 'x', name: 'X', dayIndex: 1, dayBudgetMicros: 10, spentMicros: 3, targetMicros: 2, arms: [{ lineItem: 'l1', segment: 's', share: 0.4, reason: 'exploit' }] },
      ],
    };
    const m = mergeBudgetSamples([a, b, a]);
    expect(m.campaigns.map((c) => c.id)).toEqual(['x', 'y']);
    expect(m.campaigns[0].spentMicros).toBe(5);
    expect(m.campaigns[0].targetMicros).toBe(6);
    expect(m.campaigns[0].arms[0].share).toBeCloseTo(0.8 / 3, 12);
    expect(m.campaigns[0].arms[0].reason).toBe('explore');
    expect(m.campaigns[1].spentMicros).toBe(4);
  });
});
