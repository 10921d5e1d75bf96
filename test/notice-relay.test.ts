/**
 * Budget notices between processes (src/budget/notice-relay.ts) on a REAL redis-server: the router's choices
 * (here, another worker of this process, another process), delivery to the owner's list, a notice pushed twice
 * applied once, Redis down (queued, delivered when it is back) and a full queue (the oldest settled here).
 * The end-to-end bound (two bidder processes, every notice at the wrong one) is in budget-redis.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { NoticeRouter, RedisNoticeRelay, noticeListKey, processTagFor } from '../src/budget/notice-relay.js';
import type { ForwardedNotice } from '../src/budget/bank-threads.js';
import { ownerOfBidId, ownerTag, randomProcessTag, sameProcess } from '../src/openrtb/response.js';
import { createRedisConnection } from '../src/redis/connection.js';
import { freePort, hasRedis, startRedis, stopRedis } from './helpers/redis-server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const notice = (bidId: string, kind: ForwardedNotice['kind'] = 'win'): ForwardedNotice => ({ kind, lineItem: 1, price: 2_000_000, bidId, nowMs: 1 });

describe('owner tags', () => {
  it('name the process and the worker; a bid id carries its minter', () => {
    const p = randomProcessTag();
    expect(p).toMatch(/^[0-9a-z]{6}$/);
    const w0 = ownerTag(p, 0);
    const w3 = ownerTag(p, 3);
    expect(w0).toHaveLength(8);
    expect(sameProcess(w0, w3)).toBe(true);
    expect(sameProcess(w0, ownerTag(randomProcessTag(), 0))).toBe(false);
    expect(ownerOfBidId(w3 + '1a.2b')).toBe(w3);
    expect(ownerOfBidId('short')).toBe('');
  });

  it('keeps a process tag in the state directory across restarts', () => {
    const dir = mkdtempSync(join(tmpdir(), 'segbid-tag-'));
    const first = processTagFor(dir);
    expect(processTagFor(dir)).toBe(first);
    expect(readFileSync(join(dir, 'owner-tag'), 'utf8').trim()).toBe(first);
    expect(processTagFor(null)).not.toBe(processTagFor(null));
  });
});

describe('NoticeRouter', () => {
  const me = ownerTag('aaaaaa', 1);
  it('settles its own notices, forwards another worker\'s, relays another process\'s', () => {
    const sent: string[] = [];
    const forwarded: number[] = [];
    const relay = { send: (owner: string) => sent.push(owner) } as unknown as RedisNoticeRelay;
    const router = new NoticeRouter(me, (_n, handle) => (handle === 7 ? false : (forwarded.push(handle), true)), relay);
    expect(router.route(notice(me + '1.1'), 9)).toBe(false); // its own tag: here
    expect(router.route(notice(ownerTag('aaaaaa', 2) + '1.1'), 9)).toBe(true); // same process: by handle
    expect(forwarded).toEqual([9]);
    expect(router.route(notice(ownerTag('bbbbbb', 0) + '1.1'), 9)).toBe(true); // another process: Redis
    expect(sent).toEqual([ownerTag('bbbbbb', 0)]);
    // Without Redis, a notice for another process settles here (by handle, as before there was a relay).
    expect(new NoticeRouter(me, null, null).route(notice(ownerTag('bbbbbb', 0) + '1.1'), 9)).toBe(false);
  });
});

describe.skipIf(!hasRedis)('RedisNoticeRelay (real redis-server)', () => {
  it('delivers to the owner once, waits out a Redis outage, and settles here what cannot be queued', async () => {
    const port = await freePort();
    let server = await startRedis(port);
    const url = `redis://127.0.0.1:${port}`;
    const ra = createRedisConnection(url, { name: 'a' });
    const rb = createRedisConnection(url, { name: 'b' });
    const probe = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0 });
    const appliedB: ForwardedNotice[] = [];
    const fallbackA: ForwardedNotice[] = [];
    const A = ownerTag(randomProcessTag(), 0);
    const B = ownerTag(randomProcessTag(), 0);
    const a = new RedisNoticeRelay(ra, A, () => {}, (n) => fallbackA.push(n), { timer: false, maxQueued: 3 });
    const b = new RedisNoticeRelay(rb, B, (n) => appliedB.push(n), () => {}, { timer: false });
    try {
      for (let i = 0; i < 100 && (ra.status !== 'ready' || rb.status !== 'ready'); i++) await sleep(20);
      a.send(B, notice(B + '1.a'));
      a.send(B, notice(B + '1.a', 'bill'));
      await a.tick();
      expect(await probe.llen(noticeListKey(B))).toBe(2);
      expect(await probe.pttl(noticeListKey(B))).toBeGreaterThan(0); // a list nobody reads expires
      await b.tick();
      expect(appliedB.map((n) => `${n.kind} ${n.bidId}`)).toEqual([`win ${B}1.a`, `bill ${B}1.a`]);
      expect(await probe.llen(noticeListKey(B))).toBe(0);
      // The same notice pushed again (a push retried after a timeout that ran anyway) is applied once.
      a.send(B, notice(B + '1.a'));
      await a.tick();
      await b.tick();
      expect(appliedB).toHaveLength(2);
      expect(b.totals.duplicate).toBe(1);

      // Redis down: queued; the queue's oldest is settled here once more than maxQueued wait.
      await stopRedis(server);
      for (let i = 0; i < 100 && ra.status === 'ready'; i++) await sleep(20);
      for (const id of ['2.a', '3.a', '4.a', '5.a']) a.send(B, notice(B + id));
      await a.tick();
      expect(a.queued).toBe(3);
      expect(fallbackA.map((n) => n.bidId)).toEqual([B + '2.a']);
      // Back (empty): the queue goes out and reaches its owner.
      server = await startRedis(port);
      for (let i = 0; i < 200 && (ra.status !== 'ready' || rb.status !== 'ready'); i++) await sleep(25);
      await a.tick();
      expect(a.queued).toBe(0);
      await b.tick();
      expect(appliedB.map((n) => n.bidId).slice(2)).toEqual([B + '3.a', B + '4.a', B + '5.a']);
      expect(a.totals.sent).toBe(6);
      expect(a.totals.dropped).toBe(1);
    } finally {
      await a.close();
      await b.close();
      ra.disconnect();
      rb.disconnect();
      probe.disconnect();
      await stopRedis(server);
    }
  }, 30_000);
});
