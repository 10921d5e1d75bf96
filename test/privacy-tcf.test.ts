import { PurposeRestriction, TCString } from '@iabtcf/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PRIVACY, resolvePrivacySettings, type PrivacySettings } from '../src/privacy/schema.js';
import { evaluateModel, MAX_CONSENT_CHARS, TcfEvaluator } from '../src/privacy/tcf.js';
import { PRIVACY_REASON, PRIVACY_REASON_LABELS } from '../src/privacy/verdict.js';
import type { ErrorDetail } from '../src/common/errors.js';
import { OTHER_VENDOR, OUR_VENDOR, tcString } from './cases-strategy/helpers.js';

const settings: PrivacySettings = { ...DEFAULT_PRIVACY, vendorId: OUR_VENDOR };
const label = (code: number) => PRIVACY_REASON_LABELS[code];

describe('TCF v2 strings (encoded by @iabtcf/core with a local GVL)', () => {
  it('decodes what was encoded', () => {
    const s = tcString({ purposes: [1, 2, 3, 4, 7], vendors: [OUR_VENDOR], vendorsLi: [OTHER_VENDOR], purposesLi: [2] });
    expect(s.startsWith('C')).toBe(true); // a v2 core segment
    const m = TCString.decode(s);
    expect(m.version).toBe(2);
    expect(m.vendorConsents.has(OUR_VENDOR)).toBe(true);
    expect(m.vendorLegitimateInterests.has(OTHER_VENDOR)).toBe(true);
    expect([...Array(11).keys()].filter((p) => m.purposeConsents.has(p))).toEqual([1, 2, 3, 4, 7]);
  });

  it('publisher restrictions change the legal basis', () => {
    const base = { purposes: [1, 3, 4], purposesLi: [2, 7], vendors: [OUR_VENDOR], vendorsLi: [OUR_VENDOR] };
    expect(label(evaluateModel(TCString.decode(tcString(base)), settings))).toBe('ok');
    // Purpose 2 must rest on consent for us, and the user gave only LI for it.
    const requireConsent = tcString({ ...base, restrictions: [[OUR_VENDOR, 2, 1]] });
    expect(label(evaluateModel(TCString.decode(requireConsent), settings))).toBe('gdpr_purpose_missing');
    // Purpose 7 must rest on LI, and it does.
    const requireLi = tcString({ ...base, restrictions: [[OUR_VENDOR, 7, 2]] });
    expect(label(evaluateModel(TCString.decode(requireLi), settings))).toBe('ok');
    void PurposeRestriction;
  });

  it('the verdict of a decoded string matches the rule applied to what was encoded (property)', () => {
    const purposes = fc.subarray([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const vendors = fc.subarray([OTHER_VENDOR, OUR_VENDOR]);
    fc.assert(
      fc.property(purposes, fc.subarray([2, 3, 4, 7, 8, 9, 10]), vendors, vendors, (pc, pli, vc, vli) => {
        const s = tcString({ purposes: pc, purposesLi: pli, vendors: vc, vendorsLi: vli });
        const got = new TcfEvaluator(settings).verdict(s);
        // Reference, straight from the spec of tcf.ts on the encoded sets.
        let want: number;
        if (pc.length + pli.length + vc.length + vli.length === 0) want = PRIVACY_REASON.gdpr_no_consent;
        else if (!vc.includes(OUR_VENDOR) && !vli.includes(OUR_VENDOR)) want = PRIVACY_REASON.gdpr_vendor_missing;
        else {
          want = PRIVACY_REASON.ok;
          let short = false;
          for (const p of settings.purposes) {
            const c = pc.includes(p);
            const l = settings.legitimateInterest.includes(p) && pli.includes(p);
            if ((c && vc.includes(OUR_VENDOR)) || (l && vli.includes(OUR_VENDOR))) continue;
            if (c || l) short = true;
            else {
              want = PRIVACY_REASON.gdpr_purpose_missing;
              break;
            }
          }
          if (want === PRIVACY_REASON.ok && short) want = PRIVACY_REASON.gdpr_vendor_missing;
        }
        return got === want;
      }),
      { numRuns: 150 },
    );
  });

  it('two restrictions of one purpose on our vendor: the most restrictive holds, in either order (found by the property below)', () => {
    const fast = new TcfEvaluator({ ...settings, tcfDecoder: 'fast' });
    for (const restrictions of [
      [[OUR_VENDOR, 2, 0], [OUR_VENDOR, 2, 1]],
      [[OUR_VENDOR, 2, 1], [OUR_VENDOR, 2, 0]],
    ] as [number, number, number][][]) {
      const s = tcString({ purposes: [1, 2, 3, 4], purposesLi: [7], restrictions, manyVendors: 378 });
      expect(fast.decodeReference(s)).toBe(PRIVACY_REASON.gdpr_purpose_missing);
      expect(fast.decodeFast(s), JSON.stringify(restrictions)).toBe(PRIVACY_REASON.gdpr_purpose_missing);
    }
  });

  it('the fast reader agrees with @iabtcf/core on random strings (differential property)', () => {
    const fast = new TcfEvaluator({ ...settings, tcfDecoder: 'fast' });
    const restriction = fc.tuple(fc.constantFrom(OUR_VENDOR, OTHER_VENDOR, 3), fc.constantFrom(1, 2, 3, 4, 7), fc.constantFrom(0, 1, 2));
    fc.assert(
      fc.property(
        fc.subarray([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
        fc.subarray([2, 3, 4, 7, 8, 9, 10]),
        fc.subarray([OTHER_VENDOR, OUR_VENDOR, 3, 999]),
        fc.subarray([OTHER_VENDOR, OUR_VENDOR, 5]),
        fc.array(restriction, { maxLength: 3 }),
        fc.integer({ min: 0, max: 450 }),
        (pc, pli, vc, vli, restrictions, manyVendors) => {
          let s: string;
          try {
            s = tcString({ purposes: pc, purposesLi: pli, vendors: vc, vendorsLi: vli, restrictions, manyVendors });
          } catch {
            return true; // a restriction @iabtcf/core refuses to encode (vendor not flexible for that purpose)
          }
          return fast.decodeFast(s) === fast.decodeReference(s);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('the fast reader is never more permissive than @iabtcf/core on corrupted strings (every one-character change)', () => {
    const fast = new TcfEvaluator({ ...settings, tcfDecoder: 'fast' });
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const strings = [
      // bitfield vendor consents, range vendor LI, a disclosed-vendors segment
      tcString({ purposes: [1, 2, 3, 4, 7], purposesLi: [2, 7], vendors: [OUR_VENDOR], vendorsLi: [OUR_VENDOR], manyVendors: 50 }),
      // range vendor consents and publisher restrictions
      tcString({ purposes: [1, 3, 4], purposesLi: [2, 7], vendors: [OUR_VENDOR, 3], vendorsLi: [OUR_VENDOR], restrictions: [[OUR_VENDOR, 2, 1], [3, 4, 0]] }),
    ];
    let compared = 0;
    let bothDeny = 0;
    for (const valid of strings) {
      for (let at = 0; at < valid.length; at++) {
        if (valid[at] === '.') continue;
        for (const ch of alphabet) {
          const s = valid.slice(0, at) + ch + valid.slice(at + 1);
          const ref = fast.decodeReference(s);
          const got = fast.decodeFast(s);
          // Never more permissive than the reference.
          if (got === PRIVACY_REASON.ok) expect(ref, `${s}`).toBe(PRIVACY_REASON.ok);
          // Where one of them calls the string malformed the codes may differ (the reference validates fields the
          // rule never reads, and reads a non-v2 version as an empty v2 model): both deny.
          if (ref === PRIVACY_REASON.gdpr_bad_string || got === PRIVACY_REASON.gdpr_bad_string) {
            expect(ref !== PRIVACY_REASON.ok || got !== PRIVACY_REASON.ok).toBe(true);
            bothDeny++;
            continue;
          }
          compared++;
          expect(got, s).toBe(ref);
        }
      }
    }
    expect(compared).toBeGreaterThan(5000);
    expect(bothDeny).toBeGreaterThan(100);
    // Truncations are malformed.
    for (const cut of [1, 10, 30, 36]) expect(fast.decodeFast(strings[0].slice(0, cut))).toBe(PRIVACY_REASON.gdpr_bad_string);
    expect(fast.decodeFast('not a string!')).toBe(PRIVACY_REASON.gdpr_bad_string);
  }, 120_000);

  it('legitimate interest for consent-only purposes is a config error', () => {
    const errors: ErrorDetail[] = [];
    resolvePrivacySettings({ legitimateInterest: [2, 3, 1] }, errors);
    expect(errors.map((e) => e.path)).toEqual(['/bidder/privacy/legitimateInterest/1', '/bidder/privacy/legitimateInterest/2']);
  });
});

describe('TCF evaluator cache', () => {
  it('decodes a string once, caches bad strings, refuses oversized ones', () => {
    const ev = new TcfEvaluator(settings);
    const s = tcString({ purposes: [1, 2, 3, 4, 7], vendors: [OUR_VENDOR] });
    expect(ev.verdict(s)).toBe(PRIVACY_REASON.ok);
    expect(ev.verdict(s)).toBe(PRIVACY_REASON.ok);
    expect(ev.decodes).toBe(1);
    expect(ev.hits).toBe(1);
    expect(ev.verdict('garbage')).toBe(PRIVACY_REASON.gdpr_bad_string);
    expect(ev.verdict('garbage')).toBe(PRIVACY_REASON.gdpr_bad_string);
    expect(ev.decodes).toBe(2);
    expect(ev.verdict('C'.repeat(MAX_CONSENT_CHARS + 1))).toBe(PRIVACY_REASON.gdpr_bad_string);
    expect(ev.decodes).toBe(2);
  });

  it('is bounded', () => {
    const ev = new TcfEvaluator({ ...settings, consentCacheSize: 16 });
    for (let cmp = 1; cmp <= 40; cmp++) ev.verdict(tcString({ purposes: [1], vendors: [OUR_VENDOR], cmpId: cmp + 1 }));
    expect(ev.cached).toBe(16);
  });

  it('measures decode (miss) and cached verdict (hit) costs', () => {
    const small = tcString({ purposes: [1, 2, 3, 4, 7], vendors: [OUR_VENDOR] });
    const large = tcString({ purposes: [1, 2, 3, 4, 7], purposesLi: [2, 7], vendors: [OUR_VENDOR], vendorsLi: [OUR_VENDOR, OTHER_VENDOR], manyVendors: 400 });
    const decodeUs = (s: string, n: number): number => {
      for (let i = 0; i < 200; i++) TCString.decode(s);
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) TCString.decode(s);
      return Number(process.hrtime.bigint() - t0) / n / 1000;
    };
    const smallUs = decodeUs(small, 2000);
    const largeUs = decodeUs(large, 1000);
    // A miss through the evaluator: distinct strings (different CMP ids), so every call decodes.
    const distinct = Array.from({ length: 500 }, (_, i) => tcString({ purposes: [1, 2, 3, 4, 7], vendors: [OUR_VENDOR], manyVendors: 400, cmpId: i + 2 }));
    const ev = new TcfEvaluator(settings);
    let t0 = process.hrtime.bigint();
    for (const s of distinct) ev.verdict(s);
    const missUs = Number(process.hrtime.bigint() - t0) / distinct.length / 1000;
    const fast = new TcfEvaluator({ ...settings, tcfDecoder: 'fast' });
    for (let i = 0; i < 20_000; i++) fast.decodeFast(distinct[i % 500]); // warm-up
    t0 = process.hrtime.bigint();
    for (let i = 0; i < 50_000; i++) fast.decodeFast(distinct[i % 500]);
    const fastUs = Number(process.hrtime.bigint() - t0) / 50_000 / 1000;
    const n = 500_000;
    let ok = 0;
    for (let i = 0; i < 50_000; i++) if (ev.verdict(distinct[i % 500]) === 0) ok++;
    t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) if (ev.verdict(distinct[i % 500]) === 0) ok++;
    const hitNs = Number(process.hrtime.bigint() - t0) / n;
    console.log(
      `[measure] TCString.decode: ${smallUs.toFixed(1)} us (${small.length} chars), ${largeUs.toFixed(1)} us (${large.length} chars, 400 vendors); ` +
        `evaluator miss ${missUs.toFixed(1)} us; fast reader ${fastUs.toFixed(2)} us (${distinct[0].length} chars); cached verdict ${hitNs.toFixed(0)} ns`,
    );
    expect(ok).toBe(n + 50_000);
    expect(ev.decodes).toBe(500);
    expect(hitNs).toBeLessThan(5000);
  });
});
