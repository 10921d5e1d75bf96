/**
 * Reconciliation: an external report (exchange, SSP or ad server; CSV) against the bidder's own counts.
 *
 * Contract: `parseExternalReport(csvText, mapping)` reads rows per day and line item (or deal) with
 * impressions and spend; `reconcile(report, store, options)` compares each (day, key) with the bidder's
 * counts rebuilt from the event log (KpiStore daily tables) and flags the rows whose relative gap, on
 * impressions or on spend, exceeds the threshold. Pure functions: the CLI (`segbid reconcile`) and the
 * operations API print/serve the same figures.
 *
 * Expected CSV (header row required; column names case-insensitive; any other column is ignored):
 *   date         YYYY-MM-DD (also YYYY/MM/DD, YYYYMMDD, or an ISO date-time: its date part), UTC day
 *   line_item    our line item id          } one of the two per row; a file may mix them
 *   deal         the deal id                }
 *   impressions  integer (thousands separators allowed)
 *   spend        decimal, in the bidder currency (a leading currency symbol and thousands separators allowed)
 * Aliases recognised without a mapping: day; lineitem, line item, li; deal_id, dealid; imps, impression;
 * cost, media_cost. A mapping (`--map date=Day,impressions=Paid Imps,...`) names the file's own headers.
 * Several rows with the same day and key (e.g. split by country) are summed.
 *
 * The gap is external - bidder (positive: the external system counted more); the relative gap is gap /
 * external (1 when the external figure is 0 and ours is not). The bidder's impressions are its BILLED
 * impressions by default (the events spend was booked on: what an exchange invoices), or `rendered` (pixel)
 * or `wins`. Rows the bidder counted but the report lacks (same days, same kind) are listed as
 * `missing_in_report` and flagged.
 */
import { SegbidError } from '../common/errors.js';
import { relativeGap, type DayCounters, type KpiStore } from './kpis.js';
import { parseMicros } from './macros.js';

export const REPORT_COLUMNS = ['date', 'line_item', 'deal', 'impressions', 'spend'] as const;
export type ReportColumn = (typeof REPORT_COLUMNS)[number];
export type ColumnMapping = Partial<Record<ReportColumn, string>>;

const ALIASES: Record<ReportColumn, readonly string[]> = {
  date: ['date', 'day'],
  line_item: ['line_item', 'lineitem', 'line item', 'li', 'line_item_id'],
  deal: ['deal', 'deal_id', 'dealid', 'deal id'],
  impressions: ['impressions', 'imps', 'impression'],
  spend: ['spend', 'cost', 'media_cost'],
};

export type RowKind = 'line_item' | 'deal';

export interface ExternalRow {
  day: string;
  kind: RowKind;
  key: string;
  /** null when the report has no impressions column. */
  impressions: number | null;
  /** Micros of the bidder currency; null when the report has no spend column. */
  spendMicros: number | null;
  /** 1-based CSV line numbers of the rows summed into this one. */
  lines: number[];
}

export interface ReportProblem {
  line: number;
  message: string;
}

export interface ExternalReport {
  rows: ExternalRow[];
  /** Rows skipped, with why (the rest of the report is still reconciled). */
  problems: ReportProblem[];
}

/** Parses `date=Day,impressions=Paid Imps` into a mapping. Throws RECONCILE_INPUT on an unknown column. */
export function parseMapping(text: string): ColumnMapping {
  const mapping: ColumnMapping = {};
  for (const part of text.split(',')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    const col = (eq > 0 ? part.slice(0, eq) : '').trim().toLowerCase() as ReportColumn;
    const header = eq > 0 ? part.slice(eq + 1).trim() : '';
    if (!(REPORT_COLUMNS as readonly string[]).includes(col) || header === '') {
      throw new SegbidError('RECONCILE_INPUT', `bad column mapping "${part.trim()}": expected <${REPORT_COLUMNS.join('|')}>=<header in the file>`);
    }
    mapping[col] = header;
  }
  return mapping;
}

/** RFC 4180 CSV: quoted fields, doubled quotes, CRLF or LF; a UTF-8 BOM is dropped. Returns rows with their line numbers. */
export function parseCsv(text: string): { line: number; cells: string[] }[] {
  const out: { line: number; cells: string[] }[] = [];
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  let rowLine = 1;
  let cells: string[] = [];
  let cell = '';
  let quoted = false;
  const endRow = () => {
    cells.push(cell);
    if (!(cells.length === 1 && cells[0].trim() === '')) out.push({ line: rowLine, cells });
    cells = [];
    cell = '';
  };
  for (; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          cell += '"';
          i++;
        } else quoted = false;
      } else {
        if (ch === '\n') line++;
        cell += ch;
      }
      continue;
    }
    if (ch === '"' && cell.trim() === '') {
      quoted = true;
      cell = '';
    } else if (ch === ',') {
      cells.push(cell);
      cell = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      endRow();
      line++;
      rowLine = line;
    } else cell += ch;
  }
  if (cell !== '' || cells.length > 0) endRow();
  return out;
}

