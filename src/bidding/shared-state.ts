/**
 * Wires the shared caps and learning into a bidder (a single-threaded one, a cluster worker, a cluster's main
 * thread), with their metrics. See shared-caps.ts, shared-learning.ts, src/redis/redis-caps.ts and
 * src/redis/redis-learning.ts for the contracts.
 *
 * - Single thread: the bidder is its own learning hub (synced every second in-process); with a Redis URL, caps are
 *   written through / prefetched and the hub syncs with Redis.
 * - Cluster worker: the caps table is the main thread's SharedArrayBuffer (installed before any config is
 *   compiled); learning deltas go to the main thread every second as `learn` messages and the totals come back
 *   in `learned`; with a Redis URL, the worker writes caps through and prefetches (its own connection).
 * - Cluster main thread: the hub, answering every worker's `learn`; with a Redis URL, the hub syncs with Redis.
 */
import client from 'prom-client';
import type { Redis } from 'ioredis';
import type { BidHandler } from './bid-handler.js';
import { LEARNING_SYNC_MS, LearningClient, LearningHub, startInProcessLearningSync, syncInProcess, type LearningBatch } from './shared-learning.js';
import { RedisCaps } from '../redis/redis-caps.js';
import { RedisLearningSync } from '../redis/redis-learning.js';
import { createRedisConnection } from '../redis/connection.js';

export function attachLearningClient(handler: BidHandler): LearningClient {
  const c = new LearningClient(() => ({ plan: handler.current.plan, allocator: handler.budget?.allocator ?? null }));
  handler.learning.taps.push(c);
  handler.swapObservers.push(c);
  return c;
}

export function attachRedisCaps(handler: BidHandler, redis: Redis, prefix?: string): RedisCaps {
  const caps = new RedisCaps(redis, () => handler.current.plan.caps, { prefix });
  handler.learning.taps.push(caps);
  handler.capPrefetch = caps;
  return caps;
}

export interface SharedStateParts {
  client?: LearningClient;
  hub?: LearningHub;
  redis?: Redis;
  redisCaps?: RedisCaps;
  redisLearning?: RedisLearningSync;
  handler?: BidHandler;
}

/** Prometheus view of the shared state: plain numbers read at scrape time. */
export function registerSharedStateMetrics(registry: client.Registry, parts: SharedStateParts): void {
  const registers = [registry];
  const { client: lc, hub, redis, redisCaps, redisLearning, handler } = parts;
  if (lc) {
    new client.Counter({
      name: 'segbid_learning_syncs_total',
      help: 'Learning syncs of this thread with its hub: batches sent, totals applied, totals stale (config swapped meanwhile)',
      labelNames: ['result'],
      registers,
      collect() {
        this.reset();
        this.inc({ result: 'sent' }, lc.stats.batches);
        this.inc({ result: 'applied' }, lc.stats.applied);
        this.inc({ result: 'stale' }, lc.stats.stale);
      },
    });
  }
  if (hub) {
    new client.Gauge({
      name: 'segbid_learning_hub_fields',
      help: 'Counters held by the learning hub (strategies, creatives, shading bins, allocator arms)',
      registers,
      collect() {
        this.set(hub.fields);
      },
    });
  }
  if (handler) {
    new client.Counter({
      name: 'segbid_cap_lock_steals_total',
      help: 'Cap table set locks taken over from a thread that held them too long (a dead worker)',
      registers,
      collect() {
        this.reset();
        this.inc(handler.current.plan.caps.lockSteals);
      },
    });
  }
  if (redis) {
    new client.Gauge({
      name: 'segbid_shared_state_redis_up',
      help: 'Ready Redis connections of the shared caps and learning (one per thread that holds one; 0: decisions are local-only)',
      registers,
      collect() {
        this.set(redis.status === 'ready' ? 1 : 0);
      },
    });
  }
  if (redisCaps) {
    new client.Counter({
      name: 'segbid_shared_caps_redis_total',
      help: 'Frequency-cap Redis operations: write-through and prefetch, by result (skipped_down: Redis not connected, decided on local data)',
      labelNames: ['op', 'result'],
      registers,
      collect() {
        this.reset();
        const s = redisCaps.stats;
        this.inc({ op: 'write', result: 'sent' }, s.writes);
        this.inc({ op: 'write', result: 'error' }, s.writeErrors);
        this.inc({ op: 'prefetch', result: 'sent' }, s.prefetches);
        this.inc({ op: 'prefetch', result: 'hit' }, s.prefetchHits);
        this.inc({ op: 'prefetch', result: 'error' }, s.prefetchErrors);
        this.inc({ op: 'prefetch', result: 'shed' }, s.shed);
        this.inc({ op: 'any', result: 'skipped_down' }, s.skippedDown);
      },
    });
  }
  if (redisLearning) {
    new client.Counter({
      name: 'segbid_shared_learning_redis_total',
      help: 'Learning syncs with Redis by result (ok, error, skipped_down, epoch_reset)',
      labelNames: ['result'],
      registers,
      collect() {
        this.reset();
        const s = redisLearning.stats;
        this.inc({ result: 'ok' }, s.syncs);
        this.inc({ result: 'error' }, s.errors);
        this.inc({ result: 'skipped_down' }, s.skippedDown);
        this.inc({ result: 'epoch_reset' }, s.epochResets);
      },
    });
  }
}

