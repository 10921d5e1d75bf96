/**
 * KPIs, defined up front and counted per segment (rolled up the segmentation tree), line item, creative,
 * exchange and deal, plus per day and line item (and deal) for discrepancies and reconciliation.
 *
 * Contract: `KpiStore.apply(record)` is the ONLY way counts change, used both live (by the event handler) and
 * when replaying the event log, so a replay rebuilds exactly the live figures (given the same KpiConfig and
 * segmentation). Counters are integers; money is integer micro-units of the bidder currency. Label sets are
 * bounded: at most `maxKeysPerDimension` keys per dimension (first come, first kept; the rest count under
 * `other`), exchanges outside the configured list count under `other`.
 *
 * `kpiReport(store, query)` is the transport-independent JSON API for the operations port;
 * `registerKpiMetrics(store, registry)` exports the counters to Prometheus.
 */
import client from 'prom-client';
import { SegbidError } from '../common/errors.js';
import { dayOfSec, type EventRecord } from './types.js';

export const KPI_NAMES = ['bids', 'wins', 'win_rate', 'impressions', 'clicks', 'conversions', 'spend', 'revenue', 'cpm', 'ctr', 'cvr', 'cpc', 'cpa', 'roas'] as const;
export type KpiName = (typeof KPI_NAMES)[number];

export interface KpiDefinition {
  /** count | ratio | money (bidder currency units) */
  unit: 'count' | 'ratio' | 'money';
  formula: string;
}

/** The measurement of each indicator, stated once (the report repeats it so a reader knows what a figure is). */
export const KPI_DEFINITIONS: Readonly<Record<KpiName, KpiDefinition>> = {
  bids: { unit: 'count', formula: 'bids sent (test traffic excluded)' },
  wins: { unit: 'count', formula: 'win notices (nurl) accepted, deduplicated by bid' },
  win_rate: { unit: 'ratio', formula: 'wins / bids' },
  impressions: { unit: 'count', formula: 'rendered impressions: impression pixel fires, deduplicated by bid' },
  clicks: { unit: 'count', formula: 'clicks, one per bid at most' },
  conversions: { unit: 'count', formula: 'attributed conversions (last click in the click window, else last impression in the view window)' },
  spend: { unit: 'money', formula: 'sum of clearing prices of billable events (burl; the win where the exchange bills on win), per impression' },
  revenue: { unit: 'money', formula: 'sum of attributed conversion values' },
  cpm: { unit: 'money', formula: 'spend / billed impressions * 1000 (the mean clearing CPM of billed impressions)' },
  ctr: { unit: 'ratio', formula: 'clicks / impressions' },
  cvr: { unit: 'ratio', formula: 'conversions / clicks' },
  cpc: { unit: 'money', formula: 'spend / clicks' },
  cpa: { unit: 'money', formula: 'spend / conversions' },
  roas: { unit: 'ratio', formula: 'revenue / spend' },
};

export const DIMENSIONS = ['segment', 'line_item', 'creative', 'exchange', 'deal'] as const;
export type Dimension = (typeof DIMENSIONS)[number];

export interface KpiConfig {
  /** Which KPIs the report shows (all by default). Counters are always kept. */
  kpis: KpiName[];
  attribution: { clickWindowSec: number; viewWindowSec: number };
  /** Relative gap above which a discrepancy row is flagged (0.05 = 5 %). */
  discrepancyThreshold: number;
  /** Exchange labels kept as such; anything else is `other`. */
  exchanges: string[];
  maxKeysPerDimension: number;
  /** Days kept in the per-day tables (older days are dropped, oldest first). */
  maxDays: number;
}

export const DEFAULT_KPI_CONFIG: KpiConfig = {
  kpis: [...KPI_NAMES],
  attribution: { clickWindowSec: 7 * 86400, viewWindowSec: 86400 },
  discrepancyThreshold: 0.05,
  exchanges: [],
  maxKeysPerDimension: 500,
  maxDays: 400,
};

