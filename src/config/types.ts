import type { BidderBiddingDef, CreativeBiddingDef, LineItemBiddingDef, TopLevelBiddingDef } from '../bidding/strategies/schema.js';
import type { PrivacySettingsDef } from '../privacy/schema.js';
import type { CampaignDef as BudgetCampaignDef } from '../budget/types.js';
import type { FrequencyCapDef } from '../bidding/strategies/schema.js';
import type { KpiConfig } from '../events/kpis.js';
import type { EventsConfig } from '../events/event-handler.js';

/** A campaign: its budget and test-and-learn settings, and campaign-wide frequency caps. */
export type CampaignConfig = BudgetCampaignDef & { frequencyCaps?: FrequencyCapDef[] };

/**
 * The trader-facing configuration, as written in JSON or YAML and validated by src/config/schema.ts.
 * Money is written in currency units (CPM) by traders and converted to integer micro-units at compile time.
 */

/** A targeting expression over segment ids: a segment id, or all/any/none of sub-expressions (nested freely). */
export type TargetingExpr = string | { all: TargetingExpr[] } | { any: TargetingExpr[] } | { none: TargetingExpr[] };

export type Channel = 'site' | 'app' | 'dooh';
export type CreativeFormat = 'banner' | 'video' | 'audio' | 'native';

export interface SegmentDef {
  id: string;
  name: string;
  parent?: string | null;
  kind: 'crm' | 'third_party' | 'contextual' | 'lookalike' | 'group';
  /** Kind-specific rule; interpreted by the segmentation compiler, carried through by the bidder. */
  rule?: unknown;
}

export interface SegmentationDef {
  /** Bitset width in bits; a multiple of 32. Bits are assigned in declaration order. */
  width?: number;
  segments: SegmentDef[];
}

export interface CreativeDef extends CreativeBiddingDef {
  id: string;
  format: CreativeFormat;
  adomain: string[];
  cat?: string[];
  /** Category taxonomy of `cat` (OpenRTB `cattax`); 1 = IAB Content Category 1.0 (the default). */
  cattax?: number;
  attr?: number[];
  /** Whether the markup and every URL it loads is https. Non-secure creatives never serve on `imp.secure=1`. */
  secure?: boolean;
  lang?: string;
  /** Bundle of the advertised app, checked against `bapp`. */
  bundle?: string;
  w?: number;
  h?: number;
  mimes?: string[];
  duration?: number;
  protocol?: number;
  /**
   * The markup. `${SEGBID_IMP_URL}` and `${SEGBID_CLICK_URL}` are replaced per bid by the signed impression
   * pixel and click redirect URLs; a banner without the impression macro gets a 1x1 pixel appended.
   */
  adm: string;
  /** Where a click lands (default https://<first adomain>/); must be on one of the creative's adomain. */
  landing?: string;
  /** Segment ids this creative speaks to (segment messages); empty = any segment. */
  segments?: string[];
}

export interface LineItemDef extends LineItemBiddingDef {
  id: string;
  name?: string;
  active?: boolean;
  targeting?: TargetingExpr;
  bid: { cpm: number };
  channels?: Channel[];
  deviceTypes?: number[];
  countries?: string[];
  /** Deal ids this line item may bid on when an imp offers them. */
  deals?: string[];
  /** Bid only on the deals above, never in the open auction. */
  dealsOnly?: boolean;
  creatives: string[];
  priority?: number;
}

export interface BidderSettings extends BidderBiddingDef {
  privacy?: PrivacySettingsDef;
  seat: string;
  currency: string;
  /** Units of the bidder currency for one unit of each other currency. No rate: no bid in/with that currency. */
  rates: Record<string, number>;
  eventBaseUrl: string;
  defaultTmaxMs: number;
  /** Below this `tmax` (network round trip included) the answer cannot arrive in time: no-bid. */
  minTmaxMs: number;
  maxBodyBytes: number;
  maxInflatedBytes: number;
  /** `204`: no-bid is HTTP 204. `nbr`: HTTP 200 with `{"id":...,"seatbid":[],"nbr":N}`. */
  noBidStyle: '204' | 'nbr';
  gzipMinBytes: number;
  /** What to do with `test=1` requests: bid normally (never billed) or no-bid. */
  testRequests: 'bid' | 'nobid';
}

export interface SegbidConfig extends Omit<TopLevelBiddingDef, 'campaigns'> {
  campaigns?: CampaignConfig[];
  /** KPIs defined up front (src/events/kpis.ts KpiConfig, partial). */
  kpis?: Partial<KpiConfig>;
  /** Event notice settings (src/events/event-handler.ts EventsConfig, partial). */
  events?: Partial<EventsConfig>;
  version: 1;
  bidder?: Partial<BidderSettings>;
  /** Inline segmentation, or a path (relative to the config file) to a segmentation JSON/YAML file. */
  segmentation: SegmentationDef | string;
  /** Path (relative to the config file) of the compiled segment store; absent = no known users. */
  segmentStore?: string | null;
  creatives: CreativeDef[];
  lineItems: LineItemDef[];
  /** `?debug=1` on the bid endpoint (default off); see src/bidding/explain.ts. */
  debug?: DebugDef;
}

export interface DebugDef {
  enabled?: boolean;
  /** When given, a debug request must carry one of them in `x-segbid-debug-token`. */
  tokens?: string[];
}

export const DEFAULT_BIDDER: BidderSettings = {
  seat: 'segbid',
  currency: 'USD',
  rates: { USD: 1 },
  eventBaseUrl: 'http://127.0.0.1:8080',
  defaultTmaxMs: 200,
  minTmaxMs: 10,
  maxBodyBytes: 256 * 1024,
  maxInflatedBytes: 1024 * 1024,
  noBidStyle: '204',
  gzipMinBytes: 512,
  testRequests: 'bid',
};
