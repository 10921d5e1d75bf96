/**
 * A realistic, deterministic mix of OpenRTB 2.6 bid requests for the benches, built from the demo fixtures.
 *
 * Contract:
 *   generateRequestMix(params?) -> string[]   `params.count` distinct request bodies (JSON strings), the same
 *                                             bodies for the same params (seeded mulberry32, no clock, no
 *                                             Math.random), so two bench runs send byte-identical traffic.
 *   summarizeMix(bodies)        -> MixSummary counts of what the mix actually contains, for the bench report.
 *   DEFAULT_MIX_PARAMS                        the defaults; every share is a probability in [0, 1].
 *
 * Known users are demo users n < DEMO_USERS, keyed as the demo store keys them: `user.buyeruid =
 * demoUserId(n)` (every n), `device.ifa = demoIfa(n)` (even n), eid `{source: DEMO_EID_SOURCE, uids:
 * [{id: demoEmailHash(n)}]}` (n % 5 == 0). A known request carries one, two or all three of those keys, like
 * real traffic where the exchange's cookie sync, the device id and the publisher's eids are each sometimes
 * missing. Unknown users carry keys that are not in the store (or none at all).
 *
 * Privacy: requests from outside the USA carry regs.gdpr = 1 and, per `consentShare` / `deniedConsentShare`, a
 * real TCF v2 string (bench/consent-strings.ts) that grants `vendorId` what segbid asks for, one that does not, or
 * none; US requests sometimes carry a us_privacy string. Exchanges are named in source.schain.nodes[0].asi (the
 * shading curves key on them).
 *
 * Two profiles: DEFAULT_MIX_PARAMS for the demo config, LARGE_MIX_PARAMS for src/fixtures/large-config.ts (its deal
 * ids, exchanges, countries, categories and 3rd-party data). Both reach the same demo users.
 *
 * Every body passes src/openrtb/validate.ts; no-bids come from the decision (floors, formats, targeting, deal
 * rules, block lists, consent), never from a 400. No I/O.
 */
import type { BidRequest, Imp } from 'iab-openrtb/v26';
import { mulberry32 } from '../src/common/prng.js';
import { DEMO_EID_SOURCE, DEMO_USERS, demoEmailHash, demoIfa, demoUserId } from '../src/fixtures/demo.js';
import { LARGE_MIX, LARGE_VENDOR_ID } from '../src/fixtures/large-config.js';
import { benchConsentStrings, type BenchConsentStrings } from './consent-strings.js';

export interface MixParams {
  /** Which config the mix is shaped for (a label for the report). */
  profile: 'demo' | 'large';
  /** Number of distinct request bodies. */
  count: number;
  seed: number;
  /** Share of requests whose user is in the demo segment store. */
  knownUserShare: number;
  /** Share of app traffic (the rest is site). */
  appShare: number;
  /** Imp format weights (normalised). */
  formatWeights: { banner: number; video: number; native: number };
  /** Share of requests with a second imp (a second banner slot on the page / screen). */
  twoImpShare: number;
  /** Share of imps without any floor. */
  noFloorShare: number;
  /** Share of floored imps whose floor is in EUR (bidfloorcur). */
  eurFloorShare: number;
  /** Highest floor, in the floor's currency; floors are uniform in (0, maxFloor]. */
  maxFloor: number;
  /** Share of imps carrying a pmp with the demo deal. */
  dealShare: number;
  /** Share of those pmps with private_auction = 1 (only the deal may bid). */
  privateAuctionShare: number;
  /** Share of requests with cur = ["EUR","USD"] (the rest ["USD"]). */
  eurFirstCurShare: number;
  /** Share of requests with bcat / badv block lists. */
  blockListShare: number;
  /** Share of imps that require https creatives (imp.secure = 1). */
  secureShare: number;
  /** Of GDPR requests (non-US), the share with a consent string granting `vendorId` its purposes. */
  consentShare: number;
  /** Of GDPR requests, the share with a string that does not (vendor or purpose missing); the rest has none. */
  deniedConsentShare: number;
  /** Of US requests, the share carrying regs.us_privacy "1YNN" (no opt-out). */
  usPrivacyShare: number;
  /** TCF vendor id the granted strings name (the bench configs' bidder.privacy.vendorId). */
  vendorId: number;
  /** Deal ids offered in pmp (the first ones are the config's). */
  dealIds: readonly string[];
  /** Exchange names (schain asi), picked uniformly. */
  exchanges: readonly string[];
  countries: readonly string[];
  /** Weights of `countries` (normalised). */
  countryWeights: readonly number[];
  /** Site / app content categories; a request carries one or two. */
  cats: readonly string[];
  /** 3rd-party data exchanges pass in user.data, as "provider:segment". */
  thirdParty: readonly string[];
  /** Share of requests with user.data. */
  thirdPartyShare: number;
}

