/**
 * The records of the event pipeline and the outcome hooks.
 *
 * Contract: an EventRecord is what the pipeline accepted, self-contained (ids, not config indices; money already
 * in integer micro-units of the bidder currency; the billable decision already taken), so that applying it
 * needs no config and replaying the log rebuilds exactly what was counted live. Records are written to the
 * event log as they are (msgpack), so field names are short and changing one is a log format change
 * (EVENT_RECORD_VERSION).
 */

export const EVENT_RECORD_VERSION = 1;

export const NOTICE_KINDS = ['win', 'bill', 'loss', 'imp', 'click'] as const;
export type NoticeKind = (typeof NOTICE_KINDS)[number];
export type EventKind = NoticeKind | 'conv';

/** Where a notice's price came from: the exchange's macro, or our own bid price (macro missing or unreadable). */
export type PriceSource = 'macro' | 'bid';

/** A win, billing, loss, impression or click notice. */
export interface NoticeRecord {
  k: NoticeKind;
  /** Receive time, ms since the epoch. */
  t: number;
  /** Bid time (from the token), seconds since the epoch: day buckets use it so an auction's events share a day. */
  at: number;
  /** Bid id. */
  b: string;
  li: string;
  cr: string;
  /** Most specific matched segment id, null when none. */
  sg: string | null;
  arm: number;
  /** Exchange name from the configured list, or 'other'. */
  x: string;
  /** Deal id, null in the open auction. */
  dl: string | null;
  /** 1 = test traffic: logged, never billable, kept out of the KPIs. */
  ts: 0 | 1;
  /** Bid price (CPM), micros of the bidder currency. */
  bp: number;
  /** Clearing price (CPM) of a win/bill, micros of the bidder currency; 0 for other kinds. */
  p: number;
  ps: PriceSource;
  /** 1 = this notice books spend (the exchange's billable event: `burl`, or the win where no burl is sent). */
  bl: 0 | 1;
  /** Loss reason code (loss only), -1 unknown. */
  lr: number;
  /** Minimum bid to win (CPM, loss only), micros of the bidder currency, -1 unknown. */
  mw: number;
  /** User key hash (16 hex), '' unknown: the touch index key for conversion attribution. */
  u: string;
}

export type Attribution = 'click' | 'view' | 'none';

/** A conversion postback, with the attribution decided when it arrived. */
export interface ConversionRecord {
  k: 'conv';
  t: number;
  /** Conversion time (as reported), ms. */
  ct: number;
  /** Attributed bid id, '' when unattributed. */
  b: string;
  li: string;
  cr: string;
  sg: string | null;
  arm: number;
  x: string;
  dl: string | null;
  /** Bid time of the attributed touch, seconds; 0 when unattributed. */
  at: number;
  ts: 0 | 1;
  attr: Attribution;
  /** Conversion value, micros of the bidder currency. */
  v: number;
  /** Order id (dedupe key), '' when not given. */
  oid: string;
  u: string;
  /**
   * Without an order id: the postback's dedupe key (a hash of its body), so that a restart rebuilds its dedupe
   * too. Absent with an order id (and in records written before it existed).
   */
  dk?: string;
}

/** One aggregated bid-count row: bids are too many to log one by one. */
export interface BidRow {
  li: string;
  cr: string;
  sg: string | null;
  x: string;
  dl: string | null;
  /** UTC day of the bids, YYYY-MM-DD. */
  day: string;
  n: number;
  /** Sum of bid prices (CPMs), micros of the bidder currency. */
  bp: number;
}

/** Bid counts since the previous BidsRecord (test bids are not tallied). */
export interface BidsRecord {
  k: 'bids';
  t: number;
  rows: BidRow[];
}

export type EventRecord = NoticeRecord | ConversionRecord | BidsRecord;

/** Context handed to outcome listeners with every outcome. */
export interface OutcomeContext {
  lineItemId: string;
  bidId: string;
  arm: number;
  /** Most specific matched segment bit in the current config, -1 none. */
  segmentBit: number;
  /** Creative index in the current config, -1 when the creative is no longer configured. */
  creative: number;
  /** Our bid price (CPM), micros of the bidder currency. */
  bidMicros: number;
  exchange: string;
  dealId: string | null;
  nowMs: number;
  /** The user key hash of the bid (16 hex digits, '' when unknown or without consent): frequency caps. */
  user: string;
}

/**
 * Feedback hooks: the allocator's posteriors, the shading curves and the creative rotation plug in here.
 *
 * `lineItem` is the index in the CURRENT config (the pipeline maps the token's config epoch to it, and skips
 * the call when the line item is no longer configured). Prices are CPMs in micros of the bidder currency (one
 * impression costs price / 1000); conversion values are plain micros. Called once
 * per accepted, non-test, non-duplicate event, synchronously, after the event is logged and counted; a
 * throwing listener is counted and ignored. Every method is optional.
 */
export interface OutcomeListener {
  onWin?(lineItem: number, priceMicros: number, ctx: OutcomeContext): void;
  /** The billable event (spend to book): `burl`, or the win for exchanges configured to bill on win. */
  onBill?(lineItem: number, priceMicros: number, ctx: OutcomeContext): void;
  /** minToWinMicros and lossReason are -1 when the exchange did not say. */
  onLoss?(lineItem: number, bidMicros: number, minToWinMicros: number, lossReason: number, ctx: OutcomeContext): void;
  onImpression?(lineItem: number, ctx: OutcomeContext): void;
  onClick?(lineItem: number, ctx: OutcomeContext): void;
  onConversion?(lineItem: number, valueMicros: number, attribution: Attribution, ctx: OutcomeContext): void;
}

let cachedDayStart = -1;
let cachedDay = '';

/** UTC day of a time in seconds, YYYY-MM-DD (memoised: the bid tally calls it per bid, the day rarely changes). */
export function dayOfSec(sec: number): string {
  const start = sec - (((sec % 86400) + 86400) % 86400);
  if (start !== cachedDayStart) {
    cachedDayStart = start;
    cachedDay = new Date(start * 1000).toISOString().slice(0, 10);
  }
  return cachedDay;
}
