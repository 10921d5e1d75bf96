/**
 * Budget and learning state survive a restart (src/budget/state-store.ts):
 *   1. a graceful close + start on the same state directory: ledger accounts, open reservations, allocator
 *      statistics, pacing spend and strategy counters are equal before and after; a reservation made before
 *      the restart settles after it;
 *   2. a real `segbid serve --workers 1` process is SIGKILLed after notices were settled (and the journal's
 *      1-second flush passed), restarted on the same directories: /admin/budget shows the same spend, and a
 *      billing notice for a bid made before the kill settles its restored reservation; SIGTERM then exits 0
 *      within 5 s;
 *   3. a corrupt snapshot is rejected (metric) and the bidder still starts and answers, from the previous
 *      snapshot + journals, or empty when nothing is usable;
 *   4. a restart onto a changed config matches campaigns and line items by id (indices all moved).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunningBidder } from '../src/server/start.js';
import { metricValue, raw, startTestBidder } from './helpers/bidder.js';
import { demoUserId } from '../src/fixtures/demo.js';
import { DEMO_DIR } from '../src/common/paths.js';
import { ensureDemoStore } from '../src/fixtures/ensure-demo.js';
import { STATE_FILES } from '../src/budget/state-store.js';

const READ = 'read-token-0123456789abcdef';
const KEYS = '1:' + 'cd'.repeat(32);
const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');
const roots: string[] = [];
const tmp = (name: string) => {
  const d = mkdtempSync(join(tmpdir(), `segbid-restart-${name}-`));
  roots.push(d);
  return d;
};
afterAll(() => {
  for (const d of roots) rmSync(d, { recursive: true, force: true });
});

/** The demo with its line items as the arms of one campaign settled on billing notices (as in e2e-loop). */
function writeBudgetedDemo(): string {
  ensureDemoStore();
  const dir = tmp('config');
  for (const f of ['segmentation.json', 'segments.store']) copyFileSync(join(DEMO_DIR, f), join(dir, f));
  const doc = JSON.parse(readFileSync(join(DEMO_DIR, 'config.json'), 'utf8'));
  const now = Date.now();
  doc.campaigns = [
    {
      id: 'restart',
      name: 'Restart',
      budget: { daily: 100, flight: 100, flightStart: new Date(now - 3600_000).toISOString(), flightEnd: new Date(now + 7 * 86400_000).toISOString() },
      kpi: 'roas',
      lineItems: doc.lineItems.map((li: { id: string }) => li.id),
      pacing: { curve: 'even', catchUpSeconds: 10 },
      settle: 'billing',
    },
  ];
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify(doc));
  return path;
}
const configPath = writeBudgetedDemo();

/** Everything the restart must keep, as plain data. */
function budgetState(bidder: RunningBidder) {
  const b = bidder.handler.budget!;
  return {
    accounts: b.plan.campaigns.map((c) => b.ledger.account(c.index)),
    openReservations: b.ledger.openReservations(),
    allocator: b.allocator.exportStats(),
    bids: Array.from(b.allocator.bids),
    spentToday: Array.from(b.pacer.spentToday),
    strategyImpressions: Array.from(bidder.handler.current.plan.strategies.impressions),
    strategyClicks: Array.from(bidder.handler.current.plan.strategies.clicks),
    shadingTrials: Array.from(bidder.handler.current.plan.shading.trials),
    shadingFactor: Array.from(bidder.handler.current.plan.shading.factor),
  };
}

