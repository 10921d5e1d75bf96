/**
 * Bid multipliers per line item: geo country, device type, day part, channel, domain/bundle lists, CRM tier and
 * lookalike band (both segment bits). The bid sent is base bid x product of the factors (clamped to `max`).
 *
 * Contract
 * - Compiled once per config (compileMultipliers) into typed tables; never mutated afterwards.
 * - Per request, `fillContext(ctx, req, nowMs, userBits)` resolves the request side ONCE into a preallocated
 *   MultiplierContext: country -> interned index (one Map lookup), device type, UTC quarter-hour, channel, and
 *   the domain/bundle -> list-membership row (one Map lookup; a second one only for a non-normalised domain).
 *   `userBits` is the user's segment bitset, or null when personal data may not be used (privacy verdict): CRM
 *   tiers and lookalike bands then never apply. Nothing in ctx is ever null.
 * - HOT PATH, per candidate line item: `computeMultiplier(li, ctx)` reads the tables into ctx.result; no allocation,
 *   no Map.
 *
 * Layout, chosen for ~1,000 line items:
 * - Small closed key spaces are dense tables, one row per key of n line items: country (only countries some line
 *   item names, interned: C of them) C x n, device type 32 x n, channel 3 x n. 1,000 line items x 50 countries =
 *   400 KB; one indexed read each, and a request reads one row of each (its country, device type, channel), so the
 *   line items it values read neighbouring memory.
 *   A Map per country of Float64Array(n) would cost the same memory but one Map lookup per (request, dimension)
 *   AND per-line-item indexing; interning once per request and indexing a flat array is cheaper and simpler.
 * - Day parts: only line items that use them get a 96-slot row (UTC quarter-hours, their timezone offset
 *   already applied at compile time: all real offsets are multiples of 15 minutes), so the hot path does no
 *   clock arithmetic per line item.
 * - Domain/bundle lists can be large (thousands of domains) and shared by many line items, so they are NOT dense
 *   per line item: each distinct list gets a list index; each listed domain maps to a bitset row of the lists
 *   containing it; a line item keeps a short ordered (list, factor) rule array. Memory is O(listed domains x
 *   lists/32 + rules), independent of n.
 * - CRM tiers and lookalike bands: short ordered (bit, factor) rule arrays per line item, first match wins.
 * A per-line-item flag byte skips every dimension a line item does not use (most use none: factor 1).
 */
import type { ErrorDetail } from '../common/errors.js';
import type { SegmentDictionary } from '../segments/segmentation.js';
import type { ListRule, MultipliersDef, SegmentRule } from './strategies/schema.js';

/* The request as validate.ts left it. */
type Any = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const F_COUNTRY = 1;
const F_DEVICE = 2;
const F_DAYPART = 4;
const F_CHANNEL = 8;
const F_LIST = 16;
const F_CRM = 32;
const F_LOOKALIKE = 64;
/** Flags whose factors come from personal data (the user's segments). */
const F_PERSONAL = F_CRM | F_LOOKALIKE;

const DEVICE_SLOTS = 32;
const CHANNELS = 3; // CHANNEL_SITE, CHANNEL_APP, CHANNEL_DOOH of src/config/compile.ts
const CHANNEL_INDEX = { site: 0, app: 1, dooh: 2 } as const;
const DAY_SLOTS = 96; // quarter-hours
const QUARTER_MS = 15 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;
export const DEFAULT_MULTIPLIER_MAX = 10;

/** Per-request inputs of computeMultiplier (and its result); preallocate one per Decider and fill it once per request. */
export class MultiplierContext {
  /** Interned country index, -1 = unknown or not named by any line item. */
  countryIndex = -1;
  /** OpenRTB device type, 0 = unknown. */
  deviceType = 0;
  /** UTC quarter-hour of the day, 0..95. */
  quarter = 0;
  channel = 0;
  /** Lists containing the request's domain (site) or bundle (app); all zero when none. */
  listBits: Uint32Array;
  /** The user's segment bits, or an all-zero bitset when personal data may not be used. */
  userBits: Uint32Array;
  /**
   * Where computeMultiplier leaves its result: a double returned from a call that is not inlined is boxed into
   * a fresh heap number, one per line item valued (~1.3 KB a decision on the large config); a typed slot is not.
   */
  readonly result = new Float64Array(1);

