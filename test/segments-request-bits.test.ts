/** Bid-time bits from the request: third-party data, context (incl. day-part), lookalike scoring, groups. */
import { describe, expect, it } from 'vitest';
import { RequestSegmenter } from '../src/segments/request-bits.js';
import { validateSegmentation } from '../src/segments/rules-schema.js';
import type { LookalikeTable } from '../src/segments/segment-store.js';

const def = validateSegmentation(
  {
    width: 64,
    segments: [
      { id: 'loyal', name: 'loyal', kind: 'crm', rule: { col: 'f', gte: 6 } },
      { id: 'prospects', name: 'prospects', kind: 'group' },
      { id: 'auto', name: 'auto', parent: 'prospects', kind: 'third_party', rule: { provider: '6', segments: ['12341318394918'] } },
      { id: 'multi', name: 'multi', kind: 'third_party', rule: [{ provider: '6', segments: ['1', '2'] }, { provider: '9', segments: ['x'] }] },
      { id: 'news', name: 'news', parent: 'prospects', kind: 'contextual', rule: { cat: ['IAB12'] } },
      { id: 'evening-weekend', name: 'evening', kind: 'contextual', rule: { hours: [18, 23], days: ['sat', 'sun'] } },
      { id: 'night', name: 'night', kind: 'contextual', rule: { hours: [22, 6] } },
      { id: 'fr-mobile-news', name: 'fr mobile', kind: 'contextual', rule: { cat: ['IAB12-3'], countries: ['FRA'], deviceTypes: [1, 4] } },
      { id: 'lemonde', name: 'lemonde', kind: 'contextual', rule: { domains: ['LeMonde.fr', 'com.example.app'] } },
      { id: 'lal', name: 'lal', parent: 'prospects', kind: 'lookalike', rule: { seed: 'loyal', threshold: 1.5, reach: 0.1 } },
    ],
  },
  'test',
);
const BIT: Record<string, number> = Object.fromEntries(def.segments.map((s, i) => [s.id, i]));
const table: LookalikeTable = {
  segment: 'lal',
  seed: 'loyal',
  providers: ['6', '9'],
  segmentIds: ['777', 'lux'],
  weights: [1000, 800],
  threshold: 1500,
  ruleThreshold: 1500,
  reach: 0.1,
  scoredBase: 1000,
  seedSize: 100,
  passing: 50,
};
const seg = new RequestSegmenter(def, { lookalikes: [table] });

// Saturday 2026-01-03 (2026-01-01 is a Thursday).
const SAT_19H = Date.UTC(2026, 0, 3, 19, 30);
const MON_19H = Date.UTC(2026, 0, 5, 19, 30);
const MON_03H = Date.UTC(2026, 0, 5, 3, 0);
const MON_12H = Date.UTC(2026, 0, 5, 12, 0);

function bits(req: unknown, now = MON_12H, preset: string[] = []): string[] {
  const out = new Uint32Array(2);
  for (const id of preset) out[BIT[id] >>> 5] |= 1 << (BIT[id] & 31);
  seg.orRequestBits(req, now, out);
  return def.segments.filter((s) => (out[BIT[s.id] >>> 5] & (1 << (BIT[s.id] & 31))) !== 0).map((s) => s.id);
}

const data = (...providers: [string, string[]][]) => ({ user: { data: providers.map(([id, segs]) => ({ id, segment: segs.map((s) => ({ id: s })) })) } });

describe('RequestSegmenter: third-party data', () => {
  it('maps provider segments to bits, and groups follow', () => {
    expect(bits(data(['6', ['12341318394918']]))).toEqual(['prospects', 'auto']);
    expect(bits(data(['6', ['2']]))).toEqual(['multi']);
    expect(bits(data(['9', ['x']]))).toEqual(['multi']);
  });
  it('ignores other providers, the same segment id under another provider, and malformed entries', () => {
    expect(bits(data(['7', ['12341318394918']]))).toEqual([]);
    expect(bits(data(['9', ['1']]))).toEqual([]);
    expect(bits({ user: { data: [null, { id: 6, segment: [{ id: '1' }] }, { id: '6', segment: 'x' }, { id: '6', segment: [null, { id: 1 }] }] } })).toEqual([]);
    expect(bits({ user: { data: 'nope' } })).toEqual([]);
    expect(bits({})).toEqual([]);
  });
  it('bounds the providers read (16)', () => {
    const many = Array.from({ length: 20 }, () => ['5', ['0']] as [string, string[]]);
    expect(bits(data(...many, ['6', ['1']]))).toEqual([]);
    expect(bits(data(...many.slice(0, 15), ['6', ['1']]))).toEqual(['multi']);
  });
});