/** Validates and completes a partial KPI config. Throws EVENT_CONFIG_INVALID. */
export function kpiConfig(partial: Partial<KpiConfig> = {}): KpiConfig {
  const c: KpiConfig = {
    ...DEFAULT_KPI_CONFIG,
    ...partial,
    attribution: { ...DEFAULT_KPI_CONFIG.attribution, ...(partial.attribution ?? {}) },
  };
  const bad = c.kpis.filter((k) => !(KPI_NAMES as readonly string[]).includes(k));
  if (bad.length) throw new SegbidError('EVENT_CONFIG_INVALID', `unknown KPI(s): ${bad.join(', ')}; known: ${KPI_NAMES.join(', ')}`);
  if (!(c.discrepancyThreshold >= 0)) throw new SegbidError('EVENT_CONFIG_INVALID', 'discrepancyThreshold must be >= 0');
  if (!(c.attribution.clickWindowSec >= 0 && c.attribution.viewWindowSec >= 0)) throw new SegbidError('EVENT_CONFIG_INVALID', 'attribution windows must be >= 0');
  if (c.exchanges.includes(OTHER)) throw new SegbidError('EVENT_CONFIG_INVALID', `"${OTHER}" is reserved and cannot be an exchange name`);
  return c;
}

export const OTHER = 'other';
export const NO_SEGMENT_KEY = '(none)';

/**
 * Everything counted for one key. Prices are CPMs, so sums of prices are kept as sums of CPMs in micros
 * (`...CpmMicros`, exact integers): spend in currency units = spendCpmMicros / 1000 / 1e6. Conversion values are
 * plain money: revenueMicros = currency units * 1e6.
 */
export interface Counters {
  bids: number;
  bidCpmMicros: number;
  wins: number;
  /** Sum of clearing CPMs at win (the exchange's word at nurl time, not billable by itself). */
  winCpmMicros: number;
  losses: number;
  /** Billing notices (burl) received. */
  bills: number;
  /** Events that booked spend (burl, or the win on bill-on-win exchanges). */
  billed: number;
  spendCpmMicros: number;
  impressions: number;
  clicks: number;
  conversions: number;
  clickConversions: number;
  viewConversions: number;
  revenueMicros: number;
}

export function zeroCounters(): Counters {
  return {
    bids: 0,
    bidCpmMicros: 0,
    wins: 0,
    winCpmMicros: 0,
    losses: 0,
    bills: 0,
    billed: 0,
    spendCpmMicros: 0,
    impressions: 0,
    clicks: 0,
    conversions: 0,
    clickConversions: 0,
    viewConversions: 0,
    revenueMicros: 0,
  };
}

/** Per day and line item (or deal): what the discrepancy and reconciliation reports compare. */
export interface DayCounters {
  bids: number;
  wins: number;
  bills: number;
  billed: number;
  impressions: number;
  clicks: number;
  spendCpmMicros: number;
  winCpmMicros: number;
}

function zeroDay(): DayCounters {
  return { bids: 0, wins: 0, bills: 0, billed: 0, impressions: 0, clicks: 0, spendCpmMicros: 0, winCpmMicros: 0 };
}

/** Applies one record's contribution to a counter set. */
function add(c: Counters, r: EventRecord): void {
  switch (r.k) {
    case 'win':
      c.wins++;
      c.winCpmMicros += r.p;
      if (r.bl === 1) {
        c.billed++;
        c.spendCpmMicros += r.p;
      }
      break;
    case 'bill':
      c.bills++;
      if (r.bl === 1) {
        c.billed++;
        c.spendCpmMicros += r.p;
      }
      break;
    case 'loss':
      c.losses++;
      break;
    case 'imp':
      c.impressions++;
      break;
    case 'click':
      c.clicks++;
      break;
    case 'conv':
      c.conversions++;
      c.revenueMicros += r.v;
      if (r.attr === 'click') c.clickConversions++;
      else c.viewConversions++;
      break;
    case 'bids':
      break; // rows are applied one by one
  }
}

