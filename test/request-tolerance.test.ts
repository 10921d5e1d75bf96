/**
 * What an exchange may send that is odd but not wrong, and what no request may ever do:
 *
 *   - no request content makes handling throw: every corpus request (and a few built here with the extension
 *     objects exchanges fill: ext.exchange, source.ext.schain) with each of its values in turn replaced by null,
 *     a string, a number, an empty array and an empty object, decided in-process: handle() returns 200, 204 or
 *     400 and never throws (a throw on the bid port used to take the process down: `"ext": null` did);
 *   - the bid port answers a request whose handling throws (a bug) with a 204, counts it
 *     (outcome="error", reason="internal_error") and keeps serving;
 *   - JSON null on an optional field is read as the field's absence, lower-case currency codes as the ISO code,
 *     badv and deal wadomain ignore case (domains do);
 *   - a notice whose ids the exchange substituted without URL-encoding them (a `+` read as a space) still
 *     settles;
 *   - Accept-Encoding weights (`gzip;q=0`) and `Content-Encoding: x-gzip`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { loadDecider } from '../src/bidding/load-decider.js';
import { BidHandler } from '../src/bidding/bid-handler.js';
import { Metrics } from '../src/metrics/metrics.js';
import { DEMO_CONFIG, PACKAGE_ROOT } from '../src/common/paths.js';
import { ensureDemoStore } from '../src/fixtures/ensure-demo.js';
import { demoUserId } from '../src/fixtures/demo.js';
import { acceptsGzip } from '../src/server/bid-server.js';
import type { RunningBidder } from '../src/server/start.js';
import { writeBenchConfig } from '../bench/demo-fixtures.js';
import { generateRequestMix, mixParamsFor } from '../bench/request-mix.js';
import { metricValue, raw, startTestBidder } from './helpers/bidder.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const CORPUS = resolve(PACKAGE_ROOT, '../shared/corpus/openrtb');

/** A request the demo bids on (a known user, a 300x250 banner). */
function biddable(extra: Record<string, Json> = {}): Record<string, Json> {
  return {
    id: 'req-1',
    tmax: 200,
    site: { domain: 'news.example', page: 'https://news.example/a' },
    cur: ['USD'],
    imp: [{ id: '1', banner: { format: [{ w: 300, h: 250 }] } }],
    user: { buyeruid: demoUserId(7) },
    device: { devicetype: 2, geo: { country: 'FRA' } },
    ...extra,
  };
}

function corpusRequests(): { name: string; json: Json }[] {
  const out: { name: string; json: Json }[] = [];
  for (const dir of ['valid', 'invalid']) {
    for (const f of readdirSync(resolve(CORPUS, dir)).filter((n) => n.endsWith('.json')).sort()) {
      try {
        out.push({ name: `${dir}/${f}`, json: JSON.parse(readFileSync(resolve(CORPUS, dir, f), 'utf8')) as Json });
      } catch {
        // not JSON: the fuzz suite sends those as bytes
      }
    }
  }
  out.push({
    name: 'built/extensions',
    json: biddable({
      ext: { exchange: 'exchange-a.example' },
      source: { tid: 't', schain: { ver: '1.0', complete: 1, nodes: [{ asi: 'ssp.example', sid: '1', hp: 1 }] }, ext: { schain: { nodes: [{ asi: 'x' }] }, exchange: 'y' } },
      regs: { gdpr: 0, ext: { us_privacy: '1---' } },
    }),
  });
  return out;
}

/** Every path of `v` (object keys and array indices), parents before children, at most `depth` deep. */
function paths(v: Json, depth: number, prefix: (string | number)[] = []): (string | number)[][] {
  if (depth === 0 || v === null || typeof v !== 'object') return [];
  const out: (string | number)[][] = [];
  const keys: (string | number)[] = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v);
  for (const k of keys) {
    const child = (v as Record<string | number, Json>)[k];
    out.push([...prefix, k]);
    out.push(...paths(child, depth - 1, [...prefix, k]));
  }
  return out;
}

function withValue(root: Json, path: (string | number)[], value: Json): Json {
  const copy = structuredClone(root);
  let node = copy as Record<string | number, Json>;
  for (let i = 0; i < path.length - 1; i++) node = node[path[i]] as Record<string | number, Json>;
  node[path[path.length - 1]] = value;
  return copy;
}

function without(root: Record<string, Json>, key: string): Record<string, Json> {
  const copy = structuredClone(root);
  delete copy[key];
  return copy;
}

let handler: BidHandler;
beforeAll(() => {
  ensureDemoStore();
  handler = new BidHandler(loadDecider(DEMO_CONFIG), new Metrics({ defaultMetrics: false }));
});

const REPLACEMENTS: Json[] = [null, 'x', 7, [], {}];

