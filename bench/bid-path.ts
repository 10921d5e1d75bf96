/**
 * `npm run bench`: the bid path over loopback HTTP, segbid against a bare uWebSockets.js baseline, in one
 * invocation.
 *
 *   node dist/bench/bid-path.js [--duration 10] [--rounds 3] [--warmup 2] [--connections 64] [--pipelining 1]
 *                               [--requests 500] [--seed N] [--known-share 0.6] [--skip-decision] [--pin]
 *
 * --pin (Linux, taskset): servers on cpu 1, this load generator on cpu 0. Off by default: on a machine whose
 * cores are shared with other work it did not make the figures steadier.
 *
 * 1. Builds the request mix (bench/request-mix.ts, seeded: the same bodies every run).
 * 2. Starts two child processes, so the load generator never shares their event loop: segbid
 *    (`dist/src/cli/main.js serve --config <copy>` on a fresh private copy of the demo written by this build,
 *    with an https event base, bench/demo-fixtures.ts; ready when /healthz and /readyz answer 200) and the baseline
 *    (`dist/src/server/bare-baseline-server.js`: read body, JSON.parse, fixed bid; ready on its printed line).
 * 3. Per round, both targets (the order alternates between rounds so neither always runs on a warmer machine):
 *    a warm-up run (`--warmup` s, discarded), then a measured autocannon run (`--duration` s, closed loop,
 *    `--connections` connections, each connection cycling through the mix from its own offset).
 *    Latency percentiles come from every response time autocannon reports (sub-millisecond; autocannon's own
 *    histogram rounds to whole milliseconds, too coarse for a 1 ms goal). Status codes from autocannon; for
 *    segbid also the delta of segbid_bid_requests_total by outcome/reason over the measured run.
 *    CPU of the server process (/proc, Linux), of this load generator, and of every other process (/proc/stat)
 *    is recorded: at 2 cores, whichever sits near 100% is the bottleneck, which decides what the req/s figure
 *    measures; a run where other processes took more than a quarter of a core is flagged as disturbed.
 * 4. Stops both servers (always: finally + exit handlers), prints a table, the medians across rounds, the
 *    ratios and PASS/MISS for the goals (segbid req/s >= 0.85 x baseline; segbid p99 <= baseline p99 + 1 ms),
 *    then runs the decision micro-benchmark (bench/decision.ts) in a fresh child process unless --skip-decision.
 * 5. Writes bench/results/bid-path-<timestamp>.json and .md. A MISS does not fail the exit code: this is a
 *    measurement. A server that cannot start, or a crash, exits 1.
 */
import { freePort } from './free-port.js';
import autocannon from 'autocannon';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { PACKAGE_ROOT } from '../src/common/paths.js';
import { DEFAULT_MIX_PARAMS, generateRequestMix, summarizeMix, type MixParams, type MixSummary } from './request-mix.js';
import { Samples, describeMachine, fmt, machineInfo, markdownTable, median, percentileSorted, textTable, type MachineInfo } from './stats.js';
import type { DecisionBenchResult } from './decision.js';
import { writeBenchDemo } from './demo-fixtures.js';

const HOST = '127.0.0.1';
const BID_PATH = '/openrtb2/bid';
const GOAL_RPS_RATIO = 0.85;
const GOAL_P99_DIFF_MS = 1;

interface BenchOptions {
  duration: number;
  rounds: number;
  warmup: number;
  connections: number;
  pipelining: number;
  requests: number;
  seed: number;
  knownShare: number;
  skipDecision: boolean;
  /** Pin the servers to cpu 1 and this load generator to cpu 0 (Linux taskset); off by default. */
  pin: boolean;
}

type TargetName = 'baseline' | 'segbid';

interface Target {
  name: TargetName;
  child: ChildProcess;
  bidUrl: string;
  /** segbid's operations port; null for the baseline. */
  adminUrl: string | null;
}

