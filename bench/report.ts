/**
 * The report of `npm run bench`: the shapes of its runs, the medians across rounds, the goals with PASS/MISS, the
 * one final table, its Markdown form and the files under bench/results (`<timestamp>.json` / `.md` and a
 * `latest` copy of each). Pure functions over the measurements, except writeReport; the tests build a report from
 * a real open-loop run and check its shape.
 *
 * Conventions: latencies in ms (µs for the in-process decision), CPU in shares of one core (1 = one core busy),
 * rates in requests per second. A goal whose figure was not measured (a skipped target or stage) is `pass: null`
 * and prints as "-", never as a PASS.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { DecisionBenchResult } from './decision.js';
import type { MixParams, MixSummary } from './request-mix.js';
import type { OpenLoopResult } from './open-loop.js';
import { describeMachine, fmt, markdownTable, median, percentileSorted, textTable, type MachineInfo } from './stats.js';

export type Scenario = 'demo' | 'large';

export interface LatencySummary {
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export function latencySummary(sorted: ArrayLike<number>): LatencySummary {
  let sum = 0;
  for (let i = 0; i < sorted.length; i++) sum += sorted[i];
  return {
    mean: sorted.length > 0 ? sum / sorted.length : NaN,
    p50: percentileSorted(sorted, 50),
    p90: percentileSorted(sorted, 90),
    p99: percentileSorted(sorted, 99),
    p999: percentileSorted(sorted, 99.9),
    max: sorted.length > 0 ? sorted[sorted.length - 1] : NaN,
  };
}

interface CpuShares {
  /** Server process (all its threads); null off Linux. */
  serverCpu: number | null;
  /** This load generator. */
  generatorCpu: number;
  /** Every other process: above ~0.25 the run shared the machine. */
  otherCpu: number | null;
  /** CPU the hypervisor gave to other guests during the run (steal), in cores; null when unknown. */
  stealCpu?: number | null;
}

/** What every run of a target measures, closed or open loop. */
interface RunFigures extends CpuShares {
  scenario: Scenario;
  target: string;
  durationS: number;
  latencyMs: LatencySummary;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  /** 200 / (200 + 204). */
  bidRate: number;
  /** segbid only: delta of segbid_bid_requests_total, "outcome/reason" -> count. */
  outcomes: Record<string, number> | null;
}

/** One closed-loop (autocannon, max throughput) measurement. */
export interface ClosedRun extends RunFigures {
  round: number;
  reqPerSec: number;
  responses: number;
}

/** One open-loop measurement at a fixed share of the target's measured max. */
export interface OpenRun extends RunFigures {
  /** Share of the target's median closed-loop max (0.5, 0.8). */
  loadShare: number;
  targetRate: number;
  achievedRate: number;
  scheduled: number;
  completed: number;
  maxQueued: number;
  maxSchedulerLagMs: number;
  /** Latency from each request's actual write (the server's answer time without the driver's lateness or queue). */
  fromSendMs: LatencySummary;
  /** How late the driver noticed each request was due, ms (its own share of latencyMs). */
  driverLateMs: LatencySummary;
  /** The driver's own garbage collections during the run. */
  driverGc: { count: number; totalMs: number; maxMs: number };
}

export interface ClosedSummary extends CpuShares {
  rounds: number;
  reqPerSec: number;
  /** reqPerSec / the baseline's, same scenario; null for the baseline itself or without one. */
  ratioToBaseline: number | null;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  bidRate: number;
}

export interface ScenarioReport {
  scenario: Scenario;
  /** Line items and segments of the config served. */
  lineItems: number | null;
  segments: number | null;
  mix: { params: MixParams; summary: MixSummary };
  targets: string[];
  closed: ClosedRun[];
  medians: Record<string, ClosedSummary>;
  open: OpenRun[];
}

export interface Goal {
  name: string;
  value: number | null;
  goal: string;
  pass: boolean | null;
  text: string;
}

export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  wallS: number;
  machine: MachineInfo;
  options: Record<string, unknown>;
  scenarios: ScenarioReport[];
  decision: DecisionBenchResult[];
  goals: Goal[];
  warnings: string[];
}

export function bidRateOf(statusCodes: Record<string, number>): number {
  const ok = statusCodes['200'] ?? 0;
  const none = statusCodes['204'] ?? 0;
  return ok + none > 0 ? ok / (ok + none) : NaN;
}

