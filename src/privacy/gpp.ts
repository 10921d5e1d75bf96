/**
 * IAB Global Privacy Platform strings, without a GPP library (none is installed; @iabgpp/cmpapi would decode
 * every section). What this reads:
 * - the header (first `~`-separated part, base64url): Type (6 bits, = 3), Version (6 bits), then the section
 *   ids as a Fibonacci-coded integer range: 12-bit count, then per entry 1 bit "is a range", then one (or two:
 *   start, end) Fibonacci integers, each an offset from the previous id. Section i+1 of the string is the i-th id.
 * - section 2 (TCF EU v2): a standard TC string, decoded by TcfEvaluator (@iabtcf/core).
 * - section 6 (US Privacy v1): the 4-character us_privacy string.
 * Every other section (1 TCF EU v1, 5 TCF Canada, 7 US national, 8-22+ US states) is "unreadable" here: the
 * gate applies the configured conservative rule to it (gppUnreadable, default deny).
 *
 * `parseGpp` allocates (it runs once per distinct GPP string: the gate caches its result).
 */
export const GPP_TCF_EU_V2 = 2;
export const GPP_USP_V1 = 6;

export interface GppParsed {
  /** Section ids in string order. */
  readonly ids: readonly number[];
  /** Encoded sections, aligned with ids. */
  readonly sections: readonly string[];
}

function b64(c: number): number {
  if (c >= 65 && c <= 90) return c - 65; // A-Z
  if (c >= 97 && c <= 122) return c - 71; // a-z
  if (c >= 48 && c <= 57) return c + 4; // 0-9
  if (c === 45) return 62; // -
  if (c === 95) return 63; // _
  return -1;
}

class BitReader {
  pos = 0;
  constructor(private readonly s: string) {}
  get remaining(): number {
    return this.s.length * 6 - this.pos;
  }
  bit(): number {
    if (this.pos >= this.s.length * 6) throw new RangeError('past the end');
    const v = b64(this.s.charCodeAt((this.pos / 6) | 0));
    if (v < 0) throw new RangeError('not base64url');
    const b = (v >> (5 - (this.pos % 6))) & 1;
    this.pos++;
    return b;
  }
  int(bits: number): number {
    let v = 0;
    for (let i = 0; i < bits; i++) v = v * 2 + this.bit();
    return v;
  }
  /** Fibonacci code: bits for F(1)=1, F(2)=2, 3, 5, ..., terminated by two consecutive 1 bits. */
  fibonacci(): number {
    let a = 1;
    let b = 2;
    let value = 0;
    let prev = 0;
    for (let i = 0; i < 40; i++) {
      const bit = this.bit();
      if (bit === 1 && prev === 1) return value;
      if (bit === 1) value += a;
      prev = bit;
      const next = a + b;
      a = b;
      b = next;
    }
    throw new RangeError('Fibonacci integer too long');
  }
}

/** Section ids of a GPP header; null when the header is not a valid GPP v1 header. */
export function parseGppHeader(header: string): number[] | null {
  try {
    const r = new BitReader(header);
    if (r.int(6) !== 3) return null; // header type
    if (r.int(6) !== 1) return null; // GPP version 1
    const count = r.int(12);
    const ids: number[] = [];
    let last = 0;
    for (let i = 0; i < count; i++) {
      if (r.bit() === 1) {
        const start = last + r.fibonacci();
        const end = start + r.fibonacci();
        if (end - start > 64) return null; // no real GPP string spans that many section ids
        for (let id = start; id <= end; id++) ids.push(id);
        last = end;
      } else {
        last += r.fibonacci();
        ids.push(last);
      }
    }
    return ids;
  } catch {
    return null;
  }
}

/** Splits a GPP string into its sections; null when malformed (bad header, or sections != header ids). */
export function parseGpp(gpp: string): GppParsed | null {
  const parts = gpp.split('~');
  const ids = parseGppHeader(parts[0]);
  if (ids === null || ids.length !== parts.length - 1) return null;
  return { ids, sections: parts.slice(1) };
}

/* ---- encoding, for tests and fixtures (the bidder only decodes) */

function fibonacciBits(value: number): string {
  const fib = [1, 2];
  while (fib[fib.length - 1] + fib[fib.length - 2] <= value) fib.push(fib[fib.length - 1] + fib[fib.length - 2]);
  const bits = new Array<string>(fib.length).fill('0');
  let v = value;
  for (let i = fib.length - 1; i >= 0; i--) {
    if (fib[i] <= v) {
      bits[i] = '1';
      v -= fib[i];
    }
  }
  return bits.join('').replace(/0+$/, '') + '1';
}

/** A GPP header for these ascending section ids (single entries, no ranges). */
export function encodeGppHeader(ids: readonly number[]): string {
  let bits = '000011' + '000001' + ids.length.toString(2).padStart(12, '0');
  let last = 0;
  for (const id of ids) {
    bits += '0' + fibonacciBits(id - last);
    last = id;
  }
  while (bits.length % 6 !== 0) bits += '0';
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  let out = '';
  for (let i = 0; i < bits.length; i += 6) out += alphabet[parseInt(bits.slice(i, i + 6), 2)];
  return out;
}
