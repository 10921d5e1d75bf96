/**
 * The decision: one synchronous pass from a validated BidRequest to at most one bid per imp. It reads top to
 * bottom in the order of the pipeline, cheapest and most selective filters first:
 *
 *   request gates (test, seats, tmax, currency)      O(1), reject whole requests before any per-item work
 *   privacy verdict (GDPR/TCF, COPPA, USP, GPP)      cached per consent string; no consent: personal-data
 *                                                    line items leave the candidates, the user is not looked up
 *   supply tables (active & channel & device & geo)  a few word-ANDs over precomputed line-item bitsets
 *   user keys -> segment bits                        one hash + probe per key into the segment store
 *   targeting programs                               mask tests over the user's bits, only for survivors
 *   per line item: caps, budget/pacing, bounds       frequency caps (skipped for a user the cap store holds
 *                                                    nothing of), the BidPolicy (budgets, pacing, allocator),
 *                                                    the most the value and the rank can be on any imp (with
 *                                                    a policy that sorts its ranks, read from two sorted lists
 *                                                    per imp instead: walkRanked / walkPriced)
 *   per imp, best bound first: value, deals, format, strategy base bid x multipliers (tables refreshed off path),
 *     floor, shading                                 then the imp's constraints; stops when no rank bound left
 *                                                    can beat the best offer; the creative follows the user's
 *                                                    most specific segment
 *   choice and reservation                           best rank (the policy's, default price); the budget is
 *                                                    reserved for the chosen bid, else the next best is tried
 *
 * A Decider is built once per (config, store) pair and owns every scratch buffer, so deciding allocates nothing
 * but what the request itself forces. Never throws on request content: it returns a no-bid reason code.
 */
import { NO_BID, STAGE_OF } from '../openrtb/reasons.js';
import type { CompiledConfig, CompiledCreative, CompiledLineItem } from '../config/compile.js';
import { CHANNEL_APP, CHANNEL_DOOH, CHANNEL_SITE, FORMAT_AUDIO, FORMAT_BANNER, FORMAT_NATIVE, FORMAT_VIDEO } from '../config/compile.js';
import type { SegmentStore } from '../segments/segment-store.js';
import { UserKeys } from '../segments/user-keys.js';
import { PrivacyVerdict } from '../privacy/verdict.js';
import { RequestSegmenter } from '../segments/request-bits.js';
import { MultiplierContext } from './multipliers.js';
import { TargetingIndex } from './targeting-index.js';
import type { BiddingPlan } from './bidding-plan.js';
import type { ShadingTable } from './shading.js';
import { shadingArm } from './learning.js';
import { exchangeName, primaryUserHash, userHash } from '../events/bid-context.js';

/* The request as the decision reads it: validate.ts has checked the type of every field used here. */
type Any = any; // eslint-disable-line @typescript-eslint/no-explicit-any


/**
 * What budgets, pacing and the test-and-learn allocator say about line items (src/budget). Called on the hot
 * path: implementations answer from precomputed state (typed arrays refreshed off the hot path) and allocate
 * nothing. Money is integer micro-units of the bidder currency; one impression of a CPM bid costs cpm/1000.
 */
export interface BidPolicy {
  /** May this line item bid at all now (not paused, budget left, pacing throttle passed)? One comparison each. */
  eligible(lineItem: number, nowMs: number): boolean;
  /**
   * Optional: eligible() for every set bit of `candidates`, in ascending order (the same draws), clearing the bits
   * of the line items refused; returns the highest line item refused, -1 when none. A policy that lets most line
   * items through without a draw skips them with one word-AND instead of a call each.
   */
  eligibleAll?(candidates: Uint32Array, nowMs: number): number;
  /**
   * Ranking among the line items that can serve an imp; higher wins. The default ranks by price. Must not
   * decrease as the price grows: the decider bounds a line item's rank by its rank at the highest price it could
   * offer, and never values the line items whose bound cannot beat the best offer found.
   */
  rank(lineItem: number, priceMicros: number): number;
  /**
   * Reserves the maximum cost of a bid about to be sent (costMicros = price of one impression, bidder
   * currency). False = not affordable: the bid is dropped and the imp goes to the next best line item.
   */
  reserve(lineItem: number, costMicros: number, nowMs: number): boolean;
  /** The ledger handle of the last successful reserve (carried in the bid id so notices settle it), -1 none. */
  readonly lastReservation?: number;
  /**
   * Optional, with rankOrder: the line items whose rank does not depend on the price (rank(li, p) the same for
   * every p this request), as a bitset; every other line item must rank by its price (rank(li, p) = p).
   */
  readonly priceFreeMask?: Uint32Array;
  /**
   * Optional, with priceFreeMask: the price-free line items in descending order of this request's rank, NaN ranks
   * last (valid for this request). With both, the decider walks an imp's candidates best rank first from two
   * sorted lists (this one, and the price-ranked line items by their most possible price) instead of keying
   * every candidate and heaping them: a request then costs the few candidates it prices, not the hundreds it
   * matches.
   */
  rankOrder?(nowMs: number): Int32Array;
}

/** No budgets: every active line item bids, the highest price wins. */
export const UNLIMITED_POLICY: BidPolicy = {
  eligible: () => true,
  rank: (_lineItem, priceMicros) => priceMicros,
  reserve: () => true,
};

/** The result of one decision; reused across requests (read it before the next decide call). */
export class Decision {
  /** NO_BID.none when at least one bid was made, else the no-bid reason. */
  reason: number = NO_BID.none;
  bidCount = 0;
  respCur = 'USD';
  knownUser = false;
  impIndex: Int32Array = new Int32Array(16);
  priceMicros: Float64Array = new Float64Array(16);
  lineItem: (CompiledLineItem | null)[] = new Array(16).fill(null);
  creative: (CompiledCreative | null)[] = new Array(16).fill(null);
  dealId: (string | null)[] = new Array(16).fill(null);
  /** Ledger reservation handle of each bid (-1 when not budgeted). */
  reservation: Float64Array = new Float64Array(16);
  /** Shading context of each bid for the event token (src/bidding/learning.ts shadingArm). */
  arm: Int32Array = new Int32Array(16);
  /**
   * The served size (OpenRTB Bid.w/h, the creative's): a banner's own; a video creative's own when it has one,
   * else the imp's player size (video.w/h); 0/0 when unknown (the response then carries none).
   */
  w: Int32Array = new Int32Array(16);
  h: Int32Array = new Int32Array(16);

  ensure(n: number): void {
    if (n <= this.impIndex.length) return;
    const size = Math.max(n, this.impIndex.length * 2);
    this.impIndex = new Int32Array(size);
    this.priceMicros = new Float64Array(size);
    this.arm = new Int32Array(size);
    this.reservation = new Float64Array(size);
    this.w = new Int32Array(size);
    this.h = new Int32Array(size);
    this.lineItem = new Array(size).fill(null);
    this.creative = new Array(size).fill(null);
    this.dealId = new Array(size).fill(null);
  }
}