describe('RequestSegmenter: context', () => {
  it('categories, with parents matching children, from site and app', () => {
    expect(bits({ site: { cat: ['IAB12'] } })).toEqual(['prospects', 'news']);
    expect(bits({ site: { pagecat: ['IAB12-3'] } })).toEqual(['prospects', 'news']);
    expect(bits({ app: { cat: ['IAB1', 'IAB12-7'] } })).toEqual(['prospects', 'news']);
    expect(bits({ site: { cat: ['IAB120'] } })).toEqual([]);
    expect(bits({ site: { sectioncat: ['IAB1-12'] } })).toEqual([]);
  });
  it('every dimension of a rule must match', () => {
    const fr = { site: { cat: ['IAB12-3'] }, device: { devicetype: 4, geo: { country: 'FRA' } } };
    expect(bits(fr)).toContain('fr-mobile-news');
    expect(bits({ ...fr, device: { devicetype: 2, geo: { country: 'FRA' } } })).not.toContain('fr-mobile-news');
    expect(bits({ ...fr, device: { devicetype: 4, geo: { country: 'DEU' } } })).not.toContain('fr-mobile-news');
    expect(bits({ site: { cat: ['IAB12-4'] }, device: { devicetype: 1 }, user: { geo: { country: 'FRA' } } })).not.toContain('fr-mobile-news');
    expect(bits({ site: { cat: ['IAB12-3'] }, device: { devicetype: 1 }, user: { geo: { country: 'FRA' } } })).toContain('fr-mobile-news');
  });
  it('domains match themselves and subdomains, bundles exactly', () => {
    expect(bits({ site: { domain: 'lemonde.fr' } })).toEqual(['lemonde']);
    expect(bits({ site: { domain: 'www.lemonde.fr' } })).toEqual(['lemonde']);
    expect(bits({ site: { domain: 'a.b.lemonde.fr' } })).toEqual(['lemonde']);
    expect(bits({ site: { domain: 'notlemonde.fr' } })).toEqual([]);
    expect(bits({ site: { domain: 'lemonde.fr.evil.com' } })).toEqual([]);
    expect(bits({ app: { bundle: 'com.example.app' } })).toEqual(['lemonde']);
    expect(bits({ app: { bundle: 'x.com.example.app' } })).toEqual([]);
  });

  it('domains and bundles ignore case, on the request side too', () => {
    expect(bits({ site: { domain: 'WWW.LeMonde.FR' } })).toEqual(['lemonde']);
    expect(bits({ app: { bundle: 'com.Example.App' } })).toEqual(['lemonde']);
    expect(bits({ site: { domain: 'NotLeMonde.fr' } })).toEqual([]);
  });
  it('day-part in UTC, with days and wrap-around past midnight', () => {
    expect(bits({}, SAT_19H)).toEqual(['evening-weekend']);
    expect(bits({}, MON_19H)).toEqual([]);
    expect(bits({}, Date.UTC(2026, 0, 4, 18, 0))).toEqual(['evening-weekend']); // Sunday 18:00 (from is inclusive)
    expect(bits({}, Date.UTC(2026, 0, 3, 23, 0))).toEqual(['night']); // 23:00 is outside [18, 23)
    expect(bits({}, MON_03H)).toEqual(['night']);
    expect(bits({}, Date.UTC(2026, 0, 5, 6, 0))).toEqual([]);
    expect(bits({}, Date.UTC(2026, 0, 5, 22, 0))).toEqual(['night']);
  });
});

describe('RequestSegmenter: lookalike', () => {
  it('scores distinct provider segments against the threshold', () => {
    expect(bits(data(['6', ['777']], ['9', ['lux']]))).toEqual(['prospects', 'lal']);
    expect(bits(data(['6', ['777']]))).toEqual([]);
    expect(bits(data(['6', ['777', '777', '777']]))).toEqual([]); // listed twice counts once
    expect(bits(data(['6', ['777']], ['6', ['777']]))).toEqual([]);
    expect(bits(data(['9', ['lux', '777']]))).toEqual([]); // 777 of provider 9 is another segment
  });
  it('a seed member is not its own lookalike', () => {
    expect(bits(data(['6', ['777']], ['9', ['lux']]), MON_12H, ['loyal'])).toEqual(['loyal']);
  });
  it('without a header, lookalikes never match', () => {
    const bare = new RequestSegmenter(def, null);
    const out = new Uint32Array(2);
    bare.orRequestBits(data(['6', ['777']], ['9', ['lux']]), MON_12H, out);
    expect((out[0] >>> BIT.lal) & 1).toBe(0);
  });
  it('does not allocate per request (heap stays flat over 200k calls)', () => {
    const req = { ...data(['6', ['777', '1']], ['9', ['lux']]), site: { cat: ['IAB12-3'], domain: 'www.lemonde.fr' }, device: { devicetype: 4, geo: { country: 'FRA' } } };
    const out = new Uint32Array(2);
    for (let i = 0; i < 20_000; i++) seg.orRequestBits(req, SAT_19H, out);
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 200_000; i++) seg.orRequestBits(req, SAT_19H, out);
    // 200k calls allocating even 16 bytes each would be 3.2 MB; allow GC noise below that.
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(1_500_000);
  });
});
