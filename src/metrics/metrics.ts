/**
 * Prometheus metrics (prom-client). Label sets are bounded: outcome and reason come from fixed code tables,
 * never from request content. The hot path increments pre-resolved label children (an array index, no label
 * hashing per request).
 */
import client from 'prom-client';
import { BAD_REQUEST_LABELS, NO_BID_LABELS } from '../openrtb/reasons.js';
import { PRIVACY_REASON_LABELS } from '../privacy/verdict.js';

/**
 * A hot-path counter: a plain number bumped per request (a few ns), handed to its prom-client child when
 * Prometheus scrapes (the counter's collect hook). prom-client's own child.inc() costs ~0.5 µs, which per
 * request is several percent of a decision.
 */
export class CounterCell {
  value = 0;
  private reported = 0;
  constructor(private readonly child: client.Counter.Internal) {}
  inc(n = 1): void {
    this.value += n;
  }
  /** Called at scrape time. */
  flush(): void {
    const delta = this.value - this.reported;
    if (delta > 0) this.child.inc(delta);
    this.reported = this.value;
  }
}

/**
 * A component that can make the bidder unfit for traffic (the event log, ...): /readyz is 503 while any
 * check is not ok, and shows each check's detail. Registered on the Metrics of the bidder it belongs to, the
 * one object every part of a bidder (or of a worker) shares.
 */
export interface HealthCheck {
  name: string;
  ok(): boolean;
  /** Small JSON-safe facts for /readyz (last error, counts); never secrets. */
  detail(): Record<string, unknown>;
}

/** The state of one health check, as /readyz shows it and as a worker reports it to the main thread. */
export interface HealthState {
  name: string;
  ok: boolean;
  detail: Record<string, unknown>;
}

/**
 * A hot-path histogram: observe() is one bucket scan into a Float64Array, no allocation (prom-client's own
 * observe builds a closure and hashes a label object per call: several percent of the bid path's CPU). The
 * prom-client Histogram stays the one exported (same name, buckets, text and JSON format, cluster merge): at
 * scrape, its collect hook copies the cell's totals into it. That copy writes the Histogram's per-label-set
 * entry (created by the public zero()): an internal of the pinned prom-client 15.1.3, checked by
 * test/metrics-histogram.test.ts against the text prom-client renders.
 */
export class HistogramCell {
  private readonly bounds: Float64Array;
  /** Per-bucket counts (not cumulative); the last slot is above every bound (+Inf). */
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;

  constructor(readonly histogram: client.Histogram<string>, buckets: readonly number[]) {
    this.bounds = Float64Array.from(buckets);
    this.counts = new Float64Array(buckets.length + 1);
    histogram.zero({});
  }

  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }

  /** Called by the histogram's collect hook at scrape time. */
  flush(): void {
    const entry = (this.histogram as unknown as { hashMap: Record<string, { bucketValues: Record<number, number>; sum: number; count: number }> }).hashMap[''];
    if (entry === undefined) return;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) entry.bucketValues[b[i]] = this.counts[i];
    entry.sum = this.sum;
    entry.count = this.count;
  }
}

export const TRANSPORT_REASONS = ['too_large', 'inflated_too_large', 'unsupported_encoding', 'aborted'] as const;
export type TransportReason = (typeof TRANSPORT_REASONS)[number];

export class Metrics {
  readonly registry = new client.Registry();
  readonly requests: client.Counter<'outcome' | 'reason'>;
  /** HOT PATH histograms (see HistogramCell). */
  readonly decisionSeconds: HistogramCell;
  readonly bidPrice: HistogramCell;
  /** Bid requests being read or decided: a plain number on the hot path, reported at scrape time. */
  inFlight = 0;
  readonly userLookups: client.Counter<'result'>;
  readonly configReloads: client.Counter<'result'>;
  readonly ready: client.Gauge<string>;

  /** Pre-resolved children, indexed by reason code. */
  readonly bidCounter: CounterCell;
  readonly noBidCounters: CounterCell[];
  readonly badRequestCounters: CounterCell[];
  readonly transportCounters: Record<TransportReason, CounterCell>;
  /**
   * Requests whose handling threw (a bug: the decision returns reason codes, it never throws on request content).
   * They are answered 204, counted here (outcome `error`, reason `internal_error`) and logged by the server.
   */
  readonly internalErrors: CounterCell;
  readonly knownUser: CounterCell;
  /** Privacy verdicts by reason (ok, coppa, gdpr_no_consent, ...), indexed by PRIVACY_REASON code. */
  readonly privacyCounters: CounterCell[];
  readonly unknownUser: CounterCell;
  /** `?debug=1` requests (src/bidding/explain.ts): answered with an explanation, or refused (token). */
  readonly debugExplained: CounterCell;
  readonly debugRefused: CounterCell;
  /** Readiness checks of this bidder's components (see HealthCheck). */
  readonly healthChecks: HealthCheck[] = [];
  private readonly cells: CounterCell[] = [];