describe('graceful restart through startBidder', () => {
  const stateDir = tmp('state');
  const start = () => startTestBidder(configPath, { stateDir, eventKeys: KEYS, adminTokens: `read:${READ}` });
  let before: ReturnType<typeof budgetState>;
  let openHandle = -1;
  let openLineItem = -1;

  it('keeps spend, reservations, allocator, pacing and strategy state', async () => {
    let bidder = await start();
    const b = bidder.handler.budget!;
    const arms = Array.from(b.plan.campaigns[0].arms);
    expect(arms.length).toBeGreaterThan(1);
    const now = Date.now();
    const handles: number[] = [];
    for (let i = 0; i < 6; i++) {
      expect(b.reserve(arms[i % arms.length], 900 + i, now)).toBe(true);
      handles.push(b.lastReservation);
    }
    // Billing-settled campaign: the win shrinks the reservation, the billing notice books it.
    b.onWin(handles[0], arms[0], 420, now);
    b.onBilling(handles[0], arms[0], 420, now);
    b.onWin(handles[1], arms[1], 310, now);
    b.onBilling(handles[1], arms[1], 310, now);
    b.onLoss(handles[2], now);
    b.onWin(handles[3], arms[3 % arms.length], 250, now); // won, billing notice after the restart
    openHandle = handles[3];
    openLineItem = arms[3 % arms.length];
    for (let k = 0; k < 7; k++) b.onImpression(arms[0], 0);
    b.allocator.recordCost(arms[0], 420);
    b.onClick(arms[0], now);
    b.onConversion(arms[0], 35_000_000);
    b.onImpression(arms[1], 0);
    const strategies = bidder.handler.current.plan.strategies;
    strategies.recordImpression(arms[0], 5);
    strategies.recordClick(arms[0], 2);
    const shading = bidder.handler.current.plan.shading;
    const key = shading.keyOf(arms[1], shading.exchangeIndex(undefined), 500_000);
    for (let k = 0; k < 40; k++) shading.recordOutcome(key, 1_000_000 + k * 20_000, 2_000_000, k % 3 === 0);
    shading.refresh(Date.now());
    expect(shading.factor[key]).not.toBe(shading.factor[key + 1]); // the curve moved away from the prior
    b.ledger.checkInvariant();
    before = budgetState(bidder);
    expect(before.accounts[0].flight.spent).toBe(730);
    expect(before.openReservations).toBe(3);
    expect(before.allocator[b.plan.lineItemIds[arms[0]]]).toEqual([7, 1, 1, 35_000_000, 420]);
    expect(before.spentToday[arms[0]]).toBe(420);
    await bidder.close();
    expect(existsSync(join(stateDir, STATE_FILES.snapshot))).toBe(true);

    bidder = await start();
    try {
      const after = budgetState(bidder);
      expect(after).toEqual(before);
      bidder.handler.budget!.ledger.checkInvariant();
      // The reservation of a bid made before the restart settles after it (its handle rides in the bid id).
      const ledger = bidder.handler.budget!.ledger;
      expect(ledger.describe(openHandle)).toBe('open');
      bidder.handler.budget!.onBilling(openHandle, openLineItem, 250, Date.now());
      expect(ledger.account(0).flight.spent).toBe(980);
      expect(ledger.account(0).counters.settled).toBe(before.accounts[0].counters.settled + 1);
      expect(ledger.account(0).counters.unknownBooked).toBe(0);
      expect(await metricValue(bidder.adminPort, 'segbid_state_snapshot_rejected_total', {})).toBe(0);
      expect(await metricValue(bidder.adminPort, 'segbid_state_snapshot_age_seconds', {})).toBeLessThan(5);
    } finally {
      await bidder.close();
    }
  });

  it('rejects a corrupt snapshot, counts it, and recovers from the previous one plus the journals', async () => {
    const snap = join(stateDir, STATE_FILES.snapshot);
    const bytes = readFileSync(snap);
    for (let i = 40; i < bytes.length; i += 97) bytes[i] ^= 0x5a; // bit rot inside the body: the crc catches it
    writeFileSync(snap, bytes);
    const bidder = await start();
    try {
      expect(await metricValue(bidder.adminPort, 'segbid_state_snapshot_rejected_total', {})).toBe(1);
      const account = bidder.handler.budget!.ledger.account(0);
      expect(account.flight.spent).toBe(980); // previous snapshot + the journal written since
      expect(account.openReservations).toBe(before.openReservations - 1);
      bidder.handler.budget!.ledger.checkInvariant();
      const r = await raw(bidder.bidPort, { body: JSON.stringify({ id: 'after-corruption', imp: [{ id: '1', banner: { w: 300, h: 250 } }], site: { domain: 'news.example' }, user: { buyeruid: demoUserId(7) } }) });
      expect([200, 204]).toContain(r.status);
    } finally {
      await bidder.close();
    }
  });

  it('starts empty and answers when nothing in the state directory is readable', async () => {
    for (const f of Object.values(STATE_FILES)) writeFileSync(join(stateDir, f), Buffer.from('not a segbid state file, not a journal either'));
    const bidder = await start();
    try {
      expect(await metricValue(bidder.adminPort, 'segbid_state_snapshot_rejected_total', {})).toBe(2);
      expect(bidder.handler.budget!.ledger.account(0).flight.spent).toBe(0);
      const r = await raw(bidder.bidPort, { body: JSON.stringify({ id: 'empty-state', imp: [{ id: '1', banner: { w: 300, h: 250 } }], site: { domain: 'news.example' }, user: { buyeruid: demoUserId(8) } }) });
      expect([200, 204]).toContain(r.status);
    } finally {
      await bidder.close();
    }
    // The clean stop wrote a fresh, valid snapshot over the garbage.
    const again = await start();
    try {
      expect(await metricValue(again.adminPort, 'segbid_state_snapshot_rejected_total', {})).toBe(0);
    } finally {
      await again.close();
    }
  });
});

