/**
 * Config schema fragments (ajv JSON Schema, same dialect and style as src/config/schema.ts) and TypeScript types
 * for everything the bid-strategy modules read: line-item strategies, bid multipliers, frequency caps, campaigns,
 * creative rotation weights, segment priors, first-price shading and the in-process cap store.
 *
 * Nothing here is wired into the main schema yet: the integrator merges the fragments (see MERGE below). Values
 * are written by traders in currency units (CPM, currency per click/conversion/order) and converted to integer
 * micro-units by the compilers of each module. Cross-references (segment ids, campaign ids) are checked by those
 * compilers, which report {path, message} details like src/config/compile.ts does.
 *
 * MERGE (into src/config/schema.ts configSchema):
 *   properties.lineItems.items.properties   += lineItemBiddingProperties
 *   properties.creatives.items.properties   += creativeBiddingProperties
 *   properties.bidder.properties            += bidderBiddingProperties   (and privacy: src/privacy/schema.ts)
 *   properties                              += topLevelBiddingProperties
 */
import type { Channel } from '../../config/types.js';

/* ------------------------------------------------------------------ types */

export type StrategyType = 'fixed' | 'target_cpc' | 'target_cpa' | 'target_roas';

export interface StrategyDef {
  type: StrategyType;
  /** fixed: CPM (defaults to the line item's bid.cpm). */
  cpm?: number;
  /**
   * target_cpc: currency per click; target_cpa: currency per conversion; target_roas: revenue / spend ratio
   * (4 = 400 %). Required for every type but fixed.
   */
  target?: number;
  /** Highest CPM ever sent, after multipliers. Required for value-based types: a guard rail against a bad estimate. */
  maxBidCpm?: number;
  /** Share of the value kept as margin: bid <= value x (1 - minMargin). Value-based types only. */
  minMargin?: number;
  /** Segment whose prior seeds the predictions; default: derived from the targeting (see strategy-table.ts). */
  segment?: string;
}

export interface FactorRule {
  factor: number;
}
export interface ListRule extends FactorRule {
  list: string[];
}
export interface SegmentRule extends FactorRule {
  segment: string;
}
export interface DayPartRange extends FactorRule {
  /** Hours 0-23, inclusive; from > to wraps around midnight (22 -> 5). */
  from: number;
  to: number;
}

export interface MultipliersDef {
  /** ISO-3166-1 alpha-3 (as in device.geo.country) -> factor. */
  countries?: Record<string, number>;
  /** OpenRTB device type (as a string key, "1".."31") -> factor. */
  deviceTypes?: Record<string, number>;
  /** Day parts in a fixed UTC offset (no DST: a trader who needs DST changes the offset twice a year). */
  dayParts?: { tzOffsetMinutes?: number; ranges: DayPartRange[] };
  channels?: Partial<Record<Channel, number>>;
  /** site.domain lists; the first list containing the domain applies. */
  domains?: ListRule[];
  /** app.bundle lists; the first list containing the bundle applies. */
  bundles?: ListRule[];
  /** CRM recency / value tiers, most valuable first; the first segment the user has applies. Personal data. */
  crmTiers?: SegmentRule[];
  /** Lookalike score bands as segments, closest band first; the first the user has applies. Personal data. */
  lookalikeBands?: SegmentRule[];
  /** Upper clamp of the product of all factors (default 10). */
  max?: number;
}

export interface FrequencyCapDef {
  /** `<n><unit>` with unit s, m, h, d or w: "1h", "24h", "7d". At most 30 days. */
  window: string;
  max: number;
}

/** The fields a line item gains (merged into LineItemDef). */
export interface LineItemBiddingDef {
  strategy?: StrategyDef;
  multipliers?: MultipliersDef;
  frequencyCaps?: FrequencyCapDef[];
  /** Campaign id (top-level `campaigns`), for campaign-wide frequency caps. */
  campaign?: string;
}

/** The fields a creative gains (merged into CreativeDef). */
export interface CreativeBiddingDef {
  /** Rotation weight among eligible creatives of the same preference tier (default 1; 0 = paused). */
  weight?: number;
}

export interface CampaignDef {
  id: string;
  name?: string;
  frequencyCaps: FrequencyCapDef[];
  /** The line items of the campaign (a budgeted campaign lists them); a line item may also name its campaign. */
  lineItems?: string[];
}

