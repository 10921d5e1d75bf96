/**
 * The transport-independent bid endpoint: a complete (already inflated) body in, an HTTP status and body out.
 * Both the uWebSockets.js server and the node:http peer of the bench call this, so they decide identically.
 *
 *   parse JSON -> validate -> decide (src/bidding/decide.ts) -> serialise (src/openrtb/response.ts)
 *
 * The current Decider (config + segment store) is swapped whole by `swap()`: a request sees the old pair or
 * the new pair, never half of each. Never throws for request content.
 */
import { performance } from 'node:perf_hooks';
import { BAD_REQUEST, NBR_CODE, NO_BID, NO_BID_LABELS } from '../openrtb/reasons.js';
import { validateBidRequest } from '../openrtb/validate.js';
import { buildBidResponse, buildNoBidResponse } from '../openrtb/response.js';
import { Decider, Decision } from './decide.js';
import { answerDebug, type DebugRequest } from './explain.js';
import type { Metrics } from '../metrics/metrics.js';
import { EventHandler } from '../events/event-handler.js';
import { devKeyring } from '../events/keyring.js';
import { adoptLearning } from './bidding-plan.js';
import { LearningListener } from './learning.js';
import { BudgetPolicy, LIVE_REALLOCATION_SLICE_MS } from '../budget/budget-policy.js';
import { Ledger } from '../budget/ledger.js';
import { BudgetOutcomeListener, reservationOf } from '../budget/outcome-listener.js';
import type { ForwardedNotice } from '../budget/bank-threads.js';
import { LocalBank, type BudgetBank } from '../budget/bank.js';
import type { OutcomeContext, OutcomeListener, Attribution } from '../events/types.js';
import type { RemoteSegments } from '../segments/remote-segments.js';
import type { CompiledBudgetPlan } from '../budget/types.js';

/**
 * Persistence of the budget state (src/budget/state-store.ts). initialLedger: the first attach may start from
 * a restored ledger (already matched to the plan's campaigns by id), null = a fresh one. attached: after every
 * attach (start, and config swaps that change the campaigns), before the first tick.
 */
export interface BudgetStateHooks {
  initialLedger(plan: CompiledBudgetPlan): Ledger | null;
  attached(policy: BudgetPolicy | null): void;
}

export interface BidResult {
  status: 200 | 204 | 400;
  /** JSON body; empty for 204. */
  body: string;
  /** Reason label: "bid", a no-bid reason, or a bad-request reason. */
  reason: string;
  /** Short human reason for a 400. */
  detail: string;
}

/** handle()'s answer while a request waits for its Redis segment lookup (only when BidHandler.remote is set). */
const DEFERRED: BidResult = { status: 204, body: '', reason: 'deferred', detail: '' };

export class BidHandler {
  private decider: Decider;
  private readonly metrics: Metrics;
  /** Signs the event URLs of each bid and tallies bids sent (src/events). */
  readonly events: EventHandler;
  /**
   * Budgets, pacing and the test-and-learn allocator of the configured campaigns (null: none). It outlives
   * config swaps: a swap that keeps the same campaigns keeps the ledger, so spend is never forgotten.
   */
  budget: BudgetPolicy | null = null;
  /** This process's part of the traffic, for pacing (src/budget/pacing.ts Pacer.share). */
  private paceShare = 1;
  private budgetListener: BudgetOutcomeListener | null = null;
  private readonly budgetState: BudgetStateHooks | null;
  /** Where the ledger's grants come from when processes share the budgets (src/budget/bank.ts). */
  readonly bank: BudgetBank;
  /**
   * Budget notices whose reservation another worker (bank-threads.ts) or another process (Redis,
   * src/budget/notice-relay.ts) made are sent there: `route` returns true when it took the notice. Null: every
   * notice settles here.
   */
  noticeRouter: { route(notice: ForwardedNotice, handle: number): boolean } | null = null;
  /** Learned-state feedback (strategies, rotation, shading, caps); taps share it beyond this thread. */
  readonly learning: LearningListener;
  /** Told around every swap (shared learning queues the old plan's delta, then rebases on the new one). */
  readonly swapObservers: { beforeSwap(): void; afterSwap(): void }[] = [];
  /** Remote frequency caps (Redis): warmed per request once the user key may be read, never awaited. */
  capPrefetch: { prefetchRequest(request: object): void } | null = null;
  /**
   * Redis segment lookups for users the local store does not know (`serve --segments-redis`); null: none, and
   * handle() never defers. See src/segments/remote-segments.ts and handleAsync().
   */
  remote: RemoteSegments | null = null;
  private readonly decision = new Decision();
  /** Reused result object: read it before the next call. */
  private readonly result: BidResult = { status: 204, body: '', reason: '', detail: '' };

