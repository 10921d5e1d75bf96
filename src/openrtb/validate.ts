/**
 * Structural validation of a parsed BidRequest: everything the decision code reads is checked for type and
 * range here, once, so the decision code can trust it. Returns null when the request is usable, else a short
 * one-line reason naming the path ("imp[0].banner.w must be a non-negative integer").
 *
 * Unknown fields and unknown enum values are tolerated (OpenRTB asks for it). Exchange-side rules the bidder
 * does not read (ext.prebid, stored requests, bidder params) are not checked: a bidder may bid on those.
 * Strings are only built on the failure path; a valid request allocates nothing here.
 */
import type { BidRequest } from 'iab-openrtb/v26';

type Obj = Record<string, unknown>;

/** Most imps one request may carry. */
export const MAX_IMPS = 100;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNonNegInt(v: unknown): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

function isNonNegNumber(v: unknown): boolean {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0;
}

function isFlag(v: unknown): boolean {
  return v === 0 || v === 1;
}

/**
 * Tolerance: JSON null where an optional field may be is read as the field's absence (exchanges that serialise
 * empty fields as null are common), and currency codes in lower case as the ISO code they spell. The request is
 * normalised in place, each field read by name (see badInt on keyed reads): the decision then sees `undefined`,
 * as for an absent field, and upper-case codes. Assigning undefined keeps the object's shape (no delete).
 */
function nullsAbsentTop(r: Obj): void {
  if (r.site === null) r.site = undefined;
  if (r.app === null) r.app = undefined;
  if (r.dooh === null) r.dooh = undefined;
  if (r.device === null) r.device = undefined;
  if (r.user === null) r.user = undefined;
  if (r.regs === null) r.regs = undefined;
  if (r.source === null) r.source = undefined;
  if (r.ext === null) r.ext = undefined;
  if (r.cur === null) r.cur = undefined;
  if (r.tmax === null) r.tmax = undefined;
  if (r.at === null) r.at = undefined;
  if (r.test === null) r.test = undefined;
  if (r.wseat === null) r.wseat = undefined;
  if (r.bseat === null) r.bseat = undefined;
  if (r.bcat === null) r.bcat = undefined;
  if (r.badv === null) r.badv = undefined;
  if (r.bapp === null) r.bapp = undefined;
  if (r.wlang === null) r.wlang = undefined;
  lowerDomains(r.badv);
  const cur = r.cur;
  if (Array.isArray(cur)) for (let i = 0; i < cur.length; i++) if (isLowerCurrency(cur[i])) cur[i] = (cur[i] as string).toUpperCase();
}

function nullsAbsentImp(imp: Obj): void {
  if (imp.banner === null) imp.banner = undefined;
  if (imp.video === null) imp.video = undefined;
  if (imp.audio === null) imp.audio = undefined;
  if (imp.native === null) imp.native = undefined;
  if (imp.pmp === null) imp.pmp = undefined;
  if (imp.bidfloor === null) imp.bidfloor = undefined;
  if (imp.bidfloorcur === null || imp.bidfloorcur === '') imp.bidfloorcur = undefined; // OpenRTB: USD
  else if (isLowerCurrency(imp.bidfloorcur)) imp.bidfloorcur = (imp.bidfloorcur as string).toUpperCase();
  if (imp.secure === null) imp.secure = undefined;
  if (imp.instl === null) imp.instl = undefined;
  if (imp.metric === null) imp.metric = undefined;
}

/** Domain lists (badv, a deal's wadomain) in lower case, as the config's adomain is matched: domains ignore case. */
function lowerDomains(list: unknown): void {
  if (!Array.isArray(list)) return;
  for (let i = 0; i < list.length; i++) {
    const d = list[i];
    if (typeof d === 'string' && d !== d.toLowerCase()) list[i] = d.toLowerCase();
  }
}

/**
 * A three-letter code with a lower-case letter ("usd", "Eur"): upper-cased by the caller, assigning only then (an
 * assignment of an unchanged or absent field would add a property to every imp).
 */
