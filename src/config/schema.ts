/**
 * JSON Schema of the configuration (draft 2020-12 subset, compiled once by ajv with allErrors so that a trader
 * sees every mistake at once, each with its path). Cross-references (creative ids, segment ids) are checked
 * afterwards by the compiler, which reports them in the same {path, message} form.
 */
import { bidderBiddingProperties, creativeBiddingProperties, lineItemBiddingProperties, topLevelBiddingProperties } from '../bidding/strategies/schema.js';
import { bidderPrivacyProperties } from '../privacy/schema.js';
import { campaignSchema } from '../budget/schema.js';
import { KPI_NAMES } from '../events/kpis.js';
import { segmentationShapeSchema } from '../segments/rules-schema.js';
import { frequencyCapsSchema } from '../bidding/strategies/schema.js';

/** A campaign: budget, KPI, exploration and guard rails (src/budget) and campaign-wide frequency caps. */
const campaignsSchema = {
  type: 'array',
  items: { ...campaignSchema, properties: { ...campaignSchema.properties, frequencyCaps: frequencyCapsSchema } },
} as const;

const id = { type: 'string', minLength: 1, maxLength: 128 } as const;
const ids = { type: 'array', items: id } as const;
const nonNegInt = { type: 'integer', minimum: 0 } as const;
const targeting = { $ref: '#/$defs/targeting' } as const;

/** The segmentation's shape, shared with `segbid compile` (rules per kind are checked by validateSegmentation). */
export const segmentationSchema = segmentationShapeSchema;