describe('no request content makes handling throw', () => {
  const requests = corpusRequests();
  it('has the corpus and the built requests', () => expect(requests.length).toBeGreaterThan(100));
  it.each(requests.map((r) => [r.name, r.json] as const))('%s: every value replaced by null, a string, a number, [] or {}', (_name, json) => {
    const seen = new Set<number>([handler.handle(JSON.stringify(json)).status]);
    let calls = 1;
    for (const path of paths(json, 6)) {
      for (const value of REPLACEMENTS) {
        const body = JSON.stringify(withValue(json, path, value));
        let status = -1;
        try {
          status = handler.handle(body).status;
        } catch (e) {
          throw new Error(`handle() threw on ${path.join('.')} = ${JSON.stringify(value)}: ${(e as Error).message}`);
        }
        seen.add(status);
        calls++;
      }
    }
    for (const s of seen) expect([200, 204, 400]).toContain(s);
    expect(calls).toBe(1 + paths(json, 6).length * REPLACEMENTS.length);
  });
});

describe('no request content makes handling throw, on the 1,000 line item config (every feature on)', () => {
  let large: BidHandler;
  let remove = () => {};
  beforeAll(() => {
    const bench = writeBenchConfig('large');
    remove = bench.remove;
    large = new BidHandler(loadDecider(bench.configPath), new Metrics({ defaultMetrics: false }));
  }, 60_000);
  afterAll(() => remove());
  // The bench mix: consent strings, eids, third-party data, deals, floors in EUR, several exchanges.
  const mix = generateRequestMix({ ...mixParamsFor('large'), count: 12, seed: 11 }).map((b) => JSON.parse(b) as Json);
  it.each(mix.map((json, i) => [i, json] as const))('bench request %i: every value replaced by null, a string, a number, [] or {}', (_i, json) => {
    const seen = new Set<number>();
    for (const path of paths(json, 7)) {
      for (const value of REPLACEMENTS) {
        try {
          seen.add(large.handle(JSON.stringify(withValue(json, path, value))).status);
        } catch (e) {
          throw new Error(`handle() threw on ${path.join('.')} = ${JSON.stringify(value)}: ${(e as Error).message}`);
        }
      }
    }
    for (const s of seen) expect([200, 204, 400]).toContain(s);
    expect(seen.size).toBeGreaterThan(1);
  });
});

describe('tolerance', () => {
  const decide = (req: Json) => {
    const r = handler.handle(JSON.stringify(req));
    return { status: r.status, reason: r.reason };
  };

  it('bids on the reference request (the cases below compare with it)', () => {
    expect(decide(biddable()).status).toBe(200);
  });

  it.each(['device', 'user', 'regs', 'source', 'ext', 'app', 'dooh', 'cur', 'tmax', 'at', 'test', 'wseat', 'bseat', 'bcat', 'badv', 'bapp', 'wlang'])(
    'reads "%s": null as the field absent',
    (field) => {
      const base = biddable({ source: { tid: 't' }, regs: { gdpr: 0 }, ext: {}, tmax: 200, at: 2 });
      expect(decide({ ...base, [field]: null })).toEqual(decide(without(base, field)));
    },
  );

  it('reads null imp fields, device.geo, user and regs fields as absent', () => {
    const base = biddable();
    const cases: [(string | number)[], Json][] = [
      [['imp', 0, 'pmp'], null],
      [['imp', 0, 'video'], null],
      [['imp', 0, 'bidfloor'], null],
      [['imp', 0, 'bidfloorcur'], null],
      [['imp', 0, 'bidfloorcur'], ''],
      [['imp', 0, 'secure'], null],
      [['device', 'geo'], null],
      [['user', 'ext'], null],
      [['user', 'geo'], null],
    ];
    for (const [path, value] of cases) expect(decide(withValue(base, path, value)), path.join('.')).toEqual({ status: 200, reason: 'bid' });
    const noGeo = withValue(base, ['device', 'geo'], null);
    expect(decide(withValue(noGeo, ['user', 'geo'], { country: 'FRA' })).status).toBe(200);
  });

  it('reads lower-case currency codes as the ISO code they spell', () => {
    const eur = decide(biddable({ cur: ['EUR'] }));
    expect(decide(biddable({ cur: ['eur'] }))).toEqual(eur);
    const floored = (cur: string) => biddable({ imp: [{ id: '1', bidfloor: 0.5, bidfloorcur: cur, banner: { format: [{ w: 300, h: 250 }] } }] });
    expect(decide(floored('usd'))).toEqual(decide(floored('USD')));
    expect(decide(floored('USD')).status).toBe(200);
  });

  it('reads GPP section ids given as strings as the integers they spell (they used to let personal data through)', () => {
    const gpp = 'DBABLA~BVVqAAEABCA.QA'; // the US national section only: no CRM data without its consent
    const price = (regs: Json) => {
      const r = handler.handle(JSON.stringify(biddable({ regs })));
      return r.status === 200 ? (JSON.parse(r.body).seatbid[0].bid[0].price as number) : r.status;
    };
    const withoutPersonalData = price({ gpp, gpp_sid: [7] });
    expect(withoutPersonalData).toBeLessThan(price({})); // the CRM line item's bid is higher
    expect(price({ gpp, gpp_sid: ['7'] })).toBe(withoutPersonalData);
    expect(price({ ext: { gpp, gpp_sid: ['7'] } })).toBe(price({ ext: { gpp, gpp_sid: [7] } }));
    expect(decide(biddable({ regs: { gpp, gpp_sid: ['seven'] } })).status).toBe(400);
  });

  it('matches badv and a deal wadomain whatever their case', () => {
    expect(decide(biddable({ badv: ['shop.segbid.example'] })).status).toBe(204);
    expect(decide(biddable({ badv: ['SHOP.Segbid.Example'] })).status).toBe(204);
    expect(decide(biddable({ badv: ['other.example'] })).status).toBe(200);
  });
});

