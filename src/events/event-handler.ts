/**
 * The event endpoints, transport-independent: win, billing and loss notices, the impression pixel, the click
 * redirect and the server-to-server conversion postback. The bid server routes `/ev/*` here.
 *
 *   handler.handle({ method, path, query, body, headers }, nowMs) -> { status, headers, body }
 *
 *   GET|POST /ev/win   ?t=TOKEN&p=${AUCTION_PRICE}&c=${AUCTION_CURRENCY}[&a=${AUCTION_ID}&i=${AUCTION_IMP_ID}]  204
 *   GET|POST /ev/bill  same as win                                                                          204
 *   GET|POST /ev/loss  ?t=TOKEN&r=${AUCTION_LOSS}&m=${AUCTION_MIN_TO_WIN}[&c=..]                            204
 *   GET|POST /ev/imp   ?t=CLIENT_TOKEN                                                            200 1x1 GIF
 *   GET|POST /ev/click ?t=CLIENT_TOKEN[&u=<landing url>]                                    302 to the landing
 *   POST     /ev/conv  JSON postback, authenticated by a shared secret header or an HMAC of the body     200 JSON
 *
 * Pipeline of a notice, in order: token authentic (MAC, key id) -> scope (exchange tokens for win/bill/loss,
 * client tokens for imp/click) -> config epoch known -> landing page allowed (click) -> age for the kind ->
 * auction/imp ids match the token when the exchange substituted them -> macros read (AUDIT answers without
 * counting) -> dedupe (bid id + kind) -> event log -> KPIs -> touch index -> outcome listeners.
 *
 * Status semantics: forged (bad_mac), unknown key, malformed -> 400/403; expired -> 410; from the future ->
 * 400; stale config -> 409; a REPLAY (same bid and kind, different values: someone altered a notice) -> 409.
 * A DUPLICATE (same bid and kind, same values: an exchange retrying) is answered like the first (204, GIF, 302)
 * and not counted again. Every answer is counted in EventStats by kind and result.
 *
 * `test=1` bids: their events are accepted, logged and deduplicated, never billable, kept out of the KPIs and
 * not passed to the listeners. Never throws for request content.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import { LRUCache } from 'lru-cache';
import type { CompiledConfig, CompiledCreative, CompiledLineItem } from '../config/compile.js';
import { KEY_KIND, hashEidKey, hashIfa, hashKey, keyHash } from '../segments/key-hash.js';
import { SegbidError } from '../common/errors.js';
import { TouchIndex, type Touch } from './attribution.js';
import { BidTally } from './bid-tally.js';
import { ExchangeTable, configEpoch, dealList } from './bid-context.js';
import type { EventLog, ReplayStats } from './event-log.js';
import { replayEventLog } from './event-log.js';
import { readCheckpoint, writeCheckpoint, type DedupeImageEntry, type HandlerImage } from './replay-checkpoint.js';
import { dedupeKey as sharedKey, type SharedDedupe } from './shared-dedupe.js';
import { EventStats, type EventKindLabel, type EventResult } from './event-stats.js';
import { KpiStore, OTHER, kpiReport, type KpiQuery, type KpiReport } from './kpis.js';
import { convertMicros, parseCode, parseMicros, readMacro, type MacroValue } from './macros.js';
import { parseExternalReport, reconcile, type ColumnMapping, type ReconcileOptions, type ReconcileResult } from './reconcile.js';
import { NO_DEAL, checkAge, emptyToken, hash32, userHex, verifyToken, type DecodedToken, type TokenFields, type TokenPair } from './token.js';
import type { Keyring } from './keyring.js';
import { TokenSigner } from './token.js';
import {
  NOTICE_KINDS,
  type BidRow,
  type ConversionRecord,
  type EventRecord,
  type NoticeKind,
  type NoticeRecord,
  type OutcomeContext,
  type OutcomeListener,
} from './types.js';

export interface EventRequest {
  method: string;
  /** e.g. `/ev/win` */
  path: string;
  /** The raw query string, with or without the leading `?`. */
  query: string;
  body?: string | Buffer;
  /** Lower-case header names. */
  headers?: Readonly<Record<string, string | undefined>>;
}

export interface EventResponse {
  status: number;
  headers: Record<string, string>;
  body: string | Buffer;
}

export type SpendOn = 'bill' | 'win';

export interface EventsConfig {
  /** Max token age per notice kind, seconds. */
  maxAgeSec: Record<NoticeKind, number>;
  /** Tokens stamped up to this far in the future are accepted (clocks of instances differ). */
  clockSkewSec: number;
  /**
   * Dedupe entries kept (LRU, each with a TTL of its kind's max age). Size it to the events of one max age
   * (e.g. wins per second x 3600); lru-cache allocates its tables up front (~40 bytes per slot) plus the
   * entries. An entry evicted early is counted (note dedupe_evicted): a late duplicate of it would count again.
   */
  dedupeMax: number;
  /** Users and click ids kept for attribution (LRU each; same memory remark as dedupeMax). */
  touchMax: number;
  /** Shared secret of conversion postbacks; null disables /ev/conv (answers 401). */
  conversionSecret: string | null;
  /** Which notice books spend: `bill` (burl, the default, per OpenRTB) or `win` for exchanges that send no burl. */
  spendOn: { default: SpendOn; byExchange: Record<string, SpendOn> };
  /** Allowed click-through domains per creative id (a host matches a domain or any subdomain of it). Default: the creative's adomain. */
  clickDomains: Record<string, string[]>;
  /** Landing page per creative id when the click URL has no `u`. Default: https://<first adomain>/ */
  landing: Record<string, string>;
  /** Query parameter carrying the click id (= bid id) appended to the landing URL; null = none. */
  clickIdParam: string | null;
  /** A click whose token expired still redirects (uncounted) rather than stranding the user on an error. */
  redirectExpiredClicks: boolean;
  maxConversionBodyBytes: number;
}

