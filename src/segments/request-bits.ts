/**
 * Bid-time segment bits: what the request itself says about the user and the context, ORed into the user's
 * bitset next to the store rows.
 *
 *   third_party  user.data[].id (provider) + user.data[].segment[].id  -> the bits of the segments listing them
 *   contextual   site/app categories (cat, sectioncat, pagecat; a rule's IAB12 matches IAB12-3), site/app
 *                domain (a rule's domain matches its subdomains) and app bundle (exact), device.geo.country
 *                (else user.geo.country), device.devicetype, and the UTC hour and day of nowMs. Every dimension
 *                a rule names must match; any value of a dimension matches it.
 *   lookalike    the user's provider segments scored with the table learned by the compiler (store header):
 *                score = sum of the weights of the distinct provider segments the request lists; the bit is set
 *                when score >= the effective threshold AND the user is not already in the seed segment (a seed
 *                member is not its own twin: call orRequestBits AFTER ORing the store rows into `out`)
 *   groups       set when any descendant bit is set (after everything else)
 *
 * Built once per (segmentation, store header): every table is precomputed (Maps from strings to feature /
 * entry indices, typed arrays for bits, weights, thresholds, scratch scores). orRequestBits allocates nothing:
 * no closures, no arrays, no substrings (domain suffixes are found by hash, then checked with endsWith).
 * Loops are bounded: 16 data providers x 64 segments, 32 categories per list. Never throws on request content:
 * fields of the wrong type are ignored.
 * `header` may be null (no store / a store without lookalikes): lookalike segments then never match.
 * Request domains are matched case-sensitively against lower-cased rule domains (exchanges send lower case).
 */
import type { SegmentationDef } from '../config/types.js';
import { buildDictionary, type SegmentDictionary } from './segmentation.js';
import type { StoreHeader } from './segment-store.js';
import { DAY_NAMES, applyGroups, groupMasks, thirdPartyRefs, type ContextualRule, type ThirdPartyRule } from './rules.js';

/* The request as validated by src/openrtb/validate.ts; every field read here is type-checked again. */
type Any = any; // eslint-disable-line @typescript-eslint/no-explicit-any

export const MAX_DATA_PROVIDERS = 16;
export const MAX_DATA_SEGMENTS = 64;
export const MAX_CATEGORIES = 32;

const DIM_CAT = 1;
const DIM_DOMAIN = 2;
const DIM_COUNTRY = 4;
const DIM_DEVICE = 8;
const DIM_TIME = 16;

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

interface DomainEntry {
  readonly domain: string;
  /** Contextual segment indices listing this domain. */
  readonly ctx: Int32Array;
}

/** Hash of a domain suffix, fed right to left; the same loop runs over request domains. */
function suffixHashStep(h: number, c: number): number {
  return Math.imul(h ^ c, 0x01000193);
}
const SUFFIX_SEED = 0x811c9dc5 | 0;

function domainHash(domain: string): number {
  let h = SUFFIX_SEED;
  for (let i = domain.length - 1; i >= 0; i--) h = suffixHashStep(h, domain.charCodeAt(i));
  return h;
}

export class RequestSegmenter {
  readonly words: number;
  // third-party + lookalike features: provider -> segment id -> feature index
  private readonly features = new Map<string, Map<string, number>>();
  private readonly featTpStart: Int32Array;
  private readonly featTpBits: Int32Array;
  private readonly featLaStart: Int32Array;
  private readonly featLa: Int32Array;
  private readonly featLaWeight: Int32Array;
  private readonly featSeen: Uint32Array;
  private generation = 0;
  // lookalikes
  private readonly laBit: Int32Array;
  private readonly laSeedBit: Int32Array;
  private readonly laThreshold: Int32Array;
  private readonly laScore: Int32Array;
  // contextual
  private readonly ctxBit: Int32Array;
  private readonly ctxRequired: Uint8Array;
  private readonly ctxHours: Uint32Array;
  private readonly ctxDays: Uint8Array;
  private readonly ctxHit: Uint8Array;
  private readonly byCat = new Map<string, Int32Array>();
  /** Rule categories, for the parent match of a request's "IAB12-3" against a rule's "IAB12". */
  private readonly ruleCats: string[] = [];
  private readonly byDomainHash = new Map<number, DomainEntry[]>();
  private readonly byCountry = new Map<string, Int32Array>();
  private readonly byDeviceType: (Int32Array | null)[] = new Array(32).fill(null);
  private readonly groups: { bit: number; mask: Uint32Array }[];