/** An OpenRun from the driver's result and the CPU readings around it. */
export function openRunOf(scenario: Scenario, target: string, loadShare: number, r: OpenLoopResult, cpu: CpuShares, outcomes: Record<string, number> | null): OpenRun {
  return {
    scenario,
    target,
    loadShare,
    targetRate: r.targetRate,
    achievedRate: r.achievedRate,
    scheduled: r.scheduled,
    completed: r.completed,
    durationS: r.durationS,
    latencyMs: latencySummary(r.latenciesMs),
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    statusCodes: r.statusCodes,
    bidRate: bidRateOf(r.statusCodes),
    maxQueued: r.maxQueued,
    maxSchedulerLagMs: r.maxSchedulerLagMs,
    fromSendMs: latencySummary(r.fromSendMs),
    driverLateMs: latencySummary(r.lateMs),
    driverGc: r.driverGc,
    outcomes,
    ...cpu,
  };
}

/** Medians across the rounds of each target; ratios to the scenario's baseline. */
export function summarizeClosed(runs: readonly ClosedRun[]): Record<string, ClosedSummary> {
  const out: Record<string, ClosedSummary> = {};
  const known = (values: (number | null)[]) => values.filter((c): c is number => c !== null);
  const orNull = (values: number[]) => (values.length > 0 ? median(values) : null);
  for (const target of [...new Set(runs.map((r) => r.target))]) {
    const rs = runs.filter((r) => r.target === target);
    out[target] = {
      rounds: rs.length,
      reqPerSec: median(rs.map((r) => r.reqPerSec)),
      ratioToBaseline: null,
      p50Ms: median(rs.map((r) => r.latencyMs.p50)),
      p90Ms: median(rs.map((r) => r.latencyMs.p90)),
      p99Ms: median(rs.map((r) => r.latencyMs.p99)),
      p999Ms: median(rs.map((r) => r.latencyMs.p999)),
      non2xx: median(rs.map((r) => r.non2xx)),
      errors: median(rs.map((r) => r.errors)),
      timeouts: median(rs.map((r) => r.timeouts)),
      bidRate: median(rs.map((r) => r.bidRate)),
      serverCpu: orNull(known(rs.map((r) => r.serverCpu))),
      generatorCpu: median(rs.map((r) => r.generatorCpu)),
      otherCpu: orNull(known(rs.map((r) => r.otherCpu))),
    };
  }
  const base = out.baseline;
  if (base !== undefined) for (const [t, s] of Object.entries(out)) if (t !== 'baseline') s.ratioToBaseline = s.reqPerSec / base.reqPerSec;
  return out;
}

export const GOALS = {
  rpsRatio: 0.85,
  p99At50Ms: 2,
  decisionsPerSec: 200_000,
  decisionP99Us: 50,
} as const;

const passText = (p: boolean | null) => (p === null ? '-' : p ? 'PASS' : 'MISS');

