/**
 * Faults of real `segbid serve` processes (dist/ must be built): each keeps the bidder answering and shows in
 * /metrics and /readyz.
 *
 * - Disk full for the event log: the log lives on a 1 MiB tmpfs private to the bidder (`unshare --user --mount`,
 *   no root needed where user namespaces are allowed); the test fills that tmpfs through /proc/<pid>/root, so
 *   the bidder's own writes fail with ENOSPC (no fs mock). Skipped, with the reason, where unshare is refused.
 * - A worker crash: `serve --workers 2` with SEGBID_FAULT_WORKER_CRASH (worker 0 throws an uncaught error from
 *   a timer once a trigger file exists; documented in the README).
 * - An invalid config and a corrupt segment store sent by SIGHUP to a running process.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, statfsSync, statSync, unlinkSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { DEMO_DIR } from '../src/common/paths.js';
import { listSegments, replayEventLog } from '../src/events/event-log.js';
import type { EventRecord } from '../src/events/types.js';
import { metricValue, raw } from './helpers/bidder.js';
import { CLI, TestLeftovers, readyz, sleep, spawnSegbid, uniqueBidBody, waitFor } from './helpers/segbid-process.js';

const TMPFS_MAGIC = 0x01021994;

const left = new TestLeftovers();
afterAll(() => left.cleanup());
const tempDir = (prefix: string) => left.tempDir(prefix);
/** A bid request that the demo bids on (a unique id, so every bid has its own bid id). */
const bidBody = (i: number) => uniqueBidBody('rel', i);

/** The win notice of a bid answer, as a local path (macros substituted as an exchange would). */
function winPath(bidResponse: string): string {
  const nurl: string = JSON.parse(bidResponse).seatbid[0].bid[0].nurl;
  const u = new URL(nurl.replaceAll('${AUCTION_PRICE}', '0.50').replace(/\$\{[A-Z_]+\}/g, ''));
  return u.pathname + u.search;
}

/** Sends n bid requests; every answer must be a bid or a no-bid. Returns the win paths of the bids. */
async function bidMany(port: number, from: number, n: number): Promise<string[]> {
  const wins: string[] = [];
  for (let i = from; i < from + n; i++) {
    const r = await raw(port, { body: bidBody(i) });
    expect([200, 204]).toContain(r.status);
    if (r.status === 200) wins.push(winPath(r.text));
  }
  return wins;
}

const unshareWorks = spawnSync('unshare', ['--user', '--map-root-user', '--mount', 'true']).status === 0;

