/**
 * `npm run soak`: a soak test of one segbid process under steady load.
 *
 *   node dist/bench/soak.js [--duration 600] [--connections 64] [--max-seconds 10] [--load-share 0.7]
 *                           [--sample-seconds 10] [--requests 500] [--seed N]
 *
 *   `npm run soak` runs 10 minutes (the run that says something about leaks); `npm run soak -- --duration 60`
 *   a short one. `--duration` is in seconds; `--minutes N` is kept as its older spelling.
 *
 * 1. Starts segbid as a child process on the embedded demo:
 *    `node --min-semi-space-size=16 --max-semi-space-size=16 dist/src/cli/main.js serve --workers 1 --host 127.0.0.1 --port P --admin-port Q --event-log <tmp dir>`
 *    (the event log on, as in production: the bid tally is logged every second; removed afterwards)
 *    (ready when /healthz and /readyz answer 200).
 * 2. Measures its max req/s: a closed-loop autocannon run (`--max-seconds`, `--connections`) on the request mix
 *    of bench/request-mix.ts (seeded, the same bodies every run), each connection starting at its own offset.
 * 3. Drives it at `--load-share` (70%) of that max for `--duration` seconds, rate-limited with autocannon `overallRate`
 *    (each connection sends at most rate/connections req/s; this is a paced load, not a true open loop: a
 *    connection waits for its answer before the next request, which at 70% of the max rarely matters).
 * 4. Every `--sample-seconds` (10 s): the server's RSS (/proc/<pid>/status VmRSS), event-loop lag p99 and p50
 *    (/metrics: nodejs_eventloop_lag_p99_seconds, _p50_, from prom-client's default metrics), the heap
 *    (nodejs_heap_size_used_bytes), and from this side the req/s, the response times (p50/p99/max as each
 *    response was timed by the client), 2xx, non-2xx and errors (connection errors, timeouts) of the interval.
 *    prom-client's lag monitor has a 10 ms resolution: ~10 ms is the floor of the lag figures, not a real lag.
 *    autocannon's own latency figures are reported too, but with a rate they are corrected for coordinated
 *    omission against its bursty pacing (each connection sends its per-second quota back to back, then waits
 *    for the next second), which makes them pessimistic.
 * 5. Prints a table and a verdict: PASS when there were no errors, no non-2xx answers (the mix never makes a 400),
 *    the server is still alive, and the RSS grew less than 5% from the sample at 20% of the run (after
 *    warm-up) to the last. Writes bench/results/soak-<timestamp>.json. Exit code 0 on PASS, 2 on FAIL, 1 when
 *    the server could not start or crashed.
 */
import { freePort } from './free-port.js';
import autocannon from 'autocannon';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { PACKAGE_ROOT } from '../src/common/paths.js';
import { BIDDER_NODE_FLAGS } from '../src/common/node-flags.js';
import { DEFAULT_MIX_PARAMS, generateRequestMix } from './request-mix.js';
import { BID_PATH, HOST, segbidServeArgs } from './servers.js';

const RSS_GROWTH_LIMIT = 0.05;
const WARMUP_SHARE = 0.2;

interface SoakOptions {
  /** Seconds of the paced run. */
  durationS: number;
  connections: number;
  maxSeconds: number;
  loadShare: number;
  sampleSeconds: number;
  requests: number;
  seed: number;
}

interface Sample {
  /** Seconds since the start of the paced run. */
  t: number;
  rssMb: number | null;
  heapUsedMb: number | null;
  lagP50Ms: number | null;
  lagP99Ms: number | null;
  reqPerSec: number;
  /** Response times of the interval as measured by the client (no coordinated-omission correction), ms. */
  latP50Ms: number | null;
  latP99Ms: number | null;
  latMaxMs: number | null;
  ok2xx: number;
  non2xx: number;
  errors: number;
}

/* ---------- the server child ---------- */

