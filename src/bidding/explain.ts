/**
 * `POST /openrtb2/bid?debug=1`: why did this request bid, or not, on each line item? A trader's question, never
 * an exchange's, so this is a separate, slow path; the hot path (decide.ts) carries no debug checks.
 *
 * Contract
 * - Only when the config says `debug.enabled` (and, when `debug.tokens` is listed, the request carries one of
 *   them in `x-segbid-debug-token`); otherwise `?debug=1` is ignored and the answer is the normal one.
 * - A debug request is decided FOR REAL, by the same BidHandler.handle() as any request: counted, a bid is
 *   sent, its budget reserved once. While it runs, the budget policy is wrapped by a RecordingPolicy that
 *   passes every call through and remembers the answers of the stateful ones (eligible: pacing draws a random
 *   number and counts opportunities; reserve: books the ledger). The explanation afterwards reads those
 *   answers instead of asking again, so nothing is reserved, drawn or counted twice. Frequency caps are only
 *   read (impressions are recorded on billing notices, never by a decision); the creative rotation is not
 *   drawn (the explanation lists the eligible creatives of the tier the rotation would draw from).
 * - The explanation then walks every line item (or the ones named by `?lineitem=ID[,ID]`), one at a time,
 *   through the same stages as decide.ts, with the same tables and functions (supply bitsets, evalTargeting,
 *   caps.check, strategies x multipliers, shading, the decider's own creative eligibility test), and records
 *   the stage where it dropped out with the no-bid reason code (the labels of segbid_bid_requests_total), or
 *   its bid per imp.
 * - The answer is the normal BidResponse with `ext.segbid.debug`; a no-bid is answered 200 with an empty
 *   `seatbid`, its OpenRTB `nbr` and the same `ext.segbid.debug` (instead of a 204). A 400 stays a 400.
 * - Exactness: the request is re-parsed; the clock is the one the decision read (captured by the recorder), or
 *   a read just before the decision when no line item reached the budget policy. On a multi-imp request, a
 *   line item whose reservation was refused sits out the rest of the request: each imp it did not win then
 *   says budget_exhausted (the decision does not tell which imp the refusal happened on).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { NBR_CODE, NO_BID, NO_BID_LABELS, STAGE_OF } from '../openrtb/reasons.js';
import type { CompiledConfig, CompiledLineItem } from '../config/compile.js';
import { CHANNEL_APP, CHANNEL_DOOH, CHANNEL_SITE } from '../config/compile.js';
import { evalTargeting } from '../segments/targeting.js';
import { KEY_KIND, hashEidKey, hashIfa, hashKey, keyHash } from '../segments/key-hash.js';
import { RequestSegmenter } from '../segments/request-bits.js';
import { PRIVACY_REASON_LABELS, PrivacyVerdict } from '../privacy/verdict.js';
import { BudgetPolicy, REFUSAL_NAMES } from '../budget/budget-policy.js';
import { MultiplierContext } from './multipliers.js';
import { exchangeName, primaryUserHash, userHash } from '../events/bid-context.js';
import { dealPriceMicros, floorMicrosOf, seatAdmitted, type BidPolicy, type Decider, type Decision } from './decide.js';
import type { BidHandler, BidResult } from './bid-handler.js';
import type { Metrics } from '../metrics/metrics.js';
import { isDeviceId } from '../segments/user-keys.js';

/* The request as validated by src/openrtb/validate.ts (handle() validated it before we re-parse it). */
type Any = any; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The header a debug request carries its token in, when the config lists tokens. */
export const DEBUG_TOKEN_HEADER = 'x-segbid-debug-token';

/** Same bounds as decide.ts: a request cannot make the explanation look at more keys than the decision did. */
const MAX_EIDS = 32;
const MAX_UIDS = 8;
const MAX_NAMED_LINE_ITEMS = 100;

/** Where a line item dropped out, in pipeline order. */
export type Stage =
  | 'config'
  | 'request'
  | 'supply'
  | 'privacy'
  | 'targeting'
  | 'frequency_cap'
  | 'budget_policy'
  | 'strategy'
  | 'imp'
  | 'reserve'
  | 'auction'
  | 'bid';

