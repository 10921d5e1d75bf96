/**
 * Generic checks of an OpenRTB 2.6 bid response against the request it answers. Independent of the engine's
 * code (it re-reads the spec, not src/), so it can check the decision tests and a corpus of real traffic alike.
 *
 *   validateBidResponse(request, response, rates?) -> string[]   (empty = no problem found)
 *
 * `response` is the parsed body or its JSON text. `rates` is the bidder's rate table (units of the bidder
 * currency per unit of each currency, as in the config); without it, floors in another currency than the
 * response's cannot be converted and are not checked.
 *
 * A response with `seatbid: []` and an integer `nbr` is a valid no-bid. Anything else must carry bids, each:
 * an `id`, an `impid` of the request (at most one bid per imp), a positive `price` not below the imp floor (or
 * the deal floor for a deal bid; equal to it for a deal with `at=3` and a floor), `adm`, `nurl`/`burl` with
 * `${AUCTION_PRICE}`, `lurl` with `${AUCTION_LOSS}`, `crid`, `adomain`, an `mtype` the imp offers (and a banner
 * size it offers), and nothing the request blocks (`bcat`, `badv`, `bapp`, `wlang`, `battr`, `imp.secure`,
 * `wseat`/`bseat`, `pmp.private_auction`, `deal.wseat`).
 */

/* The request and response are untyped JSON here: every field is checked before use. */
type Json = Record<string, unknown>;
export type Rates = Readonly<Record<string, number>> | ReadonlyMap<string, number>;

/** Prices and floors are compared to the micro-unit (the bidder rounds floors up to a whole micro-unit). */
const EPSILON = 1e-6 + 1e-9;

const MTYPE_MEDIA: Record<number, string> = { 1: 'banner', 2: 'video', 3: 'audio', 4: 'native' };

function isObj(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNonEmptyString(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0;
}

function stringList(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

function numberList(v: unknown): number[] {
  return Array.isArray(v) ? v.filter((x): x is number => typeof x === 'number') : [];
}

function rateOf(rates: Rates, cur: string): number | undefined {
  return rates instanceof Map ? rates.get(cur) : (rates as Readonly<Record<string, number>>)[cur];
}

/**
 * A floor (amount in floorCur) expressed in the response currency, or a string explaining why it cannot be;
 * null when it cannot be checked at all (no rate table given).
 */
function floorIn(amount: number, floorCur: string, respCur: string, rates: Rates | undefined): number | string | null {
  if (amount <= 0 || floorCur === respCur) return amount;
  if (rates === undefined) return null;
  const from = rateOf(rates, floorCur);
  const to = rateOf(rates, respCur);
  if (from === undefined) return `no rate for the floor currency ${floorCur}`;
  if (to === undefined) return `no rate for the response currency ${respCur}`;
  return (amount * from) / to;
}

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol === 'https:' || u.protocol === 'http:';
  } catch {
    return false;
  }
}

/** Does the banner object offer this size (`format[]` when present, else `w`/`h`)? */
function bannerOffers(banner: Json, w: unknown, h: unknown): boolean {
  if (Array.isArray(banner.format) && banner.format.length > 0) {
    return banner.format.some((f) => isObj(f) && f.w === w && f.h === h);
  }
  return banner.w === w && banner.h === h;
}

/** Categories a bid declares, with their IAB 1.0 parents ("IAB22-1" is also "IAB22"). */
function catsWithParents(cats: string[]): string[] {
  const out = new Set<string>();
  for (const c of cats) {
    out.add(c);
    const dash = c.indexOf('-');
    if (dash > 0) out.add(c.slice(0, dash));
  }
  return [...out];
}

