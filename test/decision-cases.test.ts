/**
 * Data-driven decision tests, in the style of prebid-server's JSON fixture tests.
 *
 * How the fixtures work
 * - `test/cases/base.json` is a complete, valid config document (inline segmentation, creatives, line items,
 *   bidder settings with a rate table). Every case starts from it.
 * - Every other `test/cases/<area>/<name>.json` is ONE test case:
 *     {
 *       "description": "what the case shows",
 *       "config":   { ... },   optional JSON merge patch (RFC 7386) applied to base.json: objects merge,
 *                              arrays replace, null deletes a key
 *       "users":    [ { "keys": { "buyeruid", "userid", "ifa", "eids": [{ "source", "id" }] },
 *                       "segments": ["seg-a", ...] } ],   the segment store; segments are set exactly as
 *                              listed (no parent expansion: that is the store compiler's job)
 *       "request":  { ... },   the OpenRTB bid request, sent as JSON.stringify(request)
 *       "rawBody":  "...",     instead of `request`: the exact body (for unparsable input)
 *       "expect":   { "status": 200 | 204 | 400,
 *                     "reason": "<no-bid reason or bad-request label>"   (required for 204 / 400),
 *                     "cur": "EUR"                                        (optional, 200 with bids),
 *                     "nbr": 15                                           (200 no-bid, noBidStyle "nbr"),
 *                     "bids": [ { "impid", "crid", "price", "dealid"?, "mtype"?, "w"?, "h"? } ] }
 *                              ("w"/"h": null = the bid must carry none),
 *       "knownIssue": "..."    optional: the expectation is right but the engine is not yet (a bug in a file
 *                              this suite may not change); the case runs as it.fails and must be un-marked
 *                              as soon as it passes
 *     }
 * - The runner compiles the config (validateConfigDocument + compileConfig), builds the store with
 *   SegmentStoreBuilder and the bidder's key hashing, runs BidHandler.handle(body) and checks:
 *     status and reason; for a 400 the error body; for a 204 an empty body; for a 200 with bids, that the
 *     response validates (test/helpers/validate-response.ts, with the config's rates) and that the bids are
 *     exactly the expected ones: same set of impids, and per imp the same crid, price (to 1e-6), dealid
 *     (absent = no deal), and mtype/w/h when the case lists them (null: absent from the bid).
 * - Expected outcomes are written by hand from the OpenRTB rules and the config, never copied from a run.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CompiledConfig } from '../src/config/compile.js';
import { Decider } from '../src/bidding/decide.js';
import { BidHandler } from '../src/bidding/bid-handler.js';
import { Metrics } from '../src/metrics/metrics.js';
import { validateBidResponse } from './helpers/validate-response.js';
import { BASE_FILE, CASES_DIR, buildStore, compileCaseConfig, type CaseUser } from './helpers/case-fixtures.js';

interface ExpectedBid {
  impid: string;
  crid: string;
  price: number;
  dealid?: string;
  mtype?: number;
  /** null: the bid carries no w / h. */
  w?: number | null;
  h?: number | null;
}

interface CaseFile {
  description: string;
  config?: unknown;
  users?: CaseUser[];
  request?: unknown;
  rawBody?: string;
  expect: { status: 200 | 204 | 400; reason?: string; cur?: string; nbr?: number; bids?: ExpectedBid[] };
  knownIssue?: string;
}

const CASE_KEYS = ['description', 'config', 'users', 'request', 'rawBody', 'expect', 'knownIssue'];
const EXPECT_KEYS = ['status', 'reason', 'cur', 'nbr', 'bids'];
const BID_KEYS = ['impid', 'crid', 'price', 'dealid', 'mtype', 'w', 'h'];
const KEY_NAMES = ['buyeruid', 'userid', 'ifa', 'eids'];

/** All case files under test/cases, base.json excepted, sorted for a stable order. */
function listCases(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...listCases(path));
    else if (name.endsWith('.json') && path !== BASE_FILE) out.push(path);
  }
  return out;
}