/** Beta prior written as a mean and a weight in pseudo-trials: Beta(mean x weight, (1 - mean) x weight). */
export interface RatePriorDef {
  mean: number;
  weight: number;
}
/** Prior on the order value: mean in currency units, weight in pseudo-conversions. */
export interface ValuePriorDef {
  mean: number;
  weight: number;
}
export interface SegmentPriorDef {
  ctr?: RatePriorDef;
  /** Conversions per click. */
  cvr?: RatePriorDef;
  orderValue?: ValuePriorDef;
}
export interface PriorsDef {
  global?: SegmentPriorDef;
  /** Segment id -> prior; a field missing here falls back to the parent segment's, then to `global`. */
  segments?: Record<string, SegmentPriorDef>;
}

export interface ShadingSettingsDef {
  /** Exchanges that get their own win-rate curves; any other exchange shares the "other" curve. */
  exchanges?: string[];
  /** Ascending floor band edges in CPM: [0.5, 1, 2] gives bands [0,0.5) [0.5,1) [1,2) [2,+inf). */
  floorBandsCpm?: number[];
  /** Bins of the bid/value ratio curve (default 20). */
  bins?: number;
  /** Prior P(win | r) = 1 / (1 + exp(-slope x (r - midpoint))), worth `weight` pseudo-bids per bin. */
  prior?: { midpoint?: number; slope?: number; weight?: number };
  /** Feedback loses half its weight after this many seconds (default 3600), so the curve follows the market. */
  halfLifeSec?: number;
  /** Never bid below this share of the value (default 0.3), whatever the curve says. */
  minFactor?: number;
}

export interface RotationSettingsDef {
  /** Learned rotation (Thompson sampling on CTR) starts when every eligible creative has this many impressions. */
  learnAfterImpressions?: number;
  /** CTR prior of the Thompson posteriors. */
  ctrPrior?: RatePriorDef;
  /** Seed of the precomputed random stream (tests and simulations). */
  seed?: number;
}

export interface CapStoreSettingsDef {
  /** (user, capped item) entries kept in process; a power of two (default 262144). */
  capacity?: number;
}

/** Bidder-level settings (merged into BidderSettings as optional nested objects). */
export interface BidderBiddingDef {
  shading?: ShadingSettingsDef;
  rotation?: RotationSettingsDef;
  capStore?: CapStoreSettingsDef;
}

/** Top-level sections (merged into SegbidConfig). */
export interface TopLevelBiddingDef {
  campaigns?: CampaignDef[];
  priors?: PriorsDef;
}

/* ------------------------------------------------------------------ schema fragments */

const id = { type: 'string', minLength: 1, maxLength: 128 } as const;
const factor = { type: 'number', minimum: 0, maximum: 10 } as const;
const hour = { type: 'integer', minimum: 0, maximum: 23 } as const;
const cpm = { type: 'number', exclusiveMinimum: 0, maximum: 1000 } as const;
const rate = {
  type: 'object',
  required: ['mean', 'weight'],
  additionalProperties: false,
  properties: { mean: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 }, weight: { type: 'number', exclusiveMinimum: 0, maximum: 1e9 } },
} as const;
const valuePrior = {
  type: 'object',
  required: ['mean', 'weight'],
  additionalProperties: false,
  properties: { mean: { type: 'number', exclusiveMinimum: 0, maximum: 1e7 }, weight: { type: 'number', exclusiveMinimum: 0, maximum: 1e9 } },
} as const;
const listRules = {
  type: 'array',
  items: {
    type: 'object',
    required: ['list', 'factor'],
    additionalProperties: false,
    properties: { list: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1, maxLength: 253 } }, factor },
  },
} as const;
const segmentRules = {
  type: 'array',
  items: { type: 'object', required: ['segment', 'factor'], additionalProperties: false, properties: { segment: id, factor } },
} as const;

export const frequencyCapsSchema = {
  type: 'array',
  maxItems: 4,
  items: {
    type: 'object',
    required: ['window', 'max'],
    additionalProperties: false,
    properties: {
      window: { type: 'string', pattern: '^[1-9][0-9]{0,6}[smhdw]$' },
      // A cap keeps the last `max` impression times per user: the ring size bounds memory.
      max: { type: 'integer', minimum: 1, maximum: 64 },
    },
  },
} as const;

