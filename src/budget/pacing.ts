/**
 * Pacing: each campaign's spend follows a target curve over its day, and each arm gets the part of the spend
 * rate its allocation share asks for. Computed off the hot path (update(), every second); the hot path reads
 * one number per line item, `throttle[li]`, the probability of taking part in an auction, and compares it with
 * a uniform draw.
 *
 * Contract:
 *   - Target: T(t) = dayBudget * F(t), F the cumulative curve over the campaign's day (clipped to its flight):
 *     `even` (flat), or `traffic` (the hourly profile configured, else the profile of opportunities observed on
 *     the previous days, else flat).
 *   - Controller (PI with feed-forward), per campaign, on the gap e = T(t) - spentToday:
 *       u = dayBudget * F'(t) + e / T_c + I,   I += e / (4 T_c^2) dt   (critically damped for a unit plant)
 *     u is the desired spend rate (micros/s), T_c = catchUpSeconds. The integral absorbs the bias of the
 *     capacity estimates; it freezes when the arms are all fully open (traffic-limited) or all closed, so it
 *     does not wind up.
 *   - Split: arm i should spend share_i * u. Its capacity a_i (micros/s it would spend fully open) is estimated
 *     from the opportunities it sees (counted in eligible(), throttled or not) and its spend per passed
 *     opportunity (EWMA). Water-filling: arms whose part exceeds their capacity are fully open and the rest of
 *     their part goes to the others in proportion to their shares; throttle_i = part_i / a_i.
 *   - Gates (throttle 0, gate code for the refusal reason): paused, out of flight, budget exhausted (what is
 *     left cannot pay one impression), segment at its guard-rail maximum of the day's budget.
 *   - Tells the allocator about traffic: allocator.opportunityRate (per arm), allocator.targetRate (u) and
 *     allocator.capacity (a_i / u), so that the next reallocation plans with what the arms can actually spend.
 * Money (budgets, spent) stays integer micros; rates and throttles are floats (they are not money).
 */
import { DAY_MS, type CompiledBudgetPlan } from './types.js';
import type { Ledger } from './ledger.js';
import type { Allocator } from './allocator.js';

export const GATE = { open: 0, paused: 1, out_of_flight: 2, exhausted: 3, guard_rail_max: 4 } as const;
export const GATE_NAMES = ['open', 'paused', 'out_of_flight', 'exhausted', 'guard_rail_max'] as const;

const HOUR_MS = 3_600_000;
/** Time constant of the rate estimates, seconds. */
const RATE_TAU_S = 60;
/** Pseudo-count of passes behind the prior spend per pass (a fifth of the bid's impression cost). */
const PRIOR_PASSES = 20;
const PRIOR_SPEND_PER_PASS = 0.2;

export class Pacer {
  readonly plan: CompiledBudgetPlan;
  /** Probability that the line item takes part in an auction (hot path reads it). 1 for unbudgeted items. */
  readonly throttle: Float64Array;
  /** Campaign-level part of the throttle (u / total capacity), to tell pacing refusals from share refusals. */
  readonly campaignGate: Float64Array;
  readonly gate: Uint8Array;
  /** Counters written by the policy's hot path. */
  readonly opportunities: Float64Array;
  readonly passes: Float64Array;
  /** Spend booked today per line item (integer micros), written by the policy when notices settle. */
  readonly spentToday: Float64Array;
  /** Runtime pause per campaign (ops API), on top of the configured `paused`. */
  readonly paused: Uint8Array;
  /** Desired spend rate per campaign, micros per second (for reports). */
  readonly desiredRate: Float64Array;
  /** Estimated capacity per line item, micros per second. */
  readonly capacityRate: Float64Array;
  private readonly oppRate: Float64Array;
  private readonly passRate: Float64Array;
  private readonly spendRate: Float64Array;
  private readonly lastOpp: Float64Array;
  private readonly lastPass: Float64Array;
  private readonly lastSpent: Float64Array;
  private readonly integral: Float64Array;
  private readonly dayIndex: Float64Array;
  private readonly hourCounts: Float64Array;
  private readonly learned: Float64Array;
  private readonly learnedDays: Float64Array;
  private lastMs = NaN;