function isLowerCurrency(v: unknown): boolean {
  return typeof v === 'string' && v.length === 3 && (v.charCodeAt(0) >= 97 || v.charCodeAt(1) >= 97 || v.charCodeAt(2) >= 97);
}

/**
 * Paths are built only on the failure path: the validators inside an imp take the imp's index and the rest of
 * the path as a constant suffix, and `at` joins them when there is something to report.
 */
function at(imp: number, rest: string): string {
  return `imp[${imp}]${rest}`;
}

/** `path` is a top-level field name, or an imp index with `rest` the path inside that imp. */
function stringArrayError(v: unknown, path: string | number, rest = ''): string | null {
  if (v === undefined) return null;
  if (!Array.isArray(v)) return `${typeof path === 'number' ? at(path, rest) : path} must be an array of strings`;
  for (let i = 0; i < v.length; i++) if (typeof v[i] !== 'string') return `${typeof path === 'number' ? at(path, rest) : path}[${i}] must be a string`;
  return null;
}

function intArrayError(v: unknown, imp: number, rest: string): string | null {
  if (v === undefined) return null;
  if (!Array.isArray(v)) return `${at(imp, rest)} must be an array of integers`;
  for (let i = 0; i < v.length; i++) if (!Number.isInteger(v[i])) return `${at(imp, rest)}[${i}] must be an integer`;
  return null;
}

/**
 * `name` when `v` is present and not a non-negative integer, else null. Callers chain it over the fields they
 * check, each read by name (`b.w`, `b.h`, ...): a property read at its own site stays fast on the many shapes
 * that JSON.parse gives exchanges' objects, where one keyed read `o[field]` in a loop over names went megamorphic
 * (measured: the slowest part of validation).
 */
function badInt(v: unknown, name: string): string | null {
  return v !== undefined && !isNonNegInt(v) ? name : null;
}

function badBannerInt(b: Obj): string | null {
  return badInt(b.w, 'w') ?? badInt(b.h, 'h') ?? badInt(b.wmax, 'wmax') ?? badInt(b.hmax, 'hmax') ?? badInt(b.wmin, 'wmin') ?? badInt(b.hmin, 'hmin') ?? badInt(b.pos, 'pos');
}

function badFormatInt(f: Obj): string | null {
  return badInt(f.w, 'w') ?? badInt(f.h, 'h') ?? badInt(f.wratio, 'wratio') ?? badInt(f.hratio, 'hratio') ?? badInt(f.wmin, 'wmin');
}

function badVideoInt(v: Obj): string | null {
  return (
    badInt(v.w, 'w') ?? badInt(v.h, 'h') ?? badInt(v.minduration, 'minduration') ?? badInt(v.maxduration, 'maxduration') ??
    badInt(v.protocol, 'protocol') ?? badInt(v.minbitrate, 'minbitrate') ?? badInt(v.maxbitrate, 'maxbitrate') ??
    badInt(v.sequence, 'sequence') ?? badInt(v.maxextended, 'maxextended') ?? badInt(v.boxingallowed, 'boxingallowed') ??
    badInt(v.linearity, 'linearity') ?? badInt(v.plcmt, 'plcmt') ?? badInt(v.placement, 'placement') ?? badInt(v.pos, 'pos')
  );
}

function badAudioInt(a: Obj): string | null {
  return (
    badInt(a.minduration, 'minduration') ?? badInt(a.maxduration, 'maxduration') ?? badInt(a.minbitrate, 'minbitrate') ??
    badInt(a.maxbitrate, 'maxbitrate') ?? badInt(a.sequence, 'sequence') ?? badInt(a.maxextended, 'maxextended') ??
    badInt(a.maxseq, 'maxseq') ?? badInt(a.stitched, 'stitched') ?? badInt(a.feed, 'feed') ?? badInt(a.nvol, 'nvol')
  );
}

