/**
 * What the trader console reads about budgets, and how a cluster's workers' views add up to the bidder's.
 *
 *   BudgetReport   GET /admin/budget: per campaign the ledger account, the pacing state and every arm's throttle,
 *                  gate and share; refusals by reason; the allocator's report (BudgetPolicy.report).
 *   BudgetSample   what the console's history samples every few seconds (src/admin/history.ts): per campaign the
 *                  day's budget, spend and pacing target, per arm its share and allocation reason. Cheap: no
 *                  posterior is computed (BudgetPolicy.sample), so a worker can send one every 2 s.
 *
 * With `--workers N` each worker keeps its own ledger and pacer: it spends from the slices the main thread's
 * bank grants it and paces toward its share of the day's curve (Pacer.share = 1/N). The bidder's figures are
 * then the workers' summed: money, counters, pacing targets and rates. A throttle or share is a per-worker
 * fraction: the merge gives their mean; a gate or reason, the one most workers report (ties: the lowest
 * worker). The allocator's statistics are shared through the learning hub (src/bidding/shared-learning.ts), so
 * every worker reports the same totals up to one sync: one worker computes it (the merge keeps the first report
 * that has one, its arms' shares replaced by the workers' mean). Campaigns and arms are matched by id, in the order of the first report that names them (the
 * workers serve the same document; during a reload they may differ for a moment). A campaign's spend is summed
 * over the workers on its newest day only: a worker that has not rolled its day yet (or a stale image) must not
 * add yesterday's spend to today's.
 */
import type { AllocationReport, ReasonName } from './allocator.js';
import type { AccountView } from './ledger.js';
import type { RefusalName } from './budget-policy.js';

export interface BudgetArmReport {
  lineItem: string;
  throttle: number;
  gate: string;
  share: number;
  spentTodayMicros: number;
  capacityMicrosPerSec: number;
}

export interface BudgetCampaignReport {
  id: string;
  name: string;
  account: AccountView;
  targetSpendMicros: number;
  desiredRateMicrosPerSec: number;
  arms: BudgetArmReport[];
}

export interface BudgetReport {
  campaigns: BudgetCampaignReport[];
  refusals: Record<RefusalName, number>;
  /** Null when not asked for (a cluster's other workers: see BudgetPolicy.report). */
  allocation: AllocationReport | null;
}

export interface BudgetSampleArm {
  lineItem: string;
  segment: string;
  /** The allocator's share of the campaign's spend for this arm (0..1). */
  share: number;
  reason: ReasonName;
}

export interface BudgetSampleCampaign {
  id: string;
  name: string;
  /** The ledger's day of the campaign (days since the epoch in its time zone; NaN before its first tick). */
  dayIndex: number;
  dayBudgetMicros: number;
  /** Spend booked today, integer micros. */
  spentMicros: number;
  /** Pacing target of today at that instant (day budget x F(t), times the pace share of a worker). */
  targetMicros: number;
  /** The part of the spend the allocator gives to exploration now (Allocator.explored). */
  exploration: number;
  arms: BudgetSampleArm[];
}

export interface BudgetSample {
  campaigns: BudgetSampleCampaign[];
}

/** The most common of `values` (ties: the first seen). */
function mostCommon<T>(values: readonly T[]): T {
  const counts = new Map<T, number>();
  let best = values[0];
  let bestCount = 0;
  for (const v of values) {
    const n = (counts.get(v) ?? 0) + 1;
    counts.set(v, n);
    if (n > bestCount) {
      best = v;
      bestCount = n;
    }
  }
  return best;
}

/** Groups items by key, keys in order of first appearance. */
function byKey<T>(lists: readonly (readonly T[])[], key: (t: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const list of lists) {
    for (const t of list) {
      const k = key(t);
      const group = out.get(k);
      if (group === undefined) out.set(k, [t]);
      else group.push(t);
    }
  }
  return out;
}

const sum = <T>(items: readonly T[], f: (t: T) => number): number => items.reduce((s, t) => s + f(t), 0);
const mean = <T>(items: readonly T[], f: (t: T) => number): number => Math.round((sum(items, f) / items.length) * 1e4) / 1e4;

/** The newest finite day among `days` (NaN when none is: no worker has ticked the campaign yet). */
function newestDay(days: readonly number[]): number {
  let newest = NaN;
  for (const d of days) if (Number.isFinite(d) && !(d <= newest)) newest = d;
  return newest;
}

/** Whether a worker's figure for day `day` belongs to the newest day `newest` (all do when no day is known). */
const onDay = (day: number, newest: number): boolean => Number.isNaN(newest) || day === newest;