interface RunResult {
  target: TargetName;
  round: number;
  durationS: number;
  /** Mean of the per-second completed-request samples (autocannon). */
  reqPerSec: number;
  responses: number;
  latencyMs: { mean: number; p50: number; p90: number; p99: number; p999: number; max: number };
  /** autocannon's own p99 (whole milliseconds), for comparison with other autocannon runs. */
  autocannonP99Ms: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  /** 200 / (200 + 204): the bid rate as the exchange sees it. */
  bidRate: number;
  /** segbid only: delta of segbid_bid_requests_total over the run, "outcome/reason" -> count. */
  outcomes: Record<string, number> | null;
  /** Share of one core used over the measured run (1 = one core busy). */
  serverCpu: number | null;
  generatorCpu: number;
  /**
   * User + system CPU of every other process on the machine over the run, in cores (/proc/stat minus server and
   * generator; kernel softirq work for loopback is not counted). Above ~0.25 the run shared the CPUs with
   * someone else and its figures are suspect.
   */
  otherCpu: number | null;
}

interface TargetSummary {
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  bidRate: number;
  serverCpu: number | null;
  generatorCpu: number;
  otherCpu: number | null;
}

/* ---------- child processes ---------- */

const children = new Set<ChildProcess>();

/** Last resort: never leave a server behind, whatever path ends this process. */
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\nbench: ${signal}, stopping servers\n`);
    process.exit(130);
  });
}


interface Spawned {
  child: ChildProcess;
  /** Resolves with the first stdout line matching `pattern`; rejects if the child exits first or on timeout. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** The last lines of stdout + stderr, for error messages. */
  tail(): string;
}

/** CPU list the servers are pinned to (taskset -c), or null. Set by main() from --pin. */
let serverCpus: string | null = null;

function spawnNode(name: string, args: string[]): Spawned {
  // taskset execs node in place, so the child pid is node's own (the /proc CPU reading relies on it).
  const child =
    serverCpus !== null
      ? spawn('taskset', ['-c', serverCpus, process.execPath, ...args], { cwd: PACKAGE_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: process.env })
      : spawn(process.execPath, args, { cwd: PACKAGE_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const lines: string[] = [];
  const waiters: { pattern: RegExp; done: (m: RegExpMatchArray) => void }[] = [];
  // Always drain both pipes: a child blocked on a full pipe would look like a slow server.
  const onData = (stream: 'out' | 'err') => {
    let partial = '';
    return (chunk: Buffer) => {
      const text = partial + chunk.toString('utf8');
      const parts = text.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        lines.push(`[${name} ${stream}] ${line}`);
        if (lines.length > 40) lines.shift();
        for (let i = waiters.length - 1; i >= 0; i--) {
          const m = stream === 'out' ? line.match(waiters[i].pattern) : null;
          if (m !== null) waiters.splice(i, 1)[0].done(m);
        }
      }
    };
  };
  child.stdout!.on('data', onData('out'));
  child.stderr!.on('data', onData('err'));
  const tail = () => lines.join('\n');
  const waitForLine = (pattern: RegExp, timeoutMs: number) =>
    new Promise<RegExpMatchArray>((resolveLine, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} not ready after ${timeoutMs} ms\n${tail()}`)), timeoutMs);
      const onExit = (code: number | null, signal: string | null) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (code ${code}, signal ${signal}) before it was ready\n${tail()}`));
      };
      child.once('exit', onExit);
      waiters.push({
        pattern,
        done: (m) => {
          clearTimeout(timer);
          child.off('exit', onExit);
          resolveLine(m);
        },
      });
    });
  return { child, waitForLine, tail };
}

async function pollReady(url: string, child: ChildProcess, timeoutMs: number, tail: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`server exited before ${url} answered\n${tail()}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} not ready after ${timeoutMs} ms\n${tail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function startSegbid(configPath: string): Promise<Target> {
  const port = await freePort(HOST);
  const adminPort = await freePort(HOST);
  const s = spawnNode('segbid', [
    resolve(PACKAGE_ROOT, 'dist/src/cli/main.js'),
    'serve',
    '--config',
    configPath,
    '--host',
    HOST,
    '--port',
    String(port),
    '--admin-port',
    String(adminPort),
  ]);
  const adminUrl = `http://${HOST}:${adminPort}`;
  await pollReady(`${adminUrl}/healthz`, s.child, 60_000, s.tail);
  await pollReady(`${adminUrl}/readyz`, s.child, 10_000, s.tail);
  return { name: 'segbid', child: s.child, bidUrl: `http://${HOST}:${port}${BID_PATH}`, adminUrl };
}

async function startBaseline(): Promise<Target> {
  const port = await freePort(HOST);
  const s = spawnNode('baseline', [resolve(PACKAGE_ROOT, 'dist/src/server/bare-baseline-server.js'), '--host', HOST, '--port', String(port)]);
  const m = await s.waitForLine(/bare-baseline listening on http:\/\/[^:]+:(\d+)/, 15_000);
  return { name: 'baseline', child: s.child, bidUrl: `http://${HOST}:${m[1]}${BID_PATH}`, adminUrl: null };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

/* ---------- measurements ---------- */

/** utime + stime of a process in seconds, from /proc (Linux); null elsewhere. */
function processCpuSeconds(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the ")" closing the command name: state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticksPerSecond = 100; // USER_HZ, 100 on every mainstream Linux
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
  } catch {
    return null;
  }
}

/** User + nice + system time of all cpus, in seconds, from /proc/stat (Linux); null elsewhere. */
function systemCpuSeconds(): number | null {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/);
    return (Number(fields[1]) + Number(fields[2]) + Number(fields[3])) / 100;
  } catch {
    return null;
  }
}