  /**
   * The part of each campaign's traffic this process sees (1 = all of it): with N bid workers, or M machines
   * behind a load balancer, each paces toward its part of the day's curve; otherwise each would chase the
   * whole curve with its part of the traffic and the campaign would spend N times too fast until its grants
   * ran out. Set by the server (BidHandler.setPaceShare), not by the config.
   */
  share = 1;

  constructor(plan: CompiledBudgetPlan) {
    this.plan = plan;
    const n = plan.lineItemCount;
    const c = plan.campaigns.length;
    this.throttle = new Float64Array(n).fill(1);
    this.campaignGate = new Float64Array(n).fill(1);
    this.gate = new Uint8Array(n);
    this.opportunities = new Float64Array(n);
    this.passes = new Float64Array(n);
    this.spentToday = new Float64Array(n);
    this.paused = new Uint8Array(c);
    this.desiredRate = new Float64Array(c);
    this.capacityRate = new Float64Array(n);
    this.oppRate = new Float64Array(n);
    this.passRate = new Float64Array(n);
    this.spendRate = new Float64Array(n);
    this.lastOpp = new Float64Array(n);
    this.lastPass = new Float64Array(n);
    this.lastSpent = new Float64Array(n);
    this.integral = new Float64Array(c);
    this.dayIndex = new Float64Array(c).fill(NaN);
    this.hourCounts = new Float64Array(c * 24);
    this.learned = new Float64Array(c * 24);
    this.learnedDays = new Float64Array(c);
    // Until the first update, budgeted arms wait (no spend before the controller has looked at the ledger).
    for (const camp of plan.campaigns) for (const li of camp.arms) this.throttle[li] = 0;
  }

  /** The hourly weights (sum 1) the campaign's curve uses today. */
  profileOf(c: number): Float64Array {
    const camp = this.plan.campaigns[c];
    if (camp.curve === 'traffic') {
      if (camp.hourlyProfile !== null) return camp.hourlyProfile;
      if (this.learnedDays[c] > 0) return this.learned.subarray(c * 24, c * 24 + 24);
    }
    return EVEN;
  }

  /**
   * Cumulative target fraction F(t) of the day's budget at nowMs, and F'(t) per second (into rateOut[0]).
   * The day is clipped to the flight: the curve reaches 1 at min(day end, flight end).
   */
  targetFraction(c: number, nowMs: number, rateOut?: Float64Array): number {
    const camp = this.plan.campaigns[c];
    const dayStart = Math.floor((nowMs + camp.utcOffsetMs) / DAY_MS) * DAY_MS - camp.utcOffsetMs;
    const ws = Math.max(dayStart, camp.flightStartMs);
    const we = Math.min(dayStart + DAY_MS, camp.flightEndMs);
    let w = this.profileOf(c);
    const xs = (ws - dayStart) / HOUR_MS, xe = (we - dayStart) / HOUR_MS;
    const xt = Math.min(Math.max((nowMs - dayStart) / HOUR_MS, xs), xe);
    let span = cumulative(w, xe) - cumulative(w, xs);
    if (!(span > 1e-12)) {
      w = EVEN;
      span = cumulative(w, xe) - cumulative(w, xs);
    }
    if (rateOut !== undefined) {
      const h = Math.min(23, Math.floor(xt));
      rateOut[0] = nowMs >= we || nowMs < ws ? 0 : w[h] / 3600 / span;
    }
    if (!(span > 0)) return 1;
    return Math.min(1, Math.max(0, (cumulative(w, xt) - cumulative(w, xs)) / span));
  }

  /** Target spend (micros) at nowMs for campaign c: dayBudget * F(t). */
  targetSpend(c: number, nowMs: number, ledger: Ledger): number {
    return ledger.dayBudgetOf(c) * this.share * this.targetFraction(c, nowMs);
  }