describe('disk full for the event log', () => {
  it.skipIf(!unshareWorks)(
    'ENOSPC: bids still answered, notices still acknowledged and kept, log_failed counted, /readyz 503; the disk back: records written, ready again, nothing lost',
    async () => {
      const mnt = tempDir('segbid-diskfull-');
      const proc = await spawnSegbid({
        // A 1 MiB tmpfs over `mnt`, visible only to the bidder; the event log is inside it.
        wrapper: ['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c', 'mount -t tmpfs -o size=1m tmpfs "$0" && exec "$@"', mnt],
        args: ['--workers', '1', '--event-log', join(mnt, 'events'), '--event-log-fsync', 'interval:100'],
        cwd: mnt,
      });
      left.processes.push(proc);
      const inside = `/proc/${proc.pid}/root${mnt}`;
      // Safety before filling anything: this must be the bidder's private tmpfs, not the host's /tmp.
      const fs = statfsSync(inside);
      expect(fs.type).toBe(TMPFS_MAGIC);
      expect(fs.blocks * fs.bsize).toBe(1024 * 1024);
      expect(statSync(inside).dev).not.toBe(statSync(mnt).dev);
      expect((await readyz(proc.adminPort)).status).toBe(200);

      // Healthy: notices are logged.
      const before = await bidMany(proc.bidPort, 0, 20);
      expect(before.length).toBeGreaterThan(5);
      for (const p of before) expect((await raw(proc.bidPort, { method: 'GET', path: p })).status).toBe(204);

      // Fill the tmpfs from outside (bounded: at most 2 MiB, it holds 1 MiB).
      const filler = join(inside, 'filler');
      const fd = openSync(filler, 'w');
      const chunk = Buffer.alloc(64 * 1024, 1);
      let filled = 0;
      try {
        while (filled < 2 * 1024 * 1024) filled += writeSync(fd, chunk);
      } catch (e) {
        expect((e as NodeJS.ErrnoException).code).toBe('ENOSPC');
      } finally {
        closeSync(fd);
      }
      expect(filled).toBeLessThan(2 * 1024 * 1024);

      // Traffic goes on until the log reports itself failed (its segment's last page fills first).
      const during: string[] = [];
      let n = 100;
      const failed = await waitFor(
        'the event log to fail',
        async () => {
          const wins = await bidMany(proc.bidPort, n, 10);
          n += 10;
          for (const p of wins) expect((await raw(proc.bidPort, { method: 'GET', path: p })).status).toBe(204);
          during.push(...wins);
          const r = await readyz(proc.adminPort);
          return r.status === 503 ? r : undefined;
        },
        30_000,
        0,
      );
      expect(failed.body.ready).toBe(false);
      expect(failed.body.checks.eventLog.ok).toBe(false);
      expect(failed.body.checks.eventLog.lastError).toMatch(/ENOSPC|no space/i);
      expect(await metricValue(proc.adminPort, 'segbid_event_log_ok', {})).toBe(0);
      expect(await metricValue(proc.adminPort, 'segbid_event_log_write_errors_total', {})).toBeGreaterThan(0);

      // While failing (for a second at least: ten retries of the 100 ms timer): bids and no-bids answered,
      // notices acknowledged (204) and counted as log_failed.
      await sleep(1000);
      const failing = await bidMany(proc.bidPort, 10_000, 20);
      for (const p of failing) expect((await raw(proc.bidPort, { method: 'GET', path: p })).status).toBe(204);
      during.push(...failing);
      expect(await metricValue(proc.adminPort, 'segbid_event_notices_total', { kind: 'win', result: 'log_failed' })).toBeGreaterThan(0);
      expect((await fetch(`http://127.0.0.1:${proc.adminPort}/healthz`)).status).toBe(200);
      expect((await readyz(proc.adminPort)).status).toBe(503);

      // The disk comes back: the records kept in memory go to a fresh segment, readiness returns.
      unlinkSync(filler);
      const back = await waitFor('readiness after the disk is freed', async () => {
        const r = await readyz(proc.adminPort);
        return r.status === 200 ? r : undefined;
      }, 10_000);
      expect(back.body.checks.eventLog.ok).toBe(true);
      expect(back.body.checks.eventLog.droppedRecords).toBe(0);
      expect(await metricValue(proc.adminPort, 'segbid_event_log_ok', {})).toBe(1);

      // Nothing acknowledged was lost: every win notice is in the log, read back while the process runs.
      await sleep(300); // one more interval: the last notices are written
      const logged = new Set<string>();
      const stats = replayEventLog(join(inside, 'events'), (r: EventRecord) => {
        if (r.k === 'win') logged.add(r.b);
      });
      expect(stats.corruptSegments).toBe(0);
      expect(logged.size).toBe(before.length + during.length);
      // The retries during the outage left no pile of empty segments (a segment whose header cannot be written
      // is removed): the first one, the one cut by ENOSPC, the fresh one.
      expect(listSegments(join(inside, 'events')).length).toBeLessThanOrEqual(3);

      // Full again at shutdown: what cannot be written is counted and said, and the process still exits 0.
      const fd2 = openSync(filler, 'w');
      try {
        for (let i = 0; i < 32; i++) writeSync(fd2, chunk);
      } catch (e) {
        expect((e as NodeJS.ErrnoException).code).toBe('ENOSPC');
      } finally {
        closeSync(fd2);
      }
      await waitFor(
        'the event log to fail again',
        async () => {
          for (const p of await bidMany(proc.bidPort, n, 10)) expect((await raw(proc.bidPort, { method: 'GET', path: p })).status).toBe(204);
          n += 10;
          return (await readyz(proc.adminPort)).status === 503 ? true : undefined;
        },
        30_000,
        0,
      );
      for (const p of await bidMany(proc.bidPort, 20_000, 5)) expect((await raw(proc.bidPort, { method: 'GET', path: p })).status).toBe(204);
      proc.child.kill('SIGTERM');
      const exit = await proc.exited;
      expect(exit.code, proc.output().slice(-2000)).toBe(0);
      expect(proc.output()).toMatch(/event log closed while failing: \d+ records could not be written and are lost/);
    },
    120_000,
  );
});

