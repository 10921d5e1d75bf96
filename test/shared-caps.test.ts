/**
 * Frequency caps shared by the worker threads of one process: a real `segbid serve --workers 2` (dist/, run
 * `npx tsc -p tsconfig.json` first) with one line item capped at 1 per hour. The user's impression is billed
 * on whichever worker the notice reaches; every later request, each on a new connection (SO_REUSEPORT spreads
 * them over both workers), must be a no-bid. Also: concurrent writers from two threads over one table lose no
 * impression (the set locks).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { createServer } from 'node:net';
import { raw, metricValue } from './helpers/bidder.js';
import { compileFrequencyCaps, InProcessCapStore } from '../src/bidding/frequency-caps.js';
import { cappedDemo } from './helpers/demo-configs.js';

const MAIN = join(process.cwd(), 'dist/src/cli/main.js');
const built = existsSync(MAIN) && existsSync(join(process.cwd(), 'dist/src/bidding/shared-caps.js'));
if (!built) console.warn('shared-caps: cluster test SKIPPED, run `npx tsc -p tsconfig.json` first');

const KEYS = '1:' + 'ab'.repeat(32);

function bidRequest(id: string, buyeruid: string): string {
  return JSON.stringify({
    id,
    site: { domain: 'news.example' },
    cur: ['USD'],
    imp: [{ id: '1', banner: { format: [{ w: 300, h: 250 }] }, bidfloor: 0.2 }],
    user: { buyeruid },
  });
}

function billPath(burl: string, auctionId: string): string {
  const filled = burl.split('${AUCTION_PRICE}').join('1.5').split('${AUCTION_ID}').join(auctionId).split('${AUCTION_IMP_ID}').join('1').split('${AUCTION_CURRENCY}').join('USD');
  const u = new URL(filled);
  return u.pathname + u.search;
}

describe.skipIf(!built)('caps shared by the workers of `serve --workers 2`', () => {
  let child: ChildProcess;
  let bidPort = 0;
  let adminPort = 0;

  beforeAll(async () => {
    const config = cappedDemo('segbid-shared-caps-');
    // A fixed port: the workers' second listen on a port-0 socket's port is refused here.
    const port = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => resolve(p));
      });
    });
    child = spawn(process.execPath, [MAIN, 'serve', '--workers', '2', '--config', config, '--host', '127.0.0.1', '--port', String(port), '--admin-port', '0', '--event-log', 'none', '--state-dir', 'none'], {
      env: { ...process.env, SEGBID_EVENT_KEYS: KEYS, LOG_LEVEL: 'error' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ports printed: ${out}`)), 20_000);
      child.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        const bid = /bid port:\s+http:\/\/[^:]+:(\d+)/.exec(out);
        const ops = /operations port:\s+http:\/\/[^:]+:(\d+)/.exec(out);
        if (bid && ops) {
          bidPort = Number(bid[1]);
          adminPort = Number(ops[1]);
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
    });
  }, 30_000);

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });

  it('a user capped at 1 per hour sees one billed impression across workers', async () => {
    const first = await raw(bidPort, { body: bidRequest('r0', 'demo-00007'), headers: { 'content-type': 'application/json' } });
    expect(first.status).toBe(200);
    const bid = JSON.parse(first.text).seatbid[0].bid[0];
    const billed = await raw(bidPort, { method: 'GET', path: billPath(bid.burl, 'r0') });
    expect(billed.status, billed.text).toBe(204);
    // 24 more requests, each on its own connection: whichever worker answers, the cap holds.
    let bids = 0;
    for (let i = 1; i <= 24; i++) {
      const r = await raw(bidPort, { body: bidRequest(`r${i}`, 'demo-00007'), headers: { 'content-type': 'application/json' } });
      if (r.status === 200) {
        bids++;
        await raw(bidPort, { method: 'GET', path: billPath(JSON.parse(r.text).seatbid[0].bid[0].burl, `r${i}`) });
      }
    }
    expect(bids).toBe(0);
    expect(await metricValue(adminPort, 'segbid_bid_requests_total', { outcome: 'nobid', reason: 'frequency_capped' })).toBeGreaterThanOrEqual(24);
    // Another user of the same segment is not capped by it.
    const other = await raw(bidPort, { body: bidRequest('o1', 'demo-00007x'), headers: { 'content-type': 'application/json' } });
    expect([200, 204]).toContain(other.status);
  }, 30_000);

  it('the workers sync their learning with the main thread', async () => {
    await new Promise((r) => setTimeout(r, 2500));
    // Each worker applies merged totals about once a second (counters summed over the workers).
    expect(await metricValue(adminPort, 'segbid_learning_syncs_total', { result: 'applied' })).toBeGreaterThanOrEqual(4);
  }, 10_000);
});

describe('one cap table, two writer threads', () => {
  it('concurrent records from two threads over one SharedArrayBuffer lose no impression', async () => {
    const plan = compileFrequencyCaps([{ id: 'li0', frequencyCaps: [{ window: '1d', max: 64 }] }], undefined, []);
    const settings = { capacity: 128 }; // 16 sets, 16 users: both threads write the same entries
    const buffer = InProcessCapStore.sharedBuffer(plan, settings);
    const code = `
      const { workerData, parentPort } = require('node:worker_threads');
      import(workerData.module).then(({ InProcessCapStore, compileFrequencyCaps }) => {
        const plan = compileFrequencyCaps([{ id: 'li0', frequencyCaps: [{ window: '1d', max: 64 }] }], undefined, []);
        const store = new InProcessCapStore(plan, { capacity: 128 }, workerData.buffer);
        const t0 = 1760000000000;
        // Each thread: 16 users x 32 impressions, at its own seconds (odd / even), all interleaved.
        for (let k = 0; k < 32; k++) for (let u = 0; u < 16; u++) store.record(1000 + u, 7, 0, t0 + (2 * k + workerData.parity) * 1000);
        parentPort.postMessage('done');
      });`;
    const moduleUrl = new URL('../dist/src/bidding/frequency-caps.js', import.meta.url).href;
    if (!existsSync(new URL(moduleUrl))) return; // needs the build (see above)
    const run = (parity: number) =>
      new Promise<void>((resolve, reject) => {
        const w = new Worker(code, { eval: true, workerData: { buffer, parity, module: moduleUrl } });
        w.once('message', () => resolve());
        w.once('error', reject);
      });
    await Promise.all([run(0), run(1)]);
    const reader = new InProcessCapStore(plan, settings, buffer);
    for (let u = 0; u < 16; u++) expect(reader.count(1000 + u, 7, 0, 86400, 1760000000000 + 100_000)).toBe(64);
  }, 20_000);
});
