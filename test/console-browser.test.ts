/**
 * The trader console in a real browser (playwright-core + Debian chromium) against a real bidder: traffic and
 * events (nurl, burl, pixel, click) go over HTTP, then the page signs in with a write token, draws the charts
 * with that data, pauses a line item from its button (checked on the page AND in GET /admin/config), shows a
 * read-only token's 403, and leaves a screenshot in test-output/console.png.
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

let bidder: RunningBidder;
let browser: Browser;
let dir = '';

/** The demo config with its segmentation inlined (so that /admin/config carries the tree) in a temp folder. */
function inlineDemoConfig(dir: string): string {
  ensureDemoStore();
  const doc = JSON.parse(readFileSync(DEMO_CONFIG, 'utf8'));
  doc.segmentation = JSON.parse(readFileSync(join(DEMO_DIR, doc.segmentation), 'utf8'));
  doc.segmentStore = resolve(DEMO_DIR, doc.segmentStore);
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify(doc, null, 2));
  return path;
}

function fill(url: string, price: string, auction: string, imp: string): string {
  const values: Record<string, string> = { AUCTION_ID: auction, AUCTION_IMP_ID: imp, AUCTION_PRICE: price, AUCTION_CURRENCY: 'USD' };
  let out = url;
  for (const [k, v] of Object.entries(values)) out = out.split('${' + k + '}').join(v);
  const u = new URL(out);
  return u.pathname + u.search;
}

const get = async (path: string) => (await raw(bidder.bidPort, { method: 'GET', path })).status;

/** `n` auctions for demo users from `from`; wins every bid, bills and renders most, clicks some. */
async function traffic(from: number, n: number): Promise<number> {
  let wins = 0;
  for (let i = from; i < from + n; i++) {
    const id = `console-auction-${i}`;
    const request = {
      id,
      site: { domain: 'news.example', page: 'https://news.example/a' },
      cur: ['USD'],
      imp: [{ id: 'imp-1', banner: { format: [{ w: 300, h: 250 }] } }],
      user: { buyeruid: demoUserId(i) },
      device: { devicetype: 2, geo: { country: 'FRA' } },
    };
    const r = await raw(bidder.bidPort, { body: JSON.stringify(request) });
    if (r.status !== 200) continue;
    const bid = JSON.parse(r.text).seatbid[0].bid[0];
    if (i % 5 === 4) continue; // lost auction
    const price = (0.3 + (i % 7) * 0.1).toFixed(2);
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
    bidder = await startTestBidder(inlineDemoConfig(dir), { adminTokens: `read:${READ},write:${WRITE}`, eventLogDir: join(dir, 'events'), eventKeys: KEYS });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
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
  });
});