let child: ChildProcess | null = null;
const eventLogDir = mkdtempSync(join(tmpdir(), 'segbid-soak-events-'));
process.on('exit', () => {
  if (child !== null && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  rmSync(eventLogDir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\nsoak: ${signal}, stopping the server\n`);
    process.exit(130);
  });
}


const tailLines: string[] = [];
function keepTail(name: string) {
  let partial = '';
  return (chunk: Buffer) => {
    const parts = (partial + chunk.toString('utf8')).split('\n');
    partial = parts.pop() ?? '';
    for (const l of parts) {
      tailLines.push(`[${name}] ${l}`);
      if (tailLines.length > 30) tailLines.shift();
    }
  };
}

async function pollReady(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child === null || child.exitCode !== null || child.signalCode !== null) throw new Error(`server exited before ${url} answered\n${tailLines.join('\n')}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} not ready after ${timeoutMs} ms\n${tailLines.join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function startServer(): Promise<{ pid: number; bidUrl: string; adminUrl: string; command: string }> {
  const port = await freePort(HOST);
  const adminPort = await freePort(HOST);
  // As npm start and the Docker image run it (src/common/node-flags.ts).
  const args = [...BIDDER_NODE_FLAGS, ...segbidServeArgs({ port, adminPort, workers: 1, eventLog: eventLogDir })];
  // No ledger state files in the working tree: budget state stays in memory for the soak.
  child = spawn(process.execPath, args, { cwd: PACKAGE_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SEGBID_STATE_DIR: 'none' } });
  // always drain both pipes: a child blocked on a full pipe would look like a slow or leaking server
  child.stdout!.on('data', keepTail('out'));
  child.stderr!.on('data', keepTail('err'));
  const adminUrl = `http://${HOST}:${adminPort}`;
  await pollReady(`${adminUrl}/healthz`, 60_000);
  await pollReady(`${adminUrl}/readyz`, 10_000);
  return { pid: child.pid!, bidUrl: `http://${HOST}:${port}${BID_PATH}`, adminUrl, command: `node ${args.join(' ')}` };
}

async function stopServer(): Promise<void> {
  const c = child;
  if (c === null || c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGTERM');
  const timer = setTimeout(() => c.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

function alive(): boolean {
  return child !== null && child.exitCode === null && child.signalCode === null;
}

/* ---------- measurements ---------- */

/** VmRSS of a process in MB (Linux /proc), null elsewhere or when it is gone. */
function rssMb(pid: number): number | null {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+)\s+kB/m);
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** Unlabelled gauges from /metrics, by name; a name that is absent maps to null. */
async function scrapeGauges(adminUrl: string, names: string[]): Promise<Record<string, number | null>> {
  const out: Record<string, number | null> = Object.fromEntries(names.map((n) => [n, null]));
  try {
    const text = await (await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
    for (const line of text.split('\n')) {
      const sp = line.indexOf(' ');
      if (sp < 0 || line.startsWith('#')) continue;
      const name = line.slice(0, sp);
      if (name in out) out[name] = Number(line.slice(sp + 1));
    }
  } catch {
    // a failed scrape leaves the values null (and shows in the table)
  }
  return out;
}

function requestsFor(bodies: string[]): autocannon.Request[] {
  return bodies.map((body) => ({ method: 'POST', path: BID_PATH, headers: { 'content-type': 'application/json' }, body }));
}

/** Spreads the starting points of the connections over the mix (autocannon starts each at request 0). */
function spreadClients(requests: autocannon.Request[], connections: number): (client: autocannon.Client) => void {
  let clientIndex = 0;
  return (client) => {
    const offset = Math.floor((clientIndex++ * requests.length) / connections) % requests.length;
    client.setRequests(requests.slice(offset).concat(requests.slice(0, offset)));
  };
}

function runCannon(options: autocannon.Options & { overallRate?: number }, onInstance?: (i: autocannon.Instance) => void): Promise<autocannon.Result> {
  return new Promise((resolveRun, reject) => {
    const instance = autocannon(options, (err, result) => (err ? reject(err) : resolveRun(result)));
    onInstance?.(instance);
  });
}

function latencyOf(times: number[]): { latP50Ms: number | null; latP99Ms: number | null; latMaxMs: number | null } {
  if (times.length === 0) return { latP50Ms: null, latP99Ms: null, latMaxMs: null };
  const sorted = Float64Array.from(times).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { latP50Ms: at(0.5), latP99Ms: at(0.99), latMaxMs: sorted[sorted.length - 1] };
}

function fmt(v: number | null, digits = 1): string {
  return v === null || !Number.isFinite(v) ? '-' : v.toFixed(digits);
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i])).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/* ---------- main ---------- */

function parseOptions(): SoakOptions {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '600' },
      minutes: { type: 'string' },
      connections: { type: 'string', default: '64' },
      'max-seconds': { type: 'string', default: '10' },
      'load-share': { type: 'string', default: '0.7' },
      'sample-seconds': { type: 'string', default: '10' },
      requests: { type: 'string', default: '500' },
      seed: { type: 'string', default: String(DEFAULT_MIX_PARAMS.seed) },
    },
  });
  const o: SoakOptions = {
    durationS: values.minutes !== undefined ? Number(values.minutes) * 60 : Number(values.duration),
    connections: Number(values.connections),
    maxSeconds: Number(values['max-seconds']),
    loadShare: Number(values['load-share']),
    sampleSeconds: Number(values['sample-seconds']),
    requests: Number(values.requests),
    seed: Number(values.seed),
  };
  for (const [k, v] of Object.entries(o)) if (!(Number.isFinite(v) && v > 0)) throw new Error(`--${k === 'durationS' ? 'duration' : k} must be a positive number`);
  if (o.loadShare > 1) throw new Error('--load-share must be in (0, 1]');
  return o;
}