  /** The per-second control step. `allocator` supplies the shares and receives the capacities. */
  update(nowMs: number, ledger: Ledger, allocator: Allocator | null): void {
    const dt = Number.isNaN(this.lastMs) ? 0 : Math.max(0, (nowMs - this.lastMs) / 1000);
    this.lastMs = nowMs;
    const alpha = dt > 0 ? 1 - Math.exp(-dt / RATE_TAU_S) : 0;
    const plan = this.plan;
    const rate = new Float64Array(1);
    for (const camp of plan.campaigns) {
      const c = camp.index;
      ledger.roll(c, nowMs);
      const day = ledger.dayOf(c, nowMs);
      if (day !== this.dayIndex[c]) this.newDay(c, day);
      const hourSlot = c * 24 + Math.min(23, Math.floor((nowMs - ledger.dayStartMs(c)) / HOUR_MS));
      // Rate estimates per arm.
      for (const li of camp.arms) {
        const dOpp = this.opportunities[li] - this.lastOpp[li];
        const dPass = this.passes[li] - this.lastPass[li];
        const dSpent = Math.max(0, this.spentToday[li] - this.lastSpent[li]);
        this.lastOpp[li] = this.opportunities[li];
        this.lastPass[li] = this.passes[li];
        this.lastSpent[li] = this.spentToday[li];
        this.hourCounts[hourSlot] += dOpp;
        if (dt > 0) {
          this.oppRate[li] += (dOpp / dt - this.oppRate[li]) * alpha;
          this.passRate[li] += (dPass / dt - this.passRate[li]) * alpha;
          this.spendRate[li] += (dSpent / dt - this.spendRate[li]) * alpha;
        }
        const prior = PRIOR_SPEND_PER_PASS * plan.maxCostMicros[li];
        const spendPerPass = (this.spendRate[li] * RATE_TAU_S + prior * PRIOR_PASSES) / (this.passRate[li] * RATE_TAU_S + PRIOR_PASSES);
        this.capacityRate[li] = this.oppRate[li] * spendPerPass;
        if (allocator !== null) allocator.opportunityRate[li] = this.oppRate[li];
      }
      const gate = this.campaignGateCode(camp.index, nowMs, ledger);
      if (gate !== GATE.open) {
        this.close(c, gate);
        continue;
      }
      // Controller.
      // This process's part of the campaign's day: it sees `share` of the traffic and spends its own part.
      const B = ledger.dayBudgetOf(c) * this.share;
      const S = ledger.daySpentOf(c);
      const F = this.targetFraction(c, nowMs, rate);
      const e = B * F - S;
      const T = camp.catchUpSeconds;
      let u = B * rate[0] + e / T + this.integral[c];
      let totalCap = 0;
      // Segment guard rails (max), against the day's budget.
      const groupSpent = new Float64Array(camp.groups.length);
      for (let k = 0; k < camp.arms.length; k++) groupSpent[camp.armGroup[k]] += this.spentToday[camp.arms[k]];
      for (let k = 0; k < camp.arms.length; k++) {
        const li = camp.arms[k];
        const g = camp.groups[camp.armGroup[k]];
        const capped = g.guarded && g.maxShare < 1 && groupSpent[camp.armGroup[k]] >= g.maxShare * B;
        this.gate[li] = capped ? GATE.guard_rail_max : GATE.open;
        if (!capped) totalCap += this.capacityRate[li];
      }
      const saturatedHigh = u >= totalCap;
      const saturatedLow = u <= 0;
      if (dt > 0 && !(saturatedHigh && e > 0) && !(saturatedLow && e < 0)) {
        this.integral[c] += (e / (4 * T * T)) * dt;
        const limit = 2 * B * Math.max(rate[0], 1 / 86400);
        if (this.integral[c] > limit) this.integral[c] = limit;
        if (this.integral[c] < -limit) this.integral[c] = -limit;
      }
      if (u < 0) u = 0;
      this.desiredRate[c] = u;
      if (allocator !== null) allocator.targetRate[c] = u;
      this.split(c, u, totalCap, allocator);
    }
  }