describe('restart onto a changed config', () => {
  it('matches campaigns and line items by id, not by index, and drops what is gone', async () => {
    const stateDir = tmp('changed');
    let bidder = await startTestBidder(configPath, { stateDir, eventKeys: KEYS });
    const b = bidder.handler.budget!;
    const ids = b.plan.lineItemIds;
    const arms = Array.from(b.plan.campaigns[0].arms);
    const now = Date.now();
    expect(b.reserve(arms[0], 800, now)).toBe(true);
    const settledHandle = b.lastReservation;
    b.onBilling(settledHandle, arms[0], 500, now);
    expect(b.reserve(arms[1], 700, now)).toBe(true);
    const openHandle = b.lastReservation;
    for (let k = 0; k < 3; k++) b.onImpression(arms[1], 0);
    const before = b.ledger.account(0);
    const statsBefore = b.allocator.exportStats();
    await bidder.close();

    // The same line items in reverse order, a new campaign first (it takes the first arm), and one line item
    // fewer: every index moves.
    const doc = JSON.parse(readFileSync(configPath, 'utf8'));
    const gone = ids[arms[arms.length - 1]];
    doc.lineItems = doc.lineItems.filter((li: { id: string }) => li.id !== gone).reverse();
    const rest = doc.lineItems.map((li: { id: string }) => li.id).filter((id: string) => id !== ids[arms[0]]);
    doc.campaigns = [{ ...doc.campaigns[0], id: 'fresh', name: 'Fresh', lineItems: [ids[arms[0]]] }, { ...doc.campaigns[0], lineItems: rest }];
    const changed = join(tmp('changed-config'), 'config.json');
    for (const f of ['segmentation.json', 'segments.store']) copyFileSync(join(DEMO_DIR, f), join(changed, '..', f));
    writeFileSync(changed, JSON.stringify(doc));

    bidder = await startTestBidder(changed, { stateDir, eventKeys: KEYS });
    try {
      const p = bidder.handler.budget!;
      const c = p.plan.campaigns.find((x) => x.id === 'restart')!.index;
      expect(c).toBe(1);
      const after = p.ledger.account(c);
      expect(after.flight.spent).toBe(before.flight.spent);
      expect(after.flight.reserved).toBe(before.flight.reserved);
      expect(after.openReservations).toBe(1);
      expect(p.ledger.account(0).flight.spent).toBe(0); // the new campaign starts empty
      const statsAfter = p.allocator.exportStats();
      expect(statsAfter[ids[arms[1]]]).toEqual(statsBefore[ids[arms[1]]]);
      expect(statsAfter[gone]).toBeUndefined();
      // The open reservation's tag follows its line item to its new index.
      const li = p.plan.lineItemIds.indexOf(ids[arms[1]]);
      p.onBilling(openHandle, li, 600, Date.now());
      expect(p.ledger.lastTag).toBe(li);
      expect(p.ledger.account(c).flight.spent).toBe(before.flight.spent + 600);
      expect(p.ledger.account(c).counters.unknownBooked).toBe(0);
      p.ledger.checkInvariant();
    } finally {
      await bidder.close();
    }
  });
});

/* ------------------------------------------------------------------ a real process, SIGKILL */

interface Served {
  child: ChildProcess;
  bidPort: number;
  adminPort: number;
  output: () => string;
}

function serve(eventDir: string, stateDir: string, snapshotSec = 15): Promise<Served> {
  const child = spawn(
    process.execPath,
    [CLI, 'serve', '--workers', '1', '--config', configPath, '--host', '127.0.0.1', '--port', '0', '--admin-port', '0', '--event-log', eventDir, '--state-dir', stateDir, '--state-snapshot-sec', String(snapshotSec)],
    { env: { ...process.env, SEGBID_EVENT_KEYS: KEYS, SEGBID_ADMIN_TOKENS: `read:${READ}`, LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`segbid did not start:\n${out}`)), 15_000);
    const check = () => {
      const bid = /segbid bid port: +http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      const ops = /segbid operations port: +http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (bid && ops) {
        clearTimeout(timer);
        resolve({ child, bidPort: Number(bid[1]), adminPort: Number(ops[1]), output: () => out });
      }
    };
    child.stdout!.on('data', check);
    child.on('exit', (code) => reject(new Error(`segbid exited ${code}:\n${out}`)));
  });
}

const exited = (child: ChildProcess) =>
  new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once('exit', (code, signal) => resolve({ code, signal }));
  });