  constructor(table: MultiplierTable) {
    this.listBits = table.noLists;
    this.userBits = table.noUser;
  }
}

/** What the multiplier compiler reads of a line item. */
export interface MultiplierLineItemDef {
  id: string;
  multipliers?: MultipliersDef;
}

export class MultiplierTable {
  readonly size: number;
  readonly flags: Uint8Array;
  readonly max: Float64Array;
  readonly countryIndex: ReadonlyMap<string, number>;
  readonly countries: number;
  readonly countryFactor: Float64Array;
  readonly deviceFactor: Float64Array;
  readonly channelFactor: Float64Array;
  readonly dayRow: Int32Array;
  readonly dayFactor: Float64Array;
  readonly listWords: number;
  readonly domainLists: ReadonlyMap<string, Uint32Array>;
  readonly bundleLists: ReadonlyMap<string, Uint32Array>;
  readonly listRuleStart: Int32Array;
  readonly listRuleList: Int32Array;
  readonly listRuleFactor: Float64Array;
  readonly crmStart: Int32Array;
  readonly crmBit: Int32Array;
  readonly crmFactor: Float64Array;
  readonly lalStart: Int32Array;
  readonly lalBit: Int32Array;
  readonly lalFactor: Float64Array;
  /** Shared all-zero rows for "no list matched" and "no personal data". */
  readonly noLists: Uint32Array;
  readonly noUser: Uint32Array;
  /**
   * Per line item, the most computeMultiplier can return for any request: the product of each used dimension's
   * largest factor (1 where a dimension may not apply), clamped like the result. Exact (1) for a line item
   * without multipliers. The decider values line items lazily and uses it to bound what an unvalued one can bid.
   */
  readonly upper: Float64Array;

  constructor(parts: Omit<MultiplierTable, 'multiplierFor' | 'computeMultiplier' | 'fillContext' | 'usesPersonalData' | 'noLists' | 'noUser' | 'upper'> & { userWords: number }) {
    this.size = parts.size;
    this.flags = parts.flags;
    this.max = parts.max;
    this.countryIndex = parts.countryIndex;
    this.countries = parts.countries;
    this.countryFactor = parts.countryFactor;
    this.deviceFactor = parts.deviceFactor;
    this.channelFactor = parts.channelFactor;
    this.dayRow = parts.dayRow;
    this.dayFactor = parts.dayFactor;
    this.listWords = parts.listWords;
    this.domainLists = parts.domainLists;
    this.bundleLists = parts.bundleLists;
    this.listRuleStart = parts.listRuleStart;
    this.listRuleList = parts.listRuleList;
    this.listRuleFactor = parts.listRuleFactor;
    this.crmStart = parts.crmStart;
    this.crmBit = parts.crmBit;
    this.crmFactor = parts.crmFactor;
    this.lalStart = parts.lalStart;
    this.lalBit = parts.lalBit;
    this.lalFactor = parts.lalFactor;
    this.noLists = new Uint32Array(Math.max(1, parts.listWords));
    this.noUser = new Uint32Array(Math.max(1, parts.userWords));
    this.upper = new Float64Array(this.size);
    for (let li = 0; li < this.size; li++) this.upper[li] = this.upperBound(li);
  }

  /** See `upper`. Factors are >= 0 (schema), so the product of the maxima bounds every product. */
  private upperBound(li: number): number {
    const f = this.flags[li];
    if (f === 0) return 1;
    const maxOf = (values: Float64Array, from: number, to: number, step = 1): number => {
      let m = 1; // the dimension may not apply to a request (unknown country, no list matched, no CRM tier)
      for (let k = from; k < to; k += step) if (values[k] > m) m = values[k];
      return m;
    };
    const n = this.size;
    let m = 1;
    if ((f & F_COUNTRY) !== 0) m *= maxOf(this.countryFactor, li, this.countries * n, n);
    if ((f & F_DEVICE) !== 0) m *= maxOf(this.deviceFactor, li, DEVICE_SLOTS * n, n);
    if ((f & F_DAYPART) !== 0) m *= maxOf(this.dayFactor, this.dayRow[li] * DAY_SLOTS, (this.dayRow[li] + 1) * DAY_SLOTS);
    if ((f & F_CHANNEL) !== 0) m *= maxOf(this.channelFactor, li, CHANNELS * n, n);
    if ((f & F_LIST) !== 0) m *= maxOf(this.listRuleFactor, this.listRuleStart[li], this.listRuleStart[li + 1]);
    if ((f & F_CRM) !== 0) m *= maxOf(this.crmFactor, this.crmStart[li], this.crmStart[li + 1]);
    if ((f & F_LOOKALIKE) !== 0) m *= maxOf(this.lalFactor, this.lalStart[li], this.lalStart[li + 1]);
    return m < this.max[li] ? m : this.max[li];
  }