function badDeviceInt(d: Obj): string | null {
  return badInt(d.w, 'w') ?? badInt(d.h, 'h') ?? badInt(d.ppi, 'ppi') ?? badInt(d.devicetype, 'devicetype') ?? badInt(d.js, 'js') ?? badInt(d.dnt, 'dnt') ?? badInt(d.lmt, 'lmt');
}

function bannerError(b: unknown, imp: number): string | null {
  if (!isObj(b)) return `${at(imp, '.banner')} must be an object`;
  const bad = badBannerInt(b);
  if (bad !== null) return `${at(imp, '.banner')}.${bad} must be a non-negative integer`;
  if ((b.w === undefined) !== (b.h === undefined)) return `${at(imp, '.banner')} has ${b.w === undefined ? 'h' : 'w'} without ${b.w === undefined ? 'w' : 'h'}`;
  if (b.format !== undefined) {
    if (!Array.isArray(b.format)) return `${at(imp, '.banner')}.format must be an array`;
    if (b.format.length === 0) return `${at(imp, '.banner')}.format is empty`;
    for (let i = 0; i < b.format.length; i++) {
      const f = b.format[i];
      if (!isObj(f)) return `${at(imp, '.banner')}.format[${i}] must be an object`;
      const badField = badFormatInt(f);
      if (badField !== null) return `${at(imp, '.banner')}.format[${i}].${badField} must be a non-negative integer`;
      const sized = f.w !== undefined || f.h !== undefined;
      const ratio = f.wratio !== undefined || f.hratio !== undefined;
      if (sized && ratio) return `${at(imp, '.banner')}.format[${i}] mixes w/h with wratio/hratio`;
      if (sized && (f.w === undefined || f.h === undefined)) return `${at(imp, '.banner')}.format[${i}] needs both w and h`;
      if (ratio && (f.wratio === undefined || f.hratio === undefined || f.wmin === undefined)) return `${at(imp, '.banner')}.format[${i}] needs wratio, hratio and wmin`;
      if (!sized && !ratio) return `${at(imp, '.banner')}.format[${i}] has no size`;
    }
  } else if (b.w === undefined && (b.wmax !== undefined || b.hmax !== undefined || b.wmin !== undefined || b.hmin !== undefined)) {
    return `${at(imp, '.banner')} has only deprecated wmax/hmax/wmin/hmin and no size`;
  }
  return intArrayError(b.battr, imp, '.banner.battr') ?? intArrayError(b.btype, imp, '.banner.btype');
}

/** `kind` is '.video' or '.audio'. */
function mediaError(m: unknown, imp: number, kind: string, badMediaInt: (m: Obj) => string | null): string | null {
  if (!isObj(m)) return `${at(imp, kind)} must be an object`;
  const bad = badMediaInt(m);
  if (bad !== null) return `${at(imp, kind)}.${bad} must be a non-negative integer`;
  const e = stringArrayError(m.mimes, imp, kind + '.mimes');
  if (e) return e;
  if (!Array.isArray(m.mimes) || m.mimes.length === 0) return `${at(imp, kind)}.mimes must list at least one mime type`;
  if (typeof m.minduration === 'number' && typeof m.maxduration === 'number' && m.maxduration > 0 && m.minduration > m.maxduration) {
    return `${at(imp, kind)}.minduration exceeds maxduration`;
  }
  return intArrayError(m.protocols, imp, kind + '.protocols') ?? intArrayError(m.battr, imp, kind + '.battr');
}