export interface DebugRequest {
  /** Line item ids named by `lineitem=` (comma-separated or repeated); null = every line item. */
  lineItems: string[] | null;
  /** The config lists tokens and the request carries none of them: answered normally, counted as refused. */
  refused: boolean;
}

export interface UserKeyTrace {
  kind: 'buyeruid' | 'userid' | 'ifa' | 'eid';
  id: string;
  source?: string;
  /** Found in the segment store; null = not looked up (no consent for personal data). */
  known: boolean | null;
}

export interface ImpTrace {
  impid: string;
  /** bid: this line item's bid was sent; outranked: it could bid, another line item was chosen. */
  outcome: 'bid' | 'nobid' | 'outranked';
  reason?: string;
  detail?: string;
  /** Response currency, CPM. */
  floorCpm?: number;
  valueCpm?: number;
  priceCpm?: number;
  /** First-price shading lowered the price under the value. */
  shaded?: boolean;
  dealid?: string;
  crid?: string;
  /** The eligible creatives of the tier the rotation draws from (when this line item did not bid). */
  creatives?: string[];
  wonBy?: string;
}

export interface LineItemTrace {
  id: string;
  outcome: 'bid' | 'nobid';
  stage: Stage;
  /** A no-bid reason label (as in segbid_bid_requests_total), "outranked", "unknown_line_item", or "bid". */
  reason: string;
  detail?: string;
  /** Strategy x multipliers, bidder currency, CPM. */
  value?: { baseCpm: number; multiplier: number; maxBidCpm: number | null; valueCpm: number; currency: string };
  imps?: ImpTrace[];
}

export interface DebugTrace {
  /** The request was decided and answered for real; the explanation reserved and recorded nothing. */
  mode: 'live';
  outcome: 'bid' | 'nobid';
  reason: string;
  currency: string;
  privacy: { personalData: boolean; reason: string };
  knownUser: boolean;
  userKeys: UserKeyTrace[];
  segments: { id: string; name: string; kind: string }[];
  lineItems: LineItemTrace[];
}

/* ---------------------------------------------------------------- request */

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Constant time over every configured token (digests, so lengths do not leak either). */
function tokenMatches(token: string, tokens: readonly string[]): boolean {
  if (token.length === 0) return false;
  const got = sha256(token);
  let ok = false;
  for (const t of tokens) ok = timingSafeEqual(got, sha256(t)) || ok;
  return ok;
}

/**
 * Is this a debug request the config allows? null = answer normally without a trace (debug off, no `debug=1`).
 * Called by the transport only when `config.debug.enabled`, with the query string and the token header.
 */
export function debugRequest(query: string | undefined, token: string, settings: CompiledConfig['debug']): DebugRequest | null {
  if (!settings.enabled || query === undefined || query.length === 0) return null;
  const params = new URLSearchParams(query);
  const flag = params.get('debug');
  if (flag !== '1' && flag !== 'true') return null;
  const ids = new Set<string>();
  for (const v of params.getAll('lineitem')) {
    for (const id of v.split(',')) if (id.trim().length > 0 && ids.size < MAX_NAMED_LINE_ITEMS) ids.add(id.trim());
  }
  return {
    lineItems: ids.size > 0 ? [...ids] : null,
    refused: settings.tokens.length > 0 && !tokenMatches(token, settings.tokens),
  };
}

/* ---------------------------------------------------------------- recording policy */

/**
 * The budget policy during a debug request's real decision: every call goes to the real policy; the answers
 * of the stateful calls are kept for the explanation (which must not ask again).
 */
export class RecordingPolicy implements BidPolicy {
  readonly inner: BidPolicy;
  /** Per line item: -1 not asked, 0 refused, 1 passed. */
  readonly eligibleAnswer: Int8Array;
  /** Why eligible() refused (the budget policy's refusal name: paused, pacing, out_of_flight...). */
  readonly eligibleDetail: (string | null)[];
  /** Per line item: the refusal of a reserve() call, null when none was refused. */
  readonly reserveRefused: (string | null)[];
  /** The decision's clock (the nowMs it passed), NaN when it never asked. */
  nowMs = NaN;