  constructor(def: SegmentationDef, header: Pick<StoreHeader, 'lookalikes'> | null, dictionary?: SegmentDictionary) {
    const dict = dictionary ?? buildDictionary(def, '', []);
    this.words = dict.words;
    const bitOf = dict.bitOf;

    // Features: every (provider, segment) named by a third_party rule or a lookalike table.
    const tpBits: number[][] = [];
    const laEntries: { la: number; weight: number }[][] = [];
    const featureIndex = (provider: string, segment: string): number => {
      let segs = this.features.get(provider);
      if (!segs) this.features.set(provider, (segs = new Map()));
      let f = segs.get(segment);
      if (f === undefined) {
        f = tpBits.length;
        segs.set(segment, f);
        tpBits.push([]);
        laEntries.push([]);
      }
      return f;
    };
    for (const s of def.segments) {
      if (s.kind !== 'third_party') continue;
      const bit = bitOf.get(s.id)!;
      for (const ref of thirdPartyRefs(s.rule as ThirdPartyRule)) {
        for (const seg of ref.segments) {
          const f = featureIndex(ref.provider, seg);
          if (!tpBits[f].includes(bit)) tpBits[f].push(bit);
        }
      }
    }
    const tables = (header?.lookalikes ?? []).filter((t) => bitOf.has(t.segment) && bitOf.has(t.seed));
    this.laBit = new Int32Array(tables.length);
    this.laSeedBit = new Int32Array(tables.length);
    this.laThreshold = new Int32Array(tables.length);
    this.laScore = new Int32Array(tables.length);
    tables.forEach((t, la) => {
      this.laBit[la] = bitOf.get(t.segment)!;
      this.laSeedBit[la] = bitOf.get(t.seed)!;
      this.laThreshold[la] = t.threshold;
      for (let i = 0; i < t.weights.length; i++) laEntries[featureIndex(t.providers[i], t.segmentIds[i])].push({ la, weight: t.weights[i] });
    });
    const f = tpBits.length;
    this.featTpStart = new Int32Array(f + 1);
    this.featLaStart = new Int32Array(f + 1);
    for (let i = 0; i < f; i++) {
      this.featTpStart[i + 1] = this.featTpStart[i] + tpBits[i].length;
      this.featLaStart[i + 1] = this.featLaStart[i] + laEntries[i].length;
    }
    this.featTpBits = Int32Array.from(tpBits.flat());
    this.featLa = Int32Array.from(laEntries.flat().map((e) => e.la));
    this.featLaWeight = Int32Array.from(laEntries.flat().map((e) => e.weight));
    this.featSeen = new Uint32Array(f);

    // Contextual tables.
    const ctx = def.segments.filter((s) => s.kind === 'contextual');
    this.ctxBit = new Int32Array(ctx.length);
    this.ctxRequired = new Uint8Array(ctx.length);
    this.ctxHours = new Uint32Array(ctx.length);
    this.ctxDays = new Uint8Array(ctx.length);
    this.ctxHit = new Uint8Array(ctx.length);
    const cat = new Map<string, number[]>();
    const domain = new Map<string, number[]>();
    const country = new Map<string, number[]>();
    const device = new Map<number, number[]>();
    const add = <K>(m: Map<K, number[]>, k: K, c: number) => {
      const list = m.get(k) ?? [];
      if (!list.includes(c)) list.push(c);
      m.set(k, list);
    };
    ctx.forEach((s, c) => {
      const rule = s.rule as ContextualRule;
      this.ctxBit[c] = bitOf.get(s.id)!;
      let required = 0;
      if (rule.cat) {
        required |= DIM_CAT;
        for (const x of rule.cat) add(cat, x, c);
      }
      if (rule.domains) {
        required |= DIM_DOMAIN;
        for (const x of rule.domains) add(domain, x.toLowerCase(), c);
      }
      if (rule.countries) {
        required |= DIM_COUNTRY;
        for (const x of rule.countries) add(country, x, c);
      }
      if (rule.deviceTypes) {
        required |= DIM_DEVICE;
        for (const x of rule.deviceTypes) add(device, x, c);
      }
      if (rule.hours || rule.days) {
        required |= DIM_TIME;
        const [from, to] = rule.hours ?? [0, 24];
        let hours = 0;
        for (let h = 0; h < 24; h++) if (from < to ? h >= from && h < to : h >= from || h < to) hours |= 1 << h;
        this.ctxHours[c] = hours >>> 0;
        let days = 0;
        for (const d of rule.days ?? DAY_NAMES) days |= 1 << DAY_NAMES.indexOf(d);
        this.ctxDays[c] = days;
      }
      this.ctxRequired[c] = required;
    });
    for (const [k, v] of cat) {
      this.byCat.set(k, Int32Array.from(v));
      this.ruleCats.push(k);
    }
    for (const [k, v] of domain) {
      const h = domainHash(k);
      const list = this.byDomainHash.get(h) ?? [];
      list.push({ domain: k, ctx: Int32Array.from(v) });
      this.byDomainHash.set(h, list);
    }
    for (const [k, v] of country) this.byCountry.set(k, Int32Array.from(v));
    for (const [k, v] of device) this.byDeviceType[k] = Int32Array.from(v);
    this.groups = groupMasks(def, bitOf, this.words);
  }