function addDay(d: DayCounters, r: EventRecord): void {
  switch (r.k) {
    case 'win':
      d.wins++;
      d.winCpmMicros += r.p;
      if (r.bl === 1) {
        d.billed++;
        d.spendCpmMicros += r.p;
      }
      break;
    case 'bill':
      d.bills++;
      if (r.bl === 1) {
        d.billed++;
        d.spendCpmMicros += r.p;
      }
      break;
    case 'imp':
      d.impressions++;
      break;
    case 'click':
      d.clicks++;
      break;
    default:
      break;
  }
}

export interface SegmentNode {
  id: string;
  parent?: string | null;
}

/** What the KPI report and the discrepancy rows read: a KpiStore, or the workers' stores summed (MergedKpis). */
export interface KpiView {
  readonly config: KpiConfig;
  readonly total: Counters;
  readonly test: Counters;
  readonly unattributed: Counters;
  dimension(dim: Dimension): ReadonlyMap<string, Counters>;
  daily(kind: 'line_item' | 'deal'): ReadonlyMap<string, ReadonlyMap<string, DayCounters>>;
}

/** Everything a KpiStore counted, as plain arrays (it crosses threads: a worker's share of a cluster's KPIs). */
export interface KpiImage {
  total: Counters;
  test: Counters;
  unattributed: Counters;
  dims: [Dimension, [string, Counters][]][];
  daily: ['line_item' | 'deal', [string, [string, DayCounters][]][]][];
}

function addInto<T extends object>(into: T, from: T): void {
  const a = into as Record<string, number>;
  const b = from as Record<string, number>;
  for (const k in b) a[k] = (a[k] ?? 0) + b[k];
}

/** Where addImage adds an image's counts: a KpiStore's own maps, or a MergedKpis'. */
interface ImageTarget {
  total: Counters;
  test: Counters;
  unattributed: Counters;
  dim(d: Dimension): Map<string, Counters> | undefined;
  days(kind: string): Map<string, Map<string, DayCounters>> | undefined;
}

/** Adds every count of `image` into `into` (rows and days it lacks are created as copies). */
function addImage(into: ImageTarget, image: KpiImage): void {
  addInto(into.total, image.total);
  addInto(into.test, image.test);
  addInto(into.unattributed, image.unattributed);
  for (const [dim, rows] of image.dims) {
    const target = into.dim(dim);
    if (target === undefined) continue;
    for (const [key, c] of rows) {
      const row = target.get(key);
      if (row === undefined) target.set(key, { ...c });
      else addInto(row, c);
    }
  }
  for (const [kind, byDay] of image.daily) {
    const target = into.days(kind);
    if (target === undefined) continue;
    for (const [day, rows] of byDay) {
      let m = target.get(day);
      if (m === undefined) target.set(day, (m = new Map()));
      for (const [key, c] of rows) {
        const row = m.get(key);
        if (row === undefined) m.set(key, { ...c });
        else addInto(row, c);
      }
    }
  }
}

/**
 * The KPIs of a cluster: its workers' KpiImages summed, read through the same report as one store (counters
 * add up; the derived KPIs and the discrepancy gaps are computed from the sums, never averaged).
 */
export class MergedKpis implements KpiView {
  readonly total: Counters = zeroCounters();
  readonly test: Counters = zeroCounters();
  readonly unattributed: Counters = zeroCounters();
  private readonly dims = new Map<Dimension, Map<string, Counters>>(DIMENSIONS.map((d) => [d, new Map()]));
  private readonly days = new Map<'line_item' | 'deal', Map<string, Map<string, DayCounters>>>([
    ['line_item', new Map()],
    ['deal', new Map()],
  ]);

  constructor(
    readonly config: KpiConfig,
    images: readonly KpiImage[],
  ) {
    const target: ImageTarget = {
      total: this.total,
      test: this.test,
      unattributed: this.unattributed,
      dim: (d) => this.dims.get(d),
      days: (kind) => this.days.get(kind as 'line_item' | 'deal'),
    };
    for (const image of images) addImage(target, image);
  }

  dimension(dim: Dimension): ReadonlyMap<string, Counters> {
    return this.dims.get(dim)!;
  }

