/**
 * The hot-path histogram cell (src/metrics/metrics.ts) must export exactly what prom-client's own observe()
 * would: same buckets, sum and count, in the text format and in the JSON the cluster merges. This pins the one
 * prom-client internal the cell writes.
 */
import { describe, expect, it } from 'vitest';
import client from 'prom-client';
import { HistogramCell, Metrics } from '../src/metrics/metrics.js';

const BUCKETS = [0.1, 0.5, 1, 5];

describe('HistogramCell', () => {
  it('renders the same text and JSON as prom-client observe() for the same values', async () => {
    const values = [0.05, 0.1, 0.2, 0.7, 1, 3, 9, 0.5, 100, 0];
    const registryA = new client.Registry();
    const registryB = new client.Registry();
    let cell: HistogramCell | null = null;
    const viaCell = new client.Histogram({ name: 'h', help: 'x', buckets: BUCKETS, registers: [registryA], collect: () => cell?.flush() });
    cell = new HistogramCell(viaCell, BUCKETS);
    const viaLib = new client.Histogram({ name: 'h', help: 'x', buckets: BUCKETS, registers: [registryB] });
    for (const v of values) {
      cell.observe(v);
      viaLib.observe(v);
    }
    expect(await registryA.metrics()).toBe(await registryB.metrics());
    expect(await registryA.getMetricsAsJSON()).toEqual(await registryB.getMetricsAsJSON());
    // A second scrape after more observations reports the running totals, not deltas.
    cell.observe(2);
    viaLib.observe(2);
    expect(await registryA.metrics()).toBe(await registryB.metrics());
  });

  it('the bidder metrics expose the decision and bid price histograms with their counts', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.decisionSeconds.observe(0.00002);
    m.decisionSeconds.observe(0.003);
    m.bidPrice.observe(1.5);
    const text = await m.registry.metrics();
    expect(text).toContain('segbid_decision_seconds_bucket{le="0.000025"} 1');
    expect(text).toContain('segbid_decision_seconds_count 2');
    expect(text).toContain('segbid_bid_price_cpm_bucket{le="2"} 1');
    expect(text).toContain('segbid_bid_price_cpm_bucket{le="1"} 0');
  });
});
