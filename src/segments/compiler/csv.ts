/**
 * A minimal RFC 4180 CSV record parser fed one physical line at a time (from node:readline), so a CRM export
 * of any size streams through in constant memory.
 *
 *   - fields are separated by `,`; a field may be quoted with `"`; inside quotes `""` is a quote, and commas
 *     and line breaks are data (a quoted field may span lines: feed() then answers CONTINUE until the record
 *     is complete; the line break is rebuilt as "\n" since readline has already consumed it);
 *   - an unquoted field is taken literally (a stray `"` inside it is data, as most exporters mean it), but for
 *     the ASCII whitespace around it, which is trimmed. RFC 4180 counts those spaces as part of the field; CRM
 *     exports written with ", " separators (or padded columns) do not mean them, and an id padded so would
 *     never match the bid request's. A quoted field is kept exactly as given (quoting is how a value says
 *     "these spaces are mine"), and the whitespace around its quotes is not part of it (`a, "b, c" ,d`);
 *   - a closing quote followed by anything but whitespace, then `,` or the end of the line, is MALFORMED (the
 *     record is skipped and counted by the caller), as is a record still open after MAX_RECORD_LINES lines or
 *     MAX_RECORD_CHARS characters: a stray opening quote must not swallow the rest of the file (it used to take
 *     every record after it, reported as one malformed line). The lines after the abandoned record's first are
 *     handed back (takeReplay) for the caller to feed again, as records of their own.
 * `fields` is reused between records: copy what you keep.
 */
export const CSV_RECORD = 0;
export const CSV_CONTINUE = 1;
export const CSV_MALFORMED = 2;
export type CsvStatus = typeof CSV_RECORD | typeof CSV_CONTINUE | typeof CSV_MALFORMED;

export const MAX_RECORD_CHARS = 1 << 20;
/** Physical lines one record may span (a quoted field with line breaks): far more than any CRM export's. */
export const MAX_RECORD_LINES = 64;

export class CsvLineParser {
  readonly fields: string[] = [];
  private pending: string | null = null;
  /** The physical lines of the pending record. */
  private pendingLines: string[] = [];
  private replay: string[] = [];

  /** Feeds one line (without its line break). */
  feed(line: string): CsvStatus {
    const physical = line;
    if (this.pending !== null) {
      line = this.pending + '\n' + line;
      this.pending = null;
    }
    this.pendingLines.push(physical);
    const status = this.parse(line);
    if (status === CSV_CONTINUE) {
      if (line.length > MAX_RECORD_CHARS || this.pendingLines.length >= MAX_RECORD_LINES) {
        this.replay = this.pendingLines.slice(1);
        this.pendingLines = [];
        return CSV_MALFORMED;
      }
      this.pending = line;
      return status;
    }
    this.pendingLines.length = 0;
    return status;
  }

  /**
   * After a MALFORMED record that was still open: its lines but the first, to be fed again (each a record of its
   * own, or the start of one). Empty otherwise. Taking them clears them.
   */
  takeReplay(): string[] {
    const lines = this.replay;
    this.replay = [];
    return lines;
  }

  /** True when a quoted field is still open (end of input here means a truncated file). */
  get open(): boolean {
    return this.pending !== null;
  }

  private parse(line: string): CsvStatus {
    const fields = this.fields;
    fields.length = 0;
    const n = line.length;
    let i = 0;
    for (;;) {
      // At the start of a field: whitespace before an opening quote is not part of the field.
      let q0 = i;
      while (q0 < n && isAsciiSpace(line.charCodeAt(q0))) q0++;
      if (q0 < n && line.charCodeAt(q0) === 34) {
        i = q0 + 1;
        let value = '';
        let segStart = i;
        for (;;) {
          const q = line.indexOf('"', i);
          if (q < 0) return CSV_CONTINUE;
          if (q + 1 < n && line.charCodeAt(q + 1) === 34) {
            value += line.slice(segStart, q + 1);
            i = q + 2;
            segStart = i;
            continue;
          }
          value += line.slice(segStart, q);
          i = q + 1;
          break;
        }
        fields.push(value);
        while (i < n && isAsciiSpace(line.charCodeAt(i))) i++;
        if (i === n) return CSV_RECORD;
        if (line.charCodeAt(i) !== 44) return CSV_MALFORMED;
        i++;
      } else {
        const c = line.indexOf(',', i);
        if (c < 0) {
          fields.push(trimAscii(i === 0 ? line : line.slice(i)));
          return CSV_RECORD;
        }
        fields.push(trimAscii(line.slice(i, c)));
        i = c + 1;
      }
    }
  }
}

/** Tab, line feed, vertical tab, form feed, carriage return, space. */
function isAsciiSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}

/** s without the ASCII whitespace around it (String.prototype.trim also takes Unicode spaces: data, here). */
export function trimAscii(s: string): string {
  let from = 0;
  let to = s.length;
  while (from < to && isAsciiSpace(s.charCodeAt(from))) from++;
  while (to > from && isAsciiSpace(s.charCodeAt(to - 1))) to--;
  return from === 0 && to === s.length ? s : s.slice(from, to);
}

/**
 * Formats one field: quoted when it holds a comma, a quote or a line break, or starts or ends with whitespace
 * (which the parser trims from an unquoted field).
 */
export function csvField(value: string): string {
  if (!/[",\r\n]|^\s|\s$/.test(value)) return value;
  return `"${value.replace(/"/g, '""')}"`;
}

export function csvLine(values: readonly string[]): string {
  // A lone empty field would be a blank line, which readers skip: quote it.
  if (values.length === 1 && values[0] === '') return '""';
  let out = '';
  for (let i = 0; i < values.length; i++) out += (i === 0 ? '' : ',') + csvField(values[i]);
  return out;
}
