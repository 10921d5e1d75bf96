/**
 * A real `segbid serve` process for the reliability tests (dist/ must be built): spawned with `--port 0
 * --admin-port 0` (the ports are read from what it prints), optionally through a wrapper command (e.g.
 * `unshare` to give it a private tmpfs), stopped with a signal and timed. The output tail is kept for failure
 * messages; both pipes are always drained.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PACKAGE_ROOT } from '../../src/common/paths.js';
import { ensureDemoStore } from '../../src/fixtures/ensure-demo.js';

/** SEGBID_TEST_CLI: run another build (e.g. a deliberately broken copy, to see a test fail). */
export const CLI = process.env.SEGBID_TEST_CLI ?? resolve(PACKAGE_ROOT, 'dist/src/cli/main.js');
export const TEST_EVENT_KEYS = '7:' + '5e'.repeat(32);

export interface SegbidProcess {
  child: ChildProcess;
  pid: number;
  bidPort: number;
  adminPort: number;
  /** Everything printed so far (stdout and stderr interleaved by arrival). */
  output(): string;
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  /** SIGKILL if still running (for afterAll). */
  kill(): void;
}

export interface SpawnOptions {
  /** Arguments after `serve` (ports and host are added). */
  args: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** argv of a wrapper: the node command line is appended to it. */
  wrapper?: string[];
  startTimeoutMs?: number;
}

export async function spawnSegbid(options: SpawnOptions): Promise<SegbidProcess> {
  ensureDemoStore();
  const serve = [process.execPath, CLI, 'serve', '--host', '127.0.0.1', '--port', '0', '--admin-port', '0', ...options.args];
  const argv = options.wrapper ? [...options.wrapper, ...serve] : serve;
  const child = spawn(argv[0], argv.slice(1), {
    cwd: options.cwd ?? PACKAGE_ROOT,
    env: { ...process.env, SEGBID_EVENT_KEYS: TEST_EVENT_KEYS, SEGBID_STATE_DIR: 'none', LOG_LEVEL: 'info', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (chunk: Buffer) => {
    out += chunk.toString('utf8');
    if (out.length > 200_000) out = out.slice(-100_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  const alive = () => child.exitCode === null && child.signalCode === null;
  const deadline = Date.now() + (options.startTimeoutMs ?? 90_000);
  let bidPort = 0;
  let adminPort = 0;
  while (bidPort === 0 || adminPort === 0) {
    const b = /segbid bid port:\s+http:\/\/[^:]+:(\d+)\//.exec(out);
    const a = /segbid operations port: http:\/\/[^:]+:(\d+)\//.exec(out);
    if (b && a) {
      bidPort = Number(b[1]);
      adminPort = Number(a[1]);
      break;
    }
    if (!alive()) throw new Error(`segbid exited before listening:\n${out.slice(-4000)}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`segbid did not listen in time:\n${out.slice(-4000)}`);
    }
    await sleep(50);
  }
  return {
    child,
    pid: child.pid!,
    bidPort,
    adminPort,
    output: () => out,
    exited,
    alive,
    kill: () => {
      if (alive()) child.kill('SIGKILL');
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `fn` every `everyMs` until it returns a non-undefined value or `timeoutMs` passes (then throws `what`). */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number, everyMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

export interface Readyz {
  status: number;
  body: {
    ready: boolean;
    draining: boolean;
    reloading: boolean;
    lastError: string | null;
    checks: Record<string, { ok: boolean; lastError?: string | null; [k: string]: unknown }>;
    workers?: { alive: number; wanted: number; restarts: number };
  };
}

export async function readyz(adminPort: number): Promise<Readyz> {
  const r = await fetch(`http://127.0.0.1:${adminPort}/readyz`, { signal: AbortSignal.timeout(2000) });
  return { status: r.status, body: await r.json() };
}

/** A corpus request the demo bids on (../shared/corpus/openrtb/valid/pbs-simple.json). */
const simpleRequest = JSON.parse(readFileSync(resolve(PACKAGE_ROOT, '../shared/corpus/openrtb/valid/pbs-simple.json'), 'utf8')) as Record<string, unknown>;

/** That request with a unique id (`<prefix>-<i>-<now>`), so every bid has its own bid id. */
export function uniqueBidBody(prefix: string, i: number): string {
  return JSON.stringify({ ...simpleRequest, id: `${prefix}-${i}-${Date.now()}` });
}

/**
 * What a test file spawns and creates, cleaned up by `cleanup()` (call it from afterAll): processes killed,
 * temporary directories removed.
 */
export class TestLeftovers {
  readonly processes: SegbidProcess[] = [];
  private readonly dirs: string[] = [];

  tempDir(prefix: string): string {
    const d = mkdtempSync(join(tmpdir(), prefix));
    this.dirs.push(d);
    return d;
  }

  cleanup(): void {
    for (const p of this.processes) p.kill();
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
  }
}