export const DEFAULT_EVENTS_CONFIG: EventsConfig = {
  maxAgeSec: { win: 3600, loss: 3600, bill: 6 * 3600, imp: 6 * 3600, click: 24 * 3600 },
  clockSkewSec: 300,
  dedupeMax: 250_000,
  touchMax: 250_000,
  conversionSecret: null,
  spendOn: { default: 'bill', byExchange: {} },
  clickDomains: {},
  landing: {},
  clickIdParam: 'sbclid',
  redirectExpiredClicks: false,
  maxConversionBodyBytes: 16 * 1024,
};

/** Completes a partial config; the conversion secret defaults to env SEGBID_CONV_SECRET. Throws EVENT_CONFIG_INVALID. */
export function eventsConfig(partial: Partial<EventsConfig> = {}, env: NodeJS.ProcessEnv = process.env): EventsConfig {
  const c: EventsConfig = {
    ...DEFAULT_EVENTS_CONFIG,
    ...partial,
    maxAgeSec: { ...DEFAULT_EVENTS_CONFIG.maxAgeSec, ...(partial.maxAgeSec ?? {}) },
    spendOn: { ...DEFAULT_EVENTS_CONFIG.spendOn, ...(partial.spendOn ?? {}) },
    conversionSecret: partial.conversionSecret !== undefined ? partial.conversionSecret : (env.SEGBID_CONV_SECRET ?? null),
  };
  for (const k of NOTICE_KINDS) {
    if (!(c.maxAgeSec[k] > 0)) throw new SegbidError('EVENT_CONFIG_INVALID', `events.maxAgeSec.${k} must be > 0`);
  }
  if (c.conversionSecret !== null && c.conversionSecret.length < 16) {
    throw new SegbidError('EVENT_CONFIG_INVALID', 'the conversion postback secret must be at least 16 characters');
  }
  if (c.clickIdParam !== null && !/^[A-Za-z0-9_.-]{1,32}$/.test(c.clickIdParam)) {
    throw new SegbidError('EVENT_CONFIG_INVALID', 'events.clickIdParam must be 1-32 characters [A-Za-z0-9_.-]');
  }
  return c;
}

export interface EventHandlerOptions {
  config: CompiledConfig;
  keyring: Keyring;
  events?: Partial<EventsConfig>;
  /** Default: a KpiStore with default KPI config over the config's segmentation. */
  kpis?: KpiStore;
  /** The durable log; null/absent = events counted live only (tests, dry runs). */
  log?: EventLog | null;
  listeners?: OutcomeListener[];
  /**
   * The dedupe shared by a cluster's workers (src/events/shared-dedupe.ts): a notice or conversion another worker
   * accepted within its window is a duplicate here too. Null: this handler's own window only.
   */
  sharedDedupe?: SharedDedupe | null;
}

const GIF_1X1 = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');
const NO_STORE = 'no-store, no-cache, must-revalidate, max-age=0';
/** Configs kept for in-flight tokens after reloads (a token names the config by epoch). */
const MAX_CONFIGS = 8;

interface DedupeEntry {
  /** What the first event said (price, loss reason); '' when it said nothing comparable. */
  fp: string;
  /** Expiry on the handler's clock (nowMs), so tests with a simulated clock behave like production. */
  until: number;
}

interface ConfigIndex {
  lineItem: Map<string, number>;
  creative: Map<string, number>;
}

/** What a notice's record fingerprint is, for telling a retry (same values) from a replay (altered values). */
function fingerprint(r: NoticeRecord): string {
  switch (r.k) {
    case 'win':
    case 'bill':
      return r.ps === 'macro' ? String(r.p) : '';
    case 'loss':
      return r.lr >= 0 || r.mw >= 0 ? `${r.lr}/${r.mw}` : '';
    default:
      return '';
  }
}

function isNotice(kind: string): kind is NoticeKind {
  return (NOTICE_KINDS as readonly string[]).includes(kind);
}

function hostAllowed(host: string, domains: readonly string[]): boolean {
  for (const raw of domains) {
    const d = raw.trim().toLowerCase().replace(/^\*?\.+/, '').replace(/\.+$/, '');
    if (d.length === 0) continue;
    if (host === d || (host.length > d.length && host.endsWith(d) && host.charCodeAt(host.length - d.length - 1) === 46)) return true;
  }
  return false;
}