async function main(): Promise<number> {
  const opts = parseOptions();
  const bodies = generateRequestMix({ ...DEFAULT_MIX_PARAMS, count: opts.requests, seed: opts.seed });
  const requests = requestsFor(bodies);
  const server = await startServer();
  process.stdout.write(`soak: segbid pid ${server.pid} at ${server.bidUrl}\n`);
  try {
    // 1. the max, closed loop (a short warm-up first so the JIT is not measured)
    await runCannon({ url: server.bidUrl, connections: opts.connections, duration: 2, method: 'POST', requests, setupClient: spreadClients(requests, opts.connections) });
    const max = await runCannon({
      url: server.bidUrl,
      connections: opts.connections,
      duration: opts.maxSeconds,
      timeout: 10,
      method: 'POST',
      requests,
      setupClient: spreadClients(requests, opts.connections),
    });
    const maxRps = max.requests.average;
    const rate = Math.max(1, Math.round(maxRps * opts.loadShare));
    process.stdout.write(
      `soak: max ${maxRps.toFixed(0)} req/s (closed loop, ${opts.connections} connections, ${opts.maxSeconds} s; p99 ${max.latency.p99} ms, non-2xx ${max.non2xx}, errors ${max.errors})\n` +
        `soak: pacing at ${rate} req/s (${(opts.loadShare * 100).toFixed(0)}%) for ${opts.durationS} s, a sample every ${opts.sampleSeconds} s\n`,
    );

    // 2. the paced run, sampled
    const durationS = Math.round(opts.durationS);
    const samples: Sample[] = [];
    let ok2xx = 0;
    let non2xx = 0;
    let errors = 0;
    let times: number[] = [];
    const allTimes: number[] = [];
    const statusCounts: Record<string, number> = {};
    const started = performance.now();
    let lastT = 0;
    let crashed = false;
    const takeSample = async () => {
      const t = (performance.now() - started) / 1000;
      const g = await scrapeGauges(server.adminUrl, ['nodejs_eventloop_lag_p50_seconds', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_heap_size_used_bytes']);
      const s: Sample = {
        t: Math.round(t),
        rssMb: rssMb(server.pid),
        heapUsedMb: g.nodejs_heap_size_used_bytes === null ? null : g.nodejs_heap_size_used_bytes / 1048576,
        lagP50Ms: g.nodejs_eventloop_lag_p50_seconds === null ? null : g.nodejs_eventloop_lag_p50_seconds * 1000,
        lagP99Ms: g.nodejs_eventloop_lag_p99_seconds === null ? null : g.nodejs_eventloop_lag_p99_seconds * 1000,
        reqPerSec: (ok2xx + non2xx) / Math.max(0.001, t - lastT),
        ...latencyOf(times),
        ok2xx,
        non2xx,
        errors,
      };
      lastT = t;
      times = [];
      ok2xx = 0;
      non2xx = 0;
      errors = 0;
      samples.push(s);
      if (!alive()) crashed = true;
      process.stdout.write(
        `  t=${String(s.t).padStart(4)} s  rss ${fmt(s.rssMb)} MB  heap ${fmt(s.heapUsedMb)} MB  lag p99 ${fmt(s.lagP99Ms, 2)} ms  ${s.reqPerSec.toFixed(0)} req/s  latency p99 ${fmt(s.latP99Ms, 2)} ms  2xx ${s.ok2xx}  non-2xx ${s.non2xx}  errors ${s.errors}\n`,
      );
    };
    let instance: autocannon.Instance | null = null;
    const sampler = setInterval(() => {
      void takeSample();
      if (!alive() && instance !== null) instance.stop();
    }, opts.sampleSeconds * 1000);
    let paced: autocannon.Result;
    try {
      paced = await runCannon(
        {
          url: server.bidUrl,
          connections: opts.connections,
          duration: durationS,
          timeout: 10,
          method: 'POST',
          requests,
          overallRate: rate,
          setupClient: spreadClients(requests, opts.connections),
        },
        (i) => {
          instance = i;
          i.on('response', (_client: unknown, status: number, _bytes: number, responseTimeMs: number) => {
            times.push(responseTimeMs);
            allTimes.push(responseTimeMs);
            if (status >= 200 && status < 300) ok2xx++;
            else non2xx++;
            statusCounts[status] = (statusCounts[status] ?? 0) + 1;
          });
          i.on('reqError', () => errors++);
        },
      );
    } finally {
      clearInterval(sampler);
    }
    // the tail of the run since the last sample, unless it is only a moment
    if ((performance.now() - started) / 1000 - lastT > opts.sampleSeconds / 2) await takeSample();
    const healthy = alive() && (await fetch(`${server.adminUrl}/healthz`, { signal: AbortSignal.timeout(2000) }).then((r) => r.status === 200, () => false));

    // 3. verdict
    const warmIndex = Math.min(samples.length - 1, Math.max(0, Math.ceil(samples.length * WARMUP_SHARE) - 1));
    const warm = samples[warmIndex];
    const last = samples[samples.length - 1];
    const growth = warm?.rssMb && last?.rssMb ? (last.rssMb - warm.rssMb) / warm.rssMb : null;
    const totalErrors = paced.errors + paced.timeouts;
    const totalNon2xx = paced.non2xx;
    const overall = latencyOf(allTimes);
    const lagP99Max = Math.max(...samples.map((s) => s.lagP99Ms ?? 0));
    const checks = {
      noErrors: totalErrors === 0,
      noNon2xx: totalNon2xx === 0,
      serverAlive: healthy && !crashed,
      rssGrowthUnder5pct: growth !== null && growth < RSS_GROWTH_LIMIT,
    };
    const pass = Object.values(checks).every(Boolean);

    process.stdout.write(
      '\n' +
        table(
          ['t (s)', 'RSS MB', 'heap MB', 'lag p50 ms', 'lag p99 ms', 'req/s', 'lat p50 ms', 'lat p99 ms', 'lat max ms', '2xx', 'non-2xx', 'errors'],
          samples.map((s) => [
            String(s.t),
            fmt(s.rssMb),
            fmt(s.heapUsedMb),
            fmt(s.lagP50Ms, 2),
            fmt(s.lagP99Ms, 2),
            s.reqPerSec.toFixed(0),
            fmt(s.latP50Ms, 2),
            fmt(s.latP99Ms, 2),
            fmt(s.latMaxMs, 1),
            String(s.ok2xx),
            String(s.non2xx),
            String(s.errors),
          ]),
        ) +
        '\n\n' +
        `max (closed loop)   ${maxRps.toFixed(0)} req/s\n` +
        `paced target        ${rate} req/s; achieved ${paced.requests.average.toFixed(0)} req/s mean over ${paced.duration.toFixed(0)} s, ${paced.requests.total} requests\n` +
        `latency (measured)  p50 ${fmt(overall.latP50Ms, 2)} ms  p99 ${fmt(overall.latP99Ms, 2)} ms  max ${fmt(overall.latMaxMs, 1)} ms (each response as the client timed it)\n` +
        `latency (autocannon) p50 ${paced.latency.p50} ms  p99 ${paced.latency.p99} ms  max ${paced.latency.max} ms (corrected for coordinated omission against its bursty per-second pacing: pessimistic)\n` +
        `status codes        ${Object.entries(statusCounts).map(([k, v]) => `${k}: ${v}`).join(', ')}\n` +
        `errors / timeouts   ${paced.errors} / ${paced.timeouts}; non-2xx ${totalNon2xx}\n` +
        `event loop lag p99  max ${lagP99Max.toFixed(2)} ms over the samples\n` +
        `RSS                 ${fmt(warm?.rssMb ?? null)} MB at t=${warm?.t} s (${WARMUP_SHARE * 100}% of the run) -> ${fmt(last?.rssMb ?? null)} MB at t=${last?.t} s: ${growth === null ? '-' : (growth * 100).toFixed(2) + '%'} (limit ${RSS_GROWTH_LIMIT * 100}%)\n` +
        `verdict             ${pass ? 'PASS' : 'FAIL'} (${Object.entries(checks).map(([k, v]) => `${k} ${v ? 'ok' : 'FAILED'}`).join(', ')})\n`,
    );

    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const dir = resolve(PACKAGE_ROOT, 'bench/results');
    mkdirSync(dir, { recursive: true });
    const file = resolve(dir, `soak-${stamp}.json`);
    writeFileSync(
      file,
      JSON.stringify(
        {
          kind: 'soak',
          date: new Date().toISOString(),
          node: process.version,
          command: server.command,
          options: opts,
          max: { reqPerSec: maxRps, p99Ms: max.latency.p99, non2xx: max.non2xx, errors: max.errors, timeouts: max.timeouts },
          paced: {
            targetReqPerSec: rate,
            achievedReqPerSec: paced.requests.average,
            durationS: paced.duration,
            requests: paced.requests.total,
            latencyMs: { p50: overall.latP50Ms, p99: overall.latP99Ms, max: overall.latMaxMs },
            autocannonLatencyMs: { p50: paced.latency.p50, p99: paced.latency.p99, max: paced.latency.max },
            statusCounts,
            errors: paced.errors,
            timeouts: paced.timeouts,
            non2xx: totalNon2xx,
          },
          samples,
          rss: { warmSample: warm ?? null, lastSample: last ?? null, growth },
          eventLoopLagP99MaxMs: lagP99Max,
          checks,
          verdict: pass ? 'PASS' : 'FAIL',
        },
        null,
        2,
      ) + '\n',
    );
    process.stdout.write(`written ${file}\n`);
    if (!checks.serverAlive) return 1;
    return pass ? 0 : 2;
  } finally {
    await stopServer();
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`soak: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
