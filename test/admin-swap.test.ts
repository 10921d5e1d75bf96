/**
 * Atomic swap under load: many bid requests (several interleaved "connections") run through one in-process
 * BidHandler while the admin API replaces the config again and again, each version setting EVERY line item's
 * CPM to the version number. Checked on every response:
 *   - no response mixes two versions (all its bid prices are equal),
 *   - its prices are those of the version live when it was answered (a change takes effect at once, whole),
 *   - an invalid replacement mid-stream is refused and the previous version keeps serving.
 * Run on a small test config (no store) and on the demo config (with its segment store, kept across changes).
 */
import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AdminAuth } from '../src/admin/auth.js';
import { AdminApi } from '../src/admin/admin-api.js';
import { ConfigManager } from '../src/admin/config-manager.js';
import { BidHandler } from '../src/bidding/bid-handler.js';
import { deciderFromDocument, loadDecider } from '../src/bidding/load-decider.js';
import { Metrics } from '../src/metrics/metrics.js';
import { DEMO_DIR } from '../src/common/paths.js';
import { ensureDemoStore } from '../src/fixtures/ensure-demo.js';

/* Config documents are plain JSON here; the tests edit them freely. */
type Doc = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const WRITE = 'write-token-fedcba9876543210';
const W = { authorization: `Bearer ${WRITE}` };

function smallConfig(): Doc {
  const banner = (id: string, w: number, h: number) => ({ id, format: 'banner', w, h, adomain: ['shop.example'], adm: `<img src="https://cdn.shop.example/${id}.png">` });
  return {
    version: 1,
    bidder: { currency: 'USD', rates: { USD: 1 }, eventBaseUrl: 'https://ev.segbid.test', defaultTmaxMs: 200, minTmaxMs: 10 },
    segmentation: { segments: [{ id: 'loyal', name: 'Loyal', kind: 'crm', rule: { col: 'tier', eq: 'x' } }] },
    segmentStore: null,
    creatives: [banner('cr-300x250', 300, 250), banner('cr-728x90', 728, 90), banner('cr-320x50', 320, 50)],
    lineItems: [
      { id: 'li-a', bid: { cpm: 1 }, creatives: ['cr-300x250'] },
      { id: 'li-b', bid: { cpm: 1 }, creatives: ['cr-728x90'] },
      { id: 'li-c', bid: { cpm: 1 }, creatives: ['cr-320x50'] },
      { id: 'li-d', targeting: { none: ['loyal'] }, bid: { cpm: 1 }, creatives: ['cr-300x250', 'cr-728x90', 'cr-320x50'] },
    ],
  };
}

function request(n: number): string {
  return JSON.stringify({
    id: `req-${n}`,
    imp: [
      { id: '1', banner: { w: 300, h: 250 } },
      { id: '2', banner: { w: 728, h: 90 } },
      { id: '3', banner: { w: 320, h: 50 } },
    ],
    site: { id: 'site-1', domain: 'news.example', page: 'https://news.example/a', publisher: { id: 'pub-1' } },
    device: { devicetype: 2, ua: 'Mozilla/5.0', ip: '192.0.2.10', geo: { country: 'FRA' } },
    user: { buyeruid: `user-${n % 97}` },
    tmax: 150,
    cur: ['USD'],
  });
}

/** The same document with every line item's CPM set to `cpm`. */
function withCpm(doc: Doc, cpm: number): Doc {
  const next = structuredClone(doc);
  for (const li of next.lineItems) li.bid.cpm = cpm;
  return next;
}

/** The same document made invalid at compile time (an unknown creative), with new CPMs that must never serve. */
function broken(doc: Doc, cpm: number): Doc {
  const next = withCpm(doc, cpm);
  next.lineItems[next.lineItems.length - 1].creatives = ['cr-does-not-exist'];
  return next;
}

const tick = () => new Promise<void>((r) => setImmediate(r));

interface Observation {
  live: number;
  prices: number[];
}

/**
 * Drives `connections` request loops and one admin loop, interleaved on the event loop. Returns every 200
 * response's prices with the version live when it was answered.
 */
async function drive(handler: BidHandler, api: AdminApi, baseDoc: Doc, versions: number, connections: number, perConnection: number) {
  let live = 1; // the CPM of the version serving; updated as soon as the synchronous PUT returns
  let done = false;
  const observed: Observation[] = [];
  const rejected: number[] = [];
  let noBids = 0;

  const client = async (c: number) => {
    for (let i = 0; i < perConnection; i++) {
      const r = handler.handle(request(c * perConnection + i));
      if (r.status === 200) {
        const prices = (JSON.parse(r.body).seatbid as { bid: { price: number }[] }[]).flatMap((s) => s.bid.map((b) => b.price));
        observed.push({ live, prices });
      } else {
        noBids++;
      }
      if (i % 3 === c % 3) await tick(); // connections interleave unevenly, like real ones
    }
  };

  const admin = async () => {
    for (let v = 2; v <= versions && !done; v++) {
      await tick();
      if (v % 5 === 0) {
        // An invalid replacement mid-stream: refused, the previous version keeps serving.
        const bad = api.handle({ method: 'PUT', path: '/admin/config', headers: W, body: JSON.stringify(broken(baseDoc, 1000 + v)) });
        expect(bad.status).toBe(422);
        rejected.push(1000 + v);
        await tick();
      }
      const res = api.handle({ method: 'PUT', path: '/admin/config', headers: W, body: JSON.stringify(withCpm(baseDoc, v)) });
      expect(res.status).toBe(200);
      live = v;
    }
  };

  const clients = Array.from({ length: connections }, (_, c) => client(c));
  const adminDone = admin();
  await Promise.all(clients);
  done = true;
  await adminDone;
  return { observed, rejected, noBids, lastLive: live };
}

