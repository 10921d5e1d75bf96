/**
 * The whole loop over real HTTP on a running bidder: bid request -> bid response -> the exchange fires the
 * nurl (macros filled) and the burl -> the browser loads the pixel and follows the click redirect -> the
 * advertiser posts a conversion -> the KPI API and the budget ledger show exactly that; then a restart replays
 * the event log into the same KPIs. The demo line items run under one budgeted campaign (settled on burl).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunningBidder } from '../src/server/start.js';
import { raw, startTestBidder } from './helpers/bidder.js';
import { demoUserId } from '../src/fixtures/demo.js';
import { DEMO_DIR } from '../src/common/paths.js';
import { ensureDemoStore } from '../src/fixtures/ensure-demo.js';

const READ = 'read-token-0123456789abcdef';
const SECRET = 'conversion-secret-0123456789';
const KEYS = '1:' + 'ab'.repeat(32);
let bidder: RunningBidder;
const logDir = mkdtempSync(join(tmpdir(), 'segbid-e2e-'));

const configDir = mkdtempSync(join(tmpdir(), 'segbid-e2e-config-'));

/** The demo, with its line items as the arms of one campaign settled on billing notices. */
function writeBudgetedDemo(): string {
  ensureDemoStore();
  for (const f of ['segmentation.json', 'segments.store']) copyFileSync(join(DEMO_DIR, f), join(configDir, f));
  const doc = JSON.parse(readFileSync(join(DEMO_DIR, 'config.json'), 'utf8'));
  const now = Date.now();
  doc.campaigns = [
    {
      id: 'e2e',
      name: 'End to end',
      budget: { daily: 100, flight: 100, flightStart: new Date(now - 3600_000).toISOString(), flightEnd: new Date(now + 7 * 86400_000).toISOString() },
      kpi: 'roas',
      lineItems: doc.lineItems.map((li: { id: string }) => li.id),
      pacing: { curve: 'even', catchUpSeconds: 10 },
      settle: 'billing',
    },
  ];
  const path = join(configDir, 'config.json');
  writeFileSync(path, JSON.stringify(doc));
  return path;
}
const configPath = writeBudgetedDemo();
const start = () => startTestBidder(configPath, { eventLogDir: logDir, eventKeys: KEYS, adminTokens: `read:${READ}` });

beforeAll(async () => {
  process.env.SEGBID_CONV_SECRET = SECRET;
  bidder = await start();
});
afterAll(async () => {
  await bidder?.close();
  delete process.env.SEGBID_CONV_SECRET;
});

/** The path and query of an event URL written by the bidder, with the exchange's macros filled. */
function fill(url: string, values: Record<string, string>): string {
  let out = url;
  for (const [k, v] of Object.entries(values)) out = out.split('${' + k + '}').join(v);
  const u = new URL(out);
  return u.pathname + u.search;
}

async function kpis(port: number, dimension = 'line_item') {
  const r = await fetch(`http://127.0.0.1:${port}/admin/kpis?dimension=${dimension}`, { headers: { authorization: `Bearer ${READ}` } });
  expect(r.status).toBe(200);
  return r.json();
}

