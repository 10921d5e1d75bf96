/**
 * JSON Schema of the segmentation tree with its per-kind rules (src/segments/rules.ts), and
 * validateSegmentation(): ajv with allErrors so a trader sees every mistake at once, each with its JSON-pointer
 * path (e.g. `/segments/3/rule/all/1/gte`), then the cross-checks a schema cannot express (duplicate ids,
 * parents exist, no cycles, a lookalike's seed exists and is crm, ranges ordered, the tree fits the width).
 *
 * Branches are chosen with if/then on a discriminating property (kind, all/any/not) rather than anyOf, so an
 * error is reported once, inside the branch the author meant, not once per alternative.
 */
import { documentLimitErrors } from '../config/document-limits.js';
import { Ajv, type ErrorObject } from 'ajv';
import { SegbidError, type ErrorDetail } from '../common/errors.js';
import type { SegmentationDef } from '../config/types.js';
import { DAY_NAMES, type ContextualRule, type CrmRule, type LookalikeRule } from './rules.js';

const id = { type: 'string', minLength: 1, maxLength: 128 } as const;
const nonEmptyString = { type: 'string', minLength: 1 } as const;
const scalar = { type: ['string', 'number', 'boolean'] } as const;

/** A comparison: {col, <exactly one operator>}. */
export const comparisonSchema = {
  type: 'object',
  required: ['col'],
  additionalProperties: false,
  minProperties: 2,
  maxProperties: 2,
  properties: {
    col: nonEmptyString,
    eq: scalar,
    ne: scalar,
    gt: { type: 'number' },
    gte: { type: 'number' },
    lt: { type: 'number' },
    lte: { type: 'number' },
    between: { type: 'array', minItems: 2, maxItems: 2, items: { type: 'number' } },
    in: { type: 'array', minItems: 1, items: scalar },
  },
} as const;

/** The recursive crm predicate; `ref` is where the schema itself is reachable (for the recursion). */
export function crmRuleSchema(ref: string) {
  const sub = { $ref: ref };
  return {
    type: 'object',
    if: { required: ['all'] },
    then: { required: ['all'], additionalProperties: false, properties: { all: { type: 'array', minItems: 1, items: sub } } },
    else: {
      if: { required: ['any'] },
      then: { additionalProperties: false, properties: { any: { type: 'array', minItems: 1, items: sub } } },
      else: {
        if: { required: ['not'] },
        then: { additionalProperties: false, properties: { not: sub } },
        else: comparisonSchema,
      },
    },
  } as const;
}

export const thirdPartyRefSchema = {
  type: 'object',
  required: ['provider', 'segments'],
  additionalProperties: false,
  properties: {
    provider: nonEmptyString,
    segments: { type: 'array', minItems: 1, items: nonEmptyString },
  },
} as const;

export const thirdPartyRuleSchema = {
  if: { type: 'array' },
  then: { type: 'array', minItems: 1, items: thirdPartyRefSchema },
  else: thirdPartyRefSchema,
} as const;

export const contextualRuleSchema = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    cat: { type: 'array', minItems: 1, items: nonEmptyString },
    domains: { type: 'array', minItems: 1, items: nonEmptyString },
    countries: { type: 'array', minItems: 1, items: { type: 'string', pattern: '^[A-Z]{3}$' } },
    deviceTypes: { type: 'array', minItems: 1, items: { type: 'integer', minimum: 1, maximum: 31 } },
    hours: { type: 'array', minItems: 2, maxItems: 2, items: { type: 'integer', minimum: 0, maximum: 24 } },
    days: { type: 'array', minItems: 1, items: { enum: [...DAY_NAMES] } },
  },
} as const;

export const lookalikeRuleSchema = {
  type: 'object',
  required: ['seed', 'threshold', 'reach'],
  additionalProperties: false,
  properties: {
    seed: id,
    threshold: { type: 'number', exclusiveMinimum: 0, maximum: 1000 },
    reach: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
    minLift: { type: 'number', minimum: 1 },
    topK: { type: 'integer', minimum: 1, maximum: 256 },
  },
} as const;

const kindIs = (kind: string) => ({ required: ['kind'], properties: { kind: { const: kind } } });

/** One segment of the tree, its rule left open (the shape the main config schema checks inline). */
const segmentShape = {
  type: 'object',
  required: ['id', 'name', 'kind'],
  additionalProperties: false,
  properties: {
    id,
    name: { type: 'string' },
    parent: { anyOf: [id, { type: 'null' }] },
    kind: { enum: ['crm', 'third_party', 'contextual', 'lookalike', 'group'] },
    rule: {},
  },
} as const;

/** The segmentation document without its per-kind rules: embedded in the config schema (src/config/schema.ts). */
export const segmentationShapeSchema = {
  type: 'object',
  required: ['segments'],
  additionalProperties: false,
  properties: {
    width: { type: 'integer', minimum: 32, maximum: 4096, multipleOf: 32 },
    segments: { type: 'array', items: segmentShape },
  },
} as const;

/** The whole segmentation document, rules checked per kind. */
export const segmentationRulesSchema = {
  ...segmentationShapeSchema,
  $id: 'segbid-segmentation',
  $defs: {
    crmRule: crmRuleSchema('#/$defs/crmRule'),
  },
  properties: {
    ...segmentationShapeSchema.properties,
    segments: {
      type: 'array',
      items: {
        ...segmentShape,
        allOf: [
          { if: kindIs('crm'), then: { required: ['rule'], properties: { rule: { $ref: '#/$defs/crmRule' } } } },
          { if: kindIs('third_party'), then: { required: ['rule'], properties: { rule: thirdPartyRuleSchema } } },
          { if: kindIs('contextual'), then: { required: ['rule'], properties: { rule: contextualRuleSchema } } },
          { if: kindIs('lookalike'), then: { required: ['rule'], properties: { rule: lookalikeRuleSchema } } },
          { if: kindIs('group'), then: { properties: { rule: false } } },
        ],
      },
    },
  },
} as const;