/** The landing URL if it is an absolute http(s) URL on an allowed domain, else null (no open redirect). */
export function safeLanding(u: string, domains: readonly string[]): URL | null {
  if (u.length === 0 || u.length > 4096) return null;
  let url: URL;
  try {
    url = new URL(u); // no base: a relative or scheme-relative (`//evil`) URL throws
  } catch {
    return null;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return null;
  // Credentials in a landing URL are a phishing trick (`https://shop.example@evil`), never legitimate.
  if (url.username !== '' || url.password !== '') return null;
  return hostAllowed(url.hostname, domains) ? url : null;
}

/**
 * Whether an id read from a notice URL is the one the token carries (its hash32). Form decoding (URLSearchParams)
 * reads `+` as a space, but exchanges substitute ${AUCTION_ID} into the URL as it is, without encoding it: an id
 * such as "abc+def==" (base64-style ids are common) arrives as "abc def==". A decoded space is therefore also
 * tried as the `+` it may have been.
 */
function sameId(text: string, hash: number): boolean {
  return hash32(text) === hash || (text.indexOf(' ') !== -1 && hash32(text.replaceAll(' ', '+')) === hash);
}

export class EventHandler {
  readonly signer: TokenSigner;
  readonly kpis: KpiStore;
  readonly stats = new EventStats();
  /** From the config's `events` section; replaced when a swap changes that section (setConfig). */
  settings: EventsConfig;
  readonly exchanges: ExchangeTable;
  private readonly keyring: Keyring;
  private log: EventLog | null;
  private readonly listeners: OutcomeListener[];
  private current: CompiledConfig;
  private readonly configs = new Map<number, CompiledConfig>();
  private readonly indexes = new WeakMap<CompiledConfig, ConfigIndex>();
  private readonly dedupe: LRUCache<string, DedupeEntry>;
  private readonly conversions: LRUCache<string, number>;
  private readonly touches: TouchIndex;
  private readonly token: DecodedToken = emptyToken();
  private readonly conversionKey: Buffer | null;
  private readonly tally: BidTally;
  private readonly shared: SharedDedupe | null;
  private clock = 0;
  /** True while restore() replays a log. */
  private restoring = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(options: EventHandlerOptions) {
    this.settings = eventsConfig(options.events);
    this.keyring = options.keyring;
    this.signer = new TokenSigner(options.keyring);
    this.kpis = options.kpis ?? new KpiStore({}, options.config.dictionary.segments);
    this.exchanges = new ExchangeTable(this.kpis.config.exchanges);
    this.tally = new BidTally(this.exchanges);
    this.log = options.log ?? null;
    this.listeners = options.listeners ?? [];
    this.shared = options.sharedDedupe ?? null;
    this.current = options.config;
    this.setConfig(options.config);
    const maxAge = Math.max(...NOTICE_KINDS.map((k) => this.settings.maxAgeSec[k])) + this.settings.clockSkewSec;
    this.dedupe = new LRUCache<string, DedupeEntry>({
      max: this.settings.dedupeMax,
      ttl: maxAge * 1000,
      dispose: (value, _key, reason) => {
        // Evicted for room while still within its window: a later duplicate of it would count again.
        // (Not while a log is replayed: the worker that accepted those notices counted their evictions then.)
        if (reason === 'evict' && value.until > this.clock && !this.restoring) this.stats.note('dedupe_evicted');
      },
    });
    const attribution = this.kpis.config.attribution;
    const convTtlSec = Math.max(attribution.clickWindowSec, attribution.viewWindowSec, 1);
    this.conversions = new LRUCache<string, number>({ max: this.settings.dedupeMax, ttl: convTtlSec * 1000 });
    this.touches = new TouchIndex({
      clickWindowSec: attribution.clickWindowSec,
      viewWindowSec: attribution.viewWindowSec,
      maxUsers: this.settings.touchMax,
      maxClicks: this.settings.touchMax,
    });
    this.conversionKey = this.settings.conversionSecret === null ? null : Buffer.from(this.settings.conversionSecret, 'utf8');
  }

  /**
   * Makes `config` current (after a reload); tokens minted under the previous few configs still resolve. A
   * changed `events` section applies from here (ages, spend events, landing and click settings); the caches keep
   * their size (dedupeMax, touchMax: read at start), each dedupe entry its own window. An invalid section
   * throws before anything changes (the swap then fails whole).
   */
  setConfig(config: CompiledConfig): void {
    const previous = this.current as CompiledConfig | undefined;
    if (previous !== undefined && previous !== config && JSON.stringify(previous.events ?? {}) !== JSON.stringify(config.events ?? {})) {
      this.settings = eventsConfig(config.events ?? {});
    }
    const epoch = configEpoch(config);
    this.configs.delete(epoch);
    this.configs.set(epoch, config);
    while (this.configs.size > MAX_CONFIGS) this.configs.delete(this.configs.keys().next().value!);
    this.current = config;
  }

  /**
   * Claims (id, kind) in the cluster's shared dedupe until `untilMs`: false when another worker's claim of it is
   * still live (a duplicate). True without a shared table (one process: its own window decides).
   */
  private claimShared(id: string, kind: string, nowMs: number, untilMs: number): boolean {
    return this.shared === null || this.shared.claim(sharedKey(id, kind), Math.floor(nowMs / 1000), Math.ceil(untilMs / 1000));
  }

  /** How long a conversion's order id dedupes (the conversions cache's TTL: the longer attribution window). */
  private conversionWindowMs(): number {
    const attribution = this.kpis.config.attribution;
    return Math.max(attribution.clickWindowSec, attribution.viewWindowSec, 1) * 1000;
  }

  /** Replaces the log (e.g. after opening it); null = no log. */
  setLog(log: EventLog | null): void {
    this.log = log;
  }

  addListener(listener: OutcomeListener): void {
    this.listeners.push(listener);
  }

  /** The JSON KPI report for the operations port. */
  kpiReport(query: KpiQuery = {}): KpiReport {
    return kpiReport(this.kpis, query);
  }

  /**
   * Reconciles an external CSV report against the live counts (the figures of `segbid reconcile`, which
   * rebuilds them from the log instead). Throws RECONCILE_INPUT when the report cannot be used.
   */
  reconcile(csv: string, options: ReconcileOptions & { mapping?: ColumnMapping } = {}): ReconcileResult {
    return reconcile(parseExternalReport(csv, options.mapping ?? {}), this.kpis, options);
  }

  // -------------------------------------------------------------------------------------------------------
  // Bid side: what the response builder calls

  /** Signs a token for a bid (`exchange` scope for nurl/burl/lurl, `client` for the pixel and click URLs). */
  sign(fields: TokenFields, scope: 'exchange' | 'client' = 'exchange'): string {
    return this.signer.sign(fields, scope);
  }

  /** Both tokens of a bid whose markup carries the pixel or click URL, with one HMAC. */
  signPair(fields: TokenFields, out: TokenPair): void {
    this.signer.signPair(fields, out);
  }

  /**
   * Tallies a bid sent (for bids and win rate). Cheap: one map update; the tally is logged and counted as one
   * `bids` record per flush (flushBids, every second with start()). Test bids are not tallied.
   */
  noteBid(f: TokenFields): void {
    this.tally.note(f, this.configs.get(f.epoch) ?? this.current);
  }

  /** Logs and counts the bids tallied since the last flush as one record. */
  flushBids(nowMs: number): void {
    this.recordBids(this.tally.drain(), nowMs);
  }

  /** Logs and counts bid rows tallied elsewhere (a worker thread's BidTally), as one record. */
  recordBids(rows: BidRow[], nowMs: number): void {
    if (rows.length === 0) return;
    const record: EventRecord = { k: 'bids', t: nowMs, rows };
    if (this.log !== null) this.log.append(record);
    this.kpis.apply(record);
  }

  /** Flushes the bid tally every `intervalMs` (timer unref'd: it never keeps the process alive). */
  start(intervalMs = 1000): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.flushBids(Date.now()), intervalMs);
    this.timer.unref();
  }

  /** Stops the timer, flushes the bid tally and closes the log (flush + fsync): nothing accepted is lost. */
  /**
   * Flushes the bid tallies and closes the log; when the log wrote everything, saves the replay checkpoint
   * (src/events/replay-checkpoint.ts) so that the next start replays only what comes after. A checkpoint that
   * cannot be written is skipped: the next start replays the whole log, as without one.
   */
  async close(nowMs = Date.now()): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.flushBids(nowMs);
    if (this.log === null) return;
    await this.log.close();
    const s = this.log.status;
    if (!s.ok || s.droppedRecords > 0 || s.failedRecords > 0) return;
    try {
      writeCheckpoint(this.log.dir, this.checkpointImage(nowMs), nowMs);
    } catch {
      // (disk full, read-only directory): the log itself is complete
    }
  }

  /**
   * Rebuilds the KPIs, the dedupe windows and the touch index from an event log directory (call on start,
   * before traffic; a missing directory is an empty log): from its replay checkpoint and the segments written
   * since, else from every segment. Returns the replay statistics.
   */
  restore(dir: string, nowMs: number): ReplayStats & { checkpoint: boolean } {
    this.clock = nowMs;
    this.restoring = true;
    try {
      const checkpoint = existsSync(dir) ? readCheckpoint(dir) : null;
      if (checkpoint !== null) this.loadImage(checkpoint.state, nowMs);
      const stats = this.replay(dir, nowMs, checkpoint?.covered ?? null);
      return { ...stats, checkpoint: checkpoint !== null };
    } finally {
      this.restoring = false;
    }
  }

  /** What a replay checkpoint saves: the KPIs, the dedupe windows still open, the touch index. */
  checkpointImage(nowMs: number): HandlerImage {
    const dedupe: [string, DedupeImageEntry][] = [];
    for (const [key, e] of this.dedupe.rentries() as Iterable<[string, DedupeEntry]>) if (e.until > nowMs) dedupe.push([key, { fp: e.fp, until: e.until }]);
    const window = this.conversionWindowMs();
    const conversions: [string, number][] = [];
    for (const [key, t] of this.conversions.rentries() as Iterable<[string, number]>) if (t + window > nowMs) conversions.push([key, t]);
    return { kpis: this.kpis.image(), dedupe, conversions, touches: this.touches.image() };
  }

  /** Loads a checkpointImage() into this handler (before any replay or traffic). */
  private loadImage(image: HandlerImage, nowMs: number): void {
    this.kpis.load(image.kpis);
    for (const [key, e] of image.dedupe) {
      if (!(e.until > nowMs)) continue;
      this.dedupe.set(key, { fp: e.fp, until: e.until }, { ttl: e.until - nowMs });
      const bar = key.lastIndexOf('|');
      this.claimShared(key.slice(0, bar), key.slice(bar + 1), nowMs, e.until);
    }
    const window = this.conversionWindowMs();
    for (const [key, t] of image.conversions) {
      if (!(t + window > nowMs)) continue;
      this.conversions.set(key, t, { ttl: t + window - nowMs });
      this.claimShared(key, 'conv', nowMs, t + window);
    }
    this.touches.load(image.touches);
  }

  private replay(dir: string, nowMs: number, covered: ReadonlySet<string> | null): ReplayStats {
    const skip = covered === null ? undefined : (segment: string) => covered.has(segment);
    return replayEventLog(dir, (r) => {
      this.kpis.apply(r);
      if (r.k === 'bids') return;
      if (r.k === 'conv') {
        // The postback's dedupe key: its order id, or (without one) the hash of its body kept in the record.
        const key = r.oid !== '' ? 'o:' + r.oid : r.dk;
        if (key !== undefined) {
          this.conversions.set(key, r.t);
          this.claimShared(key, 'conv', nowMs, r.t + this.conversionWindowMs());
        }
        return;
      }
      const maxAgeMs = (this.settings.maxAgeSec[r.k] + this.settings.clockSkewSec) * 1000;
      if (nowMs - r.t <= maxAgeMs) {
        this.dedupe.set(r.b + '|' + r.k, { fp: fingerprint(r), until: r.t + maxAgeMs });
        // What this worker accepted before a restart is a duplicate on the other workers too.
        this.claimShared(r.b, r.k, nowMs, r.t + maxAgeMs);
      }
      this.touches.noteTouch(r);
    }, { skip });
  }

  /**
   * Told of every impression or click this handler accepted (not replayed ones): a cluster's worker passes them
   * to the other workers (addTouches), so that a conversion reaching any worker finds the touch.
   */
  onTouch: ((kind: 'imp' | 'click', touch: Touch) => void) | null = null;

  /** Touches accepted by another worker of the cluster (see onTouch). */
  addTouches(touches: readonly { kind: 'imp' | 'click'; touch: Touch }[]): void {
    for (const t of touches) this.touches.add(t.kind, t.touch);
  }

  /**
   * The touches of another writer's event log (a sibling worker's directory): read only, nothing but the
   * attribution index is fed (its KPIs and dedupe windows are that worker's). Only the segments written to within
   * twice the longer attribution window: an older touch could only serve a conversion backdated by more than a
   * window, and a cluster's start would otherwise read every worker's whole log once per worker.
   */
  restoreTouches(dir: string, nowMs = Date.now()): ReplayStats {
    const since = nowMs - 2 * this.touches.horizonMs;
    return replayEventLog(
      dir,
      (r) => {
        if (r.k === 'imp' || r.k === 'click') this.touches.noteTouch(r);
      },
      { modifiedSinceMs: since },
    );
  }

  // -------------------------------------------------------------------------------------------------------
  // Event side

  handle(req: EventRequest, nowMs: number): EventResponse {
    this.clock = nowMs;
    const path = req.path.endsWith('/') ? req.path.slice(0, -1) : req.path;
    const kind = path.startsWith('/ev/') ? path.slice(4) : '';
    const method = req.method.toUpperCase();
    if (kind === 'conv') {
      if (method !== 'POST') return this.reject('conv', 'method_not_allowed', 405, { allow: 'POST' });
      return this.conversion(req, nowMs);
    }
    if (!isNotice(kind)) return this.reject('unknown', 'not_found', 404);
    if (method !== 'GET' && method !== 'POST') return this.reject(kind, 'method_not_allowed', 405, { allow: 'GET, POST' });
    return this.notice(kind, this.params(req), nowMs);
  }

  private params(req: EventRequest): URLSearchParams {
    const params = new URLSearchParams(req.query.startsWith('?') ? req.query.slice(1) : req.query);
    // Some exchanges POST notices with a form body: its fields complete (never override) the query's.
    if (req.method.toUpperCase() === 'POST' && req.body !== undefined && req.body.length > 0 && req.body.length <= 8192) {
      const type = req.headers?.['content-type'] ?? '';
      if (type === '' || type.includes('application/x-www-form-urlencoded')) {
        const form = new URLSearchParams(typeof req.body === 'string' ? req.body : req.body.toString('utf8'));
        for (const [k, v] of form) if (!params.has(k)) params.set(k, v);
      }
    }
    return params;
  }

  private notice(kind: NoticeKind, q: URLSearchParams, nowMs: number): EventResponse {
    const t = q.get('t');
    if (t === null) return this.reject(kind, 'malformed', 400);
    const tok = this.token;
    const failure = verifyToken(this.keyring, t, tok);
    if (failure !== null) return this.reject(kind, failure, failure === 'malformed' ? 400 : 403);
    const clientKind = kind === 'imp' || kind === 'click';
    if ((tok.scope === 'client') !== clientKind) return this.reject(kind, 'wrong_scope', 403);
    const config = this.configs.get(tok.epoch);
    if (config === undefined) return this.reject(kind, 'stale_config', 409);
    const li = config.lineItems[tok.lineItem];
    const cr = config.creatives[tok.creative];
    if (li === undefined || cr === undefined) return this.reject(kind, 'malformed', 400);

    const age = checkAge(tok, nowMs, this.settings.maxAgeSec[kind], this.settings.clockSkewSec);
    let landing: URL | null = null;
    if (kind === 'click') {
      landing = this.landing(cr, q.get('u'));
      if (landing === null) return this.reject(kind, 'bad_landing', 400);
    }
    if (age !== null) {
      if (age === 'expired' && landing !== null && this.settings.redirectExpiredClicks) {
        this.stats.count(kind, 'expired');
        this.stats.note('expired_click_redirected');
        return this.redirect(landing, tok.bidId);
      }
      return this.reject(kind, age, age === 'expired' ? 410 : 400);
    }

    // The exchange's view of the auction must be the token's (a token moved to another auction is a forgery).
    const a = readMacro(q.get('a'));
    const i = readMacro(q.get('i'));
    if (a.state === 'audit' || i.state === 'audit') return this.audit(kind);
    if ((a.state === 'value' && !sameId(a.text, tok.requestHash)) || (i.state === 'value' && !sameId(i.text, tok.impHash))) {
      return this.reject(kind, 'auction_mismatch', 400);
    }

    const record = this.noticeRecord(kind, tok, config, li, cr, q, nowMs);
    if (record === null) return this.audit(kind);

    const dedupeKey = tok.bidId + '|' + kind;
    const seen = this.dedupe.get(dedupeKey);
    if (seen !== undefined && seen.until >= nowMs) {
      const fp = fingerprint(record);
      if (fp !== '' && seen.fp !== '' && fp !== seen.fp) return this.reject(kind, 'replay', 409);
      this.stats.count(kind, 'duplicate');
      return this.answer(kind, landing, tok.bidId);
    }
    const maxAgeMs = (this.settings.maxAgeSec[kind] + this.settings.clockSkewSec) * 1000;
    // Not seen here: another worker may have accepted it (the kernel spreads an exchange's retries).
    if (!this.claimShared(tok.bidId, kind, nowMs, nowMs + maxAgeMs)) {
      this.stats.count(kind, 'duplicate');
      return this.answer(kind, landing, tok.bidId);
    }
    this.dedupe.set(dedupeKey, { fp: fingerprint(record), until: nowMs + maxAgeMs }, { ttl: maxAgeMs });

    const logged = this.log === null || this.log.append(record);
    this.kpis.apply(record);
    const touch = this.touches.noteTouch(record);
    if (touch !== null && this.onTouch !== null) this.onTouch(record.k as 'imp' | 'click', touch);
    this.stats.count(kind, !logged ? 'log_failed' : record.ts === 1 ? 'test' : 'accepted');
    if (record.ts === 0) this.notify(record, nowMs);
    return this.answer(kind, landing, tok.bidId);
  }

  /** Builds the record of an authentic notice; null when a macro says AUDIT. */
  private noticeRecord(
    kind: NoticeKind,
    tok: DecodedToken,
    config: CompiledConfig,
    li: CompiledLineItem,
    cr: CompiledCreative,
    q: URLSearchParams,
    nowMs: number,
  ): NoticeRecord | null {
    const segs = config.dictionary.segments;
    const x = this.exchangeLabel(tok.exchange, q.get('x'));
    const tokenRate = this.rate(config, tok.currency) ?? 1;
    const bidMicros = convertMicros(tok.priceMicros, tokenRate);
    const record: NoticeRecord = {
      k: kind,
      t: nowMs,
      at: tok.timeSec,
      b: tok.bidId,
      li: li.id,
      cr: cr.id,
      sg: tok.segmentBit >= 0 && tok.segmentBit < segs.length ? segs[tok.segmentBit].id : null,
      arm: tok.arm,
      x,
      dl: tok.deal !== NO_DEAL ? (dealList(li)[tok.deal] ?? null) : null,
      ts: tok.test ? 1 : 0,
      bp: bidMicros,
      p: 0,
      ps: 'bid',
      bl: 0,
      lr: -1,
      mw: -1,
      u: userHex(tok.userHi, tok.userLo),
    };
    const c = readMacro(q.get('c'));
    if (c.state === 'audit') return null;
    // The currency the exchange reports in, when it says one we can convert; else the token's (our bid's).
    const cRate = c.state === 'value' ? this.rate(config, c.text.toUpperCase()) : undefined;
    const rate = cRate ?? tokenRate;
    if (kind === 'win' || kind === 'bill') {
      const p = readMacro(q.get('p'));
      if (p.state === 'audit') return null;
      const micros = p.state === 'value' && (c.state !== 'value' || cRate !== undefined) ? parseMicros(p.text) : null;
      if (micros === null) {
        // No usable clearing price: book our bid price, an upper bound of what the exchange can charge.
        this.stats.note('price_fallback');
        record.p = bidMicros;
      } else {
        record.p = convertMicros(micros, rate);
        record.ps = 'macro';
        if (record.p > bidMicros) {
          // A clearing price cannot exceed the bid; a higher one is an error or an altered URL.
          this.stats.note('price_clamped');
          record.p = bidMicros;
        }
      }
      if (record.ts === 0) {
        const spendOn = this.settings.spendOn.byExchange[x] ?? this.settings.spendOn.default;
        record.bl = kind === spendOn ? 1 : 0;
      }
    } else if (kind === 'loss') {
      const r = readMacro(q.get('r'));
      const m = readMacro(q.get('m'));
      if (r.state === 'audit' || m.state === 'audit') return null;
      record.lr = r.state === 'value' ? (parseCode(r.text) ?? -1) : -1;
      const mw = m.state === 'value' ? parseMicros(m.text) : null;
      record.mw = mw === null ? -1 : convertMicros(mw, rate);
    }
    return record;
  }

  private landing(cr: CompiledCreative, raw: string | null): URL | null {
    const u: MacroValue = readMacro(raw);
    const domains = this.settings.clickDomains[cr.id] ?? cr.adomain;
    if (u.state === 'value') return safeLanding(u.text, domains);
    if (u.state === 'invalid') return null;
    const fallback = this.settings.landing[cr.id] ?? (cr.adomain.length > 0 ? `https://${cr.adomain[0]}/` : '');
    return safeLanding(fallback, domains);
  }

  private answer(kind: NoticeKind, landing: URL | null, bidId: string): EventResponse {
    if (kind === 'imp') return { status: 200, headers: { 'content-type': 'image/gif', 'cache-control': NO_STORE }, body: GIF_1X1 };
    if (kind === 'click' && landing !== null) return this.redirect(landing, bidId);
    return { status: 204, headers: {}, body: '' };
  }

  private redirect(landing: URL, bidId: string): EventResponse {
    const url = new URL(landing.href);
    if (this.settings.clickIdParam !== null) url.searchParams.set(this.settings.clickIdParam, bidId);
    // URL serialisation percent-encodes CR/LF and spaces: the Location header cannot be split.
    return { status: 302, headers: { location: url.href, 'cache-control': NO_STORE }, body: '' };
  }

  private audit(kind: NoticeKind): EventResponse {
    this.stats.count(kind, 'audit');
    return this.answer(kind, null, '');
  }

  private reject(kind: EventKindLabel, result: EventResult, status: number, extra: Record<string, string> = {}): EventResponse {
    this.stats.count(kind, result);
    return { status, headers: { 'content-type': 'application/json', 'cache-control': NO_STORE, ...extra }, body: `{"error":"${result}"}` };
  }

  // -------------------------------------------------------------------------------------------------------
  // Conversions

  /**
   * POST /ev/conv, JSON body:
   *   { "clickId"?: string,                      the `sbclid` the landing page received (= bid id)
   *     "user"?: { "kind": "buyeruid"|"userid"|"ifa", "id": string } | "userHash"?: 16 hex digits,
   *     "value"?: number|string (currency units, default 0), "currency"?: ISO code (default bidder currency),
   *     "ts"?: seconds or ms since the epoch, or an ISO date (default now), "orderId"?: string (dedupe key),
   *     "test"?: boolean }
   * Authenticated by `x-segbid-secret: <secret>` or `x-segbid-signature: sha256=<hex HMAC-SHA256(secret, body)>`.
   * Answers 200 {"result", "attribution", "bidId", "lineItem"}; a repeated postback (same orderId, or the same
   * body without one) answers 200 with result "duplicate" and is not counted again.
   */
  private conversion(req: EventRequest, nowMs: number): EventResponse {
    const raw = req.body === undefined ? '' : typeof req.body === 'string' ? req.body : req.body.toString('utf8');
    if (!this.authorized(raw, req.headers ?? {})) return this.reject('conv', 'unauthorized', 401);
    if (raw.length === 0 || Buffer.byteLength(raw) > this.settings.maxConversionBodyBytes) return this.reject('conv', 'bad_body', 400);
    let body: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(raw);
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return this.reject('conv', 'bad_body', 400);
      body = parsed as Record<string, unknown>;
    } catch {
      return this.reject('conv', 'bad_body', 400);
    }
    const config = this.current;
    const clickId = typeof body.clickId === 'string' ? body.clickId.slice(0, 64) : '';
    const user = conversionUser(body);
    if (user === null) return this.reject('conv', 'bad_body', 400);
    if (clickId === '' && user === '') return this.reject('conv', 'bad_body', 400);
    const valueText = body.value === undefined ? '0' : typeof body.value === 'number' || typeof body.value === 'string' ? String(body.value) : '';
    const value = parseMicros(valueText.trim());
    if (value === null) return this.reject('conv', 'bad_body', 400);
    const currency = typeof body.currency === 'string' ? body.currency.toUpperCase() : config.settings.currency;
    const rate = this.rate(config, currency);
    if (rate === undefined) return this.reject('conv', 'unknown_currency', 400);
    const convMs = conversionTime(body.ts, nowMs);
    if (convMs === null) return this.reject('conv', 'bad_body', 400);
    if (convMs > nowMs + this.settings.clockSkewSec * 1000) return this.reject('conv', 'future', 400);
    const orderId = typeof body.orderId === 'string' ? body.orderId.slice(0, 128) : '';
    // Without an order id, the postback itself is the identity: the same body posted twice is one conversion.
    const dedupeKey = orderId !== '' ? 'o:' + orderId : 'h:' + createHash('sha256').update(raw).digest('base64url');
    if (this.conversions.has(dedupeKey) || !this.claimShared(dedupeKey, 'conv', nowMs, nowMs + this.conversionWindowMs())) {
      this.stats.count('conv', 'duplicate');
      return json(200, { result: 'duplicate' });
    }
    this.conversions.set(dedupeKey, nowMs);

    const { attr, touch } = this.touches.attribute(clickId, user, convMs);
    const record: ConversionRecord = {
      k: 'conv',
      t: nowMs,
      ct: convMs,
      b: touch?.b ?? '',
      li: touch?.li ?? '',
      cr: touch?.cr ?? '',
      sg: touch?.sg ?? null,
      arm: touch?.arm ?? 0,
      x: touch?.x ?? OTHER,
      dl: touch?.dl ?? null,
      at: touch?.at ?? 0,
      ts: body.test === true || touch?.ts === 1 ? 1 : 0,
      attr,
      v: convertMicros(value, rate),
      oid: orderId,
      u: user !== '' ? user : (touch?.u ?? ''),
    };
    if (orderId === '') record.dk = dedupeKey;
    const logged = this.log === null || this.log.append(record);
    this.kpis.apply(record);
    this.stats.count('conv', !logged ? 'log_failed' : record.ts === 1 ? 'test' : 'accepted');
    if (record.ts === 0 && attr !== 'none') this.notify(record, nowMs);
    return json(200, { result: record.ts === 1 ? 'test' : 'accepted', attribution: attr, bidId: record.b || null, lineItem: record.li || null });
  }

  private authorized(raw: string, headers: Readonly<Record<string, string | undefined>>): boolean {
    const key = this.conversionKey;
    if (key === null) return false;
    const secret = headers['x-segbid-secret'];
    if (secret !== undefined) return equalDigests(Buffer.from(secret, 'utf8'), key);
    const signature = headers['x-segbid-signature'];
    if (signature !== undefined && signature.startsWith('sha256=')) {
      const given = Buffer.from(signature.slice(7), 'hex');
      const expected = createHmac('sha256', key).update(raw).digest();
      return given.length === expected.length && timingSafeEqual(given, expected);
    }
    return false;
  }

  // -------------------------------------------------------------------------------------------------------
  // Shared helpers

  private rate(config: CompiledConfig, currency: string): number | undefined {
    return currency === '' ? 1 : config.rates.get(currency);
  }

  /** The exchange label: the token's (configured list), else a configured `x` query value, else `other`. */
  private exchangeLabel(index: number, query: string | null): string {
    const name = this.exchanges.nameOf(index);
    if (name !== null) return name;
    if (query !== null && this.exchanges.indexOf(query) !== 0) return query;
    return OTHER;
  }

  private index(config: CompiledConfig): ConfigIndex {
    let ix = this.indexes.get(config);
    if (ix === undefined) {
      ix = {
        lineItem: new Map(config.lineItems.map((l) => [l.id, l.index])),
        creative: new Map(config.creatives.map((c) => [c.id, c.index])),
      };
      this.indexes.set(config, ix);
    }
    return ix;
  }

  /** Calls the outcome listeners with the line item's index in the CURRENT config (skipped if it is gone). */
  private notify(r: NoticeRecord | ConversionRecord, nowMs: number): void {
    if (this.listeners.length === 0) return;
    const config = this.current;
    const ix = this.index(config);
    const lineItem = ix.lineItem.get(r.li);
    if (lineItem === undefined) return;
    const ctx: OutcomeContext = {
      lineItemId: r.li,
      bidId: r.b,
      arm: r.arm,
      segmentBit: r.sg === null ? -1 : (config.dictionary.bitOf.get(r.sg) ?? -1),
      creative: ix.creative.get(r.cr) ?? -1,
      bidMicros: r.k === 'conv' ? 0 : r.bp,
      exchange: r.x,
      dealId: r.dl,
      nowMs,
      user: r.u,
    };
    for (const l of this.listeners) {
      try {
        switch (r.k) {
          case 'win':
            l.onWin?.(lineItem, r.p, ctx);
            if (r.bl === 1) l.onBill?.(lineItem, r.p, ctx);
            break;
          case 'bill':
            if (r.bl === 1) l.onBill?.(lineItem, r.p, ctx);
            break;
          case 'loss':
            l.onLoss?.(lineItem, r.bp, r.mw, r.lr, ctx);
            break;
          case 'imp':
            l.onImpression?.(lineItem, ctx);
            break;
          case 'click':
            l.onClick?.(lineItem, ctx);
            break;
          case 'conv':
            l.onConversion?.(lineItem, r.v, r.attr, ctx);
            break;
        }
      } catch {
        this.stats.note('listener_error');
      }
    }
  }
}

