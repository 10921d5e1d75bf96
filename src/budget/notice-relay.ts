/**
 * Budget notices between bidder processes (`--redis URL`): a win or billing notice that reaches another process
 * than the one that bid is sent, through Redis, to the process that holds its reservation, and settled there.
 *
 * Why: an exchange sends its notices to the bidder's public address, and the load balancer picks any instance.
 * The instance that bid holds the reservation; another one cannot settle it. Booked there as unknown (capped at
 * its own grant, usually nothing), the money was spent but counted nowhere, while the reservation where the bid
 * was made expired at its TTL and went back into that process's grant to be bid again: every TTL, the
 * cross-routed notices' worth of overspend (measured: 2.8x the budget in 25 s with a 3 s TTL).
 *
 * Who owns a notice: the bid id's first 8 characters name the thread that minted it (src/openrtb/response.ts
 * bidIdOwner: 6 characters of the process, 2 of the worker), so a notice for another process is known at once.
 * Notices between the workers of one process still go through the main thread (bank-threads.ts).
 *
 * Contract:
 *   - send(owner, notice): never blocks, never throws; queued and pushed on the next tick (every `tickMs`) with
 *     RPUSH onto `segbid:notices:{<owner>}` (each push renews the key's TTL: an owner that is gone lets it expire,
 *     its grant stays counted as spent at the bank, so nothing is lost to the budget).
 *   - Each tick also reads this process's own list: LRANGE then LTRIM of what was read (only its owner consumes
 *     a list, producers only append), so a reply lost to a timeout re-reads the same notices rather than losing
 *     them; a notice applied twice that way (or pushed twice by a retry) is dropped by a dedupe of the last
 *     `dedupeMax` (kind, bid id).
 *   - Redis down: the queue waits (up to `maxQueued` notices; beyond, the oldest is settled here as unknown, as
 *     before, and counted `dropped`) and goes out when Redis is back. The bound this leaves (README, "Running in
 *     production"): a cross-routed notice still queued when its reservation expires (the reservation TTL, default
 *     120 s, so an outage of Redis longer than that) is booked as unknown where it lands at last.
 */
import type { Redis } from 'ioredis';
import { LRUCache } from 'lru-cache';
import type { ForwardedNotice } from './bank-threads.js';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ownerOfBidId, randomProcessTag, sameProcess } from '../openrtb/response.js';

export function noticeListKey(owner: string): string {
  return `segbid:notices:{${owner}}`;
}

export interface NoticeRelayOptions {
  tickMs?: number;
  /** Notices kept while Redis cannot take them; beyond, the oldest is settled where it landed (`fallback`). */
  maxQueued?: number;
  /** TTL of a list, renewed by each push: longer than any reservation TTL. */
  listTtlMs?: number;
  /** Notices read per LRANGE, and at most `batches` of them per tick. */
  batch?: number;
  batches?: number;
  dedupeMax?: number;
  timer?: boolean;
}

export type RelayOutcome = 'sent' | 'received' | 'duplicate' | 'dropped' | 'push_failed' | 'read_failed';

export class RedisNoticeRelay {
  readonly own: string;
  private readonly redis: Redis;
  private readonly apply: (n: ForwardedNotice) => void;
  private readonly fallback: (n: ForwardedNotice) => void;
  private readonly maxQueued: number;
  private readonly listTtlMs: number;
  private readonly batch: number;
  private readonly batches: number;
  private readonly seen: LRUCache<string, true>;
  private queue: { owner: string; notice: ForwardedNotice }[] = [];
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  private closed = false;
  readonly totals: Record<RelayOutcome, number> = { sent: 0, received: 0, duplicate: 0, dropped: 0, push_failed: 0, read_failed: 0 };

  /**
   * `own`: this thread's owner tag (bidIdOwner()); `apply`: settles a notice here (BidHandler.applyNotice);
   * `fallback`: settles one that cannot be sent (the queue is full) where it landed, as unknown.
   */
  constructor(redis: Redis, own: string, apply: (n: ForwardedNotice) => void, fallback: (n: ForwardedNotice) => void, options: NoticeRelayOptions = {}) {
    this.redis = redis;
    this.own = own;
    this.apply = apply;
    this.fallback = fallback;
    this.maxQueued = options.maxQueued ?? 100_000;
    this.listTtlMs = options.listTtlMs ?? 3_600_000;
    this.batch = options.batch ?? 500;
    this.batches = options.batches ?? 20;
    this.seen = new LRUCache({ max: options.dedupeMax ?? 100_000 });
    if (options.timer !== false) {
      this.timer = setInterval(() => void this.tick(), options.tickMs ?? 100);
      this.timer.unref();
    }
  }

  get queued(): number {
    return this.queue.length;
  }