  constructor(inner: BidPolicy, lineItems: number) {
    this.inner = inner;
    this.eligibleAnswer = new Int8Array(lineItems).fill(-1);
    this.eligibleDetail = new Array<string | null>(lineItems).fill(null);
    this.reserveRefused = new Array<string | null>(lineItems).fill(null);
  }

  get lastReservation(): number | undefined {
    return this.inner.lastReservation;
  }

  eligible(lineItem: number, nowMs: number): boolean {
    this.nowMs = nowMs;
    const before = this.refusalRow(lineItem);
    const ok = this.inner.eligible(lineItem, nowMs);
    if (lineItem >= 0 && lineItem < this.eligibleAnswer.length) {
      this.eligibleAnswer[lineItem] = ok ? 1 : 0;
      if (!ok) this.eligibleDetail[lineItem] = this.refusalSince(lineItem, before) ?? 'refused by the budget policy';
    }
    return ok;
  }

  rank(lineItem: number, priceMicros: number): number {
    return this.inner.rank(lineItem, priceMicros);
  }

  reserve(lineItem: number, costMicros: number, nowMs: number): boolean {
    this.nowMs = nowMs;
    const before = this.refusalRow(lineItem);
    const ok = this.inner.reserve(lineItem, costMicros, nowMs);
    if (!ok && lineItem >= 0 && lineItem < this.reserveRefused.length) {
      this.reserveRefused[lineItem] = this.refusalSince(lineItem, before) ?? 'reservation refused';
    }
    return ok;
  }

  /** A copy of the budget policy's refusal counters of one line item (null for other policies). */
  private refusalRow(lineItem: number): Float64Array | null {
    const p = this.inner;
    if (!(p instanceof BudgetPolicy) || lineItem < 0 || lineItem >= p.plan.lineItemCount) return null;
    const n = REFUSAL_NAMES.length;
    return p.refusals.slice(lineItem * n, lineItem * n + n);
  }

  private refusalSince(lineItem: number, before: Float64Array | null): string | null {
    const p = this.inner;
    if (before === null || !(p instanceof BudgetPolicy)) return null;
    const n = REFUSAL_NAMES.length;
    for (let r = 0; r < n; r++) if (p.refusals[lineItem * n + r] > before[r]) return REFUSAL_NAMES[r];
    return null;
  }
}

/* ---------------------------------------------------------------- the debug answer */

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A debug request end to end: the real decision (BidHandler.handle, with the recording policy), then the
 * explanation, put into the answer. `decision` is the handler's Decision, read right after handle().
 */
export function answerDebug(handler: BidHandler, decision: Decision, metrics: Metrics, body: string, options: DebugRequest): BidResult {
  if (options.refused) {
    metrics.debugRefused.inc();
    return handler.handle(body);
  }
  const decider = handler.current;
  const real = decider.policy;
  const recorder = new RecordingPolicy(real, decider.config.lineItems.length);
  const clock = performance.timeOrigin + performance.now();
  decider.policy = recorder;
  let r: BidResult;
  try {
    r = handler.handle(body);
  } finally {
    decider.policy = real;
  }
  if (r.status === 400) return r;
  metrics.debugExplained.inc();
  const req = JSON.parse(body) as Any;
  let trace: DebugTrace | { mode: 'live'; outcome: string; reason: string; error: string };
  try {
    trace = explain(decider, req, Number.isNaN(recorder.nowMs) ? clock : recorder.nowMs, decision, recorder, options.lineItems);
  } catch (e) {
    // The request was answered for real already: a failing explanation must not turn it into a 5xx.
    trace = { mode: 'live', outcome: decision.bidCount > 0 ? 'bid' : 'nobid', reason: decision.bidCount > 0 ? 'bid' : label(decision.reason), error: `explanation failed: ${(e as Error).message}` };
  }
  let response: Record<string, unknown>;
  if (r.status === 204 || r.body.length === 0) {
    // A 204 has no body to carry the trace: a debug no-bid is a 200 with an empty seatbid and its nbr.
    response = { id: req.id, seatbid: [], nbr: NBR_CODE[decision.reason] ?? 0 };
  } else {
    response = JSON.parse(r.body) as Record<string, unknown>;
  }
  const ext = isObject(response.ext) ? response.ext : (response.ext = {});
  const segbid = isObject(ext.segbid) ? ext.segbid : (ext.segbid = {});
  segbid.debug = trace;
  r.status = 200;
  r.body = JSON.stringify(response);
  return r;
}

