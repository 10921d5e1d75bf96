/**
 * Compiles a validated configuration into the tables the bid path reads. Everything that can be decided when a
 * config loads is decided here: integer indices, money in micro-units, line-item bitsets per supply dimension
 * (channel, device type, country), targeting mask programs, creative block tables, and the JSON fragments of each
 * creative. A CompiledConfig is immutable; a new config is compiled aside and swapped in whole.
 */
import { SegbidError, type ErrorDetail } from '../common/errors.js';
import { buildDictionary, type SegmentDictionary } from '../segments/segmentation.js';
import { compileTargeting, type TargetingProgram } from '../segments/targeting.js';
import { DEFAULT_BIDDER, type SegbidConfig, type BidderSettings, type Channel, type CreativeDef, type LineItemDef, type TargetingExpr } from './types.js';
import { isSchemaRefusal, validateConfigDocument, type LoadedConfig } from './load.js';
import { compileBiddingPlan, type BiddingPlan } from '../bidding/bidding-plan.js';
import { compileCampaigns } from '../budget/compile.js';
import type { CompiledBudgetPlan } from '../budget/types.js';

export const FORMAT_BANNER = 1;
export const FORMAT_VIDEO = 2;
export const FORMAT_AUDIO = 3;
export const FORMAT_NATIVE = 4;
const FORMAT_CODE = { banner: FORMAT_BANNER, video: FORMAT_VIDEO, audio: FORMAT_AUDIO, native: FORMAT_NATIVE } as const;

export const CHANNEL_SITE = 0;
export const CHANNEL_APP = 1;
export const CHANNEL_DOOH = 2;
const CHANNEL_CODE: Record<Channel, number> = { site: CHANNEL_SITE, app: CHANNEL_APP, dooh: CHANNEL_DOOH };

export interface CompiledCreative {
  readonly index: number;
  readonly id: string;
  /** OpenRTB mtype: 1 banner, 2 video, 3 audio, 4 native. */
  readonly format: number;
  readonly w: number;
  readonly h: number;
  readonly mimes: readonly string[];
  readonly duration: number;
  readonly protocol: number;
  readonly secure: boolean;
  readonly lang: string | null;
  readonly bundle: string | null;
  readonly attr: readonly number[];
  readonly adomain: readonly string[];
  /** adomain in lower case: what badv and a deal's wadomain are matched against (domains ignore case). */
  readonly adomainLower: readonly string[];
  readonly cattax: number;
  /** Categories and their parents ("IAB2-1" also yields "IAB2"), so a bcat of a parent blocks its children. */
  readonly catWithParents: readonly string[];
  /** Pre-serialised `"adid":..,"crid":..,"adomain":[..],"cat":[..],"attr":[..]` (and w/h for banners). */
  readonly jsonFields: string;
  /**
   * The JSON-escaped markup split around its URL macros: admParts[0] slot[0] admParts[1] slot[1] ... where a
   * slot is ADM_IMP_URL or ADM_CLICK_URL. Precomputed so a bid only concatenates.
   */
  readonly admParts: readonly string[];
  readonly admSlots: readonly number[];
  /** `&u=<encoded landing URL>` for the click redirect. */
  readonly landingParam: string;
  readonly landing: string;
}

export const ADM_IMP_URL = 0;
export const ADM_CLICK_URL = 1;
const IMP_MACRO = '${SEGBID_IMP_URL}';
const CLICK_MACRO = '${SEGBID_CLICK_URL}';

/** Splits JSON-escaped markup around the URL macros (they survive JSON escaping unchanged). */
function splitAdm(escaped: string): { parts: string[]; slots: number[] } {
  const parts: string[] = [];
  const slots: number[] = [];
  let rest = escaped;
  for (;;) {
    const i = rest.indexOf(IMP_MACRO);
    const c = rest.indexOf(CLICK_MACRO);
    if (i < 0 && c < 0) break;
    const useImp = i >= 0 && (c < 0 || i < c);
    const at = useImp ? i : c;
    parts.push(rest.slice(0, at));
    slots.push(useImp ? ADM_IMP_URL : ADM_CLICK_URL);
    rest = rest.slice(at + (useImp ? IMP_MACRO.length : CLICK_MACRO.length));
  }
  parts.push(rest);
  return { parts, slots };
}

export interface CompiledLineItem {
  readonly index: number;
  readonly id: string;
  readonly active: boolean;
  readonly bidMicros: number;
  readonly targeting: TargetingProgram;
  readonly creatives: readonly CompiledCreative[];
  readonly deals: ReadonlySet<string>;
  readonly dealsOnly: boolean;
  readonly priority: number;
  /** URL-safe id, pre-encoded for event URLs. */
  readonly urlId: string;
}

