/**
 * Serialises a Decision into an OpenRTB 2.6 BidResponse JSON string. Creative fields are pre-serialised at
 * config compile time; this only concatenates the per-bid parts (ids, price, deal, signed event URLs).
 *
 * Every event URL carries a token signed by src/events (HMAC, key id, expiry), so a notice cannot be forged:
 *   nurl/burl/lurl  exchange-scope token, with ${AUCTION_PRICE} / ${AUCTION_LOSS} / ... left for the exchange;
 *   pixel, click    client-scope token, written into the markup (${SEGBID_IMP_URL}, ${SEGBID_CLICK_URL}).
 */
import type { CompiledConfig } from '../config/compile.js';
import { ADM_IMP_URL, FORMAT_VIDEO } from '../config/compile.js';
import type { Decision } from '../bidding/decide.js';
import type { EventHandler } from '../events/event-handler.js';
import { emptyToken, hash32, type TokenFields, type TokenPair } from '../events/token.js';
import { bidIdWithReservation } from '../budget/outcome-listener.js';
import { randomBytes } from 'node:crypto';
import { configEpoch, dealIndex, mostSpecificSegment, primaryUserHash, userHash } from '../events/bid-context.js';

const NURL_TAIL = '&a=${AUCTION_ID}&i=${AUCTION_IMP_ID}&p=${AUCTION_PRICE}&c=${AUCTION_CURRENCY}"';
const LURL_TAIL = '&a=${AUCTION_ID}&i=${AUCTION_IMP_ID}&r=${AUCTION_LOSS}&m=${AUCTION_MIN_TO_WIN}"';

let sequence = 0;

/** Characters of a bid id that name the thread that minted it: 6 for the process, 2 for the worker. */
export const OWNER_TAG_LENGTH = 8;
const PROCESS_TAG_LENGTH = 6;

/** A random process tag (6 base-36 characters: one chance in ~2 billion that two processes share one). */
export function randomProcessTag(): string {
  return (randomBytes(8).readBigUInt64BE() % 36n ** 6n).toString(36).padStart(PROCESS_TAG_LENGTH, '0');
}

/** The owner tag of worker `index` (0 for a process without workers) of the process tagged `processTag`. */
export function ownerTag(processTag: string, index: number): string {
  return processTag + (index % 1296).toString(36).padStart(OWNER_TAG_LENGTH - PROCESS_TAG_LENGTH, '0');
}

let owner = ownerTag(randomProcessTag(), 0);

/**
 * This thread's owner tag, the prefix of every bid id it mints: a budget notice names the thread (and the
 * process) that holds its reservation (src/budget/notice-relay.ts). Random per process unless the server sets it
 * (a cluster's workers share their process's tag).
 */
export function bidIdOwner(): string {
  return owner;
}

export function setBidIdOwner(tag: string): void {
  if (tag.length !== OWNER_TAG_LENGTH) throw new Error(`owner tag must be ${OWNER_TAG_LENGTH} characters`);
  owner = tag;
}

/** The owner tag a bid id starts with, '' when it is too short to carry one. */
export function ownerOfBidId(bidId: string): string {
  return bidId.length > OWNER_TAG_LENGTH ? bidId.slice(0, OWNER_TAG_LENGTH) : '';
}

/** Whether two owner tags name the same process (its workers differ in their last two characters). */
export function sameProcess(a: string, b: string): boolean {
  return a.length === OWNER_TAG_LENGTH && b.length === OWNER_TAG_LENGTH && a.startsWith(b.slice(0, PROCESS_TAG_LENGTH));
}

/**
 * This run of the thread: 6 base-36 characters of the start time in ms (they wrap after ~25 days). The owner tag
 * outlives a restart (it is kept with the state), the sequence does not: without the run, a restarted bidder
 * minted the ids of its previous run again, whose notices the restored dedupe window then took for duplicates
 * or replays (and a click id named two bids).
 */
const run = (Date.now() % 36 ** 6).toString(36).padStart(6, '0');

/** A response-unique id: the owner tag + this run + a sequence (cheap, no crypto on the hot path). */
export function nextBidId(): string {
  sequence = (sequence + 1) % 0x7fffffff;
  return owner + run + sequence.toString(36);
}

function jsonString(s: string): string {
  return JSON.stringify(s);
}