/* ---------------------------------------------------------------- the explanation */

/** What the explanation keeps per Decider (built on the first debug request of a config, then reused). */
interface ExplainState {
  readonly segmenter: RequestSegmenter;
  readonly mctx: MultiplierContext;
  readonly bits: Uint32Array;
  readonly row: Uint32Array;
}

const states = new WeakMap<Decider, ExplainState>();

function stateOf(decider: Decider): ExplainState {
  let s = states.get(decider);
  if (s === undefined) {
    const dict = decider.config.dictionary;
    s = {
      segmenter: new RequestSegmenter({ width: dict.words * 32, segments: [...dict.segments] }, decider.store.header, dict),
      mctx: new MultiplierContext(decider.plan.multipliers),
      bits: new Uint32Array(dict.words),
      row: new Uint32Array(dict.words),
    };
    states.set(decider, s);
  }
  return s;
}

function hasBit(set: Uint32Array, i: number): boolean {
  return (set[i >>> 5] & (1 << (i & 31))) !== 0;
}

const cpm = (micros: number): number => micros / 1e6;
const label = (reason: number): string => NO_BID_LABELS[reason] ?? 'unknown';

/** Reasons only the whole-request gates return (decide.ts requestGates). */
const GATE_REASONS: ReadonlySet<number> = new Set([NO_BID.test_request, NO_BID.seat_blocked, NO_BID.insufficient_time, NO_BID.no_currency]);

/** The user keys of the request, looked up one by one (decide.ts userSegments), their rows ORed into `bits`. */
function userKeys(decider: Decider, req: Any, personal: boolean, state: ExplainState): UserKeyTrace[] {
  const out: UserKeyTrace[] = [];
  const lookup = (): boolean | null => {
    if (!personal) return null;
    state.row.fill(0);
    const known = decider.store.orInto(keyHash.hi, keyHash.lo, state.row);
    for (let w = 0; w < state.bits.length; w++) state.bits[w] |= state.row[w];
    return known;
  };
  const user = req.user;
  if (user !== undefined) {
    if (typeof user.buyeruid === 'string' && user.buyeruid.length > 0) {
      hashKey(KEY_KIND.buyeruid, user.buyeruid);
      out.push({ kind: 'buyeruid', id: user.buyeruid, known: lookup() });
    }
    if (typeof user.id === 'string' && user.id.length > 0) {
      hashKey(KEY_KIND.userid, user.id);
      out.push({ kind: 'userid', id: user.id, known: lookup() });
    }
    const eids = user.eids !== undefined ? user.eids : user.ext !== undefined ? user.ext.eids : undefined;
    if (Array.isArray(eids)) {
      for (let e = 0; e < eids.length && e < MAX_EIDS; e++) {
        const eid = eids[e];
        if (eid === null || typeof eid !== 'object' || typeof eid.source !== 'string' || !Array.isArray(eid.uids)) continue;
        for (let u = 0; u < eid.uids.length && u < MAX_UIDS; u++) {
          const uid = eid.uids[u];
          if (uid === null || typeof uid !== 'object' || typeof uid.id !== 'string' || uid.id.length === 0) continue;
          hashEidKey(eid.source, uid.id); // as user-keys.ts hashes it (a hex id in any case)
          out.push({ kind: 'eid', id: uid.id, source: eid.source, known: lookup() });
        }
      }
    }
  }
  const device = req.device;
  if (device !== undefined && isDeviceId(device.ifa)) {
    hashIfa(device.ifa); // as user-keys.ts hashes it (any case)
    out.push({ kind: 'ifa', id: device.ifa, known: lookup() });
  }
  return out;
}