export class Decider {
  readonly config: CompiledConfig;
  readonly store: SegmentStore;
  /** The segment bits of the request being decided (valid until the next decide call). */
  readonly userBits: Uint32Array;
  private readonly candidates: Uint32Array;
  /** The request's user keys, hashed once (src/segments/user-keys.ts). */
  private readonly userKeys = new UserKeys();
  /** The targeting stage (src/bidding/targeting-index.ts): inverted index, flat masks, programs. */
  private readonly targeting: TargetingIndex;
  /**
   * Line-item bitsets copied from the line items at load, so the per-imp loop reads typed arrays (isSet): lists
   * deals, bids on deals only. As bitsets, an imp's open-auction admission is one word-AND (impAdmit).
   */
  private readonly hasDealsMask: Uint32Array;
  private readonly dealsOnlyMask: Uint32Array;
  /** Per imp: the line items openAuctionAdmits accepts (impFit minus deals-only, none in a private auction). */
  private readonly impAdmit: Uint32Array;
  /**
   * Which line items have a creative that can fit an imp, precomputed: banner creatives by exact size
   * (w * 65536 + h, as fitsFormat matches them), the other media types by type. Per imp, OR-ing the rows of its
   * sizes and media types gives `impFit`: a candidate outside it cannot have a creative for the imp, which is what
   * pickCreative would find after drawing a rotation (a superset: the user's tier may hold fewer creatives).
   */
  private readonly fitBySize: Map<number, Uint32Array>;
  private readonly fitByMedia: Uint32Array[];
  private readonly impFit: Uint32Array;
  /** Per imp: line items priced under the floor, whose creative is looked at only if the imp gets no bid. */
  private readonly floorMiss: Int32Array;
  /** Per-request creative block memo: blockedGen[c] === generation means decided this request. */
  private readonly creativeGen: Uint32Array;
  private readonly creativeBlocked: Uint8Array;
  private generation = 0;
  /**
   * Per-imp creative verdict memo (format fit, request and imp blocks; the deal's wadomain is checked apart):
   * verdictGen[c] === impGeneration means creativeVerdictOf[c] holds 0 = no format fit, 1 = fits but blocked,
   * 2 = eligible. Line items share creatives, so an imp whose creatives are all blocked costs one check per
   * creative, not one per line item and creative.
   */
  private readonly verdictGen: Uint32Array;
  private readonly creativeVerdictOf: Uint8Array;
  private impGeneration = 0;
  /**
   * Which line items use each creative: row c (lineWords words) of creativeUsers. After an imp's first creative
   * miss, OR-ing the rows of its eligible creatives (and of those that fit but are blocked) tells, for one pass over
   * the creatives, which candidates cannot find a creative on this imp: they are dropped unpriced. Null when the
   * table would be too large (creatives x line items / 32 over MAX_CREATIVE_USER_WORDS).
   */
  private readonly creativeUsers: Uint32Array | null;
  private readonly impCreativeOk: Uint32Array;
  private readonly impCreativeFits: Uint32Array;
  readonly plan: BiddingPlan;
  /** Set once, before the decider serves (the budget policy outlives config swaps: see BidHandler). */
  policy: BidPolicy;
  /**
   * Tests only: price every candidate of an imp instead of stopping at the first bound that cannot beat the
   * best offer, and without the per-imp creative mask. The same choice and the same no-bid reason must come out
   * (test/decide-best-first.test.ts): the bounds are never too low, the mask drops only hopeless candidates.
   */
  exhaustive = false;
  /** The privacy verdict of the request being decided. */
  readonly verdict = new PrivacyVerdict();
  private readonly mctx: MultiplierContext;
  /** Third-party, contextual, lookalike and group bits of a request (src/segments/request-bits.ts). */
  private readonly segmenter: RequestSegmenter;
  /**
   * Value (strategy x multipliers, CPM micros, bidder currency) per line item, computed on demand: valid for this
   * request when valueGen[li] === generation (-1 = the strategy does not bid).
   */
  private readonly value: Float64Array;
  private readonly valueGen: Uint32Array;
  /**
   * Heap mode: per candidate of this request, the most its value can be in the response currency (mostBidder /
   * respRate, rounded down; the walk computes it when it needs it). Exact for a line item without multipliers. Per
   * imp, the price it bounds (shaded at the imp's floor band) gives the most the line item's rank can be there.
   */
  private readonly mostResp: Float64Array;
  /**
   * Per line item, the most its value can be in the bidder currency (strategy base bid x the multipliers' upper
   * bound, capped): mostResp before the currency. It changes only when the strategies refresh (their version).
   */
  private readonly mostBidder: Float64Array;
  private mostVersion = -1;
  /** The capped line items (plan.capPlan.capped) as a bitset: one word-AND finds a request's capped candidates. */
  private readonly cappedMask: Uint32Array;
  /**
   * Heap mode: per candidate of this request, the policy's rank at mostResp: a bound of its rank on every imp of
   * the request (a shaded price is at most the value, and the rank never decreases as the price grows). NaN is
   * stored as -Infinity.
   */
  private readonly looseKey: Float64Array;
  /**
   * Heap mode (a policy without rankOrder): per-imp max-heap of candidates by rank bound, the order in which they
   * are valued and priced. An entry is
   * (line item << 1) | tight: it enters with its loose key (looseKey) and gets its imp's key (shaded at the imp's
   * floor band, see tightKey) only when it reaches the top; a key that drops is sifted down again. The entry at
   * the top with a tight key therefore has the highest imp key of all: candidates are priced in the same order as
   * if every imp key had been computed up front, for the few that reach the top instead of all of them.
   */
  private readonly heapKey: Float64Array;
  private readonly heapItem: Int32Array;
  /**
   * Walk mode (the policy has rankOrder and priceFreeMask; decided per request): an imp's candidates come best
   * key first from two sorted lists instead of the heap. walkRanked: the policy's price-free line items by this
   * request's rank (its keys are final). walkPriced: the other line items that can bid at all, by mostBidder,
   * highest first; a price-ranked line item's loose key is its most possible price (mostBidder / respRate,
   * rounded down: the same order in every currency), tightened at the imp's floor band when it reaches the front
   * and put in the heap (heapKey / heapItem, tight keys only). walkAt*: each list's next entry for the imp.
   * impOk: the candidates that may bid on the imp (admitCandidates), the lists' filter.
   */
  private walking = false;
  private walkRanked: Int32Array = new Int32Array(0);
  private walkPriced: Int32Array = new Int32Array(0);
  private walkAtRanked = 0;
  private walkAtPriced = 0;
  /** Entries of the walk's heap. */
  private walkHeap = 0;
  /** Candidates left in impOk (not reached yet): at 0 the lists are not walked to their end for nothing. */
  private walkLeft = 0;
  private readonly impOk: Uint32Array;
  /** The line items whose strategy can bid at all (mostBidder > 0), as a bitset; refreshed with mostBidder. */
  private readonly bidsMask: Uint32Array;
  /** The policy walkPriced was built for (its price-free line items are left out), and the strategies version. */
  private walkPolicy: BidPolicy | null = null;
  private walkVersion = -1;
  /** refreshWalkPriced's scratch: the order being built, and which line items it holds. */
  private readonly walkScratch: Int32Array;
  private readonly walkListed: Uint8Array;
  /** Line item priority (the tie-break of equal ranks), copied at load so comparing reads a typed array. */
  private readonly priority: Float64Array;
  /** Bound once: the creative selector's eligibility callback (no closure per request). */
  private readonly eligible: (creative: number) => boolean;
  /* per-request state, set by decide() for the helpers below */
  private deepest = 0;
  private deepestReason: number = NO_BID.none;
  private curReq: Any = null;
  private curImp: Any = null;
  private curWadomain: string[] | undefined = undefined;
  private formatOk = false;
  private exchange = 0;
  private auctionType = 2;
  /** Bidder currency units per unit of the response currency (out.respCur). */
  private respRate = 1;
  /* per-imp state, set by decideImp for offer() */
  private impDeals: Any[] | undefined = undefined;
  private impPrivate = false;
  private impFloor = 0;
  /** The shading floor band of the imp's floor (ShadingTable.bandOf, bidder currency). */
  private impBand = 0;
  private floorMisses = 0;
  /* what offer() found besides the price */
  private offerCreative: CompiledCreative | null = null;
  private offerDeal: string | null = null;
  /** The offers priced on the current imp (decideImp): line item, rank, price, creative (deals), deal id. */
  private readonly offerItem: Int32Array;
  private readonly offerRank: Float64Array;
  private readonly offerPrice: Float64Array;
  private readonly offerCreatives: (CompiledCreative | null)[];
  private readonly offerDeals: (string | null)[];