/** The three goals of the scale issue, on the one-worker full path and the large-config decision. */
export function evaluateGoals(scenarios: readonly ScenarioReport[], decision: readonly DecisionBenchResult[]): Goal[] {
  const goals: Goal[] = [];
  for (const s of scenarios) {
    const seg = s.medians['segbid-1w'];
    const ratio = seg?.ratioToBaseline ?? null;
    goals.push({
      name: `${s.scenario}: full path req/s, segbid 1 worker / baseline`,
      value: ratio,
      goal: `>= ${GOALS.rpsRatio}`,
      pass: ratio === null ? null : ratio >= GOALS.rpsRatio,
      text: ratio === null ? 'not measured' : `${fmt(seg.reqPerSec, 0)} / ${fmt(s.medians.baseline.reqPerSec, 0)} = ${fmt(ratio, 3)}`,
    });
    const half = s.open.find((o) => o.target === 'segbid-1w' && o.loadShare === 0.5);
    const bareHalf = s.open.find((o) => o.target === 'baseline' && o.loadShare === 0.5);
    const bare = bareHalf === undefined ? '' : `; the bare baseline at its own 50%: p99 ${fmt(bareHalf.latencyMs.p99, 3)} ms`;
    goals.push({
      name: `${s.scenario}: segbid 1 worker p99 at 50% load (open loop)`,
      value: half?.latencyMs.p99 ?? null,
      goal: `<= ${GOALS.p99At50Ms} ms`,
      pass: half === undefined ? null : half.latencyMs.p99 <= GOALS.p99At50Ms && half.errors === 0 && half.timeouts === 0,
      text: half === undefined ? 'not measured' : `p99 ${fmt(half.latencyMs.p99, 3)} ms at ${fmt(half.targetRate, 0)} req/s (errors ${half.errors}, timeouts ${half.timeouts})${bare}`,
    });
  }
  for (const d of decision) {
    const s = d.stages.find((x) => x.stage === 'decide');
    if (s === undefined) continue;
    const large = d.lineItems >= 1000 && d.segments >= 256;
    goals.push({
      name: `decision alone, ${d.options.scenario} config (${d.lineItems} line items, ${d.segments} segments)${large ? '' : ' [reference, not the goal config]'}`,
      value: s.callsPerSec,
      goal: `>= ${GOALS.decisionsPerSec / 1000}k/s per core, p99 <= ${GOALS.decisionP99Us} µs`,
      pass: large ? s.callsPerSec >= GOALS.decisionsPerSec && s.p99Us <= GOALS.decisionP99Us : null,
      text: `${Math.round(s.callsPerSec).toLocaleString('en-US')} decisions/s, per-call p50 ${fmt(s.p50Us, 2)} µs, p99 ${fmt(s.p99Us, 2)} µs`,
    });
  }
  return goals;
}

export const OTHER_CPU_WARNING = 0.25;
/** Lateness of the open-loop driver's own scheduler above which its latency figures carry the machine's noise. */
export const SCHEDULER_LAG_WARNING_MS = 2;

export function warningsOf(scenarios: readonly ScenarioReport[]): string[] {
  const out: string[] = [];
  for (const s of scenarios) {
    const disturbed = [...s.closed.map((r) => ({ label: `${r.target} #${r.round}`, other: r.otherCpu })), ...s.open.map((r) => ({ label: `${r.target} @${r.loadShare * 100}%`, other: r.otherCpu }))]
      .filter((r) => r.other !== null && r.other > OTHER_CPU_WARNING)
      .map((r) => r.label);
    if (disturbed.length > 0) {
      out.push(`${s.scenario}: other processes used > ${OTHER_CPU_WARNING * 100}% of a core during ${disturbed.join(', ')}: those figures measure a shared machine`);
    }
    const late = s.open.filter((o) => o.maxSchedulerLagMs > SCHEDULER_LAG_WARNING_MS);
    if (late.length > 0) {
      const runs = late.map((o) => {
        const steal = o.stealCpu === undefined || o.stealCpu === null ? '' : `, host steal ${fmt(100 * o.stealCpu, 1)}%`;
        return `${o.target} @${o.loadShare * 100}% (${fmt(o.maxSchedulerLagMs, 1)} ms${steal})`;
      });
      out.push(
        `${s.scenario}: the open-loop driver's own timer fired late by up to: ${runs.join(', ')}; latency runs from the schedule, so ` +
          `a stall of the driver (the cores are shared, the host steals some) counts against the server: read a p99 near these figures as the floor of this machine`,
      );
    }
    for (const o of s.open) {
      if (o.achievedRate < 0.95 * o.targetRate) {
        out.push(`${s.scenario}: ${o.target} @${o.loadShare * 100}% answered ${fmt(o.achievedRate, 0)} of ${fmt(o.targetRate, 0)} req/s scheduled (server or generator saturated; latency from the schedule shows it)`);
      }
    }
    for (const [t, m] of Object.entries(s.medians)) {
      if (m.generatorCpu > 0.9) out.push(`${s.scenario}: the load generator sat at ${fmt(100 * m.generatorCpu, 0)}% of a core against ${t}: its max req/s is a floor, not the server's ceiling`);
    }
  }
  return out;
}

/* ---------- tables ---------- */

const pct = (v: number | null) => (v === null || !Number.isFinite(v) ? '-' : `${fmt(100 * v, 0)}%`);
const ms = (v: number) => fmt(v, 3);

