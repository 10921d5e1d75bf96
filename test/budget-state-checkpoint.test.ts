/**
 * The periodic state checkpoint writes and fsyncs off the bid thread (src/budget/state-store.ts,
 * checkpointInBackground): the journal is rotated to ledger.journal.pending and the image encoded on the thread,
 * the file written by the thread pool, the renames done when it is durable. A crash (simulated by copying the state
 * directory at that instant, journal flushed) must restore the ledger as it was, at every point: while the write
 * is in flight, after it, when a synchronous checkpoint supersedes it, and after a write that failed.
 */
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { useLargeConfig } from './helpers/large-config-dir.js';
import { loadDecider } from '../src/bidding/load-decider.js';
import { BidHandler } from '../src/bidding/bid-handler.js';
import { Decision } from '../src/bidding/decide.js';
import { Metrics } from '../src/metrics/metrics.js';
import { BudgetStateStore, STATE_FILES } from '../src/budget/state-store.js';
import type { Ledger } from '../src/budget/ledger.js';
import { LARGE_MIX_PARAMS, generateRequestMix } from '../bench/request-mix.js';

const logger = pino({ level: 'silent' });
const large = useLargeConfig('segbid-checkpoint', 1000);

/** What must survive a restart: the sequence number, open reservations and every campaign's money. */
function ledgerState(l: Ledger): string {
  const rows: string[] = [`seq ${l.seq}`, `open ${l.openReservations()}`];
  for (let c = 0; c < l.campaignCount; c++) rows.push(`${l.campaignId(c)} reserved ${l.reservedOf(c)} day ${l.daySpentOf(c)} flight ${l.flightSpentOf(c)}`);
  return rows.join('\n');
}

/** A bidder on the large config with a state store whose periodic checkpoints the test triggers itself. */
function bidder(stateDir: string) {
  const store = BudgetStateStore.open({ dir: stateDir, logger, snapshotIntervalMs: 3_600_000 });
  const handler = new BidHandler(loadDecider(large.configPath), new Metrics({ defaultMetrics: false }), undefined, store);
  return { store, handler };
}

/** A crash now: the journal's buffer flushed (as every second), the directory copied as it stands. */
function crashCopy(store: BudgetStateStore, from: string, name: string): string {
  store.tick(Date.now()); // flush only: the interval is an hour
  const to = join(large.dir, name);
  cpSync(from, to, { recursive: true });
  return to;
}

let restores = 0;

/** The ledger a bidder restarted on (a copy of) this directory starts with (its own checkpoints go to the copy). */
function restored(copy: string): string {
  const scratch = `${copy}-restart-${restores++}`;
  cpSync(copy, scratch, { recursive: true });
  const { store, handler } = bidder(scratch);
  expect(store.stats.restoredFrom).toBe('snapshot');
  const state = ledgerState(handler.budget!.ledger);
  store.close();
  return state;
}

/**
 * The same crash with state.snap unreadable: state.snap.prev and the journals after it must do (or, before a
 * second snapshot exists, the journals alone, from seq 1).
 */
function restoredFromPrevious(copy: string, from: 'previous_snapshot' | 'journal' = 'previous_snapshot'): string {
  const scratch = `${copy}-restart-${restores++}`;
  cpSync(copy, scratch, { recursive: true });
  writeFileSync(join(scratch, STATE_FILES.snapshot), 'not a snapshot');
  const { store, handler } = bidder(scratch);
  expect(store.stats.restoredFrom).toBe(from);
  const state = ledgerState(handler.budget!.ledger);
  store.close();
  return state;
}

/**
 * A crash now, restarted twice: from the directory as it stands and with state.snap unreadable; both must give
 * the live ledger. Returns the crash copy.
 */
function expectCrashRestores(store: BudgetStateStore, stateDir: string, name: string, live: string, previous: 'previous_snapshot' | 'journal' = 'previous_snapshot'): string {
  const copy = crashCopy(store, stateDir, name);
  expect(restored(copy), name).toBe(live);
  expect(restoredFromPrevious(copy, previous), `${name}, state.snap unreadable`).toBe(live);
  return copy;
}