export const DEFAULT_MIX_PARAMS: MixParams = {
  profile: 'demo',
  count: 500,
  seed: 0x5e6b1d,
  knownUserShare: 0.6,
  appShare: 0.35,
  formatWeights: { banner: 0.75, video: 0.15, native: 0.1 },
  twoImpShare: 0.1,
  noFloorShare: 0.1,
  eurFloorShare: 0.2,
  maxFloor: 3,
  dealShare: 0.1,
  privateAuctionShare: 0.4,
  eurFirstCurShare: 0.3,
  blockListShare: 0.15,
  secureShare: 0.9,
  consentShare: 0.75,
  deniedConsentShare: 0.1,
  usPrivacyShare: 0.3,
  vendorId: LARGE_VENDOR_ID,
  dealIds: ['1452f.eadb4.7aaa'],
  exchanges: ['exchange.example'],
  countries: ['USA', 'FRA', 'DEU', 'GBR'],
  countryWeights: [0.4, 0.3, 0.15, 0.15],
  // IAB12 is news: the demo's contextual segment keys on it.
  cats: ['IAB12', 'IAB1', 'IAB17', 'IAB19', 'IAB2', 'IAB3'],
  // The demo's auto-intender provider; not a store key.
  thirdParty: ['6:12341318394918'],
  thirdPartyShare: 0.15,
};

export const DEMO_DEAL_ID = '1452f.eadb4.7aaa';

/** The mix for src/fixtures/large-config.ts: its deals (plus one it does not know), exchanges, countries, 3rd-party data. */
export const LARGE_MIX_PARAMS: MixParams = {
  ...DEFAULT_MIX_PARAMS,
  profile: 'large',
  dealShare: 0.15,
  dealIds: [...LARGE_MIX.dealIds, 'unknown-deal-1'],
  exchanges: LARGE_MIX.exchanges,
  countries: LARGE_MIX.countries,
  countryWeights: [0.35, 0.2, 0.15, 0.1, 0.1, 0.1],
  cats: LARGE_MIX.cats,
  thirdParty: LARGE_MIX.thirdParty,
  thirdPartyShare: 0.4,
};

/** The mix parameters of a profile. */
export function mixParamsFor(profile: MixParams['profile']): MixParams {
  return profile === 'large' ? LARGE_MIX_PARAMS : DEFAULT_MIX_PARAMS;
}

const consentCache = new Map<number, BenchConsentStrings>();
function consentStrings(vendorId: number): BenchConsentStrings {
  let c = consentCache.get(vendorId);
  if (c === undefined) consentCache.set(vendorId, (c = benchConsentStrings(vendorId)));
  return c;
}