describe('Accept-Encoding', () => {
  it.each([
    ['gzip', true],
    ['gzip, deflate, br', true],
    ['deflate, br', false],
    ['', false],
    ['*', true],
    ['gzip;q=0, identity', false],
    ['identity, gzip;q=0.5', true],
    ['*;q=0.5, gzip;q=0', false],
    ['br;q=1, *;q=0.1', true],
    ['x-gzip;q=1', true],
    ['GZIP;Q=0', false],
  ] as const)('"%s" -> gzip %s', (header, expected) => {
    expect(acceptsGzip(header)).toBe(expected);
  });
});

describe('on the bid port', () => {
  let bidder: RunningBidder;
  beforeAll(async () => {
    bidder = await startTestBidder();
  });
  afterAll(async () => {
    await bidder?.close();
  });

  it('answers a request whose handling throws with a 204, counts it, and keeps serving', async () => {
    const h = bidder.handler;
    const original = h.handle;
    const body = JSON.stringify(biddable());
    h.handle = () => {
      throw new Error('injected fault');
    };
    let r;
    try {
      r = await raw(bidder.bidPort, { body });
    } finally {
      h.handle = original;
    }
    expect(r.status).toBe(204);
    expect(await metricValue(bidder.adminPort, 'segbid_bid_requests_total', { outcome: 'error', reason: 'internal_error' })).toBe(1);
    expect((await fetch(`http://127.0.0.1:${bidder.adminPort}/healthz`)).status).toBe(200);
    expect((await raw(bidder.bidPort, { body })).status).toBe(200);
  });

  it('answers "ext": null and a null schain (which used to crash the process)', async () => {
    for (const extra of [{ ext: null }, { source: { ext: null } }, { source: { ext: { schain: null } } }, { source: { schain: { nodes: null } } }]) {
      const r = await raw(bidder.bidPort, { body: JSON.stringify(biddable(extra as Record<string, Json>)) });
      expect(r.status, JSON.stringify(extra)).toBe(200);
    }
    expect(await metricValue(bidder.adminPort, 'segbid_bid_requests_total', { outcome: 'error', reason: 'internal_error' })).toBe(1); // the injected one only
  });

  it('inflates Content-Encoding: x-gzip as gzip, and gzips only when the client accepts it', async () => {
    const body = gzipSync(JSON.stringify(biddable()));
    const r = await raw(bidder.bidPort, { body, headers: { 'content-encoding': 'x-gzip', 'accept-encoding': 'gzip;q=0, identity' } });
    expect(r.status).toBe(200);
    expect(r.headers['content-encoding']).toBeUndefined();
    expect(JSON.parse(r.text).id).toBe('req-1');
    const g = await raw(bidder.bidPort, { body: JSON.stringify(biddable()), headers: { 'accept-encoding': 'gzip' } });
    expect(g.headers['content-encoding']).toBe('gzip');
    expect(g.headers.vary).toBe('accept-encoding');
  });

  it('settles a notice whose ids were put in the URL without encoding (a + read as a space)', async () => {
    const req = biddable({ id: 'abc+def/ghi==' });
    (req.imp as Record<string, Json>[])[0].id = '1+1';
    const r = await raw(bidder.bidPort, { body: JSON.stringify(req) });
    expect(r.status).toBe(200);
    const bid = JSON.parse(r.text).seatbid[0].bid[0] as { price: number; burl: string };
    // What an exchange that does not encode its substitutions sends: the raw ids in the query string.
    const url = bid.burl.replace('${AUCTION_ID}', 'abc+def/ghi==').replace('${AUCTION_IMP_ID}', '1+1').replace('${AUCTION_PRICE}', String(bid.price)).replace('${AUCTION_CURRENCY}', 'USD');
    const u = new URL(url);
    const notice = await raw(bidder.bidPort, { method: 'GET', path: u.pathname + u.search });
    expect(notice.status).toBe(204);
    // The same notice with another auction id is still refused.
    const forged = url.replace('abc+def', 'abc+xyz');
    const f = new URL(forged);
    expect((await raw(bidder.bidPort, { method: 'GET', path: f.pathname + f.search })).status).toBe(400);
  });
});
