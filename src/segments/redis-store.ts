/**
 * A Redis-backed segment store, for user bases too big (or changing too often) for every bidder process to
 * hold the file store in memory.
 *
 * Layout (written by `segbid compile --to-redis URL`, writeStoreToRedis below):
 *   sgb:<hi>:<lo>   the user's segment row: little-endian u32 words, trailing zero words trimmed (a known user
 *                   in no segment is the empty string, which is not the same as an absent key)
 *   sgb:header      msgpackr of {format, words, segments, lookalikes, userCount, keyCount, createdAt}, written
 *                   LAST, so a reader that sees a header sees a complete fill
 * <hi>/<lo> are the unsigned decimal lanes of the key hash (src/segments/key-hash.ts), as in the file store.
 * A recompile overwrites keys; keys of users who left the CRM stay until their TTL (--redis-ttl) or a flush.
 *
 * CONTRACT of RedisSegmentStore.lookup(keys, budgetMs) for the async part of the HTTP bid path:
 *   - `keys`: the request's key hashes (buyeruid, user.id, ifa, eids), computed as decide.ts computes them;
 *   - resolves (never rejects) within budgetMs (+ timer jitter), to:
 *       Uint32Array(words)  the OR of the rows of the keys found: a known user (possibly all zero),
 *       null                no key known, or Redis slow / down / overloaded with nothing cached for these keys;
 *     treat null as an unknown user and bid on request-time segments only. When Redis fails but some keys are
 *     in the cache, the cached rows are returned (stale-while-down);
 *   - answers from the lru-cache without touching Redis when every key is cached (positive entries live
 *     positiveTtlMs, negative ones negativeTtlMs: a new CRM user shows up within that delay);
 *   - a reply that arrives after the deadline still fills the cache for the next request of that user;
 *   - the returned array is fresh (the caller may keep or mutate it); the lookup allocates (strings, promise,
 *     timer): it is for the async path, not the synchronous decision loop;
 *   - stats count lookups: hits (some key known), misses (none known, Redis answered), timeouts, errors
 *     (Redis down or failing), shed (too many lookups in flight), cacheHits (answered from the cache alone).
 * The client never queues commands while disconnected (enableOfflineQueue: false), never retries a command
 * (maxRetriesPerRequest: 0) and reconnects in the background; close() stops it.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { LRUCache } from 'lru-cache';
import { pack, unpack } from 'msgpackr';
import { STORE_FORMAT_VERSION, type SegmentStore, type StoreHeader } from './segment-store.js';

export const REDIS_KEY_PREFIX = 'sgb:';
export const REDIS_HEADER_KEY = 'sgb:header';

export function redisKey(hi: number, lo: number): string {
  return `${REDIS_KEY_PREFIX}${hi >>> 0}:${lo >>> 0}`;
}

/** A row as bytes: little-endian words, trailing zero words dropped. */
export function packRow(row: Uint32Array): Buffer {
  let used = row.length;
  while (used > 0 && row[used - 1] === 0) used--;
  const out = Buffer.alloc(used * 4);
  for (let w = 0; w < used; w++) out.writeUInt32LE(row[w], w * 4);
  return out;
}

/** ORs a packed row into `out`; extra words beyond out.length (a wider store) and a partial word are ignored. */
export function orPackedRow(bytes: Buffer, out: Uint32Array): void {
  const words = Math.min(out.length, bytes.length >>> 2);
  for (let w = 0; w < words; w++) out[w] |= bytes.readUInt32LE(w * 4);
}

export interface RedisHeader extends Omit<StoreHeader, 'rowCount' | 'capacity'> {
  format: number;
}

export interface WriteToRedisOptions {
  /** Expire every key after this many seconds (0 / absent: no expiry). */
  ttlSeconds?: number;
  /** Keys per MSET / pipeline (default 1000) and batches in flight (default 8). */
  batch?: number;
  inFlight?: number;
  connectTimeoutMs?: number;
  onProgress?: (written: number, total: number) => void;
}

