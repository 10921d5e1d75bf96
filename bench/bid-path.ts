/**
 * `npm run bench`: one invocation, one report. The bid path over loopback HTTP against a bare uWebSockets.js
 * baseline, closed loop (max throughput) and open loop (latency at fixed rates), then the decision alone.
 *
 *   node dist/bench/bid-path.js [--quick] [--scenario all|demo|large] [--duration 8] [--rounds 3] [--warmup 2]
 *     [--open-duration 6] [--connections 64] [--open-connections 64] [--workers N] [--requests 500] [--seed N]
 *     [--known-share 0.6] [--skip-open] [--skip-decision] [--pin] [--calibrate 15,30]
 *
 * Scenarios: `demo` (the embedded demo, 10 line items: baseline, segbid --workers 1, segbid --workers N, and the
 * same decision core behind node:http) and `large` (src/fixtures/large-config.ts: 1,000 line items x 256 segments,
 * strategies, multipliers, shading, caps, privacy, budgets all on: baseline and segbid --workers 1). `all` (the
 * default) runs both. --workers N is the "all workers" target (default: the number of cores).
 * --quick: a one-minute smoke run (demo only, 1 round of 3 s, 2 s open-loop runs, the large decision bench short).
 * --pin (Linux, taskset): servers on cpu 1, this generator on cpu 0 (off by default: no steadier on a shared box).
 * --calibrate US,...: demo scenario, closed loop: copies of the baseline that spin US microseconds of CPU per
 *   request (`baseline+15us`, ...), measured in the same rounds. The closed-loop ratio on one machine depends on the
 *   generator as much as on the server; these rows show what ratio a given per-request cost reaches here, to read
 *   segbid's ratio and its "cpu µs/req" against. Default 15,30 (none with --quick); 0 for none.
 *
 * 1. The request mixes (bench/request-mix.ts, seeded) are built and their parameters and contents printed.
 * 2. Servers run as child processes (bench/servers.ts), each config a private copy written by this build.
 * 3. Closed loop: `--rounds` rounds; each round measures every target once, the order reversed every other round
 *    so none always runs on the warmer or the quieter machine; a warm-up run precedes each measurement (--warmup
 *    s in round 1, 1 s after). Medians across rounds are quoted. Latency percentiles come from every response time
 *    autocannon reports (sub-millisecond; its own histogram rounds to whole ms).
 * 4. Open loop: each target at 50% and 80% of its own median max, `--open-duration` s, bench/open-loop.ts
 *    (latency from the scheduled send time: no coordinated omission).
 * 5. Decision micro-benchmark (bench/decision.ts) in a fresh child process per config: large (the goal), and demo
 *    for reference unless --quick.
 * 6. One final table, the goals with PASS/MISS, warnings (a disturbed machine, a saturated generator), and
 *    bench/results/<timestamp>.json + .md (+ latest.json / latest.md). A MISS does not fail the exit code: this is
 *    a measurement. A server that cannot start, or a crash, exits 1.
 */
import autocannon from 'autocannon';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { PACKAGE_ROOT } from '../src/common/paths.js';
import { DEFAULT_MIX_PARAMS, generateRequestMix, mixParamsFor, summarizeMix, type MixParams } from './request-mix.js';
import { Samples, describeMachine, fmt, machineInfo } from './stats.js';
import type { DecisionBenchResult } from './decision.js';
import { writeBenchConfig, type BenchDemo } from './demo-fixtures.js';
import { runOpenLoopInWorker } from './open-loop.js';
import {
  BID_PATH,
  cpuMeter,
  diffCounts,
  pinServers,
  scrapeOutcomes,
  spawnNode,
  startBaseline,
  startNodeHttp,
  startSegbid,
  stopTarget,
  type Target,
} from './servers.js';
import {
  bidRateOf,
  consoleSummary,
  evaluateGoals,
  latencySummary,
  mixLine,
  openRunOf,
  summarizeClosed,
  warningsOf,
  writeReport,
  type BenchReport,
  type ClosedRun,
  type OpenRun,
  type Scenario,
  type ScenarioReport,
} from './report.js';