  /**
   * ORs the request's third-party, contextual, lookalike and group bits into `out` (length >= words).
   * `personalData` false (no consent): only the contextual bits; 3rd-party data and lookalike scores are the
   * user's personal data.
   */
  orRequestBits(req: Any, nowMs: number, out: Uint32Array, personalData = true): void {
    if (this.ctxBit.length > 0) this.contextual(req, nowMs, out);
    const user = req.user;
    if (personalData && this.featSeen.length > 0 && user !== undefined && user !== null && Array.isArray(user.data)) this.userData(user.data, out);
    applyGroups(this.groups, out);
  }

  private userData(data: Any[], out: Uint32Array): void {
    const laCount = this.laBit.length;
    const scores = this.laScore;
    if (laCount > 0) scores.fill(0);
    this.generation = (this.generation + 1) >>> 0 || 1;
    const gen = this.generation;
    const n = data.length < MAX_DATA_PROVIDERS ? data.length : MAX_DATA_PROVIDERS;
    for (let d = 0; d < n; d++) {
      const entry = data[d];
      if (entry === null || typeof entry !== 'object' || typeof entry.id !== 'string' || !Array.isArray(entry.segment)) continue;
      const segs = this.features.get(entry.id);
      if (segs === undefined) continue;
      const list = entry.segment as Any[];
      const m = list.length < MAX_DATA_SEGMENTS ? list.length : MAX_DATA_SEGMENTS;
      for (let s = 0; s < m; s++) {
        const seg = list[s];
        if (seg === null || typeof seg !== 'object' || typeof seg.id !== 'string') continue;
        const f = segs.get(seg.id);
        if (f === undefined || this.featSeen[f] === gen) continue;
        this.featSeen[f] = gen;
        for (let i = this.featTpStart[f]; i < this.featTpStart[f + 1]; i++) {
          const bit = this.featTpBits[i];
          out[bit >>> 5] |= 1 << (bit & 31);
        }
        for (let i = this.featLaStart[f]; i < this.featLaStart[f + 1]; i++) scores[this.featLa[i]] += this.featLaWeight[i];
      }
    }
    for (let la = 0; la < laCount; la++) {
      if (scores[la] < this.laThreshold[la]) continue;
      const seed = this.laSeedBit[la];
      if ((out[seed >>> 5] & (1 << (seed & 31))) !== 0) continue;
      const bit = this.laBit[la];
      out[bit >>> 5] |= 1 << (bit & 31);
    }
  }

