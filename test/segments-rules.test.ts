/**
 * The rule language: schema errors with their paths, cross-checks, and the central property: for random CRM
 * records and random rules, a store lookup (compile -> encode -> decode -> orInto) equals evaluating the rules
 * directly on the record.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { validateSegmentation } from '../src/segments/rules-schema.js';
import { compileCrmRules, evalCrmRule, parseTpSegments, ruleColumns, canonical, numeric, type CrmRule } from '../src/segments/rules.js';
import { SegmentCompiler } from '../src/segments/compiler/segment-compiler.js';
import { decodeStore, encodeStore } from '../src/segments/segment-store.js';
import { KEY_KIND, hashKey, keyHash } from '../src/segments/key-hash.js';
import { SegbidError } from '../src/common/errors.js';
import type { SegmentationDef, SegmentDef } from '../src/config/types.js';

function details(fn: () => unknown): { path: string; message: string }[] {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SegbidError);
    expect((e as SegbidError).code).toBe('CONFIG_INVALID');
    return [...(e as SegbidError).details];
  }
  throw new Error('expected CONFIG_INVALID');
}

const base: SegmentDef[] = [
  { id: 'customers', name: 'Customers', kind: 'group' },
  { id: 'loyal', name: 'Loyal', parent: 'customers', kind: 'crm', rule: { all: [{ col: 'frequency', gte: 6 }, { col: 'monetary', between: [500, 10000] }] } },
  { id: 'tp', name: 'TP', kind: 'third_party', rule: [{ provider: '6', segments: ['1', '2'] }, { provider: '9', segments: ['x'] }] },
  { id: 'ctx', name: 'Ctx', kind: 'contextual', rule: { cat: ['IAB12'], hours: [22, 6], days: ['sat', 'sun'], countries: ['FRA'] } },
  { id: 'lal', name: 'Lal', kind: 'lookalike', rule: { seed: 'loyal', threshold: 1.2, reach: 0.05, minLift: 2 } },
];

describe('validateSegmentation', () => {
  it('accepts every kind of rule', () => {
    expect(validateSegmentation({ width: 64, segments: base }, 'seg.json').segments).toHaveLength(5);
  });

  it('reports every schema error with its path', () => {
    const doc = {
      segments: [
        ...base,
        { id: 'bad1', name: 'x', kind: 'crm', rule: { all: [{ col: 'frequency', gte: 6 }, { col: 'monetary', gte: 'five hundred' }] } },
        { id: 'bad2', name: 'x', kind: 'crm', rule: { col: 'a', gte: 1, lt: 3 } },
        { id: 'bad3', name: 'x', kind: 'third_party', rule: { provider: '6' } },
        { id: 'bad4', name: 'x', kind: 'contextual', rule: { days: ['someday'], hours: [3, 25] } },
        { id: 'bad5', name: 'x', kind: 'lookalike', rule: { seed: 'loyal', threshold: 1, reach: 3 } },
        { id: 'bad6', name: 'x', kind: 'group', rule: { col: 'a', eq: 1 } },
        { id: 'bad7', name: 'x', kind: 'crm' },
        { id: 'bad8', name: 'x', kind: 'crm', rule: { any: [{ not: { col: 'a', whatever: 1 } }] } },
      ],
    };
    const d = details(() => validateSegmentation(doc, 'seg.json'));
    const paths = d.map((x) => x.path);
    expect(paths).toContain('/segments/5/rule/all/1/gte');
    expect(paths).toContain('/segments/6/rule');
    expect(d.find((x) => x.path === '/segments/6/rule')!.message).toMatch(/one of eq ne/);
    expect(paths).toContain('/segments/7/rule');
    expect(d.find((x) => x.path === '/segments/7/rule')!.message).toMatch(/segments/);
    expect(paths).toContain('/segments/8/rule/days/0');
    expect(paths).toContain('/segments/8/rule/hours/1');
    expect(paths).toContain('/segments/9/rule/reach');
    expect(paths).toContain('/segments/10/rule');
    expect(d.find((x) => x.path === '/segments/10/rule')!.message).toMatch(/group has no rule/);
    expect(paths).toContain('/segments/11');
    expect(paths).toContain('/segments/12/rule/any/0/not');
    // No echo of the if/then machinery.
    expect(d.every((x) => !/then/.test(x.message))).toBe(true);
  });

  it('cross-checks: duplicates, parents, cycles, lookalike seeds, ranges, day-parts, width', () => {
    const doc: SegmentationDef = {
      width: 32,
      segments: [
        { id: 'a', name: 'a', parent: 'b', kind: 'group' },
        { id: 'b', name: 'b', parent: 'a', kind: 'group' },
        { id: 'a', name: 'dup', kind: 'group' },
        { id: 'orphan', name: 'o', parent: 'nobody', kind: 'group' },
        { id: 'l1', name: 'l', kind: 'lookalike', rule: { seed: 'missing', threshold: 1, reach: 0.1 } },
        { id: 'l2', name: 'l', kind: 'lookalike', rule: { seed: 'b', threshold: 1, reach: 0.1 } },
        { id: 'r', name: 'r', kind: 'crm', rule: { not: { col: 'x', between: [5, 1] } } },
        { id: 'h', name: 'h', kind: 'contextual', rule: { hours: [7, 7] } },
      ],
    };
    const d = details(() => validateSegmentation(doc, 'seg.json'));
    const at = (p: string) => d.filter((x) => x.path === p).map((x) => x.message).join(' | ');
    expect(at('/segments/2/id')).toMatch(/duplicate/);
    expect(at('/segments/0/parent')).toMatch(/cycle: a -> b -> a/);
    expect(at('/segments/3/parent')).toMatch(/unknown parent/);
    expect(at('/segments/4/rule/seed')).toMatch(/unknown seed/);
    expect(at('/segments/5/rule/seed')).toMatch(/crm segment/);
    expect(at('/segments/6/rule/not/between')).toMatch(/empty range/);
    expect(at('/segments/7/rule/hours')).toMatch(/empty day-part/);
  });

  it('the demo segmentation is valid', async () => {
    const { demoSegmentation } = await import('../src/fixtures/demo.js');
    expect(() => validateSegmentation(demoSegmentation, 'demo')).not.toThrow();
  });
});

// ---------------------------------------------------------------------------------------------------------

const COLUMNS = ['x', 'y', 's', 'b'];
const value = fc.oneof(
  fc.integer({ min: -3, max: 3 }).map(String),
  fc.constantFrom('', ' 2 ', '1.5', 'a', 'b', 'true', 'false', '0', '1', 'abc'),
  fc.integer({ min: -3, max: 3 }),
  fc.boolean(),
  fc.constant(null),
);
const scalar = fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constantFrom('a', 'b', '1', ''), fc.boolean());
const num = fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constantFrom(1.5, -0.5));
const col = fc.constantFrom(...COLUMNS, 'absent');
const { rule } = fc.letrec<{ rule: CrmRule }>((tie) => ({
  rule: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.oneof(
      fc.record({ col, eq: scalar }),
      fc.record({ col, ne: scalar }),
      fc.record({ col, gt: num }),
      fc.record({ col, gte: num }),
      fc.record({ col, lt: num }),
      fc.record({ col, lte: num }),
      fc.record({ col, between: fc.tuple(num, num).map(([a, b]) => (a <= b ? [a, b] : [b, a]) as [number, number]) }),
      fc.record({ col, in: fc.array(scalar, { minLength: 1, maxLength: 4 }) }),
    ),
    fc.record({ all: fc.array(tie('rule'), { minLength: 1, maxLength: 3 }) }),
    fc.record({ any: fc.array(tie('rule'), { minLength: 1, maxLength: 3 }) }),
    fc.record({ not: tie('rule') }),
  ) as fc.Arbitrary<CrmRule>,
}));
const record = fc.record({ x: value, y: value, s: value, b: value, tp: fc.subarray(['6:1', '6:2', '9:x', '7:7', '6:1']) });

describe('compiled rules', () => {
  it('compileCrmRules agrees with evalCrmRule (every bit, including bit 31 of a word)', () => {
    fc.assert(
      fc.property(fc.array(rule, { minLength: 1, maxLength: 8 }), fc.array(record, { maxLength: 20 }), (rules, records) => {
        const cols: string[] = [];
        for (const r of rules) ruleColumns(r, cols);
        const bitOf = (i: number) => (i * 31) % 64;
        const run = compileCrmRules(rules.map((r, i) => ({ bit: bitOf(i), rule: r })), (c) => cols.indexOf(c));
        for (const rec of records) {
          const texts = cols.map((c) => canonical((rec as Record<string, unknown>)[c]));
          const nums = Float64Array.from(texts.map(numeric));
          const row = new Uint32Array(2);
          run(texts, nums, row);
          const expected = new Uint32Array(2);
          rules.forEach((r, i) => {
            if (evalCrmRule(r, rec)) expected[bitOf(i) >>> 5] |= 1 << (bitOf(i) & 31);
          });
          expect(Array.from(row)).toEqual(Array.from(expected));
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('long in-lists and strings that need quoting compile safely', () => {
    const values = Array.from({ length: 20 }, (_, i) => `v${i}`);
    const tricky = 'a"b\\c\n\u2028);throw 1;//';
    const run = compileCrmRules(
      [
        { bit: 0, rule: { col: 's', in: [...values, 3, true] } },
        { bit: 1, rule: { col: 's', eq: tricky } },
      ],
      () => 0,
    );
    for (const [text, bits] of [['v7', 1], ['3', 1], ['1', 1], ['v20', 0], [tricky, 2]] as const) {
      const row = new Uint32Array(1);
      run([text], Float64Array.of(numeric(text)), row);
      expect(row[0]).toBe(bits);
    }
  });

  it('store lookup (compile -> encode -> decode -> orInto) equals evaluating the rules', () => {
    fc.assert(
      fc.property(fc.array(rule, { minLength: 1, maxLength: 6 }), fc.array(record, { minLength: 1, maxLength: 40 }), (rules, records) => {
        const segments: SegmentDef[] = [
          { id: 'g', name: 'group of the crm segments', kind: 'group' },
          ...rules.map((r, i) => ({ id: `c${i}`, name: `c${i}`, parent: i % 2 === 0 ? 'g' : null, kind: 'crm' as const, rule: r })),
          { id: 'tp', name: 'tp', parent: 'g2', kind: 'third_party', rule: [{ provider: '6', segments: ['1'] }, { provider: '9', segments: ['x'] }] },
          { id: 'g2', name: 'group of tp', kind: 'group' },
          { id: 'ctx', name: 'ctx', parent: 'g', kind: 'contextual', rule: { cat: ['IAB1'] } },
        ];
        const def = validateSegmentation({ width: 64, segments }, 'prop');
        const compiler = new SegmentCompiler(def);
        records.forEach((rec, i) => {
          const full: Record<string, unknown> = { ...rec, tp_segments: rec.tp.join(';'), buyeruid: `u${i}` };
          compiler.addRecord(compiler.columns.map((c) => full[c]));
        });
        const store = decodeStore(encodeStore(compiler.finish('2026-01-01T00:00:00.000Z').store));
        records.forEach((rec, i) => {
          hashKey(KEY_KIND.buyeruid, `u${i}`);
          const out = new Uint32Array(2);
          expect(store.orInto(keyHash.hi, keyHash.lo, out)).toBe(true);
          const has = (bit: number) => (out[bit >>> 5] & (1 << (bit & 31))) !== 0;
          const crm = rules.map((r) => evalCrmRule(r, rec));
          const tp = rec.tp.includes('6:1') || rec.tp.includes('9:x');
          crm.forEach((m, k) => expect(has(1 + k)).toBe(m));
          expect(has(0)).toBe(crm.some((m, k) => m && k % 2 === 0));
          expect(has(1 + rules.length)).toBe(tp);
          expect(has(2 + rules.length)).toBe(tp);
          expect(has(3 + rules.length)).toBe(false); // contextual: never compiled into rows
        });
      }),
      { numRuns: 300 },
    );
  });

  it('value semantics', () => {
    const rec = { n: ' 7 ', s: 'abc', e: '', t: 'TRUE', z: 0 };
    expect(evalCrmRule({ col: 'n', eq: 7 }, rec)).toBe(true);
    expect(evalCrmRule({ col: 'n', eq: ' 7 ' }, rec)).toBe(true);
    expect(evalCrmRule({ col: 'n', eq: '7' }, rec)).toBe(false);
    expect(evalCrmRule({ col: 'e', gte: 0 }, rec)).toBe(false);
    expect(evalCrmRule({ col: 'e', lt: 0 }, rec)).toBe(false);
    expect(evalCrmRule({ col: 'e', ne: 1 }, rec)).toBe(true);
    expect(evalCrmRule({ col: 'missing', ne: 'x' }, rec)).toBe(true);
    expect(evalCrmRule({ col: 't', eq: true }, rec)).toBe(true);
    expect(evalCrmRule({ col: 'z', eq: false }, rec)).toBe(true);
    expect(evalCrmRule({ col: 's', in: ['x', 'abc'] }, rec)).toBe(true);
    expect(evalCrmRule({ col: 'n', between: [7, 7] }, rec)).toBe(true);
  });

  it('parses tp_segments text and arrays', () => {
    expect(parseTpSegments('6:12341318394918;6:777| 9:lux,bad;:x;y:', [])).toEqual(['6:12341318394918', '6:777', '9:lux']);
    expect(parseTpSegments(['6:1', { provider: 9, segment: 'x' }, 3], [])).toEqual(['6:1', '9:x']);
    expect(parseTpSegments(undefined, ['stale'])).toEqual([]);
  });
});
