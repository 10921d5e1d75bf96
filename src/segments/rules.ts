/**
 * The rule language of the segmentation tree, per segment kind, and its evaluation over CRM records.
 *
 *   crm          a predicate over CRM export columns:
 *                  {col, eq|ne: string|number|boolean}   {col, gt|gte|lt|lte: number}
 *                  {col, between: [lo, hi]} (inclusive)  {col, in: [values...]}
 *                  {all: [rules]}  {any: [rules]}  {not: rule}
 *   third_party  {provider: "<user.data[].id>", segments: ["<segment ids>"]}, or a list of those (any of them)
 *   contextual   {cat?, domains?, countries?, deviceTypes?, hours?: [from, to), days?}: every dimension given
 *                must match (AND), any value of a dimension matches it (OR); evaluated at bid time only
 *                (src/segments/request-bits.ts)
 *   lookalike    {seed: "<crm segment id>", threshold: <score>, reach: <0-1>, minLift?, topK?}: learned by the
 *                compiler (src/segments/compiler/lookalike.ts), scored at bid time from user.data
 *   group        no rule: a user is in a group when it is in any of the group's descendants
 *
 * Value semantics of a CRM column (one definition for the compiled and the naive evaluator):
 *   - a value is canonicalised to a string: CSV text as is; JSON numbers/booleans via String(); null, absent,
 *     objects and arrays -> "" (missing);
 *   - gt/gte/lt/lte/between read it as a number (Number() of the trimmed text); missing or not a number -> false;
 *   - eq with a number compares numerically, with a boolean accepts true/1 and false/0, with a string compares
 *     the text exactly; `ne` is exactly `not eq` (so a missing value is `ne` anything); `in` is any `eq`.
 * Compiled rules are generated JavaScript functions (compileCrmRules), built once per compile run; they are for
 * the offline compiler (millions of records), not the bid path, which only reads bits.
 */
import type { SegmentDef, SegmentationDef } from '../config/types.js';

export type Scalar = string | number | boolean;

export type CrmRule =
  | { all: CrmRule[] }
  | { any: CrmRule[] }
  | { not: CrmRule }
  | { col: string; eq: Scalar }
  | { col: string; ne: Scalar }
  | { col: string; gt: number }
  | { col: string; gte: number }
  | { col: string; lt: number }
  | { col: string; lte: number }
  | { col: string; between: [number, number] }
  | { col: string; in: Scalar[] };

export interface ThirdPartyRef {
  provider: string;
  segments: string[];
}
export type ThirdPartyRule = ThirdPartyRef | ThirdPartyRef[];

export const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type DayName = (typeof DAY_NAMES)[number];

export interface ContextualRule {
  /** IAB content categories of site/app (a parent like IAB12 also matches IAB12-3). */
  cat?: string[];
  /** Site/app domains (a domain also matches its subdomains) and app bundles (exact). */
  domains?: string[];
  /** ISO-3166-1 alpha-3 countries (OpenRTB geo.country). */
  countries?: string[];
  /** OpenRTB device.devicetype values. */
  deviceTypes?: number[];
  /** UTC hours [from, to): 0-24; from > to wraps past midnight ([22, 6] = night). */
  hours?: [number, number];
  /** UTC days of the week. */
  days?: DayName[];
}

export interface LookalikeRule {
  /** A crm segment id: the users the lookalike resembles. */
  seed: string;
  /** Minimum score (sum of natural log-lifts of the provider segments a user carries), > 0. */
  threshold: number;
  /** Maximum share (0-1] of the scored base that may be in the lookalike; the compiler raises the threshold to hold it. */
  reach: number;
  /** Provider segments whose lift is below this are ignored (default 1.5). */
  minLift?: number;
  /** Size of the scoring table (default 32). */
  topK?: number;
}

export const DEFAULT_MIN_LIFT = 1.5;
export const DEFAULT_TOP_K = 32;

/** The CRM column listing a user's provider segments: `provider:segment` pairs separated by `;` (or a JSON array). */
export const TP_COLUMN = 'tp_segments';

// ---------------------------------------------------------------------------------------------------------
// Value canonicalisation (shared by both evaluators)

/** Canonical text of a raw column value; "" means missing. */
export function canonical(raw: unknown): string {
  if (typeof raw === 'string') return raw;
  if (typeof raw === 'number') return Number.isFinite(raw) ? String(raw) : '';
  if (typeof raw === 'boolean') return raw ? 'true' : 'false';
  return '';
}

/** Numeric reading of a canonical text; NaN when missing or not a number. */
export function numeric(text: string): number {
  const t = text.trim();
  return t.length === 0 ? NaN : Number(t);
}

/** Boolean reading: 1 true, 0 false, -1 neither. */
function truth(text: string): number {
  const t = text.trim().toLowerCase();
  if (t === 'true' || t === '1') return 1;
  if (t === 'false' || t === '0') return 0;
  return -1;
}

function scalarEquals(text: string, num: number, v: Scalar): boolean {
  if (typeof v === 'number') return num === v; // NaN never equals
  if (typeof v === 'boolean') return truth(text) === (v ? 1 : 0);
  return text === v;
}

