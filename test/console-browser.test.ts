/**
 * The trader console in a real browser (playwright-core + Debian chromium) against a real bidder: traffic and
 * events (nurl, burl, lurl, pixel, click) go over HTTP, then the page signs in with a write token, draws the
 * charts with that data (the live totals, and from /admin/history: spend vs pacing target and the arm shares
 * of a budgeted campaign, win rate and shading per line item; each checked for drawn pixels of its series),
 * pauses a line item from its button (checked on the page AND in GET /admin/config), shows a read-only token's
 * 403, and leaves screenshots in test-output/console.png and test-output/console-history.png.
 * Skipped only when /usr/bin/chromium is absent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser } from 'playwright-core';
import type { RunningBidder } from '../src/server/start.js';
import { raw, startTestBidder } from './helpers/bidder.js';
import { demoUserId } from '../src/fixtures/demo.js';
import { ensureDemoStore } from '../src/fixtures/ensure-demo.js';
import { DEMO_CONFIG, DEMO_DIR, PACKAGE_ROOT } from '../src/common/paths.js';

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_CHROMIUM) console.warn(`console-browser.test: SKIPPED, ${CHROMIUM} is absent (install the Debian package "chromium")`);

const READ = 'read-token-0123456789abcdef';
const WRITE = 'write-token-fedcba9876543210';
const KEYS = '1:' + 'cd'.repeat(32);
const PAUSED = 'li-loyal-display';
/** The budgeted campaign's arms (the paused line item and run-of-network stay unbudgeted: never paced). */
const ARMS = ['li-regular-display', 'li-winback', 'li-lookalike'];

let bidder: RunningBidder;
let browser: Browser;
let dir = '';

/** The demo config with its segmentation inlined (so that /admin/config carries the tree) in a temp folder. */
function inlineDemoConfig(dir: string): string {
  ensureDemoStore();
  const doc = JSON.parse(readFileSync(DEMO_CONFIG, 'utf8'));
  doc.segmentation = JSON.parse(readFileSync(join(DEMO_DIR, doc.segmentation), 'utf8'));
  doc.segmentStore = resolve(DEMO_DIR, doc.segmentStore);
  const start = Date.now() - 120_000;
  // The even curve spreads the day's budget from the flight start to the campaign's midnight: shortly after
  // midnight that is a day away, the pacer lets almost nothing through and no spend shows within the test. The
  // campaign's day is shifted so that its midnight is ~20 minutes ahead whatever the clock says.
  const utcMinute = Math.floor((Date.now() % 86_400_000) / 60_000);
  let utcOffsetMinutes = 1420 - utcMinute;
  if (utcOffsetMinutes > 840) utcOffsetMinutes -= 1440;
  doc.campaigns = [
    {
      id: 'spring',
      name: 'Spring sale',
      budget: { daily: 2, flight: 10, flightStart: new Date(start).toISOString(), flightEnd: new Date(start + 7 * 86_400_000).toISOString() },
      kpi: 'cpc',
      lineItems: ARMS,
      pacing: { curve: 'even', catchUpSeconds: 10, utcOffsetMinutes },
      settle: 'billing',
    },
  ];
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify(doc, null, 2));
  return path;
}

function fill(url: string, price: string, auction: string, imp: string, extra: Record<string, string> = {}): string {
  const values: Record<string, string> = { AUCTION_ID: auction, AUCTION_IMP_ID: imp, AUCTION_PRICE: price, AUCTION_CURRENCY: 'USD', ...extra };
  let out = url;
  for (const [k, v] of Object.entries(values)) out = out.split('${' + k + '}').join(v);
  const u = new URL(out);
  return u.pathname + u.search;
}

const get = async (path: string) => (await raw(bidder.bidPort, { method: 'GET', path })).status;

/**
 * `n` auctions for demo users from `from` (every other one at first price); 4 of 5 bids win, the 5th loses to a
 * higher bid (lurl with a min-to-win price); bills and renders most wins, clicks some.
 */