  constructor(config: CompiledConfig, store: SegmentStore, policy: BidPolicy = UNLIMITED_POLICY) {
    this.config = config;
    this.store = store;
    this.plan = config.plan;
    this.policy = policy;
    this.mctx = new MultiplierContext(config.plan.multipliers);
    const dict = config.dictionary;
    this.segmenter = new RequestSegmenter({ width: dict.words * 32, segments: [...dict.segments] }, store.header, dict);
    this.value = new Float64Array(config.lineItems.length);
    this.valueGen = new Uint32Array(config.lineItems.length);
    this.mostResp = new Float64Array(config.lineItems.length);
    this.looseKey = new Float64Array(config.lineItems.length);
    this.mostBidder = new Float64Array(config.lineItems.length);
    this.heapKey = new Float64Array(config.lineItems.length);
    this.heapItem = new Int32Array(config.lineItems.length);
    this.priority = Float64Array.from(config.lineItems, (li) => li.priority);
    this.offerItem = new Int32Array(config.lineItems.length);
    this.offerRank = new Float64Array(config.lineItems.length);
    this.offerPrice = new Float64Array(config.lineItems.length);
    this.offerCreatives = new Array<CompiledCreative | null>(config.lineItems.length).fill(null);
    this.offerDeals = new Array<string | null>(config.lineItems.length).fill(null);
    this.eligible = (c: number) => this.creativeEligible(c);
    this.userBits = new Uint32Array(config.dictionary.words);
    this.candidates = new Uint32Array(config.supply.words);
    const lw = config.supply.words;
    this.hasDealsMask = new Uint32Array(lw);
    this.dealsOnlyMask = new Uint32Array(lw);
    for (const li of config.lineItems) {
      if (li.deals.size > 0) setBit(this.hasDealsMask, li.index);
      if (li.dealsOnly) setBit(this.dealsOnlyMask, li.index);
    }
    this.impAdmit = new Uint32Array(lw);
    this.impOk = new Uint32Array(lw);
    this.walkScratch = new Int32Array(config.lineItems.length);
    this.walkListed = new Uint8Array(config.lineItems.length);
    this.bidsMask = new Uint32Array(lw);
    this.cappedMask = new Uint32Array(lw);
    const capped = config.plan.capPlan.capped;
    for (let li = 0; li < capped.length && li < config.lineItems.length; li++) if (capped[li] === 1) setBit(this.cappedMask, li);
    this.fitBySize = new Map();
    this.fitByMedia = [FORMAT_BANNER, FORMAT_VIDEO, FORMAT_AUDIO, FORMAT_NATIVE, 0].map(() => new Uint32Array(lw));
    this.impFit = new Uint32Array(lw);
    this.floorMiss = new Int32Array(config.lineItems.length);
    for (const li of config.lineItems) {
      for (const cr of li.creatives) {
        let row = this.fitByMedia[cr.format];
        if (cr.format === FORMAT_BANNER) {
          const key = cr.w * 65536 + cr.h;
          row = this.fitBySize.get(key) ?? new Uint32Array(lw);
          this.fitBySize.set(key, row);
        }
        if (row !== undefined) setBit(row, li.index);
      }
    }
    this.creativeUsers = config.creatives.length * lw <= MAX_CREATIVE_USER_WORDS ? new Uint32Array(config.creatives.length * lw) : null;
    if (this.creativeUsers !== null) {
      for (const li of config.lineItems) for (const cr of li.creatives) this.creativeUsers[cr.index * lw + (li.index >>> 5)] |= 1 << (li.index & 31);
    }
    this.impCreativeOk = new Uint32Array(lw);
    this.impCreativeFits = new Uint32Array(lw);
    this.targeting = new TargetingIndex(config.lineItems.map((li) => li.targeting), config.dictionary.words, lw);
    this.creativeGen = new Uint32Array(config.creatives.length);
    this.creativeBlocked = new Uint8Array(config.creatives.length);
    this.verdictGen = new Uint32Array(config.creatives.length);
    this.creativeVerdictOf = new Uint8Array(config.creatives.length);
  }

  private note(reason: number): void {
    const stage = STAGE_OF[reason];
    if (stage >= this.deepest) {
      this.deepest = stage;
      this.deepestReason = reason;
    }
  }

  /** Decides on a validated request. `nowMs` is the one clock read of this request. */
  decide(req: Any, nowMs: number, out: Decision): void {
    out.bidCount = 0;
    out.knownUser = false;
    this.deepest = 0;
    this.deepestReason = NO_BID.none;
    out.reason = this.requestGates(req, out);
    if (out.reason !== NO_BID.none) return;
    const plan = this.plan;
    const personal = plan.privacy.evaluate(req, this.verdict).personalData;
    if (!this.supplyCandidates(req) || (!personal && !this.withoutPersonalData())) {
      out.reason = this.deepestReason;
      return;
    }
    if (personal) out.knownUser = this.userSegments(req);
    else this.userBits.fill(0);
    // After the store rows: a seed member is not scored into its own lookalike.
    this.segmenter.orRequestBits(req, nowMs, this.userBits, personal);
    if (!this.targeting.survivors(this.candidates, this.userBits)) {
      out.reason = NO_BID.unmatched_user;
      return;
    }
    const bits = personal ? this.userBits : null;
    plan.multipliers.fillContext(this.mctx, req, nowMs, bits);
    plan.selector.prepareUser(bits);
    this.exchange = plan.shading.exchangeIndex(exchangeName(req));
    this.auctionType = req.at === 1 ? 1 : 2;
    this.generation = (this.generation + 1) >>> 0 || 1;
    this.respRate = this.config.rates.get(out.respCur)!;
    if (!this.lineItemGates(req, nowMs, personal)) {
      out.reason = this.deepestReason;
      return;
    }
    const imps = req.imp as Any[];
    out.ensure(imps.length);
    for (let i = 0; i < imps.length; i++) this.decideImp(req, imps[i], i, nowMs, out);
    if (out.bidCount === 0) out.reason = this.deepestReason === NO_BID.none ? NO_BID.no_matching_format : this.deepestReason;
  }

  /** Without consent, line items that need personal data leave the candidates. False when none is left. */
  private withoutPersonalData(): boolean {
    const cand = this.candidates;
    const mask = this.plan.personalMask;
    let any = 0;
    for (let w = 0; w < cand.length; w++) any |= cand[w] &= ~mask[w];
    if (any === 0) this.note(NO_BID.privacy_restricted);
    return any !== 0;
  }

  /**
   * Per surviving line item, once per request (nothing here depends on the imp): frequency caps, the budget
   * policy (pause, budget, pacing, allocation), then the value bound (see mostResp). The value itself is computed
   * only for the line items an imp gets to (valueOf): with hundreds of candidates, an imp is decided by the few
   * whose bound can still beat the best offer. Every candidate still passes the policy's gate here, so pacing
   * counts the same opportunities. Three passes over the candidates, each reading its own tables (the policy's
   * draws in the order a single loop would make them); the reasons, which share a stage, are noted in the order
   * that loop would have noted them. False when no line item is left.
   */
  private lineItemGates(req: Any, nowMs: number, personal: boolean): boolean {
    const plan = this.plan;
    const cand = this.candidates;
    let lastCapped = -1;
    if (plan.anyCaps && personal) {
      primaryUserHash(req);
      const capUser = userHash.hi !== 0 || userHash.lo !== 0;
      // A capped line item cannot count impressions of a user without a key: it does not bid. A user the cap
      // store holds no impression of is under every cap: no probe per capped line item.
      if (!capUser || plan.caps.userMayBeCapped(userHash)) {
        const cappedMask = this.cappedMask;
        for (let w = 0; w < cand.length; w++) {
          let x = cand[w] & cappedMask[w];
          while (x !== 0) {
            const low = x & -x;
            const li = (w << 5) + 31 - Math.clz32(low);
            x ^= low;
            if (!capUser || !plan.caps.checkUser(userHash, li, nowMs)) {
              cand[w] &= ~low;
              lastCapped = li;
            }
          }
        }
      }
    }
    const policy = this.policy;
    let lastPaced = -1;
    if (policy.eligibleAll !== undefined) {
      lastPaced = policy.eligibleAll(cand, nowMs);
    } else {
      for (let w = 0; w < cand.length; w++) {
        let x = cand[w];
        while (x !== 0) {
          const low = x & -x;
          const li = (w << 5) + 31 - Math.clz32(low);
          x ^= low;
          if (!policy.eligible(li, nowMs)) {
            cand[w] &= ~low;
            lastPaced = li;
          }
        }
      }
    }
    if (plan.strategies.version !== this.mostVersion) this.refreshMostBidder();
    this.walking = policy.rankOrder !== undefined && policy.priceFreeMask !== undefined;
    if (this.walking) return this.walkGates(nowMs, lastCapped, lastPaced);
    const mostBidder = this.mostBidder;
    const mostResp = this.mostResp;
    const looseKey = this.looseKey;
    const respRate = this.respRate;
    let lastNoBid = -1;
    let any = 0;
    for (let w = 0; w < cand.length; w++) {
      let x = cand[w];
      while (x !== 0) {
        const low = x & -x;
        const li = (w << 5) + 31 - Math.clz32(low);
        x ^= low;
        const most = mostBidder[li];
        if (!(most > 0)) {
          // Whatever the request's multipliers, the strategy does not bid.
          cand[w] &= ~low;
          lastNoBid = li;
          continue;
        }
        const m = Math.floor(most / respRate);
        mostResp[li] = m;
        const key = policy.rank(li, m);
        looseKey[li] = key === key ? key : -Infinity; // a NaN rank never wins (decideImp compares with >)
      }
      any |= cand[w];
    }
    if (lastCapped >= 0 || lastPaced >= 0 || lastNoBid >= 0) this.noteGates(lastCapped, lastPaced, lastNoBid);
    return any !== 0;
  }