// ---------------------------------------------------------------------------------------------------------
// Naive evaluator: the obvious recursive reading, for tests and as the reference semantics

export function evalCrmRule(rule: CrmRule, record: Readonly<Record<string, unknown>>): boolean {
  if ('all' in rule) return rule.all.every((r) => evalCrmRule(r, record));
  if ('any' in rule) return rule.any.some((r) => evalCrmRule(r, record));
  if ('not' in rule) return !evalCrmRule(rule.not, record);
  const text = canonical(record[rule.col]);
  const num = numeric(text);
  if ('eq' in rule) return scalarEquals(text, num, rule.eq);
  if ('ne' in rule) return !scalarEquals(text, num, rule.ne);
  if ('gt' in rule) return num > rule.gt;
  if ('gte' in rule) return num >= rule.gte;
  if ('lt' in rule) return num < rule.lt;
  if ('lte' in rule) return num <= rule.lte;
  if ('between' in rule) return num >= rule.between[0] && num <= rule.between[1];
  return rule.in.some((v) => scalarEquals(text, num, v));
}

// ---------------------------------------------------------------------------------------------------------
// Compiled evaluator

/** Sets, in a row, the bits of the crm rules a record matches: texts[i] canonical text, nums[i] its numeric reading. */
export type CompiledCrmRules = (texts: readonly string[], nums: Float64Array, row: Uint32Array) => void;

/** Column names a rule reads, in first-seen order, appended to `into`. */
export function ruleColumns(rule: CrmRule, into: string[]): string[] {
  if ('all' in rule) for (const r of rule.all) ruleColumns(r, into);
  else if ('any' in rule) for (const r of rule.any) ruleColumns(r, into);
  else if ('not' in rule) ruleColumns(rule.not, into);
  else if (!into.includes(rule.col)) into.push(rule.col);
  return into;
}

/** Columns a rule reads as numbers (comparisons, ranges, numeric eq/ne/in), added to `into`. */
export function numericColumns(rule: CrmRule, into: Set<string>): Set<string> {
  if ('all' in rule) for (const r of rule.all) numericColumns(r, into);
  else if ('any' in rule) for (const r of rule.any) numericColumns(r, into);
  else if ('not' in rule) numericColumns(rule.not, into);
  else if (!('eq' in rule || 'ne' in rule || 'in' in rule)) into.add(rule.col);
  else if ('eq' in rule ? typeof rule.eq === 'number' : 'ne' in rule ? typeof rule.ne === 'number' : rule.in.some((v) => typeof v === 'number')) {
    into.add(rule.col);
  }
  return into;
}

/** Rules per generated function: keeps each one small enough for the optimising compiler. */
const RULES_PER_FUNCTION = 64;
const IN_LIST_INLINE = 8;

function literal(v: number): string {
  if (!Number.isFinite(v)) throw new Error(`rule constant ${v} is not a finite number`);
  return String(v);
}

/**
 * Compiles crm rules into JavaScript functions (as ajv compiles schemas): one straight-line test per rule over
 * the record's columns, `if (<predicate>) row[w] |= mask`. Millions of records x hundreds of rules make a tree
 * of closures (a megamorphic call per node) several times slower. The source is generated from schema-valid
 * rules only: column indices are integers, numbers go through literal() (finite), strings through
 * JSON.stringify, long `in` lists become Sets passed as data: no rule text reaches the code unquoted.
 * `columnIndex` maps a column name to its index in texts/nums.
 */
export function compileCrmRules(rules: readonly { bit: number; rule: CrmRule }[], columnIndex: (col: string) => number): CompiledCrmRules {
  const sets: Set<string>[] = [];
  const expr = (rule: CrmRule): string => {
    if ('all' in rule) return `(${rule.all.map(expr).join(' && ')})`;
    if ('any' in rule) return `(${rule.any.map(expr).join(' || ')})`;
    if ('not' in rule) return `!${expr(rule.not)}`;
    const c = columnIndex(rule.col);
    if (!Number.isInteger(c) || c < 0) throw new Error(`unknown column ${rule.col}`);
    const t = `t[${c}]`;
    const n = `n[${c}]`;
    const eq = (v: Scalar): string =>
      typeof v === 'number' ? `${n} === ${literal(v)}` : typeof v === 'boolean' ? `truth(${t}) === ${v ? 1 : 0}` : `${t} === ${JSON.stringify(v)}`;
    if ('gt' in rule) return `(${n} > ${literal(rule.gt)})`;
    if ('gte' in rule) return `(${n} >= ${literal(rule.gte)})`;
    if ('lt' in rule) return `(${n} < ${literal(rule.lt)})`;
    if ('lte' in rule) return `(${n} <= ${literal(rule.lte)})`;
    if ('between' in rule) return `(${n} >= ${literal(rule.between[0])} && ${n} <= ${literal(rule.between[1])})`;
    if ('eq' in rule) return `(${eq(rule.eq)})`;
    if ('ne' in rule) return `!(${eq(rule.ne)})`;
    const strings = rule.in.filter((v): v is string => typeof v === 'string');
    const others = rule.in.filter((v) => typeof v !== 'string');
    const parts = others.map(eq);
    if (strings.length > IN_LIST_INLINE) {
      sets.push(new Set(strings));
      parts.unshift(`sets[${sets.length - 1}].has(${t})`);
    } else parts.unshift(...strings.map(eq));
    return `(${parts.join(' || ')})`;
  };
  const chunks: CompiledCrmRules[] = [];
  for (let from = 0; from < rules.length; from += RULES_PER_FUNCTION) {
    let body = '"use strict";\nreturn function crmRules(t, n, row) {\n';
    for (const { bit, rule } of rules.slice(from, from + RULES_PER_FUNCTION)) {
      if (!Number.isInteger(bit) || bit < 0) throw new Error(`bad bit ${bit}`);
      body += `  if (${expr(rule)}) row[${bit >>> 5}] |= ${(1 << (bit & 31)) | 0};\n`;
    }
    body += '};\n';
    chunks.push(new Function('truth', 'sets', body)(truth, sets) as CompiledCrmRules);
  }
  if (chunks.length === 0) return () => {};
  if (chunks.length === 1) return chunks[0];
  return (t, n, row) => {
    for (let i = 0; i < chunks.length; i++) chunks[i](t, n, row);
  };
}

