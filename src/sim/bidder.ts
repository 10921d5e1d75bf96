/**
 * How the simulator asks the REAL decision code for a bid: a Decider built with the budget policy
 * (`new Decider(config, store, policy)`), one decide() per request. The Decider calls the policy itself:
 * eligible() once per candidate line item, rank() to choose among those that can serve the imp, reserve() on
 * the chosen bid (the next best when refused). The reservation handle is read from the policy right after
 * (single-imp requests: the last successful reservation is this bid's).
 */
import { Decider, Decision } from '../bidding/decide.js';
import type { CompiledConfig } from '../config/compile.js';
import type { SegmentStore } from '../segments/segment-store.js';
import type { BudgetBidPolicy } from '../budget/budget-policy.js';

export class SimBidder {
  private readonly decider: Decider;
  private readonly policy: BudgetBidPolicy;
  private readonly out = new Decision();
  /* the chosen bid (valid when bid() returns true) */
  lineItem = -1;
  priceMicros = 0;
  handle = -1;
  decideCalls = 0;

  constructor(config: CompiledConfig, store: SegmentStore, policy: BudgetBidPolicy) {
    this.policy = policy;
    this.decider = new Decider(config, store, policy);
  }

  /** One single-imp request. True when a bid goes out (lineItem, priceMicros = CPM micros, handle). */
  bid(req: unknown, nowMs: number): boolean {
    const out = this.out;
    this.decideCalls++;
    this.decider.decide(req, nowMs, out);
    if (out.bidCount === 0) return false;
    this.lineItem = out.lineItem[0]!.index;
    this.priceMicros = out.priceMicros[0];
    this.handle = this.policy.lastReservation;
    return true;
  }
}