  /**
   * lineItemGates' last pass in walk mode: no key per candidate (the walk reads them from the sorted lists), only
   * the line items whose strategy cannot bid leave, one word-AND each.
   */
  private walkGates(nowMs: number, lastCapped: number, lastPaced: number): boolean {
    const policy = this.policy;
    if (this.walkPolicy !== policy || this.walkVersion !== this.mostVersion) this.refreshWalkPriced();
    this.walkRanked = policy.rankOrder!(nowMs);
    const cand = this.candidates;
    const bids = this.bidsMask;
    let lastNoBid = -1;
    let any = 0;
    for (let w = 0; w < cand.length; w++) {
      const drop = cand[w] & ~bids[w];
      if (drop !== 0) {
        lastNoBid = (w << 5) + 31 - Math.clz32(drop);
        cand[w] &= bids[w];
      }
      any |= cand[w];
    }
    if (lastCapped >= 0 || lastPaced >= 0 || lastNoBid >= 0) this.noteGates(lastCapped, lastPaced, lastNoBid);
    return any !== 0;
  }

  /**
   * walkPriced: the line items outside the policy's priceFreeMask that can bid, by mostBidder, highest first (then
   * the lower line item). Redone on the first request after each strategies refresh (every second live), which
   * moves a few values: the previous order is kept and insertion-sorted, about one pass instead of a sort.
   */
  private refreshWalkPriced(): void {
    const free = this.policy.priceFreeMask!;
    const most = this.mostBidder;
    const order = this.walkScratch;
    const listed = this.walkListed;
    listed.fill(0);
    let n = 0;
    if (this.walkPolicy === this.policy) {
      const previous = this.walkPriced;
      for (let k = 0; k < previous.length; k++) {
        const li = previous[k];
        if (most[li] > 0) {
          order[n++] = li;
          listed[li] = 1;
        }
      }
    }
    for (let li = 0; li < most.length; li++) if (listed[li] === 0 && most[li] > 0 && !isSet(free, li)) order[n++] = li;
    for (let a = 1; a < n; a++) {
      const li = order[a];
      let b = a - 1;
      while (b >= 0 && (most[li] > most[order[b]] || (most[li] === most[order[b]] && li < order[b]))) {
        order[b + 1] = order[b];
        b--;
      }
      order[b + 1] = li;
    }
    if (this.walkPriced.length !== n) this.walkPriced = new Int32Array(n);
    for (let k = 0; k < n; k++) this.walkPriced[k] = order[k];
    this.walkPolicy = this.policy;
    this.walkVersion = this.mostVersion;
  }

  /**
   * The gates' reasons, each with the last line item it dropped (-1: none; a line item drops at one gate only),
   * noted in line item order: they share a stage, so the one noted last is kept, as by a loop noting per item.
   */
  private noteGates(lastCapped: number, lastPaced: number, lastNoBid: number): void {
    for (;;) {
      let li = Infinity;
      let reason = -1;
      if (lastCapped >= 0 && lastCapped < li) {
        li = lastCapped;
        reason = NO_BID.frequency_capped;
      }
      if (lastPaced >= 0 && lastPaced < li) {
        li = lastPaced;
        reason = NO_BID.paced;
      }
      if (lastNoBid >= 0 && lastNoBid < li) {
        li = lastNoBid;
        reason = NO_BID.strategy_no_bid;
      }
      if (reason < 0) return;
      this.note(reason);
      if (li === lastCapped) lastCapped = -1;
      else if (li === lastPaced) lastPaced = -1;
      else lastNoBid = -1;
    }
  }

  /** mostBidder = the strategy's bid at the multipliers' upper bound, capped; redone when the strategies refresh. */
  private refreshMostBidder(): void {
    const strategies = this.plan.strategies;
    const upper = this.plan.multipliers.upper;
    this.bidsMask.fill(0);
    for (let li = 0; li < this.mostBidder.length; li++) {
      const most = strategies.finalBidMicros(li, upper[li]);
      this.mostBidder[li] = most;
      if (most > 0) setBit(this.bidsMask, li);
    }
    this.mostVersion = strategies.version;
  }

  /**
   * The value of a candidate for this request (strategy base bid x multipliers, capped), computed once per
   * request. -1 when the strategy does not bid: the line item then leaves the candidates of every imp.
   */
  private valueOf(li: number): number {
    if (this.valueGen[li] === this.generation) return this.value[li];
    const mctx = this.mctx;
    this.plan.multipliers.computeMultiplier(li, mctx);
    let v = this.plan.strategies.finalBidMicros(li, mctx.result[0]);
    if (!(v > 0)) {
      v = -1;
      this.candidates[li >>> 5] &= ~(1 << (li & 31));
      this.note(NO_BID.strategy_no_bid);
    }
    this.valueGen[li] = this.generation;
    this.value[li] = v;
    return v;
  }

  /** Whole-request gates: test traffic, seat lists, time budget, currency. Sets out.respCur. */
  private requestGates(req: Any, out: Decision): number {
    const s = this.config.settings;
    if (req.test === 1 && s.testRequests === 'nobid') return NO_BID.test_request;
    if (!seatAdmitted(req.wseat as string[] | undefined, s.seat)) return NO_BID.seat_blocked;
    const bseat = req.bseat as string[] | undefined;
    if (bseat !== undefined && bseat.indexOf(s.seat) !== -1) return NO_BID.seat_blocked;
    const tmax = req.tmax === undefined ? s.defaultTmaxMs : (req.tmax as number);
    if (tmax < s.minTmaxMs) return NO_BID.insufficient_time;
    const cur = req.cur as string[] | undefined;
    if (cur === undefined || cur.length === 0) {
      // OpenRTB: without `cur` the exchange means USD.
      if (!this.config.rates.has('USD')) return NO_BID.no_currency;
      out.respCur = 'USD';
    } else if (cur.indexOf(s.currency) !== -1) {
      out.respCur = s.currency;
    } else {
      let found: string | null = null;
      for (let i = 0; i < cur.length && found === null; i++) if (this.config.rates.has(cur[i])) found = cur[i];
      if (found === null) return NO_BID.no_currency;
      out.respCur = found;
    }
    return NO_BID.none;
  }

  /** candidates = active & channel & device type & country. False (and a reason noted) when empty. */
  private supplyCandidates(req: Any): boolean {
    const t = this.config.supply;
    const cand = this.candidates;
    if (req.site === undefined && req.app === undefined && req.dooh === undefined) {
      this.note(NO_BID.no_inventory);
      return false;
    }
    const channel = req.site !== undefined ? CHANNEL_SITE : req.app !== undefined ? CHANNEL_APP : CHANNEL_DOOH;
    const byChannel = t.byChannel[channel];
    let any = 0;
    for (let w = 0; w < t.words; w++) any |= cand[w] = t.active[w];
    if (any === 0) {
      this.note(NO_BID.no_active_line_item);
      return false;
    }
    const device = req.device;
    const dt = device === undefined ? undefined : device.devicetype;
    const byDevice = dt === undefined ? t.anyDeviceType : (t.byDeviceType.get(dt) ?? t.anyDeviceType);
    // Fix (decision-cases: geo/device-geo-without-country-uses-user-geo): device.geo.country first, then
    // user.geo.country; a device.geo with only coordinates used to hide the user's country.
    const deviceGeo = device !== undefined ? device.geo : undefined;
    let country = deviceGeo !== undefined ? deviceGeo.country : undefined;
    if (country === undefined && req.user !== undefined && req.user.geo !== undefined) country = req.user.geo.country;
    const byCountry = country === undefined ? t.anyCountry : (t.byCountry.get(country) ?? t.anyCountry);
    any = 0;
    for (let w = 0; w < t.words; w++) any |= cand[w] &= byChannel[w] & byDevice[w] & byCountry[w];
    if (any === 0) {
      this.note(NO_BID.supply_mismatch);
      return false;
    }
    return true;
  }