function mergeAccounts(accounts: readonly AccountView[]): AccountView {
  const first = accounts[0];
  const newest = newestDay(accounts.map((a) => a.day.index));
  const today = accounts.filter((a) => onDay(a.day.index, newest));
  const daySpent = sum(today, (a) => a.day.spent);
  const reserved = sum(accounts, (a) => a.day.reserved);
  const flightSpent = sum(accounts, (a) => a.flight.spent);
  const counters = { ...first.counters };
  for (const name of Object.keys(counters) as (keyof AccountView['counters'])[]) counters[name] = sum(accounts, (a) => a.counters[name]);
  return {
    id: first.id,
    // Workers roll their day at the same instant (the campaign's time zone); the newest day is the one that counts.
    day: { index: newest, budget: first.day.budget, spent: daySpent, reserved, remaining: first.day.budget - daySpent - reserved },
    flight: { budget: first.flight.budget, spent: flightSpent, reserved, remaining: first.flight.budget - flightSpent - reserved },
    openReservations: sum(accounts, (a) => a.openReservations),
    overrunMicros: sum(accounts, (a) => a.overrunMicros),
    counters,
  };
}

/** The bidder's report from its workers' (at least one). */
export function mergeBudgetReports(reports: readonly BudgetReport[]): BudgetReport {
  if (reports.length === 1) return reports[0];
  const campaigns: BudgetCampaignReport[] = [];
  for (const group of byKey(reports.map((r) => r.campaigns), (c) => c.id).values()) {
    const arms: BudgetArmReport[] = [];
    for (const a of byKey(group.map((c) => c.arms), (x) => x.lineItem).values()) {
      arms.push({
        lineItem: a[0].lineItem,
        throttle: mean(a, (x) => x.throttle),
        gate: mostCommon(a.map((x) => x.gate)),
        share: mean(a, (x) => x.share),
        spentTodayMicros: sum(a, (x) => x.spentTodayMicros),
        capacityMicrosPerSec: sum(a, (x) => x.capacityMicrosPerSec),
      });
    }
    campaigns.push({
      id: group[0].id,
      name: group[0].name,
      account: mergeAccounts(group.map((c) => c.account)),
      targetSpendMicros: sum(group, (c) => c.targetSpendMicros),
      desiredRateMicrosPerSec: sum(group, (c) => c.desiredRateMicrosPerSec),
      arms,
    });
  }
  const refusals = { ...reports[0].refusals };
  for (const name of Object.keys(refusals) as RefusalName[]) refusals[name] = sum(reports, (r) => r.refusals[name] ?? 0);
  return { campaigns, refusals, allocation: withShares(reports.find((r) => r.allocation !== null)?.allocation ?? null, campaigns) };
}

/**
 * The allocation report of one worker, with each arm's share replaced by the workers' mean (the merged campaign
 * arms'): each worker draws its own Thompson shares for its part of the spend, and the bidder's share is their mean,
 * the figure the campaign arms and the history show.
 */
function withShares(allocation: AllocationReport | null, campaigns: readonly BudgetCampaignReport[]): AllocationReport | null {
  if (allocation === null) return null;
  const shares = new Map(campaigns.map((c) => [c.id, new Map(c.arms.map((a) => [a.lineItem, a.share] as const))] as const));
  return {
    ...allocation,
    campaigns: allocation.campaigns.map((c) => ({
      ...c,
      arms: c.arms.map((a) => ({ ...a, share: shares.get(c.id)?.get(a.lineItem) ?? a.share })),
    })),
  };
}

/** The bidder's sample from its workers' (at least one). */
export function mergeBudgetSamples(samples: readonly BudgetSample[]): BudgetSample {
  if (samples.length === 1) return samples[0];
  const campaigns: BudgetSampleCampaign[] = [];
  for (const group of byKey(samples.map((s) => s.campaigns), (c) => c.id).values()) {
    const arms: BudgetSampleArm[] = [];
    for (const a of byKey(group.map((c) => c.arms), (x) => x.lineItem).values()) {
      arms.push({ lineItem: a[0].lineItem, segment: a[0].segment, share: sum(a, (x) => x.share) / a.length, reason: mostCommon(a.map((x) => x.reason)) });
    }
    const newest = newestDay(group.map((c) => c.dayIndex));
    const today = group.filter((c) => onDay(c.dayIndex, newest));
    campaigns.push({
      id: group[0].id,
      name: group[0].name,
      dayIndex: newest,
      dayBudgetMicros: group[0].dayBudgetMicros,
      spentMicros: sum(today, (c) => c.spentMicros),
      targetMicros: sum(today, (c) => c.targetMicros),
      exploration: sum(group, (c) => c.exploration) / group.length,
      arms,
    });
  }
  return { campaigns };
}
