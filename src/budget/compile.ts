/**
 * Compiles validated campaign definitions into a CompiledBudgetPlan: integer micro-units, epoch-ms flight
 * bounds, per-line-item typed arrays (campaign, group), guard rails per segment group. Throws SegbidError
 * CONFIG_INVALID with every cross-reference error by path (`/campaigns/2/guardRails/at-risk/minShare`, ...),
 * like src/config/compile.ts, so a trader sees every mistake at once.
 */
import { SegbidError, type ErrorDetail } from '../common/errors.js';
import type { LineItemDef } from '../config/types.js';
import { CAMPAIGN_DEFAULTS, MICROS, type CampaignDef, type CompiledBudgetPlan, type CompiledCampaign, type CompiledGroup } from './types.js';

/** The group of arms whose line item targets no single segment. */
export const NO_SEGMENT = '(none)';

/**
 * The segment a line item's arm belongs to, read from its targeting: a bare segment id, or the first bare id of
 * a top-level `all` (the leaf the micro-campaign is about; the rest narrows it). Null otherwise.
 */
export function leafSegmentOf(def: Pick<LineItemDef, 'targeting'>): string | null {
  const t = def.targeting;
  if (typeof t === 'string') return t;
  if (t !== undefined && typeof t === 'object' && 'all' in t) {
    for (const e of t.all) if (typeof e === 'string') return e;
  }
  return null;
}

/** Convenience for the integrator: segment id -> parent segment id, from the segmentation tree. */
export function parentsOfSegmentation(def: { segments: readonly { id: string; parent?: string | null }[] }): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of def.segments) if (s.parent != null) out.set(s.id, s.parent);
  return out;
}

/** Convenience for the integrator: id -> segment map from line item definitions. */
export function segmentsOfLineItems(defs: readonly LineItemDef[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const d of defs) {
    const s = leafSegmentOf(d);
    if (s !== null) out.set(d.id, s);
  }
  return out;
}

function parseInstant(text: string, path: string, errors: ErrorDetail[]): number {
  const ms = Date.parse(text);
  if (!Number.isFinite(ms)) errors.push({ path, message: `not a valid instant "${text}"` });
  return ms;
}

/** Currency units -> integer micros. Rounded once, here; never re-derived from floats later. */
export function toMicros(units: number): number {
  return Math.round(units * MICROS);
}

/**
 * Default lease slice: 1% of the daily budget (the flight budget per flight day without a daily cap), so a
 * process holds about a quarter hour of evenly paced spend; at least two impressions at the highest arm bid (a
 * reservation must fit in a slice), at most the flight budget.
 */
function defaultSliceMicros(b: CampaignDef['budget'], startMs: number, endMs: number, arms: readonly number[], maxCostMicros: Float64Array): number {
  const flight = toMicros(b.flight);
  const days = Math.max(1, Math.ceil((endMs - startMs) / 86_400_000)) || 1;
  const daily = b.daily !== undefined ? toMicros(b.daily) : flight / days;
  let maxCost = 1;
  for (const li of arms) if (maxCostMicros[li] > maxCost) maxCost = maxCostMicros[li];
  return Math.min(flight, Math.max(Math.ceil(daily / 100), 2 * maxCost));
}

/**
 * @param defs validated campaign definitions (`config.campaigns`)
 * @param lineItemIndexById compiled line-item index by id (every line item of the config)
 * @param segmentOfLineItem segment id of each line item's arm (see leafSegmentOf); missing = NO_SEGMENT
 * @param bidMicrosByIndex CPM bid in micros by line-item index (CompiledLineItem.bidMicros); gives the most one
 *        impression can cost, used to cap bookings of unknown notices. Missing entries count as 0.
 * @param parentOfSegment segment id -> parent id in the segmentation tree (parentsOfSegmentation): sibling
 *        segments share evidence in the allocator's priors. Missing: every segment pools with the campaign only.
 */
