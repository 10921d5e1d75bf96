/**
 * GET /admin/history against a real bidder: the demo with two budgeted campaigns and one unbudgeted line item,
 * first-price traffic over HTTP, win, billing and loss notices (with min-to-win prices), history sampled every
 * 200 ms. Checked against figures computed independently of the recorder: the ledger spend from the billed
 * prices, the pacing target from the even curve's formula, win rates from /admin/kpis, and the shading factor
 * from the prices the bidder actually sends at first vs second price.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunningBidder } from '../src/server/start.js';
import { raw, startTestBidder } from './helpers/bidder.js';
import { demoUserId } from '../src/fixtures/demo.js';
import { ensureDemoStore } from '../src/fixtures/ensure-demo.js';
import { DEMO_DIR } from '../src/common/paths.js';
import { HistoryRecorder, MIN_WINDOW_BIDS } from '../src/admin/history.js';
import type { Counters } from '../src/events/kpis.js';
import type { HistoryReport } from '../src/admin/history.js';

const READ = 'read-token-history-0123456789';
const KEYS = '1:' + 'ab'.repeat(32);
const DAY_MS = 86_400_000;
const SPRING = ['li-loyal-display', 'li-regular-display', 'li-winback'];
const PROSPECTS = ['li-lookalike', 'li-native-prospect'];
const RON = 'li-run-of-network'; // unbudgeted; the only demo line item with cr-ron-* creatives on a site banner

let bidder: RunningBidder;
let dir = '';
let flightStart = 0;

function writeConfig(): string {
  ensureDemoStore();
  for (const f of ['segmentation.json', 'segments.store']) copyFileSync(join(DEMO_DIR, f), join(dir, f));
  const doc = JSON.parse(readFileSync(join(DEMO_DIR, 'config.json'), 'utf8'));
  flightStart = Date.now() - 3600_000;
  const budget = { daily: 50, flight: 300, flightStart: new Date(flightStart).toISOString(), flightEnd: new Date(flightStart + 7 * DAY_MS).toISOString() };
  doc.campaigns = [
    { id: 'spring', name: 'Spring sale', budget, kpi: 'cpc', lineItems: SPRING, pacing: { curve: 'even', catchUpSeconds: 10 }, settle: 'billing' },
    { id: 'prospects', name: 'Prospects', budget: { ...budget, daily: 20 }, kpi: 'cpc', lineItems: PROSPECTS, pacing: { curve: 'even', catchUpSeconds: 10 }, settle: 'billing' },
  ];
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify(doc));
  return path;
}

async function admin(path: string, token: string | null = READ): Promise<{ status: number; json: any }> {
  const r = await fetch(`http://127.0.0.1:${bidder.adminPort}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

async function history(query = ''): Promise<HistoryReport> {
  const r = await admin('/admin/history' + query);
  expect(r.status).toBe(200);
  return r.json;
}

const last = <T>(a: T[]): T => a[a.length - 1];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, probe: () => Promise<T | null | undefined | false>, ms = 8000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function fill(url: string, values: Record<string, string>): string {
  let out = url;
  for (const [k, v] of Object.entries(values)) out = out.split('${' + k + '}').join(v);
  const u = new URL(out);
  return u.pathname + u.search;
}

interface Bid {
  price: number;
  crid: string;
  nurl: string;
  burl: string;
  lurl: string;
}

async function bid(id: string, user: string, at: number): Promise<Bid | null> {
  const request = {
    id,
    at,
    site: { domain: 'news.example', page: 'https://news.example/a' },
    cur: ['USD'],
    imp: [{ id: 'imp-1', banner: { format: [{ w: 300, h: 250 }] } }],
    user: { buyeruid: user },
    device: { devicetype: 2, geo: { country: 'FRA' } },
  };
  const r = await raw(bidder.bidPort, { body: JSON.stringify(request) });
  return r.status === 200 ? JSON.parse(r.text).seatbid[0].bid[0] : null;
}

const notice = async (path: string) => expect((await raw(bidder.bidPort, { method: 'GET', path })).status).toBe(204);

/**
 * The same request at second price (the bid is the value) then first price (the shaded bid), for a user the
 * store does not know (only RON bids): the factor the bidder applies, and the value.
 */