export const configSchema = {
  $id: 'segbid-config',
  type: 'object',
  required: ['version', 'segmentation', 'creatives', 'lineItems'],
  additionalProperties: false,
  $defs: {
    targeting: {
      anyOf: [
        id,
        { type: 'object', required: ['all'], additionalProperties: false, properties: { all: { type: 'array', minItems: 1, items: targeting } } },
        { type: 'object', required: ['any'], additionalProperties: false, properties: { any: { type: 'array', minItems: 1, items: targeting } } },
        { type: 'object', required: ['none'], additionalProperties: false, properties: { none: { type: 'array', minItems: 1, items: targeting } } },
      ],
    },
  },
  properties: {
    version: { const: 1 },
    bidder: {
      type: 'object',
      additionalProperties: false,
      properties: {
        seat: id,
        currency: { type: 'string', pattern: '^[A-Z]{3}$' },
        rates: {
          type: 'object',
          propertyNames: { pattern: '^[A-Z]{3}$' },
          additionalProperties: { type: 'number', exclusiveMinimum: 0 },
        },
        eventBaseUrl: { type: 'string', pattern: '^https?://[A-Za-z0-9._~:/\\[\\]-]+[A-Za-z0-9\\]]$' },
        defaultTmaxMs: { type: 'integer', minimum: 1, maximum: 10000 },
        minTmaxMs: { type: 'integer', minimum: 0, maximum: 10000 },
        maxBodyBytes: { type: 'integer', minimum: 1024, maximum: 16777216 },
        maxInflatedBytes: { type: 'integer', minimum: 1024, maximum: 67108864 },
        noBidStyle: { enum: ['204', 'nbr'] },
        gzipMinBytes: nonNegInt,
        testRequests: { enum: ['bid', 'nobid'] },
        ...bidderBiddingProperties,
        ...bidderPrivacyProperties,
      },
    },
    segmentation: { anyOf: [{ type: 'string', minLength: 1 }, segmentationSchema] },
    segmentStore: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'null' }] },
    ...topLevelBiddingProperties,
    campaigns: campaignsSchema,
    // KPIs defined up front: which ones are reported, attribution windows, the discrepancy threshold.
    kpis: {
      type: 'object',
      additionalProperties: false,
      properties: {
        kpis: { type: 'array', uniqueItems: true, items: { enum: [...KPI_NAMES] } },
        attribution: {
          type: 'object',
          additionalProperties: false,
          properties: { clickWindowSec: { type: 'integer', minimum: 0 }, viewWindowSec: { type: 'integer', minimum: 0 } },
        },
        discrepancyThreshold: { type: 'number', minimum: 0, maximum: 10 },
        exchanges: { type: 'array', maxItems: 255, uniqueItems: true, items: { type: 'string', minLength: 1, maxLength: 64, not: { const: 'other' } } },
      },
    },
    // Event notices: token ages, which notice books spend per exchange, click domains and landings.
    events: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxAgeSec: {
          type: 'object',
          additionalProperties: false,
          properties: Object.fromEntries(['win', 'loss', 'bill', 'imp', 'click'].map((k) => [k, { type: 'integer', minimum: 1 }])),
        },
        spendOn: {
          type: 'object',
          additionalProperties: false,
          properties: { default: { enum: ['bill', 'win'] }, byExchange: { type: 'object', additionalProperties: { enum: ['bill', 'win'] } } },
        },
        clickDomains: { type: 'object', additionalProperties: { type: 'array', items: { type: 'string', minLength: 1 } } },
        redirectExpiredClicks: { type: 'boolean' },
        dedupeMax: { type: 'integer', minimum: 1000, maximum: 100_000_000 },
        touchMax: { type: 'integer', minimum: 1000, maximum: 100_000_000 },
      },
    },
    // `?debug=1` on the bid endpoint (src/bidding/explain.ts): off unless enabled; tokens, when listed, must
    // also come in `x-segbid-debug-token`, so a public bid port does not explain itself to anyone.
    debug: {
      type: 'object',
      additionalProperties: false,
      properties: {
        enabled: { type: 'boolean' },
        tokens: { type: 'array', maxItems: 32, items: { type: 'string', minLength: 16, maxLength: 256 } },
      },
    },
    creatives: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'format', 'adomain', 'adm'],
        additionalProperties: false,
        properties: {
          id,
          format: { enum: ['banner', 'video', 'audio', 'native'] },
          adomain: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
          cat: { type: 'array', items: { type: 'string', minLength: 1 } },
          cattax: { type: 'integer', minimum: 1 },
          attr: { type: 'array', items: { type: 'integer', minimum: 1 } },
          secure: { type: 'boolean' },
          lang: { type: 'string', minLength: 2 },
          bundle: { type: 'string', minLength: 1 },
          w: { type: 'integer', minimum: 1 },
          h: { type: 'integer', minimum: 1 },
          mimes: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
          duration: { type: 'integer', minimum: 1 },
          protocol: { type: 'integer', minimum: 1 },
          adm: { type: 'string', minLength: 1 },
          landing: { type: 'string', pattern: '^https?://[^\\s"<>]+$' },
          segments: ids,
          ...creativeBiddingProperties,
        },
        allOf: [
          { if: { properties: { format: { const: 'banner' } } }, then: { required: ['w', 'h'] } },
          { if: { properties: { format: { const: 'video' } } }, then: { required: ['mimes', 'duration', 'protocol'] } },
          { if: { properties: { format: { const: 'audio' } } }, then: { required: ['mimes', 'duration'] } },
        ],
      },
    },
    lineItems: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'bid', 'creatives'],
        additionalProperties: false,
        properties: {
          id,
          name: { type: 'string' },
          active: { type: 'boolean' },
          targeting,
          bid: {
            type: 'object',
            required: ['cpm'],
            additionalProperties: false,
            properties: { cpm: { type: 'number', exclusiveMinimum: 0, maximum: 1000 } },
          },
          channels: { type: 'array', minItems: 1, items: { enum: ['site', 'app', 'dooh'] } },
          deviceTypes: { type: 'array', minItems: 1, items: { type: 'integer', minimum: 1, maximum: 31 } },
          countries: { type: 'array', minItems: 1, items: { type: 'string', pattern: '^[A-Z]{3}$' } },
          deals: ids,
          dealsOnly: { type: 'boolean' },
          creatives: { type: 'array', minItems: 1, items: id },
          priority: { type: 'integer', minimum: 0, maximum: 100 },
          ...lineItemBiddingProperties,
        },
      },
    },
  },
} as const;
