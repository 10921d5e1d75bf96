/** The RFC 4180 line parser and the CSV / NDJSON record streams of the compiler. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Readable } from 'node:stream';
import { CSV_CONTINUE, CSV_MALFORMED, CSV_RECORD, CsvLineParser, csvLine } from '../src/segments/compiler/csv.js';
import { readRecords } from '../src/segments/compiler/records.js';

/** Feeds a CSV text split on "\n" (what readline hands over) and collects the records. */
function parseAll(text: string): { records: string[][]; malformed: number; open: boolean } {
  const p = new CsvLineParser();
  const records: string[][] = [];
  let malformed = 0;
  for (const line of text.split('\n')) {
    const s = p.feed(line);
    if (s === CSV_RECORD) records.push([...p.fields]);
    else if (s === CSV_MALFORMED) malformed++;
  }
  return { records, malformed, open: p.open };
}

const field = fc.string({ unit: fc.constantFrom('a', 'b', ',', '"', '\n', '\r', ' ', '\t', 'é', '0', ';', ':'), maxLength: 8 });
const rows = (width: number) => fc.array(fc.array(field, { minLength: width, maxLength: width }), { minLength: 1, maxLength: 20 });

describe('CsvLineParser', () => {
  it('round-trips any fields (quotes, commas, line breaks, CR) written by csvLine', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }).chain((w) => rows(w)),
        (records) => {
          const text = records.map(csvLine).join('\n');
          const parsed = parseAll(text);
          expect(parsed.malformed).toBe(0);
          expect(parsed.open).toBe(false);
          expect(parsed.records).toEqual(records);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('reads RFC 4180 examples', () => {
    expect(parseAll('a,b,c').records).toEqual([['a', 'b', 'c']]);
    expect(parseAll('"a,1","b ""q""",').records).toEqual([['a,1', 'b "q"', '']]);
    expect(parseAll(',,').records).toEqual([['', '', '']]);
    expect(parseAll('"multi\nline",x').records).toEqual([['multi\nline', 'x']]);
    expect(parseAll('un"quoted,x').records).toEqual([['un"quoted', 'x']]);
    expect(parseAll('""').records).toEqual([['']]);
  });

  it('trims spaces and tabs around unquoted fields (", " separators); a quoted field is kept as given', () => {
    expect(parseAll('id , segment').records).toEqual([['id', 'segment']]);
    expect(parseAll(' ABC-123 ,\tgold\t, x').records).toEqual([['ABC-123', 'gold', 'x']]);
    expect(parseAll(' , ').records).toEqual([['', '']]);
    expect(parseAll('" ABC-123 ","b"').records).toEqual([[' ABC-123 ', 'b']]);
    // Spaces around a quoted field are not part of it (a ", " separator before a quote).
    expect(parseAll('a, "b, c" ,"d"').records).toEqual([['a', 'b, c', 'd']]);
    expect(parseAll('"multi\nline" , x').records).toEqual([['multi\nline', 'x']]);
    expect(parseAll('"closed" junk,x').malformed).toBe(1);
  });

  it('csvLine quotes a field with leading or trailing spaces, so that it reads back as written', () => {
    expect(csvLine([' a', 'b ', 'c'])).toBe('" a","b ",c');
    expect(parseAll(csvLine([' a', 'b\t', ' '])).records).toEqual([[' a', 'b\t', ' ']]);
  });

  it('reports malformed and unterminated quoting', () => {
    const p = new CsvLineParser();
    expect(p.feed('"closed"junk,x')).toBe(CSV_MALFORMED);
    expect(p.feed('"never closed')).toBe(CSV_CONTINUE);
    expect(p.open).toBe(true);
    expect(p.feed('still open",y')).toBe(CSV_RECORD);
    expect(p.fields).toEqual(['never closed\nstill open', 'y']);
  });
});

async function collect(text: string, format: 'csv' | 'ndjson', columns: string[]) {
  const out: unknown[][] = [];
  const stats = await readRecords(Readable.from([text]), format, columns, (v) => out.push([...v]), { source: 'test' });
  return { out, stats };
}

describe('readRecords', () => {
  it('CSV through readline: header mapping, CRLF, BOM, blank lines, malformed and short rows counted', async () => {
    const text = '\ufeffid,"score",name\r\n1,2,"x, y"\r\n\r\n3,"4",z\r\n5,6\r\n7,8,"q\r\nr"\r\n9,"bad"x,w\r\n';
    const { out, stats } = await collect(text, 'csv', ['name', 'score', 'absent']);
    expect(out).toEqual([
      ['x, y', '2', undefined],
      ['z', '4', undefined],
      ['q\nr', '8', undefined],
    ]);
    expect(stats.records).toBe(3);
    expect(stats.malformed).toBe(2);
    expect(stats.malformedLines).toEqual([5, 8]);
    expect(stats.missingColumns).toEqual(['absent']);
  });

  it('CSV round trip through the stream reader (fields without CR, which readline treats as a line break)', async () => {
    const noCr = fc.string({ unit: fc.constantFrom('a', ',', '"', '\n', ' ', '1'), maxLength: 6 });
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(noCr, noCr), { minLength: 1, maxLength: 15 }), async (records) => {
        const text = ['c0,c1', ...records.map(csvLine)].join('\n') + '\n';
        const { out, stats } = await collect(text, 'csv', ['c1', 'c0']);
        const expected = records.map(([a, b]) => [b, a]); // two empty fields are the line ",", not a blank line
        expect(stats.malformed).toBe(0);
        expect(out).toEqual(expected);
      }),
      { numRuns: 200 },
    );
  });

  it('CSV: a stray opening quote costs its own record only, not every record after it', async () => {
    const lines = ['buyeruid,tier,spend', 'x0,gold,1', 'x1,"gold,1'];
    for (let i = 2; i <= 1000; i++) lines.push(`x${i},gold,1`);
    const started = performance.now();
    const { out, stats } = await collect(lines.join('\n') + '\n', 'csv', ['buyeruid']);
    expect(stats.malformedLines).toEqual([3]);
    expect(out.map((r) => r[0])).toEqual(['x0', ...Array.from({ length: 999 }, (_, i) => `x${i + 2}`)]);
    expect(performance.now() - started).toBeLessThan(5000); // re-parsing an open record is bounded (64 lines)
  });

  it('CSV: a byte order mark before a quoted first header field', async () => {
    const { out, stats } = await collect('\ufeff"buyeruid","tier"\r\nb1,gold\r\n', 'csv', ['buyeruid', 'tier']);
    expect(stats.missingColumns).toEqual([]);
    expect(out).toEqual([['b1', 'gold']]);
  });

  it('NDJSON: a byte order mark on the first line; integers beyond 2^53 make a record malformed (digits lost)', async () => {
    const text = '\ufeff{"id":"a"}\n{"id":1234567890123456789}\n{"id":9007199254740991}\n';
    const { out, stats } = await collect(text, 'ndjson', ['id']);
    expect(out).toEqual([['a'], [9007199254740991]]);
    expect(stats.malformedLines).toEqual([2]);
  });

  it('NDJSON: objects by key, bad lines counted', async () => {
    const text = '{"a":1,"b":"x"}\n\nnot json\n[1,2]\n{"b":true}\n';
    const { out, stats } = await collect(text, 'ndjson', ['a', 'b']);
    expect(out).toEqual([
      [1, 'x'],
      [undefined, true],
    ]);
    expect(stats.malformed).toBe(2);
  });

  it('an empty CSV is an error', async () => {
    await expect(collect('', 'csv', ['a'])).rejects.toThrow(/empty CSV/);
  });
});
