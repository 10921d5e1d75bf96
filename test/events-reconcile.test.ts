import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Command } from 'commander';
import client from 'prom-client';
import { EventLog } from '../src/events/event-log.js';
import { eventLogDirs } from '../src/cli/reconcile-command.js';
import { KpiStore, deriveKpis, discrepancies, kpiQueryFromParams, kpiReport, registerKpiMetrics, zeroCounters, KPI_NAMES } from '../src/events/kpis.js';
import { formatReconcile, parseCsv, parseExternalReport, parseMapping, reconcile } from '../src/events/reconcile.js';
import { registerReconcileCommand } from '../src/cli/reconcile-command.js';
import { EventStats, registerEventMetrics } from '../src/events/event-stats.js';
import type { NoticeRecord } from '../src/events/types.js';
import { SegbidError } from '../src/common/errors.js';

const FIXTURES = join(import.meta.dirname, 'fixtures/reconcile');
const D1 = Date.UTC(2026, 0, 1, 10) / 1000;
const D2 = Date.UTC(2026, 0, 2, 10) / 1000;

function notice(kind: NoticeRecord['k'], at: number, li: string, cpm: number, over: Partial<NoticeRecord> = {}): NoticeRecord {
  const micros = Math.round(cpm * 1e6);
  return {
    k: kind,
    t: at * 1000 + 1000,
    at,
    b: `${li}-${at}-${Math.random().toString(36).slice(2)}`,
    li,
    cr: 'cr-' + li,
    sg: null,
    arm: 0,
    x: 'other',
    dl: null,
    ts: 0,
    bp: micros,
    p: kind === 'win' || kind === 'bill' ? micros : 0,
    ps: 'macro',
    bl: kind === 'bill' ? 1 : 0,
    lr: -1,
    mw: -1,
    u: '',
    ...over,
  };
}

/** The bidder side of the fixtures (see test/fixtures/reconcile/README.md). */
function fixtureRecords(): NoticeRecord[] {
  const out: NoticeRecord[] = [];
  const bills = (n: number, at: number, li: string, cpm: number, dl: string | null = null) => {
    for (let i = 0; i < n; i++) out.push(notice('bill', at, li, cpm, { dl }));
  };
  bills(200, D1, 'li-a', 5);
  bills(100, D1, 'li-b', 2, 'deal-1');
  bills(300, D2, 'li-a', 5);
  bills(50, D2, 'li-b', 4);
  bills(40, D2, 'li-c', 2.5);
  return out;
}

function fixtureStore(): KpiStore {
  const store = new KpiStore();
  for (const r of fixtureRecords()) store.apply(r);
  return store;
}