/** segbid_bid_requests_total by "outcome/reason". */
async function scrapeOutcomes(adminUrl: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const out: Record<string, number> = {};
  const re = /^segbid_bid_requests_total\{([^}]*)\}\s+(\S+)$/gm;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    out[`${labels.outcome}/${labels.reason}`] = Number(m[2]);
  }
  return out;
}

function diffCounts(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

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
        // autocannon starts every connection at request 0; spread the starting points so the 64 connections do
        // not send the same body at the same moment (identical bodies would flatter any per-body caching).
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

async function measure(target: Target, round: number, opts: BenchOptions, requests: autocannon.Request[], samples: Samples): Promise<RunResult> {
  if (opts.warmup > 0) await cannon(target.bidUrl, opts, requests, opts.warmup, null);
  samples.reset();
  const before = target.adminUrl !== null ? await scrapeOutcomes(target.adminUrl) : null;
  const serverCpu0 = processCpuSeconds(target.child.pid);
  const systemCpu0 = systemCpuSeconds();
  const genCpu0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await cannon(target.bidUrl, opts, requests, opts.duration, samples);
  const wallS = (performance.now() - t0) / 1000;
  const genCpu = process.cpuUsage(genCpu0);
  const serverCpu1 = processCpuSeconds(target.child.pid);
  const systemCpu1 = systemCpuSeconds();
  const outcomes = target.adminUrl !== null && before !== null ? diffCounts(before, await scrapeOutcomes(target.adminUrl)) : null;

  const sorted = samples.sorted();
  let sum = 0;
  for (let i = 0; i < sorted.length; i++) sum += sorted[i];
  const statusCodes: Record<string, number> = {};
  for (const [code, s] of Object.entries(r.statusCodeStats)) statusCodes[code] = Number(s.count);
  const serverCpu = serverCpu0 !== null && serverCpu1 !== null ? (serverCpu1 - serverCpu0) / wallS : null;
  const generatorCpu = (genCpu.user + genCpu.system) / 1e6 / wallS;
  const otherCpu =
    serverCpu !== null && systemCpu0 !== null && systemCpu1 !== null ? Math.max(0, (systemCpu1 - systemCpu0) / wallS - serverCpu - generatorCpu) : null;
  const ok200 = statusCodes['200'] ?? 0;
  const no204 = statusCodes['204'] ?? 0;
  return {
    target: target.name,
    round,
    durationS: r.duration,
    reqPerSec: r.requests.average,
    responses: sorted.length,
    latencyMs: {
      mean: sorted.length > 0 ? sum / sorted.length : NaN,
      p50: percentileSorted(sorted, 50),
      p90: percentileSorted(sorted, 90),
      p99: percentileSorted(sorted, 99),
      p999: percentileSorted(sorted, 99.9),
      max: sorted.length > 0 ? sorted[sorted.length - 1] : NaN,
    },
    autocannonP99Ms: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    statusCodes,
    bidRate: ok200 + no204 > 0 ? ok200 / (ok200 + no204) : NaN,
    outcomes,
    serverCpu,
    generatorCpu,
    otherCpu,
  };
}

function summarize(runs: RunResult[]): TargetSummary {
  const known = (values: (number | null)[]) => values.filter((c): c is number => c !== null);
  const cpu = known(runs.map((r) => r.serverCpu));
  const other = known(runs.map((r) => r.otherCpu));
  return {
    reqPerSec: median(runs.map((r) => r.reqPerSec)),
    p50Ms: median(runs.map((r) => r.latencyMs.p50)),
    p99Ms: median(runs.map((r) => r.latencyMs.p99)),
    p999Ms: median(runs.map((r) => r.latencyMs.p999)),
    non2xx: median(runs.map((r) => r.non2xx)),
    errors: median(runs.map((r) => r.errors)),
    timeouts: median(runs.map((r) => r.timeouts)),
    bidRate: median(runs.map((r) => r.bidRate)),
    serverCpu: cpu.length > 0 ? median(cpu) : null,
    generatorCpu: median(runs.map((r) => r.generatorCpu)),
    otherCpu: other.length > 0 ? median(other) : null,
  };
}

/* ---------- report ---------- */

const pct = (v: number | null) => (v === null || !Number.isFinite(v) ? '-' : `${fmt(100 * v, 0)}%`);

function runRows(runs: RunResult[]): string[][] {
  const rows = [['run', 'req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'non-2xx', 'errors', 'timeouts', '200', '204', 'bid rate', 'server cpu', 'gen cpu', 'other cpu']];
  for (const r of runs) {
    rows.push([
      `${r.target} #${r.round}`,
      Math.round(r.reqPerSec).toString(),
      fmt(r.latencyMs.p50, 3),
      fmt(r.latencyMs.p99, 3),
      fmt(r.latencyMs.p999, 3),
      String(r.non2xx),
      String(r.errors),
      String(r.timeouts),
      String(r.statusCodes['200'] ?? 0),
      String(r.statusCodes['204'] ?? 0),
      r.target === 'segbid' ? pct(r.bidRate) : '-',
      pct(r.serverCpu),
      pct(r.generatorCpu),
      pct(r.otherCpu),
    ]);
  }
  return rows;
}

function medianRows(base: TargetSummary, seg: TargetSummary): string[][] {
  const row = (name: string, s: TargetSummary, bidRate: boolean) => [
    `median ${name}`,
    Math.round(s.reqPerSec).toString(),
    fmt(s.p50Ms, 3),
    fmt(s.p99Ms, 3),
    fmt(s.p999Ms, 3),
    String(s.non2xx),
    String(s.errors),
    String(s.timeouts),
    bidRate ? pct(s.bidRate) : '-',
    pct(s.serverCpu),
    pct(s.generatorCpu),
    pct(s.otherCpu),
  ];
  return [
    ['', 'req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'non-2xx', 'errors', 'timeouts', 'bid rate', 'server cpu', 'gen cpu', 'other cpu'],
    row('baseline', base, false),
    row('segbid', seg, true),
  ];
}

function outcomeRows(runs: RunResult[]): string[][] {
  const total: Record<string, number> = {};
  let all = 0;
  for (const r of runs) {
    for (const [k, v] of Object.entries(r.outcomes ?? {})) {
      total[k] = (total[k] ?? 0) + v;
      all += v;
    }
  }
  const rows = [['segbid outcome/reason (all measured runs)', 'count', 'share']];
  for (const [k, v] of Object.entries(total).sort((a, b) => b[1] - a[1])) rows.push([k, String(v), `${fmt((100 * v) / all, 1)}%`]);
  return rows;
}

const OTHER_CPU_WARNING = 0.25;

/** A warning when some run shared the machine with other work, else null. */
function disturbedLine(runs: RunResult[]): string | null {
  const bad = runs.filter((r) => r.otherCpu !== null && r.otherCpu > OTHER_CPU_WARNING);
  if (bad.length === 0) return null;
  return (
    `WARNING: other processes used > ${OTHER_CPU_WARNING * 100}% of a core during ${bad.map((r) => `${r.target} #${r.round}`).join(', ')}: ` +
    'those figures measure a shared machine; rerun when it is quiet'
  );
}

function mixLine(p: MixParams, s: MixSummary): string {
  const share = (n: number, of = s.requests) => `${fmt((100 * n) / of, 0)}%`;
  return (
    `request mix: ${s.requests} distinct bodies (seed ${p.seed}), mean ${s.meanBytes} B; known users ${share(s.knownUser)} ` +
    `(param ${p.knownUserShare}); app ${share(s.app)} / site ${share(s.site)}; ${s.imps} imps: banner ${share(s.banner, s.imps)}, ` +
    `video ${share(s.video, s.imps)}, native ${share(s.native, s.imps)}; deal ${share(s.deal, s.imps)} of imps ` +
    `(private ${s.privateAuction}); EUR floors ${share(s.eurFloor, s.imps)}; secure ${share(s.secure, s.imps)}; cur EUR-first ${share(s.eurFirstCur)}; ` +
    `bcat/badv ${share(s.blockLists)}; countries ${JSON.stringify(s.byCountry)}; devicetypes ${JSON.stringify(s.byDeviceType)}`
  );
}

interface Report {
  startedAt: string;
  machine: MachineInfo;
  options: BenchOptions;
  mix: { params: MixParams; summary: MixSummary };
  runs: RunResult[];
  medians: { baseline: TargetSummary; segbid: TargetSummary };
  goals: {
    rpsRatio: number;
    rpsRatioGoal: number;
    rpsPass: boolean;
    p99DiffMs: number;
    p99DiffGoalMs: number;
    p99Pass: boolean;
  };
  decision: DecisionBenchResult | null;
  decisionText: string | null;
}

function goalLines(g: Report['goals']): string[] {
  return [
    `segbid/baseline req/s = ${fmt(g.rpsRatio, 3)} (goal >= ${g.rpsRatioGoal}): ${g.rpsPass ? 'PASS' : 'MISS'}`,
    `segbid p99 - baseline p99 = ${g.p99DiffMs >= 0 ? '+' : ''}${fmt(g.p99DiffMs, 3)} ms (goal <= ${g.p99DiffGoalMs} ms): ${g.p99Pass ? 'PASS' : 'MISS'}`,
  ];
}

function markdown(rep: Report): string {
  const o = rep.options;
  return [
    `# bid-path bench, ${rep.startedAt}`,
    '',
    `- ${describeMachine(rep.machine)}`,
    `- load: autocannon ${o.connections} connections, pipelining ${o.pipelining}, ${o.rounds} round(s) of ${o.duration} s per target ` +
      `after a ${o.warmup} s warm-up each, order alternating per round; loopback ${HOST}; closed loop`,
    `- ${mixLine(rep.mix.params, rep.mix.summary)}`,
    '',
    '## Runs',
    '',
    markdownTable(runRows(rep.runs)),
    '',
    '## Medians across rounds',
    '',
    markdownTable(medianRows(rep.medians.baseline, rep.medians.segbid)),
    '',
    ...goalLines(rep.goals).map((l) => `- ${l}`),
    ...(disturbedLine(rep.runs) !== null ? [`- ${disturbedLine(rep.runs)}`] : []),
    '',
    markdownTable(outcomeRows(rep.runs.filter((r) => r.target === 'segbid'))),
    '',
    'Latency = client-side response time from autocannon (loopback, closed loop: at a fixed number of connections, ' +
      'latency ≈ connections / throughput, so a throughput gap shows up as a latency gap). "server cpu" is the ' +
      'server process, "gen cpu" the autocannon process, "other cpu" every other process (user + system), in ' +
      `shares of one core; the machine has ${rep.machine.cpus} cpus shared by all of them.`,
    '',
    ...(rep.decisionText !== null ? ['## Decision micro-benchmark', '', '```', rep.decisionText, '```', ''] : []),
  ].join('\n');
}

/* ---------- main ---------- */

function parseOptions(): BenchOptions {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '10' },
      rounds: { type: 'string', default: '3' },
      warmup: { type: 'string', default: '2' },
      connections: { type: 'string', default: '64' },
      pipelining: { type: 'string', default: '1' },
      requests: { type: 'string', default: String(DEFAULT_MIX_PARAMS.count) },
      seed: { type: 'string', default: String(DEFAULT_MIX_PARAMS.seed) },
      'known-share': { type: 'string', default: String(DEFAULT_MIX_PARAMS.knownUserShare) },
      'skip-decision': { type: 'boolean', default: false },
      pin: { type: 'boolean', default: false },
    },
  });
  const o: BenchOptions = {
    duration: Number(values.duration),
    rounds: Number(values.rounds),
    warmup: Number(values.warmup),
    connections: Number(values.connections),
    pipelining: Number(values.pipelining),
    requests: Number(values.requests),
    seed: Number(values.seed),
    knownShare: Number(values['known-share']),
    skipDecision: values['skip-decision'] ?? false,
    pin: values.pin ?? false,
  };
  for (const k of ['duration', 'rounds', 'connections', 'pipelining', 'requests'] as const) {
    if (!Number.isInteger(o[k]) || o[k] <= 0) throw new Error(`--${k} must be a positive integer`);
  }
  if (!Number.isInteger(o.warmup) || o.warmup < 0) throw new Error('--warmup must be a non-negative integer');
  if (!Number.isInteger(o.seed)) throw new Error('--seed must be an integer');
  if (!(o.knownShare >= 0 && o.knownShare <= 1)) throw new Error('--known-share must be in [0, 1]');
  return o;
}