function pmpError(p: unknown, imp: number): string | null {
  if (!isObj(p)) return `${at(imp, '.pmp')} must be an object`;
  if (p.private_auction !== undefined && !isFlag(p.private_auction)) return `${at(imp, '.pmp')}.private_auction must be 0 or 1`;
  if (p.deals === undefined) return null;
  if (!Array.isArray(p.deals)) return `${at(imp, '.pmp')}.deals must be an array`;
  for (let i = 0; i < p.deals.length; i++) {
    const d = p.deals[i];
    if (!isObj(d)) return `${at(imp, '.pmp')}.deals[${i}] must be an object`;
    if (typeof d.id !== 'string' || d.id.length === 0) return `${at(imp, '.pmp')}.deals[${i}].id must be a non-empty string`;
    if (d.bidfloor !== undefined && !isNonNegNumber(d.bidfloor)) return `${at(imp, '.pmp')}.deals[${i}].bidfloor must be a non-negative number`;
    if (d.bidfloorcur === null || d.bidfloorcur === '') d.bidfloorcur = undefined;
    else if (isLowerCurrency(d.bidfloorcur)) d.bidfloorcur = (d.bidfloorcur as string).toUpperCase();
    if (d.bidfloorcur !== undefined && typeof d.bidfloorcur !== 'string') return `${at(imp, '.pmp')}.deals[${i}].bidfloorcur must be a string`;
    if (d.at !== undefined && !Number.isInteger(d.at)) return `${at(imp, '.pmp')}.deals[${i}].at must be an integer`;
    // Deal seat and domain lists are rare: their path string is built only when present.
    lowerDomains(d.wadomain);
    if (d.wseat !== undefined || d.wadomain !== undefined) {
      const dp = `${at(imp, '.pmp')}.deals[${i}]`;
      const e = stringArrayError(d.wseat, `${dp}.wseat`) ?? stringArrayError(d.wadomain, `${dp}.wadomain`);
      if (e) return e;
    }
  }
  return null;
}

function impError(imp: unknown, i: number): string | null {
  if (!isObj(imp)) return `${at(i, '')} must be an object`;
  nullsAbsentImp(imp);
  if (typeof imp.id !== 'string' || imp.id.length === 0) return `${at(i, '')}.id must be a non-empty string`;
  // An imp offering no format is not malformed: nothing fits it, so it gets no bid (no_matching_format).
  if (imp.bidfloor !== undefined && !isNonNegNumber(imp.bidfloor)) return `${at(i, '')}.bidfloor must be a non-negative number`;
  if (imp.bidfloorcur !== undefined && typeof imp.bidfloorcur !== 'string') return `${at(i, '')}.bidfloorcur must be a string`;
  if (imp.secure !== undefined && !isFlag(imp.secure)) return `${at(i, '')}.secure must be 0 or 1`;
  if (imp.instl !== undefined && !isFlag(imp.instl)) return `${at(i, '')}.instl must be 0 or 1`;
  if (imp.metric !== undefined) {
    if (!Array.isArray(imp.metric)) return `${at(i, '')}.metric must be an array`;
    for (let m = 0; m < imp.metric.length; m++) {
      const metric = imp.metric[m];
      if (!isObj(metric) || typeof metric.type !== 'string' || typeof metric.value !== 'number') {
        return `${at(i, '')}.metric[${m}] needs a type and a value`;
      }
    }
  }
  let e: string | null = null;
  if (imp.banner !== undefined) e = bannerError(imp.banner, i);
  if (!e && imp.video !== undefined) e = mediaError(imp.video, i, '.video', badVideoInt);
  if (!e && imp.audio !== undefined) e = mediaError(imp.audio, i, '.audio', badAudioInt);
  if (!e && imp.native !== undefined) {
    const n = imp.native;
    if (!isObj(n) || (typeof n.request !== 'string' && !isObj(n.request)) || (typeof n.request === 'string' && n.request.length === 0)) {
      e = `${at(i, '')}.native.request is missing`;
    }
    // Fix (decision-cases: bad-request/native-battr-not-an-array): decide.ts reads native.battr like the other
    // battr lists; unchecked, a number or an object there made decide() throw on request content.
    if (!e) e = intArrayError((n as Obj).battr, i, '.native.battr');
  }
  if (!e && imp.pmp !== undefined) e = pmpError(imp.pmp, i);
  return e;
}

