/**
 * The buyers' brief: one document, in HTML and Markdown, that says what the bidder buys and why, from the
 * config the bidder runs. For buyers and partners who never read the config: the segmentation tree with its
 * volumes, each segment's strategy (line items targeting it, their bid strategy and CPM, the creatives that
 * carry the segment's message), campaign budgets and guard rails when the config has them, the KPIs with their
 * definitions and how they are measured (events, attribution windows, discrepancy threshold), and, given an
 * event log, the KPIs measured so far per segment and line item.
 *
 * Contract: `buildBrief(input)` is pure (same input, same text; `generatedAt` is an input). Every config string
 * is escaped for HTML and for Markdown tables. Missing optional parts (store, campaigns, budgets, event log)
 * are said so in the brief, never an error. `readStoreHeader(path)` reads only the header of a segment store
 * (not the key table). `writeBrief(options)` loads, builds and writes brief.html and brief.md.
 */
import { closeSync, mkdirSync, openSync, readSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { unpack } from 'msgpackr';
import type { CreativeDef, LineItemDef, SegbidConfig, SegmentDef, SegmentationDef, TargetingExpr } from '../config/types.js';
import { readConfigFile, validateConfigDocument } from '../config/load.js';
import { compileDocument } from '../config/compile.js';
import { SegbidError } from '../common/errors.js';
import { replayEventLog } from '../events/event-log.js';
import { DEFAULT_KPI_CONFIG, KPI_DEFINITIONS, KPI_NAMES, KpiStore, NO_SEGMENT_KEY, kpiReport, type KpiConfig, type KpiReport, type KpiRow } from '../events/kpis.js';
import { STORE_MAGIC } from '../segments/segment-store.js';

/** What the brief needs to know about the compiled segment store (null fields: unknown). */
export interface StoreSummary {
  path: string;
  userCount: number | null;
  keyCount: number | null;
  createdAt: string | null;
  /** Users per segment id, when the store header carries them. */
  volumes: Record<string, number> | null;
  /** Of those, users with a bidder key (header segmentActivable), when known. */
  activable?: Record<string, number> | null;
  /** Lookalike segments: users passing the learned threshold among the scored CRM base (header lookalikes). */
  lookalikeReach?: Record<string, { passing: number; scoredBase: number }> | null;
}

export interface BriefInput {
  config: SegbidConfig;
  segmentation: SegmentationDef;
  source: string;
  generatedAt: string;
  store: StoreSummary | null;
  /** KPIs rebuilt from an event log, per segment and per line item; null when no log was given. */
  kpis: { segment: KpiReport; lineItem: KpiReport; logDir: string } | null;
  kpiConfig?: KpiConfig;
}

export interface Brief {
  html: string;
  markdown: string;
}

/** The header of a segment store file (magic, version, msgpack header), without reading the tables. */
export function readStoreHeader(path: string): StoreSummary {
  const fd = openSync(path, 'r');
  try {
    const prefix = Buffer.alloc(16);
    readSync(fd, prefix, 0, 16, 0);
    if (prefix.readUInt32LE(0) !== STORE_MAGIC) throw new Error(`${path} is not a segment store`);
    const length = prefix.readUInt32LE(8);
    if (length > 256 * 1024 * 1024) throw new Error(`${path}: header length ${length} is not plausible`);
    const bytes = Buffer.alloc(length);
    readSync(fd, bytes, 0, length, 16);
    const h = unpack(bytes) as Record<string, unknown>;
    return {
      path,
      userCount: typeof h.userCount === 'number' ? h.userCount : null,
      keyCount: typeof h.keyCount === 'number' ? h.keyCount : null,
      createdAt: typeof h.createdAt === 'string' ? h.createdAt : null,
      volumes: volumesOf(h),
      activable: Array.isArray(h.segmentActivable) && Array.isArray(h.segments) && h.segmentActivable.length === h.segments.length
        ? Object.fromEntries((h.segments as unknown[]).map((id, i) => [String(id), Number((h.segmentActivable as unknown[])[i])]))
        : null,
      lookalikeReach: Array.isArray(h.lookalikes)
        ? Object.fromEntries((h.lookalikes as { segment: string; passing: number; scoredBase: number }[]).map((t) => [t.segment, { passing: t.passing, scoredBase: t.scoredBase }]))
        : null,
    };
  } finally {
    closeSync(fd);
  }
}

/** Per-segment counts if the header has them (as a map by id, or an array aligned with `segments`). */
function volumesOf(h: Record<string, unknown>): Record<string, number> | null {
  for (const field of ['segmentUsers', 'segmentCounts', 'volumes', 'counts']) {
    const v = h[field];
    if (Array.isArray(v) && Array.isArray(h.segments) && v.length === h.segments.length) {
      return Object.fromEntries((h.segments as unknown[]).map((id, i) => [String(id), Number(v[i])]));
    }
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, n]) => [k, Number(n)]));
    }
  }
  return null;
}

