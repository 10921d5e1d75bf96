/**
 * `?debug=1` beyond the fixture cases: the query and token rules, the config schema (errors by path, default
 * off), what a debug request must not do twice (reserve budget, count a pacing opportunity, record caps), the
 * debug metric, and over real HTTP: ignored when the config does not enable it, answered when it does.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { debugRequest, type LineItemTrace } from '../src/bidding/explain.js';
import { Decider } from '../src/bidding/decide.js';
import { BidHandler } from '../src/bidding/bid-handler.js';
import { Metrics } from '../src/metrics/metrics.js';
import { validateConfigDocument } from '../src/config/load.js';
import { compileConfig } from '../src/config/compile.js';
import { SegbidError } from '../src/common/errors.js';
import { KEY_KIND, hashKey, keyHash } from '../src/segments/key-hash.js';
import { DEMO_DIR, PACKAGE_ROOT } from '../src/common/paths.js';
import { ensureDemoStore } from '../src/fixtures/ensure-demo.js';
import type { RunningBidder } from '../src/server/start.js';
import { buildStore, compileDebugCase } from './cases-debug/helpers.js';
import { metricValue, raw, startTestBidder } from './helpers/bidder.js';

const TOKEN = 'debug-token-0123456789';

describe('debugRequest (the query and the token)', () => {
  const on = { enabled: true, tokens: [] as string[] };
  it('is null when debug is off, whatever the query', () => {
    expect(debugRequest('debug=1', '', { enabled: false, tokens: [] })).toBeNull();
  });
  it('is null without debug=1', () => {
    expect(debugRequest(undefined, '', on)).toBeNull();
    expect(debugRequest('', '', on)).toBeNull();
    expect(debugRequest('debug=0', '', on)).toBeNull();
    expect(debugRequest('lineitem=a', '', on)).toBeNull();
  });
  it('reads debug=1 and the line items named, comma-separated or repeated, without duplicates', () => {
    expect(debugRequest('debug=1', '', on)).toEqual({ lineItems: null, refused: false });
    expect(debugRequest('debug=true&lineitem=li-a,li-b&lineitem=li-c&lineitem=li-a', '', on)).toEqual({ lineItems: ['li-a', 'li-b', 'li-c'], refused: false });
    expect(debugRequest('debug=1&lineitem=li%20x', '', on)?.lineItems).toEqual(['li x']);
  });
  it('refuses a request without one of the configured tokens', () => {
    const settings = { enabled: true, tokens: ['another-token-0123456789', TOKEN] };
    expect(debugRequest('debug=1', '', settings)?.refused).toBe(true);
    expect(debugRequest('debug=1', 'wrong-token-0123456789', settings)?.refused).toBe(true);
    expect(debugRequest('debug=1', TOKEN.slice(0, -1), settings)?.refused).toBe(true);
    expect(debugRequest('debug=1', TOKEN, settings)?.refused).toBe(false);
  });
});

describe('debug config', () => {
  const base = () => JSON.parse(readFileSync(new URL('./cases/base.json', import.meta.url), 'utf8')) as Record<string, unknown>;
  const load = (doc: unknown) => compileConfig(validateConfigDocument(doc, fileURLDir(), 'debug-config'));

  it('is off by default', () => {
    expect(load(base()).debug).toEqual({ enabled: false, tokens: [] });
  });
  it('compiles enabled and tokens', () => {
    expect(load({ ...base(), debug: { enabled: true, tokens: [TOKEN] } }).debug).toEqual({ enabled: true, tokens: [TOKEN] });
  });
  it('reports every mistake by path', () => {
    let error: unknown;
    try {
      load({ ...base(), debug: { enabled: 'yes', tokens: ['short'], verbose: true } });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SegbidError);
    const paths = (error as SegbidError).details.map((d) => `${d.path}: ${d.message}`);
    expect(paths.sort()).toEqual(['/debug/enabled: must be boolean', '/debug/tokens/0: must NOT have fewer than 16 characters', '/debug: unknown property "verbose"']);
  });
});

function fileURLDir(): string {
  return resolve(PACKAGE_ROOT, 'test/cases');
}

describe('a debug request bids once, and explains without side effects', () => {
  const lineItems = () => {
    const lis = JSON.parse(readFileSync(new URL('./cases/base.json', import.meta.url), 'utf8')).lineItems;
    lis[0].multipliers = { countries: { FRA: 2 } };
    lis[0].frequencyCaps = [{ window: '1h', max: 5 }];
    return lis;
  };
  const campaign = { id: 'spring', name: 'Spring', kpi: 'cpc', lineItems: ['li-loyal-display'], budget: { flight: 1000, flightStart: '2020-01-01T00:00:00Z', flightEnd: '2099-01-01T00:00:00Z' } };
  const request = {
    id: 'req-once',
    imp: [{ id: '1', banner: { w: 300, h: 250 } }],
    site: { id: 's', domain: 'news.example' },
    device: { devicetype: 2, geo: { country: 'FRA' } },
    user: { buyeruid: 'bu-loyal' },
    cur: ['USD'],
  };

  it('reserves one bid, counts one pacing opportunity, records no impression, and counts the debug request', () => {
    const config = compileDebugCase({ campaigns: [campaign], lineItems: lineItems() }, 'once');
    const metrics = new Metrics({ defaultMetrics: false });
    const handler = new BidHandler(new Decider(config, buildStore(config, [{ keys: { buyeruid: 'bu-loyal' }, segments: ['customers', 'loyal'] }])), metrics);
    const budget = handler.budget!;
    budget.pacer.throttle[0] = 1;
    const opportunities = budget.pacer.opportunities[0];
    const policy = handler.current.policy;

    const r = { ...handler.handleDebug(JSON.stringify(request), { lineItems: null, refused: false }) };
    expect(r.status).toBe(200);
    const body = JSON.parse(r.body);
    expect(body.seatbid[0].bid[0].price).toBe(8);
    expect(body.ext.segbid.debug.lineItems[0]).toMatchObject({ id: 'li-loyal-display', outcome: 'bid' });
    // One impression of an 8.00 CPM bid: 8,000 micros reserved, once.
    expect(budget.ledger.reservedOf(0)).toBe(8000);
    expect(budget.pacer.opportunities[0]).toBe(opportunities + 1);
    hashKey(KEY_KIND.buyeruid, 'bu-loyal');
    expect(config.plan.caps.count(keyHash.hi, keyHash.lo, config.plan.capPlan.lineItemItem[0], 3600, Date.now())).toBe(0);
    // The real policy is back in place for the next (normal) request.
    expect(handler.current.policy).toBe(policy);
    expect(metrics.debugExplained.value).toBe(1);

    // A normal request afterwards: the same bid, a second reservation; nothing left over from the debug one.
    const n = JSON.parse(handler.handle(JSON.stringify(request)).body);
    expect(n.ext).toBeUndefined();
    expect(budget.ledger.reservedOf(0)).toBe(16000);
  });

  it('a refused token answers normally (a 204 stays a 204) and counts the refusal', () => {
    const config = compileDebugCase({ debug: { tokens: [TOKEN] } }, 'refused');
    const metrics = new Metrics({ defaultMetrics: false });
    const handler = new BidHandler(new Decider(config, buildStore(config, [])), metrics);
    const r = handler.handleDebug(JSON.stringify(request), { lineItems: null, refused: true });
    expect(r.status).toBe(204);
    expect(r.body).toBe('');
    expect(metrics.debugRefused.value).toBe(1);
    expect(metrics.debugExplained.value).toBe(0);
  });

  it('a malformed debug request is a plain 400', () => {
    const config = compileDebugCase({}, 'bad');
    const handler = new BidHandler(new Decider(config, buildStore(config, [])), new Metrics({ defaultMetrics: false }));
    const r = handler.handleDebug('{"id":', { lineItems: null, refused: false });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body)).toEqual({ error: 'invalid_json', reason: 'body is not valid JSON' });
  });
});

/** All case files under test/cases (base.json excepted). */
function decisionCases(dir = resolve(PACKAGE_ROOT, 'test/cases')): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? decisionCases(join(dir, e.name)) : e.name.endsWith('.json') && e.name !== 'base.json' ? [join(dir, e.name)] : [],
  );
}