/** One reused token field set: signing copies it into the token buffer at once. */
const fields: TokenFields = emptyToken();
/** The two tokens of the bid being written (one HMAC for both: src/events/token.ts). */
const tokens: TokenPair = { exchange: '', client: '' };

/** The request fields read here (validated upstream); user/device/source feed the token's user and exchange. */
export interface BidRequestView {
  id: string;
  imp: { id: string }[];
  test?: number;
  user?: { buyeruid?: unknown; id?: unknown };
  device?: { ifa?: unknown };
  ext?: { exchange?: unknown };
  source?: { ext?: { exchange?: unknown } };
}

export function buildBidResponse(
  req: BidRequestView,
  d: Decision,
  config: CompiledConfig,
  nowMs: number,
  events: EventHandler,
  userBits: Uint32Array,
  personalData: boolean,
): string {
  const bidId = nextBidId();
  const prefix = config.eventPrefix;
  fields.requestHash = hash32(req.id);
  fields.epoch = configEpoch(config);
  fields.currency = d.respCur;
  fields.timeSec = Math.floor(nowMs / 1000);
  fields.test = req.test === 1;
  fields.exchange = events.exchanges.ofRequest(req);
  // Without consent for personal data, the token carries no user (no caps, no attribution by user).
  if (personalData) primaryUserHash(req);
  fields.userHi = personalData ? userHash.hi : 0;
  fields.userLo = personalData ? userHash.lo : 0;
  const segmentBit = mostSpecificSegment(config.dictionary, userBits);
  let bids = '';
  for (let k = 0; k < d.bidCount; k++) {
    const li = d.lineItem[k]!;
    const cr = d.creative[k]!;
    const impIndex = d.impIndex[k];
    const imp = req.imp[impIndex];
    const deal = d.dealId[k];
    fields.impHash = hash32(imp.id);
    fields.impIndex = impIndex;
    fields.lineItem = li.index;
    fields.arm = d.arm[k];
    fields.segmentBit = segmentBit;
    fields.creative = cr.index;
    fields.deal = dealIndex(li, deal);
    fields.priceMicros = d.priceMicros[k];
    // A budgeted bid carries its ledger reservation, so its win/billing/loss notice settles exactly it.
    fields.bidId = bidIdWithReservation(bidId + '-' + k, d.reservation[k]);
    let token: string;
    let clientToken = '';
    if (cr.admSlots.length > 0) {
      events.signPair(fields, tokens);
      token = tokens.exchange;
      clientToken = tokens.client;
    } else {
      token = events.sign(fields, 'exchange');
    }
    events.noteBid(fields);
    let adm = '"adm":"' + cr.admParts[0];
    if (cr.admSlots.length > 0) {
      for (let s = 0; s < cr.admSlots.length; s++) {
        adm += (cr.admSlots[s] === ADM_IMP_URL ? prefix + 'imp?t=' + clientToken : prefix + 'click?t=' + clientToken + cr.landingParam) + cr.admParts[s + 1];
      }
    }
    bids +=
      (k > 0 ? ',{"id":"' : '{"id":"') + fields.bidId +
      '","impid":' + jsonString(imp.id) +
      ',"price":' + d.priceMicros[k] / 1e6 + ',' +
      cr.jsonFields +
      // A banner's w/h are in jsonFields (pre-serialised); a video's come from the decision (its own size, else
      // the imp's player size), absent unless both are known. Native and audio bids carry none (no creative size).
      (cr.format === FORMAT_VIDEO && d.w[k] > 0 && d.h[k] > 0 ? ',"w":' + d.w[k] + ',"h":' + d.h[k] : '') +
      (deal !== null ? ',"dealid":' + jsonString(deal) : '') +
      ',"mtype":' + cr.format + ',' +
      adm +
      '","nurl":"' + prefix + 'win?t=' + token + NURL_TAIL +
      ',"burl":"' + prefix + 'bill?t=' + token + NURL_TAIL +
      ',"lurl":"' + prefix + 'loss?t=' + token + LURL_TAIL + '}';
  }
  return '{"id":' + jsonString(req.id) + ',"bidid":"' + bidId + '","cur":"' + d.respCur + '","seatbid":[{"seat":' + config.seatJson + ',"bid":[' + bids + ']}]}';
}

export function buildNoBidResponse(reqId: string | undefined, nbr: number): string {
  return '{"id":' + jsonString(reqId ?? '') + ',"seatbid":[],"nbr":' + nbr + '}';
}