  /** ORs the segment rows of every known user key into userBits. Returns whether any key was known. */
  private userSegments(req: Any): boolean {
    const bits = this.userBits;
    bits.fill(0);
    const store = this.store;
    const keys = this.userKeys;
    const n = keys.collect(req);
    let known = false;
    for (let k = 0; k < n; k++) known = store.orInto(keys.hi[k], keys.lo[k], bits) || known;
    return known;
  }

  /**
   * One imp: the best (by the policy's rank) of the candidates that can serve it, deals first. Candidates are
   * taken best bound first (a max-heap, see fillHeap) and valued and priced one by one into a short list of
   * offers; once the next bound is below the best offer, no candidate left can win and the rest are never valued.
   * Ties are broken as a full scan would: higher priority, then the lower line item index. The creative is picked
   * for the best offer only; the budget is reserved for it. When it has no creative for the imp, or the policy
   * refuses, it leaves and the next best offer (or a candidate still in the heap) takes its place: each candidate
   * is priced at most once per imp.
   */
  private decideImp(req: Any, imp: Any, impIdx: number, nowMs: number, out: Decision): void {
    const rates = this.config.rates;
    const respRate = this.respRate;
    const floorMicros = floorOf(imp, rates, respRate);
    if (floorMicros < 0) {
      this.note(NO_BID.no_floor_rate);
      return;
    }
    const pmp = imp.pmp;
    this.impPrivate = pmp !== undefined && pmp.private_auction === 1;
    this.impDeals = pmp !== undefined && Array.isArray(pmp.deals) ? (pmp.deals as Any[]) : undefined;
    this.impFloor = floorMicros;
    this.impBand = this.plan.shading.bandOf(floorMicros * respRate);
    this.impGeneration = (this.impGeneration + 1) >>> 0 || 1; // a new creative verdict memo
    const cand = this.candidates;
    this.fitOf(imp);
    const admit = this.impAdmit;
    if (this.impPrivate) admit.fill(0);
    else for (let w = 0; w < admit.length; w++) admit[w] = this.impFit[w] & ~this.dealsOnlyMask[w];
    this.floorMisses = 0;
    const items = this.config.lineItems;
    const heapKey = this.heapKey;
    const heapItem = this.heapItem;
    const offerItem = this.offerItem;
    const offerRank = this.offerRank;
    const offerPrice = this.offerPrice;
    const walking = this.walking;
    let n = 0; // heap mode's count (the walk keeps its own)
    if (walking) this.startWalk();
    else n = this.fillHeap();
    let offers = 0;
    let creativeMask = false; // impCreativeOk / impCreativeFits computed for this imp
    for (;;) {
      let best = this.bestOffer(offers);
      for (;;) {
        let index: number;
        if (walking) {
          // NaN: nothing to beat yet (no key is below NaN), or every candidate is to be priced.
          index = this.nextWalked(best >= 0 && !this.exhaustive ? offerRank[best] : NaN);
          if (index < 0) break;
        } else {
          if (n === 0) break;
          if (best >= 0 && heapKey[0] < offerRank[best] && !this.exhaustive) break; // nobody left can beat (or tie) it
          const top = heapItem[0];
          index = top >> 1;
          if ((top & 1) === 0) {
            // A loose key at the top: its imp key decides whether it is still the highest.
            const key = this.tightKey(index, this.looseKey[index], this.mostResp[index]);
            heapItem[0] = top | 1;
            if (key < heapKey[0]) {
              heapKey[0] = key;
              siftDown(heapKey, heapItem, 0, n);
              continue;
            }
          }
          n = heapPop(heapKey, heapItem, n);
        }
        const price = this.offer(req, imp, index);
        if (price < 0) continue;
        const o = offers++;
        offerItem[o] = index;
        offerRank[o] = this.policy.rank(index, price);
        offerPrice[o] = price;
        this.offerCreatives[o] = this.offerCreative;
        this.offerDeals[o] = this.offerDeal;
        if (this.canWin(o) && (best < 0 || this.beats(o, best))) best = o;
      }
      if (best < 0) {
        // Every candidate was priced: tell "no creative for the imp" from "under the floor" (see offer()).
        for (let f = 0; f < this.floorMisses; f++) {
          if (this.pickCreative(req, imp, items[this.floorMiss[f]], undefined) !== null) {
            this.note(NO_BID.below_floor);
            break;
          }
        }
        return;
      }
      const bestIndex = offerItem[best];
      const bestItem = items[bestIndex];
      const bestPrice = offerPrice[best];
      const bestDeal = this.offerDeals[best];
      const bestCreative = this.offerCreatives[best] ?? this.pickCreative(req, imp, bestItem, undefined);
      // Out of this imp's running whatever happens next: the list keeps the other offers.
      offers = this.dropOffer(best, offers);
      if (bestCreative === null) {
        // Often the block lists (bcat, badv, battr...) rule out creatives many line items share: once per imp,
        // find which line items keep one, and drop the offers and candidates that do not, unpriced.
        if (!creativeMask && this.creativeUsers !== null && !this.exhaustive) {
          creativeMask = true;
          this.maskCreatives(req, imp);
          for (let o = offers - 1; o >= 0; o--) {
            if (this.offerCreatives[o] === null && !this.mayHaveCreative(offerItem[o])) offers = this.dropOffer(o, offers);
          }
          if (walking) this.pruneWalk();
          else n = this.pruneHeap(n);
        }
        continue;
      }
      // One impression of a CPM bid costs price/1000, in the bidder currency for the ledger.
      if (!this.policy.reserve(bestIndex, Math.ceil((bestPrice * respRate) / 1000), nowMs)) {
        cand[bestIndex >>> 5] &= ~(1 << (bestIndex & 31));
        this.note(NO_BID.budget_exhausted);
        continue;
      }
      const k = out.bidCount++;
      out.impIndex[k] = impIdx;
      out.priceMicros[k] = bestPrice;
      out.lineItem[k] = bestItem;
      out.creative[k] = bestCreative;
      out.dealId[k] = bestDeal;
      out.reservation[k] = this.policy.lastReservation ?? -1;
      out.arm[k] = shadingArm(this.auctionType === 1 && bestDeal === null, floorMicros * respRate);
      if (bestCreative.format === FORMAT_VIDEO && (bestCreative.w === 0 || bestCreative.h === 0)) {
        // A VAST creative usually has no size of its own (its media files have theirs): it plays at the player's.
        const v = imp.video;
        const known = v !== undefined && v.w > 0 && v.h > 0; // validated non-negative integers when present
        out.w[k] = known ? v.w : 0;
        out.h[k] = known ? v.h : 0;
      } else {
        out.w[k] = bestCreative.w;
        out.h[k] = bestCreative.h;
      }
      // A frequency-capped line item bids on one imp of a request: the cap was checked once for the request, and
      // two bids that both win would show the user two impressions against what may be one left.
      if (isSet(this.cappedMask, bestIndex)) cand[bestIndex >>> 5] &= ~(1 << (bestIndex & 31));
      return;
    }
  }

  /** Whether offer a ranks before offer b: higher rank, then higher priority, then the lower line item index. */
  private beats(a: number, b: number): boolean {
    const ra = this.offerRank[a];
    const rb = this.offerRank[b];
    if (ra !== rb) return ra > rb;
    const ia = this.offerItem[a];
    const ib = this.offerItem[b];
    const pa = this.priority[ia];
    const pb = this.priority[ib];
    return pa > pb || (pa === pb && ia < ib);
  }

  /** The best of the first `offers` offers (see beats), -1 when there is none. */
  private bestOffer(offers: number): number {
    let best = -1;
    for (let o = 0; o < offers; o++) if (this.canWin(o) && (best < 0 || this.beats(o, best))) best = o;
    return best;
  }

  /** A NaN or -Infinity rank never wins (a full scan starting from -Infinity and comparing with > would not take it). */
  private canWin(o: number): boolean {
    const r = this.offerRank[o];
    return r === r && r !== -Infinity;
  }

