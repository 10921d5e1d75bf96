/**
 * Frequency caps and learning shared by two bidder instances through a REAL redis-server (spawned on a free
 * port, --save '' --appendonly no): a cap recorded on bidder A (billing notice) is written through to Redis and,
 * after bidder B's prefetch, honoured by B; A's billed impression reaches B's strategy counters through the
 * learning sync. Redis stopped: both keep answering, counted as local-only; Redis restarted: they reconnect by
 * themselves and sharing works again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { KEY_KIND, hashKey, keyHash } from '../src/segments/key-hash.js';
import type { RunningBidder } from '../src/server/start.js';
import { metricValue, raw, startTestBidder } from './helpers/bidder.js';
import { freePort, hasRedis, startRedis, stopRedis } from './helpers/redis-server.js';
import { cappedDemo } from './helpers/demo-configs.js';

if (!hasRedis) console.warn('redis-caps: SKIPPED, redis-server is not installed');

const KEYS = '1:' + 'cd'.repeat(32);

/** Polls until `f` is true (or fails the test after `ms`). */
async function until(what: string, f: () => boolean | Promise<boolean>, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await f()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const body = (id: string, buyeruid: string) =>
  JSON.stringify({ id, site: { domain: 'news.example' }, cur: ['USD'], imp: [{ id: '1', banner: { format: [{ w: 300, h: 250 }] }, bidfloor: 0.2 }], user: { buyeruid }, tmax: 200 });

async function bid(b: RunningBidder, id: string, user: string) {
  return raw(b.bidPort, { body: body(id, user), headers: { 'content-type': 'application/json' } });
}

async function bill(b: RunningBidder, response: string, auctionId: string): Promise<number> {
  const burl: string = JSON.parse(response).seatbid[0].bid[0].burl;
  const u = new URL(burl.split('${AUCTION_PRICE}').join('1.5').split('${AUCTION_ID}').join(auctionId).split('${AUCTION_IMP_ID}').join('1').split('${AUCTION_CURRENCY}').join('USD'));
  return (await raw(b.bidPort, { method: 'GET', path: u.pathname + u.search })).status;
}

function userKey(buyeruid: string): { hi: number; lo: number; hex: string } {
  hashKey(KEY_KIND.buyeruid, buyeruid);
  const hex = (keyHash.hi >>> 0).toString(16).padStart(8, '0') + (keyHash.lo >>> 0).toString(16).padStart(8, '0');
  return { hi: keyHash.hi, lo: keyHash.lo, hex };
}

const capCount = (b: RunningBidder, user: string) => {
  const k = userKey(user);
  return b.handler.current.plan.caps.count(k.hi, k.lo, 0, 3600, Date.now());
};

describe.skipIf(!hasRedis)('caps and learning shared through Redis (two bidders)', () => {
  let port = 0;
  let redis: ChildProcess;
  let probe: Redis;
  let a: RunningBidder;
  let b: RunningBidder;

  beforeAll(async () => {
    port = await freePort();
    redis = await startRedis(port);
    probe = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => 200 });
    probe.on('error', () => {});
    const config = cappedDemo('segbid-redis-caps-');
    const url = `redis://127.0.0.1:${port}`;
    a = await startTestBidder(config, { redisUrl: url, eventKeys: KEYS, eventLogDir: null, stateDir: null });
    b = await startTestBidder(config, { redisUrl: url, eventKeys: KEYS, eventLogDir: null, stateDir: null });
    await until('both bidders connected', async () => (await metricValue(a.adminPort, 'segbid_shared_state_redis_up', {})) === 1 && (await metricValue(b.adminPort, 'segbid_shared_state_redis_up', {})) === 1);
  }, 30_000);

  afterAll(async () => {
    await a?.close();
    await b?.close();
    probe?.disconnect();
    if (redis) await stopRedis(redis, 'SIGKILL');
  });

  it('a cap recorded on one bidder is honoured by the other after prefetch', async () => {
    const user = 'demo-00007';
    const first = await bid(a, 'ra0', user);
    expect(first.status).toBe(200);
    expect(await bill(a, first.text, 'ra0')).toBe(204);
    expect(capCount(a, user)).toBe(1);
    await until('the impression written through to Redis', async () => (await probe.zcard(`segbid:fc:${userKey(user).hex}`)) === 1);
    // B has not seen this user: it decides on its local table (a prefetch miss) and bids, and prefetches.
    expect(capCount(b, user)).toBe(0);
    const miss = await bid(b, 'rb0', user);
    expect(miss.status).toBe(200);
    await until('the prefetch merged into B', () => capCount(b, user) === 1);
    const capped = await bid(b, 'rb1', user);
    expect(capped.status).toBe(204);
    // Merging again (another prefetch) does not count the impression twice.
    await new Promise((r) => setTimeout(r, 1100)); // the per-user prefetch throttle
    await bid(b, 'rb2', user);
    await new Promise((r) => setTimeout(r, 200));
    expect(capCount(b, user)).toBe(1);
    expect(capCount(a, user)).toBe(1);
  }, 20_000);

  it('learning statistics reach the other bidder', async () => {
    // A's billed impression (above) is in A's strategy counters; the learning syncs carry it to B.
    expect(a.handler.current.plan.strategies.impressions[0]).toBeGreaterThanOrEqual(1);
    await until('B learned A\'s impression', () => b.handler.current.plan.strategies.impressions[0] >= 1, 10_000);
    expect(b.handler.current.plan.strategies.impressions[0]).toBe(a.handler.current.plan.strategies.impressions[0]);
  }, 15_000);

  it('Redis stopped: both keep answering in time, local-only; restarted: sharing recovers by itself', async () => {
    await stopRedis(redis, 'SIGKILL');
    await until('A saw Redis go', async () => (await metricValue(a.adminPort, 'segbid_shared_state_redis_up', {})) === 0);
    for (let i = 0; i < 10; i++) {
      for (const [name, bidder] of [['a', a], ['b', b]] as const) {
        const t0 = performance.now();
        const r = await bid(bidder, `down-${name}-${i}`, `demo-0001${i}`);
        expect([200, 204]).toContain(r.status);
        expect(performance.now() - t0).toBeLessThan(200);
      }
    }
    // Two more users of the capped line item's segment (demo users that get a bid, never billed so far).
    const bidding: { user: string; text: string }[] = [];
    for (let n = 100; n < 600 && bidding.length < 2; n++) {
      const user = `demo-${String(n).padStart(5, '0')}`;
      const r = await bid(a, `scan-${n}`, user);
      if (r.status === 200) bidding.push({ user, text: r.text });
    }
    expect(bidding.length).toBe(2);
    // A billing notice while Redis is down: recorded locally (capped on A), not written through (counted).
    const v = bidding[0];
    expect(await bill(a, v.text, `scan-${v.user.slice(5).replace(/^0+/, '')}`)).toBe(204);
    expect(capCount(a, v.user)).toBe(1);
    expect((await bid(a, 'rv1', v.user)).status).toBe(204);
    expect(await metricValue(a.adminPort, 'segbid_shared_caps_redis_total', { result: 'skipped_down' })).toBeGreaterThan(0);

    redis = await startRedis(port);
    await until('both bidders reconnected', async () => (await metricValue(a.adminPort, 'segbid_shared_state_redis_up', {})) === 1 && (await metricValue(b.adminPort, 'segbid_shared_state_redis_up', {})) === 1, 10_000);
    const user = bidding[1].user;
    const w = await bid(a, 'rw0', user);
    expect(w.status).toBe(200);
    expect(await bill(a, w.text, 'rw0')).toBe(204);
    await until('the impression written through after the restart', async () => (await probe.zcard(`segbid:fc:${userKey(user).hex}`)) === 1);
    await bid(b, 'rwb0', user);
    await until('the prefetch merged into B after the restart', () => capCount(b, user) === 1);
    expect((await bid(b, 'rwb1', user)).status).toBe(204);
  }, 30_000);
});