/** Fills Redis from a compiled store: every key, then the header. Rejects when Redis is unreachable. */
export async function writeStoreToRedis(store: SegmentStore, url: string, options: WriteToRedisOptions = {}): Promise<{ keys: number; ms: number }> {
  const started = performance.now();
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: options.connectTimeoutMs ?? 3000,
    maxRetriesPerRequest: 1,
    retryStrategy: () => null, // a batch job fails loudly instead of retrying forever
  });
  let lastError: Error | null = null;
  client.on('error', (e: Error) => {
    lastError = e; // the rejected command says "Connection is closed"; this says why
  });
  try {
    await client.connect();
    const packed: Buffer[] = [];
    for (let r = 0; r < store.header.rowCount; r++) packed.push(packRow(store.rowWords(r)));
    const batch = options.batch ?? 1000;
    const maxInFlight = options.inFlight ?? 8;
    const ttl = options.ttlSeconds ?? 0;
    const total = store.header.keyCount;
    // The keys in typed arrays first: forEachKey is synchronous, the writes are not.
    const keyHi = new Uint32Array(total);
    const keyLo = new Uint32Array(total);
    const keyRow = new Uint32Array(total);
    let count = 0;
    store.forEachKey((hi, lo, row) => {
      keyHi[count] = hi;
      keyLo[count] = lo;
      keyRow[count++] = row;
    });
    // One MSET of `batch` keys per round trip (about 4x faster than pipelined SETs); SET .. EX when a TTL is
    // asked, since MSET cannot expire. A few batches in flight keep the connection busy.
    const inFlight: Promise<unknown>[] = [];
    for (let from = 0; from < count; from += batch) {
      const to = Math.min(count, from + batch);
      let write: Promise<unknown>;
      if (ttl > 0) {
        const pipeline = client.pipeline();
        for (let k = from; k < to; k++) pipeline.set(redisKey(keyHi[k], keyLo[k]), packed[keyRow[k]], 'EX', ttl);
        write = pipeline.exec().then((results) => {
          for (const [err] of results ?? []) if (err) throw err;
        });
      } else {
        const args: (string | Buffer)[] = [];
        for (let k = from; k < to; k++) args.push(redisKey(keyHi[k], keyLo[k]), packed[keyRow[k]]);
        write = client.mset(args);
      }
      write.catch(() => {}); // a batch failing while we await an earlier one must not be an unhandled rejection
      inFlight.push(write);
      if (inFlight.length >= maxInFlight) await inFlight.shift();
      options.onProgress?.(to, count);
    }
    await Promise.all(inFlight);
    const { rowCount: _r, capacity: _c, ...rest } = store.header;
    const header: RedisHeader = { format: STORE_FORMAT_VERSION, ...rest };
    await client.set(REDIS_HEADER_KEY, pack(header));
    return { keys: count, ms: performance.now() - started };
  } catch (e) {
    const cause = lastError as Error | null;
    const why = cause && cause.message !== (e as Error).message ? ` (${cause.message})` : '';
    throw new Error(`writing the segment store to Redis ${redactUrl(url)} failed: ${(e as Error).message}${why}`);
  } finally {
    client.disconnect();
  }
}

function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}

export interface RedisStoreOptions {
  url: string;
  /** Bitset width in 32-bit words (the segmentation dictionary's). */
  words: number;
  /** Cached keys, positive and negative together (default 200k). */
  cacheMax?: number;
  positiveTtlMs?: number;
  negativeTtlMs?: number;
  connectTimeoutMs?: number;
  /** Lookups waiting on Redis at once; beyond this, lookups answer from the cache only (default 2000). */
  maxInFlight?: number;
  /** Extra ioredis options (tests). */
  redis?: Partial<RedisOptions>;
}

export interface RedisStoreStats {
  lookups: number;
  hits: number;
  misses: number;
  timeouts: number;
  errors: number;
  shed: number;
  cacheHits: number;
}

/** Negative cache entry: "Redis said this key is absent". */
const ABSENT = new Uint32Array(0);

export class RedisSegmentStore {
  readonly words: number;
  readonly stats: RedisStoreStats = { lookups: 0, hits: 0, misses: 0, timeouts: 0, errors: 0, shed: 0, cacheHits: 0 };
  private readonly client: Redis;
  private readonly cache: LRUCache<string, Uint32Array>;
  private readonly negativeTtlMs: number;
  private readonly maxInFlight: number;
  private inFlight = 0;
  private closed = false;