function connect(url: string, name: string): Redis {
  return createRedisConnection(url, { name });
}

export interface SharedState {
  parts: SharedStateParts;
  close(): void;
}

/** The single-threaded bidder: its own hub, Redis optional. */
export function startSharedStateSingle(handler: BidHandler, registry: client.Registry, redisUrl?: string | null): SharedState {
  const lc = attachLearningClient(handler);
  // Sparse deltas here too: a dense one walks every field of the layout each second (650,000 on a 1,000 line item
  // config, 2-4 ms of the bid thread), a sparse one only the counters and the shading keys with new outcomes.
  lc.sparse = true;
  const hub = new LearningHub();
  const parts: SharedStateParts = { client: lc, hub, handler };
  // The first sync registers the whole layout in the hub (~650,000 fields on a 1,000 line item config: 100-150 ms
  // measured on the bid thread, the longest hold of a fresh bidder). Done here, during start-up, before the bid port
  // listens, instead of by the timer in the first second of traffic. The later syncs are sparse.
  syncInProcess(lc, hub, Date.now());
  const stops = [startInProcessLearningSync(lc, hub)];
  if (redisUrl) {
    parts.redis = connect(redisUrl, 'segbid-shared-state');
    parts.redisCaps = attachRedisCaps(handler, parts.redis);
    parts.redisLearning = new RedisLearningSync(hub, parts.redis);
    stops.push(parts.redisLearning.start());
  }
  registerSharedStateMetrics(registry, parts);
  return {
    parts,
    close: () => {
      for (const s of stops) s();
      parts.redis?.disconnect();
    },
  };
}

/* ---------------------------------------------------------------- cluster */

/** `since`: the hub version of the totals the worker applied last (-1: send them whole). */
export type LearnMessage = { type: 'learn'; seq: number; batches: LearningBatch[]; since?: number };
/** `at`: totals of those layout fields only (changed since `since`); `version`: what they bring the worker to. */
export type LearnedMessage = { type: 'learned'; seq: number; layout: string; totals: Float64Array | null; at?: Int32Array; version?: number; unknown: string[] };

/** Worker side: sends its deltas every second (one in flight at a time), applies the totals that come back. */
export function startWorkerLearning(handler: BidHandler, registry: client.Registry, post: (m: LearnMessage) => void, redisUrl?: string | null): SharedState & { onLearned(m: LearnedMessage): void } {
  const lc = attachLearningClient(handler);
  // Over postMessage: only what changed travels (see LearningClient.sparse).
  lc.sparse = true;
  const parts: SharedStateParts = { client: lc, handler };
  let seq = 0;
  let inFlight = 0;
  let sentAt = 0;
  const timer = setInterval(() => {
    // A lost answer (main thread busy) must not stop the syncs: resend after 5 periods.
    if (inFlight !== 0 && Date.now() - sentAt < 5 * LEARNING_SYNC_MS) return;
    inFlight = ++seq;
    sentAt = Date.now();
    post({ type: 'learn', seq, batches: lc.collect(), since: lc.since });
  }, LEARNING_SYNC_MS);
  timer.unref();
  if (redisUrl) {
    parts.redis = connect(redisUrl, 'segbid-shared-caps');
    parts.redisCaps = attachRedisCaps(handler, parts.redis);
  }
  registerSharedStateMetrics(registry, parts);
  return {
    parts,
    onLearned(m: LearnedMessage): void {
      if (m.seq === inFlight) inFlight = 0;
      lc.forget(m.unknown);
      if (m.totals !== null) lc.apply(m.layout, m.totals, m.at, m.version ?? -1);
    },
    close: () => {
      clearInterval(timer);
      parts.redis?.disconnect();
    },
  };
}

/** Main thread of a cluster: the hub every worker syncs with; Redis optional. */
export function startClusterHub(registry: client.Registry, redisUrl?: string | null): SharedState & { onLearn(m: LearnMessage): LearnedMessage } {
  const hub = new LearningHub();
  const parts: SharedStateParts = { hub };
  const stops: (() => void)[] = [];
  const decay = setInterval(() => hub.decay(Date.now()), LEARNING_SYNC_MS);
  decay.unref();
  stops.push(() => clearInterval(decay));
  if (redisUrl) {
    parts.redis = connect(redisUrl, 'segbid-shared-learning');
    parts.redisLearning = new RedisLearningSync(hub, parts.redis);
    stops.push(parts.redisLearning.start());
  }
  registerSharedStateMetrics(registry, parts);
  return {
    parts,
    onLearn(m: LearnMessage): LearnedMessage {
      const unknown = hub.merge(m.batches);
      // The worker's current layout is the one of its last batch.
      const layout = m.batches.length > 0 ? m.batches[m.batches.length - 1].layout : '';
      const t = hub.totalsSince(layout, m.since ?? -1);
      return { type: 'learned', seq: m.seq, layout, totals: t?.totals ?? null, at: t?.at, version: t?.version, unknown };
    },
    close: () => {
      for (const s of stops) s();
      parts.redis?.disconnect();
    },
  };
}