  private campaignGateCode(c: number, nowMs: number, ledger: Ledger): number {
    const camp = this.plan.campaigns[c];
    if (camp.paused || this.paused[c] === 1) return GATE.paused;
    if (nowMs < camp.flightStartMs || nowMs >= camp.flightEndMs) return GATE.out_of_flight;
    let cheapest = Infinity;
    for (const li of camp.arms) if (this.plan.maxCostMicros[li] < cheapest) cheapest = this.plan.maxCostMicros[li];
    if (ledger.remainingOf(c) < Math.max(1, cheapest)) return GATE.exhausted;
    return GATE.open;
  }

  private close(c: number, gate: number): void {
    this.desiredRate[c] = 0;
    for (const li of this.plan.campaigns[c].arms) {
      this.throttle[li] = 0;
      this.campaignGate[li] = 0;
      this.gate[li] = gate;
    }
  }

  /** Water-fills u over the open arms by share, within capacity; sets throttles and the allocator's capacities. */
  private split(c: number, u: number, totalCap: number, allocator: Allocator | null): void {
    const camp = this.plan.campaigns[c];
    const arms = camp.arms;
    const n = arms.length;
    const part = new Float64Array(n);
    const active = new Uint8Array(n);
    let remaining = u;
    for (let k = 0; k < n; k++) active[k] = this.gate[arms[k]] === GATE.open ? 1 : 0;
    const shareOf = (k: number) => (allocator === null ? 1 / n : allocator.share[arms[k]]);
    for (let round = 0; round <= n; round++) {
      let sum = 0;
      for (let k = 0; k < n; k++) if (active[k]) sum += shareOf(k);
      if (!(sum > 0) || remaining <= 0) break;
      let changed = false;
      for (let k = 0; k < n; k++) {
        if (!active[k]) continue;
        const want = (remaining * shareOf(k)) / sum;
        const cap = this.capacityRate[arms[k]];
        if (want >= cap) {
          part[k] = cap;
          active[k] = 0;
          remaining -= cap;
          changed = true;
        }
      }
      if (!changed) {
        for (let k = 0; k < n; k++) if (active[k]) part[k] = (remaining * shareOf(k)) / sum;
        remaining = 0;
        break;
      }
    }
    if (remaining > 0) {
      // Only zero-share arms are left: give them the rest by the allocator's order (best first).
      const order = Array.from({ length: n }, (_, k) => k).filter((k) => active[k]);
      if (allocator !== null) order.sort((a, b) => allocator.priority[arms[b]] - allocator.priority[arms[a]]);
      for (const k of order) {
        const take = Math.min(remaining, this.capacityRate[arms[k]]);
        part[k] += take;
        remaining -= take;
      }
    }
    const pc = totalCap > 0 ? Math.min(1, u / totalCap) : 1;
    for (let k = 0; k < n; k++) {
      const li = arms[k];
      const cap = this.capacityRate[li];
      if (this.gate[li] !== GATE.open) {
        this.throttle[li] = 0;
        this.campaignGate[li] = 0;
      } else {
        this.throttle[li] = cap > 0 ? Math.min(1, part[k] / cap) : part[k] > 0 ? 1 : 0;
        this.campaignGate[li] = Math.max(pc, this.throttle[li]);
      }
      if (allocator !== null) allocator.capacity[li] = u > 0 ? cap / u : Infinity;
    }
  }

  /**
   * The controller's learned state by campaign and line-item id, for src/budget/state-store.ts (a restart
   * resumes the integral, the rate estimates, the hourly profile, today's spend per arm and runtime pauses).
   */
  exportState(): PacerState {
    const campaigns: Record<string, PacerCampaignState> = {};
    const lineItems: Record<string, number[]> = {};
    for (const camp of this.plan.campaigns) {
      const c = camp.index;
      campaigns[camp.id] = {
        day: this.dayIndex[c],
        integral: this.integral[c],
        paused: this.paused[c],
        hourCounts: Array.from(this.hourCounts.subarray(c * 24, c * 24 + 24)),
        learned: Array.from(this.learned.subarray(c * 24, c * 24 + 24)),
        learnedDays: this.learnedDays[c],
      };
      for (const li of camp.arms) lineItems[this.plan.lineItemIds[li]] = [this.spentToday[li], this.oppRate[li], this.passRate[li], this.spendRate[li]];
    }
    return { campaigns, lineItems };
  }

