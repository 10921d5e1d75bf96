/**
 * Micro-benchmark of the decision path alone, in-process, without HTTP: a scenario's BidHandler and Decider (a
 * private copy of the demo, or of the large config: 1,000 line items x 256 segments, every feature on;
 * bench/demo-fixtures.ts) over the matching bench request mix (bench/request-mix.ts).
 *
 *   node dist/bench/decision.js [--scenario large|demo] [--iterations 100000] [--per-call 50000] [--requests 500]
 *                               [--seed N] [--out f.json]
 *
 * Stages, each timed the same two ways:
 *   parse     JSON.parse(body)
 *   validate  validateBidRequest(parsed)
 *   decide    Decider.decide(parsed) on pre-parsed objects: the decision without the parse
 *   handle    BidHandler.handle(body): parse + validate + decide + serialise + metrics, what the server calls
 * Only these entry points are used (not the serialiser, whose signature follows product work), so the
 * serialise + event-URL signing + metrics share is read as handle - parse - validate - decide.
 * Throughput: `--iterations` calls in batches of 1000 timed with performance.now() (calls/s, and p50/p99 of the
 * per-batch mean). Latency: a separate pass of `--per-call` calls each timed with process.hrtime.bigint()
 * (p50/p99/p99.9/max per call; includes the timer's own cost, printed as "timer").
 * Budgets are live, as in the server: before anything is timed, WARM_SECONDS simulated seconds of the mix each end
 * with a budget tick (the server's one-second timer), so pacing has seen the budgeted line items' opportunities
 * and lets them bid. Without it every budgeted line item (half of the large config) would be paced out and the
 * decision would be measured on the other half. The share of bids won by budgeted line items is printed.
 * Also prints the outcome share of each reason (`BidResult.reason`) over one pass of the distinct requests, and the
 * bytes one decide() call allocates (V8 new-space growth over windows without a scavenge; the hot path aims at 0).
 * Writes the results as JSON to `--out` when given (bench/bid-path.ts uses that). Exit code 0 unless it crashes.
 */
import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { loadDecider } from '../src/bidding/load-decider.js';
import { BidHandler } from '../src/bidding/bid-handler.js';
import { Decision } from '../src/bidding/decide.js';
import { Metrics } from '../src/metrics/metrics.js';
import { validateBidRequest } from '../src/openrtb/validate.js';
import { DEFAULT_MIX_PARAMS, generateRequestMix, mixParamsFor } from './request-mix.js';
import { writeBenchConfig } from './demo-fixtures.js';
import { describeMachine, fmt, machineInfo, percentileSorted, textTable, type MachineInfo } from './stats.js';

export interface DecisionBenchOptions {
  scenario: 'demo' | 'large';
  /** Time budget of each stage's batched pass (the timed pass gets half). */
  seconds: number;
  iterations: number;
  perCall: number;
  requests: number;
  seed: number;
}

export interface StageResult {
  stage: string;
  /** Calls actually made in each pass (bounded by the options and by `seconds`). */
  batchedCalls: number;
  timedCalls: number;
  /** Calls per second over the batched pass. */
  callsPerSec: number;
  /** Per-call mean of the median / 99th-percentile batch, microseconds. */
  batchP50Us: number;
  batchP99Us: number;
  /** Individually timed calls, microseconds (timer cost included). */
  p50Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
}

export interface DecisionBenchResult {
  machine: MachineInfo;
  options: DecisionBenchOptions;
  timerUs: number;
  stages: StageResult[];
  /** reason label -> share of the distinct requests (one pass). */
  reasons: Record<string, number>;
  bidRate: number;
  /** Line items and segments of the config measured. */
  lineItems: number;
  segments: number;
  /** Bytes allocated per decide() call (new-space growth over short windows without a GC; the hot path aims at 0). */
  decideBytes: number;
  /** Share of the decide stage's bids made by line items of a budgeted campaign (after the warm-up ticks). */
  budgetedBidShare: number;
}

/** Simulated seconds of traffic, each ended by a budget tick, before the stages are timed. */
const WARM_SECONDS = 5;