/**
 * GPP section ids (absent, or an array of integers), numeric strings taken as the integers they spell, in place
 * (`["7"]` as `[7]`). False for anything else: the privacy gate skips what is not a number, so `["7"]` read as
 * "no section applies" and let personal data through where the US national section applied.
 */
function sectionIds(v: unknown): boolean {
  if (v === undefined) return true;
  if (!Array.isArray(v)) return false;
  for (let i = 0; i < v.length; i++) {
    const id = v[i];
    if (Number.isInteger(id)) continue;
    if (typeof id !== 'string' || !/^-?\d{1,9}$/.test(id.trim())) return false;
    v[i] = Number(id.trim());
  }
  return true;
}

function geoError(g: unknown, path: string): string | null {
  if (g === undefined || g === null) return null; // null: absent (the caller sets it undefined)
  if (!isObj(g)) return `${path} must be an object`;
  if (g.country !== undefined && typeof g.country !== 'string') return `${path}.country must be a string`;
  if (g.accuracy !== undefined && !isNonNegNumber(g.accuracy)) return `${path}.accuracy must be a non-negative number`;
  return null;
}

function userError(u: unknown): string | null {
  if (!isObj(u)) return 'user must be an object';
  if (u.geo === null) u.geo = undefined;
  if (u.ext === null) u.ext = undefined;
  if (u.eids === null) u.eids = undefined;
  if (u.data === null) u.data = undefined;
  if (u.consent === null) u.consent = undefined;
  if (u.id !== undefined && typeof u.id !== 'string') return 'user.id must be a string';
  if (u.buyeruid !== undefined && typeof u.buyeruid !== 'string') return 'user.buyeruid must be a string';
  if (u.consent !== undefined && typeof u.consent !== 'string') return 'user.consent must be a string';
  const e = geoError(u.geo, 'user.geo');
  if (e) return e;
  if (u.eids !== undefined && !Array.isArray(u.eids)) return 'user.eids must be an array';
  if (u.data !== undefined && !Array.isArray(u.data)) return 'user.data must be an array';
  if (u.ext !== undefined) {
    if (!isObj(u.ext)) return 'user.ext must be an object';
    if (u.ext.consent !== undefined && typeof u.ext.consent !== 'string') return 'user.ext.consent must be a string';
    if (u.ext.eids !== undefined && !Array.isArray(u.ext.eids)) return 'user.ext.eids must be an array';
  }
  return null;
}

function regsError(r: unknown): string | null {
  if (!isObj(r)) return 'regs must be an object';
  if (r.ext === null) r.ext = undefined;
  if (r.gdpr === null) r.gdpr = undefined;
  if (r.coppa === null) r.coppa = undefined;
  if (r.us_privacy === null) r.us_privacy = undefined;
  if (r.gpp === null) r.gpp = undefined;
  if (r.coppa !== undefined && !isFlag(r.coppa)) return 'regs.coppa must be 0 or 1';
  if (r.gdpr !== undefined && !isFlag(r.gdpr)) return 'regs.gdpr must be 0 or 1';
  if (r.us_privacy !== undefined && typeof r.us_privacy !== 'string') return 'regs.us_privacy must be a string';
  if (r.gpp !== undefined && typeof r.gpp !== 'string') return 'regs.gpp must be a string';
  if (r.gpp_sid === null) r.gpp_sid = undefined;
  if (!sectionIds(r.gpp_sid)) return 'regs.gpp_sid must be an array of integers';
  if (r.ext !== undefined) {
    if (!isObj(r.ext)) return 'regs.ext must be an object';
    if (r.ext.gpp_sid === null) r.ext.gpp_sid = undefined;
    if (!sectionIds(r.ext.gpp_sid)) return 'regs.ext.gpp_sid must be an array of integers';
    if (r.ext.gdpr !== undefined && !isFlag(r.ext.gdpr)) return 'regs.ext.gdpr must be 0 or 1';
    if (r.ext.us_privacy !== undefined && typeof r.ext.us_privacy !== 'string') return 'regs.ext.us_privacy must be a string';
  }
  return null;
}

