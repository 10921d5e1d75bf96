/**
 * The Redis segment store in the bid path (`segbid serve --segments-redis URL`): a request whose user keys are
 * all unknown to the local file store waits for a Redis lookup (src/segments/redis-store.ts) before it is
 * decided; every other request stays fully synchronous.
 *
 * How it plugs into BidHandler.handle without touching the decision:
 *   1. first pass (synchronous): after validation, handle() asks `wants(request, decider)`. It says yes only
 *      when the request may use personal data (the privacy gate, cached per consent string), has a tmax the
 *      decision would accept, carries at least one user key, and NONE of its keys is in the local store; it
 *      then starts the lookup (the `pending` promise) and handle() returns without deciding;
 *   2. second pass, when the lookup resolves (within its budget, never rejects): `resume` sets the Redis row
 *      (or null: timeout, Redis down, unknown user) as the local store's `remoteRow` around one synchronous
 *      handle() of the same body, so decide.ts reads it through SegmentStore.orInto like a local row. The
 *      second pass is not deferred again (`resuming`).
 * The user keys are hashed exactly as decide.ts's userSegments does (buyeruid, user.id, eids of user.eids or
 * user.ext.eids with the same caps, device.ifa), so Redis is asked for the keys the decision would probe.
 *
 * Budget per lookup: min(configured, tmax / 4), tmax from the request or the bidder's defaultTmaxMs: the answer
 * still has most of tmax left when Redis is slow. Outcomes (hit, miss, timeout, error, shed, cache hits) are
 * counted by the RedisSegmentStore's stats, which the metrics read at scrape time.
 *
 * The first pass allocates nothing until it knows a lookup is needed (hashes go to a preallocated scratch
 * array); the lookup itself allocates (key objects, strings, a promise, a timer): it is the async path.
 */
import { MAX_USER_KEYS, UserKeys } from './user-keys.js';
import { RedisSegmentStore, type RedisStoreOptions } from './redis-store.js';
import { STORE_FORMAT_VERSION, type SegmentStore } from './segment-store.js';
import type { SegmentDictionary } from './segmentation.js';
import { PrivacyVerdict } from '../privacy/verdict.js';
import { SegbidError } from '../common/errors.js';

/* The request as validated by src/openrtb/validate.ts; fields are type-checked again where read. */
type Any = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const MAX_KEYS = MAX_USER_KEYS;

/** What the first pass reads of the current Decider (structural, so this module does not import the decision). */
export interface RemoteDeciderView {
  readonly store: SegmentStore;
  readonly config: { readonly settings: { readonly defaultTmaxMs: number; readonly minTmaxMs: number } };
  readonly plan: { readonly privacy: { evaluate(req: Any, out: PrivacyVerdict): PrivacyVerdict } };
}

export interface RemoteSegmentsOptions {
  /** Upper bound of one lookup's budget (ms); the per-request budget is min(this, tmax / 4). */
  budgetMs: number;
}

export class RemoteSegments {
  readonly redis: RedisSegmentStore;
  readonly budgetMs: number;
  /** Requests deferred for a lookup (the store's stats count the lookups' outcomes). */
  deferred = 0;
  private readonly verdict = new PrivacyVerdict();
  private readonly keys = new UserKeys();
  private readonly hi = new Uint32Array(MAX_KEYS);
  private readonly lo = new Uint32Array(MAX_KEYS);
  private count = 0;
  private pending: Promise<Uint32Array | null> | null = null;
  private resuming = false;

  constructor(redis: RedisSegmentStore, options: RemoteSegmentsOptions) {
    this.redis = redis;
    this.budgetMs = options.budgetMs;
  }

  /** The budget of one lookup for a request with this tmax (ms). */
  budgetFor(tmaxMs: number): number {
    return Math.max(1, Math.min(this.budgetMs, tmaxMs / 4));
  }

  /**
   * First pass: true when the request must wait for a Redis lookup, which is then started (takePending()).
   * False (nothing started, nothing allocated) for every request the synchronous path decides alone.
   */
  wants(req: Any, decider: RemoteDeciderView): boolean {
    if (this.resuming) return false;
    const store = decider.store;
    // A reload to another bitset width: Redis rows would not line up with the dictionary's bits.
    if (store.words !== this.redis.words) return false;
    const settings = decider.config.settings;
    const tmax = req.tmax === undefined ? settings.defaultTmaxMs : (req.tmax as number);
    if (!(tmax >= settings.minTmaxMs)) return false; // the decision answers insufficient_time
    if (!decider.plan.privacy.evaluate(req, this.verdict).personalData) return false; // the user is not looked up
    this.count = 0;
    if (this.collectKeys(req, store)) return false; // a local key: the file store knows the user
    if (this.count === 0) return false; // no key: an unknown user whatever Redis holds
    const keys: { hi: number; lo: number }[] = new Array(this.count);
    for (let k = 0; k < this.count; k++) keys[k] = { hi: this.hi[k], lo: this.lo[k] };
    this.deferred++;
    this.pending = this.redis.lookup(keys, this.budgetFor(tmax));
    return true;
  }