function normaliseDay(text: string): string | null {
  const t = text.trim();
  let m = /^(\d{4})[-/](\d{2})[-/](\d{2})(?:[T ].*)?$/.exec(t);
  if (m === null) m = /^(\d{4})(\d{2})(\d{2})$/.exec(t);
  if (m === null) return null;
  const day = `${m[1]}-${m[2]}-${m[3]}`;
  const d = new Date(day + 'T00:00:00Z');
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === day ? day : null;
}

function parseCount(text: string): number | null {
  const t = text.trim().replace(/[,\s_]/g, '');
  if (!/^\d{1,15}$/.test(t)) return null;
  return Number(t);
}

function parseMoney(text: string): number | null {
  // Leading currency symbol or code, thousands separators: what spreadsheets export.
  const t = text
    .trim()
    .replace(/^[A-Z]{3}\s*/, '')
    .replace(/^[$€£¥]/, '')
    .replace(/[,\s_]/g, '');
  return parseMicros(t);
}

/**
 * Reads an external report. Throws RECONCILE_INPUT when it cannot be used at all (no header, no date column,
 * neither line_item nor deal, neither impressions nor spend); row-level problems are returned, not thrown.
 */
export function parseExternalReport(text: string, mapping: ColumnMapping = {}): ExternalReport {
  const table = parseCsv(text);
  if (table.length === 0) throw new SegbidError('RECONCILE_INPUT', 'the report is empty (a header row is required)');
  const header = table[0].cells.map((h) => h.trim().toLowerCase());
  const col = (c: ReportColumn): number => {
    const mapped = mapping[c];
    if (mapped !== undefined) {
      const i = header.indexOf(mapped.trim().toLowerCase());
      if (i < 0) throw new SegbidError('RECONCILE_INPUT', `mapped column "${mapped}" (for ${c}) is not in the header: ${table[0].cells.join(', ')}`);
      return i;
    }
    for (const alias of ALIASES[c]) {
      const i = header.indexOf(alias);
      if (i >= 0) return i;
    }
    return -1;
  };
  const cDate = col('date');
  const cLi = col('line_item');
  const cDeal = col('deal');
  const cImps = col('impressions');
  const cSpend = col('spend');
  const missing: string[] = [];
  if (cDate < 0) missing.push('date');
  if (cLi < 0 && cDeal < 0) missing.push('line_item or deal');
  if (cImps < 0 && cSpend < 0) missing.push('impressions or spend');
  if (missing.length) {
    throw new SegbidError('RECONCILE_INPUT', `the report lacks column(s) ${missing.join(', ')}; header: ${table[0].cells.join(', ')} (map them with --map)`);
  }
  const problems: ReportProblem[] = [];
  const byKey = new Map<string, ExternalRow>();
  for (const { line, cells } of table.slice(1)) {
    const cell = (i: number) => (i >= 0 && i < cells.length ? cells[i].trim() : '');
    const day = normaliseDay(cell(cDate));
    if (day === null) {
      problems.push({ line, message: `unreadable date "${cell(cDate)}"` });
      continue;
    }
    const li = cell(cLi);
    const deal = cell(cDeal);
    if (li === '' && deal === '') {
      problems.push({ line, message: 'neither line item nor deal' });
      continue;
    }
    const kind: RowKind = li !== '' ? 'line_item' : 'deal';
    const key = li !== '' ? li : deal;
    const imps = cImps >= 0 ? parseCount(cell(cImps)) : null;
    if (cImps >= 0 && imps === null) {
      problems.push({ line, message: `unreadable impressions "${cell(cImps)}"` });
      continue;
    }
    const spend = cSpend >= 0 ? parseMoney(cell(cSpend)) : null;
    if (cSpend >= 0 && spend === null) {
      problems.push({ line, message: `unreadable spend "${cell(cSpend)}"` });
      continue;
    }
    const id = `${day}\u0000${kind}\u0000${key}`;
    const row = byKey.get(id);
    if (row === undefined) byKey.set(id, { day, kind, key, impressions: imps, spendMicros: spend, lines: [line] });
    else {
      if (row.impressions !== null && imps !== null) row.impressions += imps;
      if (row.spendMicros !== null && spend !== null) row.spendMicros += spend;
      row.lines.push(line);
    }
  }
  return { rows: [...byKey.values()], problems };
}

export type ImpressionMeasure = 'billed' | 'rendered' | 'wins';

export interface ReconcileOptions {
  /** Relative gap above which a row is flagged. Default: the store's discrepancyThreshold. */
  threshold?: number;
  measure?: ImpressionMeasure;
}

export interface Gap {
  external: number;
  bidder: number;
  /** external - bidder */
  abs: number;
  /** abs / external (1 when external is 0 and bidder is not) */
  rel: number;
}

export interface ReconcileRow {
  day: string;
  kind: RowKind;
  key: string;
  source: 'report' | 'missing_in_report';
  impressions: Gap | null;
  /** Spend gap in bidder currency units (micros / 1e6, rounded to the micro). */
  spend: Gap | null;
  flagged: boolean;
  lines: number[];
}

