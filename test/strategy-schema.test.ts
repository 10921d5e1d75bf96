import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../src/config/schema.js';
import { bidderBiddingProperties, creativeBiddingProperties, lineItemBiddingProperties, topLevelBiddingProperties } from '../src/bidding/strategies/schema.js';
import { bidderPrivacyProperties } from '../src/privacy/schema.js';

/** The merge the integrator does (see the MERGE notes atop both schema modules). */
function mergedSchema(): object {
  const s = structuredClone(configSchema) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  Object.assign(s.properties.lineItems.items.properties, lineItemBiddingProperties);
  Object.assign(s.properties.creatives.items.properties, creativeBiddingProperties);
  Object.assign(s.properties.bidder.properties, bidderBiddingProperties, bidderPrivacyProperties);
  Object.assign(s.properties, topLevelBiddingProperties);
  return s;
}

const validate = new Ajv({ allErrors: true, strict: false }).compile(mergedSchema());

const base = () => ({
  version: 1,
  bidder: {
    shading: { exchanges: ['xchg-1'], floorBandsCpm: [0.5, 1, 2], bins: 20, prior: { midpoint: 0.7, slope: 12, weight: 5 }, halfLifeSec: 3600, minFactor: 0.3 },
    rotation: { learnAfterImpressions: 1000, ctrPrior: { mean: 0.001, weight: 1000 }, seed: 7 },
    capStore: { capacity: 262144 },
    privacy: { vendorId: 755, purposes: [1, 2, 3, 4, 7], legitimateInterest: [2, 7], usPrivacyInvalid: 'deny', gppUnreadable: 'deny', gdprMissing: 'ignore', consentCacheSize: 10000 },
  },
  segmentation: { segments: [{ id: 'customers', name: 'Customers', kind: 'group' }] },
  priors: {
    global: { ctr: { mean: 0.002, weight: 1000 }, cvr: { mean: 0.05, weight: 100 }, orderValue: { mean: 80, weight: 5 } },
    segments: { customers: { ctr: { mean: 0.004, weight: 1000 } } },
  },
  campaigns: [{ id: 'spring', frequencyCaps: [{ window: '1d', max: 10 }] }],
  creatives: [{ id: 'c1', format: 'banner', w: 300, h: 250, adomain: ['a.example'], adm: '<div/>', segments: ['customers'], weight: 3 }],
  lineItems: [
    {
      id: 'li1',
      bid: { cpm: 2 },
      creatives: ['c1'],
      campaign: 'spring',
      strategy: { type: 'target_cpa', target: 25, maxBidCpm: 8, minMargin: 0.2 },
      frequencyCaps: [{ window: '1h', max: 3 }],
      multipliers: {
        countries: { FRA: 1.2 },
        deviceTypes: { '4': 1.1 },
        dayParts: { tzOffsetMinutes: 60, ranges: [{ from: 0, to: 6, factor: 0.5 }] },
        channels: { app: 1.1 },
        domains: [{ list: ['news.example'], factor: 1.3 }],
        bundles: [{ list: ['com.x'], factor: 0.8 }],
        crmTiers: [{ segment: 'customers', factor: 1.5 }],
        lookalikeBands: [{ segment: 'customers', factor: 1.2 }],
        max: 4,
      },
    },
  ],
});

describe('merged config schema', () => {
  it('accepts a config using every new field', () => {
    const ok = validate(base());
    expect(validate.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
  });

  const bad: [string, (c: ReturnType<typeof base>) => void, string][] = [
    ['value strategy without a cap', (c) => delete (c.lineItems[0].strategy as { maxBidCpm?: number }).maxBidCpm, '/lineItems/0/strategy'],
    ['unknown strategy type', (c) => ((c.lineItems[0].strategy as { type: string }).type = 'target_cpm'), '/lineItems/0/strategy/type'],
    ['margin of 1', (c) => (c.lineItems[0].strategy.minMargin = 1), '/lineItems/0/strategy/minMargin'],
    ['bad cap window', (c) => (c.lineItems[0].frequencyCaps[0].window = '1 hour'), '/lineItems/0/frequencyCaps/0/window'],
    ['cap above the ring limit', (c) => (c.lineItems[0].frequencyCaps[0].max = 65), '/lineItems/0/frequencyCaps/0/max'],
    ['lower-case country', (c) => ((c.lineItems[0].multipliers.countries as Record<string, number>).fra = 1), '/lineItems/0/multipliers/countries'],
    ['device type 40', (c) => ((c.lineItems[0].multipliers.deviceTypes as Record<string, number>)['40'] = 1), '/lineItems/0/multipliers/deviceTypes'],
    ['tz offset not a multiple of 15', (c) => (c.lineItems[0].multipliers.dayParts.tzOffsetMinutes = 50), '/lineItems/0/multipliers/dayParts/tzOffsetMinutes'],
    ['negative factor', (c) => (c.lineItems[0].multipliers.channels.app = -1), '/lineItems/0/multipliers/channels/app'],
    ['negative creative weight', (c) => (c.creatives[0].weight = -1), '/creatives/0/weight'],
    ['prior mean of 1', (c) => (c.priors.global.ctr.mean = 1), '/priors/global/ctr/mean'],
    ['privacy enum', (c) => ((c.bidder.privacy as { usPrivacyInvalid: string }).usPrivacyInvalid = 'maybe'), '/bidder/privacy/usPrivacyInvalid'],
    ['vendor id 0', (c) => (c.bidder.privacy.vendorId = 0), '/bidder/privacy/vendorId'],
    ['shading midpoint 1', (c) => (c.bidder.shading.prior.midpoint = 1), '/bidder/shading/prior/midpoint'],
    ['campaign without caps', (c) => (c.campaigns[0].frequencyCaps = []), '/campaigns/0/frequencyCaps'],
    ['unknown multiplier', (c) => ((c.lineItems[0].multipliers as Record<string, unknown>).weather = {}), '/lineItems/0/multipliers'],
  ];
  for (const [name, mutate, path] of bad) {
    it(`rejects: ${name}`, () => {
      const c = base();
      mutate(c);
      expect(validate(c)).toBe(false);
      expect((validate.errors ?? []).map((e) => e.instancePath)).toContain(path);
    });
  }
});