  /**
   * `events` defaults to a handler with a random development key and small caches (tests, benches); a server
   * passes its own, with the configured keyring and event log.
   */
  constructor(decider: Decider, metrics: Metrics, events?: EventHandler, budgetState?: BudgetStateHooks, bank?: BudgetBank) {
    this.decider = decider;
    this.bank = bank ?? new LocalBank();
    this.budgetState = budgetState ?? null;
    this.metrics = metrics;
    this.events = events ?? new EventHandler({ config: decider.config, keyring: devKeyring(), events: { dedupeMax: 10_000, touchMax: 10_000 } });
    this.learning = new LearningListener(() => this.decider);
    this.events.addListener(this.learning);
    this.attachBudget(decider);
    // Notices settle the ledger of whichever budget policy is current.
    const forward: OutcomeListener = {
      onWin: (li: number, p: number, ctx: OutcomeContext) => this.routed('win', li, p, ctx) || this.budgetListener?.onWin(li, p, ctx),
      onBill: (li: number, p: number, ctx: OutcomeContext) => this.routed('bill', li, p, ctx) || this.budgetListener?.onBill(li, p, ctx),
      onLoss: (li: number, b: number, m: number, r: number, ctx: OutcomeContext) => this.routed('loss', li, 0, ctx) || this.budgetListener?.onLoss(li, b, m, r, ctx),
      onImpression: (li: number) => this.budgetListener?.onImpression(li),
      onClick: (li: number, ctx: OutcomeContext) => this.budgetListener?.onClick(li, ctx),
      onConversion: (li: number, v: number, a: Attribution) => this.budgetListener?.onConversion(li, v, a),
    };
    this.events.addListener(forward);
  }

  /** Sends a budget notice to the worker or process that holds its reservation; false: it settles here. */
  private routed(kind: ForwardedNotice['kind'], lineItem: number, price: number, ctx: OutcomeContext): boolean {
    const router = this.noticeRouter;
    if (router === null) return false;
    const handle = reservationOf(ctx.bidId);
    if (handle < 0) return false; // no reservation: nothing to settle elsewhere
    return router.route({ kind, lineItem, price, bidId: ctx.bidId, nowMs: ctx.nowMs }, handle);
  }

  /** A budget notice forwarded by another worker or process: settled here, never routed again. */
  applyNotice(n: ForwardedNotice): void {
    const listener = this.budgetListener;
    if (listener === null) return;
    const ctx = { bidId: n.bidId, nowMs: n.nowMs } as OutcomeContext;
    if (n.kind === 'win') listener.onWin(n.lineItem, n.price, ctx);
    else if (n.kind === 'bill') listener.onBill(n.lineItem, n.price, ctx);
    else listener.onLoss(n.lineItem, 0, 0, 0, ctx);
  }

  /** Gives the decider the budget policy of its campaigns, keeping the ledger when the campaigns are the same. */
  private attachBudget(next: Decider): void {
    const plan = next.config.budgetPlan;
    if (plan === null) {
      this.budget = null;
      this.budgetListener = null;
      this.budgetState?.attached(null);
      return;
    }
    const previous = this.budget;
    if (previous !== null) {
      // Campaigns are matched by id and keep their spend and open reservations; line-item tags are re-mapped.
      const newIndex = new Map(plan.lineItemIds.map((id, i) => [id, i] as const));
      const tagMap = previous.plan.lineItemIds.map((id) => newIndex.get(id) ?? -1);
      previous.ledger.reconfigure(Ledger.termsOf(plan), tagMap);
    }
    const restored = previous === null ? (this.budgetState?.initialLedger(plan) ?? null) : null;
    const ledger = previous?.ledger ?? restored ?? new Ledger(Ledger.termsOf(plan), undefined, undefined, this.bank.genBase);
    this.budget = new BudgetPolicy(plan, { ledger });
    if (previous !== null) this.budget.adoptFrom(previous); // learning and pacing go on across the swap
    this.budget.pacer.share = this.paceShare;
    this.bank.attach(ledger, plan); // grants set before the first request
    this.budgetListener = new BudgetOutcomeListener(this.budget);
    this.budgetState?.attached(this.budget);
    if (previous === null) this.budget.tick(Date.now()); // the pacing throttles exist from the first request, not the first timer tick
    else this.reallocateAfterSwap(this.budget);
    next.policy = this.budget;
  }

  /**
   * A config swap's new policy: expiry and pacing now, then the test-and-learn reallocation of every campaign (a
   * new allocator has run none) in slices of LIVE_REALLOCATION_SLICE_MS, one per turn of the event loop, as the
   * live timer runs its rounds. Before, the swap reallocated 8 campaigns in one call (~30-50 ms of the bid thread
   * on the 1,000 line item config, every reload) and left the others to the timer's rounds, one or two a second.
   * Until a campaign's turn comes (within some tens of ms), it ranks as a new allocator does: even shares, the
   * restored evidence (state store), arms by price; anything that reads the allocation finishes the round first
   * (Allocator.finishLive). A swap before this chain ends leaves it: the next policy has its own.
   */
  private reallocateAfterSwap(policy: BudgetPolicy): void {
    const nowMs = Date.now();
    policy.tick(nowMs, 0);
    const slice = () => policy.reallocationSlice(nowMs, LIVE_REALLOCATION_SLICE_MS, Infinity, Infinity);
    // Only this round: once it is over (here, or finished by a reader), the chain ends; it never starts another.
    const step = () => {
      if (this.budget === policy && policy.allocator.reallocating && slice()) setImmediate(step);
    };
    if (slice()) setImmediate(step);
  }