  /**
   * Fills impCreativeOk (line items with a creative that fits the imp and passes the blocks) and impCreativeFits
   * (with one that fits the imp's formats) from this imp's verdict of every creative.
   */
  private maskCreatives(req: Any, imp: Any): void {
    const users = this.creativeUsers!;
    const ok = this.impCreativeOk;
    const fits = this.impCreativeFits;
    const lw = ok.length;
    ok.fill(0);
    fits.fill(0);
    this.curReq = req;
    this.curImp = imp;
    this.curWadomain = undefined;
    for (let c = 0; c < this.verdictGen.length; c++) {
      this.creativeEligible(c); // fills the memo
      const v = this.creativeVerdictOf[c];
      if (v === 0) continue;
      const into = v === 2 ? ok : fits;
      for (let w = 0, base = c * lw; w < lw; w++) into[w] |= users[base + w];
    }
    for (let w = 0; w < lw; w++) fits[w] |= ok[w];
  }

  /**
   * After maskCreatives: false (and the reason noted, as pricing it would) when no creative of the line item can
   * serve this imp. Deal candidates too: a deal's creative must pass the same verdict (format, request and imp
   * blocks) and the deal's wadomain on top, so a line item without an eligible creative for the imp has none for
   * its deals either (creative-blocked imps with deals were the slowest decisions, 31-41 µs). Pricing it would
   * note the creative's reason, except for a deal candidate outside the open auction (private, or deals-only)
   * whose matching deals all exclude this seat (wseat): pricing never looks at its creatives and notes
   * deal_mismatch. Such a candidate stays, and is priced as before. (A no_matching_format noted where pricing
   * would note deal_mismatch changes nothing: the mask follows a creative miss, which noted a reason of that stage
   * or above.)
   */
  private mayHaveCreative(li: number): boolean {
    if (isSet(this.impCreativeOk, li)) return true;
    const fits = isSet(this.impCreativeFits, li);
    if (fits && this.impDeals !== undefined && isSet(this.hasDealsMask, li) && (this.impPrivate || isSet(this.dealsOnlyMask, li)) && !this.dealOpenToSeat(li)) {
      return true;
    }
    this.note(fits ? NO_BID.creative_blocked : NO_BID.no_matching_format);
    return false;
  }

  /** Whether one of the imp's deals that line item li lists lets this seat bid (no wseat, or the seat in it). */
  private dealOpenToSeat(li: number): boolean {
    const deals = this.impDeals!;
    const listed = this.config.lineItems[li].deals;
    const seat = this.config.settings.seat;
    for (let d = 0; d < deals.length; d++) {
      if (listed.has(deals[d].id) && seatAdmitted(deals[d].wseat as string[] | undefined, seat)) return true;
    }
    return false;
  }

  /** Removes offer o (the last one takes its slot); returns the new count. */
  private dropOffer(o: number, offers: number): number {
    const last = offers - 1;
    this.offerItem[o] = this.offerItem[last];
    this.offerRank[o] = this.offerRank[last];
    this.offerPrice[o] = this.offerPrice[last];
    this.offerCreatives[o] = this.offerCreatives[last];
    this.offerDeals[o] = this.offerDeals[last];
    this.offerCreatives[last] = null;
    return last;
  }

  /**
   * impOk = the request's candidates that may bid on this imp (every imp starts from them); returns their count.
   * The others, which offer() would turn down whatever their value (no deal of this imp to bid through, and no
   * open-auction admission: see openAuctionAdmits), are found with one word-AND and their reasons noted a word at
   * a time (noteNotAdmitted).
   */
  private admitCandidates(): number {
    const cand = this.candidates;
    const ok = this.impOk;
    const admit = this.impAdmit;
    const viaDeals = this.impDeals !== undefined ? this.hasDealsMask : null;
    const dealsOnly = this.dealsOnlyMask;
    const everyOut = this.impPrivate ? -1 : 0;
    let dealMismatch = 0;
    let noFormat = 0;
    let count = 0;
    for (let w = 0; w < cand.length; w++) {
      const x = cand[w];
      const y = x & (viaDeals !== null ? admit[w] | viaDeals[w] : admit[w]);
      ok[w] = y;
      count += popcount(y);
      const out = x & ~y;
      dealMismatch |= out & (everyOut | dealsOnly[w]);
      noFormat |= out & ~(everyOut | dealsOnly[w]);
    }
    this.noteNotAdmitted(dealMismatch, noFormat);
    return count;
  }

  /** Loads the candidates admitted on this imp (admitCandidates) into the heap with their loose keys; returns their count. */
  private fillHeap(): number {
    this.admitCandidates();
    const ok = this.impOk;
    const heapKey = this.heapKey;
    const heapItem = this.heapItem;
    const looseKey = this.looseKey;
    let n = 0;
    for (let w = 0; w < ok.length; w++) {
      let x = ok[w];
      while (x !== 0) {
        const low = x & -x;
        const li = (w << 5) + 31 - Math.clz32(low);
        x ^= low;
        heapKey[n] = looseKey[li];
        heapItem[n++] = li << 1;
      }
    }
    for (let i = (n >>> 1) - 1; i >= 0; i--) siftDown(heapKey, heapItem, i, n);
    return n;
  }

  /**
   * openAuctionAdmits' reasons for the candidates an imp does not admit, noted once each instead of once per
   * candidate: non-zero `dealMismatch` = some were refused as a private auction or deals-only, `noFormat` = some
   * for the imp's formats. The same outcome: the two reasons sit at different stages (their order does not
   * matter) and noting a reason again at the same point changes nothing.
   */
  private noteNotAdmitted(dealMismatch: number, noFormat: number): void {
    if (dealMismatch !== 0) this.note(NO_BID.deal_mismatch);
    if (noFormat !== 0) this.note(NO_BID.no_matching_format);
  }

  /**
   * After maskCreatives: drops from the heap, in one pass, the candidates left without a creative for the imp
   * (mayHaveCreative notes why), and rebuilds it over the others; returns their count. When the block lists rule
   * out most creatives, the imp is decided by a few deal candidates or by none: popping the hopeless ones one by
   * one would cost a sift each.
   */
  private pruneHeap(n: number): number {
    return this.keepWithCreative(n, 1);
  }

  /**
   * The first n heap entries whose line item (entry >> shift: the heap's entries carry a tight flag, the walk's
   * do not) may have a creative for the imp (mayHaveCreative notes why not), re-heaped; returns their count.
   */
  private keepWithCreative(n: number, shift: number): number {
    const heapKey = this.heapKey;
    const heapItem = this.heapItem;
    let m = 0;
    for (let i = 0; i < n; i++) {
      if (!this.mayHaveCreative(heapItem[i] >> shift)) continue;
      heapKey[m] = heapKey[i];
      heapItem[m++] = heapItem[i];
    }
    for (let i = (m >>> 1) - 1; i >= 0; i--) siftDown(heapKey, heapItem, i, m);
    return m;
  }

  /**
   * Walk mode's fillHeap: impOk = the candidates admitted on this imp (admitCandidates), the lists from their
   * start, the heap empty.
   */
  private startWalk(): void {
    this.walkLeft = this.admitCandidates();
    this.walkAtRanked = 0;
    this.walkAtPriced = 0;
    this.walkHeap = 0;
  }

  /**
   * Walk mode: the next candidate to price on this imp, the one with the highest key among the heap's top (tight
   * keys) and the next entry of each list (a ranked key is final; a priced one is loose: it is tightened and goes
   * to the heap). -1 when none is left, or when the highest key is below `bestRank` (no candidate left can beat
   * or tie the best offer; NaN: never). A candidate leaves impOk when it leaves its list, so impOk holds the ones
   * not reached yet (pruneWalk).
   */
  private nextWalked(bestRank: number): number {
    const ok = this.impOk;
    const ranked = this.walkRanked;
    const priced = this.walkPriced;
    const heapKey = this.heapKey;
    const heapItem = this.heapItem;
    for (;;) {
      const n = this.walkHeap;
      if (this.walkLeft === 0) {
        // Nothing left in the lists: only the heap.
        if (n === 0 || heapKey[0] < bestRank) return -1;
        const li = heapItem[0];
        this.walkHeap = heapPop(heapKey, heapItem, n);
        return li;
      }
      let r = this.walkAtRanked;
      while (r < ranked.length && !isSet(ok, ranked[r])) r++;
      this.walkAtRanked = r;
      let p = this.walkAtPriced;
      while (p < priced.length && !isSet(ok, priced[p])) p++;
      this.walkAtPriced = p;
      let from = -1; // 0 heap, 1 ranked, 2 priced
      let key = -Infinity;
      if (n > 0) {
        from = 0;
        key = heapKey[0];
      }
      if (r < ranked.length) {
        const k = this.policy.rank(ranked[r], 0);
        const kr = k === k ? k : -Infinity; // a NaN rank never wins (decideImp compares with >)
        if (from < 0 || kr > key) {
          from = 1;
          key = kr;
        }
      }
      if (p < priced.length) {
        const kp = Math.floor(this.mostBidder[priced[p]] / this.respRate);
        if (from < 0 || kp > key) {
          from = 2;
          key = kp;
        }
      }
      if (from < 0 || key < bestRank) return -1;
      if (from === 0) {
        const li = heapItem[0];
        this.walkHeap = heapPop(heapKey, heapItem, n);
        return li;
      }
      const li = from === 1 ? ranked[r] : priced[p];
      ok[li >>> 5] &= ~(1 << (li & 31));
      this.walkLeft--;
      if (from === 1) {
        this.walkAtRanked = r + 1;
        return li;
      }
      this.walkAtPriced = p + 1;
      this.walkHeap = heapPush(heapKey, heapItem, n, this.tightKey(li, key, key), li);
    }
  }

