/**
 * The default market scenario of the simulator: a strategic segmentation (CRM customers, prospects), each leaf
 * segment with HIDDEN rates (click rate, conversion rate, order value) and a market price level, and a campaign
 * whose arms are leaf segment x creative x bid strategy. The bidder only sees the config; the market sees the
 * hidden rates.
 *
 * Orders of magnitude (display, 2020s): CTR 0.05%-0.5%, CVR 1%-8% of clicks, baskets 50-120 EUR, market CPMs
 * 1-4 EUR; CRM retargeting converts several times better than prospecting and is more contested (dearer).
 * A creative that speaks to the segment (the "segment message") lifts clicks where the message is relevant and
 * can misfire where it is not. Bid strategies: "low" = 0.8x the segment's median market price, "high" = 1.5x.
 */
import type { CreativeDef, LineItemDef, SegbidConfig, SegmentationDef } from '../config/types.js';
import type { CampaignDef } from '../budget/types.js';

export interface SegmentTruth {
  id: string;
  name: string;
  parent: string;
  kind: 'crm' | 'lookalike' | 'third_party';
  /** The segment's rule as the segmentation compiler reads it (membership itself comes from the store). */
  rule: unknown;
  /** Share of the requests whose user is in this segment. */
  traffic: number;
  /** Hidden: click rate of the generic creative. */
  ctr: number;
  /** Hidden: conversions per click. */
  cvr: number;
  /** Hidden: mean order value, currency units (Gamma, shape 2). */
  orderValue: number;
  /** Median of the highest competing bid (CPM); lognormal with sigma MARKET_SIGMA. */
  marketCpm: number;
  /** Hidden: click-rate multiplier of the segment's tailored creative. */
  tailoredLift: number;
}

export const MARKET_SIGMA = 0.55;

export const SEGMENTS: SegmentTruth[] = [
  { id: 'loyal-high-value', name: 'Loyal, high value', parent: 'customers', kind: 'crm', rule: { all: [{ col: 'frequency', gte: 6 }, { col: 'monetary', gte: 500 }] }, traffic: 0.07, ctr: 0.0030, cvr: 0.07, orderValue: 110, marketCpm: 3.2, tailoredLift: 1.4 },
  { id: 'at-risk', name: 'Customers at risk', parent: 'customers', kind: 'crm', rule: { col: 'churn', gte: 0.6 }, traffic: 0.1, ctr: 0.0018, cvr: 0.04, orderValue: 75, marketCpm: 2.3, tailoredLift: 1.6 },
  { id: 'lookalike-loyal', name: 'Lookalikes of loyal customers', parent: 'prospects', kind: 'lookalike', rule: { seed: 'loyal-high-value', threshold: 2, reach: 0.3 }, traffic: 0.3, ctr: 0.0011, cvr: 0.02, orderValue: 80, marketCpm: 1.6, tailoredLift: 1.1 },
  { id: 'auto-intenders', name: 'Auto intenders (3rd party)', parent: 'prospects', kind: 'third_party', rule: { provider: '6', segments: ['12341318394918'] }, traffic: 0.4, ctr: 0.0007, cvr: 0.012, orderValue: 60, marketCpm: 1.2, tailoredLift: 0.8 },
];
/** Requests whose user is in no segment (unknown cookie): no arm matches. */
export const UNKNOWN_TRAFFIC = 0.13;

export const STRATEGIES = [
  { id: 'low', factor: 0.8, creative: 'generic' },
  { id: 'low', factor: 0.8, creative: 'tailored' },
  { id: 'high', factor: 1.5, creative: 'tailored' },
] as const;

/** Relative traffic per hour of the day (a typical display curve: night trough, evening peak). */
export const HOURLY_TRAFFIC = [
  0.35, 0.22, 0.15, 0.12, 0.12, 0.18, 0.4, 0.75, 1.05, 1.15, 1.2, 1.25, 1.35, 1.3, 1.2, 1.15, 1.2, 1.35, 1.55, 1.7, 1.75, 1.55, 1.1, 0.65,
];

export interface Arm {
  lineItem: string;
  segment: SegmentTruth;
  strategy: string;
  creative: string;
  bidCpm: number;
  /** Hidden: this arm's click rate. */
  ctr: number;
}

export interface Scenario {
  config: SegbidConfig;
  segmentation: SegmentationDef;
  campaign: CampaignDef;
  arms: Arm[];
  dailyBudget: number;
  requestsPerDay: number;
  dayStartMs: number;
}

export const SIM_DAY_START = Date.parse('2026-03-02T00:00:00Z');