/** Fails loudly on a typo in a fixture (an unknown key would otherwise be ignored and the case pass vacuously). */
function checkCaseShape(c: CaseFile, file: string): void {
  const unknown = (o: object, allowed: string[]) => Object.keys(o).filter((k) => !allowed.includes(k));
  const bad = [
    ...unknown(c, CASE_KEYS),
    ...unknown(c.expect ?? {}, EXPECT_KEYS).map((k) => `expect.${k}`),
    ...(c.expect?.bids ?? []).flatMap((b, i) => unknown(b, BID_KEYS).map((k) => `expect.bids[${i}].${k}`)),
    ...(c.users ?? []).flatMap((u, i) => unknown(u.keys ?? {}, KEY_NAMES).map((k) => `users[${i}].keys.${k}`)),
  ];
  if (bad.length) throw new Error(`${file}: unknown fixture keys ${bad.join(', ')}`);
  if (typeof c.description !== 'string' || c.description.length === 0) throw new Error(`${file}: no description`);
  if (![200, 204, 400].includes(c.expect?.status)) throw new Error(`${file}: expect.status must be 200, 204 or 400`);
  const bidding = c.expect.status === 200 && (c.expect.bids?.length ?? 0) > 0;
  if (!bidding && c.expect.reason === undefined) throw new Error(`${file}: a no-bid or bad-request case needs expect.reason`);
  if ((c.request === undefined) === (c.rawBody === undefined)) throw new Error(`${file}: give exactly one of request, rawBody`);
}

function compileCase(c: CaseFile, file: string): CompiledConfig {
  return compileCaseConfig(relative(CASES_DIR, file), c.config);
}

interface ActualBid {
  impid: string;
  crid: string;
  price: number;
  dealid?: string;
  mtype?: number;
  w?: number;
  h?: number;
}

/** The bids of a response, in the expected bids' shape, keyed by impid. */
function bidsByImp(body: { seatbid?: { bid?: ActualBid[] }[] }): Map<string, ActualBid> {
  const out = new Map<string, ActualBid>();
  for (const sb of body.seatbid ?? []) for (const b of sb.bid ?? []) out.set(b.impid, b);
  return out;
}

const files = listCases(CASES_DIR);