const BANNER_SIZES = [
  { w: 300, h: 250, weight: 0.4 },
  { w: 728, h: 90, weight: 0.2 },
  { w: 320, h: 50, weight: 0.25 },
  { w: 300, h: 600, weight: 0.15 },
] as const;
const LANGUAGES: Record<string, string> = { USA: 'en', FRA: 'fr', DEU: 'de', GBR: 'en', ESP: 'es', ITA: 'it' };
/** Site traffic is mostly desktop; app traffic is phones and tablets. */
const SITE_DEVICE_TYPES = [2, 4, 5, 1] as const;
const SITE_DEVICE_WEIGHTS = [0.5, 0.25, 0.1, 0.15] as const;
const APP_DEVICE_TYPES = [4, 5, 1] as const;
const APP_DEVICE_WEIGHTS = [0.6, 0.25, 0.15] as const;
const DOMAINS = ['news.example.com', 'sport.example.fr', 'autos.example.de', 'recipes.example.co.uk', 'tech.example.com', 'weather.example.com'];
const BUNDLES = ['com.example.news', 'com.example.puzzle', 'fr.example.meteo', 'de.example.auto', 'com.example.music'];
/** Mostly harmless block lists; IAB22 (the demo creatives' category) blocks, as a real exchange sometimes does. */
const BCATS = [['IAB25', 'IAB26'], ['IAB7-39', 'IAB8-18'], ['IAB22'], ['IAB9-9', 'IAB25-3']] as const;
const BADVS = [['competitor.example'], ['rival-shop.example', 'other.example'], ['shop.segbid.example']] as const;
const NATIVE_REQUEST = JSON.stringify({
  ver: '1.2',
  context: 1,
  plcmttype: 1,
  plcmtcnt: 1,
  assets: [
    { id: 1, required: 1, title: { len: 90 } },
    { id: 2, required: 1, img: { type: 3, wmin: 300, hmin: 250 } },
    { id: 3, required: 0, data: { type: 2, len: 140 } },
  ],
});
/** User agents by device type, so ua, os and devicetype agree (a bidder may one day read them together). */
const UA_WINDOWS = { ua: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36', os: 'Windows' };
const UA_IPHONE = { ua: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1', os: 'iOS' };
const UA_ANDROID = { ua: 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36', os: 'Android' };
const UA_IPAD = { ua: 'Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1', os: 'iOS' };
const UA_ANDROID_TABLET = { ua: 'Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36', os: 'Android' };
const UA_BY_DEVICE_TYPE: Record<number, readonly { ua: string; os: string }[]> = {
  1: [UA_ANDROID, UA_IPHONE],
  2: [UA_WINDOWS],
  4: [UA_IPHONE, UA_ANDROID],
  5: [UA_IPAD, UA_ANDROID_TABLET],
};

type Rand = () => number;

function pickWeighted<T>(rand: Rand, items: readonly T[], weights: readonly number[]): T {
  let total = 0;
  for (const w of weights) total += w;
  let x = rand() * total;
  for (let i = 0; i < items.length; i++) {
    x -= weights[i];
    if (x < 0) return items[i];
  }
  return items[items.length - 1];
}

function pick<T>(rand: Rand, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)];
}

function int(rand: Rand, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

function hex(rand: Rand, digits: number): string {
  let s = '';
  while (s.length < digits) s += (Math.floor(rand() * 0x10000) | 0).toString(16).padStart(4, '0');
  return s.slice(0, digits);
}

/** A random v4-looking uuid; collisions with demoIfa(n) are as likely as guessing a real device id. */
function uuid(rand: Rand): string {
  const h = hex(rand, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20)}`;
}

/** Keys of one user, as the request will carry them. */
interface UserKeys {
  known: boolean;
  buyeruid?: string;
  ifa?: string;
  eid?: string;
}

/**
 * A known demo user with a random subset of its keys (at least one the store knows), or an unknown user.
 * Apps always send a device ifa; sites never do.
 */
function userKeys(rand: Rand, known: boolean, app: boolean): UserKeys {
  if (!known) {
    return {
      known: false,
      // 30% of unknown traffic has no cookie sync at all.
      buyeruid: rand() < 0.7 ? `x-${hex(rand, 12)}` : undefined,
      ifa: app ? uuid(rand) : undefined,
      eid: rand() < 0.1 ? `sha256-unknown-${hex(rand, 16)}` : undefined,
    };
  }
  // Choose which key makes the user known, then pick n so that key exists in the store.
  const via = pickWeighted(rand, ['buyeruid', 'ifa', 'eid'] as const, app ? [0.4, 0.45, 0.15] : [0.75, 0, 0.25]);
  let n = Math.floor(rand() * DEMO_USERS);
  if (via === 'ifa') n -= n % 2;
  if (via === 'eid') n -= n % 5;
  const keys: UserKeys = { known: true };
  // The chosen key always; the others when the user has them and the exchange happens to pass them.
  if (via === 'buyeruid' || rand() < 0.5) keys.buyeruid = demoUserId(n);
  if (app) keys.ifa = via === 'ifa' || n % 2 === 0 ? demoIfa(n) : uuid(rand);
  if (via === 'eid' || (n % 5 === 0 && rand() < 0.5)) keys.eid = demoEmailHash(n);
  return keys;
}

function floorOf(rand: Rand, p: MixParams, imp: Imp): void {
  if (rand() < p.noFloorShare) return;
  imp.bidfloor = Math.max(0.01, Math.round(rand() * p.maxFloor * 100) / 100);
  imp.bidfloorcur = rand() < p.eurFloorShare ? 'EUR' : 'USD';
}

function bannerImp(rand: Rand, id: string, app: boolean): Imp {
  const size = pickWeighted(rand, BANNER_SIZES, BANNER_SIZES.map((s) => s.weight));
  const imp: Imp = { id, tagid: `slot-${size.w}x${size.h}`, banner: {} };
  // Half the 300x250 slots also accept 300x600 (a common flex slot); the rest declare one size.
  const formats = size.w === 300 && size.h === 250 && rand() < 0.5 ? [{ w: 300, h: 250 }, { w: 300, h: 600 }] : [{ w: size.w, h: size.h }];
  imp.banner = { format: formats, w: size.w, h: size.h, pos: app ? 1 : pick(rand, [0, 1, 3] as const), battr: rand() < 0.2 ? [1, 3] : undefined };
  if (app && rand() < 0.2) imp.instl = 1;
  return imp;
}

function videoImp(rand: Rand, id: string): Imp {
  return {
    id,
    tagid: 'slot-instream',
    video: {
      mimes: rand() < 0.8 ? ['video/mp4'] : ['video/mp4', 'video/webm'],
      protocols: [2, 3],
      minduration: 5,
      maxduration: rand() < 0.5 ? 30 : 60,
      w: 640,
      h: 480,
      startdelay: 0,
      plcmt: 1,
      linearity: 1,
    },
  };
}

function nativeImp(id: string): Imp {
  return { id, tagid: 'slot-native', native: { request: NATIVE_REQUEST, ver: '1.2' } };
}

function withDeal(rand: Rand, p: MixParams, imp: Imp): void {
  // Deal floors sit above the open-auction floors, as they do on real exchanges.
  const floor = Math.round((2 + rand() * 5) * 100) / 100;
  imp.pmp = {
    private_auction: rand() < p.privateAuctionShare ? 1 : 0,
    deals: [
      { id: pick(rand, p.dealIds), bidfloor: floor, bidfloorcur: 'USD', at: 1 },
      // A second deal the bidder does not know, so the deal loop is exercised past a miss.
      ...(rand() < 0.5 ? [{ id: `other-${hex(rand, 6)}`, bidfloor: 3, bidfloorcur: 'USD', at: 1 }] : []),
    ],
  };
}

function oneRequest(rand: Rand, p: MixParams, i: number): BidRequest {
  const app = rand() < p.appShare;
  const known = rand() < p.knownUserShare;
  const keys = userKeys(rand, known, app);
  const country = pickWeighted(rand, p.countries, p.countryWeights);
  const devicetype = app ? pickWeighted(rand, APP_DEVICE_TYPES, APP_DEVICE_WEIGHTS) : pickWeighted(rand, SITE_DEVICE_TYPES, SITE_DEVICE_WEIGHTS);
  const fw = p.formatWeights;
  const imps: Imp[] = [];
  const nImps = rand() < p.twoImpShare ? 2 : 1;
  for (let k = 0; k < nImps; k++) {
    const id = String(k + 1);
    // A second imp is always a banner: pages and screens add display slots, not a second player.
    const format = k === 0 ? pickWeighted(rand, ['banner', 'video', 'native'] as const, [fw.banner, fw.video, fw.native]) : 'banner';
    const imp = format === 'banner' ? bannerImp(rand, id, app) : format === 'video' ? videoImp(rand, id) : nativeImp(id);
    // Most traffic is https; some app inventory still is not.
    if (rand() < p.secureShare) imp.secure = 1;
    floorOf(rand, p, imp);
    if (rand() < p.dealShare) withDeal(rand, p, imp);
    imps.push(imp);
  }

  const req: BidRequest = {
    id: `bench-${i}-${hex(rand, 8)}`,
    imp: imps,
    at: 1,
    tmax: int(rand, 10, 30) * 10,
    cur: rand() < p.eurFirstCurShare ? ['EUR', 'USD'] : ['USD'],
    source: { tid: uuid(rand), schain: { complete: 1, ver: '1.0', nodes: [{ asi: pick(rand, p.exchanges), sid: hex(rand, 6), hp: 1 }] } },
    regs: country === 'USA' ? { coppa: 0, gdpr: 0 } : { coppa: 0, gdpr: 1 },
  };
  let consent: string | undefined;
  if (country === 'USA') {
    if (rand() < p.usPrivacyShare) req.regs!.us_privacy = '1YNN';
  } else {
    const x = rand();
    const strings = consentStrings(p.vendorId);
    if (x < p.consentShare) consent = pick(rand, strings.granted);
    else if (x < p.consentShare + p.deniedConsentShare) consent = pick(rand, strings.denied);
  }
  const cat = rand() < 0.2 ? [pick(rand, p.cats), pick(rand, p.cats)] : [pick(rand, p.cats)];
  const publisher = { id: `pub-${int(rand, 1, 40)}` };
  if (app) {
    const bundle = pick(rand, BUNDLES);
    req.app = { id: `app-${bundle}`, bundle, name: bundle.split('.').pop(), storeurl: `https://apps.example.com/${bundle}`, publisher, cat };
  } else {
    const domain = pick(rand, DOMAINS);
    req.site = { id: `site-${domain}`, domain, page: `https://${domain}/article/${int(rand, 1, 99999)}`, publisher, cat };
  }
  const agent = pick(rand, UA_BY_DEVICE_TYPE[devicetype]);
  req.device = {
    ua: agent.ua,
    ip: `${int(rand, 11, 223)}.${int(rand, 0, 255)}.${int(rand, 0, 255)}.0`,
    devicetype,
    os: agent.os,
    language: LANGUAGES[country] ?? 'en',
    js: 1,
    geo: { country, type: 2 },
    ...(keys.ifa !== undefined ? { ifa: keys.ifa, lmt: 0 } : {}),
  };
  req.user = {};
  if (consent !== undefined) req.user.consent = consent;
  if (keys.buyeruid !== undefined) req.user.buyeruid = keys.buyeruid;
  if (keys.eid !== undefined) req.user.eids = [{ source: keys.known ? DEMO_EID_SOURCE : 'id5-sync.com', uids: [{ id: keys.eid, atype: 3 }] }];
  // 3rd-party data as exchanges pass it; not a store key.
  if (rand() < p.thirdPartyShare) {
    const [provider, segment] = pick(rand, p.thirdParty).split(':');
    req.user.data = [{ id: provider, name: `data-${provider}.example`, segment: [{ id: segment }] }];
  }
  if (rand() < p.blockListShare) {
    req.bcat = [...pick(rand, BCATS)];
    req.badv = [...pick(rand, BADVS)];
  }
  return req;
}

