/**
 * The bench harness itself (not speed): the open-loop driver against the real bare uWebSockets.js baseline
 * (dist/src/server/bare-baseline-server.js: run `npx tsc -p tsconfig.json` first), its response parser, the report
 * built from those runs (tables, goals, files), the seeded request mixes and the large config generator.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PACKAGE_ROOT } from '../src/common/paths.js';
import { runOpenLoop, runOpenLoopInWorker, parseResponse, type OpenLoopResult } from '../bench/open-loop.js';
import { startBaseline, startSegbid, stopTarget, type Target } from '../bench/servers.js';
import { writeBenchConfig } from '../bench/demo-fixtures.js';
import {
  FINAL_HEADER,
  calibrationLines,
  evaluateGoals,
  finalTable,
  latencySummary,
  markdown,
  openRunOf,
  openLoopRows,
  summarizeClosed,
  warningsOf,
  writeReport,
  type BenchReport,
  type ClosedRun,
  type ScenarioReport,
} from '../bench/report.js';
import { DEFAULT_MIX_PARAMS, LARGE_MIX_PARAMS, generateRequestMix, summarizeMix } from '../bench/request-mix.js';
import { fmt, machineInfo } from '../bench/stats.js';
import { validateBidRequest } from '../src/openrtb/validate.js';
import { deciderFromDocument } from '../src/bidding/load-decider.js';
import { LARGE_LINE_ITEMS, LARGE_SEGMENTS, largeConfig, writeLargeConfig } from '../src/fixtures/large-config.js';

const BASELINE_JS = resolve(PACKAGE_ROOT, 'dist/src/server/bare-baseline-server.js');

describe('open-loop driver and report', () => {
  let baseline: Target;
  const bodies = generateRequestMix({ count: 50 });
  const runs: OpenLoopResult[] = [];

  beforeAll(async () => {
    if (!existsSync(BASELINE_JS)) throw new Error(`${BASELINE_JS} is missing: run npx tsc -p tsconfig.json first`);
    baseline = await startBaseline();
  });
  afterAll(async () => {
    if (baseline !== undefined) await stopTarget(baseline);
  });

  it('sends on schedule and answers every request, latency from the scheduled time', async () => {
    for (const rate of [100, 200]) {
      const r = await runOpenLoop({ url: baseline.bidUrl, rate, durationS: 1, bodies, connections: 8, headers: { 'x-openrtb-version': '2.6' } });
      runs.push(r);
      expect(r.scheduled).toBe(rate);
      expect(r.completed).toBe(rate);
      expect(r.errors).toBe(0);
      expect(r.timeouts).toBe(0);
      expect(r.non2xx).toBe(0);
      expect(r.statusCodes['200']).toBe(rate);
      expect(r.latenciesMs.length).toBe(rate);
      for (let i = 1; i < r.latenciesMs.length; i++) expect(r.latenciesMs[i]).toBeGreaterThanOrEqual(r.latenciesMs[i - 1]);
      expect(r.latenciesMs[0]).toBeGreaterThan(0);
      expect(r.achievedRate).toBe(rate);
      // Its parts: the latency from the write and the driver's own lateness, one per answer / per scheduled request.
      expect(r.fromSendMs.length).toBe(rate);
      expect(r.lateMs.length).toBe(rate);
      for (let i = 0; i < rate; i++) {
        // Each answer's write came at or after its schedule, so (sorted alike) the write-based figure is never larger.
        expect(r.fromSendMs[i]).toBeLessThanOrEqual(r.latenciesMs[i]);
        expect(r.fromSendMs[i]).toBeGreaterThan(0);
        expect(r.lateMs[i]).toBeGreaterThanOrEqual(0);
        if (i > 0) expect(r.lateMs[i]).toBeGreaterThanOrEqual(r.lateMs[i - 1]);
      }
    }
  });

  it('runs the same driver in a worker thread of its own and hands its result back', async () => {
    const r = await runOpenLoopInWorker({ url: baseline.bidUrl, rate: 100, durationS: 0.5, bodies, connections: 4, headers: { 'x-openrtb-version': '2.6' } });
    expect(r.scheduled).toBe(50);
    expect(r.completed).toBe(50);
    expect(r.errors + r.timeouts + r.non2xx).toBe(0);
    expect(r.latenciesMs).toBeInstanceOf(Float64Array);
    expect(r.latenciesMs.length).toBe(50);
    expect(r.fromSendMs.length).toBe(50);
    expect(r.lateMs.length).toBe(50);
    expect(r.maxSchedulerLagMs).toBe(r.lateMs[49]);
    expect(r.driverGc.count).toBeGreaterThanOrEqual(0);
    expect(r.driverGc.maxMs).toBeLessThanOrEqual(r.driverGc.totalMs);
  });

  it('counts a refused connection as errors, never hangs', async () => {
    const r = await runOpenLoop({ url: 'http://127.0.0.1:1/openrtb2/bid', rate: 50, durationS: 0.4, bodies, connections: 2, drainMs: 300 });
    expect(r.completed).toBe(0);
    expect(r.errors + r.timeouts).toBeGreaterThanOrEqual(r.scheduled);
  });

  it('builds the report: final table, goals, markdown, files with a latest copy', () => {
    expect(runs.length).toBe(2);
    // Closed-loop runs of the same shape as the bench's, from the measured latencies (this test checks shape, not speed).
    const closed: ClosedRun[] = [];
    for (const target of ['baseline', 'segbid-1w']) {
      for (let round = 1; round <= 3; round++) {
        const r = runs[round % 2];
        closed.push({
          scenario: 'demo',
          target,
          round,
          durationS: 1,
          reqPerSec: r.achievedRate * (target === 'baseline' ? 1 : 0.9),
          responses: r.completed,
          latencyMs: latencySummary(r.latenciesMs),
          non2xx: 0,
          errors: 0,
          timeouts: 0,
          statusCodes: r.statusCodes,
          bidRate: 1,
          outcomes: null,
          serverCpu: 0.5,
          generatorCpu: 0.2,
          otherCpu: 0,
        });
      }
    }
    const medians = summarizeClosed(closed);
    expect(medians.baseline.rounds).toBe(3);
    expect(medians.baseline.ratioToBaseline).toBeNull();
    expect(medians['segbid-1w'].ratioToBaseline).toBeCloseTo(0.9, 6);
    const cpu = { serverCpu: 0.1, generatorCpu: 0.1, otherCpu: 0 };
    const scenario: ScenarioReport = {
      scenario: 'demo',
      lineItems: 10,
      segments: 11,
      mix: { params: DEFAULT_MIX_PARAMS, summary: summarizeMix(bodies) },
      targets: ['baseline', 'segbid-1w'],
      closed,
      medians,
      open: [openRunOf('demo', 'segbid-1w', 0.5, runs[0], cpu, null), openRunOf('demo', 'segbid-1w', 0.8, runs[1], cpu, null)],
    };
    const goals = evaluateGoals([scenario], []);
    expect(goals.map((g) => g.pass)).toEqual([true, expect.any(Boolean)]);
    expect(goals[1].value).toBe(scenario.open[0].latencyMs.p99);
    const rep: BenchReport = {
      startedAt: new Date().toISOString(),
      finishedAt: new Date().toISOString(),
      wallS: 3,
      machine: machineInfo(),
      options: { test: true },
      scenarios: [scenario],
      decision: [],
      goals,
      warnings: warningsOf([scenario]),
    };
    const table = finalTable(rep);
    expect(table[0]).toEqual(FINAL_HEADER);
    // Per target: the closed-loop max row, then its open-loop rows.
    expect(table.slice(1).map((r) => `${r[1]} ${r[2].split(' ')[0]}`)).toEqual(['baseline max', 'segbid-1w max', 'segbid-1w open', 'segbid-1w open']);
    for (const row of table) expect(row.length).toBe(FINAL_HEADER.length);
    const md = markdown(rep);
    expect(md).toContain('| scenario | target | load |');
    expect(md).toContain('## Goals');
    // The open-loop runs' parts, one row each, from the driver's figures.
    const parts = openLoopRows(rep);
    expect(parts.length).toBe(1 + scenario.open.length);
    expect(parts[1][4]).toBe(fmt(scenario.open[0].latencyMs.p99, 3));
    expect(parts[1][6]).toBe(fmt(scenario.open[0].fromSendMs.p99, 3));
    expect(parts[1][8]).toBe(fmt(scenario.open[0].driverLateMs.p99, 3));
    expect(md).toContain('## Open-loop runs: driver and server');

    // The p99 goal is read against the bare server at the same share, and a late driver is called out.
    const bareHalf = openRunOf('demo', 'baseline', 0.5, runs[0], { ...cpu, stealCpu: 0.03 }, null);
    const lateRun = { ...openRunOf('demo', 'segbid-1w', 0.5, runs[0], { ...cpu, stealCpu: 0.031 }, null), maxSchedulerLagMs: 7.5 };
    const withBare: ScenarioReport = { ...scenario, open: [bareHalf, lateRun] };
    expect(evaluateGoals([withBare], [])[1].text).toContain(`the bare baseline at its own 50%: p99 ${fmt(bareHalf.latencyMs.p99, 3)} ms`);
    const late = warningsOf([withBare]).filter((w) => w.includes("open-loop driver's own timer"));
    expect(late.length).toBe(1);
    expect(late[0]).toContain('segbid-1w @50% (7.5 ms, host steal 3.1%)');
    expect(warningsOf([{ ...scenario, open: [{ ...lateRun, maxSchedulerLagMs: 1.5 }] }]).some((w) => w.includes('driver'))).toBe(false);

    const dir = mkdtempSync(join(tmpdir(), 'segbid-bench-report-'));
    try {
      const stem = writeReport(rep, dir);
      const back = JSON.parse(readFileSync(`${stem}.json`, 'utf8')) as BenchReport;
      expect(back.scenarios[0].open[1].loadShare).toBe(0.8);
      expect(back.goals.length).toBe(2);
      expect(readFileSync(join(dir, 'latest.json'), 'utf8')).toBe(readFileSync(`${stem}.json`, 'utf8'));
      expect(readFileSync(join(dir, 'latest.md'), 'utf8')).toBe(md);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('segbid as the bench starts it', () => {
  it('keeps its budget state in a fresh directory of its own, removed when it stops', async () => {
    const config = writeBenchConfig('demo');
    const seg = await startSegbid(config.configPath, 1);
    let stateDir = '';
    try {
      const args = seg.child.spawnargs;
      const at = args.indexOf('--state-dir');
      expect(at).toBeGreaterThan(0);
      stateDir = args[at + 1];
      expect(stateDir.startsWith(tmpdir())).toBe(true);
      expect(existsSync(stateDir)).toBe(true);
      const r = await fetch(seg.bidUrl, { method: 'POST', body: generateRequestMix({ count: 1 })[0], headers: { 'content-type': 'application/json' } });
      expect([200, 204]).toContain(r.status);
      await r.arrayBuffer();
    } finally {
      await stopTarget(seg);
      config.remove();
    }
    // The child's exit handler removes it (the exit event may follow stopTarget's by a tick).
    await new Promise((r) => setTimeout(r, 50));
    expect(existsSync(stateDir)).toBe(false);
  });
});

describe('calibration baselines (--calibrate)', () => {
  it('a baseline+Nus copy spends at least N µs a request, answers like the baseline, and reads in the report', async () => {
    const c = await startBaseline(2000);
    try {
      expect(c.name).toBe('baseline+2000us');
      // One connection, one request at a time: 40 answers cannot come faster than 40 x 2 ms of spinning.
      const body = generateRequestMix({ count: 1 })[0];
      const t0 = performance.now();
      for (let i = 0; i < 40; i++) {
        const r = await fetch(c.bidUrl, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
        expect(r.status).toBe(200);
        expect(((await r.json()) as { seatbid: unknown[] }).seatbid.length).toBe(1);
      }
      expect(performance.now() - t0).toBeGreaterThanOrEqual(80);
    } finally {
      await stopTarget(c);
    }
  });

  it('lists baseline, the calibration copies and segbid-1w by CPU per request, with their ratios', () => {
    const run = (target: string, reqPerSec: number, serverCpu: number): ClosedRun => ({
      scenario: 'demo',
      target,
      round: 1,
      durationS: 1,
      reqPerSec,
      responses: 1,
      latencyMs: latencySummary([1]),
      non2xx: 0,
      errors: 0,
      timeouts: 0,
      statusCodes: { 200: 1 },
      bidRate: 1,
      outcomes: null,
      serverCpu,
      generatorCpu: 0.9,
      otherCpu: 0,
    });
    const closed = [run('baseline', 16000, 0.48), run('baseline+30us', 10000, 0.58), run('segbid-1w', 11000, 0.66), run('baseline+15us', 12800, 0.55)];
    const scenario: ScenarioReport = {
      scenario: 'demo',
      lineItems: 10,
      segments: 11,
      mix: { params: DEFAULT_MIX_PARAMS, summary: summarizeMix(generateRequestMix({ count: 5 })) },
      targets: closed.map((r) => r.target),
      closed,
      medians: summarizeClosed(closed),
      open: [],
    };
    expect(calibrationLines({ scenarios: [scenario] })).toEqual([
      'calibration (demo, closed loop): baseline 30 µs/req -> 1.000; baseline+15us 43 µs/req -> 0.800; baseline+30us 58 µs/req -> 0.625; segbid-1w 60 µs/req -> 0.688',
    ]);
    expect(calibrationLines({ scenarios: [{ ...scenario, targets: ['baseline', 'segbid-1w'] }] })).toEqual([]);
    const table = finalTable({ scenarios: [scenario], decision: [] });
    const cpuCol = FINAL_HEADER.indexOf('cpu µs/req');
    expect(table.slice(1).map((r) => [r[1], r[cpuCol], r[FINAL_HEADER.indexOf('bid rate')]])).toEqual([
      ['baseline', '30', '-'],
      ['baseline+30us', '58', '-'],
      ['segbid-1w', '60', '100%'],
      ['baseline+15us', '43', '-'],
    ]);
  });
});

describe('open-loop response parser', () => {
  it('reads Content-Length, chunked and 204 answers, and waits for incomplete ones', () => {
    const cl = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 204 No Content\r\n\r\n');
    expect(parseResponse(cl)).toEqual([200, 43, false]);
    expect(parseResponse(cl.subarray(43))).toEqual([204, 27, false]);
    expect(parseResponse(cl.subarray(0, 40))).toBeNull();
    const chunked = Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
    expect(parseResponse(chunked)).toEqual([200, chunked.length, true]);
    expect(parseResponse(chunked.subarray(0, chunked.length - 2))).toBeNull();
  });
});

describe('request mixes and the large config', () => {
  it('the mixes are deterministic, valid, and carry consent strings', () => {
    for (const params of [DEFAULT_MIX_PARAMS, LARGE_MIX_PARAMS]) {
      const a = generateRequestMix({ ...params, count: 200 });
      expect(generateRequestMix({ ...params, count: 200 })).toEqual(a);
      for (const body of a) expect(validateBidRequest(JSON.parse(body))).toBeNull();
      const s = summarizeMix(a, params);
      expect(s.gdpr).toBeGreaterThan(0);
      expect(s.consentGranted).toBeGreaterThan(0);
      expect(s.consentGranted + s.consentDenied).toBeLessThanOrEqual(s.gdpr);
      expect(s.knownUser).toBeGreaterThan(0);
    }
    const large = summarizeMix(generateRequestMix({ ...LARGE_MIX_PARAMS, count: 200 }), LARGE_MIX_PARAMS);
    expect(Object.keys(large.byExchange).length).toBeGreaterThan(1);
  });

  it('generates 1,000 line items over 256 segments that load, deterministically', () => {
    expect(JSON.stringify(largeConfig())).toBe(JSON.stringify(largeConfig()));
    const dir = mkdtempSync(join(tmpdir(), 'segbid-large-'));
    try {
      writeLargeConfig(dir, { users: 2000 });
      const doc = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
      const decider = deciderFromDocument(doc, dir, 'large-test');
      expect(decider.config.lineItems.length).toBe(LARGE_LINE_ITEMS);
      expect(decider.config.dictionary.segments.length).toBe(LARGE_SEGMENTS);
      expect(decider.config.budgetPlan).not.toBeNull();
      expect(decider.store.header.userCount).toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