  get current(): Decider {
    return this.decider;
  }

  /** Atomic swap: JavaScript runs one request at a time, so the next request sees the new pair whole. */
  /** Sets the part of the traffic this process sees (1/workers, 1/(machines x workers)); kept across reloads. */
  setPaceShare(share: number): void {
    this.paceShare = share > 0 && share <= 1 ? share : 1;
    if (this.budget !== null) this.budget.pacer.share = this.paceShare;
  }

  swap(next: Decider): void {
    // First: the only step that may refuse the config (its events section), before anything has changed.
    this.events.setConfig(next.config);
    for (const o of this.swapObservers) o.beforeSwap();
    if (next.plan !== this.decider.plan) adoptLearning(next.plan, this.decider.plan);
    if (next.config.budgetPlan !== this.decider.config.budgetPlan) this.attachBudget(next);
    else if (this.budget !== null) next.policy = this.budget;
    this.decider = next;
    for (const o of this.swapObservers) o.afterSwap();
  }

  handle(body: string): BidResult {
    const start = performance.now();
    const nowMs = performance.timeOrigin + start; // the one clock read of this request
    const r = this.result;
    const m = this.metrics;
    let req: unknown;
    try {
      req = JSON.parse(body);
    } catch {
      m.badRequestCounters[BAD_REQUEST.invalid_json].inc();
      return this.bad('invalid_json', 'body is not valid JSON');
    }
    const problem = validateBidRequest(req);
    if (problem !== null) {
      m.badRequestCounters[BAD_REQUEST.invalid_request].inc();
      return this.bad('invalid_request', problem);
    }
    const decider = this.decider; // one pair for the whole request
    const d = this.decision;
    const request = req as { id: string; imp: { id: string }[]; test?: number };
    if (this.remote !== null && this.remote.wants(request, decider)) return DEFERRED; // handleAsync finishes it
    decider.decide(request, nowMs, d);
    (d.knownUser ? m.knownUser : m.unknownUser).inc();
    if (d.reason !== NO_BID.seat_blocked && d.reason !== NO_BID.insufficient_time && d.reason !== NO_BID.no_currency && d.reason !== NO_BID.test_request) {
      m.privacyCounters[decider.verdict.reason].inc();
      // After the decision (it cannot wait for the network): the user's next request decides on warm caps.
      if (this.capPrefetch !== null && decider.verdict.personalData && decider.plan.anyCaps) this.capPrefetch.prefetchRequest(request);
    }
    if (d.bidCount > 0) {
      r.status = 200;
      r.body = buildBidResponse(request, d, decider.config, nowMs, this.events, decider.userBits, decider.verdict.personalData);
      r.reason = 'bid';
      r.detail = '';
      m.bidCounter.inc();
      for (let k = 0; k < d.bidCount; k++) m.bidPrice.observe(d.priceMicros[k] / 1e6);
    } else {
      if (decider.config.settings.noBidStyle === 'nbr') {
        r.status = 200;
        r.body = buildNoBidResponse(request.id, NBR_CODE[d.reason]);
      } else {
        r.status = 204;
        r.body = '';
      }
      r.reason = NO_BID_LABELS[d.reason] ?? NO_BID_LABELS[NO_BID.none];
      r.detail = '';
      m.noBidCounters[d.reason].inc();
    }
    m.decisionSeconds.observe((performance.now() - start) / 1000);
    return r;
  }

  /**
   * handle() with the Redis segment store (this.remote): a request whose user keys the local store does not know
   * is looked up in Redis first (a budget from tmax; timeout or Redis down = unknown user), then decided by a
   * second, synchronous handle() of the same body (parsed again: ~20 µs against a network round trip). The
   * promise resolves with a COPY of the result (other requests reuse this.result meanwhile) and never rejects.
   * Every other request gets handle()'s synchronous result.
   */
  handleAsync(body: string): BidResult | Promise<BidResult> {
    const first = this.handle(body);
    const remote = this.remote;
    if (first !== DEFERRED || remote === null) return first;
    return remote.takePending().then((row) => {
      try {
        // The pair current now: a swap may have happened while Redis answered.
        const r = remote.resume(this.decider.store, row, () => this.handle(body));
        return { status: r.status, body: r.body, reason: r.reason, detail: r.detail };
      } catch {
        return { status: 204, body: '', reason: 'error', detail: '' } satisfies BidResult;
      }
    });
  }

  /**
   * `?debug=1` when the config enables it (src/bidding/explain.ts): decided like handle() (it bids for real),
   * then explained per line item into `ext.segbid.debug`. Off the hot path: handle() knows nothing of it.
   */
  handleDebug(body: string, options: DebugRequest): BidResult {
    return answerDebug(this, this.decision, this.metrics, body, options);
  }

  private bad(reason: string, detail: string): BidResult {
    const r = this.result;
    r.status = 400;
    r.reason = reason;
    r.detail = detail;
    r.body = JSON.stringify({ error: reason, reason: detail });
    return r;
  }
}