  /** Loads exportState() output by id (unknown ids and malformed entries are skipped). Call before update(). */
  importState(state: PacerState): void {
    const num = (x: unknown): x is number => typeof x === 'number' && !Number.isNaN(x);
    const day24 = (x: unknown): x is number[] => Array.isArray(x) && x.length === 24 && x.every((v) => typeof v === 'number' && Number.isFinite(v) && v >= 0);
    for (const camp of this.plan.campaigns) {
      const s = state.campaigns[camp.id];
      if (s === undefined || s === null) continue;
      const c = camp.index;
      if (num(s.day)) this.dayIndex[c] = s.day;
      if (num(s.integral) && Number.isFinite(s.integral)) this.integral[c] = s.integral;
      if (s.paused === 0 || s.paused === 1) this.paused[c] = s.paused;
      if (day24(s.hourCounts)) this.hourCounts.set(s.hourCounts, c * 24);
      if (day24(s.learned)) this.learned.set(s.learned, c * 24);
      if (num(s.learnedDays) && s.learnedDays >= 0) this.learnedDays[c] = s.learnedDays;
    }
    for (let li = 0; li < this.plan.lineItemCount; li++) {
      const v = state.lineItems[this.plan.lineItemIds[li]];
      if (this.plan.campaignOf[li] < 0 || !Array.isArray(v) || v.length < 4 || !v.every((x) => Number.isFinite(x) && x >= 0)) continue;
      [this.spentToday[li], this.oppRate[li], this.passRate[li], this.spendRate[li]] = v;
      // The next update measures deltas from here: restored spend is not a burst of spend.
      this.lastSpent[li] = this.spentToday[li];
      this.lastOpp[li] = this.opportunities[li];
      this.lastPass[li] = this.passes[li];
    }
  }

  private newDay(c: number, day: number): void {
    const first = Number.isNaN(this.dayIndex[c]);
    this.dayIndex[c] = day;
    this.integral[c] = 0;
    if (!first) {
      // Learn the hourly opportunity profile from the day that ended.
      const counts = this.hourCounts.subarray(c * 24, c * 24 + 24);
      let sum = 0;
      for (let h = 0; h < 24; h++) sum += counts[h];
      if (sum > 0) {
        const keep = this.learnedDays[c] > 0 ? 0.7 : 0;
        for (let h = 0; h < 24; h++) this.learned[c * 24 + h] = keep * this.learned[c * 24 + h] + (1 - keep) * (counts[h] / sum);
        this.learnedDays[c]++;
      }
    }
    this.hourCounts.fill(0, c * 24, c * 24 + 24);
    for (const li of this.plan.campaigns[c].arms) {
      this.spentToday[li] = 0;
      this.lastSpent[li] = 0;
    }
  }
}

/** Pacer.exportState(): per campaign id and per line-item id [spentToday, oppRate, passRate, spendRate]. */
export interface PacerCampaignState {
  day: number;
  integral: number;
  paused: number;
  hourCounts: number[];
  learned: number[];
  learnedDays: number;
}
export interface PacerState {
  campaigns: Record<string, PacerCampaignState>;
  lineItems: Record<string, number[]>;
}

const EVEN = new Float64Array(24).fill(1 / 24);

/** Integral of the hourly weights from hour 0 to x (0 <= x <= 24). */
function cumulative(w: Float64Array, x: number): number {
  const h = Math.floor(x);
  let s = 0;
  for (let i = 0; i < h && i < 24; i++) s += w[i];
  if (h < 24) s += w[h] * (x - h);
  return s;
}