describe('bid -> win -> bill -> impression -> click -> conversion', () => {
  let bid: { id: string; impid: string; price: number; nurl: string; burl: string; lurl: string; adm: string; crid: string };

  it('bids for a known user once the pacer has seen traffic', async () => {
    // The pacer learns each arm's capacity from the opportunities of the last second (the server ticks every
    // second), so the first requests of a fresh campaign are paced; traffic flows until one gets a bid.
    let response: { seatbid: { bid: typeof bid[] }[] } | null = null;
    for (let i = 0; i < 400 && response === null; i++) {
      const request = {
        id: 'e2e-auction-1',
        site: { domain: 'news.example', page: 'https://news.example/a' },
        cur: ['USD'],
        imp: [{ id: 'imp-1', banner: { format: [{ w: 300, h: 250 }] } }],
        user: { buyeruid: demoUserId(7 + (i % 50)) },
        device: { devicetype: 2, geo: { country: 'FRA' } },
      };
      const r = await raw(bidder.bidPort, { body: JSON.stringify(request) });
      if (r.status === 200) response = JSON.parse(r.text);
      else await new Promise((done) => setTimeout(done, 20));
    }
    expect(response).not.toBeNull();
    bid = response!.seatbid[0].bid[0];
    expect(bid.impid).toBe('imp-1');
    expect(bid.nurl).toContain('${AUCTION_PRICE}');
    expect(bid.adm).toContain('/ev/imp?t=');
    expect(bid.adm).toContain('/ev/click?t=');
  });

  it('counts the win once however often the exchange retries it', async () => {
    const win = fill(bid.nurl, { AUCTION_ID: 'e2e-auction-1', AUCTION_IMP_ID: 'imp-1', AUCTION_PRICE: '0.42', AUCTION_CURRENCY: 'USD' });
    for (let i = 0; i < 3; i++) expect((await raw(bidder.bidPort, { method: 'GET', path: win })).status).toBe(204);
    const bill = fill(bid.burl, { AUCTION_ID: 'e2e-auction-1', AUCTION_IMP_ID: 'imp-1', AUCTION_PRICE: '0.42', AUCTION_CURRENCY: 'USD' });
    expect((await raw(bidder.bidPort, { method: 'GET', path: bill })).status).toBe(204);
  });

  it('rejects a tampered notice', async () => {
    const win = fill(bid.nurl, { AUCTION_ID: 'e2e-auction-1', AUCTION_IMP_ID: 'imp-1', AUCTION_PRICE: '0.42', AUCTION_CURRENCY: 'USD' });
    // Change one character inside the signed part (the price bytes), keeping the token well-formed.
    const at = win.indexOf('t=') + 2 + 45;
    const tampered = win.slice(0, at) + (win[at] === 'A' ? 'B' : 'A') + win.slice(at + 1);
    expect((await raw(bidder.bidPort, { method: 'GET', path: tampered })).status).toBe(403);
  });

  it('serves the pixel and redirects the click to the landing page, never elsewhere', async () => {
    const pixel = /src=\\?"(http[^"\\]*\/ev\/imp\?t=[^"\\]*)/.exec(bid.adm)![1];
    const imp = await raw(bidder.bidPort, { method: 'GET', path: new URL(pixel).pathname + new URL(pixel).search });
    expect(imp.status).toBe(200);
    expect(imp.headers['content-type']).toBe('image/gif');
    const clickUrl = /href=\\?"(http[^"\\]*\/ev\/click\?t=[^"\\]*)/.exec(bid.adm)![1];
    const click = await raw(bidder.bidPort, { method: 'GET', path: new URL(clickUrl).pathname + new URL(clickUrl).search });
    expect(click.status).toBe(302);
    expect(String(click.headers.location)).toMatch(/^https:\/\/shop\.segbid\.example\//);
    const evil = new URL(clickUrl);
    evil.searchParams.set('u', 'https://evil.example/');
    expect((await raw(bidder.bidPort, { method: 'GET', path: evil.pathname + evil.search })).status).toBe(400);
  });

  it('attributes a conversion postback to the click', async () => {
    const body = JSON.stringify({ clickId: `${bid.id}`, value: 120.5, currency: 'USD', orderId: 'order-1' });
    const r = await raw(bidder.bidPort, { path: '/ev/conv', body, headers: { 'x-segbid-secret': SECRET, 'content-type': 'application/json' } });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text).attribution).toBe('click');
    const unauthorized = await raw(bidder.bidPort, { path: '/ev/conv', body, headers: { 'x-segbid-secret': 'wrong-secret-0123456789' } });
    expect(unauthorized.status).toBe(401);
  });

  it('shows exactly that in the KPIs, and the same after a restart from the event log', async () => {
    const check = async (port: number) => {
      const report = await kpis(port);
      // Exactly one line item won (several may share the creative; the token says which one bid).
      const won = report.rows.filter((r: { counters: { wins: number } }) => r.counters.wins > 0);
      expect(won).toHaveLength(1);
      const row = won[0];
      expect(bidder.handler.current.config.lineItems.find((li) => li.id === row.key)!.creatives.some((c) => c.id === bid.crid)).toBe(true);
      const c = row.counters;
      expect(c.wins).toBe(1);
      expect(c.billed).toBe(1);
      expect(c.impressions).toBe(1);
      expect(c.clicks).toBe(1);
      expect(c.conversions).toBe(1);
      expect(c.revenueMicros).toBe(120_500_000);
      expect(c.spendCpmMicros).toBe(420_000);
      expect(row.kpis.roas).toBeCloseTo(120.5 / 0.00042, 3);
    };
    await check(bidder.adminPort);
    // The ledger: the billing notice settled exactly CPM 0.42 = 420 micros for one impression.
    const budget = await (await fetch(`http://127.0.0.1:${bidder.adminPort}/admin/budget`, { headers: { authorization: `Bearer ${READ}` } })).json();
    expect(budget.campaigns[0].id).toBe('e2e');
    expect(budget.campaigns[0].account.flight.spent).toBe(420);
    expect(budget.campaigns[0].account.counters.settled).toBe(1);
    bidder.handler.budget!.ledger.checkInvariant();
    await bidder.close();
    bidder = await start();
    await check(bidder.adminPort);
  });
});