export const FINAL_HEADER = ['scenario', 'target', 'load', 'req/s', 'x baseline', 'p50', 'p90', 'p99', 'p99.9', 'unit', 'bid rate', 'errors', 'non-2xx', 'timeouts', 'server cpu', 'cpu µs/req', 'gen cpu', 'other cpu'];

/** Server CPU per answered request, µs: its share of a core over the requests it answered per second; null unknown. */
function cpuMicrosPerRequest(share: number | null, reqPerSec: number): number | null {
  return share === null || !(reqPerSec > 0) ? null : (share * 1e6) / reqPerSec;
}

function cpuPerRequest(share: number | null, reqPerSec: number): string {
  const us = cpuMicrosPerRequest(share, reqPerSec);
  return us === null ? '-' : fmt(us, 0);
}

/**
 * The one final table: per scenario and target, the closed-loop max (median of the rounds), then the open-loop
 * rows at 50% and 80% of that max, then the in-process decision rows (µs).
 */
export function finalTable(rep: Pick<BenchReport, 'scenarios' | 'decision'>): string[][] {
  const rows: string[][] = [FINAL_HEADER];
  for (const s of rep.scenarios) {
    for (const t of s.targets) {
      const m = s.medians[t];
      if (m !== undefined) {
        rows.push([
          s.scenario,
          t,
          `max (closed, median of ${m.rounds})`,
          fmt(m.reqPerSec, 0),
          m.ratioToBaseline === null ? '-' : fmt(m.ratioToBaseline, 3),
          ms(m.p50Ms),
          ms(m.p90Ms),
          ms(m.p99Ms),
          ms(m.p999Ms),
          'ms',
          t.startsWith('baseline') ? '-' : pct(m.bidRate),
          fmt(m.errors, 0),
          fmt(m.non2xx, 0),
          fmt(m.timeouts, 0),
          pct(m.serverCpu),
          cpuPerRequest(m.serverCpu, m.reqPerSec),
          pct(m.generatorCpu),
          pct(m.otherCpu),
        ]);
      }
      for (const o of s.open.filter((x) => x.target === t)) {
        rows.push([
          s.scenario,
          t,
          `open ${fmt(100 * o.loadShare, 0)}% (${fmt(o.targetRate, 0)}/s)`,
          fmt(o.achievedRate, 0),
          '-',
          ms(o.latencyMs.p50),
          ms(o.latencyMs.p90),
          ms(o.latencyMs.p99),
          ms(o.latencyMs.p999),
          'ms',
          t.startsWith('baseline') ? '-' : pct(o.bidRate),
          String(o.errors),
          String(o.non2xx),
          String(o.timeouts),
          pct(o.serverCpu),
          cpuPerRequest(o.serverCpu, o.achievedRate),
          pct(o.generatorCpu),
          pct(o.otherCpu),
        ]);
      }
    }
  }
  for (const d of rep.decision) {
    for (const st of d.stages.filter((x) => x.stage === 'decide' || x.stage === 'handle')) {
      rows.push([
        d.options.scenario,
        `in-process ${st.stage}`,
        `${d.lineItems} LI x ${d.segments} seg, 1 core`,
        fmt(st.callsPerSec, 0),
        '-',
        fmt(st.p50Us, 2),
        '-',
        fmt(st.p99Us, 2),
        fmt(st.p999Us, 2),
        'µs',
        st.stage === 'handle' ? pct(d.bidRate) : '-',
        '-',
        '-',
        '-',
        '-',
        '-',
        '-',
      ]);
    }
  }
  return rows;
}