export function validateBidResponse(request: unknown, responseJson: unknown, rates?: Rates): string[] {
  const problems: string[] = [];
  let res: unknown = responseJson;
  if (typeof res === 'string') {
    try {
      res = JSON.parse(res);
    } catch {
      return ['response is not valid JSON'];
    }
  }
  if (!isObj(request)) return ['request is not an object'];
  if (!isObj(res)) return ['response is not a JSON object'];

  if (res.id !== request.id) problems.push(`id ${JSON.stringify(res.id)} does not echo the request id ${JSON.stringify(request.id)}`);

  const requestCur = stringList(request.cur);
  if (res.cur !== undefined && typeof res.cur !== 'string') problems.push('cur must be a string');
  const respCur = typeof res.cur === 'string' ? res.cur : 'USD';
  if (requestCur.length > 0 ? !requestCur.includes(respCur) : respCur !== 'USD') {
    problems.push(`cur ${respCur} is not one the request accepts (${requestCur.length ? requestCur.join(', ') : 'USD by default'})`);
  }

  if (!Array.isArray(res.seatbid)) {
    problems.push('seatbid must be an array');
    return problems;
  }
  if (res.seatbid.length === 0) {
    if (!Number.isInteger(res.nbr)) problems.push('no seatbid and no nbr: neither a bid nor a no-bid');
    return problems;
  }

  const imps = Array.isArray(request.imp) ? request.imp.filter(isObj) : [];
  const impById = new Map<unknown, Json>(imps.map((imp) => [imp.id, imp]));
  const wseat = stringList(request.wseat);
  const bseat = stringList(request.bseat);
  const bcat = stringList(request.bcat);
  const badv = stringList(request.badv);
  const bapp = stringList(request.bapp);
  const wlang = stringList(request.wlang);
  const requestCattax = request.cattax ?? 1;
  const seenImps = new Set<unknown>();
  const seenBidIds = new Set<unknown>();

  res.seatbid.forEach((sb, s) => {
    const sp = `seatbid[${s}]`;
    if (!isObj(sb)) {
      problems.push(`${sp} must be an object`);
      return;
    }
    const seat = sb.seat;
    if (seat !== undefined && typeof seat !== 'string') problems.push(`${sp}.seat must be a string`);
    if (typeof seat === 'string' && wseat.length > 0 && !wseat.includes(seat)) problems.push(`${sp}.seat ${seat} is not in wseat`);
    if (typeof seat === 'string' && bseat.includes(seat)) problems.push(`${sp}.seat ${seat} is in bseat`);
    if (!Array.isArray(sb.bid) || sb.bid.length === 0) {
      problems.push(`${sp}.bid must be a non-empty array`);
      return;
    }
    sb.bid.forEach((bid, b) => {
      const p = `${sp}.bid[${b}]`;
      if (!isObj(bid)) {
        problems.push(`${p} must be an object`);
        return;
      }
      // Identity.
      if (!isNonEmptyString(bid.id)) problems.push(`${p}.id must be a non-empty string`);
      else if (seenBidIds.has(bid.id)) problems.push(`${p}.id ${bid.id} is not unique`);
      seenBidIds.add(bid.id);
      const imp = impById.get(bid.impid);
      if (imp === undefined) problems.push(`${p}.impid ${JSON.stringify(bid.impid)} is not an imp of the request`);
      else if (seenImps.has(bid.impid)) problems.push(`${p}.impid ${JSON.stringify(bid.impid)} has more than one bid`);
      seenImps.add(bid.impid);

      // Markup and notices.
      if (!isNonEmptyString(bid.adm)) problems.push(`${p}.adm must be a non-empty string`);
      for (const [field, macro] of [['nurl', '${AUCTION_PRICE}'], ['burl', '${AUCTION_PRICE}'], ['lurl', '${AUCTION_LOSS}']] as const) {
        const url = bid[field];
        if (!isNonEmptyString(url)) problems.push(`${p}.${field} must be a non-empty string`);
        else if (!isHttpUrl(url)) problems.push(`${p}.${field} is not an absolute http(s) URL`);
        else if (!url.includes(macro)) problems.push(`${p}.${field} lacks the ${macro} macro`);
      }
      if (!isNonEmptyString(bid.crid)) problems.push(`${p}.crid must be a non-empty string`);
      const adomain = stringList(bid.adomain);
      if (!Array.isArray(bid.adomain) || adomain.length === 0 || adomain.length !== bid.adomain.length) {
        problems.push(`${p}.adomain must be a non-empty array of strings`);
      }

      // Blocks of the request.
      if (adomain.some((d) => badv.includes(d))) problems.push(`${p}.adomain ${adomain.join(',')} is blocked by badv`);
      if (bid.cat !== undefined && !Array.isArray(bid.cat)) problems.push(`${p}.cat must be an array`);
      const cats = catsWithParents(stringList(bid.cat));
      if (bcat.length > 0 && (bid.cattax ?? 1) === requestCattax && cats.some((c) => bcat.includes(c))) {
        problems.push(`${p}.cat ${stringList(bid.cat).join(',')} is blocked by bcat`);
      }
      if (typeof bid.bundle === 'string' && bapp.includes(bid.bundle)) problems.push(`${p}.bundle ${bid.bundle} is blocked by bapp`);
      if (wlang.length > 0 && !(typeof bid.language === 'string' && wlang.includes(bid.language))) {
        problems.push(`${p}.language ${String(bid.language)} is not in wlang`);
      }

      // Price.
      const price = bid.price;
      if (typeof price !== 'number' || !Number.isFinite(price) || price <= 0) {
        problems.push(`${p}.price must be a positive number`);
      }
      if (imp === undefined || typeof price !== 'number') return;

      // Media type, format, attributes.
      const mtype = bid.mtype;
      const mediaName = typeof mtype === 'number' ? MTYPE_MEDIA[mtype] : undefined;
      const media = mediaName === undefined ? undefined : imp[mediaName];
      if (mediaName === undefined) problems.push(`${p}.mtype ${String(mtype)} must be 1 (banner), 2 (video), 3 (audio) or 4 (native)`);
      else if (!isObj(media)) problems.push(`${p}.mtype ${String(mtype)} (${mediaName}) is not offered by imp ${String(imp.id)}`);
      if (isObj(media)) {
        if (mtype === 1 && !bannerOffers(media, bid.w, bid.h)) {
          problems.push(`${p} size ${String(bid.w)}x${String(bid.h)} is not offered by imp ${String(imp.id)}`);
        }
        if ((mtype === 2 || mtype === 3) && typeof bid.dur === 'number') {
          if (typeof media.minduration === 'number' && bid.dur < media.minduration) problems.push(`${p}.dur ${bid.dur} is below minduration`);
          if (typeof media.maxduration === 'number' && media.maxduration > 0 && bid.dur > media.maxduration) {
            problems.push(`${p}.dur ${bid.dur} is above maxduration`);
          }
        }
        const battr = numberList(media.battr);
        if (numberList(bid.attr).some((a) => battr.includes(a))) problems.push(`${p}.attr ${numberList(bid.attr).join(',')} is blocked by battr`);
      }
      if (imp.secure === 1 && typeof bid.adm === 'string' && bid.adm.includes('http://')) {
        problems.push(`${p}.adm loads http:// content on a secure imp`);
      }

      // Floors and deals.
      const pmp = isObj(imp.pmp) ? imp.pmp : undefined;
      const deals = pmp !== undefined && Array.isArray(pmp.deals) ? pmp.deals.filter(isObj) : [];
      if (bid.dealid === undefined) {
        if (pmp !== undefined && pmp.private_auction === 1) problems.push(`${p} is an open-market bid on a private auction (no dealid)`);
        const impFloor = typeof imp.bidfloor === 'number' ? imp.bidfloor : 0;
        const impFloorCur = typeof imp.bidfloorcur === 'string' ? imp.bidfloorcur : 'USD';
        const floor = floorIn(impFloor, impFloorCur, respCur, rates);
        if (typeof floor === 'string') problems.push(`${p}: ${floor}, cannot have bid above the floor`);
        else if (floor !== null && price < floor - EPSILON) {
          problems.push(`${p}.price ${price} ${respCur} is below the imp floor ${impFloor} ${impFloorCur} (${floor} ${respCur})`);
        }
      } else {
        const deal = deals.find((d) => d.id === bid.dealid);
        if (deal === undefined) {
          problems.push(`${p}.dealid ${JSON.stringify(bid.dealid)} is not a deal of imp ${String(imp.id)}`);
          return;
        }
        const dealWseat = stringList(deal.wseat);
        if (dealWseat.length > 0 && !(typeof seat === 'string' && dealWseat.includes(seat))) {
          problems.push(`${p} bids on deal ${String(deal.id)} whose wseat excludes seat ${String(seat)}`);
        }
        // The deal floor and its currency do not inherit the imp's (OpenRTB 2.6, 3.2.12).
        const dealFloor = typeof deal.bidfloor === 'number' ? deal.bidfloor : 0;
        const dealFloorCur = typeof deal.bidfloorcur === 'string' ? deal.bidfloorcur : 'USD';
        const floor = floorIn(dealFloor, dealFloorCur, respCur, rates);
        if (typeof floor === 'string') problems.push(`${p}: ${floor}, cannot have bid on deal ${String(deal.id)}`);
        else if (floor !== null && price < floor - EPSILON) {
          problems.push(`${p}.price ${price} ${respCur} is below the deal floor ${dealFloor} ${dealFloorCur} (${floor} ${respCur})`);
        } else if (floor !== null && deal.at === 3 && dealFloor > 0 && Math.abs(price - floor) > EPSILON) {
          // at=3: bidfloor is the agreed deal price (without one, no price is fixed).
          problems.push(`${p}.price ${price} ${respCur} is not the fixed deal price ${dealFloor} ${dealFloorCur} (${floor} ${respCur})`);
        }
      }
    });
  });
  return problems;
}