export interface SupplyTables {
  /** Line-item bitset width in 32-bit words. */
  readonly words: number;
  readonly active: Uint32Array;
  readonly byChannel: readonly Uint32Array[];
  /** Line items that accept a device type; `anyDeviceType` = those with no device restriction. */
  readonly byDeviceType: ReadonlyMap<number, Uint32Array>;
  readonly anyDeviceType: Uint32Array;
  readonly byCountry: ReadonlyMap<string, Uint32Array>;
  readonly anyCountry: Uint32Array;
}

export interface CompiledConfig {
  readonly settings: BidderSettings;
  readonly dictionary: SegmentDictionary;
  readonly creatives: readonly CompiledCreative[];
  readonly lineItems: readonly CompiledLineItem[];
  readonly supply: SupplyTables;
  /** Bidder-currency units per unit of a currency. */
  readonly rates: ReadonlyMap<string, number>;
  readonly storePath: string | null;
  readonly source: string;
  /** Event URL prefix, e.g. `http://host:8080/ev/`. */
  readonly eventPrefix: string;
  readonly seatJson: string;
  /** Strategies, multipliers, shading, creative selection, caps, privacy (src/bidding/bidding-plan.ts). */
  readonly plan: BiddingPlan;
  /** Campaign budgets, arms, pacing and guard rails (src/budget); null when no campaign is configured. */
  readonly budgetPlan: CompiledBudgetPlan | null;
  /** KPI and event-notice settings as written (completed by src/events when the handler is built). */
  readonly kpis: SegbidConfig['kpis'];
  readonly events: SegbidConfig['events'];
  /** `?debug=1` answers with an explanation only when enabled (src/bidding/explain.ts). */
  readonly debug: { readonly enabled: boolean; readonly tokens: readonly string[] };
}

/** The segment a line item is an arm of: its strategy's segment, else the first segment its targeting requires. */
function armSegment(def: LineItemDef): string | null {
  if (def.strategy?.segment) return def.strategy.segment;
  const first = (e: TargetingExpr | undefined): string | null => {
    if (e === undefined) return null;
    if (typeof e === 'string') return e;
    if ('none' in e) return null;
    for (const c of 'all' in e ? e.all : e.any) {
      const s = first(c);
      if (s !== null) return s;
    }
    return null;
  };
  return first(def.targeting);
}

function compileBudget(config: LoadedConfig['config'], lineItems: readonly CompiledLineItem[], dictionary: SegmentDictionary, errors: ErrorDetail[]): CompiledBudgetPlan | null {
  const campaigns = config.campaigns ?? [];
  if (campaigns.length === 0) return null;
  const indexById = new Map(lineItems.map((li) => [li.id, li.index] as const));
  const segmentOf = new Map<string, string>();
  config.lineItems.forEach((def) => {
    const s = armSegment(def);
    if (s !== null) segmentOf.set(def.id, s);
  });
  const parentOf = new Map<string, string>();
  for (const s of dictionary.segments) if (s.parent) parentOf.set(s.id, s.parent);
  try {
    return compileCampaigns(campaigns, indexById, segmentOf, lineItems.map((li) => li.bidMicros), parentOf);
  } catch (e) {
    if (!(e instanceof SegbidError)) throw e;
    errors.push(...e.details);
    return null;
  }
}

function catWithParents(cats: readonly string[]): string[] {
  const out = new Set<string>();
  for (const c of cats) {
    out.add(c);
    const dash = c.indexOf('-');
    if (dash > 0) out.add(c.slice(0, dash));
  }
  return [...out];
}