/** The line items to explain: all, or the named ones in the order named (unknown ids are reported as such). */
function selected(config: CompiledConfig, only: string[] | null): (CompiledLineItem | string)[] {
  if (only === null) return [...config.lineItems];
  const byId = new Map(config.lineItems.map((li) => [li.id, li] as const));
  return only.map((id) => byId.get(id) ?? id);
}

/**
 * Explains a request the decider has just decided into `d` (read before the next decision). `recorder` holds
 * the budget policy's answers during that decision.
 */
export function explain(decider: Decider, req: Any, nowMs: number, d: Decision, recorder: RecordingPolicy, only: string[] | null): DebugTrace {
  const config = decider.config;
  const plan = decider.plan;
  const state = stateOf(decider);
  const verdict = plan.privacy.evaluate(req, new PrivacyVerdict());
  const personal = verdict.personalData;
  state.bits.fill(0);
  const keys = userKeys(decider, req, personal, state);
  // After the store rows, as in decide(): a seed member is not scored into its own lookalike.
  state.segmenter.orRequestBits(req, nowMs, state.bits, personal);
  const segments: DebugTrace['segments'] = [];
  config.dictionary.segments.forEach((s, bit) => {
    if (hasBit(state.bits, bit)) segments.push({ id: s.id, name: s.name, kind: s.kind });
  });
  const trace: DebugTrace = {
    mode: 'live',
    outcome: d.bidCount > 0 ? 'bid' : 'nobid',
    reason: d.bidCount > 0 ? 'bid' : label(d.reason),
    currency: d.respCur,
    privacy: { personalData: personal, reason: PRIVACY_REASON_LABELS[verdict.reason] ?? 'unknown' },
    knownUser: keys.some((k) => k.known === true),
    userKeys: keys,
    segments,
    lineItems: [],
  };
  const items = selected(config, only);
  if (GATE_REASONS.has(d.reason)) {
    for (const li of items) {
      trace.lineItems.push(
        typeof li === 'string'
          ? { id: li, outcome: 'nobid', stage: 'config', reason: 'unknown_line_item' }
          : { id: li.id, outcome: 'nobid', stage: 'request', reason: label(d.reason), detail: 'the whole request was refused before any line item' },
      );
    }
    return trace;
  }
  const ctx = new LineItemContext(decider, req, nowMs, d, recorder, personal, state, PRIVACY_REASON_LABELS[verdict.reason] ?? 'unknown');
  for (const li of items) trace.lineItems.push(typeof li === 'string' ? { id: li, outcome: 'nobid', stage: 'config', reason: 'unknown_line_item' } : ctx.explainLineItem(li));
  return trace;
}

/** The per-request inputs of the line-item stages, computed once per debug request. */
class LineItemContext {
  private readonly config: CompiledConfig;
  private readonly noInventory: boolean;
  private readonly channel: number;
  private readonly channelName: string;
  private readonly byDevice: Uint32Array;
  private readonly byCountry: Uint32Array;
  private readonly deviceType: unknown;
  private readonly country: unknown;
  private readonly capUser: boolean;
  private readonly respRate: number;
  private readonly exchange: number;
  private readonly auctionType: number;