describe('decision cases (test/cases)', () => {
  it('finds the case files', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  for (const file of files) {
    const name = relative(CASES_DIR, file).replace(/\\/g, '/');
    const c = JSON.parse(readFileSync(file, 'utf8')) as CaseFile;
    const test = c.knownIssue === undefined ? it : it.fails;
    test(`${name}: ${c.description}${c.knownIssue === undefined ? '' : ` [known issue: ${c.knownIssue}]`}`, () => {
      checkCaseShape(c, name);
      const config = compileCase(c, file);
      const store = buildStore(config, c.users ?? []);
      const handler = new BidHandler(new Decider(config, store), new Metrics({ defaultMetrics: false }));
      const body = c.rawBody ?? JSON.stringify(c.request);
      const result = { ...handler.handle(body) };
      const want = c.expect;

      expect({ status: result.status, reason: result.reason }, result.detail).toEqual({
        status: want.status,
        reason: want.reason ?? 'bid',
      });

      if (want.status === 400) {
        expect(JSON.parse(result.body)).toMatchObject({ error: want.reason });
        return;
      }
      if (want.status === 204) {
        expect(result.body).toBe('');
        return;
      }
      const response = JSON.parse(result.body) as { id: string; cur?: string; nbr?: number; seatbid?: { bid?: ActualBid[] }[] };
      const problems = validateBidResponse(c.request, response, config.rates);
      expect(problems, 'response problems').toEqual([]);
      if (!want.bids || want.bids.length === 0) {
        // A no-bid answered as 200 (noBidStyle "nbr").
        expect(response.seatbid).toEqual([]);
        if (want.nbr !== undefined) expect(response.nbr).toBe(want.nbr);
        return;
      }
      if (want.cur !== undefined) expect(response.cur).toBe(want.cur);
      const actual = bidsByImp(response);
      expect([...actual.keys()].sort(), 'impids with a bid').toEqual(want.bids.map((b) => b.impid).sort());
      for (const w of want.bids) {
        const a = actual.get(w.impid)!;
        const got: Record<string, unknown> = { impid: a.impid, crid: a.crid, dealid: a.dealid };
        const exp: Record<string, unknown> = { impid: w.impid, crid: w.crid, dealid: w.dealid };
        for (const k of ['mtype', 'w', 'h'] as const) {
          if (w[k] !== undefined) {
            got[k] = w[k] === null && !(k in a) ? null : a[k];
            exp[k] = w[k];
          }
        }
        expect(got, `bid on imp ${w.impid}`).toEqual(exp);
        expect(Math.abs(a.price - w.price), `price on imp ${w.impid}: got ${a.price}, want ${w.price}`).toBeLessThanOrEqual(1e-6 + 1e-9);
      }
    });
  }
});

/**
 * The response validator itself: a hand-written valid response, then one defect at a time, each of which must be
 * reported. (Independent of the engine, so the helper is trusted before it judges the engine.)
 */
describe('validateBidResponse', () => {
  const request = {
    id: 'req-v',
    imp: [
      { id: 'i1', banner: { format: [{ w: 300, h: 250 }], battr: [9] }, bidfloor: 1, bidfloorcur: 'EUR', secure: 1 },
      { id: 'i2', video: { mimes: ['video/mp4'], maxduration: 30 }, pmp: { private_auction: 1, deals: [{ id: 'd1', bidfloor: 2, at: 3, wseat: ['segbid'] }] } },
    ],
    site: { id: 's' },
    cur: ['USD', 'EUR'],
    bcat: ['IAB7'],
    badv: ['blocked.example'],
    bapp: ['com.blocked.app'],
    wlang: ['en'],
    wseat: ['segbid'],
  };
  const rates = { USD: 1, EUR: 1.1 };
  const notices = (k: number) => ({
    nurl: `https://ev.test/ev/win?b=${k}&p=\${AUCTION_PRICE}`,
    burl: `https://ev.test/ev/bill?b=${k}&p=\${AUCTION_PRICE}`,
    lurl: `https://ev.test/ev/loss?b=${k}&r=\${AUCTION_LOSS}`,
  });
  const valid = () => ({
    id: 'req-v',
    cur: 'USD',
    seatbid: [
      {
        seat: 'segbid',
        bid: [
          { id: 'b1', impid: 'i1', price: 1.1, adm: '<img src="https://x.test/a.png">', crid: 'c1', adomain: ['shop.example'], cat: ['IAB22-1'], attr: [4], language: 'en', mtype: 1, w: 300, h: 250, ...notices(1) },
          { id: 'b2', impid: 'i2', price: 2, dealid: 'd1', adm: '<VAST/>', crid: 'c2', adomain: ['shop.example'], language: 'en', mtype: 2, dur: 30, ...notices(2) },
        ],
      },
    ],
  });
  type Resp = ReturnType<typeof valid>;
  type Bid = Record<string, unknown>;
  const bidOf = (r: Resp, k: number) => r.seatbid[0].bid[k] as Bid;

  it('accepts the valid response, as an object or as text', () => {
    expect(validateBidResponse(request, valid(), rates)).toEqual([]);
    expect(validateBidResponse(request, JSON.stringify(valid()), rates)).toEqual([]);
  });
  it('accepts a no-bid with nbr', () => {
    expect(validateBidResponse(request, { id: 'req-v', seatbid: [], nbr: 8 })).toEqual([]);
  });

  const defects: [string, (r: Resp) => void, RegExp][] = [
    ['another id', (r) => (r.id = 'other'), /does not echo/],
    ['a currency the request does not accept', (r) => (r.cur = 'GBP'), /cur GBP/],
    ['empty seatbid without nbr', (r) => (r.seatbid = []), /neither a bid nor a no-bid/],
    ['a seat outside wseat', (r) => (r.seatbid[0].seat = 'other'), /not in wseat/],
    ['a bid without id', (r) => delete bidOf(r, 0).id, /\.id must be/],
    ['two bids with one id', (r) => (bidOf(r, 1).id = 'b1'), /not unique/],
    ['an unknown impid', (r) => (bidOf(r, 0).impid = 'i9'), /not an imp/],
    ['two bids on one imp', (r) => (bidOf(r, 1).impid = 'i1'), /more than one bid/],
    ['a zero price', (r) => (bidOf(r, 0).price = 0), /positive/],
    ['a price under the EUR imp floor', (r) => (bidOf(r, 0).price = 1.09), /below the imp floor/],
    ['no adm', (r) => delete bidOf(r, 0).adm, /adm/],
    ['nurl without ${AUCTION_PRICE}', (r) => (bidOf(r, 0).nurl = 'https://ev.test/ev/win'), /nurl lacks/],
    ['burl not a URL', (r) => (bidOf(r, 0).burl = 'not a url ${AUCTION_PRICE}'), /burl is not/],
    ['lurl without ${AUCTION_LOSS}', (r) => (bidOf(r, 0).lurl = 'https://ev.test/ev/loss?p=${AUCTION_PRICE}'), /lurl lacks/],
    ['no crid', (r) => delete bidOf(r, 0).crid, /crid/],
    ['empty adomain', (r) => (bidOf(r, 0).adomain = []), /adomain must be/],
    ['a badv domain', (r) => (bidOf(r, 0).adomain = ['blocked.example']), /badv/],
    ['a child of a bcat category', (r) => (bidOf(r, 0).cat = ['IAB7-1']), /bcat/],
    ['a bapp bundle', (r) => (bidOf(r, 0).bundle = 'com.blocked.app'), /bapp/],
    ['a language outside wlang', (r) => (bidOf(r, 0).language = 'fr'), /wlang/],
    ['an attribute in battr', (r) => (bidOf(r, 0).attr = [9]), /battr/],
    ['an mtype the imp does not offer', (r) => (bidOf(r, 0).mtype = 4), /not offered/],
    ['an unknown mtype', (r) => (bidOf(r, 0).mtype = 7), /must be 1/],
    ['a banner size the imp does not offer', (r) => (bidOf(r, 0).w = 728), /size 728x250/],
    ['a video longer than maxduration', (r) => (bidOf(r, 1).dur = 31), /maxduration/],
    ['http content on a secure imp', (r) => (bidOf(r, 0).adm = '<img src="http://x.test/a.png">'), /secure/],
    ['an open bid on a private auction', (r) => delete bidOf(r, 1).dealid, /private auction/],
    ['a deal the imp does not offer', (r) => (bidOf(r, 1).dealid = 'd9'), /not a deal/],
    ['another price than the at=3 deal price', (r) => (bidOf(r, 1).price = 2.5), /fixed deal price/],
    ['a price under the deal floor', (r) => (bidOf(r, 1).price = 1.5), /below the deal floor/],
  ];
  for (const [name, breakIt, problem] of defects) {
    it(`reports ${name}`, () => {
      const r = valid();
      breakIt(r);
      const problems = validateBidResponse(request, r, rates);
      expect(problems.join('\n')).toMatch(problem);
    });
  }
  it('reports a floor in a currency without a rate, and skips floors it cannot convert without rates', () => {
    const r = valid();
    expect(validateBidResponse(request, r, { USD: 1 }).join('\n')).toMatch(/no rate for the floor currency EUR/);
    bidOf(r, 0).price = 0.5; // under 1 EUR, but without a rate table the floor cannot be converted
    expect(validateBidResponse(request, r)).toEqual([]);
  });
});
