/**
 * Everything per-line-item the decision needs beyond supply and targeting, compiled once per config:
 * strategies (base bids from targets and learned rates), multipliers, first-price shading, creative selection by
 * the user's most specific segment, frequency caps, privacy. The learning parts (strategy counters, shading
 * curves, creative rotation, cap history) are mutable state: when a config is swapped in, `adoptFrom` carries
 * them over from the previous plan, matched by id, so a reload does not forget what was learned.
 */
import type { ErrorDetail } from '../common/errors.js';
import type { SegbidConfig, BidderSettings } from '../config/types.js';
import type { SegmentDictionary } from '../segments/segmentation.js';
import { buildSegmentTree, type SegmentTree } from './strategies/segment-tree.js';
import { compileStrategies, type StrategyTable } from './strategies/strategy-table.js';
import { compileMultipliers, type MultiplierTable } from './multipliers.js';
import { ShadingTable, resolveShadingSettings } from './shading.js';
import { compileCreativeSelector, resolveRotationSettings, type CreativeSelector } from './creative-selector.js';
import { compileFrequencyCaps, InProcessCapStore, type CapPlan } from './frequency-caps.js';
import { PrivacyGate } from '../privacy/privacy-gate.js';
import { resolvePrivacySettings } from '../privacy/schema.js';
import { compilePersonalDataMask } from '../privacy/personal-data.js';

export interface BiddingPlan {
  readonly tree: SegmentTree;
  readonly strategies: StrategyTable;
  readonly multipliers: MultiplierTable;
  readonly shading: ShadingTable;
  readonly selector: CreativeSelector;
  readonly capPlan: CapPlan;
  readonly caps: InProcessCapStore;
  readonly privacy: PrivacyGate;
  /** Line items that need personal data (CRM/3rd-party/lookalike targeting, or a frequency cap). */
  readonly personalMask: Uint32Array;
  /** Whether any line item has a cap (skips the cap pass entirely when not). */
  readonly anyCaps: boolean;
}

export function compileBiddingPlan(
  config: SegbidConfig,
  settings: BidderSettings,
  dictionary: SegmentDictionary,
  supplyWords: number,
  errors: ErrorDetail[],
): BiddingPlan {
  const tree = buildSegmentTree(dictionary, errors);
  const strategies = compileStrategies({ lineItems: config.lineItems, dictionary, tree, priors: config.priors }, errors);
  const multipliers = compileMultipliers(config.lineItems, dictionary, errors);
  const shading = new ShadingTable(
    config.lineItems.map((l) => l.id),
    resolveShadingSettings(settings.shading),
  );
  const selector = compileCreativeSelector(config.lineItems, config.creatives, dictionary, tree, resolveRotationSettings(settings.rotation));
  const capCampaigns = (config.campaigns ?? []).map((c) => ({ id: c.id, name: c.name, frequencyCaps: c.frequencyCaps ?? [], lineItems: c.lineItems }));
  const capPlan = compileFrequencyCaps(config.lineItems, capCampaigns, errors);
  const caps = new InProcessCapStore(capPlan, settings.capStore);
  const privacy = new PrivacyGate(resolvePrivacySettings(settings.privacy, errors));
  const capped = (li: number) => capPlan.capped[li] === 1;
  const personalMask = compilePersonalDataMask(config.lineItems, dictionary, tree, supplyWords, capped);
  const anyCaps = capPlan.capped.includes(1);
  return { tree, strategies, multipliers, shading, selector, capPlan, caps, privacy, personalMask, anyCaps };
}

/** Carries learned state over from the plan being replaced (matched by line item / creative id). */
export function adoptLearning(next: BiddingPlan, previous: BiddingPlan): void {
  next.strategies.adoptCounters(previous.strategies);
  next.selector.adoptCounters(previous.selector);
  next.shading.adoptFrom(previous.shading);
  next.caps.adoptFrom(previous.caps);
}