export function buildScenario(options: { requestsPerDay: number; dailyBudget: number; explorationShare?: number; crmPriors?: boolean }): Scenario {
  const segmentation: SegmentationDef = {
    width: 32,
    segments: [
      { id: 'customers', name: 'CRM customers', parent: null, kind: 'group' },
      { id: 'prospects', name: 'Prospects', parent: null, kind: 'group' },
      ...SEGMENTS.map((s) => ({ id: s.id, name: s.name, parent: s.parent, kind: s.kind, rule: s.rule })),
    ],
  };
  const creatives: CreativeDef[] = [];
  const lineItems: LineItemDef[] = [];
  const arms: Arm[] = [];
  for (const seg of SEGMENTS) {
    for (const kind of ['generic', 'tailored']) {
      creatives.push({
        id: `cr-${seg.id}-${kind}`,
        format: 'banner',
        adomain: ['shop.example'],
        cat: ['IAB22'],
        secure: true,
        w: 300,
        h: 250,
        adm: `<img src="https://cdn.shop.example/${seg.id}-${kind}.png">`,
        ...(kind === 'tailored' ? { segments: [seg.id] } : {}),
      });
    }
    for (const st of STRATEGIES) {
      const id = `li-${seg.id}-${st.id}-${st.creative}`;
      const bidCpm = Math.round(seg.marketCpm * st.factor * 100) / 100;
      lineItems.push({ id, name: `${seg.name}, ${st.id} bid, ${st.creative}`, targeting: seg.id, bid: { cpm: bidCpm }, creatives: [`cr-${seg.id}-${st.creative}`] });
      arms.push({ lineItem: id, segment: seg, strategy: st.id, creative: st.creative, bidCpm, ctr: seg.ctr * (st.creative === 'tailored' ? seg.tailoredLift : 1) });
    }
  }
  const config: SegbidConfig = {
    version: 1,
    bidder: { seat: 'segbid-sim', currency: 'USD', rates: { USD: 1 }, eventBaseUrl: 'https://bidder.segbid.example', defaultTmaxMs: 200, minTmaxMs: 10 },
    segmentation,
    segmentStore: null,
    creatives,
    lineItems,
  };
  const profileSum = HOURLY_TRAFFIC.reduce((a, x) => a + x, 0);
  const campaign: CampaignDef = {
    id: 'spring-sale',
    name: 'Spring sale, test & learn over the strategic segmentation',
    budget: {
      daily: options.dailyBudget,
      flight: options.dailyBudget * 7,
      flightStart: new Date(SIM_DAY_START).toISOString(),
      flightEnd: new Date(SIM_DAY_START + 7 * 86_400_000).toISOString(),
    },
    kpi: 'roas',
    explorationShare: options.explorationShare ?? 0.15,
    guardRails: {
      // Strategy: customers at risk are a retention priority, lookalikes the acquisition bet: never starved.
      'at-risk': { minShare: 0.1, maxShare: 0.6 },
      'lookalike-loyal': { minShare: 0.15, maxShare: 0.6 },
      // 3rd-party intenders are the least qualified: capped.
      'auto-intenders': { minShare: 0, maxShare: 0.25 },
    },
    // What the CRM analysis knows of its own segments (historical basket, conversion rate of past retargeting):
    // roughly right, not the hidden truth. Nothing is known of the prospects: they are learnt from scratch.
    ...(options.crmPriors === false
      ? {}
      : {
          priors: {
            'loyal-high-value': { orderValue: 100, cvr: 0.05, confidence: 5 },
            'at-risk': { orderValue: 85, cvr: 0.03, confidence: 5 },
          },
        }),
    lineItems: lineItems.map((l) => l.id),
    // The trader paces on yesterday's traffic curve (the same shape as the simulated day's, normalised).
    pacing: { curve: 'traffic', hourlyProfile: HOURLY_TRAFFIC.map((x) => Math.round((x / profileSum) * 1e6) / 1e6), catchUpSeconds: 900 },
    settle: 'win',
    reservationTtlMs: 120_000,
    // The simulator reallocates every 30 s with 128 draws (server defaults: 5 s, 400) to keep a simulated day within seconds.
    // The trader's attribution analysis: conversions come about 40 minutes after the click.
    learning: { samples: 128, reallocateSeconds: 30, conversionDelayMinutes: 40 },
  };
  return { config, segmentation, campaign, arms, dailyBudget: options.dailyBudget, requestsPerDay: options.requestsPerDay, dayStartMs: SIM_DAY_START };
}
