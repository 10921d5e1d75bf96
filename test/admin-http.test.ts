/**
 * The admin API over HTTP on the operations port of a real bidder (startTestBidder): tokens from
 * SEGBID_ADMIN_TOKENS, a trader's change visible on the bid port at once, an invalid change refused with the
 * old config still bidding, body limits enforced by the transport, and /admin never reachable on the bid port.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningBidder } from '../src/server/start.js';
import { metricValue, raw, startTestBidder, type RawResponse } from './helpers/bidder.js';

/* Config documents are plain JSON here; the tests edit them freely. */
type Doc = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const READ = 'read-token-0123456789abcdef';
const WRITE = 'write-token-fedcba9876543210';
const R = { authorization: `Bearer ${READ}` };
const W = { authorization: `Bearer ${WRITE}`, 'content-type': 'application/json' };

function smallConfig(cpm = 1): Doc {
  const banner = (id: string, w: number, h: number) => ({ id, format: 'banner', w, h, adomain: ['shop.example'], adm: `<img src="https://cdn.shop.example/${id}.png">` });
  return {
    version: 1,
    bidder: { currency: 'USD', rates: { USD: 1 }, eventBaseUrl: 'https://ev.segbid.test', defaultTmaxMs: 200, minTmaxMs: 10 },
    segmentation: { segments: [{ id: 'loyal', name: 'Loyal', kind: 'crm', rule: { col: 'tier', eq: 'x' } }] },
    segmentStore: null,
    creatives: [banner('cr-300x250', 300, 250), banner('cr-728x90', 728, 90)],
    lineItems: [
      { id: 'li-a', bid: { cpm }, creatives: ['cr-300x250'] },
      { id: 'li-b', bid: { cpm }, creatives: ['cr-728x90'] },
    ],
  };
}

const BID_REQUEST = JSON.stringify({
  id: 'req-http-1',
  imp: [
    { id: '1', banner: { w: 300, h: 250 } },
    { id: '2', banner: { w: 728, h: 90 } },
  ],
  site: { id: 'site-1', domain: 'news.example', page: 'https://news.example/a', publisher: { id: 'pub-1' } },
  device: { devicetype: 2, ua: 'Mozilla/5.0', ip: '192.0.2.10', geo: { country: 'FRA' } },
  tmax: 150,
  cur: ['USD'],
});

let bidder: RunningBidder;
let savedTokens: string | undefined;