  /** Whether some factor of this line item depends on the user's segments (CRM tier, lookalike band). */
  usesPersonalData(li: number): boolean {
    return (this.flags[li] & F_PERSONAL) !== 0;
  }

  /**
   * Once per request. `userBits` null = personal data not allowed (CRM tiers / lookalike bands are skipped).
   * Allocation-free except when a site domain is not already normalised (lower case, no "www."): then one
   * lower-cased copy is made to retry the lookup.
   */
  fillContext(ctx: MultiplierContext, req: Any, nowMs: number, userBits: Uint32Array | null): void {
    const device = req.device;
    const geo = device !== undefined && device.geo !== undefined ? device.geo : req.user !== undefined ? req.user.geo : undefined;
    const country = geo === undefined ? undefined : geo.country;
    ctx.countryIndex = typeof country === 'string' ? (this.countryIndex.get(country) ?? -1) : -1;
    const dt = device === undefined ? undefined : device.devicetype;
    ctx.deviceType = typeof dt === 'number' && dt > 0 && dt < DEVICE_SLOTS && (dt | 0) === dt ? dt : 0;
    const ms = nowMs % DAY_MS;
    ctx.quarter = Math.floor((ms < 0 ? ms + DAY_MS : ms) / QUARTER_MS);
    ctx.listBits = this.noLists;
    if (req.site !== undefined) {
      ctx.channel = CHANNEL_INDEX.site;
      const d = req.site.domain;
      if (typeof d === 'string' && this.domainLists.size > 0) {
        let row = this.domainLists.get(d);
        if (row === undefined) {
          const n = normaliseDomain(d);
          if (n !== d) row = this.domainLists.get(n);
        }
        if (row !== undefined) ctx.listBits = row;
      }
    } else if (req.app !== undefined) {
      ctx.channel = CHANNEL_INDEX.app;
      const b = req.app.bundle;
      if (typeof b === 'string' && this.bundleLists.size > 0) {
        const row = this.bundleLists.get(b);
        if (row !== undefined) ctx.listBits = row;
      }
    } else {
      ctx.channel = CHANNEL_INDEX.dooh;
    }
    ctx.userBits = userBits ?? this.noUser;
  }

  /**
   * HOT PATH. Product of the line item's factors for this request, clamped to [0, max], 1 when it has none,
   * left in `ctx.result[0]` (allocation-free; see MultiplierContext.result).
   */
  computeMultiplier(li: number, ctx: MultiplierContext): void {
    const f = this.flags[li];
    let m = 1;
    if (f !== 0) {
      if ((f & F_COUNTRY) !== 0 && ctx.countryIndex >= 0) m *= this.countryFactor[ctx.countryIndex * this.size + li];
      if ((f & F_DEVICE) !== 0) m *= this.deviceFactor[ctx.deviceType * this.size + li];
      if ((f & F_DAYPART) !== 0) m *= this.dayFactor[this.dayRow[li] * DAY_SLOTS + ctx.quarter];
      if ((f & F_CHANNEL) !== 0) m *= this.channelFactor[ctx.channel * this.size + li];
      if ((f & F_LIST) !== 0) {
        const bits = ctx.listBits;
        for (let r = this.listRuleStart[li], end = this.listRuleStart[li + 1]; r < end; r++) {
          const l = this.listRuleList[r];
          if ((bits[l >>> 5] & (1 << (l & 31))) !== 0) {
            m *= this.listRuleFactor[r];
            break;
          }
        }
      }
      if ((f & F_CRM) !== 0) {
        const r = firstSegmentRule(this.crmStart, this.crmBit, li, ctx.userBits);
        if (r >= 0) m *= this.crmFactor[r];
      }
      if ((f & F_LOOKALIKE) !== 0) {
        const r = firstSegmentRule(this.lalStart, this.lalBit, li, ctx.userBits);
        if (r >= 0) m *= this.lalFactor[r];
      }
      const max = this.max[li];
      m = m < max ? m : max;
    }
    ctx.result[0] = m;
  }

