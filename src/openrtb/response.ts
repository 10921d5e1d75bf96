/**
 * Serialises a Decision into an OpenRTB 2.6 BidResponse JSON string. Creative fields are pre-serialised at
 * config compile time; this only concatenates the per-bid parts (ids, price, deal, event URLs).
 *
 * Event URLs keep the OpenRTB substitution macros (${AUCTION_PRICE}, ${AUCTION_LOSS}, ...) for the exchange to
 * fill; the bidder's own fields are plain query parameters.
 */
import type { CompiledConfig } from '../config/compile.js';
import type { Decision } from '../bidding/decide.js';

const NURL_TAIL = '&a=${AUCTION_ID}&i=${AUCTION_IMP_ID}&p=${AUCTION_PRICE}&c=${AUCTION_CURRENCY}';
const BURL_TAIL = '&a=${AUCTION_ID}&i=${AUCTION_IMP_ID}&p=${AUCTION_PRICE}&c=${AUCTION_CURRENCY}';
const LURL_TAIL = '&a=${AUCTION_ID}&i=${AUCTION_IMP_ID}&r=${AUCTION_LOSS}&m=${AUCTION_MIN_TO_WIN}';

let sequence = 0;
const instance = (process.pid.toString(36) + Date.now().toString(36)).slice(-8);

/** A response-unique id: instance prefix + sequence (cheap, no crypto on the hot path). */
export function nextBidId(): string {
  sequence = (sequence + 1) % 0x7fffffff;
  return instance + sequence.toString(36);
}

function jsonString(s: string): string {
  return JSON.stringify(s);
}

export function buildBidResponse(req: { id: string; imp: { id: string }[]; test?: number }, d: Decision, config: CompiledConfig, nowMs: number): string {
  const bidId = nextBidId();
  const ts = Math.floor(nowMs / 1000);
  const testFlag = req.test === 1 ? '&test=1' : '';
  let bids = '';
  for (let k = 0; k < d.bidCount; k++) {
    const li = d.lineItem[k]!;
    const cr = d.creative[k]!;
    const imp = req.imp[d.impIndex[k]];
    const price = d.priceMicros[k] / 1e6;
    const query = `?b=${bidId}-${k}&li=${li.urlId}&cr=${encodeURIComponent(cr.id)}&bp=${d.priceMicros[k]}&ts=${ts}${testFlag}`;
    const deal = d.dealId[k];
    bids +=
      (k > 0 ? ',{"id":"' : '{"id":"') + bidId + '-' + k +
      '","impid":' + jsonString(imp.id) +
      ',"price":' + price + ',' +
      cr.jsonFields +
      (deal !== null ? ',"dealid":' + jsonString(deal) : '') +
      ',"mtype":' + cr.format + ',' +
      cr.admField +
      ',"nurl":"' + config.eventPrefix + 'win' + query + NURL_TAIL +
      '","burl":"' + config.eventPrefix + 'bill' + query + BURL_TAIL +
      '","lurl":"' + config.eventPrefix + 'loss' + query + LURL_TAIL + '"}';
  }
  return '{"id":' + jsonString(req.id) + ',"bidid":"' + bidId + '","cur":"' + d.respCur + '","seatbid":[{"seat":' + config.seatJson + ',"bid":[' + bids + ']}]}';
}

export function buildNoBidResponse(reqId: string | undefined, nbr: number): string {
  return '{"id":' + jsonString(reqId ?? '') + ',"seatbid":[],"nbr":' + nbr + '}';
}