  /** Walk mode's pruneHeap: the candidates not priced yet (the heap's and impOk's) without a creative leave. */
  private pruneWalk(): void {
    this.walkHeap = this.keepWithCreative(this.walkHeap, 0);
    const ok = this.impOk;
    let left = 0;
    for (let w = 0; w < ok.length; w++) {
      let x = ok[w];
      while (x !== 0) {
        const low = x & -x;
        x ^= low;
        if (!this.mayHaveCreative((w << 5) + 31 - Math.clz32(low))) ok[w] &= ~low;
      }
      left += popcount(ok[w]);
    }
    this.walkLeft = left;
  }

  /**
   * A candidate's key on this imp: the policy's rank at the most it can offer here, its value bound shaded at
   * the imp's floor band when it bids in the open auction (shade() grows with the value), unshaded when it may
   * bid through one of the imp's deals. The policy's rank grows with the price (BidPolicy.rank), so no offer can
   * rank above it, and it is at most the loose key (`loose`; `mostResp`: the line item's mostResp).
   */
  private tightKey(li: number, loose: number, mostResp: number): number {
    if (this.impDeals !== undefined && isSet(this.hasDealsMask, li)) return loose;
    const most = this.plan.shading.priceInBand(li, this.exchange, this.impBand, this.impFloor, mostResp, this.auctionType);
    const key = this.policy.rank(li, most);
    return key === key ? key : -Infinity; // a NaN rank never wins (decideImp compares with >)
  }

  /**
   * Whether the line item may bid in the imp's open auction, whatever its value: not a private auction, not a
   * deals-only line item, a creative of the imp's formats (what pickCreative would find, for one AND). Notes
   * why not.
   */
  private openAuctionAdmits(li: number): boolean {
    if (this.impPrivate || isSet(this.dealsOnlyMask, li)) {
      this.note(NO_BID.deal_mismatch);
      return false;
    }
    if (!isSet(this.impFit, li)) {
      this.note(NO_BID.no_matching_format);
      return false;
    }
    return true;
  }

  /**
   * What one candidate offers on the current imp (decideImp's state): its price (response currency micros),
   * with offerDeal / offerCreative set when it bids through a deal, or -1 when it cannot bid
   * here, the reason noted. Deals first: a line item that lists a deal the imp offers bids through it.
   */
  private offer(req: Any, imp: Any, index: number): number {
    this.offerCreative = null;
    this.offerDeal = null;
    const value = this.valueOf(index);
    if (value < 0) return -1;
    const respRate = this.respRate;
    const valueResp = Math.floor(value / respRate);
    const plan = this.plan;
    const deals = this.impDeals;
    let price = -1;
    // The line item object is read only when its deals or creatives are needed: most candidates are priced from
    // the typed arrays (hasDealsMask, dealsOnlyMask, value), without a cache miss on the object.
    if (deals !== undefined && isSet(this.hasDealsMask, index)) {
      const li = this.config.lineItems[index];
      const rates = this.config.rates;
      for (let d = 0; d < deals.length && price < 0; d++) {
        const deal = deals[d];
        if (!li.deals.has(deal.id)) continue;
        if (!seatAdmitted(deal.wseat as string[] | undefined, this.config.settings.seat)) {
          this.note(NO_BID.deal_mismatch);
          continue;
        }
        const c = this.pickCreative(req, imp, li, deal.wadomain as string[] | undefined);
        if (c === null) continue;
        const dealFloor = floorOf(deal, rates, respRate);
        if (dealFloor < 0) {
          this.note(NO_BID.no_floor_rate);
          continue;
        }
        if (valueResp < dealFloor || valueResp <= 0) {
          this.note(NO_BID.below_floor);
          continue;
        }
        price = dealPriceMicros(plan.shading, index, this.exchange, this.auctionType, deal, dealFloor, respRate, valueResp);
        if (price <= 0) {
          price = -1;
          continue;
        }
        this.offerDeal = deal.id;
        this.offerCreative = c;
      }
      if (price >= 0) return price;
    }
    // Only a deal candidate whose deals all failed gets here unchecked (fillHeap checked the others).
    if (!this.openAuctionAdmits(index)) return -1;
    price = plan.shading.priceInBand(index, this.exchange, this.impBand, this.impFloor, valueResp, this.auctionType);
    if (price <= 0) {
      // A line item with no creative for the imp is reported as such, not as below the floor: which of the two
      // is found out only if the imp gets no bid at all (decideImp), the one case the reason is read.
      if (this.floorMisses < this.floorMiss.length) this.floorMiss[this.floorMisses++] = index;
      return -1;
    }
    // Otherwise the creative is picked only for the line item that wins the imp (decideImp): with many
    // candidates, drawing a rotation for each would cost more than the rest of the imp.
    return price;
  }

  /** The line items with a creative of the imp's sizes and media types (see fitBySize). */
  private fitOf(imp: Any): Uint32Array {
    const fit = this.impFit;
    fit.fill(0);
    const media = this.fitByMedia;
    if (imp.video !== undefined) orInto(fit, media[FORMAT_VIDEO]);
    if (imp.audio !== undefined) orInto(fit, media[FORMAT_AUDIO]);
    if (imp.native !== undefined) orInto(fit, media[FORMAT_NATIVE]);
    const b = imp.banner;
    if (b !== undefined) {
      const formats = b.format as Any[] | undefined;
      if (formats !== undefined) {
        for (let i = 0; i < formats.length; i++) {
          const row = typeof formats[i].w === 'number' && typeof formats[i].h === 'number' ? this.fitBySize.get(formats[i].w * 65536 + formats[i].h) : undefined;
          if (row !== undefined) orInto(fit, row);
        }
      } else if (typeof b.w === 'number' && typeof b.h === 'number') {
        const row = this.fitBySize.get(b.w * 65536 + b.h);
        if (row !== undefined) orInto(fit, row);
      }
    }
    return fit;
  }

  /**
   * The creative for a line item on this imp: the selector's choice for the user's most specific segment
   * (weighted or learned rotation) among the creatives that fit the imp's format and pass the block lists.
   * Notes why when none does.
   */
  private pickCreative(req: Any, imp: Any, li: CompiledLineItem, wadomain: string[] | undefined): CompiledCreative | null {
    this.curReq = req;
    this.curImp = imp;
    this.curWadomain = wadomain;
    this.formatOk = false;
    const c = this.plan.selector.pick(li.index, this.eligible);
    if (c < 0) {
      this.note(this.formatOk ? NO_BID.creative_blocked : NO_BID.no_matching_format);
      return null;
    }
    return this.config.creatives[c];
  }

  /** The selector's eligibility test: format fit, then request and imp block lists, then the deal's wadomain. */
  private creativeEligible(c: number): boolean {
    let v: number;
    if (this.verdictGen[c] === this.impGeneration) {
      v = this.creativeVerdictOf[c];
    } else {
      const cr = this.config.creatives[c];
      v = !fitsFormat(this.curImp, cr) ? 0 : this.blockedByRequest(this.curReq, cr) || blockedByImp(this.curImp, cr) ? 1 : 2;
      this.verdictGen[c] = this.impGeneration;
      this.creativeVerdictOf[c] = v;
    }
    if (v === 0) return false;
    this.formatOk = true;
    if (v === 1) return false;
    const wadomain = this.curWadomain;
    return wadomain === undefined || wadomain.length === 0 || intersects(this.config.creatives[c].adomainLower, wadomain);
  }