describe('the explanation agrees with the decision on every case of test/cases', () => {
  const files = decisionCases();
  it('finds them', () => expect(files.length).toBeGreaterThan(100));
  it('same outcome, same bids, and each bid is explained by the line item that made it', () => {
    let explained = 0;
    for (const file of files) {
      const c = JSON.parse(readFileSync(file, 'utf8'));
      if (c.request === undefined || c.expect.status === 400) continue;
      // One handler for both: no case here has budgets or caps, so the first answer leaves nothing the second reads.
      const config = compileDebugCase(c.config, file);
      const handler = new BidHandler(new Decider(config, buildStore(config, c.users ?? [])), new Metrics({ defaultMetrics: false }));
      const body = JSON.stringify(c.request);
      const normal = { ...handler.handle(body) };
      const r = { ...handler.handleDebug(body, { lineItems: null, refused: false }) };
      const where = `${file}: ${c.description}`;
      expect(r.status, where).toBe(200);
      expect(r.reason, where).toBe(normal.reason);
      const response = JSON.parse(r.body);
      const trace = response.ext.segbid.debug;
      expect(trace.error, where).toBeUndefined();
      expect(trace.reason, where).toBe(normal.reason);
      const sent = response.seatbid.flatMap((sb: { bid: { impid: string; price: number; crid: string }[] }) => sb.bid.map((b) => `${b.impid}:${b.price}:${b.crid}`)).sort();
      const normalSent = normal.status === 200 ? JSON.parse(normal.body).seatbid.flatMap((sb: { bid: { impid: string; price: number }[] }) => sb.bid.map((b) => `${b.impid}:${b.price}`)) : [];
      expect(sent.map((s: string) => s.slice(0, s.lastIndexOf(':'))).sort(), where).toEqual(normalSent.sort());
      const claimed = trace.lineItems.flatMap((l: LineItemTrace) => (l.imps ?? []).filter((m) => m.outcome === 'bid').map((m) => `${m.impid}:${m.priceCpm}:${m.crid}`)).sort();
      expect(claimed, where).toEqual(sent);
      if (normal.reason !== 'bid') {
        // The request's reason is the deepest any line item reached: some line item (or one of its imps) says it.
        const said = trace.lineItems.flatMap((l: LineItemTrace) => [l.reason, ...(l.imps ?? []).map((m) => m.reason)]);
        expect(said, where).toContain(normal.reason);
      }
      explained++;
    }
    expect(explained).toBeGreaterThan(100);
  });
});