interface BenchOptions {
  quick: boolean;
  scenarios: Scenario[];
  duration: number;
  rounds: number;
  warmup: number;
  openDuration: number;
  openShares: number[];
  connections: number;
  openConnections: number;
  pipelining: number;
  workers: number;
  requests: number;
  seed: number;
  knownShare: number;
  skipOpen: boolean;
  skipDecision: boolean;
  decisionSeconds: number;
  pin: boolean;
  /** µs of spin per request of the calibration baselines (demo scenario, closed loop); empty = none. */
  calibrateUs: number[];
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\nbench: ${signal}, stopping servers\n`);
    process.exit(130); // the exit handler of bench/servers.ts kills them
  });
}

const log = (line: string) => process.stdout.write(`${line}\n`);

/* ---------- closed loop ---------- */

/** One autocannon run. `samples` (when given) receives every response time in ms. */
function cannon(url: string, opts: BenchOptions, requests: autocannon.Request[], seconds: number, samples: Samples | null): Promise<autocannon.Result> {
  return new Promise((resolveRun, reject) => {
    let clientIndex = 0;
    const instance = autocannon(
      {
        url,
        connections: opts.connections,
        pipelining: opts.pipelining,
        duration: seconds,
        timeout: 10,
        method: 'POST',
        requests,
        // autocannon starts every connection at request 0; spread the starting points so the connections do not
        // send the same body at the same moment (identical bodies would flatter any per-body caching).
        setupClient: (client) => {
          const offset = Math.floor((clientIndex++ * requests.length) / opts.connections);
          client.setRequests(requests.slice(offset).concat(requests.slice(0, offset)));
        },
      },
      (err, result) => (err ? reject(err) : resolveRun(result)),
    );
    if (samples !== null) {
      instance.on('response', (_client: unknown, _status: number, _bytes: number, responseTimeMs: number) => samples.push(responseTimeMs));
    }
  });
}

async function measureClosed(scenario: Scenario, target: Target, round: number, opts: BenchOptions, requests: autocannon.Request[], samples: Samples): Promise<ClosedRun> {
  const warm = round === 1 ? opts.warmup : Math.min(1, opts.warmup);
  if (warm > 0) await cannon(target.bidUrl, opts, requests, warm, null);
  samples.reset();
  const before = target.adminUrl !== null ? await scrapeOutcomes(target.adminUrl) : null;
  const cpu = cpuMeter(target.child.pid);
  const r = await cannon(target.bidUrl, opts, requests, opts.duration, samples);
  const c = cpu();
  const outcomes = target.adminUrl !== null && before !== null ? diffCounts(before, await scrapeOutcomes(target.adminUrl)) : null;
  const statusCodes: Record<string, number> = {};
  for (const [code, s] of Object.entries(r.statusCodeStats)) statusCodes[code] = Number(s.count);
  const sorted = samples.sorted();
  return {
    scenario,
    target: target.name,
    round,
    durationS: r.duration,
    reqPerSec: r.requests.average,
    responses: sorted.length,
    latencyMs: latencySummary(sorted),
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    statusCodes,
    bidRate: bidRateOf(statusCodes),
    outcomes,
    serverCpu: c.server,
    generatorCpu: c.generator,
    otherCpu: c.other,
    stealCpu: c.steal,
  };
}

async function measureOpen(scenario: Scenario, target: Target, share: number, maxRps: number, opts: BenchOptions, bodies: string[]): Promise<OpenRun> {
  const before = target.adminUrl !== null ? await scrapeOutcomes(target.adminUrl) : null;
  const cpu = cpuMeter(target.child.pid);
  const r = await runOpenLoopInWorker({
    url: target.bidUrl,
    rate: Math.max(1, Math.round(share * maxRps)),
    durationS: opts.openDuration,
    bodies,
    connections: opts.openConnections,
    headers: { 'x-openrtb-version': '2.6' },
  });
  const c = cpu();
  const outcomes = target.adminUrl !== null && before !== null ? diffCounts(before, await scrapeOutcomes(target.adminUrl)) : null;
  return openRunOf(scenario, target.name, share, r, { serverCpu: c.server, generatorCpu: c.generator, otherCpu: c.other, stealCpu: c.steal }, outcomes);
}

/* ---------- scenarios ---------- */

async function runScenario(scenario: Scenario, opts: BenchOptions, baseline: Target, mix: { params: MixParams; bodies: string[] }): Promise<ScenarioReport> {
  const headers = { 'content-type': 'application/json', 'x-openrtb-version': '2.6' };
  const requests: autocannon.Request[] = mix.bodies.map((body) => ({ method: 'POST', path: BID_PATH, headers, body }));
  let config: BenchDemo | null = null;
  const targets: Target[] = [baseline];
  const started: Target[] = [];
  const calibration = new Set<Target>();
  let lineItems: number | null = null;
  let segments: number | null = null;
  const closed: ClosedRun[] = [];
  const open: OpenRun[] = [];
  try {
    const t0 = performance.now();
    config = writeBenchConfig(scenario);
    const doc = JSON.parse(readFileSync(config.configPath, 'utf8')) as { lineItems: unknown[] };
    lineItems = doc.lineItems.length;
    log(`\n== scenario ${scenario}: ${lineItems} line items; config written in ${fmt((performance.now() - t0) / 1000, 1)} s (${config.dir})`);
    const seg1 = await startSegbid(config.configPath, 1);
    started.push(seg1);
    targets.push(seg1);
    if (scenario === 'demo' && opts.workers > 1) {
      const segN = await startSegbid(config.configPath, opts.workers);
      started.push(segN);
      targets.push(segN);
    }
    if (scenario === 'demo') {
      const peer = await startNodeHttp(config.configPath);
      started.push(peer);
      targets.push(peer);
      // Calibration: the baseline plus N µs of CPU a request, in the same rounds (closed loop only). They show
      // which ratio a given per-request cost can reach on this machine and generator (see the README).
      for (const us of opts.calibrateUs) {
        const c = await startBaseline(us);
        started.push(c);
        targets.push(c);
        calibration.add(c);
      }
    }
    const status = await fetch(`${seg1.adminUrl}/readyz`).then((r) => r.json() as Promise<{ segments?: number }>).catch(() => ({}) as { segments?: number });
    segments = status.segments ?? null;
    log(`servers: ${targets.map((t) => `${t.name} pid ${t.child.pid} ${t.bidUrl}`).join('; ')}`);

    const samples = new Samples(1 << 20);
    for (let round = 1; round <= opts.rounds; round++) {
      const order = round % 2 === 1 ? targets : [...targets].reverse();
      for (const target of order) {
        const r = await measureClosed(scenario, target, round, opts, requests, samples);
        closed.push(r);
        log(
          `  closed round ${round} ${target.name.padEnd(10)} ${fmt(r.reqPerSec, 0)} req/s, p50 ${fmt(r.latencyMs.p50, 3)} ms, p99 ${fmt(r.latencyMs.p99, 3)} ms, ` +
            `non-2xx ${r.non2xx}, errors ${r.errors}, server cpu ${fmt(100 * (r.serverCpu ?? NaN), 0)}%, gen ${fmt(100 * r.generatorCpu, 0)}%, other ${fmt(100 * (r.otherCpu ?? NaN), 0)}%`,
        );
      }
    }
    const medians = summarizeClosed(closed);
    if (!opts.skipOpen) {
      for (const target of targets) {
        if (calibration.has(target)) continue;
        for (const share of opts.openShares) {
          const o = await measureOpen(scenario, target, share, medians[target.name].reqPerSec, opts, mix.bodies);
          open.push(o);
          log(
            `  open ${fmt(100 * share, 0)}% ${target.name.padEnd(10)} ${fmt(o.targetRate, 0)} req/s scheduled, ${fmt(o.achievedRate, 0)} answered, ` +
              `p50 ${fmt(o.latencyMs.p50, 3)} ms, p99 ${fmt(o.latencyMs.p99, 3)} ms, p99.9 ${fmt(o.latencyMs.p999, 3)} ms, errors ${o.errors}, timeouts ${o.timeouts}; ` +
              `from write p50 ${fmt(o.fromSendMs.p50, 3)} p99 ${fmt(o.fromSendMs.p99, 3)} ms, driver late p99 ${fmt(o.driverLateMs.p99, 3)} max ${fmt(o.driverLateMs.max, 1)} ms`,
          );
        }
      }
    }
    return {
      scenario,
      lineItems,
      segments,
      mix: { params: mix.params, summary: summarizeMix(mix.bodies, mix.params) },
      targets: targets.map((t) => t.name),
      closed,
      medians,
      open,
    };
  } finally {
    await Promise.all(started.map(stopTarget));
    config?.remove();
  }
}

/** The decision micro-benchmark in its own process: a fresh heap and JIT, the CPU no longer shared with servers. */
async function runDecisionChild(scenario: Scenario, opts: BenchOptions): Promise<DecisionBenchResult> {
  const out = resolve(tmpdir(), `segbid-decision-${process.pid}-${scenario}.json`);
  const s = spawnNode(`decision-${scenario}`, [
    resolve(PACKAGE_ROOT, 'dist/bench/decision.js'),
    '--scenario',
    scenario,
    '--seconds',
    String(opts.decisionSeconds),
    '--requests',
    String(opts.requests),
    '--seed',
    String(opts.seed),
    '--out',
    out,
  ]);
  let text = '';
  s.child.stdout!.on('data', (c: Buffer) => (text += c.toString('utf8')));
  const code = await new Promise<number | null>((r) => s.child.once('exit', (c) => r(c)));
  if (code !== 0) throw new Error(`decision bench (${scenario}) exited with code ${code}\n${s.tail()}`);
  const result = JSON.parse(readFileSync(out, 'utf8')) as DecisionBenchResult;
  rmSync(out, { force: true });
  // Its first line is the machine, already printed above.
  log(`\n${text.split('\n').slice(1).join('\n').trimEnd()}`);
  return result;
}

/* ---------- main ---------- */

function parseOptions(): BenchOptions {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      scenario: { type: 'string' },
      duration: { type: 'string' },
      rounds: { type: 'string' },
      warmup: { type: 'string' },
      'open-duration': { type: 'string' },
      connections: { type: 'string', default: '64' },
      'open-connections': { type: 'string', default: '64' },
      pipelining: { type: 'string', default: '1' },
      workers: { type: 'string', default: String(availableParallelism()) },
      requests: { type: 'string', default: String(DEFAULT_MIX_PARAMS.count) },
      seed: { type: 'string', default: String(DEFAULT_MIX_PARAMS.seed) },
      'known-share': { type: 'string', default: String(DEFAULT_MIX_PARAMS.knownUserShare) },
      'skip-open': { type: 'boolean', default: false },
      'skip-decision': { type: 'boolean', default: false },
      'decision-seconds': { type: 'string' },
      pin: { type: 'boolean', default: false },
      calibrate: { type: 'string' },
    },
  });
  const quick = values.quick ?? false;
  const scenario = values.scenario ?? (quick ? 'demo' : 'all');
  if (scenario !== 'all' && scenario !== 'demo' && scenario !== 'large') throw new Error('--scenario is all, demo or large');
  const o: BenchOptions = {
    quick,
    scenarios: scenario === 'all' ? ['demo', 'large'] : [scenario],
    duration: Number(values.duration ?? (quick ? 3 : 8)),
    rounds: Number(values.rounds ?? (quick ? 1 : 3)),
    warmup: Number(values.warmup ?? (quick ? 1 : 2)),
    openDuration: Number(values['open-duration'] ?? (quick ? 2 : 6)),
    openShares: [0.5, 0.8],
    connections: Number(values.connections),
    openConnections: Number(values['open-connections']),
    pipelining: Number(values.pipelining),
    workers: Number(values.workers),
    requests: Number(values.requests),
    seed: Number(values.seed),
    knownShare: Number(values['known-share']),
    skipOpen: values['skip-open'] ?? false,
    skipDecision: values['skip-decision'] ?? false,
    decisionSeconds: Number(values['decision-seconds'] ?? (quick ? 1 : 2)),
    pin: values.pin ?? false,
    calibrateUs: (values.calibrate ?? (quick ? '' : '15,30'))
      .split(',')
      .filter((x) => x.trim() !== '' && x.trim() !== '0')
      .map(Number),
  };
  if (o.calibrateUs.some((x) => !Number.isInteger(x) || x <= 0)) throw new Error('--calibrate takes whole microseconds > 0, comma separated (or 0 for none)');
  for (const k of ['duration', 'rounds', 'openDuration', 'connections', 'openConnections', 'pipelining', 'workers', 'requests'] as const) {
    if (!Number.isInteger(o[k]) || o[k] <= 0) throw new Error(`--${k} must be a positive integer`);
  }
  if (!Number.isInteger(o.warmup) || o.warmup < 0) throw new Error('--warmup must be a non-negative integer');
  if (!Number.isInteger(o.seed)) throw new Error('--seed must be an integer');
  if (!(o.knownShare >= 0 && o.knownShare <= 1)) throw new Error('--known-share must be in [0, 1]');
  if (!(o.decisionSeconds > 0)) throw new Error('--decision-seconds must be > 0');
  return o;
}

function readAutocannonVersion(): string {
  try {
    return (JSON.parse(readFileSync(resolve(PACKAGE_ROOT, 'node_modules/autocannon/package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const machine = machineInfo();
  log(describeMachine(machine));
  log(
    `params: ${opts.quick ? 'QUICK smoke run; ' : ''}scenarios ${opts.scenarios.join(', ')}; closed loop (autocannon ${readAutocannonVersion()}): ${opts.rounds} round(s) of ` +
      `${opts.duration} s per target, warm-up ${opts.warmup} s, ${opts.connections} connections, pipelining ${opts.pipelining}; open loop: ` +
      `${opts.skipOpen ? 'skipped' : `${opts.openShares.map((s) => `${s * 100}%`).join(' and ')} of each max, ${opts.openDuration} s, ${opts.openConnections} connections`}; ` +
      `all-workers target: --workers ${opts.workers}; loopback`,
  );
  const mixes = new Map<Scenario, { params: MixParams; bodies: string[] }>();
  for (const scenario of opts.scenarios) {
    const params: MixParams = { ...mixParamsFor(scenario), count: opts.requests, seed: opts.seed, knownUserShare: opts.knownShare };
    const bodies = generateRequestMix(params);
    mixes.set(scenario, { params, bodies });
    log(mixLine(params, summarizeMix(bodies, params)));
    log(`generator parameters (${scenario}): ${JSON.stringify(params)}`);
  }

  if (opts.pin) {
    // All threads of this process (-a) on cpu 0; servers on cpu 1. The kernel's loopback work still lands anywhere.
    const r = spawnSync('taskset', ['-a', '-pc', '0', String(process.pid)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`--pin: taskset failed (${r.error?.message ?? r.stderr.trim()})`);
    pinServers('1');
  }

  const scenarios: ScenarioReport[] = [];
  const baseline = await startBaseline();
  try {
    for (const scenario of opts.scenarios) scenarios.push(await runScenario(scenario, opts, baseline, mixes.get(scenario)!));
  } finally {
    await stopTarget(baseline);
  }

  const decision: DecisionBenchResult[] = [];
  if (!opts.skipDecision) {
    decision.push(await runDecisionChild('large', opts));
    if (!opts.quick) decision.push(await runDecisionChild('demo', opts));
  }

  const report: BenchReport = {
    startedAt,
    finishedAt: new Date().toISOString(),
    wallS: (performance.now() - t0) / 1000,
    machine,
    options: { ...opts },
    scenarios,
    decision,
    goals: evaluateGoals(scenarios, decision),
    warnings: warningsOf(scenarios),
  };
  log(`\n${consoleSummary(report)}`);
  const stem = writeReport(report, resolve(PACKAGE_ROOT, 'bench/results'));
  log(`\nresults: ${stem}.json\n         ${stem}.md\n         (copied to bench/results/latest.json, latest.md); ${fmt(report.wallS, 0)} s`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
  // The exit handler of bench/servers.ts kills any server still running.
});
