/**
 * Reading OpenRTB substitution macros as they come back in notice URLs, and parsing money to integer micros.
 *
 * Contract: `readMacro(raw)` classifies a query value (already percent-decoded once) as
 *   absent         the parameter is not there
 *   empty          `p=` (an exchange that substitutes with nothing)
 *   unsubstituted  the macro text itself came back (`${AUCTION_PRICE}`, also still percent-encoded)
 *   audit          `AUDIT`: the exchange is checking the endpoint; the event is answered but never counted
 *   invalid        a `:B64` value that does not decode
 *   value          a usable value, `text` holds it (decoded from base64 when it carried the `:B64` suffix)
 * `parseMicros(text)` turns a decimal (or exponent) string into integer micro-units by shifting digits, never
 * by multiplying a float, so `0.0000005` and `1e-6` round exactly; null when it is not a non-negative number.
 */

export type MacroState = 'absent' | 'empty' | 'unsubstituted' | 'audit' | 'invalid' | 'value';

export interface MacroValue {
  state: MacroState;
  /** The usable text when state is `value`, else ''. */
  text: string;
}

const B64_SUFFIX = ':B64';
const BASE64_ANY = /^[A-Za-z0-9+/_-]+={0,2}$/;

function classify(raw: string): MacroValue {
  if (raw.length === 0) return { state: 'empty', text: '' };
  // `${` survives one percent-decoding when the exchange did not substitute; `%24%7B` when it double-encoded.
  if (raw.indexOf('${') !== -1 || /%24%7B/i.test(raw)) return { state: 'unsubstituted', text: '' };
  if (raw.toUpperCase() === 'AUDIT') return { state: 'audit', text: '' };
  return { state: 'value', text: raw };
}

export function readMacro(raw: string | null | undefined): MacroValue {
  if (raw === null || raw === undefined) return { state: 'absent', text: '' };
  const value = raw.trim();
  if (value.length > B64_SUFFIX.length && value.endsWith(B64_SUFFIX)) {
    const encoded = value.slice(0, -B64_SUFFIX.length);
    if (!BASE64_ANY.test(encoded)) return { state: 'invalid', text: '' };
    // Buffer accepts both alphabets; a value that decodes to nothing printable is not a price we can read.
    const decoded = Buffer.from(encoded, encoded.indexOf('-') !== -1 || encoded.indexOf('_') !== -1 ? 'base64url' : 'base64').toString('utf8');
    if (decoded.length === 0 || /[\u0000-\u001f\ufffd]/.test(decoded)) return { state: 'invalid', text: '' };
    return classify(decoded.trim());
  }
  return classify(value);
}

const NUMBER = /^\+?([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]{1,3}))?$/;
/** 15 digits stay exact in a double (2^53 ~ 9.007e15). */
const MAX_DIGITS = 15;

/** Decimal text -> integer micros, rounded half up at the 7th decimal. Null: not a non-negative number. */
export function parseMicros(text: string): number | null {
  const m = NUMBER.exec(text);
  if (m === null) return null;
  const intPart = m[1];
  const fracPart = m[2] ?? '';
  if (intPart.length === 0 && fracPart.length === 0) return null;
  const exp = m[3] === undefined ? 0 : Number(m[3]);
  let digits = intPart + fracPart;
  let point = intPart.length + exp + 6; // position of the micro-unit point in `digits`
  // Leading zeros carry no value and would only count against MAX_DIGITS.
  let lead = 0;
  while (lead < digits.length - 1 && digits.charCodeAt(lead) === 48) lead++;
  digits = digits.slice(lead);
  point -= lead;
  if (point <= 0) {
    // Below one micro: only rounds up when exactly at the first dropped digit and it is >= 5.
    return point === 0 && digits.charCodeAt(0) >= 53 ? 1 : 0;
  }
  if (point > MAX_DIGITS) return null;
  const whole = point >= digits.length ? digits + '0'.repeat(point - digits.length) : digits.slice(0, point);
  const roundUp = point < digits.length && digits.charCodeAt(point) >= 53 ? 1 : 0;
  return Number(whole) + roundUp;
}

/** A non-negative integer code (loss reasons), or null. */
export function parseCode(text: string): number | null {
  if (!/^[0-9]{1,9}$/.test(text)) return null;
  return Number(text);
}

/** Micros of one currency -> micros of the bidder currency (`rate` = bidder units per unit). One rounding. */
export function convertMicros(micros: number, rate: number): number {
  return rate === 1 ? micros : Math.round(micros * rate);
}