async function traffic(from: number, n: number): Promise<number> {
  let wins = 0;
  for (let i = from; i < from + n; i++) {
    const id = `console-auction-${i}`;
    const request = {
      id,
      site: { domain: 'news.example', page: 'https://news.example/a' },
      cur: ['USD'],
      imp: [{ id: 'imp-1', banner: { format: [{ w: 300, h: 250 }] } }],
      at: i % 2 === 0 ? 1 : 2,
      user: { buyeruid: demoUserId(i) },
      device: { devicetype: 2, geo: { country: 'FRA' } },
    };
    const r = await raw(bidder.bidPort, { body: JSON.stringify(request) });
    if (r.status !== 200) continue;
    const bid = JSON.parse(r.text).seatbid[0].bid[0];
    const price = (0.3 + (i % 7) * 0.1).toFixed(2);
    if (i % 5 === 4) {
      expect(await get(fill(bid.lurl, price, id, 'imp-1', { AUCTION_LOSS: '102', AUCTION_MIN_TO_WIN: (bid.price * 1.2).toFixed(4) }))).toBe(204);
      continue;
    }
    expect(await get(fill(bid.nurl, price, id, 'imp-1'))).toBe(204);
    wins++;
    if (i % 6 !== 0) expect(await get(fill(bid.burl, price, id, 'imp-1'))).toBe(204);
    if (i % 4 !== 0) {
      const pixel = /src=\\?"(http[^"\\]*\/ev\/imp\?t=[^"\\]*)/.exec(bid.adm);
      if (pixel) await get(new URL(pixel[1]).pathname + new URL(pixel[1]).search);
    }
    if (i % 3 === 0) {
      const click = /href=\\?"(http[^"\\]*\/ev\/click\?t=[^"\\]*)/.exec(bid.adm);
      if (click) await get(new URL(click[1]).pathname + new URL(click[1]).search);
    }
  }
  // A few no-bids with distinct reasons for the live panel.
  await raw(bidder.bidPort, { body: '{not json' });
  await raw(bidder.bidPort, { body: JSON.stringify({ id: 'short', tmax: 5, imp: [{ id: '1', banner: { w: 300, h: 250 } }], site: { domain: 'a.example' } }) });
  return wins;
}