describe('periodic state checkpoint off the bid thread', () => {
  it('restores the ledger from a crash at every point of the checkpoint', async () => {
    const stateDir = join(large.dir, 'live');
    mkdirSync(stateDir);
    const { store, handler } = bidder(stateDir);
    const decider = handler.current;
    const ledger = handler.budget!.ledger;
    const requests = generateRequestMix({ ...LARGE_MIX_PARAMS, count: 300, seed: 11 }).map((b) => JSON.parse(b));
    const d = new Decision();
    let t = Date.now();
    let settled = 0;
    const traffic = (n: number) => {
      for (let i = 0; i < n; i++) {
        decider.decide(requests[i % requests.length], (t += 3), d);
        for (let k = 0; k < d.bidCount; k++) {
          const h = d.reservation[k];
          // Half the bids are won: the reservation settles at 80% of the price (spend booked).
          if (h >= 0 && i % 2 === 0 && ledger.settle(h, Math.floor((d.priceMicros[k] * 0.8) / 1000), t) >= 0) settled++;
        }
        if (i % 300 === 299) handler.budget!.tick(t);
      }
    };
    traffic(1500);
    expect(ledger.openReservations()).toBeGreaterThan(50);
    expect(settled).toBeGreaterThan(50);

    // 1. The write in flight: the journal was rotated to .pending, the bid thread went on.
    store.checkpointInBackground(t);
    traffic(600);
    const inFlight = expectCrashRestores(store, stateDir, 'crash-in-flight', ledgerState(ledger), 'journal');
    expect(existsSync(join(inFlight, STATE_FILES.pendingJournal))).toBe(true);

    // 2. Written: .pending became .prev, the new snapshot is state.snap.
    await store.settled;
    expect(store.stats.snapshotFailures).toBe(0);
    expect(existsSync(join(stateDir, STATE_FILES.pendingJournal))).toBe(false);
    expect(existsSync(join(stateDir, STATE_FILES.previousJournal))).toBe(true);
    traffic(600);
    expectCrashRestores(store, stateDir, 'crash-after', ledgerState(ledger));

    // 3. A synchronous checkpoint (a config swap, shutdown) while a write is in flight supersedes it.
    store.checkpointInBackground(t);
    traffic(300);
    expect(store.checkpoint(t)).toBe(true);
    await store.settled;
    expect(readdirSync(stateDir).filter((f) => f.includes('tmp'))).toEqual([]);
    expect(existsSync(join(stateDir, STATE_FILES.pendingJournal))).toBe(false);
    traffic(300);
    expectCrashRestores(store, stateDir, 'crash-superseded', ledgerState(ledger));

    // 4. A write that fails (its path taken by a directory): counted, .pending kept, nothing lost; the next
    //    checkpoint is synchronous and takes .pending in.
    mkdirSync(join(stateDir, 'state.snap.async.tmp'));
    const failuresBefore = store.stats.snapshotFailures;
    store.checkpointInBackground(t);
    traffic(300);
    await store.settled;
    expect(store.stats.snapshotFailures).toBe(failuresBefore + 1);
    expect(existsSync(join(stateDir, STATE_FILES.pendingJournal))).toBe(true);
    traffic(300);
    expectCrashRestores(store, stateDir, 'crash-failed', ledgerState(ledger));
    rmSync(join(stateDir, 'state.snap.async.tmp'), { recursive: true });
    store.checkpointInBackground(t); // falls back to the synchronous checkpoint
    expect(existsSync(join(stateDir, STATE_FILES.pendingJournal))).toBe(false);
    traffic(300);
    expectCrashRestores(store, stateDir, 'crash-recovered', ledgerState(ledger));

    store.close();
    expect(restored(stateDir)).toBe(ledgerState(ledger));
    expect(restoredFromPrevious(stateDir)).toBe(ledgerState(ledger));
  });
});