// -------------------------------------------------------------------------------------------- model

interface Targeted {
  lineItem: LineItemDef;
  excluded: boolean;
}

interface CampaignView {
  id: string;
  name: string;
  budget?: { daily?: number; flight?: number; flightStart?: string; flightEnd?: string };
  kpi?: string;
  explorationShare?: number;
  guardRails?: Record<string, { minShare?: number; maxShare?: number }>;
  lineItems: string[];
  pacing?: { curve?: string };
  settle?: string;
  paused?: boolean;
  frequencyCaps?: unknown[];
}

export function targetingText(t: TargetingExpr | undefined): string {
  if (t === undefined) return 'everyone';
  if (typeof t === 'string') return t;
  const join = (xs: TargetingExpr[], op: string) => (xs.length === 1 ? targetingText(xs[0]) : `(${xs.map(targetingText).join(` ${op} `)})`);
  if ('all' in t) return join(t.all, 'and');
  if ('any' in t) return join(t.any, 'or');
  return `not ${join(t.none, 'or')}`;
}

function mentions(t: TargetingExpr | undefined, negated: boolean, out: { id: string; excluded: boolean }[]): typeof out {
  if (t === undefined) return out;
  if (typeof t === 'string') out.push({ id: t, excluded: negated });
  else if ('all' in t) for (const x of t.all) mentions(x, negated, out);
  else if ('any' in t) for (const x of t.any) mentions(x, negated, out);
  else for (const x of t.none) mentions(x, !negated, out);
  return out;
}

function strategyText(li: LineItemDef, currency: string): string {
  const s = li.strategy;
  const cpm = `${li.bid.cpm.toFixed(2)} ${currency} CPM`;
  if (s === undefined || s.type === 'fixed') return `fixed bid ${s?.cpm !== undefined ? s.cpm.toFixed(2) + ' ' + currency + ' CPM' : cpm}`;
  const target = s.type === 'target_roas' ? `ROAS ${s.target}` : `${s.type === 'target_cpc' ? 'CPC' : 'CPA'} ${s.target} ${currency}`;
  return `${s.type.replace('_', ' ')}: ${target}${s.maxBidCpm !== undefined ? `, at most ${s.maxBidCpm} ${currency} CPM` : ''} (base ${cpm})`;
}

function supplyText(li: LineItemDef): string {
  const parts: string[] = [];
  if (li.channels?.length) parts.push(`channels ${li.channels.join(', ')}`);
  if (li.deviceTypes?.length) parts.push(`device types ${li.deviceTypes.join(', ')}`);
  if (li.countries?.length) parts.push(`countries ${li.countries.join(', ')}`);
  if (li.deals?.length) parts.push(`${li.dealsOnly ? 'deals only' : 'deals'} ${li.deals.join(', ')}`);
  return parts.length ? parts.join('; ') : 'all supply';
}

function creativeText(c: CreativeDef): string {
  const size = c.w !== undefined && c.h !== undefined ? ` ${c.w}x${c.h}` : '';
  const duration = c.duration !== undefined ? ` ${c.duration}s` : '';
  return `${c.id} (${c.format}${size}${duration})`;
}

function campaignsOf(config: SegbidConfig): CampaignView[] {
  const raw = (config as unknown as { campaigns?: unknown }).campaigns;
  if (!Array.isArray(raw)) return [];
  return raw.filter((c): c is Record<string, unknown> => c !== null && typeof c === 'object').map((c) => ({
    ...(c as object),
    id: String(c.id),
    name: typeof c.name === 'string' ? c.name : String(c.id),
    lineItems: Array.isArray(c.lineItems) ? c.lineItems.map(String) : [],
  })) as CampaignView[];
}