function distributionError(req: Obj): string | null {
  let n = 0;
  if (req.site !== undefined) {
    n++;
    if (!isObj(req.site)) return 'site must be an object';
  }
  if (req.app !== undefined) {
    n++;
    if (!isObj(req.app)) return 'app must be an object';
  }
  if (req.dooh !== undefined) {
    n++;
    if (!isObj(req.dooh)) return 'dooh must be an object';
  }
  // None of them is answered with a no-bid (reason no_inventory), not a 400: stored-request stubs and
  // similar exchange-side shapes carry none, and they are not malformed JSON-wise.
  if (n > 1) return 'request has more than one of site, app, dooh';
  return null;
}

/** Validates a parsed body. Returns null when the request is usable; `req` is then a BidRequest. */
export function validateBidRequest(req: unknown): string | null {
  if (!isObj(req)) return 'request must be a JSON object';
  if (typeof req.id !== 'string' || req.id.length === 0) return 'id must be a non-empty string';
  if (!Array.isArray(req.imp)) return 'imp must be an array';
  nullsAbsentTop(req);
  if (req.imp.length === 0) return 'imp is empty';
  // Real requests carry a handful of imps; thousands would hold the event loop (and every other request)
  // for hundreds of milliseconds and amplify into a response of megabytes.
  if (req.imp.length > MAX_IMPS) return `imp has ${req.imp.length} entries, at most ${MAX_IMPS} are accepted`;
  if (req.tmax !== undefined && !isNonNegInt(req.tmax)) return 'tmax must be a non-negative integer';
  if (req.at !== undefined && !Number.isInteger(req.at)) return 'at must be an integer';
  if (req.test !== undefined && !isFlag(req.test)) return 'test must be 0 or 1';
  let e =
    distributionError(req) ??
    stringArrayError(req.cur, 'cur') ??
    stringArrayError(req.wseat, 'wseat') ??
    stringArrayError(req.bseat, 'bseat') ??
    stringArrayError(req.bcat, 'bcat') ??
    stringArrayError(req.badv, 'badv') ??
    stringArrayError(req.bapp, 'bapp') ??
    stringArrayError(req.wlang, 'wlang');
  if (e) return e;
  if (req.device !== undefined) {
    if (!isObj(req.device)) return 'device must be an object';
    if (req.device.geo === null) req.device.geo = undefined;
    const bad = badDeviceInt(req.device);
    if (bad !== null) return `device.${bad} must be a non-negative integer`;
    e = geoError(req.device.geo, 'device.geo');
    if (e) return e;
  }
  if (req.user !== undefined && (e = userError(req.user))) return e;
  if (req.regs !== undefined && (e = regsError(req.regs))) return e;
  if (req.source !== undefined && !isObj(req.source)) return 'source must be an object';
  for (let i = 0; i < req.imp.length; i++) {
    e = impError(req.imp[i], i);
    if (e) return e;
  }
  return duplicateImpIdError(req.imp as Obj[]);
}

/** imp ids must be unique; a pairwise scan is cheaper than a Set for the usual handful of imps. */
function duplicateImpIdError(imps: Obj[]): string | null {
  if (imps.length > 32) {
    const seen = new Set<unknown>();
    for (let i = 0; i < imps.length; i++) {
      if (seen.has(imps[i].id)) return `imp[${i}].id "${String(imps[i].id).slice(0, 64)}" is not unique`;
      seen.add(imps[i].id);
    }
    return null;
  }
  for (let i = 1; i < imps.length; i++) {
    for (let j = 0; j < i; j++) {
      if (imps[i].id === imps[j].id) return `imp[${i}].id "${String(imps[i].id).slice(0, 64)}" is not unique`;
    }
  }
  return null;
}

export type { BidRequest };
