/**
 * Frequency caps shared by several bidder machines through Redis (`--redis URL`), in front of the local table.
 *
 * Contract
 * - The decision never waits for Redis: it checks the local InProcessCapStore (the shared table of the
 *   process's workers). Redis feeds that table two ways, both asynchronous:
 *   - write-through: each billed impression recorded locally is also added to the user's sorted set
 *     `<prefix>fc:<user key hash, 16 hex>`: member `<capped item name>|<bid id>`, score = the impression second;
 *     entries past the longest cap window are trimmed and the key expires after it. The bid id makes the member
 *     unique per impression and idempotent: a billing notice retried on another machine adds nothing.
 *   - prefetch: once a request's user key may be read (consent), the handler calls prefetchRequest(); the key is
 *     queued (allocation-free, at most once per user per `throttleMs`), and one pipelined ZRANGEBYSCORE per
 *     batch, on the next turn of the event loop, merges the impressions of every machine into the local table
 *     (InProcessCapStore.mergeTimes: idempotent, so the table's own impressions are not counted twice). The
 *     request that triggered it decided on local data (a prefetch miss); the user's next request sees the merge.
 * - Redis down or slow: commands fail fast (src/redis/connection.ts: no offline queue, short command timeout),
 *   every failure or skipped command is counted in `stats`, caps stay local-only, the connection comes back by
 *   itself. Impressions billed while Redis was down are not written later (other machines miss them until the
 *   user's entries expire); the local table still has them.
 * - Keys are names (capped item names, `lineItem:<id>` / `campaign:<id>`), so machines on different config
 *   versions share what they have in common.
 */
import type { Redis } from 'ioredis';
import type { InProcessCapStore } from '../bidding/frequency-caps.js';
import type { LearningTap } from '../bidding/learning.js';
import { primaryUserHash, userHash } from '../events/bid-context.js';

export interface RedisCapsOptions {
  /** Key prefix (default `segbid:`). */
  prefix?: string;
  /** A user is fetched again at most this often (default 1000 ms). */
  throttleMs?: number;
  /** Users waiting for the next batch; beyond it prefetches are shed (default 1024). */
  maxQueued?: number;
}

export interface RedisCapsStats {
  writes: number;
  writeErrors: number;
  prefetches: number;
  prefetchErrors: number;
  /** Users whose Redis set held impressions (merged into the local table). */
  prefetchHits: number;
  /** Commands not sent because the connection was down (local-only decisions). */
  skippedDown: number;
  /** Prefetches dropped: queue full. */
  shed: number;
}

const THROTTLE_SLOTS = 4096;

function hex8(x: number): string {
  return (x >>> 0).toString(16).padStart(8, '0');
}

export class RedisCaps implements LearningTap {
  readonly stats: RedisCapsStats = { writes: 0, writeErrors: 0, prefetches: 0, prefetchErrors: 0, prefetchHits: 0, skippedDown: 0, shed: 0 };
  private readonly redis: Redis;
  private readonly current: () => InProcessCapStore;
  private readonly prefix: string;
  private readonly throttleMs: number;
  /* throttle: direct-mapped (user -> last prefetch time) */
  private readonly tHi = new Int32Array(THROTTLE_SLOTS);
  private readonly tLo = new Int32Array(THROTTLE_SLOTS);
  private readonly tAt = new Float64Array(THROTTLE_SLOTS);
  /* queue of users to fetch in the next batch */
  private readonly qHi: Int32Array;
  private readonly qLo: Int32Array;
  private qLen = 0;
  private scheduled = false;
  private readonly flushSoon: () => void;
  private inFlight: Promise<void> = Promise.resolve();

  constructor(redis: Redis, current: () => InProcessCapStore, options: RedisCapsOptions = {}) {
    this.redis = redis;
    this.current = current;
    this.prefix = options.prefix ?? 'segbid:';
    this.throttleMs = options.throttleMs ?? 1000;
    const max = options.maxQueued ?? 1024;
    this.qHi = new Int32Array(max);
    this.qLo = new Int32Array(max);
    // Created once: the hot path only schedules it.
    this.flushSoon = () => {
      this.scheduled = false;
      this.inFlight = this.flush();
    };
  }

  keyOf(userHi: number, userLo: number): string {
    return `${this.prefix}fc:${hex8(userHi)}${hex8(userLo)}`;
  }

