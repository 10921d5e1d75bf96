/**
 * `?debug=1` fixture cases (test/cases-debug/*.json), in the style of test/decision-cases.test.ts.
 *
 * A case is one JSON file:
 *   {
 *     "description": "what it shows",
 *     "config":   { ... }   JSON merge patch over test/cases/base.json; the runner adds `debug: {enabled: true}`
 *     "users":    [ { "keys": { "buyeruid", "userid", "ifa" }, "segments": [...] } ]   the segment store
 *     "impressions": [ { "buyeruid", "lineItem", "agoSec" } ]   billed impressions in the cap store beforehand
 *     "throttle": { "<line item id>": 1 }   optional: the pacer's throttle of a budgeted line item (the real
 *                  BudgetPolicy's pacer, as a tick with enough demand would leave it), so that a case reaches the
 *                  ledger's reservation deterministically
 *     "lineitem": "li-a,li-b"   optional, the `?lineitem=` of the debug request
 *     "request":  { ... }   the bid request
 *     "expect": {
 *       "status": 200, "outcome": "bid" | "nobid", "reason": "<request-level reason>",
 *       "privacy": { ... }, "userKeys": [ ... ], "segments": [ids, exact set], "knownUser": bool   (optional)
 *       "lineItems": { "<id>": { "stage", "reason", "outcome"?, "detail"? (substring), "value"?, "imps"? } }
 *       "explained": [ids]   optional: exactly these line items, in this order (default: every config line item)
 *     }
 *   }
 * Each listed line item's trace must match (toMatchObject; `detail` as a substring). The runner also checks that
 * the answer is a valid OpenRTB response (a no-bid is a 200 with an empty seatbid, nbr and the trace), and that
 * a normal request decided the same way: same reason, same bids (the debug path bids for real, like handle()).
 * Expectations are written by hand from the config and the request.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { KEY_KIND, hashKey, keyHash } from '../src/segments/key-hash.js';
import { Decider } from '../src/bidding/decide.js';
import { BidHandler } from '../src/bidding/bid-handler.js';
import { Metrics } from '../src/metrics/metrics.js';
import type { DebugTrace, LineItemTrace } from '../src/bidding/explain.js';
import { validateBidResponse } from './helpers/validate-response.js';
import { buildStore, compileDebugCase, type DebugCaseUser } from './cases-debug/helpers.js';

const DEBUG_DIR = fileURLToPath(new URL('./cases-debug/', import.meta.url));

interface CaseFile {
  description: string;
  config?: unknown;
  users?: DebugCaseUser[];
  impressions?: { buyeruid: string; lineItem: string; agoSec: number }[];
  throttle?: Record<string, number>;
  lineitem?: string;
  request: { id: string } & Record<string, unknown>;
  expect: {
    status: 200 | 400;
    outcome?: 'bid' | 'nobid';
    reason?: string;
    privacy?: Record<string, unknown>;
    userKeys?: unknown[];
    segments?: string[];
    knownUser?: boolean;
    lineItems?: Record<string, Partial<LineItemTrace>>;
    explained?: string[];
  };
}

const CASE_KEYS = ['description', 'config', 'users', 'impressions', 'throttle', 'lineitem', 'request', 'expect'];
const EXPECT_KEYS = ['status', 'outcome', 'reason', 'privacy', 'userKeys', 'segments', 'knownUser', 'lineItems', 'explained'];

function handlerFor(c: CaseFile, name: string): BidHandler {
  const config = compileDebugCase(c.config, name);
  const decider = new Decider(config, buildStore(config, c.users ?? []));
  const handler = new BidHandler(decider, new Metrics({ defaultMetrics: false }));
  for (const imp of c.impressions ?? []) {
    const li = config.lineItems.find((l) => l.id === imp.lineItem);
    if (li === undefined) throw new Error(`${name}: impression of unknown line item ${imp.lineItem}`);
    hashKey(KEY_KIND.buyeruid, imp.buyeruid);
    config.plan.caps.record(keyHash.hi, keyHash.lo, li.index, Date.now() - imp.agoSec * 1000);
  }
  for (const [id, throttle] of Object.entries(c.throttle ?? {})) {
    const li = config.lineItems.find((l) => l.id === id);
    if (li === undefined || handler.budget === null) throw new Error(`${name}: throttle of ${id} without a budgeted line item`);
    handler.budget.pacer.throttle[li.index] = throttle;
  }
  return handler;
}

const files = readdirSync(DEBUG_DIR)
  .filter((f) => f.endsWith('.json'))
  .sort();

describe('debug cases (test/cases-debug)', () => {
  it('finds the case files', () => {
    expect(files.length).toBeGreaterThanOrEqual(6);
  });

  for (const file of files) {
    const c = JSON.parse(readFileSync(join(DEBUG_DIR, file), 'utf8')) as CaseFile;
    it(`${file}: ${c.description}`, () => {
      const unknown = [...Object.keys(c).filter((k) => !CASE_KEYS.includes(k)), ...Object.keys(c.expect ?? {}).filter((k) => !EXPECT_KEYS.includes(k)).map((k) => `expect.${k}`)];
      expect(unknown, 'unknown fixture keys').toEqual([]);
      const body = JSON.stringify(c.request);
      const lineItems = c.lineitem === undefined ? null : c.lineitem.split(',');

      // The same request through the normal path, on a handler of its own: what an exchange would get.
      const normal = { ...handlerFor(c, file).handle(body) };

      const handler = handlerFor(c, file);
      const r = { ...handler.handleDebug(body, { lineItems, refused: false }) };
      expect(r.status).toBe(c.expect.status);
      if (c.expect.status === 400) {
        expect(JSON.parse(r.body).ext).toBeUndefined();
        return;
      }
      expect(r.reason, 'the debug request is decided like a normal one').toBe(normal.reason);
      const response = JSON.parse(r.body) as { id: string; seatbid: { bid: { impid: string; price: number; crid: string }[] }[]; nbr?: number; ext: { segbid: { debug: DebugTrace } } };
      expect(validateBidResponse(c.request, response, handler.current.config.rates), 'response problems').toEqual([]);
      const bids = (x: typeof response) => x.seatbid.flatMap((s) => s.bid.map((b) => ({ impid: b.impid, price: b.price, crid: b.crid })));
      if (normal.status === 204) expect(response.seatbid).toEqual([]);
      else expect(bids(response)).toEqual(bids(JSON.parse(normal.body)));

      const trace = response.ext.segbid.debug;
      expect(trace.mode).toBe('live');
      const want = c.expect;
      if (want.outcome !== undefined) expect(trace.outcome).toBe(want.outcome);
      if (want.reason !== undefined) expect(trace.reason).toBe(want.reason);
      expect(trace.outcome === 'bid').toBe(normal.status === 200 && normal.reason === 'bid');
      if (want.privacy !== undefined) expect(trace.privacy).toEqual(want.privacy);
      if (want.userKeys !== undefined) expect(trace.userKeys).toEqual(want.userKeys);
      if (want.knownUser !== undefined) expect(trace.knownUser).toBe(want.knownUser);
      if (want.segments !== undefined) expect(trace.segments.map((s) => s.id).sort()).toEqual([...want.segments].sort());
      const explained = want.explained ?? (lineItems === null ? handler.current.config.lineItems.map((l) => l.id) : lineItems);
      expect(trace.lineItems.map((l) => l.id), 'line items explained').toEqual(explained);
      for (const [id, expected] of Object.entries(want.lineItems ?? {})) {
        const got = trace.lineItems.find((l) => l.id === id);
        expect(got, `line item ${id} in the trace`).toBeDefined();
        const { detail, ...rest } = expected;
        expect(got, `line item ${id}`).toMatchObject(rest);
        if (detail !== undefined) expect(got!.detail ?? '', `line item ${id} detail`).toContain(detail);
      }
      // Every line item the trace says bid carries a bid in the response, and the other way round.
      const bidders = trace.lineItems.filter((l) => l.outcome === 'bid');
      const sent = bids(response);
      for (const l of bidders) {
        for (const imp of l.imps!.filter((m) => m.outcome === 'bid')) {
          expect(sent.find((b) => b.impid === imp.impid && Math.abs(b.price - imp.priceCpm!) < 1e-9 && b.crid === imp.crid), `bid of ${l.id} on ${imp.impid}`).toBeDefined();
        }
      }
      if (lineItems === null) expect(bidders.flatMap((l) => l.imps!.filter((m) => m.outcome === 'bid')).length).toBe(sent.length);
    });
  }
});