export const strategySchema = {
  type: 'object',
  required: ['type'],
  additionalProperties: false,
  properties: {
    type: { enum: ['fixed', 'target_cpc', 'target_cpa', 'target_roas'] },
    cpm,
    target: { type: 'number', exclusiveMinimum: 0, maximum: 1e6 },
    maxBidCpm: cpm,
    minMargin: { type: 'number', minimum: 0, exclusiveMaximum: 1 },
    segment: id,
  },
  allOf: [{ if: { properties: { type: { enum: ['target_cpc', 'target_cpa', 'target_roas'] } } }, then: { required: ['target', 'maxBidCpm'] } }],
} as const;

export const multipliersSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    countries: { type: 'object', propertyNames: { pattern: '^[A-Z]{3}$' }, additionalProperties: factor },
    deviceTypes: { type: 'object', propertyNames: { pattern: '^([1-9]|[12][0-9]|3[01])$' }, additionalProperties: factor },
    dayParts: {
      type: 'object',
      required: ['ranges'],
      additionalProperties: false,
      properties: {
        tzOffsetMinutes: { type: 'integer', minimum: -720, maximum: 840, multipleOf: 15 },
        ranges: {
          type: 'array',
          minItems: 1,
          items: { type: 'object', required: ['from', 'to', 'factor'], additionalProperties: false, properties: { from: hour, to: hour, factor } },
        },
      },
    },
    channels: { type: 'object', additionalProperties: false, properties: { site: factor, app: factor, dooh: factor } },
    domains: listRules,
    bundles: listRules,
    crmTiers: segmentRules,
    lookalikeBands: segmentRules,
    max: { type: 'number', exclusiveMinimum: 0, maximum: 100 },
  },
} as const;

export const lineItemBiddingProperties = {
  strategy: strategySchema,
  multipliers: multipliersSchema,
  frequencyCaps: frequencyCapsSchema,
  campaign: id,
} as const;

export const creativeBiddingProperties = {
  weight: { type: 'number', minimum: 0, maximum: 1000 },
} as const;

export const bidderBiddingProperties = {
  shading: {
    type: 'object',
    additionalProperties: false,
    properties: {
      exchanges: { type: 'array', maxItems: 64, uniqueItems: true, items: id },
      floorBandsCpm: { type: 'array', maxItems: 16, items: cpm },
      bins: { type: 'integer', minimum: 4, maximum: 100 },
      prior: {
        type: 'object',
        additionalProperties: false,
        properties: {
          midpoint: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
          slope: { type: 'number', exclusiveMinimum: 0, maximum: 1000 },
          weight: { type: 'number', exclusiveMinimum: 0, maximum: 1e6 },
        },
      },
      halfLifeSec: { type: 'integer', minimum: 1, maximum: 30 * 86400 },
      minFactor: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
    },
  },
  rotation: {
    type: 'object',
    additionalProperties: false,
    properties: {
      learnAfterImpressions: { type: 'integer', minimum: 0, maximum: 1e9 },
      ctrPrior: rate,
      seed: { type: 'integer', minimum: 0, maximum: 4294967295 },
    },
  },
  capStore: {
    type: 'object',
    additionalProperties: false,
    properties: { capacity: { type: 'integer', minimum: 8, maximum: 67108864 } },
  },
} as const;

const segmentPrior = {
  type: 'object',
  additionalProperties: false,
  properties: { ctr: rate, cvr: rate, orderValue: valuePrior },
} as const;

export const topLevelBiddingProperties = {
  campaigns: {
    type: 'array',
    items: {
      type: 'object',
      required: ['id', 'frequencyCaps'],
      additionalProperties: false,
      properties: { id, name: { type: 'string' }, frequencyCaps: { ...frequencyCapsSchema, minItems: 1 } },
    },
  },
  priors: {
    type: 'object',
    additionalProperties: false,
    properties: {
      global: segmentPrior,
      segments: { type: 'object', propertyNames: { minLength: 1, maxLength: 128 }, additionalProperties: segmentPrior },
    },
  },
} as const;
