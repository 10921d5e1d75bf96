/**
 * Learning statistics shared by several bidder machines through Redis: each machine's hub (src/bidding/
 * shared-learning.ts: the main thread of a cluster, or the single-threaded bidder) pushes what its threads learned
 * and pulls what the others learned, every `everyMs` (default 2 s), off the hot path.
 *
 * Contract
 * - One Redis hash `<prefix>learn` holds the all-time raw sums by field name (HINCRBY: the hub hands out whole
 *   numbers, fractions wait for a later push). One Lua script per sync: apply this batch's increments unless the
 *   batch id was already applied (a marker key with a TTL of a day), then return the whole hash. A batch whose
 *   reply was lost is retried with the same id, so it is counted once even when the first try did reach Redis.
 * - Others' evidence = (sum now - sum at the previous pull - this batch), per field: added to the hub's totals,
 *   never pushed back. The hash carries an `_epoch` (set once, random): a Redis that lost its data (restart
 *   without persistence) shows a new epoch and the machine starts its diffs afresh instead of subtracting
 *   what was lost.
 * - Decay: Redis holds raw sums; each hub decays its own totals (shading half-life), and others' new evidence
 *   enters undecayed. The first pull of a machine adopts the whole history undecayed.
 * - Redis down or slow: the sync is skipped or fails (counted), the batch waits, the hub and its threads keep
 *   learning locally; when Redis is back the waiting batch and everything since are pushed.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { LearningHub } from '../bidding/shared-learning.js';

export interface RedisLearningOptions {
  prefix?: string;
  everyMs?: number;
}

export interface RedisLearningStats {
  syncs: number;
  errors: number;
  skippedDown: number;
  /** Fields pushed, and others' evidence merged (fields with a non-zero difference). */
  pushedFields: number;
  pulledFields: number;
  /** Times the hash came back with a new epoch (Redis lost its data). */
  epochResets: number;
}

const SCRIPT = `
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', 86400) then
  for i = 2, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('HSETNX', KEYS[1], '_epoch', ARGV[1])
return redis.call('HGETALL', KEYS[1])
`;

type SyncCommand = (hashKey: string, markerKey: string, epoch: string, ...pairs: string[]) => Promise<string[]>;

export class RedisLearningSync {
  readonly stats: RedisLearningStats = { syncs: 0, errors: 0, skippedDown: 0, pushedFields: 0, pulledFields: 0, epochResets: 0 };
  private readonly hub: LearningHub;
  private readonly redis: Redis;
  private readonly hashKey: string;
  private readonly prefix: string;
  private readonly everyMs: number;
  private pending: { id: string; amounts: Map<string, number> } | null = null;
  private lastRaw = new Map<string, number>();
  private epoch: string | null = null;
  private running = false;

  constructor(hub: LearningHub, redis: Redis, options: RedisLearningOptions = {}) {
    this.hub = hub;
    this.redis = redis;
    this.prefix = options.prefix ?? 'segbid:';
    // One hash slot for the hash and the batch markers (Redis Cluster runs the script on one node).
    this.hashKey = `${this.prefix}{learn}`;
    this.everyMs = options.everyMs ?? 2000;
    hub.trackUnpushed();
    if (!('segbidLearnSync' in redis)) redis.defineCommand('segbidLearnSync', { numberOfKeys: 2, lua: SCRIPT });
  }

  /** One push + pull; false when skipped (Redis down, or a sync still running) or failed. */
  async syncOnce(): Promise<boolean> {
    if (this.running) return false;
    if (this.redis.status !== 'ready') {
      this.stats.skippedDown++;
      return false;
    }
    this.running = true;
    try {
      if (this.pending === null) this.pending = { id: randomUUID(), amounts: this.hub.takeUnpushed() };
      const pairs: string[] = [];
      for (const [f, x] of this.pending.amounts) pairs.push(f, String(x));
      const run = (this.redis as unknown as { segbidLearnSync: SyncCommand }).segbidLearnSync;
      const flat = await run.call(this.redis, this.hashKey, `${this.hashKey}:batch:${this.pending.id}`, randomUUID(), ...pairs);
      const pushed = this.pending.amounts;
      this.pending = null;
      this.stats.pushedFields += pushed.size;
      this.absorb(flat, pushed);
      this.stats.syncs++;
      return true;
    } catch {
      this.stats.errors++;
      return false;
    } finally {
      this.running = false;
    }
  }

  start(): () => void {
    const timer = setInterval(() => void this.syncOnce(), this.everyMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  private absorb(flat: readonly string[], pushed: ReadonlyMap<string, number>): void {
    let epoch = '';
    for (let k = 0; k + 1 < flat.length; k += 2) if (flat[k] === '_epoch') epoch = flat[k + 1];
    if (epoch !== this.epoch) {
      if (this.epoch !== null) this.stats.epochResets++;
      this.epoch = epoch;
      this.lastRaw = new Map();
    }
    for (let k = 0; k + 1 < flat.length; k += 2) {
      const field = flat[k];
      if (field === '_epoch') continue;
      const now = Number(flat[k + 1]);
      if (!Number.isFinite(now)) continue;
      const others = now - (this.lastRaw.get(field) ?? 0) - (pushed.get(field) ?? 0);
      this.lastRaw.set(field, now);
      if (others !== 0) {
        this.hub.addExternal(field, others);
        this.stats.pulledFields++;
      }
    }
    this.hub.clearSeeds();
  }
}
