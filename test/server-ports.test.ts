/**
 * A bidder never shares its ports with another process: uWebSockets.js listens with SO_REUSEPORT unless told
 * otherwise, and a second `segbid serve` on a port already served (an old process left after a deploy) used to
 * start and split the traffic with it, old and new config mixed. Now it exits 2 with LISTEN_FAILED, single
 * thread or cluster, bid port or operations port; the workers of one cluster still share their bid port.
 * Real processes (dist/).
 */
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, spawnSegbid, type SegbidProcess } from './helpers/segbid-process.js';

let first: SegbidProcess;
afterAll(async () => {
  if (first?.alive()) {
    first.child.kill('SIGTERM');
    await first.exited;
  }
});

function serveOn(port: number, adminPort: number, workers: number): { status: number | null; output: string } {
  const r = spawnSync(process.execPath, [CLI, 'serve', '--host', '127.0.0.1', '--port', String(port), '--admin-port', String(adminPort), '--workers', String(workers)], {
    env: { ...process.env, SEGBID_STATE_DIR: 'none', SEGBID_EVENT_LOG_DIR: 'none', LOG_LEVEL: 'warn' },
    timeout: 60_000,
    encoding: 'utf8',
  });
  return { status: r.status, output: r.stdout + r.stderr };
}

describe('a port already served', () => {
  it('is refused (exit 2, LISTEN_FAILED), whichever port and however many workers', async () => {
    first = await spawnSegbid({ args: ['--workers', '2', '--event-log', 'none'] });
    for (const workers of [1, 2]) {
      const bid = serveOn(first.bidPort, 0, workers);
      expect(bid.status, bid.output).toBe(2);
      expect(bid.output).toContain(`LISTEN_FAILED: cannot listen on 127.0.0.1:${first.bidPort}`);
      const ops = serveOn(0, first.adminPort, workers);
      expect(ops.status, ops.output).toBe(2);
      expect(ops.output).toContain(`LISTEN_FAILED: cannot listen on 127.0.0.1:${first.adminPort}`);
    }
    // The first one still serves, with both its workers on the one bid port.
    const health = await (await fetch(`http://127.0.0.1:${first.adminPort}/healthz`)).json();
    expect(health.workers).toBe(2);
  }, 120_000);
});