describe.skipIf(!HAVE_CHROMIUM)('trader console in chromium', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'segbid-console-'));
    bidder = await startTestBidder(inlineDemoConfig(dir), { adminTokens: `read:${READ},write:${WRITE}`, eventLogDir: join(dir, 'events'), eventKeys: KEYS, historyEveryMs: 300 });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await bidder?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('shows live KPIs and charts, pauses a line item, and refuses a read-only token', async () => {
    expect(await traffic(1, 40)).toBeGreaterThan(5);
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      // The read-only PATCH is refused on purpose: the browser logs that 403 itself.
      if (m.type() === 'error' && !m.text().includes('status of 403')) errors.push(m.text());
    });
    const base = `http://127.0.0.1:${bidder.adminPort}`;
    await page.goto(`${base}/console?every=700`);
    await page.fill('#token', WRITE);
    await page.click('#login-form button[type=submit]');

    const winsShown = () =>
      page.waitForFunction(() =>
        Array.from(document.querySelectorAll('#line-items td[data-kpi="wins"]')).some((td) => Number((td.textContent ?? '').replace(/,/g, '')) > 0),
      );
    await winsShown();
    await page.waitForSelector('#chart-winrate canvas');
    await page.waitForSelector('#chart-spend canvas');
    // The tree comes from the inlined segmentation: a child node is indented under its parent.
    await page.waitForSelector('#tree tr[data-segment="loyal-high-value"]');
    // More traffic between polls, so that the charts have a line and not a single point.
    const spendBefore = await page.textContent('#total-spend');
    await traffic(41, 30);
    await page.waitForFunction((before) => document.getElementById('total-spend')!.textContent !== before, spendBefore);
    await page.waitForFunction(() => document.querySelectorAll('#reasons tbody tr').length > 0 && !document.querySelector('#reasons td.muted'));

    // The history charts: drawn (a canvas with pixels of each series' colour) from series with several points.
    const pacing = '#pacing-charts [data-chart="pacing:spring"]';
    const allocation = '#allocation-charts [data-chart="allocation:spring"]';
    const bidding = '#bidding-charts [data-chart="line-item:li-run-of-network"]';
    for (const box of [pacing, allocation, bidding]) {
      await page.waitForSelector(`${box} canvas`);
      await page.waitForFunction((sel) => Number(document.querySelector(sel)?.getAttribute('data-points')) >= 3, box);
    }
    // Spend booked for the campaign shows in its summary once a billed arm's notice is in a sample.
    await page.waitForFunction((sel) => /^spent (?!0\.00 )/.test(document.querySelector(sel + ' .summary')?.textContent ?? ''), pacing);
    const ink = (sel: string, rgb: [number, number, number]) =>
      page.evaluate(
        ({ sel, rgb }) => {
          const canvas = document.querySelector(sel + ' canvas') as HTMLCanvasElement;
          const px = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
          let n = 0;
          for (let i = 0; i < px.length; i += 4) {
            if (px[i + 3] > 200 && Math.abs(px[i] - rgb[0]) + Math.abs(px[i + 1] - rgb[1]) + Math.abs(px[i + 2] - rgb[2]) < 60) n++;
          }
          return n;
        },
        { sel, rgb },
      );
    expect(await ink(pacing, [0x1f, 0x8a, 0x4c]), 'spend line').toBeGreaterThan(20);
    expect(await ink(pacing, [0x2f, 0x6f, 0xdf]), 'target line').toBeGreaterThan(20);
    expect(await ink(allocation, [0x1d, 0x23, 0x30]), 'explore line').toBeGreaterThan(0);
    expect(await ink(bidding, [0x2f, 0x6f, 0xdf]), 'win rate').toBeGreaterThan(10);
    expect(await ink(bidding, [0xe0, 0x7b, 0x00]), 'shading').toBeGreaterThan(20);
    // Every arm of the campaign is listed with its current share and reason.
    const arms = await page.$$eval(`${allocation} tr[data-arm]`, (rows) => rows.map((r) => [r.getAttribute('data-arm'), r.getAttribute('data-reason')]));
    expect(arms.map((a) => a[0])).toEqual(ARMS);
    for (const [, reason] of arms) expect(['explore', 'exploit', 'guard_rail_min', 'guard_rail_max']).toContain(reason);
    // Run-of-network bid at first price and lost some: its shading is learned from those notices.
    expect(await page.textContent(`${bidding} .summary`)).toMatch(/bids \d+ · wins \d+ · win rate \d+\.\d % · bids \d+\.\d % of value \(learned\)/);
    mkdirSync(join(PACKAGE_ROOT, 'test-output'), { recursive: true });
    const boxes = await Promise.all(['#pacing', '#allocation', '#bidding'].map(async (sel) => (await page.locator(sel).boundingBox())!));
    const top = Math.min(...boxes.map((b) => b.y));
    const bottom = Math.max(...boxes.map((b) => b.y + b.height));
    await page.screenshot({ path: join(PACKAGE_ROOT, 'test-output', 'console-history.png'), fullPage: true, clip: { x: 0, y: top - 8, width: 1400, height: bottom - top + 16 } });

    // Pause from the page.
    const row = `#line-items tr[data-line-item="${PAUSED}"]`;
    expect(await page.textContent(`${row} td[data-state]`)).toBe('active');
    await page.click(`${row} button[data-line-item="${PAUSED}"]`);
    await page.waitForFunction((sel) => document.querySelector(sel + ' td[data-state]')?.textContent === 'paused', row);
    expect(await page.textContent(`${row} button`)).toBe('Resume');
    expect(await page.textContent('#flash')).toContain(`${PAUSED} paused`);
    const config = await (await fetch(`${base}/admin/config`, { headers: { authorization: `Bearer ${READ}` } })).json();
    expect(config.lineItems.find((li: { id: string }) => li.id === PAUSED).active).toBe(false);

    mkdirSync(join(PACKAGE_ROOT, 'test-output'), { recursive: true });
    await page.screenshot({ path: join(PACKAGE_ROOT, 'test-output', 'console.png'), fullPage: true });

    // A read token sees everything but cannot resume: the page shows the 403.
    await page.click('#logout');
    await page.fill('#token', READ);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector(`${row} button`);
    await page.click(`${row} button`);
    await page.waitForFunction(() => (document.getElementById('flash')?.textContent ?? '').includes('403'));
    const after = await (await fetch(`${base}/admin/config`, { headers: { authorization: `Bearer ${READ}` } })).json();
    expect(after.lineItems.find((li: { id: string }) => li.id === PAUSED).active).toBe(false);
    expect(errors).toEqual([]);
  }, 120_000); // a real browser on a 2-core machine shared with the rest of the suite: 10-50 s observed
});