  daily(kind: 'line_item' | 'deal'): ReadonlyMap<string, ReadonlyMap<string, DayCounters>> {
    return this.days.get(kind)!;
  }
}

export class KpiStore implements KpiView {
  readonly config: KpiConfig;
  private readonly parentOf = new Map<string, string | null>();
  private readonly chains = new Map<string, readonly string[]>();
  private readonly exchanges: ReadonlySet<string>;
  private readonly dims: Record<Dimension, Map<string, Counters>> = {
    segment: new Map(),
    line_item: new Map(),
    creative: new Map(),
    exchange: new Map(),
    deal: new Map(),
  };
  readonly total: Counters = zeroCounters();
  /** Test traffic, counted apart and never in the KPIs (OpenRTB: test=1 is not billable). */
  readonly test: Counters = zeroCounters();
  /** Conversions that matched no touch in the windows. */
  readonly unattributed: Counters = zeroCounters();
  /** day -> line item id -> counters. */
  private readonly dailyLineItems = new Map<string, Map<string, DayCounters>>();
  private readonly dailyDeals = new Map<string, Map<string, DayCounters>>();
  /** Records applied (all kinds), for diagnostics. */
  applied = 0;

  constructor(config: Partial<KpiConfig> = {}, segments: readonly SegmentNode[] = []) {
    this.config = kpiConfig(config);
    for (const s of segments) this.parentOf.set(s.id, s.parent ?? null);
    this.exchanges = new Set(this.config.exchanges);
  }

  /** The single path by which counts change (live and replay). */
  apply(r: EventRecord): void {
    this.applied++;
    if (r.k === 'bids') {
      for (const row of r.rows) this.applyBids(row.li, row.cr, row.sg, row.x, row.dl, row.day, row.n, row.bp);
      return;
    }
    if (r.ts === 1) {
      add(this.test, r);
      return;
    }
    if (r.k === 'conv' && r.attr === 'none') {
      add(this.unattributed, r);
      return;
    }
    add(this.total, r);
    for (const s of this.segmentChain(r.sg)) add(this.counters('segment', s), r);
    add(this.counters('line_item', r.li), r);
    add(this.counters('creative', r.cr), r);
    add(this.counters('exchange', this.exchangeKey(r.x)), r);
    if (r.dl !== null) add(this.counters('deal', r.dl), r);
    if (r.k !== 'conv' && r.k !== 'loss') {
      const day = dayOfSec(r.at);
      addDay(this.dayCounters(this.dailyLineItems, day, r.li), r);
      if (r.dl !== null) addDay(this.dayCounters(this.dailyDeals, day, r.dl), r);
    }
  }

  private applyBids(li: string, cr: string, sg: string | null, x: string, dl: string | null, day: string, n: number, bp: number): void {
    const bump = (c: Counters) => {
      c.bids += n;
      c.bidCpmMicros += bp;
    };
    bump(this.total);
    for (const s of this.segmentChain(sg)) bump(this.counters('segment', s));
    bump(this.counters('line_item', li));
    bump(this.counters('creative', cr));
    bump(this.counters('exchange', this.exchangeKey(x)));
    if (dl !== null) bump(this.counters('deal', dl));
    this.dayCounters(this.dailyLineItems, day, li).bids += n;
    if (dl !== null) this.dayCounters(this.dailyDeals, day, dl).bids += n;
  }

  private exchangeKey(x: string): string {
    return this.exchanges.has(x) ? x : OTHER;
  }

  /** The segment and its ancestors (root last); `(none)` for users in no segment. */
  private segmentChain(sg: string | null): readonly string[] {
    const id = sg ?? NO_SEGMENT_KEY;
    let chain = this.chains.get(id);
    if (chain === undefined) {
      const out = [id];
      let p = this.parentOf.get(id) ?? null;
      // Depth guard: the segmentation compiler rejects unknown parents but not cycles.
      while (p !== null && out.length < 32 && !out.includes(p)) {
        out.push(p);
        p = this.parentOf.get(p) ?? null;
      }
      chain = out;
      if (this.chains.size < 4 * this.config.maxKeysPerDimension) this.chains.set(id, chain);
    }
    return chain;
  }