// ---------------------------------------------------------------------------------------------------------
// Third-party data carried by a CRM record

/**
 * Parses a tp_segments value into `provider:segment` strings (split at the first ':'). Accepts the CSV text
 * form `6:123;6:777` (separators `;`, `|` or whitespace) or, from NDJSON, an array of such strings or of
 * {provider, segment} objects. Duplicates are kept (callers dedupe).
 */
export function parseTpSegments(raw: unknown, into: string[]): string[] {
  into.length = 0;
  if (typeof raw === 'string') {
    let start = 0;
    for (let i = 0; i <= raw.length; i++) {
      const c = i < raw.length ? raw.charCodeAt(i) : 59;
      if (c === 59 /* ; */ || c === 124 /* | */ || c === 32 || c === 9 || c === 44 /* , */) {
        if (i > start) {
          const item = raw.slice(start, i);
          const colon = item.indexOf(':');
          if (colon > 0 && colon < item.length - 1) into.push(item);
        }
        start = i + 1;
      }
    }
  } else if (Array.isArray(raw)) {
    for (const item of raw) {
      if (typeof item === 'string') {
        const colon = item.indexOf(':');
        if (colon > 0 && colon < item.length - 1) into.push(item);
      } else if (item !== null && typeof item === 'object') {
        const o = item as { provider?: unknown; segment?: unknown };
        if ((typeof o.provider === 'string' || typeof o.provider === 'number') && (typeof o.segment === 'string' || typeof o.segment === 'number')) {
          into.push(`${o.provider}:${o.segment}`);
        }
      }
    }
  }
  return into;
}

export function thirdPartyRefs(rule: ThirdPartyRule): ThirdPartyRef[] {
  return Array.isArray(rule) ? rule : [rule];
}

/** `provider:segment` feature names of a third-party rule. */
export function thirdPartyFeatures(rule: ThirdPartyRule): string[] {
  const out: string[] = [];
  for (const ref of thirdPartyRefs(rule)) for (const s of ref.segments) out.push(`${ref.provider}:${s}`);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// The tree

/**
 * For each group segment, the bits of its non-group descendants (transitively). A user is in a group iff
 * (bits & mask) != 0; masks hold only leaf-kind bits, so the order groups are filled in does not matter.
 * Assumes a validated tree (parents exist, no cycles).
 */
export function groupMasks(def: SegmentationDef, bitOf: ReadonlyMap<string, number>, words: number): { bit: number; mask: Uint32Array }[] {
  const children = new Map<string, SegmentDef[]>();
  for (const s of def.segments) {
    if (s.parent == null) continue;
    const list = children.get(s.parent) ?? [];
    list.push(s);
    children.set(s.parent, list);
  }
  const out: { bit: number; mask: Uint32Array }[] = [];
  for (const g of def.segments) {
    if (g.kind !== 'group') continue;
    const mask = new Uint32Array(words);
    const stack = [...(children.get(g.id) ?? [])];
    const seen = new Set<string>();
    while (stack.length > 0) {
      const s = stack.pop()!;
      if (seen.has(s.id)) continue;
      seen.add(s.id);
      if (s.kind !== 'group') {
        const bit = bitOf.get(s.id)!;
        mask[bit >>> 5] |= 1 << (bit & 31);
      }
      stack.push(...(children.get(s.id) ?? []));
    }
    out.push({ bit: bitOf.get(g.id)!, mask });
  }
  return out;
}

/** Sets every group bit whose descendants' mask intersects `bits`. Allocation-free. */
export function applyGroups(groups: readonly { bit: number; mask: Uint32Array }[], bits: Uint32Array): void {
  for (let g = 0; g < groups.length; g++) {
    const mask = groups[g].mask;
    for (let w = 0; w < mask.length; w++) {
      if ((bits[w] & mask[w]) !== 0) {
        const bit = groups[g].bit;
        bits[bit >>> 5] |= 1 << (bit & 31);
        break;
      }
    }
  }
}
