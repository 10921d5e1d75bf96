/**
 * `serve --segments-redis`: the Redis segment store in the bid path, against a REAL redis-server (spawned on a
 * free port) and a real bidder (uWebSockets.js) on the demo config.
 *   - a user only Redis knows gets the CRM line item of its segment (the local store does not know it);
 *   - a user of the local store is decided without asking Redis;
 *   - Redis frozen (SIGSTOP): the lookup times out within min(budget, tmax/4), the request is answered as an
 *     unknown user (contextual / run-of-network bid), counted as a timeout;
 *   - Redis stopped: a new Redis user is answered within tmax as unknown (no 5xx), counted as an error; the
 *     user already looked up is still served from the cache (stale-while-down, redis-store.ts contract);
 *   - a Redis filled for another segmentation is refused at start (STORE_MISMATCH), one filled by a compiler of
 *     another store format (other key hashing) too (STORE_VERSION).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { pack } from 'msgpackr';
import { startTestBidder, raw, metricValue } from './helpers/bidder.js';
import type { RunningBidder } from '../src/server/start.js';
import { loadDecider } from '../src/bidding/load-decider.js';
import { DEMO_CONFIG } from '../src/common/paths.js';
import { ensureDemoStore } from '../src/fixtures/ensure-demo.js';
import { STORE_FORMAT_VERSION, SegmentStoreBuilder } from '../src/segments/segment-store.js';
import { KEY_KIND, hashKey, keyHash } from '../src/segments/key-hash.js';
import { REDIS_HEADER_KEY, writeStoreToRedis } from '../src/segments/redis-store.js';
import { connectRemoteSegments } from '../src/segments/remote-segments.js';
import { SegbidError } from '../src/common/errors.js';
import { freePort, hasRedis, startRedis, stopRedis } from './helpers/redis-server.js';
import { readyz, spawnSegbid, waitFor, type SegbidProcess } from './helpers/segbid-process.js';

if (!hasRedis) console.warn('segments-redis-serve: SKIPPED, /usr/bin/redis-server is not installed');

const TMAX = 120;

function bidRequest(id: string, buyeruid: string): string {
  return JSON.stringify({
    id,
    tmax: TMAX,
    cur: ['USD'],
    site: { domain: 'news.example', page: 'https://news.example/a' },
    device: { devicetype: 2, geo: { country: 'FRA' } },
    imp: [{ id: '1', banner: { format: [{ w: 300, h: 250 }] }, bidfloor: 0.1 }],
    user: { buyeruid },
  });
}

interface Answer {
  status: number;
  crid: string | null;
  ms: number;
}

async function bid(port: number, id: string, buyeruid: string): Promise<Answer> {
  const t = performance.now();
  const r = await raw(port, { body: bidRequest(id, buyeruid), headers: { 'content-type': 'application/json' } });
  const ms = performance.now() - t;
  const crid = r.status === 200 ? ((JSON.parse(r.text) as { seatbid: { bid: { crid: string }[] }[] }).seatbid[0]?.bid[0]?.crid ?? null) : null;
  return { status: r.status, crid, ms };
}

describe.skipIf(!hasRedis)('serve --segments-redis (real redis-server, real bidder)', () => {
  let redisPort = 0;
  let redis: ChildProcess | null = null;
  let bidder: RunningBidder;
  const lookups = (outcome: string) => metricValue(bidder.adminPort, 'segbid_segment_redis_lookups_total', { outcome });

  beforeAll(async () => {
    ensureDemoStore();
    redisPort = await freePort();
    redis = await startRedis(redisPort);
    // The Redis store speaks the demo dictionary; it holds users the local demo store does not have.
    const dictionary = loadDecider(DEMO_CONFIG).config.dictionary;
    const builder = new SegmentStoreBuilder(dictionary);
    const loyal = dictionary.bitOf.get('loyal-high-value')!;
    for (const id of ['redis-only-1', 'redis-only-2', 'redis-only-3']) {
      hashKey(KEY_KIND.buyeruid, id);
      builder.addKey(builder.addUser([loyal]), keyHash.hi, keyHash.lo);
    }
    await writeStoreToRedis(builder.build('2026-01-01T00:00:00.000Z'), `redis://127.0.0.1:${redisPort}`);
    bidder = await startTestBidder(undefined, { segmentsRedisUrl: `redis://127.0.0.1:${redisPort}`, segmentsRedisBudgetMs: 20 });
    expect(await bidder.handler.remote!.redis.waitReady(2000)).toBe(true);
  }, 20_000);

  afterAll(async () => {
    await bidder?.close();
    if (redis && redis.exitCode === null) {
      redis.kill('SIGCONT');
      redis.kill('SIGKILL');
    }
  });

  it('bids on the CRM line item of a user only Redis knows; an unknown user gets the run-of-network bid', async () => {
    const known = await bid(bidder.bidPort, 'r1', 'redis-only-1');
    expect(known.status).toBe(200);
    expect(known.crid).toMatch(/^cr-loyal-/);
    expect(await lookups('hit')).toBe(1);
    const stranger = await bid(bidder.bidPort, 'r2', 'nobody-anywhere');
    expect(stranger.status).toBe(200);
    expect(stranger.crid).toMatch(/^cr-ron-/);
    expect(await lookups('miss')).toBe(1);
    expect(bidder.handler.remote!.deferred).toBe(2);
  });

  it('decides a user of the local store without asking Redis', async () => {
    const before = bidder.handler.remote!.redis.stats.lookups;
    const local = await bid(bidder.bidPort, 'r3', 'demo-00007');
    expect([200, 204]).toContain(local.status);
    expect(bidder.handler.remote!.redis.stats.lookups).toBe(before);
  });

  it('Redis frozen: the lookup times out within its budget and the user is decided as unknown', async () => {
    redis!.kill('SIGSTOP');
    try {
      const frozen = await bid(bidder.bidPort, 'r4', 'redis-only-2');
      expect(frozen.status).toBe(200);
      expect(frozen.crid).toMatch(/^cr-ron-/);
      expect(frozen.ms).toBeLessThan(TMAX);
      expect(await lookups('timeout')).toBe(1);
    } finally {
      redis!.kill('SIGCONT');
    }
  });

  it('Redis stopped: answers within tmax, no 5xx; the user looked up before is served from the cache', async () => {
    const exited = new Promise((r) => redis!.once('exit', r));
    redis!.kill('SIGKILL');
    await exited;
    await new Promise((r) => setTimeout(r, 100)); // the client notices the closed connection
    for (let i = 0; i < 5; i++) {
      const down = await bid(bidder.bidPort, `r5-${i}`, 'redis-only-3');
      expect(down.status).toBeLessThan(500);
      expect([200, 204]).toContain(down.status);
      if (down.status === 200) expect(down.crid).toMatch(/^cr-ron-/); // contextual, not the CRM line item
      expect(down.ms).toBeLessThan(TMAX);
    }
    expect(await lookups('error')).toBeGreaterThanOrEqual(1);
    const cached = await bid(bidder.bidPort, 'r6', 'redis-only-1');
    expect(cached.status).toBe(200);
    expect(cached.crid).toMatch(/^cr-loyal-/);
    expect(cached.ms).toBeLessThan(TMAX);
  });
});

describe.skipIf(!hasRedis)('Redis segment store header check at start', () => {
  beforeAll(() => ensureDemoStore()); // the demo dictionary, from a store of this format
  it('refuses a Redis filled for another segmentation (STORE_MISMATCH)', async () => {
    const port = await freePort();
    const child = await startRedis(port);
    const client = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0 });
    try {
      const dictionary = loadDecider(DEMO_CONFIG).config.dictionary;
      const other = dictionary.segments.map((s, i) => (i === 2 ? 'someone-else' : s.id));
      await client.set(REDIS_HEADER_KEY, pack({ format: STORE_FORMAT_VERSION, words: dictionary.words, segments: other, userCount: 0, keyCount: 0, createdAt: 'x' }));
      const error = await connectRemoteSegments(`redis://127.0.0.1:${port}`, dictionary).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(SegbidError);
      expect((error as SegbidError).code).toBe('STORE_MISMATCH');
      expect((error as Error).message).toMatch(/bit 2 is "someone-else"/);
    } finally {
      client.disconnect();
      child.kill('SIGKILL');
    }
  });

  it('refuses a Redis filled by a compiler of another store format (STORE_VERSION: its keys are hashed otherwise)', async () => {
    const port = await freePort();
    const child = await startRedis(port);
    const client = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0 });
    try {
      const dictionary = loadDecider(DEMO_CONFIG).config.dictionary;
      const segments = dictionary.segments.map((s) => s.id);
      await client.set(REDIS_HEADER_KEY, pack({ format: 3, words: dictionary.words, segments, userCount: 0, keyCount: 0, createdAt: 'x' }));
      const error = await connectRemoteSegments(`redis://127.0.0.1:${port}`, dictionary).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(SegbidError);
      expect((error as SegbidError).code).toBe('STORE_VERSION');
      expect((error as Error).message).toMatch(/format 3.*recompile/);
    } finally {
      client.disconnect();
      child.kill('SIGKILL');
    }
  });
});

describe.skipIf(!hasRedis)('serve --workers 2 --segments-redis (a real process)', () => {
  it('every worker looks up the users only Redis knows, and a stopped Redis still gets answers', async () => {
    ensureDemoStore();
    const port = await freePort();
    const redisChild = await startRedis(port);
    let proc: SegbidProcess | null = null;
    try {
      const dictionary = loadDecider(DEMO_CONFIG).config.dictionary;
      const builder = new SegmentStoreBuilder(dictionary);
      const loyal = dictionary.bitOf.get('loyal-high-value')!;
      const ids = Array.from({ length: 12 }, (_, i) => `redis-worker-${i}`);
      for (const id of ids) {
        hashKey(KEY_KIND.buyeruid, id);
        builder.addKey(builder.addUser([loyal]), keyHash.hi, keyHash.lo);
      }
      await writeStoreToRedis(builder.build('2026-01-01T00:00:00.000Z'), `redis://127.0.0.1:${port}`);
      proc = await spawnSegbid({ args: ['--workers', '2', '--event-log', 'none', '--segments-redis', `redis://127.0.0.1:${port}`, '--segments-redis-budget-ms', '50'] });
      await waitFor('both workers ready', async () => ((await readyz(proc!.adminPort)).status === 200 ? true : undefined), 60_000);
      // Each request on its own connection: the kernel spreads them over both workers.
      const crids: (string | null)[] = [];
      for (const id of ids) crids.push((await bid(proc.bidPort, `w-${id}`, id)).crid);
      expect(crids.every((c) => c !== null && c.startsWith('cr-loyal-'))).toBe(true);
      // Lookups counted by the workers, summed on the main thread's /metrics.
      expect(await metricValue(proc.adminPort, 'segbid_segment_redis_lookups_total', { outcome: 'hit' })).toBe(ids.length);
      await stopRedis(redisChild, 'SIGKILL');
      for (let i = 0; i < 4; i++) {
        const down = await bid(proc.bidPort, `down-${i}`, `nobody-${i}`);
        expect([200, 204]).toContain(down.status);
        expect(down.ms).toBeLessThan(TMAX * 4);
      }
    } finally {
      proc?.kill();
      await stopRedis(redisChild, 'SIGKILL');
    }
  }, 90_000);
});