  constructor(options: RedisStoreOptions) {
    this.words = options.words;
    this.negativeTtlMs = options.negativeTtlMs ?? 30_000;
    this.maxInFlight = options.maxInFlight ?? 2000;
    this.cache = new LRUCache<string, Uint32Array>({ max: options.cacheMax ?? 200_000, ttl: options.positiveTtlMs ?? 300_000 });
    this.client = new Redis(options.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: options.connectTimeoutMs ?? 500,
      // A command stuck on a frozen server is dropped after a while so in-flight lookups do not pile up.
      commandTimeout: 2000,
      retryStrategy: (times) => Math.min(50 * times, 2000),
      ...options.redis,
    });
    this.client.on('error', () => {
      // Connection errors are expected while Redis is down; lookups count them as they fail.
    });
  }

  /** Whether the connection is up (lookups may still time out on a slow server). */
  get ready(): boolean {
    return this.client.status === 'ready';
  }

  /** Resolves when connected, or false after timeoutMs. */
  async waitReady(timeoutMs: number): Promise<boolean> {
    if (this.ready) return true;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.client.off('ready', onReady);
        resolve(false);
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.client.once('ready', onReady);
    });
  }

  /** The header written by the compiler, or null (absent, Redis down, or slower than budgetMs). */
  async readHeader(budgetMs: number): Promise<RedisHeader | null> {
    if (!this.ready) return null;
    const reply = this.client.getBuffer(REDIS_HEADER_KEY).then(
      (b) => (b === null ? null : (unpack(b) as RedisHeader)),
      () => null,
    );
    return race(reply, budgetMs, null);
  }

  /** See the contract at the top of the file. */
  lookup(keys: readonly { hi: number; lo: number }[], budgetMs: number): Promise<Uint32Array | null> {
    this.stats.lookups++;
    if (keys.length === 0) {
      this.stats.misses++;
      return Promise.resolve(null);
    }
    let result: Uint32Array | null = null;
    let missing: string[] | null = null;
    for (let i = 0; i < keys.length; i++) {
      const key = redisKey(keys[i].hi, keys[i].lo);
      const cached = this.cache.get(key);
      if (cached === undefined) (missing ??= []).push(key);
      else if (cached !== ABSENT) result = orRow(result, cached, this.words);
    }
    if (missing === null) {
      this.stats.cacheHits++;
      this.count(result);
      return Promise.resolve(result);
    }
    if (this.closed || !this.ready) {
      this.stats.errors++;
      return Promise.resolve(result);
    }
    if (this.inFlight >= this.maxInFlight) {
      this.stats.shed++;
      return Promise.resolve(result);
    }
    const partial = result;
    const requested = missing;
    this.inFlight++;
    const fetched = this.client.mgetBuffer(requested).then(
      (replies) => {
        let out: Uint32Array | null = partial === null ? null : partial.slice();
        for (let i = 0; i < requested.length; i++) {
          const bytes = replies[i];
          if (bytes === null || bytes === undefined) {
            this.cache.set(requested[i], ABSENT, { ttl: this.negativeTtlMs });
            continue;
          }
          const row = new Uint32Array(this.words);
          orPackedRow(bytes, row);
          this.cache.set(requested[i], row);
          out = orRow(out, row, this.words);
        }
        return { ok: true as const, out };
      },
      () => ({ ok: false as const, out: partial }),
    );
    fetched.finally(() => this.inFlight--).catch(() => {});
    return new Promise<Uint32Array | null>((resolve) => {
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        this.stats.timeouts++;
        resolve(partial);
      }, budgetMs);
      fetched.then((r) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (r.ok) this.count(r.out);
        else this.stats.errors++;
        resolve(r.out);
      });
    });
  }

  private count(result: Uint32Array | null): void {
    if (result === null) this.stats.misses++;
    else this.stats.hits++;
  }

  /** Drops every cached entry (e.g. after a recompile). */
  clearCache(): void {
    this.cache.clear();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.client.disconnect();
  }
}

function orRow(into: Uint32Array | null, row: Uint32Array, words: number): Uint32Array {
  const out = into ?? new Uint32Array(words);
  for (let w = 0; w < words; w++) out[w] |= row[w];
  return out;
}

function race<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  return new Promise<T>((resolve) => {
    const timer = setTimeout(() => resolve(fallback), ms);
    p.then((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}