function compileCreative(def: CreativeDef, index: number, eventsSecure: boolean): CompiledCreative {
  const format = FORMAT_CODE[def.format];
  const cat = def.cat ?? [];
  const attr = def.attr ?? [];
  let jsonFields =
    `"adid":${JSON.stringify(def.id)},"crid":${JSON.stringify(def.id)},"adomain":${JSON.stringify(def.adomain)}` +
    `,"cat":${JSON.stringify(cat)},"attr":${JSON.stringify(attr)}`;
  if (def.cattax !== undefined && def.cattax !== 1) jsonFields += `,"cattax":${def.cattax}`;
  if (def.bundle) jsonFields += `,"bundle":${JSON.stringify(def.bundle)}`;
  if (def.lang) jsonFields += `,"language":${JSON.stringify(def.lang)}`;
  if (format === FORMAT_BANNER) jsonFields += `,"w":${def.w},"h":${def.h}`;
  else if (format === FORMAT_VIDEO || format === FORMAT_AUDIO) jsonFields += `,"dur":${def.duration}`;
  if (format === FORMAT_VIDEO) jsonFields += `,"protocol":${def.protocol}`;
  let adm = def.adm;
  if (format === FORMAT_BANNER && adm.indexOf(IMP_MACRO) === -1) {
    adm += `<img src="${IMP_MACRO}" width="1" height="1" style="display:none" alt="">`;
  }
  const { parts, slots } = splitAdm(JSON.stringify(adm).slice(1, -1));
  const landing = def.landing ?? `https://${def.adomain[0]}/`;
  return {
    index,
    id: def.id,
    format,
    w: def.w ?? 0,
    h: def.h ?? 0,
    mimes: def.mimes ?? [],
    duration: def.duration ?? 0,
    protocol: def.protocol ?? 0,
    // Our own pixel and click URLs go into the markup: on an http event base the creative is not secure.
    secure: (def.secure ?? def.adm.indexOf('http://') === -1) && (eventsSecure || slots.length === 0),
    lang: def.lang ?? null,
    bundle: def.bundle ?? null,
    attr,
    adomain: def.adomain,
    adomainLower: def.adomain.map((d) => d.toLowerCase()),
    cattax: def.cattax ?? 1,
    catWithParents: catWithParents(cat),
    jsonFields,
    admParts: parts,
    admSlots: slots,
    landing,
    landingParam: '&u=' + encodeURIComponent(landing),
  };
}

function setBit(set: Uint32Array, i: number): void {
  set[i >>> 5] |= 1 << (i & 31);
}

function compileSupply(items: readonly LineItemDef[], compiled: readonly CompiledLineItem[]): SupplyTables {
  const words = Math.max(1, Math.ceil(items.length / 32));
  const active = new Uint32Array(words);
  const byChannel = [new Uint32Array(words), new Uint32Array(words), new Uint32Array(words)];
  const byDeviceType = new Map<number, Uint32Array>();
  const anyDeviceType = new Uint32Array(words);
  const byCountry = new Map<string, Uint32Array>();
  const anyCountry = new Uint32Array(words);
  // Every table exists before any line item is placed, so unrestricted line items land in all of them.
  for (const def of items) for (const d of def.deviceTypes ?? []) if (!byDeviceType.has(d)) byDeviceType.set(d, new Uint32Array(words));
  for (const def of items) for (const c of def.countries ?? []) if (!byCountry.has(c)) byCountry.set(c, new Uint32Array(words));
  items.forEach((def, i) => {
    if (compiled[i].active) setBit(active, i);
    for (const ch of def.channels ?? ['site', 'app', 'dooh']) setBit(byChannel[CHANNEL_CODE[ch as Channel]], i);
    if (def.deviceTypes) for (const d of def.deviceTypes) setBit(byDeviceType.get(d)!, i);
    else {
      setBit(anyDeviceType, i);
      for (const set of byDeviceType.values()) setBit(set, i);
    }
    if (def.countries) for (const c of def.countries) setBit(byCountry.get(c)!, i);
    else {
      setBit(anyCountry, i);
      for (const set of byCountry.values()) setBit(set, i);
    }
  });
  return { words, active, byChannel, byDeviceType, anyDeviceType, byCountry, anyCountry };
}

/**
 * Validates and compiles a config document, reporting every mistake at once: when the schema refuses it, the
 * cross-reference checks still run on what is there (as if the shapes were right), and their errors are added
 * to the schema's, except at a path the schema already named or under it. A document too broken for that (the
 * compiler throws anything but CONFIG_INVALID) gets the schema's errors alone.
 */
export function compileDocument(doc: unknown, baseDir: string, source: string): CompiledConfig {
  let loaded: LoadedConfig;
  try {
    loaded = validateConfigDocument(doc, baseDir, source);
  } catch (e) {
    if (!isSchemaRefusal(e)) throw e;
    let more: readonly ErrorDetail[] = [];
    try {
      compileConfig(validateConfigDocument(doc, baseDir, source, { schema: false }));
    } catch (c) {
      if (c instanceof SegbidError && c.code === 'CONFIG_INVALID') more = c.details;
    }
    const named = e.details.map((d) => d.path);
    const extra = more.filter((d) => !named.some((p) => d.path === p || d.path.startsWith(p + '/')));
    if (extra.length === 0) throw e;
    throw new SegbidError('CONFIG_INVALID', e.message.split('\n')[0], [...e.details, ...extra]);
  }
  return compileConfig(loaded);
}