describe('?debug=1 over HTTP', () => {
  const simple = readFileSync(resolve(PACKAGE_ROOT, '../shared/corpus/openrtb/valid/pbs-simple.json'));
  const noBid = (() => {
    const req = JSON.parse(simple.toString());
    req.imp[0].bidfloor = 100;
    return JSON.stringify(req);
  })();
  let off: RunningBidder;
  let on: RunningBidder;
  beforeAll(async () => {
    ensureDemoStore(); // the store is generated, and rewritten when its format changed
    const dir = mkdtempSync(join(tmpdir(), 'segbid-debug-'));
    for (const f of ['config.json', 'segmentation.json', 'segments.store']) copyFileSync(join(DEMO_DIR, f), join(dir, f));
    const demo = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(demo.debug).toBeUndefined(); // the demo leaves debug off: `off` runs on the default
    const onPath = join(dir, 'config-debug.json');
    writeFileSync(onPath, JSON.stringify({ ...demo, debug: { enabled: true, tokens: [TOKEN] } }));
    off = await startTestBidder(join(dir, 'config.json'), { eventLogDir: join(dir, 'events-off') });
    on = await startTestBidder(onPath, { eventLogDir: join(dir, 'events-on') });
  });
  afterAll(async () => {
    await off?.close();
    await on?.close();
  });

  // What two answers to one request share (bid ids, signed URLs and the rotated creative differ per answer).
  const strip = (text: string) => {
    const b = JSON.parse(text);
    return { keys: Object.keys(b).sort(), id: b.id, cur: b.cur, bids: b.seatbid.flatMap((sb: { seat: string; bid: { impid: string; price: number }[] }) => sb.bid.map((x) => [sb.seat, x.impid, x.price])) };
  };

  it('debug disabled: ?debug=1 gets the normal answer, with no debug section', async () => {
    const plain = await raw(off.bidPort, { body: simple });
    const debug = await raw(off.bidPort, { body: simple, path: '/openrtb2/bid?debug=1&lineitem=li-winback', headers: { 'x-segbid-debug-token': TOKEN } });
    expect(plain.status).toBe(200);
    expect(debug.status).toBe(200);
    expect(debug.text).not.toContain('debug');
    expect(JSON.parse(debug.text).ext).toBeUndefined();
    expect(strip(debug.text)).toEqual(strip(plain.text));
    const nb = await raw(off.bidPort, { body: noBid, path: '/openrtb2/bid?debug=1' });
    expect(nb.status).toBe(204);
    expect(nb.body.length).toBe(0);
    expect(await metricValue(off.adminPort, 'segbid_debug_requests_total', { result: 'explained' })).toBe(0);
  });

  it('debug enabled, without the token: the normal answer, the refusal counted', async () => {
    const r = await raw(on.bidPort, { body: noBid, path: '/openrtb2/bid?debug=1' });
    expect(r.status).toBe(204);
    expect(await metricValue(on.adminPort, 'segbid_debug_requests_total', { result: 'refused_token' })).toBe(1);
  });

  it('debug enabled, with the token: the bid and its explanation; a no-bid is a 200 with the trace', async () => {
    const path = '/openrtb2/bid?debug=1';
    const headers = { 'x-segbid-debug-token': TOKEN };
    const r = await raw(on.bidPort, { body: simple, path, headers });
    expect(r.status).toBe(200);
    const body = JSON.parse(r.text);
    expect(body.seatbid[0].bid.length).toBeGreaterThan(0);
    const trace = body.ext.segbid.debug;
    expect(trace.outcome).toBe('bid');
    const config = JSON.parse(readFileSync(join(DEMO_DIR, 'config.json'), 'utf8'));
    expect(trace.lineItems.map((l: { id: string }) => l.id)).toEqual(config.lineItems.map((l: { id: string }) => l.id));
    const winners = trace.lineItems.filter((l: { outcome: string }) => l.outcome === 'bid').map((l: { id: string }) => l.id);
    expect(winners.length).toBeGreaterThan(0);

    const nb = await raw(on.bidPort, { body: noBid, path: path + '&lineitem=' + config.lineItems[0].id, headers });
    expect(nb.status).toBe(200);
    const nbBody = JSON.parse(nb.text);
    expect(nbBody.seatbid).toEqual([]);
    expect(typeof nbBody.nbr).toBe('number');
    expect(nbBody.ext.segbid.debug.outcome).toBe('nobid');
    expect(nbBody.ext.segbid.debug.lineItems.map((l: { id: string }) => l.id)).toEqual([config.lineItems[0].id]);
    expect(await metricValue(on.adminPort, 'segbid_debug_requests_total', { result: 'explained' })).toBe(2);
    // The decision was counted like any request's.
    expect(await metricValue(on.adminPort, 'segbid_bid_requests_total', { outcome: 'bid', reason: 'bid' })).toBeGreaterThanOrEqual(1);
  });
});