const BATCH = 1000;

/* Results are folded into this so V8 cannot drop the calls being timed. */
let sink = 0;

/**
 * Reads the last char of a response string. Concatenation builds a rope; the server pays to flatten it when it
 * writes the body, so the serialising stages pay it here too.
 */
function flatten(s: string): number {
  return s.length === 0 ? 0 : s.charCodeAt(s.length - 1);
}

/**
 * Each pass stops at its call count or its time budget, whichever comes first, so a slow stage (or a slow config)
 * cannot stretch the run: `calls` / `perCall` are upper bounds, the counts actually made are reported.
 */
function timeStage(stage: string, calls: number, perCall: number, seconds: number, fn: (i: number) => void): StageResult {
  // Warm-up: let the JIT settle on the optimised code before measuring.
  const warmEnd = performance.now() + Math.min(1000, seconds * 250);
  for (let i = 0; i < 20_000 && (i % 256 !== 0 || performance.now() < warmEnd); i++) fn(i);

  const maxBatches = Math.max(1, Math.floor(calls / BATCH));
  const batchUs = new Float64Array(maxBatches);
  let total = 0;
  let i = 0;
  let batches = 0;
  const batchEnd = performance.now() + seconds * 1000;
  while (batches < maxBatches && (batches < 3 || performance.now() < batchEnd)) {
    const t0 = performance.now();
    for (let k = 0; k < BATCH; k++) fn(i++);
    const dt = performance.now() - t0;
    total += dt;
    batchUs[batches++] = (dt * 1000) / BATCH;
  }
  const batchSorted = batchUs.subarray(0, batches).sort();

  const eachAll = new Float64Array(perCall);
  let timed = 0;
  const callEnd = performance.now() + seconds * 500;
  while (timed < perCall && (timed % 256 !== 0 || timed < 1000 || performance.now() < callEnd)) {
    const t0 = process.hrtime.bigint();
    fn(i++);
    eachAll[timed++] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  const each = eachAll.subarray(0, timed).sort();
  const batchUsSorted = batchSorted;
  return {
    stage,
    batchedCalls: batches * BATCH,
    timedCalls: timed,
    callsPerSec: (batches * BATCH) / (total / 1000),
    batchP50Us: percentileSorted(batchUsSorted, 50),
    batchP99Us: percentileSorted(batchUsSorted, 99),
    p50Us: percentileSorted(each, 50),
    p99Us: percentileSorted(each, 99),
    p999Us: percentileSorted(each, 99.9),
    maxUs: each[each.length - 1],
  };
}

/**
 * Bytes allocated per call: the growth of V8's new space over windows of `window` calls, keeping only the windows
 * in which no scavenge ran (the space then only grows). Deterministic for a given build and input, unlike time.
 */
function allocatedPerCall(fn: (i: number) => void, windows = 400, window = 100): number {
  const used = () => v8.getHeapSpaceStatistics().find((x) => x.space_name === 'new_space')?.space_used_size ?? 0;
  let bytes = 0;
  let counted = 0;
  let i = 0;
  for (let w = 0; w < windows; w++) {
    const before = used();
    for (let k = 0; k < window; k++) fn(i++);
    const after = used();
    if (after >= before) {
      bytes += after - before;
      counted++;
    }
  }
  return counted === 0 ? NaN : bytes / (counted * window);
}

/** The median cost of an empty hrtime.bigint() pair, to read the per-call figures against. */
function timerCostUs(): number {
  const n = 100_000;
  const each = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    const t0 = process.hrtime.bigint();
    each[k] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  return percentileSorted(each.sort(), 50);
}

export function runDecisionBench(options: DecisionBenchOptions): DecisionBenchResult {
  // A fresh private copy of the scenario's config, written by this build (see bench/demo-fixtures.ts).
  const demo = writeBenchConfig(options.scenario);
  let decider: ReturnType<typeof loadDecider>;
  try {
    decider = loadDecider(demo.configPath);
  } finally {
    demo.remove(); // loaded into memory: the files are no longer needed
  }
  const handler = new BidHandler(decider, new Metrics({ defaultMetrics: false }));
  const bodies = generateRequestMix({ ...mixParamsFor(options.scenario), count: options.requests, seed: options.seed });
  const n = bodies.length;
  const parsed: unknown[] = bodies.map((b) => JSON.parse(b) as unknown);
  for (let i = 0; i < n; i++) {
    const problem = validateBidRequest(parsed[i]);
    if (problem !== null) throw new Error(`request mix body ${i} is invalid: ${problem}`);
  }

  const decision = new Decision();
  // Live budgets (see the header): simulated seconds of the mix, each ended by the server's budget tick.
  const start = performance.timeOrigin + performance.now();
  for (let second = 0; second < WARM_SECONDS; second++) {
    for (let i = 0; i < n; i++) decider.decide(parsed[i], start + second * 1000 + (i * 1000) / n, decision);
    handler.budget?.tick(start + (second + 1) * 1000);
  }
  const nowMs = start + WARM_SECONDS * 1000;
  const campaignOf = handler.budget?.plan.campaignOf;
  let bidsMade = 0;
  let budgetedBids = 0;
  for (let i = 0; i < n; i++) {
    decider.decide(parsed[i], nowMs + i / 1000, decision);
    for (let k = 0; k < decision.bidCount; k++) {
      bidsMade++;
      if (campaignOf !== undefined && campaignOf[decision.lineItem[k]!.index] >= 0) budgetedBids++;
    }
  }

  // Outcomes over one pass of the distinct requests: what the mix asks of the decision.
  const counts: Record<string, number> = {};
  let bids = 0;
  for (const body of bodies) {
    const r = handler.handle(body);
    counts[r.reason] = (counts[r.reason] ?? 0) + 1;
    if (r.reason === 'bid') bids++;
  }
  const reasons: Record<string, number> = {};
  for (const [reason, c] of Object.entries(counts).sort((a, b) => b[1] - a[1])) reasons[reason] = c / n;

  const stages: StageResult[] = [
    timeStage('parse', options.iterations, options.perCall, options.seconds, (i) => {
      sink += (JSON.parse(bodies[i % n]) as { imp: unknown[] }).imp.length;
    }),
    timeStage('validate', options.iterations, options.perCall, options.seconds, (i) => {
      sink += validateBidRequest(parsed[i % n]) === null ? 1 : 0;
    }),
    timeStage('decide', options.iterations, options.perCall, options.seconds, (i) => {
      // A new clock reading per call, 1 µs apart: the budget policy takes a new Thompson draw per request.
      decider.decide(parsed[i % n], nowMs + i / 1000, decision);
      sink += decision.bidCount;
    }),
    timeStage('handle', options.iterations, options.perCall, options.seconds, (i) => {
      const r = handler.handle(bodies[i % n]);
      sink += r.status + flatten(r.body);
    }),
  ];
  return {
    machine: machineInfo(),
    options,
    timerUs: timerCostUs(),
    stages,
    reasons,
    bidRate: bids / n,
    lineItems: decider.config.lineItems.length,
    segments: decider.config.dictionary.segments.length,
    decideBytes: allocatedPerCall((i) => {
      decider.decide(parsed[i % n], nowMs + i / 1000, decision);
      sink += decision.bidCount;
    }),
    budgetedBidShare: bidsMade === 0 ? 0 : budgetedBids / bidsMade,
  };
}

export function formatDecisionBench(r: DecisionBenchResult): string {
  const rows: string[][] = [['stage', 'calls', 'calls/s', 'batch p50 µs', 'batch p99 µs', 'call p50 µs', 'call p99 µs', 'call p99.9 µs', 'call max µs']];
  for (const s of r.stages) {
    rows.push([s.stage, `${s.batchedCalls}+${s.timedCalls}`, Math.round(s.callsPerSec).toLocaleString('en-US'), fmt(s.batchP50Us, 3), fmt(s.batchP99Us, 3), fmt(s.p50Us, 3), fmt(s.p99Us, 3), fmt(s.p999Us, 3), fmt(s.maxUs, 1)]);
  }
  const byStage = new Map(r.stages.map((s) => [s.stage, s]));
  const handle = byStage.get('handle')!;
  // The breakdown uses per-call medians: robust to the GC pauses and preemptions that skew batched means on a
  // shared machine (GC is real cost, and it is in the calls/s column).
  const p50 = (name: string) => byStage.get(name)!.p50Us;
  const signed = (v: number) => `${v >= 0 ? '' : '-'}${fmt(Math.abs(v), 2)}`;
  const reasonRows: string[][] = [['outcome (reason)', 'share']];
  for (const [reason, s] of Object.entries(r.reasons)) reasonRows.push([reason, `${fmt(100 * s, 1)}%`]);
  return [
    `decision micro-benchmark: ${r.options.scenario} config (${r.lineItems} line items, ${r.segments} segments), ${r.options.requests} distinct requests (seed ${r.options.seed}), ` +
      `up to ${r.options.iterations} batched + ${r.options.perCall} timed calls per stage, at most ${r.options.seconds} s + ${r.options.seconds / 2} s each`,
    textTable(rows),
    `handle: ${fmt(1e6 / handle.callsPerSec, 2)} µs/call mean = ${Math.round(handle.callsPerSec).toLocaleString('en-US')} decisions/s on one core. ` +
      `Per-call medians (µs): parse ${fmt(p50('parse'), 2)}, validate ${fmt(p50('validate'), 2)}, decide ${fmt(p50('decide'), 2)}, ` +
      `rest ~${signed(p50('handle') - p50('parse') - p50('validate') - p50('decide'))} (serialise, event URLs, metrics, clock: ` +
      `handle - the three), handle ${fmt(p50('handle'), 2)}`,
    `timer cost (empty hrtime.bigint pair, included in call figures): ${fmt(r.timerUs, 3)} µs`,
    `allocated per decide (new-space growth between scavenges): ${fmt(r.decideBytes, 0)} bytes`,
    `bid rate over the distinct requests: ${fmt(100 * r.bidRate, 1)}%; bids by budgeted line items (pacing live, ${WARM_SECONDS} ticks): ${fmt(100 * r.budgetedBidShare, 1)}%`,
    textTable(reasonRows),
  ].join('\n');
}

/** The decide stage: what the decision goal reads (decisions per second on one core, per-call p99). */
export function decideStage(r: DecisionBenchResult): StageResult {
  const s = r.stages.find((x) => x.stage === 'decide');
  if (s === undefined) throw new Error('decision bench result has no decide stage');
  return s;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      scenario: { type: 'string', default: 'large' },
      seconds: { type: 'string', default: '3' },
      iterations: { type: 'string', default: '100000' },
      'per-call': { type: 'string', default: '50000' },
      requests: { type: 'string', default: String(DEFAULT_MIX_PARAMS.count) },
      seed: { type: 'string', default: String(DEFAULT_MIX_PARAMS.seed) },
      out: { type: 'string' },
    },
  });
  if (values.scenario !== 'demo' && values.scenario !== 'large') throw new Error('--scenario is demo or large');
  const options: DecisionBenchOptions = {
    scenario: values.scenario,
    seconds: Number(values.seconds),
    iterations: Number(values.iterations),
    perCall: Number(values['per-call']),
    requests: Number(values.requests),
    seed: Number(values.seed),
  };
  for (const k of ['iterations', 'perCall', 'requests', 'seed'] as const) {
    if (!Number.isInteger(options[k]) || options[k] <= 0) throw new Error(`--${k} must be a positive integer`);
  }
  if (!(options.seconds > 0)) throw new Error('--seconds must be > 0');
  const result = runDecisionBench(options);
  process.stdout.write(`${describeMachine(result.machine)}\n${formatDecisionBench(result)}\n`);
  if (values.out) writeFileSync(values.out, JSON.stringify(result, null, 2) + '\n');
  if (sink === -1) process.stdout.write('\n'); // keeps `sink` observable
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) main();