/** Compiles a validated config. Throws SegbidError CONFIG_INVALID with every cross-reference error by path. */
export function compileConfig(loaded: LoadedConfig): CompiledConfig {
  const { config, segmentation, storePath, source } = loaded;
  const errors: ErrorDetail[] = [...(loaded.segmentationErrors ?? [])];
  const settings: BidderSettings = { ...DEFAULT_BIDDER, ...config.bidder, rates: { ...(config.bidder?.rates ?? {}) } };
  const own = settings.rates[settings.currency];
  if (own !== undefined && own !== 1) {
    // Rates are bidder-currency units per unit of the other currency: the bidder's own is 1 by definition.
    errors.push({ path: `/bidder/rates/${settings.currency}`, message: `the bidder currency's own rate must be 1 (or left out), not ${own}` });
  }
  settings.rates[settings.currency] = 1;
  if (settings.minTmaxMs >= settings.defaultTmaxMs) {
    errors.push({ path: '/bidder/minTmaxMs', message: 'must be below defaultTmaxMs' });
  }
  // Errors in a segmentation file carry the paths load.ts gives them: /segmentation(<file>)/...
  const dictionary = buildDictionary(segmentation, typeof config.segmentation === 'string' ? `/segmentation(${config.segmentation})` : '/segmentation', errors);

  const creativeIndex = new Map<string, number>();
  config.creatives.forEach((c, i) => {
    if (creativeIndex.has(c.id)) errors.push({ path: `/creatives/${i}/id`, message: `duplicate creative id "${c.id}"` });
    else creativeIndex.set(c.id, i);
    (c.segments ?? []).forEach((s, j) => {
      if (!dictionary.bitOf.has(s)) errors.push({ path: `/creatives/${i}/segments/${j}`, message: `unknown segment "${s}"` });
    });
  });
  config.creatives.forEach((c, i) => {
    if (c.landing === undefined) return;
    let host = '';
    try {
      host = new URL(c.landing).hostname;
    } catch {
      /* reported below */
    }
    const onDomain = c.adomain.some((d) => host === d || host.endsWith('.' + d));
    if (!onDomain) errors.push({ path: `/creatives/${i}/landing`, message: `landing host "${host}" is not on the creative's adomain` });
  });
  const eventsSecure = settings.eventBaseUrl.startsWith('https://');
  const creatives = config.creatives.map((c, i) => compileCreative(c, i, eventsSecure));

  const lineItemIds = new Set<string>();
  const lineItems: CompiledLineItem[] = config.lineItems.map((def, i) => {
    if (lineItemIds.has(def.id)) errors.push({ path: `/lineItems/${i}/id`, message: `duplicate line item id "${def.id}"` });
    lineItemIds.add(def.id);
    const own: CompiledCreative[] = [];
    def.creatives.forEach((cid, j) => {
      const ci = creativeIndex.get(cid);
      if (ci === undefined) errors.push({ path: `/lineItems/${i}/creatives/${j}`, message: `unknown creative "${cid}"` });
      else own.push(creatives[ci]);
    });
    if (def.dealsOnly && !(def.deals && def.deals.length)) {
      errors.push({ path: `/lineItems/${i}/dealsOnly`, message: 'dealsOnly needs at least one deal id in deals' });
    }
    return {
      index: i,
      id: def.id,
      active: def.active ?? true,
      bidMicros: Math.round(def.bid.cpm * 1e6),
      targeting: compileTargeting(def.targeting, dictionary.bitOf, dictionary.words, `/lineItems/${i}/targeting`, errors),
      creatives: own,
      deals: new Set(def.deals ?? []),
      dealsOnly: def.dealsOnly ?? false,
      priority: def.priority ?? 0,
      urlId: encodeURIComponent(def.id),
    };
  });
  const supply = compileSupply(config.lineItems, lineItems);
  const plan = compileBiddingPlan(config, settings, dictionary, supply.words, errors);
  const budgetPlan = compileBudget(config, lineItems, dictionary, errors);
  if (errors.length) {
    // The segmentation validator and the dictionary builder may both report one error (an unknown parent);
    // two different errors at one path are both kept.
    const unique = errors.filter((e, i) => errors.findIndex((o) => o.path === e.path && o.message === e.message) === i);
    throw new SegbidError('CONFIG_INVALID', `${source}: invalid configuration`, unique);
  }

  return {
    settings,
    dictionary,
    creatives,
    lineItems,
    supply,
    plan,
    budgetPlan,
    kpis: config.kpis,
    events: config.events,
    debug: { enabled: config.debug?.enabled ?? false, tokens: [...(config.debug?.tokens ?? [])] },
    rates: new Map(Object.entries(settings.rates)),
    storePath,
    source,
    eventPrefix: `${settings.eventBaseUrl}/ev/`,
    seatJson: JSON.stringify(settings.seat),
  };
}