  private counters(dim: Dimension, key: string): Counters {
    const map = this.dims[dim];
    let c = map.get(key);
    if (c === undefined) {
      const k = map.size >= this.config.maxKeysPerDimension && key !== OTHER ? OTHER : key;
      c = map.get(k);
      if (c === undefined) {
        c = zeroCounters();
        map.set(k, c);
      }
    }
    return c;
  }

  private dayCounters(table: Map<string, Map<string, DayCounters>>, day: string, key: string): DayCounters {
    let byKey = table.get(day);
    if (byKey === undefined) {
      byKey = new Map();
      table.set(day, byKey);
      if (table.size > this.config.maxDays) {
        // Drop the oldest day (lexical order of YYYY-MM-DD is chronological).
        let oldest = day;
        for (const d of table.keys()) if (d < oldest) oldest = d;
        table.delete(oldest);
      }
    }
    let c = byKey.get(key);
    if (c === undefined) {
      const k = byKey.size >= this.config.maxKeysPerDimension && key !== OTHER ? OTHER : key;
      c = byKey.get(k);
      if (c === undefined) {
        c = zeroDay();
        byKey.set(k, c);
      }
    }
    return c;
  }

  /** Counters of one dimension: key -> counters (live objects; do not mutate). */
  dimension(dim: Dimension): ReadonlyMap<string, Counters> {
    return this.dims[dim];
  }

  /** Per-day counters by line item or deal: day -> key -> counters (live objects; do not mutate). */
  daily(kind: 'line_item' | 'deal'): ReadonlyMap<string, ReadonlyMap<string, DayCounters>> {
    return kind === 'line_item' ? this.dailyLineItems : this.dailyDeals;
  }

  /** Adds an image's counts (a replay checkpoint's, src/events/replay-checkpoint.ts) to this store's. */
  load(image: KpiImage): void {
    addImage(
      {
        total: this.total,
        test: this.test,
        unattributed: this.unattributed,
        dim: (d) => this.dims[d],
        days: (kind) => (kind === 'line_item' ? this.dailyLineItems : kind === 'deal' ? this.dailyDeals : undefined),
      },
      image,
    );
  }

  /** Everything counted, as plain arrays (MergedKpis sums the images of a cluster's workers). */
  image(): KpiImage {
    const rows = <T extends object>(m: ReadonlyMap<string, T>): [string, T][] => [...m].map(([k, v]) => [k, { ...v }]);
    return {
      total: { ...this.total },
      test: { ...this.test },
      unattributed: { ...this.unattributed },
      dims: DIMENSIONS.map((d) => [d, rows(this.dims[d])]),
      daily: [
        ['line_item', [...this.dailyLineItems].map(([day, m]) => [day, rows(m)])],
        ['deal', [...this.dailyDeals].map(([day, m]) => [day, rows(m)])],
      ],
    };
  }