  /**
   * Off the hot path, for src/bidding/explain.ts: creativeEligible for one creative on this request and imp.
   * 0 = does not fit the imp's format, 1 = fits but blocked, 2 = eligible. Starts a new block memo, so it is
   * right whatever request was decided last.
   */
  creativeVerdict(req: Any, imp: Any, c: number, wadomain: string[] | undefined): number {
    this.generation = (this.generation + 1) >>> 0 || 1;
    this.impGeneration = (this.impGeneration + 1) >>> 0 || 1;
    this.curReq = req;
    this.curImp = imp;
    this.curWadomain = wadomain;
    this.formatOk = false;
    if (this.creativeEligible(c)) return 2;
    return this.formatOk ? 1 : 0;
  }

  /** bcat/cattax, badv, bapp, wlang: the same for every imp, so decided once per creative per request. */
  private blockedByRequest(req: Any, cr: CompiledCreative): boolean {
    if (this.creativeGen[cr.index] === this.generation) return this.creativeBlocked[cr.index] === 1;
    let blocked = false;
    const bcat = req.bcat as string[] | undefined;
    if (bcat !== undefined && bcat.length > 0 && cr.catWithParents.length > 0) {
      const cattax = req.cattax === undefined ? 1 : req.cattax;
      // A block list in a taxonomy we do not tag in cannot be checked: stay safe and do not serve.
      blocked = cattax !== cr.cattax || intersects(cr.catWithParents, bcat);
    }
    const badv = req.badv as string[] | undefined;
    // Domains ignore case: validate.ts lower-cases badv, the config's adomain is kept lower-cased too.
    if (!blocked && badv !== undefined && badv.length > 0) blocked = intersects(cr.adomainLower, badv);
    const bapp = req.bapp as string[] | undefined;
    if (!blocked && bapp !== undefined && cr.bundle !== null) blocked = bapp.indexOf(cr.bundle) !== -1;
    const wlang = req.wlang as string[] | undefined;
    if (!blocked && wlang !== undefined && wlang.length > 0) blocked = cr.lang === null || wlang.indexOf(cr.lang) === -1;
    this.creativeGen[cr.index] = this.generation;
    this.creativeBlocked[cr.index] = blocked ? 1 : 0;
    return blocked;
  }
}

/** Largest creative x line-item table (32-bit words) the decider keeps for the per-imp creative mask: 16 MB. */
const MAX_CREATIVE_USER_WORDS = 1 << 22;

/** An OpenRTB seat allow-list (request or deal `wseat`): absent or empty admits every seat. */
export function seatAdmitted(wseat: readonly string[] | undefined, seat: string): boolean {
  return wseat === undefined || wseat.length === 0 || wseat.indexOf(seat) !== -1;
}

function intersects(a: readonly string[], b: readonly string[]): boolean {
  for (let i = 0; i < a.length; i++) if (b.indexOf(a[i]) !== -1) return true;
  return false;
}

function intersectsInt(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) if (b.indexOf(a[i]) !== -1) return true;
  return false;
}

/** Does the creative fit one of the formats the imp offers? */
/**
 * A floor in a currency (`rate`: bidder units per unit) as integer micros of the response currency, rounded up
 * so that a price at it is never under the floor once converted back (the 1e-6 absorbs float noise).
 */
export function floorMicrosOf(floor: number, rate: number, respRate: number): number {
  return Math.ceil((floor * 1e6 * rate) / respRate - 1e-6);
}

/**
 * The floor of an imp or a deal (`bidfloor` in `bidfloorcur`, USD when absent) in response-currency micros: 0
 * without a floor (absent or 0, which bids in any currency: a rate is needed only to convert a floor), -1 when
 * the floor's currency has no rate.
 */
function floorOf(o: { bidfloor?: number; bidfloorcur?: string }, rates: ReadonlyMap<string, number>, respRate: number): number {
  if (o.bidfloor === undefined || !(o.bidfloor > 0)) return 0;
  const rate = rates.get(o.bidfloorcur === undefined ? 'USD' : o.bidfloorcur);
  return rate === undefined ? -1 : floorMicrosOf(o.bidfloor, rate, respRate);
}

/** A deal bid's price: at=3 with a floor is that fixed price; otherwise shaded at the deal's auction type, else the request's. */
export function dealPriceMicros(shading: ShadingTable, li: number, exchange: number, auctionType: number, deal: Any, dealFloor: number, respRate: number, valueResp: number): number {
  if (deal.at === 3 && dealFloor > 0) return dealFloor;
  const at = deal.at === 1 || deal.at === 2 ? deal.at : auctionType;
  return shading.price(li, exchange, dealFloor, respRate, valueResp, at);
}

/** Whether line item li is in a line-item bitset. */
function isSet(bits: Uint32Array, li: number): boolean {
  return (bits[li >>> 5] & (1 << (li & 31))) !== 0;
}

/** Puts line item li in a line-item bitset (load time). */
function setBit(bits: Uint32Array, li: number): void {
  bits[li >>> 5] |= 1 << (li & 31);
}

function orInto(into: Uint32Array, row: Uint32Array): void {
  for (let w = 0; w < into.length; w++) into[w] |= row[w];
}

function fitsFormat(imp: Any, cr: CompiledCreative): boolean {
  switch (cr.format) {
    case FORMAT_BANNER: {
      const b = imp.banner;
      if (b === undefined) return false;
      const formats = b.format as Any[] | undefined;
      if (formats !== undefined) {
        for (let i = 0; i < formats.length; i++) if (formats[i].w === cr.w && formats[i].h === cr.h) return true;
        return false;
      }
      return b.w === cr.w && b.h === cr.h;
    }
    case FORMAT_VIDEO:
    case FORMAT_AUDIO: {
      const m = cr.format === FORMAT_VIDEO ? imp.video : imp.audio;
      if (m === undefined) return false;
      if (!intersects(cr.mimes, m.mimes)) return false;
      if (m.minduration !== undefined && cr.duration < m.minduration) return false;
      if (m.maxduration !== undefined && m.maxduration > 0 && cr.duration > m.maxduration) return false;
      if (cr.format === FORMAT_VIDEO) {
        if (Array.isArray(m.protocols) && m.protocols.length > 0) return m.protocols.indexOf(cr.protocol) !== -1;
        if (m.protocol !== undefined) return m.protocol === cr.protocol;
      }
      return true;
    }
    case FORMAT_NATIVE:
      return imp.native !== undefined;
    default:
      return false;
  }
}

/** battr of the matched format, and imp.secure. */
function blockedByImp(imp: Any, cr: CompiledCreative): boolean {
  if (imp.secure === 1 && !cr.secure) return true;
  if (cr.attr.length === 0) return false;
  const media = cr.format === FORMAT_BANNER ? imp.banner : cr.format === FORMAT_VIDEO ? imp.video : cr.format === FORMAT_AUDIO ? imp.audio : imp.native;
  const battr = media === undefined ? undefined : (media.battr as number[] | undefined);
  return battr !== undefined && intersectsInt(cr.attr, battr);
}

/** Set bits of a 32-bit word. */
function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}

/** Adds (k, it) to the max-heap of n entries; returns n + 1. */
function heapPush(key: Float64Array, item: Int32Array, n: number, k: number, it: number): number {
  let i = n;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!(k > key[parent])) break;
    key[i] = key[parent];
    item[i] = item[parent];
    i = parent;
  }
  key[i] = k;
  item[i] = it;
  return n + 1;
}

/** Max-heap on (key, item) pairs kept in two typed arrays: restores the heap below position i. */
function siftDown(key: Float64Array, item: Int32Array, i: number, n: number): void {
  const k = key[i];
  const it = item[i];
  for (;;) {
    let c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && key[c + 1] > key[c]) c++;
    if (!(key[c] > k)) break;
    key[i] = key[c];
    item[i] = item[c];
    i = c;
  }
  key[i] = k;
  item[i] = it;
}

/** Removes the top of the heap of n entries; returns the new count. */
function heapPop(key: Float64Array, item: Int32Array, n: number): number {
  const last = n - 1;
  key[0] = key[last];
  item[0] = item[last];
  if (last > 1) siftDown(key, item, 0, last);
  return last;
}
