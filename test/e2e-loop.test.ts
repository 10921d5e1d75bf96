/**
 * The whole loop over real HTTP on a running bidder: bid request -> bid response -> the exchange fires the
 * nurl (macros filled) and the burl -> the browser loads the pixel and follows the click redirect -> the
 * advertiser posts a conversion -> the KPI API shows exactly that; then a restart replays the event log into
 * the same KPIs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunningBidder } from '../src/server/start.js';
import { raw, startTestBidder } from './helpers/bidder.js';
import { demoUserId } from '../src/fixtures/demo.js';

const READ = 'read-token-0123456789abcdef';
const SECRET = 'conversion-secret-0123456789';
const KEYS = '1:' + 'ab'.repeat(32);
let bidder: RunningBidder;
const logDir = mkdtempSync(join(tmpdir(), 'segbid-e2e-'));

const start = () => startTestBidder(undefined, { eventLogDir: logDir, eventKeys: KEYS, adminTokens: `read:${READ}` });

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
  let lineItem: string;

  it('bids for a known loyal user', async () => {
    // Demo user 7 carries CRM segments; find one the loyal line item targets by asking the bidder.
    const request = {
      id: 'e2e-auction-1',
      site: { domain: 'news.example', page: 'https://news.example/a' },
      cur: ['USD'],
      imp: [{ id: 'imp-1', banner: { format: [{ w: 300, h: 250 }] } }],
      user: { buyeruid: demoUserId(7) },
      device: { devicetype: 2, geo: { country: 'FRA' } },
    };
    const r = await raw(bidder.bidPort, { body: JSON.stringify(request) });
    expect(r.status).toBe(200);
    const response = JSON.parse(r.text);
    bid = response.seatbid[0].bid[0];
    expect(bid.impid).toBe('imp-1');
    expect(bid.nurl).toContain('${AUCTION_PRICE}');
    expect(bid.adm).toContain('/ev/imp?t=');
    expect(bid.adm).toContain('/ev/click?t=');
    lineItem = bidder.handler.current.config.lineItems.find((li) => li.creatives.some((c) => c.id === bid.crid))!.id;
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
      const row = report.rows.find((r: { key: string }) => r.key === lineItem);
      expect(row).toBeDefined();
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
    await bidder.close();
    bidder = await start();
    await check(bidder.adminPort);
  });
});
