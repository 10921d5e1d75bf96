import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PrivacyGate } from '../src/privacy/privacy-gate.js';
import { resolvePrivacySettings, type PrivacySettingsDef } from '../src/privacy/schema.js';
import { PRIVACY_REASON, PRIVACY_REASON_LABELS, PrivacyVerdict } from '../src/privacy/verdict.js';
import { OUR_VENDOR, consentFixtures, substitute } from './cases-strategy/helpers.js';

interface Case {
  name: string;
  settings?: Omit<PrivacySettingsDef, 'vendorId'> & { vendorId?: number | null };
  request: Record<string, unknown>;
  expect: string;
}
const cases = (JSON.parse(readFileSync(new URL('./cases-strategy/privacy.json', import.meta.url), 'utf8')) as { cases: Case[] }).cases;
const fixtures = consentFixtures();

function gate(settings: Case['settings'] = {}): PrivacyGate {
  const errors: never[] = [];
  const resolved = resolvePrivacySettings({ ...settings, vendorId: undefined }, errors);
  return new PrivacyGate({ ...resolved, vendorId: settings.vendorId === undefined ? OUR_VENDOR : settings.vendorId });
}

describe.each(['iabtcf', 'fast'] as const)('privacy gate (cases-strategy/privacy.json), TCF decoder %s', (tcfDecoder) => {
  const shared = gate({ tcfDecoder });
  for (const c of cases) {
    it(c.name, () => {
      const g = c.settings ? gate({ tcfDecoder, ...c.settings }) : shared;
      const out = new PrivacyVerdict();
      g.evaluate(substitute(c.request, fixtures), out);
      expect(PRIVACY_REASON_LABELS[out.reason]).toBe(c.expect);
      expect(out.personalData).toBe(c.expect === 'ok');
      // The same verdict again, from the caches.
      g.evaluate(substitute(c.request, fixtures), out);
      expect(PRIVACY_REASON_LABELS[out.reason]).toBe(c.expect);
    });
  }
});

describe('privacy gate', () => {
  it('reuses one verdict object', () => {
    const g = gate();
    const out = new PrivacyVerdict();
    expect(g.evaluate({ regs: { coppa: 1 } }, out)).toBe(out);
    expect(out.personalData).toBe(false);
    g.evaluate({}, out);
    expect(out.personalData).toBe(true);
    expect(out.reason).toBe(PRIVACY_REASON.ok);
  });

  it('cached verdicts cost nanoseconds', () => {
    const g = gate();
    const out = new PrivacyVerdict();
    const reqs = [
      { regs: { gdpr: 1 }, user: { consent: fixtures.TCF_ALL } },
      { regs: { ext: { gdpr: 1 } }, user: { ext: { consent: fixtures.TCF_NO_P3 } } },
      { regs: { gpp: fixtures.GPP_TCF_ALL_USP_OPTOUT, gpp_sid: [2, 6] } },
      { regs: { us_privacy: '1YNN' } },
    ];
    let denied = 0;
    const run = (n: number): number => {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) if (!g.evaluate(reqs[i & 3], out).personalData) denied++;
      return Number(process.hrtime.bigint() - t0) / n;
    };
    run(50_000);
    const ns = run(400_000);
    console.log(`[measure] PrivacyGate.evaluate with cached consent/GPP verdicts: ${ns.toFixed(0)} ns per request`);
    expect(denied).toBe(450_000 / 2);
    expect(g.tcf.decodes).toBe(2);
    expect(ns).toBeLessThan(5000);
  });
});
