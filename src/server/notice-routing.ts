/**
 * Wires a bidder thread's budget notices (src/budget/notice-relay.ts): its owner tag (the prefix of the bid ids
 * it mints), the forwarding to the other workers of its process, and with `--redis` the relay to other
 * processes, with its counters (`segbid_notice_relay_total{outcome}`, `segbid_notice_relay_queued`).
 */
import client from 'prom-client';
import type { BidHandler } from '../bidding/bid-handler.js';
import type { ForwardedNotice } from '../budget/bank-threads.js';
import { NoticeRouter, RedisNoticeRelay } from '../budget/notice-relay.js';
import { createRedisConnection } from '../redis/connection.js';
import { setBidIdOwner } from '../openrtb/response.js';
import type { Metrics } from '../metrics/metrics.js';

export interface NoticeRouting {
  readonly relay: RedisNoticeRelay | null;
  /** Sends what is queued, reads this thread's list once more, and closes the Redis connection. */
  close(): Promise<void>;
}

export function startNoticeRouting(o: {
  handler: BidHandler;
  metrics: Metrics;
  /** This thread's owner tag (response.ts ownerTag). */
  own: string;
  redisUrl: string | null;
  /** The workers' forwarding through the main thread (false: the handle is this worker's); null: no workers. */
  toWorker: ((notice: ForwardedNotice, handle: number) => boolean) | null;
}): NoticeRouting {
  setBidIdOwner(o.own);
  const handler = o.handler;
  let relay: RedisNoticeRelay | null = null;
  let redis: ReturnType<typeof createRedisConnection> | null = null;
  if (o.redisUrl) {
    redis = createRedisConnection(o.redisUrl, { name: 'segbid-notice-relay' });
    // Settled where it landed, as unknown (no handle: a foreign handle could match one of this ledger's own).
    const unknownHere = (n: ForwardedNotice) => handler.applyNotice({ ...n, bidId: '' });
    relay = new RedisNoticeRelay(redis, o.own, (n) => handler.applyNotice(n), unknownHere);
    const r = relay;
    o.metrics.addTotalsCounter('segbid_notice_relay_total', 'Budget notices between processes through Redis, by outcome', 'outcome', () => r.totals);
    new client.Gauge({
      name: 'segbid_notice_relay_queued',
      help: 'Budget notices waiting for Redis to take them',
      registers: [o.metrics.registry],
      collect() {
        this.set(r.queued);
      },
    });
  }
  handler.noticeRouter = relay === null && o.toWorker === null ? null : new NoticeRouter(o.own, o.toWorker, relay);
  return {
    relay,
    async close() {
      await relay?.close();
      if (redis !== null) {
        try {
          await redis.quit();
        } catch {
          redis.disconnect();
        }
      }
    },
  };
}