async function probeFactor(tag: string): Promise<{ factor: number; value: number }> {
  const second = await bid(`probe-${tag}-2`, `nobody-${tag}`, 2);
  const first = await bid(`probe-${tag}-1`, `nobody-${tag}`, 1);
  expect(second?.crid).toBe('cr-ron-300x250');
  expect(first?.crid).toBe('cr-ron-300x250');
  return { factor: first!.price / second!.price, value: second!.price };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'segbid-history-'));
  bidder = await startTestBidder(writeConfig(), { adminTokens: `read:${READ}`, eventLogDir: join(dir, 'events'), eventKeys: KEYS, historyEveryMs: 200 });
});
afterAll(async () => {
  await bidder?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('GET /admin/history', () => {
  it('needs a token and reports malformed queries by path', async () => {
    expect((await admin('/admin/history', null)).status).toBe(401);
    for (const q of ['after=abc', 'after=1.5', 'after=', 'points=0', 'points=100000', 'points=x', 'top=0', 'top=', 'top=-3']) {
      const r = await admin('/admin/history?' + q);
      expect(r.status, q).toBe(400);
      expect(r.json.details[0].path).toBe('/query/' + q.split('=')[0]);
    }
    expect((await admin('/admin/history?after=0&points=5&unknown=1')).status).toBe(200);
  });

  it('samples the pacing target and the arm shares from the start', async () => {
    const h = await until('two points', async () => {
      const x = await history();
      return x.t.length >= 2 && x;
    });
    expect(h.everyMs).toBe(200);
    expect(h.capacity).toBe(720);
    expect(h.currency).toBe('USD');
    expect(h.to - h.from).toBe(h.t.length);
    for (let i = 1; i < h.t.length; i++) expect(h.t[i]).toBeGreaterThan(h.t[i - 1]);
    expect(h.campaigns.map((c) => c.id)).toEqual(['spring', 'prospects']);
    const spring = h.campaigns[0];
    expect(spring.name).toBe('Spring sale');
    expect(spring.dayBudgetMicros).toBe(50e6);
    expect(spring.arms.map((a) => a.lineItem)).toEqual(SPRING);
    expect(spring.arms[0].segment).toBe('loyal-high-value');
    // The even curve over the day clipped to the flight (started an hour ago): target = budget x elapsed / span.
    const t = last(h.t);
    const dayStart = Math.floor(t / DAY_MS) * DAY_MS;
    const ws = Math.max(dayStart, flightStart);
    const expected = (50e6 * (t - ws)) / (dayStart + DAY_MS - ws);
    expect(Math.abs(last(spring.targetMicros)! - expected)).toBeLessThan(Math.max(2, expected * 1e-6));
    expect(last(spring.spentMicros)).toBe(0);
    // The shares are the allocator's (unchanged between two /admin/budget reads around the history read).
    await until('an allocation sampled', async () => {
      const b1 = (await admin('/admin/budget')).json.allocation.campaigns[0];
      const x = await history();
      const b2 = (await admin('/admin/budget')).json.allocation.campaigns[0];
      if (b1.reallocatedAt !== b2.reallocatedAt || !(b2.reallocatedAt < last(x.t))) return false;
      const arms = x.campaigns[0].arms;
      b2.arms.forEach((arm: { lineItem: string; share: number; reason: string }, k: number) => {
        expect(arms[k].lineItem).toBe(arm.lineItem);
        expect(last(arms[k].share)).toBeCloseTo(arm.share, 5);
        expect(last(arms[k].reason)).toBe(arm.reason);
      });
      expect(arms.reduce((sum, a) => sum + last(a.share)!, 0)).toBeCloseTo(1, 5);
      // The exploration part: at most the campaign's exploration share, less than the shares of the arms
      // labelled explore put together (each of them also holds its exploitation part).
      const exploration = last(x.campaigns[0].exploration)!;
      expect(exploration).toBeGreaterThanOrEqual(0);
      expect(exploration).toBeLessThanOrEqual(b2.explorationShare + 1e-9);
      const labelled = arms.filter((a) => last(a.reason) === 'explore').reduce((sum, a) => sum + last(a.share)!, 0);
      if (labelled > 0) {
        expect(exploration).toBeGreaterThan(0);
        expect(exploration).toBeLessThan(labelled);
      } else expect(exploration).toBe(0);
      return true;
    });
    // Increments: nothing after the last point; the last point alone with after = to - 2.
    const none = await history(`?after=${h.to - 1 + 1000}`);
    expect(none.t).toEqual([]);
    expect(none.campaigns).toEqual([]);
    // From a point on (sampling goes on meanwhile: at least that point), and the newest N.
    const more = await history(`?after=${h.to - 2}`);
    expect(more.from).toBe(h.to - 1);
    expect(more.t[0]).toBe(last(h.t));
    expect(more.campaigns[0].targetMicros[0]).toBe(last(h.campaigns[0].targetMicros));
    await until('three points sampled', async () => (await history()).t.length >= 3);
    const tail = await history('?points=3');
    expect(tail.t.length).toBe(3);
    expect(tail.to - tail.from).toBe(3);
    expect(tail.lineItems.every((l) => l.bids.length === 3 && l.shadingFactor.length === 3)).toBe(true);
  });

  it('records spend, win rates and shading after traffic and notices', async () => {
    // Before any feedback the RON curve is the prior: the factor the bidder applies is what the history shows.
    const { factor: prior, value: ronValue } = await probeFactor('a');
    expect(prior).toBeGreaterThan(0.3);
    expect(prior).toBeLessThan(1);
    const before = await until('a sample after the probe', async () => {
      const x = await history();
      const l = x.lineItems.find((li) => li.id === RON);
      return l && last(l.bids)! >= 1 && l;
    });
    expect(Math.abs(last(before.shadingFactor)! - prior)).toBeLessThan(1e-4);
    expect(before.shadingTrials).toBe(0);

    // First-price traffic: 4 of 5 bids win (and are billed at the bid), the 5th loses to a higher bid; RON loses
    // 3 of 4, each time to a min-to-win price of 80 % of its value: above the prior's bid, so the curve learns to
    // bid higher.
    const billed: Record<string, number> = { spring: 0, prospects: 0 };
    const campaignOf = (crid: string) => (/^cr-(loyal|regular|winback)-/.test(crid) ? 'spring' : /^cr-prospect-/.test(crid) ? 'prospects' : null);
    let springBids = 0;
    let ronLosses = 0;
    let n = 0;
    const end = Date.now() + 9000;
    while (Date.now() < end && (springBids < 12 || ronLosses < 15)) {
      for (let k = 0; k < 20; k++, n++) {
        const id = `h-${n}`;
        const user = n % 3 === 2 ? `nobody-${n}` : demoUserId(1 + (n % 400));
        const b = await bid(id, user, 1);
        if (b === null) continue;
        const values = { AUCTION_ID: id, AUCTION_IMP_ID: 'imp-1', AUCTION_PRICE: String(b.price), AUCTION_CURRENCY: 'USD' };
        const camp = campaignOf(b.crid);
        if (camp === 'spring') springBids++;
        const ron = b.crid.startsWith('cr-ron-');
        if (ron ? n % 4 !== 0 : n % 5 === 4) {
          if (ron) ronLosses++;
          const minToWin = ron ? ronValue * 0.8 : b.price * 1.05;
          await notice(fill(b.lurl, { ...values, AUCTION_LOSS: '102', AUCTION_MIN_TO_WIN: minToWin.toFixed(6) }));
          continue;
        }
        await notice(fill(b.nurl, values));
        await notice(fill(b.burl, values));
        if (camp !== null) billed[camp] += Math.round(b.price * 1000);
      }
      await sleep(50);
    }
    expect(springBids).toBeGreaterThanOrEqual(12);
    expect(ronLosses).toBeGreaterThanOrEqual(15);

    // The recorder catches up: bids are tallied and flushed every second (wait for the last flush), the history
    // samples every 200 ms.
    await sleep(1200);
    const kpis = await until('history = KPIs', async () => {
      const k = (await admin('/admin/kpis?dimension=line_item')).json;
      const h = await history();
      const ok = k.rows.every((r: { key: string; counters: { bids: number; wins: number } }) => {
        const l = h.lineItems.find((li) => li.id === r.key);
        return l !== undefined && last(l.bids) === r.counters.bids && last(l.wins) === r.counters.wins && r.counters.wins <= r.counters.bids;
      });
      return ok && k;
    });
    const h = await history();
    const budget = (await admin('/admin/budget')).json;
    for (const c of h.campaigns) {
      // Spend of the day = the ledger's = the billed prices, in integer micros.
      expect(last(c.spentMicros)).toBe(billed[c.id]);
      expect(last(c.spentMicros)).toBe(budget.campaigns.find((b: { id: string }) => b.id === c.id).account.day.spent);
      expect(last(c.targetMicros)!).toBeGreaterThan(0);
      expect(last(c.targetMicros)!).toBeLessThanOrEqual(c.dayBudgetMicros);
      if (h.t.every((t) => Math.floor(t / DAY_MS) === Math.floor(h.t[0] / DAY_MS))) {
        for (let i = 1; i < c.targetMicros.length; i++) expect(c.targetMicros[i]!).toBeGreaterThanOrEqual(c.targetMicros[i - 1]!);
      }
      for (let i = 0; i < h.t.length; i++) {
        const shares = c.arms.map((a) => a.share[i]).filter((s): s is number => s !== null);
        if (shares.length === 0) continue;
        expect(shares.reduce((x, y) => x + y, 0)).toBeCloseTo(1, 4);
        for (const a of c.arms) expect(['explore', 'exploit', 'guard_rail_min', 'guard_rail_max', null]).toContain(a.reason[i]);
      }
    }
    expect(billed.spring).toBeGreaterThan(0);
    // top=N: the N line items with most bids, the others counted.
    const top = await history('?top=1');
    const most = [...h.lineItems].sort((a, b) => last(b.bids)! - last(a.bids)!)[0];
    expect(top.lineItems.map((l) => l.id)).toEqual([most.id]);
    expect(top.omittedLineItems).toBe(h.lineItems.length - 1);
    // An app-only line item never bid on these site requests: listed by id, without series.
    expect(h.idleLineItems).toContain('li-fr-app');
    expect(h.lineItems.map((l) => l.id)).not.toContain('li-fr-app');
    // Spend grows over the points (never down within the day).
    const spring = h.campaigns.find((c) => c.id === 'spring')!;
    expect(spring.spentMicros.filter((v) => v !== null && v > 0).length).toBeGreaterThan(1);

    // Win rate: the window (60 s) covers the whole test, so the last point is the KPI's wins / bids; none over
    // fewer than MIN_WINDOW_BIDS bids.
    let rated = 0;
    for (const row of kpis.rows as { key: string; counters: { bids: number; wins: number } }[]) {
      const l = h.lineItems.find((li) => li.id === row.key)!;
      if (row.counters.bids === 0) continue;
      if (row.counters.bids < MIN_WINDOW_BIDS) {
        expect(last(l.winRate), row.key).toBeNull();
        continue;
      }
      expect(last(l.winRate)!, row.key).toBeCloseTo(Math.min(1, row.counters.wins / row.counters.bids), 4);
      rated++;
    }
    expect(rated).toBeGreaterThan(0);
    const ron = h.lineItems.find((li) => li.id === RON)!;
    expect(last(ron.winRate)!).toBeGreaterThan(0.05);
    expect(last(ron.winRate)!).toBeLessThan(0.5);

    // Shading: feedback moved the RON curve; once refreshed (every second) the history shows the factor the
    // bidder now applies.
    await sleep(1300);
    const after = (await history()).lineItems.find((li) => li.id === RON)!;
    expect(after.shadingTrials).toBeGreaterThan(0);
    const learned = last(after.shadingFactor)!;
    expect(learned).toBeGreaterThan(prior + 0.02);
    expect(Math.abs((await probeFactor('b')).factor - learned)).toBeLessThan(1e-4);
  });

  it('keeps fixed rings and a bounded number of series, and forgets what left the config', () => {
    // The running bidder's own budget policy and shading table, sampled by a small recorder in process.
    const policy = bidder.handler.budget!;
    let withBudget = true;
    const source = {
      budget: (nowMs: number) => (withBudget ? policy.sample(nowMs) : null),
      shading: () => bidder.handler.current.plan.shading,
      lineItemCounters: () => new Map<string, Counters>(),
      currency: () => 'USD',
    };
    const small = new HistoryRecorder(source, { capacity: 5, everyMs: 1000 });
    for (let i = 0; i < 12; i++) small.sample(1_000_000 + i * 1000);
    let r = small.report();
    expect(r.t).toEqual([1_007_000, 1_008_000, 1_009_000, 1_010_000, 1_011_000]);
    expect([r.from, r.to]).toEqual([7, 12]);
    expect(r.campaigns.map((c) => c.id)).toEqual(['spring', 'prospects']);
    expect(r.campaigns[0].spentMicros.length).toBe(5);
    expect(small.report({ after: 9 }).t).toEqual([1_010_000, 1_011_000]);
    expect(small.report({ after: 2 }).from).toBe(7); // older than the ring: what is left
    // The campaigns leave (a reload without them): null at the new points, forgotten after a whole ring.
    withBudget = false;
    small.sample(1_012_000);
    r = small.report();
    expect(last(r.campaigns[0].spentMicros)).toBeNull();
    expect(last(r.campaigns[0].arms[0].share)).toBeNull();
    for (let i = 1; i < 5; i++) small.sample(1_012_000 + i * 1000);
    expect(small.report().campaigns).toEqual([]);
    // At most maxSeries series: the rest is counted, not kept.
    withBudget = true;
    const capped = new HistoryRecorder(source, { capacity: 5, maxSeries: 3 });
    capped.sample(1_000_000);
    const c = capped.report();
    expect(c.campaigns.length + c.campaigns.reduce((n, x) => n + x.arms.length, 0) + c.lineItems.length + c.idleLineItems.length).toBe(3);
    expect(c.droppedSeries).toBeGreaterThan(0);
  });
});
