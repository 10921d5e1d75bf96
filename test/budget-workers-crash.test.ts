/**
 * A worker that crashes mid-run under `segbid serve --workers 2` (src/budget/bank-threads.ts): the other worker
 * keeps bidding, the dead worker's grant stays counted until its reservations have timed out, then what it had not
 * reported as spent is reclaimed by the main thread and spent by the living workers. The crash is injected with
 * the cluster's SEGBID_FAULT_WORKER_CRASH hook (src/server/worker-entry.ts). Needs `npx tsc -p tsconfig.json`.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAIN, auctionOn, budgetedDemo, metricsText, newTally, serve, stop, type Serving } from './helpers/budget-drive.js';

const built = existsSync(MAIN) && existsSync(join(process.cwd(), 'dist/src/budget/bank-threads.js'));
if (!built) console.warn('budget-workers-crash: SKIPPED, run `npx tsc -p tsconfig.json` first');

const FLIGHT = 0.6;
const SLICE = 0.03;
const BUDGET_MICROS = FLIGHT * 1e6;
const SLICE_MICROS = SLICE * 1e6;
const TTL_MS = 2000;

const gauge = (text: string, name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);

describe.skipIf(!built)('a worker crash under --workers 2', () => {
  let proc: Serving | null = null;
  afterAll(async () => {
    if (proc) await stop(proc, 'SIGKILL');
  });

  it('reclaims the dead worker\'s unspent grant after its reservations timed out; the budget holds', async () => {
    const trigger = join(mkdtempSync(join(tmpdir(), 'segbid-crash-')), 'crash-now');
    proc = await serve(budgetedDemo(FLIGHT, SLICE, { reservationTtlMs: TTL_MS }), ['--workers', '2'], { SEGBID_FAULT_WORKER_CRASH: `0:${trigger}` });
    const s = proc;
    const tally = newTally();
    const drive = async (ms: number, until: () => boolean = () => false) => {
      const end = Date.now() + ms;
      const loop = async () => {
        while (Date.now() < end && !until()) await auctionOn(s, tally);
      };
      await Promise.all([loop(), loop(), loop(), loop()]);
    };
    await drive(10_000, () => tally.spentMicros >= 0.3 * BUDGET_MICROS);
    writeFileSync(trigger, 'now'); // worker 0 throws on its next check (50 ms) and exits; the main thread restarts it
    await drive(TTL_MS + 1500);
    const m = await metricsText(s.adminPort);
    const reclaimed = gauge(m, 'segbid_budget_book_reclaimed_micros');
    expect(gauge(m, 'segbid_worker_restarts_total')).toBe(1);
    // Reclaimed = what it held + its open reservations + what it settled and had not reported yet: never 0.
    expect(reclaimed).toBeGreaterThan(0);
    // On to the end of the budget.
    let quiet = 0;
    let lastSpent = -1;
    const deadline = Date.now() + 12_000;
    while (Date.now() < deadline && quiet < 6) {
      await drive(250);
      quiet = tally.spentMicros === lastSpent ? quiet + 1 : 0;
      lastSpent = tally.spentMicros;
    }
    const end = await metricsText(s.adminPort);
    const granted = gauge(end, 'segbid_budget_book_granted_micros');
    console.log(
      `budget-workers-crash: billed ${tally.spentMicros} of ${BUDGET_MICROS} micros, reclaimed ${reclaimed}, book granted ${granted}, ` +
        `statuses ${JSON.stringify(tally.byStatus)}, connection errors ${tally.errors}`,
    );
    expect(quiet).toBe(6);
    expect(granted).toBeLessThanOrEqual(BUDGET_MICROS);
    // A crash double-counts at most what the dead worker settled since its last report (it reports with every
    // call, and calls before it holds less than a slice): within two slices.
    expect(tally.spentMicros).toBeLessThanOrEqual(BUDGET_MICROS + 2 * SLICE_MICROS);
    expect(tally.spentMicros).toBeGreaterThanOrEqual(0.85 * BUDGET_MICROS);
    for (const [status, n] of Object.entries(tally.byStatus)) if (Number(status) >= 500) expect(n, `status ${status}`).toBe(0);
  }, 40_000);
});
