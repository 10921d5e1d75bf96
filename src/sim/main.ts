/**
 * `npm run simulate`: a simulated market day per (seed, strategy) through the real bidder (see run.ts), then a
 * report: a table on stdout, and sim-results/report.html (inline SVG charts: pacing, allocation over time,
 * value per strategy) + sim-results/results.json.
 *
 * Goals checked on the default scenario: overspend 0; spend within 2% of the budget when traffic allows;
 * pacing error <= 5%; Thompson value >= 90% of the oracle's and >= 15% above uniform. Misses are reported, not
 * hidden; the exit code is 0 either way (a simulation is a measurement, not a test).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { buildScenario, SEGMENTS } from './scenario.js';
import { preparePopulation, runDay, type RunResult } from './run.js';
import { STRATEGY_NAMES, type StrategyName } from './baselines.js';
import { barChart, lineChart, stackedChart } from './svg.js';

const COLORS: Record<StrategyName, string> = { thompson: '#1f77b4', uniform: '#7f7f7f', 'epsilon-greedy': '#ff7f0e', oracle: '#2ca02c' };
const SEG_COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
const ARM_COLORS = ['#1f77b4', '#aec7e8', '#17becf', '#d62728', '#ff9896', '#e377c2', '#2ca02c', '#98df8a', '#bcbd22', '#9467bd', '#c5b0d5', '#8c564b'];

const money = (micros: number) => (micros / 1e6).toFixed(2);
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const pct2 = (x: number) => `${(x * 100).toFixed(2)}%`;

function main(): void {
  const program = new Command()
    .name('simulate')
    .description('Simulated market days through the real bidder: Thompson allocation vs uniform, epsilon-greedy and an oracle')
    .option('--seeds <n>', 'number of seeds', '5')
    .option('--requests <n>', 'bid requests per simulated day', '4000000')
    .option('--budget <units>', 'daily budget of the campaign (currency units)', '1000')
    .option('--strategies <list>', 'comma-separated strategies', STRATEGY_NAMES.join(','))
    .option('--out <dir>', 'output directory', 'sim-results')
    .option('--no-priors', 'no CRM priors on the customer segments (everything learnt from scratch)')
    .parse(process.argv);
  const o = program.opts<{ seeds: string; requests: string; budget: string; strategies: string; out: string; priors: boolean }>();
  const seeds = Array.from({ length: Number(o.seeds) }, (_, i) => i + 1);
  const strategies = o.strategies.split(',').map((s) => s.trim()) as StrategyName[];
  for (const s of strategies) if (!STRATEGY_NAMES.includes(s)) throw new Error(`unknown strategy "${s}" (${STRATEGY_NAMES.join(', ')})`);
  const scenario = buildScenario({ requestsPerDay: Number(o.requests), dailyBudget: Number(o.budget), crmPriors: o.priors });
  const prepared = preparePopulation(scenario);

  console.log(`segbid market simulation: ${seeds.length} seed(s) x ${strategies.length} strategies, ${Number(o.requests).toLocaleString('en')} requests/day, daily budget ${o.budget}, KPI ${scenario.campaign.kpi}, ${scenario.arms.length} arms, CRM priors ${o.priors ? 'on' : 'off'}`);
  console.log('hidden truth (value per 1000 impressions / expected CPM, by arm):');
  for (const a of scenario.arms) {
    const v = a.ctr * a.segment.cvr * a.segment.orderValue * 1000;
    console.log(`  ${a.lineItem.padEnd(36)} ctr ${(a.ctr * 100).toFixed(3)}%  cvr ${(a.segment.cvr * 100).toFixed(1)}%  basket ${a.segment.orderValue}  bid ${a.bidCpm.toFixed(2)}  value/1000 imps ${v.toFixed(2)}`);
  }
  const results: RunResult[] = [];
  const header = 'seed strategy        spent    %budget  overspend overrun late  pacing  imps     clicks conv  value     ROAS   E[value]  E[ROAS] wall';
  console.log(`\n${header}`);
  for (const seed of seeds) {
    for (const strategy of strategies) {
      const r = runDay(prepared, strategy, seed);
      results.push(r);
      console.log(
        `${String(seed).padEnd(5)}${strategy.padEnd(15)}${money(r.chargedMicros).padStart(8)} ${pct(r.chargedMicros / r.budgetMicros).padStart(8)} ${money(r.overspendMicros).padStart(9)} ${money(r.overrunMicros).padStart(7)} ${String(r.lateSettles).padStart(5)} ${pct2(r.pacingError).padStart(7)} ${String(r.impressions).padStart(8)} ${String(r.clicks).padStart(6)} ${String(r.conversions).padStart(5)} ${money(r.valueMicros).padStart(9)} ${(r.valueMicros / Math.max(1, r.chargedMicros)).toFixed(2).padStart(6)} ${money(r.expectedValueMicros).padStart(9)} ${(r.expectedValueMicros / Math.max(1, r.chargedMicros)).toFixed(2).padStart(7)} ${(r.wallMs / 1000).toFixed(1).padStart(5)}s`,
      );
    }
  }

  // Comparisons per seed: on the EXPECTED value of the impressions bought (hidden value per impression x
  // impressions; what the allocation controls, without the lottery of ~20-40 conversions a day), and on the
  // realised value of the conversions (noisy, shown too).
  const get = (seed: number, s: StrategyName) => results.find((r) => r.seed === seed && r.strategy === s);
  console.log('\nThompson vs the others, per seed: expected value (realised value of the conversions in brackets):');
  const ratios = { oracle: [] as number[], uniform: [] as number[], eps: [] as number[] };
  const rel = (a: RunResult, b: RunResult, exp: boolean) => (exp ? a.expectedValueMicros / b.expectedValueMicros : a.valueMicros / b.valueMicros);
  const signed = (x: number) => `${x >= 0 ? '+' : ''}${pct(x)}`;
  for (const seed of seeds) {
    const t = get(seed, 'thompson');
    if (!t) continue;
    const parts: string[] = [];
    const ora = get(seed, 'oracle');
    const uni = get(seed, 'uniform');
    const eps = get(seed, 'epsilon-greedy');
    if (ora) {
      ratios.oracle.push(rel(t, ora, true));
      parts.push(`${pct(rel(t, ora, true))} of oracle (${pct(rel(t, ora, false))})`);
    }
    if (uni) {
      ratios.uniform.push(rel(t, uni, true) - 1);
      parts.push(`${signed(rel(t, uni, true) - 1)} vs uniform (${signed(rel(t, uni, false) - 1)})`);
    }
    if (eps) {
      ratios.eps.push(rel(t, eps, true) - 1);
      parts.push(`${signed(rel(t, eps, true) - 1)} vs epsilon-greedy (${signed(rel(t, eps, false) - 1)})`);
    }
    console.log(`  seed ${seed}: ${parts.join(', ')}`);
  }
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, x) => a + x, 0) / xs.length : NaN);
  const totals = (s: StrategyName) => {
    const rs = results.filter((r) => r.strategy === s);
    return {
      value: rs.reduce((a, r) => a + r.valueMicros, 0),
      expected: rs.reduce((a, r) => a + r.expectedValueMicros, 0),
      spend: rs.reduce((a, r) => a + r.chargedMicros, 0),
      conv: rs.reduce((a, r) => a + r.conversions, 0),
    };
  };
  console.log('\nAll seeds pooled:');
  for (const s of strategies) {
    const tt = totals(s);
    console.log(`  ${s.padEnd(15)} E[value] ${money(tt.expected).padStart(10)}  E[ROAS] ${(tt.expected / Math.max(1, tt.spend)).toFixed(2)}   realised value ${money(tt.value).padStart(10)}  conversions ${String(tt.conv).padStart(5)}  ROAS ${(tt.value / Math.max(1, tt.spend)).toFixed(2)}`);
  }

  // Goals.
  const all = results;
  const maxOverspend = Math.max(...all.map((r) => r.overspendMicros));
  const spendGap = Math.max(...all.map((r) => Math.abs(r.chargedMicros / r.budgetMicros - 1)));
  const maxPacing = Math.max(...all.map((r) => r.pacingError));
  const pooledT = totals('thompson');
  const lines = [
    ['overspend 0 (exchange charges <= daily budget), every run', maxOverspend === 0, `max overspend ${money(maxOverspend)}`],
    ['final spend within 2% of budget, every run', spendGap <= 0.02, `max gap ${pct2(spendGap)}`],
    ['pacing error <= 5%, every run', maxPacing <= 0.05, `max ${pct2(maxPacing)}`],
  ] as [string, boolean, string][];
  if (strategies.includes('oracle') && strategies.includes('thompson')) {
    lines.push(['Thompson expected value >= 90% of oracle (mean of seeds)', mean(ratios.oracle) >= 0.9, `mean ${pct(mean(ratios.oracle))}, min ${pct(Math.min(...ratios.oracle))}; realised value pooled ${pct(pooledT.value / totals('oracle').value)}`]);
  }
  if (strategies.includes('uniform') && strategies.includes('thompson')) {
    lines.push(['Thompson expected value >= uniform + 15% (mean of seeds)', mean(ratios.uniform) >= 0.15, `mean ${signed(mean(ratios.uniform))}, min ${signed(Math.min(...ratios.uniform))}; realised value pooled ${signed(pooledT.value / totals('uniform').value - 1)}`]);
  }
  console.log('\nGoals:');
  for (const [what, ok, detail] of lines) console.log(`  [${ok ? 'MET ' : 'MISS'}] ${what}: ${detail}`);

  // Report files.
  const dir = resolve(o.out);
  mkdirSync(dir, { recursive: true });
  writeFileSync(resolve(dir, 'results.json'), JSON.stringify({ scenario: { requestsPerDay: Number(o.requests), dailyBudget: Number(o.budget), campaign: scenario.campaign, arms: scenario.arms }, results }));
  const seed1 = seeds[0];
  const charts: string[] = [];
  const pacingSeries = strategies.flatMap((s) => {
    const r = get(seed1, s);
    if (!r) return [];
    return [{ name: s, color: COLORS[s], points: r.series.map((p) => [p.t, p.charged / 1e6] as [number, number]) }];
  });
  const any = get(seed1, strategies[0])!;
  pacingSeries.push({ name: 'target curve', color: '#000', dashed: true, points: any.series.map((p) => [p.t, p.target / 1e6] as [number, number]) } as never);
  charts.push(lineChart(`Pacing, seed ${seed1}: cumulative spend vs target (budget ${o.budget})`, 'hour of the day', 'spend', pacingSeries, (v) => v.toFixed(0)));
  for (const s of ['thompson', 'oracle', 'epsilon-greedy'] as StrategyName[]) {
    const r = get(seed1, s);
    if (!r) continue;
    const names = SEGMENTS.map((g) => g.id);
    charts.push(stackedChart(`${s}, seed ${seed1}: allocation share by segment (guard rails applied)`, 'hour of the day', names, SEG_COLORS, r.series.map((p) => p.t), r.series.map((p) => names.map((n) => p.shares[n] ?? 0))));
  }
  const th = get(seed1, 'thompson');
  if (th) {
    charts.push(lineChart(`thompson, seed ${seed1}: allocation share by arm`, 'hour of the day', 'share', th.armIds.map((id, k) => ({ name: id.replace(/^li-/, ''), color: ARM_COLORS[k % ARM_COLORS.length], points: th.armShares.map((p) => [p.t, p.shares[k]] as [number, number]) })), (v) => `${Math.round(v * 100)}%`));
  }
  charts.push(barChart('Expected value of the impressions bought, by seed and strategy', 'value', seeds.map((s) => `seed ${s}`), strategies, strategies.map((s) => COLORS[s]), seeds.map((seed) => strategies.map((s) => (get(seed, s)?.expectedValueMicros ?? 0) / 1e6)), (v) => v.toFixed(0)));
  charts.push(barChart('Realised value of the conversions, by seed and strategy', 'value', seeds.map((s) => `seed ${s}`), strategies, strategies.map((s) => COLORS[s]), seeds.map((seed) => strategies.map((s) => (get(seed, s)?.valueMicros ?? 0) / 1e6)), (v) => v.toFixed(0)));
  const segTable = strategies
    .map((s) => {
      const rs = results.filter((r) => r.strategy === s);
      const cells = SEGMENTS.map((g) => pct(rs.reduce((a, r) => a + r.segmentSpend[g.id], 0) / Math.max(1, rs.reduce((a, r) => a + r.chargedMicros, 0))));
      return `<tr><td>${s}</td>${cells.map((c) => `<td>${c}</td>`).join('')}</tr>`;
    })
    .join('');
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>segbid simulation</title>
<style>body{font-family:sans-serif;margin:24px;max-width:980px}pre{background:#f6f6f6;padding:10px;font-size:12px}td,th{padding:2px 10px;text-align:right}</style></head><body>
<h1>segbid market simulation</h1>
<p>${seeds.length} seed(s), ${Number(o.requests).toLocaleString('en')} requests per simulated day, daily budget ${o.budget}, KPI ${scenario.campaign.kpi}, ${scenario.arms.length} arms (segment x bid strategy x creative), exploration share ${scenario.campaign.explorationShare}.</p>
<h2>Goals</h2><pre>${lines.map(([w, ok, d]) => `[${ok ? 'MET ' : 'MISS'}] ${w}: ${d}`).join('\n')}</pre>
<h2>Spend by segment (all seeds)</h2><table><tr><th></th>${SEGMENTS.map((g) => `<th>${g.id}</th>`).join('')}</tr>${segTable}</table>
${charts.map((c) => `<div>${c}</div>`).join('\n')}
<h2>Runs</h2><pre>${header}\n${results.map((r) => `${r.seed} ${r.strategy} spent ${money(r.chargedMicros)} pacing ${pct(r.pacingError)} conv ${r.conversions} value ${money(r.valueMicros)} E[value] ${money(r.expectedValueMicros)} overspend ${money(r.overspendMicros)}`).join('\n')}</pre>
</body></html>`;
  writeFileSync(resolve(dir, 'report.html'), html);
  console.log(`\nwrote ${resolve(dir, 'report.html')} and results.json`);
}

main();