  send(owner: string, notice: ForwardedNotice): void {
    if (this.queue.length >= this.maxQueued) {
      const oldest = this.queue.shift()!;
      this.totals.dropped++;
      this.fallback(oldest.notice);
    }
    this.queue.push({ owner, notice });
  }

  /** One round: push what is queued, then read this thread's list. Rounds never overlap. */
  async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      await this.push();
      await this.read();
    } finally {
      this.busy = false;
    }
  }

  private async push(): Promise<void> {
    if (this.queue.length === 0 || this.redis.status !== 'ready') return;
    const out = this.queue;
    this.queue = [];
    const byOwner = new Map<string, string[]>();
    for (const { owner, notice } of out) {
      let list = byOwner.get(owner);
      if (list === undefined) byOwner.set(owner, (list = []));
      list.push(JSON.stringify(notice));
    }
    const pipeline = this.redis.pipeline();
    for (const [owner, items] of byOwner) {
      pipeline.rpush(noticeListKey(owner), ...items);
      pipeline.pexpire(noticeListKey(owner), this.listTtlMs);
    }
    try {
      const results = await pipeline.exec();
      if (results === null || results.some(([e]) => e !== null)) throw new Error('notice push failed');
      this.totals.sent += out.length;
    } catch {
      // Back to the front, in order (a push that ran anyway is deduped by its owner).
      this.totals.push_failed++;
      this.queue = out.concat(this.queue);
      while (this.queue.length > this.maxQueued) {
        this.totals.dropped++;
        this.fallback(this.queue.shift()!.notice);
      }
    }
  }

  private async read(): Promise<void> {
    if (this.redis.status !== 'ready') return;
    const key = noticeListKey(this.own);
    for (let b = 0; b < this.batches; b++) {
      let items: string[];
      try {
        items = await this.redis.lrange(key, 0, this.batch - 1);
      } catch {
        this.totals.read_failed++;
        return;
      }
      for (const text of items) this.deliver(text);
      if (items.length === 0) return;
      try {
        await this.redis.ltrim(key, items.length, -1);
      } catch {
        this.totals.read_failed++; // read again next time: deduped
        return;
      }
      if (items.length < this.batch) return;
    }
  }

  private deliver(text: string): void {
    let n: ForwardedNotice;
    try {
      n = JSON.parse(text) as ForwardedNotice;
    } catch {
      return;
    }
    if (typeof n !== 'object' || n === null || typeof n.bidId !== 'string' || (n.kind !== 'win' && n.kind !== 'bill' && n.kind !== 'loss')) return;
    const key = n.kind + '|' + n.bidId;
    if (this.seen.has(key)) {
      this.totals.duplicate++;
      return;
    }
    this.seen.set(key, true);
    this.totals.received++;
    this.apply(n);
  }

  /** Stops the timer after a last round (what is queued goes out if Redis takes it; this list is read once more). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearInterval(this.timer);
    for (let i = 0; i < 100 && this.busy; i++) await new Promise((r) => setTimeout(r, 10));
    await this.tick();
    // Whatever could not go out is settled here, as unknown: better counted twice than not at all.
    for (const { notice } of this.queue) this.fallback(notice);
    this.totals.dropped += this.queue.length;
    this.queue = [];
  }
}

/**
 * Where a budget notice with a reservation settles (BidHandler.noticeRouter): `route` returns true when it sent
 * the notice on (to another worker of this process, or through Redis to another process), false when it settles
 * here. `own`: this thread's owner tag; `toWorker`: the main thread's forwarding to the worker that minted the
 * handle (null without workers), which returns false when that worker is this one; `relay`: null without Redis
 * (a notice for another process then settles here as unknown, as it always did).
 */
export class NoticeRouter {
  constructor(
    private readonly own: string,
    private readonly toWorker: ((notice: ForwardedNotice, handle: number) => boolean) | null,
    private readonly relay: RedisNoticeRelay | null,
  ) {}

  route(notice: ForwardedNotice, handle: number): boolean {
    const owner = ownerOfBidId(notice.bidId);
    if (owner === this.own) return false;
    if (this.relay !== null && owner !== '' && !sameProcess(owner, this.own)) {
      this.relay.send(owner, notice);
      return true;
    }
    return this.toWorker !== null && this.toWorker(notice, handle);
  }
}

/**
 * The process tag of a bidder (src/openrtb/response.ts): kept in its state directory when it has one, so that a
 * restarted process still owns the bids of its previous run (their reservations come back with its ledger, and
 * their notices must come back to it); random otherwise (a process without state starts with no reservation).
 */
export function processTagFor(stateDir: string | null | undefined): string {
  if (!stateDir) return randomProcessTag();
  const file = join(stateDir, 'owner-tag');
  try {
    const tag = readFileSync(file, 'utf8').trim();
    if (/^[0-9a-z]{6}$/.test(tag)) return tag;
  } catch {
    // first start in this directory
  }
  const tag = randomProcessTag();
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(file, tag + '\n');
  return tag;
}