  addHealthCheck(check: HealthCheck): void {
    this.healthChecks.push(check);
  }

  /**
   * A counter of running totals kept by another component (label value -> total), read at scrape time, so the
   * component counts with plain numbers (e.g. the Redis segment store's lookup outcomes).
   */
  addTotalsCounter(name: string, help: string, label: string, totals: () => Readonly<Record<string, number>>): void {
    const reported = new Map<string, number>();
    new client.Counter({
      name,
      help,
      labelNames: [label],
      registers: [this.registry],
      collect() {
        for (const [value, total] of Object.entries(totals())) {
          const delta = total - (reported.get(value) ?? 0);
          this.inc({ [label]: value }, delta > 0 ? delta : 0);
          reported.set(value, total);
        }
      },
    });
  }

  /** Every check's current state (read by /readyz and by a worker's health report). */
  health(): HealthState[] {
    return this.healthChecks.map((c) => ({ name: c.name, ok: c.ok(), detail: c.detail() }));
  }

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    const collect = () => {
      for (const c of this.cells) c.flush();
    };
    this.requests = new client.Counter({
      name: 'segbid_bid_requests_total',
      help: 'Bid requests by outcome (bid, nobid, bad_request, rejected, error) and reason',
      labelNames: ['outcome', 'reason'],
      registers,
      collect,
    });
    const histogramCell = (name: string, help: string, buckets: number[]) => {
      let cell: HistogramCell | null = null;
      const histogram = new client.Histogram({
        name,
        help,
        buckets,
        registers,
        collect() {
          cell?.flush();
        },
      });
      cell = new HistogramCell(histogram, buckets);
      return cell;
    };
    this.decisionSeconds = histogramCell(
      'segbid_decision_seconds',
      'Time from a complete body to a serialised answer (parse, decide, respond)',
      [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
    );
    this.bidPrice = histogramCell('segbid_bid_price_cpm', 'Bid prices (CPM, response currency)', [0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 20, 50]);
    const self = this;
    new client.Gauge({
      name: 'segbid_in_flight_requests',
      help: 'Bid requests being read or decided',
      registers,
      collect() {
        this.set(self.inFlight);
      },
    });
    this.userLookups = new client.Counter({
      name: 'segbid_user_lookups_total',
      help: 'Requests whose user keys were found (known) or not (unknown) in the segment store',
      labelNames: ['result'],
      registers,
      collect,
    });
    this.configReloads = new client.Counter({
      name: 'segbid_config_reloads_total',
      help: 'Config and segment store loads by result',
      labelNames: ['result'],
      registers,
    });
    this.ready = new client.Gauge({ name: 'segbid_ready', help: '1 when the bidder accepts traffic', registers });
    if (options.defaultMetrics !== false) client.collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 10 });

    const cell = (child: client.Counter.Internal) => {
      const c = new CounterCell(child);
      this.cells.push(c);
      return c;
    };
    this.bidCounter = cell(this.requests.labels('bid', 'bid'));
    this.noBidCounters = NO_BID_LABELS.map((r) => cell(this.requests.labels('nobid', r)));
    this.badRequestCounters = BAD_REQUEST_LABELS.map((r) => cell(this.requests.labels('bad_request', r)));
    this.transportCounters = Object.fromEntries(TRANSPORT_REASONS.map((r) => [r, cell(this.requests.labels('rejected', r))])) as Record<
      TransportReason,
      CounterCell
    >;
    this.internalErrors = cell(this.requests.labels('error', 'internal_error'));
    const privacy = new client.Counter({
      name: 'segbid_privacy_verdicts_total',
      help: 'Per decided request: may personal data be used (ok) or why not',
      labelNames: ['reason'],
      registers,
      collect,
    });
    this.privacyCounters = PRIVACY_REASON_LABELS.map((r) => cell(privacy.labels(r)));
    this.knownUser = cell(this.userLookups.labels('known'));
    this.unknownUser = cell(this.userLookups.labels('unknown'));
    const debug = new client.Counter({
      name: 'segbid_debug_requests_total',
      help: '?debug=1 bid requests (debug enabled in the config): explained, or refused for a missing or wrong token',
      labelNames: ['result'],
      registers,
      collect,
    });
    this.debugExplained = cell(debug.labels('explained'));
    this.debugRefused = cell(debug.labels('refused_token'));
  }
}