function json(status: number, body: unknown): EventResponse {
  return { status, headers: { 'content-type': 'application/json', 'cache-control': NO_STORE }, body: JSON.stringify(body) };
}

/** Constant-time equality of two secrets of any length (compares their SHA-256 digests). */
function equalDigests(a: Buffer, b: Buffer): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

const USER_KINDS: Record<string, number> = { buyeruid: KEY_KIND.buyeruid, userid: KEY_KIND.userid, ifa: KEY_KIND.ifa, crm: KEY_KIND.crm };

/** The postback's user key hash (16 hex), '' when none given, null when given but unusable. */
function conversionUser(body: Record<string, unknown>): string | null {
  if (typeof body.userHash === 'string') return /^[0-9a-f]{16}$/i.test(body.userHash) ? body.userHash.toLowerCase() : null;
  const user = body.user;
  if (user === undefined || user === null) return '';
  if (typeof user !== 'object') return null;
  const { kind, id, source } = user as { kind?: unknown; id?: unknown; source?: unknown };
  if (typeof id !== 'string' || id.length === 0 || typeof kind !== 'string') return null;
  // Hashed as the bid path hashes the same key (key-hash.ts): a device id or a hex eid id in any case.
  if (kind === 'eid') {
    if (typeof source !== 'string') return null;
    hashEidKey(source, id);
  } else if (kind === 'ifa') {
    hashIfa(id);
  } else {
    const k = USER_KINDS[kind];
    if (k === undefined) return null;
    hashKey(k, id);
  }
  return userHex(keyHash.hi, keyHash.lo) || null;
}

/** Conversion time in ms: seconds or ms since the epoch (told apart by size), an ISO date, or now. */
function conversionTime(ts: unknown, nowMs: number): number | null {
  if (ts === undefined || ts === null) return nowMs;
  if (typeof ts === 'number' && Number.isFinite(ts) && ts > 0) return ts < 1e11 ? Math.round(ts * 1000) : Math.round(ts);
  if (typeof ts === 'string') {
    const ms = Date.parse(ts);
    return Number.isNaN(ms) ? null : ms;
  }
  return null;
}