/** The decision micro-benchmark in its own process: a fresh heap and JIT, the CPU no longer shared with servers. */
async function runDecisionChild(opts: BenchOptions): Promise<{ result: DecisionBenchResult; text: string }> {
  const out = resolve(tmpdir(), `segbid-decision-${process.pid}.json`);
  const s = spawnNode('decision', [resolve(PACKAGE_ROOT, 'dist/bench/decision.js'), '--requests', String(opts.requests), '--seed', String(opts.seed), '--out', out]);
  let text = '';
  s.child.stdout!.on('data', (c: Buffer) => (text += c.toString('utf8')));
  const code = await new Promise<number | null>((r) => s.child.once('exit', (c) => r(c)));
  if (code !== 0) throw new Error(`decision bench exited with code ${code}\n${s.tail()}`);
  const result = JSON.parse(readFileSync(out, 'utf8')) as DecisionBenchResult;
  rmSync(out, { force: true });
  // Its first line is the machine, already printed above.
  return { result, text: text.split('\n').slice(1).join('\n').trimEnd() };
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const startedAt = new Date().toISOString();
  const machine = machineInfo();
  const mixParams: MixParams = { ...DEFAULT_MIX_PARAMS, count: opts.requests, seed: opts.seed, knownUserShare: opts.knownShare };
  const bodies = generateRequestMix(mixParams);
  const mixSummary = summarizeMix(bodies);
  const headers = { 'content-type': 'application/json', 'x-openrtb-version': '2.6' };
  const requests: autocannon.Request[] = bodies.map((body) => ({ method: 'POST', path: BID_PATH, headers, body }));

  process.stdout.write(
    `${describeMachine(machine)}\n` +
      `params: duration ${opts.duration} s, rounds ${opts.rounds}, warm-up ${opts.warmup} s, connections ${opts.connections}, ` +
      `pipelining ${opts.pipelining}, loopback ${HOST}, closed loop (autocannon ${readAutocannonVersion()})\n` +
      `${mixLine(mixParams, mixSummary)}\n`,
  );

  if (opts.pin) {
    // All threads of this process (-a) on cpu 0; servers on cpu 1. The kernel's loopback work still lands anywhere.
    const r = spawnSync('taskset', ['-a', '-pc', '0', String(process.pid)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`--pin: taskset failed (${r.error?.message ?? r.stderr.trim()})`);
    serverCpus = '1';
  }
  const targets: Target[] = [];
  const runs: RunResult[] = [];
  const samples = new Samples(1 << 20);
  const demo = writeBenchDemo();
  process.once('exit', demo.remove); // also on SIGINT, which skips the finally below
  try {
    targets.push(await startBaseline());
    targets.push(await startSegbid(demo.configPath));
    const [baseline, segbid] = targets;
    process.stdout.write(`servers: baseline pid ${baseline.child.pid} ${baseline.bidUrl}; segbid pid ${segbid.child.pid} ${segbid.bidUrl}\n`);
    for (let round = 1; round <= opts.rounds; round++) {
      const order = round % 2 === 1 ? [baseline, segbid] : [segbid, baseline];
      for (const target of order) {
        const r = await measure(target, round, opts, requests, samples);
        runs.push(r);
        process.stdout.write(
          `  round ${round} ${target.name.padEnd(8)} ${Math.round(r.reqPerSec)} req/s, p50 ${fmt(r.latencyMs.p50, 3)} ms, ` +
            `p99 ${fmt(r.latencyMs.p99, 3)} ms, non-2xx ${r.non2xx}, errors ${r.errors}\n`,
        );
      }
    }
  } finally {
    await Promise.all(targets.map((t) => stopChild(t.child)));
    demo.remove();
  }

  const base = summarize(runs.filter((r) => r.target === 'baseline'));
  const seg = summarize(runs.filter((r) => r.target === 'segbid'));
  const rpsRatio = seg.reqPerSec / base.reqPerSec;
  const p99DiffMs = seg.p99Ms - base.p99Ms;
  const goals: Report['goals'] = {
    rpsRatio,
    rpsRatioGoal: GOAL_RPS_RATIO,
    rpsPass: rpsRatio >= GOAL_RPS_RATIO,
    p99DiffMs,
    p99DiffGoalMs: GOAL_P99_DIFF_MS,
    p99Pass: p99DiffMs <= GOAL_P99_DIFF_MS,
  };
  process.stdout.write(
    '\n' +
      textTable(runRows(runs)) +
      '\n\n' +
      textTable(medianRows(base, seg)) +
      '\n' +
      goalLines(goals).join('\n') +
      '\n' +
      (disturbedLine(runs) !== null ? `${disturbedLine(runs)}\n` : '') +
      '\n' +
      textTable(outcomeRows(runs.filter((r) => r.target === 'segbid'))) +
      '\n',
  );

  let decision: DecisionBenchResult | null = null;
  let decisionText: string | null = null;
  if (!opts.skipDecision) {
    process.stdout.write('\n');
    const d = await runDecisionChild(opts);
    decision = d.result;
    decisionText = d.text;
    process.stdout.write(`${decisionText}\n`);
  }

  const report: Report = {
    startedAt,
    machine,
    options: opts,
    mix: { params: mixParams, summary: mixSummary },
    runs,
    medians: { baseline: base, segbid: seg },
    goals,
    decision,
    decisionText,
  };
  const dir = resolve(PACKAGE_ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const stem = resolve(dir, `bid-path-${startedAt.replace(/[:.]/g, '-')}`);
  writeFileSync(`${stem}.json`, JSON.stringify(report, null, 2) + '\n');
  writeFileSync(`${stem}.md`, markdown(report));
  process.stdout.write(`\nresults: ${stem}.json\n         ${stem}.md\n`);
}

function readAutocannonVersion(): string {
  try {
    return (JSON.parse(readFileSync(resolve(PACKAGE_ROOT, 'node_modules/autocannon/package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
  // The 'exit' handler kills any server still running.
});
