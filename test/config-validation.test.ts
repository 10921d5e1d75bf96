/**
 * Invalid configuration documents are rejected with EVERY mistake reported by path, so a trader fixes them all
 * in one go. Each case starts from the valid test/cases/base.json and breaks it; the assertion is on the exact
 * set of reported paths (and, where it matters, that the message names the culprit).
 *
 * Two phases, as the loader works: the JSON schema (validateConfigDocument: shapes, types, enums, patterns,
 * unknown properties) and then the compiler (compileConfig: cross-references and duplicates).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SegbidError, type ErrorDetail } from '../src/common/errors.js';
import { validateConfigDocument } from '../src/config/load.js';
import { compileConfig, compileDocument } from '../src/config/compile.js';

const BASE_FILE = fileURLToPath(new URL('./cases/base.json', import.meta.url));

/* The config document is plain JSON here; the tests break it on purpose. */
type Doc = any; // eslint-disable-line @typescript-eslint/no-explicit-any

function base(): Doc {
  return JSON.parse(readFileSync(BASE_FILE, 'utf8'));
}

/** Loads and compiles; returns the error details, or null when the document is accepted. */
function problems(doc: Doc): ErrorDetail[] | null {
  try {
    compileConfig(validateConfigDocument(doc, '/nonexistent', 'test-config'));
    return null;
  } catch (e) {
    expect(e).toBeInstanceOf(SegbidError);
    expect((e as SegbidError).code).toBe('CONFIG_INVALID');
    return [...(e as SegbidError).details];
  }
}

function pathsOf(details: ErrorDetail[] | null): string[] {
  return [...new Set((details ?? []).map((d) => d.path))].sort();
}

function messageAt(details: ErrorDetail[] | null, path: string): string {
  return (details ?? []).filter((d) => d.path === path).map((d) => d.message).join(' | ');
}


/** One test per case: break the base document one way, expect exactly these error paths (and the first message). */
function itReportsPaths(cases: [string, (d: Doc) => void, string[], RegExp?][]): void {
  for (const [name, breakIt, paths, message] of cases) {
    it(name, () => {
      const doc = base();
      breakIt(doc);
      const details = problems(doc);
      expect(pathsOf(details)).toEqual(paths);
      if (message) expect(messageAt(details, paths[0])).toMatch(message);
    });
  }
}

