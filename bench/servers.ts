/**
 * The servers a bench measures, each in its own child process so the load generator never shares their event
 * loop: the bare uWebSockets.js baseline, segbid (`serve --workers N`) and the node:http peer. Plus the readings
 * taken around a run: CPU of a process and of the whole machine (/proc, Linux; null elsewhere) and segbid's
 * outcome counters from /metrics.
 *
 * Every child is killed when this process exits, whatever ends it (exit handler); stopTarget() asks politely first.
 * A child that cannot start rejects with the tail of its output.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PACKAGE_ROOT } from '../src/common/paths.js';
import { BIDDER_NODE_FLAGS, withHugePages } from '../src/common/node-flags.js';
import { freePort } from './free-port.js';

export const HOST = '127.0.0.1';
export const BID_PATH = '/openrtb2/bid';

export type TargetKind = 'baseline' | 'segbid' | 'node-http';

export interface Target {
  /** Display name: baseline, segbid-1w, segbid-2w, node-http; calibration copies of the baseline: baseline+15us. */
  name: string;
  kind: TargetKind;
  /** Worker threads (segbid), else 1. */
  workers: number;
  child: ChildProcess;
  bidUrl: string;
  /** segbid's operations port; null for the others. */
  adminUrl: string | null;
}

const children = new Set<ChildProcess>();

/** Last resort: never leave a server behind, whatever path ends this process. */
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

export interface Spawned {
  child: ChildProcess;
  /** Resolves with the first stdout line matching `pattern`; rejects if the child exits first or on timeout. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** The last lines of stdout + stderr, for error messages. */
  tail(): string;
}

/** CPU list the servers are pinned to (taskset -c), or null. */
let serverCpus: string | null = null;
export function pinServers(cpus: string | null): void {
  serverCpus = cpus;
}

/**
 * Every server runs with the production bidder's node flags and huge-page tunable (src/common/node-flags.ts), the
 * baseline too.
 */