function fmtKpi(name: string, v: number | null | undefined): string {
  if (v === null || v === undefined) return '–';
  const unit = KPI_DEFINITIONS[name as keyof typeof KPI_DEFINITIONS]?.unit;
  if (unit === 'ratio' && name !== 'roas') return `${(v * 100).toFixed(2)} %`;
  if (unit === 'money' || name === 'roas') return v.toFixed(Math.abs(v) < 1 && v !== 0 ? 4 : 2);
  return v.toLocaleString('en-US');
}

const KPI_COLUMNS = ['bids', 'wins', 'win_rate', 'impressions', 'clicks', 'ctr', 'conversions', 'spend', 'cpm', 'cpa', 'roas'] as const;

function days(sec: number): string {
  return sec % 86400 === 0 ? `${sec / 86400} day${sec === 86400 ? '' : 's'}` : sec % 3600 === 0 ? `${sec / 3600} h` : `${sec} s`;
}

// -------------------------------------------------------------------------------------------- document

/**
 * The brief as a neutral block list, rendered twice (HTML and Markdown) so that both say exactly the same.
 */
type Block =
  | { k: 'h'; level: 1 | 2 | 3; text: string }
  | { k: 'p'; text: string }
  | { k: 'ul'; items: { text: string; depth: number }[] }
  | { k: 'table'; head: string[]; rows: string[][]; num?: number[] };