function runRows(rep: BenchReport): string[][] {
  const rows = [['scenario', 'run', 'req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'non-2xx', 'errors', '200', '204', 'server cpu', 'gen cpu', 'other cpu']];
  for (const s of rep.scenarios) {
    for (const r of s.closed) {
      rows.push([
        s.scenario,
        `${r.target} #${r.round}`,
        fmt(r.reqPerSec, 0),
        ms(r.latencyMs.p50),
        ms(r.latencyMs.p99),
        ms(r.latencyMs.p999),
        String(r.non2xx),
        String(r.errors),
        String(r.statusCodes['200'] ?? 0),
        String(r.statusCodes['204'] ?? 0),
        pct(r.serverCpu),
        pct(r.generatorCpu),
        pct(r.otherCpu),
      ]);
    }
  }
  return rows;
}

/**
 * Per open-loop run, what its latency from the schedule is made of: the driver's own lateness (a timer or a stall
 * of the generator, not the server) and the latency from the actual write (the server, plus its queue on the
 * connection), with the host's steal, so a p99 can be read against this machine's floor.
 */
export function openLoopRows(rep: Pick<BenchReport, 'scenarios'>): string[][] {
  const rows = [['scenario', 'target', 'load', 'p50 from schedule', 'p99 from schedule', 'p50 from write', 'p99 from write', 'driver late p50', 'driver late p99', 'driver late max', 'driver GC max', 'host steal']];
  for (const s of rep.scenarios) {
    for (const o of s.open) {
      rows.push([
        s.scenario,
        o.target,
        `${fmt(100 * o.loadShare, 0)}%`,
        ms(o.latencyMs.p50),
        ms(o.latencyMs.p99),
        ms(o.fromSendMs.p50),
        ms(o.fromSendMs.p99),
        ms(o.driverLateMs.p50),
        ms(o.driverLateMs.p99),
        ms(o.driverLateMs.max),
        ms(o.driverGc.maxMs),
        o.stealCpu === undefined || o.stealCpu === null ? '-' : pct(o.stealCpu),
      ]);
    }
  }
  return rows;
}

function outcomeRows(s: ScenarioReport): string[][] {
  const total: Record<string, number> = {};
  let all = 0;
  for (const r of [...s.closed, ...s.open]) {
    if (r.target !== 'segbid-1w') continue;
    for (const [k, v] of Object.entries(r.outcomes ?? {})) {
      total[k] = (total[k] ?? 0) + v;
      all += v;
    }
  }
  const rows = [[`${s.scenario}: segbid-1w outcome/reason (all runs)`, 'count', 'share']];
  for (const [k, v] of Object.entries(total).sort((a, b) => b[1] - a[1])) rows.push([k, String(v), `${fmt((100 * v) / all, 1)}%`]);
  return rows;
}

export function mixLine(p: MixParams, s: MixSummary): string {
  const share = (n: number, of = s.requests) => `${fmt((100 * n) / Math.max(1, of), 0)}%`;
  return (
    `request mix (${p.profile}): ${s.requests} distinct bodies (seed ${p.seed}), mean ${s.meanBytes} B; known users ${share(s.knownUser)} ` +
    `(param ${p.knownUserShare}); app ${share(s.app)} / site ${share(s.site)}; ${s.imps} imps: banner ${share(s.banner, s.imps)}, ` +
    `video ${share(s.video, s.imps)}, native ${share(s.native, s.imps)}; deals ${share(s.deal, s.imps)} of imps ` +
    `(private ${s.privateAuction}, ${p.dealIds.length} deal ids); floors: none ${p.noFloorShare}, max ${p.maxFloor}, EUR ${share(s.eurFloor, s.imps)} of imps; ` +
    `secure ${share(s.secure, s.imps)}; cur EUR-first ${share(s.eurFirstCur)}; bcat/badv ${share(s.blockLists)}; ` +
    `GDPR ${share(s.gdpr)} (consent granting vendor ${p.vendorId}: ${share(s.consentGranted, s.gdpr)}, denying: ${share(s.consentDenied, s.gdpr)}, none: ${share(s.gdpr - s.consentGranted - s.consentDenied, s.gdpr)}); ` +
    `us_privacy ${share(s.usPrivacy)}; 3rd-party data ${share(s.thirdPartyData)}; ` +
    `countries ${JSON.stringify(s.byCountry)}; exchanges ${JSON.stringify(s.byExchange)}; devicetypes ${JSON.stringify(s.byDeviceType)}`
  );
}

export function goalLines(goals: readonly Goal[]): string[] {
  return goals.map((g) => `${passText(g.pass).padEnd(4)}  ${g.name}: ${g.text} (goal ${g.goal})`);
}

/**
 * With calibration rows (--calibrate): per scenario, the closed-loop ratio and server CPU per request of each
 * baseline+Nus copy and of segbid-1w, in CPU order, so segbid's ratio reads against what its cost allows here.
 */
export function calibrationLines(rep: Pick<BenchReport, 'scenarios'>): string[] {
  const out: string[] = [];
  for (const s of rep.scenarios) {
    const names = s.targets.filter((t) => t.startsWith('baseline+'));
    if (names.length === 0) continue;
    const rows = ['baseline', ...names, 'segbid-1w']
      .flatMap((t) => {
        const m = s.medians[t];
        const us = m === undefined ? null : cpuMicrosPerRequest(m.serverCpu, m.reqPerSec);
        return us === null ? [] : [{ t, ratio: m.ratioToBaseline ?? 1, us }];
      })
      .sort((a, b) => a.us - b.us);
    out.push(`calibration (${s.scenario}, closed loop): ` + rows.map((r) => `${r.t} ${fmt(r.us, 0)} µs/req -> ${fmt(r.ratio, 3)}`).join('; '));
  }
  return out;
}

/** The console form: the final table, the calibration line, the goals, the warnings. */
export function consoleSummary(rep: BenchReport): string {
  return [
    textTable(finalTable(rep)),
    '',
    ...calibrationLines(rep),
    ...goalLines(rep.goals),
    ...rep.warnings.map((w) => `WARNING: ${w}`),
  ].join('\n');
}

export function markdown(rep: BenchReport): string {
  const o = rep.options;
  const lines = [
    `# segbid bench, ${rep.startedAt}`,
    '',
    `- ${describeMachine(rep.machine)}; run took ${fmt(rep.wallS, 0)} s`,
    `- options: \`${JSON.stringify(o)}\``,
    '- closed loop: autocannon, max throughput, rounds interleaved across targets (order alternating), medians quoted; ' +
      'open loop: bench/open-loop.ts at 50% and 80% of each target\'s own median max, latency from each request\'s scheduled send time',
    ...rep.scenarios.map((s) => `- ${s.scenario}: ${s.lineItems ?? '?'} line items, ${s.segments ?? '?'} segments; ${mixLine(s.mix.params, s.mix.summary)}`),
    '',
    '## Results',
    '',
    markdownTable(finalTable(rep)),
    '',
    ...(calibrationLines(rep).length > 0 ? ['## Calibration', '', ...calibrationLines(rep).map((l) => `- ${l}`), ''] : []),
    '## Goals',
    '',
    ...goalLines(rep.goals).map((l) => `- ${l}`),
    ...(rep.warnings.length > 0 ? ['', '## Warnings', '', ...rep.warnings.map((w) => `- ${w}`)] : []),
    '',
    ...(rep.scenarios.some((s) => s.open.length > 0)
      ? ['## Open-loop runs: driver and server', '', markdownTable(openLoopRows(rep)), '', 'ms; "from write": from the moment the request went on its connection; "driver late": how late the driver saw a request was due (its timer, or a stall of the driver: its longest garbage collection is "driver GC max"; it runs in a worker thread with a heap of its own); both are parts of "from schedule", the figure the goals read.', '']
      : []),
    '## Closed-loop rounds',
    '',
    markdownTable(runRows(rep)),
    '',
    ...rep.scenarios.flatMap((s) => [markdownTable(outcomeRows(s)), '']),
    'Reading it: "server cpu" is the server process (all threads), "gen cpu" this load generator, "other cpu" every other ' +
      `process, in shares of one core; the machine has ${rep.machine.cpus} cpus shared by all of them; "cpu µs/req" is the ` +
      'server\'s CPU time per answered request. A closed-loop latency is connections / throughput; the open-loop rows are the ' +
      'latency an exchange would see at that rate. `baseline+Nus` rows (--calibrate) are the baseline spinning N µs of CPU per ' +
      'request: the ratio a server that much costlier than the bare one reaches with this generator on this machine.',
    '',
  ];
  return lines.join('\n');
}

/** Writes `<stamp>.json` and `.md` into dir and copies them to `latest.json` / `latest.md`. Returns the stem. */
export function writeReport(rep: BenchReport, dir: string): string {
  mkdirSync(dir, { recursive: true });
  const stem = resolve(dir, rep.startedAt.replace(/[:.]/g, '-'));
  writeFileSync(`${stem}.json`, JSON.stringify(rep, null, 2) + '\n');
  writeFileSync(`${stem}.md`, markdown(rep));
  copyFileSync(`${stem}.json`, resolve(dir, 'latest.json'));
  copyFileSync(`${stem}.md`, resolve(dir, 'latest.md'));
  return stem;
}
