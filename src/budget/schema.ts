/**
 * JSON Schema fragment of the `campaigns` array (same dialect and style as src/config/schema.ts: ajv, allErrors,
 * additionalProperties false so that a typo is an error, not a silently ignored field). The integrator merges it
 * into the main schema as `properties.campaigns: campaignsSchema`. Cross-references (line item ids, guard-rail
 * segments, flight dates, sums of minimum shares) are checked by compileCampaigns, which reports them in the
 * same {path, message} form.
 */
const id = { type: 'string', minLength: 1, maxLength: 128 } as const;
const money = { type: 'number', exclusiveMinimum: 0, maximum: 1e9 } as const;
const share = { type: 'number', minimum: 0, maximum: 1 } as const;
const isoInstant = { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,9})?)?(Z|[+-]\\d{2}:\\d{2})$' } as const;

export const campaignSchema = {
  type: 'object',
  required: ['id', 'name', 'budget', 'kpi', 'lineItems'],
  additionalProperties: false,
  properties: {
    id,
    name: { type: 'string' },
    budget: {
      type: 'object',
      required: ['flight', 'flightStart', 'flightEnd'],
      additionalProperties: false,
      properties: { daily: money, flight: money, flightStart: isoInstant, flightEnd: isoInstant },
    },
    kpi: { enum: ['cpc', 'cpa', 'roas'] },
    explorationShare: { type: 'number', minimum: 0, maximum: 0.5 },
    guardRails: {
      type: 'object',
      propertyNames: id,
      additionalProperties: {
        type: 'object',
        required: ['minShare', 'maxShare'],
        additionalProperties: false,
        properties: { minShare: share, maxShare: share },
      },
    },
    priors: {
      type: 'object',
      propertyNames: id,
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        properties: {
          ctr: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
          cvr: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
          orderValue: { type: 'number', exclusiveMinimum: 0, maximum: 1e9 },
          confidence: { type: 'number', exclusiveMinimum: 0, maximum: 1e6 },
        },
      },
    },
    lineItems: { type: 'array', minItems: 1, items: id },
    pacing: {
      type: 'object',
      required: ['curve'],
      additionalProperties: false,
      properties: {
        curve: { enum: ['even', 'traffic'] },
        hourlyProfile: { type: 'array', minItems: 24, maxItems: 24, items: { type: 'number', minimum: 0 } },
        utcOffsetMinutes: { type: 'integer', minimum: -720, maximum: 840 },
        catchUpSeconds: { type: 'integer', minimum: 10, maximum: 86400 },
      },
    },
    settle: { enum: ['win', 'billing'] },
    reservationTtlMs: { type: 'integer', minimum: 1000, maximum: 86_400_000 },
    paused: { type: 'boolean' },
    leaseSlice: money,
    learning: {
      type: 'object',
      additionalProperties: false,
      properties: {
        minImpressions: { type: 'integer', minimum: 0 },
        minClicks: { type: 'integer', minimum: 0 },
        samples: { type: 'integer', minimum: 16, maximum: 10000 },
        reallocateSeconds: { type: 'integer', minimum: 1, maximum: 3600 },
        conversionDelayMinutes: { type: 'number', minimum: 0, maximum: 43200 },
      },
    },
  },
} as const;

export const campaignsSchema = { type: 'array', items: campaignSchema } as const;