function blocks(input: BriefInput): Block[] {
  const { config, segmentation } = input;
  const currency = config.bidder?.currency ?? 'USD';
  const kc = input.kpiConfig ?? DEFAULT_KPI_CONFIG;
  const segments = segmentation.segments;
  const ids = new Set(segments.map((s) => s.id));
  const children = new Map<string, SegmentDef[]>();
  for (const s of segments) {
    const p = s.parent && ids.has(s.parent) ? s.parent : '';
    children.set(p, [...(children.get(p) ?? []), s]);
  }
  const order: { s: SegmentDef; depth: number }[] = [];
  const seen = new Set<string>();
  const walk = (parent: string, depth: number) => {
    for (const s of children.get(parent) ?? []) {
      if (seen.has(s.id) || depth > 31) continue;
      seen.add(s.id);
      order.push({ s, depth });
      walk(s.id, depth + 1);
    }
  };
  walk('', 0);
  const targeted = new Map<string, Targeted[]>();
  for (const li of config.lineItems) {
    for (const m of mentions(li.targeting, false, [])) {
      const list = targeted.get(m.id) ?? [];
      if (!list.some((t) => t.lineItem.id === li.id && t.excluded === m.excluded)) list.push({ lineItem: li, excluded: m.excluded });
      targeted.set(m.id, list);
    }
  }
  const creatives = new Map(config.creatives.map((c) => [c.id, c]));
  const volume = (id: string): string => {
    const v = input.store?.volumes?.[id];
    if (v === undefined || !Number.isFinite(v)) return 'volume: see compile report';
    const a = input.store?.activable?.[id];
    const la = input.store?.lookalikeReach?.[id];
    return (
      `${v.toLocaleString('en-US')} users` +
      (a !== undefined && Number.isFinite(a) && a !== v ? `, ${a.toLocaleString('en-US')} reachable` : '') +
      (la && la.scoredBase > 0 ? `, lookalike reach ${((100 * la.passing) / la.scoredBase).toFixed(1)}% of ${la.scoredBase.toLocaleString('en-US')} scored` : '')
    );
  };
  const out: Block[] = [];
  out.push({ k: 'h', level: 1, text: 'segbid brief: what we buy, for whom, and how we measure it' });
  out.push({
    k: 'p',
    text: `Configuration ${input.source}, generated ${input.generatedAt}. Seat ${config.bidder?.seat ?? 'segbid'}, currency ${currency}. ${config.lineItems.length} line items over ${segments.length} segments of the strategic segmentation.`,
  });

  // 1. Segmentation
  out.push({ k: 'h', level: 2, text: '1. The segmentation tree' });
  const store = input.store;
  out.push({
    k: 'p',
    text: store
      ? `Segment store compiled ${store.createdAt ?? '(date unknown)'}: ${store.userCount?.toLocaleString('en-US') ?? '?'} users reachable through ${store.keyCount?.toLocaleString('en-US') ?? '?'} keys.` +
        (store.volumes ? '' : ' Per-segment volumes are not in the store header: see the report printed by `segbid compile`.')
      : 'No compiled segment store: per-segment volumes are in the report printed by `segbid compile`.',
  });
  // A contextual segment has no members to count: it is matched on each request's context.
  out.push({ k: 'ul', items: order.map(({ s, depth }) => ({ text: `${s.name} [${s.id}] (${s.kind}; ${s.kind === 'contextual' ? 'matched per request' : volume(s.id)})`, depth })) });

  // 2. Strategy per segment
  out.push({ k: 'h', level: 2, text: '2. Strategy per segment' });
  out.push({ k: 'p', text: 'Line items that target each segment (or exclude it), their bid strategy, and the creatives that carry the segment\'s message.' });
  for (const { s } of order) {
    out.push({ k: 'h', level: 3, text: `${s.name} [${s.id}]` });
    const list = targeted.get(s.id) ?? [];
    const messages = config.creatives.filter((c) => c.segments?.includes(s.id)).map(creativeText);
    if (!list.length) out.push({ k: 'p', text: 'No line item names this segment: it is reached only through untargeted line items (run of network) and through its parent\'s line items.' });
    else {
      out.push({
        k: 'table',
        head: ['Line item', 'Role', 'Targeting', 'Strategy', 'Supply', 'State', 'Creatives'],
        rows: list.map(({ lineItem: li, excluded }) => [
          `${li.id}${li.name ? ` (${li.name})` : ''}`,
          excluded ? 'excludes this segment' : 'targets',
          targetingText(li.targeting),
          strategyText(li, currency),
          supplyText(li),
          li.active === false ? 'paused' : 'active',
          li.creatives.map((id) => (creatives.has(id) ? creativeText(creatives.get(id)!) : id)).join(', '),
        ]),
      });
    }
    out.push({ k: 'p', text: messages.length ? `Segment message (creatives written for it): ${messages.join(', ')}.` : 'No creative is written for this segment specifically.' });
  }
  const untargeted = config.lineItems.filter((li) => li.targeting === undefined);
  if (untargeted.length) {
    out.push({ k: 'h', level: 3, text: 'Untargeted line items (every user)' });
    out.push({
      k: 'table',
      head: ['Line item', 'Strategy', 'Supply', 'State', 'Creatives'],
      rows: untargeted.map((li) => [`${li.id}${li.name ? ` (${li.name})` : ''}`, strategyText(li, currency), supplyText(li), li.active === false ? 'paused' : 'active', li.creatives.join(', ')]),
    });
  }

  // 3. Budgets
  out.push({ k: 'h', level: 2, text: '3. Budgets and guard rails' });
  const campaigns = campaignsOf(config);
  if (!campaigns.length) out.push({ k: 'p', text: 'This configuration has no campaigns: no budget, pacing or guard rail is set; line items bid at their strategy without a spend cap.' });
  for (const c of campaigns) {
    out.push({ k: 'h', level: 3, text: `${c.name} [${c.id}]${c.paused ? ' (paused)' : ''}` });
    const facts: string[] = [];
    if (c.budget) {
      facts.push(`Budget: ${c.budget.flight ?? '?'} ${currency} over the flight ${c.budget.flightStart ?? '?'} to ${c.budget.flightEnd ?? '?'}${c.budget.daily !== undefined ? `, at most ${c.budget.daily} ${currency} a day` : ''}.`);
    } else facts.push('No budget on this campaign.');
    if (c.kpi) facts.push(`Optimised for ${c.kpi.toUpperCase()}.`);
    if (c.explorationShare !== undefined || c.budget) facts.push(`Exploration share: ${((c.explorationShare ?? 0.15) * 100).toFixed(0)} % of the budget calibrates segments with too little evidence.`);
    if (c.pacing?.curve) facts.push(`Pacing: ${c.pacing.curve}.`);
    if (c.settle) facts.push(`Spend booked on the ${c.settle === 'billing' ? 'billing notice (burl)' : 'win notice (nurl)'}.`);
    if (c.lineItems.length) facts.push(`Line items (arms): ${c.lineItems.join(', ')}.`);
    if (Array.isArray(c.frequencyCaps) && c.frequencyCaps.length) facts.push(`Frequency caps: ${JSON.stringify(c.frequencyCaps)}.`);
    out.push({ k: 'p', text: facts.join(' ') });
    const rails = Object.entries(c.guardRails ?? {});
    if (rails.length) {
      out.push({
        k: 'table',
        head: ['Segment', 'Minimum share', 'Maximum share'],
        rows: rails.map(([id, r]) => [id, r.minShare !== undefined ? `${(r.minShare * 100).toFixed(0)} %` : '–', r.maxShare !== undefined ? `${(r.maxShare * 100).toFixed(0)} %` : '–']),
      });
    }
  }

  // 4. KPIs
  out.push({ k: 'h', level: 2, text: '4. Indicators and how they are measured' });
  out.push({
    k: 'table',
    head: ['KPI', 'Unit', 'Definition'],
    rows: KPI_NAMES.map((n) => [n, KPI_DEFINITIONS[n].unit === 'money' ? `money (${currency})` : KPI_DEFINITIONS[n].unit, KPI_DEFINITIONS[n].formula]),
  });
  out.push({
    k: 'ul',
    items: [
      'Bids: counted by the bidder for every bid it signs (test requests, OpenRTB test=1, are counted apart and never in the KPIs).',
      'Wins: the exchange calls the win notice (nurl) with the clearing price (${AUCTION_PRICE}); each bid counts once however often the notice is retried.',
      'Spend: the billing notice (burl), or the win on exchanges that bill on win; money is kept in integer micro-units.',
      'Impressions: the signed impression pixel in the creative, fired by the browser when the ad renders.',
      'Clicks: the signed click redirect; it only ever lands on the creative\'s own advertiser domain.',
      `Conversions: the advertiser's postback, attributed to the last click within ${days(kc.attribution.clickWindowSec)}, else to the last impression within ${days(kc.attribution.viewWindowSec)} (view-through).`,
      'Segments: every event counts for the user\'s segment and all its ancestors in the tree, so a parent shows the sum of its subtree.',
      `Discrepancies: wins vs billed vs rendered impressions are compared per day and line item; a gap over ${(kc.discrepancyThreshold * 100).toFixed(0)} % is flagged on the console, and \`segbid reconcile\` compares the bidder's counts with an exchange or ad-server report.`,
    ].map((text) => ({ text, depth: 0 })),
  });

  // 5. Measured KPIs
  out.push({ k: 'h', level: 2, text: '5. KPIs measured so far' });
  if (!input.kpis) out.push({ k: 'p', text: 'No event log given (`--kpis-from DIR`): the live figures are on the trader console (/console on the operations port).' });
  else {
    const { segment, lineItem, logDir } = input.kpis;
    out.push({ k: 'p', text: `Rebuilt from the event log ${logDir}. Money in ${currency}.` });
    const names = new Map(order.map(({ s }) => [s.id, s.name]));
    const byKey = new Map(segment.rows.map((r) => [r.key, r]));
    const segRows: KpiRow[] = [...order.map(({ s }) => byKey.get(s.id)).filter((r): r is KpiRow => r !== undefined), ...segment.rows.filter((r) => !ids.has(r.key))];
    const kpiTable = (label: string, rows: KpiRow[], name: (k: string) => string, total: KpiRow): Block => ({
      k: 'table',
      head: [label, ...KPI_COLUMNS],
      rows: [...rows, total].map((r) => [r === total ? 'all traffic' : name(r.key), ...KPI_COLUMNS.map((n) => fmtKpi(n, r.kpis[n]))]),
      num: KPI_COLUMNS.map((_, i) => i + 1),
    });
    out.push({ k: 'h', level: 3, text: 'Per segment (subtree totals)' });
    out.push(kpiTable('Segment', segRows, (k) => (k === NO_SEGMENT_KEY ? 'users in no segment' : names.has(k) ? `${names.get(k)} [${k}]` : k), segment.total));
    out.push({ k: 'h', level: 3, text: 'Per line item' });
    out.push(kpiTable('Line item', lineItem.rows, (k) => k, lineItem.total));
  }
  return out;
}

