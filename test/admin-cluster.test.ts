/**
 * The admin API of a bidder with several worker threads (`serve --workers 2`, a real process, the default on a
 * multi-core machine): the main thread validates and builds a change, every worker then serves it; an invalid
 * change is refused with paths and every worker keeps the old config; what is kept per worker (KPIs, events,
 * budgets, history) is reported for the cluster (budgets: test/admin-cluster-budget.test.ts). Needs dist/ (npm
 * test builds it).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { raw } from './helpers/bidder.js';
import { smallConfig } from './helpers/small-config.js';
import { serve, stop, type Serving } from './helpers/budget-drive.js';

/* Config documents are plain JSON here. */
type Doc = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const READ = 'read-token-0123456789abcdef';
const WRITE = 'write-token-fedcba9876543210';
const R = { authorization: `Bearer ${READ}` };
const W = { authorization: `Bearer ${WRITE}`, 'content-type': 'application/json' };

const config = (cpm: number): Doc => smallConfig({ cpm });

const BID = JSON.stringify({
  id: 'req-cluster-1',
  imp: [{ id: '1', banner: { w: 300, h: 250 } }],
  site: { id: 'site-1', domain: 'news.example', page: 'https://news.example/a' },
  device: { devicetype: 2, geo: { country: 'FRA' } },
  tmax: 150,
  cur: ['USD'],
});

let bidder: Serving;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'segbid-admin-cluster-'));
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify(config(1)));
  bidder = await serve(path, ['--workers', '2'], { SEGBID_ADMIN_TOKENS: `read:${READ},write:alice:${WRITE}` });
}, 30_000);
afterAll(async () => {
  if (bidder) await stop(bidder);
});

const admin = (method: string, path: string, headers: Record<string, string>, body?: unknown) =>
  raw(bidder.adminPort, { method, path, headers, body: body === undefined ? undefined : JSON.stringify(body) });

/** Prices bid on 12 fresh connections (the kernel spreads them over both workers). */
async function prices(): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < 12; i++) {
    const r = await raw(bidder.bidPort, { body: BID });
    expect(r.status).toBe(200);
    out.push(JSON.parse(r.text).seatbid[0].bid[0].price as number);
  }
  return out;
}

describe('admin API with --workers 2', () => {
  it('serves the running config, behind its tokens', async () => {
    expect((await admin('GET', '/admin/config', {})).status).toBe(401);
    const r = await admin('GET', '/admin/config', R);
    expect(r.status).toBe(200);
    expect(r.headers.etag).toBe('"v1"');
    expect(JSON.parse(r.text)).toEqual(config(1));
    expect(new Set(await prices())).toEqual(new Set([1]));
  });

  it('applies a change in every worker', async () => {
    const r = await admin('PATCH', '/admin/line-items/li-a', W, { bid: { cpm: 2.5 } });
    expect(r.status, r.text).toBe(200);
    // The workers swap right after the main thread answered: give them a moment.
    let seen: number[] = [];
    for (let i = 0; i < 50; i++) {
      seen = await prices();
      if (seen.every((p) => p === 2.5)) break;
      await new Promise((res) => setTimeout(res, 20));
    }
    expect(new Set(seen)).toEqual(new Set([2.5]));
  });

  it('refuses an invalid change with its paths; every worker keeps bidding on the old config', async () => {
    const bad = config(3);
    bad.lineItems[0].creatives = ['no-such-creative'];
    const r = await admin('PUT', '/admin/config', W, bad);
    expect(r.status).toBe(422);
    expect(r.text).toContain('/lineItems/0/creatives');
    expect(new Set(await prices())).toEqual(new Set([2.5]));
  });

  it('reports the KPIs and event counts of all workers summed', async () => {
    // Win notices on fresh connections: the kernel spreads them over both workers.
    let wins = 0;
    for (let i = 0; i < 16; i++) {
      const r = await raw(bidder.bidPort, { body: BID.replace('req-cluster-1', `req-kpi-${i}`) });
      const bid = JSON.parse(r.text).seatbid[0].bid[0] as { price: number; nurl: string };
      const u = new URL(bid.nurl.replace('${AUCTION_PRICE}', String(bid.price)).replace('${AUCTION_ID}', `req-kpi-${i}`).replace('${AUCTION_IMP_ID}', '1').replace('${AUCTION_CURRENCY}', 'USD'));
      if ((await raw(bidder.bidPort, { method: 'GET', path: u.pathname + u.search })).status === 204) wins++;
    }
    expect(wins).toBe(16);
    let report: { total: { counters: { wins: number } }; rows: { key: string; counters: { wins: number } }[] } | null = null;
    for (let i = 0; i < 60; i++) {
      const r = await admin('GET', '/admin/kpis?dimension=line_item', R);
      expect(r.status).toBe(200);
      report = JSON.parse(r.text);
      if (report!.total.counters.wins >= 16) break;
      await new Promise((res) => setTimeout(res, 100)); // workers send every 2 s
    }
    expect(report!.total.counters.wins).toBe(16);
    expect(report!.rows.find((row) => row.key === 'li-a')!.counters.wins).toBe(16);
    const events = JSON.parse((await admin('GET', '/admin/events', R)).text);
    expect(events.results.win.accepted).toBe(16);
    expect((await admin('GET', '/admin/discrepancies', R)).status).toBe(200);
  }, 30_000);

  it('counts a notice retried on another worker once (one dedupe for all workers)', async () => {
    const r = await raw(bidder.bidPort, { body: BID.replace('req-cluster-1', 'req-retried') });
    const bid = JSON.parse(r.text).seatbid[0].bid[0] as { price: number; nurl: string };
    const u = new URL(bid.nurl.replace('${AUCTION_PRICE}', String(bid.price)).replace('${AUCTION_ID}', 'req-retried').replace('${AUCTION_IMP_ID}', '1').replace('${AUCTION_CURRENCY}', 'USD'));
    const before = JSON.parse((await admin('GET', '/admin/events', R)).text).results.win ?? {};
    // Six sends on fresh connections: the kernel spreads them over both workers.
    for (let i = 0; i < 6; i++) expect((await raw(bidder.bidPort, { method: 'GET', path: u.pathname + u.search })).status).toBe(204);
    let win: { accepted?: number; duplicate?: number } = {};
    for (let i = 0; i < 60; i++) {
      win = JSON.parse((await admin('GET', '/admin/events', R)).text).results.win ?? {};
      if ((win.accepted ?? 0) + (win.duplicate ?? 0) >= (before.accepted ?? 0) + (before.duplicate ?? 0) + 6) break;
      await new Promise((res) => setTimeout(res, 100)); // workers send every 2 s
    }
    expect((win.accepted ?? 0) - (before.accepted ?? 0)).toBe(1);
    expect((win.duplicate ?? 0) - (before.duplicate ?? 0)).toBe(5);
  }, 30_000);

  it('serves the segmentation, the history and (once the workers sent theirs) the budgets', async () => {
    const seg = await admin('GET', '/admin/segmentation', R);
    expect(seg.status).toBe(200);
    const history = await admin('GET', '/admin/history', R);
    expect(history.status, history.text).toBe(200);
    const h = JSON.parse(history.text) as { lineItems: { id: string }[]; idleLineItems: string[] };
    expect([...h.lineItems.map((l) => l.id), ...h.idleLineItems]).toContain('li-a');
    // No campaign in this config: the workers answer with none.
    const budget = await admin('GET', '/admin/budget', R);
    expect(budget.status, budget.text).toBe(200);
    expect(JSON.parse(budget.text).campaigns).toEqual([]);
  });
});
