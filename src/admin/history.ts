/**
 * History of the budget, allocation and bidding figures behind the trader console's curves: a bounded
 * in-memory time series, sampled off the hot path by a timer (every 5 s by default) into ring buffers of fixed
 * length (720 points: an hour at 5 s). GET /admin/history serves it (src/server/start.ts).
 *
 * Contract:
 *   - sample(nowMs) only reads what the running components already keep, never anything on the request path:
 *     per campaign the ledger's spend of the day and the pacing target T(t) at that instant (integer micros,
 *     src/budget/pacing.ts), per arm the allocator's share and reason (explore, exploit, guard rail), per line
 *     item the KPI store's cumulative bids and wins and the shading table's mean factor (bid / value). The win
 *     rate is derived at sampling time over a trailing window (wins / bids between the point `windowMs` back
 *     and now; for a series' first point, since the counts began), capped at 1: bids are tallied in batches
 *     while wins arrive one by one, so a short window can see a win before its bid. Fewer than
 *     MIN_WINDOW_BIDS bids in the window: no rate (null).
 *   - Bounded memory: `capacity` points per series and at most `maxSeries` series; a series over the cap is
 *     not recorded (counted in droppedSeries); a series absent for a whole ring (a line item removed by a
 *     reload) is forgotten. Each series is keyed by ids, not config indices, so a reload (new indices, a new
 *     budget policy) continues it.
 *   - Every point has a sequence number; report({after}) returns only the points after it, so a polling
 *     client fetches increments. A value absent at a point is null (the series did not exist yet, no bid in
 *     the window). Series with no point in the range are left out; line items that neither bid in the range
 *     nor have shading feedback are listed by id only (the payload grows with what is active, not the config),
 *     and `top` keeps the line items with most bids: a full report of 1,000 active line items x 720 points is
 *     about 16 MB of JSON built on the bid thread, the console asks for increments of its top 24.
 *   - The budgets may be null (no campaign in the config): campaigns are then simply absent. In a cluster the
 *     source is the workers' last samples, merged (src/budget/budget-report.ts): at most one push old.
 */
import { SegbidError } from '../common/errors.js';
import { REASON_NAMES, type ReasonName } from '../budget/allocator.js';
import type { BudgetSample } from '../budget/budget-report.js';
import type { Counters } from '../events/kpis.js';

/** What the history reads of a shading table (ShadingTable is one; so is a worker's ShadingImage in a cluster). */
export interface ShadingView {
  readonly lineItemIds: readonly string[];
  lineItemFactor(li: number): { factor: number; trials: number };
}

/** A shading view as plain data, for a worker to send to the main thread. */
export interface ShadingImage {
  lineItemIds: string[];
  factor: number[];
  trials: number[];
}

export function shadingImage(view: ShadingView): ShadingImage {
  const factor: number[] = [];
  const trials: number[] = [];
  view.lineItemIds.forEach((_id, li) => {
    const f = view.lineItemFactor(li);
    factor.push(f.factor);
    trials.push(f.trials);
  });
  return { lineItemIds: [...view.lineItemIds], factor, trials };
}

export function shadingViewOf(image: ShadingImage): ShadingView {
  return { lineItemIds: image.lineItemIds, lineItemFactor: (li) => ({ factor: image.factor[li], trials: image.trials[li] }) };
}

export interface HistorySource {
  /** The budgets now (null without campaigns): BudgetPolicy.sample, or a cluster's workers' merged. */
  budget(nowMs: number): BudgetSample | null;
  /** The shading of the plan serving now (its lineItemIds are the current line items, in index order). */
  shading(): ShadingView;
  /** KPI counters by line item id (live objects, read only). */
  lineItemCounters(): ReadonlyMap<string, Counters>;
  /** The bidder currency, for the reader of the micros. */
  currency(): string;
}

export interface HistoryOptions {
  /** Points kept per series (default 720). */
  capacity?: number;
  /** Sampling period of start() (default 5000 ms). */
  everyMs?: number;
  /** Trailing window of the win rate (default 60 s). */
  windowMs?: number;
  /** Most series kept, all kinds together (default 1024; a series holds at most 4 rings: <= 24 MB at 720 points). */
  maxSeries?: number;
  /** Told about a failed sample (the timer keeps running). */
  onError?: (e: unknown) => void;
}

export interface HistoryQuery {
  /** Only points with a sequence number above this one. */
  after?: number;
  /** At most this many points, the newest. */
  points?: number;
  /** At most this many line items with series: those with most bids at the last point (the rest are counted). */
  top?: number;
}