export function compileCampaigns(
  defs: readonly CampaignDef[],
  lineItemIndexById: ReadonlyMap<string, number>,
  segmentOfLineItem: ReadonlyMap<string, string>,
  bidMicrosByIndex: ArrayLike<number> = [],
  parentOfSegment: ReadonlyMap<string, string> = new Map(),
  basePath = '/campaigns',
): CompiledBudgetPlan {
  const errors: ErrorDetail[] = [];
  let lineItemCount = 0;
  for (const i of lineItemIndexById.values()) lineItemCount = Math.max(lineItemCount, i + 1);
  const lineItemIds: string[] = new Array(lineItemCount).fill('');
  for (const [lid, i] of lineItemIndexById) lineItemIds[i] = lid;
  const campaignOf = new Int32Array(lineItemCount).fill(-1);
  const groupOf = new Int32Array(lineItemCount).fill(-1);
  const maxCostMicros = new Float64Array(lineItemCount);
  for (let i = 0; i < lineItemCount; i++) maxCostMicros[i] = Math.ceil((bidMicrosByIndex[i] ?? 0) / 1000);
  const ids = new Set<string>();
  const campaigns: CompiledCampaign[] = defs.map((def, c) => {
    const p = `${basePath}/${c}`;
    if (ids.has(def.id)) errors.push({ path: `${p}/id`, message: `duplicate campaign id "${def.id}"` });
    ids.add(def.id);
    const b = def.budget;
    const flightStartMs = parseInstant(b.flightStart, `${p}/budget/flightStart`, errors);
    const flightEndMs = parseInstant(b.flightEnd, `${p}/budget/flightEnd`, errors);
    if (flightEndMs <= flightStartMs) errors.push({ path: `${p}/budget/flightEnd`, message: 'must be after flightStart' });
    if (b.daily !== undefined && b.daily > b.flight) errors.push({ path: `${p}/budget/daily`, message: 'must not exceed the flight budget' });

    const arms: number[] = [];
    const armSegments: string[] = [];
    def.lineItems.forEach((lid, j) => {
      const li = lineItemIndexById.get(lid);
      if (li === undefined) {
        errors.push({ path: `${p}/lineItems/${j}`, message: `unknown line item "${lid}"` });
        return;
      }
      if (campaignOf[li] !== -1) {
        const other = campaignOf[li] === c ? 'this campaign (listed twice)' : `campaign ${defs[campaignOf[li]].id}`;
        errors.push({ path: `${p}/lineItems/${j}`, message: `line item "${lid}" is already an arm of ${other}` });
        return;
      }
      campaignOf[li] = c;
      arms.push(li);
      armSegments.push(segmentOfLineItem.get(lid) ?? NO_SEGMENT);
    });

    const groupIds = [...new Set(armSegments)];
    const rails = def.guardRails ?? {};
    let minSum = 0;
    for (const [seg, rail] of Object.entries(rails)) {
      const rp = `${p}/guardRails/${seg}`;
      if (!groupIds.includes(seg)) errors.push({ path: rp, message: `no arm of this campaign targets segment "${seg}"` });
      if (rail.minShare > rail.maxShare) errors.push({ path: `${rp}/minShare`, message: 'must not exceed maxShare' });
      minSum += rail.minShare;
    }
    if (minSum > 1 + 1e-9) errors.push({ path: `${p}/guardRails`, message: `minimum shares add up to ${minSum.toFixed(3)} > 1` });
    const priors = def.priors ?? {};
    for (const seg of Object.keys(priors)) {
      if (!groupIds.includes(seg)) errors.push({ path: `${p}/priors/${seg}`, message: `no arm of this campaign targets segment "${seg}"` });
    }
    let maxSum = 0;
    const groups: CompiledGroup[] = groupIds.map((seg) => {
      const rail = Object.prototype.hasOwnProperty.call(rails, seg) ? rails[seg] : undefined;
      const prior = Object.prototype.hasOwnProperty.call(priors, seg) ? priors[seg] : undefined;
      maxSum += rail ? rail.maxShare : 1;
      return {
        segmentId: seg,
        minShare: rail ? rail.minShare : 0,
        maxShare: rail ? rail.maxShare : 1,
        guarded: rail !== undefined,
        priorCtr: prior?.ctr ?? 0,
        priorCvr: prior?.cvr ?? 0,
        priorValueMicros: prior?.orderValue !== undefined ? toMicros(prior.orderValue) : 0,
        priorConfidence: prior?.confidence ?? CAMPAIGN_DEFAULTS.priorConfidence,
      };
    });
    if (groups.length > 0 && maxSum < 1 - 1e-9) {
      errors.push({ path: `${p}/guardRails`, message: `maximum shares add up to ${maxSum.toFixed(3)} < 1: the budget could not be placed` });
    }
    const parents = [...new Set(groupIds.map((seg) => parentOfSegment.get(seg)).filter((x): x is string => x !== undefined))];
    const groupParent = Int32Array.from(groupIds, (seg) => {
      const parent = parentOfSegment.get(seg);
      return parent === undefined ? -1 : parents.indexOf(parent);
    });
    const armGroup = new Int32Array(arms.length);
    arms.forEach((li, k) => {
      armGroup[k] = groupIds.indexOf(armSegments[k]);
      groupOf[li] = armGroup[k];
    });

    let hourlyProfile: Float64Array | null = null;
    const pacing = def.pacing ?? { curve: 'even' as const };
    if (pacing.hourlyProfile !== undefined) {
      if (pacing.curve !== 'traffic') errors.push({ path: `${p}/pacing/hourlyProfile`, message: 'only meaningful with curve "traffic"' });
      const sum = pacing.hourlyProfile.reduce((a, x) => a + x, 0);
      if (!(sum > 0)) errors.push({ path: `${p}/pacing/hourlyProfile`, message: 'needs at least one positive weight' });
      else hourlyProfile = Float64Array.from(pacing.hourlyProfile, (x) => x / sum);
    }
    const learning = def.learning ?? {};
    if (def.leaseSlice !== undefined && def.leaseSlice > b.flight) errors.push({ path: `${p}/leaseSlice`, message: 'must not exceed the flight budget' });
    return {
      index: c,
      id: def.id,
      name: def.name,
      kpi: def.kpi,
      dailyMicros: b.daily === undefined ? -1 : toMicros(b.daily),
      flightMicros: toMicros(b.flight),
      flightStartMs,
      flightEndMs,
      explorationShare: def.explorationShare ?? CAMPAIGN_DEFAULTS.explorationShare,
      arms: Int32Array.from(arms),
      armGroup,
      groups,
      groupParent,
      parents,
      curve: pacing.curve,
      hourlyProfile,
      utcOffsetMs: (pacing.utcOffsetMinutes ?? 0) * 60_000,
      catchUpSeconds: pacing.catchUpSeconds ?? CAMPAIGN_DEFAULTS.catchUpSeconds,
      settle: def.settle ?? CAMPAIGN_DEFAULTS.settle,
      reservationTtlMs: def.reservationTtlMs ?? CAMPAIGN_DEFAULTS.reservationTtlMs,
      paused: def.paused ?? false,
      minImpressions: learning.minImpressions ?? CAMPAIGN_DEFAULTS.minImpressions,
      minClicks: learning.minClicks ?? CAMPAIGN_DEFAULTS.minClicks,
      samples: learning.samples ?? CAMPAIGN_DEFAULTS.samples,
      reallocateMs: (learning.reallocateSeconds ?? CAMPAIGN_DEFAULTS.reallocateSeconds) * 1000,
      conversionDelayMs: (learning.conversionDelayMinutes ?? CAMPAIGN_DEFAULTS.conversionDelayMinutes) * 60_000,
      leaseSliceMicros: def.leaseSlice !== undefined ? toMicros(def.leaseSlice) : defaultSliceMicros(b, flightStartMs, flightEndMs, arms, maxCostMicros),
    };
  });
  if (errors.length) throw new SegbidError('CONFIG_INVALID', 'invalid campaigns', errors);
  return { campaigns, lineItemCount, lineItemIds, campaignOf, groupOf, maxCostMicros };
}