  /** A plain, key-sorted copy of everything counted: equal snapshots = equal stores. */
  snapshot(): Record<string, unknown> {
    const sortMap = <T>(m: ReadonlyMap<string, T>, f: (v: T) => unknown) =>
      Object.fromEntries([...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => [k, f(v)]));
    const copy = <T extends object>(v: T) => ({ ...v });
    return {
      total: copy(this.total),
      test: copy(this.test),
      unattributed: copy(this.unattributed),
      dimensions: Object.fromEntries(DIMENSIONS.map((d) => [d, sortMap(this.dims[d], copy)])),
      dailyLineItems: sortMap(this.dailyLineItems, (m) => sortMap(m, copy)),
      dailyDeals: sortMap(this.dailyDeals, (m) => sortMap(m, copy)),
    };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Derived KPIs and the JSON report

function ratio(a: number, b: number): number | null {
  return b > 0 ? round6(a / b) : null;
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

/** Micros -> currency units, for display. */
function units(micros: number): number {
  return micros / 1e6;
}

/** Sum of CPMs in micros -> the money actually spent, in currency units (each impression costs CPM / 1000). */
export function spendUnits(cpmMicros: number): number {
  return round6(cpmMicros / 1e9);
}

export type KpiValues = Partial<Record<KpiName, number | null>>;

/** The configured KPIs of a counter set. Money KPIs in bidder currency units; null when undefined (x/0). */
export function deriveKpis(c: Counters, names: readonly KpiName[]): KpiValues {
  const out: KpiValues = {};
  for (const name of names) {
    switch (name) {
      case 'bids':
        out.bids = c.bids;
        break;
      case 'wins':
        out.wins = c.wins;
        break;
      case 'win_rate':
        out.win_rate = ratio(c.wins, c.bids);
        break;
      case 'impressions':
        out.impressions = c.impressions;
        break;
      case 'clicks':
        out.clicks = c.clicks;
        break;
      case 'conversions':
        out.conversions = c.conversions;
        break;
      case 'spend':
        out.spend = spendUnits(c.spendCpmMicros);
        break;
      case 'revenue':
        out.revenue = units(c.revenueMicros);
        break;
      case 'cpm':
        out.cpm = c.billed > 0 ? round6(units(c.spendCpmMicros) / c.billed) : null;
        break;
      case 'ctr':
        out.ctr = ratio(c.clicks, c.impressions);
        break;
      case 'cvr':
        out.cvr = ratio(c.conversions, c.clicks);
        break;
      case 'cpc':
        out.cpc = c.clicks > 0 ? round6(spendUnits(c.spendCpmMicros) / c.clicks) : null;
        break;
      case 'cpa':
        out.cpa = c.conversions > 0 ? round6(spendUnits(c.spendCpmMicros) / c.conversions) : null;
        break;
      case 'roas':
        out.roas = c.spendCpmMicros > 0 ? round6(c.revenueMicros / (c.spendCpmMicros / 1000)) : null;
        break;
    }
  }
  return out;
}

/** Relative gap of `other` against `reference`: (reference - other) / reference; 0/0 = 0, x/0 = 1. */
export function relativeGap(reference: number, other: number): number {
  if (reference === other) return 0;
  if (reference === 0) return 1;
  return round6((reference - other) / reference);
}

export interface DiscrepancyRow {
  day: string;
  lineItem: string;
  wins: number;
  billed: number;
  impressions: number;
  /** (wins - billed) / wins: wins the exchange never billed (or billing notices lost). */
  winsVsBilled: number;
  /** (billed - impressions) / billed: billed impressions our pixel never saw render. */
  billedVsRendered: number;
  flagged: boolean;
}

/** The bidder's own discrepancies per day and line item, flagged beyond the threshold. */
export function discrepancies(store: KpiView, threshold = store.config.discrepancyThreshold, from?: string, to?: string): DiscrepancyRow[] {
  // The operations port hands the query parameters straight in: a NaN threshold or a day that is not one
  // would silently match nothing (200 with no rows), so they are refused (ADMIN_BAD_REQUEST, a 400).
  checkThreshold(threshold);
  if (from !== undefined) checkDay('from', from);
  if (to !== undefined) checkDay('to', to);
  const rows: DiscrepancyRow[] = [];
  for (const [day, byLi] of store.daily('line_item')) {
    if ((from !== undefined && day < from) || (to !== undefined && day > to)) continue;
    for (const [li, d] of byLi) {
      if (d.wins === 0 && d.billed === 0 && d.impressions === 0) continue;
      const winsVsBilled = relativeGap(d.wins, d.billed);
      const billedVsRendered = relativeGap(d.billed, d.impressions);
      rows.push({
        day,
        lineItem: li,
        wins: d.wins,
        billed: d.billed,
        impressions: d.impressions,
        winsVsBilled,
        billedVsRendered,
        flagged: Math.abs(winsVsBilled) > threshold || Math.abs(billedVsRendered) > threshold,
      });
    }
  }
  return rows.sort((a, b) => (a.day < b.day ? -1 : a.day > b.day ? 1 : a.lineItem < b.lineItem ? -1 : a.lineItem > b.lineItem ? 1 : 0));
}

export interface KpiQuery {
  /** Default line_item. */
  dimension?: Dimension;
  /** Only these keys (default all). */
  keys?: string[];
  /** Include the discrepancy rows (default true), optionally limited to days [from, to] (YYYY-MM-DD). */
  discrepancies?: boolean;
  from?: string;
  to?: string;
  flaggedOnly?: boolean;
}

export interface KpiRow {
  key: string;
  kpis: KpiValues;
  counters: Counters;
}

export interface KpiReport {
  dimension: Dimension;
  currencyUnit: 'bidder currency';
  definitions: Partial<Record<KpiName, KpiDefinition>>;
  attribution: KpiConfig['attribution'];
  total: KpiRow;
  rows: KpiRow[];
  test: Counters;
  unattributed: Counters;
  discrepancies?: { threshold: number; rows: DiscrepancyRow[] };
}

/** A refused query parameter: ADMIN_BAD_REQUEST (400 on the operations port), the reason naming the parameter. */
function badParam(name: string, message: string, expected: string): SegbidError {
  return new SegbidError('ADMIN_BAD_REQUEST', `${name}: ${message}`, [{ path: `/query/${name}`, message: expected }]);
}

/** Shown back in an error message: short, one line. */
function shown(value: string): string {
  return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '...' : value);
}

/** A calendar day, YYYY-MM-DD (2026-02-30 is not one). */
export function isDay(text: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (m === null) return false;
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  return d.getUTCFullYear() === Number(m[1]) && d.getUTCMonth() === Number(m[2]) - 1 && d.getUTCDate() === Number(m[3]);
}

function checkDay(name: 'from' | 'to', day: string): void {
  if (!isDay(day)) throw badParam(name, `must be a day, YYYY-MM-DD (got ${shown(day)})`, 'expected a day, YYYY-MM-DD');
}

function checkThreshold(threshold: number, raw?: string): void {
  if (!(threshold >= 0)) {
    throw badParam('threshold', `must be a number >= 0, e.g. 0.05 for 5 %${raw === undefined ? '' : ` (got ${shown(raw)})`}`, 'expected a number >= 0');
  }
}

function flag(params: URLSearchParams, name: string): boolean | undefined {
  const v = params.get(name);
  if (v === null) return undefined;
  if (v === '0' || v === 'false') return false;
  if (v === '' || v === '1' || v === 'true') return true;
  throw badParam(name, `must be 0, 1, false or true (got ${shown(v)})`, 'expected 0, 1, false or true');
}

/**
 * A KpiQuery from URL query parameters (`?dimension=segment&keys=a,b&from=2026-01-01&to=...&discrepancies=0
 * &flagged=1`), for the operations port. Throws ADMIN_BAD_REQUEST (a 400 there) naming the parameter on an
 * unknown dimension, a day that is not one or a flag that is not 0/1/false/true.
 */
export function kpiQueryFromParams(params: URLSearchParams): KpiQuery {
  const q: KpiQuery = {};
  const dimension = params.get('dimension');
  if (dimension !== null) {
    if (!(DIMENSIONS as readonly string[]).includes(dimension)) {
      throw badParam('dimension', `unknown dimension ${shown(dimension)}; known: ${DIMENSIONS.join(', ')}`, `expected one of ${DIMENSIONS.join(', ')}`);
    }
    q.dimension = dimension as Dimension;
  }
  const keys = params.get('keys');
  if (keys !== null && keys !== '') q.keys = keys.split(',');
  for (const bound of ['from', 'to'] as const) {
    const day = params.get(bound);
    if (day === null) continue;
    checkDay(bound, day);
    q[bound] = day;
  }
  const disc = flag(params, 'discrepancies');
  if (disc !== undefined) q.discrepancies = disc;
  const flagged = flag(params, 'flagged');
  if (flagged !== undefined) q.flaggedOnly = flagged;
  return q;
}

/**
 * The arguments of `discrepancies` from URL query parameters (`?threshold=0.05&from=2026-01-01&to=...`), for
 * the operations port. Throws ADMIN_BAD_REQUEST naming the parameter (an empty threshold included).
 */
export function discrepancyQueryFromParams(params: URLSearchParams): { threshold?: number; from?: string; to?: string } {
  const q: { threshold?: number; from?: string; to?: string } = {};
  const raw = params.get('threshold');
  if (raw !== null) {
    const threshold = raw.trim() === '' ? NaN : Number(raw);
    checkThreshold(threshold, raw);
    q.threshold = threshold;
  }
  for (const bound of ['from', 'to'] as const) {
    const day = params.get(bound);
    if (day === null) continue;
    checkDay(bound, day);
    q[bound] = day;
  }
  return q;
}

/** The JSON KPI report (transport-independent: the operations port serialises it). */
export function kpiReport(store: KpiView, query: KpiQuery = {}): KpiReport {
  const dimension = query.dimension ?? 'line_item';
  if (!(DIMENSIONS as readonly string[]).includes(dimension)) {
    throw new SegbidError('EVENT_CONFIG_INVALID', `unknown dimension "${String(dimension)}"; known: ${DIMENSIONS.join(', ')}`);
  }
  const names = store.config.kpis;
  const keys = query.keys !== undefined ? new Set(query.keys) : null;
  const rows: KpiRow[] = [];
  for (const [key, c] of store.dimension(dimension)) {
    if (keys !== null && !keys.has(key)) continue;
    rows.push({ key, kpis: deriveKpis(c, names), counters: { ...c } });
  }
  rows.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const report: KpiReport = {
    dimension,
    currencyUnit: 'bidder currency',
    definitions: Object.fromEntries(names.map((n) => [n, KPI_DEFINITIONS[n]])),
    attribution: { ...store.config.attribution },
    total: { key: 'total', kpis: deriveKpis(store.total, names), counters: { ...store.total } },
    rows,
    test: { ...store.test },
    unattributed: { ...store.unattributed },
  };
  if (query.discrepancies !== false) {
    const threshold = store.config.discrepancyThreshold;
    let d = discrepancies(store, threshold, query.from, query.to);
    if (query.flaggedOnly) d = d.filter((r) => r.flagged);
    report.discrepancies = { threshold, rows: d };
  }
  return report;
}

// ---------------------------------------------------------------------------------------------------------
// Prometheus

const EXPORTED: readonly { name: string; help: string; value: (c: Counters) => number }[] = [
  { name: 'bids_total', help: 'Bids sent', value: (c) => c.bids },
  { name: 'wins_total', help: 'Win notices accepted', value: (c) => c.wins },
  { name: 'losses_total', help: 'Loss notices accepted', value: (c) => c.losses },
  { name: 'billed_total', help: 'Billable events (spend booked)', value: (c) => c.billed },
  { name: 'impressions_total', help: 'Rendered impressions (pixel)', value: (c) => c.impressions },
  { name: 'clicks_total', help: 'Clicks', value: (c) => c.clicks },
  { name: 'conversions_total', help: 'Attributed conversions', value: (c) => c.conversions },
  { name: 'spend_total', help: 'Spend, bidder currency units', value: (c) => c.spendCpmMicros / 1e9 },
  { name: 'revenue_total', help: 'Attributed conversion value, bidder currency units', value: (c) => c.revenueMicros / 1e6 },
];

/**
 * Registers `segbid_kpi_*_total{dimension, key}` counters on `registry`, read from the store at scrape time
 * (no second bookkeeping). Labels are bounded by the store (maxKeysPerDimension per dimension, `other`).
 */
export function registerKpiMetrics(store: KpiStore, registry: client.Registry, prefix = 'segbid_kpi_'): void {
  for (const m of EXPORTED) {
    new client.Counter({
      name: prefix + m.name,
      help: `${m.help} by dimension (segment, line_item, creative, exchange, deal) and key; test traffic excluded`,
      labelNames: ['dimension', 'key'],
      registers: [registry],
      collect() {
        this.reset();
        for (const dim of DIMENSIONS) {
          for (const [key, c] of store.dimension(dim)) {
            const v = m.value(c);
            if (v > 0) this.inc({ dimension: dim, key }, v);
          }
        }
      },
    });
  }
}