  constructor(
    private readonly decider: Decider,
    private readonly req: Any,
    private readonly nowMs: number,
    private readonly d: Decision,
    private readonly recorder: RecordingPolicy,
    private readonly personal: boolean,
    private readonly state: ExplainState,
    private readonly privacyReason: string,
  ) {
    const config = decider.config;
    const plan = decider.plan;
    this.config = config;
    const t = config.supply;
    // decide.ts supplyCandidates: the same tables, read per line item.
    this.noInventory = req.site === undefined && req.app === undefined && req.dooh === undefined;
    this.channel = req.site !== undefined ? CHANNEL_SITE : req.app !== undefined ? CHANNEL_APP : CHANNEL_DOOH;
    this.channelName = this.channel === CHANNEL_SITE ? 'site' : this.channel === CHANNEL_APP ? 'app' : 'dooh';
    const device = req.device;
    const dt = device === undefined ? undefined : device.devicetype;
    this.deviceType = dt;
    this.byDevice = dt === undefined ? t.anyDeviceType : (t.byDeviceType.get(dt) ?? t.anyDeviceType);
    const deviceGeo = device !== undefined ? device.geo : undefined;
    let country = deviceGeo !== undefined ? deviceGeo.country : undefined;
    if (country === undefined && req.user !== undefined && req.user.geo !== undefined) country = req.user.geo.country;
    this.country = country;
    this.byCountry = country === undefined ? t.anyCountry : (t.byCountry.get(country) ?? t.anyCountry);
    if (plan.anyCaps && personal) primaryUserHash(req);
    this.capUser = plan.anyCaps && personal && (userHash.hi !== 0 || userHash.lo !== 0);
    const bits = personal ? state.bits : null;
    plan.multipliers.fillContext(state.mctx, req, nowMs, bits);
    plan.selector.prepareUser(bits);
    this.exchange = plan.shading.exchangeIndex(exchangeName(req));
    this.auctionType = req.at === 1 ? 1 : 2;
    this.respRate = config.rates.get(d.respCur) ?? 1;
  }

  explainLineItem(li: CompiledLineItem): LineItemTrace {
    const i = li.index;
    const plan = this.decider.plan;
    const t = this.config.supply;
    const out = (stage: Stage, reason: number, detail: string): LineItemTrace => ({ id: li.id, outcome: 'nobid', stage, reason: label(reason), detail });
    if (this.noInventory) return out('supply', NO_BID.no_inventory, 'the request has no site, app or dooh');
    if (!hasBit(t.active, i)) return out('supply', NO_BID.no_active_line_item, 'the line item is not active');
    if (!hasBit(t.byChannel[this.channel], i)) return out('supply', NO_BID.supply_mismatch, `channel ${this.channelName} is not one of its channels`);
    if (!hasBit(this.byDevice, i)) return out('supply', NO_BID.supply_mismatch, `device type ${String(this.deviceType ?? 'absent')} is not one of its device types`);
    if (!hasBit(this.byCountry, i)) return out('supply', NO_BID.supply_mismatch, `country ${String(this.country ?? 'absent')} is not one of its countries`);
    if (!this.personal && hasBit(plan.personalMask, i)) {
      return out('privacy', NO_BID.privacy_restricted, `it needs personal data, not allowed for this request (${this.privacyReason})`);
    }
    if (!evalTargeting(li.targeting, this.state.bits)) return out('targeting', NO_BID.unmatched_user, "its targeting does not match the user's segments");
    if (plan.anyCaps && this.personal && plan.capPlan.capped[i] === 1) {
      if (!this.capUser) return out('frequency_cap', NO_BID.frequency_capped, 'capped line item and no user key to count impressions by');
      if (!plan.caps.check(userHash.hi, userHash.lo, i, this.nowMs)) return out('frequency_cap', NO_BID.frequency_capped, 'the user reached a frequency cap');
    }
    const asked = this.recorder.eligibleAnswer[i];
    if (asked === 0) return out('budget_policy', NO_BID.paced, this.recorder.eligibleDetail[i] ?? 'refused by the budget policy');
    if (asked === -1) return out('budget_policy', NO_BID.none, 'the decision did not reach the budget policy for this line item');
    const multiplier = plan.multipliers.multiplierFor(i, this.state.mctx);
    const v = plan.strategies.finalBidMicros(i, multiplier);
    const max = plan.strategies.maxBidMicros[i];
    const value = {
      baseCpm: cpm(plan.strategies.baseBidMicros[i]),
      multiplier,
      maxBidCpm: Number.isFinite(max) ? cpm(max) : null,
      valueCpm: cpm(v > 0 ? v : 0),
      currency: this.config.settings.currency,
    };
    if (!(v > 0)) return { ...out('strategy', NO_BID.strategy_no_bid, 'the strategy x multipliers value is not positive'), value };
    const refused = this.recorder.reserveRefused[i];
    const imps = (this.req.imp as Any[]).map((imp, k) => this.explainImp(li, imp, k, v, refused));
    const trace: LineItemTrace = { id: li.id, outcome: 'nobid', stage: 'imp', reason: label(NO_BID.none), value, imps };
    if (imps.some((m) => m.outcome === 'bid')) {
      trace.outcome = 'bid';
      trace.stage = 'bid';
      trace.reason = 'bid';
    } else if (refused !== null) {
      trace.stage = 'reserve';
      trace.reason = label(NO_BID.budget_exhausted);
      trace.detail = `the ledger refused its reservation (${refused})`;
    } else {
      const lost = imps.find((m) => m.outcome === 'outranked');
      if (lost !== undefined) {
        trace.stage = 'auction';
        trace.reason = 'outranked';
        trace.detail = `another line item ranked higher (${lost.wonBy ?? 'none'})`;
      } else {
        let deepest: number = NO_BID.none;
        for (const m of imps) {
          const code = NO_BID[m.reason as keyof typeof NO_BID] ?? NO_BID.none;
          if (deepest === NO_BID.none || STAGE_OF[code] >= STAGE_OF[deepest]) deepest = code;
        }
        trace.reason = label(deepest === NO_BID.none ? NO_BID.no_matching_format : deepest);
        trace.detail = imps.length === 1 ? imps[0].detail : 'no imp it could bid on';
      }
    }
    return trace;
  }