describe('config validation', () => {
  it('accepts the base config of the decision cases', () => {
    expect(problems(base())).toBeNull();
  });

  describe('schema phase: one mistake, one path', () => {
    const cases: [string, (d: Doc) => void, string[], RegExp?][] = [
      ['unknown property at the root', (d) => (d.colour = 'red'), [''], /colour/],
      ['unknown property in a creative', (d) => (d.creatives[0].colour = 'blue'), ['/creatives/0'], /colour/],
      ['unknown property in a line item bid', (d) => (d.lineItems[1].bid.max = 3), ['/lineItems/1/bid'], /max/],
      ['cpm as a string', (d) => (d.lineItems[1].bid.cpm = '2.5'), ['/lineItems/1/bid/cpm'], /number/],
      ['negative cpm', (d) => (d.lineItems[1].bid.cpm = -1), ['/lineItems/1/bid/cpm']],
      ['priority as a float', (d) => (d.lineItems[0].priority = 1.5), ['/lineItems/0/priority'], /integer/],
      ['creatives of a line item as a string', (d) => (d.lineItems[0].creatives = 'cr-300x250'), ['/lineItems/0/creatives'], /array/],
      ['unknown creative format', (d) => (d.creatives[0].format = 'popup'), ['/creatives/0/format'], /banner/],
      ['banner without w', (d) => delete d.creatives[1].w, ['/creatives/1'], /'w'/],
      ['video without protocol', (d) => delete d.creatives[4].protocol, ['/creatives/4'], /protocol/],
      ['targeting of the wrong type', (d) => (d.lineItems[0].targeting = 5), ['/lineItems/0/targeting']],
      ['targeting with an unknown operator', (d) => (d.lineItems[0].targeting = { not: ['loyal'] }), ['/lineItems/0/targeting']],
      ['unknown channel', (d) => (d.lineItems[2].channels = ['web']), ['/lineItems/2/channels/0'], /site, app, dooh/],
      ['two-letter country', (d) => (d.lineItems[4].countries = ['FR']), ['/lineItems/4/countries/0'], /A-Z/],
      ['lower-case bidder currency', (d) => (d.bidder.currency = 'usd'), ['/bidder/currency'], /A-Z/],
      ['four-letter bidder currency', (d) => (d.bidder.currency = 'EURO'), ['/bidder/currency']],
      ['rate that is not a number', (d) => (d.bidder.rates.GBP = 'x'), ['/bidder/rates/GBP'], /number/],
      ['zero rate', (d) => (d.bidder.rates.JPY = 0), ['/bidder/rates/JPY']],
      ['lower-case rate currency', (d) => (d.bidder.rates.eur = 1.1), ['/bidder/rates']],
      ['unknown noBidStyle', (d) => (d.bidder.noBidStyle = 'empty'), ['/bidder/noBidStyle'], /204, nbr/],
      ['wrong version', (d) => (d.version = 2), ['/version']],
      ['missing lineItems', (d) => delete d.lineItems, [''], /lineItems/],
      // 1e400 parses as Infinity, which the schema's `integer` accepted (it then sized a cache: a crash at start).
      ['a window of 1e400 (Infinity)', (d) => ((d.kpis ??= {}).attribution = { clickWindowSec: JSON.parse('1e400') }), ['/kpis/attribution/clickWindowSec'], /finite/],
      ['a gzip threshold of -1e400', (d) => (d.bidder.gzipMinBytes = -Infinity), ['/bidder/gzipMinBytes'], /finite/],
      // Nested thousands deep, a targeting overflowed the validator's stack: a 500 and a stack trace.
      ['targeting nested 3,000 deep', (d) => (d.lineItems[0].targeting = nested(3000)), ['/lineItems/0/targeting' + '/all/0'.repeat(30) + '/all'], /deeper than 64/],
    ];
    itReportsPaths(cases);
  });

  describe('compile phase: one mistake, one path', () => {
    const cases: [string, (d: Doc) => void, string[], RegExp?][] = [
      ['a rate other than 1 for the bidder currency itself', (d) => (d.bidder.rates[d.bidder.currency] = 2), [`/bidder/rates/USD`], /must be 1/],
      ['unknown creative id in a line item', (d) => (d.lineItems[0].creatives = ['cr-300x250', 'cr-nope']), ['/lineItems/0/creatives/1'], /cr-nope/],
      ['unknown segment in targeting', (d) => (d.lineItems[0].targeting = 'ghost'), ['/lineItems/0/targeting'], /ghost/],
      [
        'unknown segment deep in targeting',
        (d) => (d.lineItems[1].targeting = { all: ['regular', { none: ['at-risk', { any: ['vip', 'ghost'] }] }] }),
        ['/lineItems/1/targeting/all/1/none/1/any/1'],
        /ghost/,
      ],
      ['unknown segment in a creative', (d) => (d.creatives[0].segments = ['phantom']), ['/creatives/0/segments/0'], /phantom/],
      ['duplicate creative id', (d) => (d.creatives[2].id = 'cr-300x250'), ['/creatives/2/id', '/lineItems/1/creatives/0'], /cr-300x250/],
      ['duplicate line item id', (d) => (d.lineItems[4].id = 'li-loyal-display'), ['/lineItems/4/id'], /li-loyal-display/],
      ['duplicate segment id', (d) => d.segmentation.segments.push({ id: 'vip', name: 'VIP again', kind: 'crm', rule: { col: 'tier', eq: 'x' } }), ['/segmentation/segments/9/id'], /vip/],
      ['unknown parent segment', (d) => (d.segmentation.segments[6].parent = 'nobody'), ['/segmentation/segments/6/parent'], /nobody/],
      ['dealsOnly without deals', (d) => (d.lineItems[5].deals = []), ['/lineItems/5/dealsOnly']],
      ['minTmaxMs not below defaultTmaxMs', (d) => (d.bidder.minTmaxMs = 200), ['/bidder/minTmaxMs']],
      ['more segments than the width', (d) => (d.segmentation.width = 32) && addSegments(d, 24), ['/segmentation/width']],
    ];
    itReportsPaths(cases);
  });

  it('schema phase: every mistake of one document is reported, each at its path', () => {
    const d = base();
    d.colour = 'red';
    d.bidder.currency = 'usd';
    d.bidder.rates.GBP = 'x';
    d.creatives[0].colour = 'blue';
    delete d.creatives[1].w;
    d.lineItems[0].targeting = 5;
    d.lineItems[1].bid.cpm = '2.5';
    d.lineItems[2].channels = ['web'];
    d.lineItems[4].countries = ['FR'];
    expect(pathsOf(problems(d))).toEqual(
      [
        '',
        '/bidder/currency',
        '/bidder/rates/GBP',
        '/creatives/0',
        '/creatives/1',
        '/lineItems/0/targeting',
        '/lineItems/1/bid/cpm',
        '/lineItems/2/channels/0',
        '/lineItems/4/countries/0',
      ].sort(),
    );
  });

  it('compile phase: every mistake of one document is reported, each at its path', () => {
    const d = base();
    d.bidder.minTmaxMs = 500;
    d.segmentation.segments[6].parent = 'nobody';
    d.creatives[0].segments = ['phantom'];
    d.creatives[3].id = 'cr-728x90'; // duplicate; li-app-audio's cr-320x50-app is now unknown
    d.lineItems[0].creatives = ['cr-300x250', 'cr-nope'];
    d.lineItems[1].targeting = { all: ['regular', { none: ['ghost'] }] };
    d.lineItems[4].id = 'li-loyal-display';
    d.lineItems[5].deals = [];
    expect(pathsOf(problems(d))).toEqual(
      [
        '/bidder/minTmaxMs',
        '/segmentation/segments/6/parent',
        '/creatives/0/segments/0',
        '/creatives/3/id',
        '/lineItems/0/creatives/1',
        '/lineItems/1/targeting/all/1/none/0',
        '/lineItems/3/creatives/1',
        '/lineItems/4/id',
        '/lineItems/5/dealsOnly',
      ].sort(),
    );
  });

  it('the error message lists every path, for the log of a rejected reload', () => {
    const d = base();
    d.lineItems[0].creatives = ['cr-nope'];
    d.lineItems[1].targeting = 'ghost';
    try {
      compileConfig(validateConfigDocument(d, '/nonexistent', 'test-config'));
      expect.unreachable('the config was accepted');
    } catch (e) {
      expect((e as Error).message).toContain('/lineItems/0/creatives/0');
      expect((e as Error).message).toContain('/lineItems/1/targeting');
    }
  });

  it('an error in the inline segmentation is reported at its path', () => {
    const d = base();
    d.segmentation.segments[0].kind = 'tribe';
    const details = problems(d);
    expect(pathsOf(details)).toContain('/segmentation/segments/0/kind');
    expect(messageAt(details, '/segmentation/segments/0/kind')).toMatch(/crm/);
  });

  // `segmentation` is anyOf [path string, inline object]: an error inside the inline object must not also
  // report the other branch ("/segmentation: must be string").
  it('an error in the inline segmentation is reported at its path only', () => {
    const d = base();
    d.segmentation.segments[0].kind = 'tribe';
    expect(pathsOf(problems(d))).toEqual(['/segmentation/segments/0/kind']);
  });

  // Prebid-style: a trader fixes everything in one go, whichever phase found it.
  it('a schema mistake and a cross-reference mistake in one document are both reported (compileDocument)', () => {
    const d = base();
    d.lineItems[1].bid.cpm = -5; // schema
    d.lineItems[0].targeting = 'no-such-seg'; // cross-reference
    d.lineItems[2].creatives = ['cr-nope']; // cross-reference
    let details: readonly ErrorDetail[] = [];
    try {
      compileDocument(d, '/nonexistent', 'test-config');
    } catch (e) {
      details = (e as SegbidError).details;
    }
    expect(pathsOf([...details])).toEqual(['/lineItems/0/targeting', '/lineItems/1/bid/cpm', '/lineItems/2/creatives/0']);
    // A document too broken to cross-check still gets its schema errors, alone.
    const broken = base();
    broken.lineItems = 'none';
    let brokenPaths: string[] = [];
    try {
      compileDocument(broken, '/nonexistent', 'test-config');
    } catch (e) {
      brokenPaths = pathsOf([...(e as SegbidError).details]);
    }
    expect(brokenPaths).toEqual(['/lineItems']);
  });

  // Two different mistakes at one path are both reported (they used to be merged by path).
  it('two errors at one path are both reported', () => {
    const d = base();
    d.campaigns = [
      {
        id: 'c1',
        name: 'C1',
        budget: { daily: 10, flight: 100, flightStart: '2026-01-01T00:00:00Z', flightEnd: '2026-12-31T00:00:00Z' },
        kpi: 'cpc',
        lineItems: [d.lineItems[0].id],
        pacing: { curve: 'even', hourlyProfile: new Array(24).fill(0) },
      },
    ];
    const details = problems(d);
    expect(pathsOf(details)).toEqual(['/campaigns/0/pacing/hourlyProfile']);
    expect(messageAt(details, '/campaigns/0/pacing/hourlyProfile')).toMatch(/only meaningful with curve "traffic" \| needs at least one positive weight/);
  });

  // With a dozen rates the trader must be told which key is wrong.
  it('a lower-case rate currency is named in the error', () => {
    const d = base();
    d.bidder.rates.eur = 1.1;
    expect(messageAt(problems(d), '/bidder/rates')).toMatch(/eur/);
  });
});

function addSegments(d: Doc, n: number): true {
  for (let i = 0; i < n; i++) d.segmentation.segments.push({ id: `extra-${i}`, name: `Extra ${i}`, kind: 'crm', rule: { col: 'tier', eq: 'x' } });
  return true;
}

/** A targeting expression `{ all: [ ... ] }` nested `depth` deep around one segment. */
function nested(depth: number): Doc {
  let t: Doc = 'loyal';
  for (let i = 0; i < depth; i++) t = { all: [t] };
  return t;
}