function check(result: Awaited<ReturnType<typeof drive>>, versions: number, bidsPerResponse: number): void {
  const { observed, rejected } = result;
  expect(observed.length).toBeGreaterThan(500);
  const seen = new Set<number>();
  for (const o of observed) {
    expect(o.prices).toHaveLength(bidsPerResponse);
    // one version per response, and it is the one live at that moment
    expect(new Set(o.prices).size).toBe(1);
    expect(o.prices[0]).toBe(o.live);
    seen.add(o.prices[0]);
  }
  // refused versions never served
  for (const r of rejected) expect(seen.has(r)).toBe(false);
  expect(rejected.length).toBeGreaterThan(0);
  // the changes really were interleaved with the traffic: most versions answered some requests
  expect(seen.size).toBeGreaterThan(versions / 2);
  // responses come in live order: a version never comes back after a newer one served
  for (let i = 1; i < observed.length; i++) expect(observed[i].prices[0]).toBeGreaterThanOrEqual(observed[i - 1].prices[0]);
}

describe('atomic swap under load', () => {
  it('small config: no response mixes versions, invalid replacements never serve', async () => {
    const doc = smallConfig();
    const handler = new BidHandler(deciderFromDocument(doc, tmpdir(), 'swap-test'), new Metrics({ defaultMetrics: false }));
    const manager = new ConfigManager({ target: handler, document: doc, baseDir: tmpdir(), source: 'swap-test', historySize: 10 });
    const api = new AdminApi({ auth: new AdminAuth([{ role: 'write', name: 'loadtest', token: WRITE }]), manager });
    const versions = 60;
    const result = await drive(handler, api, doc, versions, 8, 400);
    check(result, versions, 3);
    expect(result.noBids).toBe(0);
    expect(manager.versions()).toHaveLength(10); // bounded history under churn
    expect(manager.currentVersion.id).toBe(result.lastLive); // v1 startup + one accepted version per CPM 2..N
    const audit = manager.audit.tail(1000);
    expect(audit.filter((e) => e.result === 'rejected')).toHaveLength(result.rejected.length);
    expect(audit.filter((e) => e.result === 'accepted' && e.action === 'replace')).toHaveLength(result.lastLive - 1);
  });

  it('demo config with its segment store: the same guarantees, the store kept across replacements', async () => {
    ensureDemoStore();
    const dir = mkdtempSync(join(tmpdir(), 'segbid-admin-swap-'));
    for (const f of ['config.json', 'segmentation.json', 'segments.store']) copyFileSync(join(DEMO_DIR, f), join(dir, f));
    const path = join(dir, 'config.json');
    const handler = new BidHandler(loadDecider(path), new Metrics({ defaultMetrics: false }));
    const manager = ConfigManager.fromFile(path, { target: handler });
    const store = handler.current.store;
    const api = new AdminApi({ auth: new AdminAuth([{ role: 'write', name: 'loadtest', token: WRITE }]), manager });
    const base = withCpm(manager.document(), 1);
    expect(api.handle({ method: 'PUT', path: '/admin/config', headers: W, body: JSON.stringify(base) }).status).toBe(200);
    const versions = 40;
    const result = await drive(handler, api, base, versions, 6, 300);
    // The demo's run-of-network line item answers every banner size for unknown users; known users may add
    // targeted line items, all at the same CPM.
    check(result, versions, 3);
    expect(handler.current.store === store).toBe(true);
  });
});

describe('the events section of a swapped config', () => {
  it('applies at once: a win notice older than the new maxAgeSec.win is refused as expired', () => {
    const handler = new BidHandler(deciderFromDocument(smallConfig(), '/nonexistent', 'events-swap'), new Metrics({ defaultMetrics: false }));
    const body = JSON.stringify({ id: 'r1', imp: [{ id: '1', banner: { w: 300, h: 250 } }], site: { domain: 'news.example' }, device: { geo: { country: 'FRA' } } });
    const win = (nowMs: number) => {
      const r = handler.handle(body);
      expect(r.status).toBe(200);
      const nurl = new URL((JSON.parse(r.body).seatbid[0].bid[0].nurl as string).replace('${AUCTION_PRICE}', '1').replace('${AUCTION_ID}', 'r1').replace('${AUCTION_IMP_ID}', '1'));
      return handler.events.handle({ method: 'GET', path: nurl.pathname, query: nurl.search.slice(1) }, nowMs).status;
    };
    expect(win(Date.now() + 5000)).toBe(204); // the default window is minutes
    const doc = smallConfig();
    doc.events = { maxAgeSec: { win: 2 } };
    handler.swap(deciderFromDocument(doc, '/nonexistent', 'events-swap'));
    expect(handler.events.settings.maxAgeSec.win).toBe(2);
    expect(win(Date.now() + 5000)).toBe(410);
    expect(win(Date.now() + 500)).toBe(204);
  });
});
