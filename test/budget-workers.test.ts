/**
 * Budgets shared by worker threads (`segbid serve --workers 2`, src/budget/bank-threads.ts): a REAL bidder
 * process with two workers on one port, driven with bid requests and win notices over fresh connections (the
 * kernel spreads them, so a notice often reaches the other worker than the one that bid) until the budget is gone.
 * Two workers spend like one: the exchange is never billed beyond the budget plus one slice per worker, where each
 * worker holding the whole budget (the behaviour before the bank) would have spent it twice.
 * Needs `npx tsc -p tsconfig.json` first (it spawns dist/).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { MAIN, auctionOn, budgetedDemo, freePort, metricsText, newTally, serve, startRedis, stop, stopRedis, type Serving } from './helpers/budget-drive.js';

const hasRedis = spawnSync('redis-server', ['--version']).status === 0;
const built = existsSync(MAIN) && existsSync(join(process.cwd(), 'dist/src/budget/bank-threads.js'));
if (!built) console.warn('budget-workers: SKIPPED, run `npx tsc -p tsconfig.json` first');

const FLIGHT = 0.6;
const SLICE = 0.03;
const BUDGET_MICROS = FLIGHT * 1e6;
const SLICE_MICROS = SLICE * 1e6;

/** Auctions (four at a time) until no spend for 1.5 s (the budget is gone) or 15 s. */
async function driveToExhaustion(s: Serving) {
  const tally = newTally();
  const drive = async (ms: number) => {
    const end = Date.now() + ms;
    const loop = async () => {
      while (Date.now() < end) await auctionOn(s, tally);
    };
    await Promise.all([loop(), loop(), loop(), loop()]);
  };
  let quiet = 0;
  let lastSpent = -1;
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && quiet < 6) {
    await drive(250);
    quiet = tally.spentMicros === lastSpent ? quiet + 1 : 0;
    lastSpent = tally.spentMicros;
  }
  const m = await metricsText(s.adminPort);
  const granted = Number(/segbid_budget_bank_granted_micros\{campaign="shared"\} (\d+)/.exec(m)?.[1] ?? NaN);
  return { tally, quiet, granted };
}

describe.skipIf(!built)('budgets shared by worker threads (real process, --workers 2)', () => {
  const procs: Serving[] = [];
  let redis: ChildProcess | null = null;
  afterAll(async () => {
    for (const p of procs) await stop(p, 'SIGKILL');
    if (redis) await stopRedis(redis);
  });

  it('two workers spend at most the budget (plus one slice each), leasing from the main thread', async () => {
    const s = await serve(budgetedDemo(FLIGHT, SLICE), ['--workers', '2']);
    procs.push(s);
    const { tally, quiet, granted } = await driveToExhaustion(s);
    console.log(
      `budget-workers: billed ${tally.spentMicros} of ${BUDGET_MICROS} micros, granted to the workers ${granted}, ${tally.bids} bids, ` +
        `${tally.requests} requests, statuses ${JSON.stringify(tally.byStatus)}`,
    );
    expect(quiet).toBe(6); // the budget ran out (no spend for 1.5 s), not the time
    expect(tally.spentMicros).toBeLessThanOrEqual(BUDGET_MICROS + 2 * SLICE_MICROS);
    // Notices that reached the other worker were settled where their reservation lives: nothing is lost.
    expect(tally.spentMicros).toBeGreaterThanOrEqual(0.9 * BUDGET_MICROS);
    // The workers' grants (summed over both by the main thread's /metrics) never exceed the budget.
    expect(granted).toBeLessThanOrEqual(BUDGET_MICROS);
    expect(granted).toBeGreaterThan(0);
    expect(tally.errors).toBe(0);
    for (const [status, n] of Object.entries(tally.byStatus)) if (Number(status) >= 500) expect(n, `status ${status}`).toBe(0);
  }, 40_000);

  it.skipIf(!hasRedis)('two workers leasing from Redis each (--workers 2 --redis) spend at most the budget', async () => {
    const port = await freePort();
    redis = await startRedis(port);
    const s = await serve(budgetedDemo(FLIGHT, SLICE), ['--workers', '2', '--redis', `redis://127.0.0.1:${port}`]);
    procs.push(s);
    const { tally, quiet, granted } = await driveToExhaustion(s);
    console.log(`budget-workers (redis): billed ${tally.spentMicros} of ${BUDGET_MICROS} micros, granted ${granted}, ${tally.bids} bids`);
    expect(quiet).toBe(6);
    expect(tally.spentMicros).toBeLessThanOrEqual(BUDGET_MICROS + 2 * SLICE_MICROS);
    expect(tally.spentMicros).toBeGreaterThanOrEqual(0.9 * BUDGET_MICROS);
    expect(granted).toBeLessThanOrEqual(BUDGET_MICROS);
    expect(tally.errors).toBe(0);
  }, 40_000);
});