const dirs: string[] = [];
let logDir = '';
beforeAll(async () => {
  logDir = mkdtempSync(join(tmpdir(), 'segbid-rec-'));
  dirs.push(logDir);
  const log = EventLog.open({ dir: logDir, fsync: 'never', maxSegmentBytes: 8192 });
  for (const r of fixtureRecords()) log.append(r);
  await log.close();
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const flaggedKeys = (rows: { day: string; key: string; flagged: boolean }[]) => rows.filter((r) => r.flagged).map((r) => `${r.day} ${r.key}`);

describe('reconciliation against an external report', () => {
  it('flags exactly the rows with known gaps (line items)', () => {
    const report = parseExternalReport(readFileSync(join(FIXTURES, 'line-items.csv'), 'utf8'));
    const result = reconcile(report, fixtureStore(), { threshold: 0.05 });
    expect(flaggedKeys(result.rows)).toEqual(['2026-01-01 li-b', '2026-01-02 li-a', '2026-01-02 li-c', '2026-01-02 li-x']);
    expect(result.flagged).toBe(4);
    expect(result.problems).toEqual([{ line: 8, message: 'unreadable date "2026-13-01"' }]);
    const row = (day: string, key: string) => result.rows.find((r) => r.day === day && r.key === key)!;
    expect(row('2026-01-01', 'li-a')).toMatchObject({
      impressions: { external: 204, bidder: 200, abs: 4, rel: 0.019608 },
      spend: { external: 1.02, bidder: 1, abs: 0.02, rel: 0.019608 },
      lines: [2, 3],
      flagged: false,
    });
    expect(row('2026-01-01', 'li-b').impressions).toMatchObject({ external: 120, bidder: 100, abs: 20, rel: 0.166667 });
    expect(row('2026-01-02', 'li-a')).toMatchObject({ impressions: { abs: 0, rel: 0 }, spend: { external: 1.8, bidder: 1.5, rel: 0.166667 } });
    expect(row('2026-01-02', 'li-b').spend).toMatchObject({ external: 0.208, bidder: 0.2, rel: 0.038462 });
    expect(row('2026-01-02', 'li-x').impressions).toMatchObject({ bidder: 0, rel: 1 });
    expect(row('2026-01-02', 'li-c')).toMatchObject({ source: 'missing_in_report', impressions: { external: 0, bidder: 40, abs: -40 }, spend: { bidder: 0.1 } });
    const text = formatReconcile(result);
    expect(text).toContain('4 flagged over 5.00%');
    expect(text).toContain('line 8: skipped');
  });

  it('reads mapped headers, deals, quoted cells, CRLF, currency symbols and thousands separators', () => {
    const mapping = parseMapping('date=Report Date,deal=Deal ID,impressions=Paid Impressions,spend=Media Cost (USD)');
    const report = parseExternalReport(readFileSync(join(FIXTURES, 'deals-mapped.csv'), 'utf8'), mapping);
    expect(report.problems).toEqual([]);
    expect(report.rows.map((r) => [r.day, r.kind, r.key, r.impressions, r.spendMicros])).toEqual([
      ['2026-01-01', 'deal', 'deal-1', 100, 210_000],
      ['2026-01-02', 'deal', 'deal-2', 1000, 50_000],
    ]);
    expect(flaggedKeys(reconcile(report, fixtureStore(), { threshold: 0.05 }).rows)).toEqual(['2026-01-02 deal-2']);
    expect(flaggedKeys(reconcile(report, fixtureStore(), { threshold: 0.04 }).rows)).toEqual(['2026-01-01 deal-1', '2026-01-02 deal-2']);
  });

  it('refuses reports it cannot use at all, with the reason', () => {
    expect(() => parseExternalReport(readFileSync(join(FIXTURES, 'missing-columns.csv'), 'utf8'))).toThrow(/line_item or deal, impressions or spend/);
    expect(() => parseExternalReport('')).toThrow(SegbidError);
    expect(() => parseExternalReport('date,li,imps\n', { spend: 'Cost' })).toThrow(/mapped column "Cost"/);
    expect(() => parseMapping('colour=x')).toThrow(SegbidError);
  });

  it('parses CSV edge cases', () => {
    expect(parseCsv('\ufeffa,b\r\n"x, y","say ""hi"""\n\n"multi\nline",2')).toEqual([
      { line: 1, cells: ['a', 'b'] },
      { line: 2, cells: ['x, y', 'say "hi"'] },
      { line: 4, cells: ['multi\nline', '2'] },
    ]);
  });
});

describe('segbid reconcile (CLI)', () => {
  let out = '';
  let err = '';
  const run = async (...args: string[]) => {
    out = '';
    err = '';
    process.exitCode = undefined;
    const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
    const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
    try {
      const program = new Command().exitOverride();
      registerReconcileCommand(program);
      await program.parseAsync(['node', 'segbid', 'reconcile', ...args]);
    } finally {
      o.mockRestore();
      e.mockRestore();
    }
    const code = process.exitCode ?? 0;
    process.exitCode = undefined;
    return code;
  };
  afterEach(() => {
    process.exitCode = undefined;
  });

  it('rebuilds the bidder counts from the event log and prints the flagged rows; exit 0', async () => {
    expect(await run('--report', join(FIXTURES, 'line-items.csv'), '--kpis-from', logDir)).toBe(0);
    const flagged = out.split('\n').filter((l) => l.startsWith('!'));
    expect(flagged.map((l) => l.split(/\s+/).slice(1, 4).join(' '))).toEqual([
      '2026-01-01 line_item li-b',
      '2026-01-02 line_item li-a',
      '2026-01-02 line_item li-c',
      '2026-01-02 line_item li-x',
    ]);
    expect(out).toContain('missing in report');
  });

  it('reads the worker-N logs of a --workers N bidder under the directory given, as one log', async () => {
    const clusterDir = mkdtempSync(join(tmpdir(), 'segbid-rec-workers-'));
    dirs.push(clusterDir);
    // The same records split over two workers' logs (odd and even), as the kernel spreads notices.
    const records = fixtureRecords();
    for (const w of [0, 1]) {
      const log = EventLog.open({ dir: join(clusterDir, `worker-${w}`), fsync: 'never', maxSegmentBytes: 8192 });
      records.forEach((r, i) => {
        if (i % 2 === w) log.append(r);
      });
      await log.close();
    }
    expect(eventLogDirs(clusterDir)).toEqual([clusterDir, join(clusterDir, 'worker-0'), join(clusterDir, 'worker-1')]);
    expect(await run('--report', join(FIXTURES, 'line-items.csv'), '--kpis-from', logDir, '--json')).toBe(0);
    const one = out;
    out = '';
    expect(await run('--report', join(FIXTURES, 'line-items.csv'), '--kpis-from', clusterDir, '--json')).toBe(0);
    expect(out).toBe(one);
  });

  it('--json and --threshold and --map', async () => {
    expect(
      await run('--report', join(FIXTURES, 'deals-mapped.csv'), '--kpis-from', logDir, '--threshold', '0.04', '--json', '--map', 'date=Report Date,deal=Deal ID,impressions=Paid Impressions,spend=Media Cost (USD)'),
    ).toBe(0);
    const result = JSON.parse(out);
    expect(result.threshold).toBe(0.04);
    expect(result.flagged).toBe(2);
  });

  it('exit 1 only on unreadable input', async () => {
    expect(await run('--report', join(FIXTURES, 'missing-columns.csv'), '--kpis-from', logDir)).toBe(1);
    expect(err).toContain('RECONCILE_INPUT');
    expect(await run('--report', join(FIXTURES, 'nope.csv'), '--kpis-from', logDir)).toBe(1);
    expect(await run('--report', join(FIXTURES, 'line-items.csv'), '--kpis-from', join(logDir, 'nope'))).toBe(1);
    expect(err).toContain('EVENT_LOG_UNREADABLE');
  });
});

describe('KPIs', () => {
  it('derives the KPIs from integer counters', () => {
    const c = { ...zeroCounters(), bids: 1000, wins: 200, billed: 200, spendCpmMicros: 200 * 2_500_000, impressions: 190, clicks: 5, conversions: 2, revenueMicros: 30_000_000 };
    expect(deriveKpis(c, KPI_NAMES)).toEqual({
      bids: 1000,
      wins: 200,
      win_rate: 0.2,
      impressions: 190,
      clicks: 5,
      conversions: 2,
      spend: 0.5,
      revenue: 30,
      cpm: 2.5,
      ctr: 0.026316,
      cvr: 0.4,
      cpc: 0.1,
      cpa: 0.25,
      roas: 60,
    });
    expect(deriveKpis(zeroCounters(), ['win_rate', 'cpm', 'roas', 'cpa'])).toEqual({ win_rate: null, cpm: null, roas: null, cpa: null });
  });

  it('reports the bidder’s own discrepancies (wins vs billed vs rendered) per day and line item', () => {
    const store = new KpiStore({ discrepancyThreshold: 0.05 });
    for (let i = 0; i < 210; i++) store.apply(notice('win', D1, 'li-a', 3));
    for (let i = 0; i < 200; i++) store.apply(notice('bill', D1, 'li-a', 3));
    for (let i = 0; i < 180; i++) store.apply(notice('imp', D1, 'li-a', 3));
    for (let i = 0; i < 100; i++) store.apply(notice('win', D1, 'li-b', 3));
    for (let i = 0; i < 99; i++) store.apply(notice('bill', D1, 'li-b', 3));
    for (let i = 0; i < 98; i++) store.apply(notice('imp', D1, 'li-b', 3));
    expect(discrepancies(store)).toEqual([
      { day: '2026-01-01', lineItem: 'li-a', wins: 210, billed: 200, impressions: 180, winsVsBilled: 0.047619, billedVsRendered: 0.1, flagged: true },
      { day: '2026-01-01', lineItem: 'li-b', wins: 100, billed: 99, impressions: 98, winsVsBilled: 0.01, billedVsRendered: 0.010101, flagged: false },
    ]);
    const report = kpiReport(store, { dimension: 'line_item', flaggedOnly: true });
    expect(report.discrepancies?.rows.map((r) => r.lineItem)).toEqual(['li-a']);
    expect(report.rows.map((r) => r.key)).toEqual(['li-a', 'li-b']);
    expect(report.definitions.cpm?.formula).toContain('billed');
  });

  it('reads report queries from URL parameters', () => {
    expect(kpiQueryFromParams(new URLSearchParams('dimension=segment&keys=a,b&from=2026-01-01&to=2026-01-31&discrepancies=0&flagged=1'))).toEqual({
      dimension: 'segment',
      keys: ['a', 'b'],
      from: '2026-01-01',
      to: '2026-01-31',
      discrepancies: false,
      flaggedOnly: true,
    });
    expect(kpiQueryFromParams(new URLSearchParams(''))).toEqual({});
    expect(() => kpiQueryFromParams(new URLSearchParams('dimension=user'))).toThrow(SegbidError);
    expect(() => kpiQueryFromParams(new URLSearchParams('from=yesterday'))).toThrow(SegbidError);
  });

  it('bounds label sets: extra keys count under "other", unknown exchanges too', async () => {
    const store = new KpiStore({ maxKeysPerDimension: 3, exchanges: ['adx'] });
    for (let i = 0; i < 10; i++) store.apply(notice('bill', D1, `li-${i}`, 1, { x: i % 2 ? 'adx' : 'rogue-' + i }));
    expect([...store.dimension('line_item').keys()]).toEqual(['li-0', 'li-1', 'li-2', 'other']);
    expect(store.dimension('line_item').get('other')?.billed).toBe(7);
    expect([...store.dimension('exchange').keys()].sort()).toEqual(['adx', 'other']);
    const registry = new client.Registry();
    registerKpiMetrics(store, registry);
    const text = await registry.metrics();
    expect(text).toContain('segbid_kpi_billed_total{dimension="line_item",key="other"} 7');
    expect(text).toContain('segbid_kpi_spend_total{dimension="exchange",key="adx"} 0.005');
    const series = text.split('\n').filter((l) => l.startsWith('segbid_kpi_billed_total{'));
    expect(series.length).toBeLessThanOrEqual(3 + 1 + 2 + 4 + 4); // line items, exchanges, creatives (bounded), segments
  });

  it('exports the event results and the log status to Prometheus', async () => {
    const stats = new EventStats();
    stats.count('win', 'accepted');
    stats.count('win', 'bad_mac');
    stats.note('price_fallback');
    const registry = new client.Registry();
    registerEventMetrics(stats, registry, () => null);
    const text = await registry.metrics();
    expect(text).toContain('segbid_event_notices_total{kind="win",result="accepted"} 1');
    expect(text).toContain('segbid_event_notices_total{kind="win",result="bad_mac"} 1');
    expect(text).toContain('segbid_event_notes_total{note="price_fallback"} 1');
    expect(text).toContain('segbid_event_log_ok 0');
  });
});
