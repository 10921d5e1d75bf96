/**
 * The Redis segment store against a REAL redis-server (spawned on a free port, killed after): filled by the
 * compiler's writer, lookups hit, the lru-cache answers while Redis is down, and a frozen (SIGSTOP) or stopped
 * Redis makes lookups resolve to null within their time budget.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { unpack } from 'msgpackr';
import { SegmentCompiler } from '../src/segments/compiler/segment-compiler.js';
import { validateSegmentation } from '../src/segments/rules-schema.js';
import { RedisSegmentStore, REDIS_HEADER_KEY, orPackedRow, packRow, redisKey, writeStoreToRedis, type RedisHeader } from '../src/segments/redis-store.js';
import { KEY_KIND, hashKey, keyHash } from '../src/segments/key-hash.js';
import type { SegmentStore } from '../src/segments/segment-store.js';
import { freePort, hasRedis, startRedis } from './helpers/redis-server.js';

if (!hasRedis) console.warn('segments-redis: SKIPPED, redis-server is not installed (.ci/run installs it: apt-get install redis-server)');

function key(id: string): { hi: number; lo: number } {
  hashKey(KEY_KIND.buyeruid, id);
  return { hi: keyHash.hi, lo: keyHash.lo };
}

const USERS = 3000;

describe.skipIf(!hasRedis)('RedisSegmentStore (real redis-server)', () => {
  let port = 0;
  let redis: ChildProcess;
  let store: SegmentStore;
  let rs: RedisSegmentStore;

  beforeAll(async () => {
    port = await freePort();
    redis = await startRedis(port);
    const def = validateSegmentation(
      {
        width: 64,
        segments: [
          { id: 'even', name: 'even', kind: 'crm', rule: { col: 'n', in: [0, 2, 4, 6, 8] } },
          { id: 'big', name: 'big', kind: 'crm', rule: { col: 'n', gte: 5 } },
          { id: 'high', name: 'nine', kind: 'crm', rule: { col: 'n', eq: 9 } },
        ],
      },
      'redis-test',
    );
    const c = new SegmentCompiler(def);
    for (let u = 0; u < USERS; u++) {
      const rec: Record<string, unknown> = { n: u % 10, buyeruid: `u${u}`, ifa: u % 3 === 0 ? `ifa${u}` : '' };
      c.addRecord(c.columns.map((col) => rec[col]));
    }
    store = c.finish('2026-01-01T00:00:00.000Z').store;
    const written = await writeStoreToRedis(store, `redis://127.0.0.1:${port}`, { batch: 500 });
    expect(written.keys).toBe(USERS + USERS / 3);
    rs = new RedisSegmentStore({ url: `redis://127.0.0.1:${port}`, words: 2, negativeTtlMs: 60_000 });
    expect(await rs.waitReady(2000)).toBe(true);
  });

  afterAll(async () => {
    await rs?.close();
    if (redis && redis.exitCode === null) {
      redis.kill('SIGCONT');
      redis.kill('SIGKILL');
    }
  });

  it('packs rows without trailing zero words', () => {
    expect(packRow(new Uint32Array([5, 0])).length).toBe(4);
    expect(packRow(new Uint32Array([0, 0])).length).toBe(0);
    const out = new Uint32Array(2);
    orPackedRow(packRow(new Uint32Array([1, 1 << 31])), out);
    expect(Array.from(out)).toEqual([1, 2 ** 31]);
  });

  it('the header is readable and written with the keys', async () => {
    const header = (await rs.readHeader(500))!;
    expect(header.words).toBe(2);
    expect(header.segments.slice(0, 3)).toEqual(['even', 'big', 'high']);
    const direct = new Redis(port, '127.0.0.1');
    try {
      expect((unpack((await direct.getBuffer(REDIS_HEADER_KEY))!) as RedisHeader).userCount).toBe(USERS);
      expect(await direct.dbsize()).toBe(USERS + USERS / 3 + 1);
      expect(await direct.exists(redisKey(key('u0').hi, key('u0').lo))).toBe(1);
    } finally {
      direct.disconnect();
    }
  });

  it('--redis-ttl: keys written with an expiry', async () => {
    const other = await startRedis(await freePort());
    try {
      const port2 = Number(other.spawnargs[other.spawnargs.indexOf('--port') + 1]);
      const written = await writeStoreToRedis(store, `redis://127.0.0.1:${port2}`, { ttlSeconds: 300, batch: 700 });
      expect(written.keys).toBe(USERS + USERS / 3);
      const direct = new Redis(port2, '127.0.0.1');
      try {
        const ttl = await direct.ttl(redisKey(key('u7').hi, key('u7').lo));
        expect(ttl).toBeGreaterThan(200);
        expect(ttl).toBeLessThanOrEqual(300);
      } finally {
        direct.disconnect();
      }
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('an unreachable Redis fails the writer with the reason', async () => {
    const err = await writeStoreToRedis(store, `redis://127.0.0.1:${await freePort()}`, { connectTimeoutMs: 500 }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/failed: .*ECONNREFUSED/);
  });

  it('lookups equal the file store, unknown users are null, several keys are ORed', async () => {
    for (const u of [0, 1, 5, 9, 2999]) {
      const expected = new Uint32Array(2);
      const k = key(`u${u}`);
      store.orInto(k.hi, k.lo, expected);
      const got = await rs.lookup([k], 200);
      expect(got).not.toBeNull();
      expect(Array.from(got!)).toEqual(Array.from(expected));
    }
    expect(await rs.lookup([key('nobody')], 200)).toBeNull();
    hashKey(KEY_KIND.ifa, 'ifa9');
    const ifa9 = { hi: keyHash.hi, lo: keyHash.lo };
    const both = await rs.lookup([key('u4'), ifa9], 200);
    expect(Array.from(both!)).toEqual([0b111, 0]); // u4: even; user 9 (by ifa): big + high
    expect(rs.stats.hits).toBeGreaterThanOrEqual(6);
    expect(rs.stats.misses).toBe(1);
  });

  it('answers from the cache without Redis, including negative entries', async () => {
    const before = rs.stats.cacheHits;
    expect(await rs.lookup([key('u1')], 200)).not.toBeNull();
    expect(await rs.lookup([key('nobody')], 200)).toBeNull();
    expect(rs.stats.cacheHits).toBe(before + 2);
  });

  it('a frozen Redis (SIGSTOP): lookups resolve null within the budget, late replies still fill the cache', async () => {
    redis.kill('SIGSTOP');
    try {
      const budget = 40;
      const t0 = performance.now();
      const results = await Promise.all([rs.lookup([key('u10')], budget), rs.lookup([key('u11')], budget), rs.lookup([key('x1')], budget)]);
      const elapsed = performance.now() - t0;
      expect(results).toEqual([null, null, null]);
      expect(elapsed).toBeLessThan(budget + 40);
      expect(rs.stats.timeouts).toBe(3);
    } finally {
      redis.kill('SIGCONT');
    }
    // The replies arrive after SIGCONT and are cached: the next lookup needs no Redis round trip.
    await new Promise((r) => setTimeout(r, 100));
    const before = rs.stats.cacheHits;
    expect(await rs.lookup([key('u10')], 50)).not.toBeNull();
    expect(rs.stats.cacheHits).toBe(before + 1);
  });

  it('a stopped Redis: cached users still answer, others are null at once, and it reconnects when back', async () => {
    redis.kill('SIGKILL');
    await new Promise((r) => redis.once('exit', r));
    await new Promise((r) => setTimeout(r, 50));
    const cached = await rs.lookup([key('u1')], 50);
    expect(cached).not.toBeNull();
    const t0 = performance.now();
    const errorsBefore = rs.stats.errors;
    expect(await rs.lookup([key('u12')], 50)).toBeNull();
    expect(performance.now() - t0).toBeLessThan(50 + 40);
    expect(rs.stats.errors).toBe(errorsBefore + 1);
    // Back on the same port (empty: a restart without persistence), the client reconnects by itself.
    redis = await startRedis(port);
    expect(await rs.waitReady(3000)).toBe(true);
    expect(await rs.lookup([key('u13')], 200)).toBeNull();
    expect(rs.stats.misses).toBeGreaterThan(1);
  });
});