  /** decide.ts decideImp for one line item: deals first, then the open auction; then what the decision chose. */
  private explainImp(li: CompiledLineItem, imp: Any, impIdx: number, value: number, refused: string | null): ImpTrace {
    const rates = this.config.rates;
    const respRate = this.respRate;
    const plan = this.decider.plan;
    const trace: ImpTrace = { impid: imp.id, outcome: 'nobid' };
    let noted: number = NO_BID.none;
    let why = '';
    const note = (reason: number, detail: string): void => {
      if (noted === NO_BID.none || STAGE_OF[reason] >= STAGE_OF[noted]) {
        noted = reason;
        why = detail;
      }
    };
    let floorMicros = 0;
    if (imp.bidfloor !== undefined && imp.bidfloor > 0) {
      const cur = imp.bidfloorcur === undefined ? 'USD' : imp.bidfloorcur;
      const floorRate = rates.get(cur);
      if (floorRate === undefined) return { ...trace, reason: label(NO_BID.no_floor_rate), detail: `no rate for the floor currency ${cur}` };
      floorMicros = floorMicrosOf(imp.bidfloor, floorRate, respRate);
      trace.floorCpm = cpm(floorMicros);
    }
    const valueResp = Math.floor(value / respRate);
    trace.valueCpm = cpm(valueResp);
    const pmp = imp.pmp;
    const privateAuction = pmp !== undefined && pmp.private_auction === 1;
    const deals = pmp !== undefined && Array.isArray(pmp.deals) ? (pmp.deals as Any[]) : undefined;
    let price = -1;
    let dealId: string | null = null;
    let creatives: string[] | null = null;
    if (deals !== undefined && li.deals.size > 0) {
      for (let k = 0; k < deals.length && price < 0; k++) {
        const deal = deals[k];
        if (!li.deals.has(deal.id)) continue;
        if (!seatAdmitted(deal.wseat as string[] | undefined, this.config.settings.seat)) {
          note(NO_BID.deal_mismatch, `deal ${deal.id}: our seat is not in its wseat`);
          continue;
        }
        const c = this.creatives(li, imp, deal.wadomain as string[] | undefined);
        if (typeof c === 'number') {
          note(c, `deal ${deal.id}: ${c === NO_BID.creative_blocked ? 'every fitting creative is blocked' : 'no creative fits the imp'}`);
          continue;
        }
        let dealFloor = 0;
        if (deal.bidfloor !== undefined && deal.bidfloor > 0) {
          const cur = deal.bidfloorcur === undefined ? 'USD' : deal.bidfloorcur;
          const dealRate = rates.get(cur);
          if (dealRate === undefined) {
            note(NO_BID.no_floor_rate, `deal ${deal.id}: no rate for the floor currency ${cur}`);
            continue;
          }
          dealFloor = floorMicrosOf(deal.bidfloor, dealRate, respRate);
        }
        if (valueResp < dealFloor || valueResp <= 0) {
          note(NO_BID.below_floor, `deal ${deal.id}: value ${cpm(valueResp)} under the deal floor ${cpm(dealFloor)}`);
          continue;
        }
        price = dealPriceMicros(plan.shading, li.index, this.exchange, this.auctionType, deal, dealFloor, respRate, valueResp);
        if (price <= 0) {
          price = -1;
          continue;
        }
        dealId = deal.id;
        creatives = c;
      }
    }
    if (price < 0) {
      if (privateAuction || li.dealsOnly) {
        note(NO_BID.deal_mismatch, privateAuction ? 'private auction and none of its deals is offered' : 'deals only and none of its deals is offered');
        return { ...trace, reason: label(noted), detail: why };
      }
      const c = this.creatives(li, imp, undefined);
      if (typeof c === 'number') {
        note(c, c === NO_BID.creative_blocked ? 'every creative that fits the imp is blocked (bcat, badv, bapp, battr, secure, wlang)' : 'no creative fits the imp format');
        return { ...trace, reason: label(noted), detail: why };
      }
      price = plan.shading.price(li.index, this.exchange, floorMicros, respRate, valueResp, this.auctionType);
      if (price <= 0) {
        note(NO_BID.below_floor, `value ${cpm(valueResp)} ${this.d.respCur} is under the floor ${cpm(floorMicros)}`);
        return { ...trace, reason: label(noted), detail: why };
      }
      creatives = c;
    }
    trace.priceCpm = cpm(price);
    trace.shaded = price < valueResp;
    if (dealId !== null) trace.dealid = dealId;
    // What the decision did with this imp.
    const d = this.d;
    for (let k = 0; k < d.bidCount; k++) {
      if (d.impIndex[k] !== impIdx) continue;
      const winner = d.lineItem[k]!;
      if (winner.index === li.index) {
        trace.outcome = 'bid';
        trace.priceCpm = cpm(d.priceMicros[k]);
        trace.crid = d.creative[k]!.id;
        if (d.dealId[k] !== null) trace.dealid = d.dealId[k]!;
        else delete trace.dealid;
        return trace;
      }
      if (refused === null) {
        trace.outcome = 'outranked';
        trace.wonBy = winner.id;
        trace.creatives = creatives ?? [];
        return trace;
      }
    }
    trace.creatives = creatives ?? [];
    if (refused !== null) return { ...trace, reason: label(NO_BID.budget_exhausted), detail: `its reservation was refused in this request (${refused}): it sat out the rest` };
    return { ...trace, reason: 'none', detail: 'could bid, but the decision sent no bid on this imp' };
  }

  /**
   * The creatives the selector would draw from (decide.ts pickCreative, without the draw): the first tier of the
   * user's most specific list with an eligible creative; else the no-bid reason, as pickCreative notes it.
   */
  private creatives(li: CompiledLineItem, imp: Any, wadomain: string[] | undefined): string[] | number {
    const selector = this.decider.plan.selector;
    const ids = this.config.creatives;
    let fits = false;
    for (const tier of selector.listCreatives(selector.listFor(li.index))) {
      const ok: string[] = [];
      for (const c of tier) {
        if (selector.weight[c] <= 0) continue;
        const v = this.decider.creativeVerdict(this.req, imp, c, wadomain);
        if (v >= 1) fits = true;
        if (v === 2) ok.push(ids[c].id);
      }
      if (ok.length > 0) return ok;
    }
    return fits ? NO_BID.creative_blocked : NO_BID.no_matching_format;
  }
}
