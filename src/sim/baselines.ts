/**
 * The allocation strategies the simulator compares the Thompson allocator with. They share everything with it
 * (statistics, pacing water-fill, guard rails, rank-table mechanics, see Allocator) except the rule that turns
 * evidence into shares and per-request ranks:
 *   - uniform:        fixed equal shares, no learning; a random arm among those that match a request.
 *   - epsilon-greedy: epsilon (the campaign's exploration share) spread evenly over all arms, the rest by the
 *                     same LP on the posterior MEANS (no sampling); per request the best mean surplus, or a
 *                     random arm with probability epsilon.
 *   - oracle:         the same LP on the hidden value per impression of every arm (win rates and costs
 *                     observed, like the others); no exploration. An upper reference, not reachable.
 */
import { Allocator, RANK_DRAWS, ThompsonAllocator } from '../budget/allocator.js';
import type { CompiledBudgetPlan, CompiledCampaign } from '../budget/types.js';

export type StrategyName = 'thompson' | 'uniform' | 'epsilon-greedy' | 'oracle';
export const STRATEGY_NAMES: StrategyName[] = ['thompson', 'uniform', 'epsilon-greedy', 'oracle'];

function campaignPriceScale(a: Allocator, c: CompiledCampaign): number {
  let s = 0;
  for (const li of c.arms) s += a.plan.maxCostMicros[li] * 1000;
  return s / c.arms.length;
}

export class UniformAllocator extends Allocator {
  protected override isExploring(): boolean {
    return false;
  }
  protected exploitShares(c: CompiledCampaign, out: Float64Array): void {
    out.fill(1, 0, c.arms.length);
  }
  protected fillRankTable(c: CompiledCampaign): void {
    const scale = campaignPriceScale(this, c);
    for (const li of c.arms) for (let j = 0; j < RANK_DRAWS; j++) this.setRank(li, j, this.rng.uniform() * scale);
  }
}

/** The LP of the Thompson allocator on one fixed value vector (means, or the truth), with its rank table. */
abstract class PointAllocator extends Allocator {
  protected pointLambda = 0;
  protected values: Float64Array = new Float64Array(0);
  /** The value vector the allocation believes (after posteriors()). */
  protected abstract believed(c: CompiledCampaign): Float64Array;
  protected exploitShares(c: CompiledCampaign, out: Float64Array): void {
    const segRate = new Float64Array(c.groups.length);
    const u = this.traffic(c, segRate);
    this.values = this.believed(c);
    this.pointLambda = this.lpFill(c, this.values, segRate, u, out, 1, new Int32Array(c.groups.length));
  }
  protected pointRanks(c: CompiledCampaign, randomShare: number): void {
    const scale = this.rankScale(c);
    for (let j = 0; j < RANK_DRAWS; j++) {
      const random = this.rng.uniform() < randomShare;
      for (let k = 0; k < c.arms.length; k++) {
        const score = random ? this.rng.uniform() : this.surplus(k, this.values[k], this.pointLambda) * scale;
        this.setRank(c.arms[k], j, score);
      }
    }
  }
}

export class EpsilonGreedyAllocator extends PointAllocator {
  protected override isExploring(): boolean {
    return true; // every arm takes part in the epsilon share
  }
  protected believed(c: CompiledCampaign): Float64Array {
    return Float64Array.from(this.meanValue.subarray(0, c.arms.length));
  }
  protected fillRankTable(c: CompiledCampaign): void {
    this.pointRanks(c, c.explorationShare);
  }
}

export class OracleAllocator extends PointAllocator {
  /** Hidden KPI per impression (micros of value for roas), by line-item index. */
  private readonly truth: Float64Array;
  constructor(plan: CompiledBudgetPlan, truth: Float64Array, seed = 1) {
    super(plan, seed);
    this.truth = truth;
  }
  protected override isExploring(): boolean {
    return false;
  }
  protected believed(c: CompiledCampaign): Float64Array {
    return Float64Array.from(c.arms, (li) => this.truth[li]);
  }
  protected override guardRailWeights(c: CompiledCampaign): Float64Array {
    // posteriors() has just run: post[k].cost is the observed cost per impression (not a hidden quantity).
    return Float64Array.from(c.arms, (li, k) => this.truth[li] / this.post[k].cost);
  }
  protected fillRankTable(c: CompiledCampaign): void {
    this.pointRanks(c, 0);
    // The pacer's leftover order follows the truth too.
    const w = this.guardRailWeights(c);
    let mean = 0;
    for (const x of w) mean += x / w.length;
    for (let k = 0; k < c.arms.length; k++) this.priority[c.arms[k]] = w[k] / (mean || 1);
  }
}

export function makeAllocator(name: StrategyName, plan: CompiledBudgetPlan, truth: Float64Array, seed: number): Allocator {
  switch (name) {
    case 'thompson':
      return new ThompsonAllocator(plan, seed);
    case 'uniform':
      return new UniformAllocator(plan, seed);
    case 'epsilon-greedy':
      return new EpsilonGreedyAllocator(plan, seed);
    case 'oracle':
      return new OracleAllocator(plan, truth, seed);
  }
}