describe('a worker crash (serve --workers 2)', () => {
  it('the other worker keeps answering, /readyz 503 names the missing worker, the restart is counted, then ready again', async () => {
    const dir = tempDir('segbid-crash-');
    const trigger = join(dir, 'crash-now');
    const proc = await spawnSegbid({
      args: ['--workers', '2', '--event-log', join(dir, 'events')],
      env: { SEGBID_FAULT_WORKER_CRASH: `0:${trigger}` },
      cwd: dir,
    });
    left.processes.push(proc);
    await waitFor('both workers ready', async () => ((await readyz(proc.adminPort)).status === 200 ? true : undefined), 60_000);
    expect(await metricValue(proc.adminPort, 'segbid_workers_alive', {})).toBe(2);

    // Traffic on four concurrent request loops (a new connection per request) from before the crash until the
    // restart: requests keep arriving while the worker dies, which must not take the process down with it.
    let stop = false;
    const statuses: number[] = [];
    let connectionErrors = 0;
    const loop = async (k: number) => {
      for (let i = 0; !stop; i++) {
        try {
          statuses.push((await raw(proc.bidPort, { body: bidBody(k * 100_000 + i) })).status);
        } catch {
          connectionErrors++; // a request the dying worker had accepted (reset), at most one per loop
        }
      }
    };
    const loops = [0, 1, 2, 3].map((k) => loop(k));
    await sleep(300);
    writeFileSync(trigger, '');
    let sawMissing: Awaited<ReturnType<typeof readyz>> | null = null;
    let last: unknown = null;
    try {
      await waitFor(
        'the worker restart',
        async () => {
          if (!proc.alive()) return 'the process died';
          const r = await readyz(proc.adminPort);
          last = r;
          if (r.status === 503 && r.body.workers!.alive === 1) sawMissing = r;
          return r.status === 200 && r.body.workers!.restarts === 1 ? r : undefined;
        },
        60_000,
        10,
      );
    } catch (e) {
      throw new Error(`${(e as Error).message}; last /readyz ${JSON.stringify(last)}; alive ${proc.alive()}\n${proc.output().slice(-3000)}`);
    } finally {
      stop = true;
      await Promise.all(loops);
    }
    expect(proc.alive(), proc.output().slice(-2000)).toBe(true);
    expect(proc.output()).toContain('injected worker crash');
    expect(sawMissing, 'a /readyz 503 with one worker alive while worker 0 was down').not.toBeNull();
    expect(sawMissing!.body.ready).toBe(false);
    expect(sawMissing!.body.workers).toMatchObject({ alive: 1, wanted: 2 });
    expect(statuses.length).toBeGreaterThan(20);
    for (const s of statuses) expect([200, 204]).toContain(s);
    expect(connectionErrors).toBeLessThanOrEqual(4);
    expect(await metricValue(proc.adminPort, 'segbid_worker_restarts_total', {})).toBe(1);
    expect(await metricValue(proc.adminPort, 'segbid_workers_alive', {})).toBe(2);
    // The restarted worker serves too (both listen sockets take connections again) and does not crash again.
    for (let i = 0; i < 20; i++) expect([200, 204]).toContain((await raw(proc.bidPort, { body: bidBody(i) })).status);
    expect((await readyz(proc.adminPort)).body.workers).toMatchObject({ alive: 2, restarts: 1 });

    proc.child.kill('SIGTERM');
    expect((await proc.exited).code, proc.output().slice(-2000)).toBe(0);
  }, 120_000);
});

describe('invalid config and corrupt segment store, by SIGHUP to a running process', () => {
  it('each reload is rejected with the reason on /readyz and in the metrics; the previous pair keeps bidding and readiness stays', async () => {
    const dir = tempDir('segbid-badreload-');
    for (const f of ['config.json', 'segmentation.json', 'segments.store']) copyFileSync(join(DEMO_DIR, f), join(dir, f));
    const config = join(dir, 'config.json');
    const store = join(dir, 'segments.store');
    const proc = await spawnSegbid({ args: ['--workers', '1', '--config', config, '--event-log', 'none'], cwd: dir });
    left.processes.push(proc);
    expect((await raw(proc.bidPort, { body: bidBody(0) })).status).toBe(200);
    const good = readFileSync(config, 'utf8');
    const goodStore = readFileSync(store);

    const rejectedAfter = async (expected: number, pattern: RegExp) => {
      proc.child.kill('SIGHUP');
      const r = await waitFor('the rejected reload', async () => {
        if ((await metricValue(proc.adminPort, 'segbid_config_reloads_total', { result: 'rejected' })) < expected) return undefined;
        return readyz(proc.adminPort);
      }, 30_000);
      expect(r.body.lastError).toMatch(pattern);
      expect(r.status).toBe(200); // the previous pair serves: still ready
      expect((await raw(proc.bidPort, { body: bidBody(1) })).status).toBe(200);
    };

    // An invalid config: every error by path.
    const doc = JSON.parse(good);
    doc.lineItems[0].bid.cpm = -1;
    writeFileSync(config, JSON.stringify(doc));
    await rejectedAfter(1, /lineItems\/0\/bid\/cpm/);

    // A truncated store, then one with flipped bytes (checksum).
    writeFileSync(config, good);
    writeFileSync(store, goodStore.subarray(0, goodStore.length >> 1));
    await rejectedAfter(2, /STORE_CORRUPT|truncated|corrupt/i);
    const flipped = Buffer.from(goodStore);
    for (let i = flipped.length - 4096; i < flipped.length - 4000; i++) flipped[i] ^= 0xff;
    writeFileSync(store, flipped);
    await rejectedAfter(3, /STORE_CORRUPT|checksum|corrupt/i);

    // The good pair again: accepted, the error cleared.
    writeFileSync(store, goodStore);
    proc.child.kill('SIGHUP');
    await waitFor('the accepted reload', async () => ((await readyz(proc.adminPort)).body.lastError === null ? true : undefined), 30_000);
    proc.child.kill('SIGTERM');
    expect((await proc.exited).code).toBe(0);

    // At start there is no previous pair: an invalid config stops the start with every error by path (exit 2).
    writeFileSync(config, JSON.stringify(doc));
    const start = spawnSync(process.execPath, [CLI, 'serve', '--config', config, '--host', '127.0.0.1', '--port', '0', '--admin-port', '0', '--event-log', 'none'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, SEGBID_STATE_DIR: 'none' },
    });
    expect(start.status).toBe(2);
    expect(start.stderr).toMatch(/lineItems\/0\/bid\/cpm/);
  }, 120_000);
});