// -------------------------------------------------------------------------------------------- renderers

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Markdown-safe inline text: escapes the characters that would start markup or break a table cell. */
export function escapeMd(s: string): string {
  return s
    .replace(/[\\`*<>|]/g, (c) => '\\' + c)
    .replace(/(^|[^A-Za-z0-9])_|_(?=[^A-Za-z0-9]|$)/g, (m) => m.replace('_', '\\_'))
    .replace(/\[(?=[^\]]*\]\()/g, '\\[')
    .replace(/\r?\n/g, ' ');
}

/** `code` spans written in the block texts (between backticks) are kept as code in both renderers. */
function inlineHtml(s: string): string {
  return s.split('`').map((part, i) => (i % 2 === 1 ? `<code>${escapeHtml(part)}</code>` : escapeHtml(part))).join('');
}

function inlineMd(s: string): string {
  return s.split('`').map((part, i) => (i % 2 === 1 ? '`' + part.replace(/`/g, '') + '`' : escapeMd(part))).join('');
}

const CSS = `body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1d2330;max-width:1100px;margin:24px auto;padding:0 20px;line-height:1.45}
h1{font-size:24px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #e1e4ea;padding-bottom:4px}h3{font-size:15px;margin-bottom:6px}
table{border-collapse:collapse;width:100%;font-size:13px;margin:6px 0 10px}th,td{border-bottom:1px solid #e1e4ea;padding:4px 8px;text-align:left;vertical-align:top}
th{color:#647084}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}code{background:#f1f3f6;padding:0 3px;border-radius:3px}ul{padding-left:22px}`;

function renderHtml(bs: Block[]): string {
  const body: string[] = [];
  for (const b of bs) {
    if (b.k === 'h') body.push(`<h${b.level}>${inlineHtml(b.text)}</h${b.level}>`);
    else if (b.k === 'p') body.push(`<p>${inlineHtml(b.text)}</p>`);
    else if (b.k === 'ul') {
      // Nested lists from depths.
      let depth = -1;
      const parts: string[] = [];
      for (const item of b.items) {
        while (depth < item.depth) {
          parts.push('<ul>');
          depth++;
        }
        while (depth > item.depth) {
          parts.push('</li></ul>');
          depth--;
        }
        if (parts[parts.length - 1] !== '<ul>') parts.push('</li>');
        parts.push(`<li>${inlineHtml(item.text)}`);
      }
      while (depth >= 0) {
        parts.push('</li></ul>');
        depth--;
      }
      body.push(parts.join(''));
    } else {
      const num = new Set(b.num ?? []);
      const cell = (tag: string, v: string, i: number) => `<${tag}${num.has(i) ? ' class="num"' : ''}>${inlineHtml(v)}</${tag}>`;
      body.push(
        `<table><thead><tr>${b.head.map((h, i) => cell('th', h, i)).join('')}</tr></thead><tbody>` +
          b.rows.map((r) => `<tr>${r.map((v, i) => cell('td', v, i)).join('')}</tr>`).join('') +
          '</tbody></table>',
      );
    }
  }
  const title = bs[0]?.k === 'h' ? bs[0].text : 'segbid brief';
  return `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title><style>${CSS}</style></head><body>\n${body.join('\n')}\n</body></html>\n`;
}

function renderMd(bs: Block[]): string {
  const out: string[] = [];
  for (const b of bs) {
    if (b.k === 'h') out.push(`${'#'.repeat(b.level)} ${inlineMd(b.text)}`);
    else if (b.k === 'p') out.push(inlineMd(b.text));
    else if (b.k === 'ul') out.push(b.items.map((i) => `${'  '.repeat(i.depth)}- ${inlineMd(i.text)}`).join('\n'));
    else {
      const num = new Set(b.num ?? []);
      out.push(
        [`| ${b.head.map(inlineMd).join(' | ')} |`, `| ${b.head.map((_, i) => (num.has(i) ? '---:' : '---')).join(' | ')} |`, ...b.rows.map((r) => `| ${r.map(inlineMd).join(' | ')} |`)].join('\n'),
      );
    }
  }
  return out.join('\n\n') + '\n';
}

export function buildBrief(input: BriefInput): Brief {
  const bs = blocks(input);
  return { html: renderHtml(bs), markdown: renderMd(bs) };
}

export interface WriteBriefOptions {
  configPath: string;
  outDir: string;
  /** Event log directory to rebuild the KPIs from (optional). */
  kpisFrom?: string;
  generatedAt?: string;
}

/** The output folder or a file in it cannot be written (a user error: the CLI says so in one line, exit 2). */
export class BriefOutputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BriefOutputError';
  }
}

/**
 * `mkdir -p` for the output folder. Not `mkdirSync(dir, { recursive: true })`: on Node 20 that loops forever
 * (at full CPU) where mkdir answers ENOENT although the parent exists, e.g. under /proc.
 */
function makeOutDir(dir: string): void {
  const missing: string[] = [];
  for (let p = resolve(dir); ; ) {
    try {
      if (!statSync(p).isDirectory()) throw new BriefOutputError(`${p} is not a directory`);
      break;
    } catch (e) {
      if (e instanceof BriefOutputError || (e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    missing.push(p);
    const parent = dirname(p);
    if (parent === p) break;
    p = parent;
  }
  for (const p of missing.reverse()) {
    try {
      mkdirSync(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && statSync(p).isDirectory()) continue;
      throw e;
    }
  }
}

/**
 * Loads the config (and store header, and event log), writes brief.html and brief.md; returns their paths.
 * The config goes through the bidder's whole validation (schema, then every cross-reference: duplicate ids,
 * unknown creatives or segments, budgets...): a brief never describes a config the bidder would refuse.
 * Throws SegbidError (CONFIG_INVALID with every error by path) or BriefOutputError.
 */
export function writeBrief(options: WriteBriefOptions): { html: string; markdown: string; warnings: string[] } {
  const { doc, baseDir, source } = readConfigFile(options.configPath);
  compileDocument(doc, baseDir, source); // every error at once, as the bidder reports them
  const loaded = validateConfigDocument(doc, baseDir, source);
  if (loaded.config.kpis !== undefined) {
    try {
      new KpiStore(loaded.config.kpis, loaded.segmentation.segments);
    } catch (e) {
      if (!(e instanceof SegbidError)) throw e;
      throw new SegbidError('CONFIG_INVALID', `${loaded.source}: invalid configuration`, [{ path: '/kpis', message: e.message }]);
    }
  }
  const warnings: string[] = [];
  let store: StoreSummary | null = null;
  if (loaded.storePath) {
    try {
      store = readStoreHeader(loaded.storePath);
    } catch (e) {
      warnings.push(`segment store not read (${(e as Error).message}): volumes are left to the compile report`);
    }
  }
  let kpis: BriefInput['kpis'] = null;
  if (options.kpisFrom !== undefined) {
    const kpiStore = new KpiStore({ maxKeysPerDimension: 100_000 }, loaded.segmentation.segments);
    const stats = replayEventLog(options.kpisFrom, (r) => kpiStore.apply(r));
    if (stats.segments === 0) warnings.push(`no event log segment in ${options.kpisFrom}: the measured KPIs are all zero`);
    kpis = {
      segment: kpiReport(kpiStore, { dimension: 'segment', discrepancies: false }),
      lineItem: kpiReport(kpiStore, { dimension: 'line_item', discrepancies: false }),
      logDir: options.kpisFrom,
    };
  }
  const brief = buildBrief({
    config: loaded.config,
    segmentation: loaded.segmentation,
    source: loaded.source,
    generatedAt: options.generatedAt ?? new Date().toISOString(),
    store,
    kpis,
  });
  const html = join(options.outDir, 'brief.html');
  const markdown = join(options.outDir, 'brief.md');
  try {
    makeOutDir(options.outDir);
    writeFileSync(html, brief.html);
    writeFileSync(markdown, brief.markdown);
  } catch (e) {
    if (e instanceof BriefOutputError) throw e;
    throw new BriefOutputError(`cannot write the brief to ${options.outDir}: ${(e as Error).message}`);
  }
  return { html, markdown, warnings };
}