export function spawnNode(name: string, args: string[]): Spawned {
  // taskset execs node in place, so the child pid is node's own (the /proc CPU reading relies on it).
  const options = { cwd: PACKAGE_ROOT, stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'], env: withHugePages(process.env) };
  const child =
    serverCpus !== null
      ? spawn('taskset', ['-c', serverCpus, process.execPath, ...BIDDER_NODE_FLAGS, ...args], options)
      : spawn(process.execPath, [...BIDDER_NODE_FLAGS, ...args], options);
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

/**
 * The node arguments (after the node flags) of a bench's `segbid serve` on loopback: the compiled CLI, the ports,
 * the workers, the event log (`none` or a folder), when given a state directory (else serve's own default) and a
 * config (else the embedded demo).
 */
export function segbidServeArgs(o: { configPath?: string; port: number; adminPort: number; workers: number; eventLog: string; stateDir?: string }): string[] {
  return [
    resolve(PACKAGE_ROOT, 'dist/src/cli/main.js'),
    'serve',
    ...(o.configPath !== undefined ? ['--config', o.configPath] : []),
    '--host',
    HOST,
    '--port',
    String(o.port),
    '--admin-port',
    String(o.adminPort),
    '--workers',
    String(o.workers),
    '--event-log',
    o.eventLog,
    ...(o.stateDir !== undefined ? ['--state-dir', o.stateDir] : []),
  ];
}

/**
 * segbid on a config, `workers` threads (1 = the single-thread server), no event log (the bench sends no notices),
 * and budget state as in production (the ledger journal, a checkpoint every 15 s) in a fresh temporary directory:
 * a run never starts from the spend and learning of an earlier one.
 */
export async function startSegbid(configPath: string, workers: number): Promise<Target> {
  const port = await freePort(HOST);
  const adminPort = await freePort(HOST);
  const name = `segbid-${workers}w`;
  const stateDir = mkdtempSync(join(tmpdir(), 'segbid-bench-state-'));
  const s = spawnNode(name, segbidServeArgs({ configPath, port, adminPort, workers, eventLog: 'none', stateDir }));
  s.child.once('exit', () => rmSync(stateDir, { recursive: true, force: true }));
  const adminUrl = `http://${HOST}:${adminPort}`;
  await pollReady(`${adminUrl}/healthz`, s.child, 60_000, s.tail);
  await pollReady(`${adminUrl}/readyz`, s.child, 20_000, s.tail);
  return { name, kind: 'segbid', workers, child: s.child, bidUrl: `http://${HOST}:${port}${BID_PATH}`, adminUrl };
}

/** The bare baseline; with `workUs` > 0 a calibration copy (`baseline+<N>us`) that spins N µs per request. */
export async function startBaseline(workUs = 0): Promise<Target> {
  const port = await freePort(HOST);
  const name = workUs > 0 ? `baseline+${workUs}us` : 'baseline';
  const s = spawnNode(name, [resolve(PACKAGE_ROOT, 'dist/src/server/bare-baseline-server.js'), '--host', HOST, '--port', String(port), '--work-us', String(workUs)]);
  const m = await s.waitForLine(/bare-baseline listening on http:\/\/[^:]+:(\d+)/, 15_000);
  return { name, kind: 'baseline', workers: 1, child: s.child, bidUrl: `http://${HOST}:${m[1]}${BID_PATH}`, adminUrl: null };
}

export async function startNodeHttp(configPath: string): Promise<Target> {
  const s = spawnNode('node-http', [resolve(PACKAGE_ROOT, 'dist/bench/node-http-server.js'), '--config', configPath, '--host', HOST, '--port', '0']);
  const m = await s.waitForLine(/node-http listening on http:\/\/[^:]+:(\d+)/, 60_000);
  return { name: 'node-http', kind: 'node-http', workers: 1, child: s.child, bidUrl: `http://${HOST}:${m[1]}${BID_PATH}`, adminUrl: null };
}

export async function stopTarget(t: Target): Promise<void> {
  const child = t.child;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

/** utime + stime of a process in seconds, from /proc (Linux; threads included); null elsewhere. */
export function processCpuSeconds(pid: number | undefined): number | null {
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
/** Cumulative time the hypervisor gave this VM's CPUs to others (steal, /proc/stat), in CPU-seconds; null off Linux. */
export function stealCpuSeconds(): number | null {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/);
    return fields.length > 8 ? Number(fields[8]) / 100 : null;
  } catch {
    return null;
  }
}

export function systemCpuSeconds(): number | null {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/);
    return (Number(fields[1]) + Number(fields[2]) + Number(fields[3])) / 100;
  } catch {
    return null;
  }
}

/** segbid_bid_requests_total by "outcome/reason". */
export async function scrapeOutcomes(adminUrl: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const out: Record<string, number> = {};
  const re = /^segbid_bid_requests_total\{([^}]*)\}\s+(\S+)$/gm;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    out[`${labels.outcome}/${labels.reason}`] = Number(m[2]);
  }
  return out;
}

export function diffCounts(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

/**
 * CPU readings around a run: call it before, then call the function it returns after. Shares of one core over the
 * wall time; `other` is every other process (/proc/stat minus server and generator; loopback softirq not counted).
 */
export function cpuMeter(serverPid: number | undefined): () => { server: number | null; generator: number; other: number | null; steal: number | null; wallS: number } {
  const s0 = processCpuSeconds(serverPid);
  const sys0 = systemCpuSeconds();
  const st0 = stealCpuSeconds();
  const g0 = process.cpuUsage();
  const t0 = performance.now();
  return () => {
    const wallS = (performance.now() - t0) / 1000;
    const g = process.cpuUsage(g0);
    const s1 = processCpuSeconds(serverPid);
    const sys1 = systemCpuSeconds();
    const server = s0 !== null && s1 !== null ? (s1 - s0) / wallS : null;
    const generator = (g.user + g.system) / 1e6 / wallS;
    const other = server !== null && sys0 !== null && sys1 !== null ? Math.max(0, (sys1 - sys0) / wallS - server - generator) : null;
    const st1 = stealCpuSeconds();
    const steal = st0 !== null && st1 !== null ? (st1 - st0) / wallS : null;
    return { server, generator, other, steal, wallS };
  };
}
