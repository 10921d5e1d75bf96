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
import type { Metrics } from '../metrics/metrics.js';
import { EventHandler } from '../events/event-handler.js';
import { devKeyring } from '../events/keyring.js';
import { adoptLearning } from './bidding-plan.js';
import { LearningListener } from './learning.js';
import { BudgetPolicy } from '../budget/budget-policy.js';
import { Ledger } from '../budget/ledger.js';
import { BudgetOutcomeListener } from '../budget/outcome-listener.js';
import type { OutcomeContext, OutcomeListener, Attribution } from '../events/types.js';

export interface BidResult {
  status: 200 | 204 | 400;
  /** JSON body; empty for 204. */
  body: string;
  /** Reason label: "bid", a no-bid reason, or a bad-request reason. */
  reason: string;
  /** Short human reason for a 400. */
  detail: string;
}

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
  private budgetListener: BudgetOutcomeListener | null = null;
  private readonly decision = new Decision();
  /** Reused result object: read it before the next call. */
  private readonly result: BidResult = { status: 204, body: '', reason: '', detail: '' };

  /**
   * `events` defaults to a handler with a random development key and small caches (tests, benches); a server
   * passes its own, with the configured keyring and event log.
   */
  constructor(decider: Decider, metrics: Metrics, events?: EventHandler) {
    this.decider = decider;
    this.metrics = metrics;
    this.events = events ?? new EventHandler({ config: decider.config, keyring: devKeyring(), events: { dedupeMax: 10_000, touchMax: 10_000 } });
    this.events.addListener(new LearningListener(() => this.decider));
    this.attachBudget(decider);
    // Notices settle the ledger of whichever budget policy is current.
    const forward: OutcomeListener = {
      onWin: (li: number, p: number, ctx: OutcomeContext) => this.budgetListener?.onWin(li, p, ctx),
      onBill: (li: number, p: number, ctx: OutcomeContext) => this.budgetListener?.onBill(li, p, ctx),
      onLoss: (li: number, b: number, m: number, r: number, ctx: OutcomeContext) => this.budgetListener?.onLoss(li, b, m, r, ctx),
      onImpression: (li: number) => this.budgetListener?.onImpression(li),
      onClick: (li: number, ctx: OutcomeContext) => this.budgetListener?.onClick(li, ctx),
      onConversion: (li: number, v: number, a: Attribution) => this.budgetListener?.onConversion(li, v, a),
    };
    this.events.addListener(forward);
  }

  /** Gives the decider the budget policy of its campaigns, keeping the ledger when the campaigns are the same. */
  private attachBudget(next: Decider): void {
    const plan = next.config.budgetPlan;
    if (plan === null) {
      this.budget = null;
      this.budgetListener = null;
      return;
    }
    const previous = this.budget;
    if (previous !== null) {
      // Campaigns are matched by id and keep their spend and open reservations; line-item tags are re-mapped.
      const newIndex = new Map(plan.lineItemIds.map((id, i) => [id, i] as const));
      const tagMap = previous.plan.lineItemIds.map((id) => newIndex.get(id) ?? -1);
      previous.ledger.reconfigure(Ledger.termsOf(plan), tagMap);
    }
    this.budget = new BudgetPolicy(plan, previous !== null ? { ledger: previous.ledger } : {});
    this.budgetListener = new BudgetOutcomeListener(this.budget);
    this.budget.tick(Date.now()); // the pacing throttles exist from the first request, not the first timer tick
    next.policy = this.budget;
  }

  get current(): Decider {
    return this.decider;
  }

  /** Atomic swap: JavaScript runs one request at a time, so the next request sees the new pair whole. */
  swap(next: Decider): void {
    if (next.plan !== this.decider.plan) adoptLearning(next.plan, this.decider.plan);
    if (next.config.budgetPlan !== this.decider.config.budgetPlan) this.attachBudget(next);
    else if (this.budget !== null) next.policy = this.budget;
    this.events.setConfig(next.config);
    this.decider = next;
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
    decider.decide(request, nowMs, d);
    (d.knownUser ? m.knownUser : m.unknownUser).inc();
    if (d.reason !== NO_BID.seat_blocked && d.reason !== NO_BID.insufficient_time && d.reason !== NO_BID.no_currency && d.reason !== NO_BID.test_request) {
      m.privacyCounters[decider.verdict.reason].inc();
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

  private bad(reason: string, detail: string): BidResult {
    const r = this.result;
    r.status = 400;
    r.reason = reason;
    r.detail = detail;
    r.body = JSON.stringify({ error: reason, reason: detail });
    return r;
  }
}