export interface HistoryReport {
  everyMs: number;
  capacity: number;
  windowMs: number;
  currency: string;
  /** Sequence number of the first point returned, and one past the last (pass it back as `after` = to - 1). */
  from: number;
  to: number;
  droppedSeries: number;
  /** Sample times, ms since the epoch. */
  t: number[];
  campaigns: {
    id: string;
    name: string;
    dayBudgetMicros: number;
    /** Spend booked today (ledger), integer micros of the bidder currency. */
    spentMicros: (number | null)[];
    /** Pacing target of today at that instant: day budget x F(t). */
    targetMicros: (number | null)[];
    /** The part of the spend the allocator gave to exploration (0..1; the arms labelled explore hold more). */
    exploration: (number | null)[];
    arms: { lineItem: string; segment: string; share: (number | null)[]; reason: (ReasonName | null)[] }[];
  }[];
  lineItems: {
    id: string;
    bids: (number | null)[];
    wins: (number | null)[];
    winRate: (number | null)[];
    /** Mean shading factor, bid / value (1 = bids its value; applied in first-price auctions only). */
    shadingFactor: (number | null)[];
    /** Decayed shading feedback behind the latest factor (0: the prior's factor). */
    shadingTrials: number;
  }[];
  /** Line items with no bid in the range and no shading feedback: ids only (a config can have thousands). */
  idleLineItems: string[];
  /** Active line items left out by `top`. */
  omittedLineItems: number;
}

const NO_REASON = 255;

/**
 * Fewest bids in the window for a win rate: over a handful (the tail of traffic that stopped, one bid tallied
 * after its win) a rate reads 0 %, 67 % or 100 % and says nothing; the point is then absent.
 */
export const MIN_WINDOW_BIDS = 10;

interface CampaignSeries {
  id: string;
  name: string;
  dayBudgetMicros: number;
  lastSeq: number;
  spent: Float64Array;
  target: Float64Array;
  exploration: Float64Array;
  /** Arm keys in config order (as of the last sample that saw the campaign). */
  arms: string[];
}

interface ArmSeries {
  lineItem: string;
  segment: string;
  lastSeq: number;
  share: Float64Array;
  reason: Uint8Array;
}

interface LineItemSeries {
  id: string;
  lastSeq: number;
  bids: Float64Array;
  wins: Float64Array;
  winRate: Float64Array;
  factor: Float64Array;
  trials: number;
}

export class HistoryRecorder {
  readonly capacity: number;
  readonly everyMs: number;
  readonly windowMs: number;
  readonly maxSeries: number;
  /** Samples taken since start; point `s` lives at ring position s % capacity. */
  seq = 0;
  droppedSeries = 0;
  failedSamples = 0;
  private readonly source: HistorySource;
  private readonly onError: ((e: unknown) => void) | null;
  private readonly times: Float64Array;
  private readonly campaigns = new Map<string, CampaignSeries>();
  private readonly arms = new Map<string, ArmSeries>();
  private readonly lineItems = new Map<string, LineItemSeries>();
  private seriesCount = 0;

  constructor(source: HistorySource, options: HistoryOptions = {}) {
    this.source = source;
    this.capacity = Math.max(2, Math.floor(options.capacity ?? 720));
    this.everyMs = Math.max(10, options.everyMs ?? 5000);
    this.windowMs = Math.max(this.everyMs, options.windowMs ?? 60_000);
    this.maxSeries = Math.max(1, options.maxSeries ?? 1024);
    this.onError = options.onError ?? null;
    this.times = new Float64Array(this.capacity);
  }