  private contextual(req: Any, nowMs: number, out: Uint32Array): void {
    const hit = this.ctxHit;
    hit.fill(0);
    const site = req.site;
    const app = req.app;
    const inventory = site !== undefined && site !== null ? site : app !== undefined && app !== null ? app : undefined;
    if (inventory !== undefined && typeof inventory === 'object') {
      if (this.byCat.size > 0) {
        this.categories(inventory.cat);
        this.categories(inventory.sectioncat);
        this.categories(inventory.pagecat);
      }
      if (this.byDomainHash.size > 0) {
        if (typeof inventory.domain === 'string') this.domain(inventory.domain, true);
        if (inventory === app && typeof app.bundle === 'string') this.domain(app.bundle, false);
      }
    }
    const device = req.device;
    if (device !== undefined && device !== null && typeof device === 'object') {
      const dt = device.devicetype;
      if (typeof dt === 'number' && dt >= 0 && dt < 32) this.mark(this.byDeviceType[dt | 0], DIM_DEVICE);
    }
    if (this.byCountry.size > 0) {
      const dgeo = device !== undefined && device !== null ? device.geo : undefined;
      let country = dgeo !== undefined && dgeo !== null ? dgeo.country : undefined;
      if (typeof country !== 'string') {
        const user = req.user;
        const ugeo = user !== undefined && user !== null ? user.geo : undefined;
        country = ugeo !== undefined && ugeo !== null ? ugeo.country : undefined;
      }
      if (typeof country === 'string') {
        const list = this.byCountry.get(country);
        if (list !== undefined) this.mark(list, DIM_COUNTRY);
      }
    }
    const hourBit = nowMs >= 0 ? 1 << Math.floor(nowMs / HOUR_MS) % 24 : 0;
    const dayBit = nowMs >= 0 ? 1 << (Math.floor(nowMs / DAY_MS) + 4) % 7 : 0; // 1970-01-01 was a Thursday (4)
    for (let c = 0; c < hit.length; c++) {
      const required = this.ctxRequired[c];
      let h = hit[c];
      if ((required & DIM_TIME) !== 0 && (this.ctxHours[c] & hourBit) !== 0 && (this.ctxDays[c] & dayBit) !== 0) h |= DIM_TIME;
      if ((h & required) === required) {
        const bit = this.ctxBit[c];
        out[bit >>> 5] |= 1 << (bit & 31);
      }
    }
  }

  private mark(list: Int32Array | null, dim: number): void {
    if (list === null) return;
    for (let i = 0; i < list.length; i++) this.ctxHit[list[i]] |= dim;
  }

  private categories(cats: Any): void {
    if (!Array.isArray(cats)) return;
    const n = cats.length < MAX_CATEGORIES ? cats.length : MAX_CATEGORIES;
    for (let i = 0; i < n; i++) {
      const cat = cats[i];
      if (typeof cat !== 'string') continue;
      const exact = this.byCat.get(cat);
      if (exact !== undefined) this.mark(exact, DIM_CAT);
      const dash = cat.indexOf('-');
      if (dash <= 0) continue;
      for (let r = 0; r < this.ruleCats.length; r++) {
        const rc = this.ruleCats[r];
        if (rc.length === dash && cat.startsWith(rc)) this.mark(this.byCat.get(rc)!, DIM_CAT);
      }
    }
  }

  /** Marks the rules listing `domain` or (withSuffixes) one of its parent domains. */
  /** Domains and bundles ignore case: the rules' are lower-cased at load, the request's folded here (ASCII). */
  private domain(domain: string, withSuffixes: boolean): void {
    let h = SUFFIX_SEED;
    for (let i = domain.length - 1; i >= 0; i--) {
      let c = domain.charCodeAt(i);
      if (c >= 65 && c <= 90) c += 32;
      if (c === 46 && withSuffixes && i + 1 < domain.length) this.domainCandidates(h, domain, domain.length - i - 1);
      h = suffixHashStep(h, c);
    }
    this.domainCandidates(h, domain, domain.length);
  }

  private domainCandidates(h: number, domain: string, suffixLength: number): void {
    const list = this.byDomainHash.get(h);
    if (list === undefined) return;
    for (let i = 0; i < list.length; i++) {
      const e = list[i];
      if (e.domain.length === suffixLength && endsWithFolded(domain, e.domain)) this.mark(e.ctx, DIM_DOMAIN);
    }
  }
}

/** Whether `text` ends with `lower` (lower case), ASCII letters of `text` compared case-insensitively. */
function endsWithFolded(text: string, lower: string): boolean {
  const off = text.length - lower.length;
  if (off < 0) return false;
  for (let i = 0; i < lower.length; i++) {
    let c = text.charCodeAt(off + i);
    if (c >= 65 && c <= 90) c += 32;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}