  /** LearningTap: a billed impression just recorded in the local table: write it through. */
  capRecorded(caps: InProcessCapStore, userHi: number, userLo: number, lineItem: number, nowMs: number, bidId: string): void {
    if (this.redis.status !== 'ready') {
      this.stats.skippedDown++;
      return;
    }
    const plan = caps.plan;
    const sec = Math.floor(nowMs / 1000);
    const horizon = longestHorizon(caps);
    const key = this.keyOf(userHi, userLo);
    const id = bidId !== '' ? bidId : `${sec}-${Math.random().toString(36).slice(2)}`;
    const p = this.redis.pipeline();
    const own = plan.lineItemItem[lineItem];
    const camp = plan.campaignItem[lineItem];
    if (own >= 0) p.zadd(key, sec, `${plan.itemNames[own]}|${id}`);
    if (camp >= 0) p.zadd(key, sec, `${plan.itemNames[camp]}|${id}`);
    p.zremrangebyscore(key, '-inf', sec - horizon);
    p.expire(key, horizon);
    this.stats.writes++;
    p.exec().then(
      (res) => {
        if (res === null || res.some(([e]) => e !== null)) this.stats.writeErrors++;
      },
      () => this.stats.writeErrors++,
    );
  }

  /** HOT PATH (after the decision): queue the request's primary user key for a prefetch. Allocation-free. */
  prefetchRequest(request: object): void {
    primaryUserHash(request);
    if (userHash.hi !== 0 || userHash.lo !== 0) this.prefetch(userHash.hi, userHash.lo, Date.now());
  }

  prefetch(userHi: number, userLo: number, nowMs: number): void {
    const hi = userHi | 0;
    const lo = userLo | 0;
    const slot = (Math.imul(hi ^ Math.imul(lo, 0x9e3779b1), 0x85ebca77) >>> 20) & (THROTTLE_SLOTS - 1);
    if (this.tHi[slot] === hi && this.tLo[slot] === lo && nowMs - this.tAt[slot] < this.throttleMs) return;
    if (this.qLen === this.qHi.length) {
      this.stats.shed++;
      return;
    }
    this.tHi[slot] = hi;
    this.tLo[slot] = lo;
    this.tAt[slot] = nowMs;
    this.qHi[this.qLen] = hi;
    this.qLo[this.qLen] = lo;
    this.qLen++;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushSoon);
    }
  }

  /** Resolves when the prefetches sent so far have been merged (tests). */
  async settled(): Promise<void> {
    await new Promise((r) => setImmediate(r));
    await this.inFlight;
  }

  private async flush(): Promise<void> {
    const n = this.qLen;
    if (n === 0) return;
    const his = this.qHi.slice(0, n);
    const los = this.qLo.slice(0, n);
    this.qLen = 0;
    if (this.redis.status !== 'ready') {
      this.stats.skippedDown += n;
      for (let i = 0; i < n; i++) this.forgetThrottle(his[i], los[i]); // try again on the next request
      return;
    }
    const caps = this.current();
    const since = Math.floor(Date.now() / 1000) - longestHorizon(caps);
    const p = this.redis.pipeline();
    for (let i = 0; i < n; i++) p.zrangebyscore(this.keyOf(his[i], los[i]), since, '+inf', 'WITHSCORES');
    this.stats.prefetches += n;
    let res: [Error | null, unknown][] | null;
    try {
      res = await p.exec();
    } catch {
      this.stats.prefetchErrors += n;
      return;
    }
    if (res === null) return;
    // The table may have been swapped meanwhile: merge into the one serving now (items matched by name).
    const target = this.current();
    for (let i = 0; i < n; i++) {
      const [err, reply] = res[i];
      if (err !== null) {
        this.stats.prefetchErrors++;
        continue;
      }
      const flat = reply as string[];
      if (flat.length === 0) continue;
      this.stats.prefetchHits++;
      mergeReply(target, his[i], los[i], flat);
    }
  }

  private forgetThrottle(hi: number, lo: number): void {
    const slot = (Math.imul(hi ^ Math.imul(lo, 0x9e3779b1), 0x85ebca77) >>> 20) & (THROTTLE_SLOTS - 1);
    if (this.tHi[slot] === hi && this.tLo[slot] === lo) this.tAt[slot] = -Infinity;
  }
}

/** The longest cap window of the plan (the Redis entries' life), at least a minute. */
function longestHorizon(caps: InProcessCapStore): number {
  let h = 60;
  const hs = caps.plan.itemHorizonSec;
  for (let i = 0; i < hs.length; i++) if (hs[i] > h) h = hs[i];
  return h;
}

/** ZRANGEBYSCORE ... WITHSCORES reply: [member, score, ...]; members `<item name>|<impression id>`. */
export function mergeReply(caps: InProcessCapStore, hi: number, lo: number, flat: readonly string[]): void {
  const byItem = new Map<string, number[]>();
  for (let k = 0; k + 1 < flat.length; k += 2) {
    const bar = flat[k].lastIndexOf('|');
    if (bar <= 0) continue;
    const name = flat[k].slice(0, bar);
    const t = Number(flat[k + 1]);
    if (!(t > 0)) continue;
    const list = byItem.get(name);
    if (list === undefined) byItem.set(name, [t]);
    else list.push(t);
  }
  for (const [name, times] of byItem) {
    const item = caps.itemOf(name);
    if (item >= 0) caps.mergeTimes(hi, lo, item, times);
  }
}