  /** The lookup started by the last wants() that said yes (once). */
  takePending(): Promise<Uint32Array | null> {
    const p = this.pending ?? Promise.resolve(null);
    this.pending = null;
    return p;
  }

  /** Second pass: runs `decide` (synchronous) with `row` as the remote row of `store`; never deferred again. */
  resume<T>(store: SegmentStore, row: Uint32Array | null, decide: () => T): T {
    this.resuming = true;
    store.remoteRow = row;
    try {
      return decide();
    } finally {
      store.remoteRow = null;
      this.resuming = false;
    }
  }

  /** Hashes the request's user keys (user-keys.ts) and keeps the ones the local store does not know; true as soon as one is known. */
  private collectKeys(req: Any, store: SegmentStore): boolean {
    const keys = this.keys;
    const n = keys.collect(req);
    for (let k = 0; k < n; k++) {
      if (store.rowOf(keys.hi[k], keys.lo[k]) >= 0) return true;
      this.hi[this.count] = keys.hi[k];
      this.lo[this.count] = keys.lo[k];
      this.count++;
    }
    return false;
  }
}

export interface ConnectRemoteOptions {
  /** Upper bound of one lookup's budget, ms (default DEFAULT_REMOTE_BUDGET_MS). */
  budgetMs?: number;
  /** How long the start waits for Redis (ms, default 1000); Redis down at start is a warning, not a failure. */
  connectWaitMs?: number;
  logger?: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
  /** Where the lookup outcomes are counted (the bidder's Metrics). */
  metrics?: { addTotalsCounter(name: string, help: string, label: string, totals: () => Readonly<Record<string, number>>): void };
  /** Extra RedisSegmentStore options (tests). */
  store?: Partial<RedisStoreOptions>;
}

export const DEFAULT_REMOTE_BUDGET_MS = 10;

/**
 * The RemoteSegments of `serve --segments-redis URL` for a bidder whose dictionary is `dictionary`. When Redis
 * answers and holds a header (written last by `segbid compile --to-redis`), its format must be this bidder's
 * (else SegbidError STORE_VERSION: keys hashed otherwise), its bitset width and segment ids the dictionary's
 * (else STORE_MISMATCH: bits would mean other segments). Redis down or without a header is logged and the
 * bidder starts anyway: lookups then count as errors / misses.
 */
export async function connectRemoteSegments(url: string, dictionary: SegmentDictionary, options: ConnectRemoteOptions = {}): Promise<RemoteSegments> {
  const redis = new RedisSegmentStore({ url, words: dictionary.words, ...options.store });
  const where = url.replace(/\/\/[^@/]*@/, '//***@');
  if (!(await redis.waitReady(options.connectWaitMs ?? 1000))) {
    options.logger?.warn({ redis: where }, 'segment store Redis unreachable at start: users it holds are unknown until it answers');
  } else {
    const header = await redis.readHeader(500);
    if (header === null) {
      options.logger?.warn({ redis: where }, 'segment store Redis has no header (sgb:header): was it filled by `segbid compile --to-redis`?');
    } else {
      if (header.format !== STORE_FORMAT_VERSION) {
        // Its keys are hashed as that format hashed them (before format 5, an upper-case device id as written):
        // served anyway, such users would silently go unknown.
        await redis.close();
        throw new SegbidError(
          'STORE_VERSION',
          `Redis segment store is of format ${String(header.format)}, this bidder reads format ${STORE_FORMAT_VERSION} (recompile it with \`segbid compile --to-redis\`)`,
        );
      }
      const ids = dictionary.segments.map((s) => s.id);
      let problem: string | null = null;
      if (header.words !== dictionary.words) {
        problem = `Redis segment store is ${header.words * 32} bits wide, the segmentation ${dictionary.words * 32}`;
      } else {
        const i = ids.findIndex((id, k) => header.segments[k] !== undefined && header.segments[k] !== id);
        if (i >= 0) problem = `Redis segment store bit ${i} is "${header.segments[i]}", the segmentation says "${ids[i]}"`;
      }
      if (problem !== null) {
        await redis.close();
        throw new SegbidError('STORE_MISMATCH', problem);
      }
      options.logger?.info({ redis: where, users: header.userCount, keys: header.keyCount, createdAt: header.createdAt }, 'segment store Redis connected');
    }
  }
  const remote = new RemoteSegments(redis, { budgetMs: options.budgetMs ?? DEFAULT_REMOTE_BUDGET_MS });
  const s = redis.stats;
  options.metrics?.addTotalsCounter(
    'segbid_segment_redis_lookups_total',
    'Redis segment store lookups for requests whose user keys the local store does not know, by outcome: hit (a key known), ' +
      'miss, timeout (over min(budget, tmax/4): decided as an unknown user), error (Redis down or failing), shed (too many in flight)',
    'outcome',
    () => ({ hit: s.hits, miss: s.misses, timeout: s.timeouts, error: s.errors, shed: s.shed }),
  );
  options.metrics?.addTotalsCounter(
    'segbid_segment_redis_cache_total',
    'Redis segment store lookups answered from the local lru-cache alone (hit or miss), without a round trip',
    'result',
    () => ({ cached: s.cacheHits }),
  );
  return remote;
}