export interface ReconcileResult {
  threshold: number;
  measure: ImpressionMeasure;
  rows: ReconcileRow[];
  flagged: number;
  problems: ReportProblem[];
}

function bidderImpressions(d: DayCounters | undefined, measure: ImpressionMeasure): number {
  if (d === undefined) return 0;
  return measure === 'billed' ? d.billed : measure === 'rendered' ? d.impressions : d.wins;
}

/** Bidder spend of a day row in micros of the bidder currency (spend counters are sums of CPM micros). */
function bidderSpendMicros(d: DayCounters | undefined): number {
  return d === undefined ? 0 : Math.round(d.spendCpmMicros / 1000);
}

function gap(external: number, bidder: number, scale = 1): Gap {
  return { external: external / scale, bidder: bidder / scale, abs: (external - bidder) / scale, rel: relativeGap(external, bidder) };
}

export function reconcile(report: ExternalReport, store: KpiStore, options: ReconcileOptions = {}): ReconcileResult {
  const threshold = options.threshold ?? store.config.discrepancyThreshold;
  const measure = options.measure ?? 'billed';
  const rows: ReconcileRow[] = [];
  const seen = new Set<string>();
  const days = new Set<string>();
  const kinds = new Set<RowKind>();
  for (const r of report.rows) {
    const d = store.daily(r.kind).get(r.day)?.get(r.key);
    seen.add(`${r.day}\u0000${r.kind}\u0000${r.key}`);
    days.add(r.day);
    kinds.add(r.kind);
    const imps = r.impressions === null ? null : gap(r.impressions, bidderImpressions(d, measure));
    const spend = r.spendMicros === null ? null : gap(r.spendMicros, bidderSpendMicros(d), 1e6);
    const flagged = (imps !== null && Math.abs(imps.rel) > threshold) || (spend !== null && Math.abs(spend.rel) > threshold);
    rows.push({ day: r.day, kind: r.kind, key: r.key, source: 'report', impressions: imps, spend, flagged, lines: r.lines });
  }
  // What we counted on the report's days that the report does not mention at all.
  const hasImps = report.rows.some((r) => r.impressions !== null);
  const hasSpend = report.rows.some((r) => r.spendMicros !== null);
  for (const kind of kinds) {
    for (const day of days) {
      const byKey = store.daily(kind).get(day);
      if (byKey === undefined) continue;
      for (const [key, d] of byKey) {
        if (seen.has(`${day}\u0000${kind}\u0000${key}`)) continue;
        const imps = bidderImpressions(d, measure);
        const spend = bidderSpendMicros(d);
        if (imps === 0 && spend === 0) continue;
        rows.push({
          day,
          kind,
          key,
          source: 'missing_in_report',
          impressions: hasImps ? gap(0, imps) : null,
          spend: hasSpend ? gap(0, spend, 1e6) : null,
          flagged: true,
          lines: [],
        });
      }
    }
  }
  rows.sort((a, b) => (a.day !== b.day ? (a.day < b.day ? -1 : 1) : a.kind !== b.kind ? (a.kind < b.kind ? -1 : 1) : a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { threshold, measure, rows, flagged: rows.filter((r) => r.flagged).length, problems: report.problems };
}

function pct(x: number): string {
  return (x * 100).toFixed(2) + '%';
}

/** Money with at least 2 decimals and up to 6 (micro-units), trailing zeros dropped: 1.50, 0.208, 0.000125. */
function money(x: number): string {
  const s = x.toFixed(6).replace(/0+$/, '');
  const decimals = s.length - s.indexOf('.') - 1;
  return decimals >= 2 ? s : x.toFixed(2);
}

/** A fixed-width text table of a reconciliation, flagged rows marked with `!`. */
export function formatReconcile(result: ReconcileResult): string {
  const head = ['', 'day', 'kind', 'key', 'imps ext', 'imps bidder', 'imps gap', 'imps gap %', 'spend ext', 'spend bidder', 'spend gap', 'spend gap %', 'note'];
  const lines: string[][] = [head];
  for (const r of result.rows) {
    const i = r.impressions;
    const s = r.spend;
    lines.push([
      r.flagged ? '!' : '',
      r.day,
      r.kind,
      r.key,
      i ? String(i.external) : '-',
      i ? String(i.bidder) : '-',
      i ? String(i.abs) : '-',
      i ? pct(i.rel) : '-',
      s ? money(s.external) : '-',
      s ? money(s.bidder) : '-',
      s ? money(s.abs) : '-',
      s ? pct(s.rel) : '-',
      r.source === 'missing_in_report' ? 'missing in report' : '',
    ]);
  }
  const widths = head.map((_, c) => Math.max(...lines.map((l) => l[c].length)));
  const text = lines.map((l) => l.map((cell, c) => (c >= 4 && c <= 11 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd());
  const summary = [
    `${result.rows.length} row(s), ${result.flagged} flagged over ${pct(result.threshold)} (bidder impressions = ${result.measure})`,
    ...result.problems.map((p) => `line ${p.line}: skipped: ${p.message}`),
  ];
  return text.join('\n') + '\n' + summary.join('\n') + '\n';
}