  /** computeMultiplier's result as a number (explanations, tests; the bid path reads ctx.result). */
  multiplierFor(li: number, ctx: MultiplierContext): number {
    this.computeMultiplier(li, ctx);
    return ctx.result[0];
  }
}

/** The first rule (index) of the line item whose segment bit the user holds, or -1. */
function firstSegmentRule(start: Int32Array, bit: Int32Array, li: number, user: Uint32Array): number {
  for (let r = start[li], end = start[li + 1]; r < end; r++) {
    const b = bit[r];
    const w = b >>> 5;
    if (w < user.length && (user[w] & (1 << (b & 31))) !== 0) return r;
  }
  return -1;
}

/** Lower case, without a leading "www.": the form list entries are stored in. */
export function normaliseDomain(d: string): string {
  const l = d.toLowerCase();
  return l.startsWith('www.') ? l.slice(4) : l;
}

/** Compiles the multipliers of every line item. Errors are pushed by path; the caller throws CONFIG_INVALID. */
export function compileMultipliers(lineItems: readonly MultiplierLineItemDef[], dictionary: SegmentDictionary, errors: ErrorDetail[]): MultiplierTable {
  const n = lineItems.length;
  const flags = new Uint8Array(n);
  const max = new Float64Array(n).fill(DEFAULT_MULTIPLIER_MAX);

  // Countries: intern every country any line item names.
  const countryIndex = new Map<string, number>();
  for (const li of lineItems) for (const c of Object.keys(li.multipliers?.countries ?? {})) if (!countryIndex.has(c)) countryIndex.set(c, countryIndex.size);
  const countries = countryIndex.size;
  const countryFactor = new Float64Array(n * countries).fill(1);
  const deviceFactor = new Float64Array(n * DEVICE_SLOTS).fill(1);
  const channelFactor = new Float64Array(n * CHANNELS).fill(1);
  const dayRow = new Int32Array(n).fill(-1);
  const dayRows: number[][] = [];

  // Lists: one index per distinct (kind, content); rows per listed domain / bundle.
  const listIndex = new Map<string, number>();
  const domainMembers = new Map<string, number[]>();
  const bundleMembers = new Map<string, number[]>();
  // The same list is often pasted into many line items: dedupe by array identity (YAML aliases), then by content
  // in written order (sorting thousands of domains per line item would make big configs slow to load).
  const listByArray = { d: new Map<string[], number>(), b: new Map<string[], number>() };
  const listOf = (kind: 'd' | 'b', rule: ListRule): number => {
    const same = listByArray[kind].get(rule.list);
    if (same !== undefined) return same;
    const entries = [...new Set(rule.list.map((x) => (kind === 'd' ? normaliseDomain(x) : x)))];
    const key = `${kind}\u0000${entries.join('\u0000')}`;
    let l = listIndex.get(key);
    if (l === undefined) {
      l = listIndex.size;
      listIndex.set(key, l);
      const members = kind === 'd' ? domainMembers : bundleMembers;
      for (const e of entries) {
        const m = members.get(e);
        if (m === undefined) members.set(e, [l]);
        else m.push(l);
      }
    }
    listByArray[kind].set(rule.list, l);
    return l;
  };
  const listStart = [0];
  const listList: number[] = [];
  const listFactor: number[] = [];
  const crm = { start: [0], bit: [] as number[], factor: [] as number[] };
  const lal = { start: [0], bit: [] as number[], factor: [] as number[] };
  const segmentRules = (rules: SegmentRule[] | undefined, into: typeof crm, path: string): boolean => {
    (rules ?? []).forEach((r, j) => {
      const bit = dictionary.bitOf.get(r.segment);
      if (bit === undefined) errors.push({ path: `${path}/${j}/segment`, message: `unknown segment "${r.segment}"` });
      else {
        into.bit.push(bit);
        into.factor.push(r.factor);
      }
    });
    into.start.push(into.bit.length);
    return (rules ?? []).length > 0;
  };

  lineItems.forEach((li, i) => {
    const m = li.multipliers;
    const path = `/lineItems/${i}/multipliers`;
    if (m === undefined) {
      listStart.push(listList.length);
      crm.start.push(crm.bit.length);
      lal.start.push(lal.bit.length);
      return;
    }
    let f = 0;
    if (m.max !== undefined) max[i] = m.max;
    for (const [c, v] of Object.entries(m.countries ?? {})) {
      countryFactor[countryIndex.get(c)! * n + i] = v;
      f |= F_COUNTRY;
    }
    for (const [d, v] of Object.entries(m.deviceTypes ?? {})) {
      const dt = Number(d);
      if (!(dt >= 1 && dt < DEVICE_SLOTS && (dt | 0) === dt)) {
        errors.push({ path: `${path}/deviceTypes/${d}`, message: 'device type must be an integer 1..31' });
        continue;
      }
      deviceFactor[dt * n + i] = v;
      f |= F_DEVICE;
    }
    for (const [ch, v] of Object.entries(m.channels ?? {})) {
      channelFactor[CHANNEL_INDEX[ch as keyof typeof CHANNEL_INDEX] * n + i] = v as number;
      f |= F_CHANNEL;
    }
    if (m.dayParts !== undefined) {
      const hours = new Float64Array(24).fill(1);
      const set = new Uint8Array(24);
      m.dayParts.ranges.forEach((r, j) => {
        for (let h = r.from, k = 0; k < 24; h = (h + 1) % 24, k++) {
          if (set[h]) errors.push({ path: `${path}/dayParts/ranges/${j}`, message: `hour ${h} is already in an earlier range` });
          set[h] = 1;
          hours[h] = r.factor;
          if (h === r.to) break;
        }
      });
      const offset = m.dayParts.tzOffsetMinutes ?? 0;
      if (offset % 15 !== 0) errors.push({ path: `${path}/dayParts/tzOffsetMinutes`, message: 'must be a multiple of 15 minutes' });
      const row: number[] = [];
      for (let q = 0; q < DAY_SLOTS; q++) {
        const local = (((q * 15 + offset) % 1440) + 1440) % 1440;
        row.push(hours[Math.floor(local / 60)]);
      }
      dayRow[i] = dayRows.length;
      dayRows.push(row);
      f |= F_DAYPART;
    }
    for (const r of m.domains ?? []) {
      listList.push(listOf('d', r));
      listFactor.push(r.factor);
    }
    for (const r of m.bundles ?? []) {
      listList.push(listOf('b', r));
      listFactor.push(r.factor);
    }
    if (listList.length > listStart[listStart.length - 1]) f |= F_LIST;
    listStart.push(listList.length);
    if (segmentRules(m.crmTiers, crm, `${path}/crmTiers`)) f |= F_CRM;
    if (segmentRules(m.lookalikeBands, lal, `${path}/lookalikeBands`)) f |= F_LOOKALIKE;
    flags[i] = f;
  });

  const listWords = Math.max(1, Math.ceil(listIndex.size / 32));
  const rows = (members: Map<string, number[]>): Map<string, Uint32Array> => {
    const out = new Map<string, Uint32Array>();
    for (const [key, lists] of members) {
      const row = new Uint32Array(listWords);
      for (const l of lists) row[l >>> 5] |= 1 << (l & 31);
      out.set(key, row);
    }
    return out;
  };
  const dayFactor = new Float64Array(Math.max(1, dayRows.length) * DAY_SLOTS);
  dayRows.forEach((row, r) => dayFactor.set(row, r * DAY_SLOTS));
  return new MultiplierTable({
    size: n,
    flags,
    max,
    countryIndex,
    countries,
    countryFactor,
    deviceFactor,
    channelFactor,
    dayRow,
    dayFactor,
    listWords,
    domainLists: rows(domainMembers),
    bundleLists: rows(bundleMembers),
    listRuleStart: Int32Array.from(listStart),
    listRuleList: Int32Array.from(listList),
    listRuleFactor: Float64Array.from(listFactor),
    crmStart: Int32Array.from(crm.start),
    crmBit: Int32Array.from(crm.bit),
    crmFactor: Float64Array.from(crm.factor),
    lalStart: Int32Array.from(lal.start),
    lalBit: Int32Array.from(lal.bit),
    lalFactor: Float64Array.from(lal.factor),
    userWords: dictionary.words,
  });
}