  /** Samples now and then every `everyMs` (timer unref'd); returns the stop function. */
  start(): () => void {
    const run = () => {
      // A timer callback that throws would take the process down: a failed sample is counted and skipped.
      try {
        this.sample(Date.now());
      } catch (e) {
        this.failedSamples++;
        this.onError?.(e);
      }
    };
    run();
    const timer = setInterval(run, this.everyMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** Takes one point of every series. */
  sample(nowMs: number): void {
    const s = this.seq;
    const pos = s % this.capacity;
    this.times[pos] = nowMs;
    // Every series starts the point absent; the ones still alive fill it below.
    for (const c of this.campaigns.values()) {
      c.spent[pos] = NaN;
      c.target[pos] = NaN;
      c.exploration[pos] = NaN;
    }
    for (const a of this.arms.values()) {
      a.share[pos] = NaN;
      a.reason[pos] = NO_REASON;
    }
    for (const l of this.lineItems.values()) {
      l.bids[pos] = NaN;
      l.wins[pos] = NaN;
      l.winRate[pos] = NaN;
      l.factor[pos] = NaN;
    }

    const budget = this.source.budget(nowMs);
    if (budget !== null) {
      for (const camp of budget.campaigns) {
        const c = this.campaignSeries(camp.id);
        if (c === null) continue;
        c.lastSeq = s;
        c.name = camp.name;
        c.dayBudgetMicros = camp.dayBudgetMicros;
        c.spent[pos] = camp.spentMicros;
        c.target[pos] = camp.targetMicros;
        c.exploration[pos] = camp.exploration;
        const keys: string[] = [];
        for (const arm of camp.arms) {
          const key = camp.id + '\u0001' + arm.lineItem;
          const a = this.armSeries(key, arm.lineItem, arm.segment);
          if (a === null) continue;
          keys.push(key);
          a.lastSeq = s;
          a.share[pos] = arm.share;
          a.reason[pos] = REASON_NAMES.indexOf(arm.reason);
        }
        c.arms = keys;
      }
    }

    const shading = this.source.shading();
    const counters = this.source.lineItemCounters();
    const back = Math.min(Math.max(1, Math.round(this.windowMs / this.everyMs)), this.capacity - 1, s);
    shading.lineItemIds.forEach((id, li) => {
      const l = this.lineItemSeries(id);
      if (l === null) return;
      l.lastSeq = s;
      const f = shading.lineItemFactor(li);
      l.factor[pos] = f.factor;
      l.trials = f.trials;
      // No key yet: nothing counted for this id (or it is past the KPI store's key cap, under "other").
      const k = counters.get(id);
      const bids = k === undefined ? 0 : k.bids;
      const wins = k === undefined ? 0 : k.wins;
      l.bids[pos] = bids;
      l.wins[pos] = wins;
      // The oldest point of the window this series has; none: since the counts began.
      let bids0 = 0;
      let wins0 = 0;
      for (let j = s - back; j < s; j++) {
        const p = j % this.capacity;
        if (Number.isFinite(l.bids[p])) {
          bids0 = l.bids[p];
          wins0 = l.wins[p];
          break;
        }
      }
      const dBids = bids - bids0;
      l.winRate[pos] = dBids >= MIN_WINDOW_BIDS ? Math.min(1, Math.max(0, wins - wins0) / dBids) : NaN;
    });

    this.seq = s + 1;
    this.forget();
  }

  /** The points after `query.after` (all kept points without it), newest `query.points` at most. */
  report(query: HistoryQuery = {}): HistoryReport {
    const held = Math.min(this.seq, this.capacity);
    let from = this.seq - held;
    if (query.after !== undefined && query.after + 1 > from) from = Math.min(this.seq, query.after + 1);
    if (query.points !== undefined && this.seq - query.points > from) from = this.seq - query.points;
    const to = this.seq;
    const cap = this.capacity;
    const floats = (ring: Float64Array, digits: number): (number | null)[] => {
      const out: (number | null)[] = [];
      for (let s = from; s < to; s++) {
        const v = ring[s % cap];
        out.push(Number.isFinite(v) ? round(v, digits) : null);
      }
      return out;
    };
    const t: number[] = [];
    for (let s = from; s < to; s++) t.push(this.times[s % cap]);

    const campaigns: HistoryReport['campaigns'] = [];
    for (const c of this.campaigns.values()) {
      if (c.lastSeq < from || from >= to) continue;
      const arms: HistoryReport['campaigns'][number]['arms'] = [];
      for (const key of c.arms) {
        const a = this.arms.get(key);
        if (a === undefined || a.lastSeq < from) continue;
        const reason: (ReasonName | null)[] = [];
        for (let s = from; s < to; s++) {
          const r = a.reason[s % cap];
          reason.push(r === NO_REASON ? null : REASON_NAMES[r]);
        }
        arms.push({ lineItem: a.lineItem, segment: a.segment, share: floats(a.share, 6), reason });
      }
      campaigns.push({ id: c.id, name: c.name, dayBudgetMicros: c.dayBudgetMicros, spentMicros: floats(c.spent, 0), targetMicros: floats(c.target, 0), exploration: floats(c.exploration, 6), arms });
    }
    const lineItems: HistoryReport['lineItems'] = [];
    const idleLineItems: string[] = [];
    const active: LineItemSeries[] = [];
    for (const l of this.lineItems.values()) {
      if (l.lastSeq < from || from >= to) continue;
      let bid = l.trials > 0;
      for (let s = from; s < to && !bid; s++) bid = l.bids[s % cap] > 0;
      if (!bid) {
        idleLineItems.push(l.id);
        continue;
      }
      active.push(l);
    }
    let omittedLineItems = 0;
    if (query.top !== undefined && active.length > query.top) {
      const at = (to - 1) % cap;
      const bidsOf = (l: LineItemSeries) => (Number.isFinite(l.bids[at]) ? l.bids[at] : -1);
      active.sort((a, b) => bidsOf(b) - bidsOf(a));
      omittedLineItems = active.length - query.top;
      active.length = query.top;
    }
    for (const l of active) {
      lineItems.push({
        id: l.id,
        bids: floats(l.bids, 0),
        wins: floats(l.wins, 0),
        winRate: floats(l.winRate, 4),
        shadingFactor: floats(l.factor, 4),
        shadingTrials: round(l.trials, 2),
      });
    }
    return {
      everyMs: this.everyMs,
      capacity: this.capacity,
      windowMs: this.windowMs,
      currency: this.source.currency(),
      from,
      to,
      droppedSeries: this.droppedSeries,
      t,
      campaigns,
      lineItems,
      idleLineItems,
      omittedLineItems,
    };
  }

  /* ---------------------------------------------------------------- series bookkeeping */

  private admit(): boolean {
    if (this.seriesCount >= this.maxSeries) {
      this.droppedSeries++;
      return false;
    }
    this.seriesCount++;
    return true;
  }

  private ring(): Float64Array {
    return new Float64Array(this.capacity).fill(NaN);
  }

  private campaignSeries(id: string): CampaignSeries | null {
    let c = this.campaigns.get(id);
    if (c === undefined) {
      if (!this.admit()) return null;
      c = { id, name: id, dayBudgetMicros: 0, lastSeq: -1, spent: this.ring(), target: this.ring(), exploration: this.ring(), arms: [] };
      this.campaigns.set(id, c);
    }
    return c;
  }

  private armSeries(key: string, lineItem: string, segment: string): ArmSeries | null {
    let a = this.arms.get(key);
    if (a === undefined) {
      if (!this.admit()) return null;
      a = { lineItem, segment, lastSeq: -1, share: this.ring(), reason: new Uint8Array(this.capacity).fill(NO_REASON) };
      this.arms.set(key, a);
    }
    a.segment = segment;
    return a;
  }

  private lineItemSeries(id: string): LineItemSeries | null {
    let l = this.lineItems.get(id);
    if (l === undefined) {
      if (!this.admit()) return null;
      l = { id, lastSeq: -1, bids: this.ring(), wins: this.ring(), winRate: this.ring(), factor: this.ring(), trials: 0 };
      this.lineItems.set(id, l);
    }
    return l;
  }

  /** Drops the series with no point left in the ring. */
  private forget(): void {
    const oldest = this.seq - Math.min(this.seq, this.capacity);
    for (const map of [this.campaigns, this.arms, this.lineItems] as Map<string, { lastSeq: number }>[]) {
      for (const [key, series] of map) {
        if (series.lastSeq < oldest) {
          map.delete(key);
          this.seriesCount--;
        }
      }
    }
  }
}

function round(v: number, digits: number): number {
  if (digits === 0) return Math.round(v);
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

export const HISTORY_DEFAULT_TOP = 50;
export const HISTORY_MAX_TOP = 100;

/** `after`, `points` and `top` (default 50, at most 100) from the query string; anything else is ignored. 400 (by path) when malformed. */
export function historyQueryFromParams(params: URLSearchParams, capacity: number): HistoryQuery {
  const q: HistoryQuery = {};
  const after = params.get('after');
  if (after !== null) {
    const n = Number(after);
    if (after.trim() === '' || !Number.isSafeInteger(n) || n < -1) {
      throw new SegbidError('ADMIN_BAD_REQUEST', 'after must be a point sequence number (an integer >= -1)', [{ path: '/query/after', message: 'expected an integer >= -1' }]);
    }
    q.after = n;
  }
  const points = params.get('points');
  if (points !== null) {
    const n = Number(points);
    if (points.trim() === '' || !Number.isSafeInteger(n) || n < 1 || n > capacity) {
      throw new SegbidError('ADMIN_BAD_REQUEST', `points must be an integer from 1 to ${capacity}`, [{ path: '/query/points', message: `expected an integer from 1 to ${capacity}` }]);
    }
    q.points = n;
  }
  // Always bounded: the report is built on the bid thread (single-thread mode), and 1,000 line items x 720
  // points took over a second; the 100 busiest line items are what a chart can show anyway.
  const top = params.get('top');
  q.top = HISTORY_DEFAULT_TOP;
  if (top !== null) {
    const n = Number(top);
    if (top.trim() === '' || !Number.isSafeInteger(n) || n < 1 || n > HISTORY_MAX_TOP) {
      throw new SegbidError('ADMIN_BAD_REQUEST', `top must be an integer from 1 to ${HISTORY_MAX_TOP}`, [{ path: '/query/top', message: `expected an integer from 1 to ${HISTORY_MAX_TOP}` }]);
    }
    q.top = n;
  }
  return q;
}