function admin(method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<RawResponse> {
  return raw(bidder.adminPort, { method, path, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
}

async function bidPrices(): Promise<number[]> {
  const r = await raw(bidder.bidPort, { body: BID_REQUEST });
  expect(r.status).toBe(200);
  return (JSON.parse(r.text).seatbid as { bid: { price: number }[] }[]).flatMap((s) => s.bid.map((b) => b.price));
}

// /admin is wired on the ops port (src/server/ops-server.ts)
describe('admin API on the operations port', () => {
  beforeAll(async () => {
    savedTokens = process.env.SEGBID_ADMIN_TOKENS;
    process.env.SEGBID_ADMIN_TOKENS = `read:bob:${READ},write:alice:${WRITE}`;
    const dir = mkdtempSync(join(tmpdir(), 'segbid-admin-http-'));
    const path = join(dir, 'config.json');
    writeFileSync(path, JSON.stringify(smallConfig(1), null, 2));
    bidder = await startTestBidder(path);
  });

  afterAll(async () => {
    await bidder?.close();
    if (savedTokens === undefined) delete process.env.SEGBID_ADMIN_TOKENS;
    else process.env.SEGBID_ADMIN_TOKENS = savedTokens;
  });

  it('no token → 401 with WWW-Authenticate; wrong token → 401; read token on a write → 403', async () => {
    const none = await admin('GET', '/admin/config', {});
    expect(none.status).toBe(401);
    expect(String(none.headers['www-authenticate'])).toMatch(/^Bearer/);
    expect(JSON.parse(none.text).error).toBe('unauthorized');
    expect((await admin('GET', '/admin/config', { authorization: `Bearer ${READ}x` })).status).toBe(401);
    expect((await admin('PUT', '/admin/config', { ...R, 'content-type': 'application/json' }, smallConfig(3))).status).toBe(403);
    expect(await bidPrices()).toEqual([1, 1]);
  });

  it('GET /admin/config returns the document with its version ETag', async () => {
    const r = await admin('GET', '/admin/config', R);
    expect(r.status).toBe(200);
    expect(String(r.headers['content-type'])).toMatch(/^application\/json/);
    expect(r.headers.etag).toBe('"v1"');
    expect(JSON.parse(r.text)).toEqual(smallConfig(1));
  });

  it('PATCH a line item: the bid port prices with the new CPM at once', async () => {
    const r = await admin('PATCH', '/admin/line-items/li-a', W, { bid: { cpm: 2.5 } });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text).version).toMatchObject({ id: 2, author: 'write:alice', action: 'patch_line_item' });
    expect(await bidPrices()).toEqual([2.5, 1]);
  });

  it('an invalid PUT is 422 by path and the previous config keeps bidding', async () => {
    const bad = smallConfig(9);
    bad.lineItems[1].creatives = ['cr-nope'];
    const r = await admin('PUT', '/admin/config', W, bad);
    expect(r.status).toBe(422);
    expect(JSON.parse(r.text).details).toEqual([{ path: '/lineItems/1/creatives/0', message: 'unknown creative "cr-nope"' }]);
    expect(await bidPrices()).toEqual([2.5, 1]);
    // Counted and shown as a SIGHUP rejection is (README, "Reliability"), until a change is accepted.
    expect(await metricValue(bidder.adminPort, 'segbid_config_reloads_total', { result: 'rejected' })).toBe(1);
    const ready = JSON.parse((await raw(bidder.adminPort, { method: 'GET', path: '/readyz' })).text);
    expect(ready.lastError).toMatch(/invalid configuration/);
  });

  it('a nested-too-deep document is refused by path (422), not with a 500', async () => {
    // Written as text: JSON.stringify itself recurses.
    const deep = JSON.stringify(smallConfig(2)).replace('"bid":{"cpm":2}', '"targeting":' + '{"all":['.repeat(3000) + '"loyal"' + ']}'.repeat(3000) + ',"bid":{"cpm":2}');
    expect(deep.length).toBeGreaterThan(30_000);
    for (const path of ['/admin/config/validate', '/admin/config']) {
      const r = await raw(bidder.adminPort, { method: path.endsWith('validate') ? 'POST' : 'PUT', path, headers: W, body: deep });
      expect([200, 422], r.text.slice(0, 200)).toContain(r.status);
      expect(r.text).toMatch(/deeper than 64/);
    }
    expect(await bidPrices()).toEqual([2.5, 1]);
  });

  it('validate and dry-run answer without changing anything', async () => {
    const v = await admin('POST', '/admin/config/validate', R, { version: 1 });
    expect(v.status).toBe(200);
    expect(JSON.parse(v.text).ok).toBe(false);
    const d = await admin('POST', '/admin/config/dry-run', R, smallConfig(4));
    expect(d.status).toBe(200);
    expect(JSON.parse(d.text).diff.collections['/lineItems'].changed.map((c: { id: string }) => c.id)).toEqual(['li-a', 'li-b']);
    expect(await bidPrices()).toEqual([2.5, 1]);
  });

  it('versions, rollback and audit', async () => {
    const list = JSON.parse((await admin('GET', '/admin/config/versions', R)).text);
    expect(list.current).toBe(2);
    const rb = await admin('POST', '/admin/config/rollback/1', W);
    expect(rb.status).toBe(200);
    expect(await bidPrices()).toEqual([1, 1]);
    const audit = JSON.parse((await admin('GET', '/admin/audit?limit=10', R)).text).entries;
    expect(audit[0]).toMatchObject({ action: 'rollback', author: 'write:alice', result: 'accepted' });
    expect(audit.some((e: { result: string; errorCount?: number }) => e.result === 'rejected' && e.errorCount === 1)).toBe(true);
  });

  it('malformed JSON → 400, unknown path → 404, wrong method → 405', async () => {
    expect((await admin('PUT', '/admin/config', W, '{"version":')).status).toBe(400);
    expect((await admin('GET', '/admin/nothing', R)).status).toBe(404);
    const m = await admin('DELETE', '/admin/config', W);
    expect(m.status).toBe(405);
    expect(m.headers.allow).toBe('GET, PUT');
  });

  it('a body over 4 MiB → 413 (or the connection closed before it was all read)', async () => {
    const huge = '{"pad":"' + 'x'.repeat(4 * 1024 * 1024 + 10) + '"}';
    try {
      const r = await admin('POST', '/admin/config/validate', R, huge);
      expect(r.status).toBe(413);
    } catch (e) {
      expect((e as NodeJS.ErrnoException).code).toMatch(/^(ECONNRESET|EPIPE)$/);
    }
    expect(await bidPrices()).toEqual([1, 1]);
  });

  it('/admin is never served on the bid port', async () => {
    const r = await raw(bidder.bidPort, { method: 'GET', path: '/admin/config', headers: R });
    expect(r.status).not.toBe(200);
    expect(r.text).not.toContain('cdn.shop.example');
  });
});