/** `params.count` distinct, valid OpenRTB 2.6 request bodies; deterministic for the same params. */
export function generateRequestMix(params: Partial<MixParams> = {}): string[] {
  const p: MixParams = { ...DEFAULT_MIX_PARAMS, ...params };
  const rand = mulberry32(p.seed);
  const bodies: string[] = [];
  for (let i = 0; i < p.count; i++) bodies.push(JSON.stringify(oneRequest(rand, p, i)));
  return bodies;
}

export interface MixSummary {
  requests: number;
  meanBytes: number;
  knownUser: number;
  app: number;
  site: number;
  imps: number;
  banner: number;
  video: number;
  native: number;
  deal: number;
  privateAuction: number;
  eurFloor: number;
  secure: number;
  eurFirstCur: number;
  blockLists: number;
  /** regs.gdpr = 1 requests, and among them those with a consent string the vendor may use / may not use. */
  gdpr: number;
  consentGranted: number;
  consentDenied: number;
  usPrivacy: number;
  thirdPartyData: number;
  byCountry: Record<string, number>;
  byExchange: Record<string, number>;
  byDeviceType: Record<string, number>;
}

/** Counts what the bodies contain (known user = one of the demo key shapes is present). */
export function summarizeMix(bodies: readonly string[], params: MixParams = DEFAULT_MIX_PARAMS): MixSummary {
  const granted = new Set(consentStrings(params.vendorId).granted);
  const s: MixSummary = {
    requests: bodies.length,
    meanBytes: 0,
    knownUser: 0,
    app: 0,
    site: 0,
    imps: 0,
    banner: 0,
    video: 0,
    native: 0,
    deal: 0,
    privateAuction: 0,
    eurFloor: 0,
    secure: 0,
    eurFirstCur: 0,
    blockLists: 0,
    gdpr: 0,
    consentGranted: 0,
    consentDenied: 0,
    usPrivacy: 0,
    thirdPartyData: 0,
    byCountry: {},
    byExchange: {},
    byDeviceType: {},
  };
  let bytes = 0;
  for (const body of bodies) {
    bytes += Buffer.byteLength(body);
    const r = JSON.parse(body) as BidRequest;
    if (r.app !== undefined) s.app++;
    else s.site++;
    const known =
      (r.user?.buyeruid ?? '').startsWith('demo-') ||
      (r.user?.eids ?? []).some((e) => e.source === DEMO_EID_SOURCE) ||
      (r.device?.ifa !== undefined && isDemoIfa(r.device.ifa));
    if (known) s.knownUser++;
    for (const imp of r.imp) {
      s.imps++;
      if (imp.banner) s.banner++;
      if (imp.video) s.video++;
      if (imp.native) s.native++;
      if (imp.pmp) s.deal++;
      if (imp.pmp?.private_auction === 1) s.privateAuction++;
      if (imp.bidfloorcur === 'EUR') s.eurFloor++;
      if (imp.secure === 1) s.secure++;
    }
    if (r.cur?.[0] === 'EUR') s.eurFirstCur++;
    if (r.bcat !== undefined) s.blockLists++;
    if (r.regs?.gdpr === 1) {
      s.gdpr++;
      const consent = r.user?.consent;
      if (consent !== undefined) {
        if (granted.has(consent)) s.consentGranted++;
        else s.consentDenied++;
      }
    }
    if (r.regs?.us_privacy !== undefined) s.usPrivacy++;
    if (r.user?.data !== undefined) s.thirdPartyData++;
    const asi = r.source?.schain?.nodes?.[0]?.asi ?? '-';
    s.byExchange[asi] = (s.byExchange[asi] ?? 0) + 1;
    const c = r.device?.geo?.country ?? '-';
    s.byCountry[c] = (s.byCountry[c] ?? 0) + 1;
    const d = String(r.device?.devicetype ?? '-');
    s.byDeviceType[d] = (s.byDeviceType[d] ?? 0) + 1;
  }
  s.meanBytes = bodies.length === 0 ? 0 : Math.round(bytes / bodies.length);
  return s;
}

/**
 * Whether an ifa has the demoIfa(n) shape: its 3rd group starts with '4' and its 4th with '8' (the generator's
 * random uuids put 'a' there), so the summary need not rebuild all 100k demo ifas.
 */
function isDemoIfa(ifa: string): boolean {
  return ifa.length === 36 && ifa[14] === '4' && ifa[19] === '8';
}