const ajv = new Ajv({ allErrors: true, strict: false });
const validateSchema = ajv.compile(segmentationRulesSchema);

function describe(e: ErrorObject): string {
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties':
      return `unknown property "${String(params.additionalProperty)}"`;
    case 'enum':
      return `must be one of ${(params.allowedValues as unknown[]).join(', ')}`;
    case 'false schema':
      return 'a group has no rule (its members are those of its descendants)';
    case 'minProperties':
    case 'maxProperties':
      // Only a comparison has 2 for both bounds ({col, operator}); the contextual rule's minimum is 1.
      return params.limit === 2 ? 'a comparison is {col, <one of eq ne gt gte lt lte between in>}' : 'needs at least one of its properties';
    case 'required':
      return `missing property "${String(params.missingProperty)}"`;
    default:
      return e.message ?? 'invalid';
  }
}

/** ajv errors as {path, message}, without the "must match then schema" echoes, deduplicated. */
export function schemaDetails(errors: ErrorObject[] | null | undefined, prefix = ''): ErrorDetail[] {
  const out: ErrorDetail[] = [];
  for (const e of errors ?? []) {
    if (e.keyword === 'if' || e.keyword === 'anyOf') continue;
    const detail = { path: prefix + e.instancePath, message: describe(e) };
    if (!out.some((d) => d.path === detail.path && d.message === detail.message)) out.push(detail);
  }
  return out;
}

function checkRanges(rule: CrmRule, path: string, errors: ErrorDetail[]): void {
  if ('all' in rule) rule.all.forEach((r, i) => checkRanges(r, `${path}/all/${i}`, errors));
  else if ('any' in rule) rule.any.forEach((r, i) => checkRanges(r, `${path}/any/${i}`, errors));
  else if ('not' in rule) checkRanges(rule.not, `${path}/not`, errors);
  else if ('between' in rule && rule.between[0] > rule.between[1]) {
    errors.push({ path: `${path}/between`, message: `empty range: ${rule.between[0]} > ${rule.between[1]}` });
  }
}

/** Cross-checks of a schema-valid document; errors appended to `errors`. */
export function crossCheckSegmentation(def: SegmentationDef, errors: ErrorDetail[]): void {
  const index = new Map<string, number>();
  def.segments.forEach((s, i) => {
    if (index.has(s.id)) errors.push({ path: `/segments/${i}/id`, message: `duplicate segment id "${s.id}"` });
    else index.set(s.id, i);
  });
  const width = def.width ?? Math.max(32, Math.ceil(def.segments.length / 32) * 32);
  if (def.segments.length > width) errors.push({ path: '/width', message: `${def.segments.length} segments do not fit in ${width} bits` });
  def.segments.forEach((s, i) => {
    const p = `/segments/${i}`;
    if (s.parent != null) {
      if (!index.has(s.parent)) errors.push({ path: `${p}/parent`, message: `unknown parent segment "${s.parent}"` });
      else {
        // Walk up; a chain longer than the tree, or back to s, is a cycle.
        const chain = [s.id];
        let cur: string | null | undefined = s.parent;
        while (cur != null && index.has(cur) && chain.length <= def.segments.length) {
          chain.push(cur);
          if (cur === s.id) {
            errors.push({ path: `${p}/parent`, message: `parent cycle: ${chain.join(' -> ')}` });
            break;
          }
          cur = def.segments[index.get(cur)!].parent;
        }
      }
    }
    if (s.kind === 'crm') checkRanges(s.rule as CrmRule, `${p}/rule`, errors);
    if (s.kind === 'lookalike') {
      const seed = (s.rule as LookalikeRule).seed;
      const at = index.get(seed);
      if (at === undefined) errors.push({ path: `${p}/rule/seed`, message: `unknown seed segment "${seed}"` });
      else if (def.segments[at].kind !== 'crm') {
        errors.push({ path: `${p}/rule/seed`, message: `seed "${seed}" is a ${def.segments[at].kind} segment; a lookalike seed is a crm segment` });
      }
    }
    if (s.kind === 'contextual') {
      const hours = (s.rule as ContextualRule).hours;
      if (hours && hours[0] === hours[1]) errors.push({ path: `${p}/rule/hours`, message: 'empty day-part: from == to (use [0, 24] for all day)' });
      if (hours && (hours[0] === 24 || (hours[1] === 0 && hours[0] !== 0))) {
        // [24, x) and [x, 0) are spelled [0, x) and [x, 24]; reject so there is one way to write each day-part.
        errors.push({ path: `${p}/rule/hours`, message: 'write midnight as 0 at the start and 24 at the end' });
      }
    }
  });
}

/**
 * Validates a segmentation document (already parsed from JSON/YAML). Returns it typed, or throws
 * SegbidError('CONFIG_INVALID') whose details list every problem with its path.
 */
export function validateSegmentation(doc: unknown, source: string): SegmentationDef {
  const limits = documentLimitErrors(doc);
  if (limits.length > 0) throw new SegbidError('CONFIG_INVALID', `${source}: invalid segmentation`, limits);
  if (!validateSchema(doc)) {
    throw new SegbidError('CONFIG_INVALID', `${source}: invalid segmentation`, schemaDetails(validateSchema.errors));
  }
  const def = doc as SegmentationDef;
  const errors: ErrorDetail[] = [];
  crossCheckSegmentation(def, errors);
  if (errors.length > 0) throw new SegbidError('CONFIG_INVALID', `${source}: invalid segmentation`, errors);
  return def;
}