async function budgetOf(adminPort: number) {
  const r = await fetch(`http://127.0.0.1:${adminPort}/admin/budget`, { headers: { authorization: `Bearer ${READ}` } });
  expect(r.status).toBe(200);
  return (await r.json()).campaigns[0] as { id: string; account: { flight: { spent: number; reserved: number }; openReservations: number; counters: Record<string, number> } };
}

interface SentBid {
  nurl: string;
  burl: string;
}

/** Sends requests until one gets a bid (the pacer opens after its first tick has seen the traffic). */
async function oneBid(bidPort: number, auction: string): Promise<SentBid> {
  for (let i = 0; i < 400; i++) {
    const request = {
      id: auction,
      site: { domain: 'news.example', page: 'https://news.example/a' },
      cur: ['USD'],
      imp: [{ id: 'imp-1', banner: { format: [{ w: 300, h: 250 }] } }],
      user: { buyeruid: demoUserId(7 + (i % 50)) },
      device: { devicetype: 2, geo: { country: 'FRA' } },
    };
    const r = await raw(bidPort, { body: JSON.stringify(request) });
    if (r.status === 200) return JSON.parse(r.text).seatbid[0].bid[0];
    await new Promise((done) => setTimeout(done, 20));
  }
  throw new Error('no bid');
}

function notice(url: string, auction: string, price: string): string {
  let out = url;
  for (const [k, v] of Object.entries({ AUCTION_ID: auction, AUCTION_IMP_ID: 'imp-1', AUCTION_PRICE: price, AUCTION_CURRENCY: 'USD' })) out = out.split('${' + k + '}').join(v);
  const u = new URL(out);
  return u.pathname + u.search;
}

describe('SIGKILL, then restart on the same state directory', () => {
  it('recovers the spend and the open reservations; SIGTERM exits 0', async () => {
    expect(existsSync(CLI)).toBe(true); // npx tsc -p tsconfig.json first
    const eventDir = tmp('events');
    const stateDir = tmp('kill-state');
    // No periodic snapshot in the first run (only the start-up one): what the restart recovers comes from the journal.
    let first: Served | null = await serve(eventDir, stateDir, 3600);
    let second: Served | null = null;
    try {
      const bid1 = await oneBid(first.bidPort, 'kill-1');
      const bid2 = await oneBid(first.bidPort, 'kill-2');
      expect((await raw(first.bidPort, { method: 'GET', path: notice(bid1.nurl, 'kill-1', '0.42') })).status).toBe(204);
      expect((await raw(first.bidPort, { method: 'GET', path: notice(bid1.burl, 'kill-1', '0.42') })).status).toBe(204);
      expect((await raw(first.bidPort, { method: 'GET', path: notice(bid2.nurl, 'kill-2', '0.30') })).status).toBe(204);
      const before = await budgetOf(first.adminPort);
      expect(before.account.flight.spent).toBe(420);
      expect(before.account.openReservations).toBeGreaterThanOrEqual(1);
      // The stated loss on a crash is at most the last journal flush interval (1 s): wait past it, then kill.
      await new Promise((done) => setTimeout(done, 1500));
      first.child.kill('SIGKILL');
      expect((await exited(first.child)).signal).toBe('SIGKILL');
      first = null;

      second = await serve(eventDir, stateDir);
      const after = await budgetOf(second.adminPort);
      expect(after.account.flight.spent).toBe(before.account.flight.spent);
      expect(after.account.counters.settled).toBe(before.account.counters.settled);
      expect(after.account.openReservations).toBe(before.account.openReservations);
      expect(after.account.flight.reserved).toBe(before.account.flight.reserved);
      expect(await metricValue(second.adminPort, 'segbid_state_journal_records_replayed', {})).toBeGreaterThanOrEqual(3);
      // bid2 won before the kill; its billing notice after the restart settles the restored reservation.
      expect((await raw(second.bidPort, { method: 'GET', path: notice(bid2.burl, 'kill-2', '0.30') })).status).toBe(204);
      const settled = await budgetOf(second.adminPort);
      expect(settled.account.flight.spent).toBe(720);
      expect(settled.account.counters.settled).toBe(before.account.counters.settled + 1);
      expect(settled.account.counters.unknownBooked).toBe(0);
      const t0 = Date.now();
      second.child.kill('SIGTERM');
      const { code } = await exited(second.child);
      expect(code).toBe(0);
      expect(Date.now() - t0).toBeLessThan(5000);
      second = null;
      expect(existsSync(join(stateDir, STATE_FILES.snapshot))).toBe(true);
    } finally {
      first?.child.kill('SIGKILL');
      second?.child.kill('SIGKILL');
    }
  });
});
