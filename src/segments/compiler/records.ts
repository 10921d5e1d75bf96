/**
 * Streams the records of a CRM export or an id map, CSV (with a header line) or NDJSON (one JSON object a
 * line), through node:readline in constant memory, handing each record to a synchronous callback as the values
 * of the columns the caller asked for, in that order (absent column or field -> undefined / "").
 *
 * The `values` array passed to onRecord is reused: read it inside the callback. Malformed records (bad quoting,
 * a field count different from the header's, invalid JSON, a JSON line that is not an object) are skipped and
 * counted, with the first few line numbers kept for the report.
 */
import { createReadStream } from 'node:fs';
import { extname } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { SegbidError } from '../../common/errors.js';
import { CSV_CONTINUE, CSV_MALFORMED, CsvLineParser } from './csv.js';

export type RecordFormat = 'csv' | 'ndjson';

export function formatOfPath(path: string): RecordFormat {
  const ext = extname(path).toLowerCase();
  if (ext === '.ndjson' || ext === '.jsonl' || ext === '.json') return 'ndjson';
  if (ext === '.csv' || ext === '.txt') return 'csv';
  throw new SegbidError('CONFIG_INVALID', `${path}: cannot tell CSV from NDJSON by the extension (use .csv, .ndjson or .jsonl, or --crm-format)`);
}

export interface ReadStats {
  records: number;
  malformed: number;
  /** Line numbers (1-based) of the first malformed records. */
  malformedLines: number[];
  /** Asked-for columns the CSV header does not have (NDJSON: never reported, keys vary per line). */
  missingColumns: string[];
  bytes: number;
}

export interface ReadOptions {
  source: string;
  /** Called about every 16k records with the bytes and records read so far. */
  onProgress?: (bytes: number, records: number) => void;
}

const MAX_MALFORMED_LINES = 10;

export function openInput(path: string): Readable {
  return createReadStream(path, { highWaterMark: 1 << 20 });
}

/** Reads every record of `input`; resolves when the stream ends, rejects when it fails. */
export function readRecords(
  input: Readable,
  format: RecordFormat,
  columns: readonly string[],
  onRecord: (values: unknown[]) => void,
  options: ReadOptions,
): Promise<ReadStats> {
  const stats: ReadStats = { records: 0, malformed: 0, malformedLines: [], missingColumns: [], bytes: 0 };
  const values: unknown[] = new Array(columns.length).fill(undefined);
  const csv = new CsvLineParser();
  let header: number[] | null = null; // CSV: header index of each asked-for column, -1 when absent
  let headerWidth = 0;
  let lineNo = 0;
  let recordLine = 0;
  const malformed = (line: number) => {
    stats.malformed++;
    if (stats.malformedLines.length < MAX_MALFORMED_LINES) stats.malformedLines.push(line);
  };
  const onCsvLine = (line: string, no: number = lineNo) => {
    // A byte order mark before the header is not content (stripped before parsing: before a quoted first
    // field it made the quote part of the field, and that column unreadable).
    if (header === null && !csv.open && line.charCodeAt(0) === 0xfeff) line = line.slice(1);
    if (!csv.open) {
      recordLine = no;
      if (line.length === 0) return; // blank lines between records carry nothing
    }
    const status = csv.feed(line);
    if (status === CSV_CONTINUE) return;
    if (status === CSV_MALFORMED) {
      malformed(recordLine);
      // A record left open too long (a stray quote): the lines after its first are records again.
      const first = recordLine;
      const again = csv.takeReplay();
      for (let k = 0; k < again.length; k++) onCsvLine(again[k], first + 1 + k);
      return;
    }
    const fields = csv.fields;
    if (header === null) {
      if (fields.length > 0 && fields[0].charCodeAt(0) === 0xfeff) fields[0] = fields[0].slice(1);
      const names = fields.map((f) => f.trim());
      header = columns.map((c) => names.indexOf(c));
      headerWidth = fields.length;
      stats.missingColumns = columns.filter((_c, i) => header![i] < 0);
      return;
    }
    if (fields.length !== headerWidth) return malformed(recordLine);
    for (let i = 0; i < columns.length; i++) {
      const at = header[i];
      values[i] = at < 0 ? undefined : fields[at];
    }
    stats.records++;
    onRecord(values);
  };
  const onJsonLine = (line: string) => {
    recordLine = lineNo;
    if (lineNo === 1 && line.charCodeAt(0) === 0xfeff) line = line.slice(1);
    if (line.trim().length === 0) return;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      return malformed(recordLine);
    }
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return malformed(recordLine);
    const o = obj as Record<string, unknown>;
    for (let i = 0; i < columns.length; i++) {
      const v = o[columns[i]];
      // An integer beyond 2^53 has already lost digits in JSON.parse (two ids become one, or no id the bidder
      // sees): the record is malformed (quote such ids as strings), never silently another user's.
      if (typeof v === 'number' && Number.isInteger(v) && !Number.isSafeInteger(v)) return malformed(recordLine);
      values[i] = v;
    }
    stats.records++;
    onRecord(values);
  };
  const onLine = format === 'csv' ? onCsvLine : onJsonLine;
  return new Promise<ReadStats>((resolvePromise, reject) => {
    let failed = false;
    input.on('data', (chunk: Buffer | string) => {
      stats.bytes += chunk.length;
    });
    input.on('error', (e) => {
      failed = true;
      reject(new SegbidError('CONFIG_UNREADABLE', `${options.source}: ${e.message}`));
    });
    const rl = createInterface({ input, crlfDelay: Infinity });
    rl.on('line', (line) => {
      if (failed) return;
      lineNo++;
      try {
        onLine(line);
      } catch (e) {
        failed = true;
        rl.close();
        input.destroy();
        reject(e);
        return;
      }
      if ((lineNo & 0x3fff) === 0 && options.onProgress) options.onProgress(stats.bytes, stats.records);
    });
    rl.on('close', () => {
      if (failed) return;
      if (csv.open) malformed(recordLine); // the file ended inside a quoted field: truncated
      if (format === 'csv' && header === null) {
        reject(new SegbidError('CONFIG_INVALID', `${options.source}: empty CSV (no header line)`));
        return;
      }
      options.onProgress?.(stats.bytes, stats.records);
      resolvePromise(stats);
    });
  });
}
